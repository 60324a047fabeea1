//! A SageMaker endpoint as a [`Classifier`]. Feature `sagemaker`.
//!
//! [`SageMakerClassifier`] calls `InvokeEndpoint` on a realtime endpoint.
//! What goes over the wire is pluggable at both ends:
//!
//! - a [`RequestBuilder`] turns one or more items into the request body.
//!   [`JsonRequest`] (the default, `application/json`) sends the item's JSON,
//!   or `{"instances":[…]}` for a batch; [`CsvRequest`] (`text/csv`) sends one
//!   line per item with the fields you choose. Any
//!   `Fn(&[&T]) -> Result<Bytes, ClassifyError>` works too.
//! - a [`ResponseParser`] turns the response body into one [`Prediction`] per
//!   item. [`JsonResponse`] (the default) understands
//!   `{"label":…, "scores":{…}}` and `{"predictions":[…]}`, whose elements are
//!   that object, a number (a binary probability) or an array of class
//!   probabilities. Any `Fn(&[u8], usize) -> Result<Vec<Prediction>,
//!   ClassifyError>` works too.
//!
//! [`classify_batch`](Classifier::classify_batch) sends up to
//! [`max_batch_size`](SageMakerClassifierBuilder::max_batch_size) items per
//! call. The default is 1 (one call per item), because whether a model
//! accepts several instances in one body depends on its container; raise it
//! for a model that does (TensorFlow Serving, most JSON-in/JSON-out
//! containers, CSV models that read one row per line).
//!
//! # Micro-batching
//!
//! A [`Pipeline`](crate::Pipeline) calls [`classify`](Classifier::classify)
//! once per record, several at a time (up to its `max_in_flight`). With
//! `max_batch_size` over 1, those concurrent calls on one classifier (or its
//! clones) are micro-batched: the first call to arrive waits up to
//! [`linger`](SageMakerClassifierBuilder::linger) (default 2 ms) for others,
//! or until `max_batch_size` are waiting, and they go out as one
//! `InvokeEndpoint` call, built and parsed as `classify_batch` does. Each
//! caller gets the result for its own item; an error for a batch reaches
//! that batch's callers only. At most
//! [`concurrency`](SageMakerClassifierBuilder::concurrency) batches are in
//! flight; calls that arrive meanwhile wait and fill the next batch. A
//! batch whose body is over
//! [`max_payload_bytes`](SageMakerClassifierBuilder::max_payload_bytes) is
//! sent in halves (down to single items), and a batch the model refuses is
//! classified item by item when
//! [`split_failed_batches`](SageMakerClassifierBuilder::split_failed_batches)
//! is on (its error reaches all of the batch's callers when it is off). A
//! caller that gives up (its future dropped) is left out of the batch, or
//! its answer discarded, without affecting the others.
//!
//! The batches are gathered by the crate's one micro-batcher (the SNS
//! router's too), with one rule: a bounded queue (1,024 waiting calls; more
//! wait for room), a free call slot taken before a batch is gathered, and a
//! batch sent when full or when its linger is over. Its background task is
//! started on the current Tokio runtime by the first call and ended when
//! the last clone of the classifier is dropped; if that runtime shuts down,
//! every call still waiting fails with a retryable error and the next call
//! starts a new task; each item is cloned into it, so micro-batching
//! needs `T: Clone`. A pipeline with `max_in_flight` below
//! `max_batch_size` never fills a batch: every batch then waits the full
//! linger. With `max_batch_size(1)` (the default), `classify` makes its
//! call directly, with no task and no added latency.
//!
//! # Retries
//!
//! Retries are decided in one place, the pipeline's `RetryPolicy`: both
//! constructors ([`builder`](SageMakerClassifier::builder),
//! [`builder_from_client`](SageMakerClassifier::builder_from_client)) turn
//! the SDK's own retries off, and the classifier retries nothing itself.
//! Worst case, `InvokeEndpoint` calls that carry one record:
//!
//! | pipeline attempts | classifier attempts | SDK attempts | calls per record |
//! |---|---|---|---|
//! | 5 (default `RetryPolicy`) | 1 | 1 (off) | **5** |
//! | *p* | 1 | 1 | *p* |
//!
//! A batch the model refuses as a whole (a permanent error) is sent again
//! item by item when `split_failed_batches` is on: one more call for that
//! record, once, since a permanent error is not retried by the pipeline.
//!
//! # Start-up check
//!
//! The runtime API (`aws-sdk-sagemakerruntime`) has no call that checks an
//! endpoint without invoking its model (`DescribeEndpoint` is in the control
//! plane's crate, `aws-sdk-sagemaker`, which this crate does not depend
//! on), and an invocation can have side effects and costs. So
//! [`build`](SageMakerClassifierBuilder::build) makes no call: an endpoint
//! that does not exist shows up on the first record as a permanent
//! `ValidationError` whose message says what to check. To check it before
//! the first record, call `DescribeEndpoint` yourself (permission
//! `sagemaker:DescribeEndpoint`) and expect `EndpointStatus: InService`.
//!
//! # Errors
//!
//! Errors are mapped onto [`ClassifyError`] by [`map_invoke_error`], through
//! the classification every AWS backend shares
//! ([`AwsFailure::from_sdk`](crate::aws::AwsFailure::from_sdk)):
//! throttling, 5xx, `ServiceUnavailable`, `InternalFailure`, expired
//! credentials and SageMaker's own `ModelNotReadyException` are retryable;
//! `ValidationError` and a failing model container (`ModelError`) are
//! permanent, with the model's own message and its CloudWatch log stream in
//! the text.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sagemakerruntime::Client;
use aws_sdk_sagemakerruntime::config::retry::RetryConfig;
use aws_sdk_sagemakerruntime::error::SdkError;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use aws_sdk_sagemakerruntime::primitives::Blob;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde::Serialize;
use serde_json::Value;

