//! Kinesis: reading from and writing to Amazon Kinesis Data Streams.
//!
//! Feature `kinesis`. [`KinesisSource`](crate::kinesis::KinesisSource) is a
//! [`Source`](crate::Source), so it drops into a pipeline in place of any
//! other:
//!
//! ```no_run
//! use streamsift::checkpoint::FileCheckpointStore;
//! use streamsift::kinesis::{KinesisSource, StartPosition};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let source = KinesisSource::builder(&config, "tweets") // a name, or an ARN
//!     .start_position(StartPosition::TrimHorizon)
//!     .checkpoints(FileCheckpointStore::new("state/checkpoints"))
//!     .build()
//!     .await?;
//! // Pipeline::new(source).json::<Tweet>().classify(..).route(..).dead_letter(..).run().await
//! # let _ = source; Ok(()) }
//! ```
//!
//! `build()` does no I/O; the first read checks the stream. A stream that
//! does not exist fails at once and names it
//! ([`StartupError::StreamNotFound`](crate::kinesis::StartupError::StreamNotFound));
//! an endpoint that does not answer fails after `startup_timeout` (30 s by
//! default) with
//! [`StartupError::Unreachable`](crate::kinesis::StartupError::Unreachable),
//! so a wrong `--endpoint-url` never hangs. Once running, retries of a read
//! stay at debug level while a streak is short, and log one warning once it
//! passes 10 seconds.
//!
//! Credentials and region come from aws-config's default chain
//! (environment, profile, web identity, container, instance metadata). For
//! an emulator, set the endpoint on the SDK config
//! (`aws_config::defaults(..).endpoint_url(url)`, or `AWS_ENDPOINT_URL`).
//! The tests use moto's server mode and, for enhanced fan-out,
//! kinesis-local.
//!
//! # Where each shard starts
//!
//! A shard with a checkpoint resumes right after it (inside a KPL
//! aggregate, the user records already done are skipped). Otherwise it
//! starts at [`StartPosition`](crate::kinesis::StartPosition) `TrimHorizon`,
//! `Latest` or `AtTimestamp(t)`. A source started at `Latest` never yields a
//! record written before it started, and misses nothing written after: the
//! children of shards that close later are read from their start. The
//! pinned start survives restarts (it is stored with the checkpoints).
//!
//! # Checkpoints
//!
//! The pipeline commits positions per shard and the source writes them to
//! its [`CheckpointStore`](crate::checkpoint::CheckpointStore):
//!
//! - [`MemoryCheckpointStore`](crate::checkpoint::MemoryCheckpointStore),
//!   the default: gone when the process ends.
//! - [`FileCheckpointStore`](crate::checkpoint::FileCheckpointStore): one
//!   JSON file per stream, written to a temporary file, synced and renamed.
//! - `checkpoint::dynamodb::DynamoDbCheckpointStore` (feature `dynamodb`):
//!   a table with the KCL's lease columns, written with conditions so a
//!   stale worker cannot overwrite a newer checkpoint;
//!   `builder(&config, table).create_table_if_missing(true).build()` makes it,
//!   and `build()` checks the table exists before the first record.
//!
//! Positions only move forward and compare as big integers. The store also
//! remembers which incarnation of the stream it belongs to: checkpoints of a
//! stream that was deleted and recreated under the same name are refused
//! unless `reset_checkpoints_on_new_stream(true)`.
//!
//! # Reading
//!
//! - **Polling.** One task per shard calls GetRecords (up to `limit`
//!   records) at most five times a second per shard, Kinesis' own limit. It
//!   polls again at once while behind the tip and waits `idle_wait` when
//!   caught up. Expired iterators are renewed after the last record read.
//! - **Errors.** Throttling and 5xx answers are retried with exponential
//!   backoff and full jitter, and counted
//!   ([`KinesisSource::stats`](crate::kinesis::KinesisSource::stats) and
//!   `streamsift_kinesis_*` metrics). The SDK's own retries are off: every
//!   retry is the source's, paced and counted. A missing stream or a refused
//!   permission ends the source with a permanent error that says what to do.
//! - **Resharding.** A closed shard's last batch carries `shard_end`; the
//!   pipeline commits `SHARD_END` once all its records are done, and only
//!   then do its children start (both parents first, for a merge), so the
//!   records of one partition key stay in order across resharding. New
//!   shards are found by ListShards every `discovery_interval` and at once
//!   when a shard ends.
//! - **KPL aggregates** are unpacked into user records (MD5-checked). A
//!   corrupt one becomes one record with `defect` set, which the pipeline
//!   dead-letters with kind `corrupt`; the shard goes on.
//! - **Enhanced fan-out.** `.enhanced_fan_out("my-app")` registers (or
//!   reuses) a stream consumer and reads each shard with SubscribeToShard,
//!   resubscribing when Kinesis ends a subscription.
//! - **Bounded memory.** At most `channel_capacity` batches wait between the
//!   readers and the pipeline.
//! - **Replays.** `stop_at_tip(true)` ends the source once every shard is
//!   read to its tip: for replays, batch jobs and tests.
//!
//! One `KinesisSource` reads every shard of the stream; it balances no
//! leases across machines. To spread a stream over several processes, run
//! the same stages under Lambda or the KCL (see
//! [`scaling_out`](super::scaling_out)).
//!
//! # Writing
//!
//! [`KinesisProducer`](crate::kinesis::KinesisProducer) batches PutRecords
//! calls within Kinesis' limits (500 records and 5 MiB per call, 1 MiB per
//! record with its key; a record over the limit is refused before any call),
//! retries only the entries that failed, and returns one outcome per input
//! record. Partition keys come from a function of the data or are random;
//! `.aggregate(true)` packs records KPL-style per shard. Retries of partial
//! failures can reorder records of one key.
//!
//! ```no_run
//! use streamsift::kinesis::{KinesisProducer, ProducerRecord};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let producer = KinesisProducer::builder(&config, "tweets").build();
//! let report = producer
//!     .send(vec![ProducerRecord::new(r#"{"text":"hello"}"#).partition_key("user-1")])
//!     .await?;
//! println!("{} accepted, {} failed", report.accepted_count(), report.failed_count());
//! # Ok(()) }
//! ```
//!
//! The `push_tweets` example replays a JSON-lines file into a stream:
//!
//! ```text
//! cargo run --example push_tweets --features kinesis -- \
//!     --stream tweets --file examples/data/tweets.jsonl --rate 100/s \
//!     --endpoint-url http://127.0.0.1:5000 --create-shards 2
//! ```
//!
//! The IAM permissions each part needs are in [`aws`](super::aws).
