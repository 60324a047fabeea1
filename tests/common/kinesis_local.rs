//! Starts kinesis-local (kinesis-mock, from npm) on free loopback ports for
//! one test: the emulator that implements SubscribeToShard, for enhanced
//! fan-out. `scripts/test.sh` installs it into `.emulators`; set
//! `STREAMSIFT_KINESIS_LOCAL` to the package's directory to use another copy.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::moto::free_port;

/// A running kinesis-local. Dropping it kills the process.
#[derive(Debug)]
pub struct KinesisLocal {
    child: Child,
    /// `http://127.0.0.1:PORT` (the plain-HTTP port).
    pub endpoint: String,
}

fn package_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STREAMSIFT_KINESIS_LOCAL") {
        return PathBuf::from(dir);
    }
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".emulators/node_modules/kinesis-local");
    if dir.join("main.js").exists() {
        return dir;
    }
    panic!(
        "kinesis-local not found at {}: run ./scripts/test.sh (it installs it), or set STREAMSIFT_KINESIS_LOCAL",
        dir.display()
    );
}

impl KinesisLocal {
    /// Starts kinesis-local and waits until its health check answers, for at
    /// most 60 s.
    pub fn start() -> KinesisLocal {
        let dir = package_dir();
        for _attempt in 0..3 {
            let plain = free_port();
            let tls = free_port();
            let mut child = Command::new("node")
                .arg(dir.join("main.js"))
                .env("KINESIS_MOCK_PLAIN_PORT", plain.to_string())
                .env("KINESIS_MOCK_TLS_PORT", tls.to_string())
                .env("KINESIS_MOCK_CERT_PATH", dir.join("server.json"))
                .env("LOG_LEVEL", "ERROR")
                .env("CREATE_STREAM_DURATION", "0ms")
                .env("REGISTER_STREAM_CONSUMER_DURATION", "0ms")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start node {}: {e}", dir.display()));
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if super::moto::http_ok(plain, "/healthcheck") {
                    return KinesisLocal {
                        child,
                        endpoint: format!("http://127.0.0.1:{plain}"),
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("kinesis-local did not answer on port {plain} within 60 s");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("kinesis-local exited at start-up three times");
    }
}

impl Drop for KinesisLocal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
