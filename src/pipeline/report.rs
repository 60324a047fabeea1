//! What a run did: the counts ([`Stats`]), the [`RunReport`], why a run
//! ended ([`StopReason`], [`PipelineError`]), and the meter that keeps the
//! counts on the hot path and flushes them to the `metrics` facade.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::stages::Outcome;
use crate::classify::Label;
use crate::error::{DeadLetterError, SourceError};
use crate::record::{Checkpoint, ShardId};

/// Figures for one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStats {
    /// Records dispatched for processing.
    pub records_in: u64,
    /// Records delivered to a route.
    pub routed: u64,
    /// Records a router accepted but chose not to deliver
    /// ([`Receipt::skipped`](crate::Receipt::skipped)); done, not routed.
    #[serde(default)]
    pub skipped: u64,
    /// Records dropped by the policy.
    pub discarded: u64,
    /// Records sent for human review.
    pub sent_for_review: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Records not done when the run or batch ended: their dead letter
    /// could not be stored, or (in a batch) they were left for redelivery.
    pub unfinished: u64,
}

impl ShardStats {
    /// Adds `other`'s counts (a shard released and seen again, or folded
    /// into one entry).
    pub(crate) fn add(&mut self, other: &ShardStats) {
        self.records_in += other.records_in;
        self.routed += other.routed;
        self.skipped += other.skipped;
        self.discarded += other.discarded;
        self.sent_for_review += other.sent_for_review;
        self.dead_lettered += other.dead_lettered;
        self.unfinished += other.unfinished;
    }

    /// `records_in == routed + skipped + discarded + sent_for_review + dead_lettered + unfinished`.
    pub fn reconciles(&self) -> bool {
        self.records_in
            == self.routed
                + self.skipped
                + self.discarded
                + self.sent_for_review
                + self.dead_lettered
                + self.unfinished
    }

    /// Counts one record's end.
    pub(crate) fn tally(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Routed(_) => self.routed += 1,
            Outcome::Skipped(_) => self.skipped += 1,
            Outcome::Discarded => self.discarded += 1,
            Outcome::Review => self.sent_for_review += 1,
            Outcome::DeadLettered(_) => self.dead_lettered += 1,
            Outcome::SinkFailed { .. } | Outcome::Exhausted { .. } => self.unfinished += 1,
        }
    }
}

/// What a run did, counted. The same figures go to the `metrics` facade.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Records dispatched for processing.
    pub records_in: u64,
    /// Records decoded.
    pub decoded: u64,
    /// Records classified, per predicted label.
    pub classified: BTreeMap<Label, u64>,
    /// Records delivered to a route.
    pub routed: u64,
    /// Deliveries per route.
    pub routed_by_route: BTreeMap<Label, u64>,
    /// Records a router accepted but chose not to deliver
    /// ([`Receipt::skipped`](crate::Receipt::skipped), for example a
    /// [`Filter`](crate::Filter) that said no): done, and not counted as routed.
    #[serde(default)]
    pub skipped: u64,
    /// Records dropped by the policy.
    pub discarded: u64,
    /// Records sent for human review.
    pub sent_for_review: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Dead letters per stage (`decode`, `classify`, `route`, `review`).
    pub dead_lettered_by_stage: BTreeMap<String, u64>,
    /// Records not done when the run or batch ended (see
    /// [`ShardStats::unfinished`]).
    pub unfinished: u64,
    /// Retries of classify, route, review and dead-letter calls.
    pub retries: u64,
    /// How many of the failures retried were throttling.
    pub throttled: u64,
    /// Records whose user code panicked (each is dead-lettered with kind
    /// `panic`, or left for redelivery in a batch).
    #[serde(default)]
    pub panics: u64,
    /// Retries of source reads.
    pub source_retries: u64,
    /// Checkpoint commits that succeeded.
    pub commits: u64,
    /// Checkpoint commits that failed (and were tried again later).
    pub commit_failures: u64,
    /// The most records waiting on a component at once (records whose
    /// components finish on the first poll are never waiting).
    pub peak_in_flight: usize,
    /// The same counts per shard.
    pub shards: BTreeMap<ShardId, ShardStats>,
}