use crate::aws::{AwsErrorKind, AwsFailure};
use crate::classify::{Classifier, Label, Prediction};
use crate::error::{BoxError, ClassifyError};

mod batcher;

use batcher::{StartBatcher, Submit};

/// The content type of [`JsonRequest`] bodies, and the default `Accept`.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// The content type of [`CsvRequest`] bodies.
pub const CONTENT_TYPE_CSV: &str = "text/csv";
/// The largest request body `InvokeEndpoint` takes on a realtime endpoint:
/// 6 MB (6,291,456 bytes, the `Body` length limit in the API reference).
/// Serverless endpoints take 4 MB; set
/// [`max_payload_bytes`](SageMakerClassifierBuilder::max_payload_bytes).
pub const MAX_PAYLOAD_BYTES: usize = 6_291_456;

/// How long a micro-batch waits for more items, unless
/// [`linger`](SageMakerClassifierBuilder::linger) says otherwise.
const DEFAULT_LINGER: Duration = Duration::from_millis(2);

/// Turns a batch of one or more items into an `InvokeEndpoint` request body.
///
/// Implemented by [`JsonRequest`], [`CsvRequest`] and every
/// `Fn(&[&T]) -> Result<Bytes, ClassifyError> + Send + Sync`.
pub trait RequestBuilder<T>: Send + Sync {
    /// The body for `items` (never empty). An error here is the item's
    /// error: make it permanent when the item cannot be encoded.
    fn build(&self, items: &[&T]) -> Result<Bytes, ClassifyError>;
}

impl<T, F> RequestBuilder<T> for F
where
    F: Fn(&[&T]) -> Result<Bytes, ClassifyError> + Send + Sync,
{
    fn build(&self, items: &[&T]) -> Result<Bytes, ClassifyError> {
        self(items)
    }
}

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

/// The default request body: the item's JSON for one item, and
/// `{"instances":[item, …]}` for a batch of several (the shape TensorFlow
/// Serving and most JSON model servers take).
///
/// ```
/// use streamsift::sagemaker::{JsonRequest, RequestBuilder};
/// let (a, b) = (serde_json::json!({"text": "hi"}), serde_json::json!({"text": "yo"}));
/// assert_eq!(&JsonRequest::new().build(&[&a]).unwrap()[..], br#"{"text":"hi"}"#);
/// assert_eq!(
///     &JsonRequest::new().build(&[&a, &b]).unwrap()[..],
///     br#"{"instances":[{"text":"hi"},{"text":"yo"}]}"#
/// );
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonRequest {
    always_instances: bool,
}

impl JsonRequest {
    /// The item alone for one item, `{"instances":[…]}` for several.
    pub fn new() -> Self {
        JsonRequest::default()
    }

    /// `{"instances":[…]}` even for a single item, for a model that only
    /// takes that shape.
    pub fn always_instances() -> Self {
        JsonRequest {
            always_instances: true,
        }
    }
}

impl<T: Serialize> RequestBuilder<T> for JsonRequest {
    fn build(&self, items: &[&T]) -> Result<Bytes, ClassifyError> {
        let encoded = match items {
            [one] if !self.always_instances => serde_json::to_vec(one),
            _ => {
                #[derive(Serialize)]
                struct Instances<'a, T> {
                    instances: &'a [&'a T],
                }
                serde_json::to_vec(&Instances { instances: items })
            }
        };
        encoded.map(Bytes::from).map_err(|e| {
            ClassifyError::permanent(format!(
                "could not encode the item as JSON for the SageMaker request: {e}; \
                 check the item's Serialize impl (maps need string keys)"
            ))
            .with_source(e)
        })
    }
}

/// A CSV request body: one line per item, one cell per chosen field, no
/// header line (what SageMaker's CSV models, XGBoost and Linear Learner
/// among them, expect).
///
/// The item is serialised to JSON first and each field is looked up by a
/// dotted path (`"user.followers_count"`). Strings are written as they are
/// (quoted when they hold a comma, a quote or a line break), numbers as
/// text, booleans as `1` and `0`, and a null or missing field as an empty
/// cell. A field that is an object or an array is an error: choose a field
/// inside it.
///
/// ```
/// use streamsift::sagemaker::{CsvRequest, RequestBuilder};
/// let csv = CsvRequest::new(["text", "user.followers", "verified"]);
/// let a = serde_json::json!({"text": "hi, there", "user": {"followers": 12}, "verified": true});
/// let b = serde_json::json!({"text": "yo", "user": {}});
/// let body = csv.build(&[&a, &b]).unwrap();
/// assert_eq!(&body[..], b"\"hi, there\",12,1\nyo,,\n");
/// ```
#[derive(Clone, Debug)]
pub struct CsvRequest {
    fields: Vec<String>,
}

