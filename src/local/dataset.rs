//! Dataset tools: load labeled text from CSV or JSON lines, join labels kept
//! in a separate file, remove duplicates and retweets, and split for
//! training and evaluation (stratified, deterministic under a seed).
//!
//! Loading is strict by default: the first bad line is a typed
//! [`DatasetError`] that names the line (and the column, the byte, or the
//! JSON column, as fits). In [`Mode::Lenient`] bad lines are skipped and kept
//! in [`Dataset::skipped`] with their error, so nothing is lost silently.
//!
//! ```
//! use streamsift::local::{LoadOptions, Mode};
//!
//! let jsonl = r#"{"id_str":"1","text":"my instance won't boot","user":{"followers_count":12}}
//! {"id_str":"2","text":"RT @nimbuscloud: we're hiring","retweeted_status":{"id_str":"0"}}
//! not json
//! "#;
//! let labels = "id_str,label\n1,problem_report\n2,none\n";
//!
//! let options = LoadOptions::tweets().mode(Mode::Lenient);
//! let data = options.load_json_lines(jsonl.as_bytes())?;
//! assert_eq!(data.examples.len(), 2);
//! assert_eq!(data.skipped.len(), 1); // line 3, with its error
//! assert_eq!(data.skipped[0].0, 3);
//!
//! let labels = streamsift::local::read_labels_csv(labels.as_bytes(), "id_str", "label")?;
//! let data = data.join_labels(&labels, Mode::Strict)?;
//! assert_eq!(data.examples[0].label.as_deref(), Some("problem_report"));
//! assert_eq!(data.examples[0].numbers["followers"], 12.0);
//! assert_eq!(data.examples[1].flags["retweet"], true);
//! # Ok::<(), streamsift::local::DatasetError>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use super::doc::Example;
use crate::util::Rng;

/// The flag a loader sets on every example when retweet detection is on:
/// `true` for a retweet (`retweeted_status` present, or text starting with
/// `"RT @"`), `false` otherwise.
pub const RETWEET_FLAG: &str = "retweet";

/// The default limit on one line (JSON lines) or one record (CSV): 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// A dataset file could not be read, or one of its lines is bad.
///
/// Every per-line variant names the 1-based line number. In a CSV file, a
/// record that spans several lines (a quoted newline) is named by the line
/// it starts on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// The file could not be opened or read.
    #[error("could not read {}: {source}", path.display())]
    Open {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading failed part-way.
    #[error("read error at line {line}: {source}")]
    Io {
        /// The line being read.
        line: usize,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A configured column (CSV) or field (JSON) is not there.
    #[error(
        "line {line}: expected a column or field `{column}`, found only [{}]; check the column name you configured, or the file's header",
        found.join(", ")
    )]
    MissingColumn {
        /// The line.
        line: usize,
        /// The column or dotted JSON path that was asked for.
        column: String,
        /// The columns (CSV) or top-level fields (JSON) that the line has.
        found: Vec<String>,
    },
    /// A JSON line does not parse.
    #[error(
        "line {line}, column {column}: malformed JSON ({message}); expected one JSON object per line"
    )]
    Json {
        /// The line.
        line: usize,
        /// The 1-based column (counted in bytes) where parsing failed.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A JSON line parses but is not an object.
    #[error("line {line}: expected a JSON object, found {found}")]
    NotAnObject {
        /// The line.
        line: usize,
        /// What was found: `"an array"`, `"a string"`, ...
        found: &'static str,
    },
    /// A field holds the wrong kind of value.
    #[error("line {line}: field `{field}` should be {expected}, found {found}")]
    WrongType {
        /// The line.
        line: usize,
        /// The field or column.
        field: String,
        /// What was expected.
        expected: &'static str,
        /// What was found (a short description or the value, truncated).
        found: String,
    },
    /// The line is not valid UTF-8.
    #[error(
        "line {line}: invalid UTF-8 at byte {byte} of the {}; re-encode the file as UTF-8",
        match column { Some(c) => format!("column `{c}`"), None => "line".to_string() }
    )]
    InvalidUtf8 {
        /// The line.
        line: usize,
        /// The 0-based byte offset of the first invalid byte, within the
        /// line (JSON lines) or within the field (CSV).
        byte: usize,
        /// The CSV column, when the bad bytes are in a field.
        column: Option<String>,
    },
    /// A blank line in a JSON lines file.
    #[error("line {line}: empty line; expected one JSON object per line")]
    EmptyLine {
        /// The line.
        line: usize,
    },
    /// A line longer than the configured limit.
    #[error(
        "line {line}: {bytes} bytes or more, over the limit of {limit}; raise LoadOptions::max_line_bytes if this is expected"
    )]
    LineTooLong {
        /// The line.
        line: usize,
        /// The bytes read before giving up (at least `limit + 1`).
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A label was required but the line has none (empty, null, or no
    /// entry in the label file).
    #[error(
        "line {line}: no label{}; label it, or load with Mode::Lenient to skip it",
        match id { Some(id) => format!(" for id `{id}`"), None => String::new() }
    )]
    MissingLabel {
        /// The line.
        line: usize,
        /// The example's id, if it has one.
        id: Option<String>,
    },
    /// Labels are joined by id but the example has none.
    #[error("line {line}: no id to look the label up by; configure LoadOptions::id")]
    MissingId {
        /// The line.
        line: usize,
    },
    /// The CSV reader failed (for example an unterminated quote).
    #[error("line {line}: malformed CSV: {message}")]
    Csv {
        /// The line.
        line: usize,
        /// The CSV reader's message.
        message: String,
    },
    /// A labels file gives one id two different labels.
    #[error(
        "labels line {line}: id `{id}` is labeled `{second}` but an earlier line labeled it `{first}`; keep one"
    )]
    ConflictingLabels {
        /// The line of the second label.
        line: usize,
        /// The id.
        id: String,
        /// The first label.
        first: String,
        /// The second label.
        second: String,
    },
    /// The file's extension does not say its format.
    #[error(
        "cannot tell the format of {}: expected a .csv, .jsonl, .ndjson or .json file",
        path.display()
    )]
    UnknownFormat {
        /// The path.
        path: PathBuf,
    },
    /// A split or fold was asked for with impossible parameters.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Strict (stop at the first bad line) or lenient (skip and record it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The first bad line is an error (the default).
    #[default]
    Strict,
    /// Bad lines are skipped and listed in [`Dataset::skipped`].
    Lenient,
}

