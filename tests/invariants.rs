//! Regression tests for the core's invariants (ARCHITECTURE.md › Invariants),
//! one per defect found on the code before the run loop was rebuilt. Each
//! is named after the invariant it checks. The seeded simulation
//! (`tests/simulation.rs`) checks the same invariants over fault schedules;
//! these pin the failures down in a form anyone can read.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod common;

use bytes::Bytes;
use common::logs::process_logs;
use streamsift::batch;
use streamsift::fakes::{MemorySource, RecordingRouter};
use streamsift::{
    Batch, Checkpoint, ClassifyError, Delivery, MemoryDeadLetter, Pipeline, PipelineError, Policy,
    Prediction, RawBytes, Receipt, RouteError, Source, SourceError, Stage,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

fn yes(_: &Bytes) -> std::future::Ready<Result<Prediction, ClassifyError>> {
    std::future::ready(Ok(Prediction::binary("yes", "no", 1.0)))
}

fn payloads(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("record {i}")).collect()
}

#[test]
fn poison_a_panicking_classifier_fails_its_record_alone() {
    rt().block_on(async {
        let source = MemorySource::from_payloads(2, payloads(10));
        let stream = source.stream();
        let router = RecordingRouter::new();
        let dead = MemoryDeadLetter::new();
        let classify = |b: &Bytes| {
            if b.as_ref() == b"record 3" {
                panic!("the model choked");
            }
            std::future::ready(Ok::<_, ClassifyError>(Prediction::binary("yes", "no", 1.0)))
        };
        let report = Pipeline::new(source)
            .decode(RawBytes)
            .classify(classify)
            .policy(Policy::binary(0.5, "all"))
            .route(router.clone())
            .dead_letter(dead.clone())
            .run()
            .await
            .expect("a panic in user code is not a failure of the run");
        assert_eq!(router.len(), 9);
        let entries = dead.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].kind, "panic");
        assert_eq!(entries[0].stage, Stage::Classify);
        assert!(
            entries[0].reason.contains("the model choked"),
            "{}",
            entries[0].reason
        );
        assert_eq!(report.stats.dead_lettered, 1);
        assert!(report.stats.reconciles());
        assert_eq!(
            stream.checkpoints().len(),
            2,
            "both shards committed past it"
        );
    });
}

#[test]
fn poison_a_panicking_decoder_and_router_in_a_batch_fail_their_records_alone() {
    rt().block_on(async {
        let dead = MemoryDeadLetter::new();
        let decode = |r: &streamsift::Record| {
            if r.payload.as_ref() == b"bad" {
                panic!("decoder bug");
            }
            Ok(r.payload.clone())
        };
        let route = |d: &Delivery<'_, Bytes>| {
            if d.item.as_ref() == b"worse" {
                panic!("router bug");
            }
            std::future::ready(Ok::<_, RouteError>(Receipt::new("all")))
        };
        let processor = batch::builder()
            .decode(decode)
            .classify(yes)
            .policy(Policy::binary(0.5, "all"))
            .route(route)
            .dead_letter(dead.clone())
            .into_batch_processor()
            .unwrap()
            .on_exhausted(batch::OnExhausted::Report);
        let shard = streamsift::ShardId::new("s");
        let records = ["ok", "bad", "worse", "ok"]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                streamsift::Record::new(
                    shard.clone(),
                    streamsift::Sequence::from_offset(i as u64),
                    "k",
                    p.as_bytes().to_vec(),
                )
            })
            .collect();
        let report = processor.process(records, None).await;
        assert!(report.all_done(), "{:?}", report.outcomes);
        assert!(report.outcomes[0].is_routed() && report.outcomes[3].is_routed());
        assert_eq!(
            report.outcomes[1],
            batch::RecordOutcome::DeadLettered {
                stage: Stage::Decode
            }
        );
        assert_eq!(
            report.outcomes[2],
            batch::RecordOutcome::DeadLettered {
                stage: Stage::Route
            }
        );
        assert!(dead.entries().iter().all(|e| e.kind == "panic"));
        assert!(report.stats.reconciles());
    });
}

