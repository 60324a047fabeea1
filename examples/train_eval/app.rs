//! The train_eval tool: everything but the terminal, so the test suite can
//! run it (`tests/train_eval.rs`).
//!
//! Binary task: the decision threshold is chosen by cost on out-of-fold
//! scores of the **training** file (k-fold cross-validation); the test file
//! only measures the model and that threshold. Multi-class task: softmax
//! regression, measured by accuracy and macro-F1 on the test file.

#![allow(dead_code)] // main.rs and the test each use part of this module

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::builder::{NonEmptyStringValueParser, TypedValueParser as _};
use streamsift::local::{
    BinaryEvalOptions, BinaryEvaluation, Costs, CvError, CvStage, DatasetError, EpochReport,
    EvalError, Example, LoadOptions, LocalModel, ModelFileError, MulticlassEvaluation, ReportInput,
    ScoredExample, ThresholdChoice, TrainConfig, TrainError, evaluate_binary, evaluate_multiclass,
    fit_binary_by_cost, threshold_at, worst_misclassified,
};

/// What `--help` ends with.
const AFTER_HELP: &str = "\
Logs: warnings and errors go to stderr; RUST_LOG=info (or debug) shows more. \
Exit status: 0 on success, 1 on an error (printed with a hint), 2 on a bad \
command line.";

/// The command line.
#[derive(Clone, Debug, PartialEq, clap::Parser)]
#[command(
    name = "train_eval",
    about = "Train and evaluate the local classifier on your own data.",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// Training data, .csv or .jsonl (one JSON object per line).
    #[arg(long, value_name = "FILE")]
    pub train: PathBuf,
    /// Test data, same format; used only to measure.
    #[arg(long, value_name = "FILE")]
    pub test: PathBuf,
    /// Column (CSV) or field path (JSON, e.g. user.bio) of the text.
    #[arg(long, value_name = "NAME", default_value = "text",
          value_parser = NonEmptyStringValueParser::new())]
    pub text_column: String,
    /// Column or field of the label.
    #[arg(long, value_name = "NAME", default_value = "label",
          value_parser = NonEmptyStringValueParser::new())]
    pub label_column: String,
    /// Binary task: LABEL against all others. Without it: binary if the
    /// training data has two labels (the rarer is positive), multinomial if
    /// it has more.
    #[arg(long, value_name = "LABEL", value_parser = NonEmptyStringValueParser::new())]
    pub positive: Option<String>,
    /// Cost of a missed positive.
    #[arg(long, value_name = "X", default_value_t = 10.0, value_parser = cost, allow_negative_numbers = true)]
    pub fn_cost: f64,
    /// Cost of a false alarm.
    #[arg(long, value_name = "X", default_value_t = 1.0, value_parser = cost, allow_negative_numbers = true)]
    pub fp_cost: f64,
    /// Cross-validation folds for the threshold (at least 2).
    #[arg(long, value_name = "K", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(2..).map(|k| k as usize))]
    pub folds: usize,
    /// Seed of folds and training.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Save the model (with its threshold policy and test figures).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Write a self-contained HTML report.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

impl Args {
    /// Parses arguments (without the program name), as the binary does.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Args, clap::Error> {
        use clap::Parser as _;
        Args::try_parse_from(std::iter::once("train_eval".to_string()).chain(args))
    }
}

