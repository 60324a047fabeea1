//! [`KinesisSource`]: every shard of a stream, read by one task per shard,
//! resumed from a [`CheckpointStore`], in parent-before-child order across
//! resharding. The builder and the coordinator: depends on
//! [`super::shared`], [`super::reader`], [`super::efo`] and
//! [`super::error`]; nothing in `kinesis` depends on it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use super::error::{CallError, StartupError, classify};
use super::shared::{
    Counters, KinesisStats, ReaderExit, Settings, Shared, StartAt, StartPosition, Streak,
    StreamRef, backoff, endpoint_of,
};
use super::{efo, reader};
use crate::checkpoint::{
    CheckpointStore, IncarnationMismatch, MemoryCheckpointStore, StreamIncarnation, StreamMeta,
    from_micros, to_micros,
};
use crate::record::{Batch, Checkpoint, Position, ShardId};
use crate::{Source, SourceError};

/// Builds a [`KinesisSource`]; see [`KinesisSource::builder`].
pub struct KinesisSourceBuilder {
    client: Client,
    stream: StreamRef,
    settings: Settings,
    store: Arc<dyn CheckpointStore>,
    channel_capacity: usize,
    consumer_name: Option<String>,
    /// The SDK configuration's endpoint URL, for messages.
    endpoint_url: Option<String>,
}

impl fmt::Debug for KinesisSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KinesisSourceBuilder")
            .field("stream", &self.stream)
            .field("settings", &self.settings)
            .field("store", &self.store)
            .field("channel_capacity", &self.channel_capacity)
            .field("consumer_name", &self.consumer_name)
            .finish_non_exhaustive()
    }
}

impl KinesisSourceBuilder {
    /// Where shards without a checkpoint start. Default: `TrimHorizon`.
    pub fn start_position(mut self, start: StartPosition) -> Self {
        self.settings.start = start;
        self
    }

    /// Where checkpoints are loaded from and committed to. Default: a
    /// [`MemoryCheckpointStore`], which forgets everything at exit; use a
    /// [`FileCheckpointStore`](crate::checkpoint::FileCheckpointStore) or the
    /// DynamoDB store in production.
    pub fn checkpoints(mut self, store: impl CheckpointStore + 'static) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Like [`checkpoints`](Self::checkpoints), for a store that is shared.
    pub fn checkpoints_shared(mut self, store: Arc<dyn CheckpointStore>) -> Self {
        self.store = store;
        self
    }

    /// The most records one GetRecords call asks for: 1 to 10,000 (the
    /// Kinesis maximum, and the default). Values outside are clamped.
    pub fn limit(mut self, limit: i32) -> Self {
        self.settings.limit = limit.clamp(1, 10_000);
        self
    }

    /// The shortest time between two GetRecords calls on one shard. Default
    /// 200 ms, which keeps each shard within Kinesis' 5 calls per second.
    /// Lower values are raised to 200 ms. It counts from when the previous
    /// call was handed to the HTTP client, so a call held back before it is
    /// sent (signing, a credentials refresh, a busy runtime) does not bring
    /// the next one closer to it.
    pub fn min_call_interval(mut self, interval: Duration) -> Self {
        self.settings.min_call_interval = interval.max(Duration::from_millis(200));
        self
    }

    /// How long a caught-up shard waits before polling again. Default 1 s.
    pub fn idle_wait(mut self, wait: Duration) -> Self {
        self.settings.idle_wait = wait;
        self
    }

    /// How often ListShards runs to find new shards. Default 60 s. A shard
    /// reaching its end triggers a ListShards at once as well.
    pub fn discovery_interval(mut self, interval: Duration) -> Self {
        self.settings.discovery_interval = interval;
        self
    }

    /// The deadline of each Kinesis call. Default 30 s.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.settings.call_timeout = timeout;
        self
    }

