//! Amazon Machine Learning realtime `Predict` as a [`Classifier`].
//! Feature `machine-learning`.
//!
//! [`AmazonMlClassifier`] finds the model's realtime endpoint once, at
//! start-up ([`GetMLModel`]), and then sends one `Predict` per item to that
//! endpoint:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use streamsift::machine_learning::AmazonMlClassifier;
//!
//! #[derive(serde::Serialize)]
//! struct Tweet { text: String, user: User }
//! #[derive(serde::Serialize)]
//! struct User { followers: u64, verified: bool }
//!
//! let config = aws_config::load_from_env().await;
//! let classifier = AmazonMlClassifier::<Tweet>::builder(&config, "ml-Xx3FU6ax0Jw")
//!     .labels("actionable", "noise")
//!     .build()
//!     .await?;
//! # let _ = classifier; Ok(()) }
//! ```
//!
//! # Endpoint discovery
//! [`build`](AmazonMlClassifierBuilder::build) calls `GetMLModel` and fails
//! with a [`ConnectError`] that says what to do when the model is missing,
//! not `COMPLETED`, a `REGRESSION` model, or has no realtime endpoint in
//! state `READY` (`NONE`, `UPDATING`, `FAILED`). Throttling and connection
//! failures of `GetMLModel` are retried until
//! [`startup_timeout`](AmazonMlClassifierBuilder::startup_timeout) (30 s by
//! default), then fail with [`ConnectError::StartupTimeout`].
//!
//! # Routing
//! `Predict` must be sent to the model's own endpoint URL, but the Rust SDK
//! does not route by the `PredictEndpoint` parameter. The classifier
//! therefore derives, once, a second client from yours whose endpoint URL is
//! the discovered one, and sends every `Predict` through it (with
//! `PredictEndpoint` set too). This is equivalent to a per-call
//! `config_override(..endpoint_url(..))` without rebuilding the config on
//! every call. `GetMLModel` uses your client (with its retries off).
//!
//! # Records
//! Amazon ML takes an observation as a map of strings. By default the item
//! is serialized to JSON and flattened by [`flatten_json`]; give your own
//! mapping with [`record_fn`](AmazonMlClassifierBuilder::record_fn). An
//! observation larger than [`MAX_OBSERVATION_BYTES`] (as JSON) fails with a
//! permanent error before anything is sent.
//!
//! # Limits and retries
//! A client-side [`RateLimiter`] paces `Predict` calls: by default the
//! endpoint's `PeakRequestsPerSecond` as `GetMLModel` reports it, or
//! [`DEFAULT_REQUESTS_PER_SECOND`] when it reports none. Both constructors
//! turn the SDK's own retries off, so throttling reaches the pipeline as a
//! retryable [`ClassifyError`] and is retried, and counted, by its
//! `RetryPolicy` alone. Worst case, `Predict` calls per record:
//!
//! | pipeline attempts | classifier attempts | SDK attempts | calls per record |
//! |---|---|---|---|
//! | 5 (default `RetryPolicy`) | 1 | 1 (off) | **5** |
//! | *p* | 1 | 1 | *p* |
//!
//! # Errors
//! The classification is the one every AWS backend shares
//! ([`AwsFailure::from_sdk`](crate::aws::AwsFailure::from_sdk)); only
//! `PredictorNotMountedException` is Amazon ML's own.
//!
//! | Amazon ML says | [`ClassifyError`] | why |
//! |---|---|---|
//! | `LimitExceededException`, `ThrottlingException`, any 429 | `Throttled` (retryable) | the endpoint's request rate was exceeded |
//! | `InternalServerException`, any 5xx, timeouts, connection failures | `Unavailable` (retryable) | transient |
//! | `ExpiredTokenException` | `Unavailable` (retryable) | a refreshing credentials provider signs the next attempt with new credentials |
//! | `PredictorNotMountedException` | `Unavailable` (retryable) | the endpoint is not mounted: it is still starting, being updated, or was deleted. The first two pass; the pipeline's retry budget bounds the third, and the message says how to check |
//! | `ResourceNotFoundException` | `Permanent` | the model is gone (deleted, or wrong ID or region) |
//! | `InvalidInputException` | `Permanent` | the record does not fit the model's schema |
//! | access errors, other 4xx | `Permanent` | retrying will not help |
//!
//! The SDK's error is kept as the `source`. No credentials are kept by this
//! module's types beyond the SDK client, and `Debug` never prints the client.
//!
//! [`GetMLModel`]: https://docs.aws.amazon.com/machine-learning/latest/APIReference/API_GetMLModel.html

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_machinelearning::Client;
use aws_sdk_machinelearning::config::retry::RetryConfig;
use aws_sdk_machinelearning::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_machinelearning::types::{
    DetailsAttributes, EntityStatus, MlModelType, Prediction as SdkPrediction,
    RealtimeEndpointStatus,
};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::aws::{
    AwsErrorKind, AwsFailure, DEFAULT_STARTUP_TIMEOUT, StartupError, call_at_startup,
};
use crate::classify::{Classifier, Label, Prediction};
use crate::error::{BoxError, ClassifyError};

