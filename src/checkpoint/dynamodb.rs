//! The DynamoDB checkpoint store (KCL lease table). Feature `dynamodb`.
//!
//! # Table layout
//!
//! The table has the Kinesis Client Library's lease schema: a hash key
//! `leaseKey` (S) and no range key, one item per shard. Each item carries the
//! KCL's columns, so the table reads like a KCL application's:
//!
//! | attribute | type | holds |
//! |---|---|---|
//! | `leaseKey` | S | the shard id, or `STREAM:SHARD` with [`LeaseKeys::StreamAndShard`] |
//! | `checkpoint` | S | the last sequence number done, or `SHARD_END`; `TRIM_HORIZON` for a lease created by [`record_lineage`](CheckpointStore::record_lineage) before any checkpoint |
//! | `checkpointSubSequenceNumber` | N | the sub-sequence of the last user record done inside a KPL aggregate; absent when the whole record is done |
//! | `leaseCounter` | N | bumped by every checkpoint write; the writes' condition |
//! | `leaseOwner` | S | the worker id of the last writer |
//! | `ownerSwitchesSinceCheckpoint` | N | reset to 0 by every checkpoint |
//! | `parentShardId` | SS | the shard's parents after a split or merge (the KCL's name for it, a set despite the singular) |
//! | `streamName` | S | the stream name or ARN the source was given |
//! | `shardId` | S | the shard id (only with [`LeaseKeys::StreamAndShard`], as the KCL's multi-stream mode does) |
//!
//! Like the KCL, use one table per application. With the default
//! [`LeaseKeys::ShardId`] a table holds one stream: the store writes
//! `streamName` on each item and refuses to load or save another stream's
//! leases there. [`LeaseKeys::StreamAndShard`] lets one table hold several
//! streams. Its `streamName` is the name or ARN given to the source, not the
//! KCL's `account:stream:epoch` identifier, so a KCL multi-stream application
//! and this store cannot share leases.
//!
//! # Writes
//!
//! A save reads each lease (strongly consistent), checks client-side that
//! the new position is not behind the stored one (sequence numbers compare as
//! big integers), and then writes on the condition that `leaseCounter` and
//! `leaseOwner` are still what it read, bumping the counter and taking the
//! owner. So a worker with a stale view cannot overwrite a newer checkpoint:
//! its write fails the condition, it reads again, and the backwards save is
//! refused. After a few conflicts in a row (another writer keeps changing the
//! lease) the save gives up with a [`CheckpointError::Permanent`] explaining
//! why. A save of several shards checks them all before it writes any of them,
//! then writes each item atomically (items are not written in one
//! transaction).
//!
//! # Retries: decided by the caller
//!
//! The store does not retry a failed DynamoDB call, and the SDK's own
//! retries are off on its client whatever client it was given
//! ([`DynamoDbCheckpointStore::builder_from_client`]): every DynamoDB
//! request is sent once. A throttled, 5xx, timed-out or unreachable call
//! comes back at once as a retryable [`CheckpointError`]
//! ([`is_retryable`](CheckpointError::is_retryable)), and the caller decides:
//! in a pipeline, the run loop's commit retry (its backoff, each attempt
//! within `call_timeout`, giving up after `commit_timeout`); at a
//! [`KinesisSource`](crate::kinesis::KinesisSource)'s start-up, its own
//! bounded retries of the store's meta calls. So attempts never stack.
//!
//! The only loop inside a save is the conditional-write protocol, which is
//! not a retry of a failure: a write that loses a race re-reads the lease
//! and writes again, at most
//! [`conflict_retries`](DynamoDbCheckpointStoreBuilder::conflict_retries)
//! times (default 5).
//!
//! Worst case per commit: one attempt of the pipeline's commit is one
//! `save` of `n` shards, at most `n × 2 × (conflict_retries + 1)` DynamoDB
//! requests (a GetItem and an UpdateItem or PutItem per lease per round),
//! each sent once; a failing request ends the attempt at its first
//! failure, so an always-failing table costs exactly one request per
//! attempt. The pipeline makes attempts, paced by its commit backoff, until
//! `commit_timeout` (default 60 s) of failures.
//!
//! # Start-up
//!
//! [`build`](DynamoDbCheckpointStoreBuilder::build) checks the table with
//! DescribeTable: a missing table fails at once with a message that names
//! it and says how to create it (or is created, with
//! [`create_table_if_missing`](DynamoDbCheckpointStoreBuilder::create_table_if_missing)),
//! a table with another key schema is refused, and a DynamoDB that cannot be
//! reached fails within
//! [`startup_timeout`](DynamoDbCheckpointStoreBuilder::startup_timeout)
//! (default 30 s) with `could not reach DynamoDB at <endpoint> within 30s`.
//!
//! This store does not take, renew or balance leases the way the KCL does;
//! it keeps checkpoints. Do not point a running KCL application and this
//! store at the same table.
//!
//! # IAM permissions
//!
//! `dynamodb:GetItem`, `dynamodb:PutItem`, `dynamodb:UpdateItem`,
//! `dynamodb:Scan` and `dynamodb:DescribeTable` (at build) on the table,
//! plus `dynamodb:CreateTable` for
//! [`create_table_if_missing`](DynamoDbCheckpointStoreBuilder::create_table_if_missing),
//! and `dynamodb:DeleteItem` for [`reset`](CheckpointStore::reset).
//!
//! # Stream incarnation
//!
//! One more item per stream, with `leaseKey` `streamsift-meta` (or
//! `STREAM:streamsift-meta` with [`LeaseKeys::StreamAndShard`]), holds the
//! stream incarnation the leases belong to (`streamArn`, `streamCreatedMs`)
//! and a `LATEST` consumer's pinned start (`latestAtUs`). It is not a lease:
//! [`leases`](DynamoDbCheckpointStore::leases) and `load` skip it. A table
//! written before this item existed reads as "incarnation unknown".

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::aws::{AwsErrorKind, AwsFailure, StartupError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};

