//! How Kinesis API errors map onto what a reader does next, and the typed
//! [`StartupError`] of a source that cannot start.
//!
//! [`classify`] takes the one classification every AWS backend shares
//! ([`AwsFailure::from_sdk`]) and adds only what is Kinesis's own: an
//! expired iterator is renewed, a busy consumer (`ResourceInUseException`)
//! is waited for, and a refused call says which IAM permissions to grant.
//! Depends on nothing else in `kinesis`.

use std::error::Error as StdError;
use std::time::Duration;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

use crate::SourceError;
use crate::aws::{AwsErrorKind, AwsFailure};

/// What a failed Kinesis call means for the caller.
#[derive(Debug)]
pub(crate) enum CallError {
    /// `ExpiredIteratorException`: get a new iterator and go on.
    Expired,
    /// Throttled: back off with jitter, then retry.
    Throttled(SourceError),
    /// Transient (5xx, connection, timeout, expired credentials): retry.
    Transient(SourceError),
    /// `ResourceInUseException` (a subscription or consumer is busy): retry
    /// after a pause.
    InUse(SourceError),
    /// The stream (or consumer) does not exist. Retrying cannot help.
    NotFound(SourceError),
    /// Retrying cannot help.
    Permanent(SourceError),
}

impl CallError {
    pub(crate) fn into_source_error(self) -> SourceError {
        match self {
            CallError::Expired => SourceError::unavailable("shard iterator expired"),
            CallError::Throttled(e)
            | CallError::Transient(e)
            | CallError::InUse(e)
            | CallError::NotFound(e)
            | CallError::Permanent(e) => e,
        }
    }

    /// Whether another attempt may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        !matches!(self, CallError::NotFound(_) | CallError::Permanent(_))
    }

    /// A timed-out call (our own `call_timeout`, not the SDK's).
    pub(crate) fn timed_out(op: &'static str) -> CallError {
        CallError::Transient(SourceError::unavailable(format!("{op}: timed out")))
    }
}

/// The permissions a reader needs, named when Kinesis refuses a call.
const PERMISSIONS: &str = "grant kinesis:ListShards, kinesis:GetShardIterator, kinesis:GetRecords \
     and kinesis:DescribeStreamSummary (plus kinesis:RegisterStreamConsumer, \
     kinesis:DescribeStreamConsumer and kinesis:SubscribeToShard for enhanced fan-out)";

/// Kinesis's own advice for a permanent failure, beyond the shared hint.
fn advice(failure: &AwsFailure) -> &'static str {
    match failure.code.as_deref() {
        Some(
            "KMSAccessDeniedException"
            | "KMSDisabledException"
            | "KMSInvalidStateException"
            | "KMSNotFoundException"
            | "KMSOptInRequired",
        ) => {
            "the stream is encrypted with a KMS key this role cannot use: grant kms:Decrypt on \
             it and check the key is enabled"
        }
        _ => match failure.kind {
            AwsErrorKind::AccessDenied => PERMISSIONS,
            AwsErrorKind::NotFound => {
                "check the stream name or ARN, the region and the endpoint URL; the stream must \
                 exist and be ACTIVE"
            }
            kind => kind.hint(),
        },
    }
}

/// Maps an SDK error of operation `op` onto a [`CallError`].
pub(crate) fn classify<E>(op: &'static str, err: SdkError<E>) -> CallError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let failure = AwsFailure::from_sdk(&err);
    if failure.has_code("ExpiredIteratorException") {
        return CallError::Expired;
    }
    let text = format!("{op}: {failure}");
    if failure.has_code("ResourceInUseException") {
        return CallError::InUse(SourceError::unavailable(text).with_source(err));
    }
    match failure.kind {
        AwsErrorKind::Throttled => {
            CallError::Throttled(SourceError::throttled(text).with_source(err))
        }
        kind if kind.is_retryable() => {
            CallError::Transient(SourceError::unavailable(text).with_source(err))
        }
        AwsErrorKind::NotFound => CallError::NotFound(
            SourceError::permanent(format!("{}; {text}", advice(&failure))).with_source(err),
        ),
        _ => CallError::Permanent(
            SourceError::permanent(format!("{}; {text}", advice(&failure))).with_source(err),
        ),
    }
}

/// Why a [`KinesisSource`](super::KinesisSource) could not start. It is the
/// [`source`](std::error::Error::source) of the permanent [`SourceError`]
/// that [`build`](super::KinesisSourceBuilder::build) returns; downcast to
/// tell the cases apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// No answer from Kinesis within the start-up timeout: the endpoint is
    /// closed or unreachable, or every answer was throttling or a 5xx.
    #[error(
        "could not reach Kinesis at {endpoint} within {timeout:?}: check --endpoint-url / the \
         region / network (stream {stream:?}; {attempts} attempts, the last: {last})"
    )]
    Unreachable {
        /// The endpoint URL the client was configured with, or the region's
        /// default endpoint.
        endpoint: String,
        /// The stream the source was asked to read.
        stream: String,
        /// The start-up timeout that ran out
        /// ([`startup_timeout`](super::KinesisSourceBuilder::startup_timeout)).
        timeout: Duration,
        /// Calls tried.
        attempts: u32,
        /// The last failure, as the shared AWS classification put it.
        last: String,
    },
    /// The stream does not exist at this endpoint and region.
    #[error(
        "the Kinesis stream {stream:?} does not exist at {endpoint}: create it, or check the \
         stream name, the region and --endpoint-url ({detail})"
    )]
    StreamNotFound {
        /// The stream name or ARN the source was given.
        stream: String,
        /// The endpoint asked.
        endpoint: String,
        /// What Kinesis answered.
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::operation::get_records::GetRecordsError;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn service(code: &str, status: u16) -> SdkError<GetRecordsError> {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(GetRecordsError::generic(meta), raw)
    }

    #[test]
    fn kinesis_codes_keep_their_meaning() {
        assert!(matches!(
            classify("GetRecords", service("ExpiredIteratorException", 400)),
            CallError::Expired
        ));
        assert!(matches!(
            classify("GetRecords", service("ResourceInUseException", 400)),
            CallError::InUse(_)
        ));
        for code in [
            "ProvisionedThroughputExceededException",
            "LimitExceededException",
            "KMSThrottlingException",
        ] {
            assert!(
                matches!(
                    classify("GetRecords", service(code, 400)),
                    CallError::Throttled(_)
                ),
                "{code}"
            );
        }
        assert!(matches!(
            classify("GetRecords", service("InternalFailure", 500)),
            CallError::Transient(_)
        ));
        assert!(matches!(
            classify("GetRecords", service("ResourceNotFoundException", 400)),
            CallError::NotFound(_)
        ));
        let CallError::Permanent(e) = classify("GetRecords", service("KMSDisabledException", 400))
        else {
            panic!("a disabled KMS key is permanent");
        };
        assert!(e.to_string().contains("kms:Decrypt"), "{e}");
        let CallError::Permanent(e) = classify("GetRecords", service("AccessDeniedException", 400))
        else {
            panic!("access denied is permanent");
        };
        assert!(e.to_string().contains("kinesis:GetRecords"), "{e}");
    }

    #[test]
    fn a_refused_connection_is_transient() {
        let err: SdkError<GetRecordsError> = SdkError::dispatch_failure(ConnectorError::io(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        ));
        assert!(matches!(
            classify("GetRecords", err),
            CallError::Transient(_)
        ));
    }
}