/// The largest observation `Predict` accepts, as the JSON of its `Record`
/// map: 100 KB (102,400 bytes). Larger observations fail before sending.
pub const MAX_OBSERVATION_BYTES: usize = 100 * 1024;

/// The client-side rate limit, in `Predict` calls per second per endpoint,
/// when `GetMLModel` reports no `PeakRequestsPerSecond`. It is also the
/// default peak of an Amazon ML realtime endpoint.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 200;

/// A fallible record mapping, as stored.
type RecordFn<T> = Arc<dyn Fn(&T) -> Result<HashMap<String, String>, ClassifyError> + Send + Sync>;

/// The kind of Amazon ML model a classifier talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Two classes, `"1"` and `"0"`; one score, the probability of `"1"`.
    Binary,
    /// Several classes, one score each.
    Multiclass,
}

impl ModelKind {
    fn parse(s: &str) -> Option<ModelKind> {
        match s {
            "BINARY" => Some(ModelKind::Binary),
            "MULTICLASS" => Some(ModelKind::Multiclass),
            _ => None,
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelKind::Binary => "BINARY",
            ModelKind::Multiclass => "MULTICLASS",
        })
    }
}

// ---------------------------------------------------------------------------
// Record mapping
// ---------------------------------------------------------------------------

/// Flattens a JSON object into an Amazon ML `Record` (a map of strings).
///
/// The rule:
/// - nested object keys are joined with `.`: `{"user":{"id":7}}` gives
///   `user.id = "7"`;
/// - array elements are keyed by their index: `{"tags":["a","b"]}` gives
///   `tags.0 = "a"`, `tags.1 = "b"` (nested arrays and objects continue the
///   path: `a.0.b`);
/// - strings are kept as they are, numbers are written as JSON writes them
///   (`42`, `0.5`, `1e300`), booleans as `true` / `false`;
/// - `null`, empty objects and empty arrays are left out, so a missing value
///   is a missing key, never the text `"None"` or `"null"`.
///
/// Keys that already contain `.` are kept as they are, so `{"a.b":1}` and
/// `{"a":{"b":1}}` both give `a.b`; when both occur, the later one in the
/// object wins.
///
/// Fails when `value` is not an object (a bare string or number has no
/// attribute name to put it under): map such items with
/// [`record_fn`](AmazonMlClassifierBuilder::record_fn).
///
/// ```
/// use streamsift::machine_learning::flatten_json;
/// let v = serde_json::json!({"text": "down again", "user": {"followers": 12, "verified": false,
///     "location": null}, "tags": ["outage", "help"]});
/// let r = flatten_json(&v).unwrap();
/// assert_eq!(r["text"], "down again");
/// assert_eq!(r["user.followers"], "12");
/// assert_eq!(r["user.verified"], "false");
/// assert_eq!(r["tags.1"], "help");
/// assert!(!r.contains_key("user.location"));
/// assert_eq!(r.len(), 5);
/// ```
pub fn flatten_json(value: &Value) -> Result<HashMap<String, String>, ClassifyError> {
    let Value::Object(map) = value else {
        return Err(ClassifyError::permanent(format!(
            "Amazon ML record mapping: expected the item to serialize to a JSON object, found {}; \
             give the classifier a record_fn that names each attribute",
            crate::util::json_kind(value)
        )));
    };
    let mut out = HashMap::new();
    let mut path = String::new();
    for (key, v) in map {
        path.clear();
        path.push_str(key);
        flatten_into(v, &mut path, &mut out);
    }
    Ok(out)
}

fn flatten_into(value: &Value, path: &mut String, out: &mut HashMap<String, String>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => {
            out.insert(path.clone(), b.to_string());
        }
        Value::Number(n) => {
            out.insert(path.clone(), n.to_string());
        }
        Value::String(s) => {
            out.insert(path.clone(), s.clone());
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push('.');
                path.push_str(&i.to_string());
                flatten_into(item, path, out);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                flatten_into(item, path, out);
                path.truncate(len);
            }
        }
    }
}