impl CsvRequest {
    /// Writes `fields` (dotted paths into the item's JSON), in this order.
    pub fn new(fields: impl IntoIterator<Item = impl Into<String>>) -> Self {
        CsvRequest {
            fields: fields.into_iter().map(Into::into).collect(),
        }
    }

    /// The fields, in column order.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    fn cell(&self, item: &Value, field: &str) -> Result<String, ClassifyError> {
        let Some(at) = crate::util::json_path(item, field.split('.')) else {
            return Ok(String::new());
        };
        match at {
            Value::Null => Ok(String::new()),
            Value::Bool(b) => Ok(if *b { "1" } else { "0" }.to_string()),
            Value::Number(n) => Ok(n.to_string()),
            Value::String(s) => Ok(s.clone()),
            Value::Array(_) | Value::Object(_) => Err(ClassifyError::permanent(format!(
                "CSV field {field:?} is {}, but a CSV cell must be a string, number or boolean; \
                 choose a field inside it (a dotted path such as \"{field}.name\") \
                 or use a custom request builder",
                crate::util::json_kind(at)
            ))),
        }
    }
}

impl<T: Serialize> RequestBuilder<T> for CsvRequest {
    fn build(&self, items: &[&T]) -> Result<Bytes, ClassifyError> {
        if self.fields.is_empty() {
            return Err(ClassifyError::permanent(
                "CsvRequest has no fields: name the item fields to send, in the order the model was trained on",
            ));
        }
        let mut out = csv::WriterBuilder::new()
            .has_headers(false)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        for item in items {
            let value = serde_json::to_value(item).map_err(|e| {
                ClassifyError::permanent(format!(
                    "could not encode the item for the CSV request: {e}"
                ))
                .with_source(e)
            })?;
            let row = self
                .fields
                .iter()
                .map(|f| self.cell(&value, f))
                .collect::<Result<Vec<_>, _>>()?;
            out.write_record(&row).map_err(|e| {
                ClassifyError::permanent(format!("could not write a CSV line: {e}")).with_source(e)
            })?;
        }
        let bytes = out
            .into_inner()
            .map_err(|e| ClassifyError::permanent(format!("could not finish the CSV body: {e}")))?;
        Ok(Bytes::from(bytes))
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
fn check_count(found: usize, expected: usize) -> Result<(), ClassifyError> {
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
fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    if body.len() > MAX {
        format!("{text:?}… ({} bytes)", body.len())
    } else {
        format!("{text:?}")
    }
}

/// The modeled `Message` field of an `InvokeEndpoint` error.
fn modeled_message(err: &InvokeEndpointError) -> Option<&str> {
    match err {
        InvokeEndpointError::ModelError(e) => e.message(),
        InvokeEndpointError::ValidationError(e) => e.message(),
        InvokeEndpointError::ServiceUnavailable(e) => e.message(),
        InvokeEndpointError::InternalFailure(e) => e.message(),
        InvokeEndpointError::InternalDependencyException(e) => e.message(),
        InvokeEndpointError::ModelNotReadyException(e) => e.message(),
        _ => None,
    }
}

/// SageMaker's own hints, after the shared classification.
fn advice(failure: &AwsFailure) -> &'static str {
    if failure.has_code("ValidationError") {
        return "check the endpoint name, the region, and the content type and body the model \
                expects (an endpoint that does not exist or is not InService is reported this way)";
    }
    match failure.kind {
        AwsErrorKind::AccessDenied => {
            "grant sagemaker:InvokeEndpoint on the endpoint's ARN to this role, and check its region"
        }
        AwsErrorKind::ExpiredCredentials | AwsErrorKind::NotFound => failure.kind.hint(),
        _ => "see the message",
    }
}

/// Maps an `InvokeEndpoint` failure on `endpoint` onto a [`ClassifyError`],
/// keeping the SDK error as its source.
///
/// - `ThrottlingException` (and other throttling codes, or HTTP 429):
///   [`Throttled`](ClassifyError::Throttled).
/// - `ServiceUnavailable`, `InternalFailure`, `InternalDependencyException`,
///   any 5xx, `ModelNotReadyException` (a serverless variant still
///   provisioning, a multi-model endpoint still loading), timeouts and
///   connection failures: [`Unavailable`](ClassifyError::Unavailable).
/// - `ModelError` (the model container answered with an error): permanent,
///   with the model's own status and message and the CloudWatch log stream;
///   unless the container's status was 429 (throttled) or 502, 503, 504
///   (unavailable), which say it was overloaded rather than that the input
///   was bad.
/// - `ValidationError` and everything else: permanent, with the message and
///   what to check.
pub fn map_invoke_error(endpoint: &str, err: SdkError<InvokeEndpointError>) -> ClassifyError {
    let op = format!("InvokeEndpoint on endpoint {endpoint:?}");
    if let SdkError::ServiceError(service) = &err
        && let InvokeEndpointError::ModelError(model) = service.err()
    {
        let message = model.message().unwrap_or("");
        let original = model.original_status_code();
        let mut text = format!("{op}: the model container failed (ModelError): {message}");
        if let Some(status) = original {
            text.push_str(&format!("; the model answered HTTP {status}"));
        }
        if let Some(said) = model.original_message().filter(|m| !m.is_empty()) {
            text.push_str(&format!(": {said}"));
        }
        if let Some(logs) = model.log_stream_arn() {
            text.push_str(&format!("; its logs are in {logs}"));
        }
        return match original {
            Some(429) => ClassifyError::throttled(text).with_source(err),
            Some(502..=504) => ClassifyError::unavailable(text).with_source(err),
            _ => {
                text.push_str(
                    "; the input or the model is at fault: check the request format the \
                     model expects, and its logs",
                );
                ClassifyError::permanent(text).with_source(err)
            }
        };
    }
    let mut failure = AwsFailure::from_sdk(&err);
    if let SdkError::ServiceError(service) = &err
        && failure.message.is_empty()
    {
        // The modeled `Message` field, when the metadata has none.
        failure.message = modeled_message(service.err()).unwrap_or("").to_owned();
    }
    let text = if failure.has_code("ModelNotReadyException") {
        // A serverless variant still provisioning, a multi-model endpoint
        // still loading: SageMaker's own transient code.
        return ClassifyError::unavailable(format!(
            "{op}: {failure}; the model is still loading or provisioning, the call will be retried"
        ))
        .with_source(err);
    } else if failure.kind.is_retryable() {
        format!("{op}: {failure}")
    } else {
        format!("{op}: {failure}; {}", advice(&failure))
    };
    failure.kind.classify_error(text).with_source(err)
}

/// The answer of a `classify` call whose micro-batch was never sent.
fn batcher_stopped() -> ClassifyError {
    ClassifyError::unavailable(
        "the SageMaker micro-batcher stopped before answering (the Tokio runtime it ran on \
         shut down); retry the call",
    )
}

/// Prefixes an error's message with where it happened, keeping its class
/// and source.
fn in_context(err: ClassifyError, context: &str) -> ClassifyError {
    match err {
        ClassifyError::Throttled { message, source } => ClassifyError::Throttled {
            message: format!("{context}: {message}"),
            source,
        },
        ClassifyError::Unavailable { message, source } => ClassifyError::Unavailable {
            message: format!("{context}: {message}"),
            source,
        },
        ClassifyError::Permanent { message, source } => ClassifyError::Permanent {
            message: format!("{context}: {message}"),
            source,
        },
        timeout @ ClassifyError::Timeout(_) => timeout,
    }
}

/// One error for each of `n` items of a failed batch: the same class and
/// message, the source shared (an `Arc` around the original).
fn replicate(err: ClassifyError, n: usize) -> Vec<ClassifyError> {
    type Shared = Arc<dyn StdError + Send + Sync + 'static>;
    let share = |source: Option<BoxError>| source.map(Shared::from);
    let again = |source: &Option<Shared>| source.clone().map(|s| Box::new(s) as BoxError);
    match err {
        ClassifyError::Throttled { message, source } => {
            let source = share(source);
            (0..n)
                .map(|_| ClassifyError::Throttled {
                    message: message.clone(),
                    source: again(&source),
                })
                .collect()
        }
        ClassifyError::Unavailable { message, source } => {
            let source = share(source);
            (0..n)
                .map(|_| ClassifyError::Unavailable {
                    message: message.clone(),
                    source: again(&source),
                })
                .collect()
        }
        ClassifyError::Permanent { message, source } => {
            let source = share(source);
            (0..n)
                .map(|_| ClassifyError::Permanent {
                    message: message.clone(),
                    source: again(&source),
                })
                .collect()
        }
        ClassifyError::Timeout(d) => (0..n).map(|_| ClassifyError::Timeout(d)).collect(),
    }
}

/// Why an `InvokeEndpoint` call gave no predictions, and whether sending the
/// batch's items in smaller groups may succeed where the batch did not.
struct Failure {
    error: ClassifyError,
    refusal: Refusal,
}

/// How a batch of several items was refused as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Not refused as a batch (or a single item): smaller groups would fail
    /// the same way.
    None,
    /// The body was over `max_payload_bytes`: smaller groups may fit.
    TooLarge,
    /// The model or the service rejected the body (`ModelError`,
    /// `ValidationError`): one bad item may be the cause.
    Invalid,
}

