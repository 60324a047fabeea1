//! A batching PutRecords producer: [`KinesisProducer`].
//!
//! The producer turns any number of [`ProducerRecord`]s into as few
//! PutRecords calls as the Kinesis limits allow, retries only the entries
//! that failed, and answers with a [`SendReport`] that accounts for every
//! input record: the shard and sequence number it was stored under, or the
//! [`ProduceError`] that kept it out.
//!
//! # Limits
//!
//! - at most [`MAX_RECORDS_PER_CALL`] (500) records and
//!   [`MAX_BYTES_PER_CALL`] (5 MiB) per call, counting data and partition key
//!   bytes as Kinesis does;
//! - at most [`MAX_RECORD_BYTES`] (1 MiB) of data and partition key per
//!   record;
//! - a partition key of 1 to [`MAX_PARTITION_KEY_CHARS`] (256) Unicode
//!   characters, and an explicit hash key, when given, that is a decimal
//!   integer below 2^128.
//!
//! The whole input is checked before the first call, so an invalid record
//! means that nothing was sent.
//!
//! # Retries
//!
//! A PutRecords answer may accept some entries and refuse others
//! (`FailedRecordCount`, and an `ErrorCode` per entry). Entries refused with
//! `ProvisionedThroughputExceededException`, `InternalFailure` or
//! `KMSThrottlingException` are sent again, and only they, after a jittered
//! exponential backoff ([`RetryPolicy`]), until they are accepted or the
//! attempts run out. A call that fails as a whole with throttling, a 5xx, a
//! timeout or a dropped connection is retried the same way. A call refused
//! for good (the stream does not exist, access or KMS key denied) fails its
//! records at once, and the records of later calls in the same send are not
//! sent ([`ProduceError::NotSent`]); an `InvalidArgumentException` fails only
//! the records of its own call.
//!
//! Both constructors ([`KinesisProducer::builder`] and
//! [`KinesisProducer::builder_from_client`]) turn the SDK's own retries off,
//! so this policy is the only one: a record is sent at most
//! [`RetryPolicy::max_attempts`] times, one HTTP request per attempt. The
//! producer is not driven by a pipeline (it feeds a stream, it is not a
//! pipeline stage), so this retry policy is its own and nothing retries
//! above it.
//!
//! # Ordering
//!
//! Kinesis orders the records of one shard by arrival. Within one send the
//! producer keeps input order: batches go out one after the other, and a
//! retry resends the failed entries in input order. Partial failures can
//! still reorder records **of the same partition key**: if the first of two
//! such records is throttled and the second is accepted in the same call, the
//! second is stored first. PutRecords has no remedy for this
//! (`SequenceNumberForOrdering` exists only for the single-record PutRecord
//! call). Consumers that need strict per-key order must tolerate it, for
//! example by ordering on a field of the record itself.
//!
//! # Aggregation
//!
//! With [`KinesisProducerBuilder::aggregate`] the producer packs user records into
//! KPL aggregated records (see [`crate::kinesis::kpl`]), as the Kinesis
//! Producer Library does, which cuts the number of Kinesis records (and
//! per-record costs) for small records. To keep every user record on the
//! shard its own partition key maps to, the producer reads the stream's shard
//! map (ListShards, cached for [`KinesisProducerBuilder::shard_map_ttl`]) and only
//! packs records that map to the same open shard; each aggregate is sent
//! under the partition key (and explicit hash key) of its first record. A
//! record alone in its group, or too large for an aggregate, is sent as is.
//! If the stream is resharded between the shard map read and the send, some
//! records may land on a sibling shard, as with the KPL.
//!
//! # Metrics
//!
//! Counters, labelled with `stream`:
//! `streamsift_producer_records_sent_total` (user records accepted),
//! `streamsift_producer_put_records_calls_total`,
//! `streamsift_producer_retries_total` (Kinesis records sent again),
//! `streamsift_producer_failures_total` (user records that failed for good).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::list_shards::ListShardsError;
use aws_sdk_kinesis::operation::put_records::{PutRecordsError, PutRecordsOutput};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;

use crate::aws::{AwsErrorKind, AwsFailure};
use crate::error::ErrorClass;
use crate::kinesis::kpl::{Aggregate, Aggregator, partition_key_hash};
use crate::pipeline::RetryPolicy;
use crate::util::splitmix64;

/// Most records one PutRecords call accepts.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Most bytes (data plus partition keys) one PutRecords call accepts: 5 MiB.
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// Most bytes (data plus partition key) one record may have: 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Most Unicode characters in a partition key.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;
/// The default most bytes of one aggregated record, as the KPL's
/// `AggregationMaxSize` default.
pub const DEFAULT_AGGREGATE_MAX_BYTES: usize = 51_200;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Entry error codes that a later attempt may get through.
const RETRYABLE_ENTRY_CODES: [&str; 3] = [
    "ProvisionedThroughputExceededException",
    "InternalFailure",
    "KMSThrottlingException",
];

/// One record to send: its data, and optionally its own partition key and
/// explicit hash key.
///
/// ```
/// use streamsift::kinesis::producer::ProducerRecord;
///
/// let record = ProducerRecord::new(r#"{"text":"hi"}"#).partition_key("alice");
/// assert_eq!(record.data(), br#"{"text":"hi"}"#);
/// assert_eq!(record.key(), Some("alice"));
/// ```
///
/// `Debug` shows the data's length, not its content.
#[derive(Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    data: Bytes,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
}

impl ProducerRecord {
    /// A record with this data. Without a partition key of its own, it gets
    /// one from the producer's key function, or a random one.
    pub fn new(data: impl Into<Bytes>) -> Self {
        ProducerRecord {
            data: data.into(),
            partition_key: None,
            explicit_hash_key: None,
        }
    }