/// A file format the loaders read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// The format named by a path's extension: `.csv` is CSV; `.jsonl`,
    /// `.ndjson` and `.json` are JSON lines.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::JsonLines),
            _ => None,
        }
    }
}

/// What to read from each line: the text, label and id columns, and extra
/// fields that become [`Example::flags`] and [`Example::numbers`].
///
/// Column names are CSV header names, or dotted paths into a JSON object
/// (`user.followers_count`; a numeric segment indexes an array).
///
/// ```
/// use streamsift::local::LoadOptions;
/// let csv = "id,text,label,reply_to\n7,\"is the API down?\",question,\n";
/// let data = LoadOptions::new("text")
///     .label("label")
///     .id("id")
///     .flag("is_reply", "reply_to")
///     .load_csv(csv.as_bytes())?;
/// let ex = &data.examples[0];
/// assert_eq!((ex.id.as_deref(), ex.text.as_str()), (Some("7"), "is the API down?"));
/// assert_eq!(ex.flags["is_reply"], false);
/// # Ok::<(), streamsift::local::DatasetError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadOptions {
    /// The text column.
    pub text: String,
    /// The label column; when set, every line must have a non-empty label.
    pub label: Option<String>,
    /// The id column.
    pub id: Option<String>,
    /// `(flag name, column)`: the flag is true when the column is present,
    /// not null, not empty, and not `false`/`0`.
    pub flags: Vec<(String, String)>,
    /// `(number name, column)`: a JSON number or a numeric string; absent
    /// when the column is missing, null or empty.
    pub numbers: Vec<(String, String)>,
    /// Set [`RETWEET_FLAG`] on every example (default true).
    pub detect_retweets: bool,
    /// Strict or lenient.
    pub mode: Mode,
    /// The longest line (or CSV record) accepted, in bytes.
    pub max_line_bytes: usize,
}

