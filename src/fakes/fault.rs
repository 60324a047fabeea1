//! Fault injection: [`Faulty`] wraps any component and makes some of its
//! calls fail or slow down, as a [`FaultPlan`] says.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::classify::{Classifier, Prediction};
use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::error::{ClassifyError, DeadLetterError, LabelError, RouteError, SourceError};
use crate::labeler::{LabelResult, LabelTask, Labeler, TaskId};
use crate::record::{Batch, Checkpoint};
use crate::router::{Delivery, Receipt, Router};
use crate::source::Source;
use crate::util::{hash_str, splitmix64, unit_f64};

/// The kind of error an injected fault produces. Each maps to the matching
/// variant of the wrapped component's error enum ([`RouteError`],
/// [`ClassifyError`], ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// A transient failure (the `Unavailable` variant). Retryable.
    #[default]
    Retryable,
    /// Throttling (the `Throttled` variant). Retryable.
    Throttled,
    /// A failure retrying cannot fix (the `Permanent` variant).
    Permanent,
    /// A timeout (the `Timeout` variant), reporting the plan's
    /// [`timeout_duration`](FaultPlan::timeout_duration). Retryable.
    Timeout,
}

/// When and how a [`Faulty`] component fails or slows down.
///
/// A call fails when its number is listed by [`fail_nth`](Self::fail_nth)
/// or [`fail_first`](Self::fail_first), when its key is listed by
/// [`fail_key`](Self::fail_key), or by chance
/// ([`fail_with_probability`](Self::fail_with_probability)). Chance is
/// deterministic: a pure function of the [`seed`](Self::seed) and the call
/// number, or in [`keyed`](Self::keyed) mode of the seed and the item's key,
/// so a run can be replayed exactly.
///
/// Calls are numbered from 1, in the order they start, across all methods
/// of the component (a source's reads and commits share one count).
///
/// ```
/// use std::time::Duration;
/// use streamsift::fakes::{FaultKind, FaultPlan};
///
/// // The first two calls are throttled, then 10% fail at random; every
/// // call takes 5 ms.
/// let plan = FaultPlan::new()
///     .fail_first(2)
///     .fail_with_probability(0.1)
///     .kind(FaultKind::Throttled)
///     .latency(Duration::from_millis(5))
///     .seed(7);
/// # let _ = plan;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    fail_calls: BTreeSet<u64>,
    fail_keys: HashSet<String>,
    probability: f64,
    seed: u64,
    kind: FaultKind,
    latency: Duration,
    slow: Option<(f64, Duration)>,
    keyed: bool,
    after_call: bool,
    timeout: Duration,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            fail_calls: BTreeSet::new(),
            fail_keys: HashSet::new(),
            probability: 0.0,
            seed: 0,
            kind: FaultKind::Retryable,
            latency: Duration::ZERO,
            slow: None,
            keyed: false,
            after_call: false,
            timeout: Duration::from_secs(1),
        }
    }
}

impl FaultPlan {
    /// A plan that injects nothing: no failures, no latency, kind
    /// [`FaultKind::Retryable`], seed 0.
    ///
    /// ```
    /// use streamsift::fakes::FaultPlan;
    /// let plan = FaultPlan::new().fail_nth(3);
    /// # let _ = plan;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Fails call number `n` (1-based). Call it again to fail more calls.
    /// Call numbers count in [`keyed`](Self::keyed) mode too.
    pub fn fail_nth(mut self, n: u64) -> Self {
        self.fail_calls.insert(n);
        self
    }

    /// Fails calls 1 to `n`, as a backend that is down when the test starts.
    pub fn fail_first(mut self, n: u64) -> Self {
        self.fail_calls.extend(1..=n);
        self
    }

    /// Fails every call whose key is `key` (a router's record id, a
    /// labeler's task id, or what [`Faulty::key_by`] returns). Calls with
    /// no key are not affected.
    pub fn fail_key(mut self, key: impl Into<String>) -> Self {
        self.fail_keys.insert(key.into());
        self
    }

    /// Fails each call with probability `p` (clamped to `[0, 1]`; NaN means
    /// 0).
    pub fn fail_with_probability(mut self, p: f64) -> Self {
        self.probability = clamp_probability(p);
        self
    }

