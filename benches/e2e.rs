//! The real workload end to end (issue 13): the bundled support tweets
//! through the whole [`Pipeline`], against a plain loop doing only the
//! decoding and the predicting.
//!
//! **Input.** Every line of `examples/data/tweets.jsonl` (1,069 lines), as
//! JSON bytes, repeated [`FULL_COPIES`] times (1 in test mode) so that one
//! run lasts tens of milliseconds and the pipeline's start-up is spread as
//! it is on a long-lived stream. The malformed lines are **kept**, 9 of
//! every 1,069: 8 that are not a tweet (5 not JSON: truncated, not UTF-8,
//! plain text, a lone surrogate escape, an empty line; a JSON array; a tweet
//! without text; one whose text is a number) and one well-formed tweet of
//! 9,243 bytes, larger than the example's 8 KiB record limit. They are part
//! of the stream the example replays, and they exercise the dead-letter
//! path. The plain loop sees exactly the same lines and rejects them the
//! same way (a length check, then a failed `serde_json` parse).
//!
//! **Components**, all the example's own, reused through `#[path]` (as the
//! example's tests do): the `Tweet` type decoded by streamsift's
//! [`Json`](streamsift::Json) decoder (`.json::<Tweet>()`); the bundled
//! local model, two `LocalModel`s loaded from the committed
//! `examples/data/support_*.model.json` by `app::prepare` exactly as
//! `cargo run --example support_tweets` loads them (it would train instead,
//! and the summary says so, if the files were stale); the example's
//! `Triage` classifier and `triage_policy`; a router that accepts every
//! delivery and does nothing; a [`MemoryDeadLetter`]. The pipeline runs with
//! the example's settings (2 shards, batches of 50, `max_in_flight` 64,
//! 8 KiB record limit) and the default commit cadence, on one
//! current-thread tokio runtime, so that every variant uses one core.
//!
//! **Variants**, each timed per input line ("ns/tweet" counts the rejected
//! lines too):
//!
//! - `pipeline`: the whole [`Pipeline`] over a
//!   [`MemorySource::from_records`] (the records are built outside the
//!   clock, and moved out as they are read, so the fake source copies
//!   nothing);
//! - `plain_loop`: for each line, skip it if over the size limit, else
//!   `serde_json::from_slice::<Tweet>` and, if that worked,
//!   `Triage::predict` (the baseline the issue sets its target against);
//! - `decode_only` and `predict_only`: the two halves of the plain loop
//!   (`predict_only` predicts on tweets decoded before the clock starts),
//!   to show where the loop's time goes;
//! - `source_drain`: only reads the records from the same source and drops
//!   them, a floor the pipeline pays and the plain loop does not.
//!
//! After the criterion group the bench prints a summary measured in this
//! same run: 31 interleaved timed runs of each variant, their medians, and
//! the ratio pipeline / plain loop against the issue's target (≤ 1.25×).
//! The ratio is the median of per-pair ratios, each pipeline run against
//! the plain-loop run right after it, so that a change in the machine's
//! load hits both sides of a pair alike. On 64-bit Linux it is given by wall
//! time and by the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), which
//! leaves out the time other processes held the core: on a shared machine
//! that one is the steadier. Before timing anything the bench checks that
//! the pipeline routed, discarded, sent for review and dead-lettered exactly
//! what the plain loop's own predictions, under the same policy, say it
//! should.
//!
//! ```text
//! cargo bench --all-features --bench e2e             # full run, ~1 min
//! cargo bench --all-features --bench e2e -- --test   # quick check, one copy
//! cargo test --all-features --benches                # the same quick check
//! ```
//!
//! **Profiling.** With `E2E_PROFILE=<variant>:<n>` in the environment the
//! binary skips criterion, runs one variant (`pipeline`, `plain_loop`,
//! `decode_only`, `predict_only`, `source_drain`) `n` times and exits, for
//! `perf record` or `valgrind --tool=callgrind`.

