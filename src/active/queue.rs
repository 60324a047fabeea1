//! [`ReviewQueue`]: the durable, bounded queue of items waiting for labels.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::store::read_lines;
use super::{ActiveError, json_error};
use crate::classify::Prediction;
use crate::jsonl::{Appender, sync_parent};

/// What a full queue does with one more item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvictionPolicy {
    /// Keep the most uncertain items (the default): the new item replaces
    /// the least uncertain queued one if it is more uncertain than it, and
    /// is dropped otherwise. Either way one item is evicted and counted.
    #[default]
    KeepMostUncertain,
    /// Drop the new item and keep the queue as it is (counted).
    DropNewest,
}

/// One queued item.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedTask<T> {
    /// The record id (the [`LabelTask::item_id`](crate::LabelTask::item_id)).
    pub id: String,
    /// The item.
    pub item: T,
    /// The model's prediction, if the pipeline gave one.
    pub prediction: Option<Prediction>,
    /// Its [`Uncertainty`](super::Uncertainty) margin: smaller goes first.
    pub margin: f64,
    /// Arrival order, the tie-breaker between equal margins.
    pub seq: u64,
}

/// One line of the queue file.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op<I> {
    /// An item entered the queue; `sent` is set when a compaction rewrote an
    /// item already submitted.
    Add {
        seq: u64,
        id: String,
        margin: f64,
        item: I,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prediction: Option<Prediction>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        sent: bool,
    },
    /// The item was submitted to the labeler (and charged to the budget).
    Sent { id: String },
    /// Its label was stored; it leaves the queue.
    Done { id: String },
    /// It was evicted from a full queue.
    Evict { id: String },
    /// Tasks charged before this point (written by compaction).
    Spent { tasks: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Margin(f64);

impl Eq for Margin {}
impl PartialOrd for Margin {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Margin {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.0.total_cmp(&other.0)
    }
}

/// The review queue: items waiting to be submitted (`pending`, ordered
/// most uncertain first) and items submitted and waiting for their label
/// (`awaiting`), kept in a JSON-lines log so they survive a restart.
///
/// Every change is appended to the log and synced to disk before it counts,
/// so once [`push`](ReviewQueue::push) returns, the pipeline may move its
/// checkpoint past the record. The log is rewritten (write a temporary
/// file, sync, rename) when it is opened and whenever it grows past four
/// times the live items plus 1,024 lines.
///
/// Memory is bounded: at most `capacity` pending items. When full, the
/// [`EvictionPolicy`] decides which item goes. Awaiting items are bounded by
/// [`ActiveConfig::max_awaiting`](super::ActiveConfig::max_awaiting), since
/// nothing is submitted while that many wait.
///
/// ```
/// use streamsift::active::{EvictionPolicy, QueuedTask, ReviewQueue};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("queue.jsonl");
/// let mut queue = ReviewQueue::<String>::open(&path, 100, EvictionPolicy::default()).unwrap();
/// let task = |id: &str, margin| QueuedTask { id: id.into(), item: id.to_string(), prediction: None, margin, seq: 0 };
/// queue.push(vec![task("sure", 0.8), task("unsure", 0.05)]).unwrap();
/// drop(queue);
/// let queue = ReviewQueue::<String>::open(&path, 100, EvictionPolicy::default()).unwrap();
/// let next: Vec<String> = queue.peek(2).into_iter().map(|t| t.id).collect();
/// assert_eq!(next, ["unsure", "sure"]);
/// ```
pub struct ReviewQueue<T> {
    path: PathBuf,
    file: Appender,
    capacity: usize,
    policy: EvictionPolicy,
    pending: HashMap<String, QueuedTask<T>>,
    order: BTreeSet<(Margin, u64, String)>,
    awaiting: HashMap<String, QueuedTask<T>>,
    spent: u64,
    next_seq: u64,
    log_lines: usize,
}

/// What [`ReviewQueue::push`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Items added.
    pub queued: u64,
    /// Items evicted (queued ones or new ones).
    pub evicted: u64,
    /// Items already queued or awaiting (a redelivered record), ignored.
    pub duplicates: u64,
}

