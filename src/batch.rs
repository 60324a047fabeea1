//! Processing one batch of records handed in from outside: the engine that
//! the Lambda handler (`streamsift::lambda`, feature `lambda`) and the KCL
//! record processor (`streamsift::kcl`, feature `kcl`) share.
//!
//! Where a [`Pipeline`] reads a [`Source`] and commits checkpoints itself, a
//! [`BatchProcessor`] is given the records (a Lambda event, a KCL
//! `processRecords` message) and answers with one [`RecordOutcome`] per
//! record, so the caller can tell its engine what to redeliver. It runs the
//! very same stages as the pipeline (decode → classify → policy → route or
//! review, with the pipeline's retry rules, call and record timeouts, and
//! dead-lettering), built with the same builder:
//!
//! ```
//! use streamsift::batch;
//! use streamsift::fakes::RecordingRouter;
//! use streamsift::{ClassifyError, MemoryDeadLetter, Policy, Prediction, Record, Sequence, ShardId};
//!
//! #[derive(Clone, Debug, serde::Deserialize)]
//! struct Msg { text: String }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let router = RecordingRouter::new();
//! let processor = batch::builder()
//!     .json::<Msg>()
//!     .classify(|m: &Msg| {
//!         let score = if m.text.contains("down") { 0.9 } else { 0.1 };
//!         async move { Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", score)) }
//!     })
//!     .policy(Policy::binary(0.5, "oncall"))
//!     .route(router.clone())
//!     .dead_letter(MemoryDeadLetter::new())
//!     .into_batch_processor()
//!     .unwrap();
//! let shard = ShardId::new("shard-0");
//! let records = vec![
//!     Record::new(shard.clone(), Sequence::from_offset(1), "k", &br#"{"text":"api down"}"#[..]),
//!     Record::new(shard.clone(), Sequence::from_offset(2), "k", &b"not json"[..]),
//! ];
//! let report = processor.process(records, None).await;
//! assert!(report.outcomes[0].is_routed());
//! assert!(report.outcomes[1].is_dead_lettered());
//! assert!(report.all_done());
//! assert!(report.stats.reconciles());
//! # });
//! ```
//!
//! As with [`Pipeline::run`], a processor without a dead-letter sink does
//! not compile (E0277, "`NoDeadLetter` is not a DeadLetterSink"): there is
//! no default file.
//!
//! ```compile_fail,E0277
//! # use streamsift::batch;
//! # use streamsift::fakes::RecordingRouter;
//! # use streamsift::{ClassifyError, Policy, Prediction};
//! let processor = batch::builder()
//!     .json::<String>()
//!     .classify(|_: &String| async { Ok::<_, ClassifyError>(Prediction::label("x")) })
//!     .policy(Policy::binary(0.5, "oncall"))
//!     .route(RecordingRouter::<String>::new())
//!     .into_batch_processor();
//! ```

use std::fmt;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::classify::{Classifier, Label};
use crate::dead_letter::{DeadLetterSink, Stage};
use crate::decode::Decoder;
use crate::error::SourceError;
use crate::pipeline::{Done, MaybeLabeler, Outcome, Pipeline, PipelineError, Stages, Stats};
use crate::record::{Batch, Checkpoint, Record, ShardId};
use crate::router::Router;
use crate::source::Source;

pub use crate::pipeline::OnExhausted;

/// The source of a [`Pipeline`] that is never run, only turned into a
/// [`BatchProcessor`]: records come from outside (a Lambda event, the KCL
/// daemon). As a [`Source`] it is empty.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSource;

impl Source for NoSource {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        Ok(None)
    }

    async fn commit(&self, _checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        Ok(())
    }
}

/// Starts the builder of a [`BatchProcessor`]: the [`Pipeline`] builder
/// over [`NoSource`]; finish it with [`Pipeline::into_batch_processor`].
pub fn builder() -> Pipeline<NoSource> {
    Pipeline::new(NoSource)
}

/// How one record of a batch ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
#[non_exhaustive]
pub enum RecordOutcome {
    /// Delivered on this route.
    Routed {
        /// The route.
        route: Label,
    },
    /// Accepted by a router that chose not to deliver it
    /// ([`Receipt::skipped`](crate::Receipt::skipped)): done, not routed.
    Skipped {
        /// The route.
        route: Label,
    },
    /// Dropped by the policy.
    Discarded,
    /// Sent for human review (to the labeler, or the review route).
    Reviewed,
    /// Stored in the dead-letter sink, failed at this stage.
    DeadLettered {
        /// Where it failed.
        stage: Stage,
    },
    /// Not done, and worth delivering again: a retryable failure under
    /// [`OnExhausted::Report`], a dead-letter sink that failed, or a record
    /// still in progress when the batch's stop time came.
    FailedRetryable {
        /// The stage it failed at; `None` when abandoned at the stop time
        /// (where it was is not known then).
        stage: Option<Stage>,
        /// What went wrong.
        reason: String,
    },
    /// Not started: the batch's stop time came first.
    NotStarted,
}

