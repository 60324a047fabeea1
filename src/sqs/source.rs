//! [`SqsSource`]: long-polling receivers, deletes after done, visibility
//! kept up for records in flight.
//!
//! ```text
//!  receiver task × N ── ReceiveMessage (long poll, ≤ 10) ──► Batch per shard ──┐ bounded mpsc
//!      │ registers each message (receipt handle) in `held`                     ▼
//!  heartbeat task ── ChangeMessageVisibilityBatch for held messages      Pipeline ── next_batch()
//!                    about to become visible (up to max_extension)          │
//!  ack(done) ── DeleteMessageBatch (≤ 10 per call, failed entries retried) ◄┘
//!  drop ── stops the tasks; held messages are made visible again (timeout 0)
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName,
};
use bytes::Bytes;
use futures::stream::{self, StreamExt as _};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::source_error::{SqsConfigError, queue_hint, source_error};
use crate::aws::{DEFAULT_STARTUP_TIMEOUT, StartupError, call_at_startup};
use crate::error::SourceError;
use crate::record::{Batch, Checkpoint, Record, Sequence, ShardId};
use crate::source::{Ack, AckMode, Source};

/// SQS's largest batch for ReceiveMessage, DeleteMessageBatch and
/// ChangeMessageVisibilityBatch.
const SQS_BATCH: usize = 10;
/// The longest long poll SQS allows.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// The longest a message may stay invisible in total (12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// Attempts of a DeleteMessageBatch (for the entries that failed).
const DELETE_ATTEMPTS: u32 = 3;
/// Delete calls in flight at once within one ack.
const DELETE_CONCURRENCY: usize = 4;

/// A message received and not yet deleted or let go.
struct Held {
    receipt: String,
    /// When it was first received by this source.
    received: Instant,
    /// When it becomes visible again unless extended.
    visible_until: Instant,
    /// Warned that it reached `max_extension`.
    given_up: bool,
}

/// The key of a held message: its shard and sequence, as acks name them.
type Key = (ShardId, String);

struct Inner {
    client: Client,
    queue_url: String,
    /// The queue's name, the shard of a standard queue.
    queue_name: ShardId,
    fifo: bool,
    wait: Duration,
    max_messages: i32,
    visibility: Duration,
    max_extension: Duration,
    max_receive_count: Option<u32>,
    max_body_bytes: usize,
    stop_when_empty: bool,
    release_on_drop: bool,
    held: Mutex<HashMap<Key, Held>>,
}

/// Reads an Amazon SQS queue (standard or FIFO) for a
/// [`Pipeline`](crate::Pipeline), deleting each message once its record is
/// done.
///
/// - **Receiving.** `receivers` tasks (default 1) long-poll ReceiveMessage
///   (`wait_time`, default 20 s; up to 10 messages a call) and hand batches
///   to the pipeline through a bounded channel.
/// - **Acks.** It answers [`AckMode::PerRecord`]: the pipeline acks a record
///   only once it is done (routed, skipped, discarded, reviewed or durably
///   dead-lettered), and the source deletes it with DeleteMessageBatch,
///   retrying only the entries that failed. An entry SQS refuses for good
///   (an expired receipt handle) is left to come again: a duplicate, not a
///   loss.
/// - **Visibility.** A heartbeat extends the visibility of every message
///   held (in the channel, in flight, or done and not yet deleted) before it
///   expires, up to `max_extension` in all (default 1 h), so a slow
///   classifier does not cause a redelivery.
/// - **Redelivery.** With `max_receive_count(n)`, a message received more
///   than `n` times (ApproximateReceiveCount) becomes a record with its
///   `defect` set: the pipeline dead-letters it with that reason and it is
///   deleted. Set `n` below the queue's redrive `maxReceiveCount` to keep
///   such messages in the pipeline's dead letters (with the reason), or
///   leave it unset to let SQS move them to the queue's dead-letter queue.
/// - **FIFO** (`.fifo` queues): the shard is the message group and the
///   source asks for ordered processing (`PerRecord { ordered: true }`):
///   records of a group run one at a time, in order; a record being retried
///   holds up its group only. Standard queues are one shard (the queue's
///   name), unordered.
/// - **Records.** `id` is the MessageId (stable across redeliveries);
///   `sequence` the FIFO SequenceNumber (else the MessageId); `arrival`
///   SentTimestamp; `partition_key` the MessageGroupId (or empty). A body
///   over `max_body_bytes` (default 1 MiB, SQS's own limit) becomes a
///   record with its `defect` set. Malformed JSON is the decoder's to
///   dead-letter, as for any source.
/// - **Shutdown.** When the pipeline stops it acks what is done; when the
///   source is dropped its tasks stop, and (with `release_on_drop`, the
///   default) the messages it still holds are made visible again at once
///   (ChangeMessageVisibility 0) so another consumer takes them, instead of
///   after their visibility timeout. A long poll cut short at the drop may
///   have taken messages that then come back after the timeout.
///
/// ```no_run
/// use streamsift::sqs::SqsSource;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let source = SqsSource::builder(&config, "https://sqs.eu-west-1.amazonaws.com/123456789012/tweets")
///     .receivers(4)
///     .max_receive_count(5)
///     .build()
///     .await?;
/// # let _ = source;
/// # Ok(()) }
/// ```
pub struct SqsSource {
    inner: Arc<Inner>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Result<Batch, SourceError>>>,
    tasks: Vec<AbortHandle>,
}

