//! Sources: where records come from, and where checkpoints go back to.

use std::future::Future;

use crate::error::SourceError;
use crate::record::{Batch, Checkpoint, Sequence, ShardId};

/// How a source learns that records are done: read once by the pipeline
/// when it starts ([`Source::acks`]).
///
/// ```
/// use streamsift::AckMode;
/// assert_eq!(AckMode::default(), AckMode::Checkpoint);
/// assert!(AckMode::PerRecord { ordered: true }.is_ordered());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckMode {
    /// Per-shard checkpoints ([`Source::commit`]): a position covers every
    /// record at or before it (Kinesis, files, Kafka offsets).
    #[default]
    Checkpoint,
    /// Per-record acknowledgements ([`Source::ack`]), as queues such as SQS
    /// delete each message: no position, no watermark. [`Source::commit`]
    /// is never called.
    PerRecord {
        /// Process the records of a shard one at a time, in order (SQS FIFO
        /// message groups): a record starts only once the one before it in
        /// its shard is done. A record being retried holds up its own shard
        /// only; other shards go on.
        ordered: bool,
    },
}

impl AckMode {
    /// Whether records are acknowledged one by one.
    pub fn is_per_record(self) -> bool {
        matches!(self, AckMode::PerRecord { .. })
    }

    /// Whether records of a shard are processed one at a time, in order.
    pub fn is_ordered(self) -> bool {
        matches!(self, AckMode::PerRecord { ordered: true })
    }
}

/// One done record, acknowledged to a source in [`AckMode::PerRecord`]:
/// its shard and sequence as the source gave them in its
/// [`Record`](crate::Record). The source maps it back to what it needs (an
/// SQS receipt handle).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ack {
    /// The record's shard.
    pub shard: ShardId,
    /// The record's sequence.
    pub sequence: Sequence,
}

/// A stream of records, in batches per shard, with checkpoint commits.
///
/// Delivery is **at-least-once**: after a restart, a source resumes after
/// the last committed checkpoint of each shard, so records that were
/// processed but not yet committed are delivered again. The pipeline commits
/// a checkpoint only once every record at or before it is done.
///
/// Both methods take `&self` so the pipeline can commit while a read is in
/// progress; sources keep their state behind interior mutability.
///
/// A read future may be dropped before it completes (at shutdown). Records
/// it had taken are then not processed, and since they were never committed
/// they come again on the next run.
///
/// A source that acknowledges records one by one (a queue) answers
/// [`AckMode::PerRecord`] from [`Source::acks`] and implements
/// [`Source::ack`]; the pipeline then acks each record once it is done
/// (routed, skipped, discarded, reviewed, or durably dead-lettered, never
/// before), in batches, and never calls `commit`. Records it never acks
/// (not done at a crash or a fatal error, or whose ack failed for good) are
/// delivered again by the source: a duplicate, never a loss. Both methods
/// have defaults, so a checkpointing source implements neither.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Source",
    label = "not a streamsift::Source",
    note = "`Pipeline::new(..)` takes a source of records: `FileSource::open(path, store)`, a `KinesisSource`, or your own type implementing `streamsift::Source` (see the `custom_source` example)"
)]
pub trait Source: Send + Sync {
    /// The next batch of records. `Ok(None)` means the stream has ended (a
    /// bounded source is exhausted); an endless stream waits for records.
    fn next_batch(&self) -> impl Future<Output = Result<Option<Batch>, SourceError>> + Send;

    /// Records that every record up to each checkpoint is done. Checkpoints
    /// only move forward, at most one per shard per call.
    fn commit(
        &self,
        checkpoints: Vec<Checkpoint>,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// How this source wants done records reported; read once when the
    /// pipeline starts. The default, [`AckMode::Checkpoint`], is
    /// [`Source::commit`].
    fn acks(&self) -> AckMode {
        AckMode::Checkpoint
    }

    /// Acknowledges done records (only in [`AckMode::PerRecord`]): each is
    /// done and must not be delivered again. A call may repeat acks of an
    /// earlier call whose answer was lost; acking twice must not fail. An
    /// error fails the whole call: the pipeline retries it with backoff,
    /// and stops ([`PipelineError::Ack`](crate::PipelineError::Ack)) once
    /// it fails for good. A source that cannot ack some records for good
    /// (an SQS receipt handle that expired) should answer `Ok` and let them
    /// come again. The default does nothing.
    fn ack(&self, done: Vec<Ack>) -> impl Future<Output = Result<(), SourceError>> + Send {
        drop(done);
        std::future::ready(Ok(()))
    }
}
