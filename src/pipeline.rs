//! The [`Pipeline`]: Source → decode → Classifier → Policy → Router, with
//! the Labeler taking the review band and a dead-letter sink taking failures.
//!
//! # Guarantees
//!
//! - **At-least-once.** A shard's checkpoint is committed only when every
//!   record at or before it has been routed, discarded, sent for review or
//!   dead-lettered, even though records finish out of order. After a crash,
//!   the source resumes from the last commit, so the records redelivered are
//!   at most those dispatched but not yet behind the committed watermark
//!   (bounded by [`Pipeline::max_unacked`]).
//! - **Bounded memory.** At most [`Pipeline::max_in_flight`] records are
//!   being processed, at most one fetched batch waits for a slot, and the
//!   source is not read while the pipeline is full (back-pressure).
//! - **No stalls on poison.** Retries are bounded in attempts and time; a
//!   record that cannot be handled goes to the dead-letter sink with its
//!   reason and the shard moves on.
//! - **Nothing dropped silently.** If the dead-letter sink itself fails after
//!   retries, the pipeline stops without committing past that record.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use futures::FutureExt as _;
use futures::future::Either;
use futures::stream::{FuturesUnordered, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::classify::{BoxFuture, Classifier, Label, Prediction};
use crate::dead_letter::{DeadLetter, DeadLetterSink, JsonLinesDeadLetter, Stage};
use crate::decode::{DecodeError, Decoder, Json};
use crate::error::{
    ClassifyError, DeadLetterError, ErrorClass, LabelError, RouteError, SourceError,
};
use crate::labeler::{LabelTask, Labeler};
use crate::policy::{Action, Policy};
use crate::record::{Batch, Checkpoint, Position, Record, Sequence, ShardId};
use crate::router::{Delivery, Router};
use crate::source::Source;
use crate::util::unit_f64;

/// The route name used for review items when no [`Labeler`] is set: they
/// are delivered to the router on this route instead, so nothing in the
/// review band is dropped.
pub const REVIEW_ROUTE: Label = Label::from_static("review");

/// Exponential backoff with full jitter for retryable errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts per call, including the first (at least 1).
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry.
    pub initial_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
    /// Growth of the ceiling per attempt.
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (1-based): a uniform draw in
    /// `[0, min(max, initial * multiplier^(retry-1))]` ("full jitter"), from
    /// `unit` in `[0, 1)`.
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let exp = self.multiplier.powi(retry.saturating_sub(1).min(64) as i32);
        let ceiling = self
            .initial_backoff
            .as_secs_f64()
            .mul_add(exp, 0.0)
            .min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64((ceiling * unit).max(0.0))
    }
}

/// A handle that asks a running pipeline to stop: it stops reading, drains
/// what is in flight, commits, and returns its report.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A new, untriggered handle.
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Asks the pipeline to stop. Idempotent.
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }

    /// Whether stop was asked.
    pub fn is_cancelled(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once stop is asked.
    pub async fn cancelled(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Figures for one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStats {
    /// Records dispatched for processing.
    pub records_in: u64,
    /// Records delivered to a route.
    pub routed: u64,
    /// Records dropped by the policy.
    pub discarded: u64,
    /// Records sent for human review.
    pub sent_for_review: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Records whose dead letter could not be stored (the run stopped).
    pub unfinished: u64,
}

impl ShardStats {
    /// `records_in == routed + discarded + sent_for_review + dead_lettered + unfinished`.
    pub fn reconciles(&self) -> bool {
        self.records_in
            == self.routed
                + self.discarded
                + self.sent_for_review
                + self.dead_lettered
                + self.unfinished
    }
}

/// What a run did, counted. The same figures go to the `metrics` facade.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Records dispatched for processing.
    pub records_in: u64,
    /// Records decoded.
    pub decoded: u64,
    /// Records classified, per predicted label.
    pub classified: BTreeMap<Label, u64>,
    /// Records delivered to a route.
    pub routed: u64,
    /// Deliveries per route.
    pub routed_by_route: BTreeMap<Label, u64>,
    /// Records dropped by the policy.
    pub discarded: u64,
    /// Records sent for human review.
    pub sent_for_review: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Dead letters per stage (`decode`, `classify`, `route`, `review`).
    pub dead_lettered_by_stage: BTreeMap<String, u64>,
    /// Records whose dead letter could not be stored (the run stopped).
    pub unfinished: u64,
    /// Retries of classify, route, review and dead-letter calls.
    pub retries: u64,
    /// How many of the failures retried were throttling.
    pub throttled: u64,
    /// Retries of source reads.
    pub source_retries: u64,
    /// Checkpoint commits that succeeded.
    pub commits: u64,
    /// Checkpoint commits that failed (and were tried again later).
    pub commit_failures: u64,
    /// The most records waiting on a component at once (records whose
    /// components finish on the first poll are never waiting).
    pub peak_in_flight: usize,
    /// The same counts per shard.
    pub shards: BTreeMap<ShardId, ShardStats>,
}

impl Stats {
    /// The reconciliation invariant, in total and per shard:
    /// `records_in == routed + discarded + sent_for_review + dead_lettered + unfinished`.
    pub fn reconciles(&self) -> bool {
        let total = ShardStats {
            records_in: self.records_in,
            routed: self.routed,
            discarded: self.discarded,
            sent_for_review: self.sent_for_review,
            dead_lettered: self.dead_lettered,
            unfinished: self.unfinished,
        };
        total.reconciles() && self.shards.values().all(ShardStats::reconciles)
    }
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The source said the stream ended.
    SourceExhausted,
    /// [`Shutdown::cancel`] was called.
    Shutdown,
    /// An error stopped the run; see [`PipelineError`].
    Error,
}

/// The result of [`Pipeline::run`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The counts.
    pub stats: Stats,
    /// The last checkpoint committed per shard during this run.
    pub checkpoints: Vec<Checkpoint>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Why it ended.
    pub stopped: StopReason,
    /// Labels gathered and model versions used, when the pipeline was given
    /// an active-learning stats handle ([`Pipeline::active_stats`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<crate::active::ActiveStats>,
}

