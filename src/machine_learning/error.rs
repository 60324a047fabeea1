//! Start-up errors ([`ConnectError`]) and `Predict` failures as
//! [`ClassifyError`]s, through the shared classification.

use std::error::Error as StdError;
use std::time::Duration;

use aws_sdk_machinelearning::error::{ProvideErrorMetadata, SdkError};

#[cfg(doc)]
use super::*;
use crate::aws::{AwsErrorKind, AwsFailure};
use crate::error::{BoxError, ClassifyError};

fn endpoint_advice(status: &str) -> &'static str {
    match status {
        "NONE" => {
            "the model has no realtime endpoint: create one with CreateRealtimeEndpoint \
             (aws machinelearning create-realtime-endpoint --ml-model-id ID), wait until GetMLModel \
             shows EndpointInfo.EndpointStatus READY (a few minutes), then start again"
        }
        "UPDATING" => {
            "the endpoint is being created or updated: wait until GetMLModel shows \
             EndpointInfo.EndpointStatus READY, then start again"
        }
        "FAILED" => {
            "creating the endpoint failed: delete it with DeleteRealtimeEndpoint, create it again \
             with CreateRealtimeEndpoint, and wait until it is READY"
        }
        _ => "wait until GetMLModel shows EndpointInfo.EndpointStatus READY, then start again",
    }
}

fn model_advice(status: &str) -> &'static str {
    match status {
        "PENDING" | "INPROGRESS" => {
            "training has not finished: wait until GetMLModel shows COMPLETED"
        }
        "FAILED" => {
            "training failed: GetMLModel's Message and LogUri say why; train the model again"
        }
        "DELETED" => "the model was deleted: train a new one and use its ID",
        _ => "wait until GetMLModel shows COMPLETED",
    }
}

/// Why an [`AmazonMlClassifier`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// `GetMLModel` said `ResourceNotFoundException`.
    #[error(
        "Amazon ML model {model_id:?} was not found: check the model ID, the region and the account \
         (GetMLModel said: {message})"
    )]
    ModelNotFound {
        /// The model asked for.
        model_id: String,
        /// What Amazon ML said.
        message: String,
        /// The SDK's error.
        #[source]
        source: BoxError,
    },
    /// The model exists but is not `COMPLETED`.
    #[error("Amazon ML model {model_id:?} is {status}, expected COMPLETED: {}", model_advice(.status))]
    ModelNotReady {
        /// The model asked for.
        model_id: String,
        /// Its status (`PENDING`, `INPROGRESS`, `FAILED`, `DELETED`).
        status: String,
    },
    /// A `REGRESSION` model predicts a number, not a label.
    #[error(
        "Amazon ML model {model_id:?} is a REGRESSION model, which predicts a number; \
         this classifier needs a BINARY or MULTICLASS model"
    )]
    Regression {
        /// The model asked for.
        model_id: String,
    },
    /// The model's type is missing or unknown.
    #[error(
        "Amazon ML model {model_id:?} has the type {found:?}; this classifier needs BINARY or MULTICLASS"
    )]
    UnknownModelType {
        /// The model asked for.
        model_id: String,
        /// What GetMLModel said (empty when it said nothing).
        found: String,
    },
    /// The realtime endpoint is not `READY` (`NONE`, `UPDATING`, `FAILED`).
    #[error(
        "the realtime endpoint of Amazon ML model {model_id:?} is {status}, expected READY: {}",
        endpoint_advice(.status)
    )]
    EndpointNotReady {
        /// The model asked for.
        model_id: String,
        /// The endpoint's status; `NONE` when the model has none.
        status: String,
    },
    /// `READY`, but no URL to send predictions to.
    #[error(
        "the realtime endpoint of Amazon ML model {model_id:?} is READY but GetMLModel gave no \
         EndpointUrl; call GetMLModel to check, or recreate the endpoint"
    )]
    NoEndpointUrl {
        /// The model asked for.
        model_id: String,
    },
    /// Amazon ML did not answer `GetMLModel` within the start-up time (it
    /// could not be reached, or kept failing with retryable errors).
    #[error(
        "check the endpoint URL, the region and the network, or raise \
         AmazonMlClassifierBuilder::startup_timeout: GetMLModel for Amazon ML model {model_id:?} \
         got no usable answer within {after:?}{last}",
        last = last.as_ref().map(|f| format!(" (last failure: {f})")).unwrap_or_default()
    )]
    StartupTimeout {
        /// The model asked for.
        model_id: String,
        /// The time allowed.
        after: Duration,
        /// The last retryable failure, if a call finished.
        last: Option<AwsFailure>,
    },
    /// `GetMLModel` itself was refused (access denied, invalid).
    #[error("GetMLModel for Amazon ML model {model_id:?} failed: {error}")]
    Call {
        /// The model asked for.
        model_id: String,
        /// The failure, retryable or permanent.
        #[source]
        error: ClassifyError,
    },
}

