//! What every part of a [`KinesisSource`](super::KinesisSource) shares: the
//! public settings types ([`StartPosition`], [`StreamRef`], [`KinesisStats`]),
//! the state one source's tasks hold in common ([`Shared`], [`Settings`],
//! [`Counters`]), and the per-shard helpers both readers use (where a
//! reader starts, why it stopped, the backoff, turning Kinesis records into
//! [`Record`]s, what to do after a failed call).
//!
//! It depends only on [`super::error`] and [`super::unpack`]; the polling
//! reader ([`super::reader`]), the enhanced fan-out reader ([`super::efo`])
//! and the coordinator ([`super::source`]) depend on it, never the other way.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::Client;
use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use super::error::CallError;
use crate::SourceError;
use crate::checkpoint::CheckpointStore;
use crate::record::{Batch, Record, Sequence, ShardId};
use crate::util::{hash_str, unit_f64};

/// Where to start reading a shard that has no checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest record still in the stream (`TRIM_HORIZON`).
    TrimHorizon,
    /// Only records written after the source started (`LATEST`), exactly.
    ///
    /// The start is pinned once, when [`build`](super::KinesisSourceBuilder::build)
    /// is called, and every shard without a checkpoint is read from it
    /// (`AT_TIMESTAMP` of that time), whatever its lineage and however many
    /// start-up calls fail and are retried: a retry never re-resolves the
    /// start, and no shard falls back to `TRIM_HORIZON`. Children created
    /// after the start hold only later records, so they are read whole. The
    /// pinned time is stored with the checkpoints
    /// ([`StreamMeta`](crate::checkpoint::StreamMeta)), so a restart over the
    /// same store keeps the first run's start for shards it never
    /// checkpointed, instead of skipping what was written while it was down.
    ///
    /// The boundary is Kinesis' `ApproximateArrivalTimestamp` against this
    /// host's clock: as exact as the two clocks agree.
    Latest,
    /// Records that arrived at or after this time (`AT_TIMESTAMP`).
    AtTimestamp(SystemTime),
}

/// A stream, named or by ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRef {
    /// A stream name, in the client's account and region.
    Name(String),
    /// A stream ARN, `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`.
    Arn(String),
}

impl StreamRef {
    /// Parses `s` as an ARN when it starts with `arn:`, else as a name.
    pub fn parse(s: impl Into<String>) -> Self {
        let s = s.into();
        if s.starts_with("arn:") {
            StreamRef::Arn(s)
        } else {
            StreamRef::Name(s)
        }
    }

    /// The stream's name: the part after `stream/` for an ARN. Checkpoints
    /// are stored under this name, so a name and an ARN of one stream share
    /// them.
    pub fn name(&self) -> &str {
        match self {
            StreamRef::Name(n) => n,
            StreamRef::Arn(a) => a.rsplit_once("stream/").map_or(a.as_str(), |(_, n)| n),
        }
    }
}

impl From<&str> for StreamRef {
    fn from(s: &str) -> Self {
        StreamRef::parse(s)
    }
}

impl From<String> for StreamRef {
    fn from(s: String) -> Self {
        StreamRef::parse(s)
    }
}

/// Counters a running [`KinesisSource`](super::KinesisSource) keeps; read with
/// [`KinesisSource::stats`](super::KinesisSource::stats). They are also exported through the `metrics`
/// crate as `streamsift_kinesis_*`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KinesisStats {
    /// GetRecords calls made (or SubscribeToShard calls, with enhanced fan-out).
    pub read_calls: u64,
    /// Records handed to the pipeline (user records, after de-aggregation).
    pub records: u64,
    /// Calls answered with a throttling error.
    pub throttled: u64,
    /// Calls that failed transiently (5xx, connection, timeout) and were retried.
    pub transient_errors: u64,
    /// Shard iterators renewed after `ExpiredIteratorException`.
    pub iterators_renewed: u64,
    /// KPL aggregates that failed to unpack (sent on as defective records).
    pub corrupt_aggregates: u64,
    /// Shards read to their end.
    pub shards_ended: u64,
    /// ListShards rounds.
    pub discoveries: u64,
    /// Per-shard entries the source holds now (shards known, finished,
    /// closed, pending a start): bounded by what ListShards reports, since
    /// shards that age out of the stream are released.
    pub shard_entries: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) read_calls: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) transient_errors: AtomicU64,
    pub(crate) iterators_renewed: AtomicU64,
    pub(crate) corrupt_aggregates: AtomicU64,
    pub(crate) shards_ended: AtomicU64,
    pub(crate) discoveries: AtomicU64,
    pub(crate) shard_entries: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> KinesisStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KinesisStats {
            read_calls: get(&self.read_calls),
            records: get(&self.records),
            throttled: get(&self.throttled),
            transient_errors: get(&self.transient_errors),
            iterators_renewed: get(&self.iterators_renewed),
            corrupt_aggregates: get(&self.corrupt_aggregates),
            shards_ended: get(&self.shards_ended),
            discoveries: get(&self.discoveries),
            shard_entries: get(&self.shard_entries),
        }
    }
}