impl From<ClassifyError> for Failure {
    fn from(error: ClassifyError) -> Self {
        Failure {
            error,
            refusal: Refusal::None,
        }
    }
}

/// A SageMaker realtime endpoint as a [`Classifier`].
///
/// Cloning is cheap (the client and the codecs are shared). See the
/// [module docs](self) for the request and response formats, batching and
/// error mapping.
///
/// ```no_run
/// # async fn demo() {
/// use streamsift::Classifier;
/// use streamsift::sagemaker::{JsonResponse, SageMakerClassifier};
///
/// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let classifier = SageMakerClassifier::<serde_json::Value>::builder(&config, "tweet-triage")
///     .response(JsonResponse::new().binary_labels("actionable", "noise"))
///     .max_batch_size(16)
///     .build();
/// let tweet = serde_json::json!({"text": "my order never arrived"});
/// let prediction = classifier.classify(&tweet).await;
/// # }
/// ```
pub struct SageMakerClassifier<T> {
    inner: Arc<Inner<T>>,
    /// The micro-batcher `classify` goes through when `max_batch_size` > 1.
    /// Only the classifier (and its clones) hold it: when the last one is
    /// dropped, its queue closes and its task ends.
    batcher: Option<Arc<dyn Submit<T>>>,
}

/// What a call needs: the client, the endpoint, the codecs and the limits.
struct Inner<T> {
    client: Client,
    endpoint_name: String,
    content_type: String,
    accept: String,
    request: Arc<dyn RequestBuilder<T>>,
    response: Arc<dyn ResponseParser>,
    max_batch_size: usize,
    concurrency: usize,
    max_payload_bytes: usize,
    split_failed_batches: bool,
    target_variant: Option<String>,
    target_model: Option<String>,
    linger: Duration,
}