/// The default record mapping: `item` serialized to JSON, then
/// [`flatten_json`]. Fails (permanently) when the item does not serialize
/// to a JSON object.
pub fn json_record<T: Serialize + ?Sized>(
    item: &T,
) -> Result<HashMap<String, String>, ClassifyError> {
    let value = serde_json::to_value(item).map_err(|e| {
        ClassifyError::permanent(format!(
            "Amazon ML record mapping: the item could not be serialized to JSON ({e}); \
             give the classifier a record_fn"
        ))
        .with_source(e)
    })?;
    flatten_json(&value)
}

/// The size of `record` as the JSON object `Predict` sends, in bytes,
/// counted without building the text.
pub fn observation_size(record: &HashMap<String, String>) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a map of strings to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, record);
    count.0
}

// ---------------------------------------------------------------------------
// Response mapping
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Rate limiter
// ---------------------------------------------------------------------------

/// A token bucket that paces calls: at most `burst + rate × t` calls in any
/// span of `t` seconds, and calls spaced `1 / rate` apart once the burst is
/// spent.
///
/// Each caller reserves the next free slot and sleeps until it
/// ([`tokio::time::sleep_until`], so tests can use a paused clock); callers
/// are served in the order they arrive. A caller dropped while waiting
/// still uses up its slot. Clone it to share one limit between classifiers
/// that call the same endpoint.
#[derive(Clone)]
pub struct RateLimiter {
    /// The earliest time the bucket is empty again ("theoretical arrival
    /// time" of the next call).
    next: Arc<Mutex<Instant>>,
    interval: Duration,
    /// `(burst - 1) × interval`: how far ahead of `next` a call may go.
    tolerance: Duration,
    per_second: NonZeroU32,
    burst: NonZeroU32,
}

impl RateLimiter {
    /// `per_second` calls per second, with a burst of a tenth of a second's
    /// worth (at least 1): 20 for 200/s.
    pub fn new(per_second: NonZeroU32) -> Self {
        let burst = NonZeroU32::new(per_second.get().div_ceil(10)).unwrap_or(NonZeroU32::MIN);
        Self::with_burst(per_second, burst)
    }

    /// `per_second` calls per second, up to `burst` at once after a pause.
    pub fn with_burst(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let interval = Duration::from_secs(1) / per_second.get();
        RateLimiter {
            next: Arc::new(Mutex::new(Instant::now())),
            interval,
            tolerance: interval * (burst.get() - 1),
            per_second,
            burst,
        }
    }

    /// Calls per second.
    pub fn per_second(&self) -> u32 {
        self.per_second.get()
    }

    /// Calls allowed at once after a pause.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// Waits for this call's slot.
    pub async fn acquire(&self) {
        let now = Instant::now();
        let at = {
            // The state is one Instant, always valid: a poisoned lock is safe to reuse.
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let start = (*next).max(now);
            *next = start + self.interval;
            start.checked_sub(self.tolerance).unwrap_or(now)
        };
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_second", &self.per_second)
            .field("burst", &self.burst)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

fn endpoint_advice(status: &str) -> &'static str {
    match status {
        "NONE" => {
            "the model has no realtime endpoint: create one with CreateRealtimeEndpoint \
             (aws machinelearning create-realtime-endpoint --ml-model-id ID), wait until GetMLModel \
             shows EndpointInfo.EndpointStatus READY (a few minutes), then start again"
        }
        "UPDATING" => {
            "the endpoint is being created or updated: wait until GetMLModel shows \
             EndpointInfo.EndpointStatus READY, then start again"
        }
        "FAILED" => {
            "creating the endpoint failed: delete it with DeleteRealtimeEndpoint, create it again \
             with CreateRealtimeEndpoint, and wait until it is READY"
        }
        _ => "wait until GetMLModel shows EndpointInfo.EndpointStatus READY, then start again",
    }
}

fn model_advice(status: &str) -> &'static str {
    match status {
        "PENDING" | "INPROGRESS" => {
            "training has not finished: wait until GetMLModel shows COMPLETED"
        }
        "FAILED" => {
            "training failed: GetMLModel's Message and LogUri say why; train the model again"
        }
        "DELETED" => "the model was deleted: train a new one and use its ID",
        _ => "wait until GetMLModel shows COMPLETED",
    }
}

