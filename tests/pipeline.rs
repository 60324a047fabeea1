//! Integration tests of the Pipeline's guarantees: ordered checkpoints,
//! at-least-once across a crash, poison records, retries, shutdown, bounds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use streamsift::fakes::{MemorySource, RecordingRouter};
use streamsift::{
    Batch, ByLabel, Checkpoint, ClassifyError, ConfigError, DeadLetter, DeadLetterError,
    DeadLetterSink, Delivery, ErrorClass, JsonLinesDeadLetter, LabelError, LabelResult, LabelTask,
    Labeler, MemoryDeadLetter, Pipeline, PipelineError, Policy, Position, Prediction, REVIEW_ROUTE,
    RawBytes, Receipt, RetryPolicy, RouteError, Router, Shutdown, Source, SourceError, Stage,
    StopReason, TaskId,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

fn offset_of(id: &str) -> u64 {
    id.rsplit(':')
        .next()
        .and_then(|o| o.parse().ok())
        .expect("memory ids end in an offset")
}

fn always_notify() -> Policy {
    Policy::binary(0.0, "all")
}

fn yes(_: &Bytes) -> std::future::Ready<Result<Prediction, ClassifyError>> {
    std::future::ready(Ok(Prediction::binary("yes", "no", 1.0)))
}

/// Wraps a source and checks every commit against the records known done:
/// positions only move forward, and never past a record that is not done.
struct CheckingSource {
    inner: MemorySource,
    done: Arc<Mutex<HashSet<String>>>,
    last: Mutex<HashMap<String, u64>>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Source for CheckingSource {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        self.inner.next_batch().await
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        {
            let done = self.done.lock().unwrap();
            let mut last = self.last.lock().unwrap();
            let mut violations = self.violations.lock().unwrap();
            for cp in &checkpoints {
                let Position::Sequence(seq) = &cp.position else {
                    continue;
                };
                let upto: u64 = seq.number.parse().unwrap();
                if let Some(prev) = last.get(cp.shard.as_str())
                    && upto <= *prev
                {
                    violations.push(format!("{} went from {prev} to {upto}", cp.shard));
                }
                for o in 0..=upto {
                    let id = format!("{}:{o}", cp.shard);
                    if !done.contains(&id) {
                        violations.push(format!("commit {upto} passed unfinished {id}"));
                    }
                }
                last.insert(cp.shard.to_string(), upto);
            }
        }
        self.inner.commit(checkpoints).await
    }
}

/// A dead-letter sink that also marks the record done.
struct MarkingSink {
    done: Arc<Mutex<HashSet<String>>>,
    inner: MemoryDeadLetter,
}

#[async_trait::async_trait]
impl DeadLetterSink for MarkingSink {
    async fn store(&self, dl: &DeadLetter) -> Result<(), DeadLetterError> {
        self.inner.store(dl).await?;
        self.done.lock().unwrap().insert(dl.record.id.clone());
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Records finish out of order (random latencies, random permanent
    /// failures); commits must be monotone and never pass an unfinished
    /// record, and in the end every record is committed.
    #[test]
    fn ordered_checkpoints_under_out_of_order_completion(
        latencies in proptest::collection::vec(0u64..50, 1..300),
        fail_every in 0usize..7,
        shards in 1usize..4,
        max_in_flight in 1usize..40,
        commit_every in 1u64..20,
        batch in 1usize..30,
    ) {
        let n = latencies.len();
        let payloads: Vec<Bytes> = (0..n).map(|i| Bytes::from(i.to_string())).collect();
        let done = Arc::new(Mutex::new(HashSet::new()));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let source = CheckingSource {
            inner: MemorySource::from_payloads(shards, payloads).batch_size(batch),
            done: done.clone(),
            last: Mutex::new(HashMap::new()),
            violations: violations.clone(),
        };
        let stream = source.inner.stream();
        let lat = Arc::new(latencies);
        let done_r = done.clone();
        let router = move |d: &Delivery<'_, Bytes>| {
            let i: usize = std::str::from_utf8(d.item).unwrap().parse().unwrap();
            let id = d.record.id.clone();
            let wait = Duration::from_millis(lat[i]);
            let fail = fail_every > 0 && i.is_multiple_of(fail_every + 1);
            let done = done_r.clone();
            async move {
                tokio::time::sleep(wait).await;
                if fail {
                    return Err(RouteError::permanent(format!("record {i} is poison")));
                }
                done.lock().unwrap().insert(id);
                Ok(Receipt::new("all"))
            }
        };
        let report = rt().block_on(
            Pipeline::new(source)
                .decode(RawBytes)
                .classify(yes)
                .policy(always_notify())
                .route(router)
                .dead_letter(MarkingSink { done: done.clone(), inner: MemoryDeadLetter::new() })
                .max_in_flight(max_in_flight)
                .commit_every(commit_every, Duration::from_millis(30))
                .run(),
        ).unwrap();
        let v = violations.lock().unwrap();
        prop_assert!(v.is_empty(), "violations: {:?}", &v[..v.len().min(5)]);
        prop_assert_eq!(report.stats.records_in, n as u64);
        prop_assert!(report.stats.reconciles());
        prop_assert!(report.stats.peak_in_flight <= max_in_flight);
        // Every shard's final commit covers its last record.
        for (shard, pos) in stream.checkpoints() {
            let Position::Sequence(seq) = pos else { panic!("no shard end expected") };
            let per_shard = (0..n).filter(|i| i % shards == shard.as_str()[6..].parse::<usize>().unwrap()).count();
            prop_assert_eq!(seq.number.parse::<usize>().unwrap(), per_shard - 1);
        }
    }
}

/// Waits `delay(item)` of (virtual) time, then records the delivery.
struct SlowRecorder<F> {
    inner: RecordingRouter<Bytes>,
    delay: F,
}

impl<F: Fn(&Bytes) -> Duration + Send + Sync> Router<Bytes> for SlowRecorder<F> {
    async fn route(&self, d: &Delivery<'_, Bytes>) -> Result<Receipt, RouteError> {
        tokio::time::sleep((self.delay)(d.item)).await;
        self.inner.route(d).await
    }
}

/// Crash (the run is dropped mid-flight, no drain, no final commit), then
/// restart from the last commit: nothing is lost, and duplicates stay within
/// the uncommitted window.
#[test]
fn at_least_once_across_a_crash_and_restart() {
    let n = 2_000usize;
    let max_unacked = 64;
    let source =
        MemorySource::from_payloads(3, (0..n).map(|i| Bytes::from(i.to_string()))).batch_size(25);
    let router = RecordingRouter::<Bytes>::new();
    let slow = || SlowRecorder {
        inner: router.clone(),
        delay: |item: &Bytes| {
            let i: u64 = std::str::from_utf8(item).unwrap().parse().unwrap();
            Duration::from_millis(1 + (i * 7919) % 13)
        },
    };
    let build = |source: MemorySource| {
        Pipeline::new(source)
            .decode(RawBytes)
            .classify(yes)
            .policy(always_notify())
            .route(slow())
            .dead_letter(MemoryDeadLetter::new())
            .max_in_flight(16)
            .max_unacked(max_unacked)
            .commit_every(10, Duration::from_millis(50))
    };
    let rt = rt();
    // First run: crash after 300 ms of (virtual) time.
    let crashed = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(300), build(source.restart()).run()).await
    });
    assert!(
        crashed.is_err(),
        "the run should still be going when it crashes"
    );
    let first = router.len();
    assert!(
        first > 0 && first < n,
        "crash mid-stream: {first} delivered"
    );
    // Second run, from the last commit.
    let report = rt.block_on(build(source.restart()).run()).unwrap();
    assert!(report.stats.reconciles());
    let deliveries = router.deliveries();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for d in &deliveries {
        *seen.entry(d.record_id.clone()).or_default() += 1;
    }
    assert_eq!(seen.len(), n, "every record delivered at least once");
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    assert!(
        duplicates > 0,
        "a crash with work in flight redelivers something"
    );
    assert!(
        duplicates <= max_unacked,
        "{duplicates} duplicates exceed the uncommitted window of {max_unacked}"
    );
}

