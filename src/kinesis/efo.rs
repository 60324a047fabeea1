//! Enhanced fan-out: a registered stream consumer and one SubscribeToShard
//! subscription per shard, renewed from the continuation sequence number.
//! Depends on [`super::shared`] and [`super::error`] only; the coordinator
//! ([`super::source`]) calls it, and the polling reader ([`super::reader`])
//! does not know it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::error::{CallError, classify};
use super::shared::{
    ReaderExit, ResumeFilter, Settings, Shared, StartAt, Streak, StreamRef, after_failure, backoff,
    convert, end_shard,
};
use crate::SourceError;
use crate::record::{Batch, ShardId};

async fn stream_arn(
    client: &Client,
    stream: &StreamRef,
    settings: &Settings,
) -> Result<String, SourceError> {
    if let StreamRef::Arn(a) = stream {
        return Ok(a.clone());
    }
    let call = client
        .describe_stream_summary()
        .stream_name(stream.name())
        .send();
    let resp = tokio::time::timeout(settings.call_timeout, call)
        .await
        .map_err(|_| SourceError::unavailable("DescribeStreamSummary: timed out"))?
        .map_err(|e| classify("DescribeStreamSummary", e).into_source_error())?;
    resp.stream_description_summary()
        .map(|s| s.stream_arn().to_string())
        .ok_or_else(|| {
            SourceError::permanent("DescribeStreamSummary returned no stream description")
        })
}

/// Registers `name` as a consumer of the stream, or finds it if it exists,
/// and waits until it is ACTIVE, polling DescribeStreamConsumer with
/// backoff (from the settings' initial backoff, doubling up to 2 s) until
/// `deadline` (the source's start-up timeout). Returns its ARN.
pub(crate) async fn register_consumer(
    client: &Client,
    stream: &StreamRef,
    name: &str,
    settings: &Settings,
    deadline: Instant,
) -> Result<String, SourceError> {
    let stream_arn = stream_arn(client, stream, settings).await?;
    let registered = client
        .register_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name(name)
        .send()
        .await;
    let arn = match registered {
        Ok(resp) => resp.consumer().map(|c| c.consumer_arn().to_string()),
        Err(e) => match classify("RegisterStreamConsumer", e) {
            // Already registered: look it up below.
            CallError::InUse(_) => None,
            other => return Err(other.into_source_error()),
        },
    };
    let mut polls = 0u32;
    loop {
        let mut req = client.describe_stream_consumer();
        req = match &arn {
            Some(a) => req.consumer_arn(a),
            None => req.stream_arn(&stream_arn).consumer_name(name),
        };
        let status = match req.send().await {
            Ok(resp) => {
                let Some(desc) = resp.consumer_description() else {
                    return Err(SourceError::permanent(
                        "DescribeStreamConsumer returned no consumer description",
                    ));
                };
                if *desc.consumer_status() == ConsumerStatus::Active {
                    return Ok(desc.consumer_arn().to_string());
                }
                format!("{:?}", desc.consumer_status())
            }
            Err(e) => match classify("DescribeStreamConsumer", e) {
                err if err.is_retryable() => err.into_source_error().to_string(),
                err => return Err(err.into_source_error()),
            },
        };
        polls += 1;
        let wait = consumer_poll_wait(settings, polls);
        if Instant::now() + wait > deadline {
            return Err(SourceError::unavailable(format!(
                "stream consumer {name} is not ACTIVE within the start-up timeout of {:?} \
                 ({polls} polls; the last: {status}): raise startup_timeout, or try again later",
                settings.startup_timeout
            )));
        }
        tokio::time::sleep(wait).await;
    }
}

/// The pause before DescribeStreamConsumer poll `polls + 1`: the initial
/// backoff doubling, at most 2 s, with jitter.
fn consumer_poll_wait(settings: &Settings, polls: u32) -> Duration {
    backoff(settings, polls, 0xef0).min(Duration::from_secs(2))
}

fn starting_position(start: &StartAt) -> Result<StartingPosition, SourceError> {
    let b = StartingPosition::builder();
    let b = match start {
        StartAt::After(seq) if seq.sub_sequence.is_some() => b
            .r#type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(&seq.number),
        StartAt::After(seq) => b
            .r#type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(&seq.number),
        StartAt::TrimHorizon => b.r#type(ShardIteratorType::TrimHorizon),
        StartAt::Timestamp(t) => b
            .r#type(ShardIteratorType::AtTimestamp)
            .timestamp(aws_sdk_kinesis::primitives::DateTime::from(*t)),
    };
    b.build().map_err(|e| {
        SourceError::permanent(format!("invalid starting position: {e}")).with_source(e)
    })
}