    /// Sets the partition key (1 to 256 Unicode characters). Records with
    /// the same key go to the same shard.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Sets the explicit hash key: a decimal integer below 2^128 that picks
    /// the shard instead of the MD5 of the partition key.
    pub fn explicit_hash_key(mut self, hash_key: impl Into<String>) -> Self {
        self.explicit_hash_key = Some(hash_key.into());
        self
    }

    /// The data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The record's own partition key, if it has one.
    pub fn key(&self) -> Option<&str> {
        self.partition_key.as_deref()
    }

    /// The record's explicit hash key, if it has one.
    pub fn hash_key(&self) -> Option<&str> {
        self.explicit_hash_key.as_deref()
    }
}

impl fmt::Debug for ProducerRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerRecord")
            .field("data_len", &self.data.len())
            .field("partition_key", &self.partition_key)
            .field("explicit_hash_key", &self.explicit_hash_key)
            .finish()
    }
}

impl From<Bytes> for ProducerRecord {
    fn from(data: Bytes) -> Self {
        ProducerRecord::new(data)
    }
}

impl From<Vec<u8>> for ProducerRecord {
    fn from(data: Vec<u8>) -> Self {
        ProducerRecord::new(data)
    }
}

impl From<String> for ProducerRecord {
    fn from(data: String) -> Self {
        ProducerRecord::new(data)
    }
}

impl From<&'static str> for ProducerRecord {
    fn from(data: &'static str) -> Self {
        ProducerRecord::new(data)
    }
}

impl From<&'static [u8]> for ProducerRecord {
    fn from(data: &'static [u8]) -> Self {
        ProducerRecord::new(data)
    }
}

/// Where Kinesis stored one input record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The shard that holds it.
    pub shard_id: String,
    /// The sequence number of the Kinesis record that holds it.
    pub sequence_number: String,
    /// With aggregation, the record's index inside its aggregate (the KPL's
    /// sub-sequence number); `None` for a record sent as is.
    pub sub_sequence_number: Option<u64>,
    /// How many times it was sent before it was accepted (1 = first try).
    pub attempts: u32,
}

/// What became of every record of one send, in input order.
#[derive(Debug)]
pub struct SendReport {
    outcomes: Vec<Result<Accepted, ProduceError>>,
    calls: u64,
    retried: u64,
    aggregates: u64,
}

impl SendReport {
    /// One outcome per input record, in input order.
    pub fn outcomes(&self) -> &[Result<Accepted, ProduceError>] {
        &self.outcomes
    }

    /// The outcomes, by value.
    pub fn into_outcomes(self) -> Vec<Result<Accepted, ProduceError>> {
        self.outcomes
    }

    /// The accepted records with their input index.
    pub fn accepted(&self) -> impl Iterator<Item = (usize, &Accepted)> {
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().ok().map(|a| (i, a)))
    }

    /// The failed records with their input index and reason.
    pub fn failures(&self) -> impl Iterator<Item = (usize, &ProduceError)> {
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().err().map(|e| (i, e)))
    }

    /// Number of input records.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether the send had no records.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// Number of records accepted.
    pub fn accepted_count(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_ok()).count()
    }

    /// Number of records that failed.
    pub fn failed_count(&self) -> usize {
        self.outcomes.len() - self.accepted_count()
    }

    /// Whether every record was accepted.
    pub fn is_complete(&self) -> bool {
        self.outcomes.iter().all(|o| o.is_ok())
    }

    /// PutRecords calls made (answered or not).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Kinesis records sent again after a retryable failure (an aggregate
    /// counts once).
    pub fn retried(&self) -> u64 {
        self.retried
    }

    /// Aggregated records built (0 without aggregation).
    pub fn aggregates(&self) -> u64 {
        self.aggregates
    }

    /// Every record's placement, or [`ProduceError::Incomplete`] (whose
    /// source is the first failure) if any record failed.
    pub fn into_result(self) -> Result<Vec<Accepted>, ProduceError> {
        let total = self.outcomes.len();
        let failed = self.failed_count();
        let mut accepted = Vec::with_capacity(total);
        let mut first = None;
        for outcome in self.outcomes {
            match outcome {
                Ok(a) => accepted.push(a),
                Err(e) => {
                    if first.is_none() {
                        first = Some(e);
                    }
                }
            }
        }
        match first {
            None => Ok(accepted),
            Some(first) => Err(ProduceError::Incomplete {
                failed,
                total,
                first: Box::new(first),
            }),
        }
    }
}

