//! [`ActiveLearner`]: the review band's labeler, which queues, batches,
//! rate- and budget-limits, collects, stores and triggers retraining.

use std::collections::VecDeque;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::ActiveError;
use super::queue::{EvictionPolicy, QueuedTask, ReviewQueue};
use super::retrain::{RetrainHook, Retrainer};
use super::stats::{ActiveStatsHandle, Counters};
use super::store::{DatasetStore, LabeledExample};
use super::uncertainty::Uncertainty;
use crate::error::{ErrorClass, LabelError};
use crate::labeler::{LabelResult, LabelTask, Labeler, TaskId};
use crate::local::Example;
use crate::pipeline::Shutdown;

/// At most `tasks` submitted per `per` (a sliding window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Tasks allowed in any window.
    pub tasks: u64,
    /// The window.
    pub per: Duration,
}

/// The most the learner may spend, over every run that used the same queue
/// file (the count is kept in it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Budget {
    /// At most this many tasks in total.
    pub max_tasks: Option<u64>,
    /// The price of one task (in the labeler's currency, fees included).
    pub cost_per_task: f64,
    /// At most this much spent in total: `tasks * cost_per_task` never
    /// exceeds it.
    pub max_spend: Option<f64>,
}

/// How an [`ActiveLearner`] queues and submits.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveConfig {
    /// How uncertainty is measured (the queue sends the most uncertain first).
    pub uncertainty: Uncertainty,
    /// The most items waiting to be submitted (10,000 by default).
    pub capacity: usize,
    /// What a full queue does.
    pub eviction: EvictionPolicy,
    /// The most tasks submitted in one call to the inner labeler (25).
    pub batch_size: usize,
    /// The rate limit (none by default).
    pub rate: Option<RateLimit>,
    /// The budget (unlimited by default).
    pub budget: Budget,
    /// Nothing more is submitted while this many tasks wait for labels
    /// (10,000).
    pub max_awaiting: usize,
    /// How often [`ActiveLearner::run`] ticks (30 s).
    pub tick_interval: Duration,
}

impl Default for ActiveConfig {
    fn default() -> Self {
        ActiveConfig {
            uncertainty: Uncertainty::default(),
            capacity: 10_000,
            eviction: EvictionPolicy::default(),
            batch_size: 25,
            rate: None,
            budget: Budget::default(),
            max_awaiting: 10_000,
            tick_interval: Duration::from_secs(30),
        }
    }
}

/// What one [`tick`](ActiveLearner::tick) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Tasks submitted to the inner labeler (charged).
    pub submitted: u64,
    /// Tasks submitted again after a restart (not charged again).
    pub resubmitted: u64,
    /// Labels collected and stored.
    pub labels: u64,
    /// The model version swapped in by a retraining, if any.
    pub retrained: Option<u64>,
}

type ToExample<T> = Box<dyn Fn(&T) -> Example + Send + Sync>;

struct Inner<T, L> {
    labeler: L,
    queue: Arc<Mutex<ReviewQueue<T>>>,
    store: DatasetStore,
    to_example: ToExample<T>,
    config: ActiveConfig,
    retrainer: Option<Box<dyn RetrainHook>>,
    stats: ActiveStatsHandle,
    window: Mutex<VecDeque<(Instant, u64)>>,
    resubmit: AtomicBool,
    recent: Mutex<VecDeque<LabelResult>>,
    ticking: tokio::sync::Mutex<()>,
}

