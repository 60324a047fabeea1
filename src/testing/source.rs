//! The [`Source`] conformance suite.
//!
//! You give a function that builds a fresh source over the same bounded
//! stream of `n` records, resuming from whatever earlier sources committed
//! (the same checkpoint store, the same file). The suite reads part of the
//! stream, "crashes" (drops the source) with one batch read but not
//! committed, restarts, reads the rest, and restarts once more.
//!
//! # Rules
//!
//! A conforming source keeps these rules; the suite names the one broken.
//!
//! 1. **`calls-succeed`**: `next_batch` and `commit` do not fail on a
//!    healthy stream.
//! 2. **`batch-own-shard`**: a batch holds records of its own shard only.
//! 3. **`shard-order`**: within a shard, records come in strictly
//!    increasing position ([`Sequence::cmp_position`](crate::Sequence::cmp_position)),
//!    oldest first.
//! 4. **`unique-ids`**: record ids are unique within a run.
//! 5. **`resume-after-commit`**: after a restart, nothing at or before a
//!    committed position comes again (and nothing of a shard committed at
//!    `SHARD_END`).
//! 6. **`uncommitted-redelivered`**: records read but not committed come
//!    again after a restart, with the same ids and payloads: delivery is
//!    at-least-once, and ids are stable across runs.
//! 7. **`every-record-once`**: reading to the end and committing each batch
//!    as it is read delivers each of the stream's `n` records once.
//! 8. **`commit-idempotent`**: committing the same checkpoint twice is not
//!    an error.
//! 9. **`ends-when-done`**: a bounded source ends (`Ok(None)`) within
//!    60 seconds once everything is read; after everything is committed, a
//!    fresh source yields no record.
//!
//! A source that acks per record ([`AckMode::PerRecord`](crate::AckMode::PerRecord),
//! a queue) is acked where a checkpointing one is committed: each batch's
//! records, twice (rule 8); rule 5 then reads "nothing acked comes again",
//! rule 6 "records read but not acked come again", and rule 3 holds only
//! for an ordered source (`PerRecord { ordered: true }`: a queue without
//! order has no positions to keep).
//!
//! An endless source (one that waits for new records at the tip) cannot
//! pass rule 9: give the suite a mode of it that stops at the tip (as
//! `KinesisSource::builder(..).stop_at_tip(true)`).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use super::ensure;
use crate::record::{Checkpoint, Position, Record, ShardId};
use crate::source::{Ack, Source};

const SUITE: &str = "source";
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// What one run read.
struct Run {
    /// Every record read, in order.
    records: Vec<Record>,
    /// Per shard, the last position committed.
    committed: HashMap<ShardId, Position>,
    /// Records of the last batch, read but not committed.
    held_back: Vec<Record>,
    /// Per-record sources: the ids acked.
    acked: HashSet<String>,
}

/// Reads until the source ends, committing each batch as it is read (twice,
/// for rule 8). With `stop_after`, stops once that many records are in, and
/// leaves the last batch read uncommitted.
async fn read<S: Source>(source: &S, run: u32, stop_after: Option<usize>) -> Run {
    let mut out = Run {
        records: Vec::new(),
        committed: HashMap::new(),
        held_back: Vec::new(),
        acked: HashSet::new(),
    };
    let mode = source.acks();
    let check_order = !mode.is_per_record() || mode.is_ordered();
    let mut last: HashMap<ShardId, Record> = HashMap::new();
    let mut ids: HashSet<String> = HashSet::new();
    let reading = async {
        loop {
            let batch = match source.next_batch().await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(e) => super::broken(
                    SUITE,
                    "calls-succeed",
                    format_args!("run {run}: next_batch failed: {e}"),
                ),
            };
            for r in &batch.records {
                ensure!(
                    SUITE,
                    "batch-own-shard",
                    r.shard == batch.shard,
                    "run {run}: record {} of shard {} came in a batch of shard {}",
                    r.id,
                    r.shard,
                    batch.shard
                );
                if let Some(prev) = last.get(&r.shard).filter(|_| check_order) {
                    ensure!(
                        SUITE,
                        "shard-order",
                        prev.sequence.cmp_position(&r.sequence) == Ordering::Less,
                        "run {run}: shard {} gave {} ({}) then {} ({})",
                        r.shard,
                        prev.id,
                        prev.sequence,
                        r.id,
                        r.sequence
                    );
                }
                last.insert(r.shard.clone(), r.clone());
                ensure!(
                    SUITE,
                    "unique-ids",
                    ids.insert(r.id.clone()),
                    "run {run}: record id {} came twice",
                    r.id
                );
            }
            let stop = stop_after.is_some_and(|n| out.records.len() + batch.records.len() >= n);
            out.records.extend(batch.records.iter().cloned());
            if stop {
                out.held_back = batch.records;
                break;
            }
            if mode.is_per_record() {
                let acks: Vec<Ack> = batch
                    .records
                    .iter()
                    .map(|r| Ack {
                        shard: r.shard.clone(),
                        sequence: r.sequence.clone(),
                    })
                    .collect();
                if let Err(e) = source.ack(acks.clone()).await {
                    super::broken(
                        SUITE,
                        "calls-succeed",
                        format_args!("run {run}: ack of {} records failed: {e}", acks.len()),
                    )
                }
                if let Err(e) = source.ack(acks).await {
                    super::broken(
                        SUITE,
                        "commit-idempotent",
                        format_args!(
                            "run {run}: acking the same records a second time failed: {e}"
                        ),
                    )
                }
                out.acked.extend(batch.records.iter().map(|r| r.id.clone()));
                continue;
            }
            let mut checkpoints = Vec::new();
            if let Some(r) = batch.records.last() {
                checkpoints.push(Checkpoint {
                    shard: batch.shard.clone(),
                    position: Position::Sequence(r.sequence.clone()),
                });
            }
            if batch.shard_end {
                checkpoints.push(Checkpoint {
                    shard: batch.shard.clone(),
                    position: Position::ShardEnd,
                });
            }
            if checkpoints.is_empty() {
                continue;
            }
            if let Err(e) = source.commit(checkpoints.clone()).await {
                super::broken(
                    SUITE,
                    "calls-succeed",
                    format_args!("run {run}: commit of {checkpoints:?} failed: {e}"),
                )
            }
            if let Err(e) = source.commit(checkpoints.clone()).await {
                super::broken(
                    SUITE,
                    "commit-idempotent",
                    format_args!("run {run}: committing {checkpoints:?} a second time failed: {e}"),
                )
            }
            for c in checkpoints {
                out.committed.insert(c.shard, c.position);
            }
        }
    };
    if tokio::time::timeout(RUN_TIMEOUT, reading).await.is_err() {
        super::broken(
            SUITE,
            "ends-when-done",
            format_args!(
                "run {run}: the source neither ended nor gave a batch for {RUN_TIMEOUT:?} \
                 ({} records read); a bounded source returns Ok(None) at its end",
                out.records.len()
            ),
        )
    }
    out
}

