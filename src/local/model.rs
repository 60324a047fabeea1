//! The trained model ([`LocalModel`]) and the [`Classifier`] over it
//! ([`LocalClassifier`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::doc::Document;
use super::features::{Feature, FeatureBuf, Featurizer};
use crate::classify::{Classifier, Label, Prediction};
use crate::error::ClassifyError;
use crate::policy::Policy;

/// Binary logistic regression or multinomial (softmax) regression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// One weight vector; the score is the probability of the positive label.
    Binary,
    /// One weight vector per label; the scores are a softmax over labels.
    Multinomial,
}

/// How and on what the model was trained. Stored in the model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingMetadata {
    /// The training settings (its featurizer config is the one before
    /// numeric bins were learnt; the model's own featurizer holds the bins).
    pub config: TrainConfig,
    /// Number of training examples.
    pub examples: usize,
    /// Training examples per label, as given (before any binary mapping).
    pub label_counts: BTreeMap<String, usize>,
    /// The mean log-loss of the final model on its training data.
    pub train_log_loss: f64,
    /// Wall-clock training time, in seconds.
    pub train_seconds: f64,
    /// When training finished, in seconds since the Unix epoch.
    pub trained_at_unix: u64,
    /// The streamsift version that trained the model.
    pub crate_version: String,
    /// How often each configured document field was missing in the training
    /// data (compare with [`Featurizer::missing_fields`] at serve time).
    pub missing_fields: BTreeMap<String, u64>,
}

/// A bucket with a readable example of a feature hashed into it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedBucket {
    /// The bucket.
    pub bucket: u32,
    /// The sign the named feature gets in that bucket (+1 or -1).
    pub sign: f32,
    /// The feature, as [`Featurizer::describe`] names it.
    pub name: String,
}

/// A feature and its weight toward a label, for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureWeight {
    /// The feature's name (one example of what hashes to the bucket).
    pub name: String,
    /// The bucket.
    pub bucket: u32,
    /// The weight the feature contributes per unit of value (bucket weight
    /// times the feature's sign).
    pub weight: f32,
}

/// The features that push most toward and most away from a label.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TopFeatures {
    /// Largest positive weights first.
    pub positive: Vec<FeatureWeight>,
    /// Most negative weights first.
    pub negative: Vec<FeatureWeight>,
}

/// A trained model: featurizer, weights, labels, an optional decision
/// policy, training metadata and evaluation figures. Save it with
/// [`save`](LocalModel::save), load it with [`load`](LocalModel::load);
/// serve it with [`LocalClassifier`].
///
/// ```
/// use streamsift::local::{Example, LocalModel, TrainConfig};
/// let data = vec![
///     Example::new("my flight was cancelled and nobody helps").labeled("complaint"),
///     Example::new("lost my bag again, terrible service").labeled("complaint"),
///     Example::new("thanks for the great flight crew").labeled("other"),
///     Example::new("lovely views from the window seat").labeled("other"),
/// ];
/// let model = LocalModel::train(&data, &TrainConfig::binary("complaint")).unwrap();
/// let p = model.positive_probability("cancelled flight, terrible").unwrap();
/// let q = model.positive_probability("great crew, lovely flight").unwrap();
/// assert!(p > q);
/// ```
#[derive(Clone, Debug)]
pub struct LocalModel {
    pub(crate) featurizer: Featurizer,
    pub(crate) kind: ModelKind,
    /// Binary: `[negative, positive]`; multinomial: one per class.
    pub(crate) labels: Vec<Label>,
    /// Dense weights, `dim * columns`, row-major by bucket.
    pub(crate) weights: Vec<f32>,
    /// One bias per column.
    pub(crate) bias: Vec<f32>,
    pub(crate) policy: Option<Policy>,
    pub(crate) metadata: TrainingMetadata,
    /// Evaluation figures (filled by the evaluation tools), free-form JSON.
    pub evaluation: Option<serde_json::Value>,
    pub(crate) feature_names: Vec<NamedBucket>,
}

thread_local! {
    static BUF: RefCell<FeatureBuf> = RefCell::new(FeatureBuf::new());
}

/// Runs `f` with this thread's scratch buffer (a fresh one if it is in use).
fn with_buf<R>(f: impl FnOnce(&mut FeatureBuf) -> R) -> R {
    BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut FeatureBuf::new()),
    })
}

impl LocalModel {
    /// Binary or multinomial.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// The labels: `[negative, positive]` for a binary model, else the
    /// classes in the order of [`predict_proba`](LocalModel::predict_proba).
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// The positive label of a binary model.
    pub fn positive_label(&self) -> Option<&Label> {
        match self.kind {
            ModelKind::Binary => self.labels.get(1),
            ModelKind::Multinomial => None,
        }
    }

