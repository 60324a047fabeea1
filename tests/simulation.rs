//! The deterministic simulation of issue 13 (see `tests/sim/`).
//!
//! `cargo test --all-features --test simulation` runs 300 seeds;
//! `STREAMSIFT_SIM_SEEDS=N` runs seeds 1..=N (from `STREAMSIFT_SIM_FIRST`
//! instead of 1, to split a campaign over processes); `STREAMSIFT_SIM_SEED=S` runs
//! seed S alone with a verbose trace. A failing seed prints the command that
//! replays it.

mod sim;

use std::collections::BTreeMap;

use sim::driver::{SeedReport, run_seed};
use sim::plan::Mutation;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name} must be a whole number, found {value:?}"),
    }
}

fn replay(seed: u64) -> String {
    format!(
        "STREAMSIFT_SIM_SEED={seed} cargo test --all-features --test simulation -- --nocapture simulate_seeds"
    )
}

#[test]
fn simulate_seeds() {
    let (seeds, verbose): (Vec<u64>, bool) = match (
        env_u64("STREAMSIFT_SIM_SEED"),
        env_u64("STREAMSIFT_SIM_SEEDS"),
    ) {
        (Some(s), _) => (vec![s], true),
        (None, Some(n)) => {
            let first = env_u64("STREAMSIFT_SIM_FIRST").unwrap_or(1);
            ((first..first + n).collect(), false)
        }
        (None, None) => ((1..=300).collect(), false),
    };
    // STREAMSIFT_SIM_LIST=1 prints each failing seed's invariants.
    let list = std::env::var_os("STREAMSIFT_SIM_LIST").is_some();
    let started = std::time::Instant::now();
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let mut checks = 0u64;
    let mut runs = 0usize;
    let mut modes: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed_seeds = 0usize;
    let (mut dedup_seeds, mut digest_seeds, mut dedup_gaps) = (0usize, 0usize, 0u64);
    // (invariant, tag) -> (seeds failing, the smallest such seed's report size, seed, message)
    let mut distinct: BTreeMap<(&'static str, String), (usize, usize, u64, String)> =
        BTreeMap::new();
    for &seed in &seeds {
        let report: SeedReport = run_seed(seed, Mutation::None, verbose);
        if verbose {
            println!(
                "{}",
                sim::plan::Plan::generate(seed, Mutation::None).describe()
            );
            for line in &report.trace {
                println!("  {line}");
            }
        }
        checks += report.checks;
        dedup_seeds += usize::from(report.dedup);
        digest_seeds += usize::from(report.digest);
        dedup_gaps += report.dedup_gaps;
        runs += report.runs;
        *modes.entry(format!("{:?}", report.mode)).or_insert(0) += 1;
        for (k, v) in &report.faults {
            *faults.entry(k.clone()).or_insert(0) += v;
        }
        if !report.failures.is_empty() {
            failed_seeds += 1;
            if list {
                let kinds: std::collections::BTreeSet<String> = report
                    .failures
                    .iter()
                    .map(|f| format!("{}: {}", f.invariant, f.tag))
                    .collect();
                println!(
                    "seed {seed} ({:?}, {} records, {} runs): {kinds:?}",
                    report.mode, report.records, report.runs
                );
            }
        }
        let size = report.records + report.runs;
        let mut seen = std::collections::BTreeSet::new();
        for f in &report.failures {
            let key = (f.invariant, f.tag.clone());
            if !seen.insert(key.clone()) {
                continue;
            }
            let entry = distinct
                .entry(key)
                .or_insert((0, usize::MAX, seed, String::new()));
            entry.0 += 1;
            if size < entry.1 {
                *entry = (entry.0, size, seed, f.message.clone());
            }
        }
    }
    println!(
        "simulation: {} seeds ({modes:?}), {runs} runs or batch invocations, {checks} invariant checks, \
         {failed_seeds} seeds failing, {} distinct failures, {:.1}s wall",
        seeds.len(),
        distinct.len(),
        started.elapsed().as_secs_f64()
    );
    println!("faults injected: {faults:?}");
    println!(
        "hygiene: {dedup_seeds} seeds behind Dedup, {digest_seeds} behind Digest, \
         {dedup_gaps} duplicates in Dedup's documented gap"
    );
    let mut summary = String::new();
    for ((invariant, tag), (count, _, seed, message)) in &distinct {
        summary.push_str(&format!(
            "\n[{invariant}] {tag}: {count} seeds; smallest seed {seed}\n    {message}\n    replay: {}\n",
            replay(*seed)
        ));
    }
    println!("{summary}");
    assert!(
        distinct.is_empty(),
        "the simulation found {} distinct invariant failures:{summary}",
        distinct.len()
    );
}

#[test]
fn same_seed_same_trace() {
    for seed in [3, 42, 1234, 98765] {
        let a = run_seed(seed, Mutation::None, false);
        let b = run_seed(seed, Mutation::None, false);
        assert_eq!(
            a.hash, b.hash,
            "seed {seed} gave two different event logs: the simulation is not deterministic"
        );
        assert_eq!(
            a.failures.len(),
            b.failures.len(),
            "seed {seed}: different verdicts"
        );
    }
    let hashes: std::collections::BTreeSet<u64> = (1..=5)
        .map(|s| run_seed(s, Mutation::None, false).hash)
        .collect();
    assert_eq!(
        hashes.len(),
        5,
        "different seeds must give different worlds"
    );
}

fn oracle_catches(mutation: Mutation) {
    oracle_catches_as(mutation, "no_loss");
}

fn oracle_catches_as(mutation: Mutation, invariant: &str) {
    let mut exercised = 0;
    for seed in 1..=40 {
        let report = run_seed(seed, mutation, false);
        if report.mutations_applied == 0 {
            continue;
        }
        exercised += 1;
        if exercised == 1
            && let Some(f) = report.failures.iter().find(|f| f.invariant == invariant)
        {
            println!("{mutation:?}, seed {}: {}", report.seed, f.message);
        }
        assert!(
            report.failures.iter().any(|f| f.invariant == invariant),
            "seed {} with {mutation:?} applied {} times, yet the oracle reported no {invariant} failure; \
             it reported: {:?}",
            report.seed,
            report.mutations_applied,
            report
                .failures
                .iter()
                .map(|f| &f.message)
                .collect::<Vec<_>>()
        );
    }
    assert!(
        exercised >= 5,
        "{mutation:?} changed only {exercised} of 40 seeds; the test proves too little"
    );
}

#[test]
fn oracle_catches_a_router_that_claims_success_without_delivering() {
    oracle_catches(Mutation::LyingRouter);
}

#[test]
fn oracle_catches_a_source_that_commits_past_unfinished_records() {
    oracle_catches(Mutation::SourceCommitsPast);
}

#[test]
fn oracle_catches_a_queue_that_deletes_records_not_done() {
    oracle_catches(Mutation::SourceAcksAhead);
}

#[test]
fn oracle_catches_a_dedup_store_that_forgets() {
    oracle_catches_as(Mutation::DedupForgets, "effectively_once");
}

#[test]
fn oracle_catches_a_digest_that_answers_before_the_digest_is_accepted() {
    oracle_catches_as(Mutation::DigestEarly, "digest_done_when_accepted");
}

#[test]
fn oracle_catches_a_digest_sent_twice() {
    oracle_catches_as(Mutation::DigestTwice, "digest_once");
}
