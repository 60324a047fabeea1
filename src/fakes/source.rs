//! [`MemorySource`]: an in-memory stream with shards, commits and restarts.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::SourceError;
use crate::record::{Batch, Checkpoint, Position, Record, Sequence, ShardId};
use crate::source::Source;

/// How many recent commit calls a [`MemoryStream`] keeps.
const COMMIT_HISTORY: usize = 1_000;

/// The durable side of an in-memory stream: its shards and what has been
/// committed. It outlives a [`MemorySource`], the way a Kinesis stream and a
/// checkpoint table outlive a crashed consumer, so [`MemorySource::restart`]
/// can resume from it.
#[derive(Clone, Default)]
pub struct MemoryStream {
    state: Arc<Mutex<StreamState>>,
}

#[derive(Default)]
struct StreamState {
    shards: Vec<ShardId>,
    /// The most recent commit calls, oldest first (at most
    /// `COMMIT_HISTORY`, so a long run's memory stays flat).
    commits: VecDeque<Vec<Checkpoint>>,
    /// Every commit call ever made.
    commit_count: u64,
    /// The latest committed position per shard.
    committed: BTreeMap<ShardId, Position>,
    /// Records handed out by `next_batch`, over all readers.
    delivered: u64,
}

impl fmt::Debug for MemoryStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("MemoryStream")
            .field("shards", &s.shards)
            .field("commits", &s.commits.len())
            .field("committed", &s.committed)
            .finish()
    }
}

impl MemoryStream {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        // A panicking test thread must not hide the stream from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recent commit calls (up to 1,000), oldest first.
    pub fn commits(&self) -> Vec<Vec<Checkpoint>> {
        self.lock().commits.iter().cloned().collect()
    }

    /// How many commit calls were made, in all.
    pub fn commit_count(&self) -> u64 {
        self.lock().commit_count
    }

    /// The latest committed position of `shard`.
    pub fn committed(&self, shard: &ShardId) -> Option<Position> {
        self.lock().committed.get(shard).cloned()
    }

    /// The latest committed position of every shard that has one.
    pub fn checkpoints(&self) -> BTreeMap<ShardId, Position> {
        self.lock().committed.clone()
    }

    /// The shards, in order.
    pub fn shards(&self) -> Vec<ShardId> {
        self.lock().shards.clone()
    }

    /// Records handed out by every reader of this stream so far (counting
    /// redeliveries after restarts).
    pub fn delivered(&self) -> u64 {
        self.lock().delivered
    }
}

enum Reader {
    /// Records kept for restarts; reads clone them.
    Log {
        logs: Arc<Vec<Vec<Record>>>,
        cursors: Vec<usize>,
        end_sent: Vec<bool>,
        next: usize,
    },
    /// Records moved out on read; cannot restart.
    Owned {
        queues: Vec<VecDeque<Record>>,
        next: usize,
    },
    /// Records made on demand from an iterator; cannot restart.
    Lazy {
        iter: Box<dyn Iterator<Item = Bytes> + Send>,
        offsets: Vec<u64>,
        next: usize,
    },
    /// Records pushed through a [`MemorySender`].
    Channel { buffered: Vec<VecDeque<Record>> },
}

/// An in-memory [`Source`] for tests: N shards, recorded commits, and
/// crash-restart from the last commit.
///
/// Build it from payloads (kept, so it can [`restart`](Self::restart)),
/// from records moved in (not kept), from an iterator (records made on
/// demand, so memory stays flat for any length), or from a channel.
///
/// ```
/// use streamsift::fakes::MemorySource;
/// use streamsift::Source;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let source = MemorySource::from_payloads(2, vec!["a", "b", "c"]).batch_size(10);
/// let batch = source.next_batch().await.unwrap().unwrap();
/// assert_eq!(batch.shard.as_str(), "shard-0");
/// assert_eq!(batch.records.len(), 2); // "a" and "c": payload i goes to shard i % 2
/// # });
/// ```
pub struct MemorySource {
    stream: MemoryStream,
    reader: Mutex<Reader>,
    rx: Option<tokio::sync::Mutex<mpsc::Receiver<Record>>>,
    batch_size: usize,
    endless: bool,
    close_shards: bool,
}

impl fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySource")
            .field("stream", &self.stream)
            .field("batch_size", &self.batch_size)
            .field("endless", &self.endless)
            .finish_non_exhaustive()
    }
}

fn shard_ids(shards: usize) -> Vec<ShardId> {
    (0..shards.max(1))
        .map(|i| ShardId::new(format!("shard-{i}")))
        .collect()
}

fn make_record(shard: &ShardId, offset: u64, key: u64, payload: Bytes) -> Record {
    Record {
        id: format!("{shard}:{offset}"),
        partition_key: format!("pk-{key}"),
        shard: shard.clone(),
        sequence: Sequence::from_offset(offset),
        payload,
        arrival: SystemTime::now(),
        defect: None,
    }
}