use super::{
    CheckpointError, CheckpointStore, StreamIncarnation, StreamMeta, backwards, fold_batch,
    is_forward,
};
use crate::record::{Checkpoint, Position, Sequence, ShardId};

const LEASE_KEY: &str = "leaseKey";
const CHECKPOINT: &str = "checkpoint";
const SUB_SEQUENCE: &str = "checkpointSubSequenceNumber";
const LEASE_COUNTER: &str = "leaseCounter";
const LEASE_OWNER: &str = "leaseOwner";
const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
const PARENT_SHARD_ID: &str = "parentShardId";
const STREAM_NAME: &str = "streamName";
const SHARD_ID: &str = "shardId";
const STREAM_ARN: &str = "streamArn";
const STREAM_CREATED_MS: &str = "streamCreatedMs";
const LATEST_AT_US: &str = "latestAtUs";
/// The shard id under which a stream's meta item is kept. Not a Kinesis
/// shard id, so it never clashes with a lease.
const META_SHARD: &str = "streamsift-meta";

const SHARD_END: &str = "SHARD_END";
/// `checkpoint` values the KCL gives a lease before its first checkpoint.
const INITIAL_POSITIONS: [&str; 3] = ["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"];

/// Conditional-write conflicts a save retries before giving up.
const DEFAULT_CONFLICT_RETRIES: u32 = 5;
/// How long [`DynamoDbCheckpointStore::create_table_if_missing`] waits for
/// the table to become ACTIVE.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// What the IAM policy of a worker must allow.
const PERMISSIONS: &str = "dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, \
     dynamodb:DeleteItem, dynamodb:Scan and dynamodb:DescribeTable on the table (and \
     dynamodb:CreateTable for create_table_if_missing)";

/// How lease keys are made from a stream and a shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LeaseKeys {
    /// `leaseKey` is the shard id, as in a single-stream KCL application:
    /// one table per stream.
    #[default]
    ShardId,
    /// `leaseKey` is `STREAM:SHARD` (the stream name or ARN, a colon, the
    /// shard id), with `streamName` and `shardId` attributes, as in the KCL's
    /// multi-stream mode: one table for several streams.
    StreamAndShard,
}

/// A [`CheckpointStore`] over a DynamoDB table with the KCL's lease columns.
/// See the [module docs](self) for the table layout, the conditional writes,
/// the retries and the IAM permissions.
///
/// Clones share the client and the per-lease locks that keep this process's
/// own saves of one shard from racing each other.
///
/// ```no_run
/// use streamsift::checkpoint::{CheckpointStore, DynamoDbCheckpointStore, LeaseKeys};
///
/// # async fn run() -> Result<(), streamsift::CheckpointError> {
/// let config = aws_config::load_from_env().await;
/// let store = DynamoDbCheckpointStore::builder(&config, "tweet-classifier")
///     .worker_id("worker-1")
///     .lease_keys(LeaseKeys::ShardId)
///     .create_table_if_missing(true)
///     .build()
///     .await?;
/// let positions = store.load("tweets").await?;
/// # let _ = positions;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DynamoDbCheckpointStore {
    client: Client,
    table: Arc<str>,
    worker_id: Arc<str>,
    lease_keys: LeaseKeys,
    conflict_retries: u32,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl fmt::Debug for DynamoDbCheckpointStore {
    // The client holds the credentials provider: show only what is ours.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbCheckpointStore")
            .field("table", &self.table)
            .field("worker_id", &self.worker_id)
            .field("lease_keys", &self.lease_keys)
            .field("conflict_retries", &self.conflict_retries)
            .finish_non_exhaustive()
    }
}

/// Builds a [`DynamoDbCheckpointStore`]; see
/// [`DynamoDbCheckpointStore::builder`].
pub struct DynamoDbCheckpointStoreBuilder {
    store: DynamoDbCheckpointStore,
    check_table: bool,
    create_table: bool,
    startup_timeout: Duration,
    endpoint: String,
}

impl fmt::Debug for DynamoDbCheckpointStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbCheckpointStoreBuilder")
            .field("store", &self.store)
            .field("check_table", &self.check_table)
            .field("create_table", &self.create_table)
            .field("startup_timeout", &self.startup_timeout)
            .finish_non_exhaustive()
    }
}

impl DynamoDbCheckpointStoreBuilder {
    /// The id written to `leaseOwner`. Defaults to `streamsift-PID-NANOS`,
    /// unique per process; set it to something stable (a host name) to read
    /// the table more easily.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.store.worker_id = Arc::from(id.into());
        self
    }

    /// How lease keys are made (default [`LeaseKeys::ShardId`]).
    pub fn lease_keys(mut self, keys: LeaseKeys) -> Self {
        self.store.lease_keys = keys;
        self
    }

    /// How many conditional-write conflicts in a row a save retries, each
    /// after re-reading the lease, before it gives up (default 5).
    pub fn conflict_retries(mut self, retries: u32) -> Self {
        self.store.conflict_retries = retries;
        self
    }

    /// Whether [`build`](Self::build) creates the table when it does not
    /// exist, with the KCL lease schema (hash key `leaseKey`, S; on-demand
    /// billing), and waits until it is ACTIVE (at most 5 minutes). Default
    /// `false`: a missing table is an error from `build`.
    pub fn create_table_if_missing(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// Whether [`build`](Self::build) checks the table (DescribeTable: it
    /// exists, has the lease schema, is ACTIVE). Default `true`; turn it off
    /// only for tests against a server that answers nothing else.
    pub fn check_table(mut self, check: bool) -> Self {
        self.check_table = check;
        self
    }

    /// How long [`build`](Self::build) may try to reach DynamoDB (throttled,
    /// 5xx or unreachable answers are retried with backoff until then).
    /// Default 30 s.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Checks the table (unless [`check_table`](Self::check_table) is off),
    /// creating it if asked, and returns the store.
    ///
    /// Fails with a [`CheckpointError::Permanent`] that says what to do when
    /// the table does not exist (and is not to be created), has another key
    /// schema, or DynamoDB cannot be reached within the
    /// [`startup_timeout`](Self::startup_timeout).
    pub async fn build(self) -> Result<DynamoDbCheckpointStore, CheckpointError> {
        if self.check_table || self.create_table {
            self.store
                .ensure_table(self.create_table, &self.endpoint, self.startup_timeout)
                .await?;
        }
        Ok(self.store)
    }
}

