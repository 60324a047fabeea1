//! Where a source keeps how far each shard is done, so a restart resumes
//! there instead of re-reading the stream.
//!
//! A [`CheckpointStore`] holds one [`Position`] per shard per stream. The
//! `KinesisSource` (feature `kinesis`) loads them at start-up and
//! saves what the pipeline commits. Three stores ship: in memory, a file
//! (atomic write-rename with fsync), and a DynamoDB table with the KCL's lease
//! columns (feature `dynamodb`).
//!
//! Every store keeps positions moving forward only: a save that would move a
//! shard back is refused with a [`CheckpointError::Permanent`] naming both
//! positions, because it means two workers are checkpointing the same shard.
//! Positions compare with [`Sequence::cmp_position`](crate::Sequence::cmp_position),
//! as big integers, never as fixed-width text.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

pub use crate::error::CheckpointError;
use crate::record::{Checkpoint, Position, ShardId};

/// Durable per-shard positions for one or more streams.
///
/// Implementations must be safe to call concurrently and must never move a
/// shard's stored position backwards (see the module docs).
#[async_trait]
pub trait CheckpointStore: Send + Sync + fmt::Debug {
    /// Every stored checkpoint of `stream`, by shard. A stream never seen
    /// gives an empty map.
    async fn load(&self, stream: &str) -> Result<BTreeMap<ShardId, Position>, CheckpointError>;

    /// Stores `checkpoints` for `stream`; all of them or none where the
    /// backend allows it, and at least each one atomically.
    async fn save(&self, stream: &str, checkpoints: &[Checkpoint]) -> Result<(), CheckpointError>;

    /// Records a shard's parents (from a split or a merge) when a source
    /// first sees it. Stores that keep lineage (the DynamoDB lease table's
    /// `parentShardId`) write it; the default does nothing.
    async fn record_lineage(
        &self,
        _stream: &str,
        _shard: &ShardId,
        _parents: &[ShardId],
    ) -> Result<(), CheckpointError> {
        Ok(())
    }

    /// What the store knows about `stream` besides positions: which
    /// incarnation of the stream its checkpoints belong to, and the pinned
    /// start of a `LATEST` consumer. `None` when nothing was stored (a new
    /// stream, or checkpoints written before incarnations were kept). The
    /// default keeps nothing and returns `None`.
    async fn load_meta(&self, _stream: &str) -> Result<Option<StreamMeta>, CheckpointError> {
        Ok(None)
    }

    /// Stores `meta` for `stream`, replacing what was there. The default
    /// keeps nothing.
    async fn save_meta(&self, _stream: &str, _meta: &StreamMeta) -> Result<(), CheckpointError> {
        Ok(())
    }

    /// Forgets every checkpoint, lineage entry and the meta of `stream`, so
    /// that it starts over. The default refuses with a
    /// [`CheckpointError::Permanent`]: such a store must be reset by hand.
    async fn reset(&self, stream: &str) -> Result<(), CheckpointError> {
        Err(CheckpointError::permanent(format!(
            "this checkpoint store cannot reset stream {stream:?}; delete its checkpoints by hand"
        )))
    }
}

#[async_trait]
impl<S: CheckpointStore + ?Sized> CheckpointStore for std::sync::Arc<S> {
    async fn load(&self, stream: &str) -> Result<BTreeMap<ShardId, Position>, CheckpointError> {
        (**self).load(stream).await
    }
    async fn save(&self, stream: &str, checkpoints: &[Checkpoint]) -> Result<(), CheckpointError> {
        (**self).save(stream, checkpoints).await
    }
    async fn record_lineage(
        &self,
        stream: &str,
        shard: &ShardId,
        parents: &[ShardId],
    ) -> Result<(), CheckpointError> {
        (**self).record_lineage(stream, shard, parents).await
    }
    async fn load_meta(&self, stream: &str) -> Result<Option<StreamMeta>, CheckpointError> {
        (**self).load_meta(stream).await
    }
    async fn save_meta(&self, stream: &str, meta: &StreamMeta) -> Result<(), CheckpointError> {
        (**self).save_meta(stream, meta).await
    }
    async fn reset(&self, stream: &str) -> Result<(), CheckpointError> {
        (**self).reset(stream).await
    }
}

/// One incarnation of a stream: its ARN and its creation time
/// (`StreamCreationTimestamp` of DescribeStreamSummary). A stream deleted
/// and created again under the same name has the same name, and often the
/// same shard ids, but another creation time: its old checkpoints do not
/// apply to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamIncarnation {
    /// The stream ARN.
    pub arn: String,
    /// The creation time, in milliseconds since the Unix epoch.
    pub created_ms: i64,
}

impl fmt::Display for StreamIncarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} created at {} ms after the epoch",
            self.arn, self.created_ms
        )
    }
}

/// What a [`CheckpointStore`] keeps about a stream besides positions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamMeta {
    /// The stream incarnation the checkpoints belong to; `None` if unknown.
    pub incarnation: Option<StreamIncarnation>,
    /// For a consumer started at `LATEST`: the start time, pinned by its
    /// first run, in microseconds since the Unix epoch. Shards without a
    /// checkpoint are read from this time (`AT_TIMESTAMP`), in this run and
    /// in every restart.
    pub latest_at_us: Option<i64>,
}

