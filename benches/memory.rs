//! Memory flatness (issue 2): the pipeline's peak resident memory must not
//! grow with the length of the stream. Peak RSS for 10M records should be
//! within 10% of that for 1M.
//!
//! Each size runs in a child process (this binary, re-executed with
//! `STREAMSIFT_MEMORY_BENCH_RECORDS` set), so every peak is measured from a
//! fresh process: the child runs the pipeline over
//! [`MemorySource::from_iter`] (records made lazily, a batch at a time), with
//! a no-op classifier and router, then reads `VmHWM` (peak resident set)
//! from `/proc/self/status` and prints it. The parent prints the peaks and
//! their ratio. A run with no records shows the fixed cost of the process.
//!
//! Each size runs twice: over the `MemorySource` itself, whose
//! [`MemoryStream`](streamsift::fakes::MemoryStream) keeps every commit call
//! for assertions (so it grows by one entry per commit), and over the same
//! lazy records behind a wrapper that counts commits without keeping them,
//! which isolates the pipeline's own memory.
//!
//! ```text
//! cargo bench --bench memory             # 1M and 10M records, ~10 s
//! cargo bench --bench memory -- --test   # 10k and 100k, quick
//! cargo test --benches                   # the same quick check
//! ```
//!
//! Linux only (`/proc`).

#[allow(dead_code)]
#[path = "support/proc_status.rs"]
mod proc_status;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamsift::fakes::MemorySource;
use streamsift::{
    Batch, Checkpoint, Classifier, ClassifyError, Delivery, Label, MemoryDeadLetter, Pipeline,
    Policy, Prediction, RawBytes, Receipt, RouteError, Router, Source, SourceError,
};

/// Set in the child to the number of records to run.
const CHILD_ENV: &str = "STREAMSIFT_MEMORY_BENCH_RECORDS";
/// Set in the child to the [`SourceKind`] to read from.
const SOURCE_ENV: &str = "STREAMSIFT_MEMORY_BENCH_SOURCE";
/// The line the child prints its result on.
const RESULT_PREFIX: &str = "memory-bench-result";

const FULL_SIZES: (u64, u64) = (1_000_000, 10_000_000);
const TEST_SIZES: (u64, u64) = (10_000, 100_000);
/// Peak RSS of the larger run over the smaller may exceed 1 by this much.
const TARGET_GROWTH: f64 = 0.10;

const SHARDS: usize = 4;
const MAX_IN_FLIGHT: usize = 256;
const COMMIT_EVERY: u64 = 1_000;
const ALERT: &[u8] = b"!db-3 disk full, writes failing";
const NOISE: &[u8] = b"lovely weather for a coffee run";

/// 0.9 for an alert (payload starting with `!`), 0.1 otherwise.
#[derive(Clone, Copy, Debug, Default)]
struct NoopClassifier;