impl Stats {
    /// The totals as one [`ShardStats`].
    pub fn totals(&self) -> ShardStats {
        ShardStats {
            records_in: self.records_in,
            routed: self.routed,
            skipped: self.skipped,
            discarded: self.discarded,
            sent_for_review: self.sent_for_review,
            dead_lettered: self.dead_lettered,
            unfinished: self.unfinished,
        }
    }

    /// The reconciliation invariant, in total and per shard:
    /// `records_in == routed + skipped + discarded + sent_for_review + dead_lettered + unfinished`.
    pub fn reconciles(&self) -> bool {
        self.totals().reconciles() && self.shards.values().all(ShardStats::reconciles)
    }

    /// Counts one record's end in the totals (not per shard: see
    /// [`ShardStats::tally`]).
    pub(crate) fn tally(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Routed(_) => self.routed += 1,
            Outcome::Skipped(_) => self.skipped += 1,
            Outcome::Discarded => self.discarded += 1,
            Outcome::Review => self.sent_for_review += 1,
            Outcome::DeadLettered(stage) => {
                self.dead_lettered += 1;
                *self
                    .dead_lettered_by_stage
                    .entry(stage.as_str().to_string())
                    .or_insert(0) += 1;
            }
            Outcome::SinkFailed { .. } | Outcome::Exhausted { .. } => self.unfinished += 1,
        }
    }
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// The source said the stream ended.
    SourceExhausted,
    /// [`Shutdown::cancel`](crate::Shutdown::cancel) was called.
    Shutdown,
    /// An error stopped the run; see [`PipelineError`].
    Error,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::SourceExhausted => "the source ended",
            StopReason::Shutdown => "shutdown was asked",
            StopReason::Error => "an error (see the pipeline error)",
        })
    }
}

/// The result of [`Pipeline::run`](crate::Pipeline::run).
///
/// # For people
///
/// Its [`Display`](fmt::Display) is the summary to print at the end of a
/// run: records read, where they went, retries, per-shard lines when there
/// are at most [`RunReport::SHARD_LINES`] shards, the time taken and why
/// the run stopped.
///
/// ```
/// # use std::time::Duration;
/// # use streamsift::{RunReport, StopReason};
/// # fn show(report: &RunReport) {
/// println!("{report}");
/// # }
/// ```
///
/// # As JSON
///
/// It serializes (serde) as an object with `stats` ([`Stats`]),
/// `checkpoints`, `elapsed_secs` (the wall time in seconds, a number such
/// as `1.25`), `stopped` (`"source_exhausted"`, `"shutdown"` or `"error"`)
/// and, when set, `active`:
///
/// ```
/// # use std::time::Duration;
/// # use streamsift::{RunReport, Stats, StopReason};
/// let report = RunReport {
///     stats: Stats::default(),
///     checkpoints: vec![],
///     elapsed: Duration::from_millis(1250),
///     stopped: StopReason::SourceExhausted,
///     active: None,
/// };
/// let json = serde_json::to_value(&report).unwrap();
/// assert_eq!(json["elapsed_secs"], 1.25);
/// assert_eq!(json["stopped"], "source_exhausted");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The counts.
    pub stats: Stats,
    /// The last checkpoint committed per shard during this run.
    pub checkpoints: Vec<Checkpoint>,
    /// Wall time of the run. In JSON: `elapsed_secs`, in seconds (a
    /// number); reading also accepts the older `elapsed` as
    /// `{"secs":..,"nanos":..}`.
    #[serde(rename = "elapsed_secs", alias = "elapsed", with = "secs")]
    pub elapsed: Duration,
    /// Why it ended.
    pub stopped: StopReason,
    /// Labels gathered and model versions used, when the pipeline was given
    /// an active-learning stats handle ([`Pipeline::active_stats`](crate::Pipeline::active_stats)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<crate::active::ActiveStats>,
}