impl<T> Clone for SageMakerClassifier<T> {
    fn clone(&self) -> Self {
        SageMakerClassifier {
            inner: Arc::clone(&self.inner),
            batcher: self.batcher.clone(),
        }
    }
}

impl<T> fmt::Debug for SageMakerClassifier<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client (and its credentials) is left out on purpose.
        let i = &self.inner;
        f.debug_struct("SageMakerClassifier")
            .field("endpoint_name", &i.endpoint_name)
            .field("content_type", &i.content_type)
            .field("accept", &i.accept)
            .field("max_batch_size", &i.max_batch_size)
            .field("micro_batching", &self.batcher.is_some())
            .field("linger", &i.linger)
            .field("concurrency", &i.concurrency)
            .field("max_payload_bytes", &i.max_payload_bytes)
            .field("split_failed_batches", &i.split_failed_batches)
            .field("target_variant", &i.target_variant)
            .field("target_model", &i.target_model)
            .finish_non_exhaustive()
    }
}

/// Configures a [`SageMakerClassifier`]; see
/// [`SageMakerClassifier::builder`].
pub struct SageMakerClassifierBuilder<T> {
    inner: Inner<T>,
    /// Starts the micro-batcher; set by `max_batch_size`, where `T: Clone +
    /// Send` is known.
    batcher: Option<StartBatcher<T>>,
}

impl<T> fmt::Debug for SageMakerClassifierBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SageMakerClassifierBuilder")
            .field("endpoint_name", &self.inner.endpoint_name)
            .field("content_type", &self.inner.content_type)
            .field("max_batch_size", &self.inner.max_batch_size)
            .field("linger", &self.inner.linger)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + 'static> SageMakerClassifier<T> {
    /// A builder for endpoint `endpoint_name` whose client is made from
    /// `config` with the SDK's own retries turned off, with the defaults: a
    /// [`JsonRequest`] sent as `application/json`, `Accept:
    /// application/json`, a [`JsonResponse`], one item per call, four calls
    /// at a time in [`classify_batch`](Classifier::classify_batch), and the
    /// 6 MB payload limit.
    pub fn builder(
        config: &aws_config::SdkConfig,
        endpoint_name: impl Into<String>,
    ) -> SageMakerClassifierBuilder<T> {
        Self::builder_from_client(Client::new(config), endpoint_name)
    }

    /// A builder that calls through `client` (its configuration is kept,
    /// except for retries, which are turned off), with the defaults of
    /// [`builder`](SageMakerClassifier::builder).
    pub fn builder_from_client(
        client: Client,
        endpoint_name: impl Into<String>,
    ) -> SageMakerClassifierBuilder<T> {
        SageMakerClassifierBuilder::new(
            client,
            endpoint_name,
            CONTENT_TYPE_JSON,
            JsonRequest::new(),
        )
    }
}

impl<T: 'static> SageMakerClassifier<T> {
    /// A builder for items that are not `Serialize`: `request` builds the
    /// body, sent with `content_type`. The other defaults are those of
    /// [`builder`](SageMakerClassifier::builder).
    pub fn builder_with_request(
        config: &aws_config::SdkConfig,
        endpoint_name: impl Into<String>,
        content_type: impl Into<String>,
        request: impl RequestBuilder<T> + 'static,
    ) -> SageMakerClassifierBuilder<T> {
        SageMakerClassifierBuilder::new(Client::new(config), endpoint_name, content_type, request)
    }

    /// The endpoint this classifier calls.
    pub fn endpoint_name(&self) -> &str {
        &self.inner.endpoint_name
    }
}

impl<T: 'static> SageMakerClassifierBuilder<T> {
    fn new(
        client: Client,
        endpoint_name: impl Into<String>,
        content_type: impl Into<String>,
        request: impl RequestBuilder<T> + 'static,
    ) -> Self {
        let conf = client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled());
        SageMakerClassifierBuilder {
            inner: Inner {
                client: Client::from_conf(conf.build()),
                endpoint_name: endpoint_name.into(),
                content_type: content_type.into(),
                accept: CONTENT_TYPE_JSON.to_string(),
                request: Arc::new(request),
                response: Arc::new(JsonResponse::new()),
                max_batch_size: 1,
                concurrency: 4,
                max_payload_bytes: MAX_PAYLOAD_BYTES,
                split_failed_batches: true,
                target_variant: None,
                target_model: None,
                linger: DEFAULT_LINGER,
            },
            batcher: None,
        }
    }
}

impl<T: Serialize + 'static> SageMakerClassifierBuilder<T> {
    /// Sends a [`CsvRequest`] of `fields` as `text/csv`.
    pub fn csv(self, fields: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.request(CONTENT_TYPE_CSV, CsvRequest::new(fields))
    }

    /// Sends a [`JsonRequest`] as `application/json` (the default).
    pub fn json(self) -> Self {
        self.request(CONTENT_TYPE_JSON, JsonRequest::new())
    }
}

