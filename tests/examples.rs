//! The example binaries, run as a user runs them: a command line in, an exit
//! status, stdout and stderr out.
//!
//! `harness = false`: `cargo test --examples` builds the examples as test
//! harnesses, so their own binaries are not there to run. This binary is the
//! driver (no `STREAMSIFT_EXAMPLE`) and, re-executed with
//! `STREAMSIFT_EXAMPLE=<name>` and the example's arguments, that example's
//! `main` (the example files are compiled in below, unchanged). Pass a word
//! to run only the scenarios whose names hold it.

// Each example file brings its own copy of examples/common/mod.rs, as it
// does when built alone.
#![allow(clippy::duplicate_mod)]

mod common;

#[allow(dead_code)]
#[path = "../examples/custom_router.rs"]
mod custom_router;
#[allow(dead_code)]
#[path = "../examples/custom_source.rs"]
mod custom_source;
#[allow(dead_code)]
#[path = "../examples/support_tweets/main.rs"]
mod support_tweets;
#[allow(dead_code)]
#[path = "../examples/train_eval/main.rs"]
mod train_eval;

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use common::child::{CHILD, Run, run_example};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

type Scenario = (&'static str, fn());

const SCENARIOS: &[Scenario] = &[
    (
        "custom_router_maps_status_codes_to_delivered_retried_and_dead_lettered",
        custom_router_maps_status_codes_to_delivered_retried_and_dead_lettered,
    ),
    (
        "custom_source_commits_its_own_positions_and_dead_letters_garbled_readings",
        custom_source_commits_its_own_positions_and_dead_letters_garbled_readings,
    ),
    (
        "a_missing_input_file_prints_a_short_human_error",
        a_missing_input_file_prints_a_short_human_error,
    ),
    (
        "an_unwritable_dead_letter_path_prints_a_hint_not_a_debug_dump",
        an_unwritable_dead_letter_path_prints_a_hint_not_a_debug_dump,
    ),
    (
        "help_and_bad_flags_look_like_every_other_rust_tool",
        help_and_bad_flags_look_like_every_other_rust_tool,
    ),
    #[cfg(feature = "aws")]
    (
        "a_closed_endpoint_url_fails_with_a_hint",
        a_closed_endpoint_url_fails_with_a_hint,
    ),
    #[cfg(feature = "aws")]
    (
        "topics_that_do_not_exist_make_the_run_exit_non_zero",
        topics_that_do_not_exist_make_the_run_exit_non_zero,
    ),
    #[cfg(feature = "aws")]
    (
        "a_drained_second_run_says_nothing_new_instead_of_empty_tables",
        a_drained_second_run_says_nothing_new_instead_of_empty_tables,
    ),
];

fn main() -> ExitCode {
    if let Ok(name) = std::env::var(CHILD) {
        return match name.as_str() {
            "custom_router" => custom_router::main(),
            "custom_source" => custom_source::main(),
            "train_eval" => train_eval::main(),
            "support_tweets" => tokio::runtime::Runtime::new()
                .expect("tokio runtime")
                .block_on(support_tweets::main_with(std::env::args_os())),
            other => {
                eprintln!("no example {other:?}");
                ExitCode::FAILURE
            }
        };
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let chosen: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    println!("running {} tests", chosen.len());
    for (name, scenario) in chosen {
        print!("test {name} ... ");
        scenario();
        println!("ok");
    }
    ExitCode::SUCCESS
}

/// What one run of an example did.
/// An error printed for people: a hint line, then `error: `, and nothing of
/// Rust's `Debug` syntax.
fn assert_human_error(run: &Run) {
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.contains(" WARN "))
        .collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("hint: ")),
        "the hint comes first\n{}",
        run.both()
    );
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("error: ")),
        "then the error\n{}",
        run.both()
    );
    for debug_syntax in [" { ", "Some(", "Os {", "kind: ", "source: ", "Error {"] {
        assert!(
            !run.stderr.contains(debug_syntax),
            "Debug output ({debug_syntax:?}) in the error\n{}",
            run.both()
        );
    }
    let message: usize = lines.iter().map(|l| l.len() + 1).sum();
    assert!(
        message < 1_500,
        "a short message, not a dump ({message} bytes besides the warnings)\n{}",
        run.both()
    );
}