impl<T: Serialize + DeserializeOwned + Clone> ReviewQueue<T> {
    /// Opens (or creates) the queue log at `path`, replays it, and rewrites
    /// it compactly. A torn last line (a crash during an append) is dropped;
    /// any other bad line is [`ActiveError::Corrupt`].
    pub fn open(
        path: impl Into<PathBuf>,
        capacity: usize,
        policy: EvictionPolicy,
    ) -> Result<Self, ActiveError> {
        let path = path.into();
        if capacity == 0 {
            return Err(ActiveError::Config(
                "the review queue capacity must be at least 1".into(),
            ));
        }
        let mut queue = ReviewQueue {
            file: open_append(&path)?,
            path,
            capacity,
            policy,
            pending: HashMap::new(),
            order: BTreeSet::new(),
            awaiting: HashMap::new(),
            spent: 0,
            next_seq: 0,
            log_lines: 0,
        };
        queue.replay()?;
        // A lowered capacity applies at once: keep the most uncertain.
        while queue.pending.len() > queue.capacity {
            if let Some((_, _, id)) = queue.order.pop_last() {
                queue.pending.remove(&id);
            }
        }
        queue.compact()?;
        Ok(queue)
    }

    fn replay(&mut self) -> Result<(), ActiveError> {
        let file = File::open(&self.path).map_err(|source| ActiveError::Io {
            action: "open",
            path: self.path.clone(),
            source,
        })?;
        let lines = read_lines(&self.path, file)?;
        let last = lines.len();
        for (i, (line, complete)) in lines.into_iter().enumerate() {
            let op = match serde_json::from_slice::<Op<T>>(&line) {
                Ok(op) => op,
                Err(_) if i + 1 == last && !complete => break,
                Err(e) => {
                    return Err(ActiveError::Corrupt {
                        path: self.path.clone(),
                        line: i + 1,
                        expected: "a review-queue entry (op add, sent, done, evict or spent)",
                        found: json_error(&e),
                    });
                }
            };
            match op {
                Op::Add {
                    seq,
                    id,
                    margin,
                    item,
                    prediction,
                    sent,
                } => {
                    self.next_seq = self.next_seq.max(seq + 1);
                    let task = QueuedTask {
                        id: id.clone(),
                        item,
                        prediction,
                        margin,
                        seq,
                    };
                    self.remove(&id);
                    if sent {
                        self.awaiting.insert(id, task);
                    } else {
                        self.insert_pending(task);
                    }
                }
                Op::Sent { id } => {
                    self.spent += 1;
                    if let Some(task) = self.remove_pending(&id) {
                        self.awaiting.insert(id, task);
                    }
                }
                Op::Done { id } | Op::Evict { id } => self.remove(&id),
                Op::Spent { tasks } => self.spent = tasks,
            }
        }
        Ok(())
    }

    fn insert_pending(&mut self, task: QueuedTask<T>) {
        self.order
            .insert((Margin(task.margin), task.seq, task.id.clone()));
        self.pending.insert(task.id.clone(), task);
    }

    fn remove_pending(&mut self, id: &str) -> Option<QueuedTask<T>> {
        let task = self.pending.remove(id)?;
        self.order
            .remove(&(Margin(task.margin), task.seq, task.id.clone()));
        Some(task)
    }

    fn remove(&mut self, id: &str) {
        self.remove_pending(id);
        self.awaiting.remove(id);
    }

    fn write(&mut self, buf: &[u8], lines: usize) -> Result<(), ActiveError> {
        let io = |action, source| ActiveError::Io {
            action,
            path: self.path.clone(),
            source,
        };
        self.file.append(buf).map_err(|e| io("append to", e))?;
        self.log_lines += lines;
        Ok(())
    }