/// Why an [`AmazonMlClassifier`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// `GetMLModel` said `ResourceNotFoundException`.
    #[error(
        "Amazon ML model {model_id:?} was not found: check the model ID, the region and the account \
         (GetMLModel said: {message})"
    )]
    ModelNotFound {
        /// The model asked for.
        model_id: String,
        /// What Amazon ML said.
        message: String,
        /// The SDK's error.
        #[source]
        source: BoxError,
    },
    /// The model exists but is not `COMPLETED`.
    #[error("Amazon ML model {model_id:?} is {status}, expected COMPLETED: {}", model_advice(.status))]
    ModelNotReady {
        /// The model asked for.
        model_id: String,
        /// Its status (`PENDING`, `INPROGRESS`, `FAILED`, `DELETED`).
        status: String,
    },
    /// A `REGRESSION` model predicts a number, not a label.
    #[error(
        "Amazon ML model {model_id:?} is a REGRESSION model, which predicts a number; \
         this classifier needs a BINARY or MULTICLASS model"
    )]
    Regression {
        /// The model asked for.
        model_id: String,
    },
    /// The model's type is missing or unknown.
    #[error(
        "Amazon ML model {model_id:?} has the type {found:?}; this classifier needs BINARY or MULTICLASS"
    )]
    UnknownModelType {
        /// The model asked for.
        model_id: String,
        /// What GetMLModel said (empty when it said nothing).
        found: String,
    },
    /// The realtime endpoint is not `READY` (`NONE`, `UPDATING`, `FAILED`).
    #[error(
        "the realtime endpoint of Amazon ML model {model_id:?} is {status}, expected READY: {}",
        endpoint_advice(.status)
    )]
    EndpointNotReady {
        /// The model asked for.
        model_id: String,
        /// The endpoint's status; `NONE` when the model has none.
        status: String,
    },
    /// `READY`, but no URL to send predictions to.
    #[error(
        "the realtime endpoint of Amazon ML model {model_id:?} is READY but GetMLModel gave no \
         EndpointUrl; call GetMLModel to check, or recreate the endpoint"
    )]
    NoEndpointUrl {
        /// The model asked for.
        model_id: String,
    },
    /// Amazon ML did not answer `GetMLModel` within the start-up time (it
    /// could not be reached, or kept failing with retryable errors).
    #[error(
        "check the endpoint URL, the region and the network, or raise \
         AmazonMlClassifierBuilder::startup_timeout: GetMLModel for Amazon ML model {model_id:?} \
         got no usable answer within {after:?}{last}",
        last = last.as_ref().map(|f| format!(" (last failure: {f})")).unwrap_or_default()
    )]
    StartupTimeout {
        /// The model asked for.
        model_id: String,
        /// The time allowed.
        after: Duration,
        /// The last retryable failure, if a call finished.
        last: Option<AwsFailure>,
    },
    /// `GetMLModel` itself was refused (access denied, invalid).
    #[error("GetMLModel for Amazon ML model {model_id:?} failed: {error}")]
    Call {
        /// The model asked for.
        model_id: String,
        /// The failure, retryable or permanent.
        #[source]
        error: ClassifyError,
    },
}

impl ConnectError {
    /// Whether trying again later may succeed: a failed `GetMLModel` call
    /// that was retryable, or an endpoint that is `UPDATING`, or a model
    /// still training.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Call { error, .. } => error.is_retryable(),
            ConnectError::StartupTimeout { .. } => true,
            ConnectError::EndpointNotReady { status, .. } => status == "UPDATING",
            ConnectError::ModelNotReady { status, .. } => {
                status == "PENDING" || status == "INPROGRESS"
            }
            _ => false,
        }
    }
}

