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

mod doc;
mod features;
mod file;
mod model;
mod text;
mod train;

pub use doc::{Document, Example};
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
