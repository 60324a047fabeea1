//! [`Retrainer`]: trains a new model on base data plus gathered labels and
//! swaps it into a [`HotSwapClassifier`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::ActiveError;
use super::stats::ActiveStatsHandle;
use super::store::DatasetStore;
use super::swap::HotSwapClassifier;
use crate::local::{Example, LocalClassifier, LocalModel, TrainConfig};

/// Builds a model from examples (base data first, then the gathered
/// labels, in the order they were stored). It runs on tokio's blocking
/// pool. An `Err` keeps the current model in service.
pub type TrainFn<C> = Arc<dyn Fn(&[Example]) -> Result<C, String> + Send + Sync>;

/// When to retrain. Both may be set; either one triggers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetrainTrigger {
    /// After this many new labels since the last retraining.
    pub every_labels: Option<u64>,
    /// When this long has passed since the last retraining (or the start)
    /// and at least one new label came in.
    pub interval: Option<Duration>,
}

/// Retrains on base data plus the [`DatasetStore`]'s labels and swaps the
/// result into a [`HotSwapClassifier`].
///
/// The [`ActiveLearner`](super::ActiveLearner) calls it after each round of
/// collected labels; training runs in `spawn_blocking`, so the pipeline
/// keeps classifying with the current model meanwhile, and the new one is
/// swapped in only once fully built.
pub struct Retrainer<C> {
    swap: HotSwapClassifier<C>,
    base: Arc<Vec<Example>>,
    train: TrainFn<C>,
    trigger: RetrainTrigger,
    since: AtomicU64,
    last: Mutex<Instant>,
}

impl<C: Send + Sync + 'static> Retrainer<C> {
    /// Retrains with `train` on `base` plus the gathered labels, swapping
    /// the result into `swap`, when `trigger` says so.
    pub fn new(
        swap: HotSwapClassifier<C>,
        base: Vec<Example>,
        train: TrainFn<C>,
        trigger: RetrainTrigger,
    ) -> Self {
        Retrainer {
            swap,
            base: Arc::new(base),
            train,
            trigger,
            since: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    /// The classifier it swaps models into.
    pub fn classifier(&self) -> &HotSwapClassifier<C> {
        &self.swap
    }

    /// Labels counted since the last retraining.
    pub fn labels_since_retrain(&self) -> u64 {
        self.since.load(Ordering::Relaxed)
    }

    /// Counts `new_labels` and retrains if the trigger is due. Returns the
    /// new version, if one was swapped in.
    pub async fn after_labels(
        &self,
        new_labels: u64,
        store: &DatasetStore,
        stats: &ActiveStatsHandle,
    ) -> Result<Option<u64>, ActiveError> {
        let since = self.since.fetch_add(new_labels, Ordering::Relaxed) + new_labels;
        if since == 0 {
            return Ok(None);
        }
        let by_count = self.trigger.every_labels.is_some_and(|n| since >= n.max(1));
        let by_time = self.trigger.interval.is_some_and(|every| {
            let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
            last.elapsed() >= every
        });
        if !(by_count || by_time) {
            return Ok(None);
        }
        match self.retrain_now(store).await {
            Ok(version) => {
                ActiveStatsHandle::add(&stats.0.retrains, 1);
                Ok(Some(version))
            }
            Err(e) => {
                ActiveStatsHandle::add(&stats.0.retrain_failures, 1);
                if matches!(e, ActiveError::Panic { .. }) {
                    ActiveStatsHandle::add(&stats.0.panics, 1);
                }
                Err(e)
            }
        }
    }

    /// Trains on base data plus everything in `store` now, swaps the model
    /// in, and returns its version. The label count restarts from zero
    /// (also on failure, so a failing trainer is not retried on every
    /// label).
    pub async fn retrain_now(&self, store: &DatasetStore) -> Result<u64, ActiveError> {
        self.since.store(0, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let store = store.clone();
        let base = Arc::clone(&self.base);
        let train = Arc::clone(&self.train);
        let model = tokio::task::spawn_blocking(move || {
            let gathered = store.examples()?;
            let mut all = Vec::with_capacity(base.len() + gathered.len());
            all.extend(base.iter().cloned());
            all.extend(gathered);
            train(&all).map_err(ActiveError::Train)
        })
        .await
        .map_err(|e| {
            if e.is_panic() {
                // The panic's message may quote training text: not kept.
                ActiveError::Panic { stage: "retrain" }
            } else {
                ActiveError::Background("the training task was cancelled".into())
            }
        })??;
        let version = self.swap.swap(model);
        tracing::info!(version, "retrained model swapped in");
        Ok(version)
    }
}

impl Retrainer<LocalClassifier> {
    /// A retrainer of a [`LocalModel`] with `config`.
    ///
    /// ```
    /// use streamsift::active::{HotSwapClassifier, RetrainTrigger, Retrainer};
    /// use streamsift::local::{Example, LocalClassifier, LocalModel, TrainConfig};
    /// let base = vec![
    ///     Example::new("site is down").labeled("problem"),
    ///     Example::new("lovely day").labeled("none"),
    /// ];
    /// let config = TrainConfig::binary("problem");
    /// let first = LocalModel::train(&base, &config).unwrap();
    /// let swap = HotSwapClassifier::new(LocalClassifier::new(first));
    /// let retrainer = Retrainer::local(swap, base, config, RetrainTrigger {
    ///     every_labels: Some(50),
    ///     interval: None,
    /// });
    /// assert_eq!(retrainer.labels_since_retrain(), 0);
    /// ```
    pub fn local(
        swap: HotSwapClassifier<LocalClassifier>,
        base: Vec<Example>,
        config: TrainConfig,
        trigger: RetrainTrigger,
    ) -> Self {
        let train: TrainFn<LocalClassifier> = Arc::new(move |examples: &[Example]| {
            let model = LocalModel::train(examples, &config).map_err(|e| e.to_string())?;
            Ok(LocalClassifier::new(model))
        });
        Retrainer::new(swap, base, train, trigger)
    }
}

impl<C> fmt::Debug for Retrainer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retrainer")
            .field("base_examples", &self.base.len())
            .field("trigger", &self.trigger)
            .field("labels_since_retrain", &self.since.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The retrainer as the learner holds it, whatever its model type.
#[async_trait::async_trait]
pub(crate) trait RetrainHook: Send + Sync + fmt::Debug {
    async fn after_labels(
        &self,
        new_labels: u64,
        store: &DatasetStore,
        stats: &ActiveStatsHandle,
    ) -> Result<Option<u64>, ActiveError>;
}

#[async_trait::async_trait]
impl<C: Send + Sync + 'static> RetrainHook for Retrainer<C> {
    async fn after_labels(
        &self,
        new_labels: u64,
        store: &DatasetStore,
        stats: &ActiveStatsHandle,
    ) -> Result<Option<u64>, ActiveError> {
        Retrainer::after_labels(self, new_labels, store, stats).await
    }
}