/// Maps an SDK error of `op` on `model_id` onto a [`ClassifyError`] with a
/// message a user can act on; the SDK error is kept as the source.
///
/// The shared classification ([`AwsFailure::from_sdk`]) decides, except for
/// Amazon ML's own `PredictorNotMountedException` (retryable: an endpoint
/// still starting); what is added here is the hint.
fn call_error<E>(op: &'static str, model_id: &str, err: SdkError<E>) -> ClassifyError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let failure = AwsFailure::from_sdk(&err);
    let text = format!("{op} on model {model_id:?}: {failure}");
    let (kind, hint) = if failure.has_code("PredictorNotMountedException") {
        (
            AwsErrorKind::Transient,
            "the realtime endpoint is not mounted: it may still be starting or updating (wait), \
             or it was deleted (check GetMLModel's EndpointInfo and recreate it with \
             CreateRealtimeEndpoint)",
        )
    } else if failure.has_code("InvalidInputException") {
        (
            failure.kind,
            "Amazon ML rejected the request: check that the record's keys are the model's \
             schema attribute names (see the record mapping)",
        )
    } else {
        let hint = match failure.kind {
            AwsErrorKind::Throttled => {
                "the realtime endpoint's request rate was exceeded: lower the classifier's \
                 max_requests_per_second or the pipeline's max_in_flight"
            }
            AwsErrorKind::NotFound => {
                "the model was not found: it may have been deleted, or the model ID or region \
                 is wrong"
            }
            AwsErrorKind::AccessDenied | AwsErrorKind::ExpiredCredentials => {
                "check the credentials and grant machinelearning:GetMLModel and \
                 machinelearning:Predict on the model"
            }
            _ => "",
        };
        (failure.kind, hint)
    };
    let text = if hint.is_empty() {
        text
    } else {
        format!("{text}; {hint}")
    };
    kind.classify_error(text).with_source(err)
}

// ---------------------------------------------------------------------------
// The classifier
// ---------------------------------------------------------------------------

enum Rate {
    /// From the endpoint's PeakRequestsPerSecond, else the default.
    Auto,
    PerSecond(NonZeroU32),
    Shared(RateLimiter),
    Off,
}

/// Builds an [`AmazonMlClassifier`]; [`build`](Self::build) discovers the
/// endpoint.
pub struct AmazonMlClassifierBuilder<T> {
    client: Client,
    model_id: String,
    record: RecordFn<T>,
    positive: Label,
    negative: Label,
    rate: Rate,
    startup_timeout: Duration,
}

impl<T> fmt::Debug for AmazonMlClassifierBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmazonMlClassifierBuilder")
            .field("model_id", &self.model_id)
            .field("positive", &self.positive)
            .field("negative", &self.negative)
            .field("startup_timeout", &self.startup_timeout)
            .finish_non_exhaustive()
    }
}

impl<T> AmazonMlClassifierBuilder<T> {
    fn with_mapping(client: Client, model_id: String, record: RecordFn<T>) -> Self {
        AmazonMlClassifierBuilder {
            client: without_sdk_retries(client),
            model_id,
            record,
            positive: Label::from_static("1"),
            negative: Label::from_static("0"),
            rate: Rate::Auto,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }

    /// Replaces the record mapping: `item` → Amazon ML `Record`.
    pub fn record_fn<F>(mut self, record: F) -> Self
    where
        F: Fn(&T) -> HashMap<String, String> + Send + Sync + 'static,
    {
        self.record = Arc::new(move |item| Ok(record(item)));
        self
    }

    /// Replaces the record mapping with one that may fail; its error is the
    /// item's classification error.
    pub fn try_record_fn<F>(mut self, record: F) -> Self
    where
        F: Fn(&T) -> Result<HashMap<String, String>, ClassifyError> + Send + Sync + 'static,
    {
        self.record = Arc::new(record);
        self
    }

    /// Our names for a BINARY model's classes `"1"` and `"0"` (default: `"1"`
    /// and `"0"`). MULTICLASS labels are kept as the model gives them.
    pub fn labels(mut self, positive: impl Into<Label>, negative: impl Into<Label>) -> Self {
        self.positive = positive.into();
        self.negative = negative.into();
        self
    }

    /// At most `n` `Predict` calls per second from this classifier (see
    /// [`RateLimiter::new`] for the burst).
    pub fn max_requests_per_second(mut self, n: NonZeroU32) -> Self {
        self.rate = Rate::PerSecond(n);
        self
    }

    /// Paces calls with `limiter`, which may be shared with other
    /// classifiers that call the same endpoint.
    pub fn rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.rate = Rate::Shared(limiter);
        self
    }

    /// No client-side rate limit.
    pub fn no_rate_limit(mut self) -> Self {
        self.rate = Rate::Off;
        self
    }

