//! [`LlmLabeler`]: classifiers as labeling workers.

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Semaphore;

use crate::aggregate::{Aggregator, Answer};
use crate::classify::{BoxClassifier, Classifier, Label};
use crate::error::{ClassifyError, ErrorClass, LabelError};
use crate::labeler::{LabelResult, LabelTask, Labeler, TaskId, Vote};

/// Why one worker gave no vote on one task.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerFailure {
    /// The worker's id.
    pub worker: String,
    /// What went wrong: the classifier error's kind (`throttled`,
    /// `unavailable`, `timeout`, `permanent`), `label_outside_set` or
    /// `panic`.
    pub kind: &'static str,
    /// Whether the last failure was retryable (then the attempts ran out).
    pub class: ErrorClass,
    /// Calls made for this vote.
    pub attempts: u32,
}

/// A task that got no vote from any worker. It keeps its task id; submit
/// the item again to try again.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unanswered {
    /// The item's id.
    pub item_id: String,
    /// Its task id.
    pub task: TaskId,
    /// One failure per worker.
    pub failures: Vec<WorkerFailure>,
}

/// What one worker did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LlmWorkerStats {
    /// The worker's id.
    pub worker: String,
    /// Calls made (retries included).
    pub calls: u64,
    /// Votes given.
    pub votes: u64,
    /// Calls tried again after a retryable error.
    pub retries: u64,
    /// Votes left out because retryable errors used up the attempts.
    pub failed_retryable: u64,
    /// Votes left out because of a permanent error, a label outside the
    /// set, or a panic.
    pub failed_permanent: u64,
}

struct WorkerEntry<T> {
    id: String,
    classifier: BoxClassifier<T>,
}

#[derive(Debug)]
enum Status {
    /// Being labeled by a `submit` call now.
    InFlight,
    /// Answered: its result is ready or was collected.
    Answered,
    /// No worker voted; tried again on the next submission.
    Unanswered(Vec<WorkerFailure>),
}

#[derive(Debug, Default)]
struct State {
    tasks: HashMap<String, Status>,
    ready: Vec<LabelResult>,
    stats: Vec<LlmWorkerStats>,
}

/// Settings for an [`LlmLabeler`], from [`LlmLabeler::builder`].
pub struct LlmLabelerBuilder<T> {
    labels: Vec<Label>,
    workers: Vec<WorkerEntry<T>>,
    concurrency: usize,
    attempts: u32,
    backoff: Duration,
    timeout: Option<Duration>,
}

impl<T> fmt::Debug for LlmLabelerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmLabelerBuilder")
            .field("labels", &self.labels)
            .field(
                "workers",
                &self.workers.iter().map(|w| &w.id).collect::<Vec<_>>(),
            )
            .field("concurrency", &self.concurrency)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<T: Sync + 'static> LlmLabelerBuilder<T> {
    /// Adds a worker: its id (as it appears in [`Vote::worker`] and in
    /// Dawid–Skene's worker reports) and the classifier that answers for it.
    /// Its prediction's label is the vote.
    pub fn worker(
        mut self,
        id: impl Into<String>,
        classifier: impl Classifier<T> + 'static,
    ) -> Self {
        self.workers.push(WorkerEntry {
            id: id.into(),
            classifier: BoxClassifier::new(classifier),
        });
        self
    }

    /// The most worker calls in flight at once, over all tasks, workers and
    /// concurrent `submit` calls (4 unless set; at least 1). A call waiting
    /// out a retry backoff does not hold a slot.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Calls per vote, first included (3 unless set; at least 1), and the
    /// first backoff after a retryable error (500 ms unless set), doubled
    /// after each further one.
    pub fn retry(mut self, attempts: u32, backoff: Duration) -> Self {
        self.attempts = attempts;
        self.backoff = backoff;
        self
    }

    /// How long one call may take before it counts as a retryable timeout
    /// (none unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Checks the settings and builds the labeler.
    ///
    /// # Errors
    /// A permanent [`LabelError`] when there is no label or no worker, a
    /// label or worker id is empty or listed twice, or the concurrency or
    /// attempts are 0.
    pub fn build(self) -> Result<LlmLabeler<T>, LabelError> {
        let bad = |m: String| Err(LabelError::permanent(m));
        if self.labels.is_empty() {
            return bad("give the LLM labeler at least one label: its label set is empty".into());
        }
        for (i, l) in self.labels.iter().enumerate() {
            if l.as_str().is_empty() || self.labels[..i].contains(l) {
                return bad(format!(
                    "make the labels distinct and non-empty: {l:?} is empty or listed twice"
                ));
            }
        }
        if self.workers.is_empty() {
            return bad(
                "add a worker with .worker(id, classifier): the LLM labeler has none".into(),
            );
        }
        for (i, w) in self.workers.iter().enumerate() {
            if w.id.is_empty() || self.workers[..i].iter().any(|o| o.id == w.id) {
                return bad(format!(
                    "give each worker a distinct, non-empty id: {:?} is empty or listed twice",
                    w.id
                ));
            }
        }
        if self.concurrency == 0 || self.attempts == 0 {
            return bad(format!(
                "set concurrency and attempts to at least 1 (found {} and {})",
                self.concurrency, self.attempts
            ));
        }
        let stats = self
            .workers
            .iter()
            .map(|w| LlmWorkerStats {
                worker: w.id.clone(),
                ..LlmWorkerStats::default()
            })
            .collect();
        Ok(LlmLabeler {
            labels: self.labels,
            workers: self.workers,
            slots: Arc::new(Semaphore::new(self.concurrency)),
            concurrency: self.concurrency,
            attempts: self.attempts,
            backoff: self.backoff,
            timeout: self.timeout,
            state: Mutex::new(State {
                stats,
                ..State::default()
            }),
        })
    }
}