impl<T: 'static> SageMakerClassifierBuilder<T> {
    /// Replaces the request builder, and the content type sent with it.
    pub fn request(
        mut self,
        content_type: impl Into<String>,
        request: impl RequestBuilder<T> + 'static,
    ) -> Self {
        self.inner.content_type = content_type.into();
        self.inner.request = Arc::new(request);
        self
    }

    /// The `Accept` header (default `application/json`).
    pub fn accept(mut self, accept: impl Into<String>) -> Self {
        self.inner.accept = accept.into();
        self
    }

    /// Replaces the response parser (default [`JsonResponse::new`]).
    pub fn response(mut self, parser: impl ResponseParser + 'static) -> Self {
        self.inner.response = Arc::new(parser);
        self
    }

    /// How many calls [`classify_batch`](Classifier::classify_batch) makes
    /// at a time, and how many micro-batches are in flight at once (default
    /// 4; 0 counts as 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.inner.concurrency = n.max(1);
        self
    }

    /// The largest request body to send (default [`MAX_PAYLOAD_BYTES`]).
    /// A micro-batch whose body is larger is sent in halves (down to single
    /// items); a single item whose body is larger fails, before sending,
    /// with a permanent error.
    pub fn max_payload_bytes(mut self, n: usize) -> Self {
        self.inner.max_payload_bytes = n;
        self
    }

    /// When a batch of several items is refused as a whole (too large, a
    /// `ModelError` or `ValidationError`), classify its items one by one so
    /// one bad item does not fail the others (default on). A batch answered
    /// with the wrong number of predictions is not split: that is a
    /// configuration error.
    pub fn split_failed_batches(mut self, on: bool) -> Self {
        self.inner.split_failed_batches = on;
        self
    }

    /// Sends every call to this production variant (`TargetVariant`).
    pub fn target_variant(mut self, variant: impl Into<String>) -> Self {
        self.inner.target_variant = Some(variant.into());
        self
    }

    /// The model to call on a multi-model endpoint (`TargetModel`).
    pub fn target_model(mut self, model: impl Into<String>) -> Self {
        self.inner.target_model = Some(model.into());
        self
    }

    /// How long a micro-batch waits for more items after its first one
    /// (default 2 ms), when [`max_batch_size`](Self::max_batch_size) is
    /// over one. A batch that fills up is sent at once. Every `classify`
    /// call may wait this long (besides waiting for a free call when
    /// `concurrency` calls are in flight), so keep it well under the
    /// model's latency.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.inner.linger = linger;
        self
    }

    /// The classifier. Building does no I/O: the micro-batcher's task
    /// starts with the first `classify` call.
    pub fn build(self) -> SageMakerClassifier<T> {
        let inner = Arc::new(self.inner);
        let batcher = match self.batcher {
            Some(start) if inner.max_batch_size > 1 => Some(start(Arc::clone(&inner))),
            _ => None,
        };
        SageMakerClassifier { inner, batcher }
    }
}

impl<T: Clone + Send + Sync + 'static> SageMakerClassifierBuilder<T> {
    /// How many items go in one call (default 1; 0 counts as 1), both in
    /// [`classify_batch`](Classifier::classify_batch) and for concurrent
    /// [`classify`](Classifier::classify) calls, which are then
    /// micro-batched: collected for up to [`linger`](Self::linger) or until
    /// `n` are waiting, and sent as one call (see the [module docs](self)).
    ///
    /// Raise it only for a model that answers a multi-item body with one
    /// prediction per item; when it answers with another count, the batch's
    /// items fail with a permanent error that says so. Micro-batching hands
    /// a copy of each item to a background task, hence `T: Clone`; make the
    /// clone cheap (an `Arc` inside) for large items.
    pub fn max_batch_size(mut self, n: usize) -> Self {
        self.inner.max_batch_size = n.max(1);
        self.batcher = Some(batcher::start::<T>);
        self
    }
}

