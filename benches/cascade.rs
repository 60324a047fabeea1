//! The cascade's overhead when stage 1 decides (issue 16 §4): the local
//! classifier alone against `Cascade(local, SimulatedLlm)` on the same
//! tweets, all outside the uncertain band, in the same run. Target: the
//! cascade adds at most 5% to the local model's predict time.
//!
//! The tweets are the bundled labeled ones whose binary score falls outside
//! the band `[0.3, 0.7]` (stage 2 is never called, which the bench checks).
//! Both variants go through `Classifier::classify` (the future is ready at
//! once and is polled once), one tweet at a time on the calling thread. No
//! `metrics` recorder is installed, as in a process that exports none; the
//! cascade still makes its counter calls.
//!
//! After the criterion group the bench prints medians of interleaved
//! repetitions measured in this run and the ratio against the target.
//!
//! ```text
//! cargo bench --bench cascade             # full run
//! cargo bench --bench cascade -- --test   # quick check
//! ```

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use futures::FutureExt as _;
use streamsift::cascade::{Cascade, UncertainBand};
use streamsift::fakes::SimulatedLlm;
use streamsift::local::{Example, LocalClassifier, LocalModel, TrainConfig};
use streamsift::{CascadeStage, Classifier};

const TWEETS: &[u8] = include_bytes!("../examples/data/tweets.jsonl");
const LABELS: &str = include_str!("../examples/data/labels.csv");
const TARGET_RATIO: f64 = 1.05;
const BAND: UncertainBand = UncertainBand::new(0.3, 0.7);

/// The bundled labeled tweets with binary labels.
fn bundled() -> Vec<Example> {
    let gold: std::collections::HashMap<&str, &str> = LABELS
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .collect();
    TWEETS
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter_map(|v| {
            let label = *gold.get(v["id_str"].as_str()?)?;
            let label = if label == "none" {
                "none"
            } else {
                "actionable"
            };
            Some(Example::new(v["text"].as_str()?).labeled(label))
        })
        .collect()
}

struct Setup {
    tweets: Vec<Example>,
    local: LocalClassifier,
    cascade: Cascade<LocalClassifier, SimulatedLlm>,
}

fn setup() -> Setup {
    let all = bundled();
    let model = LocalModel::train(&all, &TrainConfig::binary("actionable")).expect("trains");
    let tweets: Vec<Example> = all
        .into_iter()
        .filter(|t| {
            model
                .positive_probability(t)
                .is_some_and(|p| !BAND.contains(p))
        })
        .collect();
    let llm = SimulatedLlm::new(["actionable", "none"])
        .gold(
            tweets
                .iter()
                .map(|t| (t.text.clone(), t.label.clone().unwrap_or_default())),
        )
        .negative("none");
    let cascade = Cascade::new(LocalClassifier::new(model.clone()), llm).band(BAND);
    Setup {
        tweets,
        local: LocalClassifier::new(model),
        cascade,
    }
}

fn run<C: Classifier<Example>>(c: &C, tweets: &[Example]) -> usize {
    tweets
        .iter()
        .map(|t| {
            let p = c
                .classify(black_box(t))
                .now_or_never()
                .expect("ready at once")
                .expect("classifies");
            black_box(p).scores.len()
        })
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    let s = setup();
    // Every tweet is outside the band: stage 1 decides them all.
    for t in &s.tweets {
        let p = s.cascade.classify(t).now_or_never().unwrap().unwrap();
        assert_eq!(p.decided_by, Some(CascadeStage::First));
    }
    assert_eq!(s.cascade.second().calls(), 0, "stage 2 was never called");

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("cascade_stage1_decides");
    g.throughput(Throughput::Elements(s.tweets.len() as u64));
    g.bench_function("local classifier (baseline)", |b| {
        b.iter(|| run(&s.local, &s.tweets))
    });
    g.bench_function("cascade(local, simulated LLM)", |b| {
        b.iter(|| run(&s.cascade, &s.tweets))
    });
    g.finish();
    c.final_summary();

    // Interleaved repetitions, so both see the same machine load.
    let reps = if test { 3 } else { 41 };
    let (mut local, mut cascade) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        black_box(run(&s.local, &s.tweets));
        local.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(run(&s.cascade, &s.tweets));
        cascade.push(t.elapsed().as_secs_f64());
    }
    let n = s.tweets.len() as f64;
    let (l, c) = (median(local) / n * 1e6, median(cascade) / n * 1e6);
    let ratio = c / l;
    println!(
        "\nsummary ({} tweets outside the band [{}, {}], medians of {reps} interleaved repetitions):",
        s.tweets.len(),
        BAND.low,
        BAND.high
    );
    println!("  local classifier alone      {l:>7.3} µs per tweet");
    println!("  cascade, stage 1 decides    {c:>7.3} µs per tweet   ratio {ratio:.3}");
    println!(
        "  target: ratio <= {TARGET_RATIO:.2}: {}",
        if ratio <= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
}
