//! [`AwsFailure`]: a failed AWS call, classified once for every backend.

use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::{ClassifyError, ErrorClass, RouteError};

/// Codes AWS services use to say "slow down". HTTP 429 means the same.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "Throttled",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "KMSThrottling",
    "KMSThrottlingException",
];

/// Codes for faults on the service's side. Any HTTP 5xx means the same.
const TRANSIENT: &[&str] = &[
    "InternalError",
    "InternalErrorException",
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "InternalServiceError",
    "InternalServiceException",
    "InternalDependencyException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Codes for credentials that were valid and have expired.
const EXPIRED_CREDENTIALS: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "TokenRefreshRequired",
];

/// Codes for credentials that are wrong, or lack a permission.
const ACCESS_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "AuthorizationErrorException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "KMSAccessDeniedException",
];

/// Codes for a named resource that does not exist.
const NOT_FOUND: &[&str] = &[
    "ResourceNotFoundException",
    "ResourceNotFound",
    "NotFound",
    "NotFoundException",
    "NonExistentQueue",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// What a failed AWS call means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AwsErrorKind {
    /// The service asked to slow down: a throttling code, or HTTP 429.
    /// Retryable, after a backoff.
    Throttled,
    /// A fault on the service's side or on the way to it: a 5xx, an
    /// internal-error code, a timeout, a dropped connection or an unreadable
    /// response. Retryable.
    Transient,
    /// The credentials expired. Retryable: a refreshing credentials provider
    /// (a role, SSO, the instance metadata) signs the next attempt with new
    /// ones; static keys stay expired, and the retries run out.
    ExpiredCredentials,
    /// The credentials are invalid, or lack a permission. Permanent.
    AccessDenied,
    /// The named resource (stream, topic, queue, table, endpoint, model)
    /// does not exist in this account and region. Permanent.
    NotFound,
    /// The request was refused, or could not be built or sent (a bad
    /// endpoint URL, no credentials found). Retrying it cannot help.
    Permanent,
}

impl AwsErrorKind {
    /// The kind of a service error from its code and HTTP status.
    ///
    /// Backends look at their own special codes first, then call this.
    pub fn from_code(code: &str, status: Option<u16>) -> AwsErrorKind {
        if THROTTLING.contains(&code) || status == Some(429) {
            AwsErrorKind::Throttled
        } else if EXPIRED_CREDENTIALS.contains(&code) {
            AwsErrorKind::ExpiredCredentials
        } else if ACCESS_DENIED.contains(&code) {
            AwsErrorKind::AccessDenied
        } else if NOT_FOUND.contains(&code) {
            AwsErrorKind::NotFound
        } else if status == Some(403) {
            // A refusal whose code is not one of the above, or could not be
            // read (an error body in another protocol's shape, as moto
            // sends for IAM denials): AWS answers 403 to unauthorised and
            // badly signed requests.
            AwsErrorKind::AccessDenied
        } else if TRANSIENT.contains(&code) || status.is_some_and(|s| s >= 500) {
            AwsErrorKind::Transient
        } else {
            AwsErrorKind::Permanent
        }
    }

    /// Whether another attempt of the same call may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            AwsErrorKind::Throttled | AwsErrorKind::Transient | AwsErrorKind::ExpiredCredentials
        )
    }

    /// Retryable or permanent, as the pipeline's errors say it.
    pub fn class(self) -> ErrorClass {
        if self.is_retryable() {
            ErrorClass::Retryable
        } else {
            ErrorClass::Permanent
        }
    }

    /// A short name for logs and metrics: `throttled`, `transient`,
    /// `expired_credentials`, `access_denied`, `not_found` or `permanent`.
    pub fn as_str(self) -> &'static str {
        match self {
            AwsErrorKind::Throttled => "throttled",
            AwsErrorKind::Transient => "transient",
            AwsErrorKind::ExpiredCredentials => "expired_credentials",
            AwsErrorKind::AccessDenied => "access_denied",
            AwsErrorKind::NotFound => "not_found",
            AwsErrorKind::Permanent => "permanent",
        }
    }

    /// What to do about it, in general terms; backends add their own
    /// specifics (which permission, which resource).
    pub fn hint(self) -> &'static str {
        match self {
            AwsErrorKind::Throttled => {
                "the service is throttling this account or resource: lower the request rate, \
                 or raise the limit"
            }
            AwsErrorKind::Transient => {
                "a fault on the service's side or on the network; it is retried"
            }
            AwsErrorKind::ExpiredCredentials => {
                "the credentials expired: refresh them (for example `aws sso login`), or use \
                 a provider that refreshes them (a role rather than static keys)"
            }
            AwsErrorKind::AccessDenied => {
                "the credentials are invalid or lack a permission: check the access key or \
                 role, and its IAM policy"
            }
            AwsErrorKind::NotFound => {
                "check the name or ARN, the region and the endpoint URL: the resource must \
                 exist there"
            }
            AwsErrorKind::Permanent => "the request was refused; the message says why",
        }
    }
}