/// Reads `shard` through SubscribeToShard until its end, the tip
/// (`stop_at_tip`), a permanent error or the pipeline going away.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    shard: &ShardId,
    start: StartAt,
    tx: &mpsc::Sender<Result<Batch, SourceError>>,
) -> ReaderExit {
    let Some(consumer_arn) = shared.consumer_arn.clone() else {
        return ReaderExit::Failed;
    };
    let settings = &shared.settings;
    let mut filter = match &start {
        StartAt::After(seq) => ResumeFilter::new(seq),
        _ => None,
    };
    let mut from = start;
    let mut streak = Streak::default();
    // Kinesis allows one SubscribeToShard per second per shard and consumer:
    // a subscription that ends at once is renewed no faster than that.
    let mut next_subscribe = Instant::now();
    loop {
        tokio::time::sleep_until(next_subscribe).await;
        next_subscribe = Instant::now() + Duration::from_secs(1);
        let position = match starting_position(&from) {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return ReaderExit::Failed;
            }
        };
        shared.counters.read_calls.fetch_add(1, Ordering::Relaxed);
        let call = shared
            .client
            .subscribe_to_shard()
            .consumer_arn(&consumer_arn)
            .shard_id(shard.as_str())
            .starting_position(position)
            .send();
        let mut output = match tokio::time::timeout(settings.call_timeout, call).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                let e = classify("SubscribeToShard", e);
                if let Err(exit) =
                    after_failure(shared, shard, "SubscribeToShard", e, &mut streak, tx).await
                {
                    return exit;
                }
                continue;
            }
            Err(_) => {
                let e =
                    CallError::Transient(SourceError::unavailable("SubscribeToShard: timed out"));
                if let Err(exit) =
                    after_failure(shared, shard, "SubscribeToShard", e, &mut streak, tx).await
                {
                    return exit;
                }
                continue;
            }
        };
        let renew_at = Instant::now() + settings.resubscribe_after;
        loop {
            let event = tokio::select! {
                e = output.event_stream.recv() => e,
                _ = tokio::time::sleep_until(renew_at) => {
                    tracing::debug!(%shard, "resubscribing");
                    break;
                }
            };
            let event = match event {
                Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => event,
                Ok(Some(other)) => {
                    tracing::debug!(%shard, event = ?other, "ignoring an unknown event");
                    continue;
                }
                // The subscription ended (Kinesis ends each after 5 minutes).
                Ok(None) => break,
                Err(e) => {
                    shared
                        .counters
                        .transient_errors
                        .fetch_add(1, Ordering::Relaxed);
                    let failures = streak.fail();
                    if let Some(lasted) = streak.long() {
                        tracing::warn!(%shard, error = %e, attempts = failures, ?lasted, "subscriptions have failed for {lasted:?}; still resubscribing");
                    } else {
                        tracing::debug!(%shard, error = %e, attempt = failures, "subscription failed; resubscribing");
                    }
                    tokio::time::sleep(backoff(settings, failures, 1)).await;
                    break;
                }
            };
            streak.reset();
            let behind = u64::try_from(event.millis_behind_latest).ok();
            let continuation = event.continuation_sequence_number.clone();
            let ended = event.child_shards.as_ref().is_some_and(|c| !c.is_empty())
                || continuation.is_empty();
            let raw = event.records;
            let empty = raw.is_empty();
            let mut records = Vec::with_capacity(raw.len());
            for r in raw {
                convert(shared, shard, r, filter.as_ref(), &mut records);
            }
            if !empty {
                filter = None;
            }
            if !records.is_empty() {
                shared
                    .counters
                    .records
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                let mut batch = Batch::new(shard.clone(), records);
                batch.millis_behind = behind;
                if tx.send(Ok(batch)).await.is_err() {
                    return ReaderExit::Closed;
                }
            }
            if ended {
                return end_shard(shard, tx).await;
            }
            from = StartAt::After(crate::Sequence::new(continuation));
            if empty && behind.is_none_or(|m| m == 0) && settings.stop_at_tip {
                return ReaderExit::CaughtUp;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DescribeStreamConsumer polls back off from the initial backoff up to
    /// 2 s (jittered), instead of every 500 ms for two minutes.
    #[test]
    fn consumer_polls_back_off_up_to_two_seconds() {
        let settings = Settings {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            ..Settings::default()
        };
        let waits: Vec<Duration> = (1..=12).map(|p| consumer_poll_wait(&settings, p)).collect();
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(2)),
            "{waits:?}"
        );
        // Full jitter: the sum grows with the ceiling; 12 polls of at most
        // 100 ms would total 1.2 s at most.
        let total: Duration = waits.iter().sum();
        assert!(total > Duration::from_millis(1200), "{waits:?}");
    }
}
