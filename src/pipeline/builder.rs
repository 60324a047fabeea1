//! The [`Pipeline`] builder: it reads like the data flow and does no work
//! until [`run`](Pipeline::run).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::report::ConfigError;
use super::retry::RetryPolicy;
use super::run::Shutdown;
use super::stages::REVIEW_ROUTE;
use crate::dead_letter::DeadLetterSink;
use crate::decode::{Decoder, Json};
use crate::labeler::Labeler;
use crate::policy::Policy;
use crate::router::Router;
use crate::source::Source;

/// The limits and rules of a run, shared by the stages and the run loop.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) max_in_flight: usize,
    pub(crate) max_unacked: usize,
    pub(crate) commit_every: u64,
    pub(crate) commit_interval: Duration,
    pub(crate) commit_timeout: Duration,
    pub(crate) ack_every: usize,
    pub(crate) ack_linger: Duration,
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
            ack_every: 10,
            ack_linger: Duration::from_millis(100),
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
///
/// # What must be set
///
/// A decoder ([`decode`](Pipeline::decode) or [`json`](Pipeline::json)), a
/// classifier ([`classify`](Pipeline::classify)), a router
/// ([`route`](Pipeline::route)) and a dead-letter sink
/// ([`dead_letter`](Pipeline::dead_letter)) are checked by the compiler:
/// each is a type parameter, and [`run`](Pipeline::run) asks for them. There
/// is no default dead-letter sink, so nothing is written anywhere you did
/// not name. A [`Policy`] is plain data and is checked by `run()`, as is
/// where review items go (see [`review`](Pipeline::review)).
///
/// Without a classifier, `run()` does not compile (E0277, "`()` is not a
/// Classifier"):
///
/// ```compile_fail,E0277
/// # use streamsift::fakes::{MemorySource, RecordingRouter};
/// # use streamsift::{MemoryDeadLetter, Pipeline, Policy};
/// # async fn f() {
/// let _ = Pipeline::new(MemorySource::from_payloads(1, vec!["x"]))
///     .json::<String>()
///     .policy(Policy::binary(0.5, "oncall"))
///     .route(RecordingRouter::<String>::new())
///     .dead_letter(MemoryDeadLetter::new())
///     .run()
///     .await;
/// # }
/// ```
///
/// Without a router (E0277, "`()` is not a Router"):
///
/// ```compile_fail,E0277
/// # use streamsift::fakes::MemorySource;
/// # use streamsift::{ClassifyError, MemoryDeadLetter, Pipeline, Policy, Prediction};
/// # async fn f() {
/// let _ = Pipeline::new(MemorySource::from_payloads(1, vec!["x"]))
///     .json::<String>()
///     .classify(|_: &String| async { Ok::<_, ClassifyError>(Prediction::label("x")) })
///     .policy(Policy::binary(0.5, "oncall"))
///     .dead_letter(MemoryDeadLetter::new())
///     .run()
///     .await;
/// # }
/// ```
///
/// Without a dead-letter sink (E0277, "`NoDeadLetter` is not a
/// DeadLetterSink"):
///
/// ```compile_fail,E0277
/// # use streamsift::fakes::{MemorySource, RecordingRouter};
/// # use streamsift::{ClassifyError, Pipeline, Policy, Prediction};
/// # async fn f() {
/// let _ = Pipeline::new(MemorySource::from_payloads(1, vec!["x"]))
///     .json::<String>()
///     .classify(|_: &String| async { Ok::<_, ClassifyError>(Prediction::label("x")) })
///     .policy(Policy::binary(0.5, "oncall"))
///     .route(RecordingRouter::<String>::new())
///     .run()
///     .await;
/// # }
/// ```
///
/// A labeler set before [`decode`](Pipeline::decode) is kept, not dropped;
/// if `decode` changes the item type to one the labeler cannot label, that
/// is a compile error (E0277) rather than a labeler silently lost:
///
/// ```compile_fail,E0277
/// # use streamsift::fakes::{MemorySource, RecordingRouter};
/// # use streamsift::{ClassifyError, LabelError, LabelResult, LabelTask, Labeler};
/// # use streamsift::{MemoryDeadLetter, Pipeline, Policy, Prediction, TaskId};
/// # #[derive(Clone, serde::Deserialize)] struct Msg { text: String }
/// struct Strings; // labels Strings only
/// #[async_trait::async_trait]
/// impl Labeler<String> for Strings {
///     async fn submit(&self, t: &[LabelTask<'_, String>]) -> Result<Vec<TaskId>, LabelError> {
///         Ok(t.iter().map(|t| TaskId(t.id.to_string())).collect())
///     }
///     async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> { Ok(vec![]) }
/// }
/// # async fn f() {
/// let _ = Pipeline::new(MemorySource::from_payloads(1, vec!["x"]))
///     .json::<String>()
///     .review(Strings)
///     .json::<Msg>() // the labeler labels Strings, not Msgs
///     .classify(|_: &Msg| async { Ok::<_, ClassifyError>(Prediction::label("x")) })
///     .policy(Policy::binary(0.5, "oncall"))
///     .route(RecordingRouter::<Msg>::new())
///     .dead_letter(MemoryDeadLetter::new())
///     .run()
///     .await;
/// # }
/// ```
pub struct Pipeline<S, D = (), C = (), R = (), T = (), L = NoLabeler, K = NoDeadLetter> {
    pub(crate) source: S,
    pub(crate) decoder: D,
    pub(crate) classifier: C,
    pub(crate) router: R,
    pub(crate) labeler: L,
    pub(crate) dead_letter: K,
    pub(crate) settings: Settings,
    _item: PhantomData<fn() -> T>,
}

