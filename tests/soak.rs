//! Fault-injection soak: every component wrapped in a fault injector, a
//! long stream, and exact accounting at the end.
//!
//! - source: 10% of calls (reads and commits) throttled;
//! - classifier: 5% of calls fail retryably, 0.1% of tweets fail
//!   permanently (the same tweets on every call);
//! - router: 2% of calls time out, 1% are slow (50 ms).
//!
//! The run must finish, reconcile exactly (per shard and in total, against
//! what the router and the dead-letter sink recorded), keep in-flight records
//! and resident memory bounded for the whole run (RSS sampled from
//! `/proc/self/statm` every 5 ms on another thread), and dead-letter exactly
//! the tweets the injector failed permanently.
//!
//! `soak_reduced` (100,000 records) runs in CI. The full size:
//! `cargo test --test soak -- --ignored --nocapture soak_full`
//! (`STREAMSIFT_SOAK_RECORDS` overrides the size of either).
//!
//! The clock is paused (`start_paused`), so injected latency and backoff
//! cost no wall time; the wall time measured is the pipeline's own work.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::reconcile::{Coverage, check_report};
use streamsift::fakes::{FaultKind, FaultPlan, Faulty, MemorySource};
use streamsift::{
    Classifier, ClassifyError, Delivery, MemoryDeadLetter, Pipeline, Policy, Prediction, Receipt,
    RetryPolicy, RouteError, Router, RunReport, Stage,
};

const SHARDS: usize = 4;
const MAX_IN_FLIGHT: usize = 256;
const MAX_UNACKED: usize = 4_096;
const SLOW: Duration = Duration::from_millis(50);

