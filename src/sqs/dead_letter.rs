//! [`SqsDeadLetter`]: a [`DeadLetterSink`] that sends each dead letter to an
//! SQS queue, and reads them back.
//!
//! # The message
//!
//! The body is one JSON object, [`SqsDeadLetterBody`]: the fields of a
//! [`DeadLetterEntry`] (`record_id`, `shard`, `sequence`, `sub_sequence`,
//! `partition_key`, `stage`, `class`, `kind`, `reason`, `attempts`,
//! `route`, `at_ms`), with the original bytes always in `payload_base64`
//! (standard base64), plus `format` ([`MESSAGE_FORMAT`]), `payload_bytes`
//! (the original size) and, when the payload is not inline, `payload_s3` or
//! `payload_truncated`. Message attributes (String):
//!
//! | name | value |
//! |---|---|
//! | `stage` | `decode`, `classify`, `route`, `review` or `routed` |
//! | `kind` | the dead letter's kind (`invalid_json`, `timeout`, …); left out when empty |
//! | `payload_storage` | `inline`, `s3` or `truncated` ([`PayloadStorage`]) |
//!
//! so a consumer (or an SNS-fed filter, or the replay tool's `--stage` /
//! `--kind`) can pick its messages without parsing bodies.
//!
//! # Durability and retries
//!
//! `store` returns `Ok` once SendMessage succeeded: SQS has then stored the
//! message redundantly, which is what "durable" means here. A failed call
//! is returned as a [`DeadLetterError`] (throttled, unavailable or
//! permanent, classified once by [`AwsFailure::from_sdk`]); the pipeline
//! retries the sink and, if it stays down, stops without committing past
//! the record, as with every sink: a dead letter is never dropped. The SDK's
//! own retries are off. Each dead letter is one SendMessage call: the
//! [`DeadLetterSink`] trait stores one entry per call and dead letters are
//! rare, so there is no SendMessageBatch micro-batching.
//!
//! # Size
//!
//! SQS counts the body and the attributes (names, types and values)
//! against the queue's `MaximumMessageSize`. The sink's limit is
//! [`DEFAULT_MAX_MESSAGE_BYTES`] (256 KiB, the historical SQS maximum,
//! accepted by every queue), lowered to the queue's own limit when the
//! start-up check reads a smaller one, and settable with
//! [`SqsDeadLetterBuilder::max_message_bytes`]. Base64 makes the payload a
//! third larger, so a payload of more than about 190 KiB does not fit:
//!
//! - with feature `s3` and [`SqsDeadLetterBuilder::s3`] set, the payload is
//!   written to S3 first (key [`DEFAULT_S3_PREFIX`] + its SHA-256 in hex, so
//!   a retry rewrites the same object) and the message carries an
//!   [`S3Pointer`] (bucket, key, size, SHA-256) instead of the bytes;
//!   reading back fetches the object and checks its size and hash;
//! - otherwise the payload is cut to the bytes that fit, and the message
//!   says so: `payload_truncated` holds the original and kept sizes, and
//!   `payload_storage` is `truncated`. Never silently dropped, but not
//!   replayable either (the replay tool reports and keeps such messages).
//!
//! A reason longer than [`MAX_REASON_BYTES`] is cut (at a character
//! boundary, with a marker). Characters SQS refuses in a body (U+FFFE,
//! U+FFFF) are written as JSON escapes, so any text round-trips.
//!
//! # FIFO queues
//!
//! For a queue URL ending in `.fifo`, the message group is the record's
//! shard and the deduplication id is the record id and stage (characters
//! SQS does not allow replaced by `_`, cut to 128), so a retried store
//! within SQS's five-minute window is not stored twice.
//!
//! # Start-up check
//!
//! [`build`](SqsDeadLetterBuilder::build) calls GetQueueAttributes (and,
//! with S3, HeadBucket), retrying throttling and connection failures until
//! [`startup_timeout`](SqsDeadLetterBuilder::startup_timeout); a queue or
//! bucket that does not exist fails there, named, hint first
//! ([`SqsDeadLetterError::QueueCheck`], [`SqsDeadLetterError::BucketCheck`]).
//!
//! # Permissions
//!
//! `sqs:SendMessage` and `sqs:GetQueueAttributes` on the queue (to replay:
//! `sqs:ReceiveMessage`, `sqs:DeleteMessage`); with S3, `s3:PutObject` on
//! the prefix and `s3:ListBucket` for HeadBucket (to replay:
//! `s3:GetObject`). Give the bucket a lifecycle rule: replay deletes the
//! message, not the object.
//!
//! # Example
//!
//! ```no_run
//! use streamsift::sqs::SqsDeadLetter;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let dead_letters = SqsDeadLetter::builder(
//!     &config,
//!     "https://sqs.us-east-1.amazonaws.com/123456789012/support-dead-letters",
//! )
//! .build()
//! .await?; // fails here, naming the queue, if it does not exist
//! // ... Pipeline::new(source)...dead_letter(dead_letters)
//! # let _ = dead_letters;
//! # Ok(()) }
//! ```
//!
//! Reading back, as the replay tool does:
//!
//! ```no_run
//! # async fn run(dead_letters: streamsift::sqs::SqsDeadLetter) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! for message in dead_letters.receive(10, Duration::from_secs(1), Duration::from_secs(60)).await? {
//!     match message {
//!         Ok(received) => {
//!             let record = received.entry.to_record()?;
//!             // ... process the record again; when it is done:
//!             dead_letters.delete(&received).await?;
//!         }
//!         Err(unreadable) => eprintln!("{unreadable}"),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::aws::{
    AwsErrorKind, AwsFailure, DEFAULT_STARTUP_TIMEOUT, StartupError, call_at_startup,
};
use crate::dead_letter::{DeadLetter, DeadLetterEntry, DeadLetterSink};
use crate::error::DeadLetterError;

