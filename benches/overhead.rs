//! What the [`Pipeline`] costs per record, and how well it hides latency
//! (issue 2).
//!
//! **(a) Overhead.** A no-op classifier and a no-op router over 1M small
//! records from [`MemorySource::from_records`], timed per record against two
//! baselines doing the same calls on the same fakes, and a floor:
//!
//! - `hand_loop`: for each batch from the source, decode, classify, decide
//!   and route each record in turn, then commit the batch's last position;
//! - `buffer_unordered`: the records of every batch flattened into one
//!   stream, `decode + classify + policy + route` per record through
//!   `futures::StreamExt::buffer_unordered` at the pipeline's concurrency
//!   (no checkpoints at all);
//! - `source_drain`: only reads the batches and drops the records, the floor
//!   every variant pays (making and freeing 1M records is not free).
//!
//! The classifier scores one record in ten (payload starting with `!`) at
//! 0.9 and the rest at 0.1; the policy is a binary threshold of 0.5, so 10%
//! are routed and 90% discarded, and both paths are exercised. Its
//! prediction carries no score list, so it allocates nothing: what is
//! measured is the plumbing, not the classifier. The decoder is
//! [`RawBytes`] (a reference-count bump on a static payload).
//!
//! The pipeline runs as it always does, with ordered checkpoints, here
//! asked to commit every 1,000 records, at `max_in_flight` 256; the summary
//! counts the commit calls the source really saw. Records are built outside
//! the timed section (`iter_batched`), and every variant runs on the same
//! current-thread tokio runtime.
//!
//! **(b) Latency hiding.** A classifier that sleeps 1 ms (real time, not
//! paused) at `max_in_flight` 1, 16 and 256: throughput against the ideal
//! `concurrency / latency`, and against a `buffer_unordered` chain doing the
//! same sleep at the same concurrency in the same run. Tokio's timer has a
//! 1 ms resolution and rounds deadlines *up* to the next tick, so a 1 ms
//! sleep takes more than 1 ms (about 2 ms here); the summary prints what a
//! 1 ms sleep really took on this machine so the percentages can be read
//! against it.
//!
//! After the criterion groups the bench prints a summary measured in this
//! same run (the median of several timed runs of each variant, interleaved)
//! with the ratios issue 2 sets targets for.
//!
//! ```text
//! cargo bench --bench overhead             # full run, ~2 min
//! cargo bench --bench overhead -- --test   # quick check with few records
//! cargo test --benches                     # the same quick check
//! ```