#[path = "../examples/support_tweets/app.rs"]
mod app;

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use app::Tweet;
use app::model::{Origin, Triage};
use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use streamsift::fakes::MemorySource;
use streamsift::{
    Action, Delivery, MemoryDeadLetter, Pipeline, Policy, Receipt, Record, RouteError, Router,
    Sequence, ShardId, Source,
};
use tokio::runtime::Runtime;

/// Copies of the bundled file per run (full mode).
const FULL_COPIES: usize = 10;
/// Timed repetitions of each variant for the summary (full mode).
const FULL_REPS: usize = 31;
/// Records per batch, as the example reads them.
const BATCH_SIZE: usize = 50;
/// The issue's target: the whole pipeline costs at most this many times the
/// plain loop.
const TARGET_RATIO: f64 = 1.25;

// ---------------------------------------------------------------------------
// The workload

/// Accepts every delivery and does nothing with it.
#[derive(Clone, Copy, Debug, Default)]
struct NoopRouter;

impl Router<Tweet> for NoopRouter {
    async fn route(&self, d: &Delivery<'_, Tweet>) -> Result<Receipt, RouteError> {
        Ok(Receipt::new(d.route.clone()))
    }
}

/// Everything every variant needs, built once.
struct Workload {
    /// The input lines (the bundled file, repeated), without newlines.
    lines: Vec<Bytes>,
    /// The same lines decoded, for `predict_only`: the ones the plain loop
    /// gets a tweet from.
    tweets: Vec<Tweet>,
    triage: Triage,
    policy: Policy,
    shards: usize,
    max_in_flight: usize,
    origin: Origin,
}

impl Workload {
    fn load(copies: usize) -> Workload {
        let settings = app::Settings::default();
        let (_data, models) = app::prepare(&settings)
            .unwrap_or_else(|e| panic!("the example's models could not be prepared: {e}"));
        let one: Vec<Bytes> = app::lines(app::TWEETS)
            .into_iter()
            .map(Bytes::from)
            .collect();
        let lines: Vec<Bytes> = (0..copies).flat_map(|_| one.iter().cloned()).collect();
        let tweets = lines.iter().filter_map(|l| decode(l)).collect();
        Workload {
            lines,
            tweets,
            triage: Triage::new(&models),
            policy: app::model::triage_policy(),
            shards: settings.shards,
            max_in_flight: settings.max_in_flight,
            origin: models.origin,
        }
    }

    fn n(&self) -> u64 {
        self.lines.len() as u64
    }

    /// The lines as records, laid out over the shards as
    /// `MemorySource::from_payloads` lays them (line `i` on shard
    /// `i % shards`, offsets counting up per shard), but moved out when read.
    fn source(&self) -> MemorySource {
        let shards: Vec<ShardId> = (0..self.shards)
            .map(|s| ShardId::new(format!("shard-{s}")))
            .collect();
        let mut offsets = vec![0u64; shards.len()];
        let records: Vec<Record> = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let s = i % shards.len();
                let offset = offsets[s];
                offsets[s] += 1;
                Record::new(
                    shards[s].clone(),
                    Sequence::from_offset(offset),
                    format!("pk-{i}"),
                    line.clone(),
                )
            })
            .collect();
        MemorySource::from_records(records).batch_size(BATCH_SIZE)
    }
}

/// The plain loop's decoding: the example's size limit, then serde_json.
fn decode(line: &[u8]) -> Option<Tweet> {
    if line.len() > app::MAX_RECORD_BYTES {
        return None;
    }
    serde_json::from_slice(line).ok()
}

/// What a run did with its lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    routed: u64,
    discarded: u64,
    review: u64,
    rejected: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.routed + self.discarded + self.review + self.rejected
    }
}

// ---------------------------------------------------------------------------
// The variants