impl<T: Sync + 'static> Inner<T> {
    /// One `InvokeEndpoint` call for `items`, checked to give one
    /// prediction per item.
    async fn invoke(&self, items: &[&T]) -> Result<Vec<Prediction>, Failure> {
        let i = self;
        let body = i.request.build(items)?;
        if body.len() > i.max_payload_bytes {
            return Err(Failure {
                error: ClassifyError::permanent(format!(
                    "the request body for {} item(s) is {} bytes, over the {}-byte limit of \
                     InvokeEndpoint; shorten the items{}",
                    items.len(),
                    body.len(),
                    i.max_payload_bytes,
                    if items.len() > 1 {
                        " or lower max_batch_size"
                    } else {
                        ""
                    }
                )),
                refusal: if items.len() > 1 {
                    Refusal::TooLarge
                } else {
                    Refusal::None
                },
            });
        }
        let output = i
            .client
            .invoke_endpoint()
            .endpoint_name(&i.endpoint_name)
            .content_type(&i.content_type)
            .accept(&i.accept)
            .set_target_variant(i.target_variant.clone())
            .set_target_model(i.target_model.clone())
            .body(Blob::new(body.to_vec()))
            .send()
            .await
            .map_err(|err| {
                let split = matches!(
                    &err,
                    SdkError::ServiceError(s) if matches!(
                        s.err(),
                        InvokeEndpointError::ModelError(_) | InvokeEndpointError::ValidationError(_)
                    )
                );
                let error = map_invoke_error(&i.endpoint_name, err);
                Failure {
                    refusal: if split && !error.is_retryable() && items.len() > 1 {
                        Refusal::Invalid
                    } else {
                        Refusal::None
                    },
                    error,
                }
            })?;
        let answer = output.body().map(|b| b.as_ref()).unwrap_or(&[]);
        let predictions = i.response.parse(answer, items.len()).map_err(|e| {
            in_context(
                e,
                &format!(
                    "the response of endpoint {:?} (content type {})",
                    i.endpoint_name,
                    output.content_type().unwrap_or("not given")
                ),
            )
        })?;
        check_count(predictions.len(), items.len())?;
        Ok(predictions)
    }

    /// One item alone, the path of `classify` without micro-batching.
    async fn classify_one(&self, item: &T) -> Result<Prediction, ClassifyError> {
        let mut predictions = self.invoke(&[item]).await.map_err(|f| f.error)?;
        predictions
            .pop()
            .ok_or_else(|| ClassifyError::permanent("the endpoint returned no prediction"))
    }

    /// Classifies `items` in as few calls as the refusals allow: one call for
    /// all of them, then, when the body is over `max_payload_bytes` and
    /// `halve_oversized` is set, the two halves in turn (down to single
    /// items), and, when the model or the service refuses a batch and
    /// `split_failed_batches` is on, its items one by one. One answer per
    /// item, in order.
    async fn classify_group(
        &self,
        items: &[&T],
        halve_oversized: bool,
    ) -> Vec<Result<Prediction, ClassifyError>> {
        let mut out: Vec<Option<Result<Prediction, ClassifyError>>> =
            items.iter().map(|_| None).collect();
        // Ranges of `items` still to send, the next one last.
        let mut todo = Vec::with_capacity(1);
        todo.push(0..items.len());
        while let Some(range) = todo.pop() {
            let (Some(group), Some(slots)) = (items.get(range.clone()), out.get_mut(range.clone()))
            else {
                continue;
            };
            match self.invoke(group).await {
                Ok(predictions) => {
                    for (slot, p) in slots.iter_mut().zip(predictions) {
                        *slot = Some(Ok(p));
                    }
                }
                Err(Failure {
                    refusal: Refusal::TooLarge,
                    ..
                }) if halve_oversized && group.len() > 1 => {
                    let mid = range.start + group.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
                Err(Failure {
                    refusal: Refusal::Invalid | Refusal::TooLarge,
                    ..
                }) if self.split_failed_batches => {
                    for (slot, item) in slots.iter_mut().zip(group) {
                        *slot = Some(self.classify_one(item).await);
                    }
                }
                Err(f) => {
                    for (slot, err) in slots.iter_mut().zip(replicate(f.error, group.len())) {
                        *slot = Some(Err(err));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ClassifyError::permanent(
                        "the item was not classified (a bug in the SageMaker batching)",
                    ))
                })
            })
            .collect()
    }
}