/// Settings shared by every reader of one source.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) start: StartPosition,
    pub(crate) limit: i32,
    pub(crate) min_call_interval: Duration,
    pub(crate) idle_wait: Duration,
    pub(crate) discovery_interval: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) stop_at_tip: bool,
    pub(crate) resubscribe_after: Duration,
    pub(crate) seed: u64,
    pub(crate) list_page_size: i32,
    pub(crate) reset_on_new_incarnation: bool,
    pub(crate) startup_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            start: StartPosition::TrimHorizon,
            limit: 10_000,
            min_call_interval: Duration::from_millis(200),
            idle_wait: Duration::from_secs(1),
            discovery_interval: Duration::from_secs(60),
            call_timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            stop_at_tip: false,
            resubscribe_after: Duration::from_secs(300),
            seed: 0x5eed,
            list_page_size: 1000,
            reset_on_new_incarnation: false,
            startup_timeout: crate::aws::DEFAULT_STARTUP_TIMEOUT,
        }
    }
}

/// What every task of one source shares.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) stream: StreamRef,
    pub(crate) settings: Settings,
    pub(crate) store: Arc<dyn CheckpointStore>,
    pub(crate) counters: Counters,
    /// Enhanced fan-out consumer ARN, when enabled.
    pub(crate) consumer_arn: Option<String>,
    /// Where the client sends its calls, for messages: the endpoint URL, or
    /// the region's default endpoint.
    pub(crate) endpoint: String,
    /// Shards whose `SHARD_END` checkpoint is stored.
    pub(crate) finished: Mutex<HashSet<ShardId>>,
    /// Shards ListShards reports as closed (an ending sequence number).
    pub(crate) closed: Mutex<HashSet<ShardId>>,
    /// Wakes the coordinator (a `SHARD_END` was committed).
    pub(crate) wake: Notify,
}

impl Shared {
    /// Whether ListShards has reported `shard` closed.
    pub(crate) fn is_closed(&self, shard: &ShardId) -> bool {
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(shard)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client holds credentials: never print it.
        f.debug_struct("Shared")
            .field("stream", &self.stream)
            .field("settings", &self.settings)
            .field("store", &self.store)
            .field("consumer_arn", &self.consumer_arn)
            .finish_non_exhaustive()
    }
}

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
    pub(crate) fn done(&self, seq: &Sequence) -> bool {
        seq.number == self.number && seq.sub_sequence.is_none_or(|s| s <= self.sub)
    }
}

/// Turns one Kinesis record into [`Record`]s (see [`unpack`](super::unpack::unpack)),
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
    if let Some(e) = super::unpack::unpack(
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

/// How long a streak of failed calls stays quiet (debug logs only) before
/// one warning says the source has been retrying this long.
pub(crate) const QUIET_RETRIES: Duration = Duration::from_secs(10);

/// A run of failed calls of one task, from its first failure to the next
/// success: counts the attempts for the backoff, and says once when it has
/// lasted longer than [`QUIET_RETRIES`].
#[derive(Debug, Default)]
pub(crate) struct Streak {
    failures: u32,
    since: Option<tokio::time::Instant>,
    warned: bool,
}

impl Streak {
    /// Counts one more failure; returns the failures so far.
    pub(crate) fn fail(&mut self) -> u32 {
        self.failures += 1;
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.failures
    }

    /// A call succeeded: the streak is over.
    pub(crate) fn reset(&mut self) {
        *self = Streak::default();
    }

    /// How long the streak has lasted, the first time it is found longer
    /// than [`QUIET_RETRIES`]; `None` before that and after.
    pub(crate) fn long(&mut self) -> Option<Duration> {
        let lasted = self.since?.elapsed();
        if self.warned || lasted < QUIET_RETRIES {
            return None;
        }
        self.warned = true;
        Some(lasted)
    }
}

/// What a reader does after a failed call: `Ok(())` to retry after the
/// backoff it slept, `Err(exit)` to stop.
///
/// Retries are quiet (debug) while short; once a streak has lasted
/// [`QUIET_RETRIES`], one warning says so, with the last error.
pub(crate) async fn after_failure(
    shared: &Shared,
    shard: &ShardId,
    op: &'static str,
    err: CallError,
    streak: &mut Streak,
    tx: &mpsc::Sender<Result<Batch, SourceError>>,
) -> Result<(), ReaderExit> {
    let failures = streak.fail();
    let label = shard.to_string();
    let last = match err {
        CallError::Throttled(e) => {
            shared.counters.throttled.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("streamsift_kinesis_throttled_total", "shard" => label, "operation" => op).increment(1);
            tracing::debug!(%shard, operation = op, error = %e, attempt = failures, "throttled; retrying");
            e.to_string()
        }
        CallError::Transient(e) | CallError::InUse(e) => {
            shared
                .counters
                .transient_errors
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("streamsift_kinesis_transient_errors_total", "shard" => label, "operation" => op).increment(1);
            tracing::debug!(%shard, operation = op, error = %e, attempt = failures, "transient error; retrying");
            e.to_string()
        }
        CallError::Expired => {
            // Not expected from GetShardIterator; back off like a transient
            // error rather than asking again at once.
            shared
                .counters
                .transient_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%shard, operation = op, attempt = failures, "unexpected ExpiredIteratorException; retrying");
            "unexpected ExpiredIteratorException".to_owned()
        }
        CallError::Permanent(e) | CallError::NotFound(e) => {
            tracing::error!(%shard, error = %e, "permanent error; stopping the source");
            let e = SourceError::permanent(format!("shard {shard}: {e}")).with_source(e);
            return Err(if tx.send(Err(e)).await.is_ok() {
                ReaderExit::Failed
            } else {
                ReaderExit::Closed
            });
        }
    };
    if let Some(lasted) = streak.long() {
        tracing::warn!(
            %shard,
            operation = op,
            attempts = failures,
            ?lasted,
            last_error = %last,
            endpoint = %shared.endpoint,
            "Kinesis calls for this shard have failed for {lasted:?}; still retrying (check the \
             endpoint, the region, the network and the stream's limits)"
        );
    }
    tokio::time::sleep(backoff(
        &shared.settings,
        failures,
        hash_str(shard.as_str()),
    ))
    .await;
    Ok(())
}

