//! [`unpack`]: one Kinesis record as delivered (GetRecords, SubscribeToShard,
//! a Lambda event) into pipeline [`Record`]s, KPL aggregates included.
//! Depends only on [`super::kpl`].

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::kpl;
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
