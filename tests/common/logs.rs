//! Log capture for tests that check what reaches the logs.

use std::sync::{Arc, Mutex, OnceLock};

/// A `tracing` writer that keeps everything written, to read it back.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The logs of the whole test binary, at trace level for streamsift.
///
/// The process-wide subscriber, not a thread-local one: with a thread-local
/// subscriber, a callsite first hit by another test's thread (with no
/// subscriber) can be cached as "never" and this test then sees no events.
/// Every test's logs land here, which only widens a check that something is
/// never logged.
pub fn process_logs() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("streamsift=trace,warn"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test in this binary sets a global subscriber");
        logs
    })
    .clone()
}