impl RunReport {
    /// The most shards whose counts [`Display`](fmt::Display) lists one
    /// line each; with more, it says how many and where to find them.
    pub const SHARD_LINES: usize = 8;
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "{} records read in {:.2} s; stopped: {}",
            s.records_in,
            self.elapsed.as_secs_f64(),
            self.stopped
        )?;
        let by = |counts: &BTreeMap<Label, u64>| -> String {
            let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        };
        writeln!(
            f,
            "  routed          {}{}",
            s.routed,
            by(&s.routed_by_route)
        )?;
        writeln!(f, "  skipped         {}", s.skipped)?;
        writeln!(f, "  discarded       {}", s.discarded)?;
        writeln!(f, "  sent for review {}", s.sent_for_review)?;
        let stages: Vec<String> = s
            .dead_lettered_by_stage
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if stages.is_empty() {
            writeln!(f, "  dead-lettered   {}", s.dead_lettered)?;
        } else {
            writeln!(
                f,
                "  dead-lettered   {} ({})",
                s.dead_lettered,
                stages.join(", ")
            )?;
        }
        writeln!(f, "  unfinished      {}", s.unfinished)?;
        write!(
            f,
            "  retries {} ({} throttled), source retries {}, panics {}, commits {} ({} failed)",
            s.retries, s.throttled, s.source_retries, s.panics, s.commits, s.commit_failures
        )?;
        if s.shards.len() > Self::SHARD_LINES {
            write!(
                f,
                "\n  {} shards (per-shard counts in stats.shards)",
                s.shards.len()
            )?;
        } else {
            for (shard, c) in &s.shards {
                write!(
                    f,
                    "\n  shard {shard}: {} read, {} routed, {} skipped, {} discarded, {} review, {} dead-lettered, {} unfinished",
                    c.records_in,
                    c.routed,
                    c.skipped,
                    c.discarded,
                    c.sent_for_review,
                    c.dead_lettered,
                    c.unfinished
                )?;
            }
        }
        Ok(())
    }
}

/// A [`Duration`] as seconds (`f64`) in serde; reads the number, or
/// serde's own `{"secs":..,"nanos":..}` shape of older reports.
pub(crate) mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Secs(f64),
        Parts(Duration),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Either::deserialize(d)? {
            Either::Secs(secs) => Duration::try_from_secs_f64(secs).map_err(|e| {
                serde::de::Error::custom(format!(
                    "elapsed_secs must be a non-negative number of seconds: {e}"
                ))
            }),
            Either::Parts(d) => Ok(d),
        }
    }
}

/// Why a run failed. Each carries the report of what was done before.
///
/// `Debug` prints the same message as `Display`, for people, so that a
/// `main` returning `Result<(), Box<dyn Error>>` shows what to do rather than
/// a dump of the report; match on the variants for the details.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Reading from the source failed permanently.
    #[error("pipeline stopped: {source}")]
    Source {
        /// The source's error.
        #[source]
        source: SourceError,
        /// What was done before.
        report: Box<RunReport>,
    },
    /// Committing checkpoints failed permanently (for example, a lost
    /// lease), or kept failing for longer than
    /// [`Pipeline::commit_timeout`](crate::Pipeline::commit_timeout). Nothing
    /// was committed after it; what was done but not committed is
    /// delivered again after a restart.
    #[error("pipeline stopped, checkpoint commit failed: {source}")]
    Commit {
        /// The source's error.
        #[source]
        source: SourceError,
        /// What was done before.
        report: Box<RunReport>,
    },
    /// Acknowledging done records to a per-record source
    /// ([`AckMode::PerRecord`](crate::AckMode::PerRecord), such as SQS)
    /// failed permanently, or kept failing for longer than
    /// [`Pipeline::commit_timeout`](crate::Pipeline::commit_timeout). Nothing
    /// was acked after it; the records not acked are delivered again by the
    /// source (duplicates, not losses). The pipeline stops rather than
    /// process on without acks, which would deliver everything twice.
    #[error(
        "pipeline stopped, acknowledging done records failed (they will be delivered again): {source}"
    )]
    Ack {
        /// The source's error.
        #[source]
        source: SourceError,
        /// What was done before.
        report: Box<RunReport>,
    },
    /// A dead letter could not be stored even after retries. The pipeline
    /// stopped without committing past the record, so it will be delivered
    /// again after a restart; fix the sink (disk full? permissions?) first.
    #[error(
        "dead-letter sink failed for record {record_id}; stopped without committing past it: {source}"
    )]
    DeadLetter {
        /// The record that could not be dead-lettered.
        record_id: String,
        /// The sink's error.
        #[source]
        source: DeadLetterError,
        /// What was done before.
        report: Box<RunReport>,
    },
    /// The pipeline was configured wrongly; nothing was read.
    #[error("invalid pipeline configuration: {0}")]
    Config(#[from] ConfigError),
}

