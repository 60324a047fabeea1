//! Response mapping, pure: [`ResponseParser`] and [`JsonResponse`].

use serde_json::Value;

use crate::classify::{Label, Prediction};
use crate::error::ClassifyError;

/// Turns an `InvokeEndpoint` response body into one [`Prediction`] per item,
/// in the order the items were sent.
///
/// Implemented by [`JsonResponse`] and every
/// `Fn(&[u8], usize) -> Result<Vec<Prediction>, ClassifyError> + Send + Sync`.
pub trait ResponseParser: Send + Sync {
    /// The predictions in `body` for a request of `n_items` items. The
    /// classifier rejects a result whose length is not `n_items`.
    fn parse(&self, body: &[u8], n_items: usize) -> Result<Vec<Prediction>, ClassifyError>;
}

impl<F> ResponseParser for F
where
    F: Fn(&[u8], usize) -> Result<Vec<Prediction>, ClassifyError> + Send + Sync,
{
    fn parse(&self, body: &[u8], n_items: usize) -> Result<Vec<Prediction>, ClassifyError> {
        self(body, n_items)
    }
}

/// The default response parser, for JSON bodies.
///
/// Top-level shapes:
/// - `{"label": "…", "scores": {"a": 0.9, "b": 0.1}}`: one prediction (the
///   request must have been for one item). `label` may be a number; either
///   key may be missing but not both (without `label`, the most probable
///   class wins). `scores` may also be an array of probabilities in the
///   order of [`class_labels`](JsonResponse::class_labels).
/// - `{"predictions": [e, …]}`: one element per item, in order, where each
///   element is that object, a number (the probability of the positive
///   class of a binary model, see
///   [`binary_labels`](JsonResponse::binary_labels)), or an array of class
///   probabilities named by [`class_labels`](JsonResponse::class_labels).
///
/// Every probability must be a number in [0, 1]. When the scores name the
/// positive binary label, the prediction's `positive_score` is set, so a
/// threshold policy can use it. Any other body is a permanent error that
/// says what was found.
///
/// ```
/// use streamsift::sagemaker::{JsonResponse, ResponseParser};
/// let parser = JsonResponse::new().binary_labels("actionable", "noise");
/// let p = parser.parse(br#"{"predictions":[0.9, 0.2]}"#, 2).unwrap();
/// assert_eq!(p[0].label, "actionable");
/// assert_eq!(p[1].positive_score, Some(0.2));
/// ```
#[derive(Clone, Debug)]
pub struct JsonResponse {
    positive: Label,
    negative: Label,
    classes: Vec<Label>,
}

impl Default for JsonResponse {
    fn default() -> Self {
        JsonResponse::new()
    }
}

impl JsonResponse {
    /// Binary labels `"1"` (positive) and `"0"`, as Amazon ML and SageMaker's
    /// binary built-in algorithms name them, and no class labels.
    pub fn new() -> Self {
        JsonResponse {
            positive: Label::from_static("1"),
            negative: Label::from_static("0"),
            classes: Vec::new(),
        }
    }

    /// The labels of a binary model whose predictions are a single number,
    /// the probability of `positive`.
    pub fn binary_labels(mut self, positive: impl Into<Label>, negative: impl Into<Label>) -> Self {
        self.positive = positive.into();
        self.negative = negative.into();
        self
    }

    /// The class names, in the order of the probabilities of a model whose
    /// predictions are arrays (`[0.1, 0.7, 0.2]`).
    pub fn class_labels(mut self, labels: impl IntoIterator<Item = impl Into<Label>>) -> Self {
        self.classes = labels.into_iter().map(Into::into).collect();
        self
    }

    fn probability(&self, v: &Value, what: &str) -> Result<f64, String> {
        match v.as_f64() {
            Some(p) if p.is_finite() && (0.0..=1.0).contains(&p) => Ok(p),
            Some(p) => Err(format!(
                "expected {what} to be a probability in [0, 1], found {p}; \
                 a model that returns raw scores or logits needs a custom response parser"
            )),
            None => Err(format!(
                "expected {what} to be a number, found {}",
                crate::util::json_kind(v)
            )),
        }
    }