#[derive(Clone, Debug, serde::Deserialize, PartialEq)]
struct Msg {
    text: String,
}

/// Poison records are dead-lettered with their reason, and every other
/// record still goes through.
#[tokio::test(start_paused = true)]
async fn poison_records_go_to_dead_letter_and_the_stream_continues() {
    let huge_junk = vec![b'x'; 1024 * 1024];
    let too_large = {
        let mut v = br#"{"text":""#.to_vec();
        v.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        v.extend(br#""}"#);
        v
    };
    let payloads: Vec<Bytes> = vec![
        Bytes::from_static(br#"{"text":"ok 1"}"#),
        Bytes::from_static(b"\xff\xfe\x00garbage"),
        Bytes::from_static(br#"{"text":"ok 2"}"#),
        Bytes::from_static(br#"{"text": "unterminated"#),
        Bytes::new(),
        Bytes::from(huge_junk),
        Bytes::from(too_large),
        Bytes::from_static(br#"{"text":"ok 3"}"#),
        Bytes::from_static(br#"{"nope":1}"#),
    ];
    let source = MemorySource::from_payloads(1, payloads);
    let router = RecordingRouter::<Msg>::new();
    let dead = MemoryDeadLetter::new();
    let report = Pipeline::new(source)
        .json::<Msg>()
        .classify(|_: &Msg| async { Ok::<_, ClassifyError>(Prediction::binary("y", "n", 0.9)) })
        .policy(Policy::binary(0.5, "team"))
        .route(router.clone())
        .dead_letter(dead.clone())
        .run()
        .await
        .unwrap();
    let texts: Vec<String> = router
        .deliveries()
        .into_iter()
        .map(|d| d.item.text)
        .collect();
    assert_eq!(texts, ["ok 1", "ok 2", "ok 3"]);
    let kinds: Vec<(u64, String)> = dead
        .entries()
        .into_iter()
        .map(|d| (offset_of(&d.record.id), d.kind))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "invalid_utf8".to_string()),
            (3, "invalid_json".to_string()),
            (4, "empty".to_string()),
            (5, "invalid_json".to_string()),
            (6, "too_large".to_string()),
            (8, "invalid_json".to_string()),
        ]
    );
    let entries = dead.entries();
    let too_large = entries.iter().find(|d| d.kind == "too_large").unwrap();
    assert!(
        too_large
            .reason
            .contains("1048587 bytes exceeds the limit of 1048576"),
        "{}",
        too_large.reason
    );
    let missing = entries
        .iter()
        .find(|d| offset_of(&d.record.id) == 8)
        .unwrap();
    assert!(
        missing.reason.contains("missing field `text`"),
        "{}",
        missing.reason
    );
    assert!(
        entries
            .iter()
            .all(|d| d.stage == Stage::Decode && d.class == ErrorClass::Permanent)
    );
    assert_eq!(report.stats.dead_lettered, 6);
    assert_eq!(report.stats.decoded, 3);
    assert_eq!(report.checkpoints.len(), 1);
    assert_eq!(
        report.checkpoints[0].position,
        Position::Sequence(streamsift::Sequence::from_offset(8)),
        "the poison records do not hold back the checkpoint"
    );
}

/// A router that fails each record's first `k` attempts (k from the record)
/// retryably: records are retried until they succeed, within max_attempts;
/// those needing more are dead-lettered as retries exhausted.
#[tokio::test(start_paused = true)]
async fn retries_with_backoff_then_dead_letter_when_exhausted() {
    let attempts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let a = attempts.clone();
    let router = move |d: &Delivery<'_, Bytes>| {
        let i: u32 = std::str::from_utf8(d.item).unwrap().parse().unwrap();
        let mut map = a.lock().unwrap();
        let n = map.entry(d.record.id.clone()).or_default();
        *n += 1;
        let fails_first = i % 7; // 0..=6 failures before success
        let result = if *n <= fails_first {
            if i.is_multiple_of(2) {
                Err(RouteError::throttled("Rate exceeded"))
            } else {
                Err(RouteError::unavailable("HTTP 503"))
            }
        } else {
            Ok(Receipt::new("team"))
        };
        async move { result }
    };
    let dead = MemoryDeadLetter::new();
    let started = tokio::time::Instant::now();
    let report = Pipeline::new(MemorySource::from_payloads(
        2,
        (0..70).map(|i| i.to_string()),
    ))
    .decode(RawBytes)
    .classify(yes)
    .policy(always_notify())
    .route(router)
    .dead_letter(dead.clone())
    .retry(RetryPolicy {
        max_attempts: 5,
        ..RetryPolicy::default()
    })
    .run()
    .await
    .unwrap();
    // i % 7 in {5, 6} needs 6 or 7 attempts: more than 5, so dead-lettered.
    assert_eq!(report.stats.dead_lettered, 20);
    assert_eq!(report.stats.routed, 50);
    let expected_retries: u64 = (0..70u64).map(|i| (i % 7).min(4)).sum();
    assert_eq!(report.stats.retries, expected_retries);
    assert!(report.stats.throttled > 0 && report.stats.throttled < report.stats.retries);
    for d in dead.entries() {
        assert_eq!(d.stage, Stage::Route);
        assert_eq!(d.class, ErrorClass::Retryable);
        assert_eq!(d.attempts, 5);
        assert!(
            d.reason.starts_with("gave up after 5 attempts"),
            "{}",
            d.reason
        );
        assert_eq!(d.route.as_deref(), Some("all"));
    }
    // Backoff happened (virtual time moved) but stayed bounded.
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_millis(10) && waited < Duration::from_secs(60),
        "{waited:?}"
    );
}

/// Shutdown stops reading, drains what is in flight, commits, and reports.
#[tokio::test(start_paused = true)]
async fn shutdown_drains_in_flight_and_commits() {
    let source = MemorySource::from_payloads(2, (0..100_000).map(|i| i.to_string()))
        .batch_size(50)
        .endless();
    let stream = source.stream();
    let shutdown = Shutdown::new();
    let router = RecordingRouter::<Bytes>::new();
    let slow = SlowRecorder {
        inner: router.clone(),
        delay: |_: &Bytes| Duration::from_millis(40),
    };
    let run = tokio::spawn(
        Pipeline::new(source)
            .decode(RawBytes)
            .classify(yes)
            .policy(always_notify())
            .route(slow)
            .dead_letter(MemoryDeadLetter::new())
            .max_in_flight(32)
            .shutdown_handle(shutdown.clone())
            .run(),
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    shutdown.cancel();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.stopped, StopReason::Shutdown);
    assert!(report.stats.reconciles());
    assert!(report.stats.records_in > 100, "it ran for a while");
    assert!(report.stats.records_in < 100_000, "it stopped early");
    assert_eq!(
        router.len() as u64,
        report.stats.records_in,
        "every dispatched record was drained"
    );
    // The final commit covers everything delivered, shard by shard.
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for d in router.deliveries() {
        let (shard, off) = d.record_id.rsplit_once(':').unwrap();
        let e = last.entry(shard.to_string()).or_default();
        *e = (*e).max(off.parse().unwrap());
    }
    for (shard, pos) in stream.checkpoints() {
        assert_eq!(
            pos,
            Position::Sequence(streamsift::Sequence::from_offset(last[shard.as_str()]))
        );
    }
}

/// No more than max_in_flight records are processed at once, and the source
/// is not read ahead of the pipeline by more than one batch.
#[tokio::test(start_paused = true)]
async fn in_flight_bound_and_back_pressure_hold() {
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let source = MemorySource::from_payloads(4, (0..5_000).map(|i| i.to_string())).batch_size(20);
    let stream = source.stream();
    let ahead = Arc::new(AtomicUsize::new(0));
    let (c, p, f, s, a) = (
        current.clone(),
        peak.clone(),
        finished.clone(),
        stream.clone(),
        ahead.clone(),
    );
    let classifier = move |item: &Bytes| {
        let now = c.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        // Records read from the source but not finished.
        let read_not_done = s.delivered() as usize - f.load(Ordering::SeqCst);
        a.fetch_max(read_not_done, Ordering::SeqCst);
        let wait = Duration::from_millis(1 + item.len() as u64 % 5);
        let (c, f) = (c.clone(), f.clone());
        async move {
            tokio::time::sleep(wait).await;
            c.fetch_sub(1, Ordering::SeqCst);
            f.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ClassifyError>(Prediction::binary("y", "n", 0.0))
        }
    };
    let report = Pipeline::new(source)
        .decode(RawBytes)
        .classify(classifier)
        .policy(Policy::binary(0.5, "team"))
        .route(RecordingRouter::<Bytes>::new())
        .dead_letter(MemoryDeadLetter::new())
        .max_in_flight(24)
        .run()
        .await
        .unwrap();
    assert_eq!(report.stats.discarded, 5_000);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        24,
        "the limit is reached and never passed"
    );
    assert!(report.stats.peak_in_flight <= 24);
    let ahead = ahead.load(Ordering::SeqCst);
    assert!(
        ahead <= 24 + 20,
        "source read {ahead} records ahead of completion"
    );
}

