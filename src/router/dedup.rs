//! [`Dedup`]: never notify the same key twice within a window.
//!
//! `Dedup` wraps any [`Router`]. Before a delivery it computes a
//! [`DedupKey`] (the record id by default, or any closure over the
//! [`Delivery`], such as [`repost_key`] for "same author, same text"), and
//! if that key was delivered within the window it answers with a
//! [`Receipt`] marked [`skipped`](Receipt::skipped) without calling the
//! inner router. Keys live in a [`DedupStore`]: [`MemoryDedupStore`] (one
//! process, forgets on restart) or [`FileDedupStore`] (an append-only file,
//! fsynced, reloaded on start, compacted so it stays bounded by the window).
//!
//! ```
//! use std::time::Duration;
//! use streamsift::fakes::RecordingRouter;
//! use streamsift::router::dedup::{Dedup, FileDedupStore};
//! use streamsift::testing::router::Case;
//! use streamsift::Router;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let inner: RecordingRouter<String> = RecordingRouter::new();
//! let store = FileDedupStore::open(dir.path().join("dedup.log"), Duration::from_secs(3600))?;
//! let router = Dedup::new(inner.clone(), store);
//!
//! let case = Case::new("the api is down".to_string(), "oncall");
//! let delivery = streamsift::Delivery {
//!     item: &case.item, record: &case.record, prediction: &case.prediction, route: &case.route,
//! };
//! assert!(!router.route(&delivery).await?.skipped);
//! // The same record again (a redelivery after a crash, say): not sent twice.
//! assert!(router.route(&delivery).await?.skipped);
//! assert_eq!(inner.len(), 1);
//! # Ok(()) }
//! ```
//!
//! # The guarantee, and where it ends
//!
//! **Effectively once per key and window**: for each key, the inner router
//! accepts at most one delivery per window, *except* in the one case below.
//!
//! - A key is recorded only after the inner router **accepted** the
//!   delivery (`Ok`, skipped or not). A failed inner send records nothing,
//!   so the retry sends again.
//! - [`FileDedupStore`]: the key is appended to the file and the file is
//!   fsynced before [`route`](Router::route) returns. A record redelivered
//!   after a crash or restart (a new `Dedup` over the same file) is skipped.
//! - **Where it ends**: a crash *after* the inner router accepted and
//!   *before* the fsync finished loses that key, and so does a `route`
//!   future dropped in that gap (a call or record timeout, likelier behind
//!   a [`Digest`](crate::router::Digest), whose calls last a window); the
//!   redelivered record is then sent once more (one duplicate per key, per
//!   crash or timeout). The seeded simulation counts these duplicates and
//!   fails on any other. No store can
//!   close this gap on its own: the send and the write are two systems.
//!   Receivers that take an idempotency key (PagerDuty's `dedup_key`, an
//!   `Idempotency-Key` header) close it on their side.
//! - **Same key in flight**: deliveries with the same key in the same
//!   `Dedup` are serialised. The second waits for the first's outcome: if
//!   it was accepted, the second is skipped; if it failed (or its future
//!   was dropped, e.g. by a call timeout), the second sends itself.
//! - The window is measured from when the key was recorded, on the wall
//!   clock at open plus the (tokio) monotonic clock since; after expiry the
//!   same key is delivered again and recorded anew.
//! - If the store cannot write (disk full), the delivery has already
//!   happened: `route` still answers `Ok`, logs the failure (an error event
//!   with the store kind, no key text), keeps the key in memory so this
//!   process still deduplicates, and rewrites the whole file at the next
//!   write. A crash before that write succeeds may duplicate.
//! - One `Dedup` (one process) per store file: the file is not locked
//!   against a second writer.
//!
//! # Bounds
//!
//! Memory holds the keys recorded within the window: a map entry and a
//! queue entry each (reopening a store of 1M keys grew the process's
//! resident memory by 104 bytes per key, allocator slack included, in a
//! run of `cargo bench --bench dedup`). Expired keys are dropped as new ones
//! arrive. The file is rewritten without expired keys (a temporary file,
//! fsync, rename, fsync of the directory) whenever it holds more than
//! twice the live keys plus 4,096 lines, so it too is bounded by the
//! window, not the stream length.
//!
//! # What is on disk
//!
//! A header line, then one line per recorded key: 32 hex digits (the first
//! 128 bits of a SHA-256 of the key's parts) and the time in milliseconds
//! since the Unix epoch. No record text or id is stored. While open, the
//! file also ends in up to 1 MiB of zero bytes, written ahead of the lines
//! so that most fsyncs write data only (an append that grows the file also
//! makes the fsync write the inode); a clean close cuts them. At open the
//! log ends at the first zero byte: what follows was never acknowledged (a
//! write a crash cut short) and is dropped, as is a torn last line; any
//! other bad line is a [`DedupStoreError::Corrupt`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, watch};
use unicode_normalization::UnicodeNormalization;