/// A [`Labeler`] for the pipeline's review band that closes the
/// active-learning loop around an inner labeler (a crowd, a web page).
///
/// - [`submit`](Labeler::submit) (called by the pipeline) puts the items in
///   a durable [`ReviewQueue`], ordered by uncertainty, and returns once
///   they are on disk: the record then counts as reviewed and its checkpoint
///   may advance. A full queue evicts by [`ActiveConfig::eviction`].
/// - [`tick`](ActiveLearner::tick) (or [`run`](ActiveLearner::run), which
///   ticks every [`ActiveConfig::tick_interval`]) submits the most uncertain
///   items to the inner labeler, at most [`ActiveConfig::batch_size`] at a
///   time, within the [`RateLimit`] and the [`Budget`]; collects finished
///   labels into the [`DatasetStore`]; and lets the [`Retrainer`] retrain.
/// - [`collect`](Labeler::collect) returns the labels stored since the last
///   call (the most recent 10,000 at most), each named by the task id
///   `submit` returned (`queued:<item id>`); the inner labeler's task id is
///   in the [`DatasetStore`].
///
/// An item id still queued or awaiting its label is not queued twice (the
/// pipeline redelivers records after a crash). One whose label was already
/// stored is queued again; the inner labeler's idempotence (same id, same
/// task) keeps it from being labeled twice by a conforming labeler.
///
/// After a restart, items that were submitted but not labeled are
/// submitted again on the first tick without being charged again: the
/// [`Labeler`] contract makes that idempotent.
///
/// ```
/// use std::time::Duration;
/// use streamsift::active::{ActiveConfig, ActiveLearner, DatasetStore};
/// use streamsift::fakes::{SimulatedCrowd, Worker};
/// use streamsift::local::Example;
/// use streamsift::{LabelTask, Labeler, Prediction};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let crowd = SimulatedCrowd::new(["problem", "none"], |t: &String| {
///     if t.contains("down") { "problem" } else { "none" }
/// })
/// .worker(Worker::accurate("w", 1.0))
/// .completion_delay(Duration::from_secs(60));
/// let learner = ActiveLearner::builder(crowd, |t: &String| Example::new(t.clone()))
///     .queue_file(dir.path().join("queue.jsonl"))
///     .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
///     .open()
///     .unwrap();
/// let text = "api down".to_string();
/// let p = Prediction::binary("problem", "none", 0.5);
/// learner.submit(&[LabelTask::new("1", &text).with_prediction(&p)]).await.unwrap();
/// assert_eq!(learner.tick().await.unwrap().submitted, 1);
/// tokio::time::advance(Duration::from_secs(60)).await;
/// assert_eq!(learner.tick().await.unwrap().labels, 1);
/// assert_eq!(learner.stats().snapshot().labels_gathered, 1);
/// # });
/// ```
pub struct ActiveLearner<T, L> {
    inner: Arc<Inner<T, L>>,
}

impl<T, L> Clone for ActiveLearner<T, L> {
    fn clone(&self) -> Self {
        ActiveLearner {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Builds an [`ActiveLearner`]; see [`ActiveLearner::builder`].
pub struct ActiveLearnerBuilder<T, L> {
    labeler: L,
    to_example: ToExample<T>,
    queue_path: PathBuf,
    store: DatasetStore,
    config: ActiveConfig,
    retrainer: Option<Box<dyn RetrainHook>>,
    stats: ActiveStatsHandle,
}

impl<T, L> fmt::Debug for ActiveLearnerBuilder<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveLearnerBuilder")
            .field("queue_path", &self.queue_path)
            .field("store", &self.store)
            .field("config", &self.config)
            .field("retrainer", &self.retrainer)
            .finish_non_exhaustive()
    }
}

impl<T, L> ActiveLearnerBuilder<T, L>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    L: Labeler<T>,
{
    /// The queue's log file (`review-queue.jsonl` by default).
    pub fn queue_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.queue_path = path.into();
        self
    }

    /// Where labeled examples go (`labels.jsonl` by default).
    pub fn dataset(mut self, store: DatasetStore) -> Self {
        self.store = store;
        self
    }

    /// The queueing and submission settings.
    pub fn config(mut self, config: ActiveConfig) -> Self {
        self.config = config;
        self
    }

