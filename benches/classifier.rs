//! The local classifier's speed (issue 3): predict time per tweet, one at a
//! time on one core, against the featurizer alone; and training time on 10k
//! tweets.
//!
//! **Predict.** The 1,060 bundled labeled tweets, one after the other, on
//! the calling thread, with a model trained on them (default settings):
//!
//! - `featurize`: the featurizer alone into a reused [`FeatureBuf`] (the
//!   baseline: tokenizing, hashing, normalising);
//! - `predict_proba_into`: featurize + dot product + sigmoid into a caller's
//!   buffer (allocation-free);
//! - `predict`: [`LocalModel::predict`], which returns a [`Prediction`]
//!   (one `Vec` of scores per call), as `Classifier::classify` does.
//!
//! **Train.** 10,000 tweets made by cycling the bundled 1,060 with a
//! deterministic perturbation (copy `c` of a tweet drops its word number
//! `c mod words` and, for odd `c`, repeats its first word at the end), so most
//! texts differ; default settings (10 epochs), binary and 5-way
//! multinomial. Featurizing the data is included in the time.
//!
//! After the criterion groups the bench prints a summary measured in this
//! run (medians of interleaved repetitions) with the ratio to the baseline
//! and the issue's targets (predict ≤ 2 µs per tweet, training 10k ≤ 1 s).
//!
//! ```text
//! cargo bench --bench classifier             # full run
//! cargo bench --bench classifier -- --test   # quick check, few tweets
//! ```
//!
//! **Profiling.** With `CLASSIFIER_PROFILE=<workload>:<n>` in the
//! environment the binary skips criterion, runs one workload `n` times and
//! exits, for an instruction-count profiler, which gives the same count on
//! a loaded machine. Workloads: `featurize`, `predict_into`, `predict` (over
//! the 1,060 tweets), `train_binary`, `train_multi` (10k tweets). The cost
//! per run is the count at `n` minus the count at `0` (the setup), over `n`:
//!
//! ```text
//! cargo bench --bench classifier --no-run   # prints the binary's path
//! CLASSIFIER_PROFILE=predict:20 valgrind --tool=callgrind target/release/deps/classifier-…
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use streamsift::local::{Example, FeatureBuf, LocalModel, TrainConfig};

const TWEETS: &[u8] = include_bytes!("../examples/data/tweets.jsonl");
const LABELS: &str = include_str!("../examples/data/labels.csv");

const TARGET_PREDICT_US: f64 = 2.0;
const TARGET_TRAIN_S: f64 = 1.0;

/// The bundled labeled tweets (multi-class labels); malformed lines skipped.
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
            let id = v["id_str"].as_str()?;
            let text = v["text"].as_str()?;
            let label = gold.get(id)?;
            Some(Example::new(text).labeled(*label))
        })
        .collect()
}

fn to_binary(data: &[Example]) -> Vec<Example> {
    data.iter()
        .map(|e| {
            let mut e = e.clone();
            let actionable = e.label.as_deref() != Some("none");
            e.label = Some(if actionable { "actionable" } else { "none" }.into());
            e
        })
        .collect()
}

