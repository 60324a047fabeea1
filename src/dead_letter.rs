//! Dead letters: records the pipeline could not handle, kept with the reason.
//!
//! Every record that fails to decode, or whose classification or delivery
//! fails permanently (or runs out of retries or time), becomes a
//! [`DeadLetter`]. The pipeline commits a checkpoint past a record only after
//! its dead letter is stored, so nothing is lost when the sink fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{DeadLetterError, ErrorClass};
use crate::jsonl::Appender;
use crate::record::Record;

/// The stage at which a record failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    /// Turning bytes into the user's type.
    Decode,
    /// Classifying.
    Classify,
    /// Delivering to a route.
    Route,
    /// Submitting for human review.
    Review,
    /// Routed to the dead-letter route on purpose.
    Routed,
}

impl Stage {
    /// The stage's name, as used in metrics and dead-letter entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Classify => "classify",
            Stage::Route => "route",
            Stage::Review => "review",
            Stage::Routed => "routed",
        }
    }
}

/// A record the pipeline gave up on, and why.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// The record, with its original bytes.
    pub record: Record,
    /// Where it failed.
    pub stage: Stage,
    /// Whether the last error was permanent or retries ran out.
    pub class: ErrorClass,
    /// A short machine-readable kind (`invalid_json`, `timeout`, ...).
    pub kind: String,
    /// The full reason, for people.
    pub reason: String,
    /// How many attempts were made at the failing stage.
    pub attempts: u32,
    /// The route it was going to, for route failures.
    pub route: Option<String>,
    /// When it was dead-lettered.
    pub at: SystemTime,
}

/// The JSON shape of a dead-letter entry (one line of a JSON-lines file).
///
/// The payload is kept as text when it is valid UTF-8 (`payload`), and as
/// base64 otherwise (`payload_base64`), so the original bytes can always be
/// recovered exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterEntry {
    /// The record's id ([`Record::id`]), the same name as in
    /// [`PipelineError::DeadLetter`](crate::PipelineError::DeadLetter). The
    /// JSON key is `record_id`; files written before it was renamed (key
    /// `id`) still read.
    #[serde(alias = "id")]
    pub record_id: String,
    /// Its shard.
    pub shard: String,
    /// Its sequence number.
    pub sequence: String,
    /// Its sub-sequence, for aggregated records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_sequence: Option<u64>,
    /// Its partition key.
    pub partition_key: String,
    /// The stage that failed.
    pub stage: Stage,
    /// `retryable` (retries ran out) or `permanent`.
    pub class: ErrorClass,
    /// A short kind.
    pub kind: String,
    /// The reason.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
    /// The route, for route failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Milliseconds since the Unix epoch at which it was dead-lettered.
    pub at_ms: u64,
    /// The payload, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload in standard base64, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

impl DeadLetterEntry {
    /// The entry for a dead letter.
    pub fn from_dead_letter(dl: &DeadLetter) -> Self {
        let (payload, payload_base64) = match std::str::from_utf8(&dl.record.payload) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&dl.record.payload)),
            ),
        };
        DeadLetterEntry {
            record_id: dl.record.id.clone(),
            shard: dl.record.shard.to_string(),
            sequence: dl.record.sequence.number.clone(),
            sub_sequence: dl.record.sequence.sub_sequence,
            partition_key: dl.record.partition_key.clone(),
            stage: dl.stage,
            class: dl.class,
            kind: dl.kind.clone(),
            reason: dl.reason.clone(),
            attempts: dl.attempts,
            route: dl.route.clone(),
            at_ms: dl
                .at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            payload,
            payload_base64,
        }
    }

    /// The original payload bytes, whichever way they were stored.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match (&self.payload, &self.payload_base64) {
            (Some(text), _) => Ok(text.as_bytes().to_vec()),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// The record again, to replay it: same id, shard, sequence, partition
    /// key and payload bytes (its arrival time is now).
    ///
    /// ```
    /// use streamsift::{DeadLetterEntry, JsonLinesDeadLetter};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("dl.jsonl");
    /// # std::fs::write(&path, concat!(r#"{"record_id":"s1:9","shard":"s1","sequence":"9","#,
    /// #     r#""partition_key":"pk","stage":"route","class":"retryable","kind":"unavailable","#,
    /// #     r#""reason":"503","attempts":5,"at_ms":0,"payload":"{}"}"#, "\n")).unwrap();
    /// for entry in JsonLinesDeadLetter::read_entries(&path).unwrap() {
    ///     let record = entry.to_record().unwrap();
    ///     assert_eq!((record.id.as_str(), &record.payload[..]), ("s1:9", &b"{}"[..]));
    /// }
    /// ```
    pub fn to_record(&self) -> Result<Record, base64::DecodeError> {
        let sequence = match self.sub_sequence {
            Some(sub) => crate::record::Sequence::with_sub_sequence(self.sequence.clone(), sub),
            None => crate::record::Sequence::new(self.sequence.clone()),
        };
        let mut record = Record::new(
            crate::record::ShardId::new(&self.shard),
            sequence,
            self.partition_key.clone(),
            self.payload_bytes()?,
        );
        record.id = self.record_id.clone();
        Ok(record)
    }
}

