//! The label_and_train flow, without the terminal, so `tests/label_and_train.rs`
//! can run it: sample the unlabeled stream, remove retweets and duplicates,
//! send labeling tasks, aggregate the answers, write a training CSV, train
//! the local model and write its evaluation report.

#![allow(dead_code)] // main.rs and the test each use part of this module

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use streamsift::aggregate::{Aggregation, Aggregator, DawidSkene, answers_from_results};
use streamsift::fakes::SimulatedLlm;
use streamsift::fakes::{SimulatedCrowd, Worker};
use streamsift::local::{
    BinaryEvalOptions, Costs, DedupOptions, DedupReport, Example, LoadOptions, Mode, ReportInput,
    TrainConfig, evaluate_binary, fit_binary_by_cost, read_labels_path, stratified_split,
    threshold_at, worst_misclassified,
};
use streamsift::{LabelResult, LabelTask, Labeler, LlmLabeler, Prediction};

/// The categories workers choose from (the bundled data's labels; `none`
/// is "none of the above").
pub const CATEGORIES: [&str; 5] = [
    "support_request",
    "technical_question",
    "problem_report",
    "feature_request",
    "none",
];
/// The category that is not actionable.
pub const NONE: &str = "none";
/// The positive label of the trained binary model.
pub const ACTIONABLE: &str = "actionable";
/// Share of the labeled sample held out to measure the model.
pub const HOLDOUT: f64 = 0.3;
/// Cross-validation folds for the threshold.
pub const FOLDS: usize = 5;

/// What `--help` ends with.
const AFTER_HELP: &str = "\
Offline (the default) a SimulatedCrowd labels: 3 answers per tweet from 10 \
workers, 3 of them spammers.

Logs: warnings and errors go to stderr; RUST_LOG=info (or debug) shows more. \
Exit status: 0 on success, 1 on an error (printed with a hint), 2 on a bad \
command line.";

/// label_and_train's command line.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "label_and_train",
    about = "Build a labeled dataset from the unlabeled stream and train the local model on it.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// The unlabeled stream, JSON lines of tweets [default: examples/data/tweets.jsonl].
    #[arg(long, value_name = "FILE")]
    pub tweets: Option<PathBuf>,
    /// Gold labels (id_str,label): the simulated crowd's truth, and what the
    /// model is measured against [default: examples/data/labels.csv].
    #[arg(long, value_name = "FILE")]
    pub gold: Option<PathBuf>,
    /// Where the outputs go [default: target/label_and_train].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Tweets sampled from the stream, 0 for all.
    #[arg(long, value_name = "N", default_value_t = 600)]
    pub sample: usize,
    /// Seed of the sample, the crowd and training.
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub seed: u64,
    /// Aggregate by majority vote instead of Dawid-Skene.
    #[arg(long)]
    pub majority: bool,
    /// Label on the local web page instead (needs --features label-ui); the
    /// URL with its access token is printed at start.
    #[arg(long, conflicts_with = "mturk")]
    pub web: bool,
    /// With --web: answers per tweet, from different people; below 3, the
    /// answers are aggregated by majority vote.
    #[arg(long, value_name = "K", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub answers: u32,
    /// Send HITs to the Mechanical Turk sandbox instead (needs --features
    /// mturk and AWS credentials of a requester account); keep --sample
    /// small: each tweet is one HIT of 3 assignments.
    #[arg(long)]
    pub mturk: bool,
    /// With --mturk: the most the HITs may commit, fees included, in dollars.
    #[arg(long, value_name = "USD", default_value = "5.00", value_parser = parse_dollars)]
    pub max_spend: u64,
    /// With --web or --mturk: stop collecting after this many seconds
    /// [default: 28800; offline: 60].
    #[arg(long, value_name = "SECS")]
    pub max_wait: Option<u64>,
    /// Pre-label with an LLM instead of a crowd: the base URL of an
    /// OpenAI-compatible server (needs --features llm), e.g.
    /// http://localhost:8000/v1. Two workers ask it under two prompts.
    #[arg(long, value_name = "URL", conflicts_with_all = ["web", "mturk", "llm_sim"])]
    pub llm: Option<String>,
    /// With --llm: the model name.
    #[arg(long, value_name = "NAME", default_value = "gpt-4o-mini")]
    pub llm_model: String,
    /// With --llm: the environment variable holding the API key (never
    /// printed or logged; unset means no key, as local servers want).
    #[arg(long, value_name = "VAR", default_value = "OPENAI_API_KEY")]
    pub llm_key_env: String,
    /// Pre-label offline with two simulated LLM workers (SimulatedLlm over
    /// the gold labels: accuracy 0.9 and 0.75).
    #[arg(long, conflicts_with_all = ["web", "mturk"])]
    pub llm_sim: bool,
    /// With --llm or --llm-sim: people review on the local labeling page
    /// (needs --features label-ui) the tweets the two LLM workers disagree
    /// on, with the LLM's label as the suggestion.
    #[arg(long)]
    pub review: bool,
}