    /// Backoff after throttling or a transient error: exponential from
    /// `initial` up to `max`, with full jitter. Defaults 200 ms and 10 s.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.settings.initial_backoff = initial;
        self.settings.max_backoff = max.max(initial);
        self
    }

    /// End the source (`next_batch` returns `None`) once every shard is read
    /// up to the tip of the stream, instead of waiting for new records. For
    /// batch jobs, replays and tests. Default: off.
    pub fn stop_at_tip(mut self, stop: bool) -> Self {
        self.settings.stop_at_tip = stop;
        self
    }

    /// How many batches may wait between the readers and the pipeline, in
    /// all. Each batch is at most one GetRecords response (10 MiB), so this
    /// bounds the source's memory. Default 8.
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.channel_capacity = capacity.max(1);
        self
    }

    /// Read with enhanced fan-out: register (or reuse) the stream consumer
    /// `consumer_name` and receive records through SubscribeToShard over
    /// HTTP/2 instead of polling GetRecords.
    pub fn enhanced_fan_out(mut self, consumer_name: impl Into<String>) -> Self {
        self.consumer_name = Some(consumer_name.into());
        self
    }

    /// With enhanced fan-out, resubscribe after this long. Kinesis ends each
    /// subscription after 5 minutes, the default; the reader resubscribes
    /// from the last continuation sequence number either way.
    pub fn resubscribe_after(mut self, after: Duration) -> Self {
        self.settings.resubscribe_after = after;
        self
    }

    /// Shards asked for per ListShards page: 1 to 10,000. Default 1,000;
    /// streams with more shards are read over several pages.
    pub fn list_shards_page_size(mut self, size: i32) -> Self {
        self.settings.list_page_size = size.clamp(1, 10_000);
        self
    }

    /// What to do when the store's checkpoints belong to another incarnation
    /// of the stream (it was deleted and created again): `false` (default)
    /// fails the source at start-up with a permanent error whose source is
    /// an [`IncarnationMismatch`](crate::checkpoint::IncarnationMismatch);
    /// `true` resets the stream's checkpoints
    /// ([`CheckpointStore::reset`]) with a warning and starts over from the
    /// [`StartPosition`].
    pub fn reset_checkpoints_on_new_stream(mut self, reset: bool) -> Self {
        self.settings.reset_on_new_incarnation = reset;
        self
    }

    /// How long the source may take to start: to reach Kinesis and find the
    /// stream (DescribeStreamSummary, the first ListShards), and to register
    /// the enhanced fan-out consumer and see it ACTIVE. Default 30 s.
    ///
    /// A source that cannot reach Kinesis in that time (a closed
    /// `--endpoint-url`, a wrong region, no network, or only throttling and
    /// 5xx answers) fails with a permanent [`SourceError`] whose source is
    /// [`StartupError::Unreachable`]. A stream that does not exist fails at
    /// once, without retries ([`StartupError::StreamNotFound`]). After the
    /// start, failed calls are retried without end, quietly while a streak
    /// lasts less than 10 s, then with one warning.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.settings.startup_timeout = timeout;
        self
    }

    /// The seed of the backoff jitter. Default fixed, so runs repeat.
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = seed;
        self
    }

    /// Loads the checkpoints, registers the enhanced fan-out consumer if
    /// asked, and starts shard discovery and the readers.
    ///
    /// Fails if the checkpoint store cannot be read or the consumer cannot be
    /// registered within the
    /// [`startup_timeout`](KinesisSourceBuilder::startup_timeout). A missing
    /// stream ([`StartupError::StreamNotFound`], at once), a Kinesis that
    /// does not answer within the start-up timeout
    /// ([`StartupError::Unreachable`]), and checkpoints of another
    /// incarnation of the stream show up as a permanent error from the first
    /// [`next_batch`](Source::next_batch).
    pub async fn build(self) -> Result<KinesisSource, SourceError> {
        // The start of a LATEST source, pinned before any call is made.
        let started = SystemTime::now();
        let deadline = tokio::time::Instant::now() + self.settings.startup_timeout;
        let endpoint = endpoint_of(&self.client, self.endpoint_url.as_deref());
        let checkpoints = self.store.load(self.stream.name()).await?;
        let consumer_arn = match &self.consumer_name {
            Some(name) => Some(
                efo::register_consumer(&self.client, &self.stream, name, &self.settings, deadline)
                    .await?,
            ),
            None => None,
        };
        let finished = checkpoints
            .iter()
            .filter(|(_, p)| matches!(p, Position::ShardEnd))
            .map(|(s, _)| s.clone())
            .collect();
        let shared = Arc::new(Shared {
            client: self.client,
            stream: self.stream,
            settings: self.settings,
            store: self.store,
            counters: Counters::default(),
            consumer_arn,
            endpoint,
            finished: Mutex::new(finished),
            closed: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        });
        let (tx, rx) = mpsc::channel(self.channel_capacity);
        let task = tokio::spawn(coordinate(
            shared.clone(),
            tx,
            checkpoints,
            started,
            deadline,
        ));
        Ok(KinesisSource {
            shared,
            rx: tokio::sync::Mutex::new(rx),
            _task: AbortOnDrop(task),
        })
    }
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads every shard of a Kinesis data stream.
///
/// - **One reader task per shard**, started from the shard's checkpoint
///   (`AFTER_SEQUENCE_NUMBER`, or `AT_SEQUENCE_NUMBER` plus skipping the
///   user records already done when the checkpoint is inside a KPL
///   aggregate), or else from the [`StartPosition`].
/// - **GetRecords** at most once per 200 ms per shard (Kinesis allows 5
///   calls/s), at once again while `MillisBehindLatest > 0`, after
///   [`idle_wait`](KinesisSourceBuilder::idle_wait) when caught up. Expired
///   iterators are renewed after the last record read.
/// - **Throttling and transient errors** are retried inside the reader with
///   exponential backoff and full jitter, and counted
///   ([`stats`](Self::stats), metrics `streamsift_kinesis_*`). Permanent
///   errors (a missing stream, a refused permission) end the source with a
///   [`SourceError::Permanent`] that says what to do.
/// - **Resharding**: a shard's children start only after the shard, and both
///   parents of a merge, are read to the end *and* their `SHARD_END`
///   checkpoint is committed, so records of one partition key stay in order.
/// - **KPL aggregates** are unpacked into user records with sub-sequence
///   numbers; a corrupt aggregate becomes one record with
///   [`Record::defect`](crate::Record::defect) set, which the pipeline
///   dead-letters, and the shard goes on.
/// - **Memory is bounded**: readers wait when
///   [`channel_capacity`](KinesisSourceBuilder::channel_capacity) batches are
///   queued.
///
/// # Retries, and who decides them
///
/// The AWS SDK's own retries are turned off on the client the source uses,
/// so every Kinesis request is sent once per attempt and every retry is the
/// source's, paced and counted:
///
/// - **Start-up** (DescribeStreamSummary, the first ListShards, the
///   enhanced fan-out consumer): retried with backoff until the
///   [`startup_timeout`](KinesisSourceBuilder::startup_timeout) (default
///   30 s), then a permanent [`StartupError::Unreachable`]; a missing stream
///   fails at once ([`StartupError::StreamNotFound`]). The checkpoint
///   store's start-up calls (`load_meta`, `save_meta`, `reset`) are tried at
///   most 8 times each, with backoff.
/// - **Reading** (GetShardIterator, GetRecords, SubscribeToShard, later
///   ListShards): retried without end, with backoff up to
///   [`backoff`](KinesisSourceBuilder::backoff)'s maximum; quiet (debug
///   logs) while a streak of failures lasts under 10 s, then one warning
///   that names the endpoint and the last error.
/// - **Commits**: [`commit`](Source::commit) makes one `save` per call,
///   `SHARD_END` included; the pipeline's commit retry (its backoff, each
///   attempt within `call_timeout`, giving up after `commit_timeout`)
///   decides whether and when to try again. With the DynamoDB store, which
///   does not retry either, an attempt is at most `2 × (conflict_retries +
///   1)` requests per shard in the commit, each sent once.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use streamsift::checkpoint::FileCheckpointStore;
/// use streamsift::kinesis::{KinesisSource, StartPosition};
///
/// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let source = KinesisSource::builder(&config, "tweets")
///     .start_position(StartPosition::TrimHorizon)
///     .checkpoints(FileCheckpointStore::new("checkpoints"))
///     .build()
///     .await?;
/// # let _ = source; Ok(()) }
/// ```
pub struct KinesisSource {
    shared: Arc<Shared>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Result<Batch, SourceError>>>,
    _task: AbortOnDrop,
}

