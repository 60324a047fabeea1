//! One micro-batcher for every backend that groups concurrent calls: the
//! SNS router (PublishBatch) and the SageMaker classifier (InvokeEndpoint).
//!
//! A caller [`submit`](Batcher::submit)s one item and waits for its own
//! answer. The rule, the same for every backend:
//!
//! - **Bounded queue.** At most [`BatchConfig::queue`] items wait; a caller
//!   that finds the queue full waits for room (backpressure), it is not
//!   refused.
//! - **The permit first.** The batcher's task takes a free call slot (at
//!   most [`BatchConfig::max_concurrent`] batches in flight) *before* it
//!   gathers a batch, so items that arrive while every slot is busy wait in
//!   the queue and fill the next batch, instead of a half-empty batch
//!   waiting for a slot.
//! - **Flush on size or linger.** A batch is sent when it holds
//!   [`BatchConfig::max_items`] items, when the next item would take it
//!   over [`BatchConfig::max_bytes`] (that item starts the next batch), or
//!   [`BatchConfig::linger`] after its first item was queued, whichever
//!   comes first. Items already queued join even when the linger has passed
//!   (the first one waited for a slot).
//! - **Abandoned items are left out.** A caller that stops waiting (its
//!   future dropped) before its batch is sent is not sent, and a backend
//!   that resends within a batch stops resending its item
//!   ([`Flush::flush`]'s `waiting`).
//! - **A stopped batcher answers every waiter.** The task runs on the Tokio
//!   runtime of the first caller; if that runtime shuts down, every caller
//!   still waiting gets [`Stopped`], and the next `submit` starts a new task
//!   on its own runtime.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

/// How many items may wait for a batcher, unless a backend says otherwise.
pub(crate) const DEFAULT_QUEUE: usize = 1024;

/// What a batcher sends: one call for a batch, one answer per item.
pub(crate) trait Flush: Send + Sync + 'static {
    /// What a caller queues.
    type Item: Send + 'static;
    /// What a caller gets back.
    type Output: Send + 'static;

    /// Sends `batch` and returns one answer per item, in order.
    /// `waiting(i)` says whether the caller of item `i` still waits: a
    /// backend that resends within one flush stops resending an item whose
    /// caller gave up, so the caller's own deadline bounds it.
    fn flush(
        &self,
        batch: Vec<Self::Item>,
        waiting: &Waiting<'_>,
    ) -> impl Future<Output = Vec<Self::Output>> + Send;

    /// The item's weight against [`BatchConfig::max_bytes`] (default 0).
    fn size(&self, _item: &Self::Item) -> usize {
        0
    }
}

/// Whether the caller of the batch's item `i` still waits for its answer.
pub(crate) type Waiting<'a> = dyn Fn(usize) -> bool + Send + Sync + 'a;

/// How a batcher groups items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchConfig {
    /// The most items per batch (at least 1).
    pub(crate) max_items: usize,
    /// The most bytes per batch, by [`Flush::size`]; a single item over it
    /// is still sent, alone.
    pub(crate) max_bytes: usize,
    /// How long a batch waits for more items after its first was queued.
    pub(crate) linger: Duration,
    /// The most batches in flight (at least 1).
    pub(crate) max_concurrent: usize,
    /// The most items waiting in the queue (at least 1).
    pub(crate) queue: usize,
}

/// The batcher stopped before answering: the Tokio runtime its task ran on
/// shut down, or there is no runtime to start one on. The item may or may
/// not have been sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stopped;

/// An item waiting in the queue, and where its answer goes.
struct Job<I, O> {
    item: I,
    queued_at: Instant,
    reply: oneshot::Sender<O>,
}

/// The sending side of a batcher's queue.
type Queue<F> = mpsc::Sender<Job<<F as Flush>::Item, <F as Flush>::Output>>;

/// A micro-batcher: see the [module docs](self).
pub(crate) struct Batcher<F: Flush> {
    flush: Arc<F>,
    config: BatchConfig,
    /// The queue of the running task, if one was started.
    queue: Mutex<Option<Queue<F>>>,
}

impl<F: Flush> Batcher<F> {
    /// A batcher that sends through `flush`; its task starts with the first
    /// item.
    pub(crate) fn new(flush: F, config: BatchConfig) -> Self {
        Batcher {
            flush: Arc::new(flush),
            config,
            queue: Mutex::new(None),
        }
    }