/// Everything a type-changing builder method carries over unchanged.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) policy: Option<Policy>,
    pub(crate) review_via_router: bool,
    pub(crate) config: Config,
    pub(crate) shutdown: Shutdown,
}

/// The builder state "no labeler set": review items go to the router on
/// [`REVIEW_ROUTE`](crate::REVIEW_ROUTE) (see [`Pipeline::review`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLabeler;

/// The builder state "labeler set", holding the labeler given to
/// [`Pipeline::review`] (or maybe given, by [`Pipeline::review_opt`]).
#[derive(Clone, Debug)]
pub struct WithLabeler<L>(pub(crate) Option<L>);

/// The builder state "no dead-letter sink set". It is not a
/// [`DeadLetterSink`]: [`Pipeline::run`] does not compile until
/// [`Pipeline::dead_letter`] is called.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDeadLetter;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::NoLabeler {}
    impl<L> Sealed for super::WithLabeler<L> {}
}

/// Where review items of type `T` go: [`NoLabeler`] or [`WithLabeler`].
/// Sealed; it only names the builder's labeler state in bounds.
#[diagnostic::on_unimplemented(
    message = "the labeler given to `.review(..)` cannot label items of type `{T}`",
    label = "the item type changed after `.review(..)`, or the labeler is for another type",
    note = "call `.review(..)` after `.decode(..)` / `.json::<{T}>()`, with a labeler implementing `streamsift::Labeler<{T}>`"
)]
pub trait MaybeLabeler<T>: sealed::Sealed {
    /// The labeler, erased, if one was set.
    #[doc(hidden)]
    fn into_labeler(self) -> Option<Box<dyn Labeler<T>>>;
}

impl<T> MaybeLabeler<T> for NoLabeler {
    fn into_labeler(self) -> Option<Box<dyn Labeler<T>>> {
        None
    }
}

impl<T: Sync, L: Labeler<T> + 'static> MaybeLabeler<T> for WithLabeler<L> {
    fn into_labeler(self) -> Option<Box<dyn Labeler<T>>> {
        self.0.map(|l| Box::new(l) as Box<dyn Labeler<T>>)
    }
}

