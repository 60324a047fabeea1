//! Active learning: the review band goes to people, their labels come back
//! as training data, and a retrained model is swapped in while the pipeline
//! runs.
//!
//! ```text
//!  Pipeline ── review band ──► ActiveLearner::submit ──► ReviewQueue (JSON lines, fsynced)
//!                                                           │ most uncertain first,
//!                                                           │ rate- and budget-limited batches
//!  ActiveLearner::tick / run ◄──────────────────────────────┘
//!     ├─► inner Labeler::submit (a batch)      ├─► inner Labeler::collect
//!     │                                        └─► DatasetStore (labeled examples, JSON lines)
//!     └─► Retrainer (after N labels or on a schedule; trains in spawn_blocking)
//!            └─► HotSwapClassifier::swap (one Arc, swapped under a lock)
//! ```
//!
//! - [`ActiveLearner`] is the [`Labeler`](crate::Labeler) the pipeline's
//!   [`review`](crate::Pipeline::review) takes. A record counts as reviewed
//!   once it is in the durable [`ReviewQueue`]; [`ActiveLearner::run`] (or
//!   [`ActiveLearner::tick`]) then submits the most uncertain queued items to
//!   the inner labeler in batches, within a rate and a budget, collects the
//!   finished labels into a [`DatasetStore`], and triggers the
//!   [`Retrainer`].
//! - [`HotSwapClassifier`] is the [`Classifier`](crate::Classifier) the
//!   pipeline classifies with. Each call takes the current model (an `Arc`)
//!   once, so a record is classified wholly by one model version.
//! - [`ActiveStats`] (through [`ActiveStatsHandle`], given to
//!   [`Pipeline::active_stats`](crate::Pipeline::active_stats)) puts the
//!   labels gathered and the model versions used into the run report.

mod learner;
mod queue;
mod retrain;
mod stats;
mod store;
mod swap;
mod uncertainty;

pub use learner::{
    ActiveConfig, ActiveLearner, ActiveLearnerBuilder, Budget, RateLimit, TickReport,
};
pub use queue::{EvictionPolicy, PushOutcome, QueuedTask, ReviewQueue};
pub use retrain::{RetrainTrigger, Retrainer, TrainFn};
pub use stats::{ActiveStats, ActiveStatsHandle, VersionUse};
pub use store::{DatasetStore, LabeledExample};
pub use swap::{HotSwapClassifier, ModelVersion};
pub use uncertainty::Uncertainty;

use std::path::PathBuf;

/// Why an active-learning component failed.
#[derive(Debug, thiserror::Error)]
pub enum ActiveError {
    /// A file could not be read or written.
    #[error("active learning: {action} {path} failed: {source}; check the path and permissions")]
    Io {
        /// What we were doing (`"append to"`, `"open"`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a queue or dataset file is not what this module writes.
    #[error(
        "active learning: {path} line {line} is corrupt: expected {expected}, found {found}; \
         restore the file from a backup or move it away to start empty"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What the line should hold.
        expected: &'static str,
        /// What it holds (the kind of JSON error and its column; never
        /// the line's text).
        found: String,
    },
    /// An item could not be turned into JSON for the queue.
    #[error("active learning: cannot serialise the item {id} for the review queue: {source}")]
    Serialize {
        /// The item's id.
        id: String,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// Training a new model failed; the current model stays in service.
    #[error("active learning: retraining failed, the current model stays: {0}")]
    Train(String),
    /// A blocking task (file I/O, training) panicked or was cancelled.
    #[error("active learning: a background task did not finish: {0}")]
    Background(String),
    /// The inner labeler failed.
    #[error("active learning: the inner labeler failed: {0}")]
    Labeler(#[from] crate::error::LabelError),
    /// The configuration cannot work.
    #[error("active learning: invalid configuration: {0}")]
    Config(String),
    /// User code (the inner labeler, the conversion to an example, the
    /// trainer) panicked. Only that item, round part or retraining failed;
    /// the learner keeps working.
    #[error(
        "active learning: user code panicked at the {stage} stage; that work was dropped and \
         the learner goes on (fix the panicking code)"
    )]
    Panic {
        /// Where: `submit`, `collect`, `to_example` or `retrain`.
        stage: &'static str,
    },
}

impl ActiveError {
    /// A short, stable name for the kind of failure, for logs and metrics
    /// (it never carries item text).
    pub fn kind(&self) -> &'static str {
        match self {
            ActiveError::Io { .. } => "io",
            ActiveError::Corrupt { .. } => "corrupt",
            ActiveError::Serialize { .. } => "serialize",
            ActiveError::Train(_) => "train",
            ActiveError::Background(_) => "background",
            ActiveError::Labeler(_) => "labeler",
            ActiveError::Config(_) => "config",
            ActiveError::Panic { .. } => "panic",
        }
    }
}

/// Describes a JSON error without quoting the text it was reading (serde's
/// own messages may quote values, which are customer text).
fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "an I/O error",
        serde_json::error::Category::Syntax => "a JSON syntax error",
        serde_json::error::Category::Data => "JSON of the wrong shape",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{what} at column {}", e.column())
}