impl RecordOutcome {
    /// Routed, skipped, discarded, reviewed or dead-lettered: nothing more
    /// to do, so the record may be checkpointed.
    pub fn is_done(&self) -> bool {
        !matches!(
            self,
            RecordOutcome::FailedRetryable { .. } | RecordOutcome::NotStarted
        )
    }

    /// Whether it was delivered on a route.
    pub fn is_routed(&self) -> bool {
        matches!(self, RecordOutcome::Routed { .. })
    }

    /// Whether it went to the dead-letter sink.
    pub fn is_dead_lettered(&self) -> bool {
        matches!(self, RecordOutcome::DeadLettered { .. })
    }

    fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Routed(route) => RecordOutcome::Routed {
                route: route.clone(),
            },
            Outcome::Skipped(route) => RecordOutcome::Skipped {
                route: route.clone(),
            },
            Outcome::Discarded => RecordOutcome::Discarded,
            Outcome::Review => RecordOutcome::Reviewed,
            Outcome::DeadLettered(stage) => RecordOutcome::DeadLettered { stage: *stage },
            Outcome::SinkFailed { stage, error: e } => RecordOutcome::FailedRetryable {
                stage: Some(*stage),
                reason: format!("the dead-letter sink failed: {e}"),
            },
            Outcome::Exhausted { stage, reason } => RecordOutcome::FailedRetryable {
                stage: Some(*stage),
                reason: reason.clone(),
            },
        }
    }
}

/// What [`BatchProcessor::process`] did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    /// One outcome per input record, in input order.
    pub outcomes: Vec<RecordOutcome>,
    /// The counts. `records_in` counts the records started;
    /// `unfinished` counts those that ended [`RecordOutcome::FailedRetryable`],
    /// so `records_in == routed + skipped + discarded + sent_for_review +
    /// dead_lettered + unfinished` ([`Stats::reconciles`]); records
    /// [`RecordOutcome::NotStarted`] are in neither.
    pub stats: Stats,
    /// Whether the stop time came before every record was done.
    pub stopped_early: bool,
    /// Wall time of the batch. In JSON: `elapsed_secs`, in seconds (a
    /// number), as in [`RunReport`](crate::RunReport).
    #[serde(
        rename = "elapsed_secs",
        alias = "elapsed",
        with = "crate::pipeline::secs"
    )]
    pub elapsed: Duration,
}

impl BatchReport {
    /// Whether every record is done (see [`RecordOutcome::is_done`]).
    pub fn all_done(&self) -> bool {
        self.outcomes.iter().all(RecordOutcome::is_done)
    }

    /// The index of the first record not done, if any.
    pub fn first_not_done(&self) -> Option<usize> {
        self.outcomes.iter().position(|o| !o.is_done())
    }

    /// Records that were not started.
    pub fn not_started(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, RecordOutcome::NotStarted))
            .count()
    }
}

/// Runs the pipeline's stages over batches of records given to it, with
/// bounded concurrency ([`Pipeline::max_in_flight`]). Build one with
/// [`builder`] … [`Pipeline::into_batch_processor`]. It is `Sync`: share it
/// (in an `Arc`) between invocations so the classifier's model is loaded
/// once.
pub struct BatchProcessor<D, C, R, T> {
    stages: Stages<D, C, R, T>,
    on_exhausted: OnExhausted,
}

impl<D, C, R, T> fmt::Debug for BatchProcessor<D, C, R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchProcessor")
            .field("item", &std::any::type_name::<T>())
            .field("policy", &self.stages.policy)
            .field("has_labeler", &self.stages.labeler.is_some())
            .field("config", &self.stages.config)
            .field("on_exhausted", &self.on_exhausted)
            .finish_non_exhaustive()
    }
}