/// The `format` field of every message body.
pub const MESSAGE_FORMAT: &str = "streamsift.dead_letter.v1";

/// The default limit of a message, body and attributes: 256 KiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 262_144;

/// The largest reason kept; a longer one is cut, with a marker.
pub const MAX_REASON_BYTES: usize = 16 * 1024;

/// Where S3-stored payloads go unless [`SqsDeadLetterBuilder::s3_prefix`]
/// says otherwise.
pub const DEFAULT_S3_PREFIX: &str = "streamsift/dead-letters/";

/// The smallest and largest settable limits (SQS allows 1 KiB to 1 MiB).
const MIN_MESSAGE_BYTES: usize = 1024;
const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// SQS's limit on FIFO group and deduplication ids.
const MAX_FIFO_ID_CHARS: usize = 128;

/// Where a message's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PayloadStorage {
    /// In the body, `payload_base64`.
    Inline,
    /// In S3; the body's `payload_s3` points at it.
    S3,
    /// Cut to fit; the body's `payload_truncated` says how much was kept.
    Truncated,
}

impl PayloadStorage {
    /// The `payload_storage` attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadStorage::Inline => "inline",
            PayloadStorage::S3 => "s3",
            PayloadStorage::Truncated => "truncated",
        }
    }
}

/// Where a payload too large for a message was stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Pointer {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The payload's size in bytes.
    pub size: u64,
    /// The payload's SHA-256, lower-case hex.
    pub sha256: String,
}

/// How much of a cut payload was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// The payload's size before it was cut.
    pub original_bytes: u64,
    /// The leading bytes kept in `payload_base64`.
    pub kept_bytes: u64,
}

/// The JSON body of a dead-letter message (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SqsDeadLetterBody {
    /// [`MESSAGE_FORMAT`].
    pub format: String,
    /// The entry; its payload is in `payload_base64` (empty when in S3).
    #[serde(flatten)]
    pub entry: DeadLetterEntry,
    /// The original payload's size in bytes.
    pub payload_bytes: u64,
    /// Where the payload is, when it was too large for the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_s3: Option<S3Pointer>,
    /// Set when the payload was cut to fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_truncated: Option<Truncation>,
}

