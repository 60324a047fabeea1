//! [`FileSource`]: records from files or stdin, one per line, resuming from
//! a [`CheckpointStore`].
//!
//! ```no_run
//! use streamsift::checkpoint::FileCheckpointStore;
//! use streamsift::{FileSource, JsonLinesDeadLetter, Pipeline, Policy, Prediction};
//!
//! #[derive(serde::Deserialize)]
//! struct Tweet {
//!     text: String,
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let source = FileSource::open("tweets.jsonl", FileCheckpointStore::new("checkpoints")).await?;
//! let report = Pipeline::new(source)
//!     .json::<Tweet>()
//!     .classify(|t: &Tweet| {
//!         let score = if t.text.contains("down") { 0.9 } else { 0.1 };
//!         async move { Ok(Prediction::binary("actionable", "noise", score)) }
//!     })
//!     .policy(Policy::binary(0.5, "oncall"))
//!     .route(|d: &streamsift::Delivery<'_, Tweet>| {
//!         let route = d.route.clone();
//!         async move { Ok(streamsift::Receipt::new(route)) }
//!     })
//!     .dead_letter(JsonLinesDeadLetter::create("dead-letters.jsonl")?)
//!     .run()
//!     .await?;
//! // Run it again: it reads only the lines added since.
//! # let _ = report;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

use crate::checkpoint::CheckpointStore;
use crate::error::{CheckpointError, SourceError};
use crate::record::{Batch, Checkpoint, Position, Record, Sequence, ShardId};
use crate::source::Source;

/// The checkpoint stream name a [`FileSource`] uses unless told otherwise.
pub const DEFAULT_STREAM: &str = "file-source";

/// The longest line a [`FileSource`] passes on whole unless told otherwise:
/// 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// Why a [`FileSource`] could not open. The message starts with what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileSourceError {
    /// An input file does not exist.
    #[error(
        "check the path (relative paths start at the working directory): the input file {} \
         does not exist",
        path.display()
    )]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// An input file exists but could not be opened.
    #[error(
        "check that the input file {} is a readable file: opening it failed: {source}",
        path.display()
    )]
    Open {
        /// The path as given.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The builder was given no input.
    #[error("add an input with .file(path), .stdin() or .reader(name, r): a FileSource has none")]
    NoInput,
    /// Two inputs have the same name, and so would share a shard id.
    #[error(
        "give each input its own file name, or use one FileSource (and stream name) per \
         directory: two inputs are named {name:?}, and an input's name is its shard id and \
         the prefix of its record ids"
    )]
    DuplicateName {
        /// The name both inputs have.
        name: String,
    },
    /// The checkpoint store could not be read.
    #[error(
        "check the checkpoint store: loading the checkpoints of stream {stream:?} failed: {source}"
    )]
    Checkpoint {
        /// The stream name.
        stream: String,
        /// The store's error.
        #[source]
        source: CheckpointError,
    },
    /// A stored checkpoint is not one a `FileSource` writes.
    #[error(
        "use another stream name (.stream(..)) or reset this one: the stored checkpoint of \
         {shard} in stream {stream:?} is {found}, but a FileSource stores line numbers, so the \
         store belongs to another source"
    )]
    ForeignCheckpoint {
        /// The stream name.
        stream: String,
        /// The input (shard) whose checkpoint it is.
        shard: String,
        /// What was stored.
        found: String,
    },
}

impl From<FileSourceError> for SourceError {
    fn from(e: FileSourceError) -> Self {
        let retryable =
            matches!(&e, FileSourceError::Checkpoint { source, .. } if source.is_retryable());
        if retryable {
            SourceError::unavailable(e.to_string()).with_source(e)
        } else {
            SourceError::permanent(e.to_string()).with_source(e)
        }
    }
}

enum Origin {
    File(PathBuf),
    Stdin,
    Reader,
}

/// One input of a [`FileSourceBuilder`], not yet opened.
struct Pending {
    name: String,
    origin: Origin,
    reader: Option<Box<dyn AsyncRead + Send + Unpin>>,
}

/// Builds a [`FileSource`]; see [`FileSource::builder`].
pub struct FileSourceBuilder<S> {
    store: S,
    stream: String,
    inputs: Vec<Pending>,
    batch_size: usize,
    max_line_bytes: usize,
}

impl<S> fmt::Debug for FileSourceBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSourceBuilder")
            .field("stream", &self.stream)
            .field(
                "inputs",
                &self.inputs.iter().map(|i| &i.name).collect::<Vec<_>>(),
            )
            .field("batch_size", &self.batch_size)
            .field("max_line_bytes", &self.max_line_bytes)
            .finish_non_exhaustive()
    }
}

