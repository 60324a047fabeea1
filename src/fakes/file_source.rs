//! [`FileSource`]: a stream held in a file, one record per line, whose
//! progress is kept in a [`CheckpointStore`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;

use crate::checkpoint::CheckpointStore;
use crate::error::SourceError;
use crate::record::{Batch, Checkpoint, Position, Record, Sequence, ShardId};
use crate::source::Source;

/// A [`Source`] over a file of records, one per line (JSON lines, or any
/// bytes without a newline), that resumes from a [`CheckpointStore`].
///
/// Line `i` (from 0) goes to shard `shard-{i % shards}` with partition key
/// `pk-{i}`, at offsets 0, 1, 2... within its shard; its id is
/// `shard-{s}:{offset}`, the same on every run. Commits go to the store under
/// the stream name given to [`open`](Self::open), and a new `FileSource` over
/// the same file and store starts after each shard's stored position. This
/// is the file-backed twin of [`MemorySource`](super::MemorySource): the
/// stream and its checkpoints survive the process, so a test can kill the
/// process and start another (at-least-once across real crashes).
///
/// The file is read whole when opened; it is meant for tests.
///
/// ```
/// use streamsift::checkpoint::MemoryCheckpointStore;
/// use streamsift::fakes::FileSource;
/// use streamsift::Source;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dir = std::env::temp_dir().join(format!("file-source-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("stream.jsonl");
/// std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
/// let store = MemoryCheckpointStore::new();
/// let source = FileSource::open(&path, "s", 2, store).await.unwrap();
/// let batch = source.next_batch().await.unwrap().unwrap();
/// assert_eq!(batch.records[0].id, "shard-0:0");
/// assert_eq!(&batch.records[1].payload[..], b"{\"a\":3}");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # });
/// ```
pub struct FileSource<S> {
    path: PathBuf,
    stream: String,
    store: S,
    shards: Vec<ShardId>,
    logs: Arc<Vec<Vec<Record>>>,
    state: Mutex<Cursors>,
    batch_size: usize,
}

struct Cursors {
    next_offset: Vec<usize>,
    next_shard: usize,
}

impl<S> fmt::Debug for FileSource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .field("stream", &self.stream)
            .field("shards", &self.shards)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl<S: CheckpointStore> FileSource<S> {
    /// Reads `path` and the stored checkpoints of `stream`, and starts each
    /// of the `shards` shards (at least 1) after its stored position.
    ///
    /// # Errors
    /// [`SourceError`] when the file cannot be read, or the store cannot be
    /// loaded (its own error, converted), or a stored position is not an
    /// offset of this file.
    pub async fn open(
        path: impl AsRef<Path>,
        stream: impl Into<String>,
        shards: usize,
        store: S,
    ) -> Result<Self, SourceError> {
        let path = path.as_ref().to_path_buf();
        let stream = stream.into();
        let text = tokio::fs::read(&path).await.map_err(|e| {
            SourceError::permanent(format!(
                "cannot read the stream file {}: {e}; expected a file of records, one per line",
                path.display()
            ))
            .with_source(e)
        })?;
        let ids: Vec<ShardId> = (0..shards.max(1))
            .map(|i| ShardId::new(format!("shard-{i}")))
            .collect();
        let bytes = Bytes::from(text);
        let mut logs: Vec<Vec<Record>> = vec![Vec::new(); ids.len()];
        let mut start = 0;
        let mut line_no: u64 = 0;
        while start < bytes.len() {
            let end = bytes[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| start + p);
            let s = (line_no % ids.len() as u64) as usize;
            let offset = logs[s].len() as u64;
            logs[s].push(Record {
                id: format!("{}:{offset}", ids[s]),
                partition_key: format!("pk-{line_no}"),
                shard: ids[s].clone(),
                sequence: Sequence::from_offset(offset),
                payload: bytes.slice(start..end),
                arrival: SystemTime::now(),
                defect: None,
            });
            line_no += 1;
            start = end + 1;
        }
        let stored = store.load(&stream).await.map_err(SourceError::from)?;
        let mut next_offset = vec![0; ids.len()];
        for (i, shard) in ids.iter().enumerate() {
            next_offset[i] = match stored.get(shard) {
                None => 0,
                Some(Position::ShardEnd) => logs[i].len(),
                Some(Position::Sequence(seq)) => {
                    let at = seq.number.parse::<usize>().map_err(|_| {
                        SourceError::permanent(format!(
                            "stored checkpoint of {shard} in stream {stream:?} is {:?}, expected \
                             a line offset; the store belongs to another stream: use another \
                             stream name or directory",
                            seq.number
                        ))
                    })?;
                    (at + 1).min(logs[i].len())
                }
            };
        }
        Ok(FileSource {
            path,
            stream,
            store,
            shards: ids,
            logs: Arc::new(logs),
            state: Mutex::new(Cursors {
                next_offset,
                next_shard: 0,
            }),
            batch_size: 100,
        })
    }

    /// Records per batch (default 100).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Every record of the file, all shards, in shard order (what a test
    /// checks coverage against).
    pub fn all_records(&self) -> Vec<Record> {
        self.logs.iter().flatten().cloned().collect()
    }

    /// Records not yet read by this source.
    pub fn remaining(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.logs
            .iter()
            .zip(&state.next_offset)
            .map(|(log, &at)| log.len() - at)
            .sum()
    }
}

impl<S: CheckpointStore> Source for FileSource<S> {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.shards.len();
        for k in 0..n {
            let s = (state.next_shard + k) % n;
            let log = &self.logs[s];
            let at = state.next_offset[s];
            if at < log.len() {
                let end = (at + self.batch_size).min(log.len());
                state.next_offset[s] = end;
                state.next_shard = (s + 1) % n;
                return Ok(Some(Batch::new(
                    self.shards[s].clone(),
                    log[at..end].to_vec(),
                )));
            }
        }
        Ok(None)
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        self.store
            .save(&self.stream, &checkpoints)
            .await
            .map_err(SourceError::from)
    }
}