    fn line<I: Serialize>(buf: &mut Vec<u8>, op: &Op<I>, id: &str) -> Result<(), ActiveError> {
        serde_json::to_writer(&mut *buf, op).map_err(|source| ActiveError::Serialize {
            id: id.to_string(),
            source,
        })?;
        buf.push(b'\n');
        Ok(())
    }

    /// Adds items, evicting by the policy when full, and syncs the log.
    /// An item whose id is already queued or awaiting is ignored (the
    /// pipeline redelivers records after a crash). The `seq` given is
    /// replaced by the arrival order.
    pub fn push(&mut self, tasks: Vec<QueuedTask<T>>) -> Result<PushOutcome, ActiveError> {
        let mut outcome = PushOutcome::default();
        let mut buf = Vec::new();
        let mut lines = 0;
        let mut adds = Vec::new();
        let mut evicts = Vec::new();
        let mut assigned = 0u64;
        for mut task in tasks {
            if self.pending.contains_key(&task.id)
                || self.awaiting.contains_key(&task.id)
                || adds.iter().any(|t: &QueuedTask<T>| t.id == task.id)
            {
                outcome.duplicates += 1;
                continue;
            }
            if task.margin.is_nan() {
                task.margin = 0.0;
            }
            let live = self.pending.len() + adds.len() - evicts.len();
            if live >= self.capacity {
                outcome.evicted += 1;
                // The least uncertain queued item not already evicted.
                let worst = self
                    .order
                    .iter()
                    .rev()
                    .find(|(_, _, id)| !evicts.contains(id))
                    .cloned();
                let worst_new = adds
                    .iter()
                    .enumerate()
                    .max_by(|a, b| Margin(a.1.margin).cmp(&Margin(b.1.margin)))
                    .map(|(i, t)| (i, t.margin));
                match self.policy {
                    EvictionPolicy::DropNewest => continue,
                    EvictionPolicy::KeepMostUncertain => {
                        let worst_margin = match (&worst, worst_new) {
                            (Some((m, _, _)), Some((_, n))) => m.0.max(n),
                            (Some((m, _, _)), None) => m.0,
                            (None, Some((_, n))) => n,
                            (None, None) => f64::NEG_INFINITY,
                        };
                        if task.margin >= worst_margin {
                            continue;
                        }
                        match (worst, worst_new) {
                            (_, Some((i, n))) if n >= worst_margin => {
                                adds.swap_remove(i);
                            }
                            (Some((_, _, id)), _) => evicts.push(id),
                            _ => continue,
                        }
                    }
                }
            }
            task.seq = self.next_seq + assigned;
            assigned += 1;
            adds.push(task);
        }
        for id in &evicts {
            Self::line(&mut buf, &Op::<&T>::Evict { id: id.clone() }, id)?;
            lines += 1;
        }
        for t in &adds {
            let op = Op::Add {
                seq: t.seq,
                id: t.id.clone(),
                margin: t.margin,
                item: &t.item,
                prediction: t.prediction.clone(),
                sent: false,
            };
            Self::line(&mut buf, &op, &t.id)?;
            lines += 1;
        }
        if lines > 0 {
            self.write(&buf, lines)?;
        }
        for id in evicts {
            self.remove_pending(&id);
        }
        outcome.queued = adds.len() as u64;
        self.next_seq += assigned;
        for t in adds {
            self.insert_pending(t);
        }
        self.maybe_compact()?;
        Ok(outcome)
    }

    /// Up to `n` pending items, most uncertain first (ties: first come).
    /// They stay pending until [`mark_sent`](ReviewQueue::mark_sent).
    pub fn peek(&self, n: usize) -> Vec<QueuedTask<T>> {
        self.order
            .iter()
            .take(n)
            .filter_map(|(_, _, id)| self.pending.get(id).cloned())
            .collect()
    }

