//! Response mapping, pure: a `Prediction` as ours ([`map_prediction`]).

use std::collections::HashMap;

use aws_sdk_machinelearning::types::{DetailsAttributes, Prediction as SdkPrediction};

use crate::classify::{Label, Prediction};
use crate::error::ClassifyError;

use super::*;

fn probability(label: &str, raw: f32) -> Result<f64, ClassifyError> {
    let p = f64::from(raw);
    if p.is_finite() && (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(ClassifyError::permanent(format!(
            "Amazon ML returned the score {raw} for label {label:?}; expected a probability in [0, 1]"
        )))
    }
}

/// Maps an Amazon ML `Prediction` onto ours. A pure function.
///
/// `kind` is the model's type as `GetMLModel` reported it; the response's
/// own `details.PredictiveModelType`, when present, takes precedence.
///
/// - **BINARY**: Amazon ML's score is the probability of class `"1"`. It is
///   `predictedScores["1"]`, or the map's only value when it has one entry
///   (whatever its key). The label is `predictedLabel` (`"1"` → `positive`,
///   `"0"` → `negative`), which honours the score threshold set on the
///   model; without a `predictedLabel` it is `positive` when the score is at
///   least 0.5. Scores are `[(positive, s), (negative, 1 - s)]` and
///   `positive_score` is `s`. A label without any score gives a label-only
///   prediction.
/// - **MULTICLASS**: every entry of `predictedScores`, sorted by label; the
///   label is `predictedLabel`, or the most probable label without one.
/// - **REGRESSION** (or a `predictedValue` with no label): an error.
///
/// Scores outside [0, 1], a binary label other than `"0"`/`"1"` and an empty
/// prediction are permanent errors.
pub fn map_prediction(
    prediction: &SdkPrediction,
    kind: ModelKind,
    positive: &Label,
    negative: &Label,
) -> Result<Prediction, ClassifyError> {
    let reported = prediction
        .details()
        .and_then(|d| d.get(&DetailsAttributes::PredictiveModelType))
        .map(String::as_str);
    let kind = match reported {
        None => kind,
        Some(s) => match ModelKind::parse(s) {
            Some(k) => k,
            None if s == "REGRESSION" => return Err(regression_error()),
            None => {
                return Err(ClassifyError::permanent(format!(
                    "Amazon ML reported the model type {s:?}; this classifier understands BINARY and MULTICLASS"
                )));
            }
        },
    };
    let label = prediction.predicted_label();
    let scores = prediction.predicted_scores();
    if label.is_none() && scores.is_none_or(HashMap::is_empty) {
        if prediction.predicted_value().is_some() {
            return Err(regression_error());
        }
        return Err(ClassifyError::permanent(
            "Amazon ML returned a prediction with neither predictedLabel nor predictedScores",
        ));
    }
    match kind {
        ModelKind::Binary => {
            let raw = scores.and_then(|s| match s.get("1") {
                Some(v) => Some(*v),
                None if s.len() == 1 => s.values().next().copied(),
                None => None,
            });
            let mapped = match label {
                Some("1") => Some(positive.clone()),
                Some("0") => Some(negative.clone()),
                Some(other) => {
                    return Err(ClassifyError::permanent(format!(
                        "Amazon ML returned the binary label {other:?}; expected \"0\" or \"1\""
                    )));
                }
                None => None,
            };
            match (raw, mapped) {
                (Some(raw), mapped) => {
                    let s = probability("1", raw)?;
                    let mut p = Prediction::binary(positive.clone(), negative.clone(), s);
                    if let Some(l) = mapped {
                        p.label = l;
                    }
                    Ok(p)
                }
                (None, Some(l)) => Ok(Prediction::label(l)),
                (None, None) => Err(ClassifyError::permanent(format!(
                    "Amazon ML returned binary scores {:?} without a score for \"1\" and without a label",
                    scores
                        .map(|s| s.keys().collect::<Vec<_>>())
                        .unwrap_or_default()
                ))),
            }
        }
        ModelKind::Multiclass => {
            let mut all = Vec::new();
            for (l, raw) in scores.into_iter().flatten() {
                all.push((Label::from(l.clone()), probability(l, *raw)?));
            }
            all.sort_by(|a, b| a.0.cmp(&b.0));
            match label {
                Some(l) => Ok(Prediction {
                    label: Label::from(l.to_string()),
                    scores: all,
                    positive_score: None,
                    decided_by: None,
                }),
                None => Prediction::from_scores(all).ok_or_else(|| {
                    ClassifyError::permanent("Amazon ML returned an empty MULTICLASS prediction")
                }),
            }
        }
    }
}