    /// How long [`build`](Self::build)'s `GetMLModel` may take, retries of
    /// throttling and connection failures included (default
    /// [`DEFAULT_STARTUP_TIMEOUT`], 30 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Calls `GetMLModel`, checks the model and its realtime endpoint, and
    /// returns a classifier that sends `Predict` to that endpoint.
    pub async fn build(self) -> Result<AmazonMlClassifier<T>, ConnectError> {
        let model_id = self.model_id;
        let client = &self.client;
        let call = || client.get_ml_model().ml_model_id(&model_id).send();
        let out = match call_at_startup(self.startup_timeout, call).await {
            Ok(out) => out,
            Err(StartupError::Refused { failure, error }) => {
                if failure.kind == AwsErrorKind::NotFound {
                    return Err(ConnectError::ModelNotFound {
                        model_id,
                        message: failure.message,
                        source: Box::new(error),
                    });
                }
                let error = call_error("GetMLModel", &model_id, error);
                return Err(ConnectError::Call { model_id, error });
            }
            Err(StartupError::TimedOut { last }) => {
                return Err(ConnectError::StartupTimeout {
                    model_id,
                    after: self.startup_timeout,
                    last,
                });
            }
        };
        match out.status() {
            Some(EntityStatus::Completed) => {}
            other => {
                let status = other.map_or("UNKNOWN", |s| s.as_str()).to_string();
                return Err(ConnectError::ModelNotReady { model_id, status });
            }
        }
        let kind = match out.ml_model_type() {
            Some(MlModelType::Binary) => ModelKind::Binary,
            Some(MlModelType::Multiclass) => ModelKind::Multiclass,
            Some(MlModelType::Regression) => return Err(ConnectError::Regression { model_id }),
            other => {
                let found = other.map_or("", |t| t.as_str()).to_string();
                return Err(ConnectError::UnknownModelType { model_id, found });
            }
        };
        let Some(info) = out.endpoint_info() else {
            return Err(ConnectError::EndpointNotReady {
                model_id,
                status: "NONE".into(),
            });
        };
        match info.endpoint_status() {
            Some(RealtimeEndpointStatus::Ready) => {}
            other => {
                let status = other.map_or("NONE", |s| s.as_str()).to_string();
                return Err(ConnectError::EndpointNotReady { model_id, status });
            }
        }
        let endpoint = match info.endpoint_url().map(str::trim) {
            Some(url) if !url.is_empty() => {
                if url.contains("://") {
                    url.to_string()
                } else {
                    format!("https://{url}")
                }
            }
            _ => return Err(ConnectError::NoEndpointUrl { model_id }),
        };
        let peak = u32::try_from(info.peak_requests_per_second())
            .ok()
            .and_then(NonZeroU32::new);
        let limiter = match self.rate {
            Rate::Auto => Some(RateLimiter::new(peak.unwrap_or(
                NonZeroU32::new(DEFAULT_REQUESTS_PER_SECOND).unwrap_or(NonZeroU32::MIN),
            ))),
            Rate::PerSecond(n) => Some(RateLimiter::new(n)),
            Rate::Shared(l) => Some(l),
            Rate::Off => None,
        };
        let config = self.client.config().to_builder().endpoint_url(&endpoint);
        Ok(AmazonMlClassifier {
            inner: Arc::new(Inner {
                predict: Client::from_conf(config.build()),
                model_id,
                endpoint,
                kind,
                score_threshold: out.score_threshold().map(f64::from),
                peak_requests_per_second: peak.map(NonZeroU32::get),
                positive: self.positive,
                negative: self.negative,
                limiter,
                record: self.record,
            }),
        })
    }
}

/// `client` with the SDK's own retries turned off: the pipeline's retry
/// policy decides alone, and counts every failure.
fn without_sdk_retries(client: Client) -> Client {
    let conf = client
        .config()
        .to_builder()
        .retry_config(RetryConfig::disabled());
    Client::from_conf(conf.build())
}

struct Inner<T> {
    /// A client whose endpoint URL is the model's realtime endpoint.
    predict: Client,
    model_id: String,
    endpoint: String,
    kind: ModelKind,
    score_threshold: Option<f64>,
    peak_requests_per_second: Option<u32>,
    positive: Label,
    negative: Label,
    limiter: Option<RateLimiter>,
    record: RecordFn<T>,
}

