//! The public conformance suites (`streamsift::testing`) on the crate's own
//! classifiers, routers and dead-letter sinks, and on deliberately broken
//! ones, to show that each rule can fail and names itself when it does.
//! (Sources: tests/source_conformance.rs; labelers:
//! tests/labeler_conformance.rs; checkpoint stores: tests/checkpoint.rs.)

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use streamsift::fakes::{KeywordClassifier, RecordingRouter};
use streamsift::testing::router::Case;
use streamsift::testing::{classifier, dead_letter, router};
use streamsift::{
    ClassifyError, DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterSink, Delivery,
    ErrorClass, JsonLinesDeadLetter, Label, MemoryDeadLetter, Prediction, Receipt, Record,
    RouteError, Router, Sequence, ShardId,
};

// ------------------------------------------------------------ classifier --

fn texts() -> Vec<String> {
    [
        "api is down",
        "how do I resize",
        "love it",
        "error 503 again",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test]
async fn keyword_classifier_conforms() {
    let classifier = KeywordClassifier::new("none")
        .rule("problem", &["down", "error"])
        .rule("question", &["how"]);
    let predictions =
        classifier::conformance(&classifier, &texts(), &["none", "problem", "question"]).await;
    assert_eq!(predictions[0].label.as_str(), "problem");
    assert_eq!(predictions[1].label.as_str(), "question");
}

#[tokio::test]
#[should_panic(expected = "classifier conformance: rule \"known-label\" broken")]
async fn a_classifier_answering_an_unknown_label_is_caught() {
    let c = |_: &String| async { Ok::<_, ClassifyError>(Prediction::binary("maybe", "no", 0.9)) };
    classifier::conformance(&c, &texts(), &["yes", "no"]).await;
}

#[tokio::test]
#[should_panic(expected = "classifier conformance: rule \"scores-in-range\" broken")]
async fn a_classifier_with_a_score_above_one_is_caught() {
    let c = |_: &String| async {
        let mut p = Prediction::binary("yes", "no", 0.9);
        p.scores[0].1 = 1.5;
        Ok::<_, ClassifyError>(p)
    };
    classifier::conformance(&c, &texts(), &["yes", "no"]).await;
}

/// Answers from a counter: the same item gets another answer each time.
struct Drifting(AtomicU32);

impl streamsift::Classifier<String> for Drifting {
    async fn classify(&self, _: &String) -> Result<Prediction, ClassifyError> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Prediction::binary("yes", "no", f64::from(n % 7) / 10.0))
    }
}

#[tokio::test]
#[should_panic(expected = "classifier conformance: rule \"order-independent\" broken")]
async fn a_classifier_whose_answers_drift_is_caught() {
    classifier::conformance(&Drifting(AtomicU32::new(0)), &texts(), &["yes", "no"]).await;
}

/// Right one by one, but its batch answers in reverse order.
struct ReversedBatch;

impl streamsift::Classifier<String> for ReversedBatch {
    async fn classify(&self, item: &String) -> Result<Prediction, ClassifyError> {
        let score = if item.contains("down") { 0.9 } else { 0.1 };
        Ok(Prediction::binary("yes", "no", score))
    }

    async fn classify_batch(&self, items: &[&String]) -> Vec<Result<Prediction, ClassifyError>> {
        let mut out = Vec::new();
        for item in items.iter().rev() {
            out.push(self.classify(item).await);
        }
        out
    }
}

#[tokio::test]
#[should_panic(expected = "classifier conformance: rule \"batch-matches-single\" broken")]
async fn a_classifier_whose_batch_is_out_of_order_is_caught() {
    classifier::conformance(&ReversedBatch, &texts(), &["yes", "no"]).await;
}

// ---------------------------------------------------------------- router --

fn cases() -> Vec<Case<Bytes>> {
    (0..5u64)
        .map(|i| {
            Case::new(
                Bytes::from(format!("tweet {i}")),
                if i % 2 == 0 { "support" } else { "billing" },
            )
            .record(Record::new(
                ShardId::new("s0"),
                Sequence::from_offset(i),
                "k",
                format!("tweet {i}"),
            ))
        })
        .collect()
}

#[tokio::test]
async fn recording_router_conforms() {
    let router: RecordingRouter<Bytes> = RecordingRouter::new();
    let receipts = router::conformance(&router, &cases()).await;
    assert_eq!(receipts.len(), 5);
    assert_eq!(
        router.len(),
        6,
        "five deliveries and one redelivery recorded"
    );
}