/// `n` examples cycling `base`, copy `c` perturbed as the module doc says.
fn cycled(base: &[Example], n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| {
            let e = &base[i % base.len()];
            let c = i / base.len();
            if c == 0 {
                return e.clone();
            }
            let words: Vec<&str> = e.text.split_whitespace().collect();
            let drop = c % words.len().max(1);
            let mut text: Vec<&str> = words
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != drop)
                .map(|(_, w)| *w)
                .collect();
            if c % 2 == 1
                && let Some(first) = words.first()
            {
                text.push(first);
            }
            let mut out = e.clone();
            out.text = text.join(" ");
            out
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds to run `f` once.
fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

struct Setup {
    tweets: Vec<Example>,
    model: LocalModel,
    /// The same without character n-grams (the speed/quality trade-off).
    words_only: LocalModel,
    train_binary: Vec<Example>,
    train_multi: Vec<Example>,
}

fn setup(test: bool) -> Setup {
    let tweets = bundled();
    let binary = to_binary(&tweets);
    let model = LocalModel::train(&binary, &TrainConfig::binary("actionable"))
        .expect("the bundled data trains");
    let mut words = TrainConfig::binary("actionable");
    words.featurizer.char_ngrams = None;
    let words_only = LocalModel::train(&binary, &words).expect("the bundled data trains");
    let n = if test { 500 } else { 10_000 };
    Setup {
        train_binary: cycled(&binary, n),
        train_multi: cycled(&tweets, n),
        tweets,
        model,
        words_only,
    }
}

fn featurize_all(s: &Setup, buf: &mut FeatureBuf) -> usize {
    let f = s.model.featurizer();
    s.tweets
        .iter()
        .map(|t| black_box(f.featurize(black_box(t), buf)).len())
        .sum()
}

fn predict_all_into(s: &Setup, buf: &mut FeatureBuf) -> f64 {
    let mut out = [0.0; 2];
    let mut sum = 0.0;
    for t in &s.tweets {
        s.model.predict_proba_into(black_box(t), buf, &mut out);
        sum += black_box(out[1]);
    }
    sum
}

fn predict_all(s: &Setup) -> usize {
    predict_all_with(s, &s.model)
}

fn predict_all_with(s: &Setup, model: &LocalModel) -> usize {
    s.tweets
        .iter()
        .map(|t| black_box(model.predict(black_box(t))).scores.len())
        .sum()
}

fn bench(c: &mut Criterion, s: &Setup) {
    let mut g = c.benchmark_group("predict_one_at_a_time");
    g.throughput(Throughput::Elements(s.tweets.len() as u64));
    let mut buf = FeatureBuf::new();
    g.bench_function("featurize (baseline)", |b| {
        b.iter(|| featurize_all(s, &mut buf))
    });
    g.bench_function("predict_proba_into", |b| {
        b.iter(|| predict_all_into(s, &mut buf))
    });
    g.bench_function("predict", |b| b.iter(|| predict_all(s)));
    g.bench_function("predict (no char n-grams)", |b| {
        b.iter(|| predict_all_with(s, &s.words_only))
    });
    g.finish();

    let mut g = c.benchmark_group("train");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(s.train_binary.len() as u64));
    let binary = TrainConfig::binary("actionable");
    let multi = TrainConfig::multinomial();
    g.bench_function("binary", |b| {
        b.iter(|| LocalModel::train(black_box(&s.train_binary), &binary))
    });
    g.bench_function("multinomial", |b| {
        b.iter(|| LocalModel::train(black_box(&s.train_multi), &multi))
    });
    g.finish();
}

fn summarize(s: &Setup, reps: usize, train_reps: usize) {
    let n = s.tweets.len() as f64;
    let mut buf = FeatureBuf::new();
    let (mut feat, mut into, mut pred) = (Vec::new(), Vec::new(), Vec::new());
    let mut words = Vec::new();
    for _ in 0..reps {
        feat.push(time(|| {
            black_box(featurize_all(s, &mut buf));
        }));
        into.push(time(|| {
            black_box(predict_all_into(s, &mut buf));
        }));
        pred.push(time(|| {
            black_box(predict_all(s));
        }));
        words.push(time(|| {
            black_box(predict_all_with(s, &s.words_only));
        }));
    }
    let us = |v: Vec<f64>| median(v) / n * 1e6;
    let (feat, into, pred, words) = (us(feat), us(into), us(pred), us(words));
    let (mut tb, mut tm) = (Vec::new(), Vec::new());
    let binary = TrainConfig::binary("actionable");
    let multi = TrainConfig::multinomial();
    for _ in 0..train_reps {
        tb.push(time(|| {
            black_box(LocalModel::train(&s.train_binary, &binary).ok());
        }));
        tm.push(time(|| {
            black_box(LocalModel::train(&s.train_multi, &multi).ok());
        }));
    }
    let (tb, tm) = (median(tb), median(tm));
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!();
    println!(
        "summary (medians of {reps} interleaved runs over {} tweets, one at a time):",
        s.tweets.len()
    );
    println!("  featurize (baseline)  {feat:.3} µs/tweet");
    println!(
        "  predict_proba_into    {into:.3} µs/tweet  ({:.2}x the featurizer)",
        into / feat
    );
    println!(
        "  predict (Prediction)  {pred:.3} µs/tweet  ({:.2}x the featurizer)",
        pred / feat
    );
    println!(
        "  predict, no char n-grams {words:.3} µs/tweet  ({:.2}x the featurizer with them)",
        words / feat
    );
    println!(
        "  target predict <= {TARGET_PREDICT_US} µs/tweet (default settings): {}",
        verdict(pred <= TARGET_PREDICT_US)
    );
    println!(
        "  train {} tweets: binary {tb:.3} s, multinomial (5 labels) {tm:.3} s (medians of {train_reps})",
        s.train_binary.len()
    );
    println!(
        "  target train 10k <= {TARGET_TRAIN_S} s: {}",
        verdict(tb.max(tm) <= TARGET_TRAIN_S && s.train_binary.len() >= 10_000)
    );
}