use super::{Delivery, Receipt, Router};
use crate::classify::Label;
use crate::error::RouteError;

/// The first line of a [`FileDedupStore`] file.
const HEADER: &str = "streamsift-dedup v1";

/// Lines a file may hold beyond twice the live keys before it is compacted.
const COMPACT_SLACK: u64 = 4096;

/// The file grows by this many zero bytes at a time, ahead of the lines, so
/// that most fsyncs write data only: an append that changes the file's size
/// also makes `fdatasync` write the inode (two device writes, not one).
const PREALLOCATE: u64 = 1 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A 128-bit digest of what makes two deliveries "the same".
///
/// Built from byte strings with [`DedupKey::of`]: SHA-256 over the parts
/// (each prefixed with its length, so `["ab", "c"]` and `["a", "bc"]`
/// differ), truncated to 128 bits. Only this digest is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DedupKey([u8; 16]);

/// The key is already a uniform hash: its first 64 bits feed the map's
/// hasher (which still mixes in a per-process seed), not all 16 bytes
/// through SipHash.
impl Hash for DedupKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

/// The maps keyed by [`DedupKey`]: foldhash, seeded per process.
type KeyMap<V> = HashMap<DedupKey, V, foldhash::fast::RandomState>;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl DedupKey {
    /// The key of `parts`.
    ///
    /// ```
    /// use streamsift::router::dedup::DedupKey;
    /// assert_eq!(DedupKey::of(&[b"a", b"bc"]), DedupKey::of(&[b"a", b"bc"]));
    /// assert_ne!(DedupKey::of(&[b"ab", b"c"]), DedupKey::of(&[b"a", b"bc"]));
    /// ```
    pub fn of(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        DedupKey(key)
    }

    /// The key of a record id (the default key of [`Dedup`]).
    pub fn record_id(id: &str) -> Self {
        DedupKey::of(&[b"record-id", id.as_bytes()])
    }

    /// The 128 bits.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    fn push_hex(&self, out: &mut Vec<u8>) {
        for b in self.0 {
            out.push(HEX_DIGITS[usize::from(b >> 4)]);
            out.push(HEX_DIGITS[usize::from(b & 0xf)]);
        }
    }

    fn hex(&self) -> String {
        let mut out = Vec::with_capacity(32);
        self.push_hex(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut key = [0u8; 16];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(DedupKey(key))
    }
}

impl fmt::Debug for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DedupKey({})", self.hex())
    }
}