impl<T: Sync + 'static> Classifier<T> for SageMakerClassifier<T> {
    async fn classify(&self, item: &T) -> Result<Prediction, ClassifyError> {
        if let Some(batcher) = &self.batcher {
            return batcher
                .submit(item)
                .await
                .unwrap_or_else(|_| Err(batcher_stopped()));
        }
        self.inner.classify_one(item).await
    }

    async fn classify_batch(&self, items: &[&T]) -> Vec<Result<Prediction, ClassifyError>> {
        // At most `concurrency` calls in flight; answers kept in input order.
        let inner = &*self.inner;
        let mut chunks = items.chunks(inner.max_batch_size);
        let mut in_flight = FuturesOrdered::new();
        let mut out = Vec::with_capacity(items.len());
        loop {
            while in_flight.len() < inner.concurrency {
                match chunks.next() {
                    Some(chunk) => {
                        in_flight.push_back(inner.classify_group(chunk, inner.split_failed_batches))
                    }
                    None => break,
                }
            }
            match in_flight.next().await {
                Some(answers) => out.extend(answers),
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sagemakerruntime::types::error::{ModelError, ValidationError};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;
    use serde_json::json;

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

    #[test]
    fn json_request_single_batch_and_always_instances() {
        let a = json!({"text": "a"});
        let b = json!({"text": "b"});
        let one = RequestBuilder::<Value>::build(&JsonRequest::new(), &[&a]).unwrap();
        assert_eq!(&one[..], br#"{"text":"a"}"#);
        let two = RequestBuilder::<Value>::build(&JsonRequest::new(), &[&a, &b]).unwrap();
        assert_eq!(&two[..], br#"{"instances":[{"text":"a"},{"text":"b"}]}"#);
        let wrapped =
            RequestBuilder::<Value>::build(&JsonRequest::always_instances(), &[&a]).unwrap();
        assert_eq!(&wrapped[..], br#"{"instances":[{"text":"a"}]}"#);
    }

    #[test]
    fn json_request_error_for_unserialisable_items() {
        let mut bad = std::collections::HashMap::new();
        bad.insert((1, 2), "tuple keys are not JSON");
        let err = JsonRequest::new().build(&[&bad]).unwrap_err();
        assert!(!err.is_retryable());
        assert!(
            err.to_string()
                .contains("could not encode the item as JSON")
        );
    }

    #[test]
    fn csv_request_quotes_flattens_and_refuses_nested_values() {
        let csv = CsvRequest::new(["text", "user.followers", "score", "flag", "missing"]);
        let a = json!({"text": "say \"hi\"\nnow", "user": {"followers": 3}, "score": 0.5, "flag": false, "missing": null});
        let body = csv.build(&[&a]).unwrap();
        assert_eq!(&body[..], b"\"say \"\"hi\"\"\nnow\",3,0.5,0,\n");
        let nested = json!({"text": "x", "user": {"followers": [1, 2]}});
        let err = csv.build(&[&nested]).unwrap_err().to_string();
        assert!(err.contains("\"user.followers\" is an array"), "{err}");
        let none = CsvRequest::new(Vec::<String>::new());
        assert!(
            none.build(&[&a])
                .unwrap_err()
                .to_string()
                .contains("no fields")
        );
    }

    fn service_error(err: InvokeEndpointError, status: u16) -> SdkError<InvokeEndpointError> {
        let raw = aws_sdk_sagemakerruntime::config::http::HttpResponse::new(
            StatusCode::try_from(status).unwrap(),
            SdkBody::empty(),
        );
        SdkError::service_error(err, raw)
    }

    fn generic(code: &str, message: &str) -> InvokeEndpointError {
        InvokeEndpointError::generic(ErrorMetadata::builder().code(code).message(message).build())
    }

    #[test]
    fn model_error_is_permanent_with_the_models_message_and_logs() {
        let model = ModelError::builder()
            .message("Received client error (400) from primary")
            .original_status_code(400)
            .original_message("could not parse the input")
            .log_stream_arn("arn:aws:logs:us-east-1:1:log-group:/aws/sagemaker/Endpoints/e")
            .meta(ErrorMetadata::builder().code("ModelError").build())
            .build();
        let err = map_invoke_error(
            "e",
            service_error(InvokeEndpointError::ModelError(model), 424),
        );
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(text.contains("the model container failed"), "{text}");
        assert!(text.contains("Received client error (400)"), "{text}");
        assert!(
            text.contains("HTTP 400: could not parse the input"),
            "{text}"
        );
        assert!(
            text.contains("log-group:/aws/sagemaker/Endpoints/e"),
            "{text}"
        );
        let source = StdError::source(&err).expect("the SDK error is kept");
        assert!(
            source
                .downcast_ref::<SdkError<InvokeEndpointError>>()
                .is_some()
        );
    }

    #[test]
    fn model_error_from_an_overloaded_container_is_retryable() {
        for (status, throttled) in [(429, true), (503, false)] {
            let model = ModelError::builder().original_status_code(status).build();
            let err = map_invoke_error(
                "e",
                service_error(InvokeEndpointError::ModelError(model), 424),
            );
            assert!(err.is_retryable(), "{status}");
            assert_eq!(err.is_throttling(), throttled);
        }
    }

    #[test]
    fn codes_map_to_retryable_or_permanent() {
        let cases = [
            ("ThrottlingException", 400, "throttled"),
            ("ServiceUnavailable", 503, "unavailable"),
            ("InternalFailure", 500, "unavailable"),
            ("InternalDependencyException", 530, "unavailable"),
            ("ModelNotReadyException", 429, "unavailable"),
            ("SlowDown", 429, "throttled"),
            ("SomethingNew", 502, "unavailable"),
            ("ValidationError", 400, "permanent"),
            ("AccessDeniedException", 403, "permanent"),
            // The shared classification (issue 14): expired credentials are
            // retryable (a refreshing provider signs the next attempt anew),
            // and every throttling code counts, not only SageMaker's four.
            ("ExpiredTokenException", 400, "unavailable"),
            ("ThrottledException", 400, "throttled"),
        ];
        for (code, status, kind) in cases {
            let err = map_invoke_error("e", service_error(generic(code, "msg"), status));
            assert_eq!(err.kind(), kind, "{code}");
        }
        let validation = ValidationError::builder()
            .message("Endpoint e of account 1 not found.")
            .meta(ErrorMetadata::builder().code("ValidationError").build())
            .build();
        let err = map_invoke_error(
            "e",
            service_error(InvokeEndpointError::ValidationError(validation), 400),
        );
        let text = err.to_string();
        assert!(!err.is_retryable());
        assert!(
            text.contains("Endpoint e of account 1 not found."),
            "{text}"
        );
        assert!(text.contains("check the endpoint name"), "{text}");
    }

    #[test]
    fn replicated_errors_keep_class_message_and_source() {
        let io = std::io::Error::other("boom");
        let errs = replicate(ClassifyError::throttled("slow down").with_source(io), 3);
        assert_eq!(errs.len(), 3);
        for e in &errs {
            assert!(e.is_throttling());
            assert_eq!(StdError::source(e).unwrap().to_string(), "boom");
        }
        let ctx = in_context(ClassifyError::permanent("bad"), "where");
        assert_eq!(ctx.to_string(), "classifier failed permanently: where: bad");
    }
}