/// `--max-spend`: dollars such as `5.00` or `$5` to cents.
fn parse_dollars(v: &str) -> Result<u64, String> {
    v.trim_start_matches('$')
        .parse::<f64>()
        .ok()
        .filter(|d| d.is_finite() && *d >= 0.0)
        .map(|d| (d * 100.0).round() as u64)
        .ok_or_else(|| format!("expected dollars such as 5.00, found {v:?}"))
}

/// How answers become one label per item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Dawid–Skene EM (the default).
    DawidSkene,
    /// Majority vote.
    Majority,
}

/// The options.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The unlabeled stream.
    pub tweets: PathBuf,
    /// Gold labels.
    pub gold: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Tweets sampled (0: all).
    pub sample: usize,
    /// Seed.
    pub seed: u64,
    /// Aggregation.
    pub method: Method,
    /// Label on the local web page.
    pub web: bool,
    /// Answers per item on the web page.
    pub answers: usize,
    /// Send HITs to the Mechanical Turk sandbox.
    pub mturk: bool,
    /// The most the HITs may commit, in cents.
    pub max_spend_cents: u64,
    /// Valid answers an item needs to be labeled by the aggregation.
    pub min_votes: usize,
    /// How often finished labels are collected.
    pub poll: Duration,
    /// How long to wait for labels before giving up on the rest.
    pub max_wait: Duration,
    /// Pre-label with an LLM at this URL.
    pub llm: Option<String>,
    /// The LLM's model name.
    pub llm_model: String,
    /// The environment variable holding the LLM's API key.
    pub llm_key_env: String,
    /// Pre-label with simulated LLM workers.
    pub llm_sim: bool,
    /// People review the LLM workers' disagreements on the labeling page.
    pub review: bool,
}

impl Default for Options {
    fn default() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Options {
            tweets: root.join("examples/data/tweets.jsonl"),
            gold: root.join("examples/data/labels.csv"),
            out: root.join("target/label_and_train"),
            sample: 600,
            seed: 7,
            method: Method::DawidSkene,
            web: false,
            answers: 1,
            mturk: false,
            max_spend_cents: 500,
            min_votes: 2,
            poll: Duration::from_millis(200),
            max_wait: Duration::from_secs(60),
            llm: None,
            llm_model: "gpt-4o-mini".to_string(),
            llm_key_env: "OPENAI_API_KEY".to_string(),
            llm_sim: false,
            review: false,
        }
    }
}