/// Criterion's own rule: test mode unless run with `--bench`, or with `--test`.
fn test_mode(args: &[String]) -> bool {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--test") || !has("--bench")
}

/// Runs the workload `CLASSIFIER_PROFILE` names (see the module doc).
fn profile(spec: &str) {
    let (what, n) = spec.split_once(':').unwrap_or((spec, "1"));
    let n: usize = n.parse().expect("CLASSIFIER_PROFILE=<workload>:<count>");
    let tweets = bundled();
    let binary = to_binary(&tweets);
    let mut buf = FeatureBuf::new();
    let config = TrainConfig::binary("actionable");
    let needs_model = matches!(what, "predict" | "predict_into");
    let model = needs_model.then(|| LocalModel::train(&binary, &config).expect("trains"));
    let s = model.map(|model| Setup {
        words_only: model.clone(),
        model,
        tweets: tweets.clone(),
        train_binary: Vec::new(),
        train_multi: Vec::new(),
    });
    let featurizer = streamsift::local::Featurizer::new(config.featurizer.clone()).expect("valid");
    let (train_binary, train_multi) = match what {
        "train_binary" => (cycled(&binary, 10_000), Vec::new()),
        "train_multi" => (Vec::new(), cycled(&tweets, 10_000)),
        _ => (Vec::new(), Vec::new()),
    };
    let multi = TrainConfig::multinomial();
    let mut sink = 0.0;
    let started = Instant::now();
    for _ in 0..n {
        sink += match (what, &s) {
            ("featurize", _) => tweets
                .iter()
                .map(|t| black_box(featurizer.featurize(black_box(t), &mut buf)).len())
                .sum::<usize>() as f64,
            ("predict_into", Some(s)) => predict_all_into(s, &mut buf),
            ("predict", Some(s)) => predict_all(s) as f64,
            ("train_binary", _) => {
                let m = LocalModel::train(black_box(&train_binary), &config).expect("trains");
                m.metadata().train_log_loss
            }
            ("train_multi", _) => {
                let m = LocalModel::train(black_box(&train_multi), &multi).expect("trains");
                m.metadata().train_log_loss
            }
            _ => panic!("unknown CLASSIFIER_PROFILE workload {what:?}"),
        };
    }
    let per_run = started.elapsed().as_secs_f64() / n.max(1) as f64;
    let per_tweet_us = per_run / tweets.len() as f64 * 1e6;
    println!(
        "{what} x{n}: {sink} ({per_run:.4} s per run, {per_tweet_us:.3} µs per bundled tweet)"
    );
}

fn main() {
    if let Ok(spec) = std::env::var("CLASSIFIER_PROFILE") {
        profile(&spec);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let test = test_mode(&args);
    let listing = args.iter().any(|a| a == "--list");
    let s = setup(test);
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &s);
    criterion.final_summary();
    if listing {
        return;
    }
    if test {
        println!(
            "(test mode: 500 training tweets and maybe an unoptimized build; this checks the \
             harness, the targets need `cargo bench --bench classifier`)"
        );
        summarize(&s, 1, 1);
    } else {
        summarize(&s, 21, 5);
    }
}