    fn class_scores(&self, values: &[Value]) -> Result<Vec<(Label, f64)>, String> {
        if self.classes.is_empty() {
            return Err(format!(
                "found an array of {} class probabilities but no class names: \
                 configure them with JsonResponse::class_labels, in the model's output order",
                values.len()
            ));
        }
        if values.len() != self.classes.len() {
            return Err(format!(
                "expected {} class probabilities ({}), found {}",
                self.classes.len(),
                self.classes
                    .iter()
                    .map(Label::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                values.len()
            ));
        }
        self.classes
            .iter()
            .zip(values)
            .map(|(label, v)| {
                let p = self.probability(v, &format!("the score of {label:?}"))?;
                Ok((label.clone(), p))
            })
            .collect()
    }

    fn object(&self, map: &serde_json::Map<String, Value>) -> Result<Prediction, String> {
        let label = match map.get("label") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => {
                return Err("expected a non-empty \"label\", found \"\"".to_string());
            }
            Some(Value::String(s)) => Some(Label::from(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(Label::from(v.to_string())),
            Some(v) => {
                return Err(format!(
                    "expected \"label\" to be a string or a number, found {}",
                    crate::util::json_kind(v)
                ));
            }
        };
        let scores = match map.get("scores") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(scores)) => scores
                .iter()
                .map(|(k, v)| {
                    let p = self.probability(v, &format!("the score of {k:?}"))?;
                    Ok((Label::from(k.clone()), p))
                })
                .collect::<Result<Vec<_>, String>>()?,
            Some(Value::Array(values)) => self.class_scores(values)?,
            Some(v) => {
                return Err(format!(
                    "expected \"scores\" to be an object of label to probability, found {}",
                    crate::util::json_kind(v)
                ));
            }
        };
        let positive_score = scores
            .iter()
            .find(|(l, _)| *l == self.positive)
            .map(|(_, s)| *s);
        let mut prediction = match label {
            Some(label) => Prediction {
                label,
                scores,
                positive_score: None,
                decided_by: None,
            },
            None => Prediction::from_scores(scores).ok_or_else(|| {
                "expected an object with \"label\" or \"scores\", found neither".to_string()
            })?,
        };
        prediction.positive_score = positive_score;
        Ok(prediction)
    }

    fn element(&self, v: &Value) -> Result<Prediction, String> {
        match v {
            Value::Number(_) => {
                let p = self.probability(v, "a binary prediction")?;
                Ok(Prediction::binary(
                    self.positive.clone(),
                    self.negative.clone(),
                    p,
                ))
            }
            Value::Array(values) => Prediction::from_scores(self.class_scores(values)?)
                .ok_or_else(|| "expected class probabilities, found an empty array".to_string()),
            Value::Object(map) => self.object(map),
            other => Err(format!(
                "expected an object, a number or an array of probabilities, found {}",
                crate::util::json_kind(other)
            )),
        }
    }
}

