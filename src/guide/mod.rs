//! Guides: how to use streamsift, one topic per page.
//!
//! These pages hold no code of their own, only documentation; every Rust
//! example in them is compiled as a doc test, so they stay true to the API.
//! Read them in order the first time:
//!
//! 1. [`getting_started`]: a pipeline from a file to your router in one
//!    `main`, what each stage does, and what `run()` reports.
//! 2. [`custom_components`]: writing your own [`Source`](crate::Source),
//!    [`Classifier`](crate::Classifier), [`Router`](crate::Router) or
//!    [`Labeler`](crate::Labeler), and proving it with the conformance
//!    suites.
//! 3. [`reliability`]: the guarantees, the invariants behind them, and the
//!    deterministic simulation that checks them (and how to replay a seed).
//!
//! Then the topic you need:
//!
//! - [`local_classifier`]: training and serving a model in-process, with a
//!   threshold chosen by cost.
//! - [`hygiene`]: notify once ([`Dedup`](crate::router::Dedup), durable
//!   across restarts) and not too often ([`Digest`](crate::router::Digest)).
//! - [`cascade`]: the local model first, an LLM for what it is unsure of,
//!   people for the rest; choosing the band by cost.
#![cfg_attr(
    feature = "llm",
    doc = "- [`llm`]: a large language model as a classifier: OpenAI-compatible servers and Bedrock, the prompt as data, cost controls (feature `llm`)."
)]
#![cfg_attr(
    not(feature = "llm"),
    doc = "- `llm` (feature `llm`; build the docs with it): a large language model as a classifier."
)]
//! - [`labeling`]: labels from people (a web page, Mechanical Turk, a
//!   simulated crowd), aggregation, and active learning.
#![cfg_attr(
    feature = "kinesis",
    doc = "- [`kinesis`]: reading from and writing to Amazon Kinesis (feature `kinesis`)."
)]
#![cfg_attr(
    not(feature = "kinesis"),
    doc = "- `kinesis` (feature `kinesis`; build the docs with it): reading from and writing to Amazon Kinesis."
)]
#![cfg_attr(
    feature = "sqs",
    doc = "- [`sqs`]: reading an Amazon SQS queue, with per-message deletes after done (feature `sqs`)."
)]
#![cfg_attr(
    not(feature = "sqs"),
    doc = "- `sqs` (feature `sqs`; build the docs with it): reading an Amazon SQS queue, with per-message deletes after done."
)]
//! - [`aws`]: running on AWS, with the IAM policy per backend, and trying
//!   the whole flow locally against moto.
#![cfg_attr(
    feature = "lambda",
    doc = "- [`lambda`]: the same stages as an AWS Lambda Kinesis consumer (feature `lambda`)."
)]
#![cfg_attr(
    not(feature = "lambda"),
    doc = "- `lambda` (feature `lambda`; build the docs with it): the same stages as an AWS Lambda Kinesis consumer."
)]
#![cfg_attr(
    feature = "kcl",
    doc = "- [`kcl`]: the same stages as a record processor under the KCL's MultiLangDaemon (feature `kcl`)."
)]
#![cfg_attr(
    not(feature = "kcl"),
    doc = "- `kcl` (feature `kcl`; build the docs with it): the same stages as a record processor under the KCL's MultiLangDaemon."
)]
#![cfg_attr(
    feature = "http",
    doc = "- [`notify`]: webhooks, Slack, Teams and PagerDuty with `HttpRouter` (feature `http`)."
)]
#![cfg_attr(
    not(feature = "http"),
    doc = "- `notify` (feature `http`; build the docs with it): webhooks, Slack, Teams and PagerDuty with `HttpRouter`."
)]
//! - [`scaling_out`]: one process, Lambda or the KCL, and the arithmetic
//!   for a large stream.
//! - [`performance`]: what a record costs, and where the figures are
//!   measured.
//!
//! On docs.rs every feature is on. Locally, `cargo doc --open --all-features`
//! builds the same pages.

pub mod aws;
pub mod cascade;
pub mod custom_components;
pub mod getting_started;
pub mod hygiene;
#[cfg(feature = "kcl")]
#[cfg_attr(docsrs, doc(cfg(feature = "kcl")))]
pub mod kcl;
#[cfg(feature = "kinesis")]
#[cfg_attr(docsrs, doc(cfg(feature = "kinesis")))]
pub mod kinesis;
pub mod labeling;
#[cfg(feature = "lambda")]
#[cfg_attr(docsrs, doc(cfg(feature = "lambda")))]
pub mod lambda;
#[cfg(feature = "llm")]
#[cfg_attr(docsrs, doc(cfg(feature = "llm")))]
pub mod llm;
pub mod local_classifier;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod notify;
pub mod performance;
pub mod reliability;
pub mod scaling_out;
#[cfg(feature = "sqs")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqs")))]
pub mod sqs;
