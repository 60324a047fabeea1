//! support_tweets' notification flags, run as a user runs them (a child
//! process running the example's `main_with`): `--slack-webhook` and
//! `--pagerduty-routing-key` against loopback servers this test starts,
//! `--dedup-window` across two runs, `--sqs-queue-url` on moto, a bad route
//! name, and the secrets never printed.
//!
//! `harness = false`, as tests/examples.rs: this binary is the driver, and,
//! re-executed with `STREAMSIFT_EXAMPLE=support_tweets`, the example.
#![allow(clippy::duplicate_mod)]

mod common;

#[allow(dead_code)]
#[path = "../examples/support_tweets/main.rs"]
mod support_tweets;

use std::collections::HashSet;
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use common::child::{CHILD, Run};
use serde_json::Value;

/// The secret parts the runs are given; no output may hold them.
const SLACK_SECRET: &str = "T0SECRET/B0SECRET/xoxSlackPathSecret42";
const PD_KEY: &str = "pdRoutingKeySecret0123456789abcd";

type Scenario = (&'static str, fn());

const SCENARIOS: &[Scenario] = &[
    (
        "slack_and_pagerduty_get_each_notification_once_and_dedup_holds_across_runs",
        slack_and_pagerduty_get_each_notification_once_and_dedup_holds_across_runs,
    ),
    (
        "a_route_that_does_not_exist_fails_fast_with_a_hint_and_no_secret",
        a_route_that_does_not_exist_fails_fast_with_a_hint_and_no_secret,
    ),
    (
        "tweets_from_sqs_are_all_processed_and_the_queue_is_left_empty",
        tweets_from_sqs_are_all_processed_and_the_queue_is_left_empty,
    ),
];

fn main() -> ExitCode {
    if std::env::var(CHILD).is_ok() {
        return tokio::runtime::Runtime::new()
            .expect("tokio runtime")
            .block_on(support_tweets::main_with(std::env::args_os()));
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let chosen: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    println!("running {} tests", chosen.len());
    for (name, scenario) in chosen {
        print!("test {name} ... ");
        let started = Instant::now();
        scenario();
        println!("ok ({:.1} s)", started.elapsed().as_secs_f64());
    }
    ExitCode::SUCCESS
}

/// What these tests read from a run of support_tweets.
trait Outputs {
    fn assert_no_secret(&self);
    fn notified(&self, route: &str) -> usize;
    fn figure(&self, name: &str) -> u64;
}

impl Outputs for Run {
    fn assert_no_secret(&self) {
        for secret in [SLACK_SECRET, "xoxSlackPathSecret42", PD_KEY] {
            assert!(
                !self.stdout.contains(secret) && !self.stderr.contains(secret),
                "a secret was printed\n{}",
                self.both()
            );
        }
    }

    /// `N` of the line `== <team> (<route>): N notifications`.
    fn notified(&self, route: &str) -> usize {
        let tag = format!("({route}): ");
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("== ") && l.contains(&tag))
            .unwrap_or_else(|| panic!("no line for {route}\n{}", self.both()));
        line.split(&tag)
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line:?}"))
    }

    /// The figure of the summary line that starts with `name`.
    fn figure(&self, name: &str) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name:?} line\n{}", self.both()));
        line[name.len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no figure in {line:?}"))
    }
}

/// Runs support_tweets with `args` in a child process.
fn run_example(args: &[&str]) -> Run {
    common::child::run_example("support_tweets", args, &[])
}

/// A loopback webhook that records (path, body) and answers as Slack
/// (`200 ok`) or PagerDuty (`202` with a JSON status) would.
struct Hook {
    base: String,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Hook {
    fn seen(&self) -> Vec<(String, Value)> {
        self.seen.lock().expect("log").clone()
    }
}

async fn hook() -> Hook {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let json: Value = body
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or(Value::Null);
                        let pagerduty = path.starts_with("/v2/enqueue");
                        let (status, answer) = if pagerduty {
                            let key = json["dedup_key"].as_str().unwrap_or_default().to_owned();
                            (
                                202,
                                serde_json::json!({"status": "success", "message": "Event processed", "dedup_key": key})
                                    .to_string(),
                            )
                        } else {
                            (200, "ok".to_string())
                        };
                        log.lock().expect("log").push((path, json));
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(answer)))
                                .expect("a response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Hook { base, seen }
}

