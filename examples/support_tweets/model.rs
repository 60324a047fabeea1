//! The triage model: a binary "actionable vs none" logistic regression whose
//! threshold is chosen by cost (a missed request costs ten false alarms) on
//! cross-validated scores, plus a softmax model that picks the team.
//!
//! Both are trained on the bundled labeled tweets, minus a stratified 30%
//! hold-out that no model sees; the hold-out gives the precision and recall
//! the example prints. Training is deterministic, so the committed model
//! files (`examples/data/support_*.model.json`) are exactly what training
//! produces; they are used only while their fingerprint (the training data,
//! the configuration, and this build's features of the data) still matches.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use streamsift::local::{
    BinaryEvalOptions, Costs, DedupOptions, Document, Example, LoadOptions, LocalModel, Mode,
    ModelFileError, RETWEET_FLAG, TrainConfig, evaluate_binary, fit_binary_by_cost,
    read_labels_csv, stratified_split, threshold_at, training_fingerprint,
};
use streamsift::{
    Action, Classifier, ClassifyError, Label, LabelRule, Policy, Prediction, UncertainAction,
};

use super::{NOISE, TEAMS, Tweet};

/// The positive label of the binary model.
pub const ACTIONABLE: &str = "actionable";
/// Share of the labeled tweets held out from training, to measure on.
pub const HOLDOUT_FRACTION: f64 = 0.3;
/// Seed of the hold-out split.
pub const HOLDOUT_SEED: u64 = 2026;
/// Cross-validation folds for the threshold.
pub const FOLDS: usize = 5;
/// Seed of the folds.
pub const CV_SEED: u64 = 0;
/// Below this confidence in the team, an actionable tweet goes to the human
/// triage queue instead of a team.
pub const TEAM_MIN_CONFIDENCE: f64 = 0.5;

/// A missed support request costs ten false alarms.
pub fn costs() -> Costs {
    Costs::new(10.0, 1.0)
}

/// The binary model's training settings (the crate's defaults).
pub fn actionable_config() -> TrainConfig {
    TrainConfig::binary(ACTIONABLE)
}

/// The team model's training settings (the crate's defaults).
pub fn team_config() -> TrainConfig {
    TrainConfig::multinomial()
}

/// Where the bundled binary model lives.
pub fn bundled_actionable_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/support_actionable.model.json")
}

/// Where the bundled team model lives.
pub fn bundled_team_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/support_team.model.json")
}

/// What the featurizer reads from a tweet: the same fields, under the same
/// names, as [`LoadOptions::tweets`] reads from the training file, so a
/// tweet is featurized alike at training and at serving time.
impl Document for Tweet {
    fn text(&self) -> &str {
        &self.text
    }
    fn flag(&self, name: &str) -> Option<bool> {
        match name {
            "is_reply" => Some(
                self.in_reply_to_status_id_str
                    .as_deref()
                    .is_some_and(|s| !s.is_empty()),
            ),
            RETWEET_FLAG => Some(self.retweeted_status.is_some() || self.text.starts_with("RT @")),
            _ => None,
        }
    }
    fn number(&self, name: &str) -> Option<f64> {
        match name {
            "followers" => self.user.followers_count,
            _ => None,
        }
    }
}

/// The labeled tweets, deduplicated and split.
#[derive(Clone, Debug)]
pub struct LabeledData {
    /// What the models learn from.
    pub train: Vec<Example>,
    /// What they are measured on, never trained on.
    pub holdout: Vec<Example>,
    /// Lines of the stream that could not be loaded (malformed).
    pub skipped_lines: usize,
    /// Retweets and duplicates left out before the split.
    pub duplicates_removed: usize,
}

impl LabeledData {
    /// Loads the stream file leniently (malformed lines are skipped here;
    /// the pipeline dead-letters them), joins the gold labels by id, removes
    /// retweets and duplicates, and splits off the hold-out.
    pub fn load(tweets: &[u8], gold_csv: &str) -> Result<LabeledData, Box<dyn std::error::Error>> {
        let gold = read_labels_csv(gold_csv.as_bytes(), "id_str", "label")?;
        let loaded = LoadOptions::tweets()
            .mode(Mode::Lenient)
            .load_json_lines(tweets)?
            .join_labels(&gold, Mode::Lenient)?;
        let skipped_lines = loaded.skipped.len();
        let before = loaded.len();
        let (data, _) = loaded.dedup(&DedupOptions::default());
        let labels = data.labels();
        let split = stratified_split(&labels, HOLDOUT_FRACTION, HOLDOUT_SEED)?;
        let (train, holdout) = split.apply(&data.examples);
        Ok(LabeledData {
            train,
            holdout,
            skipped_lines,
            duplicates_removed: before - data.len(),
        })
    }
}

/// The examples with their labels mapped to actionable / none.
pub fn binary_examples(examples: &[Example]) -> Vec<Example> {
    examples
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if e.label.as_deref() != Some(NOISE) {
                e.label = Some(ACTIONABLE.into());
            }
            e
        })
        .collect()
}

