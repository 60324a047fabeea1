//! Training settings: [`TrainConfig`], [`Task`] and [`ClassWeight`].
//!
//! Their own module because both [`super::model`] (a model's metadata keeps
//! the configuration it was trained with) and [`super::train`] (which fits
//! it) need them: `model → config`, `train → {model, config}`, and nothing
//! points back. Depends only on [`super::features`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::features::FeaturizerConfig;

/// What to learn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    /// Logistic regression: `positive` against every other label. The
    /// negative label is the other label if there is exactly one, else
    /// `"not_<positive>"`.
    Binary {
        /// The positive label.
        positive: String,
    },
    /// Softmax regression over every label.
    Multinomial,
}

/// How much each example weighs in the loss, by its class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every example weighs 1.
    Uniform,
    /// Classes weigh `n / (classes * n_class)`, so each class counts as much
    /// in total (scikit-learn's `"balanced"`).
    Balanced,
    /// A weight per label (labels not listed weigh 1). For a binary task,
    /// the keys are the positive label and the negative label.
    Custom(BTreeMap<String, f64>),
}

/// Training settings. Stored in the model file's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Binary or multinomial.
    pub task: Task,
    /// The featurizer (numeric bins are learnt from the training data).
    pub featurizer: FeaturizerConfig,
    /// Passes over the data.
    pub epochs: usize,
    /// AdaGrad's base learning rate.
    pub learning_rate: f64,
    /// L2 penalty, applied to the weights of the features an example has at
    /// each step (so frequent features are held back more, much as dropout
    /// regularises).
    pub l2: f64,
    /// L1 penalty (proximal step), 0 for none.
    pub l1: f64,
    /// Class weights.
    pub class_weight: ClassWeight,
    /// Seed of the shuffling.
    pub seed: u64,
}

impl TrainConfig {
    /// Binary logistic regression of `positive` against the rest, with the
    /// default settings (chosen by cross-validation on the bundled tweets).
    ///
    /// ```
    /// use streamsift::local::{TrainConfig, Task};
    /// let config = TrainConfig::binary("actionable");
    /// assert_eq!(config.task, Task::Binary { positive: "actionable".into() });
    /// ```
    pub fn binary(positive: impl Into<String>) -> Self {
        TrainConfig {
            task: Task::Binary {
                positive: positive.into(),
            },
            ..TrainConfig::multinomial()
        }
    }

    /// Multinomial softmax regression over every label, with the default
    /// settings.
    pub fn multinomial() -> Self {
        TrainConfig {
            task: Task::Multinomial,
            featurizer: FeaturizerConfig::default(),
            epochs: 10,
            learning_rate: 0.1,
            l2: 1e-3,
            l1: 0.0,
            class_weight: ClassWeight::Balanced,
            seed: 0,
        }
    }
}