/// Why a run failed. Each carries the report of what was done before.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Reading from the source failed permanently.
    #[error("source failed permanently, pipeline stopped: {source}")]
    Source {
        /// The source's error.
        #[source]
        source: SourceError,
        /// What was done before.
        report: Box<RunReport>,
    },
    /// Committing checkpoints failed permanently (for example, a lost lease).
    #[error("checkpoint commit failed, pipeline stopped: {source}")]
    Commit {
        /// The source's error.
        #[source]
        source: SourceError,
        /// What was done before.
        report: Box<RunReport>,
    },
    /// A dead letter could not be stored even after retries. The pipeline
    /// stopped without committing past the record, so it will be delivered
    /// again after a restart; fix the sink (disk full? permissions?) first.
    #[error(
        "dead-letter sink failed for record {record_id}; stopped without committing past it: {source}"
    )]
    DeadLetter {
        /// The record that could not be dead-lettered.
        record_id: String,
        /// The sink's error.
        #[source]
        source: DeadLetterError,
        /// What was done before.
        report: Box<RunReport>,
    },
    /// The pipeline was configured wrongly.
    #[error("invalid pipeline configuration: {0}")]
    Config(String),
}

impl PipelineError {
    /// The run's report, when the run started.
    pub fn report(&self) -> Option<&RunReport> {
        match self {
            PipelineError::Source { report, .. }
            | PipelineError::Commit { report, .. }
            | PipelineError::DeadLetter { report, .. } => Some(report),
            PipelineError::Config(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) max_in_flight: usize,
    max_unacked: usize,
    commit_every: u64,
    commit_interval: Duration,
    retry: RetryPolicy,
    pub(crate) call_timeout: Duration,
    pub(crate) record_timeout: Duration,
    max_record_bytes: usize,
    seed: u64,
    active: Option<crate::active::ActiveStatsHandle>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_in_flight: 256,
            max_unacked: 10_000,
            commit_every: 1_000,
            commit_interval: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            call_timeout: Duration::from_secs(10),
            record_timeout: Duration::from_secs(60),
            max_record_bytes: 1024 * 1024,
            seed: 0x5eed,
            active: None,
        }
    }
}

/// A stream → classify → notify pipeline.
///
/// The builder reads like the data flow and does no work until
/// [`run`](Pipeline::run):
///
/// ```
/// use streamsift::fakes::{MemorySource, RecordingRouter};
/// use streamsift::{MemoryDeadLetter, Pipeline, Policy, Prediction, ClassifyError};
///
/// #[derive(Clone, Debug, serde::Deserialize)]
/// struct Msg { text: String }
///
/// # tokio_test_block(async {
/// let source = MemorySource::from_payloads(1, vec![r#"{"text":"server down"}"#, r#"{"text":"nice"}"#, "oops"]);
/// let router = RecordingRouter::new();
/// let dead = MemoryDeadLetter::new();
/// let report = Pipeline::new(source)
///     .json::<Msg>()
///     .classify(|m: &Msg| {
///         let score = if m.text.contains("down") { 0.9 } else { 0.1 };
///         async move { Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", score)) }
///     })
///     .policy(Policy::binary(0.5, "oncall"))
///     .route(router.clone())
///     .dead_letter(dead.clone())
///     .run()
///     .await
///     .unwrap();
/// assert_eq!(report.stats.routed, 1);
/// assert_eq!(report.stats.discarded, 1);
/// assert_eq!(report.stats.dead_lettered, 1); // "oops" is not JSON
/// assert_eq!(router.deliveries()[0].item.text, "server down");
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
pub struct Pipeline<S, D = (), C = (), R = (), T = ()> {
    source: S,
    pub(crate) decoder: D,
    pub(crate) classifier: C,
    pub(crate) router: R,
    pub(crate) policy: Option<Policy>,
    pub(crate) labeler: Option<Box<dyn Labeler<T>>>,
    pub(crate) dead_letter: Option<Arc<dyn DeadLetterSink>>,
    pub(crate) config: Config,
    shutdown: Shutdown,
    _item: PhantomData<fn() -> T>,
}

impl<S, D, C, R, T> fmt::Debug for Pipeline<S, D, C, R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("item", &std::any::type_name::<T>())
            .field("policy", &self.policy)
            .field("has_labeler", &self.labeler.is_some())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: Source> Pipeline<S> {
    /// Starts a pipeline reading from `source`.
    pub fn new(source: S) -> Self {
        Pipeline {
            source,
            decoder: (),
            classifier: (),
            router: (),
            policy: None,
            labeler: None,
            dead_letter: None,
            config: Config::default(),
            shutdown: Shutdown::new(),
            _item: PhantomData,
        }
    }
}

impl<S, D, C, R, T> Pipeline<S, D, C, R, T> {
    /// Decodes records into `T2` with `decoder` (any [`Decoder`], including
    /// a closure `Fn(&Record) -> Result<T2, DecodeError>`).
    pub fn decode<T2, D2: Decoder<T2>>(self, decoder: D2) -> Pipeline<S, D2, C, R, T2> {
        Pipeline {
            source: self.source,
            decoder,
            classifier: self.classifier,
            router: self.router,
            policy: self.policy,
            labeler: None,
            dead_letter: self.dead_letter,
            config: self.config,
            shutdown: self.shutdown,
            _item: PhantomData,
        }
    }

    /// Decodes records as JSON into `T2` (serde).
    pub fn json<T2: serde::de::DeserializeOwned>(self) -> Pipeline<S, Json<T2>, C, R, T2> {
        self.decode(Json::<T2>::new())
    }

    /// Sets the classifier.
    pub fn classify<C2>(self, classifier: C2) -> Pipeline<S, D, C2, R, T> {
        Pipeline {
            source: self.source,
            decoder: self.decoder,
            classifier,
            router: self.router,
            policy: self.policy,
            labeler: self.labeler,
            dead_letter: self.dead_letter,
            config: self.config,
            shutdown: self.shutdown,
            _item: PhantomData,
        }
    }

    /// Sets the decision policy (required).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Sets the router that delivers actionable items. Combine several with
    /// [`ByLabel`](crate::ByLabel), [`FanOut`](crate::FanOut) and friends.
    pub fn route<R2>(self, router: R2) -> Pipeline<S, D, C, R2, T> {
        Pipeline {
            source: self.source,
            decoder: self.decoder,
            classifier: self.classifier,
            router,
            policy: self.policy,
            labeler: self.labeler,
            dead_letter: self.dead_letter,
            config: self.config,
            shutdown: self.shutdown,
            _item: PhantomData,
        }
    }

