//! Classification: the [`Classifier`] trait and the [`Prediction`] it returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::ClassifyError;

/// A class label or a route name. Cloning is cheap: static names are
/// copied, owned names are shared (`Arc<str>`).
#[derive(Clone)]
pub struct Label(LabelRepr);

#[derive(Clone)]
enum LabelRepr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Label {
    /// A label from a static string (no allocation).
    pub const fn from_static(s: &'static str) -> Self {
        Label(LabelRepr::Static(s))
    }

    /// The label as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            LabelRepr::Static(s) => s,
            LabelRepr::Shared(s) => s,
        }
    }
}

impl PartialEq for Label {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Label {}

impl std::hash::Hash for Label {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Label {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(Label::from(s))
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for Label {
    fn from(s: &'static str) -> Self {
        Label::from_static(s)
    }
}

impl From<String> for Label {
    fn from(s: String) -> Self {
        Label(LabelRepr::Shared(Arc::from(s)))
    }
}

impl std::borrow::Borrow<str> for Label {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Label {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Label {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Label {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What a classifier says about one item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The predicted label.
    pub label: Label,
    /// A probability per label (may be empty when the backend gives none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<(Label, f64)>,
    /// For a binary model, the probability of the positive ("actionable")
    /// class, which a threshold policy compares against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_score: Option<f64>,
    /// Which stage of a [`Cascade`](crate::cascade::Cascade) decided; `None`
    /// for a prediction that did not come through a cascade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<CascadeStage>,
}

/// Which stage of a [`Cascade`](crate::cascade::Cascade) gave a
/// [`Prediction`] (its [`decided_by`](Prediction::decided_by)).
///
/// ```
/// use streamsift::CascadeStage;
/// assert_eq!(serde_json::to_string(&CascadeStage::Second).unwrap(), "\"second\"");
/// assert_eq!(CascadeStage::Fallback.as_str(), "fallback");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CascadeStage {
    /// Stage 1 (the cheap model) was sure enough: its score was outside the
    /// uncertain band.
    First,
    /// Stage 2 (the expensive model) decided an item stage 1 was unsure of.
    Second,
    /// Stage 2 was asked and failed permanently (a spent budget, a refusal);
    /// the prediction is the cascade's documented fallback.
    Fallback,
}

impl CascadeStage {
    /// The stage's name, as serialized and as metrics label it.
    pub const fn as_str(self) -> &'static str {
        match self {
            CascadeStage::First => "first",
            CascadeStage::Second => "second",
            CascadeStage::Fallback => "fallback",
        }
    }
}

impl fmt::Display for CascadeStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Prediction {
    /// A label with no scores.
    pub fn label(label: impl Into<Label>) -> Self {
        Prediction {
            label: label.into(),
            scores: Vec::new(),
            positive_score: None,
            decided_by: None,
        }
    }

    /// A binary prediction: `score` is the probability of `positive`; the
    /// label is `positive` when `score >= 0.5`, else `negative`. Policies
    /// apply their own threshold to `positive_score`, not to this label.
    ///
    /// ```
    /// use streamsift::Prediction;
    /// let p = Prediction::binary("actionable", "noise", 0.3);
    /// assert_eq!(p.label, "noise");
    /// assert_eq!(p.positive_score, Some(0.3));
    /// assert!((p.score("noise").unwrap() - 0.7).abs() < 1e-12);
    /// ```
    pub fn binary(positive: impl Into<Label>, negative: impl Into<Label>, score: f64) -> Self {
        let (positive, negative) = (positive.into(), negative.into());
        let label = if score >= 0.5 {
            positive.clone()
        } else {
            negative.clone()
        };
        Prediction {
            label,
            scores: vec![(positive, score), (negative, 1.0 - score)],
            positive_score: Some(score),
            decided_by: None,
        }
    }

    /// A multi-class prediction from a probability per label; the label is
    /// the most probable one (the first on ties). Returns `None` when `scores`
    /// is empty.
    ///
    /// ```
    /// use streamsift::Prediction;
    /// let p = Prediction::from_scores(vec![("a".into(), 0.2), ("b".into(), 0.8)]).unwrap();
    /// assert_eq!(p.label, "b");
    /// assert_eq!(p.confidence(), Some(0.8));
    /// ```
    pub fn from_scores(scores: Vec<(Label, f64)>) -> Option<Self> {
        let mut best: Option<&(Label, f64)> = None;
        for entry in &scores {
            if best.is_none_or(|b| entry.1 > b.1) {
                best = Some(entry);
            }
        }
        let label = best?.0.clone();
        Some(Prediction {
            label,
            scores,
            positive_score: None,
            decided_by: None,
        })
    }

    /// The probability of `label`, if the classifier gave one.
    pub fn score(&self, label: &str) -> Option<f64> {
        self.scores
            .iter()
            .find(|(l, _)| l.as_str() == label)
            .map(|(_, s)| *s)
    }

