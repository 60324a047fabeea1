//! The streaming driver: the run loop, written as a state machine.
//!
//! ```text
//!            ┌──────────── source error / permanent commit error /
//!            │             dead-letter sink down / Shutdown::cancel
//!  Running ──┴──► begin_stop(cause) ──► Stopping ──► (in flight drained,
//!     │                                    ▲          final commits done
//!     └── source ended, all dispatched ────┘          or given up) ──► Done
//! ```
//!
//! - **Running**: read a batch only when there is room (fewer than
//!   `max_in_flight` in flight and `max_unacked` uncommitted, nothing
//!   waiting), dispatch its records, finish them as they complete, commit
//!   when due.
//! - **Stopping**: nothing more is read or dispatched; what is in flight
//!   finishes; commits go on until every done prefix is committed, unless
//!   commits are what failed for good: after that nothing commits again.
//!
//! Every stop goes through one function, [`Run::begin_stop`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures::FutureExt as _;
use futures::future::Either;
use futures::stream::{FuturesUnordered, StreamExt as _};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::builder::{Config, MaybeLabeler, Pipeline};
use super::report::{Meter, PipelineError, RunReport, StopReason};
use super::retry::Backoff;
use super::stages::{Done, OnExhausted, Outcome, Stages};
use super::track::Tracker;
use crate::classify::{BoxFuture, Classifier};
use crate::dead_letter::DeadLetterSink;
use crate::decode::Decoder;
use crate::error::{DeadLetterError, SourceError};
use crate::record::{Batch, Checkpoint, Record, ShardId};
use crate::router::Router;
use crate::source::{Ack, Source};

/// A handle that asks a running pipeline to stop: it stops reading, drains
/// what is in flight, commits, and returns its report.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A new, untriggered handle.
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Asks the pipeline to stop. Idempotent.
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }

    /// Whether stop was asked.
    pub fn is_cancelled(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once stop is asked.
    pub async fn cancelled(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

impl<S, D, C, R, T, L, K> Pipeline<S, D, C, R, T, L, K> {
    /// Runs until the source ends or [`Shutdown::cancel`] is called, then
    /// drains in-flight records, commits, and returns the report.
    ///
    /// The bounds are on the method, not the impl, so a missing part is
    /// named by the compiler ("`()` is not a Classifier of `T`", "no
    /// dead-letter sink"); see [`Pipeline`]'s docs. The configuration is
    /// checked before anything is read: [`PipelineError::Config`].
    pub async fn run(self) -> Result<RunReport, PipelineError>
    where
        S: Source,
        T: Send + Sync,
        D: Decoder<T>,
        C: Classifier<T>,
        R: Router<T>,
        L: MaybeLabeler<T>,
        K: DeadLetterSink + 'static,
    {
        let (source, stages, shutdown) = self.into_parts()?;
        // Read once: the checkpoint path pays one branch per record.
        let mode = source.acks();
        let run = Run {
            per_record: mode.is_per_record(),
            ordered: mode.is_ordered(),
            ack_buf: Vec::new(),
            ack_linger_at: None,
            ready: VecDeque::new(),
            parked: 0,
            source: &source,
            stages: &stages,
            config: &stages.config,
            state: State::Running,
            error: None,
            commits_allowed: true,
            tracker: Tracker::default(),
            meter: Meter::new(),
            since_commit: 0,
            commit_due: false,
            started: Instant::now(),
            committed: BTreeMap::new(),
            pending: VecDeque::new(),
            ended_batches: Vec::new(),
            source_done: false,
            fetch: None,
            commit: None,
            read_backoff: Backoff::new(stages.config.seed, u64::MAX),
            read_retry_at: None,
            commit_backoff: Backoff::new(stages.config.seed, u64::MAX - 1),
            commit_retry_at: None,
        };
        run.drive(&shutdown).await
    }
}

/// What a commit call in progress sends.
enum Flush {
    Checkpoints(Vec<Checkpoint>),
    Acks(Vec<Ack>),
}

/// A checkpoint commit (or an ack call) in progress.
type CommitFuture<'a> = BoxFuture<'a, Result<(), SourceError>>;
/// The records being processed.
type Inflight<'a> = FuturesUnordered<std::pin::Pin<Box<dyn Future<Output = Done> + Send + 'a>>>;
/// A source read in progress.
type FetchFuture<'a> = BoxFuture<'a, Result<Option<Batch>, SourceError>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Stopping(Cause),
}

/// Why the run is stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    SourceExhausted,
    Shutdown,
    Error,
}