/// Stores dead letters. The pipeline retries a failing sink and, if it stays
/// down, stops without committing past the record: a dead letter is never
/// dropped silently.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a DeadLetterSink",
    label = "a pipeline needs a dead-letter sink",
    note = "add `.dead_letter(JsonLinesDeadLetter::create(\"dead-letter.jsonl\")?)` (a file, checked when created) or `.dead_letter(MemoryDeadLetter::new())` (tests); `NoDeadLetter` means `.dead_letter(..)` was not called"
)]
#[async_trait::async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Stores one dead letter.
    async fn store(&self, dead_letter: &DeadLetter) -> Result<(), DeadLetterError>;
}

#[async_trait::async_trait]
impl<S: DeadLetterSink + ?Sized> DeadLetterSink for Arc<S> {
    async fn store(&self, dead_letter: &DeadLetter) -> Result<(), DeadLetterError> {
        (**self).store(dead_letter).await
    }
}

/// Appends dead letters to a JSON-lines file, one [`DeadLetterEntry`] a
/// line.
///
/// The file is opened (created if missing, for appending) when the sink is
/// made, by [`create`](JsonLinesDeadLetter::create) or
/// [`builder`](JsonLinesDeadLetter::builder): a wrong path fails there,
/// with an error naming the path and what to do, before any record is read
/// or routed, not mid-run. Its directory is created only when asked
/// ([`JsonLinesDeadLetterBuilder::create_dirs`]).
///
/// ```
/// use streamsift::JsonLinesDeadLetter;
/// let dir = tempfile::tempdir().unwrap();
/// let sink = JsonLinesDeadLetter::builder(dir.path().join("out/dead-letter.jsonl"))
///     .create_dirs(true)
///     .open()
///     .unwrap();
/// assert!(sink.path().exists());
/// // Without create_dirs, a missing directory fails at once.
/// let err = JsonLinesDeadLetter::create(dir.path().join("missing/dl.jsonl")).unwrap_err();
/// assert!(err.to_string().contains("create_dirs(true)"), "{err}");
/// ```
///
/// A dead letter lets the pipeline count its record as done, so it is as
/// durable as the checkpoint that passes it: `store` returns `Ok` only once
/// the entry is synced to disk (and the directory that holds a new file is
/// synced when the file is created). The file is only ever appended to: a
/// torn last line left by a crash is cut when the sink opens the file (with
/// a warning naming the file and the byte count), and a failed append is
/// rolled back, so a retry leaves neither a half line nor a duplicate.
///
/// Nothing here deletes or truncates whole dead letters. To start a fresh
/// file, [`rotate`](JsonLinesDeadLetter::rotate) moves the old one aside
/// (before the sink is created).
#[derive(Debug)]
pub struct JsonLinesDeadLetter {
    path: PathBuf,
    file: Arc<std::sync::Mutex<Appender>>,
}

/// Options for opening a [`JsonLinesDeadLetter`]; from
/// [`JsonLinesDeadLetter::builder`].
#[derive(Clone, Debug)]
#[must_use = "call .open() to open the dead-letter file"]
pub struct JsonLinesDeadLetterBuilder {
    path: PathBuf,
    create_dirs: bool,
}

impl JsonLinesDeadLetterBuilder {
    /// Whether to create the file's missing parent directories (default
    /// `false`: a missing directory is an error, as it usually means a
    /// wrong path).
    pub fn create_dirs(mut self, create: bool) -> Self {
        self.create_dirs = create;
        self
    }