    /// Records that `ids` were submitted: they move from pending to
    /// awaiting and are charged to the budget.
    pub fn mark_sent(&mut self, ids: &[String]) -> Result<(), ActiveError> {
        let mut buf = Vec::new();
        for id in ids {
            Self::line(&mut buf, &Op::<&T>::Sent { id: id.clone() }, id)?;
        }
        if !ids.is_empty() {
            self.write(&buf, ids.len())?;
        }
        for id in ids {
            self.spent += 1;
            if let Some(task) = self.remove_pending(id) {
                self.awaiting.insert(id.clone(), task);
            }
        }
        self.maybe_compact()
    }

    /// Records that the labels of `ids` are stored: they leave the queue.
    pub fn mark_done(&mut self, ids: &[String]) -> Result<(), ActiveError> {
        let mut buf = Vec::new();
        for id in ids {
            Self::line(&mut buf, &Op::<&T>::Done { id: id.clone() }, id)?;
        }
        if !ids.is_empty() {
            self.write(&buf, ids.len())?;
        }
        for id in ids {
            self.remove(id);
        }
        self.maybe_compact()
    }

    /// Drops `ids` (pending or awaiting) for good: user code panicked on
    /// them alone. Logged as evictions, so they stay gone after a restart.
    pub(crate) fn mark_failed(&mut self, ids: &[String]) -> Result<(), ActiveError> {
        let mut buf = Vec::new();
        for id in ids {
            Self::line(&mut buf, &Op::<&T>::Evict { id: id.clone() }, id)?;
        }
        if !ids.is_empty() {
            self.write(&buf, ids.len())?;
        }
        for id in ids {
            self.remove(id);
        }
        self.maybe_compact()
    }

    /// An item submitted and waiting for its label.
    pub fn awaiting(&self, id: &str) -> Option<&QueuedTask<T>> {
        self.awaiting.get(id)
    }

    /// Every item submitted and waiting for its label, in arrival order.
    pub fn awaiting_tasks(&self) -> Vec<QueuedTask<T>> {
        let mut tasks: Vec<QueuedTask<T>> = self.awaiting.values().cloned().collect();
        tasks.sort_by_key(|t| t.seq);
        tasks
    }

    /// Items waiting to be submitted.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Items submitted and waiting for their label.
    pub fn awaiting_len(&self) -> usize {
        self.awaiting.len()
    }

