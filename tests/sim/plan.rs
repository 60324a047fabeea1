//! The world of one seed, generated up front from the seed alone: shards and
//! their lineage, records, the pipeline's configuration, the fault profile
//! of every dependency, and the crash and shutdown schedule.

use std::collections::BTreeMap;
use std::time::Duration;

use streamsift::{RetryPolicy, ShardId};

use super::rng::{Rng, fnv, unit};

/// The stream name the checkpoint store keys positions by.
pub const STREAM: &str = "sim-stream";
/// Every payload carries this marker followed by a number: no log line may.
pub const MARKER: &str = "CUSTOMER-TEXT-";
/// The route actionable records go to.
pub const ROUTE: &str = "oncall";
/// Notify at or above this score.
pub const THRESHOLD: f64 = 0.6;
/// The review band, when a seed has one: `[REVIEW_LOW, THRESHOLD)`.
pub const REVIEW_LOW: f64 = 0.4;
/// The call timeout of every seed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the driver waits before restarting after a crash or a stop
/// (a supervisor's restart delay).
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// A dependency the world can make fail, and whose calls the oracle logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Comp {
    /// The decoder (a closure).
    Decode,
    /// The classifier.
    Classify,
    /// The router, on the notify route.
    Route,
    /// Review: the labeler, or the router on the review route.
    Review,
    /// The dead-letter sink.
    Dead,
    /// `Source::next_batch`.
    Read,
    /// `Source::commit`.
    Commit,
}

impl Comp {
    /// A short name for traces and messages.
    pub fn name(self) -> &'static str {
        match self {
            Comp::Decode => "decode",
            Comp::Classify => "classify",
            Comp::Route => "route",
            Comp::Review => "review",
            Comp::Dead => "dead_letter",
            Comp::Read => "read",
            Comp::Commit => "commit",
        }
    }

    /// Every dependency with a fault profile.
    pub const ALL: [Comp; 7] = [
        Comp::Decode,
        Comp::Classify,
        Comp::Route,
        Comp::Review,
        Comp::Dead,
        Comp::Read,
        Comp::Commit,
    ];
}

/// Which engine a seed drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `Pipeline::run` with crashes and restarts from the checkpoint store.
    Pipeline,
    /// A Lambda-like driver: `BatchProcessor` with `OnExhausted::Report`,
    /// redelivering from the first record not done.
    Lambda,
    /// A KCL-like driver: `BatchProcessor` with `OnExhausted::DeadLetter`.
    Kcl,
    /// `Pipeline::run` over a queue-like source that acks per record
    /// (`AckMode::PerRecord`, as SQS): what is not acked comes again after
    /// a crash or a stop; shards are message groups, maybe ordered.
    Acking,
}

/// A deliberately broken world, to prove the oracle can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The honest world.
    None,
    /// The router answers Ok on the notify route without delivering (and so
    /// without the oracle counting the record as done).
    LyingRouter,
    /// The source commits a few records further than the pipeline asked.
    SourceCommitsPast,
    /// The acking source deletes the next record of the shard along with
    /// each one it is asked to ack.
    SourceAcksAhead,
    /// A hygiene world whose dedup store drops every write (and says Ok).
    DedupForgets,
    /// A digest world whose router answers Ok for a delivery the inner
    /// router has not accepted within 50 ms (a folded record, say).
    DigestEarly,
    /// A digest world (without `Dedup`) whose digests are sent twice.
    DigestTwice,
}

/// What a record's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Valid JSON with a numeric score.
    Good,
    /// Cut-off JSON: a decode error that does not quote the payload.
    Truncated,
    /// The score is a string (the customer's text): serde's error quotes it.
    ScoreIsText,
}

/// One record of the world.
#[derive(Clone, Debug)]
pub struct RecordPlan {
    /// The record id (`{shard}:{index}`), also the payload's `id`.
    pub id: String,
    /// Index of its shard in [`Plan::shards`].
    pub shard: usize,
    /// Its offset (= sequence number) in the shard.
    pub index: u64,
    /// The payload bytes.
    pub payload: String,
    /// Its shape.
    pub shape: Shape,
    /// The score the classifier returns (good records only).
    pub score: f64,
    /// The stage where user code panics on this record, every time.
    pub poison: Option<Comp>,
}

