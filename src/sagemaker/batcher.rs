//! The micro-batcher behind `classify` when `max_batch_size` is over 1.
//!
//! A caller queues a copy of its item and waits for its own answer. One task
//! per classifier takes a free call slot (at most `concurrency` calls in
//! flight), then the first waiting item, then whatever else arrives until
//! `linger` after that first item was queued or until the batch is full, and
//! sends the batch on its own task, as one `InvokeEndpoint` call through the
//! same request builder and response parser as `classify_batch`. Each caller
//! is answered with the result for its own item.
//!
//! The task holds the endpoint's settings but not the queue's sender: when
//! the last clone of the classifier is dropped, the queue closes, the task
//! sends what it holds and ends.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::Inner;
use crate::classify::Prediction;
use crate::error::ClassifyError;

type Answer = Result<Prediction, ClassifyError>;

/// Queues items for a micro-batcher. Object-safe, so a classifier holds one
/// for any `T` while only [`start`] needs `T: Clone + Send`.
pub(super) trait Submit<T>: Send + Sync {
    /// Queues a copy of `item` and returns where its answer will arrive, or
    /// `None` when no batcher can run here (no Tokio runtime): the caller
    /// then sends its item alone.
    fn submit(&self, item: &T) -> Option<oneshot::Receiver<Answer>>;
}

/// Makes the micro-batcher of a classifier (without starting its task).
pub(super) type StartBatcher<T> = fn(Arc<Inner<T>>) -> Arc<dyn Submit<T>>;

/// The micro-batcher for `inner`'s endpoint. Its task starts with the first
/// item.
pub(super) fn start<T: Clone + Send + Sync + 'static>(inner: Arc<Inner<T>>) -> Arc<dyn Submit<T>> {
    Arc::new(MicroBatcher {
        inner,
        queue: Mutex::new(None),
    })
}

/// An item waiting in the queue, and where its answer goes.
struct Job<T> {
    item: T,
    queued_at: Instant,
    reply: oneshot::Sender<Answer>,
}

impl<T> Job<T> {
    /// Whether the caller gave up (its future was dropped).
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

struct MicroBatcher<T> {
    inner: Arc<Inner<T>>,
    /// The queue of the running task. Unbounded, yet never longer than the
    /// number of callers waiting: each has exactly one item queued.
    queue: Mutex<Option<mpsc::UnboundedSender<Job<T>>>>,
}

impl<T: Clone + Send + Sync + 'static> Submit<T> for MicroBatcher<T> {
    fn submit(&self, item: &T) -> Option<oneshot::Receiver<Answer>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            item: item.clone(),
            queued_at: Instant::now(),
            reply,
        };
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let job = match &*queue {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Some(answer),
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        // The first item, or the task ended with the runtime it ran on:
        // start a task on this one.
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(run(Arc::clone(&self.inner), rx));
        tx.send(job).ok()?;
        *queue = Some(tx);
        Some(answer)
    }
}

/// The batcher task: until the queue closes, a free call slot, a batch, and
/// the batch sent on a task of its own.
async fn run<T: Send + Sync + 'static>(
    inner: Arc<Inner<T>>,
    mut queue: mpsc::UnboundedReceiver<Job<T>>,
) {
    let calls = Arc::new(Semaphore::new(inner.concurrency.max(1)));
    loop {
        // The slot first: items that arrive while every call is in flight
        // wait in the queue and fill the next batch.
        let Ok(slot) = Arc::clone(&calls).acquire_owned().await else {
            break;
        };
        let Some(batch) = collect(&inner, &mut queue).await else {
            break;
        };
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            send(&inner, batch).await;
            drop(slot);
        });
    }
}

/// The next batch: the first item whose caller still waits, then those that
/// arrive until `linger` after it was queued, up to `max_batch_size`.
/// `None` once the queue is closed and empty.
async fn collect<T>(
    inner: &Inner<T>,
    queue: &mut mpsc::UnboundedReceiver<Job<T>>,
) -> Option<Vec<Job<T>>> {
    let first = loop {
        let job = queue.recv().await?;
        if !job.abandoned() {
            break job;
        }
    };
    let deadline = first.queued_at + inner.linger;
    let mut batch = Vec::with_capacity(inner.max_batch_size);
    batch.push(first);
    while batch.len() < inner.max_batch_size {
        // Items already queued join even when the deadline has passed (the
        // first one waited for a call slot): `biased` polls the queue first.
        let next = tokio::select! {
            biased;
            job = queue.recv() => job,
            () = tokio::time::sleep_until(deadline) => None,
        };
        match next {
            Some(job) if job.abandoned() => {}
            Some(job) => batch.push(job),
            None => break,
        }
    }
    Some(batch)
}

/// Sends `batch` (halving it while its body is too large) and answers every
/// caller still waiting.
async fn send<T: Sync + 'static>(inner: &Inner<T>, mut batch: Vec<Job<T>>) {
    batch.retain(|job| !job.abandoned());
    if batch.is_empty() {
        return;
    }
    let answers = {
        let items: Vec<&T> = batch.iter().map(|job| &job.item).collect();
        inner.classify_group(&items, true).await
    };
    for (job, answer) in batch.into_iter().zip(answers) {
        // A caller that gave up meanwhile no longer listens.
        let _ = job.reply.send(answer);
    }
}
