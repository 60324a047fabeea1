//! Where a source keeps how far each shard is done, so a restart resumes
//! there instead of re-reading the stream.
//!
//! A [`CheckpointStore`] holds one [`Position`] per shard per stream. The
//! [`KinesisSource`](crate::kinesis::KinesisSource) loads them at start-up and
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
pub mod dynamodb;
#[cfg(feature = "dynamodb")]
pub use dynamodb::{DynamoDbCheckpointStore, LeaseKeys, LeaseRecord};