impl MemorySource {
    fn with_reader(stream: MemoryStream, reader: Reader) -> Self {
        MemorySource {
            stream,
            reader: Mutex::new(reader),
            rx: None,
            batch_size: 100,
            endless: false,
            close_shards: false,
        }
    }

    fn new_stream(shards: Vec<ShardId>) -> MemoryStream {
        let stream = MemoryStream::default();
        stream.lock().shards = shards;
        stream
    }

    /// A stream of `shards` shards holding `payloads`; payload `i` goes to
    /// shard `i % shards` with partition key `pk-{i}`, at offsets 0, 1, 2...
    /// within its shard. The records are kept, so the source can restart.
    pub fn from_payloads<P: Into<Bytes>>(
        shards: usize,
        payloads: impl IntoIterator<Item = P>,
    ) -> Self {
        let ids = shard_ids(shards);
        let mut logs: Vec<Vec<Record>> = vec![Vec::new(); ids.len()];
        for (i, p) in payloads.into_iter().enumerate() {
            let s = i % ids.len();
            let offset = logs[s].len() as u64;
            logs[s].push(make_record(&ids[s], offset, i as u64, p.into()));
        }
        let n = ids.len();
        MemorySource::with_reader(
            Self::new_stream(ids),
            Reader::Log {
                logs: Arc::new(logs),
                cursors: vec![0; n],
                end_sent: vec![false; n],
                next: 0,
            },
        )
    }

    /// A stream of the given records, grouped by their `shard` field in
    /// order of first appearance. They are moved out as they are read (no
    /// copies), so this source cannot restart; use it for benchmarks.
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> Self {
        let mut ids: Vec<ShardId> = Vec::new();
        let mut queues: Vec<VecDeque<Record>> = Vec::new();
        for r in records {
            let s = match ids.iter().position(|id| *id == r.shard) {
                Some(s) => s,
                None => {
                    ids.push(r.shard.clone());
                    queues.push(VecDeque::new());
                    ids.len() - 1
                }
            };
            queues[s].push_back(r);
        }
        MemorySource::with_reader(Self::new_stream(ids), Reader::Owned { queues, next: 0 })
    }

    /// A stream whose records are made on demand from `payloads`, a batch at
    /// a time, batches going to the shards in turn. Memory stays flat
    /// whatever the length. It cannot restart.
    pub fn from_iter(
        shards: usize,
        payloads: impl Iterator<Item = Bytes> + Send + 'static,
    ) -> Self {
        let ids = shard_ids(shards);
        let n = ids.len();
        MemorySource::with_reader(
            Self::new_stream(ids),
            Reader::Lazy {
                iter: Box::new(payloads),
                offsets: vec![0; n],
                next: 0,
            },
        )
    }

    /// A source fed through a channel; payload `i` sent goes to shard
    /// `i % shards`. The stream ends when every sender is dropped.
    pub fn channel(shards: usize, capacity: usize) -> (MemorySender, MemorySource) {
        let ids = shard_ids(shards);
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let n = ids.len();
        let mut source = MemorySource::with_reader(
            Self::new_stream(ids.clone()),
            Reader::Channel {
                buffered: vec![VecDeque::new(); n],
            },
        );
        source.rx = Some(tokio::sync::Mutex::new(rx));
        let sender = MemorySender {
            tx,
            shards: Arc::new(ids),
            next: Arc::new(Mutex::new((0, vec![0; n]))),
        };
        (sender, source)
    }

    /// Records per batch (default 100).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// When the records run out, wait forever (like a live stream) instead
    /// of ending. Use with [`Shutdown`](crate::Shutdown).
    pub fn endless(mut self) -> Self {
        self.endless = true;
        self
    }

    /// Close each shard when its records run out: its last batch carries
    /// `shard_end`, so the pipeline commits [`Position::ShardEnd`]. Applies
    /// to sources built with [`from_payloads`](Self::from_payloads).
    pub fn close_shards(mut self) -> Self {
        self.close_shards = true;
        self
    }

    /// The durable stream behind this source (commits, positions).
    pub fn stream(&self) -> MemoryStream {
        self.stream.clone()
    }