fn at_or_before(committed: &Position, r: &Record) -> bool {
    match committed {
        Position::ShardEnd => true,
        Position::Sequence(s) => r.sequence.cmp_position(s) != Ordering::Greater,
    }
}

/// Runs every rule. `make()` builds a fresh source over the same stream of
/// `n` records (at least 3), resuming from what earlier sources committed;
/// it is called three times. Needs a Tokio runtime with time (a paused
/// clock is fine).
///
/// ```
/// use streamsift::fakes::MemorySource;
/// use streamsift::testing::source;
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let stream = MemorySource::from_payloads(2, (0..50).map(|i| format!("{{\"n\":{i}}}")))
///     .batch_size(5)
///     .close_shards();
/// source::conformance(|| std::future::ready(stream.restart()), 50).await;
/// # });
/// ```
///
/// # Panics
/// At the first broken rule, naming it (see the [module docs](self)).
pub async fn conformance<S, F, Fut>(mut make: F, n: usize)
where
    S: Source,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    assert!(
        n >= 3,
        "the source suite needs a stream of at least 3 records"
    );

    // Part of the stream, the last batch uncommitted, then a restart.
    let first = make().await;
    let early = read(&first, 1, Some(n / 3)).await;
    drop(first);
    let second = make().await;
    let rest = read(&second, 2, None).await;
    drop(second);

    let by_id: HashMap<&str, &Record> = rest.records.iter().map(|r| (r.id.as_str(), r)).collect();
    for r in &rest.records {
        ensure!(
            SUITE,
            "resume-after-commit",
            !early.acked.contains(&r.id),
            "record {} ({} {}) came again after a restart, though it was acked",
            r.id,
            r.shard,
            r.sequence
        );
        if let Some(p) = early.committed.get(&r.shard) {
            ensure!(
                SUITE,
                "resume-after-commit",
                !at_or_before(p, r),
                "record {} ({} {}) came again after a restart, though {p:?} was committed",
                r.id,
                r.shard,
                r.sequence
            );
        }
    }
    for r in &early.held_back {
        match by_id.get(r.id.as_str()) {
            None => super::broken(
                SUITE,
                "uncommitted-redelivered",
                format_args!(
                    "record {} ({} {}) was read but not committed before the restart, and did \
                     not come again (under the same id) after it",
                    r.id, r.shard, r.sequence
                ),
            ),
            Some(again) => ensure!(
                SUITE,
                "uncommitted-redelivered",
                again.payload == r.payload && again.sequence == r.sequence,
                "record {} came again after the restart with another payload or position",
                r.id
            ),
        }
    }
    let held: HashSet<&str> = early.held_back.iter().map(|r| r.id.as_str()).collect();
    let done_early: HashSet<&str> = early
        .records
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| !held.contains(id))
        .collect();
    let all: HashSet<&str> = done_early
        .iter()
        .copied()
        .chain(rest.records.iter().map(|r| r.id.as_str()))
        .collect();
    ensure!(
        SUITE,
        "every-record-once",
        done_early.len() + rest.records.len() == n && all.len() == n,
        "the stream has {n} records; the first run committed {} and the second read {} \
         ({} distinct ids in all)",
        done_early.len(),
        rest.records.len(),
        all.len()
    );

    // A third source has nothing left.
    let third = make().await;
    let last = read(&third, 3, None).await;
    ensure!(
        SUITE,
        "ends-when-done",
        last.records.is_empty(),
        "everything was committed, yet a fresh source gave {} records (first: {})",
        last.records.len(),
        last.records.first().map_or("", |r| r.id.as_str())
    );
}
