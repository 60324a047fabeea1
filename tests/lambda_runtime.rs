//! The support-tweets Lambda function (`examples/serving/lambda.rs`, the
//! body of `examples/lambda_support_tweets.rs`) run as a real process under
//! `lambda_runtime`, against the Runtime API emulator in
//! `tests/common/lambda_runtime_api.rs`.
//!
//! `harness = false`: the function's stdout must hold only its own JSON
//! log lines, which a libtest child could not promise, so this binary is
//! both the test (no argument) and, re-executed with `STREAMSIFT_LAMBDA_CHILD`
//! set, the function under test. (`cargo test --examples` builds the
//! examples as test harnesses, so the example binary itself is not there to
//! run.) cargo-lambda's `watch` was not used: installing it from crates.io
//! would add a long compile to every CI run.

#[path = "../examples/support_tweets/app.rs"]
mod app;
mod common;
#[path = "../examples/serving/mod.rs"]
mod serving;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::lambda_runtime_api::{Answer, Invocation, RuntimeApi};

/// Set in the child process: run the function instead of the test.
const CHILD: &str = "STREAMSIFT_LAMBDA_CHILD";

fn main() -> std::process::ExitCode {
    if std::env::var_os(CHILD).is_some() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        return match runtime.block_on(serving::lambda::main()) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("function stopped: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    print!("test the_function_runs_under_lambda_runtime_against_a_local_runtime_api ... ");
    the_function_runs_under_lambda_runtime_against_a_local_runtime_api();
    println!("ok");
    std::process::ExitCode::SUCCESS
}

/// Sequence numbers in the fixtures end in their record's number.
fn seq(n: u32) -> String {
    format!("4965812364928714326811800710936051{n:022}")
}

fn fixture_text(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/lambda/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).expect("fixture readable")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn the_function_runs_under_lambda_runtime_against_a_local_runtime_api() {
    let far = now_ms() + 600_000;
    let invocations = vec![
        Invocation {
            request_id: "req-1".into(),
            deadline_ms: far,
            body: fixture_text("kinesis-event.json"),
        },
        Invocation {
            request_id: "req-2".into(),
            deadline_ms: far,
            body: fixture_text("malformed.json"),
        },
        Invocation {
            request_id: "req-3".into(),
            deadline_ms: far,
            body: fixture_text("aggregated.json"),
        },
        Invocation {
            // Already past the deadline: nothing may start.
            request_id: "req-4".into(),
            deadline_ms: now_ms().saturating_sub(1_000),
            body: fixture_text("kinesis-event.json"),
        },
        Invocation {
            request_id: "req-5".into(),
            deadline_ms: far,
            body: r#"{"Records": "not a list"}"#.into(),
        },
    ];
    let api = RuntimeApi::start(invocations).expect("emulator starts");
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .env(CHILD, "1")
        .env("AWS_LAMBDA_RUNTIME_API", api.addr())
        .env("AWS_LAMBDA_FUNCTION_NAME", "support-tweets")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("RUST_LOG", "info")
        .env("EMF_NAMESPACE", "streamsift-test")
        .env_remove("AWS_LAMBDA_LOG_LEVEL")
        .env_remove("MODEL_DIR")
        .env_remove("SNS_TOPIC_ARN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    // A bound on waiting, not a timing assertion: the answers are checked below.
    let answers = api.wait_for_answers(5, Duration::from_secs(120));
    // After the last answer the function asks for more work.
    let polls = api.wait_for_polls(6, Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let out = reader.join().expect("reader thread");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(
        answers.len(),
        5,
        "answers: {answers:?}\nstdout:\n{out}\nstderr:\n{stderr}"
    );

    let failures = |answer: &Answer, id: &str| -> Vec<String> {
        match answer {
            Answer::Response { request_id, body } if request_id == id => {
                let v: serde_json::Value = serde_json::from_str(body).expect("JSON response");
                v["batchItemFailures"]
                    .as_array()
                    .expect("batchItemFailures")
                    .iter()
                    .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_string())
                    .collect()
            }
            other => panic!("expected a response to {id}, got {other:?}"),
        }
    };
    assert!(failures(&answers[0], "req-1").is_empty());
    assert!(failures(&answers[1], "req-2").is_empty());
    assert!(failures(&answers[2], "req-3").is_empty());
    assert_eq!(
        failures(&answers[3], "req-4"),
        [seq(1), seq(2), seq(3), seq(4), seq(5)]
    );
    // An event that is not a Kinesis event is an invocation error (Lambda
    // retries the whole batch), not a crash: the function keeps polling.
    assert!(
        matches!(&answers[4], Answer::Error { request_id, .. } if request_id == "req-5"),
        "{:?}",
        answers[4]
    );
    assert_eq!(polls, 6, "the runtime polls for the next event");

    // The model was loaded once for the five invocations.
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let message = |v: &serde_json::Value| v["fields"]["message"].as_str().map(str::to_string);
    let loaded = lines
        .iter()
        .filter(|v| message(v).as_deref() == Some("model loaded"))
        .count();
    assert_eq!(loaded, 1, "stdout:\n{out}");
    // Every log line is JSON, and one EMF line per handled event.
    assert_eq!(
        lines.len(),
        out.lines().filter(|l| !l.trim().is_empty()).count(),
        "non-JSON output on stdout:\n{out}"
    );
    let emf: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("_aws").is_some()).collect();
    assert_eq!(emf.len(), 4);
    assert_eq!(emf[0]["RecordsIn"], 5);
    assert_eq!(emf[1]["DeadLettered"], 4);
    assert_eq!(emf[3]["NotStarted"], 5);
    let dead_letters: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| message(v).as_deref() == Some("dead-lettered record"))
        .collect();
    assert_eq!(dead_letters.len(), 4);
    // A dead letter's log line names the record, never its payload (the
    // tweet text stays out of the logs).
    let event: serde_json::Value =
        serde_json::from_str(&fixture_text("malformed.json")).expect("fixture");
    let payloads: Vec<&str> = event["Records"]
        .as_array()
        .expect("Records")
        .iter()
        .filter_map(|r| r["kinesis"]["data"].as_str())
        .filter(|data| data.len() >= 4)
        .collect();
    assert!(!payloads.is_empty());
    for line in dead_letters {
        let fields = &line["fields"];
        assert!(fields["record_id"].is_string(), "{line}");
        assert!(fields["sequence"].is_string(), "{line}");
        assert!(fields["kind"].is_string(), "{line}");
        assert!(fields.get("payload").is_none() && fields.get("dead_letter").is_none());
        let text = line.to_string();
        for data in &payloads {
            assert!(!text.contains(data), "the payload {data} is logged: {line}");
        }
    }
}