/// A dead-letter sink that stays down stops the run without committing
/// past the record it could not store.
#[tokio::test(start_paused = true)]
async fn failing_dead_letter_sink_stops_without_committing_past_the_record() {
    struct Down;
    #[async_trait::async_trait]
    impl DeadLetterSink for Down {
        async fn store(&self, _: &DeadLetter) -> Result<(), DeadLetterError> {
            Err(DeadLetterError::unavailable("disk full"))
        }
    }
    let payloads: Vec<Bytes> = (0..50)
        .map(|i| {
            if i == 20 {
                Bytes::from_static(b"not json")
            } else {
                Bytes::from(format!("{{\"text\":\"{i}\"}}"))
            }
        })
        .collect();
    let source = MemorySource::from_payloads(1, payloads).batch_size(5);
    let stream = source.stream();
    let err = Pipeline::new(source)
        .json::<Msg>()
        .classify(|_: &Msg| async { Ok::<_, ClassifyError>(Prediction::binary("y", "n", 0.9)) })
        .policy(Policy::binary(0.5, "team"))
        .route(RecordingRouter::<Msg>::new())
        .dead_letter(Down)
        .max_in_flight(4)
        .run()
        .await
        .unwrap_err();
    let PipelineError::DeadLetter {
        record_id, report, ..
    } = &err
    else {
        panic!("unexpected {err}");
    };
    assert_eq!(record_id, "shard-0:20");
    assert!(
        err.to_string()
            .contains("stopped without committing past it")
    );
    assert_eq!(report.stats.unfinished, 1);
    assert_eq!(
        report.stats.decoded,
        report.stats.records_in - 1,
        "the undecodable record does not count as decoded"
    );
    assert!(report.stats.reconciles());
    let committed = stream.committed(&streamsift::ShardId::new("shard-0"));
    match committed {
        Some(Position::Sequence(seq)) => assert!(seq.number.parse::<u64>().unwrap() < 20),
        other => panic!("expected a commit before record 20, got {other:?}"),
    }
}

