//! Amazon Kinesis Data Streams: a [`KinesisSource`] that reads every shard
//! with checkpoints, resharding, KPL de-aggregation and optional enhanced
//! fan-out, and a batching [`KinesisProducer`]. Feature `kinesis`.

pub mod kpl;
pub mod producer;
