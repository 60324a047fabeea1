//! Amazon Kinesis Data Streams: a [`KinesisSource`] that reads every shard
//! with checkpoints, resharding, KPL de-aggregation and optional enhanced
//! fan-out, and a batching [`KinesisProducer`].
//! Feature `kinesis`.
//!
//! See the [Kinesis guide](crate::guide::kinesis) for emulators, positions,
//! checkpoints, resharding and enhanced fan-out, and the
//! [AWS guide](crate::guide::aws) for IAM.
//!
//! # Modules and what they depend on
//!
//! The modules form a DAG (an arrow reads "uses"); nothing below points back
//! up:
//!
//! ```text
//! source ──► efo ──┐
//!   │  └──► reader ┤
//!   └──────────────┴─► shared ──► error ──► crate::aws
//!                        └──────► unpack ──► kpl
//! producer ──► kpl          (producer and kpl use nothing of the source)
//! ```
//!
//! - `error`: what a failed call means for a reader ([`crate::aws::AwsFailure`]
//!   plus Kinesis's own codes), and the typed [`StartupError`].
//! - `shared`: the types every task of one source shares, and the per-shard
//!   helpers both readers use.
//! - `reader` (GetRecords) and `efo` (SubscribeToShard, consumer
//!   registration): one shard each; neither knows the other.
//! - `source`: the builder, the coordinator (ListShards, lineage order) and
//!   the [`Source`](crate::Source) impl; it picks the reader per shard.

mod efo;
mod error;
pub mod kpl;
pub mod producer;
mod reader;
mod shared;
mod source;
mod unpack;

pub use error::StartupError;
pub use producer::{
    Accepted, KinesisProducer, KinesisProducerBuilder, ProduceError, ProducerRecord, SendReport,
};
pub use shared::{KinesisStats, StartPosition, StreamRef};
pub use source::{KinesisSource, KinesisSourceBuilder};
pub use unpack::unpack;
