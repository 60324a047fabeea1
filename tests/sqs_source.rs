//! SqsSource against moto's SQS (server mode on loopback, started by each
//! test), end to end through a Pipeline: deletes after done, visibility
//! kept up for a slow classifier, dead letters (route failure, receive
//! count, oversized and non-JSON bodies), FIFO order per message group with
//! a blocked group not blocking another, shutdown, a missing queue, and the
//! Source conformance suite.
//!
//! What moto does and does not: it keeps visibility timeouts, receive
//! counts, FIFO SequenceNumbers and group ordering, batch deletes and
//! visibility changes, and long polls (it checks again until the wait is
//! over). With `INITIAL_NO_AUTH_ACTION_COUNT` it also checks IAM
//! policies, which the access-denied test uses (its users are made with
//! boto3, from moto's own Python). SQS refuses bodies that are not valid
//! XML characters (so invalid UTF-8 cannot arrive); the SDK sends only
//! `String` bodies.
#![cfg(feature = "sqs")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use common::moto::Moto;
use serde::Deserialize;
use streamsift::sqs::{SqsConfigError, SqsSource, SqsSourceBuilder};
use streamsift::{
    ClassifyError, Delivery, MemoryDeadLetter, Pipeline, Policy, Prediction, Receipt, RetryPolicy,
    RouteError, RunReport, Shutdown, Stage,
};

#[derive(Clone, Debug, Deserialize)]
struct Msg {
    text: String,
}

struct Env {
    moto: Moto,
    sqs: aws_sdk_sqs::Client,
}

impl Env {
    async fn start() -> Env {
        let moto = Moto::start();
        let config = moto.sdk_config().await;
        Env {
            sqs: aws_sdk_sqs::Client::new(&config),
            moto,
        }
    }

    async fn queue(&self, name: &str) -> String {
        let fifo = [(QueueAttributeName::ContentBasedDeduplication, "true")];
        let attributes: &[_] = if name.ends_with(".fifo") { &fifo } else { &[] };
        common::moto::create_queue(&self.sqs, name, attributes).await
    }

    async fn send(&self, url: &str, body: &str, group: Option<&str>) {
        let mut call = self.sqs.send_message().queue_url(url).message_body(body);
        if let Some(g) = group {
            call = call.message_group_id(g);
        }
        call.send().await.expect("SendMessage");
    }

    async fn send_texts(&self, url: &str, texts: &[String], group: Option<&str>) {
        for t in texts {
            self.send(url, &format!(r#"{{"text":"{t}"}}"#), group).await;
        }
    }

    /// (visible, not visible) messages in the queue.
    async fn counts(&self, url: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes");
        let get = |n: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&n))
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    async fn source(&self, url: &str) -> SqsSourceBuilder {
        SqsSource::builder(&self.moto.sdk_config().await, url)
            .wait_time(Duration::from_secs(1))
            .startup_timeout(Duration::from_secs(10))
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        multiplier: 2.0,
    }
}

/// A router that logs `(shard, text)` of what it delivers, after `act`
/// (which may fail or wait).
type Log = Arc<Mutex<Vec<(String, String)>>>;

fn texts(log: &Log) -> Vec<String> {
    log.lock().unwrap().iter().map(|(_, t)| t.clone()).collect()
}

async fn run<F, Fut>(
    source: SqsSource,
    log: Log,
    dead: MemoryDeadLetter,
    shutdown: Shutdown,
    act: F,
) -> RunReport
where
    F: Fn(String) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), RouteError>> + Send + 'static,
{
    let router = move |d: &Delivery<'_, Msg>| {
        let text = d.item.text.clone();
        let shard = d.record.shard.to_string();
        let route = d.route.clone();
        let log = log.clone();
        let act = act.clone();
        async move {
            act(text.clone()).await?;
            log.lock().unwrap().push((shard, text));
            Ok::<_, RouteError>(Receipt::new(route))
        }
    };
    Pipeline::new(source)
        .json::<Msg>()
        .classify(|_: &Msg| async {
            Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", 0.9))
        })
        .policy(Policy::binary(0.5, "oncall"))
        .route(router)
        .dead_letter(dead)
        .retry(fast_retry())
        .ack_every(10, Duration::from_millis(50))
        .shutdown_handle(shutdown)
        .run()
        .await
        .expect("the pipeline runs")
}

