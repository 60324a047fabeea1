//! [`Digest`]: at most N notifications per route per window; the rest are
//! folded into one digest message sent through the same router.
//!
//! Per route, the first `max_per_window` deliveries of a window go to the
//! inner router at once. Later ones in the same window are *folded*: their
//! [`route`](Router::route) call waits, and when the window ends one
//! digest item, built by your closure from a [`DigestBatch`], is delivered
//! through the same inner router on the same route. So a route sends at
//! most `max_per_window + 1` messages per window.
//!
//! ```
//! use std::time::Duration;
//! use streamsift::fakes::RecordingRouter;
//! use streamsift::router::digest::{Digest, DigestBatch};
//!
//! let slack: RecordingRouter<String> = RecordingRouter::new();
//! let router = Digest::new(slack, 3, Duration::from_secs(5), |batch: &DigestBatch<'_, String>| {
//!     let mut text = format!("and {} more problem reports:", batch.total());
//!     for entry in batch.entries {
//!         text.push_str("\n- ");
//!         text.extend(entry.item.chars().take(80));
//!     }
//!     if batch.omitted > 0 {
//!         text.push_str(&format!("\n(and {} not listed)", batch.omitted));
//!     }
//!     text
//! });
//! ```
//!
//! # When a folded record is done
//!
//! A folded record counts as done only when its digest is **accepted**:
//! its `route` future resolves with the digest's receipt (not skipped, the
//! digest's `message_id`) once the inner router accepts the digest. If the
//! digest send fails, every record in it fails with a *retryable*
//! [`RouteError`] naming the digest failure, so checkpoints never pass a
//! record whose notification was not sent. When the pipeline retries such
//! a record, it is folded again (without taking one of the window's direct
//! slots) into the current window's digest.
//!
//! The digest is sent by one of the waiting `route` calls (the first to
//! get there after the window ends); if that call is dropped, the next one
//! sends it. A record whose `route` future is dropped (a call timeout)
//! leaves the digest; its retry folds it in again.
//!
//! # Pipeline settings
//!
//! A folded record's `route` call lasts until the end of its window plus
//! the digest's send time. So:
//!
//! - **`call_timeout` and `record_timeout` must exceed the window** (plus
//!   the inner router's send time). The pipeline checks this at start-up
//!   ([`Router::max_hold`] is the window) and refuses to run with
//!   [`ConfigError::TimeoutWithinHold`](crate::ConfigError::TimeoutWithinHold)
//!   otherwise. A wrapper that does not pass `max_hold` on (a closure
//!   around a `Digest`, say) escapes the check, and then each folded call
//!   times out (retryable), leaves the digest and folds in again on retry,
//!   until the record runs out of attempts or record time and is
//!   dead-lettered as `timeout`; the digest never lists it. Both are
//!   tested (`tests/hygiene.rs`, `digest_window_longer_than_call_timeout`).
//! - **`max_in_flight`**: every folded record holds a pipeline slot until
//!   its digest is accepted. A burst larger than `max_in_flight` per window
//!   is not lost: the pipeline stops reading until the digest frees the
//!   slots, so the burst spreads over several windows (and digests).
//! - **`max_unacked`**: a folded record holds back its shard's checkpoint
//!   until the digest is accepted; `max_unacked` bounds how far the other
//!   records run ahead meanwhile.
//!
//! # Size
//!
//! Each folded record keeps a clone of its item until its digest is
//! accepted (bounded by `max_in_flight`). A digest lists at most
//! [`max_entries`](Digest::max_entries) entries (default 20), in order of
//! arrival; the rest are counted in [`DigestBatch::omitted`] and done when
//! the digest is accepted, like the listed ones. Your closure decides how
//! much of each item to show: truncate text there to keep the message
//! under the receiver's size limit (Slack: 40,000 characters).
//!
//! # The digest delivery
//!
//! The digest goes to the inner router as a [`Delivery`] with the built
//! item, the same route, a prediction of that route alone
//! ([`Prediction::label`]), and a synthetic [`Record`] on shard
//! [`DIGEST_SHARD`] whose id is `digest-` plus a hash of the folded record
//! ids, so the retry of the same digest has the same id (for idempotency
//! keys) and its payload is empty.
//!
//! Put [`Dedup`](super::dedup::Dedup) *outside* `Digest`
//! (`Dedup::new(Digest::new(..), store)`) so that duplicates do not count
//! towards N.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::dedup::DedupKey;
use super::{Delivery, Receipt, Router};
use crate::classify::{Label, Prediction};
use crate::error::RouteError;
use crate::record::{Record, Sequence, ShardId};

/// The shard of the synthetic record a digest is delivered with.
pub const DIGEST_SHARD: &str = "digest";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One folded delivery, as the digest closure sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DigestEntry<T> {
    /// The folded record's id.
    pub record_id: String,
    /// What the classifier said about it.
    pub prediction: Prediction,
    /// A clone of its item.
    pub item: T,
}