use std::future::{Future, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use futures::StreamExt as _;
use streamsift::fakes::MemorySource;
use streamsift::{
    Action, Checkpoint, Classifier, ClassifyError, Decoder, Delivery, Label, MemoryDeadLetter,
    Pipeline, Policy, Position, Prediction, REVIEW_ROUTE, RawBytes, Receipt, Record, RouteError,
    Router, Sequence, ShardId, Source,
};
use tokio::runtime::Runtime;

/// Concurrency of the pipeline and of the `buffer_unordered` baseline.
const MAX_IN_FLIGHT: usize = 256;
/// The pipeline commits after this many completed records.
const COMMIT_EVERY: u64 = 1_000;
/// Records are spread over this many shards, round robin.
const SHARDS: u64 = 4;
/// One record in this many is actionable (scores above the threshold).
const ROUTE_ONE_IN: u64 = 10;
const THRESHOLD: f64 = 0.5;
const POSITIVE: &str = "actionable";
const NEGATIVE: &str = "noise";
const ROUTE: &str = "oncall";
const ALERT: &[u8] = b"!db-3 disk full, writes failing";
const NOISE: &[u8] = b"lovely weather for a coffee run";

/// Records per run for (a), and the timed repetitions per variant for the
/// summary.
const FULL_RECORDS: u64 = 1_000_000;
const FULL_REPS: usize = 5;
const TEST_RECORDS: u64 = 10_000;
const TEST_REPS: usize = 1;

/// The simulated classifier latency for (b), and (concurrency, records) per
/// run: each full run takes about 0.5-1.5 s.
const LATENCY: Duration = Duration::from_millis(1);
const FULL_LATENCY_RUNS: [(usize, u64); 3] = [(1, 500), (16, 8_000), (256, 100_000)];
const TEST_LATENCY_RUNS: [(usize, u64); 3] = [(1, 20), (16, 320), (256, 2_560)];
const FULL_LATENCY_REPS: usize = 3;

/// Targets: the ratio from issue 13 (it was 1.5 in issue 2), the rest from issue 2.
const TARGET_RATIO: f64 = 1.15;
const TARGET_NS_PER_RECORD: f64 = 150.0;
const TARGET_LATENCY_PERCENT: f64 = 90.0;

// ---------------------------------------------------------------------------
// Components

/// The fixed prediction for an item: 0.9 for an alert, 0.1 otherwise. No
/// score list, so nothing is allocated.
fn prediction_for(item: &Bytes) -> Prediction {
    let score = if item.first() == Some(&b'!') {
        0.9
    } else {
        0.1
    };
    let label = if score >= 0.5 { POSITIVE } else { NEGATIVE };
    Prediction {
        label: Label::from_static(label),
        scores: Vec::new(),
        positive_score: Some(score),
        decided_by: None,
    }
}

/// Returns the fixed prediction at once.
#[derive(Clone, Copy, Debug, Default)]
struct NoopClassifier;

impl Classifier<Bytes> for NoopClassifier {
    async fn classify(&self, item: &Bytes) -> Result<Prediction, ClassifyError> {
        Ok(prediction_for(item))
    }
}

/// Returns the fixed prediction after sleeping `latency` (real time).
#[derive(Clone, Copy, Debug)]
struct SleepyClassifier {
    latency: Duration,
}

impl Classifier<Bytes> for SleepyClassifier {
    async fn classify(&self, item: &Bytes) -> Result<Prediction, ClassifyError> {
        tokio::time::sleep(self.latency).await;
        Ok(prediction_for(item))
    }
}

/// Accepts every delivery and does nothing with it.
#[derive(Clone, Copy, Debug, Default)]
struct NoopRouter;

impl Router<Bytes> for NoopRouter {
    async fn route(&self, d: &Delivery<'_, Bytes>) -> Result<Receipt, RouteError> {
        Ok(Receipt::new(d.route.clone()))
    }
}

fn policy() -> Policy {
    Policy::binary(THRESHOLD, ROUTE)
}

/// `n` small records over [`SHARDS`] shards; one in [`ROUTE_ONE_IN`] is an
/// alert.
fn make_records(n: u64) -> Vec<Record> {
    let shards: Vec<ShardId> = (0..SHARDS)
        .map(|s| ShardId::new(format!("shard-{s}")))
        .collect();
    (0..n)
        .map(|i| {
            let shard = shards[(i % SHARDS) as usize].clone();
            let payload = if i % ROUTE_ONE_IN == 0 { ALERT } else { NOISE };
            Record::new(
                shard,
                Sequence::from_offset(i / SHARDS),
                "pk",
                Bytes::from_static(payload),
            )
        })
        .collect()
}

fn make_source(n: u64) -> MemorySource {
    MemorySource::from_records(make_records(n))
}

/// What a run did with its records, to check every variant did the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    routed: u64,
    discarded: u64,
    review: u64,
}

impl Counts {
    fn add(&mut self, action: &Action) {
        match action {
            Action::Notify(_) => self.routed += 1,
            Action::Discard => self.discarded += 1,
            Action::Review => self.review += 1,
        }
    }

    fn total(&self) -> u64 {
        self.routed + self.discarded + self.review
    }

    fn expected(n: u64) -> Self {
        let routed = n.div_ceil(ROUTE_ONE_IN);
        Counts {
            routed,
            discarded: n - routed,
            review: 0,
        }
    }
}

// ---------------------------------------------------------------------------
// The variants