impl RecordPlan {
    /// What the policy does with the record once classified, if it decodes.
    pub fn path(&self, review_band: bool) -> Option<Comp> {
        if self.shape != Shape::Good {
            return None;
        }
        if review_band && self.score >= REVIEW_LOW && self.score < THRESHOLD {
            Some(Comp::Review)
        } else if self.score >= THRESHOLD {
            Some(Comp::Route)
        } else {
            None
        }
    }

    /// Whether the policy discards it (once classified).
    pub fn discards(&self, review_band: bool) -> bool {
        self.shape == Shape::Good && self.path(review_band).is_none()
    }
}

/// One shard: its lineage and records.
#[derive(Clone, Debug)]
pub struct ShardPlan {
    /// The shard id.
    pub id: ShardId,
    /// Parent shards (by index); a child is read only after every parent's
    /// SHARD_END is committed.
    pub parents: Vec<usize>,
    /// Whether the shard is closed (its last batch says `shard_end`).
    pub closed: bool,
    /// Its records, by index in [`Plan::records`], in offset order.
    pub records: Vec<usize>,
}

/// How a dependency misbehaves in one seed.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// A slow answer (below the call timeout for stage calls).
    pub p_slow: f64,
    /// A retryable error (half of them throttling).
    pub p_retry: f64,
    /// A permanent error.
    pub p_perm: f64,
    /// A hang well past the call timeout.
    pub p_hang: f64,
    /// A panic (dead-letter sink only; stage panics are poison records).
    pub p_panic: f64,
    /// A receipt with `skipped = true` (router only).
    pub p_skip: f64,
    /// A commit applied whose answer is lost (a retryable error).
    pub p_lost: f64,
    /// A commit applied whose answer takes very long.
    pub p_lost_slow: f64,
    /// Windows of virtual time in which every call fails (retryably).
    pub outages: Vec<(Duration, Duration)>,
}

/// One fault decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Answer at once, correctly.
    None,
    /// Answer correctly after this long.
    Slow(Duration),
    /// A retryable error; `true` for throttling.
    Retryable(bool),
    /// An outage: a retryable error.
    Outage,
    /// A permanent error.
    Permanent,
    /// Take this long (past the call timeout), then answer correctly.
    Hang(Duration),
    /// Panic (poison record, or the sink).
    Panic,
    /// A skipped receipt.
    Skip,
    /// Apply the commit, then answer with a retryable error.
    Lost,
    /// Apply the commit, then answer after this long.
    LostSlow(Duration),
}

impl Fault {
    /// A name for the fault counters, or `None` for no fault.
    pub fn kind(self) -> Option<&'static str> {
        Some(match self {
            Fault::None => return None,
            Fault::Slow(_) => "slow",
            Fault::Retryable(true) => "throttle",
            Fault::Retryable(false) => "retryable",
            Fault::Outage => "outage",
            Fault::Permanent => "permanent",
            Fault::Hang(_) => "hang",
            Fault::Panic => "panic",
            Fault::Skip => "skipped_receipt",
            Fault::Lost => "lost_response",
            Fault::LostSlow(_) => "lost_slow_response",
        })
    }
}

/// The pipeline's configuration for a seed.
#[derive(Clone, Debug)]
pub struct Knobs {
    /// `Pipeline::max_in_flight`.
    pub max_in_flight: usize,
    /// `Pipeline::max_unacked`.
    pub max_unacked: usize,
    /// `commit_every` records.
    pub commit_every: u64,
    /// `commit_every` interval.
    pub commit_interval: Duration,
    /// The retry policy.
    pub retry: RetryPolicy,
    /// `record_timeout`.
    pub record_timeout: Duration,
    /// Records per source batch (Pipeline) or per delivered batch (Lambda, KCL).
    pub batch_size: usize,
    /// Whether the policy has a review band.
    pub review_band: bool,
    /// Whether a labeler takes the review band (else the review route).
    pub labeler: bool,
    /// Acking mode: records of a shard are processed in order, one at a time.
    pub ordered: bool,
    /// Acking mode: `Pipeline::ack_every` count and linger.
    pub ack_every: (usize, Duration),
}