/// What one digest folds, for the closure that builds its item.
#[derive(Debug)]
#[non_exhaustive]
pub struct DigestBatch<'a, T> {
    /// The route.
    pub route: &'a Label,
    /// The folded deliveries listed, at most
    /// [`max_entries`](Digest::max_entries), in order of arrival.
    pub entries: &'a [DigestEntry<T>],
    /// Folded deliveries not listed (past `max_entries`); they are done
    /// when the digest is accepted, like the listed ones.
    pub omitted: usize,
}

impl<T> DigestBatch<'_, T> {
    /// Every delivery this digest stands for: listed plus omitted.
    pub fn total(&self) -> usize {
        self.entries.len() + self.omitted
    }
}

/// How a sent digest ended, shared with every record in it.
#[derive(Clone, Debug)]
enum Outcome {
    Accepted(Option<String>),
    Failed(String),
}

struct Member<T> {
    ticket: u64,
    entry: DigestEntry<T>,
}

struct Batch<T> {
    due: Instant,
    members: Mutex<Vec<Member<T>>>,
    send: tokio::sync::Mutex<()>,
    outcome: watch::Sender<Option<Outcome>>,
}

struct RouteState<T> {
    window: u64,
    window_end: Instant,
    direct: usize,
    open: Option<Arc<Batch<T>>>,
    /// Records of a failed digest (by id, with the window it failed in),
    /// folded again on retry.
    carry: HashMap<String, u64>,
}

struct Shared<T> {
    routes: HashMap<Label, RouteState<T>>,
    next_ticket: u64,
}

/// At most N notifications per route per window, the rest folded into one
/// digest; see the [module docs](self).
pub struct Digest<R, T, F> {
    inner: R,
    max_per_window: usize,
    window: Duration,
    max_entries: usize,
    build: F,
    shared: Mutex<Shared<T>>,
}