impl fmt::Debug for SqsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsSource")
            .field("queue_url", &self.inner.queue_url)
            .field("fifo", &self.inner.fifo)
            .field("held", &self.held())
            .finish_non_exhaustive()
    }
}

/// Builds an [`SqsSource`]; see [`SqsSource::builder`].
#[must_use]
pub struct SqsSourceBuilder {
    client: Client,
    queue_url: String,
    wait: Duration,
    max_messages: usize,
    receivers: usize,
    visibility: Option<Duration>,
    max_extension: Duration,
    max_receive_count: Option<u32>,
    max_body_bytes: usize,
    stop_when_empty: bool,
    release_on_drop: bool,
    startup_timeout: Duration,
}

impl fmt::Debug for SqsSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsSourceBuilder")
            .field("queue_url", &self.queue_url)
            .field("receivers", &self.receivers)
            .finish_non_exhaustive()
    }
}

impl SqsSource {
    /// A builder for the queue at `queue_url`, with a client made from
    /// `config` (the SDK's own retries turned off: the pipeline and this
    /// source retry, paced and counted).
    pub fn builder(
        config: &aws_config::SdkConfig,
        queue_url: impl Into<String>,
    ) -> SqsSourceBuilder {
        SqsSourceBuilder::new(Client::new(config), queue_url.into())
    }

    /// A builder over `client` (a test double, a client with its own HTTP
    /// settings); its retries are turned off as in [`builder`](Self::builder).
    pub fn builder_from_client(client: Client, queue_url: impl Into<String>) -> SqsSourceBuilder {
        SqsSourceBuilder::new(client, queue_url.into())
    }

    /// Whether the queue is FIFO.
    pub fn is_fifo(&self) -> bool {
        self.inner.fifo
    }

    /// How many messages the source holds (received, not yet deleted or
    /// let go).
    pub fn held(&self) -> usize {
        self.inner.lock().len()
    }
}