impl LoadOptions {
    /// Options that read the text from `text_column` and nothing else.
    pub fn new(text_column: impl Into<String>) -> Self {
        LoadOptions {
            text: text_column.into(),
            label: None,
            id: None,
            flags: Vec::new(),
            numbers: Vec::new(),
            detect_retweets: true,
            mode: Mode::Strict,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// Options for tweet objects as Twitter's API gives them: text from
    /// `text`, id from `id_str`, flag `is_reply` from
    /// `in_reply_to_status_id_str`, number `followers` from
    /// `user.followers_count`. No label column (join labels by id, see
    /// [`Dataset::join_labels`]).
    pub fn tweets() -> Self {
        LoadOptions::new("text")
            .id("id_str")
            .flag("is_reply", "in_reply_to_status_id_str")
            .number("followers", "user.followers_count")
    }

    /// Sets the label column.
    pub fn label(mut self, column: impl Into<String>) -> Self {
        self.label = Some(column.into());
        self
    }

    /// Sets the id column.
    pub fn id(mut self, column: impl Into<String>) -> Self {
        self.id = Some(column.into());
        self
    }

    /// Adds a flag `name` read from `column`.
    pub fn flag(mut self, name: impl Into<String>, column: impl Into<String>) -> Self {
        self.flags.push((name.into(), column.into()));
        self
    }

    /// Adds a number `name` read from `column`.
    pub fn number(mut self, name: impl Into<String>, column: impl Into<String>) -> Self {
        self.numbers.push((name.into(), column.into()));
        self
    }

    /// Sets strict or lenient mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the line length limit.
    pub fn max_line_bytes(mut self, limit: usize) -> Self {
        self.max_line_bytes = limit;
        self
    }

    /// Loads a file, choosing the format by its extension
    /// ([`Format::from_path`]).
    pub fn load_path(&self, path: impl AsRef<Path>) -> Result<Dataset, DatasetError> {
        let path = path.as_ref();
        let format = Format::from_path(path).ok_or_else(|| DatasetError::UnknownFormat {
            path: path.to_path_buf(),
        })?;
        let file = std::fs::File::open(path).map_err(|source| DatasetError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        match format {
            Format::Csv => self.load_csv(file),
            Format::JsonLines => self.load_json_lines(file),
        }
    }

    /// Loads CSV with a header row.
    pub fn load_csv<R: Read>(&self, reader: R) -> Result<Dataset, DatasetError> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(reader);
        let headers = csv
            .byte_headers()
            .map_err(|e| csv_error(e, 1))?
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_string())
            .collect::<Vec<String>>();
        let column = |name: &str| -> Result<usize, DatasetError> {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| DatasetError::MissingColumn {
                    line: 1,
                    column: name.to_string(),
                    found: headers.clone(),
                })
        };
        let plan = CsvPlan {
            text: column(&self.text)?,
            label: self.label.as_deref().map(column).transpose()?,
            id: self.id.as_deref().map(column).transpose()?,
            flags: self
                .flags
                .iter()
                .map(|(n, c)| Ok((n.clone(), column(c)?)))
                .collect::<Result<_, DatasetError>>()?,
            numbers: self
                .numbers
                .iter()
                .map(|(n, c)| Ok((n.clone(), column(c)?)))
                .collect::<Result<_, DatasetError>>()?,
        };
        let mut out = Dataset::default();
        let mut record = csv::ByteRecord::new();
        let mut last_line = 1;
        loop {
            let read = csv.read_byte_record(&mut record);
            let line = record
                .position()
                .map(|p| p.line() as usize)
                .unwrap_or(last_line + 1);
            last_line = line;
            match read {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let err = csv_error(e, line);
                    if matches!(err, DatasetError::Io { .. }) || self.mode == Mode::Strict {
                        return Err(err);
                    }
                    out.skipped.push((line, err));
                    continue;
                }
            }
            match self.csv_example(&plan, &headers, &record, line) {
                Ok(ex) => {
                    out.examples.push(ex);
                    out.lines.push(line);
                }
                Err(e) if self.mode == Mode::Lenient => out.skipped.push((line, e)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn csv_example(
        &self,
        plan: &CsvPlan,
        headers: &[String],
        record: &csv::ByteRecord,
        line: usize,
    ) -> Result<Example, DatasetError> {
        let record_bytes: usize = record.iter().map(|f| f.len() + 1).sum();
        if record_bytes > self.max_line_bytes {
            return Err(DatasetError::LineTooLong {
                line,
                bytes: record_bytes,
                limit: self.max_line_bytes,
            });
        }
        let field = |i: usize| -> Result<&str, DatasetError> {
            let name = headers.get(i).map(String::as_str).unwrap_or("?");
            let bytes = record.get(i).ok_or_else(|| DatasetError::MissingColumn {
                line,
                column: name.to_string(),
                found: headers.iter().take(record.len()).cloned().collect(),
            })?;
            std::str::from_utf8(bytes).map_err(|e| DatasetError::InvalidUtf8 {
                line,
                byte: e.valid_up_to(),
                column: Some(name.to_string()),
            })
        };
        let text = field(plan.text)?.to_string();
        let mut ex = Example::new(text);
        if let Some(i) = plan.id {
            let id = field(i)?.trim();
            if !id.is_empty() {
                ex.id = Some(id.to_string());
            }
        }
        if let Some(i) = plan.label {
            let label = field(i)?.trim();
            if label.is_empty() {
                return Err(DatasetError::MissingLabel { line, id: ex.id });
            }
            ex.label = Some(label.to_string());
        }
        for (name, i) in &plan.flags {
            ex.flags.insert(name.clone(), truthy_str(field(*i)?));
        }
        for (name, i) in &plan.numbers {
            let raw = field(*i)?.trim();
            if raw.is_empty() {
                continue;
            }
            let n = parse_number(raw).ok_or_else(|| DatasetError::WrongType {
                line,
                field: headers.get(*i).cloned().unwrap_or_default(),
                expected: "a finite number",
                found: truncate(raw),
            })?;
            ex.numbers.insert(name.clone(), n);
        }
        if self.detect_retweets {
            ex.flags
                .insert(RETWEET_FLAG.to_string(), ex.text.starts_with("RT @"));
        }
        Ok(ex)
    }

    /// Loads JSON lines: one object per line. A blank line is an error
    /// ([`DatasetError::EmptyLine`]); a final newline is not a line.
    pub fn load_json_lines<R: Read>(&self, reader: R) -> Result<Dataset, DatasetError> {
        let mut reader = BufReader::new(reader);
        let mut out = Dataset::default();
        let mut buf = Vec::new();
        let mut line = 0usize;
        loop {
            line += 1;
            buf.clear();
            let too_long = match read_line_bounded(&mut reader, &mut buf, self.max_line_bytes) {
                Ok(None) => break,
                Ok(Some(too_long)) => too_long,
                Err(source) => return Err(DatasetError::Io { line, source }),
            };
            let result = if let Some(bytes) = too_long {
                Err(DatasetError::LineTooLong {
                    line,
                    bytes,
                    limit: self.max_line_bytes,
                })
            } else {
                self.json_example(&buf, line)
            };
            match result {
                Ok(ex) => {
                    out.examples.push(ex);
                    out.lines.push(line);
                }
                Err(e) if self.mode == Mode::Lenient => out.skipped.push((line, e)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn json_example(&self, raw: &[u8], line: usize) -> Result<Example, DatasetError> {
        let mut raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line == 1 {
            raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
        }
        let text = std::str::from_utf8(raw).map_err(|e| DatasetError::InvalidUtf8 {
            line,
            byte: e.valid_up_to(),
            column: None,
        })?;
        if text.trim().is_empty() {
            return Err(DatasetError::EmptyLine { line });
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            // serde_json ends its message with "at line 1 column N", which
            // would contradict the file line we report.
            let mut message = e.to_string();
            if let Some(i) = message.rfind(" at line ") {
                message.truncate(i);
            }
            DatasetError::Json {
                line,
                column: e.column(),
                message,
            }
        })?;
        let Value::Object(obj) = &value else {
            return Err(DatasetError::NotAnObject {
                line,
                found: crate::util::json_kind(&value),
            });
        };
        let missing = |column: &str| DatasetError::MissingColumn {
            line,
            column: column.to_string(),
            found: obj.keys().cloned().collect(),
        };
        let text = match crate::util::json_path(&value, self.text.split('.')) {
            None => return Err(missing(&self.text)),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(DatasetError::WrongType {
                    line,
                    field: self.text.clone(),
                    expected: "a string",
                    found: describe(other),
                });
            }
        };
        let mut ex = Example::new(text);
        if let Some(col) = &self.id {
            ex.id = match crate::util::json_path(&value, col.split('.')) {
                None | Some(Value::Null) => return Err(missing(col)),
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(other) => {
                    return Err(DatasetError::WrongType {
                        line,
                        field: col.clone(),
                        expected: "a string or an integer",
                        found: describe(other),
                    });
                }
            };
        }
        if let Some(col) = &self.label {
            ex.label = match crate::util::json_path(&value, col.split('.')) {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(Value::Number(n)) => Some(n.to_string()),
                None | Some(Value::Null) | Some(Value::String(_)) => {
                    return Err(DatasetError::MissingLabel { line, id: ex.id });
                }
                Some(other) => {
                    return Err(DatasetError::WrongType {
                        line,
                        field: col.clone(),
                        expected: "a string label",
                        found: describe(other),
                    });
                }
            };
        }
        for (name, col) in &self.flags {
            ex.flags.insert(
                name.clone(),
                crate::util::json_path(&value, col.split('.')).is_some_and(truthy_json),
            );
        }
        for (name, col) in &self.numbers {
            let n = match crate::util::json_path(&value, col.split('.')) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) if s.trim().is_empty() => continue,
                Some(Value::Number(n)) => n.as_f64().filter(|x| x.is_finite()),
                Some(Value::String(s)) => parse_number(s.trim()),
                Some(_) => None,
            };
            let n = n.ok_or_else(|| DatasetError::WrongType {
                line,
                field: col.clone(),
                expected: "a finite number",
                found: crate::util::json_path(&value, col.split('.'))
                    .map(describe)
                    .unwrap_or_default(),
            })?;
            ex.numbers.insert(name.clone(), n);
        }
        if self.detect_retweets {
            let retweet = obj.get("retweeted_status").is_some_and(|v| !v.is_null())
                || ex.text.starts_with("RT @");
            ex.flags.insert(RETWEET_FLAG.to_string(), retweet);
        }
        Ok(ex)
    }
}

struct CsvPlan {
    text: usize,
    label: Option<usize>,
    id: Option<usize>,
    flags: Vec<(String, usize)>,
    numbers: Vec<(String, usize)>,
}

/// Reads one line into `buf`, at most `limit` bytes of it. `Ok(None)` at
/// end of input; `Ok(Some(Some(n)))` when the line was longer than the limit
/// (the rest of it is consumed and dropped, so memory stays bounded).
fn read_line_bounded<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<Option<usize>>> {
    // Read up to the limit plus the newline (and a possible '\r').
    let cap = limit.saturating_add(2) as u64;
    let n = reader.by_ref().take(cap).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    let content =
        buf.len() - usize::from(buf.ends_with(b"\n")) - usize::from(buf.ends_with(b"\r\n"));
    if content <= limit {
        return Ok(Some(None));
    }
    // Over the limit: drop the rest of this line.
    let mut total = buf.len();
    if !buf.ends_with(b"\n") {
        loop {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    total += i;
                    reader.consume(i + 1);
                    break;
                }
                None => {
                    let len = chunk.len();
                    total += len;
                    reader.consume(len);
                }
            }
        }
    }
    buf.clear();
    Ok(Some(Some(total)))
}

fn csv_error(e: csv::Error, line: usize) -> DatasetError {
    let line = e.position().map(|p| p.line() as usize).unwrap_or(line);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => DatasetError::Io { line, source },
        other => DatasetError::Csv {
            line,
            message: format!("{other:?}"),
        },
    }
}