/// One lease as stored, for inspection ([`DynamoDbCheckpointStore::leases`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseRecord {
    /// The shard.
    pub shard: ShardId,
    /// The checkpoint, or `None` before the first one (`checkpoint` absent
    /// or `TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`).
    pub position: Option<Position>,
    /// The parents recorded for the shard.
    pub parents: Vec<ShardId>,
    /// `leaseCounter`, if present.
    pub lease_counter: Option<u64>,
    /// `leaseOwner`, if present.
    pub lease_owner: Option<String>,
}

/// A lease item, parsed.
struct Lease {
    key: String,
    stream: Option<String>,
    shard: Option<String>,
    position: Option<Position>,
    counter: Option<u64>,
    owner: Option<String>,
    parents: Vec<String>,
}

/// Why a conditional write did not happen.
enum WriteError {
    /// The item changed since it was read.
    Conflict,
    /// Anything else, already mapped.
    Failed(CheckpointError),
}

impl DynamoDbCheckpointStore {
    /// Starts building a store over `table`, with a DynamoDB client made
    /// from `config` (region, credentials, endpoint URL for emulators).
    pub fn builder(
        config: &aws_config::SdkConfig,
        table: impl Into<String>,
    ) -> DynamoDbCheckpointStoreBuilder {
        let mut builder = Self::builder_from_client(Client::new(config), table);
        if let Some(url) = config.endpoint_url() {
            builder.endpoint = url.to_owned();
        }
        builder
    }