impl fmt::Debug for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What is wrong with a pipeline's configuration. [`Pipeline::run`](crate::Pipeline::run)
/// and [`Pipeline::into_batch_processor`](crate::Pipeline::into_batch_processor)
/// check it before reading anything. Each message says what to add.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No [`Policy`](crate::Policy) was set.
    #[error(
        "add `.policy(Policy::binary(threshold, route))` or `.policy(Policy::by_label(..))`: no policy is set, so nothing decides what to do with a prediction"
    )]
    NoPolicy,
    /// `max_in_flight` or `max_unacked` is 0, so nothing could ever run.
    #[error(
        "set `.max_in_flight(n)` and `.max_unacked(n)` to at least 1: found max_in_flight = {max_in_flight}, max_unacked = {max_unacked}"
    )]
    ZeroLimit {
        /// The value set.
        max_in_flight: usize,
        /// The value set.
        max_unacked: usize,
    },
    /// The policy can send items to review, but there is no labeler and the
    /// router is not known to handle the route
    /// [`REVIEW_ROUTE`](crate::REVIEW_ROUTE): review items would fail to
    /// route and be dead-lettered.
    #[error(
        "add `.review(labeler)`, route \"review\" in the router (e.g. `ByLabel::new().on(REVIEW_ROUTE, ..)`), or call `.review_via_router()` if your router handles \"review\": the policy can send items to review, and {}",
        match router_says {
            Some(false) => "the router says it has no \"review\" route",
            _ => "there is no labeler and the router does not say it handles \"review\"",
        }
    )]
    ReviewUnhandled {
        /// What the router said about the review route
        /// ([`Router::handles_route`](crate::Router::handles_route)):
        /// `Some(false)` for no, `None` for unknown.
        router_says: Option<bool>,
    },
    /// The router holds calls by design for longer than a timeout allows
    /// ([`Router::max_hold`](crate::Router::max_hold): a
    /// [`Digest`](crate::router::Digest)'s window), so every held call would
    /// time out and its record be dead-lettered.
    #[error(
        "set `.call_timeout(..)` and `.record_timeout(..)` above {hold:?}: the router holds calls that long by design (a Digest's window: folded records wait for their digest), but call_timeout is {call_timeout:?} and record_timeout is {record_timeout:?}, so every held record would time out"
    )]
    TimeoutWithinHold {
        /// What the router holds calls for.
        hold: std::time::Duration,
        /// The pipeline's `call_timeout`.
        call_timeout: std::time::Duration,
        /// The pipeline's `record_timeout`.
        record_timeout: std::time::Duration,
    },
}

impl PipelineError {
    /// The run's report, when the run started.
    pub fn report(&self) -> Option<&RunReport> {
        match self {
            PipelineError::Source { report, .. }
            | PipelineError::Commit { report, .. }
            | PipelineError::Ack { report, .. }
            | PipelineError::DeadLetter { report, .. } => Some(report),
            PipelineError::Config(_) => None,
        }
    }
}