fn truthy_str(s: &str) -> bool {
    let s = s.trim();
    !(s.is_empty() || s == "0" || s.eq_ignore_ascii_case("false") || s.eq_ignore_ascii_case("null"))
}

fn truthy_json(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => truthy_str(s),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn parse_number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("the number {}", truncate(&n.to_string())),
        Value::String(s) => format!("the string {:?}", truncate(s)),
        other => crate::util::json_kind(other).to_string(),
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Loaded examples, the line each came from, and the lines skipped in
/// lenient mode.
#[derive(Debug, Default)]
pub struct Dataset {
    /// The examples, in file order.
    pub examples: Vec<Example>,
    /// The 1-based source line of each example (same length as `examples`).
    pub lines: Vec<usize>,
    /// Lines skipped in lenient mode, with why.
    pub skipped: Vec<(usize, DatasetError)>,
}

impl Dataset {
    /// The number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Each example's label (`None` for unlabeled), for the split functions.
    pub fn labels(&self) -> Vec<Option<&str>> {
        labels_of(&self.examples)
    }

    /// Sets each unlabeled example's label from `labels`, keyed by id.
    ///
    /// An example with no id, or whose id has no label, is an error in
    /// strict mode; in lenient mode it moves to [`Dataset::skipped`].
    /// Examples that already have a label keep it.
    pub fn join_labels(
        self,
        labels: &HashMap<String, String>,
        mode: Mode,
    ) -> Result<Dataset, DatasetError> {
        let Dataset {
            examples,
            lines,
            mut skipped,
        } = self;
        let mut out = Dataset::default();
        for (mut ex, line) in examples.into_iter().zip(lines) {
            let result = if ex.label.is_some() {
                Ok(())
            } else {
                match &ex.id {
                    None => Err(DatasetError::MissingId { line }),
                    Some(id) => match labels.get(id) {
                        Some(l) => {
                            ex.label = Some(l.clone());
                            Ok(())
                        }
                        None => Err(DatasetError::MissingLabel {
                            line,
                            id: Some(id.clone()),
                        }),
                    },
                }
            };
            match result {
                Ok(()) => {
                    out.examples.push(ex);
                    out.lines.push(line);
                }
                Err(e) if mode == Mode::Lenient => skipped.push((line, e)),
                Err(e) => return Err(e),
            }
        }
        skipped.sort_by_key(|(line, _)| *line);
        out.skipped = skipped;
        Ok(out)
    }

    /// Removes retweets and duplicates (see [`dedup`]); `lines` stay
    /// aligned with `examples`. The report's indices refer to the examples
    /// before the call.
    pub fn dedup(self, options: &DedupOptions) -> (Dataset, DedupReport) {
        let (keep, report) = dedup(&self.examples, options);
        let Dataset {
            examples,
            lines,
            skipped,
        } = self;
        let mut examples: Vec<Option<Example>> = examples.into_iter().map(Some).collect();
        let mut out = Dataset {
            skipped,
            ..Dataset::default()
        };
        for (i, label) in keep {
            if let (Some(slot), Some(line)) = (examples.get_mut(i), lines.get(i))
                && let Some(mut ex) = slot.take()
            {
                if label.is_some() {
                    ex.label = label;
                }
                out.examples.push(ex);
                out.lines.push(*line);
            }
        }
        (out, report)
    }
}

/// Each example's label, for [`stratified_split`] and [`stratified_k_fold`].
pub fn labels_of(examples: &[Example]) -> Vec<Option<&str>> {
    examples.iter().map(|e| e.label.as_deref()).collect()
}

/// Reads a labels CSV (`id,label` columns, any others ignored) into a map
/// from id to label. An id given two different labels is an error; the same
/// label twice is fine.
pub fn read_labels_csv<R: Read>(
    reader: R,
    id_column: &str,
    label_column: &str,
) -> Result<HashMap<String, String>, DatasetError> {
    let data = LoadOptions {
        detect_retweets: false,
        ..LoadOptions::new(label_column)
    }
    .id(id_column)
    .load_csv(reader)?;
    let mut map: HashMap<String, (String, usize)> = HashMap::new();
    for (ex, line) in data.examples.into_iter().zip(data.lines) {
        let id = ex.id.ok_or(DatasetError::MissingId { line })?;
        let label = ex.text.trim().to_string();
        if label.is_empty() {
            return Err(DatasetError::MissingLabel { line, id: Some(id) });
        }
        if let Some((first, _)) = map.get(&id) {
            if *first != label {
                return Err(DatasetError::ConflictingLabels {
                    line,
                    id,
                    first: first.clone(),
                    second: label,
                });
            }
            continue;
        }
        map.insert(id, (label, line));
    }
    Ok(map.into_iter().map(|(k, (v, _))| (k, v)).collect())
}

/// [`read_labels_csv`] from a file.
pub fn read_labels_path(
    path: impl AsRef<Path>,
    id_column: &str,
    label_column: &str,
) -> Result<HashMap<String, String>, DatasetError> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|source| DatasetError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    read_labels_csv(file, id_column, label_column)
}