impl SqsSourceBuilder {
    fn new(client: Client, queue_url: String) -> Self {
        let conf = client
            .config()
            .to_builder()
            .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
            .build();
        SqsSourceBuilder {
            client: Client::from_conf(conf),
            queue_url,
            wait: MAX_WAIT,
            max_messages: SQS_BATCH,
            receivers: 1,
            visibility: None,
            max_extension: Duration::from_secs(3600),
            max_receive_count: None,
            max_body_bytes: 1024 * 1024,
            stop_when_empty: false,
            release_on_drop: true,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }

    /// The long-poll wait of each ReceiveMessage (0 to 20 s, whole seconds;
    /// default 20 s).
    pub fn wait_time(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Messages asked for per ReceiveMessage (1 to 10, default 10).
    pub fn max_messages(mut self, n: usize) -> Self {
        self.max_messages = n;
        self
    }

    /// Receivers polling at once (at least 1, default 1).
    pub fn receivers(mut self, n: usize) -> Self {
        self.receivers = n;
        self
    }

    /// The visibility timeout asked for on receive, and renewed by the
    /// heartbeat (whole seconds, 1 s to 12 h). Default: the queue's own
    /// `VisibilityTimeout`, read at start-up.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility = Some(timeout);
        self
    }

    /// The longest the heartbeat keeps a message invisible, counted from
    /// its receive (default 1 h, at most 12 h). A record not done by then
    /// becomes visible and is delivered again.
    pub fn max_extension(mut self, max: Duration) -> Self {
        self.max_extension = max;
        self
    }

    /// Dead-letter a message received more than `n` times
    /// (ApproximateReceiveCount), with a reason saying so; see the type's
    /// docs for how this plays with the queue's redrive policy.
    pub fn max_receive_count(mut self, n: u32) -> Self {
        self.max_receive_count = Some(n);
        self
    }

    /// Bodies larger than this many bytes become defect records,
    /// dead-lettered (default 1 MiB).
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// End the stream (`Ok(None)`) once every receiver's long poll comes
    /// back empty, instead of polling forever: for batch jobs, tests and
    /// benches (default off).
    pub fn stop_when_empty(mut self, stop: bool) -> Self {
        self.stop_when_empty = stop;
        self
    }

    /// Make held messages visible again when the source is dropped (default
    /// on); off, they come back after their visibility timeout.
    pub fn release_on_drop(mut self, release: bool) -> Self {
        self.release_on_drop = release;
        self
    }

    /// How long the start-up check may take (default 30 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Checks the settings and the queue (GetQueueAttributes, retried
    /// within the start-up timeout: a missing queue or denied access fails
    /// at once, naming the queue), then starts the receivers and the
    /// heartbeat. Needs a Tokio runtime.
    pub async fn build(self) -> Result<SqsSource, SqsConfigError> {
        let invalid = |setting, detail: String| Err(SqsConfigError::Invalid { setting, detail });
        if self.wait > MAX_WAIT {
            return invalid("wait_time", format!("{:?} is over SQS's 20 s", self.wait));
        }
        if !(1..=SQS_BATCH).contains(&self.max_messages) {
            return invalid(
                "max_messages",
                format!("{} is not within 1 to 10", self.max_messages),
            );
        }
        if self.receivers == 0 {
            return invalid("receivers", "0 receivers would read nothing".into());
        }
        if let Some(v) = self.visibility
            && !(Duration::from_secs(1)..=MAX_VISIBILITY).contains(&v)
        {
            return invalid(
                "visibility_timeout",
                format!("{v:?} is not within 1 s to 12 h"),
            );
        }
        if self.max_extension > MAX_VISIBILITY {
            return invalid(
                "max_extension",
                format!("{:?} is over SQS's 12 h", self.max_extension),
            );
        }
        let attrs = check_queue(&self.client, &self.queue_url, self.startup_timeout).await?;
        let fifo = self.queue_url.ends_with(".fifo")
            || attrs
                .get(&QueueAttributeName::FifoQueue)
                .map(String::as_str)
                == Some("true");
        let visibility = self.visibility.unwrap_or_else(|| {
            attrs
                .get(&QueueAttributeName::VisibilityTimeout)
                .and_then(|v| v.parse().ok())
                .map_or(Duration::from_secs(30), Duration::from_secs)
                .max(Duration::from_secs(1))
        });
        if let (Some(ours), Some(redrive)) = (
            self.max_receive_count,
            attrs.get(&QueueAttributeName::RedrivePolicy),
        ) && let Some(theirs) = redrive_max_receive_count(redrive)
            && u64::from(ours) >= theirs
        {
            tracing::warn!(
                queue = %self.queue_url,
                ours,
                theirs,
                "max_receive_count is not below the queue's redrive maxReceiveCount: SQS moves \
                 such messages to its dead-letter queue before the pipeline can dead-letter them"
            );
        }
        let queue_name = ShardId::new(
            self.queue_url
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or(&self.queue_url),
        );
        let inner = Arc::new(Inner {
            client: self.client,
            queue_url: self.queue_url,
            queue_name,
            fifo,
            wait: self.wait,
            max_messages: self.max_messages as i32,
            visibility,
            max_extension: self.max_extension,
            max_receive_count: self.max_receive_count,
            max_body_bytes: self.max_body_bytes,
            stop_when_empty: self.stop_when_empty,
            release_on_drop: self.release_on_drop,
            held: Mutex::new(HashMap::new()),
        });
        let (tx, rx) = mpsc::channel(self.receivers * 2);
        let mut tasks = Vec::new();
        for n in 0..self.receivers {
            let inner = inner.clone();
            let tx = tx.clone();
            tasks.push(tokio::spawn(receive_loop(inner, tx, n)).abort_handle());
        }
        drop(tx);
        tasks.push(tokio::spawn(heartbeat(inner.clone())).abort_handle());
        Ok(SqsSource {
            inner,
            rx: tokio::sync::Mutex::new(rx),
            tasks,
        })
    }
}

/// The `maxReceiveCount` of a queue's RedrivePolicy (JSON).
fn redrive_max_receive_count(policy: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(policy).ok()?;
    let n = v.get("maxReceiveCount")?;
    n.as_u64().or_else(|| n.as_str()?.parse().ok())
}

/// GetQueueAttributes within `timeout`.
async fn check_queue(
    client: &Client,
    queue_url: &str,
    timeout: Duration,
) -> Result<HashMap<QueueAttributeName, String>, SqsConfigError> {
    let call = || {
        client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::All)
            .send()
    };
    match call_at_startup(timeout, call).await {
        Ok(out) => Ok(out.attributes().cloned().unwrap_or_default()),
        Err(StartupError::Refused { failure, error }) => Err(SqsConfigError::QueueCheck {
            hint: queue_hint(failure.kind),
            queue_url: queue_url.to_owned(),
            failure,
            source: Arc::new(error),
        }),
        Err(StartupError::TimedOut { last }) => Err(SqsConfigError::StartupTimeout {
            queue_url: queue_url.to_owned(),
            after: timeout,
            last,
        }),
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A received message as a record; registers it as held. `None` for a
    /// message without id or receipt handle (it cannot be deleted; SQS
    /// delivers it again).
    fn record(&self, m: &Message, now: Instant) -> Option<Record> {
        let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
            tracing::warn!("SQS returned a message without an id or receipt handle; skipped");
            return None;
        };
        let attr = |name: MessageSystemAttributeName| {
            m.attributes()
                .and_then(|a| a.get(&name))
                .map(String::as_str)
        };
        let group = attr(MessageSystemAttributeName::MessageGroupId);
        let shard = match (self.fifo, group) {
            (true, Some(g)) => ShardId::new(g),
            _ => self.queue_name.clone(),
        };
        let sequence = match (self.fifo, attr(MessageSystemAttributeName::SequenceNumber)) {
            (true, Some(n)) => n.to_owned(),
            _ => id.to_owned(),
        };
        let arrival = attr(MessageSystemAttributeName::SentTimestamp)
            .and_then(|t| t.parse::<u64>().ok())
            .map_or_else(SystemTime::now, |ms| {
                SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
            });
        let body = m.body().unwrap_or("");
        let receives = attr(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|n| n.parse::<u32>().ok());
        let defect = if body.len() > self.max_body_bytes {
            Some(format!(
                "the message body is {} bytes, over the source's max_body_bytes of {}",
                body.len(),
                self.max_body_bytes
            ))
        } else {
            match (receives, self.max_receive_count) {
                (Some(n), Some(limit)) if n > limit => Some(format!(
                    "received {n} times (ApproximateReceiveCount), over the source's \
                     max_receive_count of {limit}: it keeps failing or timing out"
                )),
                _ => None,
            }
        };
        let mut held = self.lock();
        let entry = held
            .entry((shard.clone(), sequence.clone()))
            .or_insert(Held {
                receipt: String::new(),
                received: now,
                visible_until: now,
                given_up: false,
            });
        // A redelivery of a message still held (its visibility ran out):
        // its newest receipt handle is the one that deletes it, and its
        // extensions count afresh.
        entry.receipt = receipt.to_owned();
        entry.received = now;
        entry.given_up = false;
        entry.visible_until = now + self.visibility;
        drop(held);
        Some(Record {
            id: id.to_owned(),
            partition_key: group.unwrap_or("").to_owned(),
            shard,
            sequence: Sequence::new(sequence),
            payload: Bytes::copy_from_slice(body.as_bytes()),
            arrival,
            defect: defect.map(Arc::from),
        })
    }

