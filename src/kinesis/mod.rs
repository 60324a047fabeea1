//! Amazon Kinesis Data Streams: a [`KinesisSource`] that reads every shard
//! with checkpoints, resharding, KPL de-aggregation and optional enhanced
//! fan-out, and a batching [`KinesisProducer`](producer::KinesisProducer).
//! Feature `kinesis`.
//!
//! See the README's "Reading from Kinesis" for IAM permissions, emulators,
//! positions, checkpoints, resharding and enhanced fan-out.

mod efo;
mod error;
pub mod kpl;
pub mod producer;
mod reader;
mod source;

pub use source::{KinesisSource, KinesisSourceBuilder, KinesisStats, StartPosition, StreamRef};
