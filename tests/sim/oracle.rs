//! The oracle: it knows every record of the world, is told about every call
//! any component receives, and checks the invariants. Every failure names
//! its invariant.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use streamsift::checkpoint::MemoryCheckpointStore;
use streamsift::router::MemoryDedupStore;
use streamsift::{Checkpoint, Position, Stage, Stats};
use tokio::time::Instant;

use super::plan::{CALL_TIMEOUT, Comp, Fault, MARKER, Mode, Plan, STREAM};
use super::rng::fnv;

/// The most failing calls per virtual second any dependency may see.
///
/// Why 100: the configured retry policy waits at least `initial_backoff / 2`
/// = 25 ms between failed source reads (at most 40/s); a failed commit
/// should wait for a backoff or the next commit trigger (the commit interval
/// is at least 100 ms); a failing dead-letter sink gets at most
/// `max_in_flight` (≤ 12) × `max_attempts` (≤ 4) = 48 writes before the run
/// stops, and restarts are 1 s apart. Anything past 100/s is a loop without
/// a wait.
pub const MAX_FAILED_CALLS_PER_SEC: usize = 100;

/// Beyond this many calls to one dependency in one virtual second the world
/// starts answering slowly, so that a loop without a wait (already reported
/// by `nothing_spins`) cannot freeze the paused clock forever.
const PACE_AFTER: u32 = 2_000;

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still running.
    Pending,
    /// Succeeded.
    Ok,
    /// The router returned a receipt with `skipped = true`.
    Skipped,
    /// Returned an error of this kind.
    Err(&'static str),
    /// Panicked (on purpose).
    Panicked,
    /// Dropped before it finished.
    Cancelled,
    /// Claimed success without doing the work (a mutation).
    Lied,
}

/// One call to a dependency.
#[derive(Clone, Debug)]
pub struct Call {
    /// Which dependency.
    pub comp: Comp,
    /// For which record.
    pub rec: Option<usize>,
    /// In which run (or batch invocation).
    pub run: u32,
    /// The attempt number for this record, dependency and run (1-based).
    pub attempt: u32,
    /// Virtual start time.
    pub start: Duration,
    /// Virtual end time, once ended.
    pub end: Option<Duration>,
    /// How it ended.
    pub outcome: Outcome,
    /// The fault injected.
    pub fault: Fault,
}

/// Why a record counts as done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoneKind {
    /// The router returned Ok on the notify route.
    Routed,
    /// Classified with a score the policy discards.
    Discarded,
    /// The labeler (or the review route) returned Ok.
    Reviewed,
    /// The dead-letter sink returned Ok.
    DeadLettered,
}

/// One run of the Pipeline, or one batch invocation.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// Pipeline, Lambda or KCL.
    pub kind: &'static str,
    /// Virtual start.
    pub start: Duration,
    /// Virtual end.
    pub end: Option<Duration>,
    /// How it ended.
    pub ended_by: String,
    /// Whether the world was healthy.
    pub healthy: bool,
}

/// An invariant that did not hold.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The invariant's name.
    pub invariant: &'static str,
    /// A short tag grouping failures of the same cause across seeds.
    pub tag: String,
    /// The full message.
    pub message: String,
}

/// Hygiene: what the oracle knows of one record's key under `Dedup`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DedupRec {
    /// Deliveries of the notify route the inner router accepted.
    pub accepts: u32,
    /// The last accept's `Dedup` call has not ended and its key is not written.
    unresolved: bool,
    /// The call index of the last accept.
    last_call: usize,
    /// The last accept is in the documented gap: its `Dedup` call was
    /// dropped (a crash or a timeout) before the store write finished.
    gap: bool,
    /// The store finished writing the key.
    pub recorded: bool,
    /// The mutation dropped a write of this key.
    dropped: bool,
}

/// The oracle's state.
pub struct State {
    /// Hygiene: the dedup store every run of the seed shares.
    pub dedup_store: Option<Arc<MemoryDedupStore>>,
    /// Hygiene: per record.
    pub dedup: Vec<DedupRec>,
    /// Hygiene: (run, record) answered skipped by `Dedup` itself.
    dedup_skips: BTreeSet<(u32, usize)>,
    /// Hygiene: duplicates sent in the documented gap.
    pub dedup_gaps: u64,
    /// Hygiene: accepted calls whose `Dedup` call was dropped before it
    /// answered: the engine never learnt of them, so its counts leave them out.
    dedup_unanswered: BTreeSet<usize>,
    /// Hygiene: records the inner router accepted, directly or in a digest.
    pub ever_accepted: Vec<bool>,
    /// Hygiene: (run, record) in a digest the inner router accepted.
    digest_accepted: BTreeSet<(u32, usize)>,
    /// Hygiene: (run, record) answered with a digest's receipt.
    digest_routed: BTreeSet<(u32, usize)>,
    t0: Instant,
    /// Shards whose `SHARD_END` commit was answered Ok.
    acked_shard_ends: BTreeSet<String>,
    /// The world.
    pub plan: Arc<Plan>,
    store: MemoryCheckpointStore,
    /// The current run.
    pub run: u32,
    /// Whether the current run is healthy.
    pub healthy: bool,
    /// Every call.
    pub calls: Vec<Call>,
    attempts: BTreeMap<(u32, Comp, Option<usize>), u32>,
    /// Why each record is done, if it is.
    pub done: Vec<Option<DoneKind>>,
    /// Dead letters stored per record: (stage, kind).
    pub dead: Vec<Vec<(Stage, String)>>,
    /// Acking mode: records the queue has deleted (acked).
    pub acked: Vec<bool>,
    /// Acking mode: records in an ack call answered Ok (the pipeline knows
    /// they are acked; a lost answer leaves it not knowing).
    acks_answered: Vec<bool>,
    /// Acking mode: (run, record) handed out by the source.
    handed: BTreeSet<(u32, usize)>,
    ever_dispatched: Vec<bool>,
    dispatch: BTreeMap<(u32, usize), Duration>,
    /// Every run.
    pub runs: Vec<RunInfo>,
    /// Invariant failures.
    pub failures: Vec<Failure>,
    /// Invariant checks made.
    pub checks: u64,
    /// Faults injected, by dependency and kind.
    pub faults: BTreeMap<String, u64>,
    /// Mutations that changed what the world did.
    pub mutations_applied: u64,
    pace: BTreeMap<Comp, (u128, u32)>,
    hash: u64,
    verbose: bool,
    /// The trace, when verbose.
    pub trace: Vec<String>,
}