    /// Retrains (and hot-swaps) as labels come in.
    pub fn retrainer<C: Send + Sync + 'static>(mut self, retrainer: Retrainer<C>) -> Self {
        self.retrainer = Some(Box::new(retrainer));
        self
    }

    /// Counts into `stats` (share it with the [`HotSwapClassifier`](super::HotSwapClassifier)
    /// and [`Pipeline::active_stats`](crate::Pipeline::active_stats)).
    pub fn stats(mut self, stats: ActiveStatsHandle) -> Self {
        self.stats = stats;
        self
    }

    /// Opens the queue file (replaying what a previous run left) and
    /// returns the learner.
    pub fn open(self) -> Result<ActiveLearner<T, L>, ActiveError> {
        let c = &self.config;
        if c.batch_size == 0 || c.max_awaiting == 0 {
            return Err(ActiveError::Config(
                "batch_size and max_awaiting must be at least 1".into(),
            ));
        }
        if c.rate.is_some_and(|r| r.per.is_zero()) {
            return Err(ActiveError::Config(
                "a rate limit's window must be longer than zero".into(),
            ));
        }
        let b = c.budget;
        if b.max_spend.is_some() && !(b.cost_per_task.is_finite() && b.cost_per_task > 0.0) {
            return Err(ActiveError::Config(format!(
                "a spending limit needs a positive cost_per_task, found {}",
                b.cost_per_task
            )));
        }
        let queue = ReviewQueue::open(&self.queue_path, c.capacity, c.eviction)?;
        let resubmit = queue.awaiting_len() > 0;
        Ok(ActiveLearner {
            inner: Arc::new(Inner {
                labeler: self.labeler,
                queue: Arc::new(Mutex::new(queue)),
                store: self.store,
                to_example: self.to_example,
                config: self.config,
                retrainer: self.retrainer,
                stats: self.stats,
                window: Mutex::new(VecDeque::new()),
                resubmit: AtomicBool::new(resubmit),
                recent: Mutex::new(VecDeque::new()),
                ticking: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

const RECENT_CAP: usize = 10_000;

fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    // Every critical section leaves its data consistent (the queue writes
    // its log before it changes memory), so a poisoned lock is usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T, L> ActiveLearner<T, L>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    L: Labeler<T>,
{
    /// Starts building a learner around `labeler`. `to_example` turns an
    /// item into the [`Example`] stored with its label (text and fields; the
    /// learner sets the id and label).
    pub fn builder(
        labeler: L,
        to_example: impl Fn(&T) -> Example + Send + Sync + 'static,
    ) -> ActiveLearnerBuilder<T, L> {
        ActiveLearnerBuilder {
            labeler,
            to_example: Box::new(to_example),
            queue_path: PathBuf::from("review-queue.jsonl"),
            store: DatasetStore::new("labels.jsonl"),
            config: ActiveConfig::default(),
            retrainer: None,
            stats: ActiveStatsHandle::new(),
        }
    }

    /// The shared counts.
    pub fn stats(&self) -> &ActiveStatsHandle {
        &self.inner.stats
    }

    /// The inner labeler.
    pub fn labeler(&self) -> &L {
        &self.inner.labeler
    }

    /// The dataset store.
    pub fn store(&self) -> &DatasetStore {
        &self.inner.store
    }

    /// Items waiting to be submitted.
    pub fn pending(&self) -> usize {
        lock(&self.inner.queue).pending_len()
    }

    /// The items waiting to be submitted, most uncertain first.
    pub fn pending_tasks(&self) -> Vec<QueuedTask<T>> {
        lock(&self.inner.queue).peek(usize::MAX)
    }

    /// Items submitted and waiting for their label.
    pub fn awaiting(&self) -> usize {
        lock(&self.inner.queue).awaiting_len()
    }

    /// Tasks charged to the budget, over every run that used the queue file.
    pub fn spent_tasks(&self) -> u64 {
        lock(&self.inner.queue).spent()
    }

    /// Runs `f` on the queue on the blocking pool (it writes and syncs).
    async fn with_queue<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ReviewQueue<T>) -> Result<R, ActiveError> + Send + 'static,
    ) -> Result<R, ActiveError> {
        let queue = Arc::clone(&self.inner.queue);
        tokio::task::spawn_blocking(move || f(&mut lock(&queue)))
            .await
            .map_err(|e| ActiveError::Background(e.to_string()))?
    }

    /// Submits `batch` to the inner labeler. A panic or a permanent refusal
    /// fails only the item that causes it: the batch is then submitted item
    /// by item. An item that panics alone is poisoned (it leaves the
    /// queue). An item refused for good alone ([`ErrorClass::Permanent`])
    /// leaves the queue too, but only when another item of the round went
    /// through: if the labeler refuses every item, the fault is presumed to
    /// be the labeler's (a key, a setting), the round stops with its error
    /// and the items stay. A retryable error stops the round.
    async fn submit_guarded(&self, batch: &[QueuedTask<T>]) -> Submitted {
        let labeler = &self.inner.labeler;
        let stats = &self.inner.stats.0;
        let tasks: Vec<LabelTask<'_, T>> = batch.iter().map(label_task).collect();
        // A batch of one is not submitted twice: its outcome is its item's.
        let mut known_alone = None;
        match AssertUnwindSafe(labeler.submit(&tasks))
            .catch_unwind()
            .await
        {
            Ok(Ok(_)) => {
                return Submitted {
                    sent: batch.iter().map(|t| t.id.clone()).collect(),
                    ..Submitted::default()
                };
            }
            Ok(Err(e)) if e.class() != ErrorClass::Permanent => {
                return Submitted {
                    failed: Some(e.into()),
                    ..Submitted::default()
                };
            }
            Ok(Err(e)) if batch.len() > 1 => tracing::warn!(
                kind = "refused",
                stage = "submit",
                labeler_error = e.kind(),
                items = batch.len(),
                "the inner labeler refused a batch for good; submitting its items one by one"
            ),
            Err(_) if batch.len() > 1 => tracing::warn!(
                kind = "panic",
                stage = "submit",
                items = batch.len(),
                "the inner labeler panicked on a batch; submitting its items one by one"
            ),
            outcome => known_alone = Some(outcome.map_err(|_| ())),
        }
        let mut out = Submitted::default();
        let (mut refused, mut first_refusal) = (Vec::new(), None);
        for t in batch {
            let alone = match known_alone.take() {
                Some(outcome) => outcome,
                None => AssertUnwindSafe(labeler.submit(&[label_task(t)]))
                    .catch_unwind()
                    .await
                    .map_err(|_| ()),
            };
            match alone {
                Ok(Ok(_)) => out.sent.push(t.id.clone()),
                Ok(Err(e)) if e.class() == ErrorClass::Permanent => {
                    refused.push((t.id.clone(), e.kind()));
                    first_refusal.get_or_insert(e);
                }
                Ok(Err(e)) => {
                    out.failed = Some(e.into());
                    break;
                }
                Err(()) => {
                    ActiveStatsHandle::add(&stats.panics, 1);
                    tracing::warn!(
                        kind = "panic",
                        stage = "submit",
                        id = %t.id,
                        "the inner labeler panicked on this item; it leaves the queue unlabeled"
                    );
                    out.poisoned.push(t.id.clone());
                }
            }
        }
        if !out.sent.is_empty() {
            out.refused = refused;
            out.refuse(stats);
        } else if out.failed.is_none() {
            // Everything was refused: judged by the caller (a probe).
            out.refused = refused;
            out.failed = first_refusal.map(ActiveError::from);
        }
        // Stopped by a retryable error with nothing taken: the refused items
        // stay queued, unjudged.
        out
    }

    /// How many tasks the rate limit and budget allow now.
    fn allowance(&self, now: Instant, spent: u64) -> (u64, bool, bool) {
        let c = &self.inner.config;
        let mut allowed = c.batch_size as u64;
        let mut rate_hit = false;
        if let Some(rate) = c.rate {
            let mut window = lock(&self.inner.window);
            while window
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) >= rate.per)
            {
                window.pop_front();
            }
            let used: u64 = window.iter().map(|(_, n)| n).sum();
            let left = rate.tasks.saturating_sub(used);
            rate_hit = left == 0;
            allowed = allowed.min(left);
        }
        let mut budget_left = u64::MAX;
        if let Some(max) = c.budget.max_tasks {
            budget_left = budget_left.min(max.saturating_sub(spent));
        }
        if let Some(max_spend) = c.budget.max_spend {
            let cost = c.budget.cost_per_task;
            // Tasks affordable in total; the small epsilon keeps 0.3/0.1
            // from rounding down to 2.
            let total = ((max_spend / cost) + 1e-9).floor().max(0.0) as u64;
            budget_left = budget_left.min(total.saturating_sub(spent));
        }
        (allowed.min(budget_left), rate_hit, budget_left == 0)
    }

    /// One round: resubmit after a restart, submit the most uncertain
    /// queued items within the limits, collect finished labels into the
    /// store, and retrain if due. Rounds do not overlap.
    ///
    /// Errors leave the queue as it was: items not submitted stay pending,
    /// and labels not stored stay awaiting. Two kinds of item leave it
    /// unlabeled instead, so that one bad item cannot hold up the rest: one
    /// the inner labeler panics on alone, and one it refuses for good alone
    /// ([`ErrorClass::Permanent`]) while it takes another item in the same
    /// round (when the whole batch is refused, the next queued item is
    /// tried alone to find out). A labeler that refuses everything (a bad
    /// key) fails the round and keeps every item.
    pub async fn tick(&self) -> Result<TickReport, ActiveError> {
        let _one_at_a_time = self.inner.ticking.lock().await;
        let mut report = TickReport::default();
        let stats = &self.inner.stats.0;

        if self.inner.resubmit.load(Ordering::Relaxed) {
            let awaiting = lock(&self.inner.queue).awaiting_tasks();
            for chunk in awaiting.chunks(self.inner.config.batch_size.max(1)) {
                let Submitted {
                    sent,
                    poisoned,
                    failed,
                    ..
                } = self.submit_guarded(chunk).await;
                report.resubmitted += sent.len() as u64;
                if !poisoned.is_empty() {
                    self.with_queue(move |q| q.mark_failed(&poisoned)).await?;
                }
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            self.inner.resubmit.store(false, Ordering::Relaxed);
        }

        let now = Instant::now();
        let (pending, awaiting, spent) = {
            let q = lock(&self.inner.queue);
            (q.pending_len(), q.awaiting_len(), q.spent())
        };
        if pending > 0 {
            let (allowed, rate_hit, budget_hit) = self.allowance(now, spent);
            if rate_hit {
                ActiveStatsHandle::add(&stats.rate_limited, 1);
            }
            if budget_hit {
                ActiveStatsHandle::add(&stats.budget_exhausted, 1);
            }
            let room = self.inner.config.max_awaiting.saturating_sub(awaiting) as u64;
            let n = allowed.min(room) as usize;
            if n > 0 {
                let batch = lock(&self.inner.queue).peek(n);
                let mut done = self.submit_guarded(&batch).await;
                if !done.refused.is_empty() {
                    // Every item was refused alone and none went through: the
                    // next item, alone, tells whether the labeler takes
                    // anything at all (refused items used no allowance).
                    let probe: Vec<QueuedTask<T>> = lock(&self.inner.queue)
                        .peek(batch.len() + 1)
                        .into_iter()
                        .filter(|t| batch.iter().all(|b| b.id != t.id))
                        .collect();
                    if !probe.is_empty() {
                        let probed = self.submit_guarded(&probe).await;
                        if !probed.sent.is_empty() {
                            done.refuse(&self.inner.stats.0);
                            done.failed = probed.failed;
                        }
                        done.sent.extend(probed.sent);
                        done.poisoned.extend(probed.poisoned);
                    }
                }
                let Submitted {
                    sent: ids,
                    poisoned,
                    failed,
                    ..
                } = done;
                let sent = ids.len() as u64;
                // Marked sent after the submit: a crash in between leaves
                // the batch pending, and the next run submits it again
                // (idempotent by the Labeler contract) and charges it once.
                // An item the labeler panicked on alone leaves the queue.
                self.with_queue(move |q| {
                    q.mark_sent(&ids)?;
                    q.mark_failed(&poisoned)
                })
                .await?;
                if self.inner.config.rate.is_some() {
                    lock(&self.inner.window).push_back((now, sent));
                }
                ActiveStatsHandle::add(&stats.tasks_submitted, sent);
                report.submitted = sent;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
        }

        let results = match AssertUnwindSafe(self.inner.labeler.collect())
            .catch_unwind()
            .await
        {
            Ok(results) => results?,
            Err(_) => {
                // Nothing to blame but the call: no labels this round; they
                // stay with the labeler for the next one.
                ActiveStatsHandle::add(&stats.panics, 1);
                tracing::warn!(
                    kind = "panic",
                    stage = "collect",
                    "the inner labeler panicked in collect; no labels this round"
                );
                Vec::new()
            }
        };
        if !results.is_empty() {
            let mut labeled = Vec::with_capacity(results.len());
            let mut done = Vec::with_capacity(results.len());
            let mut unmatched = 0u64;
            let mut poisoned = Vec::new();
            {
                let q = lock(&self.inner.queue);
                for r in &results {
                    let Some(task) = q.awaiting(&r.item_id) else {
                        unmatched += 1;
                        continue;
                    };
                    let to_example = &self.inner.to_example;
                    let converted =
                        std::panic::catch_unwind(AssertUnwindSafe(|| to_example(&task.item)));
                    let Ok(mut example) = converted else {
                        ActiveStatsHandle::add(&stats.panics, 1);
                        tracing::warn!(
                            kind = "panic",
                            stage = "to_example",
                            id = %r.item_id,
                            "turning the item into an example panicked; it leaves the queue unlabeled"
                        );
                        poisoned.push(r.item_id.clone());
                        continue;
                    };
                    example.id = Some(r.item_id.clone());
                    example.label = Some(r.label.to_string());
                    labeled.push(LabeledExample {
                        example,
                        agreement: r.agreement,
                        answers: r.votes.len(),
                        task: r.task.to_string(),
                    });
                    done.push(r.item_id.clone());
                }
            }
            if unmatched > 0 {
                tracing::warn!(
                    unmatched,
                    "labels for items not awaiting one were not stored"
                );
                ActiveStatsHandle::add(&stats.unmatched_results, unmatched);
            }
            let store = self.inner.store.clone();
            let n = labeled.len() as u64;
            // Store first, then mark done: a crash between the two stores
            // a label twice (harmless, dedup removes it), never loses one.
            self.with_queue(move |q| {
                store.append(&labeled)?;
                q.mark_done(&done)?;
                q.mark_failed(&poisoned)
            })
            .await?;
            ActiveStatsHandle::add(&stats.labels_gathered, n);
            report.labels = n;
            let mut recent = lock(&self.inner.recent);
            for mut r in results {
                // Name the task as `submit` did; the inner labeler's id
                // stays in the dataset store.
                r.task = queued_task(&r.item_id);
                if recent.len() == RECENT_CAP {
                    recent.pop_front();
                }
                recent.push_back(r);
            }
        }

        if let Some(retrainer) = &self.inner.retrainer {
            // A failed retraining keeps the model in service; it is counted
            // in the stats and logged, and does not fail the round (whose
            // labels are already stored).
            match retrainer
                .after_labels(report.labels, &self.inner.store, &self.inner.stats)
                .await
            {
                Ok(version) => report.retrained = version,
                Err(e) => warn_failed("retrain", &e, "retraining failed; the current model stays"),
            }
        }
        Ok(report)
    }

    /// Ticks every [`ActiveConfig::tick_interval`] until `shutdown` is
    /// cancelled. A failed tick is logged and tried again at the next one.
    pub async fn run(&self, shutdown: Shutdown) {
        loop {
            if let Err(e) = self.tick().await {
                warn_failed("tick", &e, "active-learning round failed; will try again");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.inner.config.tick_interval) => {}
            }
        }
    }
}

/// Logs a failure by kind and stage. The error's text is not logged: it
/// may quote an item (a labeler's or a serializer's message); an I/O error
/// adds the file and the I/O error kind.
fn warn_failed(stage: &'static str, e: &ActiveError, message: &'static str) {
    match e {
        ActiveError::Io {
            action,
            path,
            source,
        } => tracing::warn!(
            kind = e.kind(),
            stage,
            action,
            path = %path.display(),
            io_error = %source.kind(),
            "{message}"
        ),
        ActiveError::Labeler(l) => {
            tracing::warn!(
                kind = e.kind(),
                stage,
                labeler_error = l.kind(),
                "{message}"
            )
        }
        _ => tracing::warn!(kind = e.kind(), stage, "{message}"),
    }
}

/// What [`ActiveLearner::submit_guarded`] did with a batch.
#[derive(Default)]
struct Submitted {
    /// Ids the labeler took.
    sent: Vec<String>,
    /// Ids that leave the queue unlabeled (a panic, or refused for good).
    poisoned: Vec<String>,
    /// The error that stopped the submission.
    failed: Option<ActiveError>,
    /// Items refused for good alone, not yet judged: every item was
    /// refused and none went through, so the labeler itself may be at
    /// fault.
    refused: Vec<(String, &'static str)>,
}

impl Submitted {
    /// Something went through, so the items refused alone are at fault:
    /// they leave the queue (counted, and logged without their text).
    fn refuse(&mut self, stats: &Counters) {
        for (id, labeler_error) in self.refused.drain(..) {
            ActiveStatsHandle::add(&stats.refused, 1);
            tracing::warn!(
                kind = "refused",
                stage = "submit",
                labeler_error,
                id = %id,
                "the inner labeler refused this item for good while it took others; it leaves \
                 the queue unlabeled"
            );
            self.poisoned.push(id);
        }
    }
}

/// The task id `submit` gives an item (stable, so a resubmission gets the
/// same one).
fn queued_task(item_id: &str) -> TaskId {
    TaskId(format!("queued:{item_id}"))
}

fn label_task<T>(t: &QueuedTask<T>) -> LabelTask<'_, T> {
    LabelTask {
        item_id: &t.id,
        item: &t.item,
        prediction: t.prediction.as_ref(),
        suggestion: None,
    }
}

impl<T, L> fmt::Debug for ActiveLearner<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveLearner")
            .field("queue", &*lock(&self.inner.queue))
            .field("config", &self.inner.config)
            .field("stats", &self.inner.stats)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl<T, L> Labeler<T> for ActiveLearner<T, L>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    L: Labeler<T>,
{
    async fn submit(&self, tasks: &[LabelTask<'_, T>]) -> Result<Vec<TaskId>, LabelError> {
        let uncertainty = self.inner.config.uncertainty;
        let queued: Vec<QueuedTask<T>> = tasks
            .iter()
            .map(|t| QueuedTask {
                id: t.item_id.to_string(),
                item: t.item.clone(),
                prediction: t.prediction.cloned(),
                margin: uncertainty.margin(t.prediction),
                seq: 0,
            })
            .collect();
        let ids = tasks.iter().map(|t| queued_task(t.item_id)).collect();
        let outcome = self
            .with_queue(move |q| q.push(queued))
            .await
            .map_err(|e| match e {
                ActiveError::Serialize { .. } | ActiveError::Config(_) => {
                    LabelError::permanent(e.to_string())
                }
                _ => LabelError::unavailable(e.to_string()),
            })?;
        let stats = &self.inner.stats.0;
        ActiveStatsHandle::add(&stats.queued, outcome.queued);
        ActiveStatsHandle::add(&stats.evicted, outcome.evicted);
        Ok(ids)
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        Ok(lock(&self.inner.recent).drain(..).collect())
    }
}
