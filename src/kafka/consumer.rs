//! The consumer thread, the rebalance callback and the [`Source`] impl.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::Notify;

use crate::error::SourceError;
use crate::record::{Batch, Checkpoint, Position, Record, Sequence, ShardId};
use crate::source::Source;

/// Where a group with no committed offset for a partition starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartFrom {
    /// The oldest record the broker keeps (`auto.offset.reset=earliest`).
    Earliest,
    /// Only records written after the group first reads the partition
    /// (`auto.offset.reset=latest`).
    Latest,
}

/// Builds a [`KafkaSource`]: `KafkaSource::builder(brokers, group).topic(..).build().await`.
#[must_use = "a builder does nothing until `.build().await`"]
pub struct KafkaSourceBuilder {
    brokers: String,
    group: String,
    topics: Vec<String>,
    start: StartFrom,
    batch_size: usize,
    max_buffered: usize,
    drain_timeout: Duration,
    startup_timeout: Duration,
    session_timeout: Duration,
    stop_at_tip: bool,
    client_config: Vec<(String, String)>,
}

impl fmt::Debug for KafkaSourceBuilder {
    // Extra client settings may hold SASL passwords: show their keys only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSourceBuilder")
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .field("topics", &self.topics)
            .field("start", &self.start)
            .field("batch_size", &self.batch_size)
            .field("max_buffered", &self.max_buffered)
            .field("drain_timeout", &self.drain_timeout)
            .field("startup_timeout", &self.startup_timeout)
            .field("session_timeout", &self.session_timeout)
            .field("stop_at_tip", &self.stop_at_tip)
            .field(
                "client_config_keys",
                &self
                    .client_config
                    .iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KafkaSourceBuilder {
    /// Adds a topic to read (at least one).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Where to start on a partition the group has no commit for. Default:
    /// [`StartFrom::Earliest`].
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// At most this many records per [`Batch`] (default 500).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// At most this many records read but not yet handed to the pipeline
    /// (default 5000); past it the partitions are paused.
    pub fn max_buffered(mut self, n: usize) -> Self {
        self.max_buffered = n.max(1);
        self
    }

    /// How long a revoke waits for the pipeline to finish and commit the
    /// records it was given of the revoked partitions (default 10 s). Keep
    /// it below the group's rebalance timeout (`max.poll.interval.ms`,
    /// 300 s by default) and near the pipeline's `record_timeout`.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Bounds the start-up check (brokers answer, topics exist). Default 10 s.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// The group session timeout (`session.timeout.ms`, default 10 s): a
    /// member that stops heartbeating for this long is removed from the group.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// End the stream (`Ok(None)`) once every partition assigned to this
    /// member is read to its end and handed out, instead of waiting for new
    /// records: for backfills and tests. A member with no partition (more
    /// members than partitions) does not end. Needs exactly one topic
    /// (librdkafka reports the end of a partition by number only).
    pub fn stop_at_tip(mut self, stop: bool) -> Self {
        self.stop_at_tip = stop;
        self
    }

    /// Sets any other librdkafka client property (`security.protocol`,
    /// `sasl.mechanism`, `client.id`, ...). Values are never logged or shown
    /// by `Debug`. The properties this source relies on (`group.id`,
    /// `enable.auto.commit`, `enable.auto.offset.store`,
    /// `enable.partition.eof`) cannot be overridden.
    pub fn client_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client_config.push((key.into(), value.into()));
        self
    }

    /// Checks the brokers answer and every topic exists (bounded by
    /// `startup_timeout`), then joins the group.
    ///
    /// # Errors
    /// Permanent: no topic given, `stop_at_tip` with several topics, a
    /// property librdkafka refuses, a topic that does not exist. Retryable:
    /// the brokers did not answer in time.
    pub async fn build(self) -> Result<KafkaSource, SourceError> {
        if self.topics.is_empty() {
            return Err(SourceError::permanent(
                "add a topic with `.topic(\"name\")`: a KafkaSource was built with no topic",
            ));
        }
        if self.stop_at_tip && self.topics.len() > 1 {
            return Err(SourceError::permanent(format!(
                "use stop_at_tip(true) with one topic: it was set with {} topics",
                self.topics.len()
            )));
        }
        let shared = Arc::new(Shared::new(self.drain_timeout));
        let mut config = ClientConfig::new();
        for (k, v) in &self.client_config {
            config.set(k, v);
        }
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set(
                "auto.offset.reset",
                match self.start {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            )
            .set(
                "session.timeout.ms",
                self.session_timeout.as_millis().to_string(),
            )
            .set_log_level(RDKafkaLogLevel::Warning);
        let consumer: BaseConsumer<GroupContext> = config
            .create_with_context(GroupContext {
                shared: shared.clone(),
            })
            .map_err(|e| {
                SourceError::permanent(format!(
                    "fix the Kafka client settings: librdkafka refused them ({})",
                    kafka_code(&e)
                ))
                .with_source(e)
            })?;
        let left = Arc::new(Left::default());
        let consumer = Arc::new(Member {
            consumer,
            _left: LeftSignal(left.clone()),
        });

        // Fail fast: the brokers answer and each topic exists.
        let check = consumer.clone();
        let topics = self.topics.clone();
        let brokers = self.brokers.clone();
        let timeout = self.startup_timeout;
        tokio::task::spawn_blocking(move || {
            check_topics(&check.consumer, &brokers, &topics, timeout)
        })
        .await
        .map_err(|e| SourceError::unavailable("start-up check panicked").with_source(e))??;

        let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.consumer.subscribe(&names).map_err(|e| {
            SourceError::permanent(format!("subscribe to {:?} failed", self.topics)).with_source(e)
        })?;
        let thread = {
            let consumer = consumer.clone();
            let shared = shared.clone();
            let batch_size = self.batch_size;
            let max_buffered = self.max_buffered;
            let topic = self.topics[0].clone();
            std::thread::Builder::new()
                .name("streamsift-kafka".into())
                .spawn(move || {
                    poll_loop(
                        &consumer.consumer,
                        &shared,
                        batch_size,
                        max_buffered,
                        &topic,
                    )
                })
                .map_err(|e| {
                    SourceError::unavailable("could not start the Kafka consumer thread")
                        .with_source(e)
                })?
        };
        tracing::info!(group = %self.group, topics = ?self.topics, "kafka source started");
        Ok(KafkaSource {
            consumer,
            left,
            shared,
            stop_at_tip: self.stop_at_tip,
            thread: Some(thread),
        })
    }
}

fn check_topics(
    consumer: &BaseConsumer<GroupContext>,
    brokers: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<(), SourceError> {
    for topic in topics {
        let meta = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
            SourceError::unavailable(format!(
                "check the bootstrap servers: Kafka at {brokers} did not answer within \
                     {timeout:?} ({})",
                kafka_code(&e)
            ))
            .with_source(e)
        })?;
        let found = meta
            .topics()
            .iter()
            .find(|t| t.name() == topic.as_str())
            .filter(|t| t.error().is_none() && !t.partitions().is_empty());
        if found.is_none() {
            return Err(SourceError::permanent(format!(
                "create topic {topic:?} or fix its name: the brokers at {brokers} do not have it"
            )));
        }
    }
    Ok(())
}

/// The name of librdkafka's error code, without any text it quoted.
fn kafka_code(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "client error".to_string(),
    }
}

