//! The support-tweets triage app: everything but the printing, so the test
//! suite can run it and check its numbers (`tests/support_tweets.rs`).
//!
//! Tweets addressed to a fictional cloud host (@nimbuscloud) are replayed
//! from `examples/data/tweets.jsonl` through the whole Pipeline. The local
//! model (`model.rs`) decides whether a tweet is actionable and which support
//! team it is for; actionable tweets notify that team's inbox, noise is
//! dropped, tweets whose team is uncertain go to a triage queue, and
//! malformed lines are dead-lettered with their reason.

#![allow(dead_code)] // each of main.rs and the test uses part of this module

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use streamsift::dead_letter::Stage as DeadLetterStage;
use streamsift::fakes::{FaultKind, FaultPlan, Faulty, MemorySource};
use streamsift::{
    Classifier, Delivery, JsonLinesDeadLetter, Label, Pipeline, REVIEW_ROUTE, Receipt, RouteError,
    Router, RunReport, Shutdown, Source,
};

#[path = "model.rs"]
pub mod model;

/// `--cascade`: the local model, then a simulated LLM for its uncertain band.
#[path = "cascade.rs"]
pub mod cascade;

/// The AWS stages (Kinesis, Amazon ML or SageMaker, SNS): `--features aws`.
#[cfg(feature = "aws")]
#[path = "aws.rs"]
pub mod aws;

/// Webhooks (Slack, Teams, PagerDuty), an SQS source and `--dedup-window`:
/// `--features http` and/or `sqs`.
#[cfg(any(feature = "http", feature = "sqs"))]
#[path = "notify.rs"]
pub mod notify;

/// The bundled stream: JSON lines shaped like Twitter's API, including some
/// malformed lines on purpose.
pub const TWEETS: &[u8] = include_bytes!("../data/tweets.jsonl");
/// The gold label of every well-formed tweet: `id_str,label`.
pub const GOLD: &str = include_str!("../data/labels.csv");

/// The largest record the pipeline takes; a larger one is dead-lettered
/// as `too_large` (a tweet is far smaller).
pub const MAX_RECORD_BYTES: usize = 8 * 1024;

/// The label for tweets that need no one.
pub const NOISE: &str = "none";

/// The support teams: (label the classifier predicts, team name).
pub const TEAMS: [(&str, &str); 4] = [
    ("problem_report", "Incident response"),
    ("support_request", "Account & billing support"),
    ("technical_question", "Developer help"),
    ("feature_request", "Product feedback"),
];

/// A tweet, as Twitter's v1.1 API shapes it (the fields we use). It is
/// serialized (absent fields left out) for the AWS stages: the SNS message
/// template, Amazon ML's record, SageMaker's request body.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Tweet {
    /// The tweet's id.
    pub id_str: String,
    /// Its text.
    pub text: String,
    /// Its author.
    pub user: User,
    /// When it was posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The tweet it replies to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to_status_id_str: Option<String>,
    /// The original, when this is a retweet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retweeted_status: Option<Box<Retweeted>>,
}

/// A tweet's author.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct User {
    /// The @handle, without the @.
    pub screen_name: String,
    /// How many follow them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followers_count: Option<f64>,
}

/// The original of a retweet.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Retweeted {
    /// Its id.
    pub id_str: String,
}

/// One notification a team received.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The tweet's id.
    pub tweet_id: String,
    /// The author.
    pub screen_name: String,
    /// The text.
    pub text: String,
    /// The team model's confidence in the team.
    pub confidence: f64,
    /// The binary model's probability that the tweet is actionable.
    pub actionable: f64,
}

/// The teams' inboxes: the example's router. A real deployment would send
/// these to SNS, a ticket queue or a webhook.
#[derive(Clone, Debug, Default)]
pub struct Inboxes {
    by_route: Arc<Mutex<BTreeMap<Label, Vec<Notification>>>>,
}

impl Inboxes {
    /// Everything delivered, per route (`review` is the triage queue).
    pub fn snapshot(&self) -> BTreeMap<Label, Vec<Notification>> {
        self.by_route.lock().expect("inbox lock").clone()
    }

