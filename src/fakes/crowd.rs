//! A simulated crowd of labelers: [`SimulatedCrowd`] and its [`Worker`]s.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::classify::Label;
use crate::error::LabelError;
use crate::labeler::{LabelResult, LabelTask, Labeler, TaskId, Vote};
use crate::util::{Rng, hash_str, splitmix64, unit_f64};

/// One simulated worker of a [`SimulatedCrowd`].
#[derive(Clone, Debug, PartialEq)]
pub struct Worker {
    id: String,
    behaviour: Behaviour,
}

#[derive(Clone, Debug, PartialEq)]
enum Behaviour {
    Accurate(f64),
    Spammer,
    Always(Label),
}

impl Worker {
    /// A worker who answers the true label with probability `accuracy`
    /// (clamped to `[0, 1]`; NaN means 0), and otherwise a label chosen
    /// uniformly among the others.
    ///
    /// ```
    /// use streamsift::fakes::Worker;
    /// let w = Worker::accurate("alice", 0.9);
    /// assert_eq!(w.id(), "alice");
    /// ```
    pub fn accurate(id: impl Into<String>, accuracy: f64) -> Self {
        let accuracy = if accuracy.is_nan() {
            0.0
        } else {
            accuracy.clamp(0.0, 1.0)
        };
        Worker {
            id: id.into(),
            behaviour: Behaviour::Accurate(accuracy),
        }
    }

    /// A worker who answers uniformly at random from the label set.
    ///
    /// ```
    /// use streamsift::fakes::Worker;
    /// let w = Worker::spammer("bot-7");
    /// assert_eq!(w.id(), "bot-7");
    /// ```
    pub fn spammer(id: impl Into<String>) -> Self {
        Worker {
            id: id.into(),
            behaviour: Behaviour::Spammer,
        }
    }

    /// A lazy worker who always answers `label`.
    ///
    /// ```
    /// use streamsift::fakes::Worker;
    /// let w = Worker::always("lazy", "none");
    /// assert_eq!(w.id(), "lazy");
    /// ```
    pub fn always(id: impl Into<String>, label: impl Into<Label>) -> Self {
        Worker {
            id: id.into(),
            behaviour: Behaviour::Always(label.into()),
        }
    }

    /// The worker's id, as it appears in [`Vote::worker`].
    pub fn id(&self) -> &str {
        &self.id
    }

    /// This worker's answer for an item, a pure function of the seed, the
    /// item id and the worker id.
    fn answer(&self, seed: u64, item: u64, truth: &Label, labels: &[Label]) -> Label {
        let mut rng = Rng::new(seed ^ splitmix64(item ^ splitmix64(hash_str(&self.id))));
        let pick = |rng: &mut Rng, from: Vec<&Label>| match from.len() {
            0 => truth.clone(),
            n => from[rng.below(n as u64) as usize].clone(),
        };
        match &self.behaviour {
            Behaviour::Always(label) => label.clone(),
            Behaviour::Spammer => pick(&mut rng, labels.iter().collect()),
            Behaviour::Accurate(accuracy) => {
                if rng.next_f64() < *accuracy {
                    truth.clone()
                } else {
                    pick(&mut rng, labels.iter().filter(|l| *l != truth).collect())
                }
            }
        }
    }
}

const SALT_ASSIGN: u64 = 0x6173_7369_676e; // "assign"
const SALT_JITTER: u64 = 0x6a69_7474_6572; // "jitter"

type TruthFn<T> = Box<dyn Fn(&T) -> Label + Send + Sync>;

