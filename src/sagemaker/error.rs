//! `InvokeEndpoint` failures as [`ClassifyError`]s: [`map_invoke_error`],
//! and how a failed batch is answered.

use std::error::Error as StdError;
use std::sync::Arc;

use aws_sdk_sagemakerruntime::error::SdkError;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;

use crate::aws::{AwsErrorKind, AwsFailure};
use crate::error::{BoxError, ClassifyError};

/// The modeled `Message` field of an `InvokeEndpoint` error.
pub(super) fn modeled_message(err: &InvokeEndpointError) -> Option<&str> {
    match err {
        InvokeEndpointError::ModelError(e) => e.message(),
        InvokeEndpointError::ValidationError(e) => e.message(),
        InvokeEndpointError::ServiceUnavailable(e) => e.message(),
        InvokeEndpointError::InternalFailure(e) => e.message(),
        InvokeEndpointError::InternalDependencyException(e) => e.message(),
        InvokeEndpointError::ModelNotReadyException(e) => e.message(),
        _ => None,
    }
}

/// SageMaker's own hints, after the shared classification.
pub(super) fn advice(failure: &AwsFailure) -> &'static str {
    if failure.has_code("ValidationError") {
        return "check the endpoint name, the region, and the content type and body the model \
                expects (an endpoint that does not exist or is not InService is reported this way)";
    }
    match failure.kind {
        AwsErrorKind::AccessDenied => {
            "grant sagemaker:InvokeEndpoint on the endpoint's ARN to this role, and check its region"
        }
        AwsErrorKind::ExpiredCredentials | AwsErrorKind::NotFound => failure.kind.hint(),
        _ => "see the message",
    }
}

/// Maps an `InvokeEndpoint` failure on `endpoint` onto a [`ClassifyError`],
/// keeping the SDK error as its source.
///
/// - `ThrottlingException` (and other throttling codes, or HTTP 429):
///   [`Throttled`](ClassifyError::Throttled).
/// - `ServiceUnavailable`, `InternalFailure`, `InternalDependencyException`,
///   any 5xx, `ModelNotReadyException` (a serverless variant still
///   provisioning, a multi-model endpoint still loading), timeouts and
///   connection failures: [`Unavailable`](ClassifyError::Unavailable).
/// - `ModelError` (the model container answered with an error): permanent,
///   with the model's own status and message and the CloudWatch log stream;
///   unless the container's status was 429 (throttled) or 502, 503, 504
///   (unavailable), which say it was overloaded rather than that the input
///   was bad.
/// - `ValidationError` and everything else: permanent, with the message and
///   what to check.
pub fn map_invoke_error(endpoint: &str, err: SdkError<InvokeEndpointError>) -> ClassifyError {
    let op = format!("InvokeEndpoint on endpoint {endpoint:?}");
    if let SdkError::ServiceError(service) = &err
        && let InvokeEndpointError::ModelError(model) = service.err()
    {
        let message = model.message().unwrap_or("");
        let original = model.original_status_code();
        let mut text = format!("{op}: the model container failed (ModelError): {message}");
        if let Some(status) = original {
            text.push_str(&format!("; the model answered HTTP {status}"));
        }
        if let Some(said) = model.original_message().filter(|m| !m.is_empty()) {
            text.push_str(&format!(": {said}"));
        }
        if let Some(logs) = model.log_stream_arn() {
            text.push_str(&format!("; its logs are in {logs}"));
        }
        return match original {
            Some(429) => ClassifyError::throttled(text).with_source(err),
            Some(502..=504) => ClassifyError::unavailable(text).with_source(err),
            _ => {
                text.push_str(
                    "; the input or the model is at fault: check the request format the \
                     model expects, and its logs",
                );
                ClassifyError::permanent(text).with_source(err)
            }
        };
    }
    let mut failure = AwsFailure::from_sdk(&err);
    if let SdkError::ServiceError(service) = &err
        && failure.message.is_empty()
    {
        // The modeled `Message` field, when the metadata has none.
        failure.message = modeled_message(service.err()).unwrap_or("").to_owned();
    }
    let text = if failure.has_code("ModelNotReadyException") {
        // A serverless variant still provisioning, a multi-model endpoint
        // still loading: SageMaker's own transient code.
        return ClassifyError::unavailable(format!(
            "{op}: {failure}; the model is still loading or provisioning, the call will be retried"
        ))
        .with_source(err);
    } else if failure.kind.is_retryable() {
        format!("{op}: {failure}")
    } else {
        format!("{op}: {failure}; {}", advice(&failure))
    };
    failure.kind.classify_error(text).with_source(err)
}