/// The whole pipeline, as the example builds it (minus its flaky notifier,
/// retry backoff and file dead letters).
async fn run_pipeline(w: &Workload, source: MemorySource) -> Counts {
    let report = Pipeline::new(source)
        .json::<Tweet>()
        .classify(w.triage.clone())
        .policy(w.policy.clone())
        .route(NoopRouter)
        .review_via_router() // NoopRouter takes every route, "review" included
        .dead_letter(MemoryDeadLetter::new())
        .max_in_flight(w.max_in_flight)
        .max_record_bytes(app::MAX_RECORD_BYTES)
        .run()
        .await
        .unwrap_or_else(|e| panic!("a pipeline of in-memory components failed: {e}"));
    let s = &report.stats;
    Counts {
        routed: s.routed,
        discarded: s.discarded,
        review: s.sent_for_review,
        rejected: s.dead_lettered,
    }
}

/// Decode and predict each line; returns (tweets predicted, lines
/// rejected).
fn run_plain_loop(w: &Workload) -> (u64, u64) {
    let (mut predicted, mut rejected) = (0, 0);
    for line in &w.lines {
        match decode(line) {
            Some(tweet) => {
                black_box(w.triage.predict(black_box(&tweet)));
                predicted += 1;
            }
            None => rejected += 1,
        }
    }
    (predicted, rejected)
}

/// The first half of the plain loop.
fn run_decode_only(w: &Workload) -> (u64, u64) {
    let (mut decoded, mut rejected) = (0, 0);
    for line in &w.lines {
        match decode(line) {
            Some(tweet) => {
                black_box(tweet);
                decoded += 1;
            }
            None => rejected += 1,
        }
    }
    (decoded, rejected)
}

/// The second half of the plain loop, on tweets decoded beforehand.
fn run_predict_only(w: &Workload) -> u64 {
    for tweet in &w.tweets {
        black_box(w.triage.predict(black_box(tweet)));
    }
    w.tweets.len() as u64
}

/// Reads every batch and drops it.
async fn run_source_drain(source: MemorySource) -> u64 {
    let mut n = 0;
    while let Some(batch) = source
        .next_batch()
        .await
        .unwrap_or_else(|e| panic!("MemorySource reads cannot fail: {e}"))
    {
        n += batch.records.len() as u64;
    }
    n
}

/// What the pipeline should have done: the plain loop's predictions under
/// the same policy, untimed.
fn expected_counts(w: &Workload) -> Counts {
    let mut c = Counts::default();
    for line in &w.lines {
        let Some(tweet) = decode(line) else {
            c.rejected += 1;
            continue;
        };
        match w.policy.decide(&w.triage.predict(&tweet)) {
            Action::Notify(_) => c.routed += 1,
            Action::Discard => c.discarded += 1,
            Action::Review => c.review += 1,
        }
    }
    c
}

// ---------------------------------------------------------------------------
// Criterion