    /// Simulates a crash and restart: a new reader over the same records,
    /// starting after each shard's last committed checkpoint. Records read
    /// but not committed by the old reader come again (at-least-once).
    ///
    /// # Panics
    /// If this source was not built with
    /// [`from_payloads`](Self::from_payloads): the other kinds do not keep
    /// their records.
    pub fn restart(&self) -> MemorySource {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let Reader::Log { logs, .. } = &*reader else {
            panic!("MemorySource::restart needs a source built with from_payloads");
        };
        let state = self.stream.lock();
        let mut cursors = Vec::with_capacity(logs.len());
        let mut end_sent = Vec::with_capacity(logs.len());
        for (i, log) in logs.iter().enumerate() {
            let (cursor, ended) = match state.committed.get(&state.shards[i]) {
                None => (0, false),
                Some(Position::ShardEnd) => (log.len(), true),
                Some(Position::Sequence(seq)) => {
                    // Offsets are positions in the log, so resume after it.
                    let at = seq.number.parse::<usize>().map(|o| o + 1).unwrap_or(0);
                    (at.min(log.len()), false)
                }
            };
            cursors.push(cursor);
            end_sent.push(ended);
        }
        let logs = Arc::clone(logs);
        drop(state);
        MemorySource {
            stream: self.stream.clone(),
            reader: Mutex::new(Reader::Log {
                logs,
                cursors,
                end_sent,
                next: 0,
            }),
            rx: None,
            batch_size: self.batch_size,
            endless: self.endless,
            close_shards: self.close_shards,
        }
    }

    /// Takes the next batch without waiting; `None` when nothing is ready.
    fn take_ready(&self) -> Option<Batch> {
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let shards = self.stream.shards();
        let n = shards.len();
        match &mut *reader {
            Reader::Log {
                logs,
                cursors,
                end_sent,
                next,
            } => {
                for k in 0..n {
                    let s = (*next + k) % n;
                    let log = &logs[s];
                    if cursors[s] < log.len() {
                        let end = (cursors[s] + self.batch_size).min(log.len());
                        let records = log[cursors[s]..end].to_vec();
                        cursors[s] = end;
                        *next = (s + 1) % n;
                        let mut batch = Batch::new(shards[s].clone(), records);
                        if self.close_shards && end == log.len() {
                            batch.shard_end = true;
                            end_sent[s] = true;
                        }
                        return Some(batch);
                    }
                    if self.close_shards && !end_sent[s] {
                        end_sent[s] = true;
                        let mut batch = Batch::new(shards[s].clone(), Vec::new());
                        batch.shard_end = true;
                        return Some(batch);
                    }
                }
                None
            }
            Reader::Owned { queues, next } => {
                for k in 0..n {
                    let s = (*next + k) % n;
                    if !queues[s].is_empty() {
                        let take = self.batch_size.min(queues[s].len());
                        let records: Vec<Record> = queues[s].drain(..take).collect();
                        *next = (s + 1) % n;
                        return Some(Batch::new(shards[s].clone(), records));
                    }
                }
                None
            }
            Reader::Lazy {
                iter,
                offsets,
                next,
            } => {
                let s = *next;
                let mut records = Vec::with_capacity(self.batch_size);
                for payload in iter.by_ref().take(self.batch_size) {
                    let offset = offsets[s];
                    offsets[s] += 1;
                    records.push(make_record(&shards[s], offset, offset, payload));
                }
                if records.is_empty() {
                    return None;
                }
                *next = (s + 1) % n;
                Some(Batch::new(shards[s].clone(), records))
            }
            Reader::Channel { buffered } => {
                let s = buffered.iter().position(|q| !q.is_empty())?;
                let take = self.batch_size.min(buffered[s].len());
                let records: Vec<Record> = buffered[s].drain(..take).collect();
                Some(Batch::new(shards[s].clone(), records))
            }
        }
    }

    fn buffer(&self, record: Record) {
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        if let Reader::Channel { buffered } = &mut *reader {
            let shards = self.stream.shards();
            let s = shards
                .iter()
                .position(|id| *id == record.shard)
                .unwrap_or(0);
            buffered[s].push_back(record);
        }
    }

    fn count(&self, batch: &Batch) {
        self.stream.lock().delivered += batch.records.len() as u64;
    }
}

impl Source for MemorySource {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        if let Some(batch) = self.take_ready() {
            self.count(&batch);
            return Ok(Some(batch));
        }
        if let Some(rx) = &self.rx {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(first) => {
                    self.buffer(first);
                    while let Ok(more) = rx.try_recv() {
                        self.buffer(more);
                    }
                    let batch = self.take_ready();
                    if let Some(b) = &batch {
                        self.count(b);
                    }
                    return Ok(batch);
                }
                None if !self.endless => return Ok(None),
                None => {}
            }
        }
        if self.endless {
            std::future::pending::<()>().await;
        }
        Ok(None)
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        let mut state = self.stream.lock();
        for cp in &checkpoints {
            if !state.shards.contains(&cp.shard) {
                return Err(SourceError::permanent(format!(
                    "commit for unknown shard {}",
                    cp.shard
                )));
            }
            state
                .committed
                .insert(cp.shard.clone(), cp.position.clone());
        }
        if state.commits.len() == COMMIT_HISTORY {
            state.commits.pop_front();
        }
        state.commits.push_back(checkpoints);
        state.commit_count += 1;
        Ok(())
    }
}

