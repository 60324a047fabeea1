//! The [`Pipeline`] builder: it reads like the data flow and does no work
//! until [`run`](Pipeline::run).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::retry::RetryPolicy;
use super::run::Shutdown;
use crate::dead_letter::DeadLetterSink;
use crate::decode::{Decoder, Json};
use crate::labeler::Labeler;
use crate::policy::Policy;
use crate::source::Source;

/// The limits and rules of a run, shared by the stages and the run loop.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) max_in_flight: usize,
    pub(crate) max_unacked: usize,
    pub(crate) commit_every: u64,
    pub(crate) commit_interval: Duration,
    pub(crate) commit_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) call_timeout: Duration,
    pub(crate) record_timeout: Duration,
    pub(crate) max_record_bytes: usize,
    pub(crate) seed: u64,
    pub(crate) active: Option<crate::active::ActiveStatsHandle>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_in_flight: 256,
            max_unacked: 10_000,
            commit_every: 1_000,
            commit_interval: Duration::from_secs(5),
            commit_timeout: Duration::from_secs(60),
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
    pub(crate) source: S,
    pub(crate) decoder: D,
    pub(crate) classifier: C,
    pub(crate) router: R,
    pub(crate) policy: Option<Policy>,
    pub(crate) labeler: Option<Box<dyn Labeler<T>>>,
    pub(crate) dead_letter: Option<Arc<dyn DeadLetterSink>>,
    pub(crate) config: Config,
    pub(crate) shutdown: Shutdown,
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
    /// they are delivered to the router on the route [`REVIEW_ROUTE`](crate::REVIEW_ROUTE).
    pub fn review(mut self, labeler: impl Labeler<T> + 'static) -> Self
    where
        T: Sync,
    {
        self.labeler = Some(Box::new(labeler));
        self
    }

    /// Where failed records go. Defaults to a [`JsonLinesDeadLetter`](crate::JsonLinesDeadLetter) at
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

    /// How long checkpoint commits may keep failing (retryable errors and
    /// timeouts, tried again with jittered backoff) before the run stops
    /// with [`PipelineError::Commit`](crate::PipelineError::Commit)
    /// (default 60 s). Records keep being processed meanwhile, up to
    /// [`max_unacked`](Pipeline::max_unacked). It also bounds how long a
    /// stopping run keeps trying its final commit.
    pub fn commit_timeout(mut self, timeout: Duration) -> Self {
        self.config.commit_timeout = timeout;
        self
    }

    /// The retry policy for classify, route, review and dead-letter calls,
    /// and the pacing of source-read and commit retries.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// The time limit of one attempt of one call (default 10 s), counted
    /// from when that attempt starts: classify, route, review and each
    /// retry get a whole `call_timeout`. A timeout is retryable. Checkpoint
    /// commits get the same limit per attempt.
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

/// A checked pipeline: its source, its stages, its shutdown handle.
pub(crate) type Parts<S, D, C, R, T> = (S, super::stages::Stages<D, C, R, T>, Shutdown);

impl<S, D, C, R, T> Pipeline<S, D, C, R, T> {
    /// Checks the configuration and splits the builder into its source,
    /// its stages (what both drivers run) and its shutdown handle.
    pub(crate) fn into_parts(self) -> Result<Parts<S, D, C, R, T>, crate::PipelineError> {
        let Some(policy) = self.policy else {
            return Err(crate::PipelineError::Config(
                "no policy set: call .policy(Policy::binary(..)) or .policy(Policy::by_label(..))"
                    .into(),
            ));
        };
        if self.config.max_in_flight == 0 || self.config.max_unacked == 0 {
            return Err(crate::PipelineError::Config(
                "max_in_flight and max_unacked must be at least 1".into(),
            ));
        }
        let dead_letter: Arc<dyn DeadLetterSink> = self.dead_letter.unwrap_or_else(|| {
            Arc::new(crate::dead_letter::JsonLinesDeadLetter::new(
                "dead-letter.jsonl",
            ))
        });
        let stages = super::stages::Stages {
            decoder: self.decoder,
            classifier: self.classifier,
            router: self.router,
            policy,
            labeler: self.labeler,
            dead_letter,
            config: self.config,
        };
        Ok((self.source, stages, self.shutdown))
    }
}