impl AwsErrorKind {
    /// A [`ClassifyError`] of this kind with `message`: throttled,
    /// unavailable (the other retryable kinds) or permanent.
    pub fn classify_error(self, message: impl Into<String>) -> ClassifyError {
        match self {
            AwsErrorKind::Throttled => ClassifyError::throttled(message),
            kind if kind.is_retryable() => ClassifyError::unavailable(message),
            _ => ClassifyError::permanent(message),
        }
    }

    /// A [`RouteError`] of this kind with `message`: throttled,
    /// unavailable (the other retryable kinds) or permanent.
    pub fn route_error(self, message: impl Into<String>) -> RouteError {
        match self {
            AwsErrorKind::Throttled => RouteError::throttled(message),
            kind if kind.is_retryable() => RouteError::unavailable(message),
            _ => RouteError::permanent(message),
        }
    }
}

impl fmt::Display for AwsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed AWS call, classified: its [`kind`](AwsFailure::kind), and the
/// code, message and HTTP status the service answered with, if it answered.
///
/// `Display` gives `Code (HTTP 400): message`, or what went wrong before an
/// answer came (`timed out`, `could not connect: …`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AwsFailure {
    /// What the failure means for the caller.
    pub kind: AwsErrorKind,
    /// The service's error code (`ThrottlingException`, …), when it answered
    /// with one.
    pub code: Option<String>,
    /// The service's message, or a description of the transport failure.
    pub message: String,
    /// The HTTP status, when a response came back.
    pub status: Option<u16>,
}

