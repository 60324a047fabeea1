//! One shard's polling reader: the GetRecords loop, turning Kinesis records
//! into [`Record`](crate::Record)s and sending them to the pipeline in
//! batches. The enhanced fan-out reader is [`super::efo`]; the coordinator
//! ([`super::source`]) picks one of the two per shard. Depends on
//! [`super::shared`] and [`super::error`] only.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use aws_sdk_kinesis::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kinesis::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kinesis::error::BoxError;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::error::{CallError, classify};
use super::shared::{
    ReaderExit, ResumeFilter, Shared, StartAt, Streak, StreamRef, after_failure, convert, end_shard,
};
use crate::SourceError;
use crate::record::{Batch, Sequence, ShardId};

fn to_datetime(t: SystemTime) -> DateTime {
    DateTime::from(t)
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

/// Runs a GetRecords reader for `shard` until its end, the tip
/// (`stop_at_tip`), a permanent error, or the pipeline going away.
pub(crate) async fn run(
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
    let mut streak = Streak::default();
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
                    streak.reset();
                    iterator = Some(it);
                }
                Ok(None) => {
                    // No iterator: the shard is closed and nothing is left.
                    return end_shard(shard, tx).await;
                }
                Err(e) => {
                    if let Err(exit) =
                        after_failure(shared, shard, "GetShardIterator", e, &mut streak, tx).await
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
                            after_failure(shared, shard, "GetRecords", other, &mut streak, tx).await
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
                    after_failure(shared, shard, "GetRecords", e, &mut streak, tx).await
                {
                    return exit;
                }
                continue;
            }
        };
        streak.reset();
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