/// Maps a librdkafka error to the crate's classes.
fn source_error(what: &str, e: KafkaError) -> SourceError {
    let code = e.rdkafka_error_code();
    let message = format!("{what}: {}", kafka_code(&e));
    let permanent = matches!(
        code,
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::InvalidGroupId
                | RDKafkaErrorCode::InvalidConfig
                | RDKafkaErrorCode::OffsetMetadataTooLarge
        )
    );
    if permanent {
        SourceError::permanent(message).with_source(e)
    } else {
        SourceError::unavailable(message).with_source(e)
    }
}

/// One assignment of one partition to this member: a shard.
struct Assigned {
    topic: String,
    partition: i32,
    /// The last offset handed to the pipeline.
    handed: Option<i64>,
    /// The last offset the pipeline reported done (committed).
    done: Option<i64>,
    /// False once revoked: its records are no longer handed out and its
    /// commits no longer sent.
    live: bool,
    /// Read to the end of the partition, as far as the consumer knows.
    at_end: bool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Batch>,
    buffered: usize,
    /// Live shards by (topic, partition).
    current: HashMap<(String, i32), ShardId>,
    shards: HashMap<ShardId, Assigned>,
    /// How many times each partition was assigned to this source.
    generations: HashMap<(String, i32), u64>,
    /// A failure the next `next_batch` reports.
    error: Option<SourceError>,
    /// The source was dropped: revokes do not wait for the pipeline.
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the rebalance callback when the pipeline commits.
    committed: Condvar,
    /// Wakes `next_batch` when there is something to hand out.
    ready: Notify,
    drain_timeout: Duration,
}