fn slack_and_pagerduty_get_each_notification_once_and_dedup_holds_across_runs() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let hook = rt.block_on(hook());
    let dir = tempfile::tempdir().expect("tempdir");
    let dead_letter = dir.path().join("dl").join("dead-letter.jsonl");
    let slack = format!("support_request={}/services/{SLACK_SECRET}", hook.base);
    let pd = format!("problem_report={PD_KEY}");
    let pd_url = format!("{}/v2/enqueue", hook.base);
    let args = [
        "--slack-webhook",
        &slack,
        // Slack's 1/s would make this run take a minute; the pacing itself
        // is tested in tests/http_router.rs.
        "--slack-rate",
        "1000",
        "--pagerduty-routing-key",
        &pd,
        "--pagerduty-url",
        &pd_url,
        "--dedup-window",
        "1h",
        "--dead-letter",
        dead_letter.to_str().expect("utf-8 path"),
    ];
    let first = run_example(&args);
    assert_eq!(first.code, Some(0), "{}", first.both());
    first.assert_no_secret();
    let host = hook.base.trim_start_matches("http://");
    assert!(
        first
            .stdout
            .contains(&format!("slack: route support_request -> http://{host}/…")),
        "the banner names the host only\n{}",
        first.both()
    );
    assert!(
        first.stdout.contains("pagerduty: route problem_report -> "),
        "{}",
        first.both()
    );

    let seen = hook.seen();
    let slack_posts: Vec<&Value> = seen
        .iter()
        .filter(|(p, _)| p.starts_with("/services/"))
        .map(|(_, v)| v)
        .collect();
    let pd_posts: Vec<&Value> = seen
        .iter()
        .filter(|(p, _)| p == "/v2/enqueue")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        seen.len(),
        slack_posts.len() + pd_posts.len(),
        "no other path"
    );
    // Each routed tweet is posted exactly once, and what was posted is
    // what the run reports as notified.
    let support = first.notified("support_request");
    let problems = first.notified("problem_report");
    assert!(support > 0 && problems > 0, "{}", first.both());
    assert_eq!(
        slack_posts.len(),
        support,
        "one Slack post per notification"
    );
    assert_eq!(
        pd_posts.len(),
        problems,
        "one PagerDuty event per notification"
    );
    for post in &slack_posts {
        assert!(
            post["text"].as_str().is_some_and(|t| !t.is_empty()),
            "{post}"
        );
        assert!(
            post["blocks"].as_array().is_some_and(|b| !b.is_empty()),
            "Block Kit blocks: {post}"
        );
    }
    let mut keys = HashSet::new();
    for event in &pd_posts {
        assert_eq!(event["routing_key"], PD_KEY, "{event}");
        assert_eq!(event["event_action"], "trigger", "{event}");
        assert!(event["payload"]["summary"].as_str().is_some(), "{event}");
        assert!(event["payload"]["severity"].as_str().is_some(), "{event}");
        keys.insert(event["dedup_key"].as_str().expect("dedup_key").to_owned());
    }
    assert_eq!(keys.len(), pd_posts.len(), "distinct dedup keys");
    // The other routes stayed in the local inboxes.
    assert!(first.notified("technical_question") > 0, "{}", first.both());

    // The same tweets again, over the same directory: nothing new is sent.
    let second = run_example(&args);
    assert_eq!(second.code, Some(0), "{}", second.both());
    second.assert_no_secret();
    assert_eq!(
        hook.seen().len(),
        seen.len(),
        "the second run posted again\n{}",
        second.both()
    );
    assert_eq!(second.notified("support_request"), 0, "{}", second.both());
    assert!(
        dead_letter
            .parent()
            .expect("dir")
            .join("dedup.log")
            .exists()
    );
}

fn a_route_that_does_not_exist_fails_fast_with_a_hint_and_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dead_letter = dir.path().join("dead-letter.jsonl");
    let slack = format!("billing=https://hooks.slack.com/services/{SLACK_SECRET}");
    let started = Instant::now();
    let run = run_example(&[
        "--slack-webhook",
        &slack,
        "--dead-letter",
        dead_letter.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.both());
    run.assert_no_secret();
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("hint: ")),
        "the hint first\n{}",
        run.both()
    );
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.contains("no route \"billing\"") && l.contains("support_request")),
        "{}",
        run.both()
    );
    assert!(
        !run.stdout.contains("== Summary"),
        "nothing ran\n{}",
        run.both()
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    // A value without ROUTE= is refused without being echoed either.
    let pd = run_example(&["--pagerduty-routing-key", PD_KEY]);
    assert_eq!(pd.code, Some(1), "{}", pd.both());
    pd.assert_no_secret();
}

fn tweets_from_sqs_are_all_processed_and_the_queue_is_left_empty() {
    use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
    let moto = common::moto::Moto::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let config = rt.block_on(moto.sdk_config());
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = rt.block_on(common::moto::create_queue(&sqs, "support-tweets", &[]));
    // SQS takes non-empty UTF-8 bodies: the bundled lines that are.
    let bodies: Vec<String> = support_tweets::app::lines(support_tweets::app::TWEETS)
        .into_iter()
        .filter_map(|l| String::from_utf8(l).ok())
        .filter(|l| !l.trim().is_empty())
        .collect();
    rt.block_on(async {
        for (n, chunk) in bodies.chunks(10).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{n}-{i}"))
                        .message_body(b)
                        .build()
                        .expect("entry")
                })
                .collect::<Vec<_>>();
            let out = sqs
                .send_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("SendMessageBatch");
            assert!(out.failed().is_empty(), "{:?}", out.failed());
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let dead_letter = dir.path().join("dead-letter.jsonl");
    let run = run_example(&[
        "--sqs-queue-url",
        &url,
        "--endpoint-url",
        &moto.endpoint,
        "--region",
        "us-east-1",
        "--dead-letter",
        dead_letter.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.both());
    assert!(
        run.stdout.contains("source: the SQS queue"),
        "{}",
        run.both()
    );
    // SQS is at-least-once: a message may come back (its count is then
    // above the bodies sent), but every tweet must have been seen: each
    // route got what the offline run of the same tweets gives it.
    assert!(
        run.figure("records processed") >= bodies.len() as u64,
        "every message read\n{}",
        run.both()
    );
    let offline_dir = tempfile::tempdir().expect("tempdir");
    let offline_dl = offline_dir.path().join("dead-letter.jsonl");
    let offline = run_example(&["--dead-letter", offline_dl.to_str().expect("utf-8 path")]);
    assert_eq!(offline.code, Some(0), "{}", offline.both());
    for (route, _) in support_tweets::app::TEAMS {
        assert_eq!(
            run.notified(route),
            offline.notified(route),
            "{route}\n{}",
            run.both()
        );
    }
    let (visible, hidden) = rt.block_on(async {
        let out = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes");
        let get = |a: QueueAttributeName| {
            out.attributes()
                .and_then(|m| m.get(&a))
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a count")
        };
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    });
    assert_eq!((visible, hidden), (0, 0), "every message deleted");
}
