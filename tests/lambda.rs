//! The Lambda Kinesis handler (`streamsift::lambda`, feature `lambda`)
//! against JSON fixtures of Kinesis events (`tests/fixtures/lambda/`, in
//! the shape Lambda documents for Kinesis event source mappings, written
//! for these tests). `tests/lambda_runtime.rs` runs the support-tweets
//! Lambda function as a real process under `lambda_runtime`.
#![cfg(feature = "lambda")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use streamsift::batch::{self, RecordOutcome};
use streamsift::fakes::RecordingRouter;
use streamsift::lambda::{KinesisEvent, KinesisHandler};
use streamsift::{
    ClassifyError, DeadLetter, DeadLetterError, DeadLetterSink, Delivery, MemoryDeadLetter, Policy,
    Prediction, Receipt, RetryPolicy, RouteError, Stage,
};

#[derive(Clone, Debug, Deserialize)]
struct Tweet {
    id_str: String,
    text: String,
}

fn fixture(name: &str) -> KinesisEvent {
    let path = format!(
        "{}/tests/fixtures/lambda/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is a KinesisEvent")
}

/// Sequence numbers in the fixtures end in their record's number.
fn seq(n: u32) -> String {
    format!("4965812364928714326811800710936051{n:022}")
}

fn by_keyword(t: &Tweet) -> futures::future::Ready<Result<Prediction, ClassifyError>> {
    let score = if t.text.contains("down") { 0.9 } else { 0.1 };
    futures::future::ready(Ok(Prediction::binary("actionable", "noise", score)))
}

fn far_deadline() -> SystemTime {
    SystemTime::now() + Duration::from_secs(600)
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        multiplier: 2.0,
    }
}

/// A router that fails the tweets whose ids are listed, with `error`.
fn failing_for(
    ids: &'static [&'static str],
    error: fn() -> RouteError,
    delivered: Arc<std::sync::Mutex<Vec<String>>>,
) -> impl Fn(&Delivery<'_, Tweet>) -> futures::future::Ready<Result<Receipt, RouteError>> + Send + Sync
{
    move |d: &Delivery<'_, Tweet>| {
        if ids.contains(&d.item.id_str.as_str()) {
            futures::future::ready(Err(error()))
        } else {
            delivered.lock().unwrap().push(d.item.id_str.clone());
            futures::future::ready(Ok(Receipt::new(d.route.clone())))
        }
    }
}