impl ConnectError {
    /// Whether trying again later may succeed: a failed `GetMLModel` call
    /// that was retryable, or an endpoint that is `UPDATING`, or a model
    /// still training.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Call { error, .. } => error.is_retryable(),
            ConnectError::StartupTimeout { .. } => true,
            ConnectError::EndpointNotReady { status, .. } => status == "UPDATING",
            ConnectError::ModelNotReady { status, .. } => {
                status == "PENDING" || status == "INPROGRESS"
            }
            _ => false,
        }
    }
}

/// Maps an SDK error of `op` on `model_id` onto a [`ClassifyError`] with a
/// message a user can act on; the SDK error is kept as the source.
///
/// The shared classification ([`AwsFailure::from_sdk`]) decides, except for
/// Amazon ML's own `PredictorNotMountedException` (retryable: an endpoint
/// still starting); what is added here is the hint.
pub(super) fn call_error<E>(op: &'static str, model_id: &str, err: SdkError<E>) -> ClassifyError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let failure = AwsFailure::from_sdk(&err);
    let text = format!("{op} on model {model_id:?}: {failure}");
    let (kind, hint) = if failure.has_code("PredictorNotMountedException") {
        (
            AwsErrorKind::Transient,
            "the realtime endpoint is not mounted: it may still be starting or updating (wait), \
             or it was deleted (check GetMLModel's EndpointInfo and recreate it with \
             CreateRealtimeEndpoint)",
        )
    } else if failure.has_code("InvalidInputException") {
        (
            failure.kind,
            "Amazon ML rejected the request: check that the record's keys are the model's \
             schema attribute names (see the record mapping)",
        )
    } else {
        let hint = match failure.kind {
            AwsErrorKind::Throttled => {
                "the realtime endpoint's request rate was exceeded: lower the classifier's \
                 max_requests_per_second or the pipeline's max_in_flight"
            }
            AwsErrorKind::NotFound => {
                "the model was not found: it may have been deleted, or the model ID or region \
                 is wrong"
            }
            AwsErrorKind::AccessDenied | AwsErrorKind::ExpiredCredentials => {
                "check the credentials and grant machinelearning:GetMLModel and \
                 machinelearning:Predict on the model"
            }
            _ => "",
        };
        (failure.kind, hint)
    };
    let text = if hint.is_empty() {
        text
    } else {
        format!("{text}; {hint}")
    };
    kind.classify_error(text).with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn predict_error(
        code: &str,
        status: u16,
    ) -> SdkError<aws_sdk_machinelearning::operation::predict::PredictError> {
        use aws_sdk_machinelearning::operation::predict::PredictError;
        crate::aws::test_support::service_error(PredictError::generic, code, status)
    }

    #[test]
    fn call_errors_follow_the_shared_classification() {
        for (code, status, kind) in [
            ("LimitExceededException", 400, "throttled"),
            ("PredictorNotMountedException", 400, "unavailable"),
            ("InternalServerException", 500, "unavailable"),
            ("ResourceNotFoundException", 400, "permanent"),
            ("InvalidInputException", 400, "permanent"),
            ("AccessDeniedException", 400, "permanent"),
            // Issue 14: expired credentials are retryable (a refreshing
            // provider signs the next attempt anew); they were permanent.
            ("ExpiredTokenException", 400, "unavailable"),
            // Issue 14: a 429 with any code is throttling.
            ("SomethingNew", 429, "throttled"),
        ] {
            let err = call_error("Predict", "ml-1", predict_error(code, status));
            assert_eq!(err.kind(), kind, "{code} (HTTP {status})");
            assert!(err.to_string().contains(code), "{err}");
        }
        let err = call_error(
            "Predict",
            "ml-1",
            predict_error("AccessDeniedException", 400),
        );
        assert!(err.to_string().contains("machinelearning:Predict"), "{err}");
    }
}
