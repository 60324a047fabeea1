//! The [`Pipeline`]: Source → decode → Classifier → Policy → Router, with
//! the Labeler taking the review band and a dead-letter sink taking failures.
//!
//! # Guarantees
//!
//! Each is an invariant written down in `ARCHITECTURE.md` and checked by the
//! deterministic simulation (`tests/simulation.rs`) over seeded fault
//! schedules.
//!
//! - **No loss (at-least-once).** A shard's checkpoint, `SHARD_END`
//!   included, is committed only when every record at or before it is
//!   done: routed, skipped by a router, discarded, sent for review, or
//!   durably dead-lettered, even though records finish out of order. This
//!   holds on every stop path.
//! - **Acks after done.** A source that acks per record
//!   ([`AckMode::PerRecord`](crate::AckMode::PerRecord), such as SQS) is
//!   acked for a record only once it is done, in batches
//!   ([`Pipeline::ack_every`]); a graceful stop drains, then acks what is
//!   done. Failed ack calls are retried with backoff for up to
//!   [`Pipeline::commit_timeout`]; then the run stops
//!   ([`PipelineError::Ack`]) and the records not acked come again: a
//!   duplicate, never a loss. A shard's bookkeeping is released once none
//!   of its records is outstanding, so unboundedly many FIFO message groups
//!   do not grow memory.
//! - **Ordered shards.** Under `AckMode::PerRecord { ordered: true }` a
//!   record starts only once the record before it in its shard is done; a
//!   record being retried holds up its own shard, and other shards go on.
//! - **Bounded duplicates.** After a crash the source resumes from the last
//!   commit, so the records delivered again are at most those dispatched but
//!   not yet covered by a commit (bounded by [`Pipeline::max_unacked`]).
//! - **Per-call time.** Each attempt of each call gets a whole
//!   [`Pipeline::call_timeout`]; [`Pipeline::record_timeout`] bounds the
//!   whole record.
//! - **Poison never stops a stream.** A record that cannot be handled (bad
//!   input, a permanent error, retries or time exhausted, a panic in user
//!   code) goes to the dead-letter sink with its stage, kind and reason, and
//!   the shard moves on.
//! - **Nothing spins.** Calls, source reads and commits are retried with
//!   jittered exponential backoff and a bound.
//! - **Bounded memory.** At most [`Pipeline::max_in_flight`] records are
//!   being processed, at most one fetched batch waits for a slot, the source
//!   is not read while the pipeline is full, and a shard's bookkeeping is
//!   released once its `SHARD_END` is committed.
//! - **Nothing dropped silently.** If the dead-letter sink itself fails after
//!   retries, the pipeline stops without committing past that record.
//!
//! # Layout
//!
//! `builder` (the [`Pipeline`] type and its settings), `stages` (decode →
//! classify → policy → route / review / discard, as one value both the
//! streaming loop and the [`BatchProcessor`](crate::batch::BatchProcessor)
//! own), `retry` ([`RetryPolicy`], per-attempt timeouts, backoff), `track`
//! (per-shard watermarks), `run` (the run loop state machine, [`Shutdown`])
//! and `report` ([`Stats`], [`RunReport`], [`PipelineError`]).

mod builder;
mod report;
mod retry;
mod run;
mod stages;
mod track;

pub use builder::{MaybeLabeler, NoDeadLetter, NoLabeler, Pipeline, WithLabeler};
pub use report::{ConfigError, PipelineError, RunReport, ShardStats, Stats, StopReason};
pub use retry::RetryPolicy;
pub use run::Shutdown;
pub use stages::{OnExhausted, REVIEW_ROUTE};

pub(crate) use report::secs;
pub(crate) use stages::{Done, Outcome, Stages};