    /// Seeds the chance decisions (0 unless set).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The kind of error every injected fault produces
    /// ([`FaultKind::Retryable`] unless set).
    pub fn kind(mut self, kind: FaultKind) -> Self {
        self.kind = kind;
        self
    }

    /// Adds `latency` to every call, failed or not (a `tokio::time::sleep`,
    /// so a paused clock skips it).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Adds `extra` latency to each call with probability `p` (clamped to
    /// `[0, 1]`), decided like failures: by call number, or by key when
    /// keyed.
    pub fn slow_with_probability(mut self, p: f64, extra: Duration) -> Self {
        self.slow = Some((clamp_probability(p), extra));
        self
    }

    /// Decides chance by the item's key instead of the call number, so an
    /// item fails (and is slow) the same way on every retry; with
    /// [`FaultKind::Permanent`] that makes a fixed set of poison items.
    ///
    /// The key is the record id for routers and dead-letter sinks, the task
    /// ids for a labeler's `submit`, and what [`Faulty::key_by`] returns for
    /// classifiers (and any component given a key function). Calls with no
    /// key (a source's calls, a labeler's `collect`, a classifier without a
    /// key function) still decide by call number.
    pub fn keyed(mut self) -> Self {
        self.keyed = true;
        self
    }

    /// Injects faults after the wrapped component has done its work, as
    /// when a response is lost: the router delivered (or the source
    /// committed) but the caller sees an error, and a retry repeats the
    /// work. By default a fault fails the call without reaching the wrapped
    /// component.
    pub fn fail_after_call(mut self) -> Self {
        self.after_call = true;
        self
    }

