//! The file checkpoint store.
//!
//! One JSON file per stream in a directory, replaced atomically on every save.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    CheckpointError, CheckpointStore, StreamIncarnation, StreamMeta, backwards, fold_batch,
    is_forward,
};
use crate::record::{Checkpoint, Position, Sequence, ShardId};

/// The `format` field of every checkpoint file.
const FORMAT: &str = "streamsift-checkpoints";
/// The file format version this build writes. Version 2 added the stream
/// incarnation and the pinned `LATEST` start; version 1 files are still read,
/// as "incarnation unknown".
const VERSION: u64 = 2;
/// The oldest version this build reads.
const OLDEST_VERSION: u64 = 1;
/// What every checkpoint file name ends with.
const SUFFIX: &str = ".checkpoint.json";
/// Escaped stream names longer than this are shortened (see
/// [`FileCheckpointStore::path_for`]), so that names stay well within the
/// usual 255-byte limit, temp-file decoration included.
const MAX_STEM: usize = 160;
/// How much of a long escaped name is kept before the hash.
const KEPT_PREFIX: usize = 140;

/// A [`CheckpointStore`] that keeps one JSON file per stream in a directory.
///
/// # Durability
///
/// Every save writes the stream's whole file to a temp file in the same
/// directory, fsyncs it, renames it over the old file and fsyncs the
/// directory. A reader sees the old file or the new one, never a mix, and
/// after `save` returns the new one survives a power cut. A crash can leave a
/// temp file behind (`.NAME.tmp-PID-N`); it is never read and is safe to
/// delete.
///
/// A file that does not parse is reported as a [`CheckpointError::Permanent`]
/// naming the path and the fault, never treated as empty: starting over from
/// the stream's initial position would silently re-read or skip records. A
/// save to a stream whose file is corrupt is refused the same way, so the file
/// is kept for inspection.
///
/// # File names
///
/// The file of a stream is `DIR/STEM.checkpoint.json`, where STEM is the
/// stream name (or ARN) with every byte other than ASCII letters, digits,
/// `-`, `_` and a non-leading `.` written as `%XX` (upper-case hex; `%`
/// itself becomes `%25`, `/` `%2F`, `:` `%3A`). So distinct names get
/// distinct files, and no name can leave the directory. A STEM longer than
/// 160 bytes is cut to its first 140 bytes plus `~` and a 64-bit FNV-1a hash
/// of the full name in hex. Each file also holds the stream's name, and a
/// load or save checks it, so a clash (a shortened name, or `Tweets` and
/// `tweets` on a case-insensitive file system) is an error, not a mix-up.
///
/// # Concurrency
///
/// Saves to the same file serialize on a lock shared by every store in the
/// process that points at the same directory. Loads take it too, and a save
/// whose caller gives up on it (a cancelled pipeline) holds it until its
/// write has landed or failed, so no load or save in the process ever sees
/// the file before a write that was already under way, nor has it land
/// afterwards. Separate processes writing the
/// same directory are not coordinated: give each worker its own directory.
///
/// Lineage ([`record_lineage`](CheckpointStore::record_lineage)) is not kept.
///
/// # Stream incarnations
///
/// Format version 2 also stores the stream incarnation (ARN and creation
/// time) and a `LATEST` consumer's pinned start
/// ([`save_meta`](CheckpointStore::save_meta)). Version 1 files are read as
/// "incarnation unknown": the source adopts their positions for the stream it
/// finds (with a warning) and stamps the file with that incarnation, so from
/// then on a recreated stream is caught. [`reset`](CheckpointStore::reset)
/// deletes the stream's file.
///
/// ```
/// use streamsift::checkpoint::{CheckpointStore, FileCheckpointStore};
/// use streamsift::{Checkpoint, Position, Sequence, ShardId};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = FileCheckpointStore::new(dir.path());
/// let shard = ShardId::new("shardId-000000000000");
/// let done = Position::Sequence(Sequence::new("42"));
/// store
///     .save("tweets", &[Checkpoint { shard: shard.clone(), position: done.clone() }])
///     .await?;
/// // A new store over the same directory (a restart) sees it.
/// let reopened = FileCheckpointStore::new(dir.path());
/// assert_eq!(reopened.load("tweets").await?.get(&shard), Some(&done));
/// # Ok::<(), streamsift::CheckpointError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct FileCheckpointStore {
    dir: PathBuf,
}