/// Counts kept as the run goes, flushed to `metrics` at each commit.
pub(crate) struct Meter {
    pub(crate) stats: Stats,
    flushed: Stats,
    /// Per-label counts on the hot path: a short list scanned linearly is
    /// cheaper than a map for the handful of labels a model has. Folded
    /// into `stats` by `sync`.
    classified: Vec<(Label, u64)>,
    routed_by_route: Vec<(Label, u64)>,
    pub(crate) latency: metrics::Histogram,
}

impl Meter {
    pub(crate) fn new() -> Self {
        Meter {
            stats: Stats::default(),
            flushed: Stats::default(),
            classified: Vec::new(),
            routed_by_route: Vec::new(),
            latency: metrics::histogram!("streamsift_end_to_end_latency_seconds"),
        }
    }

    fn bump(counts: &mut Vec<(Label, u64)>, label: &Label) {
        match counts.iter_mut().find(|(l, _)| l == label) {
            Some((_, n)) => *n += 1,
            None => counts.push((label.clone(), 1)),
        }
    }

    /// Counts a finished record in the totals.
    pub(crate) fn count(
        &mut self,
        decoded: bool,
        classified: Option<&Label>,
        outcome: &Outcome,
        retries: u32,
        throttled: u32,
        panicked: bool,
    ) {
        if let Some(label) = classified {
            Self::bump(&mut self.classified, label);
        }
        if let Outcome::Routed(route) = outcome {
            Self::bump(&mut self.routed_by_route, route);
        }
        let stats = &mut self.stats;
        stats.retries += u64::from(retries);
        stats.throttled += u64::from(throttled);
        stats.panics += u64::from(panicked);
        stats.decoded += u64::from(decoded);
        stats.tally(outcome);
    }

    /// Folds the hot-path label counts into `stats`.
    pub(crate) fn sync(&mut self) {
        for (label, n) in &self.classified {
            self.stats.classified.insert(label.clone(), *n);
        }
        for (route, n) in &self.routed_by_route {
            self.stats.routed_by_route.insert(route.clone(), *n);
        }
    }