    /// The featurizer the model was trained with (and serves with).
    pub fn featurizer(&self) -> &Featurizer {
        &self.featurizer
    }

    /// The decision policy saved with the model, if one was chosen.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// Sets the decision policy saved with the model.
    pub fn set_policy(&mut self, policy: Option<Policy>) {
        self.policy = policy;
    }

    /// How the model was trained.
    pub fn metadata(&self) -> &TrainingMetadata {
        &self.metadata
    }

    /// Number of weight columns: 1 for binary, one per label otherwise.
    fn columns(&self) -> usize {
        self.bias.len()
    }

    /// Raw scores (log-odds for binary, logits for multinomial) of an
    /// already featurized vector, written to `out` (one per column).
    pub(crate) fn logits(&self, features: &[Feature], out: &mut [f64]) {
        let k = self.columns();
        if let ([z], [b]) = (&mut *out, self.bias.as_slice()) {
            // Binary: one weight per bucket.
            let mut sum = 0.0f64;
            for f in features {
                if let Some(&w) = self.weights.get(f.index as usize) {
                    sum += f64::from(w) * f64::from(f.value);
                }
            }
            *z = f64::from(*b) + sum;
            return;
        }
        let n = k.min(out.len());
        let out = &mut out[..n];
        out.fill(0.0);
        for f in features {
            let row = f.index as usize * k;
            if let Some(w) = self.weights.get(row..row + k) {
                for (o, &w) in out.iter_mut().zip(w) {
                    *o += f64::from(w) * f64::from(f.value);
                }
            }
        }
        for (o, &b) in out.iter_mut().zip(&self.bias) {
            *o += f64::from(b);
        }
    }

    /// Raw scores of `doc`, one per column, written to `out` (which must
    /// have one slot per column): the featurizer's features folded into the
    /// dot products as they are made, with no feature buffer (the same
    /// features [`Featurizer::featurize`] returns).
    fn doc_logits<D: Document + ?Sized>(&self, doc: &D, buf: &mut FeatureBuf, out: &mut [f64]) {
        let scale =
            f64::from(
                self.featurizer
                    .dot_unscaled(doc, buf, &self.weights, self.columns(), out),
            );
        for (o, &b) in out.iter_mut().zip(&self.bias) {
            *o = f64::from(b) + *o * scale;
        }
    }

    /// Probabilities of `doc`, one per label in [`labels`](LocalModel::labels)
    /// order, written to `out` (which must have one slot per label), using
    /// the caller's scratch buffer. Allocation-free once `buf` is warm.
    pub fn predict_proba_into<D: Document + ?Sized>(
        &self,
        doc: &D,
        buf: &mut FeatureBuf,
        out: &mut [f64],
    ) {
        match self.kind {
            ModelKind::Binary => {
                let mut z = [0.0];
                self.doc_logits(doc, buf, &mut z);
                let p = sigmoid(z[0]);
                if let [neg, pos, ..] = out {
                    *neg = 1.0 - p;
                    *pos = p;
                }
            }
            ModelKind::Multinomial => {
                let n = self.columns().min(out.len());
                let out = &mut out[..n];
                self.doc_logits(doc, buf, out);
                softmax(out);
            }
        }
    }

    /// The probability that `doc` has the positive label (binary models
    /// only; `None` for multinomial). Uses a thread-local scratch buffer.
    pub fn positive_probability<D: Document + ?Sized>(&self, doc: &D) -> Option<f64> {
        if self.kind != ModelKind::Binary {
            return None;
        }
        let mut out = [0.0; 2];
        with_buf(|buf| self.predict_proba_into(doc, buf, &mut out));
        Some(out[1])
    }

    /// The probability of each label for `doc`.
    pub fn predict_proba<D: Document + ?Sized>(&self, doc: &D) -> Vec<(Label, f64)> {
        let mut out = vec![0.0; self.labels.len()];
        with_buf(|buf| self.predict_proba_into(doc, buf, &mut out));
        self.labels.iter().cloned().zip(out).collect()
    }

    /// The [`Prediction`] for `doc`: [`Prediction::binary`] for a binary
    /// model (so a threshold [`Policy`] applies to the positive score),
    /// [`Prediction::from_scores`] for a multinomial one.
    pub fn predict<D: Document + ?Sized>(&self, doc: &D) -> Prediction {
        match (self.kind, self.labels.as_slice()) {
            (ModelKind::Binary, [neg, pos]) => {
                let p = self.positive_probability(doc).unwrap_or(0.0);
                Prediction::binary(pos.clone(), neg.clone(), p)
            }
            _ => {
                let scores = self.predict_proba(doc);
                let first = self
                    .labels
                    .first()
                    .cloned()
                    .unwrap_or(Label::from_static(""));
                Prediction::from_scores(scores).unwrap_or_else(|| Prediction::label(first))
            }
        }
    }

