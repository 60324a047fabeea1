//! [`DatasetStore`]: labeled examples appended as JSON lines.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ActiveError, json_error};
use crate::jsonl::Appender;
use crate::local::Example;

/// One line of a [`DatasetStore`]: an [`Example`] (its fields at the top
/// level: `id`, `text`, `label`, `flags`, `numbers`) plus where its label
/// came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabeledExample {
    /// The example, labeled.
    #[serde(flatten)]
    pub example: Example,
    /// The labeler's agreement on the label, in `[0, 1]`.
    pub agreement: f64,
    /// How many answers the label was aggregated from.
    pub answers: usize,
    /// The labeler's task id.
    pub task: String,
}

/// Labeled examples, appended one JSON object per line and fsynced.
///
/// Each line is a [`LabeledExample`]: `{"id":..,"text":..,"label":..,
/// "flags":{..},"numbers":{..},"agreement":..,"answers":..,"task":..}`.
/// [`examples`](DatasetStore::examples) reads it back; `local`'s loaders
/// read it too, with `LoadOptions::new("text").id("id").label("label")`
/// (and `.flag("is_reply", "flags.is_reply")` for fields).
///
/// ```
/// use streamsift::active::{DatasetStore, LabeledExample};
/// use streamsift::local::Example;
/// let dir = tempfile::tempdir().unwrap();
/// let store = DatasetStore::new(dir.path().join("labels.jsonl"));
/// store.append(&[LabeledExample {
///     example: Example::new("is the API down?").labeled("problem_report"),
///     agreement: 1.0,
///     answers: 3,
///     task: "t1".into(),
/// }]).unwrap();
/// assert_eq!(store.examples().unwrap()[0].label.as_deref(), Some("problem_report"));
/// ```
#[derive(Clone, Debug)]
pub struct DatasetStore {
    path: PathBuf,
}

impl DatasetStore {
    /// A store at `path` (created on the first append).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DatasetStore { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `labeled` and syncs the file to disk. A torn last line left
    /// by a crash is cut first; a failed append is rolled back, so a retry
    /// stores each example once.
    pub fn append(&self, labeled: &[LabeledExample]) -> Result<(), ActiveError> {
        if labeled.is_empty() {
            return Ok(());
        }
        let io = |action, source| ActiveError::Io {
            action,
            path: self.path.clone(),
            source,
        };
        let mut buf = Vec::new();
        for l in labeled {
            serde_json::to_writer(&mut buf, l).map_err(|source| ActiveError::Serialize {
                id: l.example.id.clone().unwrap_or_default(),
                source,
            })?;
            buf.push(b'\n');
        }
        // The one appender: a torn tail from a crash is cut first, and a
        // failed append is rolled back.
        let mut file = Appender::open(&self.path).map_err(|e| io("open", e))?;
        file.append(&buf).map_err(|e| io("append to", e))
    }

    /// Every labeled example stored, in order. A missing file is an empty
    /// store. A torn last line (a crash during an append) is ignored; any
    /// other bad line is [`ActiveError::Corrupt`].
    pub fn labeled(&self) -> Result<Vec<LabeledExample>, ActiveError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ActiveError::Io {
                    action: "open",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let mut out = Vec::new();
        let lines = read_lines(&self.path, file)?;
        let last = lines.len();
        for (i, (line, complete)) in lines.into_iter().enumerate() {
            match serde_json::from_slice::<LabeledExample>(&line) {
                Ok(l) => out.push(l),
                Err(_) if i + 1 == last && !complete => break,
                Err(e) => {
                    return Err(ActiveError::Corrupt {
                        path: self.path.clone(),
                        line: i + 1,
                        expected: "a labeled example object (text, label, agreement, answers, task)",
                        found: json_error(&e),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The stored examples, labeled.
    pub fn examples(&self) -> Result<Vec<Example>, ActiveError> {
        Ok(self.labeled()?.into_iter().map(|l| l.example).collect())
    }
}

/// Reads a file's lines as bytes, each with whether it ended in a newline.
/// Blank lines are skipped.
pub(super) fn read_lines(path: &Path, file: File) -> Result<Vec<(Vec<u8>, bool)>, ActiveError> {
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    loop {
        let mut buf = Vec::new();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| ActiveError::Io {
                action: "read",
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        let complete = buf.ends_with(b"\n");
        if complete {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push((buf, complete));
    }
    Ok(out)
}
