//! Starts moto's server mode on a free loopback port for one test, and stops
//! it when the guard drops. `scripts/test.sh` installs moto into `.venv`; set
//! `STREAMSIFT_MOTO_SERVER` to use another `moto_server` executable.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server. Dropping it kills the process.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

fn executable() -> PathBuf {
    if let Some(path) = std::env::var_os("STREAMSIFT_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    panic!(
        "moto_server not found at {}: run ./scripts/test.sh (it installs moto into .venv), \
         or set STREAMSIFT_MOTO_SERVER to a moto_server executable",
        venv.display()
    );
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

pub fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

impl Moto {
    /// Starts moto and waits until it answers, for at most 60 s.
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// Starts moto with IAM checks on (moto's `INITIAL_NO_AUTH_ACTION_COUNT`):
    /// after the first `unchecked` actions, each request must be signed by
    /// an IAM user's key whose policy allows the action.
    #[allow(dead_code)] // not every test binary uses it
    pub fn start_with_iam(unchecked: u32) -> Moto {
        Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", &unchecked.to_string())])
    }

    fn start_with(env: &[(&str, &str)]) -> Moto {
        let exe = executable();
        for _attempt in 0..3 {
            let port = free_port();
            let mut child = Command::new(&exe)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if http_ok(port, "/moto-api/data.json") {
                    return Moto {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // most likely lost the port race: try another port
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("moto did not answer on port {port} within 60 s");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("moto exited at start-up three times");
    }

    /// An SDK config for this server: a fixed region, dummy credentials, and
    /// the endpoint set, so nothing reaches AWS.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_for(&self.endpoint).await
    }
}

/// An SDK config that talks to `endpoint` with dummy credentials.
pub async fn sdk_config_for(endpoint: &str) -> aws_config::SdkConfig {
    sdk_config_as(endpoint, "testing", "testing").await
}

/// An SDK config that talks to `endpoint` with the key `key_id`/`secret`
/// (an IAM user's, on a moto started with [`Moto::start_with_iam`]).
pub async fn sdk_config_as(endpoint: &str, key_id: &str, secret: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            key_id,
            secret,
            None,
            None,
            "streamsift-tests",
        ))
        .load()
        .await
}

/// Creates the SQS queue `name` with `attributes` (a FIFO queue when the
/// name ends in `.fifo`); returns its URL.
#[allow(dead_code)] // not every test binary uses it
pub async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(aws_sdk_sqs::types::QueueAttributeName, &str)],
) -> String {
    use aws_sdk_sqs::types::QueueAttributeName;
    let mut create = sqs.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        create = create.attributes(QueueAttributeName::FifoQueue, "true");
    }
    for (attribute, value) in attributes {
        create = create.attributes(attribute.clone(), *value);
    }
    create
        .send()
        .await
        .expect("CreateQueue")
        .queue_url()
        .expect("QueueUrl")
        .to_owned()
}

/// Runs `script` with the Python that moto is installed in (it has boto3:
/// the tests use it for what the Rust SDKs in the tree cannot do, such as
/// creating IAM users), with `args` after it; returns its standard output.
#[allow(dead_code)] // not every test binary uses it
pub fn python(script: &str, args: &[&str]) -> String {
    let python = executable().with_file_name("python");
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "the setup script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
