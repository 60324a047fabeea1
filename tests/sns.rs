//! SnsRouter over a real connection: moto's server mode on loopback,
//! started by each test, with SQS queues subscribed to the topics so the
//! messages can be read back. Calls are recorded, and scripted where a test
//! needs a partial failure, by `common::faulty_http`.
#![cfg(feature = "sns")]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use common::faulty_http::{Call, Fault, FaultyHttp};
use common::moto::{Moto, sdk_config_for};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use streamsift::aws::AwsErrorKind;
use streamsift::fakes::MemorySource;
use streamsift::sns::{FifoGroup, MAX_MESSAGE_BYTES, SnsConfigError, SnsError, SnsRouter};
use streamsift::testing::router::{Case, conformance as router_conformance};
use streamsift::{
    ClassifyError, Delivery, Label, MemoryDeadLetter, Pipeline, Policy, Prediction, Receipt,
    Record, RetryPolicy, RouteError, Router, Sequence, ShardId,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct User {
    screen_name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Tweet {
    id_str: String,
    text: String,
    user: User,
}

fn tweet(id: u64, user: &str, text: &str) -> Tweet {
    Tweet {
        id_str: id.to_string(),
        text: text.to_owned(),
        user: User {
            screen_name: user.to_owned(),
        },
    }
}

fn case(offset: u64, item: Tweet, label: &str, score: f64, route: &str) -> Case<Tweet> {
    Case {
        record: Record::new(
            ShardId::new("shardId-000000000000"),
            Sequence::from_offset(offset),
            item.user.screen_name.clone(),
            serde_json::to_vec(&item).expect("tweet serialises"),
        ),
        item,
        prediction: Prediction::from_scores(vec![
            (Label::from(label.to_owned()), score),
            (Label::from("other"), 1.0 - score),
        ])
        .expect("scores"),
        route: Label::from(route.to_owned()),
    }
}

fn delivery<T>(c: &Case<T>) -> Delivery<'_, T> {
    Delivery {
        item: &c.item,
        record: &c.record,
        prediction: &c.prediction,
        route: &c.route,
    }
}

/// Short backoffs, so retry tests run quickly.
fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        multiplier: 2.0,
    }
}

/// Emulated SNS and SQS, and clients for setting them up.
struct Env {
    moto: Moto,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
}

impl Env {
    async fn start() -> Env {
        let moto = Moto::start();
        let config = moto.sdk_config().await;
        Env {
            sns: aws_sdk_sns::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            moto,
        }
    }

    async fn config(&self) -> aws_config::SdkConfig {
        self.moto.sdk_config().await
    }

    /// A config whose HTTP calls go through a [`FaultyHttp`] to moto.
    async fn faulty_config(&self, faults: Vec<Fault>) -> (aws_config::SdkConfig, FaultyHttp) {
        let http = FaultyHttp::new(aws_smithy_http_client::Builder::new().build_http(), faults);
        let config = self
            .config()
            .await
            .into_builder()
            .http_client(http.clone())
            .build();
        (config, http)
    }

    async fn topic(&self, name: &str) -> String {
        common::sns_sqs::create_topic(&self.sns, name).await
    }

    /// Creates a queue and subscribes it to `topic`; returns its URL.
    async fn queue(&self, topic: &str, name: &str, raw: bool, filter: Option<&str>) -> String {
        common::sns_sqs::subscribed_queue(&self.sns, &self.sqs, topic, name, raw, filter).await
    }

    /// Every message in the queue, deleted once read.
    async fn drain(&self, url: &str) -> Vec<Message> {
        common::sns_sqs::drain_queue(&self.sqs, url).await
    }
}

/// The JSON envelope SNS wraps a message in for a non-raw subscription.
fn envelope(m: &Message) -> serde_json::Value {
    serde_json::from_str(m.body().expect("body")).expect("the body is an SNS envelope")
}

fn envelope_attr(env: &serde_json::Value, name: &str) -> (String, String) {
    let a = &env["MessageAttributes"][name];
    (
        a["Type"].as_str().unwrap_or("<none>").to_owned(),
        a["Value"].as_str().unwrap_or("<none>").to_owned(),
    )
}

fn sqs_attr(m: &Message, name: &str) -> (String, String) {
    let a = m
        .message_attributes()
        .and_then(|a| a.get(name))
        .unwrap_or_else(|| panic!("SQS message attribute {name} missing"));
    (
        a.data_type().to_owned(),
        a.string_value().unwrap_or("<none>").to_owned(),
    )
}

/// Routes every case at once, as a pipeline with records in flight does.
async fn route_all<R: Router<Tweet>>(
    router: &R,
    cases: &[Case<Tweet>],
) -> Vec<Result<Receipt, RouteError>> {
    join_all(
        cases
            .iter()
            .map(|c| async move { router.route(&delivery(c)).await }),
    )
    .await
}

// ---------------------------------------------------------------------------
// Reading recorded calls. SNS speaks the Query protocol: the operation is the
// `Action` field of a form-encoded body, not an X-Amz-Target header, so
// faulty_http names these calls "" (it knows targets and REST paths). The
// tests read the action from the body themselves, and script faults under
// both "" and "PublishBatch" so they keep matching if faulty_http learns to
// read `Action`. A router's client makes no other calls, so the nth call is
// the nth PublishBatch either way.

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 form value")
}