    /// Like [`builder`](Self::builder), over `client` (for tests and custom
    /// HTTP clients). The SDK's own retries are turned off on the copy the
    /// store uses, whatever `client` was built with: each store call makes
    /// one attempt per DynamoDB request, and the caller (the pipeline's
    /// commit) decides about retries.
    pub fn builder_from_client(
        client: Client,
        table: impl Into<String>,
    ) -> DynamoDbCheckpointStoreBuilder {
        let endpoint = match client.config().region() {
            Some(region) => format!("the default endpoint of region {region}"),
            None => "no endpoint (no region is configured)".to_owned(),
        };
        let conf = client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build();
        DynamoDbCheckpointStoreBuilder {
            store: DynamoDbCheckpointStore {
                client: Client::from_conf(conf),
                table: Arc::from(table.into()),
                worker_id: Arc::from(default_worker_id()),
                lease_keys: LeaseKeys::default(),
                conflict_retries: DEFAULT_CONFLICT_RETRIES,
                locks: Arc::default(),
            },
            check_table: true,
            create_table: false,
            startup_timeout: crate::aws::DEFAULT_STARTUP_TIMEOUT,
            endpoint,
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The worker id written to `leaseOwner`.
    pub fn worker(&self) -> &str {
        &self.worker_id
    }

    /// The `leaseKey` of `shard` of `stream` under this store's scheme.
    pub fn lease_key(&self, stream: &str, shard: &ShardId) -> String {
        match self.lease_keys {
            LeaseKeys::ShardId => shard.as_str().to_string(),
            LeaseKeys::StreamAndShard => format!("{stream}:{shard}"),
        }
    }

    /// DescribeTable until it answers (retryable failures retried within
    /// `timeout`, as every backend's start-up check is); then checks the schema, creates a missing table if
    /// `create`, and waits until the table is ACTIVE (at most 5 minutes).
    async fn ensure_table(
        &self,
        create: bool,
        endpoint: &str,
        timeout: Duration,
    ) -> Result<(), CheckpointError> {
        let described = crate::aws::call_at_startup(timeout, || {
            self.client.describe_table().table_name(&*self.table).send()
        })
        .await;
        match described {
            Ok(out) => {
                if let Some(table) = out.table() {
                    self.check_schema(table.key_schema(), table.attribute_definitions())?;
                }
            }
            Err(StartupError::Refused { failure, error })
                if failure.kind == AwsErrorKind::NotFound =>
            {
                if !create {
                    return Err(CheckpointError::permanent(format!(
                        "the checkpoint table {:?} does not exist at {endpoint}: create it \
                         (hash key leaseKey of type S), or call \
                         create_table_if_missing(true) on the builder, or check the table \
                         name, the region and --endpoint-url",
                        self.table
                    ))
                    .with_source(error));
                }
                self.create_table().await?;
            }
            Err(StartupError::Refused { error, .. }) => {
                return Err(self.sdk_error("DescribeTable", error));
            }
            Err(StartupError::TimedOut { last }) => {
                let last = last.map_or_else(|| "no answer".to_owned(), |f| f.to_string());
                return Err(CheckpointError::permanent(format!(
                    "could not reach DynamoDB at {endpoint} within {timeout:?}: check \
                     --endpoint-url / the region / network (table {:?}; the last failure: \
                     {last})",
                    self.table
                )));
            }
        }
        let active_by = Instant::now() + TABLE_ACTIVE_TIMEOUT;
        loop {
            let out = self
                .client
                .describe_table()
                .table_name(&*self.table)
                .send()
                .await
                .map_err(|e| self.sdk_error("DescribeTable", e))?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            if Instant::now() >= active_by {
                return Err(CheckpointError::Timeout(TABLE_ACTIVE_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn create_table(&self) -> Result<(), CheckpointError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            CheckpointError::permanent(format!("building the CreateTable request: {e}"))
                .with_source(e)
        };
        let key = KeySchemaElement::builder()
            .attribute_name(LEASE_KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(build)?;
        let attribute = AttributeDefinition::builder()
            .attribute_name(LEASE_KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build)?;
        match self
            .client
            .create_table()
            .table_name(&*self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key)
            .attribute_definitions(attribute)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(table = %self.table, "created the checkpoint table");
                Ok(())
            }
            // Another worker created it at the same moment.
            Err(e) if is_code(&e, "ResourceInUseException") => Ok(()),
            Err(e) => Err(self.sdk_error("CreateTable", e)),
        }
    }

    fn check_schema(
        &self,
        keys: &[KeySchemaElement],
        attributes: &[AttributeDefinition],
    ) -> Result<(), CheckpointError> {
        let hash_is_lease_key = matches!(
            keys,
            [only] if only.attribute_name() == LEASE_KEY && only.key_type() == &KeyType::Hash
        );
        let lease_key_is_string = attributes.iter().any(|a| {
            a.attribute_name() == LEASE_KEY && a.attribute_type() == &ScalarAttributeType::S
        });
        if hash_is_lease_key && lease_key_is_string {
            return Ok(());
        }
        let found: Vec<String> = keys
            .iter()
            .map(|k| format!("{} ({})", k.attribute_name(), k.key_type().as_str()))
            .collect();
        Err(CheckpointError::permanent(format!(
            "table {:?} exists with key schema [{}], expected the KCL lease schema: hash key \
             leaseKey (S) and no range key; use another table name",
            self.table,
            found.join(", ")
        )))
    }

    /// Every lease of `stream`, with its lineage and lease columns.
    pub async fn leases(&self, stream: &str) -> Result<Vec<LeaseRecord>, CheckpointError> {
        check_stream(stream)?;
        let mut leases = Vec::new();
        let mut start = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&*self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            if self.lease_keys == LeaseKeys::StreamAndShard {
                scan = scan
                    .filter_expression("#stream = :stream")
                    .expression_attribute_names("#stream", STREAM_NAME)
                    .expression_attribute_values(":stream", AttributeValue::S(stream.into()));
            }
            let out = scan.send().await.map_err(|e| self.sdk_error("Scan", e))?;
            for item in out.items() {
                let lease = self.parse(item)?;
                self.check_stream_of(stream, &lease)?;
                let shard = self.shard_of(stream, &lease)?;
                if shard.as_str() == META_SHARD {
                    continue;
                }
                leases.push(LeaseRecord {
                    shard,
                    position: lease.position,
                    parents: lease.parents.into_iter().map(ShardId::new).collect(),
                    lease_counter: lease.counter,
                    lease_owner: lease.owner,
                });
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(leases)
    }

    fn shard_of(&self, stream: &str, lease: &Lease) -> Result<ShardId, CheckpointError> {
        match self.lease_keys {
            LeaseKeys::ShardId => Ok(ShardId::new(&lease.key)),
            LeaseKeys::StreamAndShard => {
                if let Some(shard) = &lease.shard {
                    return Ok(ShardId::new(shard));
                }
                lease
                    .key
                    .strip_prefix(stream)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .filter(|shard| !shard.is_empty())
                    .map(ShardId::new)
                    .ok_or_else(|| {
                        CheckpointError::permanent(format!(
                            "lease {:?} in table {:?} has no shardId attribute and its leaseKey \
                             is not \"{stream}:SHARD\"; expected the multi-stream layout",
                            lease.key, self.table
                        ))
                    })
            }
        }
    }

    /// With one table per stream, a lease of another stream means two
    /// streams share the table.
    fn check_stream_of(&self, stream: &str, lease: &Lease) -> Result<(), CheckpointError> {
        match &lease.stream {
            Some(other) if other != stream => Err(CheckpointError::permanent(format!(
                "table {:?} holds lease {:?} of stream {other:?}, not {stream:?}: with \
                 LeaseKeys::ShardId a table holds one stream; use a table per stream, or \
                 LeaseKeys::StreamAndShard in a new table",
                self.table, lease.key
            ))),
            _ => Ok(()),
        }
    }

    fn parse(&self, item: &HashMap<String, AttributeValue>) -> Result<Lease, CheckpointError> {
        let key = string(item, LEASE_KEY, &self.table, "?")?.ok_or_else(|| {
            CheckpointError::permanent(format!(
                "an item of table {:?} has no leaseKey; expected the KCL lease schema",
                self.table
            ))
        })?;
        let checkpoint = string(item, CHECKPOINT, &self.table, &key)?;
        let sub = number(item, SUB_SEQUENCE, &self.table, &key)?;
        let position = match checkpoint.as_deref() {
            None => None,
            Some(SHARD_END) => Some(Position::ShardEnd),
            Some(initial) if INITIAL_POSITIONS.contains(&initial) => None,
            Some("") => {
                return Err(CheckpointError::permanent(format!(
                    "lease {key:?} in table {:?} has an empty checkpoint; expected a sequence \
                     number or SHARD_END",
                    self.table
                )));
            }
            Some(number) => Some(Position::Sequence(Sequence {
                number: number.to_string(),
                sub_sequence: sub,
            })),
        };
        let parents = match item.get(PARENT_SHARD_ID) {
            None => Vec::new(),
            Some(AttributeValue::Ss(set)) => set.clone(),
            Some(other) => return Err(wrong_type(&self.table, &key, PARENT_SHARD_ID, "SS", other)),
        };
        Ok(Lease {
            stream: string(item, STREAM_NAME, &self.table, &key)?,
            shard: string(item, SHARD_ID, &self.table, &key)?,
            counter: number(item, LEASE_COUNTER, &self.table, &key)?,
            owner: string(item, LEASE_OWNER, &self.table, &key)?,
            position,
            parents,
            key,
        })
    }

    async fn get(&self, key: &str) -> Result<Option<Lease>, CheckpointError> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .key(LEASE_KEY, AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.sdk_error("GetItem", e))?;
        out.item.as_ref().map(|item| self.parse(item)).transpose()
    }

    /// Creates a lease that did not exist when read.
    async fn put_new(
        &self,
        stream: &str,
        key: &str,
        shard: &ShardId,
        next: &Position,
    ) -> Result<(), WriteError> {
        let (checkpoint, sub) = encode(next);
        let mut put = self
            .client
            .put_item()
            .table_name(&*self.table)
            .item(LEASE_KEY, AttributeValue::S(key.to_string()))
            .item(CHECKPOINT, AttributeValue::S(checkpoint))
            .item(LEASE_COUNTER, AttributeValue::N("1".into()))
            .item(LEASE_OWNER, AttributeValue::S(self.worker_id.to_string()))
            .item(OWNER_SWITCHES, AttributeValue::N("0".into()))
            .item(STREAM_NAME, AttributeValue::S(stream.to_string()))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", LEASE_KEY);
        if let Some(sub) = sub {
            put = put.item(SUB_SEQUENCE, AttributeValue::N(sub.to_string()));
        }
        if self.lease_keys == LeaseKeys::StreamAndShard {
            put = put.item(SHARD_ID, AttributeValue::S(shard.as_str().to_string()));
        }
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(WriteError::Conflict)
            }
            Err(e) => Err(WriteError::Failed(self.sdk_error("PutItem", e))),
        }
    }

    /// Updates a lease on the condition that its counter and owner are
    /// still what `read` saw.
    async fn update(
        &self,
        stream: &str,
        shard: &ShardId,
        next: &Position,
        read: &Lease,
    ) -> Result<(), WriteError> {
        let (checkpoint, sub) = encode(next);
        let next_counter = read.counter.unwrap_or(0).saturating_add(1);
        let mut set = vec![
            "#cp = :cp",
            "#ctr = :next",
            "#owner = :me",
            "#osw = :zero",
            "#stream = :stream",
        ];
        if sub.is_some() {
            set.push("#sub = :sub");
        }
        if self.lease_keys == LeaseKeys::StreamAndShard {
            set.push("#shard = :shard");
        }
        let mut expression = format!("SET {}", set.join(", "));
        if sub.is_none() {
            expression.push_str(" REMOVE #sub");
        }
        let counter_condition = match read.counter {
            Some(_) => "#ctr = :read",
            None => "attribute_not_exists(#ctr)",
        };
        let owner_condition = match read.owner {
            Some(_) => "#owner = :was",
            None => "attribute_not_exists(#owner)",
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key(LEASE_KEY, AttributeValue::S(read.key.clone()))
            .update_expression(expression)
            .condition_expression(format!(
                "attribute_exists(#key) AND {counter_condition} AND {owner_condition}"
            ))
            .expression_attribute_names("#key", LEASE_KEY)
            .expression_attribute_names("#cp", CHECKPOINT)
            .expression_attribute_names("#sub", SUB_SEQUENCE)
            .expression_attribute_names("#ctr", LEASE_COUNTER)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#osw", OWNER_SWITCHES)
            .expression_attribute_names("#stream", STREAM_NAME)
            .expression_attribute_values(":cp", AttributeValue::S(checkpoint))
            .expression_attribute_values(":next", AttributeValue::N(next_counter.to_string()))
            .expression_attribute_values(":me", AttributeValue::S(self.worker_id.to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":stream", AttributeValue::S(stream.to_string()));
        if let Some(sub) = sub {
            update = update.expression_attribute_values(":sub", AttributeValue::N(sub.to_string()));
        }
        if self.lease_keys == LeaseKeys::StreamAndShard {
            update = update
                .expression_attribute_names("#shard", SHARD_ID)
                .expression_attribute_values(":shard", AttributeValue::S(shard.to_string()));
        }
        if let Some(counter) = read.counter {
            update =
                update.expression_attribute_values(":read", AttributeValue::N(counter.to_string()));
        }
        if let Some(owner) = &read.owner {
            update = update.expression_attribute_values(":was", AttributeValue::S(owner.clone()));
        }
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(WriteError::Conflict)
            }
            Err(e) => Err(WriteError::Failed(self.sdk_error("UpdateItem", e))),
        }
    }

    /// Writes `next` over the lease as read, re-reading and retrying on
    /// conflicts.
    async fn write(
        &self,
        stream: &str,
        key: &str,
        shard: &ShardId,
        next: &Position,
        mut read: Option<Lease>,
    ) -> Result<(), CheckpointError> {
        let mut conflicts = 0u32;
        loop {
            let written = match &read {
                None => self.put_new(stream, key, shard, next).await,
                Some(lease) => self.update(stream, shard, next, lease).await,
            };
            match written {
                Ok(()) => return Ok(()),
                Err(WriteError::Failed(e)) => return Err(e),
                Err(WriteError::Conflict) => conflicts += 1,
            }
            if conflicts > self.conflict_retries {
                let (owner, counter) = read
                    .as_ref()
                    .map(|l| (l.owner.clone(), l.counter))
                    .unwrap_or((None, None));
                return Err(CheckpointError::permanent(format!(
                    "gave up saving shard {shard} of stream {stream:?} in table {:?} after \
                     {conflicts} conditional-write conflicts in a row: another writer keeps \
                     changing lease {key:?} (last seen owner {owner:?}, leaseCounter {counter:?}). \
                     Only one worker may checkpoint a shard: check that no other consumer or KCL \
                     application uses this table for the same stream",
                    self.table
                )));
            }
            tokio::time::sleep(conflict_backoff(conflicts)).await;
            read = self.get(key).await?;
            if let Some(lease) = &read {
                self.check_stream_of(stream, lease)?;
                if let Some(current) = &lease.position {
                    if current == next {
                        // Someone wrote the very same position meanwhile.
                        return Ok(());
                    }
                    if !is_forward(current, next) {
                        return Err(backwards(stream, shard, current, next));
                    }
                }
            }
        }
    }

    /// The in-process locks of `keys` (sorted, so that concurrent saves take
    /// them in the same order).
    fn locks_for(&self, keys: &[&str]) -> Vec<Arc<tokio::sync::Mutex<()>>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .map(|key| locks.entry((*key).to_string()).or_default().clone())
            .collect()
    }

    /// How many per-lease locks this store (and its clones) holds now: only
    /// those of saves in progress.
    pub fn held_locks(&self) -> usize {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn sdk_error<E>(&self, operation: &str, err: SdkError<E>) -> CheckpointError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        map_sdk_error(operation, &self.table, err)
    }
}

#[async_trait]
impl CheckpointStore for DynamoDbCheckpointStore {
    async fn load(&self, stream: &str) -> Result<BTreeMap<ShardId, Position>, CheckpointError> {
        Ok(self
            .leases(stream)
            .await?
            .into_iter()
            .filter_map(|lease| Some((lease.shard, lease.position?)))
            .collect())
    }

