//! One shard's reader: the GetRecords loop (or, with enhanced fan-out, the
//! SubscribeToShard loop in [`super::efo`]), turning Kinesis records into
//! [`Record`]s and sending them to the pipeline in batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kinesis::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kinesis::error::BoxError;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::error::{CallError, classify};
use super::source::{Settings, Shared, StreamRef};
use crate::SourceError;
use crate::record::{Batch, Record, Sequence, ShardId};
use crate::util::{hash_str, unit_f64};

/// Where a reader starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StartAt {
    /// After a checkpoint. With a sub-sequence, the aggregate is read again
    /// (`AT_SEQUENCE_NUMBER`) and its user records up to the sub-sequence
    /// are skipped.
    After(Sequence),
    TrimHorizon,
    /// `AT_TIMESTAMP`: also how a `LATEST` source reads, from its pinned
    /// start, so that a retried call keeps the intended position.
    Timestamp(SystemTime),
}

/// Why a reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReaderExit {
    /// The shard is closed and its last batch was sent.
    ShardEnd,
    /// Read up to the tip, with `stop_at_tip` set.
    CaughtUp,
    /// A permanent error was sent to the pipeline.
    Failed,
    /// The pipeline went away.
    Closed,
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, initial ×
/// 2^(attempt-1))]`, never below 10 ms.
pub(crate) fn backoff(settings: &Settings, attempt: u32, key: u64) -> Duration {
    let exp = 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let ceiling =
        (settings.initial_backoff.as_secs_f64() * exp).min(settings.max_backoff.as_secs_f64());
    let unit = unit_f64(settings.seed, key, u64::from(attempt));
    Duration::from_secs_f64((ceiling * unit).max(0.010))
}

/// Skips the user records of an aggregate that a checkpoint inside it says
/// are done.
#[derive(Debug)]
pub(crate) struct ResumeFilter {
    number: String,
    sub: u64,
}

impl ResumeFilter {
    pub(crate) fn new(after: &Sequence) -> Option<Self> {
        after.sub_sequence.map(|sub| ResumeFilter {
            number: after.number.clone(),
            sub,
        })
    }

    /// Whether `seq` was already done. Records of the checkpointed aggregate
    /// up to its sub-sequence are; a plain record with that number is too.
    fn done(&self, seq: &Sequence) -> bool {
        seq.number == self.number && seq.sub_sequence.is_none_or(|s| s <= self.sub)
    }
}

/// Turns one Kinesis record into [`Record`]s (see [`super::unpack`]),
/// dropping those a resume filter says are done, and counting corrupt
/// aggregates.
pub(crate) fn convert(
    shared: &Shared,
    shard: &ShardId,
    record: aws_sdk_kinesis::types::Record,
    filter: Option<&ResumeFilter>,
    out: &mut Vec<Record>,
) {
    let arrival = record
        .approximate_arrival_timestamp
        .and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or_else(SystemTime::now);
    let from = out.len();
    let data = Bytes::from(record.data.into_inner());
    if let Some(e) = super::unpack(
        shard,
        &record.sequence_number,
        &record.partition_key,
        data,
        arrival,
        out,
    ) {
        shared
            .counters
            .corrupt_aggregates
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!("streamsift_kinesis_corrupt_aggregates_total", "shard" => shard.to_string())
            .increment(1);
        tracing::warn!(%shard, sequence = %record.sequence_number, error = %e, "corrupt KPL aggregate: passing it on as a defective record");
    }
    if let Some(f) = filter {
        let mut tail = out.split_off(from);
        tail.retain(|r| !f.done(&r.sequence));
        out.append(&mut tail);
    }
}

fn to_datetime(t: SystemTime) -> DateTime {
    DateTime::from(t)
}

/// Runs a reader for `shard` until its end, the tip (`stop_at_tip`), a
/// permanent error, or the pipeline going away.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    shard: &ShardId,
    start: StartAt,
    tx: &mpsc::Sender<Result<Batch, SourceError>>,
) -> ReaderExit {
    if shared.consumer_arn.is_some() {
        return super::efo::run(shared, shard, start, tx).await;
    }
    poll(shared, shard, start, tx).await
}