impl<S: CheckpointStore> FileSourceBuilder<S> {
    /// Adds a file. Its shard id, and the prefix of its record ids, is its
    /// file name (`data/tweets.jsonl` → `tweets.jsonl`).
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.inputs.push(Pending {
            name,
            origin: Origin::File(path),
            reader: None,
        });
        self
    }

    /// Adds the process's standard input, named `stdin`. It resumes like a
    /// file: a second run skips the lines committed by the first, which is
    /// right when the same data is piped in again (`cat tweets.jsonl | app`).
    pub fn stdin(mut self) -> Self {
        self.inputs.push(Pending {
            name: "stdin".to_string(),
            origin: Origin::Stdin,
            reader: None,
        });
        self
    }

    /// Adds any byte stream (a pipe, a decompressor, a socket) under `name`.
    pub fn reader(
        mut self,
        name: impl Into<String>,
        reader: impl AsyncRead + Send + Unpin + 'static,
    ) -> Self {
        self.inputs.push(Pending {
            name: name.into(),
            origin: Origin::Reader,
            reader: Some(Box::new(reader)),
        });
        self
    }

    /// The stream name the checkpoints are stored under (default
    /// [`DEFAULT_STREAM`]). Each input is a shard of it, so inputs of
    /// different names never share checkpoints; set a stream name of its
    /// own for files of the same name in different directories.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// Lines per batch (default 100, at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The longest line passed on whole (default
    /// [`DEFAULT_MAX_LINE_BYTES`], at least 1). A longer line still becomes
    /// one record, with its first `n` bytes and a
    /// [`defect`](Record::defect) naming its length, which the pipeline
    /// dead-letters; memory stays bounded by `n` per line.
    pub fn max_line_bytes(mut self, n: usize) -> Self {
        self.max_line_bytes = n.max(1);
        self
    }

    /// Opens every input and loads the stored checkpoints.
    ///
    /// # Errors
    /// [`FileSourceError`]: a file that does not exist or cannot be opened
    /// (named), no input, two inputs of one name, a checkpoint store that
    /// cannot be read or holds positions of another kind of source.
    pub async fn open(self) -> Result<FileSource<S>, FileSourceError> {
        if self.inputs.is_empty() {
            return Err(FileSourceError::NoInput);
        }
        let mut names = std::collections::HashSet::new();
        for input in &self.inputs {
            if !names.insert(input.name.as_str()) {
                return Err(FileSourceError::DuplicateName {
                    name: input.name.clone(),
                });
            }
        }
        let stored =
            self.store
                .load(&self.stream)
                .await
                .map_err(|source| FileSourceError::Checkpoint {
                    stream: self.stream.clone(),
                    source,
                })?;
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for pending in self.inputs {
            let shard = ShardId::new(&pending.name);
            let skip_through = match stored.get(&shard) {
                None => 0,
                Some(Position::Sequence(seq))
                    if seq.sub_sequence.is_none() && seq.number.parse::<u64>().is_ok() =>
                {
                    seq.number.parse::<u64>().unwrap_or(0)
                }
                Some(other) => {
                    return Err(FileSourceError::ForeignCheckpoint {
                        stream: self.stream.clone(),
                        shard: pending.name,
                        found: match other {
                            Position::ShardEnd => "SHARD_END".to_string(),
                            Position::Sequence(s) => format!("sequence {s}"),
                        },
                    });
                }
            };
            let reader: Box<dyn AsyncRead + Send + Unpin> = match (pending.origin, pending.reader) {
                (_, Some(reader)) => reader,
                (Origin::File(path), None) => match tokio::fs::File::open(&path).await {
                    Ok(file) => {
                        if file.metadata().await.is_ok_and(|m| m.is_dir()) {
                            return Err(FileSourceError::Open {
                                path,
                                source: std::io::Error::from(std::io::ErrorKind::IsADirectory),
                            });
                        }
                        Box::new(file)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(FileSourceError::NotFound { path });
                    }
                    Err(source) => return Err(FileSourceError::Open { path, source }),
                },
                (Origin::Stdin | Origin::Reader, None) => Box::new(tokio::io::stdin()),
            };
            inputs.push(Input {
                shard,
                reader: Box::new(BufReader::with_capacity(64 * 1024, reader)),
                line: 0,
                skip_through,
                kept: Vec::new(),
                len: 0,
                started: false,
                pending: Vec::new(),
                done: false,
            });
        }
        Ok(FileSource {
            stream: self.stream,
            store: self.store,
            state: tokio::sync::Mutex::new(State { inputs, next: 0 }),
            batch_size: self.batch_size,
            max_line_bytes: self.max_line_bytes,
        })
    }
}