/// Why a record (or a whole send) did not make it into the stream.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// A record is larger than Kinesis accepts. Nothing was sent.
    #[error(
        "record {index} has {bytes} bytes of data and partition key; Kinesis accepts at most \
         {limit} bytes per record: split the record, or store the payload elsewhere and send a \
         reference. Nothing was sent"
    )]
    RecordTooLarge {
        /// Position of the record in the input.
        index: usize,
        /// Its size: data plus partition key bytes.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A partition key is empty or too long. Nothing was sent.
    #[error(
        "record {index} has a partition key of {chars} Unicode characters; Kinesis requires 1 to \
         {max}: use a shorter key, or hash a long one. Nothing was sent",
        max = MAX_PARTITION_KEY_CHARS
    )]
    InvalidPartitionKey {
        /// Position of the record in the input.
        index: usize,
        /// Length of the key in Unicode characters.
        chars: usize,
    },
    /// An explicit hash key is not a decimal integer below 2^128. Nothing was
    /// sent.
    #[error(
        "record {index} has explicit hash key {found:?}; expected a decimal integer from 0 to \
         2^128-1 (no sign, spaces or leading zeros). Nothing was sent"
    )]
    InvalidExplicitHashKey {
        /// Position of the record in the input.
        index: usize,
        /// The key found (at most 64 characters of it).
        found: String,
    },
    /// Kinesis refused one entry of a PutRecords call.
    #[error("Kinesis refused the record: {code}: {message}{hint}", hint = entry_hint(*.retryable))]
    EntryFailed {
        /// The entry's `ErrorCode`, such as `ProvisionedThroughputExceededException`.
        code: String,
        /// The entry's `ErrorMessage`.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
    /// A PutRecords call failed as a whole.
    #[error("PutRecords to stream {stream} failed: {code}: {message}{hint}", hint = call_hint(*.retryable, code))]
    Call {
        /// The stream name or ARN.
        stream: String,
        /// The error code, or the kind of failure when there is none
        /// (`timeout`, `dispatch failure`, ...).
        code: String,
        /// The error message.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
        /// The SDK's error.
        #[source]
        source: Arc<SdkError<PutRecordsError>>,
    },
    /// A PutRecords answer did not match its request.
    #[error(
        "PutRecords to stream {stream} answered {detail}; expected one result with a shard id and \
         sequence number, or an error code, per entry sent. The records were sent again"
    )]
    MalformedResponse {
        /// The stream name or ARN.
        stream: String,
        /// What was wrong.
        detail: String,
    },
    /// A record kept failing with retryable errors until the attempts ran out.
    #[error(
        "record not accepted after {attempts} attempts (the last failure is the source): the \
         stream may need more shards, or the retry policy more attempts"
    )]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<ProduceError>,
    },
    /// The record was not sent, or not sent again after a retryable
    /// failure, because a call of the same send was refused for good (the
    /// stream is missing, access is denied, ...).
    #[error("record not sent (or not sent again): a PutRecords call of this send failed for good")]
    NotSent {
        /// The failure that stopped the send.
        #[source]
        cause: Box<ProduceError>,
    },
    /// Aggregation needs the stream's shard map, and ListShards failed.
    /// Nothing was sent.
    #[error(
        "ListShards on stream {stream} failed: {code}: {message}; aggregation needs the shard \
         map (grant kinesis:ListShards, or turn aggregation off). Nothing was sent"
    )]
    ShardMap {
        /// The stream name or ARN.
        stream: String,
        /// The error code, or the kind of failure.
        code: String,
        /// The error message.
        message: String,
        /// The SDK's error, when the failure came from the SDK.
        #[source]
        source: Option<Arc<SdkError<ListShardsError>>>,
    },
    /// Some records of a send failed; returned by
    /// [`SendReport::into_result`].
    #[error("{failed} of {total} records were not accepted (the first failure is the source)")]
    Incomplete {
        /// Records that failed.
        failed: usize,
        /// Records in the send.
        total: usize,
        /// The first failure in input order.
        #[source]
        first: Box<ProduceError>,
    },
}

fn entry_hint(retryable: bool) -> &'static str {
    if retryable {
        " (retryable)"
    } else {
        " (permanent: check the record and the stream's settings)"
    }
}

fn call_hint(retryable: bool, code: &str) -> &'static str {
    if retryable {
        " (retryable)"
    } else if code == "ResourceNotFoundException" {
        " (permanent: check the stream name or ARN, its region, and that it is ACTIVE)"
    } else if code.starts_with("KMS") {
        " (permanent: check the stream's KMS key and the caller's rights on it)"
    } else if code == "AccessDeniedException" {
        " (permanent: grant kinesis:PutRecords on the stream)"
    } else {
        " (permanent)"
    }
}

impl ProduceError {
    /// Whether another attempt may succeed.
    pub fn class(&self) -> ErrorClass {
        let retryable = match self {
            ProduceError::EntryFailed { retryable, .. } | ProduceError::Call { retryable, .. } => {
                *retryable
            }
            ProduceError::MalformedResponse { .. } => true,
            ProduceError::RetriesExhausted { .. } => true,
            ProduceError::NotSent { cause } => cause.is_retryable(),
            ProduceError::ShardMap { source, .. } => source.as_deref().is_some_and(|e| {
                matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_))
                    || e.raw_response()
                        .is_some_and(|r| r.status().is_server_error())
                    || e.code() == Some("LimitExceededException")
            }),
            ProduceError::Incomplete { first, .. } => first.is_retryable(),
            ProduceError::RecordTooLarge { .. }
            | ProduceError::InvalidPartitionKey { .. }
            | ProduceError::InvalidExplicitHashKey { .. } => false,
        };
        if retryable {
            ErrorClass::Retryable
        } else {
            ErrorClass::Permanent
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    /// The SDK's PutRecords error behind this failure, if there is one
    /// (following `RetriesExhausted`, `NotSent` and `Incomplete` to their
    /// cause). It is also the [`source`](std::error::Error::source), as an
    /// `Arc<SdkError<PutRecordsError>>` shared by the records of one call.
    pub fn put_records_error(&self) -> Option<&SdkError<PutRecordsError>> {
        match self {
            ProduceError::Call { source, .. } => Some(source),
            ProduceError::RetriesExhausted { last: inner, .. }
            | ProduceError::NotSent { cause: inner }
            | ProduceError::Incomplete { first: inner, .. } => inner.put_records_error(),
            _ => None,
        }
    }

    /// The Kinesis error code behind this failure, if there is one
    /// (following `RetriesExhausted`, `NotSent` and `Incomplete` to their
    /// cause).
    pub fn code(&self) -> Option<&str> {
        match self {
            ProduceError::EntryFailed { code, .. }
            | ProduceError::Call { code, .. }
            | ProduceError::ShardMap { code, .. } => Some(code),
            ProduceError::RetriesExhausted { last: inner, .. }
            | ProduceError::NotSent { cause: inner }
            | ProduceError::Incomplete { first: inner, .. } => inner.code(),
            _ => None,
        }
    }
}

