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
use std::fmt;
use std::sync::Arc;

#[cfg(doc)]
use crate::Classifier;
use crate::error::ClassifyError;

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

mod client;
mod error;
mod request;
mod response;

pub use crate::rate::RateLimiter;
pub use client::{AmazonMlClassifier, AmazonMlClassifierBuilder};
pub use error::ConnectError;
pub use request::{flatten_json, json_record, observation_size};
pub use response::map_prediction;