/// A [`Labeler`] whose workers are classifiers (LLMs under different
/// prompts or models).
///
/// Each worker is a (worker id, [`Classifier`]) pair: a large language model
/// under one prompt, the same model under another prompt, another model, or
/// any classifier at all. Every submitted task is put to every worker; each
/// answer becomes a [`Vote`] under the worker's id, so that
/// [`Aggregator::dawid_skene`](crate::aggregate::Aggregator::dawid_skene)
/// estimates each LLM worker's reliability next to the human workers whose
/// votes come from other labelers.
///
/// # What a worker sees
///
/// A worker is a `Classifier<T>`: it is given the item and nothing else. The
/// task's [`prediction`](LabelTask::prediction) and
/// [`suggestion`](LabelTask::suggestion) never reach it, so the model's
/// opinion cannot bias the LLM's vote (the [`Labeler`] contract's rule for
/// people). This is by type, not by configuration.
///
/// # Failures
///
/// A worker's call that fails with a retryable error (throttled,
/// unavailable, timed out) is tried again after a backoff that doubles, up
/// to [`retry`](LlmLabelerBuilder::retry)'s number of attempts. A permanent
/// error, a label outside the label set, a panic, or retries used up leave
/// that worker's vote out of the task: never a made-up vote. A task with at
/// least one vote is answered (majority of its votes, ties to the label
/// listed first). A task with none is [`unanswered`](LlmLabeler::unanswered)
/// (with each worker's failure kind), and `submit` fails: retryable if any
/// of its workers' failures was, else permanent. Submitting it again tries
/// again under the same task id; tasks already answered are not labeled
/// again. Failures are logged with the item id, the
/// worker id and the error kind, never with the item's text or the backend's
/// message.
///
/// ```
/// use streamsift::fakes::FnClassifier;
/// use streamsift::{LabelTask, Labeler, LlmLabeler, Prediction};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let keyword = FnClassifier::new(|t: &String| {
///     Ok(Prediction::label(if t.contains("down") { "problem" } else { "none" }))
/// });
/// let lazy = FnClassifier::new(|_: &String| Ok(Prediction::label("none")));
/// let labeler = LlmLabeler::builder(["problem", "none"])
///     .worker("llm:keyword-prompt", keyword)
///     .worker("llm:lazy-prompt", lazy)
///     .concurrency(4)
///     .build()
///     .unwrap();
/// let text = "the api is down".to_string();
/// labeler.submit(&[LabelTask::new("t1", &text)]).await.unwrap();
/// let results = labeler.collect().await.unwrap();
/// assert_eq!(results[0].votes.len(), 2);
/// // One vote each: a tie, which goes to the label listed first.
/// assert_eq!(results[0].label, "problem");
/// assert_eq!(results[0].agreement, 0.5);
/// # });
/// ```
///
/// Labeling happens inside [`submit`](Labeler::submit), which returns once
/// every worker has answered or failed; [`collect`](Labeler::collect) then
/// hands each answered task out once. Task ids are `llm:<item id>`.
/// It remembers every item id it was given (to keep the contract: the same
/// id is the same task).
pub struct LlmLabeler<T> {
    labels: Vec<Label>,
    workers: Vec<WorkerEntry<T>>,
    slots: Arc<Semaphore>,
    concurrency: usize,
    attempts: u32,
    backoff: Duration,
    timeout: Option<Duration>,
    state: Mutex<State>,
}