impl Shared {
    fn new(drain_timeout: Duration) -> Self {
        Shared {
            state: Mutex::new(State::default()),
            committed: Condvar::new(),
            ready: Notify::new(),
            drain_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain bookkeeping behind;
        // keep going rather than poisoning every later call.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct GroupContext {
    shared: Arc<Shared>,
}

/// The consumer, and the signal that it has left the group: fields drop in
/// order, so the signal fires once the consumer is closed.
struct Member {
    consumer: BaseConsumer<GroupContext>,
    _left: LeftSignal,
}

#[derive(Default)]
struct Left {
    done: std::sync::atomic::AtomicBool,
    notify: Notify,
}

struct LeftSignal(Arc<Left>);

impl Drop for LeftSignal {
    fn drop(&mut self) {
        self.0.done.store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }
}

/// Resolves once a [`KafkaSource`] (dropped or [closed](KafkaSource::close))
/// has closed its consumer and so left the group. From
/// [`KafkaSource::closed_handle`].
#[derive(Clone)]
pub struct ClosedHandle(Arc<Left>);

impl fmt::Debug for ClosedHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClosedHandle")
            .field(&self.0.done.load(std::sync::atomic::Ordering::SeqCst))
            .finish()
    }
}

impl ClosedHandle {
    /// Waits until the consumer is closed.
    pub async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.0.done.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, _log_message: &str) {
        // librdkafka's messages may quote broker answers; keep the facility
        // and level only, at debug.
        tracing::debug!(?level, fac, "librdkafka log");
    }

    fn error(&self, error: KafkaError, _reason: &str) {
        // Client-level errors (a broker down, a failed resolve): librdkafka
        // retries them itself.
        tracing::warn!(code = %kafka_code(&error), "librdkafka error");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let mut st = self.shared.lock();
                for e in list.elements() {
                    let key = (e.topic().to_string(), e.partition());
                    let n = st.generations.entry(key.clone()).or_insert(0);
                    *n += 1;
                    let shard = ShardId::new(format!("{}/{}@{}", key.0, key.1, n));
                    st.shards.insert(
                        shard.clone(),
                        Assigned {
                            topic: key.0.clone(),
                            partition: key.1,
                            handed: None,
                            done: None,
                            live: true,
                            at_end: false,
                        },
                    );
                    st.current.insert(key, shard);
                }
                tracing::info!(partitions = list.count(), "kafka partitions assigned");
                drop(st);
                self.shared.ready.notify_one();
            }
            Rebalance::Revoke(list) => self.revoke(consumer, list),
            Rebalance::Error(e) => {
                tracing::warn!(code = %kafka_code(e), "kafka rebalance error");
            }
        }
    }
}

impl GroupContext {
    /// Revoke -> drain -> commit, before librdkafka gives the partitions up.
    fn revoke(&self, consumer: &BaseConsumer<Self>, list: &TopicPartitionList) {
        let shared = &self.shared;
        let mut st = shared.lock();
        let mut revoked = Vec::new();
        for e in list.elements() {
            let key = (e.topic().to_string(), e.partition());
            if let Some(shard) = st.current.remove(&key) {
                if let Some(a) = st.shards.get_mut(&shard) {
                    a.live = false;
                }
                revoked.push(shard);
            }
        }
        // Stop handing out their records.
        let revoked_set: HashSet<&ShardId> = revoked.iter().collect();
        let before = st.queue.len();
        let mut dropped = 0;
        st.queue.retain(|b| {
            let keep = !revoked_set.contains(&b.shard);
            if !keep {
                dropped += b.records.len();
            }
            keep
        });
        st.buffered -= dropped;
        let dropped_batches = before - st.queue.len();
        // Drain: wait (bounded) until the pipeline committed what it was given.
        let deadline = Instant::now() + shared.drain_timeout;
        let drained = |st: &State| {
            revoked.iter().all(|s| {
                st.shards
                    .get(s)
                    .is_none_or(|a| a.handed.is_none() || a.done >= a.handed)
            })
        };
        while !st.closing && !drained(&st) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = shared
                .committed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let complete = drained(&st);
        // Commit what is done, then forget the shards.
        let mut offsets = TopicPartitionList::new();
        for shard in &revoked {
            if let Some(a) = st.shards.remove(shard)
                && let Some(done) = a.done
            {
                let _ =
                    offsets.add_partition_offset(&a.topic, a.partition, Offset::Offset(done + 1));
            }
        }
        drop(st);
        let result = if offsets.count() > 0 {
            consumer.commit(&offsets, CommitMode::Sync)
        } else {
            Ok(())
        };
        match result {
            Ok(()) => tracing::info!(
                partitions = revoked.len(),
                committed = offsets.count(),
                drained = complete,
                dropped_batches,
                "kafka partitions revoked"
            ),
            Err(e) => tracing::warn!(
                partitions = revoked.len(),
                code = %kafka_code(&e),
                "kafka partitions revoked; the commit of their done records failed \
                 (the new owner reads them again)"
            ),
        }
    }
}