/// A shared handle on the oracle.
#[derive(Clone)]
pub struct Oracle(Arc<Mutex<State>>);

/// Records a call's end; if dropped before `finish`, the call was cancelled.
pub struct CallGuard {
    oracle: Oracle,
    idx: usize,
    finished: bool,
}

impl CallGuard {
    /// The call's index in [`State::calls`].
    pub fn idx(&self) -> usize {
        self.idx
    }

    /// The call ended with `outcome`.
    pub fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.oracle.end_call(self.idx, outcome);
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.oracle.end_call(self.idx, Outcome::Cancelled);
        }
    }
}

/// The secs.millis of a virtual time, for messages.
pub fn t(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn stage_of(comp: Comp) -> Stage {
    match comp {
        Comp::Decode => Stage::Decode,
        Comp::Classify => Stage::Classify,
        Comp::Route => Stage::Route,
        _ => Stage::Review,
    }
}

/// The skipped count a report gives: the oracle checks that skipped
/// receipts are counted there, and that `routed` excludes them.
fn reported_skipped(stats: &Stats) -> Option<u64> {
    Some(stats.skipped)
}

impl Oracle {
    /// A new oracle for `plan`, reading committed positions from `store`.
    pub fn new(plan: Arc<Plan>, store: MemoryCheckpointStore, verbose: bool) -> Oracle {
        let n = plan.records.len();
        Oracle(Arc::new(Mutex::new(State {
            dedup_store: plan
                .dedup
                .map(|_| Arc::new(MemoryDedupStore::new(Duration::from_secs(3600)))),
            dedup: vec![DedupRec::default(); n],
            dedup_skips: BTreeSet::new(),
            dedup_gaps: 0,
            dedup_unanswered: BTreeSet::new(),
            ever_accepted: vec![false; n],
            digest_accepted: BTreeSet::new(),
            digest_routed: BTreeSet::new(),
            t0: Instant::now(),
            acked_shard_ends: BTreeSet::new(),
            plan,
            store,
            run: 0,
            healthy: false,
            calls: Vec::new(),
            attempts: BTreeMap::new(),
            done: vec![None; n],
            dead: vec![Vec::new(); n],
            acked: vec![false; n],
            acks_answered: vec![false; n],
            handed: BTreeSet::new(),
            ever_dispatched: vec![false; n],
            dispatch: BTreeMap::new(),
            runs: Vec::new(),
            failures: Vec::new(),
            checks: 0,
            faults: BTreeMap::new(),
            mutations_applied: 0,
            pace: BTreeMap::new(),
            hash: 0xcbf2_9ce4_8422_2325,
            verbose,
            trace: Vec::new(),
        })))
    }

    /// Locks the state (a panicking component never holds the lock).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Virtual time since the seed started.
    pub fn now(&self) -> Duration {
        Instant::now() - self.lock().t0
    }

    /// The world.
    pub fn plan(&self) -> Arc<Plan> {
        self.lock().plan.clone()
    }

    /// The record with this id.
    pub fn rec(&self, id: &str) -> Option<usize> {
        self.lock().plan.by_id.get(id).copied()
    }

    /// Registers the start of a call; returns its guard, the fault to
    /// inject, and an extra delay when the dependency is being hammered.
    pub fn begin(&self, comp: Comp, rec: Option<usize>) -> (CallGuard, Fault, Duration) {
        let now = self.now();
        let mut s = self.lock();
        let run = s.run;
        let attempt = {
            let a = s.attempts.entry((run, comp, rec)).or_insert(0);
            *a += 1;
            *a
        };
        let fault = s.plan.decide(comp, rec, run, attempt, now, s.healthy);
        if let Some(kind) = fault.kind() {
            *s.faults
                .entry(format!("{}.{kind}", comp.name()))
                .or_insert(0) += 1;
        }
        if comp == Comp::Decode
            && let Some(r) = rec
        {
            s.dispatch.entry((run, r)).or_insert(now);
            s.ever_dispatched[r] = true;
        }
        let sec = now.as_millis() / 1000;
        let pace = {
            let p = s.pace.entry(comp).or_insert((sec, 0));
            if p.0 != sec {
                *p = (sec, 0);
            }
            p.1 += 1;
            if p.1 > PACE_AFTER {
                Duration::from_millis(20)
            } else {
                Duration::ZERO
            }
        };
        let idx = s.calls.len();
        s.calls.push(Call {
            comp,
            rec,
            run,
            attempt,
            start: now,
            end: None,
            outcome: Outcome::Pending,
            fault,
        });
        let rid = rec.map_or("-".to_string(), |r| s.plan.records[r].id.clone());
        s.event(format!(
            "{} run{run} {} {rid} #{attempt} begin {fault:?}",
            t(now),
            comp.name()
        ));
        drop(s);
        (
            CallGuard {
                oracle: self.clone(),
                idx,
                finished: false,
            },
            fault,
            pace,
        )
    }

    fn end_call(&self, idx: usize, outcome: Outcome) {
        let now = self.now();
        let mut s = self.lock();
        let (comp, rec) = {
            let c = &mut s.calls[idx];
            c.end = Some(now);
            c.outcome = outcome;
            (c.comp, c.rec)
        };
        if let Some(r) = rec
            && comp == Comp::Route
            && matches!(outcome, Outcome::Ok | Outcome::Skipped)
        {
            s.ever_accepted[r] = true;
            if s.plan.dedup.is_some() {
                s.dedup_accept(r, idx, now);
            }
        }
        if let Some(r) = rec
            && s.done[r].is_none()
        {
            let review_band = s.plan.knobs.review_band;
            let done = match (comp, outcome) {
                (Comp::Classify, Outcome::Ok) if s.plan.records[r].discards(review_band) => {
                    Some(DoneKind::Discarded)
                }
                // Behind `Dedup`, done when `Dedup` answers (`dedup_answered`).
                (Comp::Route, Outcome::Ok | Outcome::Skipped) if s.plan.dedup.is_none() => {
                    Some(DoneKind::Routed)
                }
                (Comp::Review, Outcome::Ok) => Some(DoneKind::Reviewed),
                (Comp::Dead, Outcome::Ok) => Some(DoneKind::DeadLettered),
                _ => None,
            };
            s.done[r] = done;
        }
        let rid = rec.map_or("-".to_string(), |r| s.plan.records[r].id.clone());
        s.event(format!("{} {} {rid} end {outcome:?}", t(now), comp.name()));
    }

    /// The sink stored a dead letter for `rec`.
    pub fn dead_lettered(&self, rec: usize, stage: Stage, kind: &str) {
        let mut s = self.lock();
        s.dead[rec].push((stage, kind.to_string()));
        s.event(format!("dead letter {} {stage:?} {kind}", rec));
    }

    /// Adds a line to the trace (and its hash).
    pub fn note(&self, line: String) {
        self.lock().event(line);
    }

    /// Hygiene: the dedup store finished writing the key of `rec`.
    pub fn dedup_recorded(&self, rec: usize) {
        let mut s = self.lock();
        s.dedup[rec].recorded = true;
        s.dedup[rec].unresolved = false;
        let id = s.plan.records[rec].id.clone();
        s.event(format!("dedup recorded {id}"));
    }

    /// Hygiene: the mutation dropped the write of the key of `rec`.
    pub fn dedup_dropped(&self, rec: usize) {
        self.lock().dedup[rec].dropped = true;
    }

    /// Hygiene: a `Dedup` call for `rec` ended (`cancelled`: its future was
    /// dropped). An accept whose key is not written by then is in the gap
    /// only if the call was dropped.
    pub fn dedup_call_end(&self, rec: usize, cancelled: bool) {
        let mut s = self.lock();
        let d = &mut s.dedup[rec];
        if d.unresolved {
            d.unresolved = false;
            d.gap = cancelled;
            let idx = d.last_call;
            if cancelled {
                s.dedup_unanswered.insert(idx);
            }
        }
    }

    /// Hygiene: `Dedup` answered Ok for `rec`, whose notify calls before
    /// the `Dedup` call numbered `before`: the record is done if the router
    /// accepted it in this call, or accepted it earlier and the key is written.
    pub fn dedup_answered(&self, rec: usize, before: u32) {
        let mut s = self.lock();
        let d = s.dedup[rec];
        if s.done[rec].is_none() && (d.accepts > before || (d.recorded && d.accepts > 0)) {
            s.done[rec] = Some(DoneKind::Routed);
        }
    }

    /// Hygiene: the inner router accepted a digest (call `idx`) folding `recs`.
    /// digest_once: in one run a record is in at most one accepted digest
    /// (without `Dedup`; with it, `effectively_once` judges).
    pub fn digest_accepted(&self, recs: &[usize], idx: usize) {
        let now = self.now();
        let mut s = self.lock();
        let run = s.run;
        for &r in recs {
            s.checks += 1;
            s.ever_accepted[r] = true;
            // Behind `Dedup`, effectively_once judges a second accept (a
            // `Dedup` call dropped in the gap is retried, and folded again).
            if !s.digest_accepted.insert((run, r)) && s.plan.dedup.is_none() {
                let msg = format!(
                    "digest_once: at {} a second digest folding record {} was accepted in run {run}; \
                     its calls: {}",
                    t(now),
                    s.plan.records[r].id,
                    s.history(r)
                );
                s.fail(
                    "digest_once",
                    "a record in two accepted digests".into(),
                    msg,
                );
            }
            if s.plan.dedup.is_some() {
                s.dedup_accept(r, idx, now);
            } else if s.done[r].is_none() {
                s.done[r] = Some(DoneKind::Routed);
            }
        }
        s.event(format!("{} digest accepted {recs:?}", t(now)));
    }

    /// Hygiene: the router stack answered Ok for `rec` (with a digest's
    /// receipt if the digest was accepted in this run and the record was
    /// not sent directly). digest_done_when_accepted: only for a record
    /// the inner router accepted, directly or in a digest.
    pub fn stack_answered(&self, rec: usize) {
        let mut s = self.lock();
        s.checks += 1;
        let run = s.run;
        // A direct call whose `Dedup` call was dropped before it answered
        // does not count: the pipeline saw a timeout, and this answer (a
        // digest's, after the retry) is the one it counts.
        let direct = s.calls.iter().enumerate().any(|(i, c)| {
            c.run == run
                && c.comp == Comp::Route
                && c.rec == Some(rec)
                && matches!(c.outcome, Outcome::Ok | Outcome::Skipped)
                && !s.dedup_unanswered.contains(&i)
        });
        if !direct && s.digest_accepted.contains(&(run, rec)) {
            s.digest_routed.insert((run, rec));
        }
        if !s.ever_accepted[rec] {
            let msg = format!(
                "digest_done_when_accepted: at {} the router answered Ok for record {}, which the inner \
                 router never accepted, directly or in a digest; its calls: {}",
                t(Instant::now() - s.t0),
                s.plan.records[rec].id,
                s.history(rec)
            );
            s.fail(
                "digest_done_when_accepted",
                "Ok before the inner router accepted".into(),
                msg,
            );
        }
    }

    /// Hygiene: `Dedup` answered skipped for `rec` without calling the router.
    pub fn dedup_skipped(&self, rec: usize) {
        let mut s = self.lock();
        let run = s.run;
        s.dedup_skips.insert((run, rec));
        let id = s.plan.records[rec].id.clone();
        s.event(format!("dedup skipped {id}"));
    }

    /// Hygiene: accepts of `rec`'s key so far.
    pub fn dedup_accepts(&self, rec: usize) -> u32 {
        self.lock().dedup[rec].accepts
    }

    /// Calls of the notify route made for `rec` so far.
    pub fn route_calls(&self, rec: usize) -> usize {
        let s = self.lock();
        s.calls
            .iter()
            .filter(|c| c.comp == Comp::Route && c.rec == Some(rec))
            .count()
    }

    /// Counts a mutation that changed what the world did.
    pub fn mutated(&self) {
        self.lock().mutations_applied += 1;
    }

    /// Records an invariant failure.
    pub fn fail(&self, invariant: &'static str, tag: impl Into<String>, message: String) {
        self.lock().fail(invariant, tag.into(), message);
    }

    /// bounded_memory: after a Pipeline run ends (not a crash), the shards
    /// it still tracks (the `streamsift_tracked_shards` gauge) are at most
    /// the shards whose `SHARD_END` is not committed: closed shards are
    /// released, so tracking does not grow with the stream's history.
    pub fn check_tracked_shards(&self, run: u32, tracked: Option<f64>) {
        let mut s = self.lock();
        s.checks += 1;
        // Closed as far as the pipeline can know: a SHARD_END commit that
        // was answered Ok (one whose answer was lost may be in the store,
        // but the pipeline rightly keeps tracking that shard).
        let open = s.plan.shards.len() - s.acked_shard_ends.len();
        let msg = match tracked {
            None => Some(format!(
                "bounded_memory: run {run} ended without reporting the streamsift_tracked_shards gauge"
            )),
            Some(n) if n > open as f64 => Some(format!(
                "bounded_memory: run {run} ended still tracking {n} shards, but only {open} of {} are \
                 not closed (SHARD_END committed and acknowledged)",
                s.plan.shards.len()
            )),
            Some(_) => None,
        };
        if let Some(msg) = msg {
            s.fail(
                "bounded_memory",
                "closed shards still tracked".to_string(),
                msg,
            );
        }
    }

    /// Whether `rec` is done (routed, discarded, reviewed, dead-lettered).
    pub fn is_done(&self, rec: usize) -> bool {
        self.lock().done[rec].is_some()
    }

    /// Acking mode: whether the queue deleted `rec`.
    pub fn is_acked(&self, rec: usize) -> bool {
        self.lock().acked[rec]
    }

    /// `no_loss` at an ack: the queue deletes `recs`, so each must be done.
    pub fn apply_acks(&self, recs: &[usize], what: &str) {
        let mut s = self.lock();
        let run = s.run;
        for &r in recs {
            s.checks += 1;
            if s.done[r].is_none() {
                let msg = format!(
                    "no_loss: {what} in run {run} deletes record {}, which is not done; its calls: {}",
                    s.plan.records[r].id,
                    s.history(r)
                );
                s.fail("no_loss", "ack of a record not done".into(), msg);
            }
            s.acked[r] = true;
        }
    }

    /// Acking mode: the source handed `recs` out in the current run.
    pub fn handed_out(&self, recs: &[usize]) {
        let mut s = self.lock();
        let run = s.run;
        s.handed.extend(recs.iter().map(|&r| (run, r)));
    }

    /// An ack call was answered Ok for `recs`.
    pub fn acks_answered(&self, recs: &[usize]) {
        let mut s = self.lock();
        for &r in recs {
            s.acks_answered[r] = true;
        }
    }

    /// bounded_memory (acking mode): after a run ends (not a crash), the
    /// shards it still tracks are at most those with a record it started
    /// and did not ack: a shard with nothing outstanding is released, so
    /// tracking does not grow with the number of message groups.
    pub fn check_tracked_acking(&self, run: u32, tracked: Option<f64>) {
        let mut s = self.lock();
        s.checks += 1;
        let outstanding: BTreeSet<usize> = (0..s.plan.records.len())
            .filter(|&r| s.dispatch.contains_key(&(run, r)) && !s.acks_answered[r])
            .map(|r| s.plan.records[r].shard)
            .collect();
        if let Some(n) = tracked
            && n > outstanding.len() as f64
        {
            let msg = format!(
                "bounded_memory: run {run} ended still tracking {n} shards, but only {} have a record \
                 it started whose ack was not answered Ok",
                outstanding.len()
            );
            s.fail("bounded_memory", "acked shards still tracked".into(), msg);
        }
    }

    /// A commit the source answered Ok: its `SHARD_END`s are closed shards.
    pub fn acknowledged(&self, checkpoints: &[Checkpoint]) {
        let mut s = self.lock();
        for cp in checkpoints {
            if cp.position == Position::ShardEnd {
                s.acked_shard_ends.insert(cp.shard.to_string());
            }
        }
    }

    /// Starts a run; checks `bounded_duplicates` across restarts.
    pub fn start_run(&self, kind: &'static str, healthy: bool) -> u32 {
        let now = self.now();
        let mut s = self.lock();
        let run = s.runs.len() as u32;
        s.run = run;
        s.healthy = healthy;
        s.runs.push(RunInfo {
            kind,
            start: now,
            end: None,
            ended_by: String::new(),
            healthy,
        });
        s.event(format!(
            "{} run{run} start {kind} healthy={healthy}",
            t(now)
        ));
        if matches!(s.plan.mode, Mode::Pipeline | Mode::Acking) && run > 0 {
            // Records the previous run was given and that no commit (or
            // ack) covers come again: at most max_unacked of them.
            let positions = s.store.positions(STREAM);
            let acking = s.plan.mode == Mode::Acking;
            let again: Vec<usize> = (0..s.plan.records.len())
                .filter(|&r| {
                    s.dispatch.contains_key(&(run - 1, r))
                        && !(if acking {
                            s.acked[r]
                        } else {
                            s.covered(&positions, r)
                        })
                })
                .collect();
            s.checks += 1;
            let limit = s.plan.knobs.max_unacked;
            if again.len() > limit {
                let ids: Vec<&str> = again
                    .iter()
                    .take(10)
                    .map(|&r| s.plan.records[r].id.as_str())
                    .collect();
                let msg = format!(
                    "bounded_duplicates: run {run} starts with {} records that run {} was given and no \
                     commit covers (max_unacked = {limit}), e.g. {ids:?}",
                    again.len(),
                    run - 1
                );
                s.fail(
                    "bounded_duplicates",
                    "redelivered beyond max_unacked".into(),
                    msg,
                );
            }
        }
        run
    }

    /// Ends the current run.
    pub fn end_run(&self, run: u32, ended_by: String) {
        let now = self.now();
        let mut s = self.lock();
        let info = &s.runs[run as usize];
        let line = format!(
            "{} run{run} ({}, started {}, healthy={}) end {ended_by}",
            t(now),
            info.kind,
            t(info.start),
            info.healthy
        );
        s.event(line);
        if s.plan.mode == Mode::Acking && ended_by == "returned SourceExhausted" {
            // A run that returns because its source ended has drained:
            // every record the source gave it is done, none left behind.
            s.checks += 1;
            let left: Vec<usize> = s
                .handed
                .iter()
                .filter(|&&(r_run, r)| r_run == run && s.done[r].is_none())
                .map(|&(_, r)| r)
                .collect();
            if let Some(&r) = left.first() {
                let msg = format!(
                    "no_loss: run {run} returned SourceExhausted with {} records its source gave it \
                     not done, e.g. {} (calls: {})",
                    left.len(),
                    s.plan.records[r].id,
                    s.history(r)
                );
                s.fail("no_loss", "source ended, records left behind".into(), msg);
            }
        }
        let info = &mut s.runs[run as usize];
        info.end = Some(now);
        info.ended_by = ended_by;
    }

    /// `no_loss` at a commit: every record up to each checkpoint is done.
    pub fn check_commit(&self, checkpoints: &[Checkpoint], what: &str) {
        let mut s = self.lock();
        let run = s.run;
        for cp in checkpoints {
            s.checks += 1;
            let Some(shard) = s.plan.shards.iter().position(|p| p.id == cp.shard) else {
                let msg = format!("no_loss: {what} names unknown shard {}", cp.shard);
                s.fail("no_loss", "unknown shard".into(), msg);
                continue;
            };
            let upto = match &cp.position {
                Position::ShardEnd => {
                    if !s.plan.shards[shard].closed {
                        let msg = format!(
                            "no_loss: {what} in run {run} commits SHARD_END for shard {}, which is open",
                            cp.shard
                        );
                        s.fail("no_loss", "SHARD_END on an open shard".into(), msg);
                    }
                    u64::MAX
                }
                Position::Sequence(seq) => seq.number.parse::<u64>().unwrap_or(u64::MAX),
            };
            let not_done: Vec<usize> = s.plan.shards[shard]
                .records
                .iter()
                .copied()
                .filter(|&r| s.plan.records[r].index <= upto && s.done[r].is_none())
                .collect();
            if let Some(&r) = not_done.first() {
                let msg = format!(
                    "no_loss: {what} in run {run} moves shard {} to {}, past record {} which is not \
                     done ({} such records); its calls: {}",
                    cp.shard,
                    describe(&cp.position),
                    s.plan.records[r].id,
                    not_done.len(),
                    s.history(r)
                );
                let tag = if matches!(cp.position, Position::ShardEnd) {
                    "commit passes a record not done (SHARD_END)"
                } else {
                    "commit passes a record not done"
                };
                s.fail("no_loss", tag.into(), msg);
            }
        }
    }

    /// `counts_are_true` for one run's report (or one batch's).
    pub fn check_counts(&self, run: u32, stats: &Stats, what: &str) {
        let mut s = self.lock();
        s.checks += 1;
        let review_band = s.plan.knobs.review_band;
        let mut sets: [BTreeSet<usize>; 6] = Default::default();
        for (_, c) in s
            .calls
            .iter()
            .enumerate()
            .filter(|(i, c)| c.run == run && !s.dedup_unanswered.contains(i))
        {
            let Some(r) = c.rec else { continue };
            if s.dedup_skips.contains(&(run, r)) {
                sets[2].insert(r);
            }
            if s.digest_routed.contains(&(run, r)) {
                sets[1].insert(r);
            }
            let i = match (c.comp, c.outcome) {
                (Comp::Decode, _) => 0,
                (Comp::Route, Outcome::Ok) => 1,
                (Comp::Route, Outcome::Skipped) => 2,
                (Comp::Review, Outcome::Ok) => 3,
                (Comp::Dead, Outcome::Ok) => 4,
                (Comp::Classify, Outcome::Ok) if s.plan.records[r].discards(review_band) => 5,
                _ => continue,
            };
            sets[i].insert(r);
        }
        let [n, routed, skipped, reviewed, dead, discarded] = sets.map(|x| x.len() as u64);
        let mut problems = Vec::new();
        if !stats.reconciles() {
            problems.push("stats.reconciles() is false".to_string());
        }
        let shard_sum =
            |f: fn(&streamsift::ShardStats) -> u64| stats.shards.values().map(f).sum::<u64>();
        if shard_sum(|x| x.records_in) != stats.records_in
            || shard_sum(|x| x.routed) != stats.routed
            || shard_sum(|x| x.dead_lettered) != stats.dead_lettered
            || shard_sum(|x| x.discarded) != stats.discarded
            || shard_sum(|x| x.sent_for_review) != stats.sent_for_review
        {
            problems.push("per-shard counts do not add up to the totals".to_string());
        }
        if stats.records_in != n {
            problems.push(format!(
                "records_in = {} but {n} records were started",
                stats.records_in
            ));
        }
        let mut tag = "report disagrees with the calls made";
        match reported_skipped(stats) {
            Some(sk) if sk != skipped => {
                problems.push(format!(
                    "skipped = {sk} but {skipped} receipts had skipped = true"
                ));
            }
            _ => {}
        }
        if stats.routed != routed {
            if stats.routed == routed + skipped && skipped > 0 {
                tag = "skipped receipts counted as routed";
            }
            problems.push(format!(
                "routed = {} but the router accepted {routed} deliveries and returned {skipped} \
                 receipts with skipped = true (skipped must not count as routed)",
                stats.routed
            ));
        }
        if stats.sent_for_review != reviewed {
            problems.push(format!(
                "sent_for_review = {} but {reviewed} review calls succeeded",
                stats.sent_for_review
            ));
        }
        if stats.dead_lettered != dead {
            problems.push(format!(
                "dead_lettered = {} but the sink stored {dead}",
                stats.dead_lettered
            ));
        }
        if stats.discarded != discarded {
            problems.push(format!(
                "discarded = {} but {discarded} records were classified into the discard range",
                stats.discarded
            ));
        }
        if !problems.is_empty() {
            let msg = format!(
                "counts_are_true: {what} (run {run}): {}",
                problems.join("; ")
            );
            s.fail("counts_are_true", tag.into(), msg);
        }
    }

    /// `counts_are_true` for one batch outcome: what the processor says
    /// happened to a record must be what the components saw.
    pub fn check_outcome(&self, run: u32, rec: usize, outcome: &streamsift::batch::RecordOutcome) {
        use streamsift::batch::RecordOutcome as O;
        let mut s = self.lock();
        s.checks += 1;
        let saw = |comp: Comp, ok: &[Outcome]| {
            s.calls.iter().any(|c| {
                c.run == run && c.rec == Some(rec) && c.comp == comp && ok.contains(&c.outcome)
            })
        };
        let honest = match outcome {
            O::Routed { .. } => {
                saw(Comp::Route, &[Outcome::Ok]) || s.digest_routed.contains(&(run, rec))
            }
            O::Skipped { .. } => {
                saw(Comp::Route, &[Outcome::Skipped]) || s.dedup_skips.contains(&(run, rec))
            }
            O::Reviewed => saw(Comp::Review, &[Outcome::Ok]),
            O::DeadLettered { .. } => saw(Comp::Dead, &[Outcome::Ok]),
            O::Discarded => {
                saw(Comp::Classify, &[Outcome::Ok])
                    && s.plan.records[rec].discards(s.plan.knobs.review_band)
            }
            O::FailedRetryable { .. } | O::NotStarted => true,
            // An outcome this oracle does not know cannot be vouched for.
            _ => false,
        };
        if !honest {
            let msg = format!(
                "counts_are_true: batch run {run} reports {outcome:?} for record {}, but its calls say \
                 otherwise: {}",
                s.plan.records[rec].id,
                s.history(rec)
            );
            s.fail(
                "counts_are_true",
                "batch outcome not backed by a call".into(),
                msg,
            );
        }
    }

    /// The end-of-seed checks; `logs` is what the seed logged.
    pub fn end_seed(&self, logs: &str) {
        let mut s = self.lock();
        s.check_call_times();
        s.check_sequential_attempts();
        s.check_spinning();
        s.check_poison();
        s.check_all_done();
        s.check_ordered();
        s.check_logs(logs);
    }
}

fn describe(p: &Position) -> String {
    match p {
        Position::ShardEnd => "SHARD_END".into(),
        Position::Sequence(s) => format!("sequence {}", s.number),
    }
}

impl State {
    /// effectively_once: the inner router accepts a key a second time only
    /// if the accept before was in the documented gap (its `Dedup` call was
    /// dropped between the send and the store write); those are counted.
    fn dedup_accept(&mut self, r: usize, idx: usize, now: Duration) {
        self.checks += 1;
        let d = self.dedup[r];
        if d.accepts > 0 {
            if d.dropped {
                self.mutations_applied += 1;
            }
            let id = self.plan.records[r].id.clone();
            if d.gap && !d.recorded {
                self.dedup_gaps += 1;
                self.event(format!("{} dedup gap duplicate {id}", t(now)));
            } else {
                let why = if d.recorded {
                    "its key was written to the store"
                } else if d.unresolved {
                    "the Dedup call of the accept before is still running"
                } else {
                    "the Dedup call of the accept before returned without writing its key"
                };
                let msg = format!(
                    "effectively_once: at {} the router accepted record {id} again (accept {}), though {why}; \
                     its calls: {}",
                    t(now),
                    d.accepts + 1,
                    self.history(r)
                );
                self.fail("effectively_once", "a key accepted twice".into(), msg);
            }
        }
        let d = &mut self.dedup[r];
        d.accepts += 1;
        d.last_call = idx;
        d.unresolved = true;
        d.gap = false;
    }

    /// The hash of the event log so far.
    pub fn hash_value(&self) -> u64 {
        self.hash
    }

    fn event(&mut self, line: String) {
        self.hash = (self.hash ^ fnv(line.as_bytes())).wrapping_mul(0x0100_0000_01b3);
        if self.verbose {
            self.trace.push(line);
        }
    }

    fn fail(&mut self, invariant: &'static str, tag: String, message: String) {
        self.event(format!("FAIL {invariant}: {message}"));
        self.failures.push(Failure {
            invariant,
            tag,
            message,
        });
    }

    fn covered(&self, positions: &BTreeMap<streamsift::ShardId, Position>, r: usize) -> bool {
        let rec = &self.plan.records[r];
        match positions.get(&self.plan.shards[rec.shard].id) {
            Some(Position::ShardEnd) => true,
            Some(Position::Sequence(seq)) => {
                seq.number.parse::<u64>().is_ok_and(|n| rec.index <= n)
            }
            None => false,
        }
    }

    fn history(&self, r: usize) -> String {
        let calls: Vec<String> = self
            .calls
            .iter()
            .filter(|c| c.rec == Some(r))
            .map(|c| {
                format!(
                    "run{} {}#{} [{}..{}] {:?} (fault {:?})",
                    c.run,
                    c.comp.name(),
                    c.attempt,
                    t(c.start),
                    c.end.map_or("-".into(), t),
                    c.outcome,
                    c.fault
                )
            })
            .collect();
        let skip = calls.len().saturating_sub(8);
        let mut out = if skip > 0 {
            format!("({skip} earlier) ")
        } else {
            String::new()
        };
        out.push_str(&calls[skip..].join("; "));
        if calls.is_empty() {
            out.push_str("none");
        }
        out
    }

    /// per_call_time: a full call_timeout per attempt; record_timeout
    /// bounds the record.
    fn check_call_times(&mut self) {
        let record_timeout = self.plan.knobs.record_timeout;
        let mut found = Vec::new();
        for c in &self.calls {
            let Some(r) = c.rec else { continue };
            let Some(&dispatched) = self.dispatch.get(&(c.run, r)) else {
                continue;
            };
            let deadline = dispatched + record_timeout;
            let run_end = self.runs[c.run as usize].end.unwrap_or(Duration::MAX);
            let id = &self.plan.records[r].id;
            match c.comp {
                Comp::Classify | Comp::Route | Comp::Review => {
                    let Some(end) = c.end else { continue };
                    if c.outcome == Outcome::Cancelled && end < run_end && end < deadline {
                        let ran = end - c.start;
                        if ran < CALL_TIMEOUT {
                            found.push((
                                "per_call_time",
                                format!("{} attempt cut before call_timeout", c.comp.name()),
                                format!(
                                    "per_call_time: {} attempt {} for record {id} in run {} started at {}, \
                                     cut at {} after {} < call_timeout {}; the record was dispatched at {} \
                                     (record_timeout {}), so neither the record timeout nor a stop ended it",
                                    c.comp.name(),
                                    c.attempt,
                                    c.run,
                                    t(c.start),
                                    t(end),
                                    t(ran),
                                    t(CALL_TIMEOUT),
                                    t(dispatched),
                                    t(record_timeout)
                                ),
                            ));
                        }
                    }
                    if end > deadline && end <= run_end {
                        found.push((
                            "per_call_time",
                            format!("{} call ran past record_timeout", c.comp.name()),
                            format!(
                                "per_call_time: {} attempt {} for record {id} in run {} ended at {}, after the \
                                 record's deadline {} (dispatched {} + record_timeout {})",
                                c.comp.name(),
                                c.attempt,
                                c.run,
                                t(end),
                                t(deadline),
                                t(dispatched),
                                t(record_timeout)
                            ),
                        ));
                    }
                }
                Comp::Dead if c.attempt == 1 && c.start > deadline => {
                    found.push((
                        "per_call_time",
                        "dead letter started after record_timeout".to_string(),
                        format!(
                            "per_call_time: record {id} in run {} was handed to the dead-letter sink at {}, \
                             after its deadline {} (dispatched {} + record_timeout {})",
                            c.run,
                            t(c.start),
                            t(deadline),
                            t(dispatched),
                            t(record_timeout)
                        ),
                    ));
                }
                _ => {}
            }
        }
        self.checks += self.calls.len() as u64;
        for (inv, tag, msg) in found {
            self.fail(inv, tag, msg);
        }
    }

    /// bounded_duplicates within a run: an attempt starts only after the
    /// previous one failed or was cut.
    fn check_sequential_attempts(&mut self) {
        let mut by_key: BTreeMap<(u32, usize, Comp), Vec<usize>> = BTreeMap::new();
        for (i, c) in self.calls.iter().enumerate() {
            if let (Some(r), Comp::Classify | Comp::Route | Comp::Review | Comp::Dead) =
                (c.rec, c.comp)
            {
                by_key.entry((c.run, r, c.comp)).or_default().push(i);
            }
        }
        let mut found = Vec::new();
        for ((run, r, comp), idxs) in &by_key {
            self.checks += 1;
            for w in idxs.windows(2) {
                let (prev, cur) = (&self.calls[w[0]], &self.calls[w[1]]);
                let overlapping = prev.end.is_none_or(|e| e > cur.start);
                // An accept `Dedup` never answered (dropped in the gap) is,
                // for the engine, a timed-out attempt: retrying it is right.
                let after_success = matches!(prev.outcome, Outcome::Ok | Outcome::Skipped)
                    && !self.dedup_unanswered.contains(&w[0]);
                if overlapping || after_success {
                    found.push(format!(
                        "bounded_duplicates: {} attempt {} for record {} in run {run} started at {} while \
                         attempt {} ({}..{}) {}",
                        comp.name(),
                        cur.attempt,
                        self.plan.records[*r].id,
                        t(cur.start),
                        prev.attempt,
                        t(prev.start),
                        prev.end.map_or("-".into(), t),
                        if after_success { "had already succeeded" } else { "was still running" }
                    ));
                    break;
                }
            }
        }
        for msg in found {
            self.fail(
                "bounded_duplicates",
                "second attempt while the first ran or after it succeeded".into(),
                msg,
            );
        }
    }

    /// nothing_spins: bounded attempts per record, bounded failing calls
    /// per second per dependency.
    fn check_spinning(&mut self) {
        let max = self.plan.knobs.retry.max_attempts;
        let mut found = Vec::new();
        let mut per: BTreeMap<(u32, usize, Comp), u32> = BTreeMap::new();
        for c in &self.calls {
            if let (Some(r), Comp::Classify | Comp::Route | Comp::Review | Comp::Dead) =
                (c.rec, c.comp)
            {
                *per.entry((c.run, r, c.comp)).or_insert(0) += 1;
            }
        }
        for ((run, r, comp), n) in &per {
            self.checks += 1;
            if *n > max {
                found.push((
                    format!("{} attempts per record above max_attempts", comp.name()),
                    format!(
                        "nothing_spins: {} called {n} times for record {} in run {run}; the retry policy \
                         allows {max} attempts",
                        comp.name(),
                        self.plan.records[*r].id
                    ),
                ));
            }
        }
        for comp in [Comp::Read, Comp::Commit, Comp::Dead] {
            self.checks += 1;
            let times: Vec<Duration> = self
                .calls
                .iter()
                .filter(|c| {
                    c.comp == comp && matches!(c.outcome, Outcome::Err(_) | Outcome::Panicked)
                })
                .map(|c| c.start)
                .collect();
            let mut lo = 0;
            let mut worst = (0, Duration::ZERO);
            for hi in 0..times.len() {
                while times[hi] - times[lo] >= Duration::from_secs(1) {
                    lo += 1;
                }
                if hi + 1 - lo > worst.0 {
                    worst = (hi + 1 - lo, times[lo]);
                }
            }
            if worst.0 > MAX_FAILED_CALLS_PER_SEC {
                found.push((
                    format!("{} failing calls per second", comp.name()),
                    format!(
                        "nothing_spins: {} failing {} calls within one virtual second from {} (bound {}/s: \
                         retries must back off)",
                        worst.0,
                        comp.name(),
                        t(worst.1),
                        MAX_FAILED_CALLS_PER_SEC
                    ),
                ));
            }
        }
        for (tag, msg) in found {
            self.fail("nothing_spins", tag, msg);
        }
    }

    /// poison: a record whose user code panics is dead-lettered as `panic`
    /// at that stage.
    fn check_poison(&mut self) {
        let mut found = Vec::new();
        for (r, rec) in self.plan.records.iter().enumerate() {
            let Some(comp) = rec.poison else { continue };
            if !self.ever_dispatched[r] {
                continue;
            }
            // Folded into digests only, it never reached the router call
            // that panics on it; nor, after its last such call (which
            // panicked, and whose dead letter a crash cut short), in a
            // later run where a digest carried it.
            let last_direct_run = self
                .calls
                .iter()
                .filter(|c| c.comp == Comp::Route && c.rec == Some(r))
                .map(|c| c.run)
                .max();
            if comp == Comp::Route
                && self.plan.digest.is_some()
                && last_direct_run.is_none_or(|last| {
                    self.digest_accepted
                        .iter()
                        .any(|&(run, rec)| rec == r && run > last)
                })
            {
                continue;
            }
            self.checks += 1;
            let want = stage_of(comp);
            // A record that failed for good at an earlier stage (a
            // permanent classifier error, say) never reached the code that
            // panics: its dead letter from that stage is the right end.
            let order = |st: &Stage| match st {
                Stage::Decode => 0,
                Stage::Classify => 1,
                _ => 2,
            };
            if !self.dead[r].iter().any(|(st, kind)| {
                (*st == want && kind == "panic") || (kind != "panic" && order(st) < order(&want))
            }) {
                found.push(format!(
                    "poison: record {} panics in {} but was never dead-lettered with kind \"panic\" at stage \
                     {} (dead letters: {:?})",
                    rec.id,
                    comp.name(),
                    want.as_str(),
                    self.dead[r]
                ));
            }
        }
        for msg in found {
            self.fail(
                "poison",
                "poison record not dead-lettered as panic".into(),
                msg,
            );
        }
    }

    /// Acking mode: every record is acked by the end (the last, healthy
    /// run stops gracefully: it drains and flushes its acks); with ordered
    /// shards, a record's first call in a run starts only after every call
    /// of the record before it in its shard (in that run) has ended.
    fn check_ordered(&mut self) {
        if self.plan.mode != Mode::Acking {
            return;
        }
        self.checks += 1;
        let healthy_end = self.runs.last().is_some_and(|r| r.healthy);
        let not_acked: Vec<usize> = (0..self.plan.records.len())
            .filter(|&r| !self.acked[r])
            .collect();
        if healthy_end
            && self.failures.is_empty()
            && let Some(&r) = not_acked.first()
        {
            let msg = format!(
                "no_loss: the last run ended healthy, yet {} records were never acked, e.g. {} (calls: {})",
                not_acked.len(),
                self.plan.records[r].id,
                self.history(r)
            );
            self.fail("no_loss", "done records never acked".into(), msg);
        }
        if !self.plan.knobs.ordered {
            return;
        }
        // (run, record) -> (first start, last end or None while pending)
        let mut spans: BTreeMap<(u32, usize), (Duration, Option<Duration>)> = BTreeMap::new();
        for c in &self.calls {
            let Some(r) = c.rec else { continue };
            let e = spans.entry((c.run, r)).or_insert((c.start, Some(c.start)));
            e.0 = e.0.min(c.start);
            e.1 = match (e.1, c.end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        let mut failure = None;
        for run in 0..self.runs.len() as u32 {
            for shard in &self.plan.shards {
                let mut prev: Option<(usize, Option<Duration>)> = None;
                for &r in &shard.records {
                    let Some(&(start, end)) = spans.get(&(run, r)) else {
                        continue;
                    };
                    self.checks += 1;
                    if let Some((p, p_end)) = prev
                        && p_end.is_none_or(|e| start < e)
                        && failure.is_none()
                    {
                        failure = Some(format!(
                            "ordered: in run {run}, record {} of ordered shard {} started at {} before \
                             record {} before it ended ({})",
                            self.plan.records[r].id,
                            shard.id,
                            t(start),
                            self.plan.records[p].id,
                            p_end.map_or("never".into(), t)
                        ));
                    }
                    prev = Some((r, end));
                }
            }
        }
        if let Some(msg) = failure {
            self.fail(
                "ordered",
                "record started before the one before it ended".into(),
                msg,
            );
        }
    }

    /// no_loss at the end: every record is done, every closed shard ended.
    fn check_all_done(&mut self) {
        self.checks += 1;
        let not_done: Vec<usize> = (0..self.plan.records.len())
            .filter(|&r| self.done[r].is_none())
            .collect();
        if let Some(&r) = not_done.first() {
            let msg = format!(
                "no_loss: after every run of the seed, {} records are not done, e.g. {} (calls: {})",
                not_done.len(),
                self.plan.records[r].id,
                self.history(r)
            );
            self.fail(
                "no_loss",
                "records not done at the end of the seed".into(),
                msg,
            );
        } else if self.plan.mode == Mode::Pipeline {
            let positions = self.store.positions(STREAM);
            let missing: Vec<String> = self
                .plan
                .shards
                .iter()
                .filter(|sh| sh.closed && positions.get(&sh.id) != Some(&Position::ShardEnd))
                .map(|sh| sh.id.to_string())
                .collect();
            if !missing.is_empty() {
                let msg = format!(
                    "no_loss: every record is done but SHARD_END was never committed for closed shards {missing:?}"
                );
                self.fail("no_loss", "SHARD_END never committed".into(), msg);
            }
        }
    }

    fn check_logs(&mut self, logs: &str) {
        let mut tags = BTreeSet::new();
        for line in logs.lines() {
            self.checks += 1;
            if !line.contains(MARKER) {
                continue;
            }
            // Group by the event's message: the text before its first field.
            let body = match line.rsplit_once("}: ") {
                Some((_, b)) => b,
                None => line.trim_start().split_once(' ').map_or(line, |(_, b)| b),
            };
            let head = body.split('=').next().unwrap_or(body);
            let head = head
                .rsplit_once(' ')
                .map_or(head, |(h, _)| h)
                .trim()
                .to_string();
            if tags.insert(head.clone()) {
                let mut shown = line.to_string();
                if shown.len() > 400 {
                    let mut cut = 400;
                    while !shown.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    shown.truncate(cut);
                }
                let mut msg = String::new();
                let _ = write!(
                    msg,
                    "no_customer_text_in_logs: a log line carries payload text: {shown}"
                );
                self.fail("no_customer_text_in_logs", head, msg);
            }
        }
    }
}
