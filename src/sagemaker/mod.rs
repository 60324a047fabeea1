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

use std::time::Duration;

#[cfg(doc)]
use crate::{Classifier, ClassifyError, Prediction};

mod batcher;
mod client;
mod error;
mod request;
mod response;

use client::Inner;
pub use client::{SageMakerClassifier, SageMakerClassifierBuilder};
pub use error::map_invoke_error;
pub use request::{CsvRequest, JsonRequest, RequestBuilder};
pub use response::{JsonResponse, ResponseParser};

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