/// A closed shard's SHARD_END is committed once all its records are done.
#[tokio::test(start_paused = true)]
async fn closed_shards_commit_shard_end() {
    let source = MemorySource::from_payloads(2, (0..9).map(|i| i.to_string())).close_shards();
    let stream = source.stream();
    let report = Pipeline::new(source)
        .decode(RawBytes)
        .classify(yes)
        .policy(always_notify())
        .route(RecordingRouter::<Bytes>::new())
        .dead_letter(MemoryDeadLetter::new())
        .run()
        .await
        .unwrap();
    assert_eq!(report.stats.routed, 9);
    let cps = stream.checkpoints();
    assert_eq!(cps.len(), 2);
    assert!(cps.values().all(|p| *p == Position::ShardEnd), "{cps:?}");
}

/// A record that takes longer than the record timeout is dead-lettered as a
/// timeout and does not stall its shard.
#[tokio::test(start_paused = true)]
async fn record_timeout_dead_letters_the_slow_record() {
    let classifier = |item: &Bytes| {
        let stuck = item.as_ref() == b"3";
        async move {
            if stuck {
                std::future::pending::<()>().await;
            }
            Ok::<_, ClassifyError>(Prediction::binary("y", "n", 1.0))
        }
    };
    let dead = MemoryDeadLetter::new();
    let report = Pipeline::new(MemorySource::from_payloads(
        1,
        (0..6).map(|i| i.to_string()),
    ))
    .decode(RawBytes)
    .classify(classifier)
    .policy(always_notify())
    .route(RecordingRouter::<Bytes>::new())
    .dead_letter(dead.clone())
    .call_timeout(Duration::from_secs(2))
    .record_timeout(Duration::from_secs(5))
    .run()
    .await
    .unwrap();
    assert_eq!(report.stats.routed, 5);
    let entries = dead.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].record.id, "shard-0:3");
    assert_eq!(entries[0].stage, Stage::Classify);
    assert_eq!(entries[0].kind, "timeout");
}