/// The pipeline as users run it.
async fn run_pipeline<C: Classifier<Bytes>>(
    source: MemorySource,
    classifier: C,
    max_in_flight: usize,
) -> Counts {
    let report = Pipeline::new(source)
        .decode(RawBytes)
        .classify(classifier)
        .policy(policy())
        .route(NoopRouter)
        .dead_letter(MemoryDeadLetter::new())
        .max_in_flight(max_in_flight)
        .commit_every(COMMIT_EVERY, Duration::from_secs(5))
        .run()
        .await
        .expect("a pipeline of in-memory no-op components cannot fail");
    Counts {
        routed: report.stats.routed,
        discarded: report.stats.discarded,
        review: report.stats.sent_for_review,
    }
}

/// Decode, classify, decide and route one record, as the pipeline does
/// (minus retries, timeouts and bookkeeping).
async fn handle<C: Classifier<Bytes>>(classifier: &C, policy: &Policy, record: &Record) -> Action {
    let item = RawBytes
        .decode(record)
        .expect("RawBytes decodes every record");
    let prediction = classifier
        .classify(&item)
        .await
        .expect("the bench classifiers cannot fail");
    let action = policy.decide(&prediction);
    let route = match &action {
        Action::Notify(route) => Some(route),
        Action::Review => Some(&REVIEW_ROUTE),
        Action::Discard => None,
    };
    if let Some(route) = route {
        let delivery = Delivery {
            item: &item,
            record,
            prediction: &prediction,
            route,
        };
        NoopRouter
            .route(&delivery)
            .await
            .expect("the no-op router cannot fail");
    }
    action
}

/// For each batch: every record in turn, then commit the batch's end.
async fn run_hand_loop<C: Classifier<Bytes>>(source: MemorySource, classifier: C) -> Counts {
    let policy = policy();
    let mut counts = Counts::default();
    while let Some(batch) = source
        .next_batch()
        .await
        .expect("MemorySource reads cannot fail")
    {
        for record in &batch.records {
            counts.add(&handle(&classifier, &policy, record).await);
        }
        if let Some(last) = batch.records.last() {
            let checkpoint = Checkpoint {
                shard: batch.shard.clone(),
                position: Position::Sequence(last.sequence.clone()),
            };
            source
                .commit(vec![checkpoint])
                .await
                .expect("MemorySource commits to its own shards");
        }
    }
    counts
}

/// Every batch's records flattened into one stream, processed through
/// `buffer_unordered(concurrency)`. No checkpoints.
async fn run_buffer_unordered<C: Classifier<Bytes>>(
    source: MemorySource,
    classifier: C,
    concurrency: usize,
) -> Counts {
    let policy = policy();
    let (classifier, policy) = (&classifier, &policy);
    let records = futures::stream::unfold(&source, |source| async move {
        let batch = source
            .next_batch()
            .await
            .expect("MemorySource reads cannot fail")?;
        Some((futures::stream::iter(batch.records), source))
    })
    .flatten();
    records
        .map(|record| async move { handle(classifier, policy, &record).await })
        .buffer_unordered(concurrency)
        .fold(Counts::default(), |mut counts, action| {
            counts.add(&action);
            ready(counts)
        })
        .await
}

/// Reads every batch and drops it: the cost of the source and of freeing
/// the records, which every variant pays.
async fn run_source_drain(source: MemorySource) -> Counts {
    let mut counts = Counts::default();
    while let Some(batch) = source
        .next_batch()
        .await
        .expect("MemorySource reads cannot fail")
    {
        counts.discarded += batch.records.len() as u64;
    }
    counts
}

// ---------------------------------------------------------------------------
// Criterion groups