// ---------------------------------------------------------------- dedup

/// What [`dedup`] removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupOptions {
    /// Remove retweets: [`RETWEET_FLAG`] set, or text starting `"RT @"`.
    pub retweets: bool,
    /// Remove examples whose text is byte-identical to an earlier one.
    pub exact: bool,
    /// Remove examples whose [`normalize_text`] equals an earlier one's
    /// (non-empty) normalised text.
    pub near: bool,
}

impl Default for DedupOptions {
    /// Everything on.
    fn default() -> Self {
        DedupOptions {
            retweets: true,
            exact: true,
            near: true,
        }
    }
}

/// Why an example was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// A retweet.
    Retweet,
    /// Same text as a kept example.
    ExactDuplicate,
    /// Same normalised text as a kept example.
    NearDuplicate,
}

impl fmt::Display for RemovalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemovalReason::Retweet => "retweet",
            RemovalReason::ExactDuplicate => "exact duplicate",
            RemovalReason::NearDuplicate => "near duplicate",
        })
    }
}

/// One removed example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Removed {
    /// Its index in the input.
    pub index: usize,
    /// Its id, if any.
    pub id: Option<String>,
    /// Why.
    pub reason: RemovalReason,
    /// For a duplicate: the index of the example kept in its place.
    pub duplicate_of: Option<usize>,
}