/// The combinators over recording routers keep the router rules too.
#[tokio::test]
async fn the_router_combinators_conform() {
    use streamsift::{ByLabel, Fallback, FanOut, Filter};
    let support: RecordingRouter<Bytes> = RecordingRouter::new();
    let billing: RecordingRouter<Bytes> = RecordingRouter::new();
    let by_label = ByLabel::new()
        .on("support", support.clone())
        .on("billing", billing.clone());
    router::conformance(&by_label, &cases()).await;
    assert_eq!((support.len(), billing.len()), (4, 2), "3 + redelivery, 2");

    let (a, b) = (RecordingRouter::new(), RecordingRouter::new());
    let fan_out = FanOut::new().to(a.clone()).to(b.clone());
    router::conformance(&fan_out, &cases()).await;
    assert_eq!((a.len(), b.len()), (6, 6));

    let only_support = Filter::new(RecordingRouter::new(), |d: &Delivery<'_, Bytes>| {
        d.route.as_str() == "support"
    });
    let receipts = router::conformance(&only_support, &cases()).await;
    assert_eq!(receipts.iter().filter(|r| r.skipped).count(), 2);

    let failing =
        |_: &Delivery<'_, Bytes>| async { Err::<Receipt, _>(RouteError::unavailable("down")) };
    let backup: RecordingRouter<Bytes> = RecordingRouter::new();
    router::conformance(&Fallback::new(failing, backup.clone()), &cases()).await;
    assert_eq!(backup.len(), 6);
}

/// Refuses a record it has seen: not retry-safe.
#[derive(Default)]
struct NoRedelivery(Mutex<Vec<String>>);

impl Router<Bytes> for NoRedelivery {
    async fn route(&self, d: &Delivery<'_, Bytes>) -> Result<Receipt, RouteError> {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&d.record.id) {
            return Err(RouteError::permanent("duplicate delivery"));
        }
        seen.push(d.record.id.clone());
        Ok(Receipt::new(d.route.clone()))
    }
}

#[tokio::test]
#[should_panic(expected = "router conformance: rule \"redelivery-accepted\" broken")]
async fn a_router_that_refuses_redelivery_is_caught() {
    router::conformance(&NoRedelivery::default(), &cases()).await;
}

#[tokio::test]
#[should_panic(expected = "router conformance: rule \"receipt-names-route\" broken")]
async fn a_router_whose_receipt_names_another_route_is_caught() {
    let r = |_: &Delivery<'_, Bytes>| async { Ok::<_, RouteError>(Receipt::new("elsewhere")) };
    router::conformance(&r, &cases()).await;
}

#[tokio::test]
#[should_panic(expected = "router conformance: rule \"delivery-accepted\" broken")]
async fn a_router_that_fails_deliveries_is_caught() {
    let r = |_: &Delivery<'_, Bytes>| async { Err::<Receipt, _>(RouteError::unavailable("503")) };
    router::conformance(&r, &cases()).await;
}

/// Reports a missing route as retryable: the pipeline would retry what can
/// never pass.
struct Misclassifying;

impl Router<Bytes> for Misclassifying {
    async fn route(&self, d: &Delivery<'_, Bytes>) -> Result<Receipt, RouteError> {
        if d.route.as_str() == "support" {
            Ok(Receipt::new(d.route.clone()))
        } else {
            Err(RouteError::unavailable(format!("no topic for {}", d.route)))
        }
    }
}

#[tokio::test]
async fn expect_errors_passes_when_the_class_is_right() {
    let r = |d: &Delivery<'_, Bytes>| {
        let known = d.route.as_str() == "support";
        let route = d.route.clone();
        async move {
            if known {
                Ok(Receipt::new(route))
            } else {
                Err(RouteError::permanent(format!("no topic for {route}")))
            }
        }
    };
    let missing = Case::new(Bytes::from_static(b"x"), Label::from("nowhere"));
    router::expect_errors(&r, &[(missing, ErrorClass::Permanent)]).await;
}

#[tokio::test]
#[should_panic(expected = "router conformance: rule \"error-class\" broken")]
async fn a_router_that_calls_a_permanent_failure_retryable_is_caught() {
    let missing = Case::new(Bytes::from_static(b"x"), "nowhere");
    router::expect_errors(&Misclassifying, &[(missing, ErrorClass::Permanent)]).await;
}