/// Everything about one seed.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// The engine driven.
    pub mode: Mode,
    /// A deliberate defect, or none.
    pub mutation: Mutation,
    /// Shards, parents before children.
    pub shards: Vec<ShardPlan>,
    /// Every record.
    pub records: Vec<RecordPlan>,
    /// Record index by id.
    pub by_id: BTreeMap<String, usize>,
    /// The configuration.
    pub knobs: Knobs,
    /// Fault profile per dependency.
    pub faults: BTreeMap<Comp, Faults>,
    /// Virtual times at which the running engine is dropped (a crash).
    pub crashes: Vec<Duration>,
    /// Virtual times at which `Shutdown::cancel` is called.
    pub cancels: Vec<Duration>,
    /// Runs (Pipeline) or invocations (Lambda, KCL) with faults; after
    /// them, the world is healthy (poison records stay poison).
    pub faulty_runs: u32,
    /// Lambda: the invocation's deadline (`stop_at`), if any.
    pub batch_deadline: Option<Duration>,
    /// Hygiene: the notify route goes through `Dedup` (by record id) over a
    /// store that survives crashes, whose write takes this long (an fsync:
    /// crashes and call timeouts can land between the send and the write).
    pub dedup: Option<Duration>,
    /// Hygiene: the notify route goes through `Digest` (inside `Dedup`):
    /// N per window, the window (shorter than the call timeout).
    pub digest: Option<(usize, Duration)>,
}

fn window(rng: &mut Rng) -> (Duration, Duration) {
    let start = Duration::from_millis(rng.range(0, 15_000));
    let len = Duration::from_millis(rng.range(500, 6_000));
    (start, start + len)
}

