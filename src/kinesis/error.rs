//! How Kinesis API errors map onto what a reader does next.
//!
//! One pure function, [`classify`], turns an SDK error into a [`CallError`]:
//! renew the iterator, back off (throttled), retry (transient), or stop
//! (permanent, with a message that says what to do).

use std::error::Error as StdError;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

use crate::SourceError;

/// The error codes Kinesis uses for throttling.
const THROTTLING: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "KMSThrottlingException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
];

/// What a failed Kinesis call means for the caller.
#[derive(Debug)]
pub(crate) enum CallError {
    /// `ExpiredIteratorException`: get a new iterator and go on.
    Expired,
    /// Throttled: back off with jitter, then retry.
    Throttled(SourceError),
    /// Transient (5xx, connection, timeout): retry.
    Transient(SourceError),
    /// `ResourceInUseException` (a subscription or consumer is busy): retry
    /// after a pause.
    InUse(SourceError),
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
            | CallError::Permanent(e) => e,
        }
    }
}

fn advice(code: &str) -> &'static str {
    match code {
        "ResourceNotFoundException" => {
            "check the stream name or ARN, the region and the endpoint URL; the stream must exist and be ACTIVE"
        }
        "AccessDeniedException" => {
            "grant kinesis:ListShards, kinesis:GetShardIterator, kinesis:GetRecords and kinesis:DescribeStreamSummary (plus kinesis:RegisterStreamConsumer, kinesis:DescribeStreamConsumer and kinesis:SubscribeToShard for enhanced fan-out)"
        }
        "KMSAccessDeniedException"
        | "KMSDisabledException"
        | "KMSInvalidStateException"
        | "KMSNotFoundException"
        | "KMSOptInRequired" => {
            "the stream is encrypted with a KMS key this role cannot use: grant kms:Decrypt on it and check the key is enabled"
        }
        "InvalidArgumentException" | "ValidationException" => {
            "a request parameter was rejected; the message says which"
        }
        _ => "see the message",
    }
}

/// Maps an SDK error of operation `op` onto a [`CallError`].
pub(crate) fn classify<E>(op: &'static str, err: SdkError<E>) -> CallError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("").to_string();
            let message = service.err().message().unwrap_or("").to_string();
            let status = service.raw().status().as_u16();
            let text = format!("{op}: {code} (HTTP {status}): {message}");
            if code == "ExpiredIteratorException" {
                CallError::Expired
            } else if THROTTLING.contains(&code.as_str()) {
                CallError::Throttled(SourceError::throttled(text).with_source(err))
            } else if code == "ResourceInUseException" {
                CallError::InUse(SourceError::unavailable(text).with_source(err))
            } else if status >= 500 || code.starts_with("InternalFailure") {
                CallError::Transient(SourceError::unavailable(text).with_source(err))
            } else {
                let text = format!("{text}; {}", advice(&code));
                CallError::Permanent(SourceError::permanent(text).with_source(err))
            }
        }
        SdkError::TimeoutError(_) => CallError::Transient(
            SourceError::unavailable(format!("{op}: timed out")).with_source(err),
        ),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => CallError::Transient(
            SourceError::unavailable(format!("{op}: connection or response failed"))
                .with_source(err),
        ),
        _ => CallError::Permanent(
            SourceError::permanent(format!("{op}: could not build the request: {err}"))
                .with_source(err),
        ),
    }
}