    async fn save(&self, stream: &str, checkpoints: &[Checkpoint]) -> Result<(), CheckpointError> {
        check_stream(stream)?;
        let folded = fold_batch(stream, checkpoints)?;
        for (shard, position) in &folded {
            if let Position::Sequence(seq) = position
                && (seq.number == SHARD_END || INITIAL_POSITIONS.contains(&seq.number.as_str()))
            {
                return Err(CheckpointError::permanent(format!(
                    "checkpoint for shard {shard} of stream {stream:?} has sequence number \
                     {:?}, which the lease table reserves; expected a Kinesis sequence number \
                     (or Position::ShardEnd)",
                    seq.number
                )));
            }
        }
        let mut work: Vec<(String, ShardId, Position)> = folded
            .into_iter()
            .map(|(shard, position)| (self.lease_key(stream, &shard), shard, position))
            .collect();
        work.sort_by(|a, b| a.0.cmp(&b.0));
        let keys: Vec<&str> = work.iter().map(|(key, _, _)| key.as_str()).collect();
        // Released when this save ends, whichever way: done, refused,
        // failed, or dropped by its caller.
        let mut held = HeldLocks {
            locks: &self.locks,
            guards: Vec::with_capacity(keys.len()),
        };
        for lock in self.locks_for(&keys) {
            held.guards.push(lock.lock_owned().await);
        }
        // Read and check every lease before writing any.
        let reads = futures::future::join_all(work.iter().map(|(key, _, _)| self.get(key))).await;
        let mut leases = Vec::with_capacity(work.len());
        for ((_, shard, next), read) in work.iter().zip(reads) {
            let lease = read?;
            if let Some(lease) = &lease {
                self.check_stream_of(stream, lease)?;
                if let Some(current) = &lease.position
                    && !is_forward(current, next)
                {
                    return Err(backwards(stream, shard, current, next));
                }
            }
            leases.push(lease);
        }
        let writes = futures::future::join_all(
            work.iter()
                .zip(leases)
                .map(|((key, shard, next), lease)| self.write(stream, key, shard, next, lease)),
        )
        .await;
        drop(held);
        writes.into_iter().collect()
    }

