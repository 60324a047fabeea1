//! What every AWS backend shares: one classification of SDK errors, one
//! constructor shape, one rule for retries and start-up checks.
//!
//! # Errors
//!
//! Each backend (`kinesis`, `sns`, `sagemaker`, `machine_learning`, the
//! DynamoDB checkpoint store, …) maps a failed call through
//! [`AwsFailure::from_sdk`] and then adds only what is its own: the
//! operation and resource in the message, a permission hint, and the few
//! codes that mean something special to it (Kinesis's
//! `ExpiredIteratorException`, SageMaker's `ModelError` and
//! `ModelNotReadyException`, Amazon ML's `PredictorNotMountedException`,
//! the `SenderFault` of an SNS batch entry). The lists of throttling,
//! transient, credential and not-found codes live here once.
//! [`AwsErrorKind::classify_error`] and [`AwsErrorKind::route_error`] turn a
//! kind into the pipeline's errors, for a custom backend too.
//!
//! # Constructors
//!
//! Every backend is built the aws-sdk way: `Backend::builder(&SdkConfig, …)`
//! or `Backend::builder_from_client(client, …)`, then setters, then
//! `build()`. Both constructors turn the SDK client's own retries off.
//!
//! # Retries
//!
//! Retries are decided in one place, the pipeline's `RetryPolicy`: the SDK
//! makes one attempt per call, and a backend none of its own by default.
//! Worst case with the default policy (5 attempts), calls per record:
//!
//! | backend | pipeline | backend | SDK | calls per record |
//! |---|---|---|---|---|
//! | SNS router | 5 | 1 (`retry_policy` raises it) | 1 | **5** |
//! | SageMaker classifier | 5 | 1 | 1 | **5** (+1 item-alone call after a permanent batch refusal) |
//! | Amazon ML classifier | 5 | 1 | 1 | **5** |
//!
//! # Start-up
//!
//! A backend that can check its configuration without side effects does so
//! in an async `build()` (SNS: GetTopicAttributes per topic; Amazon ML:
//! GetMLModel), retrying throttling and connection failures until its
//! `startup_timeout` ([`DEFAULT_STARTUP_TIMEOUT`], 30 s), then failing with
//! an error that names the resource, hint first. SageMaker's runtime API has
//! no such call; see its module docs.

#[cfg(any(feature = "sns", feature = "sagemaker"))]
pub(crate) mod batcher;
mod error;
mod startup;

pub use error::{AwsErrorKind, AwsFailure};
pub use startup::DEFAULT_STARTUP_TIMEOUT;
#[cfg_attr(
    not(any(
        feature = "sns",
        feature = "machine-learning",
        feature = "dynamodb",
        feature = "sqs"
    )),
    allow(unused_imports)
)]
pub(crate) use startup::{StartupError, call_at_startup};

#[cfg(test)]
pub(crate) mod test_support {
    //! Service errors for the backends' unit tests.

    use aws_smithy_runtime_api::client::result::SdkError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    /// A service error answered with `code`, message `said so`, HTTP
    /// `status`, wrapped by `wrap` (an operation error's `generic`).
    pub(crate) fn service_error<E>(
        wrap: impl FnOnce(ErrorMetadata) -> E,
        code: &str,
        status: u16,
    ) -> SdkError<E, Response> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("said so")
            .build();
        let raw = Response::new(
            StatusCode::try_from(status).expect("a valid HTTP status"),
            SdkBody::empty(),
        );
        SdkError::service_error(wrap(meta), raw)
    }
}