    /// The probability of the predicted label, if known.
    pub fn confidence(&self) -> Option<f64> {
        self.score(self.label.as_str())
    }
}

/// Classifies items of type `T`.
///
/// Implement it with a plain `async fn`:
///
/// ```
/// use streamsift::{Classifier, ClassifyError, Prediction};
/// struct Shouting;
/// impl Classifier<String> for Shouting {
///     async fn classify(&self, text: &String) -> Result<Prediction, ClassifyError> {
///         let caps = text.chars().filter(|c| c.is_uppercase()).count() as f64;
///         let score = caps / text.chars().count().max(1) as f64;
///         Ok(Prediction::binary("shouting", "calm", score))
///     }
/// }
/// ```
///
/// Any `Fn(&T) -> impl Future<Output = Result<Prediction, ClassifyError>>`
/// is a classifier too. For classifiers chosen at run time, use
/// [`BoxClassifier`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Classifier of `{T}`",
    label = "not a classifier of `{T}`",
    note = "set the classifier with `.classify(..)`: a type implementing `streamsift::Classifier<{T}>`, or a closure `|item: &{T}| async move {{ Ok::<_, ClassifyError>(Prediction::label(\"..\")) }}`",
    note = "`()` means `.classify(..)` was not called; a classifier of another type means `.decode(..)`/`.json()` changed the item type"
)]
pub trait Classifier<T: Sync>: Send + Sync {
    /// Classifies one item.
    fn classify(&self, item: &T) -> impl Future<Output = Result<Prediction, ClassifyError>> + Send;

    /// Classifies several items, for backends that predict in bulk. The
    /// default calls [`classify`](Classifier::classify) once per item, in
    /// order. The result has one entry per item, so one failure does not fail
    /// the others.
    fn classify_batch(
        &self,
        items: &[&T],
    ) -> impl Future<Output = Vec<Result<Prediction, ClassifyError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(self.classify(item).await);
            }
            out
        }
    }
}

impl<T, F, Fut> Classifier<T> for F
where
    T: Sync,
    F: Fn(&T) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Prediction, ClassifyError>> + Send,
{
    fn classify(&self, item: &T) -> impl Future<Output = Result<Prediction, ClassifyError>> + Send {
        self(item)
    }
}

impl<T: Sync, C: Classifier<T> + ?Sized> Classifier<T> for Arc<C> {
    fn classify(&self, item: &T) -> impl Future<Output = Result<Prediction, ClassifyError>> + Send {
        (**self).classify(item)
    }

    fn classify_batch(
        &self,
        items: &[&T],
    ) -> impl Future<Output = Vec<Result<Prediction, ClassifyError>>> + Send {
        (**self).classify_batch(items)
    }
}

/// A boxed future, as the erased traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Classifier`], with a blanket impl for every
/// classifier. Use it through [`BoxClassifier`].
pub trait DynClassifier<T: Sync>: Send + Sync {
    /// Classifies one item.
    fn classify_dyn<'a>(&'a self, item: &'a T) -> BoxFuture<'a, Result<Prediction, ClassifyError>>;
}

impl<T: Sync, C: Classifier<T>> DynClassifier<T> for C {
    fn classify_dyn<'a>(&'a self, item: &'a T) -> BoxFuture<'a, Result<Prediction, ClassifyError>> {
        Box::pin(self.classify(item))
    }
}

/// A type-erased, shareable classifier. It costs one allocation per call;
/// use a concrete type on hot paths when you can.
pub struct BoxClassifier<T>(Arc<dyn DynClassifier<T>>);

impl<T: Sync + 'static> BoxClassifier<T> {
    /// Erases a classifier's type.
    pub fn new(classifier: impl Classifier<T> + 'static) -> Self {
        BoxClassifier(Arc::new(classifier))
    }
}

impl<T> Clone for BoxClassifier<T> {
    fn clone(&self) -> Self {
        BoxClassifier(Arc::clone(&self.0))
    }
}

impl<T> fmt::Debug for BoxClassifier<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxClassifier")
    }
}

impl<T: Sync> Classifier<T> for BoxClassifier<T> {
    async fn classify(&self, item: &T) -> Result<Prediction, ClassifyError> {
        self.0.classify_dyn(item).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_classifier_is_send_sync() {
        fn assert_send_sync<X: Send + Sync>() {}
        assert_send_sync::<BoxClassifier<String>>();
    }

    #[tokio::test]
    async fn closures_classify_and_batch_defaults_to_one_call_per_item() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let c = |t: &String| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let long = t.len() > 3;
            async move {
                if long {
                    Ok(Prediction::label("long"))
                } else {
                    Err(ClassifyError::permanent("too short to judge"))
                }
            }
        };
        let a = "hello".to_string();
        let b = "hi".to_string();
        let out = c.classify_batch(&[&a, &b]).await;
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().unwrap().label, "long");
        assert!(!out[1].as_ref().unwrap_err().is_retryable());
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
        let boxed = BoxClassifier::new(|_: &String| async { Ok(Prediction::label("x")) });
        assert_eq!(boxed.classify(&a).await.unwrap().label, "x");
    }

    #[test]
    fn from_scores_picks_the_max_and_empty_is_none() {
        assert!(Prediction::from_scores(vec![]).is_none());
        let p = Prediction::from_scores(vec![("a".into(), 0.5), ("b".into(), 0.5)]).unwrap();
        assert_eq!(p.label, "a");
    }
}
