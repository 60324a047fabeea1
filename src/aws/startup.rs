//! Start-up calls: a check made before the first record, bounded in time.

use std::future::Future;
use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::AwsFailure;

/// How long a backend's start-up check may take, unless its builder's
/// `startup_timeout` says otherwise.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The first pause between start-up attempts; it doubles up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Why a start-up call gave no answer to use.
#[derive(Debug)]
#[cfg_attr(
    not(any(
        feature = "sns",
        feature = "machine-learning",
        feature = "dynamodb",
        feature = "sqs"
    )),
    allow(dead_code)
)]
pub(crate) enum StartupError<E> {
    /// The service refused for good (not found, access denied, invalid).
    Refused {
        /// The classified failure.
        failure: AwsFailure,
        /// The SDK's error.
        error: E,
    },
    /// No answer within the time allowed: the service could not be reached,
    /// or kept failing with retryable errors (the last one, if any).
    TimedOut {
        /// The last retryable failure, if a call finished.
        last: Option<AwsFailure>,
    },
}

/// Makes `call` until it succeeds or fails permanently, pausing between
/// retryable failures (200 ms, doubling up to 2 s), all within `timeout`.
#[cfg_attr(
    not(any(
        feature = "sns",
        feature = "machine-learning",
        feature = "dynamodb",
        feature = "sqs"
    )),
    allow(dead_code)
)]
pub(crate) async fn call_at_startup<O, E, F, Fut>(
    timeout: Duration,
    mut call: F,
) -> Result<O, StartupError<SdkError<E, Response>>>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<O, SdkError<E, Response>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    let mut last = None;
    loop {
        let failure = match tokio::time::timeout_at(deadline, call()).await {
            Err(_) => return Err(StartupError::TimedOut { last }),
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(error)) => {
                let failure = AwsFailure::from_sdk(&error);
                if !failure.kind.is_retryable() {
                    return Err(StartupError::Refused { failure, error });
                }
                failure
            }
        };
        tracing::debug!(kind = %failure.kind, "start-up check failed; trying again");
        last = Some(failure);
        let wake = tokio::time::Instant::now() + pause;
        if wake >= deadline {
            tokio::time::sleep_until(deadline).await;
            return Err(StartupError::TimedOut { last });
        }
        tokio::time::sleep_until(wake).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_types::error::ErrorMetadata;

    use super::super::test_support::service_error;
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retryable_failures_are_retried_until_the_deadline() {
        let start = tokio::time::Instant::now();
        let mut calls = 0;
        let result: Result<(), _> = call_at_startup(Duration::from_secs(5), || {
            calls += 1;
            async {
                Err(service_error(
                    |m: ErrorMetadata| m,
                    "ThrottlingException",
                    400,
                ))
            }
        })
        .await;
        match result {
            Err(StartupError::TimedOut { last: Some(last) }) => {
                assert!(last.has_code("ThrottlingException"), "{last}");
            }
            other => panic!("expected a time-out, got {other:?}"),
        }
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        // 0, 0.2, 0.6, 1.4, 3.0 s; the next would be at 5.0 s.
        assert_eq!(calls, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_ends_at_once_and_a_hang_at_the_deadline() {
        let refused: Result<(), _> = call_at_startup(Duration::from_secs(5), || async {
            Err(service_error(|m: ErrorMetadata| m, "NotFound", 404))
        })
        .await;
        assert!(
            matches!(&refused, Err(StartupError::Refused { failure, .. }) if failure.has_code("NotFound")),
            "{refused:?}"
        );
        let start = tokio::time::Instant::now();
        let hung: Result<(), StartupError<SdkError<ErrorMetadata, Response>>> =
            call_at_startup(Duration::from_secs(3), std::future::pending).await;
        assert!(matches!(hung, Err(StartupError::TimedOut { last: None })));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
