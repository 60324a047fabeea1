//! What every AWS backend shares: one classification of SDK errors.
//!
//! Each backend (`kinesis`, `sns`, `sagemaker`, the DynamoDB checkpoint
//! store, …) maps a
//! failed call through [`AwsFailure::from_sdk`] and then adds only what is its
//! own: the operation and resource in the message, a permission hint, and the
//! few codes that mean something special to it (Kinesis's
//! `ExpiredIteratorException`, SageMaker's `ModelError`). The lists of
//! throttling, transient, credential and not-found codes live here once.

#[cfg(any(feature = "sns", feature = "sagemaker"))]
pub(crate) mod batcher;
mod error;
mod startup;

pub use error::{AwsErrorKind, AwsFailure};
pub use startup::DEFAULT_STARTUP_TIMEOUT;
#[cfg_attr(
    not(any(feature = "sns", feature = "machine-learning")),
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