/// A [`Labeler`] whose workers have set accuracies, for testing the review
/// loop without people.
///
/// Each submitted task is given to
/// [`assignments_per_task`](Self::assignments_per_task) workers (3 unless
/// set), chosen by the seed and the item id. Their answers come from the
/// truth function and each worker's behaviour, and are a pure function of
/// (seed, item id, worker id): the same seed gives the same votes whatever
/// the order of submission. A task finishes
/// [`completion_delay`](Self::completion_delay) after it is submitted (2
/// hours unless set, on tokio's clock, so tests pause and advance time);
/// [`collect`](Labeler::collect) returns each finished task once, with the
/// majority label (ties go to the label first in the label set), the share
/// of votes that agree with it, and every vote.
///
/// Submitting an item id again returns its existing task. The prediction
/// in a [`LabelTask`] is ignored: workers do not see it.
///
/// ```
/// use std::time::Duration;
/// use streamsift::fakes::{SimulatedCrowd, Worker};
/// use streamsift::{LabelTask, Labeler};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// // The truth: a text is a problem report when it mentions "down".
/// let crowd = SimulatedCrowd::new(["problem_report", "none"], |text: &String| {
///     if text.contains("down") { "problem_report" } else { "none" }
/// })
/// .workers([Worker::accurate("a", 0.95), Worker::accurate("b", 0.9), Worker::spammer("c")])
/// .completion_delay(Duration::from_secs(3600))
/// .seed(42);
///
/// let text = "the site is down".to_string();
/// crowd.submit(&[LabelTask::new("r1", &text)]).await.unwrap();
/// assert!(crowd.collect().await.unwrap().is_empty(), "people take time");
/// tokio::time::advance(Duration::from_secs(3600)).await;
/// let results = crowd.collect().await.unwrap();
/// assert_eq!(results.len(), 1);
/// assert_eq!(results[0].votes.len(), 3);
/// # });
/// ```
pub struct SimulatedCrowd<T> {
    labels: Vec<Label>,
    truth: TruthFn<T>,
    workers: Vec<Worker>,
    assignments: usize,
    delay: Duration,
    jitter: Duration,
    seed: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Every task ever submitted, by item id.
    tasks: HashMap<String, TaskId>,
    /// Finished results not yet collected, by (ready time, submission order).
    pending: BTreeMap<(Instant, u64), LabelResult>,
    /// Worker assignments made so far.
    assignments: u64,
}

impl<T> SimulatedCrowd<T> {
    /// A crowd labeling with `labels`, where `truth` gives an item's true
    /// label. It has no workers yet: add them with
    /// [`worker`](Self::worker) or [`workers`](Self::workers).
    ///
    /// A true label outside `labels` is allowed; accurate workers then give
    /// it when right and any label of the set when wrong.
    ///
    /// ```
    /// use streamsift::fakes::{SimulatedCrowd, Worker};
    /// let crowd = SimulatedCrowd::new(["spam", "ham"], |s: &String| {
    ///     if s.contains("win money") { "spam" } else { "ham" }
    /// })
    /// .worker(Worker::accurate("w1", 0.9));
    /// assert_eq!(crowd.submitted(), 0);
    /// ```
    pub fn new<L, F, R>(labels: impl IntoIterator<Item = L>, truth: F) -> Self
    where
        L: Into<Label>,
        F: Fn(&T) -> R + Send + Sync + 'static,
        R: Into<Label>,
    {
        SimulatedCrowd {
            labels: labels.into_iter().map(Into::into).collect(),
            truth: Box::new(move |item| truth(item).into()),
            workers: Vec::new(),
            assignments: 3,
            delay: Duration::from_secs(2 * 60 * 60),
            jitter: Duration::ZERO,
            seed: 0,
            state: Mutex::default(),
        }
    }

    /// Adds a worker. A worker with the id of an existing one replaces it.
    pub fn worker(mut self, worker: Worker) -> Self {
        match self.workers.iter_mut().find(|w| w.id == worker.id) {
            Some(existing) => *existing = worker,
            None => self.workers.push(worker),
        }
        self
    }

    /// Adds several workers.
    pub fn workers(self, workers: impl IntoIterator<Item = Worker>) -> Self {
        workers.into_iter().fold(self, Self::worker)
    }

    /// How many workers answer each task (3 unless set). It is capped at
    /// the number of workers, and at least 1.
    pub fn assignments_per_task(mut self, n: usize) -> Self {
        self.assignments = n.max(1);
        self
    }

    /// How long after submission a task finishes (2 hours unless set).
    pub fn completion_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Spreads completion times: each task takes an extra share of `jitter`
    /// chosen by the seed and item id, so tasks finish out of order (none
    /// unless set).
    pub fn completion_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the workers' choices and answers (0 unless set).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The label set, in tie-breaking order.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// How many distinct tasks have been submitted.
    pub fn submitted(&self) -> usize {
        self.lock().tasks.len()
    }