    /// Sends items the policy marks for review to `labeler`. Without one,
    /// they are delivered to the router on the route [`REVIEW_ROUTE`].
    pub fn review(mut self, labeler: impl Labeler<T> + 'static) -> Self
    where
        T: Sync,
    {
        self.labeler = Some(Box::new(labeler));
        self
    }

    /// Where failed records go. Defaults to a [`JsonLinesDeadLetter`] at
    /// `./dead-letter.jsonl`, created on the first failure.
    pub fn dead_letter(mut self, sink: impl DeadLetterSink + 'static) -> Self {
        self.dead_letter = Some(Arc::new(sink));
        self
    }

    /// The most records processed at once (default 256).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n;
        self
    }

    /// The most records dispatched but not yet behind the committed
    /// watermark, summed over shards (default 10,000). A slow record holds
    /// back its shard's checkpoint; this bounds how far the others may run
    /// ahead of it, which bounds both memory and the duplicates after a crash.
    pub fn max_unacked(mut self, n: usize) -> Self {
        self.config.max_unacked = n;
        self
    }

    /// Commit checkpoints after every `records` completed records, or every
    /// `interval`, whichever comes first (default 1,000 and 5 s).
    pub fn commit_every(mut self, records: u64, interval: Duration) -> Self {
        self.config.commit_every = records;
        self.config.commit_interval = interval;
        self
    }

    /// The retry policy for classify, route, review and dead-letter calls.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// The time limit of one call attempt (default 10 s); a timeout is
    /// retryable.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// The time limit for one record, all stages and retries included
    /// (default 60 s). A record over it is dead-lettered as `timeout`.
    pub fn record_timeout(mut self, timeout: Duration) -> Self {
        self.config.record_timeout = timeout;
        self
    }

    /// Records with larger payloads are dead-lettered as `too_large` before
    /// decoding (default 1 MiB, the Kinesis record limit).
    pub fn max_record_bytes(mut self, bytes: usize) -> Self {
        self.config.max_record_bytes = bytes;
        self
    }

    /// Seeds the retry jitter, for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Puts the active-learning counts of `stats` (labels gathered, model
    /// versions used; see [`active`](crate::active)) into the run report.
    pub fn active_stats(mut self, stats: crate::active::ActiveStatsHandle) -> Self {
        self.config.active = Some(stats);
        self
    }

    /// Uses `shutdown` to stop the run.
    pub fn shutdown_handle(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// The handle that stops this pipeline's run.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }
}

// ---------------------------------------------------------------------------
// Running

/// The errors the pipeline retries, seen uniformly.
trait CallError: fmt::Display {
    fn class(&self) -> ErrorClass;
    fn is_throttling(&self) -> bool;
    fn timeout(after: Duration) -> Self;
    fn kind(&self) -> &'static str;
}

macro_rules! call_error {
    ($t:ty) => {
        impl CallError for $t {
            fn class(&self) -> ErrorClass {
                <$t>::class(self)
            }
            fn is_throttling(&self) -> bool {
                <$t>::is_throttling(self)
            }
            fn timeout(after: Duration) -> Self {
                <$t>::Timeout(after)
            }
            fn kind(&self) -> &'static str {
                <$t>::kind(self)
            }
        }
    };
}
call_error!(ClassifyError);
call_error!(RouteError);
call_error!(LabelError);
call_error!(DeadLetterError);

/// Counts of retries made while processing one record.
#[derive(Default)]
pub(crate) struct Tries {
    pub(crate) retries: u32,
    pub(crate) throttled: u32,
}

/// How one record ended.
pub(crate) enum Outcome {
    Routed(Label),
    Discarded,
    Review,
    DeadLettered(Stage),
    /// The dead-letter sink failed: the record is not done.
    Unfinished(DeadLetterError),
}

/// A finished record, handed back to the run loop.
pub(crate) struct Done {
    pub(crate) shard: usize,
    pub(crate) index: u64,
    sequence: Sequence,
    record_id: Option<String>,
    /// Whether the record got past decoding.
    pub(crate) decoded: bool,
    pub(crate) classified: Option<Label>,
    pub(crate) outcome: Outcome,
    pub(crate) tries: Tries,
    arrival: SystemTime,
}

pub(crate) struct Ctx<'a, D, C, R, T> {
    pub(crate) decoder: &'a D,
    pub(crate) classifier: &'a C,
    pub(crate) router: &'a R,
    pub(crate) policy: &'a Policy,
    pub(crate) labeler: Option<&'a dyn Labeler<T>>,
    pub(crate) dead_letter: &'a dyn DeadLetterSink,
    pub(crate) config: &'a Config,
}

/// What the stage machine got to before an outcome, so a record timeout can
/// say where it was.
pub(crate) const AT_DECODE: u8 = 0;
const AT_CLASSIFY: u8 = 1;
const AT_ROUTE: u8 = 2;
const AT_REVIEW: u8 = 3;

pub(crate) fn stage_of(code: u8) -> Stage {
    match code {
        AT_DECODE => Stage::Decode,
        AT_CLASSIFY => Stage::Classify,
        AT_ROUTE => Stage::Route,
        _ => Stage::Review,
    }
}