    /// Notes a delivery in its route's inbox. A redelivery of the same
    /// tweet (at-least-once) is not a second entry.
    pub fn record(&self, d: &Delivery<'_, Tweet>) {
        let note = Notification {
            tweet_id: d.item.id_str.clone(),
            screen_name: d.item.user.screen_name.clone(),
            text: d.item.text.clone(),
            confidence: d.prediction.confidence().unwrap_or(0.0),
            actionable: d.prediction.positive_score.unwrap_or(0.0),
        };
        let mut inboxes = self.by_route.lock().expect("inbox lock");
        let inbox = inboxes.entry(d.route.clone()).or_default();
        if !inbox.iter().any(|n| n.tweet_id == note.tweet_id) {
            inbox.push(note);
        }
    }
}

impl Router<Tweet> for Inboxes {
    async fn route(&self, d: &Delivery<'_, Tweet>) -> Result<Receipt, RouteError> {
        self.record(d);
        Ok(Receipt::new(d.route.clone()).with_message_id(d.item.id_str.clone()))
    }
}

/// Exit status of a run that finished but could not deliver some
/// notifications (records dead-lettered at the route or review stage).
pub const EXIT_UNDELIVERED: u8 = 3;

/// What `--help` ends with: the environment variables and the exit codes.
#[cfg(feature = "aws")]
const AFTER_HELP: &str = "\
Each AWS flag can be set by its variable instead (STREAMSIFT_KINESIS_STREAM, \
STREAMSIFT_CHECKPOINT_DIR, STREAMSIFT_CHECKPOINT_TABLE, STREAMSIFT_FROM_START, \
STREAMSIFT_STOP_AT_TIP, STREAMSIFT_ML_MODEL_ID, STREAMSIFT_SAGEMAKER_ENDPOINT, \
STREAMSIFT_SNS_TOPIC_ARN (comma-separated), STREAMSIFT_ENDPOINT_URL, STREAMSIFT_REGION); \
a flag wins over its variable. Without a stage flag the run is the offline one.

SNS messages carry the `route` and `label` message attributes. An SQS queue \
subscribed with RawMessageDelivery=true sees them as SQS message attributes; \
with the default (envelope) delivery they sit inside the body's JSON, under \
\"MessageAttributes\".

Logs: warnings and errors go to stderr; RUST_LOG=info (or debug) shows more.

Exit status: 0 when every record was delivered, dropped as noise or \
dead-lettered as malformed input; 1 on an error (printed with a hint); \
2 on a bad command line; 3 when the run finished but some notifications \
could not be delivered (records dead-lettered at the route or review stage, \
for example an SNS topic that does not exist): the dead-letter file holds them.";
#[cfg(not(feature = "aws"))]
const AFTER_HELP: &str = "\
The AWS flags (--kinesis-stream, --sns-topic-arn, --endpoint-url, ...) need \
`--features aws`.

Logs: warnings and errors go to stderr; RUST_LOG=info (or debug) shows more.

Exit status: 0 when every record was delivered, dropped as noise or \
dead-lettered as malformed input; 1 on an error (printed with a hint); \
2 on a bad command line; 3 when the run finished but some notifications \
could not be delivered (records dead-lettered at the route or review stage): \
the dead-letter file holds them.";