#[test]
fn per_call_time_route_gets_a_whole_call_timeout_after_a_slow_classify() {
    rt().block_on(async {
        let slow_classify = |_: &Bytes| async {
            tokio::time::sleep(Duration::from_secs(8)).await;
            Ok::<_, ClassifyError>(Prediction::binary("yes", "no", 1.0))
        };
        let attempts = Arc::new(AtomicU64::new(0));
        let a = attempts.clone();
        let slow_route = move |_: &Delivery<'_, Bytes>| {
            a.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, RouteError>(Receipt::new("all"))
            }
        };
        let dead = MemoryDeadLetter::new();
        let report = Pipeline::new(MemorySource::from_payloads(1, payloads(1)))
            .decode(RawBytes)
            .classify(slow_classify)
            .policy(Policy::binary(0.5, "all"))
            .route(slow_route)
            .dead_letter(dead.clone())
            .call_timeout(Duration::from_secs(10))
            .run()
            .await
            .unwrap();
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            1,
            "the route call was cut short: it got only what classify left of one call_timeout"
        );
        assert_eq!(report.stats.routed, 1);
        assert_eq!(report.stats.retries, 0);
        assert!(dead.is_empty());
    });
}

/// A source whose commits fail (retryably) every time, counting them.
struct FailingCommits {
    inner: MemorySource,
    calls: Arc<AtomicU64>,
    /// Answer permanently after this many calls, so code that spins ends.
    give_up_after: u64,
    hang: bool,
}

impl Source for FailingCommits {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        self.inner.next_batch().await
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.hang && n == 1 {
            // A lost answer: the call never returns.
            std::future::pending::<()>().await;
        }
        if self.hang {
            return self.inner.commit(checkpoints).await;
        }
        if n >= self.give_up_after {
            return Err(SourceError::permanent("store gone"));
        }
        Err(SourceError::unavailable("store busy"))
    }
}

#[test]
fn nothing_spins_commits_back_off_at_the_unacked_limit() {
    rt().block_on(async {
        let calls = Arc::new(AtomicU64::new(0));
        let source = FailingCommits {
            inner: MemorySource::from_payloads(1, payloads(100)).endless(),
            calls: calls.clone(),
            give_up_after: 10_000,
            hang: false,
        };
        let started = tokio::time::Instant::now();
        let result = Pipeline::new(source)
            .decode(RawBytes)
            .classify(yes)
            .policy(Policy::binary(0.5, "all"))
            .route(RecordingRouter::new())
            .dead_letter(MemoryDeadLetter::new())
            .max_unacked(10)
            .commit_timeout(Duration::from_secs(30))
            .run()
            .await;
        let elapsed = started.elapsed();
        let calls = calls.load(Ordering::SeqCst);
        assert!(
            matches!(result, Err(PipelineError::Commit { .. })),
            "commits that keep failing stop the run"
        );
        // The floor of the backoff is half the initial backoff (50 ms): at
        // most 20 calls a second, and far fewer once it has grown.
        let per_second = calls as f64 / elapsed.as_secs_f64().max(1e-9);
        assert!(
            calls < 200 && per_second <= 20.0,
            "{calls} commit calls in {elapsed:?}: the commit retry spins"
        );
    });
}

#[test]
fn per_call_time_a_commit_whose_answer_is_lost_does_not_hang_the_run() {
    rt().block_on(async {
        let source = FailingCommits {
            inner: MemorySource::from_payloads(1, payloads(5)),
            calls: Arc::new(AtomicU64::new(0)),
            give_up_after: u64::MAX,
            hang: true,
        };
        let stream = source.inner.stream();
        let run = Pipeline::new(source)
            .decode(RawBytes)
            .classify(yes)
            .policy(Policy::binary(0.5, "all"))
            .route(RecordingRouter::new())
            .dead_letter(MemoryDeadLetter::new())
            .run();
        let report = tokio::time::timeout(Duration::from_secs(3600), run)
            .await
            .expect("the run hung on a commit that never answered")
            .unwrap();
        assert_eq!(report.stats.routed, 5);
        assert!(!stream.checkpoints().is_empty());
    });
}

#[test]
fn counts_are_true_a_skipped_receipt_counts_as_skipped_not_routed() {
    rt().block_on(async {
        let skip = |_: &Delivery<'_, Bytes>| {
            let mut receipt = Receipt::new("all");
            receipt.skipped = true;
            std::future::ready(Ok::<_, RouteError>(receipt))
        };
        let report = Pipeline::new(MemorySource::from_payloads(1, payloads(3)))
            .decode(RawBytes)
            .classify(yes)
            .policy(Policy::binary(0.5, "all"))
            .route(skip)
            .dead_letter(MemoryDeadLetter::new())
            .run()
            .await
            .unwrap();
        assert_eq!(report.stats.routed, 0, "a skipped delivery is not routed");
        assert_eq!(report.stats.skipped, 3);
        assert!(report.stats.routed_by_route.is_empty());
        assert!(report.stats.reconciles());
    });
}