/// Without a labeler, items in the review band go to the router on the
/// "review" route.
#[tokio::test(start_paused = true)]
async fn review_band_without_labeler_uses_the_review_route() {
    let classifier = |item: &Bytes| {
        let score: f64 = std::str::from_utf8(item).unwrap().parse().unwrap();
        async move { Ok::<_, ClassifyError>(Prediction::binary("y", "n", score)) }
    };
    let router = RecordingRouter::<Bytes>::new();
    let report = Pipeline::new(MemorySource::from_payloads(
        1,
        ["0.9", "0.35", "0.1", "0.5"],
    ))
    .decode(RawBytes)
    .classify(classifier)
    .policy(Policy::binary(0.5, "team").with_review_band(0.3, 0.5))
    .route(router.clone())
    .dead_letter(MemoryDeadLetter::new())
    .run()
    .await
    .unwrap();
    let routes: Vec<String> = router
        .deliveries()
        .iter()
        .map(|d| d.route.to_string())
        .collect();
    assert_eq!(routes.len(), 3);
    assert_eq!(routes.iter().filter(|r| *r == "review").count(), 1);
    assert_eq!(report.stats.sent_for_review, 1);
    assert_eq!(report.stats.routed, 2);
    assert_eq!(report.stats.discarded, 1);
}

