//! The embedded local classifier: a tweet-aware hashing featurizer, logistic
//! regression (binary and softmax), training, evaluation, cost-based
//! thresholds and an HTML report. Pure Rust, no AWS crate.

mod doc;

pub use doc::{Document, Example};
