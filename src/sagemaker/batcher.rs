//! The micro-batcher behind `classify` when `max_batch_size` is over 1: the
//! shared one ([`crate::aws::batcher`]), whose rules are the crate's for
//! every micro-batcher, sending each batch as one `InvokeEndpoint` call
//! through the same request builder and response parser as
//! `classify_batch`.
//!
//! The batcher holds the endpoint's settings; only the classifier (and its
//! clones) hold the batcher: when the last one is dropped, the queue closes,
//! and the task sends what it holds and ends.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::Inner;
use crate::aws::batcher::{BatchConfig, Batcher, DEFAULT_QUEUE, Flush, Stopped, Waiting};
use crate::classify::Prediction;
use crate::error::ClassifyError;

type Answer = Result<Prediction, ClassifyError>;

/// Queues items for a micro-batcher. Object-safe, so a classifier holds one
/// for any `T` while only [`start`] needs `T: Clone + Send`.
pub(super) trait Submit<T>: Send + Sync {
    /// Queues a copy of `item` and waits for its answer, or [`Stopped`]
    /// when the batcher's runtime shut down before answering.
    fn submit<'a>(&'a self, item: &T) -> BoxFuture<'a, Result<Answer, Stopped>>;
}

/// Makes the micro-batcher of a classifier (without starting its task).
pub(super) type StartBatcher<T> = fn(Arc<Inner<T>>) -> Arc<dyn Submit<T>>;

/// The micro-batcher for `inner`'s endpoint. Its task starts with the first
/// item.
pub(super) fn start<T: Clone + Send + Sync + 'static>(inner: Arc<Inner<T>>) -> Arc<dyn Submit<T>> {
    let config = BatchConfig {
        max_items: inner.max_batch_size,
        // Bodies over `max_payload_bytes` are halved by `classify_group`.
        max_bytes: usize::MAX,
        linger: inner.linger,
        max_concurrent: inner.concurrency,
        queue: DEFAULT_QUEUE,
    };
    Arc::new(Batcher::new(Endpoint(inner), config))
}

/// One `InvokeEndpoint` call per batch.
struct Endpoint<T>(Arc<Inner<T>>);

impl<T: Send + Sync + 'static> Flush for Endpoint<T> {
    type Item = T;
    type Output = Answer;

    async fn flush(&self, batch: Vec<T>, _waiting: &Waiting<'_>) -> Vec<Answer> {
        let items: Vec<&T> = batch.iter().collect();
        self.0.classify_group(&items, true).await
    }
}

impl<T: Clone + Send + Sync + 'static> Submit<T> for Batcher<Endpoint<T>> {
    fn submit<'a>(&'a self, item: &T) -> BoxFuture<'a, Result<Answer, Stopped>> {
        Box::pin(Batcher::submit(self, item.clone()))
    }
}
