//! [`RecordingRouter`]: keeps every delivery for assertions.

use std::sync::{Arc, Mutex};

use crate::classify::{Label, Prediction};
use crate::error::RouteError;
use crate::router::{Delivery, Receipt, Router};

/// One delivery a [`RecordingRouter`] accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered<T> {
    /// The record's id.
    pub record_id: String,
    /// The route.
    pub route: Label,
    /// The item.
    pub item: T,
    /// The prediction.
    pub prediction: Prediction,
}

/// A router that accepts everything and remembers it. Clones share the
/// same log, so keep one clone and hand the other to the pipeline.
///
/// ```
/// use streamsift::fakes::RecordingRouter;
/// let router: RecordingRouter<String> = RecordingRouter::new();
/// let for_pipeline = router.clone();
/// assert!(router.deliveries().is_empty());
/// # drop(for_pipeline);
/// ```
#[derive(Debug)]
pub struct RecordingRouter<T> {
    log: Arc<Mutex<Vec<Delivered<T>>>>,
}

impl<T> Clone for RecordingRouter<T> {
    fn clone(&self) -> Self {
        RecordingRouter {
            log: Arc::clone(&self.log),
        }
    }
}

impl<T> Default for RecordingRouter<T> {
    fn default() -> Self {
        RecordingRouter {
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T: Clone> RecordingRouter<T> {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every delivery so far, in order of acceptance.
    pub fn deliveries(&self) -> Vec<Delivered<T>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many deliveries so far.
    pub fn len(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether there were none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every delivery.
    pub fn clear(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl<T: Clone + Send + Sync> Router<T> for RecordingRouter<T> {
    async fn route(&self, d: &Delivery<'_, T>) -> Result<Receipt, RouteError> {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let n = log.len();
        log.push(Delivered {
            record_id: d.record.id.clone(),
            route: d.route.clone(),
            item: d.item.clone(),
            prediction: d.prediction.clone(),
        });
        Ok(Receipt::new(d.route.clone()).with_message_id(format!("recorded-{n}")))
    }

    /// It records every route, `"review"` included.
    fn handles_route(&self, _route: &crate::Label) -> Option<bool> {
        Some(true)
    }
}