/// Text normalised for comparing reposts: Unicode NFKC, lower-cased
/// (Unicode lowercase, close to case folding),
/// URLs (words starting with `http://`, `https://` or `www.`) removed, and
/// runs of whitespace collapsed to one space, trimmed.
///
/// ```
/// use streamsift::router::dedup::normalize_text;
/// assert_eq!(
///     normalize_text("  The API is   DOWN https://t.co/x1\n"),
///     normalize_text("the api is down  https://t.co/y2"),
/// );
/// assert_eq!(normalize_text("Ｔｈｅ ＡＰＩ"), "the api");
/// ```
pub fn normalize_text(text: &str) -> String {
    let folded: String = text.nfkc().collect::<String>().to_lowercase();
    let mut out = String::with_capacity(folded.len());
    for word in folded.split_whitespace() {
        if word.starts_with("http://") || word.starts_with("https://") || word.starts_with("www.") {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The key for "the same author posted the same text again": the author
/// as given, and the text through [`normalize_text`].
///
/// ```
/// use streamsift::router::dedup::repost_key;
/// assert_eq!(
///     repost_key("@ana", "Checkout is BROKEN https://t.co/a"),
///     repost_key("@ana", "checkout is   broken"),
/// );
/// assert_ne!(repost_key("@ana", "checkout is broken"), repost_key("@bo", "checkout is broken"));
/// ```
pub fn repost_key(author: &str, text: &str) -> DedupKey {
    DedupKey::of(&[
        b"repost",
        author.as_bytes(),
        normalize_text(text).as_bytes(),
    ])
}

/// Chooses the [`DedupKey`] of a delivery. Any
/// `Fn(&Delivery<'_, T>) -> DedupKey` is one; [`ByRecordId`] is the default.
pub trait DedupKeyFn<T>: Send + Sync {
    /// The key of `delivery`.
    fn key(&self, delivery: &Delivery<'_, T>) -> DedupKey;
}

impl<T, F> DedupKeyFn<T> for F
where
    F: Fn(&Delivery<'_, T>) -> DedupKey + Send + Sync,
{
    fn key(&self, delivery: &Delivery<'_, T>) -> DedupKey {
        self(delivery)
    }
}

/// The default key: the record's id ([`DedupKey::record_id`]), so a
/// record redelivered by the source is not sent again.
#[derive(Clone, Copy, Debug, Default)]
pub struct ByRecordId;

impl<T> DedupKeyFn<T> for ByRecordId {
    fn key(&self, delivery: &Delivery<'_, T>) -> DedupKey {
        DedupKey::record_id(&delivery.record.id)
    }
}

/// A [`DedupStore`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DedupStoreError {
    /// Reading or writing the file failed.
    #[error("dedup store {path}: {action} failed ({source}); check the path and free space")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not a dedup store (its first line is not the header).
    #[error(
        "choose another path or remove the file: {path} is not a streamsift dedup store (expected \
         the first line `{HEADER}`)"
    )]
    NotAStore {
        /// The file.
        path: PathBuf,
    },
    /// A line other than the last does not parse (the last one may be torn
    /// by a crash and is dropped).
    #[error(
        "move {path} aside to start with an empty store (which may notify each key once more): \
         line {line} is not `<32 hex digits> <milliseconds>`"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
}

/// Where [`Dedup`] remembers the keys it delivered.
///
/// The store owns the window and the clock. [`contains`](Self::contains)
/// must see every key whose [`insert`](Self::insert) returned (even with an
/// error) and whose window has not passed.
pub trait DedupStore: Send + Sync {
    /// Whether `key` was recorded within the window.
    fn contains(&self, key: &DedupKey) -> bool;

    /// Records `key` as delivered now; for a durable store, durably before
    /// it returns `Ok`.
    fn insert(&self, key: DedupKey) -> impl Future<Output = Result<(), DedupStoreError>> + Send;

    /// The keys held in memory (recorded within the window, plus expired
    /// ones not yet dropped: at most those recorded since the last insert
    /// that found them expired).
    fn len(&self) -> usize;

    /// Whether [`len`](Self::len) is zero.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long a key is remembered.
    fn window(&self) -> Duration;
}

/// Wall-clock milliseconds: the wall clock when opened plus tokio's
/// monotonic clock since (so paused-clock tests can move it).
#[derive(Debug)]
struct Clock {
    base_ms: u64,
    base: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            base_ms,
            base: tokio::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base_ms + self.base.elapsed().as_millis() as u64
    }
}

/// The keys within the window, and their order of arrival for expiry.
#[derive(Debug)]
struct Window {
    window_ms: u64,
    seen: KeyMap<u64>,
    order: VecDeque<(u64, DedupKey)>,
}

impl Window {
    fn new(window: Duration) -> Self {
        Window {
            window_ms: window.as_millis().min(u128::from(u64::MAX)) as u64,
            seen: KeyMap::default(),
            order: VecDeque::new(),
        }
    }

    fn live(&self, at: u64, now: u64) -> bool {
        at.saturating_add(self.window_ms) > now
    }

    fn contains(&self, key: &DedupKey, now: u64) -> bool {
        self.seen.get(key).is_some_and(|&at| self.live(at, now))
    }

    fn insert(&mut self, key: DedupKey, at: u64, now: u64) {
        self.purge(now);
        if !self.live(at, now) {
            return;
        }
        self.seen.insert(key, at);
        self.order.push_back((at, key));
    }

    fn purge(&mut self, now: u64) {
        while let Some(&(at, key)) = self.order.front() {
            if self.live(at, now) {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&key) == Some(&at) {
                self.seen.remove(&key);
            }
        }
    }
}

/// A [`DedupStore`] in memory: for one process, or for tests.
///
/// ```
/// use std::time::Duration;
/// use streamsift::router::dedup::{DedupKey, DedupStore, MemoryDedupStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryDedupStore::new(Duration::from_secs(60));
/// let key = DedupKey::record_id("s0:1");
/// store.insert(key).await.unwrap();
/// assert!(store.contains(&key));
/// # }
/// ```
pub struct MemoryDedupStore {
    clock: Clock,
    window: Duration,
    keys: Mutex<Window>,
}

impl MemoryDedupStore {
    /// An empty store that remembers keys for `window`.
    pub fn new(window: Duration) -> Self {
        MemoryDedupStore {
            clock: Clock::new(),
            window,
            keys: Mutex::new(Window::new(window)),
        }
    }
}

impl fmt::Debug for MemoryDedupStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDedupStore")
            .field("window", &self.window)
            .field("keys", &self.len())
            .finish()
    }
}