impl<S, D, C, R, T, L, K> Pipeline<S, D, C, R, T, L, K> {
    /// Turns this pipeline's stages, retry rules, timeouts, limits and
    /// dead-letter sink into a [`BatchProcessor`]; the source is dropped.
    /// Like [`Pipeline::run`], it needs a classifier, a router and a
    /// dead-letter sink (compile errors otherwise), and fails with
    /// [`PipelineError::Config`] when no policy is set, a limit is 0, or
    /// review items have nowhere to go.
    pub fn into_batch_processor(self) -> Result<BatchProcessor<D, C, R, T>, PipelineError>
    where
        T: Send + Sync,
        D: Decoder<T>,
        C: Classifier<T>,
        R: Router<T>,
        L: MaybeLabeler<T>,
        K: DeadLetterSink + 'static,
    {
        let (_source, stages, _shutdown) = self.into_parts()?;
        Ok(BatchProcessor {
            stages,
            on_exhausted: OnExhausted::default(),
        })
    }
}

impl<D, C, R, T> BatchProcessor<D, C, R, T>
where
    T: Send + Sync,
    D: Decoder<T>,
    C: Classifier<T>,
    R: Router<T>,
{
    /// Sets what happens to records whose retries ran out (default
    /// [`OnExhausted::DeadLetter`]).
    pub fn on_exhausted(mut self, on_exhausted: OnExhausted) -> Self {
        self.on_exhausted = on_exhausted;
        self
    }

    /// What happens to records whose retries ran out.
    pub fn exhausted_policy(&self) -> OnExhausted {
        self.on_exhausted
    }

    /// Processes `records`, at most `max_in_flight` at once, started in
    /// order. With `stop_at`, no record is started at or after it, and
    /// records still in progress then are abandoned (reported
    /// [`RecordOutcome::FailedRetryable`]; a call in progress may or may not
    /// have taken effect, so redelivery may duplicate it — at-least-once).
    /// Records never started are [`RecordOutcome::NotStarted`].
    pub async fn process(&self, records: Vec<Record>, stop_at: Option<Instant>) -> BatchReport {
        let started_at = Instant::now();
        let n = records.len();
        let mut outcomes: Vec<RecordOutcome> = vec![RecordOutcome::NotStarted; n];
        let mut shards: Vec<Option<ShardId>> = vec![None; n];
        let mut stats = Stats::default();
        let mut inflight = FuturesUnordered::new();
        let mut queue = records.into_iter().enumerate();
        let mut stopped = false;
        let stop = async {
            match stop_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stop);
        loop {
            while !stopped && inflight.len() < self.stages.config.max_in_flight {
                if stop_at.is_some_and(|at| Instant::now() >= at) {
                    stopped = true;
                    break;
                }
                let Some((index, record)) = queue.next() else {
                    break;
                };
                stats.records_in += 1;
                stats
                    .shards
                    .entry(record.shard.clone())
                    .or_default()
                    .records_in += 1;
                shards[index] = Some(record.shard.clone());
                let key = index as u64;
                inflight.push(self.stages.process(
                    record,
                    index,
                    key,
                    key,
                    Instant::now(),
                    self.on_exhausted,
                ));
                stats.peak_in_flight = stats.peak_in_flight.max(inflight.len());
            }
            if inflight.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                Some(done) = inflight.next() => {
                    let done: Done = done;
                    count(&mut stats, &done, shards[done.slot].as_ref());
                    outcomes[done.slot] = RecordOutcome::of(&done.outcome);
                }
                () = &mut stop, if !stopped => {
                    stopped = true;
                    // Abandon what is in progress: dropping the futures
                    // cancels their calls.
                    inflight.clear();
                }
            }
        }
        drop(inflight);
        let mut stopped_early = false;
        for (outcome, shard) in outcomes.iter_mut().zip(&shards) {
            if let (RecordOutcome::NotStarted, Some(shard)) = (&*outcome, shard) {
                *outcome = RecordOutcome::FailedRetryable {
                    stage: None,
                    reason: "still in progress at the batch's stop time; abandoned".into(),
                };
                stats.unfinished += 1;
                stats.shards.entry(shard.clone()).or_default().unfinished += 1;
                stopped_early = true;
            }
        }
        stopped_early |= outcomes.contains(&RecordOutcome::NotStarted);
        debug_assert!(
            stats.reconciles(),
            "batch stats do not reconcile: {stats:?}"
        );
        BatchReport {
            outcomes,
            stats,
            stopped_early,
            elapsed: started_at.elapsed(),
        }
    }
}

