//! # streamsift
//!
//! Stream → classify → notify: records arrive from a stream, a model
//! classifies each one, the actionable ones go to people, the noise is
//! dropped, uncertain ones go to human review, and anything that fails for
//! good is kept with its reason.
//!
//! ```text
//!  Source ──Batch──► Pipeline: Decoder ─► Classifier ─► Policy ─┬─► Router ──► Receipt
//!    ▲                  │      (retries, timeouts, panics        ├─► Labeler (review band)
//!    │                  │       caught, per record)              └─► discard
//!    │                  └─► DeadLetterSink ◄── permanent error, retries or time exhausted
//!    └──── commit(checkpoints): per shard, only over records that are done
//! ```
//!
//! A [`Source`] yields [`Batch`]es of [`Record`]s, one shard at a time; the
//! [`Pipeline`] reads only when it has room (`max_in_flight` records in
//! progress, `max_unacked` not yet committed). Each record runs as its own
//! future: a [`Decoder`] turns the bytes into your type, a [`Classifier`]
//! returns a [`Prediction`], and the [`Policy`] turns it into an [`Action`]:
//! deliver on a route through the [`Router`], send to a [`Labeler`] for
//! review, or discard. Every call is retried with jittered backoff
//! ([`RetryPolicy`]) inside a per-call timeout, and a record that fails for
//! good becomes a [`DeadLetter`] in the [`DeadLetterSink`] you chose.
//!
//! Records finish out of order, but a shard's checkpoint moves only over
//! records that are done, so delivery is at-least-once: after a crash at
//! most `max_unacked` records come again. [`Pipeline::run`] returns a
//! [`RunReport`] whose counts always add up. The same stages also run over
//! batches handed in from outside ([`batch::BatchProcessor`]): an AWS Lambda
//! function (`lambda`) or a KCL record processor (`kcl`).
//!
//! The traits take plain `async fn`, and closures are classifiers and
//! routers. The core pulls in no AWS crate: each backend sits behind its own
//! cargo feature (marked on docs.rs). [`FileSource`] reads JSON
//! lines or text from a file or stdin; feature `test-util` adds
//! `streamsift::testing` (a conformance suite per trait: one call proves your
//! component) and `streamsift::fakes` (in-memory sources and routers, fault
//! injection, a simulated crowd).
//!
//! **Start with the [`guide`]**: [getting started](guide::getting_started),
//! [custom components](guide::custom_components),
//! [reliability](guide::reliability), then the topic you need.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod active;
pub mod aggregate;
#[cfg(feature = "aws-core")]
pub mod aws;
pub mod batch;
pub mod cascade;
pub mod checkpoint;
pub mod classify;
pub mod dead_letter;
pub mod decode;
pub mod error;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod fakes;
pub mod file_source;
pub mod guide;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod jsonl;
#[cfg(feature = "kafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "kafka")))]
pub mod kafka;
#[cfg(feature = "kcl")]
#[cfg_attr(docsrs, doc(cfg(feature = "kcl")))]
pub mod kcl;
#[cfg(feature = "kinesis")]
#[cfg_attr(docsrs, doc(cfg(feature = "kinesis")))]
pub mod kinesis;
#[cfg(feature = "label-ui")]
#[cfg_attr(docsrs, doc(cfg(feature = "label-ui")))]
pub mod label_ui;
pub mod labeler;
#[cfg(feature = "lambda")]
#[cfg_attr(docsrs, doc(cfg(feature = "lambda")))]
pub mod lambda;
#[cfg(feature = "llm")]
#[cfg_attr(docsrs, doc(cfg(feature = "llm")))]
pub mod llm;
pub mod local;
#[cfg(feature = "machine-learning")]
#[cfg_attr(docsrs, doc(cfg(feature = "machine-learning")))]
pub mod machine_learning;
#[cfg(feature = "mturk")]
#[cfg_attr(docsrs, doc(cfg(feature = "mturk")))]
pub mod mturk;
pub mod pipeline;
pub mod policy;
pub mod rate;
pub mod record;
pub mod router;
#[cfg(feature = "sagemaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "sagemaker")))]
pub mod sagemaker;
#[cfg(feature = "sns")]
#[cfg_attr(docsrs, doc(cfg(feature = "sns")))]
pub mod sns;
pub mod source;
#[cfg(feature = "sqs")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqs")))]
pub mod sqs;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod util;

pub use classify::{
    BoxClassifier, BoxFuture, CascadeStage, Classifier, DynClassifier, Label, Prediction,
};
pub use dead_letter::{
    DeadLetter, DeadLetterEntry, DeadLetterSink, JsonLinesDeadLetter, JsonLinesDeadLetterBuilder,
    MemoryDeadLetter, Stage,
};
pub use decode::{DecodeError, Decoder, Json, PassThrough, RawBytes, Utf8};
pub use error::{
    BoxError, CheckpointError, ClassifyError, DeadLetterError, ErrorClass, LabelError, RouteError,
    SourceError,
};
pub use file_source::FileSource;
pub use labeler::{LabelResult, LabelTask, Labeler, LlmLabeler, TaskId, Vote};
pub use pipeline::{
    ConfigError, Pipeline, PipelineError, REVIEW_ROUTE, RetryPolicy, RunReport, ShardStats,
    Shutdown, Stats, StopReason,
};
pub use policy::{Action, Band, LabelRule, Policy, UncertainAction};
pub use record::{
    Batch, Checkpoint, Position, Record, Sequence, ShardId, compare_sequence_numbers,
};
pub use router::combinators::{ByLabel, DeadLetterRouter, Fallback, FanOut, Filter};
pub use router::{BoxRouter, Delivery, DynRouter, Receipt, Router};
pub use source::{Ack, AckMode, Source};

/// The README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