impl DedupStore for MemoryDedupStore {
    fn contains(&self, key: &DedupKey) -> bool {
        lock(&self.keys).contains(key, self.clock.now_ms())
    }

    async fn insert(&self, key: DedupKey) -> Result<(), DedupStoreError> {
        let now = self.clock.now_ms();
        lock(&self.keys).insert(key, now, now);
        Ok(())
    }

    fn len(&self) -> usize {
        lock(&self.keys).seen.len()
    }

    fn window(&self) -> Duration {
        self.window
    }
}

/// How one write (one batch of inserts) ended: `None` while pending.
type Written = Option<Result<(), (io::ErrorKind, &'static str)>>;

#[derive(Debug)]
struct Queue {
    pending: Vec<(DedupKey, u64)>,
    /// Signals the inserts in `pending` (only them: a batch's waiters are
    /// woken once, by their own write).
    signal: watch::Sender<Written>,
    writing: bool,
}

#[derive(Debug)]
struct LogFile {
    file: File,
    lines: u64,
    rewrite: bool,
    /// Where the next line goes: the end of the last line written.
    end: u64,
    /// The file's length: `end` plus the zero bytes preallocated after it.
    allocated: u64,
}

impl LogFile {
    /// Writes `lines` at `end`, growing the zero tail first if they do not
    /// fit (in the same write), then fsyncs.
    fn append(&mut self, mut lines: Vec<u8>) -> io::Result<()> {
        let len = lines.len() as u64;
        let need = self.end + len;
        if need > self.allocated {
            let grown = need.next_multiple_of(PREALLOCATE);
            lines.resize((grown - self.end) as usize, 0);
        }
        self.file.seek(SeekFrom::Start(self.end))?;
        self.file.write_all(&lines)?;
        self.file.sync_data()?;
        self.end = need;
        self.allocated = self.allocated.max(self.end + (lines.len() as u64 - len));
        Ok(())
    }
}

#[derive(Debug)]
struct FileShared {
    path: PathBuf,
    clock: Clock,
    window: Duration,
    keys: Mutex<Window>,
    queue: Mutex<Queue>,
    log: Mutex<LogFile>,
}

/// A durable [`DedupStore`]: an append-only file, fsynced before an insert
/// returns, reloaded by [`open`](FileDedupStore::open), and compacted
/// (atomically: temporary file, fsync, rename, fsync of the directory) so
/// that memory and file stay bounded by the window. Concurrent inserts
/// share one write and one fsync (group commit), done on tokio's blocking
/// pool (so inserts need a tokio runtime, as the pipeline has). See the
/// [module docs](self) for the format and the guarantee.
///
/// ```
/// use std::time::Duration;
/// use streamsift::router::dedup::{DedupKey, DedupStore, FileDedupStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("dedup.log");
/// let key = DedupKey::record_id("s0:1");
/// {
///     let store = FileDedupStore::open(&path, Duration::from_secs(3600))?;
///     store.insert(key).await?;
/// }
/// let reopened = FileDedupStore::open(&path, Duration::from_secs(3600))?;
/// assert!(reopened.contains(&key));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FileDedupStore {
    shared: Arc<FileShared>,
}