impl<T> fmt::Debug for LlmLabeler<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmLabeler")
            .field("labels", &self.labels)
            .field(
                "workers",
                &self.workers.iter().map(|w| &w.id).collect::<Vec<_>>(),
            )
            .field("concurrency", &self.concurrency)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// One worker's outcome on one task.
type Outcome = Result<Label, WorkerFailure>;

impl<T: Sync + 'static> LlmLabeler<T> {
    /// Starts building a labeler over `labels` (the label set; a worker's
    /// answer outside it is not a vote).
    pub fn builder<L: Into<Label>>(labels: impl IntoIterator<Item = L>) -> LlmLabelerBuilder<T> {
        LlmLabelerBuilder {
            labels: labels.into_iter().map(Into::into).collect(),
            workers: Vec::new(),
            concurrency: 4,
            attempts: 3,
            backoff: Duration::from_millis(500),
            timeout: None,
        }
    }
}

impl<T> LlmLabeler<T> {
    /// The label set.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// The workers' ids, in the order they were added.
    pub fn worker_ids(&self) -> Vec<&str> {
        self.workers.iter().map(|w| w.id.as_str()).collect()
    }

    /// What each worker did so far, in the order they were added.
    pub fn stats(&self) -> Vec<LlmWorkerStats> {
        self.lock().stats.clone()
    }

    /// Tasks no worker voted on (until they are submitted again and
    /// answered), sorted by item id.
    pub fn unanswered(&self) -> Vec<Unanswered> {
        let state = self.lock();
        let mut out: Vec<Unanswered> = state
            .tasks
            .iter()
            .filter_map(|(id, s)| match s {
                Status::Unanswered(failures) => Some(Unanswered {
                    item_id: id.clone(),
                    task: task_id(id),
                    failures: failures.clone(),
                }),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.item_id.cmp(&b.item_id));
        out
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a single statement on plain data: a panic
        // elsewhere cannot leave the state half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn task_id(item_id: &str) -> TaskId {
    TaskId(format!("llm:{item_id}"))
}

impl<T: Sync> LlmLabeler<T> {
    /// One worker's vote on one item, with retries.
    async fn vote(&self, worker: usize, item: &T) -> Outcome {
        let entry = &self.workers[worker];
        let mut attempts = 0u32;
        let mut backoff = self.backoff;
        loop {
            attempts += 1;
            let answer = {
                // The semaphore is never closed.
                let _slot = self.slots.acquire().await;
                let call = AssertUnwindSafe(entry.classifier.classify(item)).catch_unwind();
                match self.timeout {
                    Some(limit) => match tokio::time::timeout(limit, call).await {
                        Ok(r) => r,
                        Err(_) => Ok(Err(ClassifyError::Timeout(limit))),
                    },
                    None => call.await,
                }
            };
            let fail = |kind: &'static str, class: ErrorClass| WorkerFailure {
                worker: entry.id.clone(),
                kind,
                class,
                attempts,
            };
            let error = match answer {
                Err(_panic) => {
                    self.tally(worker, attempts, Some(ErrorClass::Permanent));
                    return Err(fail("panic", ErrorClass::Permanent));
                }
                Ok(Ok(p)) => match self.labels.iter().find(|l| **l == p.label) {
                    Some(label) => {
                        self.tally(worker, attempts, None);
                        return Ok(label.clone());
                    }
                    None => {
                        self.tally(worker, attempts, Some(ErrorClass::Permanent));
                        return Err(fail("label_outside_set", ErrorClass::Permanent));
                    }
                },
                Ok(Err(e)) => e,
            };
            if !error.is_retryable() || attempts >= self.attempts {
                self.tally(worker, attempts, Some(error.class()));
                return Err(fail(error.kind(), error.class()));
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }

    fn tally(&self, worker: usize, attempts: u32, failed: Option<ErrorClass>) {
        let mut state = self.lock();
        let s = &mut state.stats[worker];
        s.calls += u64::from(attempts);
        s.retries += u64::from(attempts.saturating_sub(1));
        match failed {
            None => s.votes += 1,
            Some(ErrorClass::Retryable) => s.failed_retryable += 1,
            Some(ErrorClass::Permanent) => s.failed_permanent += 1,
        }
    }

    /// Every worker's vote on one task, then its result or its failures.
    async fn label(&self, task: &LabelTask<'_, T>) -> Result<LabelResult, Vec<WorkerFailure>> {
        // Only the item goes to the workers: never the prediction or the
        // suggestion.
        let item = task.item;
        let outcomes =
            futures::future::join_all((0..self.workers.len()).map(|w| self.vote(w, item))).await;
        let mut votes = Vec::new();
        let mut failures = Vec::new();
        for (w, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(label) => votes.push(Vote {
                    worker: self.workers[w].id.clone(),
                    label,
                }),
                Err(f) => {
                    tracing::warn!(
                        item_id = task.item_id,
                        worker = %f.worker,
                        kind = f.kind,
                        attempts = f.attempts,
                        "an LLM worker gave no vote; its vote is left out"
                    );
                    failures.push(f);
                }
            }
        }
        if votes.is_empty() {
            return Err(failures);
        }
        let answers: Vec<Answer> = votes
            .iter()
            .map(|v| Answer::new(task.item_id, v.worker.as_str(), v.label.as_str()))
            .collect();
        let aggregation = Aggregator::new(self.labels.iter().cloned())
            .min_votes(1)
            .majority(&answers);
        // Every vote's label is in the set, so the item is labeled.
        let Some(labeled) = aggregation.items.first() else {
            return Err(failures);
        };
        Ok(LabelResult {
            task: task_id(task.item_id),
            item_id: task.item_id.to_owned(),
            label: labeled.label.clone(),
            agreement: labeled.agreement,
            votes,
        })
    }
}

/// Forgets the tasks of a `submit` call still in flight when it ends (only
/// when the call was dropped midway), so a later submission labels them.
struct InFlightGuard<'a, T> {
    labeler: &'a LlmLabeler<T>,
    ids: Vec<&'a str>,
}

impl<T> Drop for InFlightGuard<'_, T> {
    fn drop(&mut self) {
        let mut state = self.labeler.lock();
        for id in &self.ids {
            if matches!(state.tasks.get(*id), Some(Status::InFlight)) {
                state.tasks.remove(*id);
            }
        }
    }
}