/// The answer of a `classify` call whose micro-batch was never sent.
pub(super) fn batcher_stopped() -> ClassifyError {
    ClassifyError::unavailable(
        "the SageMaker micro-batcher stopped before answering (the Tokio runtime it ran on \
         shut down); retry the call",
    )
}

/// Prefixes an error's message with where it happened, keeping its class
/// and source.
pub(super) fn in_context(err: ClassifyError, context: &str) -> ClassifyError {
    match err {
        ClassifyError::Throttled { message, source } => ClassifyError::Throttled {
            message: format!("{context}: {message}"),
            source,
        },
        ClassifyError::Unavailable { message, source } => ClassifyError::Unavailable {
            message: format!("{context}: {message}"),
            source,
        },
        ClassifyError::Permanent { message, source } => ClassifyError::Permanent {
            message: format!("{context}: {message}"),
            source,
        },
        timeout @ ClassifyError::Timeout(_) => timeout,
    }
}

/// One error for each of `n` items of a failed batch: the same class and
/// message, the source shared (an `Arc` around the original).
pub(super) fn replicate(err: ClassifyError, n: usize) -> Vec<ClassifyError> {
    type Shared = Arc<dyn StdError + Send + Sync + 'static>;
    let share = |source: Option<BoxError>| source.map(Shared::from);
    let again = |source: &Option<Shared>| source.clone().map(|s| Box::new(s) as BoxError);
    match err {
        ClassifyError::Throttled { message, source } => {
            let source = share(source);
            (0..n)
                .map(|_| ClassifyError::Throttled {
                    message: message.clone(),
                    source: again(&source),
                })
                .collect()
        }
        ClassifyError::Unavailable { message, source } => {
            let source = share(source);
            (0..n)
                .map(|_| ClassifyError::Unavailable {
                    message: message.clone(),
                    source: again(&source),
                })
                .collect()
        }
        ClassifyError::Permanent { message, source } => {
            let source = share(source);
            (0..n)
                .map(|_| ClassifyError::Permanent {
                    message: message.clone(),
                    source: again(&source),
                })
                .collect()
        }
        ClassifyError::Timeout(d) => (0..n).map(|_| ClassifyError::Timeout(d)).collect(),
    }
}

/// Why an `InvokeEndpoint` call gave no predictions, and whether sending the
/// batch's items in smaller groups may succeed where the batch did not.
pub(super) struct Failure {
    pub(super) error: ClassifyError,
    pub(super) refusal: Refusal,
}

/// How a batch of several items was refused as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Not refused as a batch (or a single item): smaller groups would fail
    /// the same way.
    None,
    /// The body was over `max_payload_bytes`: smaller groups may fit.
    TooLarge,
    /// The model or the service rejected the body (`ModelError`,
    /// `ValidationError`): one bad item may be the cause.
    Invalid,
}

