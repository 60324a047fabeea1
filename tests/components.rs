//! The Pipeline with the public fakes: fault-injecting wrappers, the
//! simulated crowd on the review band, and metrics through the facade.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use streamsift::fakes::{
    FaultKind, FaultPlan, Faulty, MemorySource, RecordingRouter, SimulatedCrowd, Worker,
};
use streamsift::{
    ClassifyError, ErrorClass, Labeler, MemoryDeadLetter, Pipeline, Policy, Prediction, RawBytes,
    Stage,
};

/// The tests of this file run one at a time: `records_get_debug_spans`
/// needs its subscriber registered before any other thread first meets the
/// pipeline's `record` span and `enabled!` callsites. When another test
/// registers them at the same moment, tracing can cache "never" for them
/// (seen as an empty span list on a cold first run).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn score_of(item: &Bytes) -> f64 {
    std::str::from_utf8(item).unwrap().parse::<u32>().unwrap() as f64 % 100.0 / 100.0
}

/// Retryable faults injected at random into the router are all retried and
/// every record is still delivered; the retries counted are exactly the
/// faults injected. Keyed permanent faults dead-letter exactly their records.
#[tokio::test(start_paused = true)]
async fn retries_through_a_fault_injecting_router() {
    let _one = ONE_AT_A_TIME.lock().await;
    let inner = RecordingRouter::<Bytes>::new();
    let flaky = Faulty::new(
        inner.clone(),
        FaultPlan::new()
            .fail_with_probability(0.2)
            .kind(FaultKind::Throttled)
            .seed(9),
    );
    let poison = Faulty::new(
        flaky.clone(),
        FaultPlan::new()
            .fail_key("shard-1:7")
            .fail_key("shard-0:42")
            .kind(FaultKind::Permanent)
            .keyed(),
    );
    let dead = MemoryDeadLetter::new();
    let report = Pipeline::new(MemorySource::from_payloads(
        2,
        (0..500).map(|i| i.to_string()),
    ))
    .decode(RawBytes)
    .classify(|_: &Bytes| async { Ok::<_, ClassifyError>(Prediction::binary("y", "n", 1.0)) })
    .policy(Policy::binary(0.5, "team"))
    .route(poison.clone())
    .dead_letter(dead.clone())
    .retry(streamsift::RetryPolicy {
        max_attempts: 8,
        ..Default::default()
    })
    .run()
    .await
    .unwrap();
    assert!(
        flaky.injected() > 50,
        "about 20% of calls fail: {}",
        flaky.injected()
    );
    assert_eq!(report.stats.retries, flaky.injected());
    assert_eq!(report.stats.throttled, flaky.injected());
    assert_eq!(report.stats.routed, 498);
    assert_eq!(inner.len(), 498);
    let mut dead_ids: Vec<String> = dead.entries().into_iter().map(|d| d.record.id).collect();
    dead_ids.sort();
    assert_eq!(dead_ids, ["shard-0:42", "shard-1:7"]);
    assert!(
        dead.entries()
            .iter()
            .all(|d| d.class == ErrorClass::Permanent && d.stage == Stage::Route)
    );
}

/// A classifier failing some calls permanently: those records are
/// dead-lettered at the classify stage with the classifier's message.
#[tokio::test(start_paused = true)]
async fn permanent_classifier_faults_are_dead_lettered() {
    let _one = ONE_AT_A_TIME.lock().await;
    let classifier = Faulty::new(
        |_: &Bytes| async { Ok::<_, ClassifyError>(Prediction::binary("y", "n", 0.0)) },
        FaultPlan::new()
            .fail_nth(3)
            .fail_nth(10)
            .kind(FaultKind::Permanent),
    );
    let dead = MemoryDeadLetter::new();
    let report = Pipeline::new(MemorySource::from_payloads(
        1,
        (0..20).map(|i| i.to_string()),
    ))
    .decode(RawBytes)
    .classify(classifier)
    .policy(Policy::binary(0.5, "team"))
    .route(RecordingRouter::<Bytes>::new())
    .dead_letter(dead.clone())
    .max_in_flight(1)
    .run()
    .await
    .unwrap();
    assert_eq!(report.stats.discarded, 18);
    let entries = dead.entries();
    assert_eq!(entries.len(), 2);
    assert!(
        entries
            .iter()
            .all(|d| d.stage == Stage::Classify && d.attempts == 1)
    );
    assert!(
        entries[0].reason.contains("injected fault on call 3"),
        "{}",
        entries[0].reason
    );
}

