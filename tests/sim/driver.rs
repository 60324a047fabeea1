//! Drives one seed: the Pipeline through crashes, shutdowns and restarts, or
//! the BatchProcessor under a Lambda-like or KCL-like driver; then the
//! oracle's end-of-seed checks.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::Either;
use streamsift::batch::{self, OnExhausted};
use streamsift::checkpoint::MemoryCheckpointStore;
use streamsift::{
    Checkpoint, Pipeline, PipelineError, Policy, Position, RunReport, Sequence, Shutdown, Source,
};
use tokio::time::Instant;

use super::components::{HygieneRouter, POISON, SimClassifier, SimDeadLetter, SimLabeler, decoder};
use super::logs;
use super::oracle::{Failure, Oracle};
use super::plan::{
    CALL_TIMEOUT, Mode, Mutation, Plan, RESTART_DELAY, REVIEW_LOW, ROUTE, THRESHOLD,
};
use super::rng::unit;
use super::source::{AckSource, SimSource, record};

/// What one seed did.
#[derive(Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// The engine driven.
    pub mode: Mode,
    /// Invariant failures.
    pub failures: Vec<Failure>,
    /// Checks made.
    pub checks: u64,
    /// Faults injected by kind.
    pub faults: BTreeMap<String, u64>,
    /// Runs or batch invocations.
    pub runs: usize,
    /// Records in the world.
    pub records: usize,
    /// Mutations that changed what the world did.
    pub mutations_applied: u64,
    /// The hash of the event log.
    pub hash: u64,
    /// Hygiene: whether the notify route went through `Dedup`.
    pub dedup: bool,
    /// Hygiene: whether the notify route went through `Digest`.
    pub digest: bool,
    /// Hygiene: duplicates sent in the documented gap.
    pub dedup_gaps: u64,
    /// The event log, when verbose.
    pub trace: Vec<String>,
}

/// Keeps intentional panics (poison records) off stderr; others print as usual.
pub fn quiet_poison_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = panic_text(info.payload());
            if !msg.starts_with(POISON) {
                default(info);
            }
        }));
    });
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic)".to_string()
    }
}

fn policy(plan: &Plan) -> Policy {
    let p = Policy::binary(THRESHOLD, ROUTE);
    if plan.knobs.review_band {
        p.with_review_band(REVIEW_LOW, THRESHOLD)
    } else {
        p
    }
}

fn escaped(oracle: &Oracle, where_: &str, msg: &str) {
    let what = [
        "decoder",
        "classifier",
        "router",
        "labeler",
        "dead-letter sink",
    ]
    .into_iter()
    .find(|w| msg.contains(w))
    .unwrap_or("unknown code");
    oracle.fail(
        "poison",
        format!("panic in the {what} escaped {where_}"),
        format!("poison: a panic in the {what} escaped {where_} and ended it: {msg}"),
    );
}

/// Runs one seed and its checks.
pub fn run_seed(seed: u64, mutation: Mutation, verbose: bool) -> SeedReport {
    quiet_poison_panics();
    logs::install();
    let plan = Arc::new(Plan::generate(seed, mutation));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    let _ = logs::take();
    let store = MemoryCheckpointStore::new();
    // A metrics recorder per seed, for the gauges the oracle reads.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let gauges = recorder.snapshotter();
    let oracle = metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let oracle = Oracle::new(plan.clone(), store.clone(), verbose);
            let mut extra = String::new();
            match plan.mode {
                Mode::Pipeline | Mode::Acking => {
                    pipeline_seed(&oracle, &store, &gauges, &mut extra).await
                }
                Mode::Lambda => batch_seed(&oracle, OnExhausted::Report).await,
                Mode::Kcl => batch_seed(&oracle, OnExhausted::DeadLetter).await,
            }
            let mut logs = logs::take();
            logs.push_str(&extra);
            oracle.end_seed(&logs);
            oracle
        })
    });
    drop(runtime);
    let s = oracle.lock();
    SeedReport {
        seed,
        mode: plan.mode,
        failures: s.failures.clone(),
        checks: s.checks,
        faults: s.faults.clone(),
        runs: s.runs.len(),
        records: plan.records.len(),
        mutations_applied: s.mutations_applied,
        hash: oracle_hash(&s),
        dedup: plan.dedup.is_some(),
        digest: plan.digest.is_some(),
        dedup_gaps: s.dedup_gaps,
        trace: s.trace.clone(),
    }
}