impl From<ClassifyError> for Failure {
    fn from(error: ClassifyError) -> Self {
        Failure {
            error,
            refusal: Refusal::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sagemakerruntime::types::error::{ModelError, ValidationError};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(err: InvokeEndpointError, status: u16) -> SdkError<InvokeEndpointError> {
        let raw = aws_sdk_sagemakerruntime::config::http::HttpResponse::new(
            StatusCode::try_from(status).unwrap(),
            SdkBody::empty(),
        );
        SdkError::service_error(err, raw)
    }

    fn generic(code: &str, message: &str) -> InvokeEndpointError {
        InvokeEndpointError::generic(ErrorMetadata::builder().code(code).message(message).build())
    }

    #[test]
    fn model_error_is_permanent_with_the_models_message_and_logs() {
        let model = ModelError::builder()
            .message("Received client error (400) from primary")
            .original_status_code(400)
            .original_message("could not parse the input")
            .log_stream_arn("arn:aws:logs:us-east-1:1:log-group:/aws/sagemaker/Endpoints/e")
            .meta(ErrorMetadata::builder().code("ModelError").build())
            .build();
        let err = map_invoke_error(
            "e",
            service_error(InvokeEndpointError::ModelError(model), 424),
        );
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(text.contains("the model container failed"), "{text}");
        assert!(text.contains("Received client error (400)"), "{text}");
        assert!(
            text.contains("HTTP 400: could not parse the input"),
            "{text}"
        );
        assert!(
            text.contains("log-group:/aws/sagemaker/Endpoints/e"),
            "{text}"
        );
        let source = StdError::source(&err).expect("the SDK error is kept");
        assert!(
            source
                .downcast_ref::<SdkError<InvokeEndpointError>>()
                .is_some()
        );
    }

    #[test]
    fn model_error_from_an_overloaded_container_is_retryable() {
        for (status, throttled) in [(429, true), (503, false)] {
            let model = ModelError::builder().original_status_code(status).build();
            let err = map_invoke_error(
                "e",
                service_error(InvokeEndpointError::ModelError(model), 424),
            );
            assert!(err.is_retryable(), "{status}");
            assert_eq!(err.is_throttling(), throttled);
        }
    }

    #[test]
    fn codes_map_to_retryable_or_permanent() {
        let cases = [
            ("ThrottlingException", 400, "throttled"),
            ("ServiceUnavailable", 503, "unavailable"),
            ("InternalFailure", 500, "unavailable"),
            ("InternalDependencyException", 530, "unavailable"),
            ("ModelNotReadyException", 429, "unavailable"),
            ("SlowDown", 429, "throttled"),
            ("SomethingNew", 502, "unavailable"),
            ("ValidationError", 400, "permanent"),
            ("AccessDeniedException", 403, "permanent"),
            // The shared classification (issue 14): expired credentials are
            // retryable (a refreshing provider signs the next attempt anew),
            // and every throttling code counts, not only SageMaker's four.
            ("ExpiredTokenException", 400, "unavailable"),
            ("ThrottledException", 400, "throttled"),
        ];
        for (code, status, kind) in cases {
            let err = map_invoke_error("e", service_error(generic(code, "msg"), status));
            assert_eq!(err.kind(), kind, "{code}");
        }
        let validation = ValidationError::builder()
            .message("Endpoint e of account 1 not found.")
            .meta(ErrorMetadata::builder().code("ValidationError").build())
            .build();
        let err = map_invoke_error(
            "e",
            service_error(InvokeEndpointError::ValidationError(validation), 400),
        );
        let text = err.to_string();
        assert!(!err.is_retryable());
        assert!(
            text.contains("Endpoint e of account 1 not found."),
            "{text}"
        );
        assert!(text.contains("check the endpoint name"), "{text}");
    }

    #[test]
    fn replicated_errors_keep_class_message_and_source() {
        let io = std::io::Error::other("boom");
        let errs = replicate(ClassifyError::throttled("slow down").with_source(io), 3);
        assert_eq!(errs.len(), 3);
        for e in &errs {
            assert!(e.is_throttling());
            assert_eq!(StdError::source(e).unwrap().to_string(), "boom");
        }
        let ctx = in_context(ClassifyError::permanent("bad"), "where");
        assert_eq!(ctx.to_string(), "classifier failed permanently: where: bad");
    }
}