impl ResponseParser for JsonResponse {
    fn parse(&self, body: &[u8], n_items: usize) -> Result<Vec<Prediction>, ClassifyError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ClassifyError::permanent(format!(
                "expected a JSON response body, found {}: {e}; set a response parser for the \
                 model's output format, or Accept it as JSON",
                excerpt(body)
            ))
            .with_source(e)
        })?;
        let predictions = match &value {
            Value::Object(map) => match map.get("predictions") {
                Some(Value::Array(list)) => list
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        self.element(e).map_err(|m| {
                            ClassifyError::permanent(format!("prediction {i} of the response: {m}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(other) => {
                    return Err(ClassifyError::permanent(format!(
                        "expected \"predictions\" to be an array, found {}",
                        crate::util::json_kind(other)
                    )));
                }
                None => vec![self.object(map).map_err(|m| {
                    ClassifyError::permanent(format!(
                        "the response {}: {m}; expected {{\"label\":…, \"scores\":{{…}}}} \
                         or {{\"predictions\":[…]}}",
                        excerpt(body)
                    ))
                })?],
            },
            other => {
                return Err(ClassifyError::permanent(format!(
                    "expected a JSON object ({{\"label\":…, \"scores\":{{…}}}} or \
                     {{\"predictions\":[…]}}), found {}: {}",
                    crate::util::json_kind(other),
                    excerpt(body)
                )));
            }
        };
        check_count(predictions.len(), n_items)?;
        Ok(predictions)
    }
}

/// An error unless the endpoint answered once per item.
pub(super) fn check_count(found: usize, expected: usize) -> Result<(), ClassifyError> {
    if found == expected {
        return Ok(());
    }
    let advice = if expected > 1 {
        "; if the model does not take several instances per request, use max_batch_size(1)"
    } else {
        ""
    };
    Err(ClassifyError::permanent(format!(
        "the endpoint returned {found} predictions for {expected} items{advice}"
    )))
}

/// The start of a body, for error messages.
pub(super) fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    if body.len() > MAX {
        format!("{text:?}… ({} bytes)", body.len())
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(parser: &JsonResponse, body: &str, n: usize) -> Result<Vec<Prediction>, String> {
        parser.parse(body.as_bytes(), n).map_err(|e| e.to_string())
    }

    #[test]
    fn single_object_with_label_and_scores() {
        let parser = JsonResponse::new().binary_labels("actionable", "noise");
        let p = parse(
            &parser,
            r#"{"label":"actionable","scores":{"actionable":0.8,"noise":0.2}}"#,
            1,
        )
        .unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].label, "actionable");
        assert_eq!(p[0].score("noise"), Some(0.2));
        assert_eq!(p[0].positive_score, Some(0.8));
        // Without a label, the most probable class wins.
        let p = parse(&parser, r#"{"scores":{"a":0.3,"b":0.7}}"#, 1).unwrap();
        assert_eq!(p[0].label, "b");
        assert_eq!(p[0].positive_score, None);
        // A numeric label becomes text; no scores is fine.
        let p = parse(&JsonResponse::new(), r#"{"label":1}"#, 1).unwrap();
        assert_eq!(p[0], Prediction::label("1"));
    }

    #[test]
    fn predictions_of_numbers_arrays_and_objects() {
        let parser = JsonResponse::new()
            .binary_labels("actionable", "noise")
            .class_labels(["billing", "delivery", "other"]);
        let p = parse(&parser, r#"{"predictions":[0.25, 1]}"#, 2).unwrap();
        assert_eq!(p[0], Prediction::binary("actionable", "noise", 0.25));
        assert_eq!(p[1].label, "actionable");
        let p = parse(
            &parser,
            r#"{"predictions":[[0.1,0.7,0.2],{"label":"other","scores":[0.2,0.2,0.6]}]}"#,
            2,
        )
        .unwrap();
        assert_eq!(p[0].label, "delivery");
        assert_eq!(p[0].confidence(), Some(0.7));
        assert_eq!(p[1].label, "other");
        assert_eq!(p[1].score("billing"), Some(0.2));
    }

    #[test]
    fn malformed_responses_say_what_was_found() {
        let parser = JsonResponse::new();
        let err = parser.parse(b"0.87\n", 1).unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("found a number"), "{err}");
        let err = parse(&parser, "not json", 1).unwrap_err();
        assert!(err.contains("expected a JSON response body"), "{err}");
        let err = parse(&parser, r#"{"predictions":[[0.5,0.5]]}"#, 1).unwrap_err();
        assert!(err.contains("JsonResponse::class_labels"), "{err}");
        let err = parse(&parser, r#"{"predictions":[1.7]}"#, 1).unwrap_err();
        assert!(err.contains("probability in [0, 1], found 1.7"), "{err}");
        let err = parse(&parser, r#"{"predictions":["yes"]}"#, 1).unwrap_err();
        assert!(
            err.contains("prediction 0") && err.contains("found a string"),
            "{err}"
        );
        let err = parse(&parser, r#"{"answer":"yes"}"#, 1).unwrap_err();
        assert!(err.contains("found neither"), "{err}");
        let err = parse(&parser, r#"{"predictions":{"a":1}}"#, 1).unwrap_err();
        assert!(err.contains("to be an array, found an object"), "{err}");
        let err = parse(&parser, r#"{"label":"a","scores":{"a":"high"}}"#, 1).unwrap_err();
        assert!(err.contains("found a string"), "{err}");
        let classes = JsonResponse::new().class_labels(["a", "b"]);
        let err = parse(&classes, r#"{"predictions":[[0.2,0.3,0.5]]}"#, 1).unwrap_err();
        assert!(
            err.contains("expected 2 class probabilities (a, b), found 3"),
            "{err}"
        );
    }

    #[test]
    fn wrong_prediction_count_is_permanent_and_says_what_to_do() {
        let err = JsonResponse::new()
            .parse(br#"{"predictions":[0.1,0.2]}"#, 3)
            .unwrap_err();
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            text.contains("returned 2 predictions for 3 items"),
            "{text}"
        );
        assert!(text.contains("max_batch_size(1)"), "{text}");
        let err = JsonResponse::new()
            .parse(br#"{"label":"a"}"#, 2)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("returned 1 predictions for 2 items")
        );
    }
}
