//! # streamsift
//!
//! Stream → classify → notify. Records arrive from a [`Source`], are decoded
//! ([`Decoder`]), classified ([`Classifier`]), judged by a [`Policy`], and the
//! actionable ones are delivered by a [`Router`]; uncertain ones go to a
//! [`Labeler`] for human review, and anything that fails for good goes to a
//! [`DeadLetterSink`] with its reason. The [`Pipeline`] joins them with
//! bounded concurrency, retries, and ordered checkpoints, so delivery is
//! at-least-once and memory stays bounded.
//!
//! Nothing in this crate's core knows about tweets or AWS; backends live
//! behind cargo features, and `fakes` and `testing` (feature `test-util`) hold
//! in-memory components and conformance suites for tests.
//!
//! See `ARCHITECTURE.md` for the data flow and module ownership.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod active;
pub mod aggregate;
pub mod batch;
pub mod checkpoint;
pub mod classify;
pub mod dead_letter;
pub mod decode;
pub mod error;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod fakes;
pub mod file_source;
mod jsonl;
#[cfg(feature = "kcl")]
pub mod kcl;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "label-ui")]
pub mod label_ui;
pub mod labeler;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod local;
#[cfg(feature = "machine-learning")]
pub mod machine_learning;
#[cfg(feature = "mturk")]
pub mod mturk;
pub mod pipeline;
pub mod policy;
pub mod record;
pub mod router;
#[cfg(feature = "sagemaker")]
pub mod sagemaker;
#[cfg(feature = "sns")]
pub mod sns;
pub mod source;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod util;

pub use classify::{BoxClassifier, BoxFuture, Classifier, DynClassifier, Label, Prediction};
pub use dead_letter::{
    DeadLetter, DeadLetterEntry, DeadLetterSink, JsonLinesDeadLetter, MemoryDeadLetter, Stage,
};
pub use decode::{DecodeError, Decoder, Json, PassThrough, RawBytes, Utf8};
pub use error::{
    BoxError, CheckpointError, ClassifyError, DeadLetterError, ErrorClass, LabelError, RouteError,
    SourceError,
};
pub use file_source::FileSource;
pub use labeler::{LabelResult, LabelTask, Labeler, TaskId, Vote};
pub use pipeline::{
    Pipeline, PipelineError, REVIEW_ROUTE, RetryPolicy, RunReport, ShardStats, Shutdown, Stats,
    StopReason,
};
pub use policy::{Action, Band, LabelRule, Policy, UncertainAction};
pub use record::{
    Batch, Checkpoint, Position, Record, Sequence, ShardId, compare_sequence_numbers,
};
pub use router::combinators::{ByLabel, DeadLetterRouter, Fallback, FanOut, Filter};
pub use router::{BoxRouter, Delivery, DynRouter, Receipt, Router};
pub use source::Source;

/// The README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