    /// One ReceiveMessage; the records as batches, one per shard, in order.
    async fn receive(&self) -> Result<Option<Vec<Batch>>, SourceError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.max_messages)
            .wait_time_seconds(self.wait.as_secs() as i32)
            .visibility_timeout(self.visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::SequenceNumber)
            .send()
            .await
            .map_err(|e| source_error("ReceiveMessage", &self.queue_url, e))?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok(None);
        }
        let now = Instant::now();
        let mut batches: Vec<Batch> = Vec::new();
        for m in messages {
            let Some(record) = self.record(m, now) else {
                continue;
            };
            match batches.iter_mut().find(|b| b.shard == record.shard) {
                Some(b) => b.records.push(record),
                None => batches.push(Batch::new(record.shard.clone(), vec![record])),
            }
        }
        Ok(Some(batches))
    }

    /// Deletes `entries` (at most 10), retrying only the entries that
    /// failed; returns the keys deleted or let go.
    async fn delete_chunk(&self, entries: Vec<(Key, String)>) -> Result<(), SourceError> {
        let mut left = entries;
        let mut pause = Duration::from_millis(50);
        for attempt in 1..=DELETE_ATTEMPTS {
            let mut call = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url);
            for (i, (_, receipt)) in left.iter().enumerate() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .map_err(|e| {
                        SourceError::permanent(format!(
                            "could not build a DeleteMessageBatch entry: {e}; this is a bug in \
                             SqsSource, please report it"
                        ))
                    })?;
                call = call.entries(entry);
            }
            let out = match call.send().await {
                Ok(out) => out,
                Err(e) => {
                    let e = source_error("DeleteMessageBatch", &self.queue_url, e);
                    if !e.is_retryable() || attempt == DELETE_ATTEMPTS {
                        return Err(e);
                    }
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    continue;
                }
            };
            let mut done = vec![false; left.len()];
            for ok in out.successful() {
                if let Some(d) = ok.id().parse::<usize>().ok().and_then(|i| done.get_mut(i)) {
                    *d = true;
                }
            }
            for failed in out.failed() {
                // Sender faults (an expired or invalid receipt handle) will
                // not change: let the message come again.
                if failed.sender_fault()
                    && let Some(d) = failed
                        .id()
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| done.get_mut(i))
                {
                    tracing::warn!(
                        queue = %self.queue_url,
                        code = failed.code(),
                        "SQS refused to delete a done message; it will be delivered again"
                    );
                    *d = true;
                }
            }
            {
                let mut held = self.lock();
                for ((key, _), d) in left.iter().zip(&done) {
                    if *d {
                        held.remove(key);
                    }
                }
            }
            left = left
                .into_iter()
                .zip(done)
                .filter_map(|(e, d)| (!d).then_some(e))
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if attempt < DELETE_ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        Err(SourceError::unavailable(format!(
            "DeleteMessageBatch on SQS queue {}: {} entries still failing after {DELETE_ATTEMPTS} \
             attempts; the pipeline retries them",
            self.queue_url,
            left.len()
        )))
    }

    /// ChangeMessageVisibilityBatch for `entries` (at most 10); failures
    /// are logged (a message deleted meanwhile has an invalid handle).
    async fn change_visibility(&self, entries: &[(Key, String)], timeout: Duration) -> usize {
        let mut call = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.queue_url);
        for (i, (_, receipt)) in entries.iter().enumerate() {
            match ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .visibility_timeout(timeout.as_secs() as i32)
                .build()
            {
                Ok(entry) => call = call.entries(entry),
                Err(_) => return 0,
            }
        }
        match call.send().await {
            Ok(out) => {
                for failed in out.failed() {
                    tracing::debug!(
                        code = failed.code(),
                        "visibility change refused for a message"
                    );
                }
                out.successful().len()
            }
            Err(e) => {
                let e = source_error("ChangeMessageVisibilityBatch", &self.queue_url, e);
                tracing::warn!(error = %e, "could not change the visibility of held messages");
                0
            }
        }
    }
}