impl Classifier<Bytes> for NoopClassifier {
    async fn classify(&self, item: &Bytes) -> Result<Prediction, ClassifyError> {
        let score = if item.first() == Some(&b'!') {
            0.9
        } else {
            0.1
        };
        let label = if score >= 0.5 { "actionable" } else { "noise" };
        Ok(Prediction {
            label: Label::from_static(label),
            scores: Vec::new(),
            positive_score: Some(score),
            decided_by: None,
        })
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

/// Delegates reads to a `MemorySource`; counts commits but keeps none.
struct CountCommits {
    inner: MemorySource,
    commits: Arc<AtomicU64>,
}

impl Source for CountCommits {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        self.inner.next_batch().await
    }

    async fn commit(&self, _checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Which source a child reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceKind {
    /// `MemorySource::from_iter` itself (keeps a log of every commit).
    Memory,
    /// The same records through [`CountCommits`].
    CountCommits,
}

impl SourceKind {
    fn name(self) -> &'static str {
        match self {
            SourceKind::Memory => "memory",
            SourceKind::CountCommits => "count-commits",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [SourceKind::Memory, SourceKind::CountCommits]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// What one child measured.
#[derive(Clone, Copy, Debug)]
struct Peak {
    records: u64,
    hwm_kib: u64,
    rss_kib: u64,
    elapsed: Duration,
    /// Commit calls the source recorded (the fake keeps every one).
    commits: u64,
}

/// Runs `n` records through the pipeline over `source`; returns the report's
/// record count.
async fn run<S: Source>(source: S, n: u64) -> u64 {
    let report = Pipeline::new(source)
        .decode(RawBytes)
        .classify(NoopClassifier)
        .policy(Policy::binary(0.5, "oncall"))
        .route(NoopRouter)
        .dead_letter(MemoryDeadLetter::new())
        .max_in_flight(MAX_IN_FLIGHT)
        .commit_every(COMMIT_EVERY, Duration::from_secs(5))
        .run()
        .await
        .expect("a pipeline of in-memory no-op components cannot fail");
    assert_eq!(report.stats.records_in, n, "the pipeline lost records");
    assert!(
        report.stats.reconciles(),
        "the run report does not reconcile"
    );
    report.stats.records_in
}

/// The child: run `n` records through the pipeline and print the peak.
fn child(n: u64, kind: SourceKind) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let payloads = (0..n).map(|i| Bytes::from_static(if i % 10 == 0 { ALERT } else { NOISE }));
    let source = MemorySource::from_iter(SHARDS, payloads);
    let stream = source.stream();
    let counted = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    match kind {
        SourceKind::Memory => rt.block_on(run(source, n)),
        SourceKind::CountCommits => rt.block_on(run(
            CountCommits {
                inner: source,
                commits: Arc::clone(&counted),
            },
            n,
        )),
    };
    let elapsed = start.elapsed();
    // Read the peak first: counting the memory stream's commits clones its log.
    let status = std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status is readable (this bench needs Linux)");
    let hwm = proc_status::status_kib(&status, "VmHWM").expect("/proc/self/status has VmHWM");
    let rss = proc_status::status_kib(&status, "VmRSS").expect("/proc/self/status has VmRSS");
    let commits = match kind {
        SourceKind::Memory => stream.commit_count(),
        SourceKind::CountCommits => counted.load(Ordering::Relaxed),
    };
    println!(
        "{RESULT_PREFIX} records={n} vm_hwm_kib={hwm} vm_rss_kib={rss} elapsed_ms={} commits={commits}",
        elapsed.as_millis()
    );
}

/// Re-runs this binary as a child for `n` records and reads its result.
fn measure(n: u64, kind: SourceKind) -> Peak {
    let exe = std::env::current_exe().expect("the path of this bench binary");
    let out = Command::new(exe)
        .env(CHILD_ENV, n.to_string())
        .env(SOURCE_ENV, kind.name())
        .output()
        .expect("the child process starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child for {n} records failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with(RESULT_PREFIX))
        .unwrap_or_else(|| panic!("the child for {n} records printed no result: {stdout}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the child's result: {line}"))
    };
    Peak {
        records: field("records"),
        hwm_kib: field("vm_hwm_kib"),
        rss_kib: field("vm_rss_kib"),
        elapsed: Duration::from_millis(field("elapsed_ms")),
        commits: field("commits"),
    }
}

/// Criterion's rule, kept for this plain harness: test mode unless run with
/// `--bench`, or with `--test`.
fn test_mode(args: &[String]) -> bool {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--test") || !has("--bench")
}

fn print_peak(p: &Peak) {
    let rate = if p.elapsed.is_zero() {
        String::from("-")
    } else {
        format!(
            "{:.0} ns/rec",
            p.elapsed.as_nanos() as f64 / p.records.max(1) as f64
        )
    };
    println!(
        "  {:>10} records: peak RSS (VmHWM) {:>7} KiB, RSS at end {:>7} KiB, run {:>6} ms \
         ({rate}), {} commits",
        p.records,
        p.hwm_kib,
        p.rss_kib,
        p.elapsed.as_millis(),
        p.commits
    );
}

fn main() {
    if let Ok(n) = std::env::var(CHILD_ENV) {
        let n = n
            .parse()
            .unwrap_or_else(|_| panic!("{CHILD_ENV} must be a record count, got {n:?}"));
        let kind = std::env::var(SOURCE_ENV)
            .ok()
            .and_then(|k| SourceKind::from_name(&k))
            .unwrap_or(SourceKind::Memory);
        child(n, kind);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        println!("memory: bench");
        return;
    }
    let test = test_mode(&args);
    let (small, large) = if test { TEST_SIZES } else { FULL_SIZES };
    println!(
        "== memory flatness: pipeline over MemorySource::from_iter, {SHARDS} shards, \
         max_in_flight {MAX_IN_FLIGHT}, commit every {COMMIT_EVERY}; one child process per run{} ==",
        if test {
            " (test mode: small sizes)"
        } else {
            ""
        }
    );
    for kind in [SourceKind::Memory, SourceKind::CountCommits] {
        let base = measure(0, kind);
        let small = measure(small, kind);
        let large = measure(large, kind);
        println!("source: {}", kind.name());
        for p in [&base, &small, &large] {
            print_peak(p);
        }
        let ratio = large.hwm_kib as f64 / small.hwm_kib as f64;
        let growth = large.hwm_kib as i64 - small.hwm_kib as i64;
        println!(
            "  peak RSS {} records / {} records: {ratio:.3} ({growth:+} KiB); above the empty \
             run: {:+} KiB and {:+} KiB",
            large.records,
            small.records,
            small.hwm_kib as i64 - base.hwm_kib as i64,
            large.hwm_kib as i64 - base.hwm_kib as i64,
        );
        println!(
            "  target: within {:.0}% -> {}",
            TARGET_GROWTH * 100.0,
            if ratio <= 1.0 + TARGET_GROWTH {
                "met"
            } else {
                "MISSED"
            }
        );
    }
}