async fn get_iterator(
    shared: &Shared,
    shard: &ShardId,
    start: &StartAt,
) -> Result<Option<String>, CallError> {
    let mut req = shared.client.get_shard_iterator().shard_id(shard.as_str());
    req = match &shared.stream {
        StreamRef::Name(n) => req.stream_name(n),
        StreamRef::Arn(a) => req.stream_arn(a),
    };
    req = match start {
        StartAt::After(seq) if seq.sub_sequence.is_some() => req
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(&seq.number),
        StartAt::After(seq) => req
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(&seq.number),
        StartAt::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        StartAt::Timestamp(t) => req
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(to_datetime(*t)),
    };
    match tokio::time::timeout(shared.settings.call_timeout, req.send()).await {
        Ok(Ok(resp)) => Ok(resp.shard_iterator),
        Ok(Err(e)) => Err(classify("GetShardIterator", e)),
        Err(_) => Err(CallError::Transient(SourceError::unavailable(
            "GetShardIterator: timed out",
        ))),
    }
}

/// What a reader does after a failed call: `Ok(())` to retry after the
/// backoff it slept, `Err(exit)` to stop.
pub(crate) async fn after_failure(
    shared: &Shared,
    shard: &ShardId,
    op: &'static str,
    err: CallError,
    failures: &mut u32,
    tx: &mpsc::Sender<Result<Batch, SourceError>>,
) -> Result<(), ReaderExit> {
    *failures += 1;
    let label = shard.to_string();
    match err {
        CallError::Throttled(e) => {
            shared.counters.throttled.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("streamsift_kinesis_throttled_total", "shard" => label, "operation" => op).increment(1);
            tracing::debug!(%shard, error = %e, "throttled");
        }
        CallError::Transient(e) | CallError::InUse(e) => {
            shared
                .counters
                .transient_errors
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("streamsift_kinesis_transient_errors_total", "shard" => label, "operation" => op).increment(1);
            tracing::warn!(%shard, error = %e, attempt = *failures, "transient error; retrying");
        }
        CallError::Expired => {
            // Not expected from GetShardIterator; back off like a transient
            // error rather than asking again at once.
            shared
                .counters
                .transient_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%shard, operation = op, attempt = *failures, "unexpected ExpiredIteratorException; retrying");
        }
        CallError::Permanent(e) => {
            tracing::error!(%shard, error = %e, "permanent error; stopping the source");
            let e = SourceError::permanent(format!("shard {shard}: {e}")).with_source(e);
            return Err(if tx.send(Err(e)).await.is_ok() {
                ReaderExit::Failed
            } else {
                ReaderExit::Closed
            });
        }
    }
    tokio::time::sleep(backoff(
        &shared.settings,
        *failures,
        hash_str(shard.as_str()),
    ))
    .await;
    Ok(())
}