impl StreamMeta {
    /// Meta naming `incarnation`, with `latest_at_us` as given.
    pub fn new(incarnation: Option<StreamIncarnation>, latest_at_us: Option<i64>) -> Self {
        StreamMeta {
            incarnation,
            latest_at_us,
        }
    }
}

/// Microseconds since the Unix epoch (negative before it).
pub fn to_micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// The time `us` microseconds after the Unix epoch.
pub fn from_micros(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// Checkpoints of one stream incarnation found where another was expected:
/// the stream was deleted and created again (or an emulator restarted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the checkpoints of stream {stream:?} belong to {found}, but the stream now is {expected} \
     (deleted and created again, or an emulator restarted); they do not apply to it. To start \
     over, delete this stream's checkpoints from the store (reset), or build the source with \
     reset_checkpoints_on_new_stream(true)"
)]
pub struct IncarnationMismatch {
    /// The stream, as the source names it.
    pub stream: String,
    /// The incarnation the stored checkpoints belong to.
    pub found: StreamIncarnation,
    /// The incarnation the stream has now.
    pub expected: StreamIncarnation,
}

/// Whether `next` may replace `stored`: positions only move forward, and
/// `ShardEnd` is final.
pub fn is_forward(stored: &Position, next: &Position) -> bool {
    match (stored, next) {
        (Position::ShardEnd, Position::ShardEnd) => true,
        (Position::ShardEnd, Position::Sequence(_)) => false,
        (Position::Sequence(_), Position::ShardEnd) => true,
        (Position::Sequence(a), Position::Sequence(b)) => {
            a.cmp_position(b) != std::cmp::Ordering::Greater
        }
    }
}

impl From<CheckpointError> for crate::SourceError {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Throttled { message, source } => crate::SourceError::Throttled {
                message: format!("checkpoint store: {message}"),
                source,
            },
            CheckpointError::Unavailable { message, source } => crate::SourceError::Unavailable {
                message: format!("checkpoint store: {message}"),
                source,
            },
            CheckpointError::Timeout(d) => crate::SourceError::Timeout(d),
            CheckpointError::Permanent { message, source } => crate::SourceError::Permanent {
                message: format!("checkpoint store: {message}"),
                source,
            },
        }
    }
}

/// Describes a position for error messages: `sequence 42`, `sequence 42
/// sub-sequence 3`, or `SHARD_END`.
pub(crate) fn describe(position: &Position) -> String {
    match position {
        Position::Sequence(seq) => match seq.sub_sequence {
            Some(sub) => format!("sequence {} sub-sequence {sub}", seq.number),
            None => format!("sequence {}", seq.number),
        },
        Position::ShardEnd => "SHARD_END".to_string(),
    }
}

/// The error every store gives for a save that would move a shard back.
pub(crate) fn backwards(
    stream: &str,
    shard: &ShardId,
    stored: &Position,
    attempted: &Position,
) -> CheckpointError {
    CheckpointError::permanent(format!(
        "refused to move shard {shard} of stream {stream:?} backwards: stored {}, attempted {}; \
         positions only move forward, so another worker is probably checkpointing the same shard \
         (or this one restarted from an older position)",
        describe(stored),
        describe(attempted),
    ))
}

/// Checks a batch before any store sees it and folds it into the last
/// position per shard. A sequence number must not be empty, and a shard named
/// twice must not go backwards within the batch.
pub(crate) fn fold_batch(
    stream: &str,
    checkpoints: &[Checkpoint],
) -> Result<BTreeMap<ShardId, Position>, CheckpointError> {
    let mut folded: BTreeMap<ShardId, Position> = BTreeMap::new();
    for cp in checkpoints {
        if cp.shard.as_str().is_empty() {
            return Err(CheckpointError::permanent(format!(
                "checkpoint for stream {stream:?} has an empty shard id; expected a shard id such as \
                 shardId-000000000000"
            )));
        }
        if let Position::Sequence(seq) = &cp.position
            && seq.number.is_empty()
        {
            return Err(CheckpointError::permanent(format!(
                "checkpoint for shard {} of stream {stream:?} has an empty sequence number; \
                 expected the sequence number of the last record done",
                cp.shard
            )));
        }
        if let Some(prev) = folded.get(&cp.shard)
            && !is_forward(prev, &cp.position)
        {
            return Err(backwards(stream, &cp.shard, prev, &cp.position));
        }
        folded.insert(cp.shard.clone(), cp.position.clone());
    }
    Ok(folded)
}

mod file;
mod memory;

pub use file::FileCheckpointStore;
pub use memory::MemoryCheckpointStore;

#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub mod dynamodb;
#[cfg(feature = "dynamodb")]
pub use dynamodb::{
    DynamoDbCheckpointStore, DynamoDbCheckpointStoreBuilder, LeaseKeys, LeaseRecord,
};