/// Duplicates that disagreed on the label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelConflict {
    /// The kept example's index in the input.
    pub kept: usize,
    /// The kept example's id.
    pub kept_id: Option<String>,
    /// How many of the group carried each label.
    pub votes: BTreeMap<String, usize>,
    /// The label the kept example now has: the majority; on a tie, the
    /// label of the earliest example among the tied labels.
    pub chosen: String,
}

/// What [`dedup`] removed and why.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DedupReport {
    /// Examples in.
    pub input: usize,
    /// Examples kept.
    pub kept: usize,
    /// Every removed example, in input order.
    pub removed: Vec<Removed>,
    /// Duplicate groups whose labels disagreed.
    pub conflicts: Vec<LabelConflict>,
}

impl DedupReport {
    /// How many were removed for `reason`.
    pub fn count(&self, reason: RemovalReason) -> usize {
        self.removed.iter().filter(|r| r.reason == reason).count()
    }

    /// The ids of those removed for `reason` (examples without id are left
    /// out).
    pub fn ids(&self, reason: RemovalReason) -> Vec<&str> {
        self.removed
            .iter()
            .filter(|r| r.reason == reason)
            .filter_map(|r| r.id.as_deref())
            .collect()
    }
}

impl fmt::Display for DedupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kept {} of {}: removed {} retweets, {} exact and {} near duplicates; {} label conflicts resolved by majority",
            self.kept,
            self.input,
            self.count(RemovalReason::Retweet),
            self.count(RemovalReason::ExactDuplicate),
            self.count(RemovalReason::NearDuplicate),
            self.conflicts.len()
        )
    }
}

/// The text as near-duplicate detection compares it: Unicode NFKC, lower
/// case, URLs (`http://`, `https://`, `www.`) and @mentions removed, a
/// leading `RT` removed, punctuation (ASCII, Latin-1 and the General and CJK
/// Punctuation blocks) turned into spaces, whitespace collapsed. Letters,
/// digits, emoji and other symbols stay; `#tag` becomes `tag`.
///
/// ```
/// use streamsift::local::normalize_text;
/// assert_eq!(
///     normalize_text("RT @nimbus: Ｄｏｗｎ  AGAIN?! https://t.co/x #outage"),
///     "down again outage"
/// );
/// ```
pub fn normalize_text(text: &str) -> String {
    let lowered: String = text.nfkc().flat_map(char::to_lowercase).collect();
    let mut out = String::with_capacity(lowered.len());
    let mut first = true;
    for token in lowered.split_whitespace() {
        let is_url = token.starts_with("http://")
            || token.starts_with("https://")
            || token.starts_with("www.");
        if is_url || token.starts_with('@') {
            continue;
        }
        if first && token == "rt" {
            first = false;
            continue;
        }
        first = false;
        for c in token.chars() {
            let c = if is_punctuation(c) { ' ' } else { c };
            if c == ' ' {
                if !out.is_empty() && !out.ends_with(' ') {
                    out.push(' ');
                }
            } else {
                out.push(c);
            }
        }
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32,
            0x00A1..=0x00BF // Latin-1 punctuation and signs
            | 0x2000..=0x206F // General Punctuation (incl. zero-width joiner)
            | 0x3000..=0x303F // CJK punctuation
            | 0xFE00..=0xFE0F // variation selectors
        )
}