/// Computes a partition key from a record's data; `None` asks for a random
/// key.
type KeyFn = dyn Fn(&[u8]) -> Option<String> + Send + Sync;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Name(String),
    Arn(String),
}

impl Target {
    fn parse(stream: String) -> Target {
        if stream.starts_with("arn:") {
            Target::Arn(stream)
        } else {
            Target::Name(stream)
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Target::Name(s) | Target::Arn(s) => s,
        }
    }
}

/// The open shards' hash key ranges, sorted by start.
#[derive(Clone, Debug, Default)]
struct ShardMap {
    ranges: Vec<(u128, u128)>,
}

impl ShardMap {
    /// Index of the open shard whose range holds `hash`.
    fn shard_of(&self, hash: u128) -> Option<usize> {
        let after = self.ranges.partition_point(|(start, _)| *start <= hash);
        let i = after.checked_sub(1)?;
        let (_, end) = self.ranges.get(i)?;
        (hash <= *end).then_some(i)
    }
}

/// A batching, retrying PutRecords producer for one stream. See the
/// [module docs](self) for limits, retries, ordering and aggregation.
///
/// It is `Send + Sync`: share it behind an `Arc` to send from several tasks.
pub struct KinesisProducer {
    client: Client,
    target: Target,
    key_fn: Option<Arc<KeyFn>>,
    retry: RetryPolicy,
    rng: AtomicU64,
    aggregate: bool,
    aggregate_max_bytes: usize,
    shard_map_ttl: Duration,
    shard_map: tokio::sync::Mutex<Option<(Instant, Arc<ShardMap>)>>,
}

impl fmt::Debug for KinesisProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client is left out on purpose: its configuration holds the
        // credentials provider.
        f.debug_struct("KinesisProducer")
            .field("stream", &self.target.as_str())
            .field("key_fn", &self.key_fn.as_ref().map(|_| "<fn>"))
            .field("retry", &self.retry)
            .field("aggregate", &self.aggregate)
            .field("aggregate_max_bytes", &self.aggregate_max_bytes)
            .field("shard_map_ttl", &self.shard_map_ttl)
            .finish_non_exhaustive()
    }
}

/// Builds a [`KinesisProducer`]; see [`KinesisProducer::builder`].
pub struct KinesisProducerBuilder {
    producer: KinesisProducer,
}

impl fmt::Debug for KinesisProducerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KinesisProducerBuilder")
            .field("producer", &self.producer)
            .finish()
    }
}

impl KinesisProducerBuilder {
    /// Computes the partition key of records that have none of their own;
    /// `None` from the function gives the record a random key.
    pub fn partition_key_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(&[u8]) -> Option<String> + Send + Sync + 'static,
    {
        self.producer.key_fn = Some(Arc::new(f));
        self
    }

    /// Seeds the generator of random partition keys and of backoff jitter,
    /// for reproducible runs. The default seed comes from the clock.
    pub fn seed(self, seed: u64) -> Self {
        self.producer.rng.store(seed, Ordering::Relaxed);
        self
    }

    /// The retry policy (attempts per record, including the first, and the
    /// backoff). Default: [`RetryPolicy::default`].
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.producer.retry = retry;
        self
    }

    /// Turns KPL-compatible aggregation on or off (default off).
    pub fn aggregate(mut self, on: bool) -> Self {
        self.producer.aggregate = on;
        self
    }

    /// The most bytes of one aggregated record (default
    /// [`DEFAULT_AGGREGATE_MAX_BYTES`]); capped at [`MAX_RECORD_BYTES`].
    pub fn aggregate_max_bytes(mut self, bytes: usize) -> Self {
        self.producer.aggregate_max_bytes = bytes.min(MAX_RECORD_BYTES);
        self
    }

    /// How long a shard map read for aggregation is reused (default 60 s).
    pub fn shard_map_ttl(mut self, ttl: Duration) -> Self {
        self.producer.shard_map_ttl = ttl;
        self
    }

    /// The producer. Does no I/O.
    pub fn build(self) -> KinesisProducer {
        self.producer
    }
}

