//! Reconciliation: the accounting every run must satisfy, checked from the
//! run reports and from what the components recorded.
//!
//! - [`check_report`]: `records_in = routed + discarded + sent_for_review +
//!   dead_lettered + unfinished`, per shard and in total, and the shard
//!   figures add up to the totals.
//! - [`check_run`]: a report against the deliveries and dead letters that the
//!   router and the sink recorded during that run, per shard.
//! - [`Coverage`]: over several runs of one stream (crash, restart, ...),
//!   every record of the stream was handled at least once, nothing unknown
//!   was handled, and how many times each record was handled.

use std::collections::{BTreeMap, HashMap};

use streamsift::{RunReport, ShardStats};

/// Checks the invariant of one report, per shard and in total, and that the
/// per-shard figures sum to the totals. The error says which figure is off.
pub fn check_report(report: &RunReport) -> Result<(), String> {
    let s = &report.stats;
    let total = s.totals();
    if !total.reconciles() {
        return Err(format!("totals do not reconcile: {total:?}"));
    }
    let mut sum = ShardStats::default();
    for (shard, st) in &s.shards {
        if !st.reconciles() {
            return Err(format!("shard {shard} does not reconcile: {st:?}"));
        }
        sum.records_in += st.records_in;
        sum.routed += st.routed;
        sum.skipped += st.skipped;
        sum.discarded += st.discarded;
        sum.sent_for_review += st.sent_for_review;
        sum.dead_lettered += st.dead_lettered;
        sum.unfinished += st.unfinished;
    }
    if !s.shards.is_empty() && sum != total {
        return Err(format!(
            "the shards do not add up to the totals: shards {sum:?}, totals {total:?}"
        ));
    }
    let by_route: u64 = s.routed_by_route.values().sum();
    if by_route != s.routed {
        return Err(format!(
            "routed_by_route sums to {by_route}, routed is {}",
            s.routed
        ));
    }
    let by_stage: u64 = s.dead_lettered_by_stage.values().sum();
    if by_stage != s.dead_lettered {
        return Err(format!(
            "dead_lettered_by_stage sums to {by_stage}, dead_lettered is {}",
            s.dead_lettered
        ));
    }
    Ok(())
}

/// Checks one run's report against what was recorded during that run:
/// `delivered` and `dead_lettered` are `(shard, record id)` pairs, one per
/// accepted delivery (a router that fans one record out to several routes
/// would need another check) and one per stored dead letter. Per shard, the
/// report's `routed` must equal the deliveries and `dead_lettered` the dead
/// letters, and no record may be both delivered and dead-lettered.
pub fn check_run<'a>(
    report: &RunReport,
    delivered: impl IntoIterator<Item = (&'a str, &'a str)>,
    dead_lettered: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    check_report(report)?;
    let mut routed: BTreeMap<&str, u64> = BTreeMap::new();
    let mut delivered_ids: HashMap<&str, ()> = HashMap::new();
    for (shard, id) in delivered {
        *routed.entry(shard).or_default() += 1;
        delivered_ids.insert(id, ());
    }
    let mut dead: BTreeMap<&str, u64> = BTreeMap::new();
    for (shard, id) in dead_lettered {
        *dead.entry(shard).or_default() += 1;
        if delivered_ids.contains_key(id) {
            return Err(format!("record {id} was both delivered and dead-lettered"));
        }
    }
    let shards = &report.stats.shards;
    for (shard, st) in shards {
        let r = routed.get(shard.as_str()).copied().unwrap_or(0);
        let d = dead.get(shard.as_str()).copied().unwrap_or(0);
        if r != st.routed {
            return Err(format!(
                "shard {shard}: the report says {} routed, the router recorded {r}",
                st.routed
            ));
        }
        if d != st.dead_lettered {
            return Err(format!(
                "shard {shard}: the report says {} dead-lettered, the sink recorded {d}",
                st.dead_lettered
            ));
        }
    }
    for shard in routed.keys().chain(dead.keys()) {
        if !shards.keys().any(|s| s.as_str() == *shard) {
            return Err(format!(
                "records of shard {shard} were recorded, but the report has no such shard"
            ));
        }
    }
    Ok(())
}

/// At-least-once coverage of one stream over several runs.
#[derive(Debug, Default)]
pub struct Coverage {
    /// How many times each record of the stream was handled (delivered,
    /// discarded or dead-lettered), over all runs.
    seen: HashMap<String, u32>,
    /// Handled ids that are not in the stream.
    unknown: Vec<String>,
}

/// What [`Coverage::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageReport {
    /// Records in the stream.
    pub records: usize,
    /// Records handled at least once.
    pub covered: usize,
    /// Handlings beyond the first, summed over records.
    pub duplicates: u64,
    /// Records handled more than once.
    pub records_with_duplicates: usize,
    /// The most times one record was handled.
    pub max_handled: u32,
}

impl Coverage {
    /// Coverage of a stream holding `ids` (each once).
    pub fn new<I: Into<String>>(ids: impl IntoIterator<Item = I>) -> Self {
        Coverage {
            seen: ids.into_iter().map(|id| (id.into(), 0)).collect(),
            unknown: Vec::new(),
        }
    }

    /// Records one handling of `id` (in any run).
    pub fn handled(&mut self, id: &str) {
        match self.seen.get_mut(id) {
            Some(n) => *n += 1,
            None => self.unknown.push(id.to_string()),
        }
    }

    /// How many times `id` was handled so far.
    pub fn count(&self, id: &str) -> u32 {
        self.seen.get(id).copied().unwrap_or(0)
    }

    /// The figures, or an error naming (up to 10) missing or unknown ids.
    pub fn check(&self) -> Result<CoverageReport, String> {
        if !self.unknown.is_empty() {
            let some: Vec<_> = self.unknown.iter().take(10).collect();
            return Err(format!(
                "{} handled ids are not in the stream, e.g. {some:?}",
                self.unknown.len()
            ));
        }
        let mut missing: Vec<&str> = self
            .seen
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| id.as_str())
            .collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            let n = missing.len();
            missing.truncate(10);
            return Err(format!(
                "{n} records of the stream were never handled (lost), e.g. {missing:?}"
            ));
        }
        Ok(CoverageReport {
            records: self.seen.len(),
            covered: self.seen.len(),
            duplicates: self.seen.values().map(|&n| u64::from(n - 1)).sum(),
            records_with_duplicates: self.seen.values().filter(|&&n| n > 1).count(),
            max_handled: self.seen.values().copied().max().unwrap_or(0),
        })
    }
}