/// With fast components and a fast source, checkpoints keep up with the
/// stream: a commit about every `commit_every` records, and the committed
/// position never lags the records read by more than the unacked window
/// plus a batch. (A select that starved the commit future once broke this.)
#[tokio::test(start_paused = true)]
async fn commits_keep_up_under_load() {
    struct LagProbe {
        inner: MemorySource,
        worst_lag: Arc<AtomicUsize>,
    }
    impl Source for LagProbe {
        async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
            self.inner.next_batch().await
        }
        async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
            let stream = self.inner.stream();
            let read = stream.delivered() as usize;
            let mut per_shard: BTreeMap<String, usize> = BTreeMap::new();
            for (shard, pos) in stream.checkpoints() {
                if let Position::Sequence(seq) = pos {
                    per_shard.insert(shard.to_string(), seq.number.parse::<usize>().unwrap() + 1);
                }
            }
            for cp in &checkpoints {
                if let Position::Sequence(seq) = &cp.position {
                    per_shard.insert(
                        cp.shard.to_string(),
                        seq.number.parse::<usize>().unwrap() + 1,
                    );
                }
            }
            let done: usize = per_shard.values().sum();
            self.worst_lag.fetch_max(read - done, Ordering::SeqCst);
            self.inner.commit(checkpoints).await
        }
    }
    let worst_lag = Arc::new(AtomicUsize::new(0));
    let source = LagProbe {
        inner: MemorySource::from_payloads(2, (0..20_000).map(|i| i.to_string())).batch_size(100),
        worst_lag: worst_lag.clone(),
    };
    let stream = source.inner.stream();
    let report = Pipeline::new(source)
        .decode(RawBytes)
        .classify(yes)
        .policy(always_notify())
        .route(|_: &Delivery<'_, Bytes>| async { Ok::<_, RouteError>(Receipt::new("all")) })
        .dead_letter(MemoryDeadLetter::new())
        .max_unacked(1_000)
        .commit_every(500, Duration::from_secs(3600))
        .run()
        .await
        .unwrap();
    assert_eq!(report.stats.routed, 20_000);
    let commits = stream.commit_count();
    assert!(
        (36..=41).contains(&commits),
        "{commits} commits for 20,000 records every 500"
    );
    let lag = worst_lag.load(Ordering::SeqCst);
    assert!(
        lag <= 1_000 + 100,
        "checkpoints lagged {lag} records behind the reads"
    );
}

/// Running without a policy is a clear configuration error.
#[tokio::test]
async fn missing_policy_is_a_config_error() {
    let err = Pipeline::new(MemorySource::from_payloads(1, ["x"]))
        .decode(RawBytes)
        .classify(yes)
        .route(RecordingRouter::<Bytes>::new())
        .dead_letter(MemoryDeadLetter::new())
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, PipelineError::Config(ConfigError::NoPolicy)));
    assert!(err.to_string().contains("add `.policy("), "{err}");
}