impl SqsDeadLetterBody {
    /// Parses a message body. The error names what is wrong, never the
    /// body's text.
    pub fn parse(body: &str) -> Result<SqsDeadLetterBody, String> {
        let parsed: SqsDeadLetterBody = serde_json::from_str(body).map_err(|e| {
            format!(
                "not a dead-letter message ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
        if parsed.format != MESSAGE_FORMAT {
            return Err(format!(
                "unknown format {:?}; expected {MESSAGE_FORMAT:?}",
                parsed.format.chars().take(64).collect::<String>()
            ));
        }
        Ok(parsed)
    }

    /// Where the payload is.
    pub fn storage(&self) -> PayloadStorage {
        if self.payload_s3.is_some() {
            PayloadStorage::S3
        } else if self.payload_truncated.is_some() {
            PayloadStorage::Truncated
        } else {
            PayloadStorage::Inline
        }
    }
}

/// Why an [`SqsDeadLetter`] could not be built, or a dead letter not read
/// back. Messages name the queue, bucket or message, never a payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqsDeadLetterError {
    /// The start-up check of the queue (GetQueueAttributes) was refused.
    #[error(
        "{hint}: SQS dead-letter queue {queue} failed the start-up check (GetQueueAttributes said {failure})"
    )]
    QueueCheck {
        /// The queue URL.
        queue: String,
        /// The classified failure.
        failure: AwsFailure,
        /// What to do.
        hint: &'static str,
        /// The SDK's error.
        #[source]
        source: crate::error::BoxError,
    },
    /// The start-up check of the bucket (HeadBucket) was refused.
    #[error(
        "{hint}: S3 bucket {bucket} for oversized dead letters failed the start-up check (HeadBucket said {failure})"
    )]
    BucketCheck {
        /// The bucket.
        bucket: String,
        /// The classified failure.
        failure: AwsFailure,
        /// What to do.
        hint: &'static str,
        /// The SDK's error.
        #[source]
        source: crate::error::BoxError,
    },
    /// The service could not be reached within the start-up time.
    #[error(
        "check the endpoint URL, the region and the network, or raise \
         SqsDeadLetterBuilder::startup_timeout: {what} {name} did not answer the start-up check \
         within {after:?}{last}",
        last = last.as_ref().map(|f| format!(" (last failure: {f})")).unwrap_or_default()
    )]
    StartupTimeout {
        /// `SQS queue` or `S3 bucket`.
        what: &'static str,
        /// The queue URL or bucket.
        name: String,
        /// The time allowed.
        after: Duration,
        /// The last retryable failure, if a call finished.
        last: Option<AwsFailure>,
    },
    /// A setting out of range.
    #[error("{setting} = {found} is out of range; expected {expected}")]
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// The value given.
        found: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A call made while reading back failed.
    #[error("{hint}: {operation} on {resource} failed: {failure}")]
    Call {
        /// The operation (`ReceiveMessage`, `DeleteMessage`, `GetObject`).
        operation: &'static str,
        /// The queue URL, or `s3://bucket/key`.
        resource: String,
        /// The classified failure.
        failure: AwsFailure,
        /// What to do.
        hint: &'static str,
    },
    /// A message on the queue that is not a dead letter this sink wrote,
    /// or whose S3 payload is missing, changed or unreadable here.
    #[error("message {message_id} cannot be read back: {detail}")]
    Unreadable {
        /// The SQS message id.
        message_id: String,
        /// What is wrong (never the body's text).
        detail: String,
    },
}

impl SqsDeadLetterError {
    /// Whether another attempt may succeed (throttling, a service fault,
    /// no answer in time).
    pub fn is_retryable(&self) -> bool {
        match self {
            SqsDeadLetterError::StartupTimeout { .. } => true,
            SqsDeadLetterError::Call { failure, .. } => failure.kind.is_retryable(),
            _ => false,
        }
    }
}

/// A dead letter read back from the queue.
#[derive(Clone, Debug)]
pub struct ReceivedDeadLetter {
    /// The SQS message id.
    pub message_id: String,
    /// The receipt handle, for [`SqsDeadLetter::delete`].
    pub receipt_handle: String,
    /// The entry, with the payload resolved (fetched from S3 when it was
    /// stored there). Its `payload`/`payload_base64` follow
    /// [`DeadLetterEntry::from_dead_letter`]'s rule.
    pub entry: DeadLetterEntry,
    /// Where the payload was stored.
    pub storage: PayloadStorage,
    /// Set when the payload was cut to fit: the entry holds only the
    /// leading bytes, and replaying it would not be the original record.
    pub truncated: Option<Truncation>,
}

/// Sends dead letters to an SQS queue, one message each; see the [module
/// docs](self).
#[derive(Clone)]
pub struct SqsDeadLetter {
    client: Client,
    queue_url: String,
    fifo: bool,
    max_message_bytes: usize,
    #[cfg(feature = "s3")]
    s3: Option<S3Store>,
}

#[cfg(feature = "s3")]
#[derive(Clone)]
struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl fmt::Debug for SqsDeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SqsDeadLetter");
        d.field("queue_url", &self.queue_url)
            .field("fifo", &self.fifo)
            .field("max_message_bytes", &self.max_message_bytes);
        #[cfg(feature = "s3")]
        d.field("s3_bucket", &self.s3.as_ref().map(|s| &s.bucket));
        d.finish_non_exhaustive()
    }
}

/// Builds an [`SqsDeadLetter`]; start with [`SqsDeadLetter::builder`] or
/// [`SqsDeadLetter::builder_from_client`].
#[must_use = "call .build().await to check the queue and make the sink"]
pub struct SqsDeadLetterBuilder {
    client: Client,
    queue_url: String,
    startup_timeout: Duration,
    check_queue: bool,
    max_message_bytes: usize,
    #[cfg(feature = "s3")]
    s3: Option<S3Store>,
}

impl fmt::Debug for SqsDeadLetterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsDeadLetterBuilder")
            .field("queue_url", &self.queue_url)
            .field("startup_timeout", &self.startup_timeout)
            .field("check_queue", &self.check_queue)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