/// A [`Source`] over files or stdin, one record per line, that resumes
/// from a [`CheckpointStore`]: a real source for JSON lines, plain text,
/// or any line-separated bytes.
///
/// # Records
///
/// - **One input is one shard.** Its name is the file name (`tweets.jsonl`)
///   or `stdin`, and is the [`ShardId`]. Lines are numbered from 1, as
///   editors and `grep -n` do; line `n` has sequence number `n` and the
///   record id **`{name}:{n}`**: `tweets.jsonl:17`, `stdin:3`. Ids are the
///   same on every run. The partition key is the input's name.
/// - **The payload is the line's bytes**, without its `\n` and without a
///   `\r` before it (CRLF files). Nothing else is changed, trimmed or
///   checked: JSON or text is the [`Decoder`](crate::Decoder)'s business.
///   A line that is not valid UTF-8, not JSON, or empty is still a record,
///   and the decoder dead-letters it (with its raw bytes) if it cannot
///   read it: no line is dropped silently, and a bad line never stops the
///   others.
/// - **A line longer than [`max_line_bytes`](FileSourceBuilder::max_line_bytes)**
///   (1 MiB by default) is still one record: its first `max_line_bytes`
///   bytes, with a [`defect`](Record::defect) naming its length, so the
///   pipeline dead-letters it at the decode stage. The next line is read
///   as usual.
/// - **A last line without a newline** counts as a line: files saved
///   without a final newline are common. If a writer was still appending
///   to it, the part read is processed (and usually dead-lettered as
///   invalid); the rest of that line is not read again, since line numbers
///   are what is checkpointed.
/// - **At the end of every input the source ends** (`next_batch` returns
///   `Ok(None)`, and the pipeline stops once everything is done). There is
///   no follow mode. Lines appended to a file later are read by the next
///   run, which resumes after the last committed line.
///
/// # Checkpoints
///
/// Commits store each input's last done line number in the store, under
/// the stream name ([`DEFAULT_STREAM`] unless set with
/// [`stream`](FileSourceBuilder::stream)) and the input's name as the
/// shard. On open, each input skips the lines up to its stored number (it
/// reads them to count them: a restart costs one read of the done part). A
/// `FileSource` never commits `SHARD_END`, so a file may grow between
/// runs. A file shorter than its stored line number (replaced or
/// truncated) is an error when the source reaches its end, not a silent
/// no-op: start it under another stream name, or reset the store.
///
/// Files are read as a stream, a batch at a time (memory is bounded by
/// the batch, not the file). Inputs are read in turn, one batch each. A
/// read future dropped part-way (at shutdown) loses nothing: the lines it
/// had read are kept for the next call.
///
/// ```
/// use streamsift::checkpoint::MemoryCheckpointStore;
/// use streamsift::{FileSource, Source};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("tweets.jsonl");
/// std::fs::write(&path, "{\"n\":1}\n{\"n\":2}\r\n{\"n\":3}").unwrap();
/// let source = FileSource::open(&path, MemoryCheckpointStore::new()).await.unwrap();
/// let batch = source.next_batch().await.unwrap().unwrap();
/// assert_eq!(batch.shard.as_str(), "tweets.jsonl");
/// let ids: Vec<&str> = batch.records.iter().map(|r| r.id.as_str()).collect();
/// assert_eq!(ids, ["tweets.jsonl:1", "tweets.jsonl:2", "tweets.jsonl:3"]);
/// assert_eq!(&batch.records[1].payload[..], b"{\"n\":2}");
/// assert!(source.next_batch().await.unwrap().is_none());
/// # });
/// ```
pub struct FileSource<S> {
    stream: String,
    store: S,
    state: tokio::sync::Mutex<State>,
    batch_size: usize,
    max_line_bytes: usize,
}

struct State {
    inputs: Vec<Input>,
    /// The input to read from next (round robin).
    next: usize,
}

/// One input being read. Everything a read has taken from the reader is
/// kept here, so a dropped read future loses nothing.
struct Input {
    shard: ShardId,
    reader: Box<dyn AsyncBufRead + Send + Unpin>,
    /// Lines completed so far (skipped or read).
    line: u64,
    /// Lines up to this number are done (stored checkpoint) and skipped.
    skip_through: u64,
    /// The bytes kept of the line being read (at most `max_line_bytes`,
    /// none while skipping).
    kept: Vec<u8>,
    /// The full length of the line being read, so far.
    len: usize,
    /// Whether any byte of the current line was read (for the last line).
    started: bool,
    /// Records read for the next batch.
    pending: Vec<Record>,
    done: bool,
}

impl<S> fmt::Debug for FileSource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource")
            .field("stream", &self.stream)
            .field("batch_size", &self.batch_size)
            .field("max_line_bytes", &self.max_line_bytes)
            .finish_non_exhaustive()
    }
}

