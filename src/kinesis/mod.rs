//! Amazon Kinesis Data Streams: a [`KinesisSource`] that reads every shard
//! with checkpoints, resharding, KPL de-aggregation and optional enhanced
//! fan-out, and a batching [`KinesisProducer`].
//! Feature `kinesis`.
//!
//! See the [Kinesis guide](crate::guide::kinesis) for emulators, positions,
//! checkpoints, resharding and enhanced fan-out, and the
//! [AWS guide](crate::guide::aws) for IAM.

mod efo;
mod error;
pub mod kpl;
pub mod producer;
mod reader;
mod source;

pub use producer::{Accepted, KinesisProducer, ProduceError, ProducerRecord, SendReport};
pub use source::{KinesisSource, KinesisSourceBuilder, KinesisStats, StartPosition, StreamRef};

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::record::{Record, Sequence, ShardId};

/// Turns one Kinesis record, as GetRecords, SubscribeToShard or a Lambda
/// event delivers it, into pipeline [`Record`]s, appended to `out`.
///
/// - A plain record gives one `Record` with id `"{shard}:{sequence}"`.
/// - A KPL aggregate gives one `Record` per user record, each with its own
///   partition key and sub-sequence (id `"{shard}:{sequence}/{sub}"`); the
///   payloads share `data`'s buffer.
/// - A corrupt aggregate gives one `Record` with the raw payload and
///   [`Record::defect`] set (the pipeline dead-letters it), and the error
///   is returned so the caller can count it. Nothing is dropped.
///
/// ```
/// use std::time::SystemTime;
/// use streamsift::ShardId;
/// use streamsift::kinesis::unpack;
///
/// let mut out = Vec::new();
/// let shard = ShardId::new("shardId-000000000000");
/// let err = unpack(&shard, "49590338271490256608559692538361571095921575989136588898", "user1",
///     bytes::Bytes::from_static(br#"{"text":"hi"}"#), SystemTime::now(), &mut out);
/// assert!(err.is_none());
/// assert_eq!(out[0].id, "shardId-000000000000:49590338271490256608559692538361571095921575989136588898");
/// ```
pub fn unpack(
    shard: &ShardId,
    sequence_number: &str,
    partition_key: &str,
    data: Bytes,
    arrival: SystemTime,
    out: &mut Vec<Record>,
) -> Option<kpl::KplError> {
    let plain = |out: &mut Vec<Record>, data: Bytes, defect: Option<Arc<str>>| {
        let sequence = Sequence::new(sequence_number);
        out.push(Record {
            id: format!("{shard}:{sequence}"),
            partition_key: partition_key.to_string(),
            shard: shard.clone(),
            sequence,
            payload: data,
            arrival,
            defect,
        });
    };
    match kpl::deaggregate_bytes(&data) {
        Ok(None) => {
            plain(out, data, None);
            None
        }
        Ok(Some(users)) => {
            out.reserve(users.len());
            for user in users {
                let sequence = Sequence::with_sub_sequence(sequence_number, user.sub_sequence);
                out.push(Record {
                    id: format!("{shard}:{sequence}"),
                    partition_key: user.partition_key,
                    shard: shard.clone(),
                    sequence,
                    payload: user.data,
                    arrival,
                    defect: None,
                });
            }
            None
        }
        Err(e) => {
            let reason = format!("KPL aggregate could not be unpacked: {e}");
            plain(out, data, Some(Arc::from(reason)));
            Some(e)
        }
    }
}