impl fmt::Debug for FileCheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCheckpointStore")
            .field("dir", &self.dir)
            .finish()
    }
}

/// What a checkpoint file holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    /// Always [`FORMAT`].
    format: String,
    /// The format version, [`VERSION`].
    version: u64,
    /// The stream this file belongs to, checked on every load.
    stream: String,
    /// Positions by shard id.
    shards: BTreeMap<String, DiskPosition>,
    /// The stream incarnation the positions belong to (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incarnation: Option<DiskIncarnation>,
    /// The pinned `LATEST` start, microseconds since the epoch (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latest_at_us: Option<i64>,
}

/// A stream incarnation as written to disk.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskIncarnation {
    arn: String,
    created_ms: i64,
}

/// What one checkpoint file says.
#[derive(Default)]
struct Loaded {
    positions: BTreeMap<ShardId, Position>,
    meta: Option<StreamMeta>,
}

/// Only the fields needed to decide whether this build can read a file.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<u64>,
}

/// A position as written to disk; independent of the in-memory types so
/// that the file format only changes on purpose.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum DiskPosition {
    Sequence {
        number: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub_sequence: Option<u64>,
    },
    ShardEnd,
}

impl From<&Position> for DiskPosition {
    fn from(p: &Position) -> Self {
        match p {
            Position::Sequence(seq) => DiskPosition::Sequence {
                number: seq.number.clone(),
                sub_sequence: seq.sub_sequence,
            },
            Position::ShardEnd => DiskPosition::ShardEnd,
        }
    }
}

impl From<DiskPosition> for Position {
    fn from(p: DiskPosition) -> Self {
        match p {
            DiskPosition::Sequence {
                number,
                sub_sequence,
            } => Position::Sequence(Sequence {
                number,
                sub_sequence,
            }),
            DiskPosition::ShardEnd => Position::ShardEnd,
        }
    }
}

impl FileCheckpointStore {
    /// A store keeping its files in `dir`. Nothing is touched until the
    /// first load or save; the directory is created (with its parents) on the
    /// first save.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        // An absolute path, so that two stores over the same directory share
        // their locks whatever the working directory does.
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        FileCheckpointStore { dir }
    }

    /// The directory this store writes to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `stream`'s checkpoints (see the type's docs for the
    /// mapping from stream names to file names).
    ///
    /// ```
    /// use streamsift::checkpoint::FileCheckpointStore;
    /// let store = FileCheckpointStore::new("/var/lib/app");
    /// let path = store.path_for("arn:aws:kinesis:us-east-1:123456789012:stream/tweets");
    /// assert_eq!(
    ///     path.file_name().unwrap(),
    ///     "arn%3Aaws%3Akinesis%3Aus-east-1%3A123456789012%3Astream%2Ftweets.checkpoint.json"
    /// );
    /// ```
    pub fn path_for(&self, stream: &str) -> PathBuf {
        self.dir.join(file_name(stream))
    }

    async fn read(&self, stream: &str) -> Result<Loaded, CheckpointError> {
        let path = self.path_for(stream);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(e) => return Err(io_error("reading checkpoint file", &path, e)),
        };
        parse(&path, stream, &bytes)
    }
}

/// The escaped file name of `stream` (see [`FileCheckpointStore`]).
fn file_name(stream: &str) -> String {
    let mut stem = String::with_capacity(stream.len() + 8);
    for (i, b) in stream.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0);
        if keep {
            stem.push(char::from(b));
        } else {
            stem.push('%');
            stem.push(hex_digit(b >> 4));
            stem.push(hex_digit(b & 0x0f));
        }
    }
    if stem.len() > MAX_STEM {
        // The stem is ASCII, so any byte index is a char boundary.
        stem.truncate(KEPT_PREFIX);
        stem.push('~');
        stem.push_str(&format!("{:016x}", crate::util::hash_str(stream)));
    }
    stem.push_str(SUFFIX);
    stem
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(n & 0x0f)])
}