impl<S, D, C, R, T, L, K> fmt::Debug for Pipeline<S, D, C, R, T, L, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("item", &std::any::type_name::<T>())
            .field("policy", &self.settings.policy)
            .field("labeler", &std::any::type_name::<L>())
            .field("dead_letter", &std::any::type_name::<K>())
            .field("review_via_router", &self.settings.review_via_router)
            .field("config", &self.settings.config)
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
            labeler: NoLabeler,
            dead_letter: NoDeadLetter,
            settings: Settings {
                policy: None,
                review_via_router: false,
                config: Config::default(),
                shutdown: Shutdown::new(),
            },
            _item: PhantomData,
        }
    }
}

impl<S, D, C, R, T, L, K> Pipeline<S, D, C, R, T, L, K> {
    /// The one place a builder method changes the pipeline's types: every
    /// field is destructured here (a new field is a compile error until it
    /// is carried over), and `f` maps the typed parts.
    #[allow(clippy::type_complexity)]
    fn map_types<D2, C2, R2, T2, L2, K2>(
        self,
        f: impl FnOnce((D, C, R, L, K)) -> (D2, C2, R2, L2, K2),
    ) -> Pipeline<S, D2, C2, R2, T2, L2, K2> {
        let Pipeline {
            source,
            decoder,
            classifier,
            router,
            labeler,
            dead_letter,
            settings,
            _item,
        } = self;
        let (decoder, classifier, router, labeler, dead_letter) =
            f((decoder, classifier, router, labeler, dead_letter));
        Pipeline {
            source,
            decoder,
            classifier,
            router,
            labeler,
            dead_letter,
            settings,
            _item: PhantomData,
        }
    }

    /// Decodes records into `T2` with `decoder` (any [`Decoder`], including
    /// a closure `Fn(&Record) -> Result<T2, DecodeError>`). Everything set
    /// before is kept, a labeler included; the classifier, router and
    /// labeler must then work on `T2`, which `run()` checks at compile time.
    pub fn decode<T2, D2: Decoder<T2>>(self, decoder: D2) -> Pipeline<S, D2, C, R, T2, L, K> {
        self.map_types(|(_, c, r, l, k)| (decoder, c, r, l, k))
    }

    /// Decodes records as JSON into `T2` (serde).
    pub fn json<T2: serde::de::DeserializeOwned>(self) -> Pipeline<S, Json<T2>, C, R, T2, L, K> {
        self.decode(Json::<T2>::new())
    }

    /// Sets the classifier: a type implementing
    /// [`Classifier<T>`](crate::Classifier), or a closure
    /// `|item: &T| async move { .. }` returning `Result<Prediction, ClassifyError>`.
    ///
    /// The future a closure returns may not borrow `item`: copy out what it
    /// needs first (`let text = item.text.clone(); async move { .. text .. }`),
    /// or implement [`Classifier`](crate::Classifier) on a type, whose
    /// `async fn classify(&self, item: &T)` may borrow freely.
    pub fn classify<C2>(self, classifier: C2) -> Pipeline<S, D, C2, R, T, L, K> {
        self.map_types(|(d, _, r, l, k)| (d, classifier, r, l, k))
    }

