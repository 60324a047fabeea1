//! The decision policy: what to do with a [`Prediction`].
//!
//! A policy is plain data (serde), so a model file can carry the threshold
//! it was tuned with.

use serde::{Deserialize, Serialize};

use crate::classify::{Label, Prediction};

/// What the pipeline does with a classified item.
///
/// Deliberately exhaustive: code that acts on a decision must handle every
/// kind, so a new kind is a breaking change by design.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deliver it on this route.
    Notify(Label),
    /// Drop it: it needs no one's attention.
    Discard,
    /// Send it to human review (the [`Labeler`](crate::Labeler)).
    Review,
}

/// A half-open score interval `[low, high)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// Inclusive lower bound.
    pub low: f64,
    /// Exclusive upper bound.
    pub high: f64,
}

impl Band {
    /// Whether `score` lies in `[low, high)`.
    pub fn contains(&self, score: f64) -> bool {
        score >= self.low && score < self.high
    }
}

/// One label's rule in a multi-class policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelRule {
    /// The predicted label this rule applies to.
    pub label: Label,
    /// The route to notify; `None` discards items with this label (noise).
    pub route: Option<Label>,
    /// The minimum confidence to act on the label. Below it, the policy's
    /// `uncertain` action applies.
    #[serde(default)]
    pub min_confidence: f64,
}

/// Turns a [`Prediction`] into an [`Action`].
///
/// ```
/// use streamsift::{Action, Policy, Prediction};
/// let policy = Policy::binary(0.3, "support").with_review_band(0.15, 0.3);
/// assert_eq!(policy.decide(&Prediction::binary("yes", "no", 0.35)), Action::Notify("support".into()));
/// assert_eq!(policy.decide(&Prediction::binary("yes", "no", 0.2)), Action::Review);
/// assert_eq!(policy.decide(&Prediction::binary("yes", "no", 0.05)), Action::Discard);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Policy {
    /// A threshold on the positive-class score of a binary model.
    ///
    /// A score inside `review_band` goes to review; otherwise a score at or
    /// above `threshold` notifies `route`; otherwise the item is discarded.
    /// A prediction without a positive score is sent to review: we do not
    /// guess with someone's support request.
    Binary {
        /// Notify at or above this score. Chosen by cost, not 0.5.
        threshold: f64,
        /// Scores to send for human review instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        review_band: Option<Band>,
        /// The route actionable items go to.
        route: Label,
    },
    /// Route by the predicted label, each label with its own confidence.
    Multiclass {
        /// One rule per label.
        rules: Vec<LabelRule>,
        /// What to do when the confidence is below the label's minimum, or
        /// the label has no rule, or the classifier gave no confidence.
        #[serde(default = "default_uncertain")]
        uncertain: UncertainAction,
    },
}

/// What a multi-class policy does with an uncertain prediction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UncertainAction {
    /// Send it for human review (the default).
    Review,
    /// Drop it.
    Discard,
}

fn default_uncertain() -> UncertainAction {
    UncertainAction::Review
}

impl Policy {
    /// A binary threshold policy with no review band.
    pub fn binary(threshold: f64, route: impl Into<Label>) -> Self {
        Policy::Binary {
            threshold,
            review_band: None,
            route: route.into(),
        }
    }

    /// Adds a review band `[low, high)` to a binary policy; no effect on a
    /// multi-class one.
    pub fn with_review_band(mut self, low: f64, high: f64) -> Self {
        if let Policy::Binary { review_band, .. } = &mut self {
            *review_band = Some(Band { low, high });
        }
        self
    }

    /// A multi-class policy that notifies the route named like each label,
    /// discards the labels in `discard`, and reviews the uncertain.
    ///
    /// ```
    /// use streamsift::{Action, Policy, Prediction};
    /// let policy = Policy::by_label(&["bug", "question"], &["noise"], 0.6);
    /// let p = Prediction::from_scores(vec![("bug".into(), 0.7), ("noise".into(), 0.3)]).unwrap();
    /// assert_eq!(policy.decide(&p), Action::Notify("bug".into()));
    /// let unsure = Prediction::from_scores(vec![("bug".into(), 0.5), ("noise".into(), 0.5)]).unwrap();
    /// assert_eq!(policy.decide(&unsure), Action::Review);
    /// ```
    pub fn by_label(notify: &[&str], discard: &[&str], min_confidence: f64) -> Self {
        let mut rules = Vec::new();
        for l in notify {
            rules.push(LabelRule {
                label: Label::from(l.to_string()),
                route: Some(Label::from(l.to_string())),
                min_confidence,
            });
        }
        for l in discard {
            rules.push(LabelRule {
                label: Label::from(l.to_string()),
                route: None,
                min_confidence,
            });
        }
        Policy::Multiclass {
            rules,
            uncertain: UncertainAction::Review,
        }
    }