/// An Amazon ML realtime model as a [`Classifier`] of `T`: one `Predict` per
/// item, sent to the model's realtime endpoint. Cheap to clone (shared).
///
/// See the [module docs](self) for discovery, routing, records, limits and
/// error mapping.
pub struct AmazonMlClassifier<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for AmazonMlClassifier<T> {
    fn clone(&self) -> Self {
        AmazonMlClassifier {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for AmazonMlClassifier<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("AmazonMlClassifier")
            .field("model_id", &i.model_id)
            .field("endpoint", &i.endpoint)
            .field("kind", &i.kind)
            .field("positive", &i.positive)
            .field("negative", &i.negative)
            .field("limiter", &i.limiter)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + 'static> AmazonMlClassifier<T> {
    /// A builder whose client is made from `config`, with the default record
    /// mapping ([`json_record`]) and the SDK's own retries turned off.
    pub fn builder(
        config: &aws_config::SdkConfig,
        model_id: impl Into<String>,
    ) -> AmazonMlClassifierBuilder<T> {
        Self::builder_from_client(Client::new(config), model_id)
    }

    /// A builder that calls through `client` (its configuration is kept,
    /// except for retries, which are turned off), with the default record
    /// mapping ([`json_record`]).
    pub fn builder_from_client(
        client: Client,
        model_id: impl Into<String>,
    ) -> AmazonMlClassifierBuilder<T> {
        AmazonMlClassifierBuilder::with_mapping(
            client,
            model_id.into(),
            Arc::new(|item: &T| json_record(item)),
        )
    }
}

impl<T> AmazonMlClassifier<T> {
    /// A builder for items that are not `Serialize` (or need other attribute
    /// names): `record` maps an item to Amazon ML's `Record`. The other
    /// defaults are those of [`builder`](AmazonMlClassifier::builder).
    pub fn builder_with_record_fn<F>(
        config: &aws_config::SdkConfig,
        model_id: impl Into<String>,
        record: F,
    ) -> AmazonMlClassifierBuilder<T>
    where
        F: Fn(&T) -> HashMap<String, String> + Send + Sync + 'static,
    {
        AmazonMlClassifierBuilder::with_mapping(
            Client::new(config),
            model_id.into(),
            Arc::new(move |item| Ok(record(item))),
        )
    }
}

impl<T> AmazonMlClassifier<T> {
    /// The model's ID.
    pub fn model_id(&self) -> &str {
        &self.inner.model_id
    }

    /// The realtime endpoint `Predict` calls go to.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// BINARY or MULTICLASS.
    pub fn kind(&self) -> ModelKind {
        self.inner.kind
    }

    /// The score threshold set on a BINARY model, if any (Amazon ML's
    /// `predictedLabel` follows it; a `Policy` may use the same figure).
    pub fn score_threshold(&self) -> Option<f64> {
        self.inner.score_threshold
    }

    /// The endpoint's `PeakRequestsPerSecond`, if `GetMLModel` reported one.
    pub fn peak_requests_per_second(&self) -> Option<u32> {
        self.inner.peak_requests_per_second
    }

    /// The rate limiter in use, if any.
    pub fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.inner.limiter.as_ref()
    }

    /// The `Record` this classifier would send for `item`, after the size
    /// check.
    pub fn record(&self, item: &T) -> Result<HashMap<String, String>, ClassifyError> {
        let record = (self.inner.record)(item)?;
        let size = observation_size(&record);
        if size > MAX_OBSERVATION_BYTES {
            return Err(ClassifyError::permanent(format!(
                "the Amazon ML observation is {size} bytes as JSON, over the {MAX_OBSERVATION_BYTES}-byte \
                 (100 KB) Predict limit; leave long fields out of the record mapping or truncate them"
            )));
        }
        Ok(record)
    }
}

impl<T: Sync> Classifier<T> for AmazonMlClassifier<T> {
    async fn classify(&self, item: &T) -> Result<Prediction, ClassifyError> {
        let record = self.record(item)?;
        let inner = &*self.inner;
        if let Some(limiter) = &inner.limiter {
            limiter.acquire().await;
        }
        let out = inner
            .predict
            .predict()
            .ml_model_id(&inner.model_id)
            .predict_endpoint(&inner.endpoint)
            .set_record(Some(record))
            .send()
            .await
            .map_err(|e| call_error("Predict", &inner.model_id, e))?;
        let prediction = out.prediction().ok_or_else(|| {
            ClassifyError::unavailable(format!(
                "Predict on model {:?} answered without a Prediction",
                inner.model_id
            ))
        })?;
        map_prediction(prediction, inner.kind, &inner.positive, &inner.negative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pos() -> Label {
        Label::from_static("actionable")
    }
    fn neg() -> Label {
        Label::from_static("noise")
    }

    fn predict_error(
        code: &str,
        status: u16,
    ) -> SdkError<aws_sdk_machinelearning::operation::predict::PredictError> {
        use aws_sdk_machinelearning::operation::predict::PredictError;
        crate::aws::test_support::service_error(PredictError::generic, code, status)
    }

    #[test]
    fn call_errors_follow_the_shared_classification() {
        for (code, status, kind) in [
            ("LimitExceededException", 400, "throttled"),
            ("PredictorNotMountedException", 400, "unavailable"),
            ("InternalServerException", 500, "unavailable"),
            ("ResourceNotFoundException", 400, "permanent"),
            ("InvalidInputException", 400, "permanent"),
            ("AccessDeniedException", 400, "permanent"),
            // Issue 14: expired credentials are retryable (a refreshing
            // provider signs the next attempt anew); they were permanent.
            ("ExpiredTokenException", 400, "unavailable"),
            // Issue 14: a 429 with any code is throttling.
            ("SomethingNew", 429, "throttled"),
        ] {
            let err = call_error("Predict", "ml-1", predict_error(code, status));
            assert_eq!(err.kind(), kind, "{code} (HTTP {status})");
            assert!(err.to_string().contains(code), "{err}");
        }
        let err = call_error(
            "Predict",
            "ml-1",
            predict_error("AccessDeniedException", 400),
        );
        assert!(err.to_string().contains("machinelearning:Predict"), "{err}");
    }

    #[test]
    fn flattening_follows_the_documented_rule() {
        let v = json!({
            "text": "help",
            "n": 3,
            "x": 0.25,
            "ok": true,
            "gone": null,
            "user": {"id": 7, "loc": null, "deep": {"k": "v"}},
            "tags": ["a", null, {"b": 1}, [false]],
            "empty_obj": {},
            "empty_arr": [],
            "blank": ""
        });
        let r = flatten_json(&v).unwrap();
        let mut got: Vec<(&str, &str)> = r.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("blank", ""),
                ("n", "3"),
                ("ok", "true"),
                ("tags.0", "a"),
                ("tags.2.b", "1"),
                ("tags.3.0", "false"),
                ("text", "help"),
                ("user.deep.k", "v"),
                ("user.id", "7"),
                ("x", "0.25"),
            ]
        );
        assert!(r.values().all(|v| v != "None" && v != "null"));
    }

