//! The dataset file and the labeling state replayed from it.
//!
//! The file is JSON lines, one event per line, appended and fsynced before
//! the event changes the state in memory, so what the page acknowledged is
//! on disk. Events:
//!
//! - `{"kind":"item","id":..,"text":..}`: an item submitted for labeling,
//!   with `"suggestion":{"label":..,"confidence":..}` when it came with one;
//! - `{"kind":"answer","item":..,"worker":..,"label":..,"at":ms}`, with
//!   `"accepted":true|false` when the item had a suggestion (whether the
//!   answer is the suggested label);
//! - `{"kind":"skip","item":..,"worker":..,"at":ms}`;
//! - `{"kind":"undo","item":..,"worker":..,"at":ms}`: retracts that
//!   worker's latest answer or skip, which was on `item`;
//! - `{"kind":"collected","item":..,"at":ms}`: the item's result was handed
//!   out by `collect()` and will not be handed out again.
//!
//! # Memory
//!
//! The file keeps everything; memory keeps only what is outstanding. An
//! item lives in memory (its text, answers, skips, leases) from its
//! submission until `collect()` hands its result out; then it is released
//! and only a 128-bit fingerprint of its id stays, so that submitting it
//! again is still the same task and is not labeled twice (the `Labeler`
//! contract). Each person's undo stack is cut at their latest action on a
//! collected item (nothing at or below it could be undone anyway), and
//! their progress is a counter plus the times of their answers in the last
//! ten minutes. Replaying the file on start rebuilds exactly this state.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::LabelUiError;
use crate::aggregate::{Aggregator, Answer};
use crate::classify::Label;
use crate::jsonl::Appender;
use crate::labeler::{LabelResult, TaskId, Vote};

/// One line of the dataset file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Event {
    Item {
        id: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suggestion: Option<Suggestion>,
    },
    Answer {
        item: String,
        worker: String,
        label: String,
        at: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accepted: Option<bool>,
    },
    Skip {
        item: String,
        worker: String,
        at: u64,
    },
    Undo {
        item: String,
        worker: String,
        at: u64,
    },
    Collected {
        item: String,
        at: u64,
    },
}

/// A suggested label shown with an item, and how sure its source is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Suggestion {
    pub(crate) label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) confidence: Option<f64>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// An item not collected yet.
struct ItemState {
    id: String,
    text: String,
    suggestion: Option<Suggestion>,
    /// Workers whose standing answer is the suggested label.
    accepted_by: HashSet<String>,
    /// (worker, label, at ms), in arrival order.
    answers: Vec<(String, Label, u64)>,
    skipped_by: HashSet<String>,
    /// Shown to these people and not answered yet: worker -> until.
    leases: HashMap<String, Instant>,
}

impl ItemState {
    fn answered_by(&self, worker: &str) -> bool {
        self.answers.iter().any(|(w, _, _)| w == worker)
    }
}

// By hand: the text is customer text and stays out of Debug output.
impl fmt::Debug for ItemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemState")
            .field("id", &self.id)
            .field("answers", &self.answers.len())
            .field("skipped_by", &self.skipped_by.len())
            .field("leases", &self.leases.len())
            .finish_non_exhaustive()
    }
}

/// The ids of collected items, as keyed 128-bit fingerprints: 16 bytes an
/// id whatever its length (ids come from the caller). Two ids share a
/// fingerprint with probability about n²/2^129 for n ids (below 10^-20
/// for a billion), and the key is drawn at random per process, so ids
/// cannot be chosen to collide. Rebuilt from the file on every start.
struct CollectedIds {
    key: RandomState,
    set: HashSet<u128>,
}

impl CollectedIds {
    fn new() -> CollectedIds {
        CollectedIds {
            key: RandomState::new(),
            set: HashSet::new(),
        }
    }

    fn fingerprint(&self, id: &str) -> u128 {
        // Two halves from one keyed hash over two separate domains.
        let high = self.key.hash_one((0u8, id));
        let low = self.key.hash_one((1u8, id));
        (u128::from(high) << 64) | u128::from(low)
    }

    fn insert(&mut self, id: &str) {
        let fingerprint = self.fingerprint(id);
        self.set.insert(fingerprint);
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(&self.fingerprint(id))
    }

    fn len(&self) -> usize {
        self.set.len()
    }
}

impl fmt::Debug for CollectedIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectedIds")
            .field("len", &self.set.len())
            .finish_non_exhaustive()
    }
}

/// A person's progress: answers standing (not undone) and the times of
/// those in the rate window.
#[derive(Debug, Default)]
struct Tally {
    answers: usize,
    /// Answer times (ms) not older than [`RATE_WINDOW_MS`] when the
    /// latest answer came, in arrival order.
    recent: VecDeque<u64>,
}

/// Whether an event comes from the file (replay) or from a request (live).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Replay,
    Live,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActionKind {
    Answer,
    Skip,
}

/// What a request asked for and could not get, with the HTTP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 404: no such item.
    UnknownItem(String),
    /// 400: the label is not one of the page's categories.
    UnknownLabel(String),
    /// 409: the request conflicts with the state (already answered, item
    /// complete, nothing to undo...).
    Conflict(String),
}

/// An item as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ShownItem {
    pub(crate) id: String,
    pub(crate) text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) suggestion: Option<Suggestion>,
}

/// Progress counters for the page and for [`super::Progress`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Counts {
    pub(crate) done: usize,
    pub(crate) total: usize,
    pub(crate) mine: usize,
    pub(crate) per_minute: f64,
}