/// support_tweets' command line.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "support_tweets",
    about = "Triage of support tweets: classify a stream of tweets and notify the right team.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Train the models even if the bundled model files are fresh.
    #[arg(long)]
    pub retrain: bool,
    /// Train the models and save them as the bundled files
    /// (examples/data/support_*.model.json); implies --retrain.
    #[arg(long)]
    pub write_model: bool,
    /// Where dead letters go, as JSON lines; an earlier run's file is moved
    /// aside, never deleted. Else STREAMSIFT_DEAD_LETTER, else
    /// $TMPDIR/streamsift-support-tweets/dead-letter.jsonl.
    #[arg(long, value_name = "PATH")]
    pub dead_letter: Option<PathBuf>,
    /// Classify with a cascade: the local model decides what it is sure of,
    /// a simulated LLM (offline, seeded) the tweets in its uncertain band;
    /// prints the cost curve (local only, LLM only, band widths) first.
    #[arg(long)]
    pub cascade: bool,
    /// With --cascade: stage 2 is a real OpenAI-compatible server at this
    /// base URL (e.g. http://localhost:8000/v1) instead of the simulated LLM.
    #[cfg(feature = "llm")]
    #[arg(long, value_name = "URL", requires_all = ["cascade", "llm_model"])]
    pub llm_url: Option<String>,
    /// The model name the server serves (with --llm-url).
    #[cfg(feature = "llm")]
    #[arg(long, value_name = "NAME", requires = "llm_url")]
    pub llm_model: Option<String>,
    /// The environment variable holding the API key (with --llm-url); when
    /// it is unset or empty, no key is sent (a local server). The key is
    /// never printed or logged.
    #[cfg(feature = "llm")]
    #[arg(long, value_name = "VAR", default_value = "OPENAI_API_KEY")]
    pub llm_api_key_env: String,
    /// The AWS stages.
    #[cfg(feature = "aws")]
    #[command(flatten)]
    pub aws: aws::AwsOptions,
    /// Webhooks, the SQS source, deduplication.
    #[cfg(any(feature = "http", feature = "sqs"))]
    #[command(flatten)]
    pub notify: notify::NotifyOptions,
}

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Shards of the simulated stream.
    pub shards: usize,
    /// Records processed at once.
    pub max_in_flight: usize,
    /// Share of notifications that fail once with a retryable error (a
    /// flaky notifier), to show the retries working.
    pub flaky_notifier: f64,
    /// Where dead letters go.
    pub dead_letter_path: PathBuf,
    /// Train the models even if the bundled files are fresh.
    pub retrain: bool,
    /// The limit of one router call, when it must be longer than the
    /// pipeline's default (a paced webhook: see `notify.rs`).
    pub call_timeout: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shards: 2,
            max_in_flight: 64,
            flaky_notifier: 0.03,
            dead_letter_path: std::env::temp_dir()
                .join("streamsift-support-tweets")
                .join("dead-letter.jsonl"),
            retrain: false,
            call_timeout: None,
        }
    }
}

/// Per-team quality against the gold labels.
#[derive(Clone, Debug, PartialEq)]
pub struct TeamScore {
    /// The label.
    pub label: String,
    /// Tweets notified to the team.
    pub notified: usize,
    /// Of those, how many were truly the team's.
    pub correct: usize,
    /// Gold tweets of the team.
    pub gold: usize,
    /// `correct / notified`.
    pub precision: f64,
    /// `correct / gold`.
    pub recall: f64,
}

/// Scores on one set of tweets (all, or the held-out ones).
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    /// Per-team precision and recall.
    pub teams: Vec<TeamScore>,
    /// Gold-actionable tweets that reached a person (any team or triage).
    pub actionable_reached: usize,
    /// Gold-actionable tweets in the set.
    pub actionable_gold: usize,
    /// Triage-queue tweets of the set that were truly noise.
    pub review_noise: usize,
}

/// What a run produced, ready to print.
#[derive(Debug)]
pub struct Summary {
    /// The pipeline's report.
    pub report: RunReport,
    /// The held-out tweets (never trained on) scored alone: the honest
    /// figures.
    pub held_out: Scores,
    /// Ids of the held-out tweets.
    pub held_out_ids: std::collections::HashSet<String>,
    /// Lines in the bundled stream (records read, for a Kinesis stream).
    pub lines: usize,
    /// Notifications per route, including the `review` triage queue.
    pub inboxes: BTreeMap<Label, Vec<Notification>>,
    /// Per-team precision and recall over every labeled tweet (most of
    /// them were trained on).
    pub teams: Vec<TeamScore>,
    /// Gold-actionable tweets that reached a person (any team or triage).
    pub actionable_reached: usize,
    /// Gold-actionable tweets in the stream.
    pub actionable_gold: usize,
    /// Triage-queue tweets that were truly noise.
    pub review_noise: usize,
    /// Dead letters read back from the file: (kind, reason).
    pub dead_letters: Vec<(String, String)>,
    /// Of those, the ones a router or the review route could not deliver
    /// (stage `route` or `review`): (route, reason). A topic that does not
    /// exist ends here; see [`EXIT_UNDELIVERED`].
    pub undelivered: Vec<(String, String)>,
    /// Where an earlier run's dead-letter file was moved (it is never
    /// deleted), if there was one.
    pub rotated_dead_letters: Option<PathBuf>,
    /// Records per second over the run.
    pub records_per_sec: f64,
}