fn is_retweet(ex: &Example) -> bool {
    ex.flags.get(RETWEET_FLAG).copied().unwrap_or(false) || ex.text.starts_with("RT @")
}

/// Finds retweets and duplicates. Returns the indices to keep, in input
/// order, each with the label it should carry when its duplicate group's
/// labels disagreed (else `None`: keep its own), and a report.
///
/// The first example of each duplicate group is kept; later ones are
/// removed. Retweets are removed before duplicates are looked for. Labels
/// of a group are voted: the majority wins, a tie goes to the label of the
/// earliest example among the tied labels, and unlabeled members do not
/// vote. A group whose members disagree is listed in
/// [`DedupReport::conflicts`].
///
/// ```
/// use streamsift::local::{dedup, DedupOptions, Example, RemovalReason};
/// let examples = vec![
///     Example::new("Is the API down?").labeled("problem"),
///     Example::new("is the api down").labeled("problem"),
///     Example::new("Is the API down?").labeled("none"),
///     Example::new("RT @nimbus: we are hiring").labeled("none"),
/// ];
/// let (keep, report) = dedup(&examples, &DedupOptions::default());
/// // one kept, relabeled by the vote of its group (2 "problem" to 1 "none")
/// assert_eq!(keep, vec![(0, Some("problem".to_string()))]);
/// assert_eq!(report.count(RemovalReason::Retweet), 1);
/// assert_eq!(report.count(RemovalReason::ExactDuplicate), 1);
/// assert_eq!(report.count(RemovalReason::NearDuplicate), 1);
/// assert_eq!(report.conflicts[0].chosen, "problem");
/// ```
pub fn dedup(
    examples: &[Example],
    options: &DedupOptions,
) -> (Vec<(usize, Option<String>)>, DedupReport) {
    let mut report = DedupReport {
        input: examples.len(),
        ..DedupReport::default()
    };
    // group representative (kept index) for each kept or removed example
    let mut exact: HashMap<&str, usize> = HashMap::new();
    let mut near: HashMap<String, usize> = HashMap::new();
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut kept = Vec::new();
    for (i, ex) in examples.iter().enumerate() {
        if options.retweets && is_retweet(ex) {
            report.removed.push(Removed {
                index: i,
                id: ex.id.clone(),
                reason: RemovalReason::Retweet,
                duplicate_of: None,
            });
            continue;
        }
        let mut rep = None;
        let mut reason = RemovalReason::ExactDuplicate;
        if options.exact {
            rep = exact.get(ex.text.as_str()).copied();
        }
        let key = if options.near {
            Some(normalize_text(&ex.text))
        } else {
            None
        };
        if rep.is_none()
            && let Some(key) = key.as_ref().filter(|k| !k.is_empty())
            && let Some(&r) = near.get(key)
        {
            rep = Some(r);
            // Byte-identical text is reported as exact even when it was
            // the normalised key that matched.
            reason = if examples.get(r).is_some_and(|k| k.text == ex.text) {
                RemovalReason::ExactDuplicate
            } else {
                RemovalReason::NearDuplicate
            };
        }
        match rep {
            Some(r) => {
                report.removed.push(Removed {
                    index: i,
                    id: ex.id.clone(),
                    reason,
                    duplicate_of: Some(r),
                });
                groups.entry(r).or_default().push(i);
            }
            None => {
                if options.exact {
                    exact.insert(ex.text.as_str(), i);
                }
                if let Some(key) = key.filter(|k| !k.is_empty()) {
                    near.insert(key, i);
                }
                groups.insert(i, vec![i]);
                kept.push(i);
            }
        }
    }
    let mut keep = Vec::with_capacity(kept.len());
    for k in kept {
        let members = groups.get(&k).map(Vec::as_slice).unwrap_or(&[]);
        let mut votes: BTreeMap<String, usize> = BTreeMap::new();
        let mut first_seen: HashMap<&str, usize> = HashMap::new();
        for (order, &m) in members.iter().enumerate() {
            if let Some(label) = examples.get(m).and_then(|e| e.label.as_deref()) {
                *votes.entry(label.to_string()).or_default() += 1;
                first_seen.entry(label).or_insert(order);
            }
        }
        let mut label = None;
        if votes.len() > 1 {
            let best = votes.values().copied().max().unwrap_or(0);
            let chosen = votes
                .iter()
                .filter(|(_, n)| **n == best)
                .min_by_key(|(l, _)| first_seen.get(l.as_str()).copied().unwrap_or(usize::MAX))
                .map(|(l, _)| l.clone())
                .unwrap_or_default();
            report.conflicts.push(LabelConflict {
                kept: k,
                kept_id: examples.get(k).and_then(|e| e.id.clone()),
                votes,
                chosen: chosen.clone(),
            });
            label = Some(chosen);
        }
        keep.push((k, label));
    }
    report.removed.sort_by_key(|r| r.index);
    report.kept = keep.len();
    (keep, report)
}

