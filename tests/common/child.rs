//! Runs an example in a child process: the test binary starts itself again
//! with `STREAMSIFT_EXAMPLE=<name>`, and its `main` runs that example's
//! `main` instead of the tests (see `tests/examples.rs`).

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The variable that makes the test binary run an example instead.
pub const CHILD: &str = "STREAMSIFT_EXAMPLE";

/// The longest an example may run before the test fails (cold builds and
/// the emulators' start-ups included).
pub const CHILD_LIMIT: Duration = Duration::from_secs(240);

/// How a child run ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Both outputs, for failure messages.
    pub fn both(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Variables the examples read, removed so the test's environment cannot
/// change what they do (a test sets what it needs through `envs`).
const EXAMPLE_VARIABLES: &[&str] = &[
    "RUST_LOG",
    "SNS_TOPIC_ARN",
    "DEAD_LETTER_BUCKET",
    "DEAD_LETTER_QUEUE_URL",
    "MODEL_DIR",
];

/// Runs example `name` with `args`, without the variables the examples
/// read or any `STREAMSIFT_` variable of ours (except the moto override),
/// plus `envs`; fails the test if it runs longer than [`CHILD_LIMIT`].
pub fn run_example(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut command = Command::new(std::env::current_exe().expect("test binary path"));
    command
        .env(CHILD, name)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in EXAMPLE_VARIABLES {
        command.env_remove(var);
    }
    for (var, _) in std::env::vars() {
        if var.starts_with("STREAMSIFT_") && var != CHILD && var != "STREAMSIFT_MOTO_SERVER" {
            command.env_remove(var);
        }
    }
    for (var, value) in envs {
        command.env(var, value);
    }
    let mut child = command.spawn().expect("the example starts");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the example") {
            break status;
        }
        if started.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} {args:?} still running after {CHILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}