impl SqsDeadLetter {
    /// A builder whose client is made from `config`, with the SDK's own
    /// retries off: the pipeline's retry policy decides alone.
    pub fn builder(
        config: &aws_config::SdkConfig,
        queue_url: impl Into<String>,
    ) -> SqsDeadLetterBuilder {
        SqsDeadLetterBuilder::new(Client::new(config), queue_url.into())
    }

    /// A builder that sends through `client`. Its configuration is kept,
    /// except for retries, which are turned off as in
    /// [`builder`](Self::builder).
    pub fn builder_from_client(
        client: Client,
        queue_url: impl Into<String>,
    ) -> SqsDeadLetterBuilder {
        SqsDeadLetterBuilder::new(client, queue_url.into())
    }

    /// The queue URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The largest message sent, body and attributes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }
}

impl SqsDeadLetterBuilder {
    fn new(client: Client, queue_url: String) -> Self {
        let conf = client
            .config()
            .to_builder()
            .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
            .build();
        SqsDeadLetterBuilder {
            client: Client::from_conf(conf),
            queue_url,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            check_queue: true,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            #[cfg(feature = "s3")]
            s3: None,
        }
    }

    /// How long [`build`](Self::build)'s checks may take, retries of
    /// throttling and connection failures included (default 30 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Whether [`build`](Self::build) checks the queue (and bucket)
    /// (default `true`). Turn it off only where the role may send but not
    /// read attributes.
    pub fn check_queue(mut self, on: bool) -> Self {
        self.check_queue = on;
        self
    }

    /// The largest message, body and attributes, 1,024 to 1,048,576 bytes
    /// (default [`DEFAULT_MAX_MESSAGE_BYTES`]). The start-up check lowers
    /// it to the queue's `MaximumMessageSize` if that is smaller.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Stores payloads too large for a message in `bucket`, through
    /// `client` (its retries are turned off), with a pointer in the
    /// message. Feature `s3`.
    #[cfg(feature = "s3")]
    #[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
    pub fn s3(mut self, client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        let conf = client
            .config()
            .to_builder()
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build();
        let prefix = self
            .s3
            .take()
            .map(|s| s.prefix)
            .unwrap_or_else(|| DEFAULT_S3_PREFIX.to_owned());
        self.s3 = Some(S3Store {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: bucket.into(),
            prefix,
        });
        self
    }

    /// The key prefix of S3-stored payloads (default
    /// [`DEFAULT_S3_PREFIX`]); call after [`s3`](Self::s3). Feature `s3`.
    #[cfg(feature = "s3")]
    #[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
    pub fn s3_prefix(mut self, prefix: impl Into<String>) -> Self {
        if let Some(s3) = self.s3.as_mut() {
            s3.prefix = prefix.into();
        }
        self
    }

    /// Checks the settings, then the queue with GetQueueAttributes (and
    /// the bucket with HeadBucket), unless
    /// [`check_queue(false)`](Self::check_queue), and makes the sink.
    pub async fn build(self) -> Result<SqsDeadLetter, SqsDeadLetterError> {
        if !(self.queue_url.starts_with("https://") || self.queue_url.starts_with("http://")) {
            return Err(SqsDeadLetterError::InvalidSetting {
                setting: "queue_url",
                found: format!("{:?}", self.queue_url),
                expected: "a queue URL, such as https://sqs.us-east-1.amazonaws.com/123456789012/dead-letters",
            });
        }
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return Err(SqsDeadLetterError::InvalidSetting {
                setting: "max_message_bytes",
                found: self.max_message_bytes.to_string(),
                expected: "1024 to 1048576",
            });
        }
        let mut max_message_bytes = self.max_message_bytes;
        if self.check_queue {
            if let Some(queue_max) =
                check_queue(&self.client, &self.queue_url, self.startup_timeout).await?
            {
                max_message_bytes = max_message_bytes.min(queue_max.max(MIN_MESSAGE_BYTES));
            }
            #[cfg(feature = "s3")]
            if let Some(s3) = &self.s3 {
                check_bucket(&s3.client, &s3.bucket, self.startup_timeout).await?;
            }
        }
        let fifo = self.queue_url.ends_with(".fifo");
        Ok(SqsDeadLetter {
            client: self.client,
            queue_url: self.queue_url,
            fifo,
            max_message_bytes,
            #[cfg(feature = "s3")]
            s3: self.s3,
        })
    }
}

/// GetQueueAttributes on `queue`; returns its `MaximumMessageSize`.
async fn check_queue(
    client: &Client,
    queue: &str,
    timeout: Duration,
) -> Result<Option<usize>, SqsDeadLetterError> {
    let call = || {
        client
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::MaximumMessageSize)
            .send()
    };
    match call_at_startup(timeout, call).await {
        Ok(out) => Ok(out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize))
            .and_then(|v| v.parse().ok())),
        Err(StartupError::Refused { failure, error }) => Err(SqsDeadLetterError::QueueCheck {
            hint: queue_hint(failure.kind),
            queue: queue.to_owned(),
            failure,
            source: Box::new(error),
        }),
        Err(StartupError::TimedOut { last }) => Err(SqsDeadLetterError::StartupTimeout {
            what: "SQS queue",
            name: queue.to_owned(),
            after: timeout,
            last,
        }),
    }
}