impl Plan {
    /// Generates the world of `seed`.
    pub fn generate(seed: u64, mutation: Mutation) -> Plan {
        let mut rng = Rng::new(seed);
        let mode = match rng.range(0, 9) {
            0 | 1 => Mode::Lambda,
            2 | 3 => Mode::Kcl,
            4 | 5 => Mode::Acking,
            _ => Mode::Pipeline,
        };
        let mode = match mutation {
            Mutation::SourceCommitsPast => Mode::Pipeline,
            Mutation::SourceAcksAhead => Mode::Acking,
            _ => mode,
        };
        // Shards and lineage.
        let mut shards: Vec<ShardPlan> = Vec::new();
        let add = |shards: &mut Vec<ShardPlan>, parents: Vec<usize>| {
            let id = ShardId::new(format!("shard-{:03}", shards.len()));
            shards.push(ShardPlan {
                id,
                parents,
                closed: false,
                records: Vec::new(),
            });
        };
        for _ in 0..rng.range(1, 3) {
            add(&mut shards, Vec::new());
        }
        if mode == Mode::Pipeline {
            for _ in 0..rng.range(0, 2) {
                let open: Vec<usize> = (0..shards.len()).filter(|&i| !shards[i].closed).collect();
                if open.len() >= 2 && rng.chance(0.5) {
                    // Merge two open shards.
                    let a = open[rng.range(0, open.len() as u64 - 1) as usize];
                    let b = *open.iter().find(|&&i| i != a).expect("two open shards");
                    shards[a].closed = true;
                    shards[b].closed = true;
                    add(&mut shards, vec![a, b]);
                } else {
                    let p = open[rng.range(0, open.len() as u64 - 1) as usize];
                    shards[p].closed = true;
                    add(&mut shards, vec![p]);
                    add(&mut shards, vec![p]);
                }
            }
            for s in shards.iter_mut() {
                if !s.closed && rng.chance(0.3) {
                    s.closed = true;
                }
            }
        }
        // Records.
        let p_truncated = rng.swarm(0.08);
        let p_text_score = rng.swarm(0.08);
        let p_poison = rng.swarm(0.04);
        let review_band = rng.chance(0.6);
        let labeler = review_band && rng.chance(0.5);
        let max_per_shard = if rng.chance(0.2) { 60 } else { 25 };
        let mut records = Vec::new();
        for (s, shard) in shards.iter_mut().enumerate() {
            for index in 0..rng.range(0, max_per_shard) {
                let n = records.len();
                let id = format!("{}:{index}", shard.id);
                let score = (rng.range(0, 999) as f64) / 1000.0;
                let text = format!("{MARKER}{n} my order never arrived");
                let roll = rng.f64();
                let (shape, payload) = if roll < p_truncated {
                    (
                        Shape::Truncated,
                        format!(r#"{{"id":"{id}","score":{score},"text":"{text}"#),
                    )
                } else if roll < p_truncated + p_text_score {
                    (
                        Shape::ScoreIsText,
                        format!(r#"{{"id":"{id}","score":"{text}","text":"{text}"}}"#),
                    )
                } else {
                    (
                        Shape::Good,
                        format!(r#"{{"id":"{id}","score":{score},"text":"{text}"}}"#),
                    )
                };
                let mut rec = RecordPlan {
                    id,
                    shard: s,
                    index,
                    payload,
                    shape,
                    score,
                    poison: None,
                };
                if rng.chance(p_poison) {
                    let mut stages = vec![Comp::Decode];
                    if shape == Shape::Good {
                        stages.push(Comp::Classify);
                        if let Some(c) = rec.path(review_band) {
                            stages.push(c);
                        }
                    }
                    rec.poison = Some(stages[rng.range(0, stages.len() as u64 - 1) as usize]);
                }
                shard.records.push(n);
                records.push(rec);
            }
        }
        let by_id = records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        // Configuration.
        let max_in_flight = rng.range(1, 12) as usize;
        let knobs = Knobs {
            max_in_flight,
            max_unacked: rng.range(max_in_flight as u64, max_in_flight as u64 + 30) as usize,
            commit_every: rng.range(1, 15),
            commit_interval: Duration::from_millis(rng.range(100, 2_000)),
            retry: RetryPolicy {
                max_attempts: rng.range(2, 4) as u32,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(400),
                multiplier: 2.0,
            },
            record_timeout: Duration::from_millis(rng.range(2_500, 6_000)),
            batch_size: rng.range(1, 8) as usize,
            review_band,
            labeler,
            ordered: false,
            ack_every: (10, Duration::from_millis(100)),
        };
        // Faults, per dependency (swarm: each seed turns on a subset).
        let mut faults = BTreeMap::new();
        for comp in Comp::ALL {
            let mut f = Faults::default();
            match comp {
                Comp::Decode => {}
                Comp::Classify | Comp::Route | Comp::Review => {
                    f.p_slow = rng.swarm(0.4);
                    f.p_retry = rng.swarm(0.3);
                    f.p_perm = rng.swarm(0.05);
                    f.p_hang = rng.swarm(0.1);
                    if comp == Comp::Route {
                        f.p_skip = rng.swarm(0.2);
                    }
                }
                Comp::Dead => {
                    f.p_slow = rng.swarm(0.3);
                    f.p_retry = rng.swarm(0.3);
                    f.p_panic = if rng.chance(0.15) { 0.05 } else { 0.0 };
                }
                Comp::Read => {
                    f.p_slow = rng.swarm(0.2);
                    f.p_retry = rng.swarm(0.3);
                    f.p_perm = if rng.chance(0.3) { 0.03 } else { 0.0 };
                }
                Comp::Commit => {
                    f.p_slow = rng.swarm(0.2);
                    f.p_retry = rng.swarm(0.3);
                    f.p_perm = if rng.chance(0.3) { 0.08 } else { 0.0 };
                    f.p_lost = rng.swarm(0.15);
                    f.p_lost_slow = rng.swarm(0.05);
                }
            }
            if comp != Comp::Decode && rng.chance(0.25) {
                f.outages.push(window(&mut rng));
            }
            faults.insert(comp, f);
        }
        let mut crashes: Vec<Duration> = (0..rng.range(0, 3))
            .map(|_| Duration::from_millis(rng.range(200, 20_000)))
            .collect();
        crashes.sort();
        let mut cancels: Vec<Duration> = (0..rng.range(0, 2))
            .map(|_| Duration::from_millis(rng.range(200, 20_000)))
            .collect();
        cancels.sort();
        let batch_deadline = rng
            .chance(0.5)
            .then(|| Duration::from_millis(rng.range(1_000, 8_000)));
        // Drawn last, so the worlds of the other modes stay as they were.
        let mut knobs = knobs;
        if mode == Mode::Acking {
            knobs.ordered = rng.chance(0.5);
            knobs.ack_every = (
                rng.range(1, 12) as usize,
                Duration::from_millis(rng.range(10, 500)),
            );
        }
        // Drawn last too.
        let dedup = rng
            .chance(0.35)
            .then(|| Duration::from_millis(rng.range(5, 400)));
        let dedup = match mutation {
            Mutation::DedupForgets => Some(dedup.unwrap_or(Duration::from_millis(5))),
            Mutation::DigestTwice => None,
            _ => dedup,
        };
        let digest = rng.chance(0.35).then(|| {
            (
                rng.range(1, 3) as usize,
                Duration::from_millis(rng.range(100, 400)),
            )
        });
        let digest = match mutation {
            Mutation::DigestEarly | Mutation::DigestTwice => {
                Some(digest.unwrap_or((1, Duration::from_millis(200))))
            }
            _ => digest,
        };
        Plan {
            seed,
            mode,
            mutation,
            shards,
            records,
            by_id,
            knobs,
            faults,
            crashes,
            cancels,
            faulty_runs: match mode {
                Mode::Pipeline | Mode::Acking => 8,
                _ => 40,
            },
            batch_deadline,
            dedup,
            digest,
        }
    }

    /// The fault for one call: a pure function of the seed, the dependency,
    /// the record, the run and the attempt, and the virtual time (outages).
    pub fn decide(
        &self,
        comp: Comp,
        record: Option<usize>,
        run: u32,
        attempt: u32,
        now: Duration,
        healthy: bool,
    ) -> Fault {
        if let Some(r) = record
            && self.records[r].poison == Some(comp)
        {
            return Fault::Panic;
        }
        if healthy {
            return Fault::None;
        }
        let f = &self.faults[&comp];
        if f.outages.iter().any(|(a, b)| now >= *a && now < *b) {
            return Fault::Outage;
        }
        let keys = [
            fnv(comp.name().as_bytes()),
            record.map_or(u64::MAX, |r| r as u64),
            u64::from(run),
            u64::from(attempt),
        ];
        let u = unit(self.seed, &keys);
        let v = unit(self.seed ^ 0xabcd, &keys);
        let ms = |lo: u64, hi: u64| Duration::from_millis(lo + (v * (hi - lo) as f64) as u64);
        let mut edge = 0.0;
        let mut hit = |p: f64| {
            edge += p;
            u < edge
        };
        let slow_max = match comp {
            Comp::Classify | Comp::Route | Comp::Review => 800,
            _ => 300,
        };
        if hit(f.p_retry) {
            Fault::Retryable(v < 0.5)
        } else if hit(f.p_perm) {
            Fault::Permanent
        } else if hit(f.p_hang) {
            Fault::Hang(ms(2_500, 4_000))
        } else if hit(f.p_panic) {
            Fault::Panic
        } else if hit(f.p_skip) {
            Fault::Skip
        } else if hit(f.p_lost) {
            Fault::Lost
        } else if hit(f.p_lost_slow) {
            Fault::LostSlow(ms(5_000, 30_000))
        } else if hit(f.p_slow) {
            Fault::Slow(ms(10, slow_max))
        } else {
            Fault::None
        }
    }

    /// A one-line description of the world, for the verbose trace.
    pub fn describe(&self) -> String {
        let shards: Vec<String> = self
            .shards
            .iter()
            .map(|s| {
                format!(
                    "{}[{} records{}{}]",
                    s.id,
                    s.records.len(),
                    if s.closed { ", closed" } else { "" },
                    if s.parents.is_empty() {
                        String::new()
                    } else {
                        format!(", parents {:?}", s.parents)
                    }
                )
            })
            .collect();
        let poison: Vec<String> = self
            .records
            .iter()
            .filter_map(|r| r.poison.map(|c| format!("{}@{}", r.id, c.name())))
            .collect();
        format!(
            "seed {} mode {:?} mutation {:?} dedup {:?} digest {:?}\n  shards: {}\n  knobs: {:?}\n  poison: {:?}\n  crashes: {:?}\n  cancels: {:?}\n  faults: {:?}",
            self.seed,
            self.mode,
            self.mutation,
            self.dedup,
            self.digest,
            shards.join(" "),
            self.knobs,
            poison,
            self.crashes,
            self.cancels,
            self.faults
        )
    }
}