/// Counts one finished record, in total and for its shard.
fn count(stats: &mut Stats, done: &Done, shard: Option<&ShardId>) {
    stats.retries += u64::from(done.tries.retries);
    stats.throttled += u64::from(done.tries.throttled);
    stats.panics += u64::from(done.panicked);
    stats.decoded += u64::from(done.decoded);
    if let Some(label) = &done.classified {
        *stats.classified.entry(label.clone()).or_insert(0) += 1;
    }
    if let Outcome::Routed(route) = &done.outcome {
        *stats.routed_by_route.entry(route.clone()).or_insert(0) += 1;
    }
    stats.tally(&done.outcome);
    if let Some(shard) = shard {
        stats
            .shards
            .entry(shard.clone())
            .or_default()
            .tally(&done.outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::classify::Prediction;
    use crate::dead_letter::MemoryDeadLetter;
    use crate::error::{ClassifyError, RouteError};
    use crate::fakes::RecordingRouter;
    use crate::pipeline::RetryPolicy;
    use crate::policy::Policy;
    use crate::record::Sequence;
    use crate::router::{Delivery, Receipt};

    #[derive(Clone, Debug, serde::Deserialize)]
    struct Msg {
        text: String,
    }

    fn records(texts: &[&str]) -> Vec<Record> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let shard = ShardId::new(if i % 2 == 0 { "s0" } else { "s1" });
                let body = format!("{{\"text\":\"{t}\"}}");
                Record::new(
                    shard,
                    Sequence::from_offset(i as u64),
                    "k",
                    body.into_bytes(),
                )
            })
            .collect()
    }

    fn keyword(m: &Msg) -> futures::future::Ready<Result<Prediction, ClassifyError>> {
        let score = if m.text.contains("down") { 0.9 } else { 0.1 };
        futures::future::ready(Ok(Prediction::binary("actionable", "noise", score)))
    }

    fn unavailable(_: &Delivery<'_, Msg>) -> futures::future::Ready<Result<Receipt, RouteError>> {
        futures::future::ready(Err(RouteError::unavailable("503")))
    }

    fn retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            multiplier: 1.0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_retries_are_dead_lettered_by_default_and_reported_on_request() {
        let dead = MemoryDeadLetter::new();
        let processor = builder()
            .json::<Msg>()
            .classify(keyword)
            .policy(Policy::binary(0.5, "oncall"))
            .route(unavailable)
            .dead_letter(dead.clone())
            .retry(retry())
            .into_batch_processor()
            .unwrap();
        assert_eq!(processor.exhausted_policy(), OnExhausted::DeadLetter);
        let report = processor
            .process(records(&["api down", "fine"]), None)
            .await;
        assert_eq!(
            report.outcomes[0],
            RecordOutcome::DeadLettered {
                stage: Stage::Route
            }
        );
        assert_eq!(report.outcomes[1], RecordOutcome::Discarded);
        assert!(report.all_done());
        assert_eq!(dead.len(), 1);

        let processor = processor.on_exhausted(OnExhausted::Report);
        let report = processor
            .process(records(&["api down", "fine"]), None)
            .await;
        assert!(matches!(
            &report.outcomes[0],
            RecordOutcome::FailedRetryable { stage: Some(Stage::Route), reason } if reason.contains("503")
        ));
        assert_eq!(report.first_not_done(), Some(0));
        assert_eq!(dead.len(), 1, "reported, not dead-lettered");
        assert_eq!(report.stats.unfinished, 1);
        assert_eq!(report.stats.retries, 1);
        assert!(report.stats.reconciles());
        assert_eq!(report.stats.shards[&ShardId::new("s0")].unfinished, 1);
        assert_eq!(report.stats.shards[&ShardId::new("s1")].discarded, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_in_flight_records_run_at_once() {
        let running = std::sync::Arc::new(AtomicUsize::new(0));
        let peak = std::sync::Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let slow = move |_: &Msg| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", 0.9))
            }
        };
        let router = RecordingRouter::new();
        let processor = builder()
            .json::<Msg>()
            .classify(slow)
            .policy(Policy::binary(0.5, "oncall"))
            .route(router.clone())
            .dead_letter(MemoryDeadLetter::new())
            .max_in_flight(3)
            .into_batch_processor()
            .unwrap();
        let texts: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let report = processor.process(records(&texts), None).await;
        assert!(report.all_done());
        assert_eq!(router.len(), 10);
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(report.stats.peak_in_flight, 3);
        assert_eq!(report.stats.routed_by_route[&Label::from("oncall")], 10);
    }

    #[test]
    fn a_processor_needs_a_policy() {
        let err = builder()
            .json::<Msg>()
            .classify(keyword)
            .route(RecordingRouter::<Msg>::new())
            .dead_letter(MemoryDeadLetter::new())
            .into_batch_processor()
            .unwrap_err();
        assert!(
            matches!(err, PipelineError::Config(crate::ConfigError::NoPolicy)),
            "{err}"
        );
        assert!(err.to_string().contains("add `.policy("), "{err}");
    }
}
