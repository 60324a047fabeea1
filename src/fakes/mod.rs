//! In-memory components for testing pipelines: public, documented, and what
//! users test their own pipelines with. Behind the `test-util` feature:
//! put `streamsift = { version = "..", features = ["test-util"] }` in your
//! `[dev-dependencies]`.
//!
//! - [`MemorySource`]: a stream held in memory, with N shards, recorded
//!   commits and crash-restart from the last commit. (For a stream in a
//!   file that survives the process, use the real
//!   [`FileSource`](crate::FileSource).)
//! - [`FnClassifier`] and [`KeywordClassifier`]: classifiers from a closure or
//!   a keyword table.
//! - [`RecordingRouter`]: keeps every delivery for assertions.
//! - [`Faulty`] with a [`FaultPlan`]: wraps any component to fail or slow
//!   down on schedule or by chance, deterministically under a seed.
//! - [`SimulatedCrowd`]: a labeler whose workers have set accuracies.
//! - [`SimulatedLlm`]: a classifier standing in for a large language model,
//!   answering from gold labels through a seeded confusion matrix, with a
//!   latency and a cost per call.

mod classifier;
mod crowd;
mod fault;
mod llm;
mod router;
mod source;

pub use classifier::{AsText, FnClassifier, KeywordClassifier};
pub use crowd::{SimulatedCrowd, Worker};
pub use fault::{DefaultKey, FaultKind, FaultPlan, Faulty, ItemKey};
pub use llm::{SimulatedLlm, UnknownItems};
pub use router::{Delivered, RecordingRouter};
pub use source::{MemorySender, MemorySource, MemoryStream};
