//! `--cascade`: the local model first, a (simulated) large language model
//! for the tweets it is unsure of, people for what the LLM is unsure of.
//!
//! No real LLM is reachable offline, so stage 2 is
//! [`SimulatedLlm`]: it answers from the bundled gold labels through a
//! seeded error rate, with a latency and a price per call (the embedded
//! defaults below are assumptions, stated where they are printed). The
//! cost curve prices, on the hold-out tweets (never trained on), local-only,
//! LLM-only and the cascade at a few band widths, all in the same run.

use std::sync::Arc;
use std::time::Duration;

use streamsift::cascade::{BandCost, Cascade, CascadeStats, Sample, UncertainBand, calibrate};
use streamsift::fakes::{FaultKind, FaultPlan, Faulty, MemorySource, SimulatedLlm};
use streamsift::local::Example;
use streamsift::{Classifier, Policy, Shutdown};

use super::{NOISE, TEAMS, model};

/// The simulated LLM's seed.
pub const LLM_SEED: u64 = 16;
/// Its accuracy over the five labels (wrong answers spread evenly).
pub const LLM_ACCURACY: f64 = 0.9;
/// Its price per call, in the unit of a false alarm (1): an assumption; a
/// false alarm is a minute of someone's time, a call a fraction of a cent.
pub const LLM_COST_PER_CALL: f64 = 0.02;
/// Its latency per call.
pub const LLM_LATENCY: Duration = Duration::from_millis(300);
/// Tokens per call (a short prompt and a one-word answer).
pub const LLM_TOKENS_PER_CALL: u64 = 350;
/// Half-widths of the fixed bands of the curve, around the threshold.
pub const HALF_WIDTHS: [f64; 4] = [0.05, 0.1, 0.2, 0.3];

/// The simulated LLM, with the gold label of every well-formed bundled
/// tweet (retweets and duplicates included: the stream has them).
pub fn simulated_llm() -> SimulatedLlm {
    let labels = TEAMS.iter().map(|(l, _)| *l).chain([NOISE]);
    let gold = super::gold_labels(super::GOLD);
    let tweets: Vec<super::Tweet> = super::lines(super::TWEETS)
        .iter()
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect();
    let pairs = tweets
        .iter()
        .filter_map(|t| Some((t.text.as_str(), gold.get(&t.id_str)?.clone())));
    SimulatedLlm::new(labels)
        .gold(pairs)
        .accuracy(LLM_ACCURACY)
        .negative(NOISE)
        .latency(LLM_LATENCY)
        .cost_per_call(LLM_COST_PER_CALL)
        .tokens_per_call(LLM_TOKENS_PER_CALL)
        .seed(LLM_SEED)
}

/// One row of the cost curve.
#[derive(Clone, Debug)]
pub struct Row {
    /// What the row is.
    pub name: String,
    /// Its figures on the hold-out.
    pub cost: BandCost,
}

/// The cost curve on the hold-out, and the band the pipeline run uses.
#[derive(Clone, Debug)]
pub struct Curve {
    /// Hold-out tweets priced.
    pub tweets: usize,
    /// Of them, actionable.
    pub actionable: usize,
    /// The stage-1 threshold.
    pub threshold: f64,
    /// Local only, LLM only, the fixed bands, then the calibrated band.
    pub rows: Vec<Row>,
    /// The calibrated band, cross-fitted: chosen on each half of the
    /// hold-out and priced on the other half, summed.
    pub cross_fitted: BandCost,
    /// The band chosen on the whole hold-out (what the run uses).
    pub band: UncertainBand,
}

/// Whether a person sees a tweet the LLM answered (the triage policy: a
/// team label notifies or goes to review, `none` is dropped; an error falls
/// back to review).
fn llm_reaches_a_person(llm: &SimulatedLlm, text: &str) -> bool {
    llm.answer(text).map_or(true, |p| p.label != NOISE)
}

fn samples(models: &model::Models, llm: &SimulatedLlm, holdout: &[Example]) -> Vec<Sample> {
    holdout
        .iter()
        .map(|e| Sample {
            positive: e.label.as_deref().is_some_and(|l| l != NOISE),
            first_score: models.actionable.positive_probability(e),
            second_positive: llm_reaches_a_person(llm, &e.text),
        })
        .collect()
}

/// Prices local-only, LLM-only and the cascade's bands on the hold-out.
pub fn cost_curve(
    data: &model::LabeledData,
    models: &model::Models,
    llm: &SimulatedLlm,
) -> Result<Curve, Box<dyn std::error::Error>> {
    let threshold = model::threshold(models).unwrap_or(models.held_out.threshold);
    let all = samples(models, llm, &data.holdout);
    let costs = model::costs();
    let whole = calibrate(&all, threshold, costs, LLM_COST_PER_CALL)?;
    let mut rows = vec![
        Row {
            name: "local model only".into(),
            cost: whole.first_only,
        },
        Row {
            name: "LLM only".into(),
            cost: whole.second_only,
        },
    ];
    for w in HALF_WIDTHS {
        let band = UncertainBand::new((threshold - w).max(0.0), (threshold + w).min(1.0));
        rows.push(Row {
            name: format!("cascade, threshold ±{w:.2}"),
            cost: whole.evaluate(band),
        });
    }
    // Cross-fitted: choose on one half, price on the other.
    let (even, odd): (Vec<_>, Vec<_>) = all.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let even: Vec<Sample> = even.into_iter().map(|(_, s)| *s).collect();
    let odd: Vec<Sample> = odd.into_iter().map(|(_, s)| *s).collect();
    let on_even = calibrate(&even, threshold, costs, LLM_COST_PER_CALL)?;
    let on_odd = calibrate(&odd, threshold, costs, LLM_COST_PER_CALL)?;
    let a = on_odd.evaluate(on_even.best.band);
    let b = on_even.evaluate(on_odd.best.band);
    let n = all.len().max(1) as f64;
    let calls = a.second_calls + b.second_calls;
    let cross_fitted = BandCost {
        band: whole.best.band,
        cost_per_record: (a.cost_per_record * odd.len() as f64
            + b.cost_per_record * even.len() as f64)
            / n,
        second_share: calls as f64 / n,
        second_calls: calls,
        false_negatives: a.false_negatives + b.false_negatives,
        false_positives: a.false_positives + b.false_positives,
    };
    rows.push(Row {
        name: "cascade, calibrated (cross-fitted)".into(),
        cost: cross_fitted,
    });
    Ok(Curve {
        tweets: all.len(),
        actionable: all.iter().filter(|s| s.positive).count(),
        threshold,
        rows,
        cross_fitted,
        band: whole.best.band,
    })
}