pin_project_lite::pin_project! {
    /// Like `tokio::time::timeout_at`, but the timer is only made (boxed)
    /// when the inner future does not finish on its first poll: fast calls
    /// pay for no timer and carry none in their state.
    pub(crate) struct LazyTimeout<F> {
        #[pin]
        inner: F,
        deadline: Instant,
        sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F: Future> Future for LazyTimeout<F> {
    type Output = Result<F::Output, ()>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let me = self.project();
        if let Poll::Ready(v) = me.inner.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let deadline = *me.deadline;
        let sleep = me
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

pub(crate) fn lazy_timeout_at<F: Future>(deadline: Instant, inner: F) -> LazyTimeout<F> {
    LazyTimeout {
        inner,
        deadline,
        sleep: None,
    }
}

/// Calls `call` until it succeeds, fails permanently, or runs out of
/// attempts, with jittered backoff between attempts. The first attempt's
/// deadline is given (computed once per dispatch, to keep clock reads off
/// the hot path); later ones start from the current time.
async fn with_retries<O, E, F, Fut>(
    config: &Config,
    key: u64,
    first_deadline: Instant,
    tries: &mut Tries,
    mut call: F,
) -> (Result<O, E>, u32)
where
    E: CallError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<O, E>>,
{
    // The first attempt runs inline; retries are rare and carry a timer and
    // an error, so they run out of line and cost nothing until needed.
    let first = match lazy_timeout_at(first_deadline, call()).await {
        Ok(r) => r,
        Err(()) => Err(E::timeout(config.call_timeout)),
    };
    match first {
        Ok(v) => (Ok(v), 1),
        Err(e) if e.class() == ErrorClass::Retryable && config.retry.max_attempts > 1 => {
            Box::pin(retry_loop(config, key, tries, call, e)).await
        }
        Err(e) => (Err(e), 1),
    }
}

async fn retry_loop<O, E, F, Fut>(
    config: &Config,
    key: u64,
    tries: &mut Tries,
    mut call: F,
    first_error: E,
) -> (Result<O, E>, u32)
where
    E: CallError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<O, E>>,
{
    let max = config.retry.max_attempts.max(1);
    let mut attempt = 1u32;
    let mut error = first_error;
    loop {
        // `error` is retryable and `attempt < max` here.
        tries.retries += 1;
        if error.is_throttling() {
            tries.throttled += 1;
        }
        tracing::debug!(attempt, error = %error, "retrying");
        let unit = unit_f64(config.seed, key, u64::from(attempt));
        tokio::time::sleep(config.retry.backoff(attempt, unit)).await;
        attempt += 1;
        let deadline = Instant::now() + config.call_timeout;
        let result = match tokio::time::timeout_at(deadline, call()).await {
            Ok(r) => r,
            Err(_) => Err(E::timeout(config.call_timeout)),
        };
        match result {
            Ok(v) => return (Ok(v), attempt),
            Err(e) if e.class() == ErrorClass::Retryable && attempt < max => error = e,
            Err(e) => return (Err(e), attempt),
        }
    }
}

pub(crate) struct Failure {
    pub(crate) stage: Stage,
    pub(crate) class: ErrorClass,
    pub(crate) kind: &'static str,
    pub(crate) reason: String,
    pub(crate) attempts: u32,
    pub(crate) route: Option<Label>,
}

fn failure<E: CallError>(stage: Stage, e: &E, attempts: u32, route: Option<Label>) -> Failure {
    let class = e.class();
    let reason = if class == ErrorClass::Retryable {
        format!("gave up after {attempts} attempts: {e}")
    } else {
        e.to_string()
    };
    Failure {
        stage,
        class,
        kind: e.kind(),
        reason,
        attempts,
        route,
    }
}

/// Decode → classify → policy → route (or review) for one record. Returns
/// the outcome, or the failure to dead-letter.
pub(crate) async fn stages<T, D, C, R>(
    ctx: &Ctx<'_, D, C, R, T>,
    record: &Record,
    key: u64,
    call_deadline: Instant,
    at: &AtomicU8,
    tries: &mut Tries,
    classified: &mut Option<Label>,
) -> Result<Outcome, Failure>
where
    T: Send + Sync,
    D: Decoder<T>,
    C: Classifier<T>,
    R: Router<T>,
{
    let decode_failure = |e: DecodeError| Failure {
        stage: Stage::Decode,
        class: ErrorClass::Permanent,
        kind: e.kind(),
        reason: e.to_string(),
        attempts: 1,
        route: None,
    };
    if record.payload.len() > ctx.config.max_record_bytes {
        return Err(decode_failure(DecodeError::TooLarge {
            size: record.payload.len(),
            limit: ctx.config.max_record_bytes,
        }));
    }
    if let Some(defect) = &record.defect {
        return Err(decode_failure(DecodeError::Corrupt(defect.to_string())));
    }
    let item = ctx.decoder.decode(record).map_err(decode_failure)?;

    at.store(AT_CLASSIFY, Ordering::Relaxed);
    let (prediction, attempts) = with_retries(ctx.config, key, call_deadline, tries, || {
        ctx.classifier.classify(&item)
    })
    .await;
    let prediction: Prediction =
        prediction.map_err(|e| failure(Stage::Classify, &e, attempts, None))?;
    *classified = Some(prediction.label.clone());

    match ctx.policy.decide(&prediction) {
        Action::Discard => Ok(Outcome::Discarded),
        Action::Notify(route) => {
            at.store(AT_ROUTE, Ordering::Relaxed);
            let delivery = Delivery {
                item: &item,
                record,
                prediction: &prediction,
                route: &route,
            };
            let (receipt, attempts) =
                with_retries(ctx.config, key ^ 1, call_deadline, tries, || {
                    ctx.router.route(&delivery)
                })
                .await;
            match receipt {
                Ok(_) => Ok(Outcome::Routed(route)),
                Err(e) => Err(failure(Stage::Route, &e, attempts, Some(route))),
            }
        }
        Action::Review => {
            at.store(AT_REVIEW, Ordering::Relaxed);
            if let Some(labeler) = ctx.labeler {
                let task = [LabelTask {
                    id: &record.id,
                    item: &item,
                    prediction: Some(&prediction),
                }];
                let (submitted, attempts) =
                    with_retries(ctx.config, key ^ 2, call_deadline, tries, || {
                        labeler.submit(&task)
                    })
                    .await;
                match submitted {
                    Ok(_) => Ok(Outcome::Review),
                    Err(e) => Err(failure(Stage::Review, &e, attempts, None)),
                }
            } else {
                let delivery = Delivery {
                    item: &item,
                    record,
                    prediction: &prediction,
                    route: &REVIEW_ROUTE,
                };
                let (receipt, attempts) =
                    with_retries(ctx.config, key ^ 2, call_deadline, tries, || {
                        ctx.router.route(&delivery)
                    })
                    .await;
                match receipt {
                    Ok(_) => Ok(Outcome::Review),
                    Err(e) => Err(failure(Stage::Review, &e, attempts, Some(REVIEW_ROUTE))),
                }
            }
        }
    }
}

/// Processes one record to its end: an outcome, or a stored dead letter.
///
/// Not an `async fn`: that would copy `record` into its state twice (the
/// argument and its local), growing every record's future by 152 bytes.
#[allow(clippy::manual_async_fn)]
fn process<'c, 'a, T, D, C, R>(
    ctx: &'c Ctx<'a, D, C, R, T>,
    record: Record,
    shard: usize,
    index: u64,
    dispatched: Instant,
) -> impl Future<Output = Done> + Send + 'c
where
    T: Send + Sync,
    D: Decoder<T>,
    C: Classifier<T>,
    R: Router<T>,
{
    async move {
        let key = index ^ ((shard as u64) << 48);
        let at = AtomicU8::new(AT_DECODE);
        let mut tries = Tries::default();
        let mut classified = None;
        let call_deadline = dispatched + ctx.config.call_timeout;
        let record_deadline = dispatched + ctx.config.record_timeout;
        let result = lazy_timeout_at(
            record_deadline,
            stages(
                ctx,
                &record,
                key,
                call_deadline,
                &at,
                &mut tries,
                &mut classified,
            ),
        )
        .await;
        let fail = match result {
            Ok(Ok(outcome)) => {
                return Done {
                    shard,
                    index,
                    arrival: record.arrival,
                    sequence: record.sequence,
                    record_id: None,
                    decoded: true,
                    classified,
                    outcome,
                    tries,
                };
            }
            Ok(Err(fail)) => fail,
            Err(_) => Failure {
                stage: stage_of(at.load(Ordering::Relaxed)),
                class: ErrorClass::Retryable,
                kind: "timeout",
                reason: format!(
                    "record not done within the record timeout of {:?}",
                    ctx.config.record_timeout
                ),
                attempts: tries.retries + 1,
                route: None,
            },
        };
        // The dead-letter path is cold: boxed, so its state does not bloat the
        // future every record carries.
        Box::pin(dead_letter(
            ctx, record, fail, shard, index, key, tries, classified,
        ))
        .await
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn dead_letter<T, D, C, R>(
    ctx: &Ctx<'_, D, C, R, T>,
    record: Record,
    fail: Failure,
    shard: usize,
    index: u64,
    key: u64,
    mut tries: Tries,
    classified: Option<Label>,
) -> Done
where
    T: Send + Sync,
    D: Decoder<T>,
    C: Classifier<T>,
    R: Router<T>,
{
    tracing::warn!(
        record = %record.id,
        stage = fail.stage.as_str(),
        kind = fail.kind,
        reason = %fail.reason,
        "dead-lettering record"
    );
    let dead = DeadLetter {
        record,
        stage: fail.stage,
        class: fail.class,
        kind: fail.kind.to_string(),
        reason: fail.reason,
        attempts: fail.attempts,
        route: fail.route.map(|r| r.to_string()),
        at: SystemTime::now(),
    };
    // Storing a dead letter is retried on its own budget, outside the record
    // timeout: giving up here would lose the record.
    let (stored, attempts) = with_retries(
        ctx.config,
        key ^ 3,
        Instant::now() + ctx.config.call_timeout,
        &mut tries,
        || ctx.dead_letter.store(&dead),
    )
    .await;
    let outcome = match stored {
        Ok(()) => Outcome::DeadLettered(dead.stage),
        Err(e) => {
            tracing::error!(record = %dead.record.id, attempts, error = %e, "dead-letter sink failed");
            Outcome::Unfinished(e)
        }
    };
    Done {
        shard,
        index,
        arrival: dead.record.arrival,
        sequence: dead.record.sequence,
        record_id: Some(dead.record.id),
        decoded: dead.stage != Stage::Decode,
        classified,
        outcome,
        tries,
    }
}

/// Per-shard bookkeeping for ordered checkpoints.
struct ShardTrack {
    shard: ShardId,
    /// Absolute index of `slots[0]`.
    base: u64,
    /// One slot per dispatched record not yet behind the watermark: `None`
    /// while in flight, its sequence once done.
    slots: VecDeque<Option<Sequence>>,
    /// The last record of the contiguous done prefix.
    watermark: Option<Sequence>,
    /// The last position committed.
    committed: Option<Position>,
    /// Absolute index one past the last record of the checkpoint being
    /// committed (the value of `base` when it was taken).
    sent_base: u64,
    /// Absolute index one past the last committed record: records from
    /// here on count as unacked, done or not, until a commit covers them.
    committed_base: u64,
    /// The source said the shard is closed.
    ended: bool,
    stats: ShardStats,
}

impl ShardTrack {
    fn new(shard: ShardId) -> Self {
        ShardTrack {
            shard,
            base: 0,
            slots: VecDeque::new(),
            watermark: None,
            committed: None,
            sent_base: 0,
            committed_base: 0,
            ended: false,
            stats: ShardStats::default(),
        }
    }

    /// Marks a record done and advances the watermark over the done prefix.
    /// Returns how many slots were released.
    fn complete(&mut self, index: u64, sequence: Sequence) -> usize {
        let pos = (index - self.base) as usize;
        self.slots[pos] = Some(sequence);
        let mut released = 0;
        while let Some(Some(_)) = self.slots.front() {
            if let Some(Some(seq)) = self.slots.pop_front() {
                self.watermark = Some(seq);
            }
            self.base += 1;
            released += 1;
        }
        released
    }

    /// The position to commit, if it moved since the last commit.
    fn pending_position(&self) -> Option<Position> {
        let pos = if self.ended && self.slots.is_empty() {
            Position::ShardEnd
        } else {
            Position::Sequence(self.watermark.clone()?)
        };
        (self.committed.as_ref() != Some(&pos)).then_some(pos)
    }
}

/// Counts kept as the run goes, flushed to `metrics` at each commit.
struct Meter {
    stats: Stats,
    flushed: Stats,
    /// Per-label counts on the hot path: a short list scanned linearly is
    /// cheaper than a map for the handful of labels a model has. Folded
    /// into `stats` by `sync`.
    classified: Vec<(Label, u64)>,
    routed_by_route: Vec<(Label, u64)>,
    latency: metrics::Histogram,
}

impl Meter {
    fn new() -> Self {
        Meter {
            stats: Stats::default(),
            flushed: Stats::default(),
            classified: Vec::new(),
            routed_by_route: Vec::new(),
            latency: metrics::histogram!("streamsift_end_to_end_latency_seconds"),
        }
    }

    fn bump(counts: &mut Vec<(Label, u64)>, label: &Label) {
        match counts.iter_mut().find(|(l, _)| l == label) {
            Some((_, n)) => *n += 1,
            None => counts.push((label.clone(), 1)),
        }
    }

    /// Folds the hot-path label counts into `stats`.
    fn sync(&mut self) {
        for (label, n) in &self.classified {
            self.stats.classified.insert(label.clone(), *n);
        }
        for (route, n) in &self.routed_by_route {
            self.stats.routed_by_route.insert(route.clone(), *n);
        }
    }

    /// Sends the increments since the last flush to the `metrics` recorder.
    fn flush(&mut self, in_flight: usize) {
        self.sync();
        let (s, f) = (&self.stats, &self.flushed);
        let plain = [
            ("streamsift_records_in_total", s.records_in, f.records_in),
            ("streamsift_decoded_total", s.decoded, f.decoded),
            ("streamsift_routed_total", s.routed, f.routed),
            ("streamsift_discarded_total", s.discarded, f.discarded),
            (
                "streamsift_review_total",
                s.sent_for_review,
                f.sent_for_review,
            ),
            (
                "streamsift_dead_letter_total",
                s.dead_lettered,
                f.dead_lettered,
            ),
            ("streamsift_retries_total", s.retries, f.retries),
            ("streamsift_throttled_total", s.throttled, f.throttled),
            (
                "streamsift_source_retries_total",
                s.source_retries,
                f.source_retries,
            ),
            ("streamsift_commits_total", s.commits, f.commits),
            (
                "streamsift_commit_failures_total",
                s.commit_failures,
                f.commit_failures,
            ),
        ];
        for (name, now, before) in plain {
            if now > before {
                metrics::counter!(name).increment(now - before);
            }
        }
        for (label, n) in &s.classified {
            let before = f.classified.get(label).copied().unwrap_or(0);
            if *n > before {
                metrics::counter!("streamsift_classified_total", "label" => label.to_string())
                    .increment(n - before);
            }
        }
        for (route, n) in &s.routed_by_route {
            let before = f.routed_by_route.get(route).copied().unwrap_or(0);
            if *n > before {
                metrics::counter!("streamsift_routed_by_route_total", "route" => route.to_string())
                    .increment(n - before);
            }
        }
        for (stage, n) in &s.dead_lettered_by_stage {
            let before = f.dead_lettered_by_stage.get(stage).copied().unwrap_or(0);
            if *n > before {
                metrics::counter!("streamsift_dead_letter_by_stage_total", "stage" => stage.clone())
                    .increment(n - before);
            }
        }
        metrics::gauge!("streamsift_in_flight").set(in_flight as f64);
        self.flushed = self.stats.clone();
    }
}

impl<S, D, C, R, T> Pipeline<S, D, C, R, T>
where
    S: Source,
    T: Send + Sync,
    D: Decoder<T>,
    C: Classifier<T>,
    R: Router<T>,
{
    /// Runs until the source ends or [`Shutdown::cancel`] is called, then
    /// drains in-flight records, commits, and returns the report.
    pub async fn run(self) -> Result<RunReport, PipelineError> {
        let Some(policy) = self.policy else {
            return Err(PipelineError::Config(
                "no policy set: call .policy(Policy::binary(..)) or .policy(Policy::by_label(..))"
                    .into(),
            ));
        };
        let config = self.config;
        if config.max_in_flight == 0 || config.max_unacked == 0 {
            return Err(PipelineError::Config(
                "max_in_flight and max_unacked must be at least 1".into(),
            ));
        }
        let dead_letter: Arc<dyn DeadLetterSink> = self
            .dead_letter
            .unwrap_or_else(|| Arc::new(JsonLinesDeadLetter::new("dead-letter.jsonl")));
        let ctx = Ctx {
            decoder: &self.decoder,
            classifier: &self.classifier,
            router: &self.router,
            policy: &policy,
            labeler: self.labeler.as_deref(),
            dead_letter: &*dead_letter,
            config: &config,
        };
        let mut run = Run {
            source: &self.source,
            config: &config,
            shards: Vec::new(),
            shard_index: HashMap::new(),
            meter: Meter::new(),
            unacked: 0,
            since_commit: 0,
            started: Instant::now(),
            committed: BTreeMap::new(),
        };
        run.drive(&ctx, &self.shutdown).await
    }
}

/// A checkpoint commit in progress.
type CommitFuture<'a> = BoxFuture<'a, Result<(), SourceError>>;

struct Run<'a, S> {
    source: &'a S,
    config: &'a Config,
    shards: Vec<ShardTrack>,
    shard_index: HashMap<ShardId, usize>,
    meter: Meter,
    /// Records dispatched but not yet behind a watermark, over all shards.
    unacked: usize,
    since_commit: u64,
    started: Instant,
    committed: BTreeMap<ShardId, Checkpoint>,
}

enum Stop {
    Source(SourceError),
    Commit(SourceError),
    DeadLetter(String, DeadLetterError),
}

impl<S: Source> Run<'_, S> {
    fn shard_slot(&mut self, shard: &ShardId) -> usize {
        if let Some(i) = self.shard_index.get(shard) {
            return *i;
        }
        let i = self.shards.len();
        self.shards.push(ShardTrack::new(shard.clone()));
        self.shard_index.insert(shard.clone(), i);
        i
    }

    fn pending_checkpoints(&mut self) -> Vec<Checkpoint> {
        self.shards
            .iter_mut()
            .filter_map(|t| {
                let position = t.pending_position()?;
                t.sent_base = t.base;
                Some(Checkpoint {
                    shard: t.shard.clone(),
                    position,
                })
            })
            .collect()
    }

    fn committed(&mut self, checkpoints: &[Checkpoint]) {
        for cp in checkpoints {
            if let Some(&i) = self.shard_index.get(&cp.shard) {
                let track = &mut self.shards[i];
                track.committed = Some(cp.position.clone());
                // Only now are these records safe from redelivery.
                let covered = track.sent_base.saturating_sub(track.committed_base);
                track.committed_base = track.committed_base.max(track.sent_base);
                self.unacked = self.unacked.saturating_sub(covered as usize);
            }
            self.committed.insert(cp.shard.clone(), cp.clone());
        }
        self.meter.stats.commits += 1;
    }

    fn finish(&mut self, done: Done, now: SystemTime) -> Option<Stop> {
        if let Some(label) = &done.classified {
            Meter::bump(&mut self.meter.classified, label);
        }
        if let Outcome::Routed(route) = &done.outcome {
            Meter::bump(&mut self.meter.routed_by_route, route);
        }
        let stats = &mut self.meter.stats;
        let track = &mut self.shards[done.shard];
        stats.retries += u64::from(done.tries.retries);
        stats.throttled += u64::from(done.tries.throttled);
        if done.decoded {
            stats.decoded += 1;
        }
        if let Ok(latency) = now.duration_since(done.arrival) {
            self.meter.latency.record(latency.as_secs_f64());
        }
        match done.outcome {
            Outcome::Routed(_) => {
                stats.routed += 1;
                track.stats.routed += 1;
            }
            Outcome::Discarded => {
                stats.discarded += 1;
                track.stats.discarded += 1;
            }
            Outcome::Review => {
                stats.sent_for_review += 1;
                track.stats.sent_for_review += 1;
            }
            Outcome::DeadLettered(stage) => {
                stats.dead_lettered += 1;
                track.stats.dead_lettered += 1;
                *stats
                    .dead_lettered_by_stage
                    .entry(stage.as_str().to_string())
                    .or_insert(0) += 1;
            }
            Outcome::Unfinished(err) => {
                // Leave the slot unfinished: the watermark never passes it.
                stats.unfinished += 1;
                track.stats.unfinished += 1;
                return Some(Stop::DeadLetter(done.record_id.unwrap_or_default(), err));
            }
        }
        // `unacked` falls when a commit covers the record, not here.
        track.complete(done.index, done.sequence);
        self.since_commit += 1;
        if track.ended && track.slots.is_empty() {
            // Commit SHARD_END promptly: children of the shard wait for it.
            self.since_commit = self.since_commit.max(self.config.commit_every);
        }
        None
    }

    fn report(&mut self, stopped: StopReason) -> RunReport {
        self.meter.sync();
        let mut stats = self.meter.stats.clone();
        stats.shards = self
            .shards
            .iter()
            .map(|t| (t.shard.clone(), t.stats.clone()))
            .collect();
        debug_assert!(
            stats.reconciles(),
            "run report does not reconcile: {stats:?}"
        );
        debug_assert!(
            stats.shards.values().map(|s| s.records_in).sum::<u64>() == stats.records_in
                && stats.shards.values().map(|s| s.dead_lettered).sum::<u64>()
                    == stats.dead_lettered,
            "run report's shards do not add up to its totals: {stats:?}"
        );
        RunReport {
            stats,
            checkpoints: self.committed.values().cloned().collect(),
            elapsed: self.started.elapsed(),
            stopped,
            active: self.config.active.as_ref().map(|a| a.snapshot()),
        }
    }

    async fn drive<D, C, R, T>(
        &mut self,
        ctx: &Ctx<'_, D, C, R, T>,
        shutdown: &Shutdown,
    ) -> Result<RunReport, PipelineError>
    where
        T: Send + Sync,
        D: Decoder<T>,
        C: Classifier<T>,
        R: Router<T>,
    {
        let config = self.config;
        let source = self.source;
        let mut inflight = FuturesUnordered::new();
        let mut pending: VecDeque<(usize, Record)> = VecDeque::new();
        let mut fetch: Option<BoxFuture<'_, Result<Option<Batch>, SourceError>>> = None;
        let mut commit: Option<(Vec<Checkpoint>, CommitFuture<'_>)> = None;
        let mut ticker = tokio::time::interval(config.commit_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.reset();
        let mut source_done = false;
        let mut stopping = false;
        let mut stop: Option<Stop> = None;
        let mut source_failures = 0u32;
        let mut backoff_until: Option<Instant> = None;
        let mut commit_due = false;
        let mut shutdown_rx = shutdown.tx.subscribe();
        let mut ended_batches: Vec<usize> = Vec::new();

        loop {
            // Dispatch what we can, as far as the limits allow.
            if !stopping && !pending.is_empty() {
                // Poll each new record once here: one that finishes at once
                // (fast components) never becomes a task.
                let waker =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(cx.waker().clone())).await;
                let mut cx = std::task::Context::from_waker(&waker);
                let now = Instant::now();
                let wall = SystemTime::now();
                while inflight.len() < config.max_in_flight && self.unacked < config.max_unacked {
                    let Some((slot, record)) = pending.pop_front() else {
                        break;
                    };
                    let track = &mut self.shards[slot];
                    let index = track.base + track.slots.len() as u64;
                    track.slots.push_back(None);
                    track.stats.records_in += 1;
                    self.unacked += 1;
                    self.meter.stats.records_in += 1;
                    // A span per record only when debug tracing is on: the
                    // wrapper is not free even when the span is disabled.
                    let fut = if tracing::enabled!(tracing::Level::DEBUG) {
                        let span =
                            tracing::debug_span!("record", id = %record.id, shard = %record.shard);
                        Either::Left(process(ctx, record, slot, index, now).instrument(span))
                    } else {
                        Either::Right(process(ctx, record, slot, index, now))
                    };
                    let mut fut = Box::pin(fut);
                    match fut.as_mut().poll(&mut cx) {
                        std::task::Poll::Ready(done) => {
                            if let Some(s) = self.finish(done, wall) {
                                stop.get_or_insert(s);
                                stopping = true;
                                fetch = None;
                                pending.clear();
                                ended_batches.clear();
                                break;
                            }
                        }
                        std::task::Poll::Pending => inflight.push(fut),
                    }
                }
                self.meter.stats.peak_in_flight =
                    self.meter.stats.peak_in_flight.max(inflight.len());
            }
            if pending.is_empty() && !ended_batches.is_empty() {
                // The closing batch is fully dispatched: now the shard's end
                // counts, and SHARD_END is committed once its records are done.
                for slot in ended_batches.drain(..) {
                    self.shards[slot].ended = true;
                    if self.shards[slot].slots.is_empty() {
                        commit_due = true;
                    }
                }
            }
            // Read more only when there is room (back-pressure).
            let want_fetch = !stopping
                && !source_done
                && fetch.is_none()
                && pending.is_empty()
                && inflight.len() < config.max_in_flight
                && self.unacked < config.max_unacked
                && backoff_until.is_none();
            if want_fetch {
                fetch = Some(Box::pin(source.next_batch()));
            }
            if self.since_commit >= config.commit_every || self.unacked >= config.max_unacked {
                // At the unacked limit only a commit makes room.
                commit_due = true;
            }
            if commit_due && commit.is_none() {
                let checkpoints = self.pending_checkpoints();
                if !checkpoints.is_empty() {
                    let fut = Box::pin(source.commit(checkpoints.clone()));
                    commit = Some((checkpoints, fut));
                }
                commit_due = false;
                self.since_commit = 0;
                self.meter.flush(inflight.len());
            }
            let idle = inflight.is_empty() && (pending.is_empty() || stopping) && commit.is_none();
            if idle && (stopping || (source_done && fetch.is_none())) {
                break;
            }

            tokio::select! {
                biased;
                _ = shutdown_rx.wait_for(|s| *s), if !stopping => {
                    tracing::info!("shutdown requested: draining in-flight records");
                    stopping = true;
                    fetch = None;
                    pending.clear();
                    ended_batches.clear();
                }
                // Commits and the commit timer go before records and reads:
                // under load those are always ready, and a biased select
                // would starve the checkpoint.
                result = async { commit.as_mut().expect("guarded").1.as_mut().await }, if commit.is_some() => {
                    let (checkpoints, _) = commit.take().expect("guarded");
                    match result {
                        Ok(()) => self.committed(&checkpoints),
                        Err(e) if e.is_retryable() => {
                            tracing::warn!(error = %e, "checkpoint commit failed; will retry");
                            self.meter.stats.commit_failures += 1;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "checkpoint commit failed permanently; stopping");
                            self.meter.stats.commit_failures += 1;
                            stop.get_or_insert(Stop::Commit(e));
                            stopping = true;
                            fetch = None;
                            pending.clear();
                        }
                    }
                }
                _ = ticker.tick() => {
                    commit_due = true;
                }
                Some(done) = inflight.next(), if !inflight.is_empty() => {
                    let now = SystemTime::now();
                    let mut next = Some(done);
                    let mut drained = 0;
                    while let Some(done) = next.take() {
                        if let Some(s) = self.finish(done, now) {
                            stop.get_or_insert(s);
                            stopping = true;
                            fetch = None;
                            pending.clear();
                            ended_batches.clear();
                        }
                        drained += 1;
                        if drained < 256 {
                            next = inflight.next().now_or_never().flatten();
                        }
                    }
                }
                result = async { fetch.as_mut().expect("guarded").await }, if fetch.is_some() => {
                    fetch = None;
                    match result {
                        Ok(Some(batch)) => {
                            source_failures = 0;
                            let slot = self.shard_slot(&batch.shard);
                            if batch.shard_end {
                                ended_batches.push(slot);
                            }
                            pending.extend(batch.records.into_iter().map(|r| (slot, r)));
                        }
                        Ok(None) => source_done = true,
                        Err(e) if e.is_retryable() => {
                            source_failures += 1;
                            self.meter.stats.source_retries += 1;
                            if e.is_throttling() {
                                self.meter.stats.throttled += 1;
                            }
                            let unit = unit_f64(config.seed, u64::MAX, u64::from(source_failures));
                            let wait = config.retry.backoff(source_failures.min(16), unit)
                                .max(config.retry.initial_backoff / 2);
                            tracing::warn!(error = %e, ?wait, "source read failed; backing off");
                            backoff_until = Some(Instant::now() + wait);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "source failed permanently; stopping");
                            stop.get_or_insert(Stop::Source(e));
                            stopping = true;
                        }
                    }
                }
                _ = async { tokio::time::sleep_until(backoff_until.expect("guarded")).await }, if backoff_until.is_some() => {
                    backoff_until = None;
                }
            }
        }

        // Final commit, with retries, unless commits are what failed.
        if !matches!(stop, Some(Stop::Commit(_))) {
            let mut attempt = 0u32;
            loop {
                let checkpoints = self.pending_checkpoints();
                if checkpoints.is_empty() {
                    break;
                }
                attempt += 1;
                match source.commit(checkpoints.clone()).await {
                    Ok(()) => {
                        self.committed(&checkpoints);
                        break;
                    }
                    Err(e) => {
                        self.meter.stats.commit_failures += 1;
                        if !e.is_retryable() || attempt >= config.retry.max_attempts.max(1) {
                            tracing::error!(error = %e, "final checkpoint commit failed");
                            stop.get_or_insert(Stop::Commit(e));
                            break;
                        }
                        let unit = unit_f64(config.seed, u64::MAX - 1, u64::from(attempt));
                        tokio::time::sleep(config.retry.backoff(attempt, unit)).await;
                    }
                }
            }
        }
        self.meter.flush(0);
        let reason = match (&stop, shutdown.is_cancelled()) {
            (Some(_), _) => StopReason::Error,
            (None, true) => StopReason::Shutdown,
            (None, false) => StopReason::SourceExhausted,
        };
        let report = Box::new(self.report(reason));
        match stop {
            None => Ok(*report),
            Some(Stop::Source(source)) => Err(PipelineError::Source { source, report }),
            Some(Stop::Commit(source)) => Err(PipelineError::Commit { source, report }),
            Some(Stop::DeadLetter(record_id, source)) => Err(PipelineError::DeadLetter {
                record_id,
                source,
                report,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.backoff(1, 0.999_999),
            Duration::from_secs_f64(0.1 * 0.999_999)
        );
        assert!(p.backoff(3, 0.5) <= Duration::from_millis(200));
        assert!(p.backoff(30, 0.999) <= Duration::from_secs(10));
        assert_eq!(p.backoff(4, 0.0), Duration::ZERO);
    }

    #[test]
    fn watermark_advances_over_the_done_prefix_only() {
        let mut t = ShardTrack::new(ShardId::new("s"));
        for _ in 0..4 {
            t.slots.push_back(None);
        }
        assert_eq!(t.complete(2, Sequence::from_offset(2)), 0);
        assert_eq!(t.pending_position(), None);
        assert_eq!(t.complete(0, Sequence::from_offset(0)), 1);
        assert_eq!(
            t.pending_position(),
            Some(Position::Sequence(Sequence::from_offset(0)))
        );
        assert_eq!(t.complete(1, Sequence::from_offset(1)), 2);
        assert_eq!(t.watermark, Some(Sequence::from_offset(2)));
        t.committed = Some(Position::Sequence(Sequence::from_offset(2)));
        assert_eq!(t.pending_position(), None);
        t.ended = true;
        assert_eq!(t.pending_position(), None, "slot 3 still in flight");
        t.complete(3, Sequence::from_offset(3));
        assert_eq!(t.pending_position(), Some(Position::ShardEnd));
    }

    #[test]
    fn stats_reconcile() {
        let mut s = Stats {
            records_in: 5,
            routed: 1,
            discarded: 2,
            sent_for_review: 1,
            dead_lettered: 1,
            ..Stats::default()
        };
        assert!(s.reconciles());
        s.routed = 2;
        assert!(!s.reconciles());
    }
}