    /// Sends the increments since the last flush to the `metrics` recorder.
    pub(crate) fn flush(&mut self, in_flight: usize, tracked_shards: usize) {
        self.sync();
        let (s, f) = (&self.stats, &self.flushed);
        let plain = [
            ("streamsift_records_in_total", s.records_in, f.records_in),
            ("streamsift_decoded_total", s.decoded, f.decoded),
            ("streamsift_routed_total", s.routed, f.routed),
            ("streamsift_skipped_total", s.skipped, f.skipped),
            ("streamsift_discarded_total", s.discarded, f.discarded),
            (
                "streamsift_review_total",
                s.sent_for_review,
                f.sent_for_review,
            ),
            (
                "streamsift_dead_letter_total",
                s.dead_lettered,
                f.dead_lettered,
            ),
            ("streamsift_retries_total", s.retries, f.retries),
            ("streamsift_throttled_total", s.throttled, f.throttled),
            ("streamsift_panics_total", s.panics, f.panics),
            (
                "streamsift_source_retries_total",
                s.source_retries,
                f.source_retries,
            ),
            ("streamsift_commits_total", s.commits, f.commits),
            (
                "streamsift_commit_failures_total",
                s.commit_failures,
                f.commit_failures,
            ),
        ];
        for (name, now, before) in plain {
            if now > before {
                metrics::counter!(name).increment(now - before);
            }
        }
        for (label, n) in &s.classified {
            let before = f.classified.get(label).copied().unwrap_or(0);
            if *n > before {
                metrics::counter!("streamsift_classified_total", "label" => label.to_string())
                    .increment(n - before);
            }
        }
        for (route, n) in &s.routed_by_route {
            let before = f.routed_by_route.get(route).copied().unwrap_or(0);
            if *n > before {
                metrics::counter!("streamsift_routed_by_route_total", "route" => route.to_string())
                    .increment(n - before);
            }
        }
        for (stage, n) in &s.dead_lettered_by_stage {
            let before = f.dead_lettered_by_stage.get(stage).copied().unwrap_or(0);
            if *n > before {
                metrics::counter!("streamsift_dead_letter_by_stage_total", "stage" => stage.clone())
                    .increment(n - before);
            }
        }
        metrics::gauge!("streamsift_in_flight").set(in_flight as f64);
        metrics::gauge!("streamsift_tracked_shards").set(tracked_shards as f64);
        self.flushed = self.stats.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_reconcile() {
        let mut s = Stats {
            records_in: 6,
            routed: 1,
            skipped: 1,
            discarded: 2,
            sent_for_review: 1,
            dead_lettered: 1,
            ..Stats::default()
        };
        assert!(s.reconciles());
        s.routed = 2;
        assert!(!s.reconciles());
    }

    fn report(shards: usize) -> RunReport {
        let mut stats = Stats {
            records_in: 12,
            decoded: 10,
            routed: 5,
            routed_by_route: [(Label::from("oncall"), 4), (Label::from("sales"), 1)].into(),
            skipped: 0,
            discarded: 4,
            sent_for_review: 1,
            dead_lettered: 2,
            dead_lettered_by_stage: [("decode".to_string(), 2)].into(),
            retries: 3,
            throttled: 1,
            commits: 2,
            ..Stats::default()
        };
        for i in 0..shards {
            stats.shards.insert(
                ShardId::new(format!("s{i}")),
                ShardStats {
                    records_in: 6,
                    routed: 3,
                    discarded: 2,
                    sent_for_review: 1,
                    ..ShardStats::default()
                },
            );
        }
        RunReport {
            stats,
            checkpoints: vec![],
            elapsed: Duration::from_millis(1_504),
            stopped: StopReason::SourceExhausted,
            active: None,
        }
    }

    #[test]
    fn display_is_the_summary_for_people() {
        assert_eq!(
            report(2).to_string(),
            "12 records read in 1.50 s; stopped: the source ended
  routed          5 (oncall 4, sales 1)
  skipped         0
  discarded       4
  sent for review 1
  dead-lettered   2 (decode 2)
  unfinished      0
  retries 3 (1 throttled), source retries 0, panics 0, commits 2 (0 failed)
  shard s0: 6 read, 3 routed, 0 skipped, 2 discarded, 1 review, 0 dead-lettered, 0 unfinished
  shard s1: 6 read, 3 routed, 0 skipped, 2 discarded, 1 review, 0 dead-lettered, 0 unfinished"
        );
    }

    #[test]
    fn a_pipeline_error_debugs_as_its_message_not_a_dump_of_the_report() {
        let err = PipelineError::Source {
            source: SourceError::permanent("the stream was deleted: recreate it"),
            report: Box::new(report(2)),
        };
        let debug = format!("{err:?}");
        assert_eq!(debug, err.to_string());
        assert_eq!(
            debug,
            "pipeline stopped: source failed permanently: the stream was deleted: recreate it"
        );
    }

    #[test]
    fn display_folds_many_shards_into_one_line() {
        let text = report(RunReport::SHARD_LINES + 1).to_string();
        assert!(
            text.ends_with("\n  9 shards (per-shard counts in stats.shards)"),
            "{text}"
        );
        assert!(!text.contains("shard s0:"), "{text}");
    }

    #[test]
    fn elapsed_is_seconds_in_json_and_old_reports_still_read() {
        let r = report(0);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["elapsed_secs"], serde_json::json!(1.504));
        assert!(json.get("elapsed").is_none(), "{json}");
        let back: RunReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        let mut old = serde_json::to_value(&r).unwrap();
        let obj = old.as_object_mut().unwrap();
        obj.remove("elapsed_secs");
        obj.insert(
            "elapsed".into(),
            serde_json::json!({"secs": 1, "nanos": 504_000_000}),
        );
        let back: RunReport = serde_json::from_value(old).unwrap();
        assert_eq!(back.elapsed, Duration::from_millis(1_504));
    }
}