#[cfg(feature = "s3")]
async fn check_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    timeout: Duration,
) -> Result<(), SqsDeadLetterError> {
    match call_at_startup(timeout, || client.head_bucket().bucket(bucket).send()).await {
        Ok(_) => Ok(()),
        Err(StartupError::Refused { failure, error }) => Err(SqsDeadLetterError::BucketCheck {
            source: Box::new(error),
            hint: match failure.kind {
                AwsErrorKind::NotFound => "create the bucket, or fix its name or the region",
                AwsErrorKind::AccessDenied => {
                    "grant s3:ListBucket (for HeadBucket) and s3:PutObject on the bucket to this role"
                }
                kind => kind.hint(),
            },
            bucket: bucket.to_owned(),
            failure,
        }),
        Err(StartupError::TimedOut { last }) => Err(SqsDeadLetterError::StartupTimeout {
            what: "S3 bucket",
            name: bucket.to_owned(),
            after: timeout,
            last,
        }),
    }
}

fn queue_hint(kind: AwsErrorKind) -> &'static str {
    match kind {
        AwsErrorKind::NotFound => {
            "create the queue, or fix its URL (account, region, name) or the endpoint URL"
        }
        AwsErrorKind::AccessDenied => {
            "grant sqs:GetQueueAttributes and sqs:SendMessage on the queue to this role (or turn \
             the check off with SqsDeadLetterBuilder::check_queue(false)), and check the credentials"
        }
        kind => kind.hint(),
    }
}