/// The consumer thread: polls, groups messages into batches, pauses when
/// the buffer is full. Rebalance callbacks run here, inside `poll`.
fn poll_loop(
    consumer: &BaseConsumer<GroupContext>,
    shared: &Shared,
    batch_size: usize,
    max_buffered: usize,
    topic: &str,
) {
    let mut paused = false;
    let mut pending: Option<Batch> = None;
    loop {
        {
            let st = shared.lock();
            if st.closing {
                break;
            }
            let full = st.buffered >= max_buffered;
            let low = st.buffered <= max_buffered / 2;
            drop(st);
            // Paused again on every turn while full: partitions assigned by
            // a rebalance in between start unpaused.
            if full && let Ok(list) = consumer.assignment() {
                paused = consumer.pause(&list).is_ok() || paused;
            } else if paused
                && low
                && let Ok(list) = consumer.assignment()
            {
                paused = consumer.resume(&list).is_err();
            }
        }
        let wait = if pending.is_some() {
            Duration::ZERO
        } else {
            Duration::from_millis(100)
        };
        match consumer.poll(wait) {
            None => flush(shared, &mut pending),
            Some(Ok(msg)) => {
                let Some(record) = to_record(shared, &msg) else {
                    continue;
                };
                if pending
                    .as_ref()
                    .is_some_and(|b| b.shard != record.shard || b.records.len() >= batch_size)
                {
                    flush(shared, &mut pending);
                }
                pending
                    .get_or_insert_with(|| Batch::new(record.shard.clone(), Vec::new()))
                    .records
                    .push(record);
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                flush(shared, &mut pending);
                let mut st = shared.lock();
                if let Some(shard) = st.current.get(&(topic.to_string(), partition)).cloned()
                    && let Some(a) = st.shards.get_mut(&shard)
                {
                    a.at_end = true;
                }
                drop(st);
                shared.ready.notify_one();
            }
            Some(Err(e)) => {
                flush(shared, &mut pending);
                let err = source_error("the Kafka consumer failed", e);
                if err.is_retryable() {
                    tracing::warn!(error = %err, "kafka consumer error; librdkafka retries");
                } else {
                    tracing::error!(error = %err, "kafka consumer failed permanently");
                    shared.lock().error = Some(err);
                    shared.ready.notify_one();
                }
            }
        }
    }
    tracing::debug!("kafka consumer thread stopping");
}

/// A message as a record of its current shard; `None` if its partition is
/// no longer assigned here (a message fetched just before a revoke).
fn to_record(shared: &Shared, msg: &BorrowedMessage<'_>) -> Option<Record> {
    let key = (msg.topic().to_string(), msg.partition());
    let mut st = shared.lock();
    let shard = st.current.get(&key)?.clone();
    if let Some(a) = st.shards.get_mut(&shard) {
        a.at_end = false;
    }
    drop(st);
    let offset = u64::try_from(msg.offset()).ok()?;
    let arrival = msg
        .timestamp()
        .to_millis()
        .and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        .unwrap_or_else(SystemTime::now);
    Some(Record {
        id: format!("{}/{}:{}", key.0, key.1, offset),
        partition_key: msg
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        shard,
        sequence: Sequence::from_offset(offset),
        payload: Bytes::copy_from_slice(msg.payload().unwrap_or_default()),
        arrival,
        defect: None,
    })
}

fn flush(shared: &Shared, pending: &mut Option<Batch>) {
    let Some(batch) = pending.take() else {
        return;
    };
    let mut st = shared.lock();
    // Revoked while it was being gathered: drop it (never handed out).
    if !st.shards.get(&batch.shard).is_some_and(|a| a.live) {
        return;
    }
    st.buffered += batch.records.len();
    st.queue.push_back(batch);
    drop(st);
    shared.ready.notify_one();
}

