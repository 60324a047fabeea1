//! Kafka (feature `kafka`): [`KafkaSource`], one member of a Kafka consumer
//! group, over `rdkafka` (librdkafka built from its bundled source).
//!
//! # How Kafka maps onto [`Source`](crate::Source)
//!
//! - **Partition = shard.** Each assignment of a partition to this member is
//!   its own shard, named `{topic}/{partition}@{n}` (`n` counts the times
//!   this source was given the partition). A partition that is revoked and
//!   later given back is a new shard, so the pipeline's per-shard watermark
//!   never mixes records of two assignments. Record ids,
//!   `{topic}/{partition}:{offset}`, do not depend on the assignment and are
//!   the same after a restart or a rebalance.
//! - **Commit after done, per partition, ordered.** The pipeline commits a
//!   shard's position only once every record at or before it is done; the
//!   source turns `Position::Sequence(offset)` into a Kafka offset commit of
//!   `offset + 1` for that partition (synchronous: `commit` returns once the
//!   group coordinator has stored it). Auto-commit and the offset store are
//!   off; nothing else commits.
//! - **Rebalances: revoke → drain → commit.** When the group coordinator
//!   revokes partitions, the source (on librdkafka's rebalance callback, on
//!   its own consumer thread) stops handing out their records at once, drops
//!   their batches not yet handed out, waits at most
//!   [`drain_timeout`](KafkaSourceBuilder::drain_timeout) until the pipeline
//!   has committed every record it was given of them, commits those
//!   positions to Kafka, and only then lets the rebalance go on. Records of a
//!   revoked partition still in flight after the timeout finish, but their
//!   commits are no longer sent (the partition has a new owner): the new
//!   owner reads them again from the last commit (at-least-once).
//! - **Back-pressure.** At most [`max_buffered`](KafkaSourceBuilder::max_buffered)
//!   records wait in the source; past that the assigned partitions are
//!   paused (the consumer keeps polling, so it stays in the group) and
//!   resumed once half of them are handed out.
//!
//! The consumer uses Kafka's classic group protocol with librdkafka's
//! default (eager) assignors; heartbeats run on librdkafka's own threads.
//!
//! # Errors
//!
//! The build fails fast (within [`startup_timeout`](KafkaSourceBuilder::startup_timeout))
//! when the brokers do not answer or a topic does not exist. While running,
//! a missing topic or a refused authorization ends the stream with a
//! permanent [`SourceError`](crate::SourceError); broker disconnects are retried by librdkafka
//! and logged. A commit refused because a rebalance is in progress is
//! retryable: the pipeline tries again, and by then the revoke has committed
//! what was done.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), streamsift::SourceError> {
//! use streamsift::kafka::KafkaSource;
//! let source = KafkaSource::builder("127.0.0.1:9092", "support-triage")
//!     .topic("tweets")
//!     .build()
//!     .await?;
//! # drop(source);
//! # Ok(())
//! # }
//! ```

mod consumer;

pub use consumer::{ClosedHandle, KafkaSource, KafkaSourceBuilder, StartFrom};
