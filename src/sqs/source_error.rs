//! Errors of [`SqsSource`](super::SqsSource): building it
//! ([`SqsConfigError`]), and the mapping of failed calls onto
//! [`SourceError`].

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::{AwsErrorKind, AwsFailure};
use crate::error::SourceError;

/// Why an [`SqsSource`](super::SqsSource) could not be built. Each message
/// starts with what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqsConfigError {
    /// The start-up check (GetQueueAttributes) was refused: the queue does
    /// not exist, or the credentials may not read it.
    #[error("{hint}: GetQueueAttributes on SQS queue {queue_url} failed: {failure}")]
    QueueCheck {
        /// What to do.
        hint: &'static str,
        /// The queue.
        queue_url: String,
        /// The classified failure.
        failure: AwsFailure,
        /// The SDK's error.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
    /// The queue did not answer within the start-up timeout.
    #[error(
        "check the endpoint URL, the network and the region, or raise \
         SqsSourceBuilder::startup_timeout: SQS queue {queue_url} did not answer \
         GetQueueAttributes within {after:?}{last}",
        last = last.as_ref().map(|f| format!(" (last failure: {f})")).unwrap_or_default()
    )]
    StartupTimeout {
        /// The queue.
        queue_url: String,
        /// The time allowed.
        after: Duration,
        /// The last retryable failure, if a call finished.
        last: Option<AwsFailure>,
    },
    /// A setting is out of the range SQS accepts.
    #[error("fix SqsSourceBuilder::{setting}: {detail}")]
    Invalid {
        /// The builder method.
        setting: &'static str,
        /// What is wrong, and the range allowed.
        detail: String,
    },
}

/// What to do about a refused start-up check.
pub(crate) fn queue_hint(kind: AwsErrorKind) -> &'static str {
    match kind {
        AwsErrorKind::NotFound => {
            "create the queue, or fix its URL (name, region, account) or the endpoint URL"
        }
        AwsErrorKind::AccessDenied => {
            "grant sqs:GetQueueAttributes, sqs:ReceiveMessage, sqs:DeleteMessage and \
             sqs:ChangeMessageVisibility on the queue to this role, and check the credentials"
        }
        kind => kind.hint(),
    }
}

/// A failed SQS call as a [`SourceError`]: throttled, unavailable (the
/// other retryable kinds) or permanent, with the operation, the queue and
/// what to do; the SDK's error is the source.
pub(crate) fn source_error<E>(op: &str, queue: &str, err: SdkError<E, Response>) -> SourceError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let failure = AwsFailure::from_sdk(&err);
    let message = format!(
        "{op} on SQS queue {queue} failed: {failure}; {}",
        queue_hint(failure.kind)
    );
    let e = match failure.kind {
        AwsErrorKind::Throttled => SourceError::throttled(message),
        kind if kind.is_retryable() => SourceError::unavailable(message),
        _ => SourceError::permanent(message),
    };
    e.with_source(err)
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;

    use super::*;
    use crate::aws::test_support::service_error;

    #[test]
    fn access_denied_is_permanent_with_an_iam_hint() {
        let err = service_error(ReceiveMessageError::generic, "AccessDenied", 403);
        let e = source_error("ReceiveMessage", "https://q/1/orders", err);
        assert!(!e.is_retryable());
        let text = e.to_string();
        assert!(text.contains("sqs:ReceiveMessage"), "{text}");
        assert!(text.contains("https://q/1/orders"), "{text}");
    }

    #[test]
    fn a_missing_queue_is_permanent_and_named() {
        let err = service_error(
            ReceiveMessageError::generic,
            "AWS.SimpleQueueService.NonExistentQueue",
            400,
        );
        let e = source_error("ReceiveMessage", "https://q/1/gone", err);
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("create the queue"), "{e}");
    }

    #[test]
    fn throttling_and_5xx_are_retryable() {
        let err = service_error(ReceiveMessageError::generic, "RequestThrottled", 403);
        assert!(source_error("ReceiveMessage", "q", err).is_throttling());
        let err = service_error(ReceiveMessageError::generic, "InternalError", 500);
        let e = source_error("ReceiveMessage", "q", err);
        assert!(e.is_retryable() && !e.is_throttling());
    }
}