/// The actionable examples, with their team labels.
pub fn team_examples(examples: &[Example]) -> Vec<Example> {
    examples
        .iter()
        .filter(|e| e.label.as_deref().is_some_and(|l| l != NOISE))
        .cloned()
        .collect()
}

/// The fingerprint of everything that goes into the two models.
pub fn fingerprint(data: &LabeledData) -> Result<Fingerprint, Box<dyn std::error::Error>> {
    Ok(Fingerprint {
        actionable: training_fingerprint(&binary_examples(&data.train), &actionable_config())?,
        team: training_fingerprint(&team_examples(&data.train), &team_config())?,
        settings: format!(
            "holdout={HOLDOUT_FRACTION} holdout_seed={HOLDOUT_SEED} folds={FOLDS} cv_seed={CV_SEED} costs={}:{}",
            costs().false_negative,
            costs().false_positive
        ),
    })
}

/// What the models were trained from (stored in the binary model file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// [`training_fingerprint`] of the binary model's training data.
    pub actionable: String,
    /// [`training_fingerprint`] of the team model's training data.
    pub team: String,
    /// The split, fold and cost settings.
    pub settings: String,
}

/// How the models do on the hold-out (stored in the binary model file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    /// Held-out tweets.
    pub tweets: usize,
    /// Of them, actionable.
    pub actionable: usize,
    /// The threshold (chosen on the training tweets).
    pub threshold: f64,
    /// Cross-validated precision at the threshold (training tweets).
    pub cv_precision: Option<f64>,
    /// Cross-validated recall at the threshold (training tweets).
    pub cv_recall: Option<f64>,
    /// Held-out ROC AUC of the binary model.
    pub auc: f64,
    /// Held-out precision at the threshold.
    pub precision: Option<f64>,
    /// Held-out recall at the threshold.
    pub recall: Option<f64>,
    /// Held-out actionable tweets whose team the team model gets right.
    pub team_correct: usize,
}

/// Where the models came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// The bundled files, fresh.
    Bundled,
    /// Trained at start-up, and why.
    Trained {
        /// Why the bundled files were not used.
        reason: String,
        /// Seconds spent training.
        seconds: f64,
    },
}

/// The two models and their figures.
#[derive(Clone, Debug)]
pub struct Models {
    /// Actionable vs none, its policy the cost-chosen threshold.
    pub actionable: Arc<LocalModel>,
    /// Which team.
    pub team: Arc<LocalModel>,
    /// The hold-out figures.
    pub held_out: HeldOut,
    /// What they were trained from.
    pub fingerprint: Fingerprint,
    /// Where they came from.
    pub origin: Origin,
}

/// Why the bundled files were not used.
#[derive(Debug, thiserror::Error)]
pub enum NotUsable {
    /// A file is missing, corrupt or of another version.
    #[error("bundled model file cannot be used: {0}")]
    File(#[from] ModelFileError),
    /// The files hold no fingerprint or figures.
    #[error("bundled model file {0} has no fingerprint or hold-out figures")]
    NoFingerprint(String),
    /// They were trained from other data, settings or features.
    #[error(
        "bundled model is stale: the training data, the settings or this build's featurizer changed since it was saved"
    )]
    Stale,
}

/// Trains both models from the training tweets and measures them on the
/// hold-out.
pub fn train(data: &LabeledData) -> Result<Models, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let binary_train = binary_examples(&data.train);
    let fit = fit_binary_by_cost(
        &binary_train,
        &actionable_config(),
        costs(),
        FOLDS,
        CV_SEED,
        |_, _| {},
    )?;
    let team = LocalModel::train(&team_examples(&data.train), &team_config())?;
    let mut actionable = fit.model;

    let holdout = binary_examples(&data.holdout);
    let truth: Vec<bool> = holdout
        .iter()
        .map(|e| e.label.as_deref() == Some(ACTIONABLE))
        .collect();
    let scores: Vec<f64> = holdout
        .iter()
        .map(|e| actionable.positive_probability(e).unwrap_or(0.0))
        .collect();
    let evaluation = evaluate_binary(
        &scores,
        &truth,
        &BinaryEvalOptions {
            costs: costs(),
            ..BinaryEvalOptions::default()
        },
    )?;
    let at = threshold_at(&scores, &truth, fit.choice.threshold, costs())?;
    let team_holdout = team_examples(&data.holdout);
    let team_correct = team_holdout
        .iter()
        .filter(|e| Some(team.predict(*e).label.as_str()) == e.label.as_deref())
        .count();
    let held_out = HeldOut {
        tweets: holdout.len(),
        actionable: truth.iter().filter(|t| **t).count(),
        threshold: fit.choice.threshold,
        cv_precision: fit.choice.precision,
        cv_recall: fit.choice.recall,
        auc: evaluation.roc_auc,
        precision: at.precision,
        recall: at.recall,
        team_correct,
    };
    let fingerprint = fingerprint(data)?;
    actionable.evaluation = Some(serde_json::json!({
        "fingerprint": &fingerprint,
        "held_out": &held_out,
        "cross_validation": &fit.choice,
    }));
    let mut team = team;
    team.evaluation = Some(serde_json::json!({ "fingerprint": &fingerprint }));
    Ok(Models {
        actionable: Arc::new(actionable),
        team: Arc::new(team),
        held_out,
        fingerprint,
        origin: Origin::Trained {
            reason: String::new(),
            seconds: started.elapsed().as_secs_f64(),
        },
    })
}