/// What to do about a checkpoint file that cannot be used.
const CORRUPT_ADVICE: &str = "this store replaces its files atomically (temp file, fsync, rename, \
     fsync of the directory), so a damaged file was written by something else or the disk lost \
     data, and no older copy is kept. Repair the file, or move it away to make this stream start \
     again from the source's initial position (records are then re-read or skipped, depending on \
     that position)";

fn corrupt(path: &Path, what: impl fmt::Display) -> CheckpointError {
    CheckpointError::permanent(format!(
        "checkpoint file {} is not usable: {what}; {CORRUPT_ADVICE}",
        path.display()
    ))
}

fn parse(path: &Path, stream: &str, bytes: &[u8]) -> Result<Loaded, CheckpointError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt(
            path,
            format!(
                "it is empty ({} bytes), expected a JSON object with \"format\": \"{FORMAT}\"",
                bytes.len()
            ),
        ));
    }
    let header: Header = serde_json::from_slice(bytes).map_err(|e| {
        corrupt(path, format!("it is not a complete JSON object ({e})")).with_source(e)
    })?;
    if header.format.as_deref() != Some(FORMAT) {
        return Err(corrupt(
            path,
            format!(
                "expected \"format\": \"{FORMAT}\", found {}",
                header
                    .format
                    .map_or_else(|| "no format field".to_string(), |f| format!("{f:?}"))
            ),
        ));
    }
    let version = match header.version {
        Some(v) if (OLDEST_VERSION..=VERSION).contains(&v) => v,
        Some(v) if v > VERSION => {
            return Err(CheckpointError::permanent(format!(
                "checkpoint file {} has format version {v}, written by a newer streamsift; this \
                 build reads version {VERSION}: upgrade, or point the store at another directory",
                path.display()
            )));
        }
        other => {
            return Err(corrupt(
                path,
                format!("expected \"version\": {OLDEST_VERSION} to {VERSION}, found {other:?}"),
            ));
        }
    };
    let contents: FileContents = serde_json::from_slice(bytes).map_err(|e| {
        corrupt(
            path,
            format!("its fields do not match format version {version} ({e})"),
        )
        .with_source(e)
    })?;
    if contents.stream != stream {
        return Err(CheckpointError::permanent(format!(
            "checkpoint file {} belongs to stream {:?}, not {stream:?}: two stream names map to \
             the same file (a shortened long name, or names differing only in case on a \
             case-insensitive file system); give one of the streams its own directory",
            path.display(),
            contents.stream
        )));
    }
    let mut positions = BTreeMap::new();
    for (shard, position) in contents.shards {
        if shard.is_empty() {
            return Err(corrupt(path, "a shard id is empty"));
        }
        if let DiskPosition::Sequence { number, .. } = &position
            && number.is_empty()
        {
            return Err(corrupt(
                path,
                format!("shard {shard} has an empty sequence number"),
            ));
        }
        positions.insert(ShardId::new(shard), Position::from(position));
    }
    // A version 1 file, or one written before the source stored meta, has
    // none: its incarnation is unknown.
    let meta = (contents.incarnation.is_some() || contents.latest_at_us.is_some()).then(|| {
        StreamMeta::new(
            contents.incarnation.map(|i| StreamIncarnation {
                arn: i.arn,
                created_ms: i.created_ms,
            }),
            contents.latest_at_us,
        )
    });
    Ok(Loaded { positions, meta })
}

fn io_error(doing: &str, path: &Path, e: std::io::Error) -> CheckpointError {
    use std::io::ErrorKind as K;
    let message = format!("{doing} {}: {e}", path.display());
    match e.kind() {
        K::PermissionDenied => CheckpointError::permanent(format!(
            "{message}; grant this process read and write access to the checkpoint directory"
        )),
        K::ReadOnlyFilesystem | K::NotADirectory | K::IsADirectory | K::InvalidInput => {
            CheckpointError::permanent(format!(
                "{message}; point the store at a writable directory"
            ))
        }
        _ => CheckpointError::unavailable(message),
    }
    .with_source(e)
}

