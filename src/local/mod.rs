//! The embedded local classifier: a tweet-aware hashing featurizer, logistic
//! regression (binary and softmax), training, evaluation, cost-based
//! thresholds and an HTML report. Pure Rust, no AWS crate.
//!
//! Training and serving share one featurizer, stored in the model file:
//!
//! - [`Tokenizer`] (tweet-aware) and [`Featurizer`] (hashed unigrams,
//!   orthogonal sparse bigrams, character n-grams, text flags, document
//!   fields) turn a [`Document`] into [`Feature`]s;
//! - [`LocalModel::train`] fits binary or multinomial logistic regression
//!   ([`TrainConfig`]);
//! - [`LocalModel::save`] / [`LocalModel::load`] keep it in a versioned JSON
//!   file ([`ModelFileError`] says what is wrong with a bad one);
//! - [`LocalClassifier`] serves it as a [`Classifier`](crate::Classifier).

pub mod dataset;
mod doc;
pub mod eval;
pub mod report;
mod features;
mod file;
mod model;
mod text;
mod train;

pub use dataset::{
    Dataset, DatasetError, DedupOptions, DedupReport, Format, LabelConflict, LoadOptions, Mode,
    RETWEET_FLAG, RemovalReason, Removed, Split, dedup, dedup_examples, labels_of, normalize_text,
    read_labels_csv, read_labels_path, stratified_k_fold, stratified_split,
};
pub use doc::{Document, Example};
pub use eval::{
    BinaryEvalOptions, BinaryEvaluation, ClassMetrics, Confusion, Costs, EvalError, LOG_LOSS_EPS,
    MulticlassEvaluation, PrPoint, Reliability, ReliabilityBin, RocPoint, ScoreHistogram,
    ThresholdChoice, ThresholdRule, average_precision, choose_threshold_by_cost, evaluate_binary,
    evaluate_multiclass, evaluate_multiclass_flat, log_loss, pr_curve, reliability, roc_auc,
    roc_curve, score_histogram, threshold_for_recall,
};
pub use report::{
    BinaryReport, ReportInput, ScoredExample, escape_html, render_html, worst_misclassified,
};
pub use features::{
    CharNgrams, ConfigError, Feature, FeatureBuf, Featurizer, FeaturizerConfig, Norm, NumericField,
};
pub use file::{MODEL_FORMAT, MODEL_VERSION, ModelFileError};
pub use model::{
    FeatureWeight, LocalClassifier, LocalModel, ModelKind, NamedBucket, TopFeatures,
    TrainingMetadata,
};
pub use text::{KindMode, TokenBuf, TokenKind, Tokenizer, TokenizerConfig};
pub use train::{ClassWeight, EpochReport, Task, TrainConfig, TrainError};