fn regression_error() -> ClassifyError {
    ClassifyError::permanent(
        "Amazon ML returned a REGRESSION prediction (a number, no label); \
         use a BINARY or MULTICLASS model with this classifier",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    fn pos() -> Label {
        Label::from_static("actionable")
    }
    fn neg() -> Label {
        Label::from_static("noise")
    }

    #[test]
    fn binary_uses_the_label_and_the_score_of_one() {
        let p = SdkPrediction::builder()
            .predicted_label("1")
            .predicted_scores("1", 0.75)
            .details(DetailsAttributes::PredictiveModelType, "BINARY")
            .details(DetailsAttributes::Algorithm, "SGD")
            .build();
        let got = map_prediction(&p, ModelKind::Binary, &pos(), &neg()).unwrap();
        assert_eq!(got.label, "actionable");
        assert_eq!(got.positive_score, Some(0.75));
        assert_eq!(got.score("noise"), Some(0.25));

        // A threshold of 0.3 set on the model: label "1" at 0.4 is kept.
        let p = SdkPrediction::builder()
            .predicted_label("1")
            .predicted_scores("1", 0.4)
            .build();
        let got = map_prediction(&p, ModelKind::Binary, &pos(), &neg()).unwrap();
        assert_eq!(got.label, "actionable");
        assert!((got.positive_score.unwrap() - 0.4).abs() < 1e-6);

        // One entry keyed by the predicted label "0": still the score of "1".
        let p = SdkPrediction::builder()
            .predicted_label("0")
            .predicted_scores("0", 0.125)
            .build();
        let got = map_prediction(&p, ModelKind::Binary, &pos(), &neg()).unwrap();
        assert_eq!(got.label, "noise");
        assert_eq!(got.positive_score, Some(0.125));

        // No label: by score.
        let p = SdkPrediction::builder().predicted_scores("1", 0.5).build();
        let got = map_prediction(&p, ModelKind::Binary, &pos(), &neg()).unwrap();
        assert_eq!(got.label, "actionable");

        // Label only.
        let p = SdkPrediction::builder().predicted_label("0").build();
        assert_eq!(
            map_prediction(&p, ModelKind::Binary, &pos(), &neg()).unwrap(),
            Prediction::label("noise")
        );
    }

    #[test]
    fn binary_rejects_odd_labels_and_scores() {
        let p = SdkPrediction::builder()
            .predicted_label("yes")
            .predicted_scores("1", 0.9)
            .build();
        let e = map_prediction(&p, ModelKind::Binary, &pos(), &neg()).unwrap_err();
        assert!(e.to_string().contains("\"yes\""), "{e}");
        let p = SdkPrediction::builder()
            .predicted_label("1")
            .predicted_scores("1", f32::NAN)
            .build();
        assert!(map_prediction(&p, ModelKind::Binary, &pos(), &neg()).is_err());
        let p = SdkPrediction::builder()
            .predicted_scores("a", 0.2)
            .predicted_scores("b", 0.8)
            .build();
        let e = map_prediction(&p, ModelKind::Binary, &pos(), &neg()).unwrap_err();
        assert!(!e.is_retryable());
    }

    #[test]
    fn multiclass_keeps_every_score_sorted() {
        let p = SdkPrediction::builder()
            .predicted_label("billing")
            .predicted_scores("outage", 0.25)
            .predicted_scores("billing", 0.625)
            .predicted_scores("other", 0.125)
            .details(DetailsAttributes::PredictiveModelType, "MULTICLASS")
            .build();
        // details override the kind given.
        let got = map_prediction(&p, ModelKind::Binary, &pos(), &neg()).unwrap();
        assert_eq!(got.label, "billing");
        assert_eq!(
            got.scores,
            vec![
                ("billing".into(), 0.625),
                ("other".into(), 0.125),
                ("outage".into(), 0.25)
            ]
        );
        assert_eq!(got.positive_score, None);
        let p = SdkPrediction::builder()
            .predicted_scores("a", 0.25)
            .predicted_scores("b", 0.75)
            .build();
        let got = map_prediction(&p, ModelKind::Multiclass, &pos(), &neg()).unwrap();
        assert_eq!(got.label, "b");
    }

    #[test]
    fn regression_and_empty_predictions_are_errors() {
        let p = SdkPrediction::builder()
            .predicted_value(3.5)
            .details(DetailsAttributes::PredictiveModelType, "REGRESSION")
            .build();
        let e = map_prediction(&p, ModelKind::Binary, &pos(), &neg()).unwrap_err();
        assert!(e.to_string().contains("REGRESSION"), "{e}");
        let p = SdkPrediction::builder().predicted_value(3.5).build();
        let e = map_prediction(&p, ModelKind::Multiclass, &pos(), &neg()).unwrap_err();
        assert!(e.to_string().contains("REGRESSION"), "{e}");
        let p = SdkPrediction::builder().build();
        assert!(map_prediction(&p, ModelKind::Multiclass, &pos(), &neg()).is_err());
    }
}