async fn poll(
    shared: &Arc<Shared>,
    shard: &ShardId,
    start: StartAt,
    tx: &mpsc::Sender<Result<Batch, SourceError>>,
) -> ReaderExit {
    let settings = &shared.settings;
    let mut filter = match &start {
        StartAt::After(seq) => ResumeFilter::new(seq),
        _ => None,
    };
    // The last sequence number handed on: an expired iterator is renewed
    // after it.
    let mut last: Option<String> = None;
    let mut failures = 0u32;
    let mut iterator: Option<String> = None;
    let mut next_call = Instant::now();
    let label = shard.to_string();
    loop {
        if iterator.is_none() {
            let from = match &last {
                Some(n) => StartAt::After(Sequence::new(n.clone())),
                None => start.clone(),
            };
            match get_iterator(shared, shard, &from).await {
                Ok(Some(it)) => {
                    failures = 0;
                    iterator = Some(it);
                }
                Ok(None) => {
                    // No iterator: the shard is closed and nothing is left.
                    return end_shard(shard, tx).await;
                }
                Err(e) => {
                    if let Err(exit) =
                        after_failure(shared, shard, "GetShardIterator", e, &mut failures, tx).await
                    {
                        return exit;
                    }
                    continue;
                }
            }
        }
        tokio::time::sleep_until(next_call).await;
        let started = Instant::now();
        next_call = started + settings.min_call_interval;
        shared.counters.read_calls.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("streamsift_kinesis_get_records_total", "shard" => label.clone())
            .increment(1);
        let sent = SentAt::default();
        let req = shared
            .client
            .get_records()
            .shard_iterator(iterator.clone().unwrap_or_default())
            .limit(settings.limit)
            .customize()
            .interceptor(sent.clone());
        let answer = tokio::time::timeout(settings.call_timeout, req.send()).await;
        // The pace counts from when the call left for Kinesis, not from when
        // the reader began it: signing, a credentials refresh or a busy
        // runtime can hold a call back, and pacing from its start would let
        // the next call follow it within less than the interval.
        if let Some(at) = sent.get() {
            next_call = next_call.max(at + settings.min_call_interval);
        }
        let resp = match answer {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                match classify("GetRecords", e) {
                    CallError::Expired => {
                        shared
                            .counters
                            .iterators_renewed
                            .fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("streamsift_kinesis_iterators_renewed_total", "shard" => label.clone()).increment(1);
                        tracing::debug!(%shard, "shard iterator expired; renewing");
                        iterator = None;
                    }
                    other => {
                        if let Err(exit) =
                            after_failure(shared, shard, "GetRecords", other, &mut failures, tx)
                                .await
                        {
                            return exit;
                        }
                    }
                }
                continue;
            }
            Err(_) => {
                let e = CallError::Transient(SourceError::unavailable("GetRecords: timed out"));
                if let Err(exit) =
                    after_failure(shared, shard, "GetRecords", e, &mut failures, tx).await
                {
                    return exit;
                }
                continue;
            }
        };
        failures = 0;
        let behind = resp.millis_behind_latest.map(|m| m.max(0) as u64);
        if let Some(m) = behind {
            metrics::gauge!("streamsift_kinesis_millis_behind_latest", "shard" => label.clone())
                .set(m as f64);
        }
        let next_iterator = resp.next_shard_iterator;
        let raw = resp.records;
        let empty = raw.is_empty();
        if let Some(r) = raw.last() {
            last = Some(r.sequence_number.clone());
        }
        let mut records = Vec::with_capacity(raw.len());
        for r in raw {
            convert(shared, shard, r, filter.as_ref(), &mut records);
        }
        // Once past the checkpointed aggregate, nothing else is skipped.
        if !empty {
            filter = None;
        }
        // Kinesis ends a closed shard with no next iterator. An emulator may
        // keep handing out iterators; a shard that ListShards reports closed
        // and that is read to its tip is at its end either way.
        let shard_end = next_iterator.is_none()
            || (empty && behind.is_none_or(|m| m == 0) && shared.is_closed(shard));
        if !records.is_empty() || shard_end {
            shared
                .counters
                .records
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            let batch = Batch {
                shard: shard.clone(),
                records,
                shard_end,
                millis_behind: behind,
            };
            if tx.send(Ok(batch)).await.is_err() {
                return ReaderExit::Closed;
            }
        }
        if shard_end {
            tracing::debug!(%shard, "shard closed: last batch sent");
            return ReaderExit::ShardEnd;
        }
        iterator = next_iterator;
        let caught_up = empty && behind.is_none_or(|m| m == 0);
        if caught_up {
            if settings.stop_at_tip {
                return ReaderExit::CaughtUp;
            }
            next_call = next_call.max(Instant::now() + settings.idle_wait);
        }
    }
}

/// Notes when a request is handed to the HTTP client (the last step before
/// it goes on the wire), so a reader paces its calls by when they left.
#[derive(Clone, Debug, Default)]
struct SentAt(Arc<std::sync::Mutex<Option<Instant>>>);

impl SentAt {
    fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Intercept for SentAt {
    fn name(&self) -> &'static str {
        "streamsift::kinesis::SentAt"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        Ok(())
    }
}

/// Sends an empty end-of-shard batch.
pub(crate) async fn end_shard(
    shard: &ShardId,
    tx: &mpsc::Sender<Result<Batch, SourceError>>,
) -> ReaderExit {
    let mut batch = Batch::new(shard.clone(), Vec::new());
    batch.shard_end = true;
    if tx.send(Ok(batch)).await.is_err() {
        return ReaderExit::Closed;
    }
    ReaderExit::ShardEnd
}