    /// How many submitted tasks have not been collected yet (finished or
    /// not).
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// How many worker assignments have been made: the unit a crowd
    /// marketplace bills by.
    pub fn assignments(&self) -> u64 {
        self.lock().assignments
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent after every statement, so a panic in
        // another thread (in a user's truth function, say) leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The workers for an item: the `assignments` with the lowest hash of
    /// (seed, item, worker), so the choice is stable under reordering.
    fn assigned(&self, item: u64) -> Vec<&Worker> {
        let mut ranked: Vec<(f64, &Worker)> = self
            .workers
            .iter()
            .map(|w| (unit_f64(self.seed, item, hash_str(&w.id) ^ SALT_ASSIGN), w))
            .collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        ranked.truncate(self.assignments);
        ranked.into_iter().map(|(_, w)| w).collect()
    }

    /// The finished result for one item.
    fn label(&self, task: TaskId, item_id: &str, item: &T) -> LabelResult {
        let key = hash_str(item_id);
        let truth = (self.truth)(item);
        let votes: Vec<Vote> = self
            .assigned(key)
            .into_iter()
            .map(|w| Vote {
                worker: w.id.clone(),
                label: w.answer(self.seed, key, &truth, &self.labels),
            })
            .collect();
        let (label, count) = majority(&votes, &self.labels);
        LabelResult {
            task,
            item_id: item_id.to_owned(),
            label,
            agreement: count as f64 / votes.len().max(1) as f64,
            votes,
        }
    }
}

/// The most voted label and its count; ties go to the label first in
/// `labels`, then (for labels outside the set) to the first voted.
fn majority(votes: &[Vote], labels: &[Label]) -> (Label, usize) {
    let mut counts: Vec<(&Label, usize)> = labels.iter().map(|l| (l, 0)).collect();
    for vote in votes {
        match counts.iter_mut().find(|(l, _)| **l == vote.label) {
            Some((_, n)) => *n += 1,
            None => counts.push((&vote.label, 1)),
        }
    }
    let mut best: Option<(&Label, usize)> = None;
    for (label, n) in counts {
        if best.is_none_or(|(_, b)| n > b) {
            best = Some((label, n));
        }
    }
    match best {
        Some((label, n)) => (label.clone(), n),
        None => (Label::from_static(""), 0),
    }
}

impl<T> fmt::Debug for SimulatedCrowd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedCrowd")
            .field("labels", &self.labels)
            .field("workers", &self.workers)
            .field("assignments_per_task", &self.assignments)
            .field("completion_delay", &self.delay)
            .field("completion_jitter", &self.jitter)
            .field("seed", &self.seed)
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl<T: Sync> Labeler<T> for SimulatedCrowd<T> {
    async fn submit(&self, tasks: &[LabelTask<'_, T>]) -> Result<Vec<TaskId>, LabelError> {
        if self.workers.is_empty() {
            return Err(LabelError::permanent(
                "the simulated crowd has no workers; add some with SimulatedCrowd::worker",
            ));
        }
        let now = Instant::now();
        let mut state = self.lock();
        let mut ids = Vec::with_capacity(tasks.len());
        for task in tasks {
            if let Some(existing) = state.tasks.get(task.item_id) {
                ids.push(existing.clone());
                continue;
            }
            let seq = state.tasks.len() as u64;
            let id = TaskId(format!("sim-task-{}", seq + 1));
            let result = self.label(id.clone(), task.item_id, task.item);
            let jitter =
                self.jitter
                    .mul_f64(unit_f64(self.seed, hash_str(task.item_id), SALT_JITTER));
            state.assignments += result.votes.len() as u64;
            state
                .pending
                .insert((now + self.delay + jitter, seq), result);
            state.tasks.insert(task.item_id.to_owned(), id.clone());
            ids.push(id);
        }
        Ok(ids)
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        let now = Instant::now();
        let mut state = self.lock();
        let mut done = Vec::new();
        while let Some(entry) = state.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            done.push(entry.remove());
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABELS: [&str; 3] = ["problem_report", "praise", "none"];

    /// Items are numbers; the true label cycles through the label set.
    fn truth(n: &u32) -> Label {
        Label::from_static(LABELS[*n as usize % 3])
    }

    fn crowd(workers: impl IntoIterator<Item = Worker>) -> SimulatedCrowd<u32> {
        SimulatedCrowd::new(LABELS, truth).workers(workers).seed(11)
    }

    async fn label_all(crowd: &SimulatedCrowd<u32>, items: &[u32]) -> Vec<LabelResult> {
        let ids: Vec<String> = items.iter().map(|n| format!("item-{n}")).collect();
        let tasks: Vec<LabelTask<'_, u32>> = items
            .iter()
            .zip(&ids)
            .map(|(n, id)| LabelTask {
                item_id: id,
                item: n,
                prediction: None,
                suggestion: None,
            })
            .collect();
        crowd.submit(&tasks).await.unwrap();
        tokio::time::advance(crowd.delay + crowd.jitter).await;
        let mut results = crowd.collect().await.unwrap();
        results.sort_by_key(|r| r.item_id[5..].parse::<u32>().unwrap());
        results
    }

    fn accuracy(results: &[LabelResult]) -> f64 {
        let right = results
            .iter()
            .filter(|r| r.label == truth(&r.item_id[5..].parse().unwrap()))
            .count();
        right as f64 / results.len() as f64
    }

    fn mean_agreement(results: &[LabelResult]) -> f64 {
        results.iter().map(|r| r.agreement).sum::<f64>() / results.len() as f64
    }

    #[tokio::test(start_paused = true)]
    async fn majority_of_three_beats_a_single_worker() {
        let items: Vec<u32> = (0..1000).collect();
        let three = crowd((1..=3).map(|i| Worker::accurate(format!("w{i}"), 0.9)));
        let results = label_all(&three, &items).await;
        assert_eq!(results.len(), 1000);
        assert!(results.iter().all(|r| r.votes.len() == 3));
        let majority = accuracy(&results);

        let one = crowd([Worker::accurate("solo", 0.9)]);
        let single = accuracy(&label_all(&one, &items).await);
        assert!((0.87..0.93).contains(&single), "single worker: {single}");
        assert!(majority > 0.95, "majority of three: {majority}");
        assert!(majority > single);
        assert_eq!(three.assignments(), 3000);
    }

    #[tokio::test(start_paused = true)]
    async fn spammers_lower_agreement_and_accuracy() {
        let items: Vec<u32> = (0..600).collect();
        let good = label_all(
            &crowd((1..=3).map(|i| Worker::accurate(format!("w{i}"), 0.95))),
            &items,
        )
        .await;
        let spam = label_all(
            &crowd((1..=3).map(|i| Worker::spammer(format!("s{i}")))),
            &items,
        )
        .await;
        let (good_agreement, spam_agreement) = (mean_agreement(&good), mean_agreement(&spam));
        assert!(good_agreement > 0.9, "{good_agreement}");
        // Three uniform votes over three labels agree on 17/27 on average.
        assert!((0.55..0.72).contains(&spam_agreement), "{spam_agreement}");
        assert!(accuracy(&spam) < 0.5);
        for r in &spam {
            let top = r.votes.iter().filter(|v| v.label == r.label).count();
            assert!((r.agreement - top as f64 / 3.0).abs() < 1e-12);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn votes_depend_on_the_seed_not_the_order_of_calls() {
        let workers = || (1..=5).map(|i| Worker::accurate(format!("w{i}"), 0.7));
        let forward: Vec<u32> = (0..200).collect();
        let backward: Vec<u32> = forward.iter().rev().copied().collect();
        let a = label_all(&crowd(workers()), &forward).await;
        // Submitted in reverse, one at a time.
        let c = crowd(workers());
        for n in &backward {
            c.submit(&[LabelTask {
                item_id: &format!("item-{n}"),
                item: n,
                prediction: None,
                suggestion: None,
            }])
            .await
            .unwrap();
        }
        tokio::time::advance(c.delay).await;
        let mut b = c.collect().await.unwrap();
        b.sort_by_key(|r| r.item_id[5..].parse::<u32>().unwrap());
        let votes = |rs: &[LabelResult]| {
            rs.iter()
                .map(|r| (r.label.clone(), r.votes.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(votes(&a), votes(&b));
        let other_seed = label_all(&crowd(workers()).seed(12), &forward).await;
        assert_ne!(votes(&a), votes(&other_seed));
        // Three of the five workers answer each task, not always the same three.
        let panels: std::collections::HashSet<Vec<String>> = a
            .iter()
            .map(|r| {
                assert_eq!(r.votes.len(), 3);
                r.votes.iter().map(|v| v.worker.clone()).collect()
            })
            .collect();
        assert!(panels.len() > 5, "{panels:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn results_arrive_after_the_delay_exactly_once() {
        let c = crowd([
            Worker::accurate("a", 1.0),
            Worker::accurate("b", 1.0),
            Worker::accurate("c", 1.0),
        ])
        .completion_delay(Duration::from_secs(600));
        let items = [1u32, 2];
        c.submit(&[LabelTask {
            item_id: "x1",
            item: &items[0],
            prediction: None,
            suggestion: None,
        }])
        .await
        .unwrap();
        tokio::time::advance(Duration::from_secs(100)).await;
        c.submit(&[LabelTask {
            item_id: "x2",
            item: &items[1],
            prediction: None,
            suggestion: None,
        }])
        .await
        .unwrap();
        assert!(c.collect().await.unwrap().is_empty());
        tokio::time::advance(Duration::from_secs(499)).await;
        assert!(c.collect().await.unwrap().is_empty(), "one second early");
        tokio::time::advance(Duration::from_secs(1)).await;
        let first = c.collect().await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(
            (
                first[0].item_id.as_str(),
                first[0].label.as_str(),
                first[0].agreement
            ),
            ("x1", "praise", 1.0)
        );
        assert_eq!(c.pending(), 1);
        tokio::time::advance(Duration::from_secs(100)).await;
        let second = c.collect().await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].item_id, "x2");
        tokio::time::advance(Duration::from_secs(10_000)).await;
        assert!(c.collect().await.unwrap().is_empty(), "each result once");
        assert_eq!(c.pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn resubmitting_an_id_returns_the_same_task() {
        let c = crowd([Worker::accurate("a", 0.9)]).assignments_per_task(3);
        let n = 4u32;
        let first = c
            .submit(&[
                LabelTask {
                    item_id: "r1",
                    item: &n,
                    prediction: None,
                    suggestion: None,
                },
                LabelTask {
                    item_id: "r2",
                    item: &n,
                    prediction: None,
                    suggestion: None,
                },
                LabelTask {
                    item_id: "r1",
                    item: &n,
                    prediction: None,
                    suggestion: None,
                },
            ])
            .await
            .unwrap();
        assert_eq!(first[0], first[2]);
        assert_ne!(first[0], first[1]);
        let again = c
            .submit(&[LabelTask {
                item_id: "r2",
                item: &n,
                prediction: None,
                suggestion: None,
            }])
            .await
            .unwrap();
        assert_eq!(again, [first[1].clone()]);
        assert_eq!(c.submitted(), 2);
        tokio::time::advance(c.delay).await;
        let results = c.collect().await.unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].task, first[0]);
        // Capped at the single worker.
        assert_eq!(results[0].votes.len(), 1);
        c.submit(&[LabelTask {
            item_id: "r1",
            item: &n,
            prediction: None,
            suggestion: None,
        }])
        .await
        .unwrap();
        assert_eq!(c.pending(), 0, "a collected task is not redone");
    }

    #[tokio::test(start_paused = true)]
    async fn ties_follow_label_set_order_and_lazy_workers_are_consistent() {
        // Two workers who always disagree: a 1-1 tie every time.
        let c = SimulatedCrowd::new(["a", "b"], |_: &u32| "b")
            .workers([Worker::always("x", "b"), Worker::always("y", "a")])
            .assignments_per_task(2);
        let results = label_all(&c, &[1, 2, 3]).await;
        assert!(results.iter().all(|r| r.label == "a" && r.agreement == 0.5));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_spreads_completions_within_its_bound() {
        let c = crowd([Worker::accurate("a", 1.0)])
            .completion_delay(Duration::from_secs(100))
            .completion_jitter(Duration::from_secs(100));
        let items: Vec<u32> = (0..50).collect();
        let ids: Vec<String> = items.iter().map(|n| format!("j{n}")).collect();
        let tasks: Vec<_> = items
            .iter()
            .zip(&ids)
            .map(|(n, id)| LabelTask {
                item_id: id,
                item: n,
                prediction: None,
                suggestion: None,
            })
            .collect();
        c.submit(&tasks).await.unwrap();
        tokio::time::advance(Duration::from_secs(99)).await;
        assert!(c.collect().await.unwrap().is_empty());
        tokio::time::advance(Duration::from_secs(51)).await;
        let early = c.collect().await.unwrap().len();
        assert!((10..40).contains(&early), "{early}");
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(c.collect().await.unwrap().len(), 50 - early);
    }

    #[tokio::test]
    async fn a_crowd_without_workers_refuses_tasks() {
        let c = SimulatedCrowd::new(LABELS, truth);
        let err = c
            .submit(&[LabelTask {
                item_id: "a",
                item: &1,
                prediction: None,
                suggestion: None,
            }])
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("no workers"), "{err}");
        assert_eq!(c.submitted(), 0);
    }
}