/// The table the example prints.
pub fn render(curve: &Curve) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cost curve on the {} held-out tweets ({} actionable); cost per record in false alarms \
         (a missed request costs 10, an LLM call {LLM_COST_PER_CALL}; simulated LLM: {:.0}% accurate, seed {LLM_SEED})",
        curve.tweets,
        curve.actionable,
        LLM_ACCURACY * 100.0
    );
    let _ = writeln!(
        out,
        "  {:<36} {:>15} {:>9} {:>7} {:>7} {:>8}",
        "stage 2 decides", "band", "to LLM", "missed", "alarms", "cost"
    );
    for row in &curve.rows {
        let c = &row.cost;
        let band = if c.second_calls == 0 {
            "none".to_string()
        } else if c.band.low <= 0.0 && c.band.high >= 1.0 {
            "all".to_string()
        } else {
            format!("[{:.3}, {:.3}]", c.band.low, c.band.high)
        };
        let _ = writeln!(
            out,
            "  {:<36} {:>15} {:>8.1}% {:>7} {:>7} {:>8.4}",
            row.name,
            band,
            c.second_share * 100.0,
            c.false_negatives,
            c.false_positives,
            c.cost_per_record
        );
    }
    let _ = writeln!(
        out,
        "  (the calibrated row's band is chosen on one half of the hold-out and priced on the other, both ways; \
         the run below uses the band chosen on the whole hold-out, [{:.3}, {:.3}])",
        curve.band.low, curve.band.high
    );
    out
}

/// Runs the pipeline over the bundled stream with the cascade as its
/// classifier: [`model::Triage`] first, `llm` for the band.
pub async fn run<S2>(
    settings: &super::Settings,
    data: &model::LabeledData,
    models: &model::Models,
    band: UncertainBand,
    llm: S2,
    shutdown: Shutdown,
) -> Result<(super::Summary, CascadeStats), Box<dyn std::error::Error>>
where
    S2: Classifier<super::Tweet>,
{
    let lines = super::lines(super::TWEETS);
    let source = MemorySource::from_payloads(settings.shards, lines.iter().cloned()).batch_size(50);
    let inboxes = super::Inboxes::default();
    let notifier = Faulty::new(
        inboxes.clone(),
        FaultPlan::new()
            .fail_with_probability(settings.flaky_notifier)
            .kind(FaultKind::Throttled)
            .seed(7),
    );
    let cascade = Arc::new(Cascade::new(model::Triage::new(models), llm).band(band));
    let policy: Policy = model::triage_policy();
    let stages = super::Stages {
        source,
        classifier: cascade.clone(),
        policy,
        router: notifier,
        inboxes: &inboxes,
        lines: Some(lines.len()),
    };
    let summary = super::run_stages(settings, data, stages, shutdown).await?;
    Ok((summary, cascade.stats()))
}

/// A real OpenAI-compatible server as stage 2 (`--llm-url`, `--llm-model`):
/// the five labels with a line each, two few-shot examples per label from
/// the training tweets (seed 0), the API key from environment variable
/// `key_env` when it is set (never printed).
#[cfg(feature = "llm")]
pub fn real_llm(
    url: &str,
    model_name: &str,
    key_env: &str,
    data: &model::LabeledData,
) -> Result<streamsift::llm::LlmClassifier, streamsift::llm::LlmConfigError> {
    use streamsift::llm::{LlmClassifier, PromptTemplate};
    let template = PromptTemplate::new("support-tweets-triage-v1")
        .instructions(
            "You triage tweets addressed to @nimbuscloud, a cloud hosting company. \
             Pick the one label that says which support team must act, or none. \
             Missing a tweet that needs a team costs ten times a needless alert.",
        )
        .label(
            "problem_report",
            "something is broken or down: an outage, errors, lost data",
        )
        .label(
            "support_request",
            "the customer's account, billing or access needs a person",
        )
        .label(
            "technical_question",
            "how to do something with the product: APIs, configuration, code",
        )
        .label(
            "feature_request",
            "asks for a new feature or a change to the product",
        )
        .label(NOISE, "needs no one: praise, jokes, news, spam, chatter")
        .few_shot(&data.train, 2, 0);
    let mut builder = LlmClassifier::openai(url, model_name, template);
    if std::env::var_os(key_env).is_some_and(|v| !v.is_empty()) {
        builder = builder.api_key_env(key_env);
    }
    builder.build()
}