/// Splits the bundled file into records: one per line, empty lines
/// included (they are malformed input too).
pub fn lines(data: &[u8]) -> Vec<Vec<u8>> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

/// `id_str -> label` from the gold file.
pub fn gold_labels(csv: &str) -> HashMap<String, String> {
    csv.lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .map(|(id, label)| (id.to_string(), label.trim().to_string()))
        .collect()
}

/// Scores the teams' inboxes against the gold labels, counting only the
/// tweets that `gold` has (pass a subset to score a subset).
pub fn score(
    inboxes: &BTreeMap<Label, Vec<Notification>>,
    gold: &HashMap<String, String>,
) -> (Vec<TeamScore>, usize, usize, usize) {
    let mut teams = Vec::new();
    for (label, _) in TEAMS {
        let notified: Vec<&Notification> = inboxes
            .get(label)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter(|n| gold.contains_key(&n.tweet_id))
            .collect();
        let correct = notified
            .iter()
            .filter(|n| gold.get(&n.tweet_id).map(String::as_str) == Some(label))
            .count();
        let gold_n = gold.values().filter(|l| l.as_str() == label).count();
        teams.push(TeamScore {
            label: label.to_string(),
            notified: notified.len(),
            correct,
            gold: gold_n,
            precision: ratio(correct, notified.len()),
            recall: ratio(correct, gold_n),
        });
    }
    let reached: std::collections::HashSet<&str> = inboxes
        .values()
        .flatten()
        .map(|n| n.tweet_id.as_str())
        .collect();
    let actionable_gold = gold.values().filter(|l| l.as_str() != NOISE).count();
    let actionable_reached = gold
        .iter()
        .filter(|(id, l)| l.as_str() != NOISE && reached.contains(id.as_str()))
        .count();
    let review_noise = inboxes
        .get(&REVIEW_ROUTE)
        .map(|v| {
            v.iter()
                .filter(|n| gold.get(&n.tweet_id).map(String::as_str) == Some(NOISE))
                .count()
        })
        .unwrap_or(0);
    (teams, actionable_reached, actionable_gold, review_noise)
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The labeled data and the models: the bundled model files if they are
/// fresh, else trained now.
pub fn prepare(
    settings: &Settings,
) -> Result<(model::LabeledData, model::Models), Box<dyn std::error::Error>> {
    let data = model::LabeledData::load(TWEETS, GOLD)?;
    let models = model::load_or_train(&data, settings.retrain)?;
    Ok((data, models))
}

/// Runs the whole triage over the bundled stream (preparing the models
/// first).
pub async fn run(
    settings: &Settings,
    shutdown: Shutdown,
) -> Result<Summary, Box<dyn std::error::Error>> {
    let (data, models) = prepare(settings)?;
    run_with(settings, &data, &models, shutdown).await
}

/// Runs the whole triage over the bundled stream with these models.
pub async fn run_with(
    settings: &Settings,
    data: &model::LabeledData,
    models: &model::Models,
    shutdown: Shutdown,
) -> Result<Summary, Box<dyn std::error::Error>> {
    let lines = lines(TWEETS);
    let source = MemorySource::from_payloads(settings.shards, lines.iter().cloned()).batch_size(50);
    let inboxes = Inboxes::default();
    // A flaky notifier: a few sends are throttled, as SNS does under load,
    // and the pipeline retries them with backoff. Each attempt is a fresh
    // draw, so retries get through.
    let notifier = Faulty::new(
        inboxes.clone(),
        FaultPlan::new()
            .fail_with_probability(settings.flaky_notifier)
            .kind(FaultKind::Throttled)
            .seed(7),
    );
    let stages = Stages {
        source,
        classifier: model::Triage::new(models),
        policy: model::triage_policy(),
        router: notifier,
        inboxes: &inboxes,
        lines: Some(lines.len()),
    };
    run_stages(settings, data, stages, shutdown).await
}

/// The parts of one run that differ between the offline replay and the
/// AWS deployment; [`run_stages`] joins them the same way for both.
#[derive(Debug)]
pub struct Stages<'a, S, C, R> {
    /// Where tweets come from.
    pub source: S,
    /// Who labels them.
    pub classifier: C,
    /// What each label leads to.
    pub policy: streamsift::Policy,
    /// Who hears about the actionable ones.
    pub router: R,
    /// What the router delivered, as the summary scores it.
    pub inboxes: &'a Inboxes,
    /// Lines in the stream, when known in advance (the bundled file).
    pub lines: Option<usize>,
}