/// One receiver: long polls until the source is dropped (or, with
/// `stop_when_empty`, until a poll comes back empty).
async fn receive_loop(inner: Arc<Inner>, tx: mpsc::Sender<Result<Batch, SourceError>>, n: usize) {
    let mut pause = Duration::from_millis(200);
    loop {
        match inner.receive().await {
            Ok(Some(batches)) => {
                pause = Duration::from_millis(200);
                for b in batches {
                    if tx.send(Ok(b)).await.is_err() {
                        return;
                    }
                }
            }
            Ok(None) if inner.stop_when_empty => {
                tracing::debug!(receiver = n, "queue empty; receiver stops");
                return;
            }
            Ok(None) => {}
            Err(e) => {
                let permanent = !e.is_retryable();
                if tx.send(Err(e)).await.is_err() || permanent {
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Keeps held messages invisible: every third of the visibility timeout,
/// those due within half of it are extended by a whole timeout, until they
/// reach `max_extension` from their receive.
async fn heartbeat(inner: Arc<Inner>) {
    let period = (inner.visibility / 3).max(Duration::from_millis(300));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let due: Vec<(Key, String)> = {
            let mut held = inner.lock();
            held.iter_mut()
                .filter(|(_, h)| h.visible_until <= now + inner.visibility / 2)
                .filter_map(|(k, h)| {
                    if now.duration_since(h.received) + inner.visibility > inner.max_extension {
                        if !h.given_up {
                            h.given_up = true;
                            tracing::warn!(
                                queue = %inner.queue_url,
                                shard = %k.0,
                                "a message reached max_extension without being done; it will \
                                 be delivered again"
                            );
                        }
                        return None;
                    }
                    Some((k.clone(), h.receipt.clone()))
                })
                .collect()
        };
        if due.is_empty() {
            continue;
        }
        let chunks: Vec<Vec<(Key, String)>> = due.chunks(SQS_BATCH).map(<[_]>::to_vec).collect();
        stream::iter(chunks)
            .for_each_concurrent(DELETE_CONCURRENCY, |chunk| {
                let inner = &inner;
                async move {
                    if inner.change_visibility(&chunk, inner.visibility).await > 0 {
                        let until = Instant::now() + inner.visibility;
                        let mut held = inner.lock();
                        for (key, _) in &chunk {
                            if let Some(h) = held.get_mut(key) {
                                h.visible_until = until;
                            }
                        }
                    }
                }
            })
            .await;
    }
}

impl Source for SqsSource {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        // `recv` is cancel-safe: a dropped read takes nothing.
        match self.rx.lock().await.recv().await {
            Some(Ok(batch)) => Ok(Some(batch)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Never called by the pipeline (the source acks per record); a
    /// checkpoint has no meaning for a queue.
    async fn commit(&self, _checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        Ok(())
    }

    fn acks(&self) -> AckMode {
        AckMode::PerRecord {
            ordered: self.inner.fifo,
        }
    }

    async fn ack(&self, done: Vec<Ack>) -> Result<(), SourceError> {
        let entries: Vec<(Key, String)> = {
            let held = self.inner.lock();
            done.into_iter()
                .filter_map(|a| {
                    let key = (a.shard, a.sequence.number);
                    // Not held: deleted by an earlier call whose answer was lost.
                    let receipt = held.get(&key)?.receipt.clone();
                    Some((key, receipt))
                })
                .collect()
        };
        let chunks: Vec<Vec<(Key, String)>> =
            entries.chunks(SQS_BATCH).map(<[_]>::to_vec).collect();
        let inner = &self.inner;
        let results: Vec<Result<(), SourceError>> = stream::iter(chunks)
            .map(|chunk| inner.delete_chunk(chunk))
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

impl Drop for SqsSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let held: Vec<(Key, String)> = self
            .inner
            .lock()
            .drain()
            .map(|(k, h)| (k, h.receipt))
            .collect();
        if held.is_empty() || !self.inner.release_on_drop {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = self.inner.clone();
        tracing::info!(
            queue = %inner.queue_url,
            messages = held.len(),
            "source dropped: making the messages not done visible again"
        );
        runtime.spawn(async move {
            for chunk in held.chunks(SQS_BATCH) {
                inner.change_visibility(chunk, Duration::ZERO).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policy_max_receive_count_as_number_or_text() {
        assert_eq!(
            redrive_max_receive_count(r#"{"deadLetterTargetArn":"arn:x","maxReceiveCount":5}"#),
            Some(5)
        );
        assert_eq!(
            redrive_max_receive_count(r#"{"maxReceiveCount":"7"}"#),
            Some(7)
        );
        assert_eq!(redrive_max_receive_count("not json"), None);
    }
}
