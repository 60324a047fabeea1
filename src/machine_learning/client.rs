//! [`AmazonMlClassifier`], its builder, and the `Predict` call.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_machinelearning::Client;
use aws_sdk_machinelearning::config::retry::RetryConfig;

use aws_sdk_machinelearning::types::{EntityStatus, MlModelType, RealtimeEndpointStatus};
use serde::Serialize;

use crate::aws::{AwsErrorKind, DEFAULT_STARTUP_TIMEOUT, StartupError, call_at_startup};
use crate::classify::{Classifier, Label, Prediction};
use crate::error::ClassifyError;

use super::error::call_error;
use super::*;

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
/// See the [module docs](crate::machine_learning) for discovery, routing, records, limits and
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