impl KinesisProducer {
    /// Starts building a producer that sends to `stream` (a name, or an ARN
    /// starting with `arn:`, which is then sent as `StreamARN`), with a
    /// client made from `config`.
    ///
    /// The SDK's own retries are turned off, so that the producer's
    /// [`RetryPolicy`] decides alone (and counts every retry in its
    /// metrics).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use streamsift::kinesis::producer::{KinesisProducer, ProducerRecord};
    ///
    /// let config = aws_config::load_from_env().await;
    /// let producer = KinesisProducer::builder(&config, "tweets").build();
    /// let report = producer
    ///     .send(vec![ProducerRecord::new(r#"{"text":"hello"}"#).partition_key("alice")])
    ///     .await?;
    /// for (i, placed) in report.accepted() {
    ///     println!("record {i}: {} {}", placed.shard_id, placed.sequence_number);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn builder(
        config: &aws_config::SdkConfig,
        stream: impl Into<String>,
    ) -> KinesisProducerBuilder {
        Self::builder_from_client(Client::new(config), stream)
    }

    /// Like [`builder`](Self::builder), sending through `client` (for tests
    /// and custom HTTP clients). Its own retries are turned off on the copy
    /// the producer uses.
    pub fn builder_from_client(
        client: Client,
        stream: impl Into<String>,
    ) -> KinesisProducerBuilder {
        let conf = client
            .config()
            .to_builder()
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
            .build();
        KinesisProducerBuilder {
            producer: KinesisProducer {
                client: Client::from_conf(conf),
                target: Target::parse(stream.into()),
                key_fn: None,
                retry: RetryPolicy::default(),
                rng: AtomicU64::new(default_seed()),
                aggregate: false,
                aggregate_max_bytes: DEFAULT_AGGREGATE_MAX_BYTES,
                shard_map_ttl: Duration::from_secs(60),
                shard_map: tokio::sync::Mutex::new(None),
            },
        }
    }

    /// The stream name or ARN.
    pub fn stream(&self) -> &str {
        self.target.as_str()
    }

    /// A random partition key, formatted like a version-4 UUID.
    pub fn random_partition_key(&self) -> String {
        let hi = self.next_u64();
        let lo = self.next_u64();
        // Version 4 and RFC 4122 variant bits, so the key reads like a UUID.
        let hi = (hi & !0xF000) | 0x4000;
        let lo = (lo & !(0b11 << 62)) | (0b10 << 62);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        )
    }

    fn next_u64(&self) -> u64 {
        splitmix64(self.rng.fetch_add(GOLDEN, Ordering::Relaxed))
    }

    fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Sends `records` and reports what became of each.
    ///
    /// Returns `Err` only when nothing was sent: an invalid record
    /// ([`ProduceError::RecordTooLarge`], [`ProduceError::InvalidPartitionKey`],
    /// [`ProduceError::InvalidExplicitHashKey`]) or, with aggregation, a
    /// failed shard map read. Everything that happened on the wire is in the
    /// [`SendReport`], one outcome per record.
    pub async fn send(&self, records: Vec<ProducerRecord>) -> Result<SendReport, ProduceError> {
        let prepared = self.prepare(records)?;
        let total = prepared.len();
        let wire = if self.aggregate && total > 1 {
            let map = self.shard_map().await?;
            aggregate_groups(prepared, &map, self.aggregate_max_bytes)
        } else {
            prepared.into_iter().map(Wire::plain).collect()
        };
        let aggregates = wire.iter().filter(|w| w.aggregated).count() as u64;
        let mut report = self.put_all(wire, total).await;
        report.aggregates = aggregates;
        let sent = report.accepted_count() as u64;
        let failed = report.failed_count() as u64;
        let stream = self.target.as_str().to_owned();
        metrics::counter!("streamsift_producer_records_sent_total", "stream" => stream.clone())
            .increment(sent);
        metrics::counter!("streamsift_producer_failures_total", "stream" => stream)
            .increment(failed);
        Ok(report)
    }

    /// [`send`](Self::send) for anything that turns into records: strings,
    /// byte vectors, [`Bytes`], or [`ProducerRecord`]s.
    pub async fn send_all<I>(&self, records: I) -> Result<SendReport, ProduceError>
    where
        I: IntoIterator,
        I::Item: Into<ProducerRecord>,
    {
        self.send(records.into_iter().map(Into::into).collect())
            .await
    }

    /// Checks every record and fills in partition keys.
    fn prepare(&self, records: Vec<ProducerRecord>) -> Result<Vec<Prepared>, ProduceError> {
        let mut out = Vec::with_capacity(records.len());
        for (index, record) in records.into_iter().enumerate() {
            let key = match record.partition_key {
                Some(key) => key,
                None => self
                    .key_fn
                    .as_ref()
                    .and_then(|f| f(&record.data))
                    .unwrap_or_else(|| self.random_partition_key()),
            };
            let chars = key.chars().count();
            if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
                return Err(ProduceError::InvalidPartitionKey { index, chars });
            }
            let bytes = record.data.len() + key.len();
            if bytes > MAX_RECORD_BYTES {
                return Err(ProduceError::RecordTooLarge {
                    index,
                    bytes,
                    limit: MAX_RECORD_BYTES,
                });
            }
            let hash = match &record.explicit_hash_key {
                Some(h) => match parse_explicit_hash_key(h) {
                    Some(v) => v,
                    None => {
                        return Err(ProduceError::InvalidExplicitHashKey {
                            index,
                            found: h.chars().take(64).collect(),
                        });
                    }
                },
                None => partition_key_hash(&key),
            };
            out.push(Prepared {
                index,
                data: record.data,
                key,
                explicit_hash_key: record.explicit_hash_key,
                hash,
            });
        }
        Ok(out)
    }

    /// The cached shard map, or a fresh one.
    async fn shard_map(&self) -> Result<Arc<ShardMap>, ProduceError> {
        let mut cached = self.shard_map.lock().await;
        if let Some((at, map)) = cached.as_ref()
            && at.elapsed() < self.shard_map_ttl
        {
            return Ok(Arc::clone(map));
        }
        let map = Arc::new(self.list_open_shards().await?);
        *cached = Some((Instant::now(), Arc::clone(&map)));
        Ok(map)
    }

    async fn list_open_shards(&self) -> Result<ShardMap, ProduceError> {
        let stream = self.target.as_str().to_owned();
        let mut ranges = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let mut call = self.client.list_shards();
            call = match &next_token {
                // With a token, the stream must not be named again.
                Some(token) => call.next_token(token),
                None => match &self.target {
                    Target::Name(name) => call.stream_name(name),
                    Target::Arn(arn) => call.stream_arn(arn),
                },
            };
            let out = call.send().await.map_err(|e| {
                let failure = AwsFailure::from_sdk(&e);
                ProduceError::ShardMap {
                    stream: stream.clone(),
                    code: failure.code_or_kind().to_owned(),
                    message: failure.message,
                    source: Some(Arc::new(e)),
                }
            })?;
            for shard in out.shards() {
                let open = shard
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none());
                let Some(range) = shard.hash_key_range() else {
                    continue;
                };
                let (Some(start), Some(end)) = (
                    parse_hash_key(range.starting_hash_key()),
                    parse_hash_key(range.ending_hash_key()),
                ) else {
                    return Err(ProduceError::ShardMap {
                        stream,
                        code: "MalformedResponse".into(),
                        message: format!(
                            "shard {} has hash key range {:?}..{:?}, expected decimal integers",
                            shard.shard_id(),
                            range.starting_hash_key(),
                            range.ending_hash_key()
                        ),
                        source: None,
                    });
                };
                if open {
                    ranges.push((start, end));
                }
            }
            match out.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => break,
            }
        }
        ranges.sort_unstable();
        Ok(ShardMap { ranges })
    }

    /// Sends the Kinesis records, retrying what failed, and maps the results
    /// back to the `total` input records.
    async fn put_all(&self, wire: Vec<Wire>, total: usize) -> SendReport {
        let stream = self.target.as_str().to_owned();
        let mut outcomes: Vec<Option<Result<Accepted, ProduceError>>> = vec![None; total];
        let mut last_error: Vec<Option<ProduceError>> = vec![None; wire.len()];
        let mut calls = 0u64;
        let mut retried = 0u64;
        let mut abort: Option<ProduceError> = None;
        let mut pending: Vec<usize> = (0..wire.len()).collect();
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            let mut again = Vec::new();
            for batch in batches(&wire, &pending) {
                if let Some(cause) = &abort {
                    for &w in &batch {
                        let err = ProduceError::NotSent {
                            cause: Box::new(cause.clone()),
                        };
                        wire[w].fail(&mut outcomes, &err);
                    }
                    continue;
                }
                calls += 1;
                metrics::counter!("streamsift_producer_put_records_calls_total", "stream" => stream.clone())
                    .increment(1);
                match self.put_batch(&wire, &batch).await {
                    Ok(out) => {
                        let results = out.records();
                        if results.len() != batch.len() {
                            let err = ProduceError::MalformedResponse {
                                stream: stream.clone(),
                                detail: format!(
                                    "{} results for {} entries",
                                    results.len(),
                                    batch.len()
                                ),
                            };
                            for &w in &batch {
                                last_error[w] = Some(err.clone());
                                again.push(w);
                            }
                            continue;
                        }
                        for (&w, result) in batch.iter().zip(results) {
                            match (
                                result.error_code(),
                                result.shard_id(),
                                result.sequence_number(),
                            ) {
                                (None, Some(shard), Some(seq)) => {
                                    wire[w].accept(&mut outcomes, shard, seq, attempt);
                                }
                                (None, _, _) => {
                                    last_error[w] = Some(ProduceError::MalformedResponse {
                                        stream: stream.clone(),
                                        detail: "an entry with neither an error code nor a \
                                                 shard id and sequence number"
                                            .into(),
                                    });
                                    again.push(w);
                                }
                                (Some(code), _, _) => {
                                    let retryable = RETRYABLE_ENTRY_CODES.contains(&code);
                                    let err = ProduceError::EntryFailed {
                                        code: code.to_owned(),
                                        message: result.error_message().unwrap_or("").to_owned(),
                                        retryable,
                                    };
                                    if retryable {
                                        last_error[w] = Some(err);
                                        again.push(w);
                                    } else {
                                        wire[w].fail(&mut outcomes, &err);
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let failure = AwsFailure::from_sdk(&e);
                        let (retryable, stops_send) = classify_call_error(&failure);
                        let err = ProduceError::Call {
                            stream: stream.clone(),
                            code: failure.code_or_kind().to_owned(),
                            message: failure.message,
                            retryable,
                            source: Arc::new(e),
                        };
                        tracing::debug!(error = %err, entries = batch.len(), "PutRecords call failed");
                        if retryable {
                            for &w in &batch {
                                last_error[w] = Some(err.clone());
                                again.push(w);
                            }
                        } else {
                            for &w in &batch {
                                wire[w].fail(&mut outcomes, &err);
                            }
                            if stops_send {
                                abort = Some(err);
                            }
                        }
                    }
                }
            }
            if again.is_empty() {
                break;
            }
            again.sort_unstable();
            if attempt >= max_attempts || abort.is_some() {
                for &w in &again {
                    let last =
                        last_error[w]
                            .take()
                            .unwrap_or_else(|| ProduceError::MalformedResponse {
                                stream: stream.clone(),
                                detail: "no result".into(),
                            });
                    let err = match &abort {
                        Some(cause) => ProduceError::NotSent {
                            cause: Box::new(cause.clone()),
                        },
                        None => ProduceError::RetriesExhausted {
                            attempts: attempt,
                            last: Box::new(last),
                        },
                    };
                    wire[w].fail(&mut outcomes, &err);
                }
                break;
            }
            retried += again.len() as u64;
            metrics::counter!("streamsift_producer_retries_total", "stream" => stream.clone())
                .increment(again.len() as u64);
            let pause = self.retry.backoff(attempt, self.unit());
            tracing::debug!(
                entries = again.len(),
                attempt,
                ?pause,
                "retrying failed PutRecords entries"
            );
            tokio::time::sleep(pause).await;
            pending = again;
        }
        SendReport {
            outcomes: outcomes
                .into_iter()
                .map(|o| {
                    // Every input record belongs to exactly one Kinesis
                    // record, and every Kinesis record ends accepted or
                    // failed, so this is only a guard.
                    o.unwrap_or_else(|| {
                        Err(ProduceError::MalformedResponse {
                            stream: stream.clone(),
                            detail: "no outcome for the record".into(),
                        })
                    })
                })
                .collect(),
            calls,
            retried,
            aggregates: 0,
        }
    }

    async fn put_batch(
        &self,
        wire: &[Wire],
        batch: &[usize],
    ) -> Result<PutRecordsOutput, SdkError<PutRecordsError>> {
        let mut entries = Vec::with_capacity(batch.len());
        for &w in batch {
            let record = &wire[w];
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(record.data.to_vec()))
                .partition_key(record.key.clone())
                .set_explicit_hash_key(record.explicit_hash_key.clone())
                .build()
                .map_err(SdkError::construction_failure)?;
            entries.push(entry);
        }
        let call = self.client.put_records().set_records(Some(entries));
        let call = match &self.target {
            Target::Name(name) => call.stream_name(name),
            Target::Arn(arn) => call.stream_arn(arn),
        };
        call.send().await
    }
}

/// A checked input record with its key and routing hash.
#[derive(Debug)]
struct Prepared {
    index: usize,
    data: Bytes,
    key: String,
    explicit_hash_key: Option<String>,
    hash: u128,
}

/// One Kinesis record as sent: a user record, or an aggregate of several.
#[derive(Debug)]
struct Wire {
    data: Bytes,
    key: String,
    explicit_hash_key: Option<String>,
    /// Input indices it carries, in sub-sequence order.
    members: Vec<usize>,
    aggregated: bool,
}

impl Wire {
    fn plain(p: Prepared) -> Wire {
        Wire {
            data: p.data,
            key: p.key,
            explicit_hash_key: p.explicit_hash_key,
            members: vec![p.index],
            aggregated: false,
        }
    }

    /// Size as Kinesis counts it.
    fn size(&self) -> usize {
        self.data.len() + self.key.len()
    }

    fn accept(
        &self,
        outcomes: &mut [Option<Result<Accepted, ProduceError>>],
        shard: &str,
        seq: &str,
        attempts: u32,
    ) {
        for (sub, &i) in self.members.iter().enumerate() {
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = Some(Ok(Accepted {
                    shard_id: shard.to_owned(),
                    sequence_number: seq.to_owned(),
                    sub_sequence_number: self.aggregated.then_some(sub as u64),
                    attempts,
                }));
            }
        }
    }

    fn fail(&self, outcomes: &mut [Option<Result<Accepted, ProduceError>>], err: &ProduceError) {
        for &i in &self.members {
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = Some(Err(err.clone()));
            }
        }
    }
}