    /// The duration a [`FaultKind::Timeout`] error reports (1 s unless
    /// set). The call does not wait for it; add [`latency`](Self::latency)
    /// for that.
    pub fn timeout_duration(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

const SALT_FAIL: u64 = 0x6661_696c; // "fail"
const SALT_SLOW: u64 = 0x736c_6f77; // "slow"

/// What to do with one call.
#[derive(Debug)]
struct Decision {
    call: u64,
    delay: Duration,
    fault: Option<String>,
}

/// An error enum every component shares the shape of.
trait Injectable {
    fn inject(kind: FaultKind, message: String, timeout: Duration) -> Self;
}

macro_rules! injectable {
    ($($err:ident),*) => {$(
        impl Injectable for $err {
            fn inject(kind: FaultKind, message: String, timeout: Duration) -> Self {
                match kind {
                    FaultKind::Retryable => $err::unavailable(message),
                    FaultKind::Throttled => $err::throttled(message),
                    FaultKind::Permanent => $err::permanent(message),
                    FaultKind::Timeout => $err::Timeout(timeout),
                }
            }
        }
    )*};
}

injectable!(
    ClassifyError,
    RouteError,
    SourceError,
    LabelError,
    DeadLetterError
);

/// How a [`Faulty`] component finds an item's key, for
/// [`FaultPlan::keyed`] and [`FaultPlan::fail_key`]: the default
/// ([`DefaultKey`]) or a function given to [`Faulty::key_by`]. Not meant to
/// be implemented outside this crate.
pub trait ItemKey<T>: Send + Sync {
    /// The item's key, if this finder has one for it.
    fn item_key(&self, item: &T) -> Option<String>;
}

/// The key a [`Faulty`] component uses unless given a function: the record
/// id for routers and dead-letter sinks, the task id for labelers, and none
/// for classifiers and sources.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultKey;

impl<T> ItemKey<T> for DefaultKey {
    fn item_key(&self, _: &T) -> Option<String> {
        None
    }
}

impl<T, F, S> ItemKey<T> for F
where
    F: Fn(&T) -> S + Send + Sync,
    S: AsRef<str>,
{
    fn item_key(&self, item: &T) -> Option<String> {
        Some(self(item).as_ref().to_owned())
    }
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    injected: AtomicU64,
}

/// Wraps a component (a [`Classifier`], [`Router`], [`Source`],
/// [`Labeler`] or [`DeadLetterSink`]) and injects the faults and latency of
/// a [`FaultPlan`].
///
/// A fault returns the component's own error (see [`FaultKind`]) with a
/// message saying it was injected and on which call. Clones share the
/// wrapped component and the counts, so keep a clone to assert on after
/// handing one to a pipeline.
///
/// ```
/// use streamsift::fakes::{FaultKind, FaultPlan, Faulty};
/// use streamsift::{Classifier, Prediction};
///
/// let flaky = Faulty::new(
///     |_: &String| async { Ok(Prediction::label("ok")) },
///     FaultPlan::new().fail_nth(2).kind(FaultKind::Throttled),
/// );
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let item = "hello".to_string();
/// assert!(flaky.classify(&item).await.is_ok());
/// let err = flaky.classify(&item).await.unwrap_err();
/// assert!(err.is_throttling());
/// assert!(err.to_string().contains("injected fault on call 2"));
/// assert!(flaky.classify(&item).await.is_ok());
/// assert_eq!((flaky.calls(), flaky.injected()), (3, 1));
/// # });
/// ```
pub struct Faulty<X, K = DefaultKey> {
    inner: Arc<X>,
    plan: Arc<FaultPlan>,
    key: Arc<K>,
    counters: Arc<Counters>,
}

impl<X> Faulty<X> {
    /// Wraps `inner` with `plan`. See the [type docs](Faulty) for an
    /// example.
    pub fn new(inner: X, plan: FaultPlan) -> Self {
        Faulty {
            inner: Arc::new(inner),
            plan: Arc::new(plan),
            key: Arc::new(DefaultKey),
            counters: Arc::default(),
        }
    }
}

impl<X, K> Faulty<X, K> {
    /// Keys items by `key` (a classifier's item, a router's delivered item,
    /// a labeler's task item) and turns on [`FaultPlan::keyed`] mode, so a
    /// given item fails the same way on every call. The key is owned text
    /// (`t.id.clone()`, `t.id.to_string()`), so any id type works.
    ///
    /// ```
    /// use streamsift::fakes::{FaultKind, FaultPlan, Faulty};
    /// use streamsift::{Classifier, Prediction};
    ///
    /// struct Tweet { id: u64, text: String }
    /// let poisoned = Faulty::new(
    ///     |_: &Tweet| async { Ok(Prediction::label("ok")) },
    ///     FaultPlan::new().fail_key("13").kind(FaultKind::Permanent),
    /// )
    /// .key_by(|t: &Tweet| t.id.to_string());
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let bad = Tweet { id: 13, text: "x".into() };
    /// for _ in 0..3 {
    ///     assert!(!poisoned.classify(&bad).await.unwrap_err().is_retryable());
    /// }
    /// assert!(poisoned.classify(&Tweet { id: 14, text: "y".into() }).await.is_ok());
    /// # });
    /// ```
    pub fn key_by<T, F, S>(self, key: F) -> Faulty<X, F>
    where
        F: Fn(&T) -> S + Send + Sync,
        S: AsRef<str>,
    {
        let mut plan = Arc::unwrap_or_clone(self.plan);
        plan.keyed = true;
        Faulty {
            inner: self.inner,
            plan: Arc::new(plan),
            key: Arc::new(key),
            counters: self.counters,
        }
    }

    /// How many calls it has seen (shared by clones).
    pub fn calls(&self) -> u64 {
        self.counters.calls.load(Ordering::Relaxed)
    }

    /// How many faults it has injected (shared by clones).
    pub fn injected(&self) -> u64 {
        self.counters.injected.load(Ordering::Relaxed)
    }

    /// The wrapped component.
    pub fn inner(&self) -> &X {
        &self.inner
    }

    /// The plan.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Numbers the call and decides its fate. `keys` are the call's item
    /// keys (empty when it has none).
    fn decide(&self, keys: &[&str]) -> Decision {
        let plan = &*self.plan;
        let call = self.counters.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let draw = if plan.keyed && !keys.is_empty() {
            keys.iter().fold(0, |h, k| splitmix64(h ^ hash_str(k)))
        } else {
            call
        };
        let key_listed = keys.iter().any(|k| plan.fail_keys.contains(*k));
        let fails = plan.fail_calls.contains(&call)
            || key_listed
            || (plan.probability > 0.0 && unit_f64(plan.seed, draw, SALT_FAIL) < plan.probability);
        let mut delay = plan.latency;
        if let Some((p, extra)) = plan.slow
            && p > 0.0
            && unit_f64(plan.seed, draw, SALT_SLOW) < p
        {
            delay += extra;
        }
        let fault = fails.then(|| match keys {
            [] => format!("injected fault on call {call}"),
            [key] => format!("injected fault on call {call} (key {key:?})"),
            keys => format!("injected fault on call {call} (keys {keys:?})"),
        });
        Decision { call, delay, fault }
    }

    /// Runs `work` under the decision for `keys`. `work` is a closure so
    /// that a component which does its work when called (not when polled)
    /// is not called at all when the fault comes first.
    async fn run<R, E, W, Fut>(&self, keys: &[&str], work: W) -> Result<R, E>
    where
        E: Injectable,
        W: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let decision = self.decide(keys);
        if !decision.delay.is_zero() {
            tokio::time::sleep(decision.delay).await;
        }
        let Some(message) = decision.fault else {
            return work().await;
        };
        if self.plan.after_call {
            // The work happens, but its outcome is lost.
            let _ = work().await;
        }
        self.counters.injected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(call = decision.call, %message, "fault injected");
        Err(E::inject(self.plan.kind, message, self.plan.timeout))
    }
}

impl<X, K> Clone for Faulty<X, K> {
    fn clone(&self) -> Self {
        Faulty {
            inner: Arc::clone(&self.inner),
            plan: Arc::clone(&self.plan),
            key: Arc::clone(&self.key),
            counters: Arc::clone(&self.counters),
        }
    }
}

impl<X, K> fmt::Debug for Faulty<X, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faulty")
            .field("inner", &std::any::type_name::<X>())
            .field("plan", &self.plan)
            .field("calls", &self.calls())
            .field("injected", &self.injected())
            .finish()
    }
}