/// The review band goes to the Labeler; the crowd's labels come back later,
/// with per-item agreement.
#[tokio::test(start_paused = true)]
async fn review_band_goes_to_the_labeler() {
    let _one = ONE_AT_A_TIME.lock().await;
    let crowd = Arc::new(
        SimulatedCrowd::new(["actionable", "noise"], |item: &Bytes| {
            if score_of(item) >= 0.3 {
                "actionable"
            } else {
                "noise"
            }
        })
        .workers([
            Worker::accurate("w1", 0.9),
            Worker::accurate("w2", 0.9),
            Worker::accurate("w3", 0.9),
            Worker::spammer("spam"),
        ])
        .completion_delay(Duration::from_secs(3 * 3600))
        .seed(1),
    );
    let router = RecordingRouter::<Bytes>::new();
    let report = Pipeline::new(MemorySource::from_payloads(
        2,
        (0..200).map(|i| i.to_string()),
    ))
    .decode(RawBytes)
    .classify(|item: &Bytes| {
        let s = score_of(item);
        async move { Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", s)) }
    })
    .policy(Policy::binary(0.5, "team").with_review_band(0.2, 0.5))
    .route(router.clone())
    .review(crowd.clone())
    .dead_letter(MemoryDeadLetter::new())
    .run()
    .await
    .unwrap();
    // Scores 0.20..0.49 (30 per 100 records) go to review, >= 0.5 notify.
    assert_eq!(report.stats.sent_for_review, 60);
    assert_eq!(report.stats.routed, 100);
    assert_eq!(crowd.submitted(), 60);
    assert!(router.deliveries().iter().all(|d| d.route == "team"));
    assert!(
        crowd.collect().await.unwrap().is_empty(),
        "labels take hours"
    );
    tokio::time::advance(Duration::from_secs(3 * 3600 + 1)).await;
    let labels = crowd.collect().await.unwrap();
    assert_eq!(labels.len(), 60);
    assert!(
        labels
            .iter()
            .all(|l| (0.0..=1.0).contains(&l.agreement) && l.votes.len() == 3)
    );
    let correct = labels
        .iter()
        .filter(|l| {
            let offset: u64 = l.item_id.rsplit(':').next().unwrap().parse().unwrap();
            let shard: u64 = l.item_id[6..7].parse().unwrap();
            let payload = offset * 2 + shard; // from_payloads: record i -> shard i % 2
            let truth = if (payload % 100) as f64 / 100.0 >= 0.3 {
                "actionable"
            } else {
                "noise"
            };
            l.label == truth
        })
        .count();
    assert!(
        correct >= 50,
        "majority of a good crowd is mostly right: {correct}/60"
    );
}

/// The run's figures reach the `metrics` recorder.
#[test]
fn counters_and_histograms_go_through_the_metrics_facade() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let report = metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(
                Pipeline::new(MemorySource::from_payloads(1, ["10", "90", "x"]))
                    .decode(|r: &streamsift::Record| {
                        std::str::from_utf8(&r.payload)
                            .ok()
                            .and_then(|s| s.parse::<u32>().ok())
                            .ok_or_else(|| streamsift::DecodeError::Invalid("not a number".into()))
                    })
                    .classify(|n: &u32| {
                        let s = f64::from(*n) / 100.0;
                        async move { Ok::<_, ClassifyError>(Prediction::binary("hot", "cold", s)) }
                    })
                    .policy(Policy::binary(0.5, "oncall"))
                    .route(RecordingRouter::<u32>::new())
                    .dead_letter(MemoryDeadLetter::new())
                    .run(),
            )
            .unwrap()
    });
    let mut counters = std::collections::BTreeMap::new();
    let mut latency_samples = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let name = key.key().name().to_string();
        let labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        match value {
            DebugValue::Counter(n) => {
                counters.insert(format!("{name}{labels:?}"), n);
            }
            DebugValue::Histogram(v) if name == "streamsift_end_to_end_latency_seconds" => {
                latency_samples = v.len()
            }
            _ => {}
        }
    }
    assert_eq!(counters["streamsift_records_in_total[]"], 3);
    assert_eq!(counters["streamsift_decoded_total[]"], 2);
    assert_eq!(counters["streamsift_routed_total[]"], 1);
    assert_eq!(counters["streamsift_discarded_total[]"], 1);
    assert_eq!(counters["streamsift_dead_letter_total[]"], 1);
    assert_eq!(counters["streamsift_classified_total[\"label=hot\"]"], 1);
    assert_eq!(
        counters["streamsift_routed_by_route_total[\"route=oncall\"]"],
        1
    );
    assert_eq!(
        counters["streamsift_dead_letter_by_stage_total[\"stage=decode\"]"],
        1
    );
    assert_eq!(latency_samples, 3);
    assert_eq!(report.stats.records_in, 3);
}

/// With debug tracing on, every record gets a `record` span carrying its id
/// and shard; retries log inside it.
#[test]
fn records_get_debug_spans() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    use std::sync::Mutex;
    use tracing_subscriber::layer::{Context, SubscriberExt as _};

    #[derive(Default, Clone)]
    struct Spans(Arc<Mutex<Vec<String>>>);
    struct Fields<'a>(&'a mut String);
    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!("{}={:?} ", field.name(), value));
        }
    }
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: Context<'_, S>,
        ) {
            let mut line = format!("{} ", attrs.metadata().name());
            attrs.record(&mut Fields(&mut line));
            self.0.lock().unwrap().push(line);
        }
    }
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry()
        .with(spans.clone())
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(
                Pipeline::new(MemorySource::from_payloads(2, ["1", "2", "3"]))
                    .decode(RawBytes)
                    .classify(|_: &Bytes| async {
                        Ok::<_, ClassifyError>(Prediction::binary("y", "n", 1.0))
                    })
                    .policy(Policy::binary(0.5, "team"))
                    .route(RecordingRouter::<Bytes>::new())
                    .dead_letter(MemoryDeadLetter::new())
                    .run(),
            )
            .unwrap();
    });
    let mut spans = spans.0.lock().unwrap().clone();
    spans.sort();
    assert_eq!(
        spans,
        [
            "record id=shard-0:0 shard=shard-0 ",
            "record id=shard-0:1 shard=shard-0 ",
            "record id=shard-1:0 shard=shard-1 ",
        ]
    );
}