    /// Opens the file for appending (creating it if missing), so a path
    /// that cannot be written fails now. Blocks on file-system calls.
    pub fn open(self) -> Result<JsonLinesDeadLetter, DeadLetterError> {
        let path = self.path;
        if self.create_dirs
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                DeadLetterError::permanent(format!(
                    "check the path and its permissions: cannot create the directory {} for the dead-letter file ({})",
                    parent.display(),
                    e.kind()
                ))
                .with_source(e)
            })?;
        }
        let appender = Appender::open(&path).map_err(|e| open_error(&path, self.create_dirs, e))?;
        Ok(JsonLinesDeadLetter {
            path,
            file: Arc::new(std::sync::Mutex::new(appender)),
        })
    }
}

/// The error for a dead-letter file that cannot be opened: the hint first.
fn open_error(path: &Path, create_dirs: bool, e: std::io::Error) -> DeadLetterError {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound if !create_dirs && !parent.exists() => format!(
            "create the directory {} or use `JsonLinesDeadLetter::builder(path).create_dirs(true)`",
            parent.display()
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!(
                "check the permissions of {} and its directory",
                path.display()
            )
        }
        _ => "check the path".to_owned(),
    };
    DeadLetterError::permanent(format!(
        "{hint}: cannot open dead-letter file {} for appending ({})",
        path.display(),
        e.kind()
    ))
    .with_source(e)
}

impl JsonLinesDeadLetter {
    /// A sink appending to `path`, opened (and created if missing) now. Its
    /// directory must exist; see [`builder`](JsonLinesDeadLetter::builder)
    /// to create it. Blocks on file-system calls.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, DeadLetterError> {
        Self::builder(path).open()
    }

    /// Options for opening a sink at `path`.
    pub fn builder(path: impl AsRef<Path>) -> JsonLinesDeadLetterBuilder {
        JsonLinesDeadLetterBuilder {
            path: path.as_ref().to_path_buf(),
            create_dirs: false,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads back every entry of a dead-letter file. An unfinished last
    /// line (a crash during an append, never acknowledged) is skipped.
    pub fn read_entries(path: impl AsRef<Path>) -> std::io::Result<Vec<DeadLetterEntry>> {
        let text = std::fs::read_to_string(path)?;
        let whole = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        whole
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                // serde's message may quote the payload: name the line only.
                serde_json::from_str(l).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "line {} is not a dead-letter entry ({:?} error at column {})",
                            i + 1,
                            e.classify(),
                            e.column()
                        ),
                    )
                })
            })
            .collect()
    }

    /// Moves an existing, non-empty dead-letter file at `path` aside, to
    /// `<path>.<unix ms>` (with `.1`, `.2`, ... added if that name is
    /// taken; an existing file is never overwritten), so that a new run
    /// starts a fresh file while every earlier dead letter is kept. Returns
    /// the new name, or `None` when there was nothing to move.
    pub fn rotate(path: impl AsRef<Path>) -> std::io::Result<Option<PathBuf>> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(m) if m.len() > 0 => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let mut base = path.as_os_str().to_owned();
        base.push(format!(".{ms}"));
        for n in 0u32.. {
            let mut name = base.clone();
            if n > 0 {
                name.push(format!(".{n}"));
            }
            let target = PathBuf::from(name);
            // A hard link fails when the target exists, so nothing is ever
            // overwritten; the old name is unlinked only once the new one
            // holds the same file.
            match std::fs::hard_link(path, &target) {
                Ok(()) => {
                    std::fs::remove_file(path)?;
                    crate::jsonl::sync_parent(path)?;
                    return Ok(Some(target));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                // A file system without hard links: rename to a free name.
                Err(_) if !target.exists() => {
                    std::fs::rename(path, &target)?;
                    crate::jsonl::sync_parent(path)?;
                    return Ok(Some(target));
                }
                Err(_) => continue,
            }
        }
        Err(std::io::Error::other(
            "no free name to rotate the dead-letter file to",
        ))
    }
}