/// A webhook on a free loopback port that answers by the alert number in the
/// body: 1 → 200; 2 → 500, then 200; 3 → 400; 4 → 429, then 200. Returns
/// its URL and the alert numbers in the order they arrived.
fn start_webhook(runtime: &tokio::runtime::Runtime) -> (String, Arc<Mutex<Vec<u64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind a loopback port");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let log = seen.clone();
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let alert = body
                            .ok()
                            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                            .and_then(|v| v["alert"].as_u64())
                            .unwrap_or(0);
                        let tries = {
                            let mut log = log.lock().expect("log");
                            log.push(alert);
                            log.iter().filter(|a| **a == alert).count()
                        };
                        let status = match (alert, tries) {
                            (1, _) => 200,
                            (2, 1) => 500,
                            (2, _) => 200,
                            (4, 1) => 429,
                            (4, _) => 200,
                            _ => 400,
                        };
                        let answer = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .expect("a response");
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, seen)
}

fn custom_router_maps_status_codes_to_delivered_retried_and_dead_lettered() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (url, seen) = start_webhook(&runtime);
    let run = run_example("custom_router", &["--url", &url], &[]);
    assert_eq!(run.code, Some(0), "{}", run.both());
    // 1, 2 (after a retry) and 4 (after a throttled retry) delivered; 3 was
    // refused with a 400, which is permanent: dead-lettered, never retried.
    assert!(
        run.stdout.contains("delivered 3, retried 2 (1 throttled)"),
        "{}",
        run.both()
    );
    let dead: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("dead letter "))
        .collect();
    assert_eq!(dead.len(), 1, "{}", run.both());
    assert!(dead[0].contains("400 Bad Request"), "{}", run.both());
    let mut calls = seen.lock().expect("log").clone();
    calls.sort_unstable();
    assert_eq!(calls, vec![1, 2, 2, 3, 4, 4], "requests per alert");
}

fn custom_source_commits_its_own_positions_and_dead_letters_garbled_readings() {
    let run = run_example("custom_source", &["--count", "25"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.both());
    // Readings 0..25; 6, 13 and 20 are garbled; 20..25 raise an alarm.
    assert!(
        run.stdout.contains("read 25, alarms 4, dead letters 3"),
        "{}",
        run.both()
    );
    let last_commit = run
        .stdout
        .lines()
        .rfind(|l| l.starts_with("committed "))
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        last_commit,
        "committed sensor-1 up to offset 24",
        "{}",
        run.both()
    );
    // Warnings (each dead letter) reach stderr by default, without payloads.
    assert_eq!(
        run.stderr.matches("dead-lettering record").count(),
        3,
        "{}",
        run.both()
    );
}

fn a_missing_input_file_prints_a_short_human_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-train.csv");
    let missing = missing.to_str().expect("utf-8 path");
    let run = run_example("train_eval", &["--train", missing, "--test", missing], &[]);
    assert_eq!(run.code, Some(1), "{}", run.both());
    assert_human_error(&run);
    assert!(run.stderr.contains("no-such-train.csv"), "{}", run.both());
}

fn an_unwritable_dead_letter_path_prints_a_hint_not_a_debug_dump() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A regular file where the dead-letter directory should be.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").expect("write");
    let path = blocker.join("dead-letter.jsonl");
    let run = run_example(
        "support_tweets",
        &["--dead-letter", path.to_str().expect("utf-8 path")],
        &[],
    );
    assert_eq!(run.code, Some(1), "{}", run.both());
    assert_human_error(&run);
    assert!(run.stderr.contains("--dead-letter"), "{}", run.both());
}

fn help_and_bad_flags_look_like_every_other_rust_tool() {
    let help = run_example("support_tweets", &["--help"], &[]);
    assert_eq!(help.code, Some(0), "{}", help.both());
    for flag in [
        "--retrain",
        "--write-model",
        "--dead-letter <PATH>",
        "Exit status",
    ] {
        assert!(help.stdout.contains(flag), "{flag}\n{}", help.both());
    }
    #[cfg(feature = "aws")]
    for flag in [
        "--kinesis-stream <NAME>",
        "--sns-topic-arn <[ROUTE=]ARN>",
        "RawMessageDelivery",
    ] {
        assert!(help.stdout.contains(flag), "{flag}\n{}", help.both());
    }
    let bad = run_example("support_tweets", &["--retrian"], &[]);
    assert_eq!(bad.code, Some(2), "{}", bad.both());
    assert!(
        bad.stderr.contains("unexpected argument '--retrian'") && bad.stderr.contains("--retrain"),
        "names the flag and suggests the right one\n{}",
        bad.both()
    );
    let help = run_example("train_eval", &["--help"], &[]);
    assert_eq!(help.code, Some(0), "{}", help.both());
    assert!(help.stdout.contains("--fn-cost <X>"), "{}", help.both());
    let missing = run_example("train_eval", &["--train", "a.csv"], &[]);
    assert_eq!(missing.code, Some(2), "{}", missing.both());
    assert!(
        missing.stderr.contains("--test <FILE>"),
        "{}",
        missing.both()
    );
}

