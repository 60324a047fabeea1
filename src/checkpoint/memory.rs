//! The in-memory checkpoint store.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{CheckpointError, CheckpointStore, StreamMeta, fold_batch, is_forward};
use crate::record::{Checkpoint, Position, ShardId};

/// A [`CheckpointStore`] in memory, for tests and for runs that need no
/// restart.
///
/// Clones share the same contents (an `Arc` inside), so a test can keep one
/// clone to inspect what a source saved through another. It follows the same
/// rules as the durable stores: positions only move forward, and a batch with
/// a backwards checkpoint stores none of it. It also keeps the lineage given
/// to [`record_lineage`](CheckpointStore::record_lineage).
///
/// ```
/// use streamsift::checkpoint::{CheckpointStore, MemoryCheckpointStore};
/// use streamsift::{Checkpoint, Position, Sequence, ShardId};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryCheckpointStore::new();
/// let shard = ShardId::new("shardId-000000000000");
/// let done = Position::Sequence(Sequence::new("42"));
/// store
///     .save("tweets", &[Checkpoint { shard: shard.clone(), position: done.clone() }])
///     .await?;
/// assert_eq!(store.positions("tweets").get(&shard), Some(&done));
/// # Ok::<(), streamsift::CheckpointError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct MemoryCheckpointStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Positions by stream, then shard.
    positions: BTreeMap<String, BTreeMap<ShardId, Position>>,
    /// Parents by stream, then shard.
    lineage: BTreeMap<String, BTreeMap<ShardId, Vec<ShardId>>>,
    /// Meta by stream.
    meta: BTreeMap<String, StreamMeta>,
    /// Successful `save` calls.
    saves: u64,
}

impl fmt::Debug for MemoryCheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("MemoryCheckpointStore")
            .field("positions", &s.positions)
            .field("saves", &s.saves)
            .finish()
    }
}

impl MemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryCheckpointStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the store from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored positions of `stream`, by shard (empty if never saved).
    pub fn positions(&self, stream: &str) -> BTreeMap<ShardId, Position> {
        self.lock()
            .positions
            .get(stream)
            .cloned()
            .unwrap_or_default()
    }

    /// Every stream that has at least one stored position.
    pub fn streams(&self) -> Vec<String> {
        self.lock().positions.keys().cloned().collect()
    }

    /// The parents recorded for each shard of `stream`.
    pub fn lineage(&self, stream: &str) -> BTreeMap<ShardId, Vec<ShardId>> {
        self.lock().lineage.get(stream).cloned().unwrap_or_default()
    }

    /// The meta stored for `stream`, if any.
    pub fn meta(&self, stream: &str) -> Option<StreamMeta> {
        self.lock().meta.get(stream).cloned()
    }

    /// How many `save` calls succeeded.
    pub fn save_count(&self) -> u64 {
        self.lock().saves
    }

    /// Sets a position directly, bypassing the forward-only rule: for
    /// setting up a test (a restart from a known checkpoint).
    pub fn seed(&self, stream: &str, shard: ShardId, position: Position) {
        self.lock()
            .positions
            .entry(stream.to_string())
            .or_default()
            .insert(shard, position);
    }
}

#[async_trait]
impl CheckpointStore for MemoryCheckpointStore {
    async fn load(&self, stream: &str) -> Result<BTreeMap<ShardId, Position>, CheckpointError> {
        Ok(self.positions(stream))
    }

    async fn save(&self, stream: &str, checkpoints: &[Checkpoint]) -> Result<(), CheckpointError> {
        let folded = fold_batch(stream, checkpoints)?;
        let mut state = self.lock();
        let stored = state.positions.entry(stream.to_string()).or_default();
        // Check the whole batch before changing anything: all or none.
        for (shard, next) in &folded {
            if let Some(current) = stored.get(shard)
                && !is_forward(current, next)
            {
                return Err(super::backwards(stream, shard, current, next));
            }
        }
        stored.extend(folded);
        if stored.is_empty() {
            state.positions.remove(stream);
        }
        state.saves += 1;
        Ok(())
    }

    async fn record_lineage(
        &self,
        stream: &str,
        shard: &ShardId,
        parents: &[ShardId],
    ) -> Result<(), CheckpointError> {
        if parents.is_empty() {
            return Ok(());
        }
        self.lock()
            .lineage
            .entry(stream.to_string())
            .or_default()
            .entry(shard.clone())
            .or_insert_with(|| parents.to_vec());
        Ok(())
    }

    async fn load_meta(&self, stream: &str) -> Result<Option<StreamMeta>, CheckpointError> {
        Ok(self.meta(stream))
    }

    async fn save_meta(&self, stream: &str, meta: &StreamMeta) -> Result<(), CheckpointError> {
        self.lock().meta.insert(stream.to_string(), meta.clone());
        Ok(())
    }

    async fn reset(&self, stream: &str) -> Result<(), CheckpointError> {
        let mut state = self.lock();
        state.positions.remove(stream);
        state.lineage.remove(stream);
        state.meta.remove(stream);
        Ok(())
    }
}