/// Runs the pipeline over `stages`, dead-lettering to
/// `settings.dead_letter_path`, and scores what reached the inboxes against
/// the bundled gold labels.
pub async fn run_stages<S, C, R>(
    settings: &Settings,
    data: &model::LabeledData,
    stages: Stages<'_, S, C, R>,
    shutdown: Shutdown,
) -> Result<Summary, Box<dyn std::error::Error>>
where
    S: Source,
    C: Classifier<Tweet>,
    R: Router<Tweet>,
{
    // Dead letters are never deleted: an earlier run's file (whose records
    // may be committed past by now) is moved aside, and this run starts a
    // fresh one.
    let rotated_dead_letters = start_dead_letter_file(&settings.dead_letter_path)?;
    let call_timeout = settings.call_timeout.unwrap_or(Duration::from_secs(10));
    let report = Pipeline::new(stages.source)
        .json::<Tweet>()
        .classify(stages.classifier)
        .policy(stages.policy)
        .route(stages.router)
        // The router takes every route, "review" included.
        .review_via_router()
        .dead_letter(JsonLinesDeadLetter::create(&settings.dead_letter_path)?)
        .max_in_flight(settings.max_in_flight)
        .max_record_bytes(MAX_RECORD_BYTES)
        .retry(streamsift::RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            ..Default::default()
        })
        .call_timeout(call_timeout)
        .record_timeout(call_timeout.max(Duration::from_secs(60)))
        .shutdown_handle(shutdown)
        .run()
        .await?;
    let gold = gold_labels(GOLD);
    let inboxes = stages.inboxes.snapshot();
    let (teams, actionable_reached, actionable_gold, review_noise) = score(&inboxes, &gold);
    let held_out_ids: std::collections::HashSet<String> =
        data.holdout.iter().filter_map(|e| e.id.clone()).collect();
    let held_out_gold: HashMap<String, String> = gold
        .iter()
        .filter(|(id, _)| held_out_ids.contains(*id))
        .map(|(id, l)| (id.clone(), l.clone()))
        .collect();
    let (h_teams, h_reached, h_gold, h_review_noise) = score(&inboxes, &held_out_gold);
    let entries = if settings.dead_letter_path.exists() {
        JsonLinesDeadLetter::read_entries(&settings.dead_letter_path)?
    } else {
        Vec::new()
    };
    let undelivered = entries
        .iter()
        .filter(|e| matches!(e.stage, DeadLetterStage::Route | DeadLetterStage::Review))
        .map(|e| {
            (
                e.route
                    .clone()
                    .unwrap_or_else(|| e.stage.as_str().to_string()),
                e.reason.clone(),
            )
        })
        .collect();
    let dead_letters = entries.into_iter().map(|e| (e.kind, e.reason)).collect();
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    Ok(Summary {
        records_per_sec: report.stats.records_in as f64 / secs,
        lines: stages.lines.unwrap_or(report.stats.records_in as usize),
        report,
        held_out: Scores {
            teams: h_teams,
            actionable_reached: h_reached,
            actionable_gold: h_gold,
            review_noise: h_review_noise,
        },
        held_out_ids,
        inboxes,
        teams,
        actionable_reached,
        actionable_gold,
        review_noise,
        dead_letters,
        undelivered,
        rotated_dead_letters,
    })
}

/// Makes the dead-letter file's directory and moves an earlier run's file
/// aside (never deleting it); returns where it went.
fn start_dead_letter_file(path: &Path) -> std::io::Result<Option<PathBuf>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    JsonLinesDeadLetter::rotate(path)
}