fn ok(_: String) -> std::future::Ready<Result<(), RouteError>> {
    std::future::ready(Ok(()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_processed_then_deleted() {
    let env = Env::start().await;
    let url = env.queue("tweets").await;
    let sent: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    env.send_texts(&url, &sent, None).await;
    let source = env
        .source(&url)
        .await
        .stop_when_empty(true)
        .build()
        .await
        .unwrap();
    assert!(!source.is_fifo());
    let log = Log::default();
    let dead = MemoryDeadLetter::new();
    let report = run(source, log.clone(), dead.clone(), Shutdown::new(), ok).await;
    let mut got = texts(&log);
    got.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(got, want, "each message routed once");
    assert_eq!(report.stats.routed, 25);
    assert_eq!(dead.len(), 0);
    assert_eq!(
        env.counts(&url).await,
        (0, 0),
        "every done message is deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_classifier_keeps_its_message_invisible() {
    let env = Env::start().await;
    let url = env.queue("slow").await;
    env.send_texts(&url, &["slow".to_string()], None).await;
    let source = env
        .source(&url)
        .await
        .visibility_timeout(Duration::from_secs(2))
        .stop_when_empty(true)
        .build()
        .await
        .unwrap();
    let log = Log::default();
    let probe = env.sqs.clone();
    let probe_url = url.clone();
    // While the router takes 6 s (three visibility timeouts), another
    // consumer looks at the queue every second: the heartbeat must keep the
    // message invisible to it.
    let seen_by_other = Arc::new(Mutex::new(0usize));
    let seen = seen_by_other.clone();
    let act = move |_: String| {
        let probe = probe.clone();
        let probe_url = probe_url.clone();
        let seen = seen.clone();
        async move {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let out = probe
                    .receive_message()
                    .queue_url(&probe_url)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .expect("ReceiveMessage");
                *seen.lock().unwrap() += out.messages().len();
            }
            Ok(())
        }
    };
    let report = run(
        source,
        log.clone(),
        MemoryDeadLetter::new(),
        Shutdown::new(),
        act,
    )
    .await;
    assert_eq!(
        *seen_by_other.lock().unwrap(),
        0,
        "the message became visible while in flight"
    );
    assert_eq!(report.stats.records_in, 1, "delivered once");
    assert_eq!(texts(&log), ["slow"]);
    assert_eq!(env.counts(&url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_fails_to_route_is_retried_dead_lettered_and_deleted() {
    let env = Env::start().await;
    let url = env.queue("failing").await;
    env.send_texts(&url, &["good".into(), "bad".into()], None)
        .await;
    let source = env
        .source(&url)
        .await
        .stop_when_empty(true)
        .build()
        .await
        .unwrap();
    let log = Log::default();
    let dead = MemoryDeadLetter::new();
    let attempts = Arc::new(Mutex::new(0u32));
    let tries = attempts.clone();
    let act = move |text: String| {
        let tries = tries.clone();
        async move {
            if text == "bad" {
                *tries.lock().unwrap() += 1;
                return Err(RouteError::unavailable("webhook down"));
            }
            Ok(())
        }
    };
    let report = run(source, log.clone(), dead.clone(), Shutdown::new(), act).await;
    assert_eq!(texts(&log), ["good"]);
    assert_eq!(*attempts.lock().unwrap(), 3, "retried to max_attempts");
    let letters = dead.entries();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].stage, Stage::Route);
    assert_eq!(report.stats.dead_lettered, 1);
    assert_eq!(
        env.counts(&url).await,
        (0, 0),
        "the dead-lettered message is deleted too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_received_too_often_is_dead_lettered_with_the_reason() {
    let env = Env::start().await;
    let url = env.queue("again").await;
    env.send_texts(&url, &["again".into()], None).await;
    // Two receives that never delete (visibility 0: back at once).
    for _ in 0..2 {
        let out = env
            .sqs
            .receive_message()
            .queue_url(&url)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        assert_eq!(out.messages().len(), 1);
    }
    let source = env
        .source(&url)
        .await
        .max_receive_count(2)
        .stop_when_empty(true)
        .build()
        .await
        .unwrap();
    let log = Log::default();
    let dead = MemoryDeadLetter::new();
    run(source, log.clone(), dead.clone(), Shutdown::new(), ok).await;
    assert!(texts(&log).is_empty(), "not routed");
    let letters = dead.entries();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].stage, Stage::Decode);
    assert!(
        letters[0].reason.contains("received 3 times")
            && letters[0].reason.contains("max_receive_count of 2"),
        "{}",
        letters[0].reason
    );
    assert_eq!(env.counts(&url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_non_json_bodies_are_dead_lettered_and_deleted() {
    let env = Env::start().await;
    let url = env.queue("bad-input").await;
    env.send(&url, &format!(r#"{{"text":"{}"}}"#, "x".repeat(500)), None)
        .await;
    env.send(&url, "this is not json", None).await;
    env.send(&url, r#"{"text":"fine"}"#, None).await;
    let source = env
        .source(&url)
        .await
        .max_body_bytes(200)
        .stop_when_empty(true)
        .build()
        .await
        .unwrap();
    let log = Log::default();
    let dead = MemoryDeadLetter::new();
    run(source, log.clone(), dead.clone(), Shutdown::new(), ok).await;
    assert_eq!(texts(&log), ["fine"]);
    let mut reasons: Vec<String> = dead.entries().iter().map(|d| d.kind.clone()).collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    let oversized = dead
        .entries()
        .into_iter()
        .find(|d| d.reason.contains("max_body_bytes of 200"))
        .expect("the oversized body is dead-lettered with its reason");
    assert_eq!(oversized.record.payload.len(), 511, "original bytes kept");
    assert_eq!(env.counts(&url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_keeps_group_order_and_a_blocked_group_does_not_block_another() {
    let env = Env::start().await;
    let url = env.queue("orders.fifo").await;
    let a: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    let b: Vec<String> = (0..5).map(|i| format!("b{i}")).collect();
    env.send_texts(&url, &a, Some("A")).await;
    env.send_texts(&url, &b, Some("B")).await;
    let source = env.source(&url).await.build().await.unwrap();
    assert!(source.is_fifo());
    let log = Log::default();
    let shutdown = Shutdown::new();
    let watch = log.clone();
    let stop = shutdown.clone();
    // a0 fails once (retryably), then holds its group until every message
    // of group B is routed: group A is blocked, B must go on. A deadline
    // keeps a broken build from hanging.
    let failed = Arc::new(Mutex::new(false));
    let act = move |text: String| {
        let watch = watch.clone();
        let stop = stop.clone();
        let failed_once = failed.clone();
        async move {
            if text == "a0" {
                let b_done = || {
                    watch
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|(s, _)| s == "B")
                        .count()
                };
                if !*failed_once.lock().unwrap() {
                    *failed_once.lock().unwrap() = true;
                    return Err(RouteError::unavailable("the first attempt fails"));
                }
                let deadline = Instant::now() + Duration::from_secs(8);
                while b_done() < 5 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let routed = watch.lock().unwrap().len();
            if routed + 1 == 10 {
                stop.cancel();
            }
            Ok(())
        }
    };
    let source_run = run(
        source,
        log.clone(),
        MemoryDeadLetter::new(),
        shutdown.clone(),
        act,
    );
    let report = tokio::time::timeout(Duration::from_secs(60), source_run)
        .await
        .expect("all ten messages routed within 60 s");
    let entries = log.lock().unwrap().clone();
    let of = |g: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|(s, _)| s == g)
            .map(|(_, t)| t.clone())
            .collect()
    };
    assert_eq!(of("B"), b, "group B in order");
    assert_eq!(of("A"), a, "group A in order, after its blocked head");
    let first_a = entries.iter().position(|(s, _)| s == "A").unwrap();
    assert_eq!(
        first_a, 5,
        "group B finished while a0 was blocked: {entries:?}"
    );
    assert_eq!(report.stats.dead_lettered, 0);
    assert_eq!(env.counts(&url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deletes_what_is_done_and_releases_the_rest_at_once() {
    let env = Env::start().await;
    let url = env.queue("stop").await;
    let sent: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    env.send_texts(&url, &sent, None).await;
    // The default visibility (30 s) would hide what is not done for long;
    // released at the drop, it is back at once.
    let source = env.source(&url).await.build().await.unwrap();
    let log = Log::default();
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let act = move |_: String| {
        let stop = stop.clone();
        async move {
            stop.cancel();
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, RouteError>(())
        }
    };
    let report = Pipeline::new(source)
        .json::<Msg>()
        .classify(|_: &Msg| async {
            Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", 0.9))
        })
        .policy(Policy::binary(0.5, "oncall"))
        .route({
            let log = log.clone();
            move |d: &Delivery<'_, Msg>| {
                let text = d.item.text.clone();
                let route = d.route.clone();
                let log = log.clone();
                let act = act.clone();
                async move {
                    act(text.clone()).await?;
                    log.lock().unwrap().push((String::new(), text));
                    Ok::<_, RouteError>(Receipt::new(route))
                }
            }
        })
        .dead_letter(MemoryDeadLetter::new())
        .max_in_flight(1)
        .shutdown_handle(shutdown)
        .run()
        .await
        .unwrap();
    let done = texts(&log).len();
    assert!((1..10).contains(&done), "{done} done");
    assert_eq!(report.stats.routed, done as u64);
    // What was not done is visible again well before the 30 s timeout.
    let start = Instant::now();
    let mut again = 0;
    while again < 10 - done && start.elapsed() < Duration::from_secs(10) {
        let out = env
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        again += out.messages().len();
    }
    assert_eq!(
        again,
        10 - done,
        "the messages not done come back at once, and only they"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_does_not_exist_fails_fast_naming_it() {
    let env = Env::start().await;
    let url = format!("{}/123456789012/no-such-queue", env.moto.endpoint);
    let start = Instant::now();
    let err = env.source(&url).await.build().await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    let text = err.to_string();
    assert!(matches!(err, SqsConfigError::QueueCheck { .. }), "{text}");
    assert!(text.starts_with("create the queue"), "hint first: {text}");
    assert!(text.contains("no-such-queue"), "{text}");
}

/// Makes, on a moto started with IAM checks after 3 actions, an admin
/// user (the 3 unchecked actions), then with the admin's key a queue
/// `orders` holding one message and a user whose inline policy is
/// `argv[2]`; prints the queue URL and that user's key as JSON.
const IAM_SETUP: &str = r#"
import boto3, json, sys
endpoint, policy = sys.argv[1], sys.argv[2]
def client(service, key="testing", secret="testing"):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret)
iam = client("iam")
iam.create_user(UserName="admin")
iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
admin = iam.create_access_key(UserName="admin")["AccessKey"]
iam = client("iam", admin["AccessKeyId"], admin["SecretAccessKey"])
sqs = client("sqs", admin["AccessKeyId"], admin["SecretAccessKey"])
iam.create_user(UserName="reader")
iam.put_user_policy(UserName="reader", PolicyName="p", PolicyDocument=policy)
reader = iam.create_access_key(UserName="reader")["AccessKey"]
url = sqs.create_queue(QueueName="orders")["QueueUrl"]
sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"text": "the api is down"}))
print(json.dumps({"queue_url": url, "key": reader["AccessKeyId"], "secret": reader["SecretAccessKey"],
                  "admin_key": admin["AccessKeyId"], "admin_secret": admin["SecretAccessKey"]}))
"#;

#[derive(Deserialize)]
struct IamSetup {
    queue_url: String,
    key: String,
    secret: String,
    admin_key: String,
    admin_secret: String,
}

/// Access denied over a real connection: moto checks IAM policies. A role
/// that may not even read the queue's attributes fails at start-up, hint
/// first; one that may read them but not receive stops the run with a
/// permanent error naming the permission, and the message stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_fails_fast_or_stops_the_run_with_the_permission_to_grant() {
    for may_read_attributes in [false, true] {
        let moto = Moto::start_with_iam(3);
        let actions = if may_read_attributes {
            r#"["sqs:GetQueueAttributes"]"#
        } else {
            r#"["sqs:ListQueues"]"#
        };
        let policy = format!(
            r#"{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": {actions}, "Resource": "*"}}]}}"#
        );
        let setup: IamSetup =
            serde_json::from_str(&common::moto::python(IAM_SETUP, &[&moto.endpoint, &policy]))
                .expect("the setup's JSON");
        let config = common::moto::sdk_config_as(&moto.endpoint, &setup.key, &setup.secret).await;
        let built = SqsSource::builder(&config, &setup.queue_url)
            .wait_time(Duration::from_secs(1))
            .startup_timeout(Duration::from_secs(10))
            .build()
            .await;
        if !may_read_attributes {
            let err = built.expect_err("no sqs:GetQueueAttributes: refused at start-up");
            let text = err.to_string();
            assert!(matches!(err, SqsConfigError::QueueCheck { .. }), "{text}");
            assert!(
                text.starts_with("grant sqs:GetQueueAttributes"),
                "hint first: {text}"
            );
            assert!(!text.contains(&setup.secret), "{text}");
            continue;
        }
        let source = built.expect("sqs:GetQueueAttributes is allowed");
        let log: Log = Arc::default();
        let dead = MemoryDeadLetter::new();
        let started = Instant::now();
        let err = Pipeline::new(source)
            .json::<Msg>()
            .classify(|_: &Msg| async {
                Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", 0.9))
            })
            .policy(Policy::binary(0.5, "oncall"))
            .route(move |d: &Delivery<'_, Msg>| {
                log.lock()
                    .unwrap()
                    .push((String::new(), d.item.text.clone()));
                let route = d.route.clone();
                async move { Ok::<_, RouteError>(Receipt::new(route)) }
            })
            .dead_letter(dead.clone())
            .retry(fast_retry())
            .run()
            .await
            .expect_err("ReceiveMessage is denied: the run stops");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        let text = err.to_string();
        assert!(
            text.contains("ReceiveMessage") && text.contains("403"),
            "{text}"
        );
        assert!(
            text.contains("grant sqs:GetQueueAttributes, sqs:ReceiveMessage"),
            "{text}"
        );
        assert!(!text.contains(&setup.secret), "{text}");
        assert!(dead.entries().is_empty());
        let admin =
            common::moto::sdk_config_as(&moto.endpoint, &setup.admin_key, &setup.admin_secret)
                .await;
        let env = Env {
            sqs: aws_sdk_sqs::Client::new(&admin),
            moto,
        };
        assert_eq!(
            env.counts(&setup.queue_url).await,
            (1, 0),
            "the message stays queued"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_out_of_range_are_refused() {
    let env = Env::start().await;
    let url = env.queue("settings").await;
    let err = env
        .source(&url)
        .await
        .max_messages(11)
        .build()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("fix SqsSourceBuilder::max_messages"),
        "{err}"
    );
    let err = env
        .source(&url)
        .await
        .wait_time(Duration::from_secs(21))
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("wait_time"), "{err}");
}

/// On a standard queue. A FIFO queue cannot pass rule 3 (shard order) on
/// moto: moto gives a FIFO message a SequenceNumber only when the sender
/// sets a MessageDeduplicationId, and then 20 random digits, not an
/// increasing number as SQS does. FIFO delivery order itself is checked
/// above, through the pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_conformance() {
    let env = Env::start().await;
    let url = env.queue("conformance").await;
    let n = 30;
    for i in 0..n {
        env.send(&url, &format!(r#"{{"n":{i}}}"#), None).await;
    }
    let config = env.moto.sdk_config().await;
    streamsift::testing::source::conformance(
        || {
            // A "crash" (drop) may cut a long poll short after moto hid
            // its messages: they come back after the visibility timeout
            // (2 s), within the 4 s poll that would end the next run.
            SqsSource::builder(&config, &url)
                .wait_time(Duration::from_secs(4))
                .visibility_timeout(Duration::from_secs(2))
                .max_messages(4)
                .stop_when_empty(true)
                .build()
                .map(|r| r.expect("builds"))
        },
        n,
    )
    .await;
}

use futures::FutureExt as _;