#[cfg(feature = "aws")]
fn a_closed_endpoint_url_fails_with_a_hint() {
    let port = common::moto::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("temp dir");
    let dead_letters = dir.path().join("dl.jsonl");
    let run = run_example(
        "support_tweets",
        &[
            "--ml-model-id",
            "ml-triage",
            "--endpoint-url",
            &url,
            "--region",
            "us-east-1",
            "--dead-letter",
            dead_letters.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert_eq!(run.code, Some(1), "{}", run.both());
    assert_human_error(&run);
    assert!(run.stderr.contains("ml-triage"), "{}", run.both());
}

/// Runs the example's AWS path over the bundled file, publishing every
/// route to an SNS topic that does not exist.
#[cfg(feature = "aws")]
fn topics_that_do_not_exist_make_the_run_exit_non_zero() {
    let moto = common::moto::Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let dead_letters = dir.path().join("dl.jsonl");
    let run = run_example(
        "support_tweets",
        &[
            "--sns-topic-arn",
            "arn:aws:sns:us-east-1:123456789012:no-such-topic",
            "--endpoint-url",
            &moto.endpoint,
            "--region",
            "us-east-1",
            "--dead-letter",
            dead_letters.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert!(
        matches!(run.code, Some(c) if c != 0),
        "a run that cannot deliver must not exit 0\n{}",
        run.both()
    );
    assert_human_error(&run);
    assert!(
        run.stderr.contains("no-such-topic"),
        "names the topic\n{}",
        run.both()
    );
}

/// Two runs over one stream and one checkpoint directory: the second reads
/// nothing, and says so instead of printing scores over nothing.
#[cfg(feature = "aws")]
fn a_drained_second_run_says_nothing_new_instead_of_empty_tables() {
    use streamsift::kinesis::{KinesisProducer, ProducerRecord};

    let moto = common::moto::Moto::start();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let config = runtime.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load(),
    );
    runtime.block_on(async {
        let kinesis = aws_sdk_kinesis::Client::new(&config);
        kinesis
            .create_stream()
            .stream_name("drained")
            .shard_count(1)
            .send()
            .await
            .expect("CreateStream");
        let lines = support_tweets::app::lines(support_tweets::app::TWEETS);
        let report = KinesisProducer::builder(&config, "drained")
            .build()
            .send_all(lines.into_iter().take(120).map(ProducerRecord::new))
            .await
            .expect("PutRecords");
        assert!(report.is_complete());
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let checkpoints = dir.path().join("checkpoints");
    let dead_letters = dir.path().join("dl.jsonl");
    let args = [
        "--kinesis-stream",
        "drained",
        "--from-start",
        "--stop-at-tip",
        "--endpoint-url",
        &moto.endpoint,
        "--region",
        "us-east-1",
        "--checkpoint-dir",
        checkpoints.to_str().expect("utf-8 path"),
        "--dead-letter",
        dead_letters.to_str().expect("utf-8 path"),
    ];
    let first = run_example("support_tweets", &args, &[]);
    assert_eq!(first.code, Some(0), "{}", first.both());
    assert!(
        first.stdout.contains("records processed"),
        "{}",
        first.both()
    );
    assert!(
        first.stdout.contains("notified  correct"),
        "{}",
        first.both()
    );

    let second = run_example("support_tweets", &args, &[]);
    assert_eq!(second.code, Some(0), "{}", second.both());
    assert!(
        second
            .stdout
            .contains("nothing new since the last checkpoint"),
        "{}",
        second.both()
    );
    for table in [
        "notified  correct",
        "reached a person",
        "0.0%",
        "from the oldest record",
    ] {
        assert!(
            !second.stdout.contains(table),
            "{table:?} in a run that read nothing\n{}",
            second.both()
        );
    }
}