fn oracle_hash(s: &super::oracle::State) -> u64 {
    // The event hash plus the failures, so a changed verdict changes it.
    let mut h = 0u64;
    for f in &s.failures {
        h = h.rotate_left(7) ^ super::rng::fnv(f.message.as_bytes());
    }
    h ^ s.calls.len() as u64 ^ s.checks.rotate_left(17) ^ s.hash_value()
}

/// The last value of a gauge, if it was ever set.
fn gauge(gauges: &metrics_util::debugging::Snapshotter, name: &str) -> Option<f64> {
    gauges
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| match value {
            metrics_util::debugging::DebugValue::Gauge(g) if key.key().name() == name => {
                Some(g.into_inner())
            }
            _ => None,
        })
}

async fn pipeline_seed(
    oracle: &Oracle,
    store: &MemoryCheckpointStore,
    gauges: &metrics_util::debugging::Snapshotter,
    extra: &mut String,
) {
    let plan = oracle.plan();
    let mut n = 0u32;
    loop {
        let healthy = n >= plan.faulty_runs;
        let run = oracle.start_run("pipeline", healthy);
        let start = oracle.now();
        let base = Instant::now() - start;
        let shutdown = Shutdown::new();
        let acking = plan.mode == Mode::Acking;
        let run_fut = if acking {
            Either::Left(run_pipeline(
                oracle,
                AckSource::new(oracle.clone()),
                shutdown.clone(),
            ))
        } else {
            Either::Right(run_pipeline(
                oracle,
                SimSource::new(oracle.clone(), store.clone()),
                shutdown.clone(),
            ))
        };
        let check_tracked = |tracked: Option<f64>| {
            if acking {
                oracle.check_tracked_acking(run, tracked);
            } else {
                oracle.check_tracked_shards(run, tracked);
            }
        };
        let next = |times: &[Duration]| {
            if healthy {
                None
            } else {
                times.iter().copied().find(|&c| c > start)
            }
        };
        let crash = next(&plan.crashes);
        let cancel = next(&plan.cancels);
        let cap = start + Duration::from_secs(if healthy { 600 } else { 120 });
        let far = base + cap;
        // Boxed, so that `drop` below really drops it at the crash instant.
        let mut fut = Box::pin(AssertUnwindSafe(run_fut).catch_unwind());
        let mut cancelled = false;
        let ended_by = loop {
            tokio::select! {
                biased;
                result = &mut fut => break match result {
                    Err(payload) => {
                        let msg = panic_text(&*payload);
                        escaped(oracle, "Pipeline::run", &msg);
                        "panicked".to_string()
                    }
                    Ok(Ok(report)) => {
                        oracle.check_counts(run, &report.stats, "the RunReport");
                        check_tracked(gauge(gauges, "streamsift_tracked_shards"));
                        format!("returned {:?}", report.stopped)
                    }
                    Ok(Err(e)) => {
                        if let Some(report) = e.report() {
                            oracle.check_counts(run, &report.stats, "the report of a failed run");
                            check_tracked(gauge(gauges, "streamsift_tracked_shards"));
                        }
                        extra.push_str(&format!("run error: {e}\n"));
                        format!("failed: {e}")
                    }
                },
                () = tokio::time::sleep_until(base + crash.unwrap_or(cap)), if crash.is_some() => {
                    break "crashed".to_string();
                }
                () = tokio::time::sleep_until(base + cancel.unwrap_or(cap)), if cancel.is_some() && !cancelled => {
                    oracle.note(format!("{} shutdown requested", super::oracle::t(oracle.now())));
                    shutdown.cancel();
                    cancelled = true;
                }
                () = tokio::time::sleep_until(far) => break "stopped at the run's time cap".to_string(),
            }
        };
        // Drop the run (a crash cancels every call in flight now).
        drop(fut);
        oracle.end_run(run, ended_by);
        if healthy {
            break;
        }
        tokio::time::sleep(RESTART_DELAY).await;
        n += 1;
    }
}

/// Builds the seed's pipeline over `source` and runs it.
async fn run_pipeline<S: Source>(
    oracle: &Oracle,
    source: S,
    shutdown: Shutdown,
) -> Result<RunReport, PipelineError> {
    let plan = oracle.plan();
    let k = &plan.knobs;
    Pipeline::new(source)
        .decode::<super::components::Item, _>(decoder(oracle.clone()))
        .classify(SimClassifier(oracle.clone()))
        .policy(policy(&plan))
        .route(HygieneRouter::new(oracle.clone()))
        .dead_letter(SimDeadLetter(oracle.clone()))
        .max_in_flight(k.max_in_flight)
        .max_unacked(k.max_unacked)
        .commit_every(k.commit_every, k.commit_interval)
        .ack_every(k.ack_every.0, k.ack_every.1)
        .retry(k.retry.clone())
        .call_timeout(CALL_TIMEOUT)
        .record_timeout(k.record_timeout)
        .seed(plan.seed)
        .shutdown_handle(shutdown)
        .review_opt(k.labeler.then(|| SimLabeler(oracle.clone())))
        .run()
        .await
}