    async fn record_lineage(
        &self,
        stream: &str,
        shard: &ShardId,
        parents: &[ShardId],
    ) -> Result<(), CheckpointError> {
        check_stream(stream)?;
        if parents.is_empty() {
            return Ok(());
        }
        let parents: Vec<String> = parents.iter().map(|p| p.as_str().to_string()).collect();
        let mut set = vec![
            "#parents = if_not_exists(#parents, :parents)",
            "#ctr = if_not_exists(#ctr, :zero)",
            "#osw = if_not_exists(#osw, :zero)",
            "#cp = if_not_exists(#cp, :initial)",
            "#stream = if_not_exists(#stream, :stream)",
        ];
        if self.lease_keys == LeaseKeys::StreamAndShard {
            set.push("#shard = if_not_exists(#shard, :shard)");
        }
        let key = self.lease_key(stream, shard);
        let mut update = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key(LEASE_KEY, AttributeValue::S(key.clone()))
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression("attribute_not_exists(#stream) OR #stream = :stream")
            .expression_attribute_names("#parents", PARENT_SHARD_ID)
            .expression_attribute_names("#ctr", LEASE_COUNTER)
            .expression_attribute_names("#osw", OWNER_SWITCHES)
            .expression_attribute_names("#cp", CHECKPOINT)
            .expression_attribute_names("#stream", STREAM_NAME)
            .expression_attribute_values(":parents", AttributeValue::Ss(parents))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":initial", AttributeValue::S("TRIM_HORIZON".into()))
            .expression_attribute_values(":stream", AttributeValue::S(stream.to_string()));
        if self.lease_keys == LeaseKeys::StreamAndShard {
            update = update
                .expression_attribute_names("#shard", SHARD_ID)
                .expression_attribute_values(":shard", AttributeValue::S(shard.to_string()));
        }
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(CheckpointError::permanent(format!(
                    "table {:?} holds lease {key:?} of another stream, not {stream:?}: with \
                     LeaseKeys::ShardId a table holds one stream; use a table per stream, or \
                     LeaseKeys::StreamAndShard in a new table",
                    self.table
                )))
            }
            Err(e) => Err(self.sdk_error("UpdateItem", e)),
        }
    }

    async fn load_meta(&self, stream: &str) -> Result<Option<StreamMeta>, CheckpointError> {
        check_stream(stream)?;
        let key = self.lease_key(stream, &ShardId::new(META_SHARD));
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .key(LEASE_KEY, AttributeValue::S(key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.sdk_error("GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        if let Some(other) = string(&item, STREAM_NAME, &self.table, &key)?
            && other != stream
        {
            return Err(CheckpointError::permanent(format!(
                "table {:?} holds the meta item {key:?} of stream {other:?}, not {stream:?}: with \
                 LeaseKeys::ShardId a table holds one stream; use a table per stream, or \
                 LeaseKeys::StreamAndShard in a new table",
                self.table
            )));
        }
        let arn = string(&item, STREAM_ARN, &self.table, &key)?;
        let created = signed(&item, STREAM_CREATED_MS, &self.table, &key)?;
        let latest = signed(&item, LATEST_AT_US, &self.table, &key)?;
        let incarnation = match (arn, created) {
            (Some(arn), Some(created_ms)) => Some(StreamIncarnation { arn, created_ms }),
            _ => None,
        };
        Ok(Some(StreamMeta::new(incarnation, latest)))
    }

    async fn save_meta(&self, stream: &str, meta: &StreamMeta) -> Result<(), CheckpointError> {
        check_stream(stream)?;
        let key = self.lease_key(stream, &ShardId::new(META_SHARD));
        let mut put = self
            .client
            .put_item()
            .table_name(&*self.table)
            .item(LEASE_KEY, AttributeValue::S(key.clone()))
            .item(STREAM_NAME, AttributeValue::S(stream.to_string()))
            .condition_expression("attribute_not_exists(#stream) OR #stream = :stream")
            .expression_attribute_names("#stream", STREAM_NAME)
            .expression_attribute_values(":stream", AttributeValue::S(stream.to_string()));
        if self.lease_keys == LeaseKeys::StreamAndShard {
            put = put.item(SHARD_ID, AttributeValue::S(META_SHARD.to_string()));
        }
        if let Some(i) = &meta.incarnation {
            put = put.item(STREAM_ARN, AttributeValue::S(i.arn.clone())).item(
                STREAM_CREATED_MS,
                AttributeValue::N(i.created_ms.to_string()),
            );
        }
        if let Some(us) = meta.latest_at_us {
            put = put.item(LATEST_AT_US, AttributeValue::N(us.to_string()));
        }
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(CheckpointError::permanent(format!(
                    "table {:?} holds the meta item {key:?} of another stream, not {stream:?}: \
                     with LeaseKeys::ShardId a table holds one stream; use a table per stream, \
                     or LeaseKeys::StreamAndShard in a new table",
                    self.table
                )))
            }
            Err(e) => Err(self.sdk_error("PutItem", e)),
        }
    }

    /// Deletes every lease of `stream` and its meta item.
    async fn reset(&self, stream: &str) -> Result<(), CheckpointError> {
        check_stream(stream)?;
        let mut keys: Vec<String> = self
            .leases(stream)
            .await?
            .iter()
            .map(|l| self.lease_key(stream, &l.shard))
            .collect();
        keys.push(self.lease_key(stream, &ShardId::new(META_SHARD)));
        for key in keys {
            self.client
                .delete_item()
                .table_name(&*self.table)
                .key(LEASE_KEY, AttributeValue::S(key))
                .send()
                .await
                .map_err(|e| self.sdk_error("DeleteItem", e))?;
        }
        Ok(())
    }
}