impl fmt::Debug for FileDedupStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileDedupStore")
            .field("path", &self.shared.path)
            .field("window", &self.shared.window)
            .field("keys", &self.len())
            .finish()
    }
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> DedupStoreError {
    let path = path.to_owned();
    move |source| DedupStoreError::Io {
        path,
        action,
        source,
    }
}

fn parse_line(line: &str) -> Option<(DedupKey, u64)> {
    let (key, at) = line.split_once(' ')?;
    if at.is_empty() || !at.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((DedupKey::from_hex(key)?, at.parse().ok()?))
}

fn push_line(out: &mut Vec<u8>, key: &DedupKey, at: u64) {
    key.push_hex(out);
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(at).as_bytes());
    out.push(b'\n');
}

/// Fsyncs the directory holding `path`, so a create or rename in it is
/// durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

impl FileDedupStore {
    /// Opens (or creates) the store at `path`, remembering keys for
    /// `window`: loads the keys still within the window, drops a torn last
    /// line, and compacts the file if it is mostly expired keys.
    ///
    /// # Errors
    /// [`DedupStoreError::Io`] if the file cannot be read or written,
    /// [`DedupStoreError::NotAStore`] if it is some other file,
    /// [`DedupStoreError::Corrupt`] if a line other than the last is bad.
    pub fn open(path: impl AsRef<Path>, window: Duration) -> Result<Self, DedupStoreError> {
        let path = path.as_ref().to_owned();
        let clock = Clock::new();
        let now = clock.now_ms();
        let mut keys = Window::new(window);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path, "open"))?;
        let mut all = Vec::new();
        file.read_to_end(&mut all).map_err(io_err(&path, "read"))?;
        // The log ends at the first zero byte: the rest is the preallocated
        // tail, or what a crash left of a write that never finished.
        let bytes = &all[..all.iter().position(|&b| b == 0).unwrap_or(all.len())];
        let mut lines = 0u64;
        let end;
        if bytes.is_empty() && !all.is_empty() {
            return Err(DedupStoreError::NotAStore { path });
        }
        if bytes.is_empty() {
            file.write_all(format!("{HEADER}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .and_then(|()| sync_dir(&path))
                .map_err(io_err(&path, "create"))?;
            end = HEADER.len() as u64 + 1;
        } else {
            let mut good_end = 0usize;
            let mut rest = bytes;
            let mut number = 0usize;
            while !rest.is_empty() {
                number += 1;
                let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                    break; // a torn last line: no newline
                };
                let line = std::str::from_utf8(&rest[..end]).ok();
                rest = &rest[end + 1..];
                if number == 1 {
                    if line != Some(HEADER) {
                        return Err(DedupStoreError::NotAStore { path });
                    }
                } else {
                    match line.and_then(parse_line) {
                        Some((key, at)) => {
                            keys.insert(key, at, now);
                            lines += 1;
                        }
                        None if rest.is_empty() => break, // a torn (bad) last line
                        None => return Err(DedupStoreError::Corrupt { path, line: number }),
                    }
                }
                good_end += end + 1;
            }
            if number == 1 && good_end == 0 {
                // Not even a whole header: not ours unless it is its prefix.
                if !HEADER.as_bytes().starts_with(bytes) {
                    return Err(DedupStoreError::NotAStore { path });
                }
            }
            if good_end < all.len() {
                // Cut the zero tail and any torn line, so that the next
                // write starts on a clean end.
                file.set_len(good_end as u64)
                    .and_then(|()| {
                        if good_end == 0 {
                            file.seek(SeekFrom::Start(0))?;
                            file.write_all(format!("{HEADER}\n").as_bytes())?;
                        }
                        file.sync_all()
                    })
                    .map_err(io_err(&path, "truncate the torn last line of"))?;
                if good_end < bytes.len() {
                    tracing::warn!(
                        store = "file",
                        dropped_bytes = bytes.len() - good_end,
                        "dedup store: dropped a torn last line (a crash mid-write)"
                    );
                }
            }
            end = if good_end == 0 {
                HEADER.len() as u64 + 1
            } else {
                good_end as u64
            };
        }
        let store = FileDedupStore {
            shared: Arc::new(FileShared {
                path,
                clock,
                window,
                keys: Mutex::new(keys),
                queue: Mutex::new(Queue {
                    pending: Vec::new(),
                    signal: watch::channel(None).0,
                    writing: false,
                }),
                log: Mutex::new(LogFile {
                    file,
                    lines,
                    rewrite: false,
                    end,
                    allocated: end,
                }),
            }),
        };
        let live = store.len() as u64;
        if lines > 2 * live + COMPACT_SLACK {
            let mut log = lock(&store.shared.log);
            store
                .shared
                .compact(&mut log)
                .map_err(io_err(&store.shared.path, "compact"))?;
        }
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Lines in the file (not counting the header), for checking the bound.
    pub fn file_lines(&self) -> u64 {
        lock(&self.shared.log).lines
    }
}