#[async_trait::async_trait]
impl DeadLetterSink for JsonLinesDeadLetter {
    async fn store(&self, dead_letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let mut line = serde_json::to_vec(&DeadLetterEntry::from_dead_letter(dead_letter))
            .map_err(|e| DeadLetterError::permanent("could not serialize entry").with_source(e))?;
        line.push(b'\n');
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        // Writing and syncing block: do them off the runtime.
        let done = tokio::task::spawn_blocking(move || {
            let mut appender = file.lock().unwrap_or_else(|e| e.into_inner());
            appender.append(&line).map_err(|e| {
                DeadLetterError::unavailable(format!(
                    "cannot write dead-letter file {} (the entry was rolled back; retry)",
                    path.display()
                ))
                .with_source(e)
            })
        })
        .await;
        match done {
            Ok(result) => result,
            Err(join) => Err(DeadLetterError::unavailable(format!(
                "the dead-letter write to {} did not finish ({})",
                self.path.display(),
                if join.is_panic() {
                    "panicked"
                } else {
                    "cancelled"
                }
            ))),
        }
    }
}

/// Keeps dead letters in memory, for tests and small tools.
#[derive(Clone, Debug, Default)]
pub struct MemoryDeadLetter {
    entries: Arc<std::sync::Mutex<Vec<DeadLetter>>>,
}

impl MemoryDeadLetter {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything stored so far.
    pub fn entries(&self) -> Vec<DeadLetter> {
        self.entries.lock().expect("poisoned").clone()
    }

    /// How many entries are stored.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("poisoned").len()
    }

    /// Whether none are stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl DeadLetterSink for MemoryDeadLetter {
    async fn store(&self, dead_letter: &DeadLetter) -> Result<(), DeadLetterError> {
        self.entries
            .lock()
            .expect("poisoned")
            .push(dead_letter.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Sequence, ShardId};

    fn dl(payload: &'static [u8]) -> DeadLetter {
        DeadLetter {
            record: Record::new(ShardId::new("s1"), Sequence::from_offset(9), "pk", payload),
            stage: Stage::Decode,
            class: ErrorClass::Permanent,
            kind: "invalid_utf8".into(),
            reason: "payload is not valid UTF-8".into(),
            attempts: 1,
            route: None,
            at: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn json_lines_keeps_original_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let sink = JsonLinesDeadLetter::create(&path).unwrap();
        assert!(
            path.exists(),
            "opened when made, so a wrong path fails early"
        );
        sink.store(&dl(b"\xff\xfe raw")).await.unwrap();
        sink.store(&dl(b"{\"text\":\"caf\xc3\xa9\"}"))
            .await
            .unwrap();
        let entries = JsonLinesDeadLetter::read_entries(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].payload, None);
        assert_eq!(entries[0].payload_bytes().unwrap(), b"\xff\xfe raw");
        assert_eq!(entries[1].payload.as_deref(), Some("{\"text\":\"café\"}"));
        assert_eq!(entries[1].kind, "invalid_utf8");
        assert_eq!(entries[1].record_id, "s1:9");
        assert_eq!(entries[1].stage, Stage::Decode);
    }

    #[test]
    fn a_missing_directory_fails_at_creation_naming_the_path_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("dl.jsonl");
        let err = JsonLinesDeadLetter::create(&path).unwrap_err();
        assert!(!err.is_retryable(), "a wrong path does not heal: {err}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(
            text.contains("create_dirs(true)") && text.contains("create the directory"),
            "{text}"
        );
        assert!(!path.parent().unwrap().exists(), "not created unasked");
    }

    #[tokio::test]
    async fn create_dirs_makes_the_parent_and_entries_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("dl.jsonl");
        let sink = JsonLinesDeadLetter::builder(&path)
            .create_dirs(true)
            .open()
            .unwrap();
        sink.store(&dl(b"x")).await.unwrap();
        assert_eq!(JsonLinesDeadLetter::read_entries(&path).unwrap().len(), 1);
    }

    #[test]
    fn the_record_id_key_is_record_id_and_old_files_with_id_still_read() {
        let entry = DeadLetterEntry::from_dead_letter(&dl(b"x"));
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["record_id"], "s1:9");
        assert!(json.get("id").is_none(), "{json}");
        let old = r#"{"id":"s1:9","shard":"s1","sequence":"9","partition_key":"pk","stage":"decode","class":"permanent","kind":"k","reason":"r","attempts":1,"at_ms":0,"payload":"x"}"#;
        let back: DeadLetterEntry = serde_json::from_str(old).unwrap();
        assert_eq!(back.record_id, "s1:9");
    }
}