    /// Tasks charged to the budget, over every run that used this file.
    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn maybe_compact(&mut self) -> Result<(), ActiveError> {
        let live = self.pending.len() + self.awaiting.len();
        if self.log_lines > 4 * live + 1024 {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the log with only the live items: a temporary file, synced,
    /// renamed over the log, and the directory synced.
    fn compact(&mut self) -> Result<(), ActiveError> {
        let io = |action, path: &Path, source| ActiveError::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        let mut buf = Vec::new();
        Self::line(&mut buf, &Op::<&T>::Spent { tasks: self.spent }, "")?;
        let mut live: Vec<(&QueuedTask<T>, bool)> = self
            .pending
            .values()
            .map(|t| (t, false))
            .chain(self.awaiting.values().map(|t| (t, true)))
            .collect();
        live.sort_by_key(|(t, _)| t.seq);
        for (t, sent) in &live {
            let op = Op::Add {
                seq: t.seq,
                id: t.id.clone(),
                margin: t.margin,
                item: &t.item,
                prediction: t.prediction.clone(),
                sent: *sent,
            };
            Self::line(&mut buf, &op, &t.id)?;
        }
        let lines = live.len() + 1;
        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        {
            let mut f = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
            f.write_all(&buf).map_err(|e| io("write", &tmp, e))?;
            f.sync_all().map_err(|e| io("sync", &tmp, e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| io("rename over", &self.path, e))?;
        // Make the rename itself durable.
        sync_parent(&self.path).map_err(|e| io("sync the directory of", &self.path, e))?;
        self.file = open_append(&self.path)?;
        self.log_lines = lines;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<Appender, ActiveError> {
    Appender::open(path).map_err(|source| ActiveError::Io {
        action: "open",
        path: path.to_path_buf(),
        source,
    })
}

impl<T> fmt::Debug for ReviewQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReviewQueue")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .field("pending", &self.pending.len())
            .field("awaiting", &self.awaiting.len())
            .field("spent", &self.spent)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn task(id: &str, margin: f64) -> QueuedTask<String> {
        QueuedTask {
            id: id.into(),
            item: format!("text of {id}"),
            prediction: None,
            margin,
            seq: 0,
        }
    }

    fn ids(q: &ReviewQueue<String>) -> Vec<String> {
        q.peek(usize::MAX).into_iter().map(|t| t.id).collect()
    }

    #[test]
    fn full_queue_keeps_the_most_uncertain() {
        let dir = tempfile::tempdir().unwrap();
        let mut q =
            ReviewQueue::open(dir.path().join("q"), 2, EvictionPolicy::KeepMostUncertain).unwrap();
        q.push(vec![task("a", 0.3), task("b", 0.1)]).unwrap();
        // More uncertain than "a": "a" goes.
        let out = q.push(vec![task("c", 0.2)]).unwrap();
        assert_eq!((out.queued, out.evicted), (1, 1));
        assert_eq!(ids(&q), ["b", "c"]);
        // Less uncertain than all: dropped.
        let out = q.push(vec![task("d", 0.9)]).unwrap();
        assert_eq!((out.queued, out.evicted), (0, 1));
        // Within one push, too.
        let out = q.push(vec![task("e", 0.05), task("f", 0.01)]).unwrap();
        assert_eq!((out.queued, out.evicted), (2, 2));
        assert_eq!(ids(&q), ["f", "e"]);
        // The evictions are in the log.
        drop(q);
        let q = ReviewQueue::<String>::open(dir.path().join("q"), 2, EvictionPolicy::default())
            .unwrap();
        assert_eq!(ids(&q), ["f", "e"]);
    }

    #[test]
    fn drop_newest_keeps_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = ReviewQueue::open(dir.path().join("q"), 1, EvictionPolicy::DropNewest).unwrap();
        q.push(vec![task("a", 0.3)]).unwrap();
        let out = q.push(vec![task("b", 0.0)]).unwrap();
        assert_eq!((out.queued, out.evicted), (0, 1));
        assert_eq!(ids(&q), ["a"]);
    }

    #[test]
    fn sent_done_spent_and_duplicates_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        let mut q = ReviewQueue::open(&path, 10, EvictionPolicy::default()).unwrap();
        q.push(vec![task("a", 0.3), task("b", 0.1), task("c", 0.2)])
            .unwrap();
        assert_eq!(q.push(vec![task("a", 0.0)]).unwrap().duplicates, 1);
        q.mark_sent(&["b".into(), "c".into()]).unwrap();
        q.mark_done(&["b".into()]).unwrap();
        drop(q);
        // A torn last line is tolerated.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"op":"add","seq":9,"id":"x"#).unwrap();
        drop(f);
        let q = ReviewQueue::<String>::open(&path, 10, EvictionPolicy::default()).unwrap();
        assert_eq!(ids(&q), ["a"]);
        assert_eq!(q.awaiting_tasks().len(), 1);
        assert_eq!(q.awaiting("c").unwrap().item, "text of c");
        assert_eq!(q.spent(), 2);
        // Compaction kept the count.
        drop(q);
        let q = ReviewQueue::<String>::open(&path, 10, EvictionPolicy::default()).unwrap();
        assert_eq!(q.spent(), 2);
    }

    #[test]
    fn corrupt_line_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        std::fs::write(&path, "not json\n{\"op\":\"spent\",\"tasks\":1}\n").unwrap();
        let err = ReviewQueue::<String>::open(&path, 10, EvictionPolicy::default()).unwrap_err();
        assert!(matches!(err, ActiveError::Corrupt { line: 1, .. }), "{err}");
        assert!(err.to_string().contains("move it away"), "{err}");
    }
}