/// The bundled models, if they are fresh for `data`.
pub fn bundled(data: &LabeledData) -> Result<Models, NotUsable> {
    let actionable = LocalModel::load(bundled_actionable_path())?;
    let team = LocalModel::load(bundled_team_path())?;
    let stored = |m: &LocalModel, path: PathBuf| -> Result<Fingerprint, NotUsable> {
        m.evaluation
            .as_ref()
            .and_then(|e| serde_json::from_value(e["fingerprint"].clone()).ok())
            .ok_or_else(|| NotUsable::NoFingerprint(path.display().to_string()))
    };
    let expected = fingerprint(data).map_err(|_| NotUsable::Stale)?;
    if stored(&actionable, bundled_actionable_path())? != expected
        || stored(&team, bundled_team_path())? != expected
    {
        return Err(NotUsable::Stale);
    }
    let held_out: HeldOut = actionable
        .evaluation
        .as_ref()
        .and_then(|e| serde_json::from_value(e["held_out"].clone()).ok())
        .ok_or_else(|| NotUsable::NoFingerprint(bundled_actionable_path().display().to_string()))?;
    Ok(Models {
        actionable: Arc::new(actionable),
        team: Arc::new(team),
        held_out,
        fingerprint: expected,
        origin: Origin::Bundled,
    })
}

/// The bundled models if fresh, else freshly trained (saying why).
pub fn load_or_train(
    data: &LabeledData,
    force_retrain: bool,
) -> Result<Models, Box<dyn std::error::Error>> {
    let reason = if force_retrain {
        "retraining was asked for".to_string()
    } else {
        match bundled(data) {
            Ok(models) => return Ok(models),
            Err(e) => e.to_string(),
        }
    };
    let mut models = train(data)?;
    if let Origin::Trained { reason: r, .. } = &mut models.origin {
        *r = reason;
    }
    Ok(models)
}

/// Writes both models to the bundled paths.
pub fn save_bundled(models: &Models) -> Result<(), ModelFileError> {
    models.actionable.save(bundled_actionable_path())?;
    models.team.save(bundled_team_path())
}

/// The threshold in the binary model's saved policy.
pub fn threshold(models: &Models) -> Option<f64> {
    match models.actionable.policy() {
        Some(Policy::Binary { threshold, .. }) => Some(*threshold),
        _ => None,
    }
}

/// The classifier the pipeline runs: the binary model decides whether a
/// tweet needs anyone (by its saved cost-chosen policy), the team model
/// decides who.
///
/// Its prediction is `none` (with probability `1 - p`) below the threshold,
/// else the team model's prediction; `positive_score` is always `p`, the
/// probability that the tweet is actionable.
#[derive(Clone, Debug)]
pub struct Triage {
    actionable: Arc<LocalModel>,
    team: Arc<LocalModel>,
    decision: Policy,
}

impl Triage {
    /// The classifier over both models. A binary model saved without a
    /// policy decides at 0.5.
    pub fn new(models: &Models) -> Triage {
        let decision = models
            .actionable
            .policy()
            .cloned()
            .unwrap_or_else(|| Policy::binary(0.5, ACTIONABLE));
        Triage {
            actionable: models.actionable.clone(),
            team: models.team.clone(),
            decision,
        }
    }

    /// The prediction for one tweet (what `classify` returns).
    pub fn predict(&self, tweet: &Tweet) -> Prediction {
        let p = self.actionable.positive_probability(tweet).unwrap_or(0.0);
        match self
            .decision
            .decide(&Prediction::binary(ACTIONABLE, NOISE, p))
        {
            Action::Notify(_) => {
                let mut team = self.team.predict(tweet);
                team.positive_score = Some(p);
                team
            }
            Action::Discard | Action::Review => Prediction {
                label: Label::from_static(NOISE),
                scores: vec![(Label::from_static(NOISE), 1.0 - p)],
                positive_score: Some(p),
                decided_by: None,
            },
        }
    }
}

impl Classifier<Tweet> for Triage {
    async fn classify(&self, tweet: &Tweet) -> Result<Prediction, ClassifyError> {
        Ok(self.predict(tweet))
    }
}

/// The pipeline's policy for [`Triage`]'s predictions: `none` is dropped;
/// a team label notifies that team when the team model is at least
/// [`TEAM_MIN_CONFIDENCE`] sure, else the tweet goes to human triage.
pub fn triage_policy() -> Policy {
    let mut rules: Vec<LabelRule> = TEAMS
        .iter()
        .map(|(label, _)| LabelRule {
            label: Label::from_static(label),
            route: Some(Label::from_static(label)),
            min_confidence: TEAM_MIN_CONFIDENCE,
        })
        .collect();
    rules.push(LabelRule {
        label: Label::from_static(NOISE),
        route: None,
        min_confidence: 0.0,
    });
    Policy::Multiclass {
        rules,
        uncertain: UncertainAction::Review,
    }
}
