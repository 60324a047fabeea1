//! The embedded local classifier: a tweet-aware hashing featurizer, logistic
//! regression (binary and softmax), training, evaluation, cost-based
//! thresholds and an HTML report. Pure Rust, no AWS crate.

pub mod dataset;
mod doc;

pub use dataset::{
    Dataset, DatasetError, DedupOptions, DedupReport, Format, LabelConflict, LoadOptions, Mode,
    RETWEET_FLAG, RemovalReason, Removed, Split, dedup, dedup_examples, labels_of, normalize_text,
    read_labels_csv, read_labels_path, stratified_k_fold, stratified_split,
};
pub use doc::{Document, Example};