impl<T, X, K> Classifier<T> for Faulty<X, K>
where
    T: Sync,
    X: Classifier<T>,
    K: ItemKey<T>,
{
    async fn classify(&self, item: &T) -> Result<Prediction, ClassifyError> {
        let key = self.key.item_key(item);
        let keys: Vec<&str> = key.as_deref().into_iter().collect();
        self.run(&keys, || self.inner.classify(item)).await
    }
}

impl<T, X, K> Router<T> for Faulty<X, K>
where
    T: Sync,
    X: Router<T>,
    K: ItemKey<T>,
{
    fn route(
        &self,
        delivery: &Delivery<'_, T>,
    ) -> impl Future<Output = Result<Receipt, RouteError>> + Send {
        let delivery = *delivery;
        async move {
            let key = self
                .key
                .item_key(delivery.item)
                .unwrap_or_else(|| delivery.record.id.clone());
            self.run(&[key.as_str()], || self.inner.route(&delivery))
                .await
        }
    }

    fn handles_route(&self, route: &crate::Label) -> Option<bool> {
        self.inner.handles_route(route)
    }

    fn max_hold(&self) -> Option<std::time::Duration> {
        self.inner.max_hold()
    }
}

impl<X, K> Source for Faulty<X, K>
where
    X: Source,
    K: Send + Sync,
{
    fn next_batch(&self) -> impl Future<Output = Result<Option<Batch>, SourceError>> + Send {
        self.run(&[], || self.inner.next_batch())
    }

    fn commit(
        &self,
        checkpoints: Vec<Checkpoint>,
    ) -> impl Future<Output = Result<(), SourceError>> + Send {
        self.run(&[], || self.inner.commit(checkpoints))
    }
}