/// A labeler that records the ids it was given.
#[derive(Clone, Default)]
struct IdLabeler(Arc<Mutex<Vec<String>>>);

#[async_trait::async_trait]
impl Labeler<Bytes> for IdLabeler {
    async fn submit(&self, tasks: &[LabelTask<'_, Bytes>]) -> Result<Vec<TaskId>, LabelError> {
        let mut ids = self.0.lock().unwrap();
        ids.extend(tasks.iter().map(|t| t.item_id.to_string()));
        Ok(tasks
            .iter()
            .map(|t| TaskId(t.item_id.to_string()))
            .collect())
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        Ok(Vec::new())
    }
}

fn score_classifier(item: &Bytes) -> std::future::Ready<Result<Prediction, ClassifyError>> {
    let score: f64 = std::str::from_utf8(item).unwrap().parse().unwrap();
    std::future::ready(Ok(Prediction::binary("y", "n", score)))
}

/// A labeler set before `decode()` is kept: review items reach it, not the
/// router. (The old builder dropped it in `decode()`, so they went to the
/// router's "review" route.)
#[tokio::test(start_paused = true)]
async fn decode_after_review_keeps_the_labeler() {
    let labeler = IdLabeler::default();
    let router = RecordingRouter::<Bytes>::new();
    let report = Pipeline::new(MemorySource::from_payloads(1, ["0.9", "0.35", "0.1"]))
        .decode(RawBytes)
        .review(labeler.clone())
        .decode(RawBytes)
        .classify(score_classifier)
        .policy(Policy::binary(0.5, "team").with_review_band(0.3, 0.5))
        .route(router.clone())
        .dead_letter(MemoryDeadLetter::new())
        .run()
        .await
        .unwrap();
    assert_eq!(*labeler.0.lock().unwrap(), ["shard-0:1"]);
    let routes: Vec<String> = router
        .deliveries()
        .iter()
        .map(|d| d.route.to_string())
        .collect();
    assert_eq!(routes, ["team"], "the review item went to the labeler");
    assert_eq!(report.stats.sent_for_review, 1);
}

/// A source that counts its reads, to show a refused pipeline read nothing.
struct CountingSource(MemorySource, Arc<AtomicUsize>);

impl Source for CountingSource {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.next_batch().await
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        self.0.commit(checkpoints).await
    }
}

/// A policy with a review band, no labeler, and a router that cannot say it
/// handles "review" (a closure) is refused before anything is read, with a
/// message naming what to add. (The old pipeline ran it and dead-lettered
/// the review items.)
#[tokio::test(start_paused = true)]
async fn review_items_with_nowhere_to_go_are_refused_before_reading() {
    let reads = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicUsize::new(0));
    let seen = delivered.clone();
    let router = move |d: &Delivery<'_, Bytes>| {
        seen.fetch_add(1, Ordering::SeqCst);
        let route = d.route.clone();
        async move {
            if route == "team" {
                Ok(Receipt::new(route))
            } else {
                Err(RouteError::permanent(format!("no route {route}")))
            }
        }
    };
    let source = CountingSource(
        MemorySource::from_payloads(1, ["0.9", "0.35", "0.1"]),
        reads.clone(),
    );
    let dead = MemoryDeadLetter::new();
    let err = Pipeline::new(source)
        .decode(RawBytes)
        .classify(score_classifier)
        .policy(Policy::binary(0.5, "team").with_review_band(0.3, 0.5))
        .route(router)
        .dead_letter(dead.clone())
        .run()
        .await
        .expect_err("review items would have nowhere to go");
    assert!(
        matches!(
            err,
            PipelineError::Config(ConfigError::ReviewUnhandled { router_says: None })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(".review(labeler)") && text.contains(".review_via_router()"),
        "{text}"
    );
    assert_eq!(reads.load(Ordering::SeqCst), 0, "nothing was read");
    assert_eq!(delivered.load(Ordering::SeqCst), 0, "nothing was routed");
    assert!(dead.is_empty());
}