    /// Sets the decision policy (required; [`run`](Pipeline::run) fails
    /// with [`ConfigError::NoPolicy`](crate::ConfigError::NoPolicy) without one).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.settings.policy = Some(policy);
        self
    }

    /// Sets the router that delivers actionable items. Combine several with
    /// [`ByLabel`](crate::ByLabel), [`FanOut`](crate::FanOut) and friends.
    pub fn route<R2>(self, router: R2) -> Pipeline<S, D, C, R2, T, L, K> {
        self.map_types(|(d, c, _, l, k)| (d, c, router, l, k))
    }

    /// Sends items the policy marks for review to `labeler`.
    ///
    /// Without a labeler, review items are delivered to the router on the
    /// route [`REVIEW_ROUTE`](crate::REVIEW_ROUTE) (`"review"`). A policy
    /// that can produce review items ([`Policy::can_review`]) is refused by
    /// [`run`](Pipeline::run) ([`ConfigError::ReviewUnhandled`](crate::ConfigError::ReviewUnhandled))
    /// unless there is a labeler, the router says it handles `"review"`
    /// ([`Router::handles_route`](crate::Router::handles_route), as
    /// [`ByLabel`](crate::ByLabel) does), or
    /// [`review_via_router`](Pipeline::review_via_router) says so.
    pub fn review<L2>(self, labeler: L2) -> Pipeline<S, D, C, R, T, WithLabeler<L2>, K>
    where
        T: Sync,
        L2: Labeler<T> + 'static,
    {
        self.review_opt(Some(labeler))
    }

    /// [`review`](Pipeline::review) when `labeler` is `Some`; with `None`,
    /// as if no labeler were set. For a labeler chosen at run time (the
    /// builder's type cannot depend on a runtime value).
    pub fn review_opt<L2>(self, labeler: Option<L2>) -> Pipeline<S, D, C, R, T, WithLabeler<L2>, K>
    where
        T: Sync,
        L2: Labeler<T> + 'static,
    {
        self.map_types(|(d, c, r, _, k)| (d, c, r, WithLabeler(labeler), k))
    }

    /// Declares that the router handles the route
    /// [`REVIEW_ROUTE`](crate::REVIEW_ROUTE), for routers that cannot say so
    /// themselves (closures, or anything whose
    /// [`Router::handles_route`](crate::Router::handles_route) answers
    /// "unknown"). Review items then go to the router on that route when no
    /// labeler is set.
    pub fn review_via_router(mut self) -> Self {
        self.settings.review_via_router = true;
        self
    }

    /// Where failed records go (required: [`run`](Pipeline::run) does not
    /// compile without it). For a file, use
    /// [`JsonLinesDeadLetter::create`](crate::JsonLinesDeadLetter::create),
    /// which checks at once that the file can be written; in tests,
    /// [`MemoryDeadLetter`](crate::MemoryDeadLetter).
    pub fn dead_letter<K2>(self, sink: K2) -> Pipeline<S, D, C, R, T, L, K2>
    where
        K2: DeadLetterSink + 'static,
    {
        self.map_types(|(d, c, r, l, _)| (d, c, r, l, sink))
    }

    /// The most records processed at once (default 256).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.settings.config.max_in_flight = n;
        self
    }

    /// The most records dispatched but not yet behind the committed
    /// watermark, summed over shards (default 10,000). A slow record holds
    /// back its shard's checkpoint; this bounds how far the others may run
    /// ahead of it, which bounds both memory and the duplicates after a crash.
    pub fn max_unacked(mut self, n: usize) -> Self {
        self.settings.config.max_unacked = n;
        self
    }

    /// Commit checkpoints after every `records` completed records, or every
    /// `interval`, whichever comes first (default 1,000 and 5 s).
    pub fn commit_every(mut self, records: u64, interval: Duration) -> Self {
        self.settings.config.commit_every = records;
        self.settings.config.commit_interval = interval;
        self
    }

    /// For a source that acks per record ([`AckMode::PerRecord`](crate::AckMode::PerRecord),
    /// such as SQS): send acks once `records` done records wait, or once
    /// the oldest has waited `linger`, whichever comes first (default 10 and
    /// 100 ms). One ack call is in flight at a time; records done meanwhile
    /// go in the next. A stopping run sends what is left once in-flight
    /// records are done. Failed ack calls are retried and bounded as
    /// commits are ([`commit_timeout`](Pipeline::commit_timeout)).
    pub fn ack_every(mut self, records: usize, linger: Duration) -> Self {
        self.settings.config.ack_every = records.max(1);
        self.settings.config.ack_linger = linger;
        self
    }

    /// How long checkpoint commits may keep failing (retryable errors and
    /// timeouts, tried again with jittered backoff) before the run stops
    /// with [`PipelineError::Commit`](crate::PipelineError::Commit)
    /// (default 60 s). Records keep being processed meanwhile, up to
    /// [`max_unacked`](Pipeline::max_unacked). It also bounds how long a
    /// stopping run keeps trying its final commit.
    pub fn commit_timeout(mut self, timeout: Duration) -> Self {
        self.settings.config.commit_timeout = timeout;
        self
    }

    /// The retry policy for classify, route, review and dead-letter calls,
    /// and the pacing of source-read and commit retries.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.settings.config.retry = retry;
        self
    }

    /// The time limit of one attempt of one call (default 10 s), counted
    /// from when that attempt starts: classify, route, review and each
    /// retry get a whole `call_timeout`. A timeout is retryable. Checkpoint
    /// commits get the same limit per attempt.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.settings.config.call_timeout = timeout;
        self
    }

    /// The time limit for one record, all stages and retries included
    /// (default 60 s). A record over it is dead-lettered as `timeout`.
    pub fn record_timeout(mut self, timeout: Duration) -> Self {
        self.settings.config.record_timeout = timeout;
        self
    }

    /// Records with larger payloads are dead-lettered as `too_large` before
    /// decoding (default 1 MiB, the Kinesis record limit).
    pub fn max_record_bytes(mut self, bytes: usize) -> Self {
        self.settings.config.max_record_bytes = bytes;
        self
    }

    /// Seeds the retry jitter, for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.config.seed = seed;
        self
    }

    /// Puts the active-learning counts of `stats` (labels gathered, model
    /// versions used; see [`active`](crate::active)) into the run report.
    pub fn active_stats(mut self, stats: crate::active::ActiveStatsHandle) -> Self {
        self.settings.config.active = Some(stats);
        self
    }

    /// Uses `shutdown` to stop the run.
    pub fn shutdown_handle(mut self, shutdown: Shutdown) -> Self {
        self.settings.shutdown = shutdown;
        self
    }

    /// The handle that stops this pipeline's run.
    pub fn shutdown(&self) -> Shutdown {
        self.settings.shutdown.clone()
    }
}

