use std::future::{Ready, ready};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;

use super::*;
use crate::fakes::{FaultKind, FaultPlan, Faulty, SimulatedLlm};
use crate::local::Costs;
use crate::policy::{Action, Policy};

/// Stage 1: the item is its own score ("0.42"); "none" gives no score.
/// (`&String`: a `Classifier<String>` closure takes `&String`.)
#[allow(clippy::ptr_arg)]
fn scorer(item: &String) -> Ready<Result<Prediction, ClassifyError>> {
    ready(Ok(match item.parse::<f64>() {
        Ok(s) => Prediction::binary("yes", "no", s),
        Err(_) => Prediction::label("yes"),
    }))
}

/// Stage 2: always "no", sure, and counts its calls.
struct Counting(AtomicUsize);

impl Classifier<String> for Counting {
    async fn classify(&self, _: &String) -> Result<Prediction, ClassifyError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Prediction::binary("yes", "no", 0.01))
    }
}

fn items(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn the_band_and_a_missing_score_route_to_stage_two() {
    let c = Cascade::new(scorer, Counting(AtomicUsize::new(0))).band(UncertainBand::new(0.3, 0.6));
    let got: Vec<(String, Option<CascadeStage>)> = {
        let mut v = Vec::new();
        for i in items(&["0.1", "0.3", "0.45", "0.6", "0.61", "0.9", "none"]) {
            let p = c.classify(&i).await.unwrap();
            v.push((p.label.to_string(), p.decided_by));
        }
        v
    };
    let f = Some(CascadeStage::First);
    let s = Some(CascadeStage::Second);
    assert_eq!(
        got,
        [
            ("no".into(), f),
            ("no".into(), s),
            ("no".into(), s),
            ("no".into(), s),
            ("yes".into(), f),
            ("yes".into(), f),
            ("no".into(), s),
        ]
    );
    assert_eq!(c.second().0.load(Ordering::Relaxed), 4);
    let stats = c.stats();
    assert_eq!((stats.first, stats.second, stats.fallback), (3, 4, 0));
}

#[tokio::test]
async fn batch_matches_single_and_calls_stage_two_only_for_the_band() {
    let c = Cascade::new(scorer, Counting(AtomicUsize::new(0))).band(UncertainBand::new(0.3, 0.6));
    let xs = items(&["0.1", "0.5", "none", "0.9", "0.35"]);
    let refs: Vec<&String> = xs.iter().collect();
    let batch = c.classify_batch(&refs).await;
    assert_eq!(c.second().0.load(Ordering::Relaxed), 3);
    for (x, b) in xs.iter().zip(batch) {
        assert_eq!(b.unwrap(), c.classify(x).await.unwrap());
    }
    crate::testing::classifier::conformance(&c, &xs, &["yes", "no"]).await;
}

#[tokio::test]
async fn permanent_stage_two_errors_fall_back_to_review_retryable_ones_propagate() {
    let failing = |kind| {
        Faulty::new(
            Counting(AtomicUsize::new(0)),
            FaultPlan::new().fail_with_probability(1.0).kind(kind),
        )
    };
    // Permanent: the default fallback is a prediction every policy reviews.
    let c = Cascade::new(scorer, failing(FaultKind::Permanent)).band(UncertainBand::new(0.3, 0.6));
    let p = c.classify(&"0.4".to_string()).await.unwrap();
    assert_eq!(p.decided_by, Some(CascadeStage::Fallback));
    assert_eq!(p.label, FALLBACK_LABEL);
    assert_eq!(Policy::binary(0.5, "team").decide(&p), Action::Review);
    assert_eq!(
        Policy::by_label(&["yes"], &["no"], 0.0).decide(&p),
        Action::Review
    );
    // Outside the band, stage 2 is not asked and nothing fails.
    assert_eq!(
        c.classify(&"0.9".to_string()).await.unwrap().decided_by,
        Some(CascadeStage::First)
    );
    assert_eq!(c.stats().fallback, 1);

    // Or stage 1's answer, marked.
    let c = Cascade::new(scorer, failing(FaultKind::Permanent))
        .band(UncertainBand::new(0.3, 0.6))
        .fallback(Fallback::FirstStage);
    let p = c.classify(&"0.55".to_string()).await.unwrap();
    assert_eq!(
        (p.label.as_str(), p.decided_by),
        ("yes", Some(CascadeStage::Fallback))
    );
    assert_eq!(p.positive_score, Some(0.55));

    // Retryable: the error propagates so the pipeline retries.
    for kind in [
        FaultKind::Throttled,
        FaultKind::Retryable,
        FaultKind::Timeout,
    ] {
        let c = Cascade::new(scorer, failing(kind)).band(UncertainBand::new(0.3, 0.6));
        let e = c.classify(&"0.4".to_string()).await.unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert_eq!(c.stats().second_retryable, 1);
        assert_eq!(c.stats().fallback, 0);
    }
}

#[tokio::test]
async fn stage_one_errors_propagate_and_stage_two_is_not_called() {
    let c = Cascade::new(
        Faulty::new(
            scorer,
            FaultPlan::new()
                .fail_with_probability(1.0)
                .kind(FaultKind::Permanent),
        ),
        Counting(AtomicUsize::new(0)),
    )
    .band(UncertainBand::all());
    assert!(c.classify(&"0.4".to_string()).await.is_err());
    assert_eq!(c.second().0.load(Ordering::Relaxed), 0);
    assert_eq!(c.stats().first_errors, 1);
}

#[tokio::test(start_paused = true)]
async fn the_budget_of_a_simulated_llm_falls_back_and_the_decision_is_in_the_json() {
    let llm = SimulatedLlm::new(["yes", "no"])
        .gold([("0.4", "no"), ("0.5", "no")])
        .call_budget(1)
        .negative("no");
    let c = Cascade::new(scorer, llm).band(UncertainBand::new(0.3, 0.6));
    let a = c.classify(&"0.4".to_string()).await.unwrap();
    let b = c.classify(&"0.5".to_string()).await.unwrap();
    assert_eq!(a.decided_by, Some(CascadeStage::Second));
    assert_eq!(b.decided_by, Some(CascadeStage::Fallback));
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(json["decided_by"], "fallback");
    // Old JSON (no field) still reads.
    let old: Prediction = serde_json::from_str(r#"{"label":"x"}"#).unwrap();
    assert_eq!(old.decided_by, None);
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        any::<bool>(),
        prop::option::weighted(0.95, 0.0..=1.0f64),
        any::<bool>(),
    )
        .prop_map(|(positive, first_score, second_positive)| Sample {
            positive,
            first_score,
            second_positive,
        })
}

fn band() -> impl Strategy<Value = UncertainBand> {
    (0.0..=1.0f64, 0.0..=1.0f64).prop_map(|(a, b)| UncertainBand::new(a.min(b), a.max(b)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The chosen band costs no more than stage 1 alone, stage 2 alone, or
    /// any other band, and re-pricing it gives the same figure.
    #[test]
    fn the_chosen_band_is_optimal(
        samples in prop::collection::vec(sample(), 1..60),
        threshold in 0.0..=1.0f64,
        fneg in 0.0..20.0f64,
        price in 0.0..3.0f64,
        other in band(),
    ) {
        let c = calibrate(&samples, threshold, Costs::new(fneg, 1.0), price).unwrap();
        let eps = 1e-9;
        prop_assert!(c.best.cost_per_record <= c.first_only.cost_per_record + eps);
        prop_assert!(c.best.cost_per_record <= c.second_only.cost_per_record + eps);
        prop_assert!(c.best.cost_per_record <= c.evaluate(other).cost_per_record + eps);
        let again = c.evaluate(c.best.band);
        prop_assert!((again.cost_per_record - c.best.cost_per_record).abs() < eps);
        prop_assert_eq!(c.second_only.second_share, 1.0);
    }

    /// Widening a band never lowers the share sent to stage 2, and the
    /// empty band sends only the unscored items.
    #[test]
    fn widening_never_lowers_the_stage_two_share(
        samples in prop::collection::vec(sample(), 1..60),
        inner in band(),
        grow_low in 0.0..0.5f64,
        grow_high in 0.0..0.5f64,
    ) {
        let c = calibrate(&samples, 0.5, Costs::new(10.0, 1.0), 0.1).unwrap();
        let outer = UncertainBand::new(inner.low - grow_low, inner.high + grow_high);
        prop_assert!(c.evaluate(outer).second_share >= c.evaluate(inner).second_share);
        let unscored = samples.iter().filter(|s| s.first_score.is_none()).count();
        prop_assert_eq!(c.first_only.second_calls, unscored);
    }

    /// A free, perfect stage 2 takes everything at no cost; a stage 2 dearer
    /// than any mistake is never called for scored items.
    #[test]
    fn the_price_moves_the_band(samples in prop::collection::vec(sample(), 1..60)) {
        let perfect: Vec<Sample> = samples
            .iter()
            .map(|s| Sample { second_positive: s.positive, ..*s })
            .collect();
        let c = calibrate(&perfect, 0.5, Costs::new(10.0, 1.0), 0.0).unwrap();
        prop_assert_eq!(c.best.cost_per_record, 0.0);
        let c = calibrate(&perfect, 0.5, Costs::new(10.0, 1.0), 11.0).unwrap();
        let unscored = samples.iter().filter(|s| s.first_score.is_none()).count();
        prop_assert_eq!(c.best.second_calls, unscored);
    }
}

#[test]
fn bad_costs_and_no_samples_are_typed_errors() {
    let s = [Sample {
        positive: true,
        first_score: Some(0.2),
        second_positive: true,
    }];
    assert_eq!(
        calibrate(&[], 0.5, Costs::default(), 0.1).unwrap_err(),
        CalibrateError::NoSamples
    );
    let e = calibrate(&s, 0.5, Costs::default(), f64::NAN).unwrap_err();
    assert!(e.to_string().contains("stage-2 price"), "{e}");
    assert!(calibrate(&s, 0.5, Costs::new(-1.0, 1.0), 0.1).is_err());
}