#[test]
fn no_customer_text_in_logs_decode_and_route_errors_are_logged_without_their_text() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Item {
        n: u64,
    }
    let logs = process_logs();
    rt().block_on(async {
        let refuse = |d: &Delivery<'_, Item>| {
            let n = d.item.n;
            std::future::ready(Err::<Receipt, _>(RouteError::permanent(format!(
                "bad request: SECRET-ROUTE-{n}"
            ))))
        };
        let report = Pipeline::new(MemorySource::from_payloads(
            1,
            [r#"{"n":"SECRET-DECODE"}"#, r#"{"n":7}"#],
        ))
        .json::<Item>()
        .classify(|_: &Item| async { Ok::<_, ClassifyError>(Prediction::binary("yes", "no", 1.0)) })
        .policy(Policy::binary(0.5, "all"))
        .route(refuse)
        .dead_letter(MemoryDeadLetter::new())
        .run()
        .await
        .unwrap();
        assert_eq!(report.stats.dead_lettered, 2);
    });
    let text = logs.text();
    assert!(
        text.contains("dead-lettering record"),
        "logs were captured: {text}"
    );
    assert!(
        !text.contains("SECRET-"),
        "customer text reached the logs:\n{text}"
    );
}

#[test]
fn bounded_memory_closed_shards_are_released() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        rt().block_on(async {
            let source = MemorySource::from_payloads(64, payloads(64 * 3)).close_shards();
            let report = Pipeline::new(source)
                .decode(RawBytes)
                .classify(yes)
                .policy(Policy::binary(0.5, "all"))
                .route(RecordingRouter::new())
                .dead_letter(MemoryDeadLetter::new())
                .run()
                .await
                .unwrap();
            assert_eq!(
                report.stats.shards.len(),
                64,
                "the report keeps every shard's counts"
            );
        });
    });
    let gauges: HashMap<String, f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Gauge(g) => Some((key.key().name().to_string(), g.into_inner())),
            _ => None,
        })
        .collect();
    assert_eq!(
        gauges.get("streamsift_tracked_shards").copied(),
        Some(0.0),
        "every shard ended and its SHARD_END was committed, so none is tracked: {gauges:?}"
    );
}

/// A source whose first commit fails for good; later commits go through,
/// so a run that commits again after that is caught.
struct FirstCommitRefused {
    inner: MemorySource,
    calls: Arc<AtomicU64>,
}

impl Source for FirstCommitRefused {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        self.inner.next_batch().await
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(SourceError::permanent("lease lost"));
        }
        self.inner.commit(checkpoints).await
    }
}

#[test]
fn no_loss_after_a_commit_fails_for_good_nothing_commits_again() {
    rt().block_on(async {
        // One shard of 10 records in one closing batch; 2 at a time, so
        // the rest of the closing batch is waiting when the first commit
        // (after the first record) fails for good.
        let inner = MemorySource::from_payloads(1, payloads(10))
            .close_shards()
            .batch_size(10);
        let stream = inner.stream();
        let calls = Arc::new(AtomicU64::new(0));
        let slow = |_: &Bytes| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, ClassifyError>(Prediction::binary("yes", "no", 1.0))
        };
        let router = RecordingRouter::new();
        let result = Pipeline::new(FirstCommitRefused {
            inner,
            calls: calls.clone(),
        })
        .decode(RawBytes)
        .classify(slow)
        .policy(Policy::binary(0.5, "all"))
        .route(router.clone())
        .dead_letter(MemoryDeadLetter::new())
        .max_in_flight(2)
        .commit_every(1, Duration::from_secs(60))
        .run()
        .await;
        assert!(matches!(result, Err(PipelineError::Commit { .. })));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a commit went out after one failed for good: {:?}",
            stream.commits()
        );
        assert_ne!(
            stream.committed(&streamsift::ShardId::new("shard-0")),
            Some(streamsift::Position::ShardEnd),
            "SHARD_END was committed with {} of 10 records done",
            router.len()
        );
    });
}