async fn batch_seed(oracle: &Oracle, on_exhausted: OnExhausted) {
    let plan = oracle.plan();
    let k = &plan.knobs;
    let kind = match on_exhausted {
        OnExhausted::Report => "lambda",
        OnExhausted::DeadLetter => "kcl",
        other => panic!("the simulation does not know {other:?}"),
    };
    let builder = batch::builder()
        .decode::<super::components::Item, _>(decoder(oracle.clone()))
        .classify(SimClassifier(oracle.clone()))
        .policy(policy(&plan))
        .route(HygieneRouter::new(oracle.clone()))
        .dead_letter(SimDeadLetter(oracle.clone()))
        .max_in_flight(k.max_in_flight)
        .retry(k.retry.clone())
        .call_timeout(CALL_TIMEOUT)
        .record_timeout(k.record_timeout)
        .seed(plan.seed)
        .review_opt(k.labeler.then(|| SimLabeler(oracle.clone())));
    let processor = builder
        .into_batch_processor()
        .expect("the simulation's configuration is valid")
        .on_exhausted(on_exhausted);
    let p_crash = if plan.crashes.is_empty() { 0.0 } else { 0.15 };
    let mut invocations = 0u32;
    // Healthy invocations must be enough to finish every shard even one
    // record at a time, after whatever the faulty ones left.
    let healthy_budget = 60 + 2 * (plan.records.len() / k.batch_size.max(1)) as u32;
    'shards: for shard in &plan.shards {
        let len = shard.records.len();
        let mut pos = 0;
        while pos < len {
            if invocations >= plan.faulty_runs + healthy_budget {
                break 'shards;
            }
            let healthy = invocations >= plan.faulty_runs;
            invocations += 1;
            let run = oracle.start_run(kind, healthy);
            let ids: Vec<usize> = shard.records[pos..(pos + k.batch_size).min(len)].to_vec();
            let records = ids.iter().map(|&r| record(&plan, r)).collect();
            let now = Instant::now();
            let stop_at = if healthy {
                None
            } else {
                plan.batch_deadline.map(|d| now + d)
            };
            let crash =
                (!healthy && unit(plan.seed, &[0xc4a5, u64::from(run)]) < p_crash).then(|| {
                    now + Duration::from_millis(
                        (unit(plan.seed, &[0xc4a6, u64::from(run)]) * 5000.0) as u64,
                    )
                });
            let mut fut =
                Box::pin(AssertUnwindSafe(processor.process(records, stop_at)).catch_unwind());
            let (done, ended_by) = tokio::select! {
                biased;
                result = &mut fut => match result {
                    Err(payload) => {
                        let msg = panic_text(&*payload);
                        escaped(oracle, "BatchProcessor::process (the batch is lost)", &msg);
                        (0, "panicked".to_string())
                    }
                    Ok(report) => {
                        oracle.check_counts(run, &report.stats, "the BatchReport");
                        if report.outcomes.len() != ids.len() {
                            oracle.fail(
                                "counts_are_true",
                                "one outcome per record",
                                format!(
                                    "counts_are_true: the BatchReport of run {run} has {} outcomes for {} records",
                                    report.outcomes.len(),
                                    ids.len()
                                ),
                            );
                        }
                        for (i, o) in report.outcomes.iter().enumerate() {
                            if let Some(&r) = ids.get(i) {
                                oracle.check_outcome(run, r, o);
                            }
                        }
                        let done = report.first_not_done().unwrap_or(ids.len());
                        (done, format!("returned, {done} of {} done", ids.len()))
                    }
                },
                () = tokio::time::sleep_until(crash.unwrap_or(now)), if crash.is_some() => {
                    (0, "crashed".to_string())
                }
            };
            drop(fut);
            oracle.end_run(run, ended_by);
            if done > 0 {
                // The engine checkpoints up to the last record done in order.
                let last = &plan.records[ids[done - 1]];
                let cp = Checkpoint {
                    shard: shard.id.clone(),
                    position: Position::Sequence(Sequence::from_offset(last.index)),
                };
                oracle.check_commit(&[cp], "a batch checkpoint");
            }
            pos += done;
            if done < ids.len() {
                tokio::time::sleep(RESTART_DELAY).await;
            }
        }
    }
}