impl Drop for FileShared {
    /// A clean close leaves no zero tail: the file ends with its last line.
    fn drop(&mut self) {
        let log = self.log.get_mut().unwrap_or_else(|e| e.into_inner());
        if !log.rewrite && log.allocated > log.end {
            let _ = log.file.set_len(log.end);
        }
    }
}

impl FileShared {
    /// Rewrites the file with the live keys only.
    fn compact(&self, log: &mut LogFile) -> io::Result<()> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        out.extend_from_slice(HEADER.as_bytes());
        out.push(b'\n');
        let count = {
            let mut keys = lock(&self.keys);
            keys.purge(now);
            let mut count = 0u64;
            for (key, at) in &keys.seen {
                push_line(&mut out, key, *at);
                count += 1;
            }
            count
        };
        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(".compact");
        let tmp = PathBuf::from(tmp_name);
        let end = out.len() as u64;
        let allocated = (end + 1).next_multiple_of(PREALLOCATE);
        out.resize(allocated as usize, 0);
        let mut file = File::create(&tmp)?;
        file.write_all(&out)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path)?;
        sync_dir(&self.path)?;
        log.file = OpenOptions::new().write(true).open(&self.path)?;
        log.lines = count;
        log.rewrite = false;
        log.end = end;
        log.allocated = allocated;
        Ok(())
    }

    /// The writer: appends and fsyncs what is queued, one batch at a time,
    /// until the queue is empty. Runs on the blocking pool.
    ///
    /// It lets go of the store before it wakes the last batch's inserts, so
    /// a store dropped right after its last insert returned is closed (its
    /// zero tail cut) by that drop, not later on this thread.
    fn write_queued(self: Arc<Self>) {
        let mut this = Some(self);
        while let Some(shared) = this.take() {
            let (batch, signal) = {
                let mut queue = lock(&shared.queue);
                if queue.pending.is_empty() {
                    queue.writing = false;
                    return;
                }
                (
                    std::mem::take(&mut queue.pending),
                    std::mem::replace(&mut queue.signal, watch::channel(None).0),
                )
            };
            let result = shared.write_batch(&batch);
            let more = {
                let mut queue = lock(&shared.queue);
                queue.writing = !queue.pending.is_empty();
                queue.writing
            };
            if more {
                this = Some(shared);
            } else {
                drop(shared);
            }
            signal.send_replace(Some(result.map_err(|(e, action)| (e.kind(), action))));
        }
    }

    /// Appends and fsyncs one batch (or rewrites the whole file after a
    /// failed write), compacting when the file outgrows the window.
    fn write_batch(&self, batch: &[(DedupKey, u64)]) -> Result<(), (io::Error, &'static str)> {
        let mut log = lock(&self.log);
        let result = if log.rewrite {
            self.compact(&mut log).map_err(|e| (e, "rewrite"))
        } else {
            let mut out = Vec::with_capacity(batch.len() * 48);
            for (key, at) in batch {
                push_line(&mut out, key, *at);
            }
            let written = log.append(out).map_err(|e| (e, "append"));
            if written.is_ok() {
                log.lines += batch.len() as u64;
                let live = lock(&self.keys).seen.len() as u64;
                if log.lines > 2 * live + COMPACT_SLACK
                    && let Err(e) = self.compact(&mut log)
                {
                    // The appended keys are durable; compact later.
                    log.rewrite = true;
                    tracing::warn!(store = "file", kind = ?e.kind(), "dedup store: compaction failed");
                }
            }
            written
        };
        if result.is_err() {
            log.rewrite = true;
        }
        result
    }
}