#[derive(Debug, serde::Deserialize)]
struct Tweet {
    id: u64,
    text: String,
    #[allow(dead_code)] // read only to make the payload full size
    user: User,
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct User {
    screen_name: String,
    followers_count: u64,
}

/// A tweet-sized payload (about 330 bytes), made on demand.
fn payload(id: u64) -> Bytes {
    let words = [
        "is", "down", "again", "love", "the", "new", "console", "503", "help", "please",
    ];
    let mut text = String::new();
    let mut h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for _ in 0..24 {
        text.push_str(words[(h % words.len() as u64) as usize]);
        text.push(' ');
        h = h.rotate_left(7) ^ id;
    }
    Bytes::from(format!(
        "{{\"id\":{id},\"text\":\"{text}\",\"lang\":\"en\",\"user\":{{\"screen_name\":\"user_{}\",\
         \"followers_count\":{}}},\"entities\":{{\"hashtags\":[],\"urls\":[]}}}}",
        id % 9_973,
        id % 1_000
    ))
}

/// The actionable score of a tweet: a pure function of its id, so the
/// expected route of every tweet is known.
fn score(id: u64) -> f64 {
    ((id.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 11) % 1000) as f64 / 1000.0
}

/// Sits between the two classifier injectors: counts concurrent calls
/// (in-flight) and records the tweets the inner, permanent injector failed
/// (the injector's own record of its permanent faults).
struct Witness<C> {
    inner: C,
    seen: Arc<Seen>,
}

#[derive(Default)]
struct Seen {
    now: AtomicUsize,
    peak: AtomicUsize,
    permanent: Mutex<HashSet<u64>>,
}

impl<C: Classifier<Tweet>> Classifier<Tweet> for Witness<C> {
    async fn classify(&self, item: &Tweet) -> Result<Prediction, ClassifyError> {
        let seen = &self.seen;
        let n = seen.now.fetch_add(1, Ordering::Relaxed) + 1;
        seen.peak.fetch_max(n, Ordering::Relaxed);
        let result = self.inner.classify(item).await;
        seen.now.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = &result
            && !e.is_retryable()
        {
            seen.permanent.lock().unwrap().insert(item.id);
        }
        result
    }
}

/// Counts deliveries per tweet (one byte each, allocated before the run)
/// and per shard.
struct Counter(Arc<Counts>);

struct Counts {
    per_tweet: Vec<AtomicU8>,
    per_shard: Mutex<BTreeMap<String, u64>>,
}

impl Router<Tweet> for Counter {
    async fn route(&self, d: &Delivery<'_, Tweet>) -> Result<Receipt, RouteError> {
        let slot = self
            .0
            .per_tweet
            .get(d.item.id as usize)
            .ok_or_else(|| RouteError::permanent("tweet id outside the stream"))?;
        slot.fetch_add(1, Ordering::Relaxed);
        *self
            .0
            .per_shard
            .lock()
            .unwrap()
            .entry(d.record.shard.to_string())
            .or_default() += 1;
        Ok(Receipt::new(d.route.clone()))
    }
}

/// Counts calls of the wrapped router that took at least [`SLOW`], and
/// the most calls in progress at once (records waiting on the router: the
/// slow ones pile up here).
struct SlowCount<R> {
    inner: R,
    slow: Arc<AtomicU64>,
    seen: Arc<Seen>,
}

impl<R: Router<Tweet>> Router<Tweet> for SlowCount<R> {
    async fn route(&self, d: &Delivery<'_, Tweet>) -> Result<Receipt, RouteError> {
        let n = self.seen.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.seen.peak.fetch_max(n, Ordering::Relaxed);
        let t = tokio::time::Instant::now();
        let r = self.inner.route(d).await;
        self.seen.now.fetch_sub(1, Ordering::Relaxed);
        if t.elapsed() >= SLOW {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

/// Resident set size now, from `/proc/self/statm` (pages of 4 KiB).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

struct Figures {
    report: RunReport,
    records: u64,
    source_faults: u64,
    classify_retryable: u64,
    classify_permanent: u64,
    route_timeouts: u64,
    route_slow: u64,
    dead_letters: usize,
    peak_in_flight: usize,
    rss_baseline: u64,
    rss_peak: u64,
    rss_first_half_peak: u64,
    rss_second_half_peak: u64,
    samples: usize,
    wall: Duration,
}

async fn soak(records: u64) -> Figures {
    let n = records as usize;
    let source = Faulty::new(
        MemorySource::from_iter(SHARDS, (0..records).map(payload)).batch_size(100),
        FaultPlan::new()
            .fail_with_probability(0.10)
            .kind(FaultKind::Throttled)
            .seed(11),
    );
    let source_probe = source.clone();
    let inner = |t: &Tweet| {
        let s = score(t.id);
        let ok = !t.text.is_empty();
        async move {
            if ok {
                Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", s))
            } else {
                Err(ClassifyError::permanent("empty tweet"))
            }
        }
    };
    let permanent = Faulty::new(
        inner,
        FaultPlan::new()
            .keyed()
            .fail_with_probability(0.001)
            .kind(FaultKind::Permanent)
            .seed(22),
    )
    .key_by(|t: &Tweet| t.id.to_string());
    let permanent_probe = permanent.clone();
    let witness = Arc::new(Seen::default());
    let classifier = Faulty::new(
        Witness {
            inner: permanent,
            seen: Arc::clone(&witness),
        },
        FaultPlan::new()
            .fail_with_probability(0.05)
            .kind(FaultKind::Retryable)
            .seed(33),
    );
    let classifier_probe = classifier.clone();
    let counter = Arc::new(Counts {
        per_tweet: (0..n).map(|_| AtomicU8::new(0)).collect(),
        per_shard: Mutex::new(BTreeMap::new()),
    });
    let faulty_router = Faulty::new(
        Counter(Arc::clone(&counter)),
        FaultPlan::new()
            .fail_with_probability(0.02)
            .kind(FaultKind::Timeout)
            .slow_with_probability(0.01, SLOW)
            .seed(44),
    );
    let router_probe = faulty_router.clone();
    let slow = Arc::new(AtomicU64::new(0));
    let routing = Arc::new(Seen::default());
    let router = SlowCount {
        inner: faulty_router,
        slow: Arc::clone(&slow),
        seen: Arc::clone(&routing),
    };
    let dead = MemoryDeadLetter::new();

    // RSS sampler: a baseline now (inputs allocated), then every 5 ms.
    let rss_baseline = rss_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push(rss_bytes());
                std::thread::sleep(Duration::from_millis(5));
            }
            samples.push(rss_bytes());
            samples
        })
    };

    let wall = Instant::now();
    let report = Pipeline::new(source)
        .json::<Tweet>()
        .classify(classifier)
        .policy(Policy::binary(0.5, "oncall"))
        .route(router)
        .dead_letter(dead.clone())
        .max_in_flight(MAX_IN_FLIGHT)
        .max_unacked(MAX_UNACKED)
        .commit_every(1_000, Duration::from_secs(1))
        .retry(RetryPolicy {
            max_attempts: 12,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(100),
            multiplier: 2.0,
        })
        .call_timeout(Duration::from_secs(1))
        .record_timeout(Duration::from_secs(120))
        .run()
        .await
        .expect("the soak run finishes");
    let wall = wall.elapsed();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();

