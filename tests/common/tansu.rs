//! Starts the tansu Kafka-compatible broker (in-memory storage) on a free
//! loopback port for one test, and stops it when the guard drops.
//! `scripts/test.sh` builds tansu from crates.io into `.emulators/tansu`;
//! set `STREAMSIFT_TANSU` to use another `tansu` executable.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A running broker. Dropping it kills the process.
#[derive(Debug)]
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub brokers: String,
}

/// The broker executable, or `None` when it is not installed. In CI a
/// missing broker is an error, never a skip.
pub fn executable() -> Option<PathBuf> {
    let path = match std::env::var_os("STREAMSIFT_TANSU") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".emulators/tansu/bin/tansu"),
    };
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the tansu broker is not at {} in CI: scripts/test.sh builds it there",
        path.display()
    );
    None
}

/// The broker, or a LOUD skip message when it is not installed (outside CI).
pub fn start_or_skip(test: &str) -> Option<Tansu> {
    match executable() {
        Some(exe) => Some(Tansu::start(exe)),
        None => {
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: the tansu Kafka broker is not installed. \
                 Run ./scripts/test.sh (it builds tansu into .emulators/tansu) or set \
                 STREAMSIFT_TANSU. CI never skips this. !!!!!!!!\n"
            );
            None
        }
    }
}

impl Tansu {
    /// Starts the broker and waits until it accepts connections (≤ 30 s).
    pub fn start(exe: PathBuf) -> Tansu {
        for _attempt in 0..3 {
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let mut child = Command::new(&exe)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                    "--storage-engine",
                    "memory://tansu/",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Tansu {
                        child,
                        brokers: format!("127.0.0.1:{port}"),
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // most likely lost the port race
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("tansu did not listen on port {port} within 30 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("tansu exited at start-up three times");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