fn form(call: &Call) -> BTreeMap<String, String> {
    call.body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn action(call: &Call) -> String {
    form(call).get("Action").cloned().unwrap_or_default()
}

fn calls_of(http: &FaultyHttp, op: &str) -> Vec<Call> {
    http.calls()
        .into_iter()
        .filter(|c| action(c) == op)
        .collect()
}

/// The value of `field` for each entry of a PublishBatch call, in order.
fn entry_fields(call: &Call, field: &str) -> Vec<String> {
    let form = form(call);
    (1..)
        .map_while(|n| {
            form.get(&format!("PublishBatchRequestEntries.member.{n}.{field}"))
                .cloned()
        })
        .collect()
}

fn scripted(nth: usize, status: u16, body: String) -> Vec<Fault> {
    ["", "PublishBatch"]
        .into_iter()
        .map(|op| Fault {
            op,
            nth,
            status,
            body: Some(body.clone()),
            ..Fault::default()
        })
        .collect()
}

/// A PublishBatch answer: `ok` entries as (id, message id), `failed` as
/// (id, code, sender fault).
fn batch_answer(ok: &[(&str, &str)], failed: &[(&str, &str, bool)]) -> String {
    let ok: String = ok
        .iter()
        .map(|(id, mid)| format!("<member><Id>{id}</Id><MessageId>{mid}</MessageId></member>"))
        .collect();
    let failed: String = failed
        .iter()
        .map(|(id, code, sender)| {
            format!(
                "<member><Id>{id}</Id><Code>{code}</Code><Message>scripted {code}</Message>\
                 <SenderFault>{sender}</SenderFault></member>"
            )
        })
        .collect();
    format!(
        r#"<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult><Successful>{ok}</Successful><Failed>{failed}</Failed></PublishBatchResult><ResponseMetadata><RequestId>scripted</RequestId></ResponseMetadata></PublishBatchResponse>"#
    )
}

fn error_answer(code: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>{code}</Code><Message>scripted {code}</Message></Error><RequestId>scripted</RequestId></ErrorResponse>"#
    )
}

/// A config whose every call is answered by `faults` (nothing listens on
/// the endpoint's port).
async fn scripted_config(faults: Vec<Fault>) -> (aws_config::SdkConfig, FaultyHttp) {
    let base = sdk_config_for("http://127.0.0.1:9").await;
    let http = FaultyHttp::new(aws_smithy_http_client::Builder::new().build_http(), faults);
    (base.into_builder().http_client(http.clone()).build(), http)
}

fn sns_error(err: &RouteError) -> &SnsError {
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<SnsError>())
        .expect("the RouteError's source is an SnsError")
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn messages_arrive_with_body_subject_and_attributes_and_filters_pick_by_label() {
    let env = Env::start().await;
    let topic = env.topic("support").await;
    let everything = env.queue(&topic, "everything", false, None).await;
    let complaints = env
        .queue(
            &topic,
            "complaints",
            true,
            Some(r#"{"label": ["complaint"]}"#),
        )
        .await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&env.config().await)
        .topic(&topic)
        .source_name("tweets")
        .build()
        .await
        .expect("router");

    let cases = [
        case(
            0,
            tweet(111, "ann", "my order never came"),
            "complaint",
            0.95,
            "support",
        ),
        case(
            1,
            tweet(222, "bob", "how do I reset it?"),
            "question",
            0.7,
            "support",
        ),
        case(
            2,
            tweet(333, "cy", "third time it broke"),
            "complaint",
            0.875,
            "support",
        ),
    ];
    let mut receipts = Vec::new();
    for c in &cases {
        receipts.push(router.route(&delivery(c)).await.expect("route"));
    }

    let mut got = env.drain(&everything).await;
    assert_eq!(got.len(), 3, "the unfiltered queue gets every message");
    got.sort_by_key(|m| envelope_attr(&envelope(m), "record_id").1);
    for ((m, c), receipt) in got.iter().zip(&cases).zip(&receipts) {
        let env = envelope(m);
        assert_eq!(env["TopicArn"], topic.as_str());
        assert_eq!(
            env["MessageId"].as_str(),
            receipt.message_id.as_deref(),
            "the receipt carries SNS's MessageId"
        );
        assert_eq!(receipt.route, c.route);
        let expected = format!(
            "Respond to this tweet: https://twitter.com/{}/status/{}\nLabel: {} (confidence {:.2})",
            c.item.user.screen_name,
            c.item.id_str,
            c.prediction.label,
            c.prediction.confidence().unwrap()
        );
        assert_eq!(env["Message"], expected.as_str());
        assert_eq!(
            env["Subject"],
            format!(
                "[support] Tweet to respond to: {} ({:.2})",
                c.prediction.label,
                c.prediction.confidence().unwrap()
            )
            .as_str()
        );
        let string = |v: &str| ("String".to_owned(), v.to_owned());
        assert_eq!(
            envelope_attr(&env, "label"),
            string(c.prediction.label.as_str())
        );
        assert_eq!(envelope_attr(&env, "route"), string("support"));
        assert_eq!(envelope_attr(&env, "record_id"), string(&c.record.id));
        assert_eq!(envelope_attr(&env, "source"), string("tweets"));
        let (score_type, score) = envelope_attr(&env, "score");
        assert_eq!(score_type, "Number");
        let score: f64 = score.parse().expect("a number");
        assert!((score - c.prediction.confidence().unwrap()).abs() < 1e-5);
    }

    let raw = env.drain(&complaints).await;
    assert_eq!(raw.len(), 2, "the filter policy keeps only complaints");
    let bodies: HashSet<&str> = raw.iter().filter_map(|m| m.body()).collect();
    for c in [&cases[0], &cases[2]] {
        let text = format!(
            "Respond to this tweet: https://twitter.com/{}/status/{}\nLabel: complaint (confidence {:.2})",
            c.item.user.screen_name,
            c.item.id_str,
            c.prediction.confidence().unwrap()
        );
        assert!(
            bodies.contains(text.as_str()),
            "raw body is the message itself: {bodies:?}"
        );
    }
    for m in &raw {
        assert_eq!(sqs_attr(m, "label"), ("String".into(), "complaint".into()));
        assert_eq!(sqs_attr(m, "score").0, "Number");
        assert_eq!(sqs_attr(m, "source"), ("String".into(), "tweets".into()));
    }
}