    /// The `n` features with the largest positive and most negative weights
    /// toward the positive label (binary) or the first label (multinomial;
    /// see [`top_features_for`](LocalModel::top_features_for)). Only buckets
    /// named at training time are listed.
    pub fn top_features(&self, n: usize) -> TopFeatures {
        // Column 0 is the positive label's (binary) or the first label's.
        self.top_features_column(0, n)
    }

    /// The top features toward `label`; `None` if the model has no such
    /// label. For a binary model, the negative label's list is the positive
    /// one's mirrored.
    pub fn top_features_for(&self, label: &str, n: usize) -> Option<TopFeatures> {
        let i = self.labels.iter().position(|l| l == label)?;
        match self.kind {
            ModelKind::Multinomial => Some(self.top_features_column(i, n)),
            ModelKind::Binary if i == 1 => Some(self.top_features_column(0, n)),
            ModelKind::Binary => {
                let t = self.top_features_column(0, n);
                let flip = |v: Vec<FeatureWeight>| {
                    v.into_iter()
                        .map(|f| FeatureWeight {
                            weight: -f.weight,
                            ..f
                        })
                        .collect()
                };
                Some(TopFeatures {
                    positive: flip(t.negative),
                    negative: flip(t.positive),
                })
            }
        }
    }

    fn top_features_column(&self, column: usize, n: usize) -> TopFeatures {
        let k = self.columns();
        let mut all: Vec<FeatureWeight> = self
            .feature_names
            .iter()
            .filter_map(|nb| {
                let w = *self.weights.get(nb.bucket as usize * k + column)?;
                Some(FeatureWeight {
                    name: nb.name.clone(),
                    bucket: nb.bucket,
                    weight: w * nb.sign,
                })
            })
            .collect();
        all.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.bucket.cmp(&b.bucket)));
        let positive = all
            .iter()
            .filter(|f| f.weight > 0.0)
            .take(n)
            .cloned()
            .collect();
        let negative = all
            .iter()
            .rev()
            .filter(|f| f.weight < 0.0)
            .take(n)
            .cloned()
            .collect();
        TopFeatures { positive, negative }
    }
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// In-place softmax of logits.
pub(crate) fn softmax(z: &mut [f64]) {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    if sum > 0.0 && sum.is_finite() {
        z.iter_mut().for_each(|v| *v /= sum);
    }
}

/// A [`Classifier`] over a [`LocalModel`], for any item that is a
/// [`Document`]. Cloning shares the model. Classification never fails and
/// does no I/O: it runs the featurizer and a dot product inline.
///
/// ```
/// use streamsift::Classifier;
/// use streamsift::local::{Example, LocalClassifier, LocalModel, TrainConfig};
/// let data = vec![
///     Example::new("app crashes on login").labeled("problem"),
///     Example::new("love the new release").labeled("none"),
/// ];
/// let model = LocalModel::train(&data, &TrainConfig::binary("problem")).unwrap();
/// let classifier = LocalClassifier::new(model);
/// let item = Example::new("it crashes when I log in");
/// let prediction = futures::executor::block_on(classifier.classify(&item)).unwrap();
/// assert!(prediction.positive_score.is_some());
/// ```
#[derive(Clone, Debug)]
pub struct LocalClassifier {
    model: Arc<LocalModel>,
}

impl LocalClassifier {
    /// A classifier serving `model`.
    pub fn new(model: LocalModel) -> Self {
        LocalClassifier {
            model: Arc::new(model),
        }
    }

    /// A classifier serving a shared model.
    pub fn from_shared(model: Arc<LocalModel>) -> Self {
        LocalClassifier { model }
    }

    /// The model.
    pub fn model(&self) -> &LocalModel {
        &self.model
    }

    /// Predicts synchronously (what [`Classifier::classify`] returns).
    pub fn predict<D: Document + ?Sized>(&self, doc: &D) -> Prediction {
        self.model.predict(doc)
    }

    /// The probability of each label.
    pub fn predict_proba<D: Document + ?Sized>(&self, doc: &D) -> Vec<(Label, f64)> {
        self.model.predict_proba(doc)
    }
}

impl<T: Document + Sync> Classifier<T> for LocalClassifier {
    async fn classify(&self, item: &T) -> Result<Prediction, ClassifyError> {
        Ok(self.model.predict(item))
    }
}