#[tokio::test]
async fn a_documented_kinesis_event_is_routed_and_discarded_with_no_failures() {
    let router = RecordingRouter::new();
    let dead = MemoryDeadLetter::new();
    let processor = batch::builder()
        .json::<Tweet>()
        .classify(by_keyword)
        .policy(Policy::binary(0.5, "oncall"))
        .route(router.clone())
        .dead_letter(dead.clone())
        .into_batch_processor()
        .unwrap();
    let handler = KinesisHandler::new(processor);
    let inv = handler
        .handle(fixture("kinesis-event.json"), far_deadline())
        .await;
    assert!(inv.response.batch_item_failures.is_empty());
    assert_eq!(inv.kinesis_records, 5);
    let mut routed: Vec<String> = router
        .deliveries()
        .iter()
        .map(|d| d.item.id_str.clone())
        .collect();
    routed.sort();
    assert_eq!(routed, ["1001", "1003", "1005"]);
    let stats = &inv.report.stats;
    assert_eq!((stats.routed, stats.discarded), (3, 2));
    assert!(stats.reconciles());
    assert_eq!(
        stats.shards.keys().map(|s| s.as_str()).collect::<Vec<_>>(),
        ["shardId-000000000003"]
    );
    assert!(dead.is_empty());
    // The response serializes as Lambda expects it.
    let json = serde_json::to_value(&inv.response).unwrap();
    assert_eq!(json, serde_json::json!({ "batchItemFailures": [] }));
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_report_the_first_failure_and_later_unfinished_records() {
    let delivered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let dead = MemoryDeadLetter::new();
    let processor = batch::builder()
        .json::<Tweet>()
        .classify(by_keyword)
        .policy(Policy::binary(0.5, "oncall"))
        .route(failing_for(
            &["1003", "1005"],
            || RouteError::unavailable("503 from the notifier"),
            delivered.clone(),
        ))
        .dead_letter(dead.clone())
        .retry(quick_retries())
        .into_batch_processor()
        .unwrap();
    let inv = KinesisHandler::new(processor)
        .handle(fixture("kinesis-event.json"), far_deadline())
        .await;
    // The first failure (record 3) and every later record not done (5);
    // record 4 was done and is not reported, record 1 and 2 come before.
    assert_eq!(inv.failed_sequence_numbers(), [seq(3), seq(5)]);
    assert_eq!(*delivered.lock().unwrap(), ["1001"]);
    assert!(dead.is_empty(), "retryable failures are not dead-lettered");
    let stats = &inv.report.stats;
    assert_eq!(stats.unfinished, 2);
    // Three attempts each: two retries per failed record.
    assert_eq!(stats.retries, 4);
    assert!(stats.reconciles());
    let json = serde_json::to_value(&inv.response).unwrap();
    assert_eq!(
        json,
        serde_json::json!({ "batchItemFailures": [
            { "itemIdentifier": seq(3) }, { "itemIdentifier": seq(5) }
        ]})
    );
}

#[tokio::test]
async fn a_permanent_route_rejection_is_dead_lettered_not_reported() {
    let delivered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let dead = MemoryDeadLetter::new();
    let processor = batch::builder()
        .json::<Tweet>()
        .classify(by_keyword)
        .policy(Policy::binary(0.5, "oncall"))
        .route(failing_for(
            &["1003"],
            || RouteError::permanent("topic does not exist"),
            delivered.clone(),
        ))
        .dead_letter(dead.clone())
        .into_batch_processor()
        .unwrap();
    let inv = KinesisHandler::new(processor)
        .handle(fixture("kinesis-event.json"), far_deadline())
        .await;
    assert!(inv.response.batch_item_failures.is_empty());
    let entries = dead.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].stage, Stage::Route);
    assert_eq!(entries[0].record.sequence.to_string(), seq(3));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_stops_early_and_reports_what_was_not_done() {
    // Each tweet takes 1 s to classify, one at a time; the invocation has
    // 3.5 s and a 1 s safety margin, so records 1 and 2 finish, record 3 is
    // abandoned at 2.5 s and records 4 and 5 never start.
    let slow = |t: &Tweet| {
        let text = t.text.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let score = if text.contains("down") { 0.9 } else { 0.1 };
            Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", score))
        }
    };
    let router = RecordingRouter::new();
    let processor = batch::builder()
        .json::<Tweet>()
        .classify(slow)
        .policy(Policy::binary(0.5, "oncall"))
        .route(router.clone())
        .dead_letter(MemoryDeadLetter::new())
        .max_in_flight(1)
        .into_batch_processor()
        .unwrap();
    let handler = KinesisHandler::new(processor).safety_margin(Duration::from_secs(1));
    let deadline = SystemTime::now() + Duration::from_millis(3500);
    let inv = handler
        .handle(fixture("kinesis-event.json"), deadline)
        .await;
    assert_eq!(inv.failed_sequence_numbers(), [seq(3), seq(4), seq(5)]);
    let outcomes = &inv.report.outcomes;
    assert!(outcomes[0].is_routed());
    assert_eq!(outcomes[1], RecordOutcome::Discarded);
    // Abandoned while classifying: where it was is not known.
    assert!(matches!(
        outcomes[2],
        RecordOutcome::FailedRetryable { stage: None, .. }
    ));
    assert_eq!(outcomes[3], RecordOutcome::NotStarted);
    assert_eq!(outcomes[4], RecordOutcome::NotStarted);
    assert!(inv.report.stopped_early);
    assert_eq!(inv.report.stats.records_in, 3);
    assert!(inv.report.stats.reconciles());
    assert_eq!(router.len(), 1);

    // A deadline already inside the margin starts nothing and reports all.
    let late = handler
        .handle(
            fixture("kinesis-event.json"),
            SystemTime::now() + Duration::from_millis(500),
        )
        .await;
    assert_eq!(
        late.failed_sequence_numbers(),
        [seq(1), seq(2), seq(3), seq(4), seq(5)]
    );
    assert_eq!(late.report.stats.records_in, 0);
    assert_eq!(router.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn kpl_aggregates_are_unpacked_and_reported_by_their_kinesis_sequence_number() {
    let delivered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let processor = batch::builder()
        .json::<Tweet>()
        .classify(by_keyword)
        .policy(Policy::binary(0.5, "oncall"))
        .route(failing_for(
            &["1013"],
            || RouteError::throttled("rate exceeded"),
            delivered.clone(),
        ))
        .dead_letter(MemoryDeadLetter::new())
        .retry(quick_retries())
        .into_batch_processor()
        .unwrap();
    let inv = KinesisHandler::new(processor)
        .handle(fixture("aggregated.json"), far_deadline())
        .await;
    // 3 Kinesis records, the middle one an aggregate of 3 user records.
    assert_eq!(inv.kinesis_records, 3);
    assert_eq!(inv.report.outcomes.len(), 5);
    assert_eq!(inv.corrupt_aggregates, 0);
    // User record 1013 (third in the aggregate) failed: the aggregate's own
    // sequence number is reported; the last record was done.
    assert_eq!(inv.failed_sequence_numbers(), [seq(11)]);
    let mut got = delivered.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, ["1010", "1011"]);
    assert_eq!(inv.report.stats.throttled, 2);
}