impl<S: CheckpointStore> FileSource<S> {
    /// A builder with no input yet, storing checkpoints in `store`.
    ///
    /// ```
    /// use streamsift::checkpoint::MemoryCheckpointStore;
    /// use streamsift::FileSource;
    /// let builder = FileSource::builder(MemoryCheckpointStore::new())
    ///     .file("2024.jsonl")
    ///     .file("2025.jsonl")
    ///     .stream("tweets")
    ///     .batch_size(500);
    /// # let _ = builder;
    /// ```
    pub fn builder(store: S) -> FileSourceBuilder<S> {
        FileSourceBuilder {
            store,
            stream: DEFAULT_STREAM.to_string(),
            inputs: Vec::new(),
            batch_size: 100,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// One file, with the defaults: `FileSource::builder(store).file(path).open()`.
    ///
    /// # Errors
    /// As [`FileSourceBuilder::open`].
    pub async fn open(path: impl AsRef<Path>, store: S) -> Result<Self, FileSourceError> {
        Self::builder(store).file(path).open().await
    }

    /// Standard input, with the defaults: `FileSource::builder(store).stdin().open()`.
    ///
    /// # Errors
    /// As [`FileSourceBuilder::open`].
    pub async fn stdin(store: S) -> Result<Self, FileSourceError> {
        Self::builder(store).stdin().open().await
    }

    /// The stream name the checkpoints are stored under.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }
}

/// What reading one line gave.
enum Step {
    /// A whole line (or the last line, without its newline) is in `kept`.
    Line,
    /// The input has no more lines.
    End,
}

/// Reads the rest of the current line into `input.kept` (up to `max`
/// bytes; the length is counted in full). Cancel-safe: each consumed chunk
/// is recorded in `input` before the next await.
async fn read_line(input: &mut Input, max: usize) -> std::io::Result<Step> {
    loop {
        let chunk = input.reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if input.started { Step::Line } else { Step::End });
        }
        let (take, used, complete) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, i + 1, true),
            None => (chunk.len(), chunk.len(), false),
        };
        let room = max.saturating_sub(input.kept.len()).min(take);
        input.kept.extend_from_slice(&chunk[..room]);
        input.len += take;
        input.started = true;
        input.reader.consume(used);
        if complete {
            return Ok(Step::Line);
        }
    }
}

impl Input {
    /// Reads until `batch_size` records are pending or the input ends.
    async fn fill(&mut self, batch_size: usize, max: usize) -> Result<(), SourceError> {
        while !self.done && self.pending.len() < batch_size {
            let skipping = self.line < self.skip_through;
            let step = read_line(self, if skipping { 0 } else { max })
                .await
                .map_err(|e| {
                    SourceError::permanent(format!(
                        "reading {} failed after line {}; the lines before it are not lost \
                         (they are read again from the last checkpoint)",
                        self.shard, self.line
                    ))
                    .with_source(e)
                })?;
            match step {
                Step::End => {
                    self.done = true;
                    if self.line < self.skip_through {
                        return Err(SourceError::permanent(format!(
                            "start over under another stream name, or reset the checkpoints: \
                             {} has {} lines, but its checkpoint says line {} is done (the \
                             file was replaced or truncated)",
                            self.shard, self.line, self.skip_through
                        )));
                    }
                }
                Step::Line => {
                    self.line += 1;
                    let len = std::mem::take(&mut self.len);
                    self.started = false;
                    let mut kept = std::mem::take(&mut self.kept);
                    if skipping {
                        continue;
                    }
                    let mut defect = None;
                    if len > max {
                        defect = Some(Arc::from(format!(
                            "line {} of {} is {len} bytes, over the limit of {max} \
                             (max_line_bytes); its first {max} bytes are kept",
                            self.line, self.shard
                        )));
                    } else if kept.last() == Some(&b'\r') {
                        kept.pop();
                    }
                    self.pending.push(Record {
                        id: format!("{}:{}", self.shard, self.line),
                        partition_key: self.shard.to_string(),
                        shard: self.shard.clone(),
                        sequence: Sequence::from_offset(self.line),
                        payload: Bytes::from(kept),
                        arrival: SystemTime::now(),
                        defect,
                    });
                }
            }
        }
        Ok(())
    }
}

impl<S: CheckpointStore> Source for FileSource<S> {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        let mut state = self.state.lock().await;
        let n = state.inputs.len();
        for k in 0..n {
            let i = (state.next + k) % n;
            let input = &mut state.inputs[i];
            if input.done && input.pending.is_empty() {
                continue;
            }
            input.fill(self.batch_size, self.max_line_bytes).await?;
            if input.pending.is_empty() {
                continue;
            }
            let records = std::mem::take(&mut input.pending);
            let shard = input.shard.clone();
            state.next = (i + 1) % n;
            return Ok(Some(Batch::new(shard, records)));
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