/// The pipeline's error for a failed call: throttled, unavailable or
/// permanent, hint first, naming the resource, never the payload.
fn store_error(failure: &AwsFailure, operation: &str, resource: &str) -> DeadLetterError {
    let hint = match failure.kind {
        AwsErrorKind::NotFound => {
            "the queue or bucket does not exist (any more): recreate it or fix the URL"
        }
        AwsErrorKind::AccessDenied => {
            "grant sqs:SendMessage (and s3:PutObject for large payloads) to this role"
        }
        kind => kind.hint(),
    };
    let message = format!(
        "{hint}: {operation} to {resource} failed: {failure} (the dead letter is not stored)"
    );
    match failure.kind {
        AwsErrorKind::Throttled => DeadLetterError::throttled(message),
        kind if kind.is_retryable() => DeadLetterError::unavailable(message),
        _ => DeadLetterError::permanent(message),
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with a
/// marker naming the bytes left out.
fn cut_reason(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(40);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [truncated {} bytes]", &text[..end], text.len() - end)
}

/// JSON text made acceptable to SQS: the two characters it refuses that
/// serde_json writes as they are (control characters are escaped already)
/// become JSON escapes. They can only occur inside strings.
fn sqs_safe(json: String) -> String {
    if !json.contains(['\u{fffe}', '\u{ffff}']) {
        return json;
    }
    json.replace('\u{fffe}', "\\ufffe")
        .replace('\u{ffff}', "\\uffff")
}

/// An attribute value SQS accepts (no refused characters, not empty).
fn attribute_value(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// A FIFO group or deduplication id: allowed characters only (others
/// become `_`), at most 128.
fn fifo_id(text: &str) -> String {
    let id: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c.is_ascii_punctuation() {
                c
            } else {
                '_'
            }
        })
        .take(MAX_FIFO_ID_CHARS)
        .collect();
    if id.is_empty() { "_".to_owned() } else { id }
}

/// The message attributes: name, value.
fn attributes(entry: &DeadLetterEntry, storage: PayloadStorage) -> Vec<(&'static str, String)> {
    let mut attrs = vec![
        ("stage", entry.stage.as_str().to_owned()),
        ("payload_storage", storage.as_str().to_owned()),
    ];
    let kind = attribute_value(&entry.kind);
    if !kind.is_empty() {
        attrs.push(("kind", kind));
    }
    attrs
}

/// SQS's size of a message: body plus attribute names, types and values.
fn message_size(body: &str, attrs: &[(&'static str, String)]) -> usize {
    body.len()
        + attrs
            .iter()
            .map(|(name, value)| name.len() + "String".len() + value.len())
            .sum::<usize>()
}

/// A message ready to send.
struct Outgoing {
    body: String,
    attrs: Vec<(&'static str, String)>,
    storage: PayloadStorage,
}

fn encode(body: &SqsDeadLetterBody) -> Result<String, DeadLetterError> {
    serde_json::to_string(body).map(sqs_safe).map_err(|e| {
        DeadLetterError::permanent("could not serialize the dead letter").with_source(e)
    })
}

impl SqsDeadLetter {
    /// The message for `dead_letter`: inline if it fits, else in S3 (when
    /// set), else cut.
    async fn outgoing(&self, dead_letter: &DeadLetter) -> Result<Outgoing, DeadLetterError> {
        let payload = &dead_letter.record.payload;
        let mut entry = DeadLetterEntry::from_dead_letter(dead_letter);
        entry.reason = cut_reason(&entry.reason, MAX_REASON_BYTES);
        entry.payload = None;
        entry.payload_base64 = Some(base64::engine::general_purpose::STANDARD.encode(payload));
        let mut body = SqsDeadLetterBody {
            format: MESSAGE_FORMAT.to_owned(),
            entry,
            payload_bytes: payload.len() as u64,
            payload_s3: None,
            payload_truncated: None,
        };
        let text = encode(&body)?;
        let attrs = attributes(&body.entry, PayloadStorage::Inline);
        if message_size(&text, &attrs) <= self.max_message_bytes {
            return Ok(Outgoing {
                body: text,
                attrs,
                storage: PayloadStorage::Inline,
            });
        }
        #[cfg(feature = "s3")]
        if let Some(s3) = &self.s3 {
            body.payload_s3 = Some(self.put_payload(s3, payload).await?);
            body.entry.payload_base64 = Some(String::new());
            return self.fitting(body, PayloadStorage::S3);
        }
        // Cut: keep the leading bytes whose base64 fits, with room for the
        // truncation note's numbers.
        body.entry.payload_base64 = Some(String::new());
        body.payload_truncated = Some(Truncation {
            original_bytes: payload.len() as u64,
            kept_bytes: 0,
        });
        let base = message_size(
            &encode(&body)?,
            &attributes(&body.entry, PayloadStorage::Truncated),
        );
        let room = self.max_message_bytes.saturating_sub(base + 24);
        let kept = (room / 4 * 3).min(payload.len());
        body.entry.payload_base64 =
            Some(base64::engine::general_purpose::STANDARD.encode(&payload[..kept]));
        body.payload_truncated = Some(Truncation {
            original_bytes: payload.len() as u64,
            kept_bytes: kept as u64,
        });
        metrics::counter!("streamsift_sqs_dead_letter_truncated_total").increment(1);
        tracing::warn!(
            record_id = %body.entry.record_id,
            stage = body.entry.stage.as_str(),
            kind = %body.entry.kind,
            original_bytes = payload.len(),
            kept_bytes = kept,
            "dead letter too large for an SQS message: payload cut (set SqsDeadLetterBuilder::s3 to keep it whole)"
        );
        self.fitting(body, PayloadStorage::Truncated)
    }

    /// The message for `body`, or a permanent error if even without its
    /// payload it does not fit (ids or kind of unusual size).
    fn fitting(
        &self,
        body: SqsDeadLetterBody,
        storage: PayloadStorage,
    ) -> Result<Outgoing, DeadLetterError> {
        let text = encode(&body)?;
        let attrs = attributes(&body.entry, storage);
        let size = message_size(&text, &attrs);
        if size > self.max_message_bytes {
            return Err(DeadLetterError::permanent(format!(
                "raise max_message_bytes or shorten the record's ids: the dead letter of {} \
                 takes {size} bytes without its payload, over the limit of {} bytes",
                body.entry.record_id, self.max_message_bytes
            )));
        }
        Ok(Outgoing {
            body: text,
            attrs,
            storage,
        })
    }

    #[cfg(feature = "s3")]
    async fn put_payload(
        &self,
        s3: &S3Store,
        payload: &bytes::Bytes,
    ) -> Result<S3Pointer, DeadLetterError> {
        use sha2::Digest as _;
        let sha256 = hex_lower(&sha2::Sha256::digest(payload));
        let key = format!("{}{sha256}", s3.prefix);
        let put = s3
            .client
            .put_object()
            .bucket(&s3.bucket)
            .key(&key)
            .content_type("application/octet-stream")
            .body(aws_sdk_s3::primitives::ByteStream::from(payload.clone()))
            .send()
            .await;
        if let Err(e) = put {
            let failure = AwsFailure::from_sdk(&e);
            return Err(store_error(
                &failure,
                "PutObject",
                &format!("s3://{}/{key}", s3.bucket),
            ));
        }
        Ok(S3Pointer {
            bucket: s3.bucket.clone(),
            key,
            size: payload.len() as u64,
            sha256,
        })
    }

    /// Receives up to `max` (1 to 10) messages, waiting up to `wait` (at
    /// most 20 s) for the first, and hides them from other readers for
    /// `visibility`; each is read back (its S3 payload fetched and
    /// checked) or says why it cannot be. Delete a message with
    /// [`delete`](Self::delete) once it is handled; one left alone comes
    /// back after `visibility`.
    pub async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Result<ReceivedDeadLetter, SqsDeadLetterError>>, SqsDeadLetterError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(visibility.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(|e| SqsDeadLetterError::Call {
                operation: "ReceiveMessage",
                resource: self.queue_url.clone(),
                failure: AwsFailure::from_sdk(&e),
                hint: "check the queue URL and that the role may sqs:ReceiveMessage",
            })?;
        let mut all = Vec::new();
        for message in out.messages() {
            let message_id = message.message_id().unwrap_or("-").to_owned();
            let (Some(handle), Some(body)) = (message.receipt_handle(), message.body()) else {
                all.push(Err(SqsDeadLetterError::Unreadable {
                    message_id,
                    detail: "the message has no body or receipt handle".into(),
                }));
                continue;
            };
            all.push(
                self.read_body(&message_id, body)
                    .await
                    .map(|(entry, storage, truncated)| ReceivedDeadLetter {
                        message_id,
                        receipt_handle: handle.to_owned(),
                        entry,
                        storage,
                        truncated,
                    }),
            );
        }
        Ok(all)
    }

    /// Deletes a message read back with [`receive`](Self::receive).
    pub async fn delete(&self, message: &ReceivedDeadLetter) -> Result<(), SqsDeadLetterError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&message.receipt_handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SqsDeadLetterError::Call {
                operation: "DeleteMessage",
                resource: self.queue_url.clone(),
                failure: AwsFailure::from_sdk(&e),
                hint: "check that the role may sqs:DeleteMessage; a message whose visibility \
                       timeout ran out must be received again",
            })
    }

    /// Reads a message body back into an entry, fetching an S3 payload.
    pub async fn read_body(
        &self,
        message_id: &str,
        body: &str,
    ) -> Result<(DeadLetterEntry, PayloadStorage, Option<Truncation>), SqsDeadLetterError> {
        let unreadable = |detail: String| SqsDeadLetterError::Unreadable {
            message_id: message_id.to_owned(),
            detail,
        };
        let parsed = SqsDeadLetterBody::parse(body).map_err(unreadable)?;
        let storage = parsed.storage();
        let truncated = parsed.payload_truncated;
        let bytes = match &parsed.payload_s3 {
            Some(pointer) => self.get_payload(message_id, pointer).await?,
            None => {
                let b64 = parsed.entry.payload_base64.as_deref().unwrap_or_default();
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| unreadable(format!("payload_base64 is not base64 ({e})")))?
            }
        };
        let mut entry = parsed.entry;
        match String::from_utf8(bytes) {
            Ok(text) => {
                entry.payload = Some(text);
                entry.payload_base64 = None;
            }
            Err(e) => {
                entry.payload = None;
                entry.payload_base64 =
                    Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes()));
            }
        }
        Ok((entry, storage, truncated))
    }

    #[cfg(not(feature = "s3"))]
    async fn get_payload(
        &self,
        message_id: &str,
        pointer: &S3Pointer,
    ) -> Result<Vec<u8>, SqsDeadLetterError> {
        Err(SqsDeadLetterError::Unreadable {
            message_id: message_id.to_owned(),
            detail: format!(
                "its payload is in s3://{}/{}: build with feature `s3` and set SqsDeadLetterBuilder::s3 to read it",
                pointer.bucket, pointer.key
            ),
        })
    }

    #[cfg(feature = "s3")]
    async fn get_payload(
        &self,
        message_id: &str,
        pointer: &S3Pointer,
    ) -> Result<Vec<u8>, SqsDeadLetterError> {
        use sha2::Digest as _;
        let resource = format!("s3://{}/{}", pointer.bucket, pointer.key);
        let Some(s3) = &self.s3 else {
            return Err(SqsDeadLetterError::Unreadable {
                message_id: message_id.to_owned(),
                detail: format!(
                    "its payload is in {resource}: set SqsDeadLetterBuilder::s3 to read it"
                ),
            });
        };
        let call_error = |failure: AwsFailure| SqsDeadLetterError::Call {
            operation: "GetObject",
            resource: resource.clone(),
            failure,
            hint: "check that the object exists (a lifecycle rule may have removed it) and that \
                   the role may s3:GetObject",
        };
        let out = s3
            .client
            .get_object()
            .bucket(&pointer.bucket)
            .key(&pointer.key)
            .send()
            .await
            .map_err(|e| call_error(AwsFailure::from_sdk(&e)))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|_| {
                call_error(AwsFailure {
                    kind: AwsErrorKind::Transient,
                    code: None,
                    message: "the object's body could not be read".into(),
                    status: None,
                })
            })?
            .into_bytes();
        let sha256 = hex_lower(&sha2::Sha256::digest(&bytes));
        if bytes.len() as u64 != pointer.size || sha256 != pointer.sha256 {
            return Err(SqsDeadLetterError::Unreadable {
                message_id: message_id.to_owned(),
                detail: format!(
                    "{resource} holds {} bytes with SHA-256 {sha256}; the message expects {} \
                     bytes with SHA-256 {}",
                    bytes.len(),
                    pointer.size,
                    pointer.sha256
                ),
            });
        }
        Ok(bytes.to_vec())
    }
}