fn signed(
    item: &HashMap<String, AttributeValue>,
    name: &str,
    table: &str,
    key: &str,
) -> Result<Option<i64>, CheckpointError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n.parse::<i64>().map(Some).map_err(|e| {
            CheckpointError::permanent(format!(
                "item {key:?} in table {table:?} has {name} = {n}, expected a whole number; fix \
                 or delete the item"
            ))
            .with_source(e)
        }),
        Some(other) => Err(wrong_type(table, key, name, "N", other)),
    }
}

fn check_stream(stream: &str) -> Result<(), CheckpointError> {
    if stream.is_empty() {
        return Err(CheckpointError::permanent(
            "the stream name is empty; expected the stream name or ARN the source reads",
        ));
    }
    Ok(())
}

/// The `checkpoint` and `checkpointSubSequenceNumber` values of a position.
fn encode(position: &Position) -> (String, Option<u64>) {
    match position {
        Position::Sequence(seq) => (seq.number.clone(), seq.sub_sequence),
        Position::ShardEnd => (SHARD_END.to_string(), None),
    }
}

fn wrong_type(
    table: &str,
    key: &str,
    name: &str,
    want: &str,
    found: &AttributeValue,
) -> CheckpointError {
    let found = match found {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::L(_) => "L",
        AttributeValue::M(_) => "M",
        AttributeValue::Null(_) => "NULL",
        _ => "another type",
    };
    CheckpointError::permanent(format!(
        "lease {key:?} in table {table:?} has attribute {name} of type {found}, expected {want} \
         (the KCL lease schema); fix or delete the item"
    ))
}

fn string(
    item: &HashMap<String, AttributeValue>,
    name: &str,
    table: &str,
    key: &str,
) -> Result<Option<String>, CheckpointError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(table, key, name, "S", other)),
    }
}

