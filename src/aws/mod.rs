//! What every AWS backend shares: one classification of SDK errors.
//!
//! Each backend ([`kinesis`](crate::kinesis), [`sns`](crate::sns),
//! [`sagemaker`](crate::sagemaker), the DynamoDB checkpoint store, …) maps a
//! failed call through [`AwsFailure::from_sdk`] and then adds only what is its
//! own: the operation and resource in the message, a permission hint, and the
//! few codes that mean something special to it (Kinesis's
//! `ExpiredIteratorException`, SageMaker's `ModelError`). The lists of
//! throttling, transient, credential and not-found codes live here once.

mod error;

pub use error::{AwsErrorKind, AwsFailure};

/// How long a backend's start-up checks (the stream, table or topic
/// exists; the endpoint answers) may take before the builder gives up with
/// a clear error, unless its `startup_timeout` says otherwise.
pub const DEFAULT_STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