    /// The queue of a running task, starting one on the current runtime if
    /// there is none or the last one stopped.
    fn sender(&self) -> Result<Queue<F>, Stopped> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = queue.as_ref().filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Stopped)?;
        let (tx, rx) = mpsc::channel(self.config.queue.max(1));
        runtime.spawn(run(Arc::clone(&self.flush), self.config, rx));
        *queue = Some(tx.clone());
        Ok(tx)
    }

    /// Queues `item` (waiting for room when the queue is full) and waits for
    /// its answer.
    pub(crate) async fn submit(&self, item: F::Item) -> Result<F::Output, Stopped> {
        let (reply, answer) = oneshot::channel();
        let mut job = Job {
            item,
            queued_at: Instant::now(),
            reply,
        };
        // Twice at most: a queue whose task stopped with its runtime is
        // replaced by a new task on this one.
        for _ in 0..2 {
            match self.sender()?.send(job).await {
                Ok(()) => return answer.await.map_err(|_| Stopped),
                Err(mpsc::error::SendError(back)) => {
                    job = back;
                    job.queued_at = Instant::now();
                }
            }
        }
        Err(Stopped)
    }
}

/// The batcher task: until the queue closes, a free call slot, a batch, and
/// the batch sent on a task of its own.
async fn run<F: Flush>(
    flush: Arc<F>,
    config: BatchConfig,
    mut queue: mpsc::Receiver<Job<F::Item, F::Output>>,
) {
    let slots = Arc::new(Semaphore::new(config.max_concurrent.max(1)));
    let mut carry = None;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let Some(batch) = collect(&*flush, &config, &mut queue, &mut carry).await else {
            break;
        };
        let flush = Arc::clone(&flush);
        tokio::spawn(async move {
            send(&*flush, batch).await;
            drop(slot);
        });
    }
}

/// The next batch: the first item whose caller still waits (or the one
/// carried over), then those that arrive until `linger` after it was
/// queued, up to the size limits. `None` once the queue is closed and
/// empty.
async fn collect<F: Flush>(
    flush: &F,
    config: &BatchConfig,
    queue: &mut mpsc::Receiver<Job<F::Item, F::Output>>,
    carry: &mut Option<Job<F::Item, F::Output>>,
) -> Option<Vec<Job<F::Item, F::Output>>> {
    let first = match carry.take() {
        Some(job) => job,
        None => loop {
            let job = queue.recv().await?;
            if !job.reply.is_closed() {
                break job;
            }
        },
    };
    let deadline = first.queued_at + config.linger;
    let max_items = config.max_items.max(1);
    let mut bytes = flush.size(&first.item);
    let mut batch = Vec::with_capacity(max_items);
    batch.push(first);
    while batch.len() < max_items {
        // `biased`: items already queued join even past the deadline.
        let next = tokio::select! {
            biased;
            job = queue.recv() => job,
            () = tokio::time::sleep_until(deadline) => None,
        };
        let Some(job) = next else { break };
        if job.reply.is_closed() {
            continue;
        }
        let size = flush.size(&job.item);
        if bytes + size > config.max_bytes {
            *carry = Some(job);
            break;
        }
        bytes += size;
        batch.push(job);
    }
    Some(batch)
}