    #[test]
    fn flattening_rejects_non_objects_and_serializes_options_as_absent() {
        let err = flatten_json(&json!("just text")).unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("found a string"), "{err}");
        assert!(err.to_string().contains("record_fn"), "{err}");

        #[derive(Serialize)]
        struct Tweet {
            text: String,
            reply_to: Option<u64>,
            lang: Option<String>,
        }
        let r = json_record(&Tweet {
            text: "x".into(),
            reply_to: None,
            lang: Some("en".into()),
        })
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r["lang"], "en");
        assert!(!r.contains_key("reply_to"));
    }

    #[test]
    fn observation_size_is_the_json_length() {
        let mut r = HashMap::new();
        r.insert("a".to_string(), "x\"y".to_string());
        assert_eq!(observation_size(&r), serde_json::to_vec(&r).unwrap().len());
        assert_eq!(observation_size(&HashMap::new()), 2);
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

    #[tokio::test(start_paused = true)]
    async fn limiter_spaces_calls_after_the_burst() {
        let l =
            RateLimiter::with_burst(NonZeroU32::new(200).unwrap(), NonZeroU32::new(20).unwrap());
        let t0 = Instant::now();
        let mut at = Vec::new();
        for _ in 0..420 {
            l.acquire().await;
            at.push(Instant::now() - t0);
        }
        // The burst goes at once, then one every 5 ms.
        assert!(at[..20].iter().all(|d| d.is_zero()));
        assert_eq!(at[20], Duration::from_millis(5));
        assert_eq!(at[419], Duration::from_millis(5 * 400));
        // No one-second window holds more than burst + rate calls.
        for (i, start) in at.iter().enumerate() {
            let n = at[i..]
                .iter()
                .take_while(|d| **d < *start + Duration::from_secs(1))
                .count();
            assert!(n <= 220, "{n} calls in the second from {start:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_is_shared_by_concurrent_callers_and_refills_when_idle() {
        let l = RateLimiter::new(NonZeroU32::new(100).unwrap());
        assert_eq!(l.burst(), 10);
        let t0 = Instant::now();
        let done = futures::future::join_all((0..110).map(|_| {
            let l = l.clone();
            async move {
                l.acquire().await;
                Instant::now() - t0
            }
        }))
        .await;
        let last = done.iter().max().copied().unwrap();
        assert_eq!(last, Duration::from_millis(10 * 100));
        // After a pause the burst is available again, no more.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let t1 = Instant::now();
        for _ in 0..10 {
            l.acquire().await;
        }
        assert_eq!(Instant::now(), t1);
        l.acquire().await;
        assert_eq!(Instant::now() - t1, Duration::from_millis(10));
    }
}