impl DedupStore for FileDedupStore {
    fn contains(&self, key: &DedupKey) -> bool {
        lock(&self.shared.keys).contains(key, self.shared.clock.now_ms())
    }

    fn insert(&self, key: DedupKey) -> impl Future<Output = Result<(), DedupStoreError>> + Send {
        let shared = Arc::clone(&self.shared);
        async move {
            let now = shared.clock.now_ms();
            // In memory first, so this process deduplicates even if the
            // write fails; the owner of the key is still waiting, so no one
            // else acts on it before the fsync.
            lock(&shared.keys).insert(key, now, now);
            let (mut written, start) = {
                let mut queue = lock(&shared.queue);
                queue.pending.push((key, now));
                let start = !queue.writing;
                queue.writing = true;
                (queue.signal.subscribe(), start)
            };
            if start {
                let writer = Arc::clone(&shared);
                // Detached: the write finishes even if this future is dropped.
                drop(tokio::task::spawn_blocking(move || {
                    FileShared::write_queued(writer)
                }));
            }
            let outcome = written.wait_for(Option::is_some).await.map(|w| *w);
            match outcome {
                Ok(Some(Ok(()))) => Ok(()),
                Ok(Some(Err((kind, action)))) => Err(DedupStoreError::Io {
                    path: shared.path.clone(),
                    action,
                    source: io::Error::from(kind),
                }),
                _ => Err(DedupStoreError::Io {
                    path: shared.path.clone(),
                    action: "append",
                    source: io::Error::other("the writer stopped"),
                }),
            }
        }
    }

    fn len(&self) -> usize {
        lock(&self.shared.keys).seen.len()
    }

    fn window(&self) -> Duration {
        self.shared.window
    }
}

/// Never delivers the same key twice within the store's window; see the
/// [module docs](self) for the guarantee and where it ends.
pub struct Dedup<R, S, K = ByRecordId> {
    inner: R,
    store: S,
    key: K,
    /// The keys being delivered, and whether another delivery waits on one.
    in_flight: Mutex<KeyMap<bool>>,
    /// Woken when a waited-on key leaves `in_flight`.
    settled: Notify,
}