    // --- Exact reconciliation.
    check_report(&report).unwrap();
    let stats = &report.stats;
    assert_eq!(
        stats.records_in, records,
        "every record was dispatched once"
    );
    assert_eq!(stats.unfinished, 0);
    assert_eq!(stats.sent_for_review, 0);

    let dead_entries = dead.entries();
    let mut dead_ids: HashSet<u64> = HashSet::new();
    let mut dead_per_shard: BTreeMap<String, u64> = BTreeMap::new();
    for dl in &dead_entries {
        assert_eq!(dl.stage, Stage::Classify, "{dl:?}");
        assert!(
            dl.class == streamsift::ErrorClass::Permanent,
            "only permanent failures: {dl:?}"
        );
        let tweet: Tweet = serde_json::from_slice(&dl.record.payload).unwrap();
        assert!(
            dead_ids.insert(tweet.id),
            "dead-lettered twice: {}",
            tweet.id
        );
        *dead_per_shard
            .entry(dl.record.shard.to_string())
            .or_default() += 1;
    }
    // Exactly the permanent faults, no more, no fewer.
    let permanent = witness.permanent.lock().unwrap().clone();
    assert_eq!(
        dead_ids, permanent,
        "the dead letters are not exactly the injected permanent faults"
    );
    assert_eq!(permanent.len() as u64, permanent_probe.injected());

    // Every tweet: routed exactly once if actionable and not poisoned,
    // otherwise never; discarded ones are the rest.
    let mut coverage = Coverage::new((0..records).map(|i| i.to_string()));
    let mut expected_discards = 0;
    for (id, slot) in counter.per_tweet.iter().enumerate() {
        let id = id as u64;
        let delivered = u64::from(slot.load(Ordering::Relaxed));
        let expected = u64::from(!dead_ids.contains(&id) && score(id) >= 0.5);
        assert_eq!(
            delivered, expected,
            "tweet {id} delivered {delivered} times"
        );
        if !dead_ids.contains(&id) && score(id) < 0.5 {
            expected_discards += 1;
            coverage.handled(&id.to_string());
        }
        for _ in 0..delivered {
            coverage.handled(&id.to_string());
        }
        if dead_ids.contains(&id) {
            coverage.handled(&id.to_string());
        }
    }
    let cov = coverage.check().unwrap();
    assert_eq!(
        cov.duplicates, 0,
        "a run without crashes handles each record once"
    );
    assert_eq!(stats.discarded, expected_discards);
    assert_eq!(stats.dead_lettered, dead_ids.len() as u64);
    let per_shard = counter.per_shard.lock().unwrap().clone();
    for (shard, st) in &stats.shards {
        assert_eq!(
            st.routed,
            per_shard.get(shard.as_str()).copied().unwrap_or(0),
            "{shard}"
        );
        assert_eq!(
            st.dead_lettered,
            dead_per_shard.get(shard.as_str()).copied().unwrap_or(0),
            "{shard}"
        );
    }

    // --- Faults really were injected, and retried.
    assert!(source_probe.injected() > 0);
    assert!(classifier_probe.injected() > 0);
    assert!(router_probe.injected() > 0);
    assert!(slow.load(Ordering::Relaxed) > 0);
    assert_eq!(
        stats.retries,
        classifier_probe.injected() + router_probe.injected(),
        "each retryable fault costs one retry"
    );

    // --- Bounds for the whole run.
    let peak_in_flight = witness
        .peak
        .load(Ordering::Relaxed)
        .max(routing.peak.load(Ordering::Relaxed));
    assert!(peak_in_flight > 1, "the slow router calls overlap");
    assert!(
        peak_in_flight <= MAX_IN_FLIGHT,
        "{peak_in_flight} in flight"
    );
    assert!(stats.peak_in_flight <= MAX_IN_FLIGHT);
    let rss_peak = samples.iter().copied().max().unwrap_or(0);
    let half = samples.len() / 2;
    let first = samples[..half].iter().copied().max().unwrap_or(0);
    let second = samples[half..].iter().copied().max().unwrap_or(0);
    Figures {
        records,
        source_faults: source_probe.injected(),
        classify_retryable: classifier_probe.injected(),
        classify_permanent: permanent_probe.injected(),
        route_timeouts: router_probe.injected(),
        route_slow: slow.load(Ordering::Relaxed),
        dead_letters: dead_entries.len(),
        peak_in_flight,
        rss_baseline,
        rss_peak,
        rss_first_half_peak: first,
        rss_second_half_peak: second,
        samples: samples.len(),
        wall,
        report,
    }
}