#[async_trait::async_trait]
impl<T, X, K> Labeler<T> for Faulty<X, K>
where
    T: Sync,
    X: Labeler<T>,
    K: ItemKey<T>,
{
    async fn submit(&self, tasks: &[LabelTask<'_, T>]) -> Result<Vec<TaskId>, LabelError> {
        let keys: Vec<String> = tasks
            .iter()
            .map(|t| {
                self.key
                    .item_key(t.item)
                    .unwrap_or_else(|| t.item_id.to_owned())
            })
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.run(&keys, || self.inner.submit(tasks)).await
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        self.run(&[], || self.inner.collect()).await
    }
}

#[async_trait::async_trait]
impl<X, K> DeadLetterSink for Faulty<X, K>
where
    X: DeadLetterSink,
    K: Send + Sync,
{
    async fn store(&self, dead_letter: &DeadLetter) -> Result<(), DeadLetterError> {
        self.run(&[dead_letter.record.id.as_str()], || {
            self.inner.store(dead_letter)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::SystemTime;

    use super::*;
    use crate::classify::Label;
    use crate::dead_letter::{MemoryDeadLetter, Stage};
    use crate::error::ErrorClass;
    use crate::record::{Record, Sequence, ShardId};

    fn ok_classifier()
    -> impl Fn(&String) -> std::future::Ready<Result<Prediction, ClassifyError>> + Send + Sync {
        |_: &String| std::future::ready(Ok(Prediction::label("ok")))
    }

    fn record(n: u64) -> Record {
        Record::new(
            ShardId::new("s0"),
            Sequence::from_offset(n),
            "pk",
            &b"x"[..],
        )
    }

    /// A router that counts deliveries.
    #[derive(Default)]
    struct Counting(AtomicU64);

    impl Router<String> for Counting {
        async fn route(&self, d: &Delivery<'_, String>) -> Result<Receipt, RouteError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(Receipt::new(d.route.clone()))
        }
    }

    #[tokio::test]
    async fn fail_nth_fails_exactly_those_calls_with_the_chosen_kind() {
        for (kind, check) in [
            (
                FaultKind::Retryable,
                (|e: &ClassifyError| matches!(e, ClassifyError::Unavailable { .. }))
                    as fn(&ClassifyError) -> bool,
            ),
            (FaultKind::Throttled, |e| {
                matches!(e, ClassifyError::Throttled { .. })
            }),
            (FaultKind::Permanent, |e| {
                matches!(e, ClassifyError::Permanent { .. })
            }),
            (
                FaultKind::Timeout,
                |e| matches!(e, ClassifyError::Timeout(d) if *d == Duration::from_secs(3)),
            ),
        ] {
            let plan = FaultPlan::new()
                .fail_nth(2)
                .fail_nth(4)
                .kind(kind)
                .timeout_duration(Duration::from_secs(3));
            let c = Faulty::new(ok_classifier(), plan);
            let item = String::from("x");
            let mut failed = Vec::new();
            for call in 1..=5 {
                if let Err(e) = c.classify(&item).await {
                    assert!(check(&e), "{kind:?}: {e}");
                    if kind != FaultKind::Timeout {
                        assert!(
                            e.to_string()
                                .contains(&format!("injected fault on call {call}")),
                            "{e}"
                        );
                    }
                    failed.push(call);
                }
            }
            assert_eq!(failed, [2, 4]);
            assert_eq!((c.calls(), c.injected()), (5, 2));
        }
    }

    #[tokio::test]
    async fn probability_is_roughly_right_and_replays_under_a_seed() {
        let outcomes = |seed: u64| async move {
            let c = Faulty::new(
                ok_classifier(),
                FaultPlan::new().fail_with_probability(0.3).seed(seed),
            );
            let item = String::from("x");
            let mut out = Vec::new();
            for _ in 0..1000 {
                out.push(c.classify(&item).await.is_err());
            }
            (out, c.injected())
        };
        let (a, injected) = outcomes(1).await;
        assert!((250..350).contains(&injected), "{injected}");
        assert_eq!(a.iter().filter(|f| **f).count() as u64, injected);
        assert_eq!(outcomes(1).await.0, a, "same seed, same faults");
        assert_ne!(outcomes(2).await.0, a, "another seed, other faults");
    }

    #[tokio::test]
    async fn keyed_routers_fail_the_same_records_on_every_retry() {
        let inner = Counting::default();
        let router = Faulty::new(
            inner,
            FaultPlan::new()
                .keyed()
                .fail_with_probability(0.5)
                .kind(FaultKind::Permanent)
                .seed(9),
        );
        let prediction = Prediction::label("x");
        let route = Label::from("r");
        let item = String::from("payload");
        let records: Vec<Record> = (0..100).map(record).collect();
        let attempt = |r: Record| {
            let router = router.clone();
            let (item, prediction, route) = (&item, &prediction, &route);
            async move {
                let d = Delivery {
                    item,
                    record: &r,
                    prediction,
                    route,
                };
                router.route(&d).await.is_ok()
            }
        };
        let mut first = Vec::new();
        for r in &records {
            first.push(attempt(r.clone()).await);
        }
        // Retry in reverse order: the outcomes follow the record, not the call.
        for (i, r) in records.iter().enumerate().rev() {
            assert_eq!(attempt(r.clone()).await, first[i], "record {}", r.id);
        }
        let failed = first.iter().filter(|ok| !**ok).count();
        assert!((30..70).contains(&failed), "{failed}");
        assert_eq!(router.injected(), 2 * failed as u64);
        // Failed calls never reached the inner router.
        assert_eq!(
            router.inner().0.load(Ordering::Relaxed),
            2 * (100 - failed) as u64
        );
    }

    #[tokio::test]
    async fn fail_after_call_does_the_work_but_reports_an_error() {
        let router = Faulty::new(
            Counting::default(),
            FaultPlan::new().fail_nth(1).fail_after_call(),
        );
        let (item, prediction, route, r) = (
            String::from("x"),
            Prediction::label("x"),
            Label::from("r"),
            record(1),
        );
        let d = Delivery {
            item: &item,
            record: &r,
            prediction: &prediction,
            route: &route,
        };
        let err = router.route(&d).await.unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(
            router.inner().0.load(Ordering::Relaxed),
            1,
            "delivered despite the error"
        );
        router.route(&d).await.unwrap();
        assert_eq!(router.inner().0.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_fault_before_the_call_never_reaches_an_eager_component() {
        // FnClassifier does its work when called, not when polled.
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let inner = crate::fakes::classifier::FnClassifier::new(move |_: &String| {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(Prediction::label("ok"))
        });
        let c = Faulty::new(inner, FaultPlan::new().fail_nth(1));
        assert!(c.classify(&"x".to_string()).await.is_err());
        assert_eq!(seen.load(Ordering::Relaxed), 0);
        assert!(c.classify(&"x".to_string()).await.is_ok());
        assert_eq!(seen.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn key_by_keys_classifiers_by_item() {
        let c = Faulty::new(
            ok_classifier(),
            FaultPlan::new().fail_with_probability(0.5).seed(3),
        )
        .key_by(|s: &String| s.clone());
        assert!(c.plan().keyed);
        let items: Vec<String> = (0..50).map(|i| format!("item-{i}")).collect();
        let mut first = Vec::new();
        for it in &items {
            first.push(c.classify(it).await.is_ok());
        }
        for (it, ok) in items.iter().zip(&first).rev() {
            assert_eq!(c.classify(it).await.is_ok(), *ok, "{it}");
        }
        assert!(first.iter().any(|ok| *ok) && first.iter().any(|ok| !*ok));
        let listed = Faulty::new(ok_classifier(), FaultPlan::new().fail_key("bad"))
            .key_by(|s: &String| s.clone());
        assert!(listed.classify(&"bad".to_string()).await.is_err());
        assert!(listed.classify(&"good".to_string()).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn latency_and_slow_calls_use_tokio_time() {
        let c = Faulty::new(
            ok_classifier(),
            FaultPlan::new().latency(Duration::from_millis(100)),
        );
        let start = tokio::time::Instant::now();
        c.classify(&"x".to_string()).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(100));

        let plan = FaultPlan::new()
            .slow_with_probability(0.5, Duration::from_secs(10))
            .seed(5);
        let c = Faulty::new(ok_classifier(), plan);
        let mut slow = 0;
        for _ in 0..100 {
            let start = tokio::time::Instant::now();
            c.classify(&"x".to_string()).await.unwrap();
            match start.elapsed() {
                d if d == Duration::from_secs(10) => slow += 1,
                d => assert_eq!(d, Duration::ZERO),
            }
        }
        assert!((30..70).contains(&slow), "{slow}");
        assert_eq!(c.injected(), 0, "slowness is not a fault");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_does_not_block_a_fast_one() {
        // Call 1 is slow, call 2 is not: concurrent calls finish out of order.
        let plan = FaultPlan::new().slow_with_probability(1.0, Duration::from_secs(5));
        let slow = Faulty::new(ok_classifier(), plan);
        let fast = Faulty::new(ok_classifier(), FaultPlan::new());
        let item = "x".to_string();
        let start = tokio::time::Instant::now();
        let (a, b) = tokio::join!(
            async {
                slow.classify(&item).await.unwrap();
                start.elapsed()
            },
            async {
                fast.classify(&item).await.unwrap();
                start.elapsed()
            }
        );
        assert_eq!((a, b), (Duration::from_secs(5), Duration::ZERO));
    }

    /// A source with one batch and recorded commits.
    #[derive(Default)]
    struct OneBatch {
        commits: Mutex<Vec<Checkpoint>>,
    }

    impl Source for OneBatch {
        async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
            Ok(Some(Batch::new(ShardId::new("s0"), vec![record(1)])))
        }

        async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
            self.commits.lock().unwrap().extend(checkpoints);
            Ok(())
        }
    }

    #[tokio::test]
    async fn sources_fail_reads_and_commits_by_call_number() {
        let source = Faulty::new(
            OneBatch::default(),
            FaultPlan::new()
                .fail_nth(1)
                .fail_nth(3)
                .kind(FaultKind::Throttled),
        );
        assert!(source.next_batch().await.unwrap_err().is_throttling());
        assert_eq!(source.next_batch().await.unwrap().unwrap().records.len(), 1);
        let cp = Checkpoint {
            shard: ShardId::new("s0"),
            position: crate::record::Position::Sequence(Sequence::from_offset(1)),
        };
        let err = source.commit(vec![cp.clone()]).await.unwrap_err();
        assert!(
            err.to_string().contains("injected fault on call 3"),
            "{err}"
        );
        assert!(source.inner().commits.lock().unwrap().is_empty());
        source.commit(vec![cp.clone()]).await.unwrap();
        assert_eq!(*source.inner().commits.lock().unwrap(), [cp]);
    }

    #[tokio::test]
    async fn dead_letter_sinks_and_clones_share_counts() {
        let sink = Faulty::new(
            MemoryDeadLetter::new(),
            FaultPlan::new().fail_key("s0:2").kind(FaultKind::Permanent),
        );
        let handle = sink.clone();
        let dl = |n| DeadLetter {
            record: record(n),
            stage: Stage::Route,
            class: ErrorClass::Permanent,
            kind: "k".into(),
            reason: "r".into(),
            attempts: 1,
            route: None,
            at: SystemTime::now(),
        };
        sink.store(&dl(1)).await.unwrap();
        let err = sink.store(&dl(2)).await.unwrap_err();
        assert!(err.to_string().contains("\"s0:2\""), "{err}");
        sink.store(&dl(3)).await.unwrap();
        assert_eq!((handle.calls(), handle.injected()), (3, 1));
        assert_eq!(handle.inner().len(), 2);
    }

    #[tokio::test]
    async fn labelers_are_keyed_by_task_id() {
        struct Accepting;
        #[async_trait::async_trait]
        impl Labeler<String> for Accepting {
            async fn submit(
                &self,
                tasks: &[LabelTask<'_, String>],
            ) -> Result<Vec<TaskId>, LabelError> {
                Ok(tasks.iter().map(|t| TaskId(t.item_id.to_owned())).collect())
            }
            async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
                Ok(Vec::new())
            }
        }
        let labeler = Faulty::new(
            Accepting,
            FaultPlan::new().fail_key("b").kind(FaultKind::Throttled),
        );
        let item = String::from("x");
        let task = |id| LabelTask {
            item_id: id,
            item: &item,
            prediction: None,
            suggestion: None,
        };
        assert_eq!(
            labeler.submit(&[task("a")]).await.unwrap(),
            [TaskId("a".into())]
        );
        assert!(
            labeler
                .submit(&[task("a"), task("b")])
                .await
                .unwrap_err()
                .is_throttling()
        );
        assert!(labeler.collect().await.unwrap().is_empty());
        assert_eq!(labeler.injected(), 1);
    }
}