impl fmt::Debug for KinesisSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KinesisSource")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl KinesisSource {
    /// Starts building a source for `stream` (a name, or an ARN starting
    /// with `arn:`), with a Kinesis client made from `config` (credentials,
    /// region and endpoint URL come from it).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use streamsift::kinesis::KinesisSource;
    ///
    /// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    /// let source = KinesisSource::builder(&config, "tweets").build().await?;
    /// # let _ = source; Ok(()) }
    /// ```
    pub fn builder(
        config: &aws_config::SdkConfig,
        stream: impl Into<StreamRef>,
    ) -> KinesisSourceBuilder {
        let mut builder = Self::builder_from_client(Client::new(config), stream);
        builder.endpoint_url = config.endpoint_url().map(str::to_owned);
        builder
    }

    /// Like [`builder`](Self::builder), reading through `client` (for tests
    /// and custom HTTP clients). The client's own retries are turned off on
    /// the copy the source uses: the readers retry, pace and count every
    /// call themselves.
    pub fn builder_from_client(
        client: Client,
        stream: impl Into<StreamRef>,
    ) -> KinesisSourceBuilder {
        let conf = client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build();
        KinesisSourceBuilder {
            client: Client::from_conf(conf),
            stream: stream.into(),
            settings: Settings::default(),
            store: Arc::new(MemoryCheckpointStore::new()),
            channel_capacity: 8,
            consumer_name: None,
            endpoint_url: None,
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> KinesisStats {
        self.shared.counters.snapshot()
    }

    /// The stream this source reads.
    pub fn stream(&self) -> &StreamRef {
        &self.shared.stream
    }
}

impl Source for KinesisSource {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        // Cancel-safe: the pipeline drops this future on shutdown.
        let mut rx = self.rx.lock().await;
        match rx.recv().await {
            Some(Ok(batch)) => Ok(Some(batch)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        // One attempt: the pipeline's commit retry (backoff, commit_timeout)
        // decides whether and when to try again. Nothing is marked finished
        // until a save succeeds, so a shard's children wait for it.
        self.shared
            .store
            .save(self.shared.stream.name(), &checkpoints)
            .await?;
        let mut ended = false;
        {
            let mut finished = self
                .shared
                .finished
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for c in &checkpoints {
                if c.position == Position::ShardEnd {
                    ended |= finished.insert(c.shard.clone());
                }
            }
        }
        if ended {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

/// One shard as ListShards reported it.
#[derive(Clone, Debug)]
struct ShardInfo {
    parents: Vec<ShardId>,
    closed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Known, not started: waiting for its parents.
    Waiting,
    /// A reader task is running.
    Running,
    /// The reader sent the shard's last batch; its `SHARD_END` commit is
    /// awaited.
    Ended,
    /// Caught up and stopped (`stop_at_tip`), or its `SHARD_END` is stored.
    Idle,
}

async fn list_shards(shared: &Shared) -> Result<Vec<(ShardId, ShardInfo)>, CallError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = shared
            .client
            .list_shards()
            .max_results(shared.settings.list_page_size);
        req = match &token {
            // With a token, the stream must not be named again.
            Some(t) => req.next_token(t),
            None => match &shared.stream {
                StreamRef::Name(n) => req.stream_name(n),
                StreamRef::Arn(a) => req.stream_arn(a),
            },
        };
        let resp = match tokio::time::timeout(shared.settings.call_timeout, req.send()).await {
            Ok(r) => r.map_err(|e| classify("ListShards", e))?,
            Err(_) => {
                return Err(CallError::Transient(SourceError::unavailable(
                    "ListShards: timed out",
                )));
            }
        };
        for s in resp.shards() {
            let parents = s
                .parent_shard_id()
                .into_iter()
                .chain(s.adjacent_parent_shard_id())
                .map(ShardId::new)
                .collect();
            let closed = s
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_some();
            out.push((ShardId::new(s.shard_id()), ShardInfo { parents, closed }));
        }
        match resp.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

/// DescribeStreamSummary: the stream's incarnation. Throttling and
/// transient errors are retried with jittered backoff until the start-up
/// deadline, then the source fails with [`StartupError::Unreachable`]; a
/// missing stream fails at once with [`StartupError::StreamNotFound`], any
/// other permanent error at once as it is.
async fn describe(
    shared: &Shared,
    deadline: tokio::time::Instant,
) -> Result<StreamIncarnation, SourceError> {
    let mut failures = 0u32;
    loop {
        let mut req = shared.client.describe_stream_summary();
        req = match &shared.stream {
            StreamRef::Name(n) => req.stream_name(n),
            StreamRef::Arn(a) => req.stream_arn(a),
        };
        let err = match tokio::time::timeout(shared.settings.call_timeout, req.send()).await {
            Ok(Ok(resp)) => {
                let Some(d) = resp.stream_description_summary() else {
                    return Err(SourceError::permanent(
                        "DescribeStreamSummary returned no stream description; expected the \
                         stream's ARN and creation time",
                    ));
                };
                let created = d.stream_creation_timestamp();
                let created_ms = created
                    .secs()
                    .saturating_mul(1000)
                    .saturating_add(i64::from(created.subsec_nanos() / 1_000_000));
                return Ok(StreamIncarnation {
                    arn: d.stream_arn().to_string(),
                    created_ms,
                });
            }
            Ok(Err(e)) => classify("DescribeStreamSummary", e),
            Err(_) => CallError::timed_out("DescribeStreamSummary"),
        };
        failures += 1;
        let wait = startup_retry(shared, err, failures, deadline, 0xd5c)?;
        tracing::debug!(
            attempt = failures,
            ?wait,
            "DescribeStreamSummary failed; will retry"
        );
        tokio::time::sleep(wait).await;
    }
}

/// After a failed start-up call: the pause before the next attempt, or the
/// error that ends the start-up: a missing stream at once, any other
/// permanent error at once, and retryable ones once the next attempt would
/// start after `deadline`.
fn startup_retry(
    shared: &Shared,
    err: CallError,
    failures: u32,
    deadline: tokio::time::Instant,
    key: u64,
) -> Result<std::time::Duration, SourceError> {
    let (StreamRef::Name(stream) | StreamRef::Arn(stream)) = shared.stream.clone();
    match err {
        CallError::NotFound(e) => {
            let typed = StartupError::StreamNotFound {
                stream,
                endpoint: shared.endpoint.clone(),
                detail: e.to_string(),
            };
            Err(SourceError::permanent(typed.to_string()).with_source(typed))
        }
        CallError::Permanent(e) => Err(e),
        other => {
            count_failure(shared, &other);
            let wait = backoff(&shared.settings, failures, key);
            let now = tokio::time::Instant::now();
            if now + wait < deadline {
                return Ok(wait);
            }
            let typed = StartupError::Unreachable {
                endpoint: shared.endpoint.clone(),
                stream,
                timeout: shared.settings.startup_timeout,
                attempts: failures,
                last: other.into_source_error().to_string(),
            };
            tracing::error!(error = %typed, "the Kinesis source could not start");
            Err(SourceError::permanent(typed.to_string()).with_source(typed))
        }
    }
}

fn count_failure(shared: &Shared, err: &CallError) {
    if matches!(err, CallError::Throttled(_)) {
        shared.counters.throttled.fetch_add(1, Ordering::Relaxed);
    } else {
        shared
            .counters
            .transient_errors
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs a store call, retrying retryable errors with jittered backoff (at
/// most `STORE_TRIES` tries).
async fn with_store_retries<T, F, Fut>(
    shared: &Shared,
    what: &str,
    mut call: F,
) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::CheckpointError>>,
{
    let mut failures = 0u32;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && failures + 1 < STORE_TRIES => {
                failures += 1;
                let wait = backoff(&shared.settings, failures, 0x57e);
                tracing::warn!(error = %e, operation = what, ?wait, "checkpoint store failed; will retry");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Tries of one checkpoint store call at start-up.
const STORE_TRIES: u32 = 8;

/// Start-up: checks that the checkpoints belong to the stream's current
/// incarnation (or resets them, if asked), stores the incarnation, and
/// returns the time a `LATEST` source reads from: the pinned time of an
/// earlier run over this store, or `started`.
async fn start_up(
    shared: &Shared,
    checkpoints: &mut BTreeMap<ShardId, Position>,
    started: SystemTime,
    deadline: tokio::time::Instant,
) -> Result<SystemTime, SourceError> {
    let stream = shared.stream.name();
    let current = describe(shared, deadline).await?;
    let mut meta =
        with_store_retries(shared, "load_meta", || shared.store.load_meta(stream)).await?;
    match meta.as_ref().and_then(|m| m.incarnation.as_ref()) {
        Some(found) if *found != current => {
            let mismatch = IncarnationMismatch {
                stream: stream.to_string(),
                found: found.clone(),
                expected: current.clone(),
            };
            if !shared.settings.reset_on_new_incarnation {
                return Err(SourceError::permanent(mismatch.to_string()).with_source(mismatch));
            }
            tracing::warn!(
                %stream,
                found = %mismatch.found,
                expected = %mismatch.expected,
                "checkpoints belong to another incarnation of the stream: resetting them"
            );
            with_store_retries(shared, "reset", || shared.store.reset(stream)).await?;
            checkpoints.clear();
            shared
                .finished
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            meta = None;
        }
        Some(_) => {}
        None if !checkpoints.is_empty() => {
            tracing::warn!(
                %stream,
                incarnation = %current,
                "the stored checkpoints name no stream incarnation (written by an older \
                 streamsift or a store that keeps none): adopting them for the stream as it is now"
            );
        }
        None => {}
    }
    let pinned = meta.as_ref().and_then(|m| m.latest_at_us);
    let latest_at = pinned.map_or(started, from_micros);
    let wanted = StreamMeta::new(
        Some(current),
        match shared.settings.start {
            StartPosition::Latest => Some(pinned.unwrap_or_else(|| to_micros(started))),
            _ => pinned,
        },
    );
    if meta.as_ref() != Some(&wanted) {
        with_store_retries(shared, "save_meta", || {
            shared.store.save_meta(stream, &wanted)
        })
        .await?;
    }
    Ok(latest_at)
}

/// Finds shards, starts readers in lineage order, and ends the channel when
/// `stop_at_tip` is set and nothing is left to read.
async fn coordinate(
    shared: Arc<Shared>,
    tx: mpsc::Sender<Result<Batch, SourceError>>,
    mut checkpoints: BTreeMap<ShardId, Position>,
    started: SystemTime,
    deadline: tokio::time::Instant,
) {
    let latest_at = match start_up(&shared, &mut checkpoints, started, deadline).await {
        Ok(t) => t,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    let mut known: HashMap<ShardId, (ShardInfo, State)> = HashMap::new();
    // Shards that continue what an earlier run read: those with a
    // checkpoint, and children started because a parent was one. Their
    // children read from TRIM_HORIZON, whatever the start position.
    let mut continued: HashSet<ShardId> = checkpoints.keys().cloned().collect();
    let mut readers: JoinSet<(ShardId, ReaderExit)> = JoinSet::new();
    let mut discover = true;
    let mut streak = Streak::default();
    // Until the first listing, failures count against the start-up deadline.
    let mut listed_once = false;
    let mut next_discovery = tokio::time::Instant::now();
    loop {
        if discover || tokio::time::Instant::now() >= next_discovery {
            discover = false;
            shared.counters.discoveries.fetch_add(1, Ordering::Relaxed);
            match list_shards(&shared).await {
                Ok(shards) => {
                    streak.reset();
                    listed_once = true;
                    next_discovery =
                        tokio::time::Instant::now() + shared.settings.discovery_interval;
                    let listed: HashSet<ShardId> =
                        shards.iter().map(|(id, _)| id.clone()).collect();
                    {
                        let mut closed = shared.closed.lock().unwrap_or_else(|p| p.into_inner());
                        closed.extend(
                            shards
                                .iter()
                                .filter(|(_, i)| i.closed)
                                .map(|(id, _)| id.clone()),
                        );
                    }
                    for (id, info) in shards {
                        if let Some((known_info, _)) = known.get_mut(&id) {
                            known_info.closed |= info.closed;
                            continue;
                        }
                        if !info.parents.is_empty()
                            && let Err(e) = shared
                                .store
                                .record_lineage(shared.stream.name(), &id, &info.parents)
                                .await
                        {
                            tracing::warn!(shard = %id, error = %e, "could not record shard lineage");
                        }
                        known.insert(id, (info, State::Waiting));
                    }
                    prune(
                        &shared,
                        &listed,
                        &mut known,
                        &mut continued,
                        &mut checkpoints,
                    );
                }
                Err(err) if !listed_once => {
                    let failures = streak.fail();
                    match startup_retry(&shared, err, failures, deadline, u64::MAX) {
                        Ok(wait) => {
                            tracing::debug!(
                                attempt = failures,
                                ?wait,
                                "ListShards failed; will retry"
                            );
                            next_discovery = tokio::time::Instant::now() + wait;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
                Err(err @ (CallError::Permanent(_) | CallError::NotFound(_))) => {
                    let _ = tx.send(Err(err.into_source_error())).await;
                    return;
                }
                Err(other) => {
                    let failures = streak.fail();
                    count_failure(&shared, &other);
                    let wait = backoff(&shared.settings, failures, u64::MAX);
                    if let Some(lasted) = streak.long() {
                        tracing::warn!(
                            attempts = failures,
                            ?lasted,
                            last_error = %other.into_source_error(),
                            endpoint = %shared.endpoint,
                            "ListShards has failed for {lasted:?}; still retrying (check the \
                             endpoint, the region and the network)"
                        );
                    } else {
                        tracing::debug!(attempt = failures, ?wait, "ListShards failed; will retry");
                    }
                    next_discovery = tokio::time::Instant::now() + wait;
                }
            }
        }

        // Start every waiting shard whose parents are all done. A parent
        // that ListShards no longer reports has aged out of the stream and
        // counts as done.
        let finished = shared
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let ready: Vec<ShardId> = known
            .iter()
            .filter(|(id, (info, state))| {
                *state == State::Waiting
                    && !finished.contains(*id)
                    && info
                        .parents
                        .iter()
                        .all(|p| finished.contains(p) || !known.contains_key(p))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ready {
            let start = match checkpoints.remove(&id) {
                Some(Position::Sequence(seq)) => StartAt::After(seq),
                Some(Position::ShardEnd) => continue,
                None => {
                    let continues = known.get(&id).is_some_and(|(info, _)| {
                        info.parents.iter().any(|p| continued.contains(p))
                    });
                    if continues {
                        // An earlier run read the parent: go on from the
                        // child's first record, so nothing between is lost.
                        continued.insert(id.clone());
                        StartAt::TrimHorizon
                    } else {
                        match shared.settings.start {
                            StartPosition::TrimHorizon => StartAt::TrimHorizon,
                            StartPosition::AtTimestamp(t) => StartAt::Timestamp(t),
                            // Pinned once: retries and shards found later
                            // read from the same instant.
                            StartPosition::Latest => StartAt::Timestamp(latest_at),
                        }
                    }
                }
            };
            if let Some((_, state)) = known.get_mut(&id) {
                *state = State::Running;
            }
            tracing::debug!(shard = %id, ?start, "starting shard reader");
            let shared = shared.clone();
            let tx = tx.clone();
            readers.spawn(async move {
                let exit = if shared.consumer_arn.is_some() {
                    efo::run(&shared, &id, start, &tx).await
                } else {
                    reader::run(&shared, &id, start, &tx).await
                };
                (id, exit)
            });
        }
        // Shards whose SHARD_END is stored never need a reader.
        for (id, (_, state)) in known.iter_mut() {
            if matches!(*state, State::Waiting | State::Ended) && finished.contains(id) {
                *state = State::Idle;
            }
        }
        let entries = known.len()
            + finished.len()
            + continued.len()
            + checkpoints.len()
            + shared
                .closed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len();
        shared
            .counters
            .shard_entries
            .store(entries as u64, Ordering::Relaxed);

        if shared.settings.stop_at_tip
            && readers.is_empty()
            && !known
                .values()
                .any(|(_, s)| matches!(s, State::Waiting | State::Ended))
            && !known.is_empty()
        {
            tracing::debug!("every shard read to the tip: ending the source");
            return;
        }
        if tx.is_closed() {
            return;
        }

        tokio::select! {
            Some(joined) = readers.join_next(), if !readers.is_empty() => {
                match joined {
                    Ok((id, exit)) => {
                        let state = match exit {
                            ReaderExit::ShardEnd => {
                                shared.counters.shards_ended.fetch_add(1, Ordering::Relaxed);
                                // Its children should exist now: look at once.
                                discover = true;
                                State::Ended
                            }
                            ReaderExit::CaughtUp => State::Idle,
                            ReaderExit::Failed | ReaderExit::Closed => {
                                return;
                            }
                        };
                        if let Some((_, s)) = known.get_mut(&id) {
                            *s = state;
                        }
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(SourceError::permanent(format!("a shard reader panicked: {e}"))))
                            .await;
                        return;
                    }
                }
            }
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(next_discovery) => {}
        }
    }
}

/// Releases the shards ListShards no longer reports (aged out of the
/// stream) once no reader runs for them, so the source's per-shard state is
/// bounded by the listing, not by the stream's history. A shard stays in
/// `continued` while a waiting child still needs to know it was read.
fn prune(
    shared: &Shared,
    listed: &HashSet<ShardId>,
    known: &mut HashMap<ShardId, (ShardInfo, State)>,
    continued: &mut HashSet<ShardId>,
    checkpoints: &mut BTreeMap<ShardId, Position>,
) {
    known.retain(|id, (_, state)| {
        listed.contains(id) || matches!(*state, State::Running | State::Ended)
    });
    let awaited: HashSet<ShardId> = known
        .values()
        .filter(|(_, s)| *s == State::Waiting)
        .flat_map(|(info, _)| info.parents.iter().cloned())
        .collect();
    continued.retain(|id| known.contains_key(id) || awaited.contains(id));
    checkpoints.retain(|id, _| known.contains_key(id));
    shared
        .finished
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|id| known.contains_key(id));
    shared
        .closed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|id| known.contains_key(id));
}