#[tokio::test]
async fn each_route_goes_to_its_own_topic_and_the_rest_to_the_fallback() {
    let env = Env::start().await;
    let billing = env.topic("billing").await;
    let outage = env.topic("outage").await;
    let general = env.topic("general").await;
    let billing_q = env.queue(&billing, "billing-team", true, None).await;
    let outage_q = env.queue(&outage, "outage-team", true, None).await;
    let general_q = env.queue(&general, "everyone-else", true, None).await;
    let config = env.config().await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .route_topic("billing", &billing)
        .route_topic("outage", &outage)
        .topic(&general)
        .message_template("{route}: {item.text}")
        .build()
        .await
        .expect("router");
    assert_eq!(router.topic_for("billing"), Some(billing.as_str()));
    assert_eq!(router.topic_for("anything"), Some(general.as_str()));

    let cases = [
        case(0, tweet(1, "a", "charged twice"), "bill", 0.9, "billing"),
        case(1, tweet(2, "b", "site is down"), "down", 0.9, "outage"),
        case(2, tweet(3, "c", "wrong size"), "returns", 0.9, "returns"),
        case(3, tweet(4, "d", "refund please"), "bill", 0.9, "billing"),
    ];
    let results = route_all(&router, &cases).await;
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    let bodies = |msgs: Vec<Message>| -> HashSet<String> {
        msgs.iter()
            .filter_map(|m| m.body().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        bodies(env.drain(&billing_q).await),
        HashSet::from([
            "billing: charged twice".to_owned(),
            "billing: refund please".to_owned()
        ])
    );
    assert_eq!(
        bodies(env.drain(&outage_q).await),
        HashSet::from(["outage: site is down".to_owned()])
    );
    assert_eq!(
        bodies(env.drain(&general_q).await),
        HashSet::from(["returns: wrong size".to_owned()])
    );

    // Without a fallback, an unknown route is a permanent error that names
    // the known routes, and nothing is sent.
    let (faulty, http) = env.faulty_config(Vec::new()).await;
    let strict: SnsRouter<Tweet> = SnsRouter::builder(&faulty)
        .check_topics(false)
        .route_topic("billing", &billing)
        .build()
        .await
        .expect("router");
    let err = strict.route(&delivery(&cases[1])).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(matches!(sns_error(&err), SnsError::UnknownRoute { .. }));
    let text = err.to_string();
    assert!(
        text.contains("\"outage\"") && text.contains("billing"),
        "{text}"
    );
    assert!(http.calls().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn concurrent_deliveries_share_publish_batch_calls() {
    let env = Env::start().await;
    let topic = env.topic("alerts").await;
    let queue = env.queue(&topic, "alerts-all", true, None).await;
    let (config, http) = env.faulty_config(Vec::new()).await;
    // A long linger, so that all deliveries queued in one poll meet in
    // full batches even on a busy machine.
    let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .check_topics(false)
        .topic(&topic)
        .message_template("{record.id}")
        .linger(Duration::from_millis(300))
        .build()
        .await
        .expect("router");
    let cases: Vec<Case<Tweet>> = (0..25)
        .map(|i| case(i, tweet(i, "u", "t"), "x", 0.9, "alerts"))
        .collect();
    let receipts = route_all(&router, &cases).await;
    let ids: HashSet<String> = receipts
        .into_iter()
        .map(|r| r.expect("route").message_id.expect("message id"))
        .collect();
    assert_eq!(ids.len(), 25, "every delivery has its own message id");

    let batches = calls_of(&http, "PublishBatch");
    assert!(calls_of(&http, "Publish").is_empty());
    let mut sizes: Vec<usize> = batches
        .iter()
        .map(|c| entry_fields(c, "Id").len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [5, 10, 10],
        "25 messages in the fewest calls of at most 10"
    );
    let mut sent: Vec<String> = batches
        .iter()
        .flat_map(|c| entry_fields(c, "Message"))
        .collect();
    sent.sort();
    let mut expected: Vec<String> = cases.iter().map(|c| c.record.id.clone()).collect();
    expected.sort();
    assert_eq!(sent, expected, "each message sent exactly once");

    let bodies: HashSet<String> = env
        .drain(&queue)
        .await
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect();
    assert_eq!(bodies, expected.into_iter().collect::<HashSet<_>>());
}

#[tokio::test]
async fn a_partial_failure_resends_only_the_failed_entries() {
    let env = Env::start().await;
    let topic = env.topic("partial").await;
    let queue = env.queue(&topic, "partial-all", true, None).await;
    // The first PublishBatch answer: m0 and m2 accepted, m1 failed on the
    // SNS side (retryable), m3 refused (sender fault: permanent).
    let answer = batch_answer(
        &[("m0", "scripted-0"), ("m2", "scripted-2")],
        &[
            ("m1", "InternalError", false),
            ("m3", "InvalidParameter", true),
        ],
    );
    let (config, http) = env.faulty_config(scripted(1, 200, answer)).await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .check_topics(false)
        .topic(&topic)
        .message_template("{record.id}")
        .linger(Duration::from_millis(300))
        .retry_policy(quick_retries(3))
        .seed(7)
        .build()
        .await
        .expect("router");
    let cases: Vec<Case<Tweet>> = (0..4)
        .map(|i| case(i, tweet(i, "u", "t"), "x", 0.9, "partial"))
        .collect();
    let results = route_all(&router, &cases).await;

    let batches = calls_of(&http, "PublishBatch");
    assert_eq!(batches.len(), 2, "one call, then one retry");
    let first_ids = entry_fields(&batches[0], "Id");
    assert_eq!(first_ids, ["m0", "m1", "m2", "m3"]);
    let first_messages = entry_fields(&batches[0], "Message");
    assert_eq!(
        entry_fields(&batches[1], "Id"),
        ["m1"],
        "only the retryable failure is resent"
    );
    assert_eq!(
        entry_fields(&batches[1], "Message"),
        [first_messages[1].clone()]
    );

    // Each caller gets its own result, matched by entry id.
    let id_of = |i: usize| -> usize {
        first_messages
            .iter()
            .position(|m| *m == cases[i].record.id)
            .expect("sent")
    };
    for (i, result) in results.iter().enumerate() {
        match id_of(i) {
            0 | 2 => assert_eq!(
                result.as_ref().expect("accepted").message_id.as_deref(),
                Some(format!("scripted-{}", id_of(i)).as_str())
            ),
            1 => {
                let receipt = result.as_ref().expect("accepted on the retry");
                assert!(
                    receipt
                        .message_id
                        .as_deref()
                        .is_some_and(|id| !id.starts_with("scripted"))
                );
            }
            _ => {
                let err = result.as_ref().expect_err("refused for good");
                assert!(!err.is_retryable());
                let sns = sns_error(err);
                assert!(
                    matches!(
                        sns,
                        SnsError::EntryFailed {
                            sender_fault: true,
                            ..
                        }
                    ),
                    "{sns:?}"
                );
                assert_eq!(sns.code(), Some("InvalidParameter"));
            }
        }
    }
    // Only the resent entry reached moto (the others were answered by the
    // script).
    let bodies: Vec<String> = env
        .drain(&queue)
        .await
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect();
    assert_eq!(bodies, [first_messages[1].clone()]);
}

#[tokio::test]
async fn retryable_failures_stop_when_the_attempts_run_out_and_throttling_is_retried() {
    let env = Env::start().await;
    let topic = env.topic("retries").await;
    let queue = env.queue(&topic, "retries-all", true, None).await;
    let mut faults = scripted(1, 200, batch_answer(&[], &[("m0", "InternalError", false)]));
    faults.extend(scripted(
        2,
        200,
        batch_answer(&[], &[("m0", "KMSThrottling", false)]),
    ));
    faults.extend(scripted(3, 400, error_answer("Throttled")));
    let (config, http) = env.faulty_config(faults).await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .check_topics(false)
        .topic(&topic)
        .retry_policy(quick_retries(2))
        .build()
        .await
        .expect("router");
    let c = case(0, tweet(1, "u", "t"), "x", 0.9, "r");
    let err = router.route(&delivery(&c)).await.unwrap_err();
    assert!(err.is_retryable(), "the pipeline may try again later");
    assert!(err.is_throttling(), "the last failure was KMSThrottling");
    match sns_error(&err) {
        SnsError::RetriesExhausted { attempts, last } => {
            assert_eq!(*attempts, 2);
            assert_eq!(last.code(), Some("KMSThrottling"));
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert_eq!(calls_of(&http, "PublishBatch").len(), 2);

    // The third call fails as a whole with Throttled; the fourth reaches
    // moto.
    let receipt = router
        .route(&delivery(&c))
        .await
        .expect("retried past throttling");
    assert!(receipt.message_id.is_some());
    assert_eq!(calls_of(&http, "PublishBatch").len(), 4);
    assert_eq!(env.drain(&queue).await.len(), 1);
}

#[tokio::test]
async fn a_missing_topic_is_a_permanent_error_that_says_what_to_check() {
    let env = Env::start().await;
    let (config, http) = env.faulty_config(Vec::new()).await;
    let missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic";
    for batching in [true, false] {
        let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
            .check_topics(false)
            .topic(missing)
            .batching(batching)
            .retry_policy(quick_retries(3))
            .build()
            .await
            .expect("router");
        let c = case(0, tweet(1, "u", "t"), "x", 0.9, "r");
        let err = router.route(&delivery(&c)).await.unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        let sns = sns_error(&err);
        assert_eq!(sns.code(), Some("NotFound"), "{sns}");
        assert!(sns.to_string().contains("check the topic ARN"), "{sns}");
        assert!(
            std::error::Error::source(sns).is_some(),
            "the SDK error is kept as the source"
        );
    }
    assert_eq!(calls_of(&http, "PublishBatch").len(), 1, "not retried");
    assert_eq!(calls_of(&http, "Publish").len(), 1, "not retried");
}

#[tokio::test]
async fn single_publish_mode_sends_one_call_per_delivery() {
    let env = Env::start().await;
    let topic = env.topic("single").await;
    let queue = env.queue(&topic, "single-all", false, None).await;
    let (config, http) = env.faulty_config(Vec::new()).await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .check_topics(false)
        .topic(&topic)
        .batching(false)
        .no_subject()
        .build()
        .await
        .expect("router");
    let cases: Vec<Case<Tweet>> = (0..3)
        .map(|i| case(i, tweet(i, "u", "t"), "x", 0.9, "single"))
        .collect();
    for r in route_all(&router, &cases).await {
        r.expect("route");
    }
    assert_eq!(calls_of(&http, "Publish").len(), 3);
    assert!(calls_of(&http, "PublishBatch").is_empty());
    let got = env.drain(&queue).await;
    assert_eq!(got.len(), 3);
    for m in &got {
        assert!(envelope(m).get("Subject").is_none(), "no subject was sent");
    }
}

#[tokio::test]
async fn fifo_topics_deduplicate_a_redelivered_record() {
    let env = Env::start().await;
    let topic = env.topic("escalations.fifo").await;
    let queue = env.queue(&topic, "escalations.fifo", true, None).await;
    let (config, http) = env.faulty_config(Vec::new()).await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .check_topics(false)
        .topic(&topic)
        .message_template("{item.text}")
        .build()
        .await
        .expect("router");
    let first = case(0, tweet(1, "ann", "first"), "urgent", 0.9, "escalate");
    let second = case(1, tweet(2, "bob", "second"), "urgent", 0.9, "escalate");
    router.route(&delivery(&first)).await.expect("first");
    // At-least-once: the same record comes again after a crash.
    router
        .route(&delivery(&first))
        .await
        .expect("redelivery is not an error");
    router.route(&delivery(&second)).await.expect("second");

    let batches = calls_of(&http, "PublishBatch");
    let dedup: Vec<String> = batches
        .iter()
        .flat_map(|c| entry_fields(c, "MessageDeduplicationId"))
        .collect();
    assert_eq!(
        dedup,
        [
            first.record.id.clone(),
            first.record.id.clone(),
            second.record.id.clone()
        ],
        "the record id is the deduplication id"
    );
    let groups: Vec<String> = batches
        .iter()
        .flat_map(|c| entry_fields(c, "MessageGroupId"))
        .collect();
    assert_eq!(
        groups,
        ["urgent", "urgent", "urgent"],
        "the label is the group"
    );

    // moto passes the deduplication id on to the FIFO queue, which drops
    // the copy.
    let bodies: Vec<String> = env
        .drain(&queue)
        .await
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect();
    assert_eq!(bodies, ["first", "second"]);

    // Another group setting, and a record id with characters SNS does not
    // allow in ids: it is hashed to a valid one, the same every time.
    let (config, http) = env.faulty_config(Vec::new()).await;
    let by_user: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .check_topics(false)
        .topic(&topic)
        .batching(false)
        .fifo_group(FifoGroup::PartitionKey)
        .build()
        .await
        .expect("router");
    let mut odd = case(5, tweet(3, "cy", "third"), "urgent", 0.9, "escalate");
    odd.record.id = "shard 1 / record ü".to_owned();
    by_user.route(&delivery(&odd)).await.expect("route");
    by_user.route(&delivery(&odd)).await.expect("route");
    let publishes = calls_of(&http, "Publish");
    let ids: Vec<String> = publishes
        .iter()
        .map(|c| {
            form(c)
                .get("MessageDeduplicationId")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0], streamsift::sns::fifo_id("shard 1 / record ü"));
    assert_eq!(
        form(&publishes[0])
            .get("MessageGroupId")
            .map(String::as_str),
        Some("cy")
    );
    assert_eq!(
        env.drain(&queue).await.len(),
        1,
        "the copy was dropped again"
    );
}

#[tokio::test]
async fn oversized_messages_are_truncated_and_subjects_made_valid() {
    let env = Env::start().await;
    let topic = env.topic("sizes").await;
    let raw_q = env
        .queue(&topic, "sizes-big", true, Some(r#"{"label": ["big"]}"#))
        .await;
    let envelope_q = env
        .queue(
            &topic,
            "sizes-subject",
            false,
            Some(r#"{"label": ["subject"]}"#),
        )
        .await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&env.config().await)
        .topic(&topic)
        .message_template("{item.text}")
        .subject_template("{item.user.screen_name}")
        .build()
        .await
        .expect("router");

    // 300,000 bytes of text, with multi-byte characters around the cut.
    let text = "ab€".repeat(60_000);
    let big = case(0, tweet(1, "big", &text), "big", 0.9, "r");
    router
        .route(&delivery(&big))
        .await
        .expect("a truncated message is accepted");
    let got = env.drain(&raw_q).await;
    assert_eq!(got.len(), 1);
    let body = got[0].body().expect("body");
    let (kept, marker) = body.split_once("… [truncated ").expect("marker");
    let removed: usize = marker
        .strip_suffix(" bytes]")
        .expect("marker ends with bytes]")
        .parse()
        .expect("a byte count");
    assert!(text.starts_with(kept), "the start of the message is kept");
    assert_eq!(
        kept.len() + removed,
        text.len(),
        "the marker counts what was cut"
    );
    let attributes: usize = got[0]
        .message_attributes()
        .expect("attributes")
        .iter()
        .map(|(name, v)| name.len() + v.data_type().len() + v.string_value().map_or(0, str::len))
        .sum();
    let subject = "big".len();
    assert!(body.len() + attributes + subject <= MAX_MESSAGE_BYTES);
    assert!(
        body.len() + attributes + subject > MAX_MESSAGE_BYTES - 8,
        "the cut uses the room there is"
    );

    let mut loud = case(1, tweet(2, "x", "t"), "subject", 0.9, "r");
    loud.item.user.screen_name = format!("Ça\nne\tva pas 🔥 {}", "!".repeat(200));
    router.route(&delivery(&loud)).await.expect("route");
    let got = env.drain(&envelope_q).await;
    assert_eq!(got.len(), 1);
    let subject = envelope(&got[0])["Subject"]
        .as_str()
        .expect("subject")
        .to_owned();
    assert!(subject.len() <= 100, "{} chars", subject.len());
    assert!(subject.starts_with("Ca ne va pas ? !!!"), "{subject}");
    assert!(subject.ends_with("..."), "{subject}");
    assert!(subject.chars().all(|c| c == ' ' || c.is_ascii_graphic()));
}

#[tokio::test]
async fn the_router_conformance_suite_passes_on_standard_and_fifo_topics() {
    let env = Env::start().await;
    let config = env.config().await;
    for name in ["conformance", "conformance.fifo"] {
        let topic = env.topic(name).await;
        let queue = env.queue(&topic, name, true, None).await;
        let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
            .topic(&topic)
            .build()
            .await
            .expect("router");
        let cases: Vec<Case<Tweet>> = (0..12)
            .map(|i| case(i, tweet(i, "u", "t"), "x", 0.9, "support"))
            .collect();
        let receipts = router_conformance(&router, &cases).await;
        assert!(
            receipts
                .iter()
                .all(|r| r.message_id.is_some() && !r.skipped)
        );
        let expected = if name.ends_with(".fifo") { 12 } else { 13 };
        assert_eq!(
            env.drain(&queue).await.len(),
            expected,
            "{name}: the redelivery is {} ",
            if expected == 12 {
                "deduplicated"
            } else {
                "delivered again"
            }
        );
    }
    // Rule error-class: a topic that does not exist fails permanently.
    // (The start-up check is off here: with it, the build itself refuses.)
    let missing: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .topic("arn:aws:sns:us-east-1:123456789012:no-such-topic")
        .check_topics(false)
        .build()
        .await
        .expect("router");
    let c = case(0, tweet(1, "u", "t"), "x", 0.9, "support");
    streamsift::testing::router::expect_errors(&missing, &[(c, streamsift::ErrorClass::Permanent)])
        .await;
}

#[tokio::test]
async fn a_pipeline_publishes_the_actionable_tweets() {
    let env = Env::start().await;
    let topic = env.topic("pipeline").await;
    let queue = env.queue(&topic, "pipeline-team", true, None).await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&env.config().await)
        .topic(&topic)
        .message_template("@{item.user.screen_name}: {item.text}")
        .build()
        .await
        .expect("router");
    let tweets = [
        tweet(1, "ann", "my refund never arrived"),
        tweet(2, "bob", "lovely weather"),
        tweet(3, "cy", "refund me now"),
        tweet(4, "di", "nice shoes"),
    ];
    let payloads: Vec<Vec<u8>> = tweets
        .iter()
        .map(|t| serde_json::to_vec(t).expect("json"))
        .chain([b"not json".to_vec()])
        .collect();
    let dead = MemoryDeadLetter::new();
    let report = Pipeline::new(MemorySource::from_payloads(2, payloads))
        .json::<Tweet>()
        .classify(|t: &Tweet| {
            let score = if t.text.contains("refund") { 0.9 } else { 0.1 };
            async move { Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", score)) }
        })
        .policy(Policy::binary(0.5, "support"))
        .route(router)
        .dead_letter(dead.clone())
        .run()
        .await
        .expect("run");
    assert_eq!(report.stats.routed, 2);
    assert_eq!(report.stats.discarded, 2);
    assert_eq!(report.stats.dead_lettered, 1);
    let got = env.drain(&queue).await;
    let bodies: HashSet<String> = got
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect();
    assert_eq!(
        bodies,
        HashSet::from([
            "@ann: my refund never arrived".to_owned(),
            "@cy: refund me now".to_owned()
        ])
    );
    for m in &got {
        assert_eq!(sqs_attr(m, "route"), ("String".into(), "support".into()));
        assert_eq!(sqs_attr(m, "label"), ("String".into(), "actionable".into()));
        assert_eq!(sqs_attr(m, "score"), ("Number".into(), "0.9".into()));
    }
}

/// The batcher task lives on the runtime of its first caller; a router
/// used again from another runtime starts a new one.
#[test]
fn the_router_outlives_the_runtime_that_started_its_batcher() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let (env, topic, queue) = runtime().block_on(async {
        let env = Env::start().await;
        let topic = env.topic("runtimes").await;
        let queue = env.queue(&topic, "runtimes-all", true, None).await;
        (env, topic, queue)
    });
    let config = runtime().block_on(env.config());
    let router: SnsRouter<Tweet> = runtime()
        .block_on(
            SnsRouter::builder(&config)
                .topic(&topic)
                .message_template("{record.id}")
                .build(),
        )
        .expect("router");
    let c0 = case(0, tweet(1, "u", "t"), "x", 0.9, "r");
    let c1 = case(1, tweet(2, "u", "t"), "x", 0.9, "r");
    runtime()
        .block_on(router.route(&delivery(&c0)))
        .expect("first runtime");
    runtime()
        .block_on(router.route(&delivery(&c1)))
        .expect("second runtime");
    let got = runtime().block_on(env.drain(&queue));
    assert_eq!(got.len(), 2);
}

/// Linger, with time paused and every answer scripted (no emulator): a
/// lone message waits for the linger; a full batch goes at once.
#[tokio::test(start_paused = true)]
async fn the_batcher_waits_for_the_linger_unless_the_batch_is_full() {
    let topic = "arn:aws:sns:us-east-1:123456789012:paused";
    let ok = |n: usize| -> (String, String) { (format!("m{n}"), format!("id-{n}")) };
    let answer = |n: usize| {
        let entries: Vec<(String, String)> = (0..n).map(ok).collect();
        let refs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        batch_answer(&refs, &[])
    };
    let mut faults = scripted(1, 200, answer(1));
    faults.extend(scripted(2, 200, answer(10)));
    let (config, http) = scripted_config(faults).await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .check_topics(false)
        .topic(topic)
        .linger(Duration::from_millis(50))
        .build()
        .await
        .expect("router");
    let router = std::sync::Arc::new(router);

    let start = tokio::time::Instant::now();
    let lone = {
        let router = router.clone();
        tokio::spawn(async move {
            let c = case(0, tweet(1, "u", "t"), "x", 0.9, "r");
            router.route(&delivery(&c)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert!(http.calls().is_empty(), "still lingering at 40 ms");
    let receipt = lone.await.expect("task").expect("route");
    assert_eq!(receipt.message_id.as_deref(), Some("id-0"));
    let calls = http.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].at - start,
        Duration::from_millis(50),
        "sent when the linger ended"
    );

    let full_start = tokio::time::Instant::now();
    let cases: Vec<Case<Tweet>> = (0..10)
        .map(|i| case(i, tweet(i, "u", "t"), "x", 0.9, "r"))
        .collect();
    for r in route_all(&*router, &cases).await {
        r.expect("route");
    }
    let calls = http.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(entry_fields(&calls[1], "Id").len(), 10);
    assert_eq!(calls[1].at, full_start, "a full batch does not wait");
}

/// Calls, sends, retries, failures and truncations reach the `metrics`
/// recorder (every answer scripted, time paused).
#[test]
fn counters_go_through_the_metrics_facade() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let topic = "arn:aws:sns:us-east-1:123456789012:metered";
    let mut faults = scripted(
        1,
        200,
        batch_answer(
            &[("m0", "id-0")],
            &[
                ("m1", "InternalError", false),
                ("m2", "InvalidParameter", true),
            ],
        ),
    );
    faults.extend(scripted(2, 200, batch_answer(&[("m1", "id-1")], &[])));
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let results = metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(async {
                let base = sdk_config_for("http://127.0.0.1:9").await;
                let http =
                    FaultyHttp::new(aws_smithy_http_client::Builder::new().build_http(), faults);
                let config = base.into_builder().http_client(http).build();
                let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
                    .check_topics(false)
                    .topic(topic)
                    .message_template("{item.text}")
                    .max_message_bytes(300)
                    .retry_policy(quick_retries(3))
                    .build()
                    .await
                    .expect("router");
                let cases = [
                    case(0, tweet(1, "u", &"long ".repeat(100)), "x", 0.9, "r"),
                    case(1, tweet(2, "u", "short"), "x", 0.9, "r"),
                    case(2, tweet(3, "u", "refused"), "x", 0.9, "r"),
                ];
                route_all(&router, &cases).await
            })
    });
    let outcomes: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(outcomes, [true, true, false]);
    let counters: BTreeMap<String, u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => {
                let labels: Vec<String> = key
                    .key()
                    .labels()
                    .filter(|l| l.key() != "topic")
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                Some((format!("{}{labels:?}", key.key().name()), n))
            }
            _ => None,
        })
        .collect();
    let expected: BTreeMap<String, u64> = [
        ("streamsift_sns_published_total[]", 2),
        ("streamsift_sns_failures_total[\"kind=permanent\"]", 1),
        ("streamsift_sns_retries_total[]", 1),
        ("streamsift_sns_calls_total[\"operation=PublishBatch\"]", 2),
        ("streamsift_sns_truncated_total[]", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counters, expected);
}

/// Issue 13, nothing spins: against a topic that always fails, the
/// batcher's retries are bounded (`max_attempts` calls per message) and
/// paced: each pause is at least half of the policy's exponential ceiling,
/// so the calls cannot fire back to back. Time paused, every answer
/// scripted (no emulator).
#[tokio::test(start_paused = true)]
async fn nothing_spins_sns_batcher_backs_off() {
    let topic = "arn:aws:sns:us-east-1:123456789012:always-failing";
    let attempts = 6u32;
    let mut faults = Vec::new();
    for nth in 1..=(3 * attempts as usize) {
        faults.extend(scripted(nth, 500, error_answer("InternalError")));
    }
    let (config, http) = scripted_config(faults).await;
    let policy = RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(10),
        multiplier: 2.0,
    };
    for seed in [1u64, 2, 3] {
        let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
            .check_topics(false)
            .topic(topic)
            .linger(Duration::ZERO)
            .retry_policy(policy.clone())
            .seed(seed)
            .build()
            .await
            .expect("router");
        let before = http.calls().len();
        let c = case(0, tweet(1, "u", "t"), "x", 0.9, "r");
        let err = router.route(&delivery(&c)).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let calls: Vec<Call> = http.calls().into_iter().skip(before).collect();
        assert_eq!(
            calls.len(),
            attempts as usize,
            "bounded: one call per attempt"
        );
        for (i, pair) in calls.windows(2).enumerate() {
            let retry = i as u32 + 1;
            let gap = pair[1].at - pair[0].at;
            let ceiling = policy.backoff(retry, 1.0);
            assert!(
                gap >= ceiling / 2 && gap <= ceiling,
                "seed {seed}: pause before retry {retry} was {gap:?}; expected between {:?} and {ceiling:?}",
                ceiling / 2
            );
        }
    }
}

/// Issue 14, retries decided in one place: with the default settings, a
/// topic that always throttles sees one PublishBatch call per pipeline
/// attempt of the record (5 × 1 × 1, the module docs' table), not the
/// router's retries stacked under the pipeline's (25 before). Time paused,
/// every answer scripted (no emulator).
#[tokio::test(start_paused = true)]
async fn an_always_throttling_topic_sees_one_call_per_pipeline_attempt() {
    let topic = "arn:aws:sns:us-east-1:123456789012:always-throttled";
    let mut faults = Vec::new();
    for nth in 1..=40 {
        faults.extend(scripted(nth, 400, error_answer("Throttled")));
    }
    let (config, http) = scripted_config(faults).await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .check_topics(false)
        .topic(topic)
        .build()
        .await
        .expect("router");
    let payload = serde_json::to_vec(&tweet(1, "ann", "refund please")).expect("json");
    let dead = MemoryDeadLetter::new();
    let report = Pipeline::new(MemorySource::from_payloads(1, vec![payload]))
        .json::<Tweet>()
        .classify(|_: &Tweet| async {
            Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", 0.9))
        })
        .policy(Policy::binary(0.5, "support"))
        .route(router)
        .dead_letter(dead.clone())
        .run()
        .await
        .expect("run");
    assert_eq!(report.stats.dead_lettered, 1, "{:?}", report.stats);
    let pipeline_attempts = RetryPolicy::default().max_attempts as usize;
    assert_eq!(
        calls_of(&http, "PublishBatch").len(),
        pipeline_attempts,
        "pipeline attempts × router attempts (1) × SDK attempts (1)"
    );
}

/// Issue 14 §5: a topic that does not exist fails `build`, naming the topic
/// with the hint first, before any record is read.
#[tokio::test]
async fn a_missing_topic_fails_the_build_with_the_hint_first() {
    let env = Env::start().await;
    let good = env.topic("present").await;
    let missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic";
    let err = SnsRouter::<Tweet>::builder(&env.config().await)
        .topic(&good)
        .route_topic("billing", missing)
        .build()
        .await
        .expect_err("a missing topic fails the build");
    match &err {
        SnsConfigError::TopicCheck { topic, failure, .. } => {
            assert_eq!(topic, missing);
            assert_eq!(failure.kind, AwsErrorKind::NotFound, "{failure}");
        }
        other => panic!("expected TopicCheck, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.starts_with("create the topic"), "{text}");
    assert!(text.contains(missing), "{text}");
    // The present topic alone passes.
    SnsRouter::<Tweet>::builder(&env.config().await)
        .topic(&good)
        .build()
        .await
        .expect("an existing topic passes the check");
}

/// Issue 14 §5: an endpoint nothing listens on fails `build` within the
/// start-up timeout, with an error that says what to check. A closed port
/// on loopback; time paused.
#[tokio::test(start_paused = true)]
async fn an_unreachable_endpoint_fails_the_build_within_the_startup_timeout() {
    let port = common::moto::free_port();
    let config = sdk_config_for(&format!("http://127.0.0.1:{port}")).await;
    let topic = "arn:aws:sns:us-east-1:123456789012:support";
    let started = tokio::time::Instant::now();
    let err = SnsRouter::<Tweet>::builder(&config)
        .topic(topic)
        .startup_timeout(Duration::from_secs(7))
        .build()
        .await
        .expect_err("nothing listens there");
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    assert!(
        matches!(&err, SnsConfigError::StartupTimeout { topic: t, after, .. }
            if t == topic && *after == Duration::from_secs(7)),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.starts_with("check the endpoint URL"), "{text}");
}

/// Issue 14, one micro-batcher rule: a delivery whose caller stopped
/// waiting (a pipeline call timeout drops its future) before its batch is
/// sent is left out of the batch; it was published anyway before. Time
/// paused, every answer scripted (no emulator).
#[tokio::test(start_paused = true)]
async fn a_delivery_abandoned_before_its_batch_is_sent_is_left_out() {
    let topic = "arn:aws:sns:us-east-1:123456789012:abandoned";
    let faults = scripted(1, 200, batch_answer(&[("m0", "id-0"), ("m1", "id-1")], &[]));
    let (config, http) = scripted_config(faults).await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .check_topics(false)
        .topic(topic)
        .message_template("{record.id}")
        .linger(Duration::from_millis(50))
        .build()
        .await
        .expect("router");
    let gone = case(0, tweet(1, "u", "t"), "x", 0.9, "r");
    let kept = case(1, tweet(2, "u", "t"), "x", 0.9, "r");
    {
        let d = delivery(&gone);
        let mut abandoned = Box::pin(router.route(&d));
        // Queued, then its caller gives up (a call timeout).
        assert!(futures::poll!(abandoned.as_mut()).is_pending());
    }
    router.route(&delivery(&kept)).await.expect("route");
    let calls = calls_of(&http, "PublishBatch");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        entry_fields(&calls[0], "Message"),
        [kept.record.id.as_str()],
        "only the delivery whose caller still waits"
    );
}

/// Issue 14, the pipeline's budget bounds the router's own retries: with a
/// `retry_policy` of 5 attempts, a batch entry that keeps failing is resent
/// only while its caller waits; once the caller's deadline (the pipeline's
/// call timeout) drops it, the router stops resending. Time paused, every
/// answer scripted (no emulator).
#[tokio::test(start_paused = true)]
async fn the_callers_deadline_bounds_the_routers_own_resends() {
    let topic = "arn:aws:sns:us-east-1:123456789012:resends";
    let mut faults = Vec::new();
    for nth in 1..=10 {
        faults.extend(scripted(
            nth,
            200,
            batch_answer(&[], &[("m0", "InternalError", false)]),
        ));
    }
    let (config, http) = scripted_config(faults).await;
    let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .check_topics(false)
        .topic(topic)
        .linger(Duration::ZERO)
        .retry_policy(RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
            multiplier: 1.0,
        })
        .seed(1)
        .build()
        .await
        .expect("router");
    let c = case(0, tweet(1, "u", "t"), "x", 0.9, "r");
    // The first call at once, the first resend 0.5 to 1 s later; the
    // caller gives up at 1.2 s, before the second resend (at 1 to 2 s
    // after the first).
    let gave_up =
        tokio::time::timeout(Duration::from_millis(1200), router.route(&delivery(&c))).await;
    assert!(gave_up.is_err(), "still failing when the caller gave up");
    let at_deadline = calls_of(&http, "PublishBatch").len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        calls_of(&http, "PublishBatch").len(),
        at_deadline,
        "no resend after the caller gave up"
    );
    assert!(at_deadline <= 2, "{at_deadline}");
}