impl<R, T, F> Digest<R, T, F>
where
    T: Clone + Send + Sync,
    F: Fn(&DigestBatch<'_, T>) -> T + Send + Sync,
{
    /// Sends at most `max_per_window` deliveries per route per `window`
    /// through `inner` directly, and folds the rest into one digest per
    /// route and window, built by `build`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamsift::fakes::RecordingRouter;
    /// use streamsift::router::digest::{Digest, DigestBatch};
    /// let inner: RecordingRouter<String> = RecordingRouter::new();
    /// let router = Digest::new(inner, 3, Duration::from_secs(5), |b: &DigestBatch<'_, String>| {
    ///     format!("and {} more problem reports", b.total())
    /// })
    /// .max_entries(10);
    /// assert_eq!(router.window(), Duration::from_secs(5));
    /// ```
    pub fn new(inner: R, max_per_window: usize, window: Duration, build: F) -> Self {
        Digest {
            inner,
            max_per_window,
            window,
            max_entries: 20,
            build,
            shared: Mutex::new(Shared {
                routes: HashMap::new(),
                next_ticket: 0,
            }),
        }
    }
}

impl<R, T, F> Digest<R, T, F> {
    /// Lists at most `n` entries in a digest (default 20); the rest are
    /// counted in [`DigestBatch::omitted`].
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// The window: set the pipeline's `call_timeout` and `record_timeout`
    /// above it (see the [module docs](self#pipeline-settings)).
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The wrapped router.
    pub fn inner(&self) -> &R {
        &self.inner
    }
}

impl<R: fmt::Debug, T, F> fmt::Debug for Digest<R, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digest")
            .field("inner", &self.inner)
            .field("max_per_window", &self.max_per_window)
            .field("window", &self.window)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

/// A folded record's place in a batch; dropping it before the outcome is
/// known takes the record out of the digest.
struct Seat<T> {
    batch: Arc<Batch<T>>,
    ticket: u64,
}

impl<T> Drop for Seat<T> {
    fn drop(&mut self) {
        if self.batch.outcome.borrow().is_none() {
            lock(&self.batch.members).retain(|m| m.ticket != self.ticket);
        }
    }
}

impl<R, T, F> Digest<R, T, F>
where
    T: Clone + Send + Sync,
    R: Router<T>,
    F: Fn(&DigestBatch<'_, T>) -> T + Send + Sync,
{
    /// Waits for the batch's digest, sending it if no one else is.
    async fn wait_for_digest(&self, route: &Label, seat: &Seat<T>) -> Result<Receipt, RouteError> {
        let batch = &seat.batch;
        loop {
            if let Some(outcome) = batch.outcome.borrow().clone() {
                return match outcome {
                    Outcome::Accepted(message_id) => Ok(Receipt {
                        route: route.clone(),
                        message_id,
                        skipped: false,
                    }),
                    Outcome::Failed(reason) => Err(RouteError::unavailable(reason)),
                };
            }
            tokio::time::sleep_until(batch.due).await;
            let _sending = batch.send.lock().await;
            if batch.outcome.borrow().is_some() {
                continue;
            }
            self.send_digest(route, batch).await;
        }
    }

    async fn send_digest(&self, route: &Label, batch: &Arc<Batch<T>>) {
        {
            // No more records join this batch.
            let mut shared = lock(&self.shared);
            if let Some(state) = shared.routes.get_mut(route)
                && state.open.as_ref().is_some_and(|b| Arc::ptr_eq(b, batch))
            {
                state.open = None;
            }
        }
        let (entries, ids, total) = {
            let members = lock(&batch.members);
            let ids: Vec<String> = members.iter().map(|m| m.entry.record_id.clone()).collect();
            let entries: Vec<DigestEntry<T>> = members
                .iter()
                .take(self.max_entries)
                .map(|m| m.entry.clone())
                .collect();
            (entries, ids, members.len())
        };
        let listing = DigestBatch {
            route,
            entries: &entries,
            omitted: total - entries.len(),
        };
        let item = (self.build)(&listing);
        let id_parts: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        let key = DedupKey::of(&id_parts);
        let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let mut record = Record::new(
            ShardId::new(DIGEST_SHARD),
            Sequence::new("0"),
            route.as_str(),
            bytes::Bytes::new(),
        );
        record.id = format!("digest-{hex}");
        let prediction = Prediction::label(route.clone());
        let delivery = Delivery {
            item: &item,
            record: &record,
            prediction: &prediction,
            route,
        };
        let outcome = match self.inner.route(&delivery).await {
            Ok(receipt) => Outcome::Accepted(receipt.message_id),
            Err(e) => {
                tracing::warn!(
                    router = "digest",
                    route = %route,
                    records = total,
                    kind = if e.is_retryable() { "retryable" } else { "permanent" },
                    "digest send failed; its records fail retryably and fold again on retry"
                );
                let mut shared = lock(&self.shared);
                if let Some(state) = shared.routes.get_mut(route) {
                    let window = state.window;
                    state
                        .carry
                        .extend(ids.iter().map(|id| (id.clone(), window)));
                }
                Outcome::Failed(format!(
                    "the digest of {total} records on route '{route}' failed, so this record's \
                     notification was not sent; it is retried in the next digest ({e})"
                ))
            }
        };
        batch.outcome.send_replace(Some(outcome));
    }
}

impl<R, T, F> Router<T> for Digest<R, T, F>
where
    T: Clone + Send + Sync,
    R: Router<T>,
    F: Fn(&DigestBatch<'_, T>) -> T + Send + Sync,
{
    async fn route(&self, delivery: &Delivery<'_, T>) -> Result<Receipt, RouteError> {
        let now = Instant::now();
        let seat = {
            let mut shared = lock(&self.shared);
            let ticket = shared.next_ticket;
            shared.next_ticket += 1;
            let window = self.window;
            let state = shared
                .routes
                .entry(delivery.route.clone())
                .or_insert_with(|| RouteState {
                    window: 0,
                    window_end: now + window,
                    direct: 0,
                    open: None,
                    carry: HashMap::new(),
                });
            if now >= state.window_end {
                state.window += 1;
                state.window_end = now + window;
                state.direct = 0;
                state.open = None;
                let current = state.window;
                state.carry.retain(|_, failed_in| *failed_in + 2 > current);
            }
            let carried = state.carry.remove(&delivery.record.id).is_some();
            if !carried && state.direct < self.max_per_window {
                state.direct += 1;
                Err(state.window)
            } else {
                let batch = match &state.open {
                    Some(batch) => Arc::clone(batch),
                    None => {
                        let batch = Arc::new(Batch {
                            due: state.window_end,
                            members: Mutex::new(Vec::new()),
                            send: tokio::sync::Mutex::new(()),
                            outcome: watch::channel(None).0,
                        });
                        state.open = Some(Arc::clone(&batch));
                        batch
                    }
                };
                lock(&batch.members).push(Member {
                    ticket,
                    entry: DigestEntry {
                        record_id: delivery.record.id.clone(),
                        prediction: delivery.prediction.clone(),
                        item: delivery.item.clone(),
                    },
                });
                Ok(Seat { batch, ticket })
            }
        };
        match seat {
            Ok(seat) => self.wait_for_digest(delivery.route, &seat).await,
            Err(window) => {
                let result = self.inner.route(delivery).await;
                if result.is_err() {
                    // A failed direct send gives its slot back.
                    let mut shared = lock(&self.shared);
                    if let Some(state) = shared.routes.get_mut(delivery.route)
                        && state.window == window
                        && state.direct > 0
                    {
                        state.direct -= 1;
                    }
                }
                result
            }
        }
    }

    fn handles_route(&self, route: &Label) -> Option<bool> {
        self.inner.handles_route(route)
    }

    /// The window, plus what the inner router holds: a folded record's
    /// call lasts until its digest is sent.
    fn max_hold(&self) -> Option<Duration> {
        Some(
            self.window
                .saturating_add(self.inner.max_hold().unwrap_or_default()),
        )
    }
}