fn print_and_check_memory(f: &Figures) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let s = &f.report.stats;
    println!(
        "soak: {} records in {:.1} s wall; faults injected: source throttled {}, classify \
         retryable {}, classify permanent {}, route timeouts {}, route slow {}; retries {} \
         (throttled {}), source retries {}, commit failures {}, commits {}; routed {}, discarded \
         {}, dead letters {}; peak in flight {} in components, {} in the pipeline's count (limit \
         {MAX_IN_FLIGHT}); RSS baseline {:.1} MiB, \
         peak {:.1} MiB (first half {:.1}, second half {:.1}; {} samples)",
        f.records,
        f.wall.as_secs_f64(),
        f.source_faults,
        f.classify_retryable,
        f.classify_permanent,
        f.route_timeouts,
        f.route_slow,
        s.retries,
        s.throttled,
        s.source_retries,
        s.commit_failures,
        s.commits,
        s.routed,
        s.discarded,
        f.dead_letters,
        f.peak_in_flight,
        s.peak_in_flight,
        mib(f.rss_baseline),
        mib(f.rss_peak),
        mib(f.rss_first_half_peak),
        mib(f.rss_second_half_peak),
        f.samples,
    );
    // Bounded: the run adds at most 64 MiB over the baseline (inputs
    // allocated), and the second half of the run does not grow past the
    // first by more than 8 MiB (no per-record leak: 8 MiB over half a
    // million records would be 16 bytes each).
    assert!(
        f.rss_peak <= f.rss_baseline + 64 * 1024 * 1024,
        "RSS grew from {:.1} to {:.1} MiB",
        mib(f.rss_baseline),
        mib(f.rss_peak)
    );
    assert!(
        f.rss_second_half_peak <= f.rss_first_half_peak + 8 * 1024 * 1024,
        "RSS kept growing: {:.1} MiB in the first half, {:.1} MiB in the second",
        mib(f.rss_first_half_peak),
        mib(f.rss_second_half_peak)
    );
}

fn records_from_env(default: u64) -> u64 {
    std::env::var("STREAMSIFT_SOAK_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(start_paused = true)]
async fn soak_reduced() {
    let f = soak(records_from_env(100_000)).await;
    print_and_check_memory(&f);
}

/// The full size: `cargo test --test soak -- --ignored --nocapture soak_full`.
#[tokio::test(start_paused = true)]
#[ignore = "full size (1M records); run by hand, see the soak section of benches/README.md"]
async fn soak_full() {
    let f = soak(records_from_env(1_000_000)).await;
    print_and_check_memory(&f);
}

// The reconciliation helpers must be able to fail.
#[test]
fn reconcile_helpers_catch_broken_accounts() {
    let mut report = RunReport {
        stats: Default::default(),
        checkpoints: Vec::new(),
        elapsed: Duration::ZERO,
        stopped: streamsift::StopReason::SourceExhausted,
        active: None,
    };
    report.stats.records_in = 3;
    report.stats.routed = 2;
    report.stats.routed_by_route.insert("a".into(), 2);
    report.stats.discarded = 1;
    assert!(check_report(&report).is_ok());
    report.stats.discarded = 0;
    assert!(check_report(&report).unwrap_err().contains("totals"));
    report.stats.discarded = 1;
    report.stats.shards.insert(
        "s".into(),
        streamsift::ShardStats {
            records_in: 2,
            routed: 2,
            ..Default::default()
        },
    );
    assert!(check_report(&report).unwrap_err().contains("add up"));
    let err =
        common::reconcile::check_run(&report, [("s", "s:0")], std::iter::empty()).unwrap_err();
    assert!(err.contains("add up"), "{err}");

    let mut c = Coverage::new(["a", "b", "c"]);
    c.handled("a");
    c.handled("b");
    assert!(c.check().unwrap_err().contains("lost"));
    c.handled("c");
    c.handled("c");
    let r = c.check().unwrap();
    assert_eq!(
        (r.duplicates, r.max_handled, r.records_with_duplicates),
        (1, 2, 1)
    );
    c.handled("zzz");
    assert!(c.check().unwrap_err().contains("not in the stream"));
}