fn bench_overhead(c: &mut Criterion, rt: &Runtime, n: u64) {
    let mut group = c.benchmark_group("overhead");
    group
        .throughput(Throughput::Elements(n))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        // Ten runs of the slowest variant, so criterion need not warn.
        .measurement_time(Duration::from_secs(14));
    group.bench_function(BenchmarkId::new("pipeline", n), |b| {
        b.to_async(rt).iter_batched(
            || make_source(n),
            |source| run_pipeline(source, NoopClassifier, MAX_IN_FLIGHT),
            BatchSize::PerIteration,
        )
    });
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(BenchmarkId::new("buffer_unordered", n), |b| {
        b.to_async(rt).iter_batched(
            || make_source(n),
            |source| run_buffer_unordered(source, NoopClassifier, MAX_IN_FLIGHT),
            BatchSize::PerIteration,
        )
    });
    group.bench_function(BenchmarkId::new("hand_loop", n), |b| {
        b.to_async(rt).iter_batched(
            || make_source(n),
            |source| run_hand_loop(source, NoopClassifier),
            BatchSize::PerIteration,
        )
    });
    group.bench_function(BenchmarkId::new("source_drain", n), |b| {
        b.to_async(rt)
            .iter_batched(|| make_source(n), run_source_drain, BatchSize::PerIteration)
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// The summary: our own timed runs, in this same process

/// Builds the input outside the clock, then times one run on `rt`.
fn timed<F: Future<Output = Counts>>(
    rt: &Runtime,
    n: u64,
    run: impl FnOnce(MemorySource) -> F,
) -> Duration {
    let source = make_source(n);
    let start = Instant::now();
    let counts = rt.block_on(run(source));
    let elapsed = start.elapsed();
    assert_eq!(counts.total(), n, "a variant lost records: {counts:?}");
    elapsed
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

fn ns_per_record(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn check_counts(rt: &Runtime, n: u64) {
    let expected = Counts::expected(n);
    let got = [
        (
            "pipeline",
            rt.block_on(run_pipeline(make_source(n), NoopClassifier, MAX_IN_FLIGHT)),
        ),
        (
            "buffer_unordered",
            rt.block_on(run_buffer_unordered(
                make_source(n),
                NoopClassifier,
                MAX_IN_FLIGHT,
            )),
        ),
        (
            "hand_loop",
            rt.block_on(run_hand_loop(make_source(n), NoopClassifier)),
        ),
    ];
    for (name, counts) in got {
        assert_eq!(
            counts, expected,
            "{name} did not route and discard as expected"
        );
    }
}

/// Runs the pipeline once over `n` records; returns the commit calls the
/// source saw.
fn pipeline_commit_calls(rt: &Runtime, n: u64) -> usize {
    let source = make_source(n);
    let stream = source.stream();
    rt.block_on(run_pipeline(source, NoopClassifier, MAX_IN_FLIGHT));
    stream.commit_count() as usize
}

fn summarize_overhead(rt: &Runtime, n: u64, reps: usize) {
    check_counts(rt, n.min(10_000));
    let commit_check = n.min(100_000);
    let commit_calls = pipeline_commit_calls(rt, commit_check);
    let (mut pipeline, mut unordered, mut hand, mut drain) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        pipeline.push(timed(rt, n, |s| {
            run_pipeline(s, NoopClassifier, MAX_IN_FLIGHT)
        }));
        unordered.push(timed(rt, n, |s| {
            run_buffer_unordered(s, NoopClassifier, MAX_IN_FLIGHT)
        }));
        hand.push(timed(rt, n, |s| run_hand_loop(s, NoopClassifier)));
        drain.push(timed(rt, n, run_source_drain));
    }
    let x = ns_per_record(median(pipeline), n);
    let y = ns_per_record(median(unordered), n);
    let z = ns_per_record(median(hand), n);
    let floor = ns_per_record(median(drain), n);
    let ratio = x / y;
    println!();
    println!(
        "== (a) overhead: {n} records, {SHARDS} shards, batches of 100, max_in_flight \
         {MAX_IN_FLIGHT}, commit every {COMMIT_EVERY}; median of {reps} run(s) each =="
    );
    println!(
        "pipeline {x:.1} ns/rec, buffer_unordered {y:.1} ns/rec, hand loop {z:.1} ns/rec, \
         ratio X/Y {ratio:.2}"
    );
    println!(
        "  (source read + record drop alone: {floor:.1} ns/rec; above it: pipeline {:.1}, \
         buffer_unordered {:.1}, hand loop {:.1} ns/rec)",
        x - floor,
        y - floor,
        z - floor
    );
    let asked = commit_check / COMMIT_EVERY;
    println!(
        "  pipeline commit calls over {commit_check} records: {commit_calls} (commit every \
         {COMMIT_EVERY} asks for about {asked}){}",
        if (commit_calls as u64) < asked / 2 {
            "; checkpoints lag far behind the records done"
        } else {
            ""
        }
    );
    println!(
        "  target pipeline/buffer_unordered <= {TARGET_RATIO}x: {} ({ratio:.2}x)",
        verdict(ratio <= TARGET_RATIO)
    );
    println!(
        "  target pipeline <= {TARGET_NS_PER_RECORD} ns/rec: {} ({x:.1} ns/rec)",
        verdict(x <= TARGET_NS_PER_RECORD)
    );
}

fn summarize_latency(rt: &Runtime, runs: &[(usize, u64)], reps: usize) {
    // What a 1 ms sleep really takes here, one after another.
    let probes = if reps > 1 { 200 } else { 10 };
    let sleep = rt.block_on(async {
        let start = Instant::now();
        for _ in 0..probes {
            tokio::time::sleep(LATENCY).await;
        }
        start.elapsed() / probes
    });
    let classifier = SleepyClassifier { latency: LATENCY };
    println!();
    println!(
        "== (b) latency hiding: classifier sleeps {LATENCY:?} (real time); median of {reps} \
         run(s) each =="
    );
    println!(
        "  a {LATENCY:?} tokio sleep measured {:.3} ms on average ({probes} in a row): \
         tokio rounds deadlines up to the next 1 ms tick",
        sleep.as_secs_f64() * 1e3
    );
    for &(concurrency, n) in runs {
        let (mut pipeline, mut unordered) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            pipeline.push(timed(rt, n, |s| run_pipeline(s, classifier, concurrency)));
            unordered.push(timed(rt, n, |s| {
                run_buffer_unordered(s, classifier, concurrency)
            }));
        }
        let ideal = concurrency as f64 / LATENCY.as_secs_f64();
        let per_sec = |d: Duration| n as f64 / d.as_secs_f64();
        let (p, u) = (per_sec(median(pipeline)), per_sec(median(unordered)));
        let (p_pct, u_pct) = (100.0 * p / ideal, 100.0 * u / ideal);
        let slept_ideal = concurrency as f64 / sleep.as_secs_f64();
        println!(
            "  max_in_flight {concurrency:>3}, {n:>6} records: pipeline {p:>9.0} rec/s = \
             {p_pct:5.1}% of ideal {ideal:.0}/s; buffer_unordered {u:>9.0} rec/s = {u_pct:5.1}%; \
             pipeline/buffer_unordered {:.3}; pipeline vs concurrency/measured sleep: {:.1}%",
            p / u,
            100.0 * p / slept_ideal
        );
        if concurrency == MAX_IN_FLIGHT {
            println!(
                "  target >= {TARGET_LATENCY_PERCENT}% of ideal at {concurrency}: {} \
                 ({p_pct:.1}%; buffer_unordered reaches {u_pct:.1}%, so the pipeline achieves \
                 {:.1}% of what the bare chain achieves)",
                verdict(p_pct >= TARGET_LATENCY_PERCENT),
                100.0 * p / u
            );
        }
    }
}

/// Criterion's own rule: test mode unless run with `--bench`, or with `--test`.
fn test_mode(args: &[String]) -> bool {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--test") || !has("--bench")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let test = test_mode(&args);
    let listing = args.iter().any(|a| a == "--list");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let n = if test { TEST_RECORDS } else { FULL_RECORDS };

    let mut criterion = Criterion::default().configure_from_args();
    bench_overhead(&mut criterion, &rt, n);
    criterion.final_summary();
    if listing {
        return;
    }

    let (reps, runs, latency_reps) = if test {
        (TEST_REPS, &TEST_LATENCY_RUNS, 1)
    } else {
        (FULL_REPS, &FULL_LATENCY_RUNS, FULL_LATENCY_REPS)
    };
    if test {
        println!();
        println!(
            "(test mode: few records and maybe an unoptimized build; this checks the harness, \
             the targets need `cargo bench --bench overhead`)"
        );
    }
    summarize_overhead(&rt, n, reps);
    summarize_latency(&rt, runs, latency_reps);
}