#[cfg(feature = "s3")]
fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[async_trait::async_trait]
impl DeadLetterSink for SqsDeadLetter {
    async fn store(&self, dead_letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let out = self.outgoing(dead_letter).await?;
        let mut call = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(out.body);
        for (name, value) in &out.attrs {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| {
                    DeadLetterError::permanent("could not build a message attribute").with_source(e)
                })?;
            call = call.message_attributes(*name, value);
        }
        if self.fifo {
            call = call
                .message_group_id(fifo_id(dead_letter.record.shard.as_str()))
                .message_deduplication_id(fifo_id(&format!(
                    "{}:{}",
                    dead_letter.record.id,
                    dead_letter.stage.as_str()
                )));
        }
        match call.send().await {
            Ok(_) => {
                metrics::counter!(
                    "streamsift_sqs_dead_letters_total",
                    "storage" => out.storage.as_str()
                )
                .increment(1);
                tracing::debug!(
                    record_id = %dead_letter.record.id,
                    stage = dead_letter.stage.as_str(),
                    kind = %dead_letter.kind,
                    storage = out.storage.as_str(),
                    "dead letter sent to SQS"
                );
                Ok(())
            }
            Err(e) => Err(store_error(
                &AwsFailure::from_sdk(&e),
                "SendMessage",
                &self.queue_url,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary_with_a_marker() {
        let long = "é".repeat(20_000);
        let cut = cut_reason(&long, MAX_REASON_BYTES);
        assert!(cut.len() <= MAX_REASON_BYTES, "{}", cut.len());
        assert!(cut.ends_with("bytes]"), "{}", &cut[cut.len() - 30..]);
        assert_eq!(cut_reason("short", MAX_REASON_BYTES), "short");
    }

    #[test]
    fn refused_characters_become_json_escapes_and_round_trip() {
        let json = serde_json::to_string(&"a\u{fffe}b\u{ffff}").unwrap();
        let safe = sqs_safe(json);
        assert!(!safe.contains(['\u{fffe}', '\u{ffff}']), "{safe}");
        let back: String = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, "a\u{fffe}b\u{ffff}");
    }

    #[test]
    fn fifo_ids_keep_allowed_characters_and_fit() {
        assert_eq!(fifo_id("shardId-0001:4959:0"), "shardId-0001:4959:0");
        assert_eq!(fifo_id("a b\u{e9}"), "a_b_");
        assert_eq!(fifo_id(&"x".repeat(300)).len(), MAX_FIFO_ID_CHARS);
        assert_eq!(fifo_id(""), "_");
    }

    /// The module docs say a payload of more than about 190 KiB does not
    /// fit the default limit: 190 KiB does, 192 KiB does not.
    #[tokio::test]
    async fn about_190_kib_fit_the_default_limit() {
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .build();
        let sink = SqsDeadLetter {
            client: Client::from_conf(conf),
            queue_url: "http://127.0.0.1:1/123456789012/q".into(),
            fifo: false,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            #[cfg(feature = "s3")]
            s3: None,
        };
        let dead = |kib: usize| DeadLetter {
            record: crate::record::Record::new(
                crate::record::ShardId::new("shardId-000000000001"),
                crate::record::Sequence::from_offset(1),
                "pk",
                vec![b'x'; kib * 1024],
            ),
            stage: crate::dead_letter::Stage::Decode,
            class: crate::error::ErrorClass::Permanent,
            kind: "too_large".into(),
            reason: "payload too large".into(),
            attempts: 1,
            route: None,
            at: std::time::SystemTime::UNIX_EPOCH,
        };
        let fits = sink.outgoing(&dead(190)).await.unwrap();
        assert_eq!(fits.storage, PayloadStorage::Inline);
        let cut = sink.outgoing(&dead(192)).await.unwrap();
        assert_eq!(cut.storage, PayloadStorage::Truncated);
        assert!(message_size(&cut.body, &cut.attrs) <= DEFAULT_MAX_MESSAGE_BYTES);
    }

    #[test]
    fn bodies_from_elsewhere_are_refused_without_quoting_them() {
        let err = SqsDeadLetterBody::parse("{\"secret tweet text\": 1}").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        let err = SqsDeadLetterBody::parse("not json at all, secret").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }
}
