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
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::error::{DeadLetterError, ErrorClass};
use crate::record::Record;

/// The stage at which a record failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// The record's id.
    pub id: String,
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
            id: dl.record.id.clone(),
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
}

/// Stores dead letters. The pipeline retries a failing sink and, if it stays
/// down, stops without committing past the record: a dead letter is never
/// dropped silently.
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
/// line. The file is created on the first dead letter, so a clean run leaves
/// nothing behind. Each entry is flushed before `store` returns.
#[derive(Debug)]
pub struct JsonLinesDeadLetter {
    path: PathBuf,
    file: Mutex<Option<tokio::fs::File>>,
}

impl JsonLinesDeadLetter {
    /// A sink appending to `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        JsonLinesDeadLetter {
            path: path.as_ref().to_path_buf(),
            file: Mutex::new(None),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads back every entry of a dead-letter file.
    pub fn read_entries(path: impl AsRef<Path>) -> std::io::Result<Vec<DeadLetterEntry>> {
        let text = std::fs::read_to_string(path)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
            .collect()
    }
}

#[async_trait::async_trait]
impl DeadLetterSink for JsonLinesDeadLetter {
    async fn store(&self, dead_letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let mut line = serde_json::to_vec(&DeadLetterEntry::from_dead_letter(dead_letter))
            .map_err(|e| DeadLetterError::permanent("could not serialize entry").with_source(e))?;
        line.push(b'\n');
        let mut guard = self.file.lock().await;
        if guard.is_none() {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|e| {
                    DeadLetterError::unavailable(format!(
                        "cannot open dead-letter file {}",
                        self.path.display()
                    ))
                    .with_source(e)
                })?;
            *guard = Some(file);
        }
        let file = guard.as_mut().expect("opened above");
        let written = async {
            file.write_all(&line).await?;
            file.flush().await
        }
        .await;
        if let Err(e) = written {
            // Reopen on the next attempt.
            *guard = None;
            return Err(DeadLetterError::unavailable(format!(
                "cannot write dead-letter file {}",
                self.path.display()
            ))
            .with_source(e));
        }
        Ok(())
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
        let sink = JsonLinesDeadLetter::new(&path);
        assert!(!path.exists(), "created lazily");
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
        assert_eq!(entries[1].id, "s1:9");
        assert_eq!(entries[1].stage, Stage::Decode);
    }

    #[tokio::test]
    async fn unwritable_path_is_a_retryable_error() {
        let sink = JsonLinesDeadLetter::new("/nonexistent-dir/streamsift/dl.jsonl");
        let err = sink.store(&dl(b"x")).await.unwrap_err();
        assert!(err.is_retryable());
        assert!(err.to_string().contains("/nonexistent-dir"), "{err}");
    }
}
