//! Log capture: one process-wide subscriber at DEBUG (a thread-local one
//! can miss events when another thread cached a callsite as off; see
//! tests/label_ui.rs), writing into a buffer of the current thread. Each
//! seed runs on one thread (a current-thread runtime), so the buffer holds
//! that seed's lines only.

use std::cell::RefCell;
use std::io;

thread_local! {
    static LINES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Appends to this thread's buffer.
pub struct ThreadBuffer;

impl io::Write for ThreadBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        LINES.with(|l| l.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the subscriber once per process.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .without_time()
            .with_writer(|| ThreadBuffer)
            .finish();
        // Another subscriber would mean a second installer in this binary.
        tracing::subscriber::set_global_default(subscriber)
            .expect("only sim::logs installs a subscriber in the simulation binary");
    });
}

/// Takes (and clears) what this thread logged.
pub fn take() -> String {
    LINES.with(|l| String::from_utf8_lossy(&std::mem::take(&mut *l.borrow_mut())).into_owned())
}