/// Splits `pending` (in order) into PutRecords calls within the count and
/// byte limits. Each Kinesis record fits a call alone, since records are
/// checked against [`MAX_RECORD_BYTES`] first.
fn batches(wire: &[Wire], pending: &[usize]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0usize;
    for &w in pending {
        let size = wire[w].size();
        if !current.is_empty()
            && (current.len() == MAX_RECORDS_PER_CALL || bytes + size > MAX_BYTES_PER_CALL)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(w);
        bytes += size;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Groups records by the open shard they map to and packs each group into
/// aggregates of at most `max_bytes`, keeping input order within a shard. A
/// record that maps to no open shard (a stale map), that does not fit an
/// aggregate, or that ends up alone in one, is sent as is.
fn aggregate_groups(records: Vec<Prepared>, map: &ShardMap, max_bytes: usize) -> Vec<Wire> {
    struct Group {
        aggregator: Aggregator,
        members: Vec<Prepared>,
    }
    fn finish(out: &mut Vec<Wire>, members: Vec<Prepared>, aggregate: Option<Aggregate>) {
        match aggregate {
            Some(a) if members.len() > 1 && a.user_records == members.len() => out.push(Wire {
                data: a.data,
                key: a.partition_key,
                explicit_hash_key: a.explicit_hash_key,
                members: members.iter().map(|p| p.index).collect(),
                aggregated: true,
            }),
            // One record (as the KPL does), or a count that does not add up,
            // which would break the sub-sequence numbers: send plainly.
            _ => out.extend(members.into_iter().map(Wire::plain)),
        }
    }
    let mut groups: Vec<Option<Group>> = (0..map.ranges.len()).map(|_| None).collect();
    let mut out = Vec::new();
    for record in records {
        let Some(slot) = map.shard_of(record.hash).and_then(|s| groups.get_mut(s)) else {
            out.push(Wire::plain(record));
            continue;
        };
        let group = slot.get_or_insert_with(|| Group {
            aggregator: Aggregator::new().max_bytes(max_bytes),
            members: Vec::new(),
        });
        match group.aggregator.add(
            &record.key,
            record.explicit_hash_key.as_deref(),
            &record.data,
        ) {
            Ok(None) => group.members.push(record),
            Ok(Some(finished)) => {
                let earlier = std::mem::replace(&mut group.members, vec![record]);
                finish(&mut out, earlier, Some(finished));
            }
            Err(_) => {
                // Too large for an aggregate (the record was already checked
                // against the plain-record limits): send what the shard has
                // so far, then this record, to keep the shard's order.
                let earlier = std::mem::take(&mut group.members);
                let flushed = group.aggregator.flush();
                finish(&mut out, earlier, flushed);
                out.push(Wire::plain(record));
            }
        }
    }
    for mut group in groups.into_iter().flatten() {
        let flushed = group.aggregator.flush();
        finish(&mut out, group.members, flushed);
    }
    out
}

/// A whole-call failure, through the shared classification
/// ([`AwsFailure::from_sdk`]): (retryable, stops the rest of the send).
/// Throttling and transient failures are retried; a missing stream, a
/// refused permission or KMS key, and a request that could not be built or
/// sent stop the send; any other refusal (`InvalidArgumentException`) fails
/// only its own call.
fn classify_call_error(failure: &AwsFailure) -> (bool, bool) {
    // KMS's refusals (disabled, not found, invalid state, opt-in) are
    // permanent for the whole stream; its throttling is not.
    let kms = failure
        .code
        .as_deref()
        .is_some_and(|c| c.starts_with("KMS"));
    match failure.kind {
        AwsErrorKind::Throttled => (true, false),
        kind if kind.is_retryable() && !kms => (true, false),
        AwsErrorKind::NotFound | AwsErrorKind::AccessDenied => (false, true),
        _ if kms || failure.code.is_none() => (false, true),
        _ => (false, false),
    }
}

/// An explicit hash key as Kinesis accepts it (`0|[1-9][0-9]{0,38}`, below
/// 2^128).
fn parse_explicit_hash_key(s: &str) -> Option<u128> {
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    parse_hash_key(s)
}

/// A decimal integer below 2^128, as hash key ranges are written.
fn parse_hash_key(s: &str) -> Option<u128> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A seed from the clock and a process-wide counter, so producers created in
/// the same instant differ.
fn default_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    splitmix64(
        nanos ^ splitmix64(COUNTER.fetch_add(1, Ordering::Relaxed)) ^ u64::from(std::process::id()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(sizes: &[usize]) -> Vec<Wire> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Wire {
                data: Bytes::from(vec![0u8; n]),
                key: "k".into(),
                explicit_hash_key: None,
                members: vec![i],
                aggregated: false,
            })
            .collect()
    }

    #[test]
    fn batches_split_at_500_records() {
        let w = wire(&[10; 1201]);
        let pending: Vec<usize> = (0..w.len()).collect();
        let b = batches(&w, &pending);
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![500, 500, 201]
        );
        assert_eq!(b.concat(), pending, "order and membership kept");
    }

    #[test]
    fn batches_split_at_5_mib_counting_keys() {
        // 1 MiB - 1 of data + a 1-byte key = exactly 1 MiB per record:
        // five fill a call to the byte, the sixth starts a new one.
        let w = wire(&[MAX_RECORD_BYTES - 1; 11]);
        let pending: Vec<usize> = (0..w.len()).collect();
        let b = batches(&w, &pending);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 5, 1]);
        for call in &b {
            let bytes: usize = call.iter().map(|&i| w[i].size()).sum();
            assert!(bytes <= MAX_BYTES_PER_CALL);
        }
        // One byte more per record: only four fit.
        let w = wire(&[MAX_RECORD_BYTES; 5]);
        let b = batches(&w, &[0, 1, 2, 3, 4]);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 1]);
    }

    #[test]
    fn hash_keys_parse_only_decimal_below_2_pow_128() {
        assert_eq!(parse_hash_key("0"), Some(0));
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211455"),
            Some(u128::MAX)
        );
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211456"),
            None
        );
        assert_eq!(parse_hash_key("-1"), None);
        assert_eq!(parse_hash_key("+1"), None);
        assert_eq!(parse_hash_key(""), None);
        assert_eq!(parse_hash_key("1 "), None);
        assert_eq!(
            parse_hash_key("007"),
            Some(7),
            "ranges from ListShards: lenient"
        );
        assert_eq!(
            parse_explicit_hash_key("007"),
            None,
            "Kinesis refuses leading zeros"
        );
        assert_eq!(parse_explicit_hash_key("0"), Some(0));
        assert_eq!(parse_explicit_hash_key("70"), Some(70));
    }

    fn prepared(index: usize, key: &str, hash: u128, len: usize) -> Prepared {
        Prepared {
            index,
            data: Bytes::from(vec![index as u8; len]),
            key: key.into(),
            explicit_hash_key: None,
            hash,
        }
    }

    #[test]
    fn aggregation_groups_by_shard_and_keeps_each_shards_order() {
        let map = ShardMap {
            ranges: vec![(0, 999), (1000, 1999)],
        };
        let records = vec![
            prepared(0, "a", 10, 20),
            prepared(1, "b", 1500, 20),
            prepared(2, "c", 20, 20),
            prepared(3, "big", 30, 500), // too large for a 200-byte aggregate
            prepared(4, "d", 40, 20),
            prepared(5, "stale", 5000, 20), // in no open shard
            prepared(6, "e", 1600, 20),
            prepared(7, "f", 50, 20),
        ];
        let wire = aggregate_groups(records, &map, 200);
        let shape: Vec<(Vec<usize>, bool)> = wire
            .iter()
            .map(|w| (w.members.clone(), w.aggregated))
            .collect();
        assert_eq!(
            shape,
            vec![
                (vec![0, 2], true), // shard 0 so far, flushed before the big one
                (vec![3], false),   // sent as is, after them
                (vec![5], false),   // no shard: as is
                (vec![4, 7], true), // the rest of shard 0
                (vec![1, 6], true), // shard 1
            ]
        );
        for w in &wire {
            if w.aggregated {
                assert!(w.size() <= 200);
                let users = crate::kinesis::kpl::deaggregate(&w.data).unwrap().unwrap();
                assert_eq!(users.len(), w.members.len());
                assert_eq!(
                    w.key, users[0].partition_key,
                    "outer key is the first record's"
                );
            }
        }
        // A group that ends with one record is sent as is (as the KPL does).
        let wire = aggregate_groups(vec![prepared(0, "a", 10, 20)], &map, 200);
        assert!(!wire[0].aggregated);
    }

    #[test]
    fn shard_map_finds_the_covering_range() {
        let map = ShardMap {
            ranges: vec![(0, 99), (100, 199), (300, 399)],
        };
        assert_eq!(map.shard_of(0), Some(0));
        assert_eq!(map.shard_of(99), Some(0));
        assert_eq!(map.shard_of(100), Some(1));
        assert_eq!(map.shard_of(250), None, "a gap (stale map) maps nowhere");
        assert_eq!(map.shard_of(399), Some(2));
        assert_eq!(map.shard_of(400), None);
    }
}