fn number(
    item: &HashMap<String, AttributeValue>,
    name: &str,
    table: &str,
    key: &str,
) -> Result<Option<u64>, CheckpointError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n.parse::<u64>().map(Some).map_err(|e| {
            CheckpointError::permanent(format!(
                "lease {key:?} in table {table:?} has {name} = {n}, expected a whole number \
                 from 0 to {}; fix or delete the item",
                u64::MAX
            ))
            .with_source(e)
        }),
        Some(other) => Err(wrong_type(table, key, name, "N", other)),
    }
}

fn default_worker_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("streamsift-{}-{nanos:x}", std::process::id())
}

/// The per-lease locks of one save; dropping it releases them and removes
/// from the map every lock no save holds or waits for, so the map holds only
/// the leases being saved now, whatever way a save ended.
struct HeldLocks<'a> {
    locks: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for HeldLocks<'_> {
    fn drop(&mut self) {
        self.guards.clear();
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
    }
}

/// 25 ms, 50 ms, 100 ms, ... up to 1 s, with up to half of it as jitter.
fn conflict_backoff(conflicts: u32) -> Duration {
    let base = 25u64
        .saturating_mul(1 << conflicts.saturating_sub(1).min(6))
        .min(1_000);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = crate::util::splitmix64(u64::from(seed) ^ u64::from(conflicts)) % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

fn is_code<E: ProvideErrorMetadata>(err: &SdkError<E>, code: &str) -> bool {
    err.code() == Some(code)
}

/// DynamoDB's own codes for a conflict with another transaction or a
/// replica's write: worth another attempt, unlike most 400s.
const WRITE_CONFLICTS: [&str; 2] = [
    "TransactionConflictException",
    "ReplicatedWriteConflictException",
];

/// Maps an SDK error to a [`CheckpointError`] that says what to do, through
/// the shared classification ([`AwsFailure::from_sdk`]); only DynamoDB's own
/// write-conflict codes and the hints (which table, which permissions) are
/// this store's.
fn map_sdk_error<E>(operation: &str, table: &str, err: SdkError<E>) -> CheckpointError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failure = AwsFailure::from_sdk(&err);
    let what = format!("DynamoDB {operation} on table {table:?}");
    let conflict = failure
        .code
        .as_deref()
        .is_some_and(|c| WRITE_CONFLICTS.contains(&c));
    let error = match failure.kind {
        AwsErrorKind::Throttled => CheckpointError::throttled(format!("{what}: {failure}")),
        kind if kind.is_retryable() || conflict => {
            CheckpointError::unavailable(format!("{what}: {failure}"))
        }
        AwsErrorKind::NotFound => CheckpointError::permanent(format!(
            "the table {table:?} does not exist in this account, region and endpoint: create it \
             (DynamoDbCheckpointStoreBuilder::create_table_if_missing, or hash key leaseKey of \
             type S) or fix the table name ({what}: {failure})"
        )),
        AwsErrorKind::AccessDenied => CheckpointError::permanent(format!(
            "check the credentials, and grant {PERMISSIONS} ({what}: {failure})"
        )),
        _ if failure.has_code("ValidationException")
            || failure.has_code("SerializationException") =>
        {
            CheckpointError::permanent(format!(
                "DynamoDB rejected the request as invalid (a table with another key schema, or \
                 an item too large?) ({what}: {failure})"
            ))
        }
        kind => CheckpointError::permanent(format!("{}; {what}: {failure}", kind.hint())),
    };
    error.with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(
        code: &str,
        status: u16,
    ) -> SdkError<aws_sdk_dynamodb::operation::get_item::GetItemError> {
        use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
        use aws_smithy_runtime_api::http::StatusCode;
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(
            aws_sdk_dynamodb::operation::get_item::GetItemError::generic(meta),
            raw,
        )
    }

    #[test]
    fn errors_map_through_the_shared_classification() {
        for (code, status, kind, mentions) in [
            (
                "ProvisionedThroughputExceededException",
                400,
                "throttled",
                "GetItem",
            ),
            ("RequestLimitExceeded", 400, "throttled", "GetItem"),
            ("InternalServerError", 500, "unavailable", "GetItem"),
            ("SomethingNew", 502, "unavailable", "GetItem"),
            (
                "TransactionConflictException",
                400,
                "unavailable",
                "GetItem",
            ),
            (
                "ResourceNotFoundException",
                400,
                "permanent",
                "does not exist",
            ),
            (
                "AccessDeniedException",
                400,
                "permanent",
                "dynamodb:GetItem",
            ),
            ("ValidationException", 400, "permanent", "invalid"),
            ("SomethingNew", 400, "permanent", "SomethingNew"),
        ] {
            let err = map_sdk_error("GetItem", "t", service(code, status));
            assert_eq!(err.kind(), kind, "{code}: {err}");
            assert!(err.to_string().contains(mentions), "{code}: {err}");
        }
    }

    #[test]
    fn positions_encode_as_kcl_columns() {
        assert_eq!(encode(&Position::ShardEnd), ("SHARD_END".to_string(), None));
        assert_eq!(
            encode(&Position::Sequence(Sequence::with_sub_sequence("12", 3))),
            ("12".to_string(), Some(3))
        );
        assert_eq!(
            encode(&Position::Sequence(Sequence::new("12"))),
            ("12".to_string(), None)
        );
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for conflicts in 1..20 {
            let d = conflict_backoff(conflicts);
            assert!(d <= Duration::from_secs(1), "{d:?}");
            assert!(d >= Duration::from_millis(12), "{d:?}");
        }
        assert!(conflict_backoff(10) >= Duration::from_millis(500));
    }
}
