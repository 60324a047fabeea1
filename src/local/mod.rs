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
//! - [`LocalClassifier`] serves it as a [`Classifier`](crate::Classifier);
//! - [`fit_binary_by_cost`] trains a binary model whose threshold was chosen
//!   by cost on out-of-fold scores of the training data, and
//!   [`training_fingerprint`] tells whether a saved model is still what
//!   training would produce.
//!
//! # Modules and what they depend on
//!
//! A DAG; each module uses only those listed after it (public paths are
//! the re-exports below):
//!
//! | module | uses |
//! |---|---|
//! | `cv` | `train`, `model`, `config`, `dataset`, `eval`, `doc` |
//! | `fingerprint` | `train`, `file`, `config`, `features`, `doc` |
//! | `train` | `model`, `config`, `features`, `doc` |
//! | `file` | `model`, `features` |
//! | `model` | `config`, `features`, `doc` |
//! | `config` | `features` |
//! | `features` | `text`, `doc` |
//! | `report` | `eval` |
//! | `dataset` | `doc` |
//! | `text`, `doc`, `eval` | nothing in `local` |
//!
//! `config` holds the training settings that both `model` (a model keeps
//! the settings it was trained with) and `train` need, so `model` never
//! uses `train`.

mod config;
pub mod cv;
pub mod dataset;
mod doc;
pub mod eval;
mod features;
mod file;
mod fingerprint;
mod model;
pub mod report;
mod text;
mod train;

pub use config::{ClassWeight, Task, TrainConfig};
pub use cv::{
    CostFit, CvError, CvStage, fit_binary_by_cost, out_of_fold_probabilities, out_of_fold_scores,
    threshold_at,
};
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
pub use features::{
    CharNgrams, ConfigError, Feature, FeatureBuf, Featurizer, FeaturizerConfig, Norm, NumericField,
};
pub use file::{MAX_WEIGHT_CELLS, MODEL_FORMAT, MODEL_VERSION, ModelFileError};
pub use fingerprint::training_fingerprint;
pub use model::{
    FeatureWeight, LocalClassifier, LocalModel, ModelKind, NamedBucket, TopFeatures,
    TrainingMetadata,
};
pub use report::{
    BinaryReport, ReportInput, ScoredExample, escape_html, render_html, worst_misclassified,
};
pub use text::{KindMode, TokenBuf, TokenKind, Tokenizer, TokenizerConfig};
pub use train::{EpochReport, TrainError};
