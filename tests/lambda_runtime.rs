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
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let scenarios: &[(&str, fn())] = &[
        (
            "the_function_runs_under_lambda_runtime_against_a_local_runtime_api",
            the_function_runs_under_lambda_runtime_against_a_local_runtime_api,
        ),
        (
            "without_a_queue_dead_letters_are_logged_without_their_payload",
            without_a_queue_dead_letters_are_logged_without_their_payload,
        ),
        #[cfg(feature = "sqs")]
        (
            "with_a_queue_dead_letters_are_sent_to_sqs_with_their_bytes",
            with_a_queue_dead_letters_are_sent_to_sqs_with_their_bytes,
        ),
    ];
    for (name, scenario) in scenarios {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        print!("test {name} ... ");
        scenario();
        println!("ok");
    }
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

/// Runs the function as a child process against a Runtime API emulator
/// serving `invocations`, with `env` added; returns the answers, the
/// polls, stdout and stderr once every invocation is answered.
fn run_function(
    invocations: Vec<Invocation>,
    env: &[(&str, String)],
) -> (Vec<Answer>, usize, String, String) {
    let count = invocations.len();
    let api = RuntimeApi::start(invocations).expect("emulator starts");
    let mut command = Command::new(std::env::current_exe().expect("test binary path"));
    command
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
        .env_remove("DEAD_LETTER_QUEUE_URL")
        .env_remove("DEAD_LETTER_BUCKET");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
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
    // A bound on waiting, not a timing assertion: the answers are checked by the caller.
    let answers = api.wait_for_answers(count, Duration::from_secs(120));
    // After the last answer the function asks for more work.
    let polls = api.wait_for_polls(count + 1, Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let out = reader.join().expect("reader thread");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    (answers, polls, out, stderr)
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
    let (answers, polls, out, stderr) = run_function(invocations, &[]);
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

/// Tweet-shaped records whose decode error quotes their text, one that is
/// not JSON, and one good tweet.
const SECRETS: [&str; 2] = ["SECRET-USER-7731", "SECRET-RAW-9090"];
const LEAKY: [&[u8]; 3] = [
    br#"{"id_str":"2001","text":"hi","user":"SECRET-USER-7731"}"#,
    b"SECRET-RAW-9090 is not JSON",
    br#"{"id_str":"2003","text":"@nimbuscloud the api is down","user":{"screen_name":"fine"}}"#,
];

/// A Kinesis event in the fixtures' shape, holding `payloads` (sequence
/// numbers 40, 41, ...).
fn event_of(payloads: &[&[u8]]) -> String {
    use base64::Engine as _;
    let mut event: serde_json::Value =
        serde_json::from_str(&fixture_text("kinesis-event.json")).expect("fixture");
    let template = event["Records"][0].clone();
    let records: Vec<serde_json::Value> = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| {
            let n = 40 + i as u32;
            let mut r = template.clone();
            r["kinesis"]["data"] = base64::engine::general_purpose::STANDARD
                .encode(payload)
                .into();
            r["kinesis"]["sequenceNumber"] = seq(n).into();
            r["eventID"] = format!("shardId-000000000003:{}", seq(n)).into();
            r
        })
        .collect();
    event["Records"] = records.into();
    event.to_string()
}

fn no_failures(answer: &Answer) {
    match answer {
        Answer::Response { body, .. } => {
            let v: serde_json::Value = serde_json::from_str(body).expect("JSON response");
            assert_eq!(v["batchItemFailures"], serde_json::json!([]), "{body}");
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

fn dead_letter_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "dead-lettered record")
        .collect()
}

/// The log sink names the record, stage, kind and reason, but a reason
/// that quotes the payload (serde's `invalid type: string "…"`) is logged
/// with the quoted part left out.
fn without_a_queue_dead_letters_are_logged_without_their_payload() {
    let invocations = vec![Invocation {
        request_id: "req-1".into(),
        deadline_ms: now_ms() + 600_000,
        body: event_of(&LEAKY),
    }];
    let (answers, _, out, stderr) = run_function(invocations, &[]);
    assert_eq!(answers.len(), 1, "stdout:\n{out}\nstderr:\n{stderr}");
    no_failures(&answers[0]);
    let lines = dead_letter_lines(&out);
    assert_eq!(lines.len(), 2, "stdout:\n{out}");
    for line in &lines {
        for field in ["record_id", "stage", "kind", "reason"] {
            assert!(line["fields"][field].is_string(), "{field}: {line}");
        }
    }
    assert!(
        lines.iter().any(|l| l["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid type: string")),
        "the reason is kept, its quote left out: {lines:?}"
    );
    for secret in SECRETS {
        assert!(
            !out.contains(secret) && !stderr.contains(secret),
            "the payload text {secret} is logged:\n{out}\n{stderr}"
        );
    }
}

/// With `DEAD_LETTER_QUEUE_URL`, the function sends dead letters to the
/// queue (on moto) with their exact bytes, and logs no payload.
#[cfg(feature = "sqs")]
fn with_a_queue_dead_letters_are_sent_to_sqs_with_their_bytes() {
    use common::moto::Moto;
    use streamsift::sqs::SqsDeadLetter;

    let moto = Moto::start();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (reader, url) = runtime.block_on(async {
        let config = moto.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let url = common::moto::create_queue(&sqs, "lambda-dead-letters", &[]).await;
        let reader = SqsDeadLetter::builder(&config, &url).build().await.unwrap();
        (reader, url)
    });
    let invocations = vec![Invocation {
        request_id: "req-1".into(),
        deadline_ms: now_ms() + 600_000,
        body: event_of(&LEAKY),
    }];
    let env = [
        ("DEAD_LETTER_QUEUE_URL", url.clone()),
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    let (answers, _, out, stderr) = run_function(invocations, &env);
    assert_eq!(answers.len(), 1, "stdout:\n{out}\nstderr:\n{stderr}");
    no_failures(&answers[0]);
    assert!(dead_letter_lines(&out).is_empty(), "stdout:\n{out}");
    for secret in SECRETS {
        assert!(
            !out.contains(secret) && !stderr.contains(secret),
            "{secret} logged"
        );
    }
    let mut got: Vec<(String, Vec<u8>, String)> = runtime.block_on(async {
        let mut all = Vec::new();
        loop {
            let batch = reader
                .receive(10, Duration::from_secs(0), Duration::from_secs(300))
                .await
                .expect("ReceiveMessage");
            if batch.is_empty() {
                break all;
            }
            for message in batch {
                let m = message.expect("a dead letter");
                let bytes = m.entry.payload_bytes().unwrap();
                all.push((m.entry.sequence.clone(), bytes, m.entry.kind.clone()));
            }
        }
    });
    got.sort();
    assert_eq!(
        got,
        [
            (seq(40), LEAKY[0].to_vec(), "invalid_json".to_owned()),
            (seq(41), LEAKY[1].to_vec(), "invalid_json".to_owned()),
        ]
    );
}