/// The sending side of [`MemorySource::channel`].
#[derive(Clone)]
pub struct MemorySender {
    tx: mpsc::Sender<Record>,
    shards: Arc<Vec<ShardId>>,
    /// Payloads sent so far, and the next offset per shard.
    next: Arc<Mutex<(u64, Vec<u64>)>>,
}

impl fmt::Debug for MemorySender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySender")
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl MemorySender {
    /// Sends a payload, waiting while the channel is full. Fails when the
    /// source is gone.
    pub async fn send(&self, payload: impl Into<Bytes>) -> Result<(), SourceError> {
        let record = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let i = next.0;
            next.0 += 1;
            let s = (i % self.shards.len() as u64) as usize;
            let offset = next.1[s];
            next.1[s] += 1;
            make_record(&self.shards[s], offset, i, payload.into())
        };
        self.tx
            .send(record)
            .await
            .map_err(|_| SourceError::permanent("the MemorySource was dropped"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn drain(source: &MemorySource) -> Vec<Batch> {
        let mut out = Vec::new();
        while let Some(b) = source.next_batch().await.unwrap() {
            out.push(b);
        }
        out
    }

    #[tokio::test]
    async fn payloads_spread_over_shards_in_order() {
        let source = MemorySource::from_payloads(2, (0..5).map(|i| format!("p{i}"))).batch_size(2);
        let batches = drain(&source).await;
        let ids: Vec<String> = batches
            .iter()
            .flat_map(|b| b.records.iter().map(|r| r.id.clone()))
            .collect();
        assert_eq!(
            ids,
            [
                "shard-0:0",
                "shard-0:1",
                "shard-1:0",
                "shard-1:1",
                "shard-0:2"
            ]
        );
        assert_eq!(batches[0].records[1].payload, Bytes::from("p2"));
        assert_eq!(source.stream().delivered(), 5);
    }

    #[tokio::test]
    async fn restart_resumes_after_the_last_commit() {
        let source = MemorySource::from_payloads(1, (0..10).map(|i| i.to_string())).batch_size(4);
        let first = source.next_batch().await.unwrap().unwrap();
        assert_eq!(first.records.len(), 4);
        source
            .commit(vec![Checkpoint {
                shard: first.shard.clone(),
                position: Position::Sequence(Sequence::from_offset(1)),
            }])
            .await
            .unwrap();
        let again = source.restart();
        let batches = drain(&again).await;
        let payloads: Vec<Bytes> = batches
            .into_iter()
            .flat_map(|b| b.records)
            .map(|r| r.payload)
            .collect();
        assert_eq!(payloads.first(), Some(&Bytes::from("2")));
        assert_eq!(payloads.len(), 8);
        assert_eq!(source.stream().commits().len(), 1);
    }

    #[tokio::test]
    async fn closed_shards_send_shard_end_once() {
        let source = MemorySource::from_payloads(2, ["a"]).close_shards();
        let batches = drain(&source).await;
        assert_eq!(batches.len(), 2);
        assert!(batches.iter().all(|b| b.shard_end));
        assert!(batches[1].records.is_empty());
    }

    #[tokio::test]
    async fn lazy_and_owned_sources_yield_everything() {
        let lazy = MemorySource::from_iter(3, (0..250u32).map(|i| Bytes::from(i.to_string())));
        let n: usize = drain(&lazy).await.iter().map(|b| b.records.len()).sum();
        assert_eq!(n, 250);
        let records: Vec<Record> = (0..7)
            .map(|i| {
                Record::new(
                    ShardId::new(if i % 2 == 0 { "a" } else { "b" }),
                    Sequence::from_offset(i),
                    "k",
                    Bytes::new(),
                )
            })
            .collect();
        let owned = MemorySource::from_records(records);
        let batches = drain(&owned).await;
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].records.len(), 4);
    }

    #[tokio::test]
    async fn channel_source_ends_when_senders_drop() {
        let (tx, source) = MemorySource::channel(2, 8);
        let producer = tokio::spawn(async move {
            for i in 0..5 {
                tx.send(format!("m{i}")).await.unwrap();
            }
        });
        let mut got = 0;
        while let Some(b) = source.next_batch().await.unwrap() {
            assert!(b.records.iter().all(|r| r.shard == b.shard));
            got += b.records.len();
        }
        producer.await.unwrap();
        assert_eq!(got, 5);
    }

    #[tokio::test]
    async fn unknown_shard_commit_is_rejected() {
        let source = MemorySource::from_payloads(1, ["x"]);
        let err = source
            .commit(vec![Checkpoint {
                shard: ShardId::new("nope"),
                position: Position::ShardEnd,
            }])
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
    }
}