/// What the store holds in memory; see [`super::StoreFootprint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footprint {
    pub(crate) items: usize,
    pub(crate) leases: usize,
    pub(crate) collected_ids: usize,
    pub(crate) undo_entries: usize,
}

/// Where an item id stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Located {
    /// In memory, under this ordinal.
    Live(u64),
    /// Collected and released.
    Collected,
}

/// The labeling state and the open dataset file.
#[derive(Debug)]
pub(crate) struct Store {
    path: PathBuf,
    file: Appender,
    labels: Vec<Label>,
    answers_per_item: usize,
    lease: Duration,
    /// Items not collected yet, by submission ordinal (submission order).
    items: BTreeMap<u64, ItemState>,
    /// Item id -> ordinal, for the items in `items`.
    index: HashMap<String, u64>,
    /// The ordinal of the next item submitted.
    next_ordinal: u64,
    /// Collected (and released) items.
    collected: CollectedIds,
    /// Each worker's answers and skips not undone, oldest first, cut at
    /// their latest action on a collected item: every entry names an item
    /// in `items`. Workers with nothing to undo have no entry.
    history: HashMap<String, Vec<(u64, ActionKind)>>,
    /// Each worker's progress.
    tallies: HashMap<String, Tally>,
    /// Standing answers on items with a suggestion, and those of them that
    /// accepted it.
    review: ReviewCounts,
}

/// Answers on suggested items, and how many took the suggestion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReviewCounts {
    pub(crate) suggested: usize,
    pub(crate) accepted: usize,
}

/// How far back the labels-per-minute rate looks.
const RATE_WINDOW_MS: u64 = 10 * 60 * 1000;

impl Store {
    /// Opens (creating if needed) the dataset file and replays it.
    pub(crate) fn open(
        path: &Path,
        labels: Vec<Label>,
        answers_per_item: usize,
        lease: Duration,
    ) -> Result<Store, LabelUiError> {
        let io = |source| LabelUiError::Io {
            path: path.to_owned(),
            source,
        };
        // The one appender: it cuts a torn tail (a write cut short by a
        // crash: never synced, so never acknowledged to anyone) before
        // anything is replayed or appended.
        let file = Appender::open(path).map_err(io)?;
        let mut store = Store {
            path: path.to_owned(),
            file,
            labels,
            answers_per_item: answers_per_item.max(1),
            lease,
            items: BTreeMap::new(),
            index: HashMap::new(),
            next_ordinal: 0,
            collected: CollectedIds::new(),
            history: HashMap::new(),
            tallies: HashMap::new(),
            review: ReviewCounts::default(),
        };
        let reader = BufReader::new(File::open(path).map_err(io)?);
        for (n, line) in reader.split(b'\n').enumerate() {
            let line_no = n + 1;
            let bytes = line.map_err(io)?;
            let corrupt = |message: String| LabelUiError::CorruptLine {
                path: path.to_owned(),
                line: line_no,
                message,
            };
            let parsed = std::str::from_utf8(&bytes)
                .map_err(|e| format!("not UTF-8: {e}"))
                .and_then(|text| {
                    if text.trim().is_empty() {
                        Ok(None)
                    } else {
                        serde_json::from_str::<Event>(text)
                            .map(Some)
                            .map_err(|e| format!("not a labeling event: {e}"))
                    }
                });
            let event = match parsed {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(message) => return Err(corrupt(message)),
            };
            store.apply(&event, Mode::Replay).map_err(|r| {
                corrupt(match r {
                    Refusal::UnknownItem(m) | Refusal::UnknownLabel(m) | Refusal::Conflict(m) => m,
                })
            })?;
        }
        Ok(store)
    }

    pub(crate) fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// What is held in memory.
    pub(crate) fn footprint(&self) -> Footprint {
        Footprint {
            items: self.items.len(),
            leases: self.items.values().map(|i| i.leases.len()).sum(),
            collected_ids: self.collected.len(),
            undo_entries: self.history.values().map(Vec::len).sum(),
        }
    }