fn bench_e2e(c: &mut Criterion, rt: &Runtime, w: &Workload) {
    let n = w.n();
    let mut group = c.benchmark_group("e2e");
    group
        .throughput(Throughput::Elements(n))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    group.bench_function(BenchmarkId::new("pipeline", n), |b| {
        b.to_async(rt).iter_batched(
            || w.source(),
            |source| run_pipeline(w, source),
            BatchSize::PerIteration,
        )
    });
    group.bench_function(BenchmarkId::new("plain_loop", n), |b| {
        b.iter(|| run_plain_loop(w))
    });
    group.bench_function(BenchmarkId::new("decode_only", n), |b| {
        b.iter(|| run_decode_only(w))
    });
    group.bench_function(BenchmarkId::new("predict_only", n), |b| {
        b.iter(|| run_predict_only(w))
    });
    group.bench_function(BenchmarkId::new("source_drain", n), |b| {
        b.to_async(rt)
            .iter_batched(|| w.source(), run_source_drain, BatchSize::PerIteration)
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// The summary: our own timed runs, in this same process

/// Wall time and, where available, this thread's CPU time of one run.
#[derive(Clone, Copy, Debug)]
struct Timing {
    wall: Duration,
    cpu: Option<Duration>,
}

/// The CPU time this thread has used so far (rustix's safe
/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`). Every variant runs on the
/// calling thread (the runtime is current-thread), so this is the run's
/// whole CPU cost, and time spent waiting for the core while other
/// processes run is not in it.
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Option<Duration> {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Times `f` on the calling thread.
fn timed<R>(f: impl FnOnce() -> R) -> Timing {
    let (cpu0, start) = (thread_cpu_time(), Instant::now());
    black_box(f());
    let wall = start.elapsed();
    let cpu = thread_cpu_time()
        .zip(cpu0)
        .map(|(end, start)| end.saturating_sub(start));
    Timing { wall, cpu }
}

/// Builds the source outside the clock, then times one async run on `rt`.
fn timed_async<F: Future>(
    rt: &Runtime,
    w: &Workload,
    run: impl FnOnce(MemorySource) -> F,
) -> Timing {
    let source = w.source();
    timed(|| rt.block_on(run(source)))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The median ns per line of the runs, by wall time and by CPU time.
fn per_line(runs: &[Timing], n: u64) -> (f64, Option<f64>) {
    let ns = |d: Duration| d.as_nanos() as f64 / n as f64;
    let wall = median(runs.iter().map(|t| ns(t.wall)).collect());
    let cpu: Option<Vec<f64>> = runs.iter().map(|t| t.cpu.map(ns)).collect();
    (wall, cpu.map(median))
}

/// The median over the repetitions of pipeline / plain loop, each pipeline
/// run against the plain-loop run right after it (so that a change in the
/// machine's load hits both sides of a pair alike), by wall and CPU time.
fn paired_ratio(pipeline: &[Timing], plain: &[Timing]) -> (f64, Option<f64>) {
    let pairs = || pipeline.iter().zip(plain);
    let wall = median(
        pairs()
            .map(|(p, q)| p.wall.as_secs_f64() / q.wall.as_secs_f64())
            .collect(),
    );
    let cpu: Option<Vec<f64>> = pairs()
        .map(|(p, q)| Some(p.cpu?.as_secs_f64() / q.cpu?.as_secs_f64()))
        .collect();
    (wall, cpu.map(median))
}

/// Checks that the pipeline and the plain loop saw and did the same thing.
fn check(rt: &Runtime, w: &Workload) -> Counts {
    let expected = expected_counts(w);
    assert_eq!(expected.total(), w.n(), "every line is counted once");
    let got = rt.block_on(run_pipeline(w, w.source()));
    assert_eq!(
        got, expected,
        "the pipeline did not route, discard, review and dead-letter what the plain loop's \
         predictions say"
    );
    let (predicted, rejected) = run_plain_loop(w);
    assert_eq!(
        (predicted, rejected),
        (w.tweets.len() as u64, expected.rejected),
        "the plain loop did not predict every decodable line"
    );
    let drained = rt.block_on(run_source_drain(w.source()));
    assert_eq!(drained, w.n(), "the source did not give every line");
    expected
}

fn verdict(ratio: f64) -> &'static str {
    if ratio <= TARGET_RATIO {
        "met"
    } else {
        "MISSED"
    }
}

fn summarize(rt: &Runtime, w: &Workload, reps: usize, test: bool) {
    let n = w.n();
    let counts = check(rt, w);
    let (mut pipeline, mut plain, mut decode, mut predict, mut drain) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        pipeline.push(timed_async(rt, w, |s| run_pipeline(w, s)));
        plain.push(timed(|| run_plain_loop(w)));
        decode.push(timed(|| run_decode_only(w)));
        predict.push(timed(|| run_predict_only(w)));
        drain.push(timed_async(rt, w, run_source_drain));
    }
    let (x, x_cpu) = per_line(&pipeline, n);
    let (y, y_cpu) = per_line(&plain, n);
    let (d, _) = per_line(&decode, n);
    let (p, _) = per_line(&predict, n);
    let (floor, _) = per_line(&drain, n);
    let (ratio, ratio_cpu) = paired_ratio(&pipeline, &plain);
    let origin = match &w.origin {
        Origin::Bundled => "the committed model files (fresh)".to_string(),
        Origin::Trained { reason, .. } => format!("a model trained at start-up ({reason})"),
    };
    println!();
    if test {
        println!(
            "(test mode: one copy and maybe an unoptimized build; this checks the harness, \
             the target needs `cargo bench --all-features --bench e2e`)"
        );
    }
    println!(
        "== e2e: {n} lines ({} tweets decoded, {} rejected), model from {origin}; \
         {} shards, batches of {BATCH_SIZE}, max_in_flight {}; median of {reps} interleaved \
         run(s) each ==",
        w.tweets.len(),
        counts.rejected,
        w.shards,
        w.max_in_flight,
    );
    println!(
        "  pipeline: routed {}, discarded {}, review {}, dead-lettered {} (the same as the plain \
         loop's predictions give)",
        counts.routed, counts.discarded, counts.review, counts.rejected
    );
    println!(
        "pipeline {x:.0} ns/tweet, plain loop {y:.0} ns/tweet (decode {d:.0} + predict \
         {p:.0}), ratio pipeline/plain loop {ratio:.3} (wall time)"
    );
    println!(
        "  (predict_only is per line, on the {} decoded tweets; source read + record drop alone: \
         {floor:.0} ns/tweet; the ratio is the median of per-pair ratios, each pipeline run \
         against the plain-loop run right after it)",
        w.tweets.len(),
    );
    if let (Some(xc), Some(yc), Some(rc)) = (x_cpu, y_cpu, ratio_cpu) {
        println!(
            "  by this thread's CPU time (not counting time other processes held the core): \
             pipeline {xc:.0} ns/tweet, plain loop {yc:.0} ns/tweet, ratio {rc:.3}"
        );
    }
    println!(
        "  target pipeline/plain loop <= {TARGET_RATIO}x: {} by wall time ({ratio:.3}x){}",
        verdict(ratio),
        ratio_cpu
            .map(|rc| format!(", {} by CPU time ({rc:.3}x)", verdict(rc)))
            .unwrap_or_default()
    );
}

// ---------------------------------------------------------------------------
// Profiling and main

/// Runs one variant `n` times (see the module doc).
fn profile(rt: &Runtime, w: &Workload, spec: &str) {
    let (variant, n) = spec
        .split_once(':')
        .and_then(|(v, n)| Some((v, n.parse::<usize>().ok()?)))
        .unwrap_or_else(|| panic!("E2E_PROFILE must be <variant>:<count>, found {spec:?}"));
    for _ in 0..n {
        match variant {
            "pipeline" => {
                black_box(rt.block_on(run_pipeline(w, w.source())));
            }
            "plain_loop" => {
                black_box(run_plain_loop(w));
            }
            "decode_only" => {
                black_box(run_decode_only(w));
            }
            "predict_only" => {
                black_box(run_predict_only(w));
            }
            "source_drain" => {
                black_box(rt.block_on(run_source_drain(w.source())));
            }
            other => panic!(
                "E2E_PROFILE: unknown variant {other:?}; expected pipeline, plain_loop, \
                 decode_only, predict_only or source_drain"
            ),
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
    let copies = if test { 1 } else { FULL_COPIES };
    let w = Workload::load(copies);

    if let Ok(spec) = std::env::var("E2E_PROFILE") {
        profile(&rt, &w, &spec);
        return;
    }

    let mut criterion = Criterion::default().configure_from_args();
    bench_e2e(&mut criterion, &rt, &w);
    criterion.final_summary();
    if listing {
        return;
    }
    summarize(&rt, &w, if test { 1 } else { FULL_REPS }, test);
}