/// The error that stopped a run; the first one wins.
enum Stop {
    Source(SourceError),
    Commit(SourceError),
    Ack(SourceError),
    DeadLetter(String, DeadLetterError),
}

struct Run<'a, S, D, C, R, T> {
    source: &'a S,
    stages: &'a Stages<D, C, R, T>,
    config: &'a Config,
    state: State,
    /// The source acks per record ([`crate::AckMode::PerRecord`]) instead
    /// of taking checkpoints.
    per_record: bool,
    /// Per-record and in order within a shard: one record of a shard in
    /// flight at a time.
    ordered: bool,
    /// Done records waiting to be acked (per-record mode).
    ack_buf: Vec<Ack>,
    /// When the oldest record in `ack_buf` has waited long enough.
    ack_linger_at: Option<Instant>,
    /// Ordered mode: shards with a parked record and none in flight.
    ready: VecDeque<usize>,
    /// Ordered mode: records parked behind their shard's record in flight
    /// (read, not yet started), over all shards.
    parked: usize,
    error: Option<Stop>,
    /// False once a commit failed for good: nothing commits after that.
    commits_allowed: bool,
    tracker: Tracker,
    meter: Meter,
    since_commit: u64,
    commit_due: bool,
    started: Instant,
    committed: BTreeMap<ShardId, Checkpoint>,
    /// Records read but not yet dispatched (at most one batch).
    pending: VecDeque<(usize, Record)>,
    /// Shards whose closing batch is in `pending`.
    ended_batches: Vec<usize>,
    source_done: bool,
    fetch: Option<FetchFuture<'a>>,
    commit: Option<(Flush, CommitFuture<'a>)>,
    read_backoff: Backoff,
    read_retry_at: Option<Instant>,
    commit_backoff: Backoff,
    commit_retry_at: Option<Instant>,
}