/// One lock per checkpoint file in this process, shared by every store over
/// the same directory.
fn file_lock(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let locks = LOCKS.get_or_init(Default::default);
    let mut locks = locks.lock().unwrap_or_else(|e| e.into_inner());
    locks.entry(path.to_path_buf()).or_default().clone()
}

/// Writes `bytes` to `dir/name` atomically and durably: a temp file in the
/// same directory, fsync, rename over the old file, fsync of the directory.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
    static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_error("creating checkpoint directory", dir, e))?;
        // Make the new directory's own entry durable too.
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    let target = dir.join(name);
    let temp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| io_error("creating temp file", &temp, e))?;
        file.write_all(bytes)
            .map_err(|e| io_error("writing temp file", &temp, e))?;
        file.sync_all()
            .map_err(|e| io_error("syncing temp file", &temp, e))?;
        drop(file);
        std::fs::rename(&temp, &target)
            .map_err(|e| io_error("renaming a temp file over checkpoint file", &target, e))
    })();
    if let Err(e) = written {
        // Best effort: the temp file is never read, so leaving it is harmless.
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing checkpoint directory", dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), CheckpointError> {
    // Directories cannot be opened for syncing here; the rename is still
    // atomic, only its durability across a power cut is up to the system.
    Ok(())
}

fn check_stream(stream: &str) -> Result<(), CheckpointError> {
    if stream.is_empty() {
        return Err(CheckpointError::permanent(
            "the stream name is empty; expected a stream name or ARN to name the checkpoint file",
        ));
    }
    Ok(())
}

#[async_trait]
impl CheckpointStore for FileCheckpointStore {
    async fn load(&self, stream: &str) -> Result<BTreeMap<ShardId, Position>, CheckpointError> {
        check_stream(stream)?;
        // Under the file's lock: a write still in flight (of a save whose
        // caller gave up on it) lands before this read, never after it.
        let lock = file_lock(&self.path_for(stream));
        let _guard = lock.lock().await;
        Ok(self.read(stream).await?.positions)
    }

    async fn save(&self, stream: &str, checkpoints: &[Checkpoint]) -> Result<(), CheckpointError> {
        check_stream(stream)?;
        let folded = fold_batch(stream, checkpoints)?;
        if folded.is_empty() {
            return Ok(());
        }
        let path = self.path_for(stream);
        let guard = file_lock(&path).lock_owned().await;
        // A corrupt file stops the save here, so it stays for inspection.
        let mut loaded = self.read(stream).await?;
        for (shard, next) in &folded {
            if let Some(current) = loaded.positions.get(shard)
                && !is_forward(current, next)
            {
                return Err(backwards(stream, shard, current, next));
            }
        }
        let mut changed = false;
        for (shard, next) in folded {
            if loaded.positions.get(&shard) != Some(&next) {
                loaded.positions.insert(shard, next);
                changed = true;
            }
        }
        if !changed {
            // Nothing new: spare the disk a write and two fsyncs.
            return Ok(());
        }
        self.write(stream, &loaded, guard).await
    }

    async fn load_meta(&self, stream: &str) -> Result<Option<StreamMeta>, CheckpointError> {
        check_stream(stream)?;
        let lock = file_lock(&self.path_for(stream));
        let _guard = lock.lock().await;
        Ok(self.read(stream).await?.meta)
    }

    async fn save_meta(&self, stream: &str, meta: &StreamMeta) -> Result<(), CheckpointError> {
        check_stream(stream)?;
        let path = self.path_for(stream);
        let guard = file_lock(&path).lock_owned().await;
        let mut loaded = self.read(stream).await?;
        if loaded.meta.as_ref() == Some(meta) {
            return Ok(());
        }
        loaded.meta = Some(meta.clone());
        self.write(stream, &loaded, guard).await
    }

