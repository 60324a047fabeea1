//! The crate's one append-only JSON-lines writer.
//!
//! Every JSON-lines file the crate appends to (dead letters, the active
//! learner's review queue and dataset, the label page's dataset) goes
//! through [`Appender`], which keeps three promises:
//!
//! - an append never lands on an unterminated last line: when the file is
//!   opened, bytes after its last `'\n'` (a write cut short by a crash, never
//!   acknowledged) are cut, with a warning naming the file and the byte
//!   count (never the bytes);
//! - an append counts only once its bytes are on disk: `append` returns
//!   `Ok` after `sync_data`, and a file it created has its directory synced
//!   too, so the file's name survives a crash;
//! - a failed append is rolled back: the file is truncated to its length
//!   before the append, so a retry leaves neither a half line nor a
//!   duplicate.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The file operations an [`Appender`] needs; a seam for failure tests.
pub(crate) trait AppendFile {
    /// Writes all of `buf` at the end of the file.
    fn write_all_end(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Syncs the file's data to disk.
    fn sync(&mut self) -> io::Result<()>;
    /// Truncates the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

impl AppendFile for File {
    fn write_all_end(&mut self, buf: &[u8]) -> io::Result<()> {
        // The file is opened in append mode: every write goes to the end.
        self.write_all(buf)?;
        self.flush()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

/// An open JSON-lines file that is only ever appended to (see the module
/// docs for its promises).
pub(crate) struct Appender<F = File> {
    path: PathBuf,
    file: F,
    /// The file's length after the last good append: every byte before it
    /// is whole, synced lines.
    len: u64,
    /// A failed append could not be rolled back: cut back to `len` before
    /// the next one.
    dirty: bool,
}

impl<F> std::fmt::Debug for Appender<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Appender<File> {
    /// Opens `path` for appending, creating it (and syncing its directory)
    /// when missing, and cuts a torn tail.
    pub(crate) fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let (mut file, created) = match OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
                OpenOptions::new().read(true).append(true).open(&path)?,
                false,
            ),
            Err(e) => return Err(e),
        };
        if created {
            sync_parent(&path)?;
        }
        let end = file.seek(SeekFrom::End(0))?;
        let keep = whole_lines_len(&mut file, end)?;
        if keep < end {
            tracing::warn!(
                path = %path.display(),
                bytes = end - keep,
                "cutting an unfinished last line (a write cut short by a crash; it was never acknowledged)"
            );
            file.set_len(keep)?;
            file.sync_data()?;
        }
        Ok(Appender {
            path,
            file,
            len: keep,
            dirty: false,
        })
    }
}

impl<F: AppendFile> Appender<F> {
    /// An appender over an already open `file` of `len` whole lines (tests
    /// inject failing files through this).
    #[cfg(test)]
    pub(crate) fn with_file(path: impl Into<PathBuf>, file: F, len: u64) -> Self {
        Appender {
            path: path.into(),
            file,
            len,
            dirty: false,
        }
    }

    /// Appends `lines` (whole lines, each ending in `'\n'`) and syncs. On
    /// failure the file is cut back to its length before the call.
    pub(crate) fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        if !lines.ends_with(b"\n") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a JSON-lines append must end with a newline",
            ));
        }
        if self.dirty {
            self.file.truncate(self.len)?;
            self.dirty = false;
        }
        let written = self
            .file
            .write_all_end(lines)
            .and_then(|()| self.file.sync());
        match written {
            Ok(()) => {
                self.len += lines.len() as u64;
                Ok(())
            }
            Err(e) => {
                if self.file.truncate(self.len).is_err() {
                    self.dirty = true;
                } else {
                    // Best effort: the cut is synced with the next append.
                    let _ = self.file.sync();
                }
                Err(e)
            }
        }
    }
}

/// The length of the file's prefix made of whole lines: up to and
/// including its last `'\n'` (0 when it has none).
fn whole_lines_len(file: &mut File, end: u64) -> io::Result<u64> {
    const CHUNK: u64 = 8 * 1024;
    let mut hi = end;
    let mut buf = vec![0u8; CHUNK as usize];
    while hi > 0 {
        let lo = hi.saturating_sub(CHUNK);
        let n = (hi - lo) as usize;
        file.seek(SeekFrom::Start(lo))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(lo + i as u64 + 1);
        }
        hi = lo;
    }
    Ok(0)
}

/// Syncs the directory holding `path`, so that a file just created there
/// (or renamed into it) survives a crash. A platform that cannot open a
/// directory is not an error.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in memory whose writes and syncs fail on demand.
    #[derive(Default)]
    struct Flaky {
        data: Vec<u8>,
        /// Write only this many bytes of the next write, then fail.
        short_write: Option<usize>,
        fail_sync: bool,
        fail_truncate: bool,
    }

    impl AppendFile for Flaky {
        fn write_all_end(&mut self, buf: &[u8]) -> io::Result<()> {
            if let Some(n) = self.short_write.take() {
                self.data.extend_from_slice(&buf[..n.min(buf.len())]);
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            self.data.extend_from_slice(buf);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            if std::mem::take(&mut self.fail_sync) {
                return Err(io::Error::other("fsync failed"));
            }
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            if self.fail_truncate {
                return Err(io::Error::other("read-only"));
            }
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn durable_files_failed_append_is_rolled_back() {
        let mut a = Appender::with_file("mem", Flaky::default(), 0);
        a.append(b"{\"a\":1}\n").unwrap();
        // A short write: half a line reaches the file, then an error.
        a.file.short_write = Some(4);
        assert!(a.append(b"{\"b\":2}\n").is_err());
        assert_eq!(a.file.data, b"{\"a\":1}\n", "the half line is cut");
        // A failed fsync: the whole line was written but not acknowledged.
        a.file.fail_sync = true;
        assert!(a.append(b"{\"b\":2}\n").is_err());
        assert_eq!(a.file.data, b"{\"a\":1}\n", "no duplicate on retry");
        // The retry lands once, on a line of its own.
        a.append(b"{\"b\":2}\n").unwrap();
        assert_eq!(a.file.data, b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn durable_files_rollback_that_fails_is_redone_before_the_next_append() {
        let mut a = Appender::with_file("mem", Flaky::default(), 0);
        a.file.short_write = Some(3);
        a.file.fail_truncate = true;
        assert!(a.append(b"{\"a\":1}\n").is_err());
        // Still read-only: the next append refuses rather than glue onto
        // the half line.
        assert!(a.append(b"{\"b\":2}\n").is_err());
        assert_eq!(a.file.data, b"{\"a");
        a.file.fail_truncate = false;
        a.append(b"{\"b\":2}\n").unwrap();
        assert_eq!(a.file.data, b"{\"b\":2}\n");
    }

    #[test]
    fn durable_files_torn_tail_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        // A long torn tail, longer than one read chunk.
        let mut data = b"{\"a\":1}\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 20_000));
        std::fs::write(&path, &data).unwrap();
        let mut a = Appender::open(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n");
        a.append(b"{\"b\":2}\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
        // No newline at all: everything is a torn tail.
        std::fs::write(&path, b"{\"c\"").unwrap();
        Appender::open(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        // A missing file is created empty.
        let new = dir.path().join("new.jsonl");
        Appender::open(&new).unwrap();
        assert_eq!(std::fs::read(&new).unwrap(), b"");
    }

    #[test]
    fn an_append_must_be_whole_lines() {
        let mut a = Appender::with_file("mem", Flaky::default(), 0);
        assert!(a.append(b"{}").is_err());
        assert!(a.file.data.is_empty());
    }
}