/// `--fn-cost` and `--fp-cost`: a number >= 0.
fn cost(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(c) if c.is_finite() && c >= 0.0 => Ok(c),
        _ => Err("expected a number >= 0".to_string()),
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A data file could not be loaded.
    #[error("{which} data {}: {source}", path.display())]
    Load {
        /// `"training"` or `"test"`.
        which: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: DatasetError,
    },
    /// A data file has no examples.
    #[error("{which} data {} has no examples; expected a header row and at least one row", path.display())]
    Empty {
        /// `"training"` or `"test"`.
        which: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The training data has one label only.
    #[error("the training data has only the label(s) {found:?}; a classifier needs at least two")]
    OneLabel {
        /// The labels found.
        found: Vec<String>,
    },
    /// A multi-class test example has a label training never saw.
    #[error(
        "test data line {line}: label `{label}` does not occur in the training data (labels: {known:?}); \
         the model cannot predict it: add examples of it to the training data or drop it from the test data"
    )]
    UnknownTestLabel {
        /// The line.
        line: usize,
        /// The label.
        label: String,
        /// The training labels.
        known: Vec<String>,
    },
    /// Training failed.
    #[error("training: {0}")]
    Train(#[from] TrainError),
    /// Cross-validation failed.
    #[error("cross-validation on the training data: {0}")]
    Cv(#[from] CvError),
    /// Evaluation failed.
    #[error("evaluating on the test data: {0}")]
    Eval(#[from] EvalError),
    /// The model could not be saved.
    #[error(transparent)]
    Model(#[from] ModelFileError),
    /// The report could not be written.
    #[error("cannot write the report {}: {source}", path.display())]
    Report {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The figures of a binary run.
#[derive(Clone, Debug)]
pub struct BinaryOutcome {
    /// The positive label.
    pub positive: String,
    /// The negative label.
    pub negative: String,
    /// Whether the positive label was chosen automatically (the rarer one).
    pub positive_inferred: bool,
    /// The cross-validation folds.
    pub folds: usize,
    /// The threshold as chosen on out-of-fold training scores, with its
    /// cross-validated figures.
    pub cv: ThresholdChoice,
    /// The same threshold measured on the test data.
    pub test: ThresholdChoice,
    /// The threshold that would be cheapest on the test data (shown for
    /// comparison only; nothing uses it).
    pub test_cheapest: ThresholdChoice,
    /// Test ROC AUC, average precision, log-loss, curves (its `threshold`
    /// is `test`).
    pub evaluation: BinaryEvaluation,
}

/// The figures of a multi-class run.
#[derive(Clone, Debug)]
pub struct MultiOutcome {
    /// The test evaluation.
    pub evaluation: MulticlassEvaluation,
}

/// Binary or multi-class figures.
#[derive(Clone, Debug)]
pub enum Task {
    /// A binary run.
    Binary(Box<BinaryOutcome>),
    /// A multi-class run.
    Multi(Box<MultiOutcome>),
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Training examples per label.
    pub train_counts: BTreeMap<String, usize>,
    /// Test examples per label.
    pub test_counts: BTreeMap<String, usize>,
    /// The task's figures.
    pub task: Task,
    /// Seconds to train the final model (featurizing included).
    pub train_s: f64,
    /// Seconds of cross-validation before it (binary only).
    pub cv_s: f64,
    /// Mean microseconds per test record, predicted one at a time on one
    /// thread (featurize, score, build the `Prediction`).
    pub predict_us: f64,
    /// The trained model, its policy and evaluation filled in.
    pub model: LocalModel,
}

fn load(
    args: &Args,
    path: &Path,
    which: &'static str,
) -> Result<(Vec<Example>, Vec<usize>), AppError> {
    let data = LoadOptions::new(args.text_column.as_str())
        .label(args.label_column.as_str())
        .load_path(path)
        .map_err(|source| AppError::Load {
            which,
            path: path.to_path_buf(),
            source,
        })?;
    if data.is_empty() {
        return Err(AppError::Empty {
            which,
            path: path.to_path_buf(),
        });
    }
    Ok((data.examples, data.lines))
}

fn counts(examples: &[Example]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in examples {
        *out.entry(e.label.clone().unwrap_or_default()).or_default() += 1;
    }
    out
}

/// Mean time per call of `f` over `examples`, one at a time: one warm-up
/// pass, then passes until at least 0.2 s have been timed (at least one).
fn time_per_record(examples: &[Example], mut f: impl FnMut(&Example)) -> f64 {
    examples.iter().for_each(&mut f);
    let (mut calls, mut spent) = (0usize, Duration::ZERO);
    while spent < Duration::from_millis(200) || calls == 0 {
        let start = Instant::now();
        examples.iter().for_each(&mut f);
        spent += start.elapsed();
        calls += examples.len();
    }
    spent.as_secs_f64() * 1e6 / calls.max(1) as f64
}

/// Trains on `args.train`, measures on `args.test`, saves the model and the
/// report when asked. `progress` is called after each training epoch (of
/// each cross-validation fold, then of the final model).
pub fn run(args: &Args, progress: impl FnMut(CvStage, &EpochReport)) -> Result<Outcome, AppError> {
    let (train, _) = load(args, &args.train, "training")?;
    let (test, test_lines) = load(args, &args.test, "test")?;
    let train_counts = counts(&train);
    let test_counts = counts(&test);
    if train_counts.len() < 2 {
        return Err(AppError::OneLabel {
            found: train_counts.keys().cloned().collect(),
        });
    }
    let binary_positive = match (&args.positive, train_counts.len()) {
        (Some(p), _) => Some((p.clone(), false)),
        (None, 2) => {
            // The rarer label (the later one on a tie) is the one to catch.
            let rarer = train_counts
                .iter()
                .min_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(l, _)| l.clone())
                .unwrap_or_default();
            Some((rarer, true))
        }
        (None, _) => None,
    };
    let mut outcome = match binary_positive {
        Some((positive, inferred)) => {
            run_binary(args, &train, &test, positive, inferred, progress)?
        }
        None => run_multi(args, &train, &test, &test_lines, progress)?,
    };
    outcome.train_counts = train_counts;
    outcome.test_counts = test_counts;
    if let Some(path) = &args.model {
        outcome.model.save(path)?;
    }
    if let Some(path) = &args.report {
        report(args, &outcome, &test)
            .write_to(path)
            .map_err(|source| AppError::Report {
                path: path.clone(),
                source,
            })?;
    }
    Ok(outcome)
}

fn run_binary(
    args: &Args,
    train: &[Example],
    test: &[Example],
    positive: String,
    positive_inferred: bool,
    progress: impl FnMut(CvStage, &EpochReport),
) -> Result<Outcome, AppError> {
    let costs = Costs::new(args.fn_cost, args.fp_cost);
    let config = TrainConfig {
        seed: args.seed,
        ..TrainConfig::binary(positive.clone())
    };
    let started = Instant::now();
    let fit = fit_binary_by_cost(train, &config, costs, args.folds, args.seed, progress)?;
    let total_s = started.elapsed().as_secs_f64();
    let mut model = fit.model;
    let train_s = model.metadata().train_seconds;
    let negative = model.labels()[0].as_str().to_string();

    let truth: Vec<bool> = test
        .iter()
        .map(|e| e.label.as_deref() == Some(positive.as_str()))
        .collect();
    let scores: Vec<f64> = test
        .iter()
        .map(|e| model.positive_probability(e).unwrap_or(0.0))
        .collect();
    let predict_us = time_per_record(test, |e| {
        black_box(model.predict(black_box(e)));
    });
    let options = BinaryEvalOptions {
        costs,
        ..BinaryEvalOptions::default()
    };
    let mut evaluation = evaluate_binary(&scores, &truth, &options)?;
    let test_at = threshold_at(&scores, &truth, fit.choice.threshold, costs)?;
    let test_cheapest = std::mem::replace(&mut evaluation.threshold, test_at.clone());

    model.evaluation = Some(serde_json::json!({
        "train_file": args.train.display().to_string(),
        "test_file": args.test.display().to_string(),
        "threshold_chosen_by": format!("{}-fold cross-validation on the training data (out-of-fold scores)", args.folds),
        "cross_validation": &fit.choice,
        "test": &evaluation,
        "predict_us": predict_us,
    }));
    Ok(Outcome {
        train_counts: BTreeMap::new(),
        test_counts: BTreeMap::new(),
        task: Task::Binary(Box::new(BinaryOutcome {
            positive,
            negative,
            positive_inferred,
            folds: args.folds,
            cv: fit.choice,
            test: test_at,
            test_cheapest,
            evaluation,
        })),
        train_s,
        cv_s: (total_s - train_s).max(0.0),
        predict_us,
        model,
    })
}

fn run_multi(
    args: &Args,
    train: &[Example],
    test: &[Example],
    test_lines: &[usize],
    mut progress: impl FnMut(CvStage, &EpochReport),
) -> Result<Outcome, AppError> {
    let config = TrainConfig {
        seed: args.seed,
        ..TrainConfig::multinomial()
    };
    let mut model =
        LocalModel::train_with_progress(train, &config, |r| progress(CvStage::Final, r))?;
    let train_s = model.metadata().train_seconds;
    let labels: Vec<String> = model
        .labels()
        .iter()
        .map(|l| l.as_str().to_string())
        .collect();
    let mut truth = Vec::with_capacity(test.len());
    for (e, &line) in test.iter().zip(test_lines) {
        let label = e.label.clone().unwrap_or_default();
        match labels.iter().position(|l| *l == label) {
            Some(i) => truth.push(i),
            None => {
                return Err(AppError::UnknownTestLabel {
                    line,
                    label,
                    known: labels,
                });
            }
        }
    }
    let probs: Vec<Vec<f64>> = test
        .iter()
        .map(|e| model.predict_proba(e).into_iter().map(|(_, p)| p).collect())
        .collect();
    let predict_us = time_per_record(test, |e| {
        black_box(model.predict(black_box(e)));
    });
    let evaluation = evaluate_multiclass(&truth, &probs, &labels)?;
    model.evaluation = Some(serde_json::json!({
        "train_file": args.train.display().to_string(),
        "test_file": args.test.display().to_string(),
        "test": &evaluation,
        "predict_us": predict_us,
    }));
    Ok(Outcome {
        train_counts: BTreeMap::new(),
        test_counts: BTreeMap::new(),
        task: Task::Multi(Box::new(MultiOutcome { evaluation })),
        train_s,
        cv_s: 0.0,
        predict_us,
        model,
    })
}

/// The HTML report of a run.
pub fn report(args: &Args, outcome: &Outcome, test: &[Example]) -> ReportInput {
    let mut input = ReportInput::new(format!(
        "streamsift train_eval: {}",
        args.train
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    ))
    .note("training data", args.train.display().to_string())
    .note("test data", args.test.display().to_string())
    .note("training examples", fmt_counts(&outcome.train_counts))
    .note("test examples", fmt_counts(&outcome.test_counts))
    .note("training time", format!("{:.3} s", outcome.train_s))
    .note(
        "predict time",
        format!("{:.2} µs per record, one at a time", outcome.predict_us),
    );
    let texts: Vec<&str> = test.iter().map(|e| e.text.as_str()).collect();
    match &outcome.task {
        Task::Binary(b) => {
            let scores: Vec<f64> = test
                .iter()
                .map(|e| outcome.model.positive_probability(e).unwrap_or(0.0))
                .collect();
            let truth: Vec<bool> = test
                .iter()
                .map(|e| e.label.as_deref() == Some(b.positive.as_str()))
                .collect();
            let worst = worst_misclassified(
                &texts,
                &scores,
                &truth,
                b.test.threshold,
                &b.positive,
                &b.negative,
                25,
            )
            .unwrap_or_default();
            let top = outcome.model.top_features(25);
            let features = top
                .positive
                .iter()
                .chain(&top.negative)
                .map(|f| (f.name.clone(), f64::from(f.weight)))
                .collect();
            input = input
                .note(
                    "threshold",
                    format!(
                        "{:.4}, chosen by {}:{} cost on {}-fold out-of-fold scores of the training data \
                         (cross-validated precision {}, recall {})",
                        b.cv.threshold,
                        fmt_num(args.fn_cost),
                        fmt_num(args.fp_cost),
                        b.folds,
                        pct(b.cv.precision),
                        pct(b.cv.recall)
                    ),
                )
                .binary(b.evaluation.clone(), b.positive.clone(), b.negative.clone())
                .features(features)
                .examples(worst);
        }
        Task::Multi(m) => {
            let e = &m.evaluation;
            let mut wrong: Vec<(f64, ScoredExample)> = Vec::new();
            for ex in test {
                let p = outcome.model.predict(ex);
                let truth = ex.label.clone().unwrap_or_default();
                if p.label.as_str() != truth {
                    let score = p.confidence().unwrap_or(0.0);
                    wrong.push((
                        score,
                        ScoredExample {
                            text: ex.text.clone(),
                            truth,
                            predicted: p.label.as_str().to_string(),
                            score,
                        },
                    ));
                }
            }
            wrong.sort_by(|a, b| b.0.total_cmp(&a.0));
            input = input
                .multiclass(e.clone())
                .examples(wrong.into_iter().take(25).map(|(_, s)| s).collect());
        }
    }
    input
}

fn fmt_counts(counts: &BTreeMap<String, usize>) -> String {
    let total: usize = counts.values().sum();
    let parts: Vec<String> = counts.iter().map(|(l, n)| format!("{l} {n}")).collect();
    format!("{total} ({})", parts.join(", "))
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{:.1}%", v * 100.0))
}

fn num(x: Option<f64>) -> String {
    x.map_or("nan".into(), |v| format!("{v:.4}"))
}

/// The human-readable figures, several lines, ending with a newline.
pub fn render(args: &Args, outcome: &Outcome) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "training examples  {}",
        fmt_counts(&outcome.train_counts)
    );
    let _ = writeln!(
        out,
        "test examples      {}",
        fmt_counts(&outcome.test_counts)
    );
    match &outcome.task {
        Task::Binary(b) => {
            let e = &b.evaluation;
            let c = &b.test.confusion;
            let _ = writeln!(
                out,
                "task               binary: {} vs {}{}",
                b.positive,
                b.negative,
                if b.positive_inferred {
                    " (positive = the rarer label; set --positive to choose)"
                } else {
                    ""
                }
            );
            let _ = writeln!(out, "\ntest ROC AUC       {:.4}", e.roc_auc);
            let _ = writeln!(out, "average precision  {:.4}", e.average_precision);
            let _ = writeln!(out, "log-loss           {:.4}", e.log_loss);
            let _ = writeln!(
                out,
                "\nthreshold          {:.4}  chosen by cost {}:{} (false negative : false positive) on {}-fold \
                 out-of-fold scores of the training data",
                b.cv.threshold,
                fmt_num(args.fn_cost),
                fmt_num(args.fp_cost),
                b.folds
            );
            let _ = writeln!(
                out,
                "  cross-validated  precision {}  recall {}  cost/record {:.4}",
                pct(b.cv.precision),
                pct(b.cv.recall),
                b.cv.expected_cost
            );
            let _ = writeln!(
                out,
                "  on the test data precision {}  recall {}  cost/record {:.4}",
                pct(b.test.precision),
                pct(b.test.recall),
                b.test.expected_cost
            );
            let _ = writeln!(
                out,
                "  (not used: the cheapest threshold on the test data itself would be {:.4}, cost/record {:.4})",
                b.test_cheapest.threshold, b.test_cheapest.expected_cost
            );
            let w = b.positive.len().max(b.negative.len()).max(6);
            let _ = writeln!(
                out,
                "\nconfusion (test)   {:>w$}  {:>w$}   <- predicted",
                b.positive, b.negative
            );
            let _ = writeln!(out, "  {:<16} {:>w$}  {:>w$}", b.positive, c.tp, c.fn_);
            let _ = writeln!(out, "  {:<16} {:>w$}  {:>w$}", b.negative, c.fp, c.tn);
        }
        Task::Multi(m) => {
            let e = &m.evaluation;
            let _ = writeln!(
                out,
                "task               multinomial over {} labels",
                e.labels.len()
            );
            let _ = writeln!(out, "\ntest accuracy      {:.4}", e.accuracy);
            let _ = writeln!(out, "macro-F1           {:.4}", e.macro_f1);
            let _ = writeln!(out, "log-loss           {:.4}", e.log_loss);
            let w = e.labels.iter().map(String::len).max().unwrap_or(5).max(5);
            let _ = writeln!(
                out,
                "\n  {:<w$}  precision  recall      F1  support",
                "label"
            );
            for c in &e.per_class {
                let _ = writeln!(
                    out,
                    "  {:<w$}  {:>9}  {:>6}  {:>6}  {:>7}",
                    c.label,
                    pct(c.precision),
                    pct(c.recall),
                    pct(c.f1),
                    c.support
                );
            }
            let _ = writeln!(
                out,
                "\nconfusion (test; rows = truth, columns = predicted, in label order)"
            );
            for (label, row) in e.labels.iter().zip(&e.confusion) {
                let cells: Vec<String> = row.iter().map(|n| format!("{n:>6}")).collect();
                let _ = writeln!(out, "  {label:<w$} {}", cells.join(""));
            }
        }
    }
    if outcome.cv_s > 0.0 {
        let _ = writeln!(
            out,
            "\ntraining time      {:.3} s  (plus {:.3} s of cross-validation for the threshold)",
            outcome.train_s, outcome.cv_s
        );
    } else {
        let _ = writeln!(out, "\ntraining time      {:.3} s", outcome.train_s);
    }
    let _ = writeln!(
        out,
        "predict time       {:.3} µs per record (mean, one at a time, one thread)",
        outcome.predict_us
    );
    out
}

/// The machine-readable last line.
pub fn summary_line(outcome: &Outcome) -> String {
    match &outcome.task {
        Task::Binary(b) => format!(
            "auc={:.4} threshold={:.4} precision={} recall={} train_s={:.3} predict_us={:.3}",
            b.evaluation.roc_auc,
            b.test.threshold,
            num(b.test.precision),
            num(b.test.recall),
            outcome.train_s,
            outcome.predict_us
        ),
        Task::Multi(m) => format!(
            "accuracy={:.4} macro_f1={:.4} train_s={:.3} predict_us={:.3}",
            m.evaluation.accuracy, m.evaluation.macro_f1, outcome.train_s, outcome.predict_us
        ),
    }
}
