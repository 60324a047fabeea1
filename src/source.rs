//! Sources: where records come from, and where checkpoints go back to.

use std::future::Future;

use crate::error::SourceError;
use crate::record::{Batch, Checkpoint};

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
}