    /// Removes the stream's file (a missing file is already reset).
    async fn reset(&self, stream: &str) -> Result<(), CheckpointError> {
        check_stream(stream)?;
        let path = self.path_for(stream);
        let guard = file_lock(&path).lock_owned().await;
        let dir = self.dir.clone();
        let target = path.clone();
        // Like a write, the removal keeps the lock until it is done.
        tokio::task::spawn_blocking(move || {
            let removed = match std::fs::remove_file(&target) {
                Ok(()) => sync_dir(&dir),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error("removing checkpoint file", &target, e)),
            };
            drop(guard);
            removed
        })
        .await
        .map_err(|e| {
            CheckpointError::unavailable(format!(
                "the task removing checkpoint file {} did not finish: {e}",
                path.display()
            ))
        })?
    }
}

impl FileCheckpointStore {
    /// Writes `loaded` as the stream's file, atomically. `guard` is the
    /// file's lock: it moves into the blocking write and is released only
    /// when the write is done, so a caller that drops this future (a
    /// cancelled pipeline) cannot let another save or load of the file run
    /// while its write is still landing; that late write would otherwise
    /// overwrite newer checkpoints, or move a restarted run's view backwards.
    async fn write(
        &self,
        stream: &str,
        loaded: &Loaded,
        guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<(), CheckpointError> {
        let path = self.path_for(stream);
        let meta = loaded.meta.clone().unwrap_or_default();
        let contents = FileContents {
            format: FORMAT.to_string(),
            version: VERSION,
            stream: stream.to_string(),
            shards: loaded
                .positions
                .iter()
                .map(|(shard, p)| (shard.as_str().to_string(), DiskPosition::from(p)))
                .collect(),
            incarnation: meta.incarnation.map(|i| DiskIncarnation {
                arn: i.arn,
                created_ms: i.created_ms,
            }),
            latest_at_us: meta.latest_at_us,
        };
        let mut bytes = serde_json::to_vec_pretty(&contents).map_err(|e| {
            CheckpointError::permanent(format!(
                "encoding the checkpoints of stream {stream:?} as JSON: {e}"
            ))
            .with_source(e)
        })?;
        bytes.push(b'\n');
        let dir = self.dir.clone();
        let name = file_name(stream);
        tokio::task::spawn_blocking(move || {
            let written = write_atomically(&dir, &name, &bytes);
            drop(guard);
            written
        })
        .await
        .map_err(|e| {
            CheckpointError::unavailable(format!(
                "the task writing checkpoint file {} did not finish: {e}",
                path.display()
            ))
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_escape_everything_odd() {
        assert_eq!(file_name("tweets"), "tweets.checkpoint.json");
        assert_eq!(file_name("a.b-c_d"), "a.b-c_d.checkpoint.json");
        assert_eq!(file_name("../x"), "%2E.%2Fx.checkpoint.json");
        assert_eq!(file_name("."), "%2E.checkpoint.json");
        assert_eq!(file_name("a/b"), "a%2Fb.checkpoint.json");
        assert_eq!(file_name("a%2Fb"), "a%252Fb.checkpoint.json");
        assert_eq!(file_name("a\\b:c"), "a%5Cb%3Ac.checkpoint.json");
        assert_eq!(file_name("é"), "%C3%A9.checkpoint.json");
        assert_eq!(file_name("a\0b"), "a%00b.checkpoint.json");
    }

    #[test]
    fn long_names_are_shortened_with_a_hash() {
        let a = "x".repeat(300);
        let b = format!("{}y", "x".repeat(299));
        let (fa, fb) = (file_name(&a), file_name(&b));
        assert_ne!(fa, fb);
        assert!(fa.len() <= MAX_STEM + SUFFIX.len(), "{}", fa.len());
        assert!(fa.starts_with(&"x".repeat(KEPT_PREFIX)));
        assert_eq!(fa, file_name(&a), "the mapping is stable");
        // Escaped names never contain '~', so a short name cannot collide
        // with a shortened one.
        assert_eq!(file_name("~"), "%7E.checkpoint.json");
    }
}