    /// Whether this policy sends uncertain items to review by design: a
    /// binary policy with a review band, or a multi-class one whose
    /// uncertain action is [`UncertainAction::Review`] (the default of
    /// [`by_label`](Policy::by_label)). The pipeline refuses to run such a
    /// policy with nowhere to send review items.
    ///
    /// A binary policy without a band answers `false`, although it still
    /// reviews a prediction that lacks a positive score: that is a
    /// classifier defect, not a band, and such items are dead-lettered if
    /// nothing takes review items.
    ///
    /// ```
    /// use streamsift::{Policy, UncertainAction};
    /// assert!(!Policy::binary(0.5, "oncall").can_review());
    /// assert!(Policy::binary(0.5, "oncall").with_review_band(0.3, 0.5).can_review());
    /// assert!(Policy::by_label(&["bug"], &["noise"], 0.6).can_review());
    /// let Policy::Multiclass { rules, .. } = Policy::by_label(&["bug"], &["noise"], 0.6) else { unreachable!() };
    /// let no_review = Policy::Multiclass { rules, uncertain: UncertainAction::Discard };
    /// assert!(!no_review.can_review());
    /// ```
    pub fn can_review(&self) -> bool {
        match self {
            Policy::Binary { review_band, .. } => review_band.is_some(),
            Policy::Multiclass { uncertain, .. } => *uncertain == UncertainAction::Review,
        }
    }

    /// Decides what to do with a prediction.
    pub fn decide(&self, prediction: &Prediction) -> Action {
        match self {
            Policy::Binary {
                threshold,
                review_band,
                route,
            } => {
                let Some(score) = prediction.positive_score else {
                    return Action::Review;
                };
                if review_band.is_some_and(|b| b.contains(score)) {
                    Action::Review
                } else if score >= *threshold {
                    Action::Notify(route.clone())
                } else {
                    Action::Discard
                }
            }
            Policy::Multiclass { rules, uncertain } => {
                let uncertain = match uncertain {
                    UncertainAction::Review => Action::Review,
                    UncertainAction::Discard => Action::Discard,
                };
                let Some(rule) = rules.iter().find(|r| r.label == prediction.label) else {
                    return uncertain;
                };
                // A rule with no minimum accepts a prediction with no scores.
                let confident = rule.min_confidence <= 0.0
                    || prediction
                        .confidence()
                        .is_some_and(|c| c >= rule.min_confidence);
                match (&rule.route, confident) {
                    (_, false) => uncertain,
                    (Some(route), true) => Action::Notify(route.clone()),
                    (None, true) => Action::Discard,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_threshold_band_and_missing_score() {
        let p = Policy::binary(0.4, "team").with_review_band(0.2, 0.5);
        // The band wins over the threshold inside it.
        assert_eq!(
            p.decide(&Prediction::binary("y", "n", 0.45)),
            Action::Review
        );
        assert_eq!(
            p.decide(&Prediction::binary("y", "n", 0.5)),
            Action::Notify("team".into())
        );
        assert_eq!(
            p.decide(&Prediction::binary("y", "n", 0.19)),
            Action::Discard
        );
        assert_eq!(p.decide(&Prediction::label("y")), Action::Review);
    }

    #[test]
    fn multiclass_rules() {
        let p = Policy::by_label(&["bug"], &["none"], 0.5);
        let pred = |l: &'static str, c| Prediction {
            label: l.into(),
            scores: vec![(l.into(), c)],
            positive_score: None,
            decided_by: None,
        };
        assert_eq!(p.decide(&pred("bug", 0.9)), Action::Notify("bug".into()));
        assert_eq!(p.decide(&pred("none", 0.9)), Action::Discard);
        assert_eq!(p.decide(&pred("none", 0.4)), Action::Review);
        assert_eq!(p.decide(&pred("other", 0.99)), Action::Review);
        assert_eq!(p.decide(&Prediction::label("bug")), Action::Review);
    }

    #[test]
    fn policy_round_trips_through_json() {
        let p = Policy::binary(0.27, "support").with_review_band(0.1, 0.27);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"kind\":\"binary\""), "{json}");
        let back: Policy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        let m: Policy = serde_json::from_str(
            r#"{"kind":"multiclass","rules":[{"label":"bug","route":"eng","min_confidence":0.3}]}"#,
        )
        .unwrap();
        assert_eq!(m.decide(&Prediction::label("bug")), Action::Review);
    }
}