/// A checked pipeline: its source, its stages, its shutdown handle.
pub(crate) type Parts<S, D, C, R, T> = (S, super::stages::Stages<D, C, R, T>, Shutdown);

impl<S, D, C, R, T, L, K> Pipeline<S, D, C, R, T, L, K> {
    /// Checks the configuration and splits the builder into its source,
    /// its stages (what both drivers run) and its shutdown handle.
    pub(crate) fn into_parts(self) -> Result<Parts<S, D, C, R, T>, crate::PipelineError>
    where
        T: Sync,
        R: Router<T>,
        L: MaybeLabeler<T>,
        K: DeadLetterSink + 'static,
    {
        let Settings {
            policy,
            review_via_router,
            config,
            shutdown,
        } = self.settings;
        let Some(policy) = policy else {
            return Err(ConfigError::NoPolicy.into());
        };
        if config.max_in_flight == 0 || config.max_unacked == 0 {
            return Err(ConfigError::ZeroLimit {
                max_in_flight: config.max_in_flight,
                max_unacked: config.max_unacked,
            }
            .into());
        }
        let labeler = self.labeler.into_labeler();
        if policy.can_review()
            && labeler.is_none()
            && !review_via_router
            && self.router.handles_route(&REVIEW_ROUTE) != Some(true)
        {
            return Err(ConfigError::ReviewUnhandled {
                router_says: self.router.handles_route(&REVIEW_ROUTE),
            }
            .into());
        }
        if let Some(hold) = self.router.max_hold()
            && (config.call_timeout <= hold || config.record_timeout <= hold)
        {
            return Err(ConfigError::TimeoutWithinHold {
                hold,
                call_timeout: config.call_timeout,
                record_timeout: config.record_timeout,
            }
            .into());
        }
        let stages = super::stages::Stages {
            decoder: self.decoder,
            classifier: self.classifier,
            router: self.router,
            policy,
            labeler,
            dead_letter: Arc::new(self.dead_letter),
            config,
        };
        Ok((self.source, stages, shutdown))
    }
}
