//! `examples/replay_dead_letters.rs`, run as a user runs it: from a
//! JSON-lines file (dry run, filter, replay) and from an SQS queue on moto,
//! where replayed messages are deleted and failures stay.
//!
//! `harness = false`, as `tests/examples.rs`: this binary is the driver
//! and, re-executed with `STREAMSIFT_EXAMPLE` set, the example.

#![allow(clippy::duplicate_mod)]

mod common;
#[allow(dead_code)]
#[path = "../examples/replay_dead_letters.rs"]
mod replay_dead_letters;

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_sqs::types::QueueAttributeName;
use common::child::{CHILD, Run, run_example};
use common::moto::Moto;
use streamsift::sqs::SqsDeadLetter;
use streamsift::{
    DeadLetter, DeadLetterEntry, DeadLetterSink, ErrorClass, Record, Sequence, ShardId, Stage,
};

fn main() -> ExitCode {
    if std::env::var_os(CHILD).is_some() {
        return tokio::runtime::Runtime::new()
            .expect("tokio runtime")
            .block_on(replay_dead_letters::main_with(std::env::args_os()));
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let scenarios: &[(&str, fn())] = &[
        (
            "a_file_of_three_dead_letters_replays_all_three_once_the_bug_is_fixed",
            a_file_of_three_dead_letters_replays_all_three_once_the_bug_is_fixed,
        ),
        (
            "from_sqs_replayed_messages_are_deleted_and_failures_stay",
            from_sqs_replayed_messages_are_deleted_and_failures_stay,
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
    ExitCode::SUCCESS
}

/// Runs the example with `args` and `envs`.
fn replay(args: &[&str], envs: &[(&str, String)]) -> Run {
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_example("replay_dead_letters", args, &envs)
}

/// A tweet dead-lettered at the route stage (the router was down): the
/// "bug" the replay runs after.
fn route_failure(n: u64, payload: &[u8]) -> DeadLetter {
    let record = Record::new(
        ShardId::new("shardId-000000000000"),
        Sequence::new(format!(
            "4959033827149025660855969253836157109592157598913658{n:04}"
        )),
        format!("pk-{n}"),
        payload.to_vec(),
    );
    DeadLetter {
        record,
        stage: Stage::Route,
        class: ErrorClass::Retryable,
        kind: "unavailable".into(),
        reason: "gave up after 5 attempts: router unavailable (retryable): SNS 503".into(),
        attempts: 5,
        route: Some("problem_report".into()),
        at: UNIX_EPOCH + Duration::from_millis(1_796_000_000_000 + n),
    }
}

fn tweet(n: u64, text: &str) -> Vec<u8> {
    serde_json::json!({
        "id_str": format!("19750066360080610{n:02}"),
        "text": text,
        "user": { "screen_name": format!("user{n}") },
    })
    .to_string()
    .into_bytes()
}

fn a_file_of_three_dead_letters_replays_all_three_once_the_bug_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead-letter.jsonl");
    let mut lines = String::new();
    for (n, text) in [
        (
            1,
            "@nimbuscloud the API is down again, 502 on every request",
        ),
        (2, "@nimbuscloud how do I reset my billing email?"),
        (3, "@nimbuscloud lovely sunset tonight"),
    ] {
        let entry = DeadLetterEntry::from_dead_letter(&route_failure(n, &tweet(n, text)));
        lines.push_str(&serde_json::to_string(&entry).unwrap());
        lines.push('\n');
    }
    std::fs::write(&path, &lines).unwrap();
    let file = path.to_str().unwrap();

    let dry = replay(&["--from-file", file, "--dry-run"], &[]);
    assert_eq!(dry.code, Some(0), "{}\n{}", dry.stdout, dry.stderr);
    assert_eq!(
        dry.stdout.matches("would replay: ").count(),
        3,
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("3 read, 0 left out by the filter, 0 replayed"),
        "{}",
        dry.stdout
    );

    let other = replay(&["--from-file", file, "--stage", "decode"], &[]);
    assert_eq!(other.code, Some(0), "{}\n{}", other.stdout, other.stderr);
    assert!(
        other
            .stdout
            .contains("3 read, 3 left out by the filter, 0 replayed"),
        "{}",
        other.stdout
    );

    let run = replay(
        &[
            "--from-file",
            file,
            "--stage",
            "route",
            "--kind",
            "unavailable",
        ],
        &[],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "3 read, 0 left out by the filter, 3 replayed, 0 failed again, 0 not replayable"
        ),
        "{}",
        run.stdout
    );
    for n in 1..=3 {
        assert!(run.stdout.contains(&format!("replayed: shardId-000000000000:495903382714902566085596925383615710959215759891365800{n:02}")), "{}", run.stdout);
    }
    // The report names records, never their text; the file is unchanged.
    assert!(!run.stdout.contains("sunset") && !run.stderr.contains("sunset"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), lines);
}

fn from_sqs_replayed_messages_are_deleted_and_failures_stay() {
    let moto = Moto::start();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (sqs, url) = runtime.block_on(async {
        let config = moto.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let url = common::moto::create_queue(&sqs, "replay", &[]).await;
        let sink = SqsDeadLetter::builder(&config, &url).build().await.unwrap();
        sink.store(&route_failure(1, &tweet(1, "@nimbuscloud the API is down")))
            .await
            .unwrap();
        sink.store(&route_failure(
            2,
            &tweet(2, "@nimbuscloud where is my invoice?"),
        ))
        .await
        .unwrap();
        // Still broken: not JSON, so it fails to decode again.
        let mut broken = route_failure(3, b"{\"id_str\": \"3\", \"text\": ");
        broken.stage = Stage::Decode;
        broken.kind = "invalid_json".into();
        sink.store(&broken).await.unwrap();
        (sqs, url)
    });
    let envs = [
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    let run = replay(&["--from-sqs", &url, "--visibility-timeout", "600"], &envs);
    assert_eq!(
        run.code,
        Some(3),
        "some failed again:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains("3 read, 0 left out by the filter, 2 replayed, 1 failed again, 0 not replayable, 2 deleted"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("failed again: shardId-000000000000:49590338271490256608559692538361571095921575989136580003 (stage decode, kind invalid_json)"), "{}", run.stdout);
    // One message is left: the failure, hidden until its visibility
    // timeout, then back on the queue.
    let counts = runtime.block_on(async {
        let out = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes");
        let attrs = out.attributes().cloned().unwrap_or_default();
        let get = |name: QueueAttributeName| attrs.get(&name).cloned().unwrap_or_default();
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    });
    assert_eq!(counts, ("0".to_owned(), "1".to_owned()));
}