impl<'a, S, D, C, R, T> Run<'a, S, D, C, R, T>
where
    S: Source,
    T: Send + Sync,
    D: Decoder<T>,
    C: Classifier<T>,
    R: Router<T>,
{
    /// The one way a run starts stopping. Reading stops, records read but
    /// not dispatched are let go (they are not behind any checkpoint, so
    /// they are read again after a restart), and in-flight records drain.
    fn begin_stop(&mut self, cause: Cause, error: Option<Stop>) {
        if let Some(Stop::Commit(_) | Stop::Ack(_)) = &error {
            self.commits_allowed = false;
            self.commit = None;
        }
        if let Some(e) = error {
            self.error.get_or_insert(e);
        }
        if self.state == State::Running || cause == Cause::Error {
            self.state = State::Stopping(cause);
        }
        self.fetch = None;
        self.read_retry_at = None;
        if self.per_record {
            // Records read but never started are let go (the source
            // delivers them again); their shards may be released.
            for (slot, _) in std::mem::take(&mut self.pending) {
                self.tracker.release_held(slot, 1);
            }
            self.ready.clear();
            self.parked = 0;
            for slot in self.tracker.slots() {
                let Some(track) = self.tracker.get(slot) else {
                    continue;
                };
                let parked = std::mem::take(&mut track.parked).len();
                self.tracker.unacked = self.tracker.unacked.saturating_sub(parked);
                self.tracker.release_held(slot, parked);
            }
        }
        self.pending.clear();
        self.ended_batches.clear();
        // The final commits are due as soon as nothing is in flight.
        self.commit_due = true;
    }

    fn running(&self) -> bool {
        self.state == State::Running
    }

    /// Dispatches waiting records as far as the limits allow. Each new
    /// record is polled once here: one that finishes at once (fast
    /// components) never becomes a task.
    fn dispatch(&mut self, inflight: &mut Inflight<'a>, cx: &mut Context<'_>) {
        let config = self.config;
        let now = Instant::now();
        let wall = SystemTime::now();
        // Ordered mode: shards whose next parked record may start.
        while self.running() && inflight.len() < config.max_in_flight {
            let Some(slot) = self.ready.pop_front() else {
                break;
            };
            let Some(track) = self.tracker.get(slot) else {
                continue;
            };
            if track.busy {
                continue;
            }
            let Some(record) = track.parked.pop_front() else {
                continue;
            };
            self.parked -= 1;
            self.start(slot, record, inflight, cx, now, wall);
        }
        while self.running() && self.tracker.unacked < config.max_unacked {
            let full = inflight.len() >= config.max_in_flight;
            if full && !self.ordered {
                break;
            }
            let Some((slot, record)) = self.pending.pop_front() else {
                break;
            };
            let ordered = self.ordered;
            let Some(track) = self.tracker.get(slot) else {
                continue;
            };
            if ordered && (track.busy || !track.parked.is_empty() || full) {
                // It waits for the record before it in its shard (or for
                // room), without holding up the records of other shards.
                let idle = !track.busy && track.parked.is_empty();
                track.parked.push_back(record);
                self.tracker.unacked += 1;
                self.parked += 1;
                if idle {
                    self.ready.push_back(slot);
                }
                continue;
            }
            self.tracker.unacked += 1;
            self.start(slot, record, inflight, cx, now, wall);
        }
        self.meter.stats.peak_in_flight = self.meter.stats.peak_in_flight.max(inflight.len());
    }

    /// Starts one record (its slot is open and it counts as unacked).
    fn start(
        &mut self,
        slot: usize,
        record: Record,
        inflight: &mut Inflight<'a>,
        cx: &mut Context<'_>,
        now: Instant,
        wall: SystemTime,
    ) {
        let Some(track) = self.tracker.get(slot) else {
            return;
        };
        let index = if self.per_record {
            track.busy = self.ordered;
            track.start_unordered()
        } else {
            track.dispatch()
        };
        self.meter.stats.records_in += 1;
        let key = index ^ ((slot as u64) << 48);
        let stages = self.stages;
        // A span per record only when debug tracing is on: the wrapper
        // is not free even when the span is disabled.
        let fut = if tracing::enabled!(tracing::Level::DEBUG) {
            let span = tracing::debug_span!("record", id = %record.id, shard = %record.shard);
            Either::Left(
                stages
                    .process(record, slot, index, key, now, OnExhausted::DeadLetter)
                    .instrument(span),
            )
        } else {
            Either::Right(stages.process(record, slot, index, key, now, OnExhausted::DeadLetter))
        };
        let mut fut: std::pin::Pin<Box<dyn Future<Output = Done> + Send + 'a>> = Box::pin(fut);
        match fut.as_mut().poll(cx) {
            Poll::Ready(done) => self.finish(done, wall),
            Poll::Pending => inflight.push(fut),
        }
    }

    /// Counts a finished record and moves its shard's watermark.
    fn finish(&mut self, done: Done, now: SystemTime) {
        self.meter.count(
            done.decoded,
            done.classified.as_ref(),
            &done.outcome,
            done.tries.retries,
            done.tries.throttled,
            done.panicked,
        );
        if let Ok(latency) = now.duration_since(done.arrival) {
            self.meter.latency.record(latency.as_secs_f64());
        }
        let Some(track) = self.tracker.get(done.slot) else {
            return;
        };
        track.stats.tally(&done.outcome);
        if let Outcome::SinkFailed { error: err, .. } = done.outcome {
            // The slot stays unfinished: the watermark never passes it.
            self.begin_stop(
                Cause::Error,
                Some(Stop::DeadLetter(done.record_id.unwrap_or_default(), err)),
            );
            return;
        }
        if self.per_record {
            // Done: ack it (batched). `unacked` falls when the ack is answered.
            if self.ordered {
                track.busy = false;
                if !track.parked.is_empty() {
                    self.ready.push_back(done.slot);
                }
            }
            let shard = track.shard.clone();
            if self.ack_buf.is_empty() {
                self.ack_linger_at = Some(Instant::now() + self.config.ack_linger);
            }
            self.ack_buf.push(Ack {
                shard,
                sequence: done.sequence,
            });
            return;
        }
        // `unacked` falls when a commit covers the record, not here.
        track.complete(done.index, done.sequence);
        self.since_commit += 1;
        if track.ended && track.drained() {
            // Commit SHARD_END promptly: children of the shard wait for it.
            self.commit_due = true;
        }
    }

    /// A batch was fully dispatched: its shard's end now counts.
    fn mark_ended(&mut self) {
        if !self.pending.is_empty() {
            return;
        }
        for slot in std::mem::take(&mut self.ended_batches) {
            if let Some(track) = self.tracker.get(slot) {
                track.ended = true;
                if track.drained() {
                    self.commit_due = true;
                }
            }
        }
    }

    fn want_fetch(&self, inflight: usize) -> bool {
        self.running()
            && !self.source_done
            && self.fetch.is_none()
            && self.pending.is_empty()
            && inflight < self.config.max_in_flight
            && self.tracker.unacked < self.config.max_unacked
            && self.read_retry_at.is_none()
    }

    /// Starts a commit if one is due, allowed, not backing off, and has
    /// something to say.
    fn maybe_commit(&mut self, inflight: usize) {
        if self.per_record {
            self.maybe_ack(inflight);
            return;
        }
        let config = self.config;
        if self.since_commit >= config.commit_every || self.tracker.unacked >= config.max_unacked {
            // At the unacked limit only a commit makes room.
            self.commit_due = true;
        }
        if !self.commit_due
            || !self.commits_allowed
            || self.commit.is_some()
            || self.commit_retry_at.is_some()
        {
            return;
        }
        self.commit_due = false;
        self.since_commit = 0;
        self.meter.flush(inflight, self.tracker.open());
        let checkpoints = self.tracker.take_pending();
        if checkpoints.is_empty() {
            return;
        }
        let source = self.source;
        let timeout = config.call_timeout;
        let sent = checkpoints.clone();
        let fut = async move {
            // A lost answer must not hang the run: a commit attempt gets a
            // call timeout, and a timeout is retryable (commits only move
            // forward, so repeating one is harmless).
            match tokio::time::timeout(timeout, source.commit(sent)).await {
                Ok(r) => r,
                Err(_) => Err(SourceError::unavailable(format!(
                    "checkpoint commit did not answer within {timeout:?}"
                ))),
            }
        };
        self.commit = Some((Flush::Checkpoints(checkpoints), Box::pin(fut)));
    }

    /// Per-record mode: sends the done records' acks if due (by count, by
    /// linger, at the unacked limit, or when stopping).
    fn maybe_ack(&mut self, inflight: usize) {
        let config = self.config;
        if self.ack_buf.len() >= config.ack_every || self.tracker.unacked >= config.max_unacked {
            self.commit_due = true;
        }
        if !self.commit_due
            || !self.commits_allowed
            || self.commit.is_some()
            || self.commit_retry_at.is_some()
        {
            return;
        }
        self.commit_due = false;
        self.since_commit = 0;
        self.meter.flush(inflight, self.tracker.open());
        if self.ack_buf.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.ack_buf);
        self.ack_linger_at = None;
        let source = self.source;
        let timeout = config.call_timeout;
        let sent = acks.clone();
        let fut = async move {
            // Acking twice is harmless (the contract says so), so a lost
            // answer times out and is retried like a commit.
            match tokio::time::timeout(timeout, source.ack(sent)).await {
                Ok(r) => r,
                Err(_) => Err(SourceError::unavailable(format!(
                    "acknowledging done records did not answer within {timeout:?}"
                ))),
            }
        };
        self.commit = Some((Flush::Acks(acks), Box::pin(fut)));
    }

    fn on_flush(&mut self, flush: Flush, result: Result<(), SourceError>) {
        match flush {
            Flush::Checkpoints(checkpoints) => self.on_commit(checkpoints, result),
            Flush::Acks(acks) => self.on_ack(acks, result),
        }
    }

    fn on_ack(&mut self, acks: Vec<Ack>, result: Result<(), SourceError>) {
        match result {
            Ok(()) => {
                self.commit_backoff.reset();
                for ack in &acks {
                    self.tracker.unacked = self.tracker.unacked.saturating_sub(1);
                    if let Some(slot) = self.tracker.find(&ack.shard) {
                        self.tracker.release_held(slot, 1);
                    }
                }
                self.meter.stats.commits += 1;
            }
            Err(e) => {
                self.meter.stats.commit_failures += 1;
                let wait = self.commit_backoff.fail(&self.config.retry);
                let failing_for = self.commit_backoff.failing_for();
                if e.is_retryable() && failing_for < self.config.commit_timeout {
                    tracing::warn!(error = %e, ?wait, records = acks.len(), "ack failed; will retry");
                    // Back in front: they go again with what finished since.
                    let mut acks = acks;
                    acks.append(&mut self.ack_buf);
                    self.ack_buf = acks;
                    self.commit_retry_at = Some(Instant::now() + wait);
                    self.commit_due = true;
                } else {
                    tracing::error!(error = %e, ?failing_for, records = acks.len(), "ack failed for good; stopping (the records not acked come again)");
                    self.begin_stop(Cause::Error, Some(Stop::Ack(e)));
                }
            }
        }
    }

    fn on_commit(&mut self, checkpoints: Vec<Checkpoint>, result: Result<(), SourceError>) {
        match result {
            Ok(()) => {
                self.commit_backoff.reset();
                self.tracker.committed(&checkpoints);
                for cp in checkpoints {
                    self.committed.insert(cp.shard.clone(), cp);
                }
                self.meter.stats.commits += 1;
            }
            Err(e) => {
                self.meter.stats.commit_failures += 1;
                let wait = self.commit_backoff.fail(&self.config.retry);
                let failing_for = self.commit_backoff.failing_for();
                if e.is_retryable() && failing_for < self.config.commit_timeout {
                    tracing::warn!(error = %e, ?wait, "checkpoint commit failed; will retry");
                    self.commit_retry_at = Some(Instant::now() + wait);
                    self.commit_due = true;
                } else {
                    tracing::error!(error = %e, ?failing_for, "checkpoint commit failed for good; stopping");
                    self.begin_stop(Cause::Error, Some(Stop::Commit(e)));
                }
            }
        }
    }

    fn on_batch(&mut self, result: Result<Option<Batch>, SourceError>) {
        match result {
            Ok(Some(batch)) => {
                self.read_backoff.reset();
                let slot = self.tracker.slot(&batch.shard);
                if self.per_record {
                    if let Some(track) = self.tracker.get(slot) {
                        track.held += batch.records.len();
                    }
                    // An empty batch must not leave its shard open.
                    self.tracker.release_held(slot, 0);
                } else if batch.shard_end {
                    self.ended_batches.push(slot);
                }
                self.pending
                    .extend(batch.records.into_iter().map(|r| (slot, r)));
            }
            Ok(None) => self.source_done = true,
            Err(e) if e.is_retryable() => {
                self.meter.stats.source_retries += 1;
                if e.is_throttling() {
                    self.meter.stats.throttled += 1;
                }
                let wait = self.read_backoff.fail(&self.config.retry);
                tracing::warn!(error = %e, ?wait, "source read failed; backing off");
                self.read_retry_at = Some(Instant::now() + wait);
            }
            Err(e) => {
                tracing::error!(error = %e, "source failed permanently; stopping");
                self.begin_stop(Cause::Error, Some(Stop::Source(e)));
            }
        }
    }

    /// Whether the run is over: stopping, nothing in flight, and nothing
    /// left that may be committed.
    fn over(&self, inflight: usize) -> bool {
        let State::Stopping(_) = self.state else {
            return false;
        };
        let pending = if self.per_record {
            !self.ack_buf.is_empty()
        } else {
            self.tracker.has_pending()
        };
        inflight == 0 && self.commit.is_none() && (!self.commits_allowed || !pending)
    }

    async fn drive(mut self, shutdown: &Shutdown) -> Result<RunReport, PipelineError> {
        let config = self.config;
        let mut inflight: Inflight<'a> = FuturesUnordered::new();
        let mut ticker = tokio::time::interval(config.commit_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.reset();
        let mut shutdown_rx = shutdown.tx.subscribe();
        loop {
            if self.running() && !(self.pending.is_empty() && self.ready.is_empty()) {
                let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
                let mut cx = Context::from_waker(&waker);
                self.dispatch(&mut inflight, &mut cx);
            }
            self.mark_ended();
            if self.running()
                && self.source_done
                && self.pending.is_empty()
                && self.parked == 0
                && self.fetch.is_none()
            {
                self.begin_stop(Cause::SourceExhausted, None);
            }
            if self.want_fetch(inflight.len()) {
                let source = self.source;
                self.fetch = Some(Box::pin(source.next_batch()));
            }
            if !self.running() && inflight.is_empty() {
                // Draining is over: what is done gets committed now.
                self.commit_due = true;
            }
            self.maybe_commit(inflight.len());
            if self.over(inflight.len()) {
                break;
            }

            tokio::select! {
                biased;
                _ = shutdown_rx.wait_for(|s| *s), if self.running() => {
                    tracing::info!("shutdown requested: draining in-flight records");
                    self.begin_stop(Cause::Shutdown, None);
                }
                // Commits and the commit timer go before records and reads:
                // under load those are always ready, and a biased select
                // would starve the checkpoint.
                result = async { self.commit.as_mut().expect("guarded").1.as_mut().await }, if self.commit.is_some() => {
                    let (flush, _) = self.commit.take().expect("guarded");
                    self.on_flush(flush, result);
                }
                _ = sleep_until(self.ack_linger_at), if self.ack_linger_at.is_some() => {
                    self.ack_linger_at = None;
                    self.commit_due = true;
                }
                _ = sleep_until(self.commit_retry_at), if self.commit_retry_at.is_some() => {
                    self.commit_retry_at = None;
                }
                _ = ticker.tick() => {
                    self.commit_due = true;
                }
                Some(done) = inflight.next(), if !inflight.is_empty() => {
                    let now = SystemTime::now();
                    self.finish(done, now);
                    // Take what else is ready without going round the loop.
                    for _ in 1..256 {
                        let Some(Some(done)) = inflight.next().now_or_never() else {
                            break;
                        };
                        self.finish(done, now);
                    }
                }
                result = async { self.fetch.as_mut().expect("guarded").await }, if self.fetch.is_some() => {
                    self.fetch = None;
                    self.on_batch(result);
                }
                _ = sleep_until(self.read_retry_at), if self.read_retry_at.is_some() => {
                    self.read_retry_at = None;
                }
            }
        }
        drop(inflight);
        self.meter.flush(0, self.tracker.open());
        let reason = match self.state {
            _ if self.error.is_some() => StopReason::Error,
            State::Stopping(Cause::Shutdown) => StopReason::Shutdown,
            _ => StopReason::SourceExhausted,
        };
        let report = Box::new(self.report(reason));
        match self.error {
            None => Ok(*report),
            Some(Stop::Source(source)) => Err(PipelineError::Source { source, report }),
            Some(Stop::Commit(source)) => Err(PipelineError::Commit { source, report }),
            Some(Stop::Ack(source)) => Err(PipelineError::Ack { source, report }),
            Some(Stop::DeadLetter(record_id, source)) => Err(PipelineError::DeadLetter {
                record_id,
                source,
                report,
            }),
        }
    }

    fn report(&mut self, stopped: StopReason) -> RunReport {
        self.meter.sync();
        let mut stats = self.meter.stats.clone();
        stats.shards = BTreeMap::new();
        for (shard, counts) in self.tracker.shard_stats() {
            stats.shards.entry(shard).or_default().add(&counts);
        }
        debug_assert!(
            stats.reconciles(),
            "run report does not reconcile: {stats:?}"
        );
        RunReport {
            stats,
            checkpoints: self.committed.values().cloned().collect(),
            elapsed: self.started.elapsed(),
            stopped,
            active: self.config.active.as_ref().map(|a| a.snapshot()),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