/// Why the flow stopped.
#[derive(Debug)]
pub enum AppError {
    /// A bad command line (clap's message, usage included).
    Usage(String),
    /// Reading the stream or the gold labels failed.
    Data(streamsift::local::DatasetError),
    /// The labeler failed.
    Label(streamsift::LabelError),
    /// Too few labels to train.
    TooFewLabels(String),
    /// Training or evaluation failed.
    Train(String),
    /// Writing an output failed.
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Usage(m) => f.write_str(m.trim_end()),
            AppError::Data(e) => write!(f, "reading the data: {e}"),
            AppError::Label(e) => write!(f, "labeling: {e}"),
            AppError::TooFewLabels(m) => write!(f, "too few labels to train: {m}"),
            AppError::Train(m) => write!(f, "training: {m}"),
            AppError::Write { path, message } => {
                write!(
                    f,
                    "writing {}: {message}; check the directory is writable",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for AppError {}

impl From<streamsift::local::DatasetError> for AppError {
    fn from(e: streamsift::local::DatasetError) -> Self {
        AppError::Data(e)
    }
}

impl Options {
    /// Parses a command line (without the program name), as the binary
    /// does: `--help` and mistakes are [`AppError::Usage`] with clap's text.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, AppError> {
        use clap::Parser as _;
        let cli = Cli::try_parse_from(std::iter::once("label_and_train".to_string()).chain(args))
            .map_err(|e| AppError::Usage(e.to_string()))?;
        Ok(Options::from_cli(cli))
    }

    /// The options of a parsed command line.
    pub fn from_cli(cli: Cli) -> Options {
        let defaults = Options::default();
        let mut o = Options {
            tweets: cli.tweets.unwrap_or(defaults.tweets),
            gold: cli.gold.unwrap_or(defaults.gold),
            out: cli.out.unwrap_or(defaults.out),
            sample: cli.sample,
            seed: cli.seed,
            method: if cli.majority {
                Method::Majority
            } else {
                Method::DawidSkene
            },
            web: cli.web,
            answers: cli.answers as usize,
            mturk: cli.mturk,
            max_spend_cents: cli.max_spend,
            max_wait: cli.max_wait.map_or(defaults.max_wait, Duration::from_secs),
            llm: cli.llm,
            llm_model: cli.llm_model,
            llm_key_env: cli.llm_key_env,
            llm_sim: cli.llm_sim,
            review: cli.review,
            ..defaults
        };
        let max_wait_set = cli.max_wait.is_some();
        if o.mturk {
            // Workers take minutes to hours: poll every 30 s.
            o.poll = Duration::from_secs(30);
            if !max_wait_set {
                o.max_wait = Duration::from_secs(8 * 60 * 60);
            }
        }
        if o.review && !max_wait_set {
            // People review the disagreements: wait a working day.
            o.max_wait = Duration::from_secs(8 * 60 * 60);
        }
        if o.review {
            o.poll = Duration::from_secs(1);
        }
        if o.web {
            // People: poll each second, wait a working day, and label an
            // item once it has every answer asked for (at most 2 needed).
            o.poll = Duration::from_secs(1);
            if !max_wait_set {
                o.max_wait = Duration::from_secs(8 * 60 * 60);
            }
            o.min_votes = o.answers.min(2);
            // Dawid-Skene estimates each worker's confusion from the
            // answers of others on the same items; with one or two answers
            // an item there is too little to go on (with one person it
            // drifts toward the commonest label), so the vote decides.
            if o.answers < 3 {
                o.method = Method::Majority;
            }
        }
        o
    }
}

/// The sample, ready to label.
#[derive(Debug)]
pub struct Prepared {
    /// Tweets read from the stream.
    pub loaded: usize,
    /// Malformed lines skipped.
    pub skipped_lines: usize,
    /// Tweets sampled.
    pub sampled: usize,
    /// What dedup removed.
    pub dedup: DedupReport,
    /// The tweets to label: sampled, without retweets and duplicates.
    pub examples: Vec<Example>,
}

/// A seeded shuffle (SplitMix64 keys), so the sample is reproducible.
fn sample<T>(items: Vec<T>, n: usize, seed: u64) -> Vec<T> {
    if n == 0 || n >= items.len() {
        return items;
    }
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut keyed: Vec<(u64, usize, T)> = items
        .into_iter()
        .enumerate()
        .map(|(i, t)| (mix(seed ^ mix(i as u64)), i, t))
        .collect();
    keyed.sort_by_key(|(k, _, _)| *k);
    keyed.truncate(n);
    // Back in stream order.
    keyed.sort_by_key(|(_, i, _)| *i);
    keyed.into_iter().map(|(_, _, t)| t).collect()
}

/// Reads the stream leniently, samples it, and removes retweets and
/// duplicates (labeling each costs money or someone's time).
pub fn prepare(options: &Options) -> Result<Prepared, AppError> {
    let data = LoadOptions::tweets()
        .mode(Mode::Lenient)
        .load_path(&options.tweets)?;
    let loaded = data.len();
    let skipped_lines = data.skipped.len();
    let sampled = sample(data.examples, options.sample, options.seed);
    let n = sampled.len();
    let (mut examples, dedup) =
        streamsift::local::dedup_examples(sampled, &DedupOptions::default());
    // Tweets without an id cannot be matched with their labels.
    examples.retain(|e| e.id.is_some());
    Ok(Prepared {
        loaded,
        skipped_lines,
        sampled: n,
        dedup,
        examples,
    })
}

/// The offline labeler: a crowd of 10 workers, 3 of them spammers, 3
/// answers per tweet, answering at once. Its truth is `gold` (a tweet
/// without a gold label is truly `none`).
pub fn simulated_crowd(gold: HashMap<String, String>, seed: u64) -> SimulatedCrowd<Example> {
    SimulatedCrowd::new(CATEGORIES, move |e: &Example| {
        e.id.as_ref()
            .and_then(|id| gold.get(id))
            .cloned()
            .unwrap_or_else(|| NONE.to_string())
    })
    .workers([
        Worker::accurate("w01", 0.95),
        Worker::accurate("w02", 0.9),
        Worker::accurate("w03", 0.9),
        Worker::accurate("w04", 0.85),
        Worker::accurate("w05", 0.85),
        Worker::accurate("w06", 0.8),
        Worker::accurate("w07", 0.8),
        Worker::spammer("s01"),
        Worker::spammer("s02"),
        Worker::spammer("s03"),
    ])
    .assignments_per_task(3)
    .completion_delay(Duration::ZERO)
    .seed(seed)
}

/// The Mechanical Turk labeler's settings: the sandbox, the original's
/// HIT settings (3 assignments, approval rate ≥ 95%), a question over this
/// data's categories, and the spending limit, over `client`.
#[cfg(feature = "mturk")]
pub fn mturk_builder(
    options: &Options,
    client: aws_sdk_mturk::Client,
) -> streamsift::mturk::MturkLabelerBuilder<Example> {
    use streamsift::mturk::{Cents, MturkLabeler, QuestionTemplate};
    let shown = [
        "Request",
        "Question",
        "Problem Report",
        "Feature request",
        "None of the above",
    ];
    let question = QuestionTemplate {
        categories: CATEGORIES
            .iter()
            .zip(shown)
            .map(|(value, text)| ((*value).to_string(), text.to_string()))
            .collect(),
        ..QuestionTemplate::default()
    };
    MturkLabeler::builder_from_client(client, |e: &Example| e.text.clone())
        .question(question)
        .max_spend(Cents(options.max_spend_cents))
}

/// Submits every example (in batches) and collects results until all are
/// in or `max_wait` passes. Returns the results and how many never came.
pub async fn label<L: Labeler<Example>>(
    labeler: &L,
    examples: &[Example],
    poll: Duration,
    max_wait: Duration,
) -> Result<(Vec<LabelResult>, usize), AppError> {
    const BATCH: usize = 100;
    for chunk in examples.chunks(BATCH) {
        let tasks: Vec<LabelTask<'_, Example>> = chunk
            .iter()
            .filter_map(|e| {
                Some(LabelTask {
                    item_id: e.id.as_deref()?,
                    item: e,
                    prediction: None,
                    suggestion: None,
                })
            })
            .collect();
        labeler.submit(&tasks).await.map_err(AppError::Label)?;
    }
    let deadline = tokio::time::Instant::now() + max_wait;
    let mut results: BTreeMap<String, LabelResult> = BTreeMap::new();
    loop {
        for r in labeler.collect().await.map_err(AppError::Label)? {
            results.insert(r.item_id.clone(), r);
        }
        if results.len() >= examples.len() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    let missing = examples.len().saturating_sub(results.len());
    Ok((results.into_values().collect(), missing))
}

/// Aggregates the answers: one call, whichever the method.
pub fn aggregate(results: &[LabelResult], method: Method, min_votes: usize) -> Aggregation {
    let answers = answers_from_results(results);
    let aggregator = Aggregator::new(CATEGORIES).min_votes(min_votes);
    match method {
        Method::DawidSkene => aggregator.dawid_skene(&answers, &DawidSkene::default()),
        Method::Majority => aggregator.majority(&answers),
    }
}

/// The share of aggregated labels equal to the gold label, over the items
/// that have one.
pub fn accuracy(aggregation: &Aggregation, gold: &HashMap<String, String>) -> Option<f64> {
    let (mut right, mut n) = (0usize, 0usize);
    for item in &aggregation.items {
        if let Some(g) = gold.get(&item.item_id) {
            n += 1;
            right += usize::from(item.label.as_str() == g);
        }
    }
    (n > 0).then(|| right as f64 / n as f64)
}

/// Writes the training CSV (`id,text,label,confidence,agreement,votes`)
/// with one row per labeled example; returns the rows written.
pub fn write_training_csv(
    path: &Path,
    examples: &[Example],
    aggregation: &Aggregation,
) -> Result<usize, AppError> {
    let err = |e: &dyn fmt::Display| AppError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut w = csv::Writer::from_path(path).map_err(|e| err(&e))?;
    w.write_record(["id", "text", "label", "confidence", "agreement", "votes"])
        .map_err(|e| err(&e))?;
    let mut rows = 0;
    for e in examples {
        let Some(item) = e.id.as_deref().and_then(|id| aggregation.item(id)) else {
            continue;
        };
        w.write_record([
            item.item_id.as_str(),
            e.text.as_str(),
            item.label.as_str(),
            &format!("{:.4}", item.confidence),
            &format!("{:.4}", item.agreement),
            &item.votes.to_string(),
        ])
        .map_err(|e| err(&e))?;
        rows += 1;
    }
    w.flush().map_err(|e| err(&e))?;
    Ok(rows)
}

/// The trained model and how it does on the held-out part, against the
/// gold labels.
#[derive(Clone, Debug, Serialize)]
pub struct Trained {
    /// Examples trained on (crowd labels).
    pub train: usize,
    /// Held-out examples with a gold label.
    pub holdout: usize,
    /// Of them, actionable by gold.
    pub holdout_actionable: usize,
    /// The threshold chosen by cost on cross-validated training scores.
    pub threshold: f64,
    /// Hold-out ROC AUC against gold.
    pub auc: f64,
    /// Hold-out precision at the threshold.
    pub precision: Option<f64>,
    /// Hold-out recall at the threshold.
    pub recall: Option<f64>,
}

fn binary(label: &str) -> &'static str {
    if label == NONE { "none" } else { ACTIONABLE }
}

/// Reads the training CSV back with `local`'s loader, holds out 30%
/// (stratified), trains the binary actionable model with a cost-chosen
/// threshold on the rest, measures it on the hold-out against `gold`, and
/// writes the model and the HTML report.
pub fn train_and_report(
    csv: &Path,
    gold: &HashMap<String, String>,
    model_path: &Path,
    report_path: &Path,
    seed: u64,
    notes: Vec<(String, String)>,
) -> Result<Trained, AppError> {
    let data = LoadOptions::new("text")
        .id("id")
        .label("label")
        .load_path(csv)?;
    let examples: Vec<Example> = data
        .examples
        .into_iter()
        .map(|mut e| {
            e.label = e.label.as_deref().map(|l| binary(l).to_string());
            e
        })
        .collect();
    let labels = streamsift::local::labels_of(&examples);
    let split = stratified_split(&labels, HOLDOUT, seed)?;
    let (train, holdout) = split.apply(&examples);
    let positives = train
        .iter()
        .filter(|e| e.label.as_deref() == Some(ACTIONABLE))
        .count();
    if positives < FOLDS || train.len() - positives < FOLDS {
        return Err(AppError::TooFewLabels(format!(
            "{positives} actionable and {} none in the training part; need at least {FOLDS} of each \
             (label more tweets: raise --sample)",
            train.len() - positives
        )));
    }
    let config = TrainConfig {
        seed,
        ..TrainConfig::binary(ACTIONABLE)
    };
    let costs = Costs::new(10.0, 1.0);
    let mut fit = fit_binary_by_cost(&train, &config, costs, FOLDS, seed, |_, _| {})
        .map_err(|e| AppError::Train(e.to_string()))?;
    // Measure against gold, not the crowd: that is what the labels are for.
    let measured: Vec<(&Example, bool)> = holdout
        .iter()
        .filter_map(|e| {
            let g = gold.get(e.id.as_deref()?)?;
            Some((e, binary(g) == ACTIONABLE))
        })
        .collect();
    let scores: Vec<f64> = measured
        .iter()
        .map(|(e, _)| fit.model.positive_probability(*e).unwrap_or(0.0))
        .collect();
    let truth: Vec<bool> = measured.iter().map(|(_, t)| *t).collect();
    let texts: Vec<&str> = measured.iter().map(|(e, _)| e.text.as_str()).collect();
    let options = BinaryEvalOptions {
        costs,
        ..BinaryEvalOptions::default()
    };
    let mut evaluation =
        evaluate_binary(&scores, &truth, &options).map_err(|e| AppError::Train(e.to_string()))?;
    let at = threshold_at(&scores, &truth, fit.choice.threshold, costs)
        .map_err(|e| AppError::Train(e.to_string()))?;
    evaluation.threshold = at.clone();
    let worst = worst_misclassified(
        &texts,
        &scores,
        &truth,
        fit.choice.threshold,
        ACTIONABLE,
        NONE,
        20,
    )
    .map_err(|e| AppError::Train(e.to_string()))?;
    let mut report =
        ReportInput::new("label_and_train: crowd-labeled model, measured on gold labels")
            .binary(evaluation.clone(), ACTIONABLE, NONE)
            .features(
                fit.model
                    .top_features(20)
                    .positive
                    .iter()
                    .chain(fit.model.top_features(20).negative.iter())
                    .map(|f| (f.name.clone(), f64::from(f.weight)))
                    .collect(),
            )
            .examples(worst);
    for (k, v) in notes {
        report = report.note(k, v);
    }
    report.write_to(report_path).map_err(|e| AppError::Write {
        path: report_path.to_path_buf(),
        message: e.to_string(),
    })?;
    fit.model.evaluation = Some(serde_json::json!({ "holdout_vs_gold": &evaluation }));
    fit.model.save(model_path).map_err(|e| AppError::Write {
        path: model_path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(Trained {
        train: train.len(),
        holdout: measured.len(),
        holdout_actionable: truth.iter().filter(|t| **t).count(),
        threshold: fit.choice.threshold,
        auc: evaluation.roc_auc,
        precision: at.precision,
        recall: at.recall,
    })
}

/// Everything the flow did.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// Tweets read.
    pub loaded: usize,
    /// Malformed lines skipped.
    pub skipped_lines: usize,
    /// Tweets sampled.
    pub sampled: usize,
    /// Retweets removed.
    pub retweets_removed: usize,
    /// Duplicates removed.
    pub duplicates_removed: usize,
    /// Labeling tasks sent.
    pub tasks: usize,
    /// Tasks with no result in time.
    pub unanswered: usize,
    /// Items labeled by the aggregation.
    pub labeled: usize,
    /// Items without enough valid answers (reported, not used).
    pub incomplete: usize,
    /// Workers flagged as spammers.
    pub spammers: Vec<String>,
    /// The method used.
    pub method: Method,
    /// Aggregated labels equal to gold, by the method used.
    pub label_accuracy: Option<f64>,
    /// The same for majority vote, for comparison.
    pub majority_accuracy: Option<f64>,
    /// The same for Dawid–Skene, for comparison.
    pub dawid_skene_accuracy: Option<f64>,
    /// Rows of the training CSV.
    pub csv_rows: usize,
    /// The model.
    pub trained: Trained,
    /// The output files.
    pub files: Vec<PathBuf>,
}

/// Runs the whole flow with `labeler`, writing into `options.out`:
/// `training.csv`, `aggregation.json`, `model.json`, `report.html`.
pub async fn run<L: Labeler<Example>>(options: &Options, labeler: &L) -> Result<Outcome, AppError> {
    let prepared = prepare(options)?;
    let gold = read_labels_path(&options.gold, "id_str", "label")?;
    std::fs::create_dir_all(&options.out).map_err(|e| AppError::Write {
        path: options.out.clone(),
        message: e.to_string(),
    })?;
    let (results, unanswered) =
        label(labeler, &prepared.examples, options.poll, options.max_wait).await?;
    let aggregation = aggregate(&results, options.method, options.min_votes);
    let majority = aggregate(&results, Method::Majority, options.min_votes);
    let dawid_skene = aggregate(&results, Method::DawidSkene, options.min_votes);

    let csv = options.out.join("training.csv");
    let csv_rows = write_training_csv(&csv, &prepared.examples, &aggregation)?;
    let agg_path = options.out.join("aggregation.json");
    let agg_json = serde_json::to_vec_pretty(&serde_json::json!({
        "method": options.method,
        "workers": &aggregation.workers,
        "incomplete": &aggregation.incomplete,
        "skipped": &aggregation.skipped,
    }))
    .map_err(|e| AppError::Write {
        path: agg_path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&agg_path, agg_json).map_err(|e| AppError::Write {
        path: agg_path.clone(),
        message: e.to_string(),
    })?;

    let label_accuracy = accuracy(&aggregation, &gold);
    let pct = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{:.1}%", 100.0 * x));
    let notes = vec![
        ("tweets sampled".to_string(), prepared.sampled.to_string()),
        (
            "labeling tasks".to_string(),
            prepared.examples.len().to_string(),
        ),
        ("aggregation".to_string(), format!("{:?}", options.method)),
        (
            "crowd labels equal to gold".to_string(),
            pct(label_accuracy),
        ),
    ];
    let model_path = options.out.join("model.json");
    let report_path = options.out.join("report.html");
    let trained = train_and_report(&csv, &gold, &model_path, &report_path, options.seed, notes)?;
    Ok(Outcome {
        loaded: prepared.loaded,
        skipped_lines: prepared.skipped_lines,
        sampled: prepared.sampled,
        retweets_removed: prepared
            .dedup
            .count(streamsift::local::RemovalReason::Retweet),
        duplicates_removed: prepared
            .dedup
            .count(streamsift::local::RemovalReason::ExactDuplicate)
            + prepared
                .dedup
                .count(streamsift::local::RemovalReason::NearDuplicate),
        tasks: prepared.examples.len(),
        unanswered,
        labeled: aggregation.items.len(),
        incomplete: aggregation.incomplete.len(),
        spammers: aggregation
            .spammers()
            .into_iter()
            .map(String::from)
            .collect(),
        method: options.method,
        label_accuracy,
        majority_accuracy: accuracy(&majority, &gold),
        dawid_skene_accuracy: accuracy(&dawid_skene, &gold),
        csv_rows,
        trained,
        files: vec![csv, agg_path, model_path, report_path],
    })
}

// ---------------------------------------------------------------------------
// --llm / --llm-sim: LLM workers pre-label, people review the disagreements.

/// The two simulated LLM workers' accuracies (`--llm-sim`).
pub const SIM_ACCURACY: [f64; 2] = [0.9, 0.75];

/// Two LLM workers, the same model under two prompt templates, from an
/// OpenAI-compatible server at `url` (`--llm URL --llm-model NAME`); the
/// API key is read from the variable `key_env` when it is set, never printed.
#[cfg(feature = "llm")]
pub fn server_llm_labeler(
    url: &str,
    model: &str,
    key_env: &str,
) -> Result<LlmLabeler<Example>, Box<dyn std::error::Error>> {
    use streamsift::llm::{LlmClassifier, PromptTemplate};
    let describe = |t: PromptTemplate| {
        t.label(
            "support_request",
            "the customer asks support to do something for them",
        )
        .label(
            "technical_question",
            "the customer asks how something works",
        )
        .label(
            "problem_report",
            "the customer reports something broken or failing",
        )
        .label(
            "feature_request",
            "the customer asks for something the product lacks",
        )
        .label(
            "none",
            "none of the above: praise, jokes, news, spam, chatter",
        )
        .cost("problem_report", 10.0, 1.0)
    };
    let brief = describe(PromptTemplate::new("label-and-train-brief-v1")).instructions(
        "Classify the customer's tweet into exactly one category. Answer with the category only.",
    );
    let careful = describe(PromptTemplate::new("label-and-train-careful-v1")).instructions(
        "You triage tweets to a support team. Read the tweet, decide whether the customer \
         needs the team and how, and pick exactly one category.",
    );
    let mut labeler = LlmLabeler::builder(CATEGORIES).concurrency(4);
    for (name, template) in [("brief", brief), ("careful", careful)] {
        let mut builder = LlmClassifier::openai(url.to_owned(), model.to_owned(), template);
        if std::env::var_os(key_env).is_some() {
            builder = builder.api_key_env(key_env.to_owned());
        }
        labeler = labeler.worker(format!("llm:{model}:{name}"), builder.build()?);
    }
    Ok(labeler.build()?)
}

/// The offline LLM labeler: two [`SimulatedLlm`] workers over the gold
/// labels (a tweet without one is truly `none`), with accuracies
/// [`SIM_ACCURACY`], standing in for one model under two prompts.
pub fn simulated_llm_labeler(
    examples: &[Example],
    gold: &HashMap<String, String>,
    seed: u64,
) -> Result<LlmLabeler<Example>, AppError> {
    let pairs: Vec<(String, String)> = examples
        .iter()
        .filter_map(|e| {
            let label = gold.get(e.id.as_deref()?).map_or(NONE, String::as_str);
            Some((e.text.clone(), label.to_string()))
        })
        .collect();
    let worker = |accuracy: f64, seed: u64| {
        SimulatedLlm::new(CATEGORIES)
            .gold(pairs.clone())
            .accuracy(accuracy)
            .seed(seed)
    };
    LlmLabeler::builder(CATEGORIES)
        .worker("llm-sim:prompt-a", worker(SIM_ACCURACY[0], seed))
        .worker("llm-sim:prompt-b", worker(SIM_ACCURACY[1], seed ^ 0x5eed))
        .concurrency(8)
        .build()
        .map_err(AppError::Label)
}

/// What the LLM flow did.
#[derive(Clone, Debug, Serialize)]
pub struct LlmOutcome {
    /// Tweets read.
    pub loaded: usize,
    /// Labeling tasks (sampled, without retweets and duplicates).
    pub tasks: usize,
    /// Tasks at least one LLM worker answered.
    pub llm_labeled: usize,
    /// Tasks no LLM worker answered (left out of training, named in logs).
    pub llm_unanswered: usize,
    /// Each LLM worker: (id, votes, share of votes equal to gold).
    pub workers: Vec<(String, usize, Option<f64>)>,
    /// Tasks the LLM workers disagreed on.
    pub disagreements: usize,
    /// Of them, reviewed by people (0 without `--review`).
    pub reviewed: usize,
    /// Reviewed answers that accepted the LLM's suggestion.
    pub accepted: usize,
    /// LLM labels (Dawid-Skene over the LLM votes) equal to gold.
    pub llm_label_accuracy: Option<f64>,
    /// Final labels (after review) equal to gold.
    pub label_accuracy: Option<f64>,
    /// Rows of the training CSV.
    pub csv_rows: usize,
    /// The model, measured on gold.
    pub trained: Trained,
    /// The output files.
    pub files: Vec<PathBuf>,
}

/// Pre-labels the sample with `llm` (its workers' votes aggregated by
/// Dawid-Skene, at least one vote an item), optionally has people review
/// the items the workers disagree on through `review` (each with the LLM's
/// label and confidence as the suggestion; their answer replaces the
/// LLM's), then trains and reports as [`run`] does.
pub async fn run_llm<R: Labeler<Example>>(
    options: &Options,
    llm: &LlmLabeler<Example>,
    review: Option<&R>,
) -> Result<LlmOutcome, AppError> {
    let prepared = prepare(options)?;
    let gold = read_labels_path(&options.gold, "id_str", "label")?;
    std::fs::create_dir_all(&options.out).map_err(|e| AppError::Write {
        path: options.out.clone(),
        message: e.to_string(),
    })?;
    const BATCH: usize = 100;
    for chunk in prepared.examples.chunks(BATCH) {
        let tasks: Vec<LabelTask<'_, Example>> = chunk
            .iter()
            .filter_map(|e| Some(LabelTask::new(e.id.as_deref()?, e)))
            .collect();
        // A task no worker answered fails the call after the others are
        // labeled; it is counted below and left out, not retried forever.
        if let Err(e) = llm.submit(&tasks).await {
            tracing::warn!(error_kind = e.kind(), "some tweets got no LLM vote");
        }
    }
    let results = llm.collect().await.map_err(AppError::Label)?;
    let mut aggregation = aggregate(&results, Method::DawidSkene, 1);
    let llm_label_accuracy = accuracy(&aggregation, &gold);

    let mut workers: Vec<(String, usize, Option<f64>)> = Vec::new();
    for w in llm.worker_ids() {
        let (mut n, mut right, mut known) = (0usize, 0usize, 0usize);
        for r in &results {
            for v in r.votes.iter().filter(|v| v.worker == w) {
                n += 1;
                if let Some(g) = gold.get(&r.item_id) {
                    known += 1;
                    right += usize::from(v.label.as_str() == g);
                }
            }
        }
        workers.push((
            w.to_string(),
            n,
            (known > 0).then(|| right as f64 / known as f64),
        ));
    }

    // Disagreements: the workers' votes on the item are not all the same.
    let split: Vec<&LabelResult> = results
        .iter()
        .filter(|r| r.votes.iter().any(|v| v.label != r.votes[0].label))
        .collect();
    let (mut reviewed, mut accepted) = (0usize, 0usize);
    if let Some(people) = review {
        let by_id: HashMap<&str, &Example> = prepared
            .examples
            .iter()
            .filter_map(|e| Some((e.id.as_deref()?, e)))
            .collect();
        let suggestions: Vec<(&str, &Example, Prediction)> = split
            .iter()
            .filter_map(|r| {
                let item = aggregation.item(&r.item_id)?;
                let p = Prediction::from_scores(item.distribution.clone())?;
                Some((r.item_id.as_str(), *by_id.get(r.item_id.as_str())?, p))
            })
            .collect();
        let tasks: Vec<LabelTask<'_, Example>> = suggestions
            .iter()
            .map(|(id, e, p)| LabelTask::new(id, *e).with_suggestion(p))
            .collect();
        let suggested: HashMap<&str, &str> = suggestions
            .iter()
            .map(|(id, _, p)| (*id, p.label.as_str()))
            .collect();
        if !tasks.is_empty() {
            people.submit(&tasks).await.map_err(AppError::Label)?;
        }
        let deadline = tokio::time::Instant::now() + options.max_wait;
        let mut answers: BTreeMap<String, LabelResult> = BTreeMap::new();
        while answers.len() < tasks.len() {
            for r in people.collect().await.map_err(AppError::Label)? {
                answers.insert(r.item_id.clone(), r);
            }
            if answers.len() >= tasks.len() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(options.poll).await;
        }
        for (id, answer) in &answers {
            let Some(item) = aggregation.items.iter_mut().find(|i| &i.item_id == id) else {
                continue;
            };
            reviewed += 1;
            accepted += usize::from(suggested.get(id.as_str()) == Some(&answer.label.as_str()));
            item.label = answer.label.clone();
            item.confidence = answer.agreement;
            item.agreement = answer.agreement;
        }
    }
    let label_accuracy = accuracy(&aggregation, &gold);

    let csv = options.out.join("training.csv");
    let csv_rows = write_training_csv(&csv, &prepared.examples, &aggregation)?;
    let pct = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{:.1}%", 100.0 * x));
    let notes = vec![
        (
            "labeling tasks".to_string(),
            prepared.examples.len().to_string(),
        ),
        ("LLM workers".to_string(), llm.worker_ids().join(", ")),
        (
            "LLM workers disagreed on".to_string(),
            split.len().to_string(),
        ),
        ("reviewed by people".to_string(), reviewed.to_string()),
        (
            "LLM labels equal to gold".to_string(),
            pct(llm_label_accuracy),
        ),
        (
            "final labels equal to gold".to_string(),
            pct(label_accuracy),
        ),
    ];
    let model_path = options.out.join("model.json");
    let report_path = options.out.join("report.html");
    let trained = train_and_report(&csv, &gold, &model_path, &report_path, options.seed, notes)?;
    Ok(LlmOutcome {
        loaded: prepared.loaded,
        tasks: prepared.examples.len(),
        llm_labeled: results.len(),
        llm_unanswered: llm.unanswered().len(),
        workers,
        disagreements: split.len(),
        reviewed,
        accepted,
        llm_label_accuracy,
        label_accuracy,
        csv_rows,
        trained,
        files: vec![csv, model_path, report_path],
    })
}