impl<R, S: DedupStore> Dedup<R, S, ByRecordId> {
    /// Wraps `inner`, keyed by record id, remembering keys in `store`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamsift::fakes::RecordingRouter;
    /// use streamsift::router::dedup::{repost_key, Dedup, MemoryDedupStore};
    /// use streamsift::Delivery;
    /// struct Tweet { author: String, text: String }
    /// # impl Clone for Tweet { fn clone(&self) -> Self { Tweet { author: self.author.clone(), text: self.text.clone() } } }
    /// let inner: RecordingRouter<Tweet> = RecordingRouter::new();
    /// let reposts_once = Dedup::new(inner, MemoryDedupStore::new(Duration::from_secs(3600)))
    ///     .key(|d: &Delivery<'_, Tweet>| repost_key(&d.item.author, &d.item.text));
    /// ```
    pub fn new(inner: R, store: S) -> Self {
        Dedup {
            inner,
            store,
            key: ByRecordId,
            in_flight: Mutex::new(KeyMap::default()),
            settled: Notify::new(),
        }
    }
}

impl<R, S, K> Dedup<R, S, K> {
    /// Keys deliveries by `key` instead (any
    /// `Fn(&Delivery<'_, T>) -> DedupKey`, such as one built on
    /// [`repost_key`]).
    pub fn key<K2>(self, key: K2) -> Dedup<R, S, K2> {
        Dedup {
            inner: self.inner,
            store: self.store,
            key,
            in_flight: self.in_flight,
            settled: self.settled,
        }
    }

    /// The wrapped router.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<R: fmt::Debug, S: fmt::Debug, K> fmt::Debug for Dedup<R, S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedup")
            .field("inner", &self.inner)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Holds a key in flight; dropping it (outcome known, or the future
/// dropped) wakes the deliveries waiting on the same key.
struct InFlight<'a> {
    map: &'a Mutex<KeyMap<bool>>,
    settled: &'a Notify,
    key: DedupKey,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let waited = lock(self.map).remove(&self.key);
        if waited == Some(true) {
            // Wakes every waiter (on any key); each checks its own again.
            self.settled.notify_waiters();
        }
    }
}

fn skipped(route: &Label) -> Receipt {
    let mut receipt = Receipt::new(route.clone());
    receipt.skipped = true;
    receipt
}

impl<T, R, S, K> Router<T> for Dedup<R, S, K>
where
    T: Sync,
    R: Router<T>,
    S: DedupStore,
    K: DedupKeyFn<T>,
{
    async fn route(&self, delivery: &Delivery<'_, T>) -> Result<Receipt, RouteError> {
        let key = self.key.key(delivery);
        let _owner = loop {
            let settled = {
                let mut in_flight = lock(&self.in_flight);
                // Checked under the in-flight lock: an owner records the key
                // before it leaves the map, so one of the two is seen.
                if self.store.contains(&key) {
                    return Ok(skipped(delivery.route));
                }
                match in_flight.get_mut(&key) {
                    Some(waited) => {
                        *waited = true;
                        // Made under the lock: a `Notified` receives every
                        // `notify_waiters` from its creation on, polled or
                        // not, so the owner's wake-up cannot be missed.
                        self.settled.notified()
                    }
                    None => {
                        in_flight.insert(key, false);
                        break InFlight {
                            map: &self.in_flight,
                            settled: &self.settled,
                            key,
                        };
                    }
                }
            };
            settled.await;
        };
        let receipt = self.inner.route(delivery).await?;
        if let Err(e) = self.store.insert(key).await {
            // Delivered already: answering an error would send it again.
            tracing::error!(
                router = "dedup",
                route = %delivery.route,
                record_id = %delivery.record.id,
                error = %e,
                "dedup store write failed after delivery; a crash before the next successful \
                 write may notify this key once more"
            );
        }
        Ok(receipt)
    }

    fn handles_route(&self, route: &Label) -> Option<bool> {
        self.inner.handles_route(route)
    }

    fn max_hold(&self) -> Option<Duration> {
        self.inner.max_hold()
    }
}