    fn append(&mut self, events: &[Event]) -> Result<(), LabelUiError> {
        let mut buf = Vec::new();
        for event in events {
            // Serializing these plain structs cannot fail.
            serde_json::to_writer(&mut buf, event).map_err(|e| LabelUiError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?;
            buf.push(b'\n');
        }
        let io = |source| LabelUiError::Io {
            path: self.path.clone(),
            source,
        };
        // Synced before it counts; rolled back if it fails.
        self.file.append(&buf).map_err(io)
    }

    /// Checks an event against the state and applies it. Used both for
    /// replay and for live events (after they are written).
    fn apply(&mut self, event: &Event, mode: Mode) -> Result<(), Refusal> {
        self.check(event, mode)?;
        match event {
            Event::Item {
                id,
                text,
                suggestion,
            } => {
                let ordinal = self.next_ordinal;
                self.next_ordinal += 1;
                self.index.insert(id.clone(), ordinal);
                self.items.insert(
                    ordinal,
                    ItemState {
                        id: id.clone(),
                        text: text.clone(),
                        suggestion: suggestion.clone(),
                        accepted_by: HashSet::new(),
                        answers: Vec::new(),
                        skipped_by: HashSet::new(),
                        leases: HashMap::new(),
                    },
                );
            }
            Event::Answer {
                item,
                worker,
                label,
                at,
                ..
            } => {
                let Located::Live(o) = self.locate(item)? else {
                    return Err(Refusal::Conflict(format!(
                        "item {item:?} is finished and collected"
                    )));
                };
                let Some(label) = self.labels.iter().find(|l| l.as_str() == label).cloned() else {
                    return Err(Refusal::UnknownLabel(label.clone()));
                };
                let state = self.live_mut(o)?;
                let accepted = state.suggestion.as_ref().map(|s| s.label == label.as_str());
                if accepted == Some(true) {
                    state.accepted_by.insert(worker.clone());
                }
                state.answers.push((worker.clone(), label, *at));
                state.skipped_by.remove(worker);
                state.leases.remove(worker);
                self.history
                    .entry(worker.clone())
                    .or_default()
                    .push((o, ActionKind::Answer));
                if let Some(accepted) = accepted {
                    self.review.suggested += 1;
                    self.review.accepted += usize::from(accepted);
                }
                let tally = self.tallies.entry(worker.clone()).or_default();
                tally.answers += 1;
                let since = now_ms().saturating_sub(RATE_WINDOW_MS);
                tally.recent.retain(|t| *t >= since);
                if *at >= since {
                    tally.recent.push_back(*at);
                }
            }
            Event::Skip { item, worker, .. } => match self.locate(item)? {
                Located::Live(o) => {
                    let state = self.live_mut(o)?;
                    state.skipped_by.insert(worker.clone());
                    state.leases.remove(worker);
                    self.history
                        .entry(worker.clone())
                        .or_default()
                        .push((o, ActionKind::Skip));
                }
                // A skip of an item collected meanwhile (the page still
                // showed it): nothing before it can be undone any more, as
                // nothing before an action on a collected item can.
                Located::Collected => {
                    self.history.remove(worker);
                }
            },
            Event::Undo { worker, .. } => {
                let (o, kind) = self.undoable(worker)?;
                if let Some(h) = self.history.get_mut(worker) {
                    h.pop();
                    if h.is_empty() {
                        self.history.remove(worker);
                    }
                }
                let state = self.live_mut(o)?;
                match kind {
                    ActionKind::Answer => {
                        let undone: Vec<u64> = state
                            .answers
                            .iter()
                            .filter(|(w, _, _)| w == worker)
                            .map(|(_, _, at)| *at)
                            .collect();
                        state.answers.retain(|(w, _, _)| w != worker);
                        let suggested = state.suggestion.is_some() && !undone.is_empty();
                        let accepted = state.accepted_by.remove(worker);
                        if suggested {
                            self.review.suggested = self.review.suggested.saturating_sub(1);
                        }
                        if accepted {
                            self.review.accepted = self.review.accepted.saturating_sub(1);
                        }
                        if let Some(tally) = self.tallies.get_mut(worker) {
                            tally.answers = tally.answers.saturating_sub(undone.len());
                            for at in undone {
                                if let Some(p) = tally.recent.iter().rposition(|t| *t == at) {
                                    tally.recent.remove(p);
                                }
                            }
                        }
                    }
                    ActionKind::Skip => {
                        state.skipped_by.remove(worker);
                    }
                }
            }
            Event::Collected { item, .. } => {
                if let Located::Live(o) = self.locate(item)? {
                    self.release_collected(&[o]);
                }
            }
        }
        Ok(())
    }

    /// Drops collected items from memory, keeping their ids' fingerprints,
    /// and cuts every undo stack at its latest action on one of them.
    fn release_collected(&mut self, ordinals: &[u64]) {
        for o in ordinals {
            if let Some(item) = self.items.remove(o) {
                self.index.remove(&item.id);
                self.collected.insert(&item.id);
            }
        }
        let gone: HashSet<u64> = ordinals.iter().copied().collect();
        self.history.retain(|_, h| {
            if let Some(p) = h.iter().rposition(|(o, _)| gone.contains(o)) {
                h.drain(..=p);
            }
            !h.is_empty()
        });
    }

    /// Where `item` stands: in memory, collected, or unknown (refused).
    fn locate(&self, item: &str) -> Result<Located, Refusal> {
        if let Some(&o) = self.index.get(item) {
            Ok(Located::Live(o))
        } else if self.collected.contains(item) {
            Ok(Located::Collected)
        } else {
            Err(Refusal::UnknownItem(format!("no item with id {item:?}")))
        }
    }

    fn live(&self, o: u64) -> Result<&ItemState, Refusal> {
        self.items
            .get(&o)
            .ok_or_else(|| Refusal::Conflict(format!("item number {o} is no longer in memory")))
    }

    fn live_mut(&mut self, o: u64) -> Result<&mut ItemState, Refusal> {
        self.items
            .get_mut(&o)
            .ok_or_else(|| Refusal::Conflict(format!("item number {o} is no longer in memory")))
    }

    /// The worker's latest action, if it can still be undone.
    fn undoable(&self, worker: &str) -> Result<(u64, ActionKind), Refusal> {
        self.history
            .get(worker)
            .and_then(|h| h.last())
            .copied()
            .ok_or_else(|| {
                Refusal::Conflict(format!(
                    "{worker:?} has nothing to undo (an answer on an item whose result was \
                     collected can no longer be undone)"
                ))
            })
    }

    /// Writes then applies one live event. A refused event is not written.
    fn record(&mut self, event: Event) -> Result<Result<(), Refusal>, LabelUiError> {
        // Check first so that a refused event never reaches the file.
        if let Err(r) = self.check(&event, Mode::Live) {
            return Ok(Err(r));
        }
        self.append(std::slice::from_ref(&event))?;
        Ok(self.apply(&event, Mode::Live))
    }

    /// The checks of `apply`, without applying. On replay the number of
    /// answers per item is not enforced: it may have been changed since the
    /// file was written, and that does not make the file wrong.
    fn check(&self, event: &Event, mode: Mode) -> Result<(), Refusal> {
        match event {
            Event::Item { id, .. }
                if self.index.contains_key(id) || self.collected.contains(id) =>
            {
                Err(Refusal::Conflict(format!("item {id:?} appears twice")))
            }
            Event::Item { .. } => Ok(()),
            Event::Answer {
                item,
                worker,
                label,
                ..
            } => {
                let located = self.locate(item)?;
                if !self.labels.iter().any(|l| l.as_str() == label) {
                    return Err(Refusal::UnknownLabel(format!(
                        "label {label:?} is not one of the categories {:?}",
                        self.labels
                    )));
                }
                let Located::Live(o) = located else {
                    return Err(Refusal::Conflict(format!(
                        "item {item:?} is finished and collected"
                    )));
                };
                let state = self.live(o)?;
                if state.answered_by(worker) {
                    return Err(Refusal::Conflict(format!(
                        "{worker:?} has already answered item {item:?}"
                    )));
                }
                if mode == Mode::Live && state.answers.len() >= self.answers_per_item {
                    return Err(Refusal::Conflict(format!(
                        "item {item:?} already has its {} answer(s)",
                        self.answers_per_item
                    )));
                }
                Ok(())
            }
            Event::Skip { item, worker, .. } => {
                if let Located::Live(o) = self.locate(item)?
                    && self.live(o)?.answered_by(worker)
                {
                    return Err(Refusal::Conflict(format!(
                        "{worker:?} has already answered item {item:?}; undo it first"
                    )));
                }
                Ok(())
            }
            Event::Undo { item, worker, .. } => {
                let (o, _) = self.undoable(worker)?;
                let latest = &self.live(o)?.id;
                if latest != item {
                    return Err(Refusal::Conflict(format!(
                        "undo names item {item:?} but {worker:?}'s latest action was on {latest:?}"
                    )));
                }
                Ok(())
            }
            Event::Collected { item, .. } => match self.locate(item)? {
                Located::Live(o) => {
                    let answers = self.live(o)?.answers.len();
                    if mode == Mode::Live && answers < self.answers_per_item {
                        return Err(Refusal::Conflict(format!(
                            "item {item:?} marked collected with {answers} of {} answers",
                            self.answers_per_item
                        )));
                    }
                    Ok(())
                }
                // Marked twice: the first mark stands.
                Located::Collected => Ok(()),
            },
        }
    }

    /// Adds items not seen before (one write, one fsync); returns the task
    /// id of every given item, old or new (collected ones too: they are
    /// not labeled again).
    pub(crate) fn submit(
        &mut self,
        items: Vec<(String, String, Option<Suggestion>)>,
    ) -> Result<Vec<TaskId>, LabelUiError> {
        let mut seen = HashSet::new();
        let new: Vec<Event> = items
            .iter()
            .filter(|(id, _, _)| {
                !self.index.contains_key(id)
                    && !self.collected.contains(id)
                    && seen.insert(id.as_str())
            })
            .map(|(id, text, suggestion)| Event::Item {
                id: id.clone(),
                text: text.clone(),
                // Only a label of the set can be accepted.
                suggestion: suggestion
                    .clone()
                    .filter(|s| self.labels.iter().any(|l| *l == s.label.as_str())),
            })
            .collect();
        if !new.is_empty() {
            self.append(&new)?;
            for event in &new {
                // New, distinct ids: applying cannot be refused.
                let _ = self.apply(event, Mode::Live);
            }
        }
        Ok(items.iter().map(|(id, _, _)| task_id(id)).collect())
    }

    /// Records an answer.
    pub(crate) fn answer(
        &mut self,
        worker: &str,
        item: &str,
        label: &str,
    ) -> Result<Result<(), Refusal>, LabelUiError> {
        let accepted = self
            .index
            .get(item)
            .and_then(|o| self.items.get(o))
            .and_then(|i| i.suggestion.as_ref())
            .map(|s| s.label == label);
        self.record(Event::Answer {
            item: item.to_owned(),
            worker: worker.to_owned(),
            label: label.to_owned(),
            at: now_ms(),
            accepted,
        })
    }

    /// Records a skip.
    pub(crate) fn skip(
        &mut self,
        worker: &str,
        item: &str,
    ) -> Result<Result<(), Refusal>, LabelUiError> {
        self.record(Event::Skip {
            item: item.to_owned(),
            worker: worker.to_owned(),
            at: now_ms(),
        })
    }

    /// Retracts the worker's latest answer or skip; returns the item it was on.
    pub(crate) fn undo(&mut self, worker: &str) -> Result<Result<String, Refusal>, LabelUiError> {
        let item = match self
            .undoable(worker)
            .and_then(|(o, _)| self.live(o).map(|i| i.id.clone()))
        {
            Ok(item) => item,
            Err(r) => return Ok(Err(r)),
        };
        let event = Event::Undo {
            item: item.clone(),
            worker: worker.to_owned(),
            at: now_ms(),
        };
        Ok(self.record(event)?.map(|()| item))
    }

    /// The next item for `worker`, leased to them: the first item (in
    /// submission order) that still needs answers, that they have neither
    /// answered nor skipped, and that is not leased to enough others to
    /// complete it; then, when none is left, the items they skipped. When
    /// `prefer` names such an item (the one an undo just reopened), it comes
    /// first.
    pub(crate) fn next_for(&mut self, worker: &str, prefer: Option<&str>) -> Option<ShownItem> {
        let now = Instant::now();
        let k = self.answers_per_item;
        let open = |item: &ItemState| {
            let others = item
                .leases
                .iter()
                .filter(|(w, until)| w.as_str() != worker && **until > now)
                .count();
            !item.answered_by(worker) && item.answers.len() + others < k
        };
        let preferred = prefer
            .and_then(|id| self.index.get(id).copied())
            .filter(|o| self.items.get(o).is_some_and(open));
        let pick = preferred
            .or_else(|| {
                self.items
                    .iter()
                    .find(|(_, item)| open(item) && !item.skipped_by.contains(worker))
                    .map(|(o, _)| *o)
            })
            .or_else(|| {
                self.items
                    .iter()
                    .find(|(_, item)| open(item))
                    .map(|(o, _)| *o)
            })?;
        let until = now + self.lease;
        let item = self.items.get_mut(&pick)?;
        item.leases.retain(|_, t| *t > now);
        item.leases.insert(worker.to_owned(), until);
        Some(ShownItem {
            id: item.id.clone(),
            text: item.text.clone(),
            suggestion: item.suggestion.clone(),
        })
    }

    /// The item a person would be shown first, without holding it for
    /// anyone: for the page before the person has typed their name.
    pub(crate) fn peek(&self) -> Option<ShownItem> {
        let now = Instant::now();
        let k = self.answers_per_item;
        let open = |item: &&ItemState| {
            let held = item.leases.values().filter(|until| **until > now).count();
            item.answers.len() + held < k
        };
        let item = self
            .items
            .values()
            .find(open)
            .or_else(|| self.items.values().find(|i| i.answers.len() < k))?;
        Some(ShownItem {
            id: item.id.clone(),
            text: item.text.clone(),
            suggestion: item.suggestion.clone(),
        })
    }

    /// Answers on suggested items, and how many accepted the suggestion.
    pub(crate) fn review_counts(&self) -> ReviewCounts {
        self.review
    }

    /// Drops the worker's leases; returns how many there were.
    pub(crate) fn release(&mut self, worker: &str) -> usize {
        self.items
            .values_mut()
            .map(|i| usize::from(i.leases.remove(worker).is_some()))
            .sum()
    }

    /// Whether the worker has something to undo.
    pub(crate) fn can_undo(&self, worker: &str) -> bool {
        self.undoable(worker).is_ok()
    }

    /// Progress counters; `worker` selects the personal ones.
    pub(crate) fn counts(&self, worker: Option<&str>) -> Counts {
        let k = self.answers_per_item;
        let finished = self.items.values().filter(|i| i.answers.len() >= k).count();
        let now = now_ms();
        let since = now.saturating_sub(RATE_WINDOW_MS);
        let (mut mine, mut recent, mut oldest) = (0usize, 0usize, now);
        if let Some(tally) = worker.and_then(|w| self.tallies.get(w)) {
            mine = tally.answers;
            for &at in tally.recent.iter().filter(|&&at| at >= since) {
                recent += 1;
                oldest = oldest.min(at);
            }
        }
        // Answers in the last ten minutes over the time since the first of
        // them, counted as at least one minute.
        let minutes = ((now - oldest) as f64 / 60_000.0).max(1.0);
        Counts {
            done: self.collected.len() + finished,
            total: self.collected.len() + self.items.len(),
            mine,
            per_minute: recent as f64 / minutes,
        }
    }

    /// Finished items not collected yet, marked collected (in the file
    /// first), with their votes and the majority label
    /// ([`Aggregator::majority`]: ties go to the category listed first),
    /// then released from memory.
    pub(crate) fn collect(&mut self) -> Result<Vec<LabelResult>, LabelUiError> {
        let k = self.answers_per_item;
        let ready: Vec<u64> = self
            .items
            .iter()
            .filter(|(_, item)| item.answers.len() >= k)
            .map(|(o, _)| *o)
            .collect();
        if ready.is_empty() {
            return Ok(Vec::new());
        }
        let answers: Vec<Answer> = self
            .items
            .values()
            .filter(|item| item.answers.len() >= k)
            .flat_map(|item| {
                item.answers
                    .iter()
                    .map(|(w, l, _)| Answer::new(item.id.as_str(), w.as_str(), l.as_str()))
            })
            .collect();
        let aggregation = Aggregator::new(self.labels.iter().cloned())
            .min_votes(k)
            .majority(&answers);
        // Every stored answer is a valid vote (its label was checked), so
        // every ready item is labeled; one that were not would stay pending.
        let mut results = Vec::with_capacity(ready.len());
        let mut labeled = Vec::with_capacity(ready.len());
        for o in ready {
            let Some(item) = self.items.get(&o) else {
                continue;
            };
            let Some(l) = aggregation.item(&item.id) else {
                continue;
            };
            labeled.push(o);
            results.push(LabelResult {
                task: task_id(&item.id),
                item_id: item.id.clone(),
                label: l.label.clone(),
                agreement: l.agreement,
                votes: item
                    .answers
                    .iter()
                    .map(|(w, l, _)| Vote {
                        worker: w.clone(),
                        label: l.clone(),
                    })
                    .collect(),
            });
        }
        if labeled.is_empty() {
            return Ok(Vec::new());
        }
        let at = now_ms();
        let events: Vec<Event> = results
            .iter()
            .map(|r| Event::Collected {
                item: r.item_id.clone(),
                at,
            })
            .collect();
        self.append(&events)?;
        self.release_collected(&labeled);
        Ok(results)
    }
}

/// The task id of an item: stable across restarts.
pub(crate) fn task_id(item: &str) -> TaskId {
    TaskId(format!("web:{item}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<Label> {
        vec![Label::from_static("problem"), Label::from_static("none")]
    }

    fn open(path: &Path, k: usize) -> Store {
        Store::open(path, labels(), k, Duration::from_secs(300)).unwrap()
    }

    fn items(ids: &[&str]) -> Vec<(String, String, Option<Suggestion>)> {
        ids.iter()
            .map(|id| (id.to_string(), format!("text of {id}"), None))
            .collect()
    }

    #[test]
    fn replay_gives_back_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.jsonl");
        let mut s = open(&path, 2);
        s.submit(items(&["a", "b", "c"])).unwrap();
        assert_eq!(s.next_for("ann", None).unwrap().id, "a");
        s.answer("ann", "a", "problem").unwrap().unwrap();
        s.answer("bob", "a", "none").unwrap().unwrap();
        s.skip("ann", "b").unwrap().unwrap();
        s.answer("ann", "c", "none").unwrap().unwrap();
        assert_eq!(s.undo("ann").unwrap().unwrap(), "c");
        assert_eq!(s.counts(Some("ann")).mine, 1);
        let collected = s.collect().unwrap();
        assert_eq!(collected.len(), 1);
        // Tie: the first category wins.
        assert_eq!(collected[0].label, "problem");
        assert_eq!(collected[0].agreement, 0.5);
        drop(s);

        let mut s = open(&path, 2);
        assert!(s.collect().unwrap().is_empty(), "collected once, ever");
        assert_eq!(s.counts(Some("ann")).mine, 1);
        assert_eq!(s.counts(None).done, 1);
        // ann skipped b, so c comes first, then b again.
        assert_eq!(s.next_for("ann", None).unwrap().id, "c");
        s.answer("ann", "c", "none").unwrap().unwrap();
        assert_eq!(s.next_for("ann", None).unwrap().id, "b");
        // ann's latest action is now the answer on c, then the skip on b.
        assert_eq!(s.undo("ann").unwrap().unwrap(), "c");
        assert_eq!(s.undo("ann").unwrap().unwrap(), "b");
        // The answer on a was collected: it can no longer be undone.
        assert!(matches!(s.undo("ann").unwrap(), Err(Refusal::Conflict(_))));
    }

    #[test]
    fn suggestions_and_their_acceptance_survive_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.jsonl");
        let suggest = |label: &str| {
            Some(Suggestion {
                label: label.to_owned(),
                confidence: Some(0.8),
            })
        };
        let mut s = open(&path, 1);
        s.submit(vec![
            ("a".into(), "ta".into(), suggest("problem")),
            ("b".into(), "tb".into(), suggest("none")),
            ("c".into(), "tc".into(), suggest("angry")), // not a category
            ("d".into(), "td".into(), None),
        ])
        .unwrap();
        assert_eq!(s.peek().unwrap().suggestion, suggest("problem"));
        assert_eq!(s.next_for("ann", Some("c")).unwrap().suggestion, None);
        s.answer("ann", "a", "problem").unwrap().unwrap(); // accepted
        s.answer("ann", "b", "problem").unwrap().unwrap(); // overridden
        s.answer("ann", "d", "none").unwrap().unwrap(); // nothing suggested
        s.answer("bob", "c", "none").unwrap().unwrap();
        let counts = ReviewCounts {
            suggested: 2,
            accepted: 1,
        };
        assert_eq!(s.review_counts(), counts);
        drop(s);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("\"accepted\":true").count(), 1);
        assert_eq!(text.matches("\"accepted\":false").count(), 1);
        let mut s = open(&path, 1);
        assert_eq!(s.review_counts(), counts, "rebuilt from the file");
        // Undoing the override takes it out of the counts.
        assert_eq!(s.undo("ann").unwrap().unwrap(), "d");
        assert_eq!(s.undo("ann").unwrap().unwrap(), "b");
        assert_eq!(
            s.review_counts(),
            ReviewCounts {
                suggested: 1,
                accepted: 1
            }
        );
    }

    #[test]
    fn refusals_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.jsonl");
        let mut s = open(&path, 1);
        s.submit(items(&["a"])).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            s.answer("ann", "a", "angry").unwrap(),
            Err(Refusal::UnknownLabel(_))
        ));
        assert!(matches!(
            s.answer("ann", "zz", "none").unwrap(),
            Err(Refusal::UnknownItem(_))
        ));
        assert!(matches!(s.undo("ann").unwrap(), Err(Refusal::Conflict(_))));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        s.answer("ann", "a", "none").unwrap().unwrap();
        assert!(matches!(
            s.answer("bob", "a", "none").unwrap(),
            Err(Refusal::Conflict(_))
        ));
    }

    #[test]
    fn leases_keep_two_people_off_one_item() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir.path().join("l.jsonl"), 1);
        s.submit(items(&["a", "b"])).unwrap();
        assert_eq!(s.next_for("ann", None).unwrap().id, "a");
        assert_eq!(s.next_for("bob", None).unwrap().id, "b");
        // Asking again keeps your own lease.
        assert_eq!(s.next_for("ann", None).unwrap().id, "a");
        s.answer("ann", "a", "none").unwrap().unwrap();
        assert!(s.next_for("ann", None).is_none(), "b is bob's");
    }

    #[test]
    fn changing_k_between_runs_is_not_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut s = open(&path, 2);
        s.submit(items(&["a", "b"])).unwrap();
        s.answer("ann", "a", "none").unwrap().unwrap();
        s.answer("bob", "a", "none").unwrap().unwrap();
        s.answer("ann", "b", "none").unwrap().unwrap();
        drop(s);
        // Fewer answers per item now: both are done, a has one vote more.
        let mut s = open(&path, 1);
        let results = s.collect().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].votes.len(), 2);
        drop(s);
        // More now: the collected ones stay collected.
        let mut s = open(&path, 3);
        assert!(s.collect().unwrap().is_empty());
        assert_eq!(s.counts(None).done, 2);
        assert!(s.next_for("cid", None).is_none());
    }

    #[test]
    fn corrupt_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        std::fs::write(
            &path,
            "{\"kind\":\"item\",\"id\":\"a\",\"text\":\"t\"}\n\n{\"kind\":\"answer\",\"item\":\"a\"\n",
        )
        .unwrap();
        let err = Store::open(&path, labels(), 1, Duration::from_secs(1)).unwrap_err();
        match &err {
            LabelUiError::CorruptLine { line, .. } => assert_eq!(*line, 3),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("line 3"), "{err}");
        std::fs::write(
            &path,
            "{\"kind\":\"answer\",\"item\":\"nope\",\"worker\":\"w\",\"label\":\"none\",\"at\":1}\n",
        )
        .unwrap();
        let err = Store::open(&path, labels(), 1, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_file_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.jsonl");
        {
            let mut store = Store::open(&path, labels(), 1, Duration::from_secs(1)).unwrap();
            store.submit(items(&["a", "b"])).unwrap();
        }
        let good = std::fs::read(&path).unwrap();
        // A crash in the middle of appending the next event.
        let mut torn = good.clone();
        torn.extend_from_slice(b"{\"kind\":\"answer\",\"item\":\"a\",\"wor");
        std::fs::write(&path, &torn).unwrap();
        let mut store = Store::open(&path, labels(), 1, Duration::from_secs(1)).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            good,
            "the torn tail is cut off"
        );
        // Appending afterwards starts on a line of its own.
        store.submit(items(&["c"])).unwrap();
        drop(store);
        let store = Store::open(&path, labels(), 1, Duration::from_secs(1)).unwrap();
        assert_eq!(store.items.len(), 3);
        // The same bytes followed by a newline are not a torn write: an error.
        torn.push(b'\n');
        std::fs::write(&path, &torn).unwrap();
        assert!(Store::open(&path, labels(), 1, Duration::from_secs(1)).is_err());
    }
    #[test]
    fn durable_files_label_store_parseable_torn_tail_is_cut() {
        // A whole event without its newline is still a write cut short:
        // the newline was part of the same append, which never synced, so
        // it was never acknowledged. Appending after it must not glue.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.jsonl");
        {
            let mut store = open(&path, 1);
            store.submit(items(&["a"])).unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"kind\":\"item\",\"id\":\"b\",\"text\":\"t\"}");
        std::fs::write(&path, &bytes).unwrap();
        let mut store = open(&path, 1);
        store.submit(items(&["c"])).unwrap();
        drop(store);
        let store = Store::open(&path, labels(), 1, Duration::from_secs(1))
            .expect("every line is whole after a restart");
        let ids: Vec<&str> = store.items.values().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
    }

    #[test]
    fn collection_releases_items_and_cuts_undo_stacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.jsonl");
        let mut s = open(&path, 2);
        s.submit(items(&["a", "b", "c"])).unwrap();
        assert_eq!(s.next_for("cid", None).unwrap().id, "a");
        s.answer("ann", "a", "problem").unwrap().unwrap();
        s.answer("ann", "b", "none").unwrap().unwrap();
        s.answer("bob", "a", "problem").unwrap().unwrap();
        s.skip("bob", "c").unwrap().unwrap();
        assert_eq!(s.footprint().undo_entries, 4);
        assert_eq!(s.footprint().leases, 1, "cid holds a");
        let results = s.collect().unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].votes.len(), 2);
        assert_eq!(
            s.footprint(),
            Footprint {
                items: 2,
                leases: 0,
                collected_ids: 1,
                undo_entries: 2,
            },
            "a, its lease and the undo entries up to it are gone"
        );
        // ann's answer on b is above a on her stack: still undoable; then
        // nothing, as before (a collected answer cannot be undone).
        assert_eq!(s.undo("ann").unwrap().unwrap(), "b");
        assert!(matches!(s.undo("ann").unwrap(), Err(Refusal::Conflict(_))));
        assert_eq!(s.undo("bob").unwrap().unwrap(), "c");
        assert!(!s.can_undo("bob"));
        // The collected item is known: a conflict, not an unknown item.
        assert!(matches!(
            s.answer("cid", "a", "none").unwrap(),
            Err(Refusal::Conflict(_))
        ));
        assert!(matches!(
            s.answer("cid", "a", "angry").unwrap(),
            Err(Refusal::UnknownLabel(_))
        ));
        assert!(matches!(
            s.answer("cid", "zz", "none").unwrap(),
            Err(Refusal::UnknownItem(_))
        ));
        // Submitting it again is the same task and adds nothing.
        assert_eq!(s.submit(items(&["a"])).unwrap(), [task_id("a")]);
        assert_eq!(s.footprint().items, 2);
        assert_eq!(s.counts(Some("ann")).mine, 1);
        assert_eq!(s.counts(None).done, 1);
        assert_eq!(s.counts(None).total, 3);
    }

    #[test]
    fn a_skip_of_an_item_collected_meanwhile_ends_what_can_be_undone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.jsonl");
        let mut s = open(&path, 1);
        s.submit(items(&["a", "b"])).unwrap();
        s.answer("ann", "b", "none").unwrap().unwrap();
        assert_eq!(s.next_for("ann", None).unwrap().id, "a");
        s.answer("bob", "a", "none").unwrap().unwrap();
        // a is collected while ann's page still shows it; b is not.
        assert_eq!(s.collect().unwrap().len(), 2);
        s.submit(items(&["c"])).unwrap();
        s.answer("ann", "c", "none").unwrap().unwrap();
        // The skip is recorded (as it always was); like any action on a
        // collected item, nothing before it can be undone any more.
        s.skip("ann", "a").unwrap().unwrap();
        assert!(!s.can_undo("ann"));
        assert_eq!(s.footprint().undo_entries, 0);
        drop(s);
        let s = open(&path, 1);
        assert!(!s.can_undo("ann"), "the same after a replay");
        assert_eq!(s.counts(Some("ann")).mine, 2);
    }

    #[test]
    fn replay_rebuilds_the_same_bounded_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.jsonl");
        let mut s = open(&path, 2);
        let ids: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        s.submit(items(&refs)).unwrap();
        for id in &ids[..40] {
            s.answer("ann", id, "none").unwrap().unwrap();
            s.answer("bob", id, "problem").unwrap().unwrap();
        }
        s.answer("ann", "t40", "none").unwrap().unwrap();
        s.skip("bob", "t41").unwrap().unwrap();
        assert_eq!(s.collect().unwrap().len(), 40);
        s.answer("bob", "t40", "none").unwrap().unwrap();
        assert_eq!(s.undo("bob").unwrap().unwrap(), "t40");
        let before = s.footprint();
        assert_eq!(
            before,
            Footprint {
                items: 10,
                leases: 0,
                collected_ids: 40,
                undo_entries: 2,
            }
        );
        let counts = |s: &Store| {
            ["ann", "bob"].map(|w| {
                let c = s.counts(Some(w));
                (c.done, c.total, c.mine, c.per_minute)
            })
        };
        let (counted, ann_can, bob_can) = (counts(&s), s.can_undo("ann"), s.can_undo("bob"));
        drop(s);
        let mut s = open(&path, 2);
        assert_eq!(s.footprint().items, before.items);
        assert_eq!(s.footprint().collected_ids, before.collected_ids);
        assert_eq!(s.footprint().undo_entries, before.undo_entries);
        assert_eq!(counts(&s), counted);
        assert_eq!((s.can_undo("ann"), s.can_undo("bob")), (ann_can, bob_can));
        assert!(s.collect().unwrap().is_empty());
        // bob skipped t41 and undid t40: t40 first, then t42..., then t41.
        assert_eq!(s.next_for("bob", None).unwrap().id, "t40");
    }

    #[test]
    fn progress_counts_survive_collection_and_undo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.jsonl");
        let hour_ago = now_ms() - 60 * 60 * 1000;
        // An answer from an hour ago: counted as the person's, not in the
        // labels-per-minute window.
        std::fs::write(
            &path,
            format!(
                "{{\"kind\":\"item\",\"id\":\"old\",\"text\":\"t\"}}\n\
                 {{\"kind\":\"answer\",\"item\":\"old\",\"worker\":\"ann\",\"label\":\"none\",\"at\":{hour_ago}}}\n\
                 {{\"kind\":\"collected\",\"item\":\"old\",\"at\":{hour_ago}}}\n"
            ),
        )
        .unwrap();
        let mut s = open(&path, 1);
        assert_eq!(s.footprint().items, 0);
        let c = s.counts(Some("ann"));
        assert_eq!((c.mine, c.per_minute), (1, 0.0));
        s.submit(items(&["a", "b"])).unwrap();
        s.answer("ann", "a", "none").unwrap().unwrap();
        s.answer("ann", "b", "none").unwrap().unwrap();
        let c = s.counts(Some("ann"));
        assert_eq!((c.mine, c.per_minute), (3, 2.0));
        assert_eq!(s.undo("ann").unwrap().unwrap(), "b");
        let c = s.counts(Some("ann"));
        assert_eq!((c.mine, c.per_minute), (2, 1.0));
        assert_eq!(s.collect().unwrap().len(), 1);
        let c = s.counts(Some("ann"));
        assert_eq!((c.mine, c.per_minute, c.done, c.total), (2, 1.0, 2, 3));
        drop(s);
        let s = open(&path, 1);
        let c = s.counts(Some("ann"));
        assert_eq!((c.mine, c.per_minute, c.done, c.total), (2, 1.0, 2, 3));
    }
}