/// Where `client` sends its calls, for messages: `endpoint_url` when it is
/// known (the SDK configuration's), else the default endpoint of the
/// client's region.
pub(crate) fn endpoint_of(client: &Client, endpoint_url: Option<&str>) -> String {
    match (endpoint_url, client.config().region()) {
        (Some(url), _) => url.to_owned(),
        (None, Some(region)) => format!("the default endpoint of region {region}"),
        (None, None) => "no endpoint (no region is configured)".to_owned(),
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Everything a `tracing` subscriber writes, to read back.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn shared() -> Shared {
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .build();
        Shared {
            client: Client::from_conf(config),
            stream: StreamRef::parse("tweets"),
            settings: Settings {
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                ..Settings::default()
            },
            store: Arc::new(crate::checkpoint::MemoryCheckpointStore::new()),
            counters: Counters::default(),
            consumer_arn: None,
            endpoint: "http://127.0.0.1:1".to_owned(),
            finished: Mutex::default(),
            closed: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// Steady-state retries log nothing at warn while a streak of failures
    /// is shorter than `QUIET_RETRIES`, then one warning that says how long
    /// it has lasted; a success starts a new streak. Virtual time.
    #[tokio::test(start_paused = true)]
    async fn retries_are_quiet_while_short_then_warn_once() {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let shared = shared();
        let shard = ShardId::new("shardId-000000000000");
        let (tx, _rx) = mpsc::channel(1);
        let warnings = || {
            String::from_utf8_lossy(&logs.0.lock().unwrap())
                .matches("WARN")
                .count()
        };
        let fail = || CallError::Transient(SourceError::unavailable("HTTP 503"));

        let mut streak = Streak::default();
        let started = tokio::time::Instant::now();
        let mut attempts = 0;
        while started.elapsed() < Duration::from_secs(9) {
            after_failure(&shared, &shard, "GetRecords", fail(), &mut streak, &tx)
                .await
                .expect("retryable");
            attempts += 1;
        }
        assert!(attempts > 5, "{attempts}");
        assert_eq!(warnings(), 0, "{attempts} quick retries, and a warning");
        while started.elapsed() < Duration::from_secs(40) {
            after_failure(&shared, &shard, "GetRecords", fail(), &mut streak, &tx)
                .await
                .expect("retryable");
        }
        assert_eq!(warnings(), 1, "one warning for a long streak");
        let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        assert!(text.contains("have failed for"), "{text}");
        assert!(
            text.contains("http://127.0.0.1:1"),
            "names the endpoint: {text}"
        );

        // A success ends the streak; a new long one warns again, once.
        streak.reset();
        let again = tokio::time::Instant::now();
        while again.elapsed() < Duration::from_secs(25) {
            after_failure(&shared, &shard, "GetRecords", fail(), &mut streak, &tx)
                .await
                .expect("retryable");
        }
        assert_eq!(warnings(), 2);
    }
}