#[tokio::test]
async fn permanently_bad_records_go_to_the_dead_letter_route_not_the_failures() {
    let router = RecordingRouter::new();
    let dead = MemoryDeadLetter::new();
    let processor = batch::builder()
        .json::<Tweet>()
        .classify(by_keyword)
        .policy(Policy::binary(0.5, "oncall"))
        .route(router.clone())
        .dead_letter(dead.clone())
        .max_record_bytes(8 * 1024)
        .into_batch_processor()
        .unwrap();
    let inv = KinesisHandler::new(processor)
        .handle(fixture("malformed.json"), far_deadline())
        .await;
    assert!(inv.response.batch_item_failures.is_empty());
    assert_eq!(inv.corrupt_aggregates, 1);
    let kinds: BTreeMap<String, String> = dead
        .entries()
        .iter()
        .map(|d: &DeadLetter| {
            assert_eq!(d.stage, Stage::Decode);
            (d.record.sequence.to_string(), d.kind.clone())
        })
        .collect();
    assert_eq!(kinds.len(), 4);
    assert_eq!(kinds[&seq(21)], "invalid_json");
    assert!(["invalid_utf8", "invalid_json"].contains(&kinds[&seq(22)].as_str()));
    assert_eq!(kinds[&seq(23)], "corrupt");
    assert_eq!(kinds[&seq(24)], "too_large");
    assert_eq!(router.len(), 1);
    assert_eq!(inv.report.stats.discarded, 1);
    assert!(inv.report.stats.reconciles());
}

/// A dead-letter sink that always fails.
#[derive(Debug, Default)]
struct BrokenSink {
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl DeadLetterSink for BrokenSink {
    async fn store(&self, _: &DeadLetter) -> Result<(), DeadLetterError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Err(DeadLetterError::permanent("disk full"))
    }
}

#[tokio::test]
async fn a_record_whose_dead_letter_cannot_be_stored_is_reported() {
    let sink = Arc::new(BrokenSink::default());
    let processor = batch::builder()
        .json::<Tweet>()
        .classify(by_keyword)
        .policy(Policy::binary(0.5, "oncall"))
        .route(RecordingRouter::new())
        .dead_letter(sink.clone())
        .max_record_bytes(8 * 1024)
        .into_batch_processor()
        .unwrap();
    let inv = KinesisHandler::new(processor)
        .handle(fixture("malformed.json"), far_deadline())
        .await;
    // Records 21..=24 could not be dead-lettered: the first is reported with
    // every later one not done; record 25 was done.
    assert_eq!(
        inv.failed_sequence_numbers(),
        [seq(21), seq(22), seq(23), seq(24)]
    );
    assert_eq!(sink.calls.load(Ordering::Relaxed), 4);
    assert_eq!(inv.report.stats.unfinished, 4);
    assert!(matches!(
        &inv.report.outcomes[1],
        RecordOutcome::FailedRetryable { stage: Some(Stage::Decode), reason } if reason.contains("disk full")
    ));
    assert!(inv.report.stats.reconciles());
}