#[async_trait::async_trait]
impl<T: Sync> Labeler<T> for LlmLabeler<T> {
    async fn submit(&self, tasks: &[LabelTask<'_, T>]) -> Result<Vec<TaskId>, LabelError> {
        let mut todo: Vec<&LabelTask<'_, T>> = Vec::new();
        {
            let mut state = self.lock();
            for task in tasks {
                let fresh = match state.tasks.get(task.item_id) {
                    None | Some(Status::Unanswered(_)) => true,
                    Some(Status::InFlight | Status::Answered) => false,
                };
                if fresh {
                    state
                        .tasks
                        .insert(task.item_id.to_owned(), Status::InFlight);
                    todo.push(task);
                }
            }
        }
        // If this call is dropped midway, its tasks are not left in flight.
        let _guard = InFlightGuard {
            labeler: self,
            ids: todo.iter().map(|t| t.item_id).collect(),
        };
        let done = futures::future::join_all(todo.iter().map(|t| self.label(t))).await;
        let (mut unanswered, mut retryable) = (0usize, false);
        let mut kinds: Vec<&'static str> = Vec::new();
        let mut state = self.lock();
        for (task, outcome) in todo.iter().zip(done) {
            let status = match outcome {
                Ok(result) => {
                    state.ready.push(result);
                    Status::Answered
                }
                Err(failures) => {
                    unanswered += 1;
                    for f in &failures {
                        retryable |= f.class == ErrorClass::Retryable;
                        if !kinds.contains(&f.kind) {
                            kinds.push(f.kind);
                        }
                    }
                    Status::Unanswered(failures)
                }
            };
            state.tasks.insert(task.item_id.to_owned(), status);
        }
        drop(state);
        if unanswered == 0 {
            return Ok(tasks.iter().map(|t| task_id(t.item_id)).collect());
        }
        let n = todo.len();
        Err(if retryable {
            LabelError::unavailable(format!(
                "submit these tasks again later: {unanswered} of {n} got no vote from any worker \
                 ({}); the answered ones are not labeled again",
                kinds.join(", ")
            ))
        } else {
            LabelError::permanent(format!(
                "check the workers (LlmLabeler::unanswered lists the items): {unanswered} of {n} \
                 tasks got no vote, every worker failed permanently ({})",
                kinds.join(", ")
            ))
        })
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        Ok(std::mem::take(&mut self.lock().ready))
    }
}