/// [`dedup`] applied to owned examples: returns the kept examples (with
/// labels resolved by majority) and the report.
pub fn dedup_examples(
    examples: Vec<Example>,
    options: &DedupOptions,
) -> (Vec<Example>, DedupReport) {
    let data = Dataset {
        lines: (1..=examples.len()).collect(),
        examples,
        skipped: Vec::new(),
    };
    let (data, report) = data.dedup(options);
    (data.examples, report)
}

// ---------------------------------------------------------------- splits

/// Indices of a train/test split, each list in ascending order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Training indices.
    pub train: Vec<usize>,
    /// Test (or validation) indices.
    pub test: Vec<usize>,
}

impl Split {
    /// Clones the items at the split's indices: `(train, test)`.
    pub fn apply<T: Clone>(&self, items: &[T]) -> (Vec<T>, Vec<T>) {
        let pick = |idx: &[usize]| idx.iter().filter_map(|&i| items.get(i).cloned()).collect();
        (pick(&self.train), pick(&self.test))
    }
}

/// Groups indices by label (in the order labels sort), each group shuffled
/// under `seed`.
fn shuffled_strata<L: Ord>(labels: &[L], seed: u64) -> Vec<Vec<usize>> {
    let mut strata: BTreeMap<&L, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        strata.entry(l).or_default().push(i);
    }
    let mut rng = Rng::new(seed);
    strata
        .into_values()
        .map(|mut idx| {
            for i in (1..idx.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                idx.swap(i, j);
            }
            idx
        })
        .collect()
}

/// A train/test split that keeps each label's share the same in both parts.
///
/// In each label's group, `round(n × test_fraction)` examples go to test,
/// chosen by a shuffle under `seed` (the same inputs and seed always give
/// the same split). A group of two or more keeps at least one example on
/// each side. `labels` can be anything ordered: `Option<&str>` from
/// [`labels_of`], class indices, booleans.
///
/// ```
/// use streamsift::local::stratified_split;
/// let labels = ["a", "a", "a", "a", "b", "b", "b", "b", "b", "b"];
/// let split = stratified_split(&labels, 0.5, 7)?;
/// let in_test = |l| split.test.iter().filter(|&&i| labels[i] == l).count();
/// assert_eq!((in_test("a"), in_test("b")), (2, 3));
/// assert_eq!(split, stratified_split(&labels, 0.5, 7)?);
/// # Ok::<(), streamsift::local::DatasetError>(())
/// ```
pub fn stratified_split<L: Ord>(
    labels: &[L],
    test_fraction: f64,
    seed: u64,
) -> Result<Split, DatasetError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(DatasetError::InvalidArgument(format!(
            "test_fraction must be between 0 and 1 (exclusive), got {test_fraction}"
        )));
    }
    let mut split = Split::default();
    for idx in shuffled_strata(labels, seed) {
        let n = idx.len();
        let mut n_test = (n as f64 * test_fraction).round() as usize;
        if n >= 2 {
            n_test = n_test.clamp(1, n - 1);
        }
        let (test, train) = idx.split_at(n_test.min(n));
        split.test.extend_from_slice(test);
        split.train.extend_from_slice(train);
    }
    split.train.sort_unstable();
    split.test.sort_unstable();
    Ok(split)
}

/// Stratified k-fold cross-validation: `k` splits whose test parts are
/// disjoint and together cover every index once, each label spread as
/// evenly over the folds as its count allows. Deterministic under `seed`.
///
/// ```
/// use streamsift::local::stratified_k_fold;
/// let labels = [true, true, true, false, false, false, false, false, false];
/// let folds = stratified_k_fold(&labels, 3, 1)?;
/// assert_eq!(folds.len(), 3);
/// for f in &folds {
///     assert_eq!(f.test.iter().filter(|&&i| labels[i]).count(), 1);
///     assert_eq!(f.test.len() + f.train.len(), labels.len());
/// }
/// # Ok::<(), streamsift::local::DatasetError>(())
/// ```
pub fn stratified_k_fold<L: Ord>(
    labels: &[L],
    k: usize,
    seed: u64,
) -> Result<Vec<Split>, DatasetError> {
    if k < 2 || k > labels.len() {
        return Err(DatasetError::InvalidArgument(format!(
            "k must be at least 2 and at most the number of examples ({}), got {k}",
            labels.len()
        )));
    }
    let mut fold_of = vec![0usize; labels.len()];
    // Deal each stratum round-robin, continuing where the previous stratum
    // stopped, so fold sizes differ by at most one.
    let mut next = 0usize;
    for idx in shuffled_strata(labels, seed) {
        for i in idx {
            if let Some(slot) = fold_of.get_mut(i) {
                *slot = next;
            }
            next = (next + 1) % k;
        }
    }
    let mut folds = vec![Split::default(); k];
    for (i, &f) in fold_of.iter().enumerate() {
        for (j, fold) in folds.iter_mut().enumerate() {
            if j == f {
                fold.test.push(i);
            } else {
                fold.train.push(i);
            }
        }
    }
    Ok(folds)
}