#[tokio::test]
#[should_panic(expected = "router conformance: rule \"error-class\" broken")]
async fn expect_errors_fails_when_the_delivery_succeeds() {
    let accepted = Case::new(Bytes::from_static(b"x"), "support");
    router::expect_errors(&Misclassifying, &[(accepted, ErrorClass::Permanent)]).await;
}

// ----------------------------------------------------------- dead letter --

#[tokio::test]
async fn memory_dead_letter_conforms() {
    let sink = MemoryDeadLetter::new();
    dead_letter::conformance(&sink, || {
        let entries = sink
            .entries()
            .iter()
            .map(DeadLetterEntry::from_dead_letter)
            .collect();
        async move { entries }
    })
    .await;
}

#[tokio::test]
async fn json_lines_dead_letter_conforms_read_back_from_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dead.jsonl");
    let sink = JsonLinesDeadLetter::create(&path).expect("open the dead-letter file");
    dead_letter::conformance(&sink, || {
        let path = path.clone();
        async move { JsonLinesDeadLetter::read_entries(&path).expect("read the dead-letter file") }
    })
    .await;
    // And a new sink over the same file appends to it.
    let again = JsonLinesDeadLetter::create(&path).expect("open the dead-letter file");
    let before = JsonLinesDeadLetter::read_entries(&path)
        .expect("read")
        .len();
    dead_letter::conformance(&again, || {
        let path = path.clone();
        async move {
            let all = JsonLinesDeadLetter::read_entries(&path).expect("read");
            all[before..].to_vec()
        }
    })
    .await;
}

/// Acknowledges at once and writes later: not durable before `Ok`.
#[derive(Default)]
struct Buffered {
    buffer: Mutex<Vec<DeadLetter>>,
    flushed: Mutex<Vec<DeadLetter>>,
}

impl Buffered {
    fn flushed(&self) -> Vec<DeadLetterEntry> {
        self.flushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(DeadLetterEntry::from_dead_letter)
            .collect()
    }
}

#[async_trait::async_trait]
impl DeadLetterSink for Buffered {
    async fn store(&self, dl: &DeadLetter) -> Result<(), DeadLetterError> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.push(dl.clone());
        if buffer.len() >= 8 {
            self.flushed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut buffer);
        }
        Ok(())
    }
}

#[tokio::test]
#[should_panic(expected = "dead-letter sink conformance: rule \"durable-before-ok\" broken")]
async fn a_sink_that_acknowledges_before_storing_is_caught() {
    let sink = Buffered::default();
    dead_letter::conformance(&sink, || {
        let entries = sink.flushed();
        async move { entries }
    })
    .await;
}

/// What a list-backed broken sink holds, read back as entries.
fn entries_of(list: &Mutex<Vec<DeadLetter>>) -> Vec<DeadLetterEntry> {
    list.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(DeadLetterEntry::from_dead_letter)
        .collect()
}

/// Stores the payload as lossy text: bytes that are not UTF-8 change.
#[derive(Default)]
struct Lossy(Mutex<Vec<DeadLetter>>);

#[async_trait::async_trait]
impl DeadLetterSink for Lossy {
    async fn store(&self, dl: &DeadLetter) -> Result<(), DeadLetterError> {
        let mut dl = dl.clone();
        dl.record.payload = Bytes::from(String::from_utf8_lossy(&dl.record.payload).into_owned());
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(dl);
        Ok(())
    }
}

#[tokio::test]
#[should_panic(expected = "dead-letter sink conformance: rule \"entry-intact\" broken")]
async fn a_sink_that_mangles_binary_payloads_is_caught() {
    let sink = Lossy::default();
    dead_letter::conformance(&sink, || {
        let entries = entries_of(&sink.0);
        async move { entries }
    })
    .await;
}

/// Reads its list, yields, then writes it back with the new entry: under
/// concurrent stores, entries overwrite each other.
#[derive(Default)]
struct Racy(Mutex<Vec<DeadLetter>>);

#[async_trait::async_trait]
impl DeadLetterSink for Racy {
    async fn store(&self, dl: &DeadLetter) -> Result<(), DeadLetterError> {
        let mut copy = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        tokio::task::yield_now().await;
        copy.push(dl.clone());
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = copy;
        Ok(())
    }
}

#[tokio::test]
#[should_panic(expected = "dead-letter sink conformance: rule \"concurrent-stores\" broken")]
async fn a_sink_that_loses_concurrent_stores_is_caught() {
    let sink = Racy::default();
    dead_letter::conformance(&sink, || {
        let entries = entries_of(&sink.0);
        async move { entries }
    })
    .await;
}