/// The three ways to say where review items go, each accepted: a labeler,
/// a router that knows its "review" route (`ByLabel`), or an explicit
/// `review_via_router()`. A `ByLabel` without one is refused, saying so.
#[tokio::test(start_paused = true)]
async fn review_items_need_a_labeler_a_review_route_or_an_explicit_opt_in() {
    let policy = || Policy::by_label(&["y"], &[], 0.9);
    let notify = |d: &Delivery<'_, Bytes>| {
        let route = d.route.clone();
        async move { Ok::<_, RouteError>(Receipt::new(route)) }
    };
    let classes = ["0.95", "0.6"];
    let classify = score_classifier;

    let with_route = Pipeline::new(MemorySource::from_payloads(1, classes))
        .decode(RawBytes)
        .classify(classify)
        .policy(policy())
        .route(ByLabel::new().on("y", notify).on(REVIEW_ROUTE, notify))
        .dead_letter(MemoryDeadLetter::new())
        .run()
        .await
        .unwrap();
    assert_eq!(
        (with_route.stats.routed, with_route.stats.sent_for_review),
        (1, 1)
    );

    let opted_in = Pipeline::new(MemorySource::from_payloads(1, classes))
        .decode(RawBytes)
        .classify(classify)
        .policy(policy())
        .route(notify)
        .review_via_router()
        .dead_letter(MemoryDeadLetter::new())
        .run()
        .await
        .unwrap();
    assert_eq!(opted_in.stats.sent_for_review, 1);

    let labeler = IdLabeler::default();
    let labeled = Pipeline::new(MemorySource::from_payloads(1, classes))
        .decode(RawBytes)
        .classify(classify)
        .policy(policy())
        .route(notify)
        .review(labeler.clone())
        .dead_letter(MemoryDeadLetter::new())
        .run()
        .await
        .unwrap();
    assert_eq!(labeled.stats.sent_for_review, 1);
    assert_eq!(labeler.0.lock().unwrap().len(), 1);

    let err = Pipeline::new(MemorySource::from_payloads(1, classes))
        .decode(RawBytes)
        .classify(classify)
        .policy(policy())
        .route(ByLabel::new().on("y", notify))
        .dead_letter(MemoryDeadLetter::new())
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::Config(ConfigError::ReviewUnhandled {
                router_says: Some(false)
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no \"review\" route"), "{err}");
}

/// A dead-letter file whose directory is missing fails when the sink is
/// made, naming the path, so the pipeline is never built and no record is
/// routed. (The old sink opened the file on the first failure, mid-run,
/// after other records had been routed.)
#[tokio::test(start_paused = true)]
async fn an_unwritable_dead_letter_path_fails_before_the_first_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("dead.jsonl");
    let router = RecordingRouter::<Bytes>::new();
    let run = async {
        let sink = JsonLinesDeadLetter::create(&path)?;
        Pipeline::new(MemorySource::from_payloads(1, ["0.9", "not a number"]))
            .decode(RawBytes)
            .classify(yes)
            .policy(always_notify())
            .route(router.clone())
            .dead_letter(sink)
            .run()
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let err = run.await.expect_err("the path cannot be written");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(router.len(), 0, "no record was routed");
    assert!(
        !path.parent().unwrap().exists(),
        "no directory made unasked"
    );
}

/// `Arc<R>` is a router and `Arc<C>` a classifier, so one instance can be
/// shared by several pipelines.
#[tokio::test(start_paused = true)]
async fn arc_router_and_arc_classifier_work_in_a_pipeline() {
    let router = Arc::new(RecordingRouter::<Bytes>::new());
    type ScoreFn = fn(&Bytes) -> std::future::Ready<Result<Prediction, ClassifyError>>;
    let classifier: Arc<ScoreFn> = Arc::new(score_classifier);
    for _ in 0..2 {
        Pipeline::new(MemorySource::from_payloads(1, ["0.9", "0.1"]))
            .decode(RawBytes)
            .classify(Arc::clone(&classifier))
            .policy(Policy::binary(0.5, "team"))
            .route(Arc::clone(&router))
            .dead_letter(Arc::new(MemoryDeadLetter::new()))
            .run()
            .await
            .unwrap();
    }
    assert_eq!(
        router.len(),
        2,
        "one delivery per run, to the shared router"
    );
    assert_eq!(
        Router::<Bytes>::handles_route(&router, &REVIEW_ROUTE),
        Some(true),
        "the Arc answers for its router"
    );
}