/// One member of a Kafka consumer group, as a [`Source`]. See the
/// [module docs](crate::kafka) for how partitions, commits and rebalances
/// map onto the pipeline.
///
/// Dropping it stops its consumer thread, which then leaves the group
/// (records read but not committed come again to whoever reads next).
pub struct KafkaSource {
    consumer: Arc<Member>,
    left: Arc<Left>,
    shared: Arc<Shared>,
    stop_at_tip: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("KafkaSource")
            .field("assigned", &st.current.len())
            .field("buffered", &st.buffered)
            .field("stop_at_tip", &self.stop_at_tip)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// A builder for a member of consumer group `group`, bootstrapping from
    /// `brokers` (`host:port[,host:port...]`).
    pub fn builder(brokers: impl Into<String>, group: impl Into<String>) -> KafkaSourceBuilder {
        KafkaSourceBuilder {
            brokers: brokers.into(),
            group: group.into(),
            topics: Vec::new(),
            start: StartFrom::Earliest,
            batch_size: 500,
            max_buffered: 5000,
            drain_timeout: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(10),
            stop_at_tip: false,
            client_config: Vec::new(),
        }
    }

    /// The partitions assigned to this member now, as `(topic, partition)`.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        let mut v: Vec<_> = self.shared.lock().current.keys().cloned().collect();
        v.sort();
        v
    }

    /// A handle that resolves once this source, dropped or closed, has
    /// closed its consumer (left the group).
    pub fn closed_handle(&self) -> ClosedHandle {
        ClosedHandle(self.left.clone())
    }

    /// Leaves the group now and waits (off the async threads) until the
    /// consumer is closed: revoked partitions are committed as far as the
    /// pipeline committed them, without waiting for more.
    pub async fn close(mut self) {
        self.shared.lock().closing = true;
        self.shared.committed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // The thread has stopped polling; this last handle closes the
        // consumer (LeaveGroup) off the async threads.
        let consumer = self.consumer.clone();
        drop(self);
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.committed.notify_all();
    }
}

impl Source for KafkaSource {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        loop {
            let notified = self.shared.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.shared.lock();
                if let Some(e) = st.error.take() {
                    return Err(e);
                }
                while let Some(batch) = st.queue.pop_front() {
                    st.buffered -= batch.records.len();
                    let last = batch.records.last().map(|r| &r.sequence.number);
                    let last = last.and_then(|n| n.parse::<i64>().ok());
                    match st.shards.get_mut(&batch.shard) {
                        Some(a) if a.live => {
                            if last.is_some() {
                                a.handed = last;
                            }
                            return Ok(Some(batch));
                        }
                        _ => continue,
                    }
                }
                if self.stop_at_tip
                    && !st.current.is_empty()
                    && st.shards.values().filter(|a| a.live).all(|a| a.at_end)
                {
                    return Ok(None);
                }
            }
            notified.await;
        }
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        let mut offsets = TopicPartitionList::new();
        {
            let mut st = self.shared.lock();
            for cp in &checkpoints {
                let Position::Sequence(seq) = &cp.position else {
                    continue; // Kafka partitions do not end.
                };
                let Ok(offset) = seq.number.parse::<i64>() else {
                    return Err(SourceError::permanent(format!(
                        "commit a position this source gave: {} of shard {} is not a Kafka offset",
                        seq.number, cp.shard
                    )));
                };
                // A shard revoked and forgotten: its commit is the new owner's now.
                let Some(a) = st.shards.get_mut(&cp.shard) else {
                    continue;
                };
                // Positions only move forward; the same one again is sent
                // again (a retried commit must reach Kafka).
                if a.done.is_some_and(|d| d > offset) {
                    continue;
                }
                a.done = Some(offset);
                if a.live {
                    let _ = offsets.add_partition_offset(
                        &a.topic,
                        a.partition,
                        Offset::Offset(offset + 1),
                    );
                }
            }
        }
        self.shared.committed.notify_all();
        if offsets.count() == 0 {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.consumer.commit(&offsets, CommitMode::Sync))
            .await
            .map_err(|e| SourceError::unavailable("the Kafka commit panicked").with_source(e))?
            .map_err(|e| source_error("the Kafka offset commit failed", e))
    }
}
