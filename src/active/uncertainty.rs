//! How uncertain a prediction is: the key the review queue orders by.

use serde::{Deserialize, Serialize};

use crate::classify::Prediction;

/// How to measure a prediction's uncertainty. The measure is a *margin*:
/// smaller is more uncertain, and the queue sends the smallest first.
///
/// ```
/// use streamsift::Prediction;
/// use streamsift::active::Uncertainty;
/// let by_threshold = Uncertainty::Threshold(0.3);
/// // 0.31 is closer to the threshold than 0.5: more uncertain.
/// assert!(by_threshold.margin(Some(&Prediction::binary("y", "n", 0.31)))
///     < by_threshold.margin(Some(&Prediction::binary("y", "n", 0.5))));
/// // No prediction, or no scores, counts as the most uncertain.
/// assert_eq!(Uncertainty::TopTwo.margin(None), 0.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "threshold", rename_all = "snake_case")]
pub enum Uncertainty {
    /// `|positive_score - threshold|`: the distance to the decision
    /// threshold of a binary policy. A prediction without a positive score
    /// falls back to [`TopTwo`](Uncertainty::TopTwo).
    Threshold(f64),
    /// The gap between the two highest label scores (the default); for a
    /// binary prediction with only a positive score `p`, `|2p - 1|`.
    #[default]
    TopTwo,
}

impl Uncertainty {
    /// The margin of `prediction`, in `[0, 1]` for probabilities; 0 (most
    /// uncertain) when there is no prediction or it carries no scores, and
    /// for NaN scores.
    pub fn margin(&self, prediction: Option<&Prediction>) -> f64 {
        let Some(p) = prediction else {
            return 0.0;
        };
        let m = match (self, p.positive_score) {
            (Uncertainty::Threshold(t), Some(score)) => (score - t).abs(),
            _ => top_two(p),
        };
        if m.is_nan() { 0.0 } else { m }
    }
}

fn top_two(p: &Prediction) -> f64 {
    let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for (_, s) in &p.scores {
        if *s > first {
            second = first;
            first = *s;
        } else if *s > second {
            second = *s;
        }
    }
    match (first.is_finite(), second.is_finite(), p.positive_score) {
        (true, true, _) => first - second,
        (_, _, Some(score)) => (2.0 * score - 1.0).abs(),
        (true, false, None) => first,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_two_margin() {
        let p = Prediction::from_scores(vec![
            ("a".into(), 0.5),
            ("b".into(), 0.3),
            ("c".into(), 0.2),
        ])
        .unwrap();
        assert!((Uncertainty::TopTwo.margin(Some(&p)) - 0.2).abs() < 1e-12);
        let b = Prediction::binary("y", "n", 0.9);
        assert!((Uncertainty::TopTwo.margin(Some(&b)) - 0.8).abs() < 1e-12);
        let only = Prediction {
            positive_score: Some(0.4),
            ..Prediction::label("y")
        };
        assert!((Uncertainty::TopTwo.margin(Some(&only)) - 0.2).abs() < 1e-12);
        assert_eq!(
            Uncertainty::TopTwo.margin(Some(&Prediction::label("y"))),
            0.0
        );
        let nan = Prediction::binary("y", "n", f64::NAN);
        assert_eq!(Uncertainty::Threshold(0.5).margin(Some(&nan)), 0.0);
    }
}