impl AwsFailure {
    /// Classifies an SDK error of any AWS operation.
    pub fn from_sdk<E>(err: &SdkError<E, Response>) -> AwsFailure
    where
        E: ProvideErrorMetadata,
    {
        match err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = service.err().code().filter(|c| !c.is_empty());
                AwsFailure {
                    kind: AwsErrorKind::from_code(code.unwrap_or(""), Some(status)),
                    code: code.map(str::to_owned),
                    message: service.err().message().unwrap_or("").to_owned(),
                    status: Some(status),
                }
            }
            SdkError::TimeoutError(_) => AwsFailure::transport(
                AwsErrorKind::Transient,
                "timed out before the service answered".to_owned(),
            ),
            SdkError::DispatchFailure(dispatch) => {
                let cause = dispatch
                    .as_connector_error()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "the request could not be sent".to_owned());
                if dispatch.is_user() {
                    AwsFailure::transport(
                        AwsErrorKind::Permanent,
                        format!("the request could not be sent: {cause}"),
                    )
                } else if dispatch.is_timeout() {
                    AwsFailure::transport(
                        AwsErrorKind::Transient,
                        format!("the connection timed out: {cause}"),
                    )
                } else {
                    AwsFailure::transport(
                        AwsErrorKind::Transient,
                        format!("could not connect: {cause}"),
                    )
                }
            }
            SdkError::ResponseError(response) => AwsFailure {
                kind: AwsErrorKind::Transient,
                code: None,
                message: "the response could not be read".to_owned(),
                status: Some(response.raw().status().as_u16()),
            },
            // ConstructionFailure, and variants the SDK may add.
            _ => AwsFailure::transport(
                AwsErrorKind::Permanent,
                format!("the request could not be built: {err}"),
            ),
        }
    }

    fn transport(kind: AwsErrorKind, message: String) -> AwsFailure {
        AwsFailure {
            kind,
            code: None,
            message,
            status: None,
        }
    }

    /// The service's code, or the kind's name when there is none.
    pub fn code_or_kind(&self) -> &str {
        self.code.as_deref().unwrap_or(self.kind.as_str())
    }

    /// Whether the service named this code.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, self.status) {
            (Some(code), Some(status)) => write!(f, "{code} (HTTP {status})")?,
            (Some(code), None) => f.write_str(code)?,
            (None, Some(status)) => write!(f, "HTTP {status}")?,
            (None, None) => return f.write_str(&self.message),
        }
        if self.message.is_empty() {
            Ok(())
        } else {
            write!(f, ": {}", self.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
    use aws_smithy_runtime_api::http::Response;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn service(code: &str, status: u16) -> SdkError<ErrorMetadata, Response> {
        super::super::test_support::service_error(|meta| meta, code, status)
    }

    #[test]
    fn codes_map_to_kinds() {
        for (code, status, kind) in [
            ("ThrottlingException", 400, AwsErrorKind::Throttled),
            (
                "ProvisionedThroughputExceededException",
                400,
                AwsErrorKind::Throttled,
            ),
            ("Throttled", 400, AwsErrorKind::Throttled),
            ("KMSThrottlingException", 400, AwsErrorKind::Throttled),
            ("Anything", 429, AwsErrorKind::Throttled),
            ("InternalFailure", 500, AwsErrorKind::Transient),
            ("ServiceUnavailable", 503, AwsErrorKind::Transient),
            ("SomethingNew", 502, AwsErrorKind::Transient),
            (
                "ExpiredTokenException",
                400,
                AwsErrorKind::ExpiredCredentials,
            ),
            ("ExpiredToken", 403, AwsErrorKind::ExpiredCredentials),
            ("AccessDeniedException", 400, AwsErrorKind::AccessDenied),
            ("AuthorizationError", 403, AwsErrorKind::AccessDenied),
            ("InvalidClientTokenId", 403, AwsErrorKind::AccessDenied),
            ("ResourceNotFoundException", 400, AwsErrorKind::NotFound),
            ("NotFound", 404, AwsErrorKind::NotFound),
            ("ValidationException", 400, AwsErrorKind::Permanent),
            ("InvalidParameter", 400, AwsErrorKind::Permanent),
            ("SignatureDoesNotMatch", 403, AwsErrorKind::AccessDenied),
        ] {
            let failure = AwsFailure::from_sdk(&service(code, status));
            assert_eq!(failure.kind, kind, "{code} (HTTP {status})");
            assert_eq!(failure.code.as_deref(), Some(code));
            assert_eq!(failure.status, Some(status));
        }
    }

    /// A 403 whose code the SDK could not read (moto answers IAM denials
    /// to JSON-protocol requests with an XML body) is still access denied.
    #[test]
    fn a_403_without_a_code_is_access_denied() {
        let failure = AwsFailure::from_sdk(&service("", 403));
        assert_eq!(failure.kind, AwsErrorKind::AccessDenied);
        assert_eq!(failure.code, None);
    }

    #[test]
    fn retryable_split() {
        use AwsErrorKind::*;
        for kind in [Throttled, Transient, ExpiredCredentials] {
            assert!(kind.is_retryable(), "{kind}");
            assert_eq!(kind.class(), ErrorClass::Retryable);
        }
        for kind in [AccessDenied, NotFound, Permanent] {
            assert!(!kind.is_retryable(), "{kind}");
            assert_eq!(kind.class(), ErrorClass::Permanent);
        }
    }

    #[test]
    fn transport_failures() {
        let timeout: SdkError<ErrorMetadata, Response> = SdkError::timeout_error("took too long");
        assert_eq!(AwsFailure::from_sdk(&timeout).kind, AwsErrorKind::Transient);

        let io: SdkError<ErrorMetadata, Response> = SdkError::dispatch_failure(ConnectorError::io(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        ));
        let failure = AwsFailure::from_sdk(&io);
        assert_eq!(failure.kind, AwsErrorKind::Transient);
        assert!(
            failure.to_string().starts_with("could not connect"),
            "{failure}"
        );

        let user: SdkError<ErrorMetadata, Response> =
            SdkError::dispatch_failure(ConnectorError::user("bad endpoint URL".into()));
        assert_eq!(AwsFailure::from_sdk(&user).kind, AwsErrorKind::Permanent);

        let built: SdkError<ErrorMetadata, Response> =
            SdkError::construction_failure("no credentials");
        assert_eq!(AwsFailure::from_sdk(&built).kind, AwsErrorKind::Permanent);
    }

    #[test]
    fn display_is_code_status_message() {
        let failure = AwsFailure::from_sdk(&service("NotFound", 404));
        assert_eq!(failure.to_string(), "NotFound (HTTP 404): said so");
        assert_eq!(failure.code_or_kind(), "NotFound");
        assert!(failure.has_code("NotFound"));
    }
}
