//! Counts of an active-learning loop, shared between its parts and read by
//! the pipeline's run report.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// How many records one model version classified.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionUse {
    /// The version (1 for the first model served).
    pub version: u64,
    /// Records it classified.
    pub records: u64,
}

/// What the active-learning loop did, as the run report shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveStats {
    /// Review items put in the queue.
    pub queued: u64,
    /// Review items dropped from a full queue (the least uncertain; see
    /// [`EvictionPolicy`](super::EvictionPolicy)).
    pub evicted: u64,
    /// Tasks submitted to the inner labeler (each one charged to the budget).
    pub tasks_submitted: u64,
    /// Dispatch rounds that found the rate limit exhausted.
    pub rate_limited: u64,
    /// Dispatch rounds that found the budget exhausted.
    pub budget_exhausted: u64,
    /// Labels collected and appended to the dataset store.
    pub labels_gathered: u64,
    /// Results whose item was not awaiting a label (already stored, or from
    /// before a lost queue file); not stored.
    pub unmatched_results: u64,
    /// Successful retrainings.
    pub retrains: u64,
    /// Retrainings that failed (the model in service stayed).
    pub retrain_failures: u64,
    /// User code that panicked (the inner labeler's submit or collect, the
    /// conversion to an example, the trainer, the served model). Each one
    /// failed only its item, round part or retraining; an item whose submit
    /// or conversion panics alone leaves the queue.
    pub panics: u64,
    /// Items the inner labeler refused for good ([`ErrorClass::Permanent`](crate::ErrorClass::Permanent))
    /// when submitted alone, while it took other items: they left the queue
    /// unlabeled. (If it refuses everything, nothing leaves: the round
    /// fails with its error.)
    pub refused: u64,
    /// The version in service when the figures were taken.
    pub current_version: u64,
    /// Records classified per model version, oldest first: one entry per
    /// version this process served.
    pub versions: Vec<VersionUse>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) queued: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) tasks_submitted: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
    pub(crate) labels_gathered: AtomicU64,
    pub(crate) unmatched_results: AtomicU64,
    pub(crate) retrains: AtomicU64,
    pub(crate) retrain_failures: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) current_version: AtomicU64,
    /// One counter per model version, registered on swap; the classify hot
    /// path only increments its version's atomic.
    pub(crate) versions: Mutex<Vec<(u64, Arc<AtomicU64>)>>,
}

/// A shared handle on [`ActiveStats`]: the [`ActiveLearner`](super::ActiveLearner),
/// the [`HotSwapClassifier`](super::HotSwapClassifier) and the pipeline's
/// report all see the same counts.
///
/// ```
/// use streamsift::active::ActiveStatsHandle;
/// let stats = ActiveStatsHandle::new();
/// assert_eq!(stats.snapshot().labels_gathered, 0);
/// ```
#[derive(Clone, Default)]
pub struct ActiveStatsHandle(pub(crate) Arc<Counters>);

impl ActiveStatsHandle {
    /// A handle on fresh counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts now.
    pub fn snapshot(&self) -> ActiveStats {
        let c = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let versions = c
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(version, n)| VersionUse {
                version: *version,
                records: n.load(Ordering::Relaxed),
            })
            .collect();
        ActiveStats {
            queued: get(&c.queued),
            evicted: get(&c.evicted),
            tasks_submitted: get(&c.tasks_submitted),
            rate_limited: get(&c.rate_limited),
            budget_exhausted: get(&c.budget_exhausted),
            labels_gathered: get(&c.labels_gathered),
            unmatched_results: get(&c.unmatched_results),
            retrains: get(&c.retrains),
            retrain_failures: get(&c.retrain_failures),
            panics: get(&c.panics),
            refused: get(&c.refused),
            current_version: get(&c.current_version),
            versions,
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Registers a new model version and returns its use counter.
    pub(crate) fn register_version(&self, version: u64) -> Arc<AtomicU64> {
        let counter = Arc::new(AtomicU64::new(0));
        self.0
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((version, Arc::clone(&counter)));
        self.0.current_version.store(version, Ordering::Relaxed);
        counter
    }
}

impl fmt::Debug for ActiveStatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ActiveStatsHandle")
            .field(&self.snapshot())
            .finish()
    }
}