/// Sends the items of `batch` whose callers still wait, and answers them.
async fn send<F: Flush>(flush: &F, batch: Vec<Job<F::Item, F::Output>>) {
    let (items, replies): (Vec<F::Item>, Vec<oneshot::Sender<F::Output>>) = batch
        .into_iter()
        .filter(|job| !job.reply.is_closed())
        .map(|job| (job.item, job.reply))
        .unzip();
    if items.is_empty() {
        return;
    }
    let waiting = |i: usize| replies.get(i).is_some_and(|r| !r.is_closed());
    let answers = flush.flush(items, &waiting).await;
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A caller that gave up meanwhile no longer listens.
        let _ = reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::join_all;

    use super::*;

    /// Answers each item with itself times ten, after `delay`, and records
    /// every batch it was given.
    struct Echo {
        delay: Duration,
        batches: Mutex<Vec<Vec<u32>>>,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl Echo {
        fn new(delay: Duration) -> Self {
            Echo {
                delay,
                batches: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
                most_in_flight: AtomicUsize::new(0),
            }
        }
    }

    impl Flush for Arc<Echo> {
        type Item = u32;
        type Output = u32;
        async fn flush(&self, batch: Vec<u32>, _waiting: &Waiting<'_>) -> Vec<u32> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            self.batches.lock().unwrap().push(batch.clone());
            if batch.iter().any(|n| *n < 100) {
                tokio::time::sleep(self.delay).await;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            batch.into_iter().map(|n| n * 10).collect()
        }
        fn size(&self, item: &u32) -> usize {
            *item as usize
        }
    }

    fn config() -> BatchConfig {
        BatchConfig {
            max_items: 4,
            max_bytes: 1000,
            linger: Duration::from_millis(50),
            max_concurrent: 1,
            queue: 8,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once_and_a_lone_item_after_the_linger() {
        let echo = Arc::new(Echo::new(Duration::ZERO));
        let batcher = Batcher::new(Arc::clone(&echo), config());
        let start = Instant::now();
        let answers = join_all((1..=4).map(|n| batcher.submit(n))).await;
        assert_eq!(answers, [Ok(10), Ok(20), Ok(30), Ok(40)]);
        assert_eq!(start.elapsed(), Duration::ZERO, "full: no linger");

        let start = Instant::now();
        assert_eq!(batcher.submit(5).await, Ok(50));
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(50),
            "alone: the linger"
        );
        assert_eq!(*echo.batches.lock().unwrap(), [vec![1, 2, 3, 4], vec![5]]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_limit_starts_the_next_batch() {
        let echo = Arc::new(Echo::new(Duration::ZERO));
        let batcher = Batcher::new(
            Arc::clone(&echo),
            BatchConfig {
                max_bytes: 10,
                ..config()
            },
        );
        let answers = join_all([4, 5, 3, 2].map(|n| batcher.submit(n))).await;
        assert_eq!(answers, [Ok(40), Ok(50), Ok(30), Ok(20)]);
        assert_eq!(*echo.batches.lock().unwrap(), [vec![4, 5], vec![3, 2]]);
    }

    #[tokio::test(start_paused = true)]
    async fn items_that_arrive_while_the_slots_are_busy_fill_the_next_batch() {
        let echo = Arc::new(Echo::new(Duration::from_millis(100)));
        let batcher = Arc::new(Batcher::new(Arc::clone(&echo), config()));
        let first = tokio::spawn({
            let batcher = Arc::clone(&batcher);
            async move { batcher.submit(1).await }
        });
        // The first batch (one item) is in flight from 50 ms to 150 ms.
        tokio::time::sleep(Duration::from_millis(60)).await;
        let rest = join_all((2..=4).map(|n| batcher.submit(n)));
        assert_eq!(rest.await, [Ok(20), Ok(30), Ok(40)]);
        assert_eq!(first.await.unwrap(), Ok(10));
        assert_eq!(*echo.batches.lock().unwrap(), [vec![1], vec![2, 3, 4]]);
        assert_eq!(echo.most_in_flight.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_is_bounded() {
        let echo = Arc::new(Echo::new(Duration::from_secs(1)));
        let batcher = Arc::new(Batcher::new(
            Arc::clone(&echo),
            BatchConfig {
                max_items: 1,
                queue: 2,
                ..config()
            },
        ));
        let mut waiting = Vec::new();
        for n in 0..6 {
            let batcher = Arc::clone(&batcher);
            waiting.push(tokio::spawn(async move { batcher.submit(n).await }));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        // One in flight, one taken by the task waiting for a slot, two in
        // the queue; the other two callers wait for room.
        let queued = batcher
            .queue
            .lock()
            .unwrap()
            .as_ref()
            .map(|tx| tx.max_capacity() - tx.capacity());
        assert_eq!(queued, Some(2));
        for (n, answer) in join_all(waiting).await.into_iter().enumerate() {
            assert_eq!(answer.unwrap(), Ok(n as u32 * 10));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_items_are_left_out() {
        let echo = Arc::new(Echo::new(Duration::ZERO));
        let batcher = Batcher::new(Arc::clone(&echo), config());
        let mut gone = Box::pin(batcher.submit(7));
        let kept = batcher.submit(8);
        // Queue the first item, then drop its caller.
        assert!(futures::poll!(gone.as_mut()).is_pending());
        drop(gone);
        assert_eq!(kept.await, Ok(80));
        assert_eq!(*echo.batches.lock().unwrap(), [vec![8]]);
    }

    #[test]
    fn a_closed_runtime_answers_every_waiter_and_the_next_call_starts_anew() {
        // Items under 100 take an hour; the others are answered at once.
        let echo = Arc::new(Echo::new(Duration::from_secs(3600)));
        let batcher = Arc::new(Batcher::new(
            Arc::clone(&echo),
            BatchConfig {
                max_items: 2,
                ..config()
            },
        ));
        // The batcher's task runs on `first`; its callers wait on `second`.
        let first = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        first
            .block_on(async { batcher.sender().map(drop) })
            .unwrap();
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        second.block_on(async {
            // Two in flight (an hour long), one queued behind them.
            let waiters: Vec<_> = (1..=3)
                .map(|n| {
                    let batcher = Arc::clone(&batcher);
                    tokio::spawn(async move { batcher.submit(n).await })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(*echo.batches.lock().unwrap(), [vec![1, 2]]);
            first.shutdown_background();
            for waiter in waiters {
                assert_eq!(waiter.await.unwrap(), Err(Stopped));
            }
            // The next call starts a new task, here.
            assert_eq!(batcher.submit(100).await, Ok(1000));
        });
        // No runtime at all: Stopped, not a hang.
        let lone = Batcher::new(Arc::clone(&echo), config());
        assert_eq!(futures::executor::block_on(lone.submit(100)), Err(Stopped));
    }
}
