//! [`HotSwapClassifier`]: a classifier whose model can be replaced while
//! the pipeline runs.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures::FutureExt as _;

use super::stats::ActiveStatsHandle;
use crate::classify::{Classifier, Prediction};
use crate::error::ClassifyError;

/// One model in service, with its version number.
#[derive(Debug)]
pub struct ModelVersion<C> {
    version: u64,
    model: C,
    uses: Arc<AtomicU64>,
}

impl<C> ModelVersion<C> {
    /// The version number (1 for the first model, +1 per swap).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The model.
    pub fn model(&self) -> &C {
        &self.model
    }
}

struct Shared<C> {
    current: RwLock<Arc<ModelVersion<C>>>,
    stats: ActiveStatsHandle,
}

/// A [`Classifier`] serving the current version of a model that can be
/// [`swap`](HotSwapClassifier::swap)ped at any time, from any task.
///
/// The current model is an `Arc` behind a lock. A `classify` call takes the
/// lock only to clone the `Arc` and then classifies with that model to the
/// end, so every record is classified wholly by one version, and a swap
/// never waits for records in flight (the old model is dropped when its
/// last record finishes). A new model is built completely before
/// [`swap`](HotSwapClassifier::swap) is called, so no record can see a
/// half-loaded one. Each version counts the records it classified; the
/// counts appear in [`ActiveStats::versions`](super::ActiveStats::versions).
///
/// ```
/// use streamsift::{Classifier, ClassifyError, Prediction};
/// use streamsift::active::HotSwapClassifier;
///
/// let fixed = |score: f64| move |_: &String| async move {
///     Ok::<_, ClassifyError>(Prediction::binary("yes", "no", score))
/// };
/// # futures::executor::block_on(async {
/// let classifier = HotSwapClassifier::new(fixed(0.2));
/// let item = "hello".to_string();
/// assert_eq!(classifier.classify(&item).await.unwrap().positive_score, Some(0.2));
/// assert_eq!(classifier.swap(fixed(0.9)), 2);
/// assert_eq!(classifier.classify(&item).await.unwrap().positive_score, Some(0.9));
/// # });
/// ```
pub struct HotSwapClassifier<C> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for HotSwapClassifier<C> {
    fn clone(&self) -> Self {
        HotSwapClassifier {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> HotSwapClassifier<C> {
    /// Serves `model` as version 1, counting into fresh stats.
    pub fn new(model: C) -> Self {
        Self::with_stats(model, ActiveStatsHandle::new())
    }

    /// Serves `model` as version 1, counting into `stats` (share it with
    /// the [`ActiveLearner`](super::ActiveLearner) and the pipeline).
    pub fn with_stats(model: C, stats: ActiveStatsHandle) -> Self {
        let uses = stats.register_version(1);
        HotSwapClassifier {
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(ModelVersion {
                    version: 1,
                    model,
                    uses,
                })),
                stats,
            }),
        }
    }

    /// The model in service now. Holding it keeps that version alive; it
    /// does not block swaps.
    pub fn current(&self) -> Arc<ModelVersion<C>> {
        // The lock only guards an Arc clone or replacement, which cannot
        // leave it inconsistent, so a poisoned lock is still usable.
        Arc::clone(
            &self
                .shared
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// The version in service now.
    pub fn version(&self) -> u64 {
        self.current().version
    }

    /// Puts `model` in service as the next version and returns its number.
    /// Records already classifying finish with the version they took.
    pub fn swap(&self, model: C) -> u64 {
        let mut current = self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let version = current.version + 1;
        let uses = self.shared.stats.register_version(version);
        *current = Arc::new(ModelVersion {
            version,
            model,
            uses,
        });
        version
    }

    /// The stats this classifier counts into.
    pub fn stats(&self) -> &ActiveStatsHandle {
        &self.shared.stats
    }
}

impl<C> fmt::Debug for HotSwapClassifier<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HotSwapClassifier")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl<T: Sync, C: Classifier<T> + Send + Sync> Classifier<T> for HotSwapClassifier<C> {
    async fn classify(&self, item: &T) -> Result<Prediction, ClassifyError> {
        let model = self.current();
        // A panic in the served model fails this record alone (the
        // pipeline dead-letters it); the classifier keeps serving.
        let prediction = match AssertUnwindSafe(model.model.classify(item))
            .catch_unwind()
            .await
        {
            Ok(prediction) => prediction,
            Err(_) => {
                ActiveStatsHandle::add(&self.shared.stats.0.panics, 1);
                tracing::warn!(
                    kind = "panic",
                    stage = "classify",
                    version = model.version,
                    "the served model panicked; the record fails alone"
                );
                return Err(ClassifyError::permanent(format!(
                    "the classifier (model version {}) panicked on this record",
                    model.version
                )));
            }
        };
        if prediction.is_ok() {
            model.uses.fetch_add(1, Ordering::Relaxed);
        }
        prediction
    }
}
