//! SNS errors: [`SnsError`] for a message that could not be published,
//! [`SnsConfigError`] for a router that could not be built, and the mapping
//! of SDK errors onto them.

use std::error::Error as StdError;
use std::sync::Arc;

use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};

use crate::aws::{AwsErrorKind, AwsFailure};

use super::template::TemplateError;
use crate::error::{ErrorClass, RouteError};

/// The SDK's error behind a failed call, shared by every message of a
/// batch that failed with it.
pub type SharedSdkError = Arc<dyn StdError + Send + Sync + 'static>;

/// How a failure should be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// SNS asked us to slow down. Retryable.
    Throttled,
    /// A 5xx, a timeout, a dropped connection. Retryable.
    Unavailable,
    /// Retrying cannot help.
    Permanent,
}

/// Why a message could not be published.
///
/// Each variant says whether retrying may help ([`SnsError::class`]); the
/// conversion into [`RouteError`] keeps that split and this error as the
/// source.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnsError {
    /// The delivery's route has no topic and there is no default topic.
    #[error(
        "no SNS topic for route {route:?} and no default topic (routes with a topic: {known}); \
         add one with SnsRouterBuilder::route_topic or set SnsRouterBuilder::default_topic"
    )]
    UnknownRoute {
        /// The route of the delivery.
        route: String,
        /// The routes that have a topic, comma-separated.
        known: String,
    },
    /// A Publish or PublishBatch call failed as a whole.
    #[error("{operation} to topic {topic} failed: {code}{status}: {message}; {advice}",
        status = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
        advice = advice(*kind, code))]
    Call {
        /// `Publish` or `PublishBatch`.
        operation: &'static str,
        /// The topic ARN.
        topic: String,
        /// The error code (`NotFound`, `Throttled`, ...), or the kind of
        /// failure when there is none (`transient`, `permanent`; the
        /// message then says what happened).
        code: String,
        /// The service's message.
        message: String,
        /// The HTTP status, when a response came back.
        status: Option<u16>,
        /// Whether to retry.
        kind: FailureKind,
        /// The SDK's error.
        #[source]
        source: SharedSdkError,
    },
    /// SNS refused one entry of a PublishBatch call (its `Failed` list).
    #[error(
        "SNS refused the message in PublishBatch to topic {topic}: {code}: {message} ({hint})",
        hint = if *retryable { "retryable: SNS says the fault is on its side" }
               else { "permanent: SNS says the fault is in the request; the message says what to fix" }
    )]
    EntryFailed {
        /// The topic ARN.
        topic: String,
        /// The entry's error code.
        code: String,
        /// The entry's error message.
        message: String,
        /// `SenderFault` from SNS.
        sender_fault: bool,
        /// Whether another attempt may succeed: `SenderFault` false, or a
        /// throttling code.
        retryable: bool,
    },
    /// A PublishBatch answer that does not account for an entry sent.
    #[error(
        "PublishBatch to topic {topic} answered {detail}; expected one Successful entry with a \
         MessageId or one Failed entry per message sent. The message was sent again"
    )]
    MalformedResponse {
        /// The topic ARN.
        topic: String,
        /// What was wrong.
        detail: String,
    },
    /// The message kept failing with retryable errors until the router's
    /// attempts ran out.
    #[error(
        "message not accepted after {attempts} attempts (the last failure is the source): the \
         topic may be throttled, or the router's retry policy may need more attempts"
    )]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<SnsError>,
    },
    /// Attributes, subject and the truncation marker alone exceed the size
    /// limit, so no part of the message fits.
    #[error(
        "the message's attributes and subject alone take {fixed} bytes, leaving no room for the \
         message within {limit} bytes: shorten the label, route, record id or subject template"
    )]
    TooLarge {
        /// Bytes taken by attributes and subject.
        fixed: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The message template rendered nothing; SNS refuses empty messages.
    #[error(
        "the message template {template:?} rendered an empty message for record {record_id}; \
         SNS refuses empty messages: add literal text to the template"
    )]
    EmptyMessage {
        /// The template's text.
        template: String,
        /// The record.
        record_id: String,
    },
    /// The SDK could not build the request (a required field is missing).
    /// This is a bug in the router.
    #[error(
        "could not build a request to topic {topic}: {detail}; this is a bug in the SNS router, \
         please report it"
    )]
    InvalidRequest {
        /// The topic ARN.
        topic: String,
        /// The SDK's complaint.
        detail: String,
    },
    /// The batching task for a topic stopped before answering (its runtime
    /// shut down). The message may or may not have been published.
    #[error(
        "the SNS batcher for topic {topic} stopped before answering (did its Tokio runtime shut \
         down?); the message may or may not have been published, and will be retried"
    )]
    BatcherGone {
        /// The topic ARN.
        topic: String,
    },
}

impl SnsError {
    /// How to treat this failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            SnsError::Call { kind, .. } => *kind,
            SnsError::EntryFailed {
                code, retryable, ..
            } => {
                if AwsErrorKind::from_code(code, None) == AwsErrorKind::Throttled {
                    FailureKind::Throttled
                } else if *retryable {
                    FailureKind::Unavailable
                } else {
                    FailureKind::Permanent
                }
            }
            SnsError::RetriesExhausted { last, .. } => last.kind(),
            SnsError::MalformedResponse { .. } | SnsError::BatcherGone { .. } => {
                FailureKind::Unavailable
            }
            SnsError::UnknownRoute { .. }
            | SnsError::TooLarge { .. }
            | SnsError::EmptyMessage { .. }
            | SnsError::InvalidRequest { .. } => FailureKind::Permanent,
        }
    }

    /// Whether another attempt may succeed.
    pub fn class(&self) -> ErrorClass {
        match self.kind() {
            FailureKind::Permanent => ErrorClass::Permanent,
            FailureKind::Throttled | FailureKind::Unavailable => ErrorClass::Retryable,
        }
    }

    /// Shorthand for `class() == ErrorClass::Retryable`.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    /// The SNS error code behind this failure, if any (following
    /// `RetriesExhausted` to its last failure).
    pub fn code(&self) -> Option<&str> {
        match self {
            SnsError::Call { code, .. } | SnsError::EntryFailed { code, .. } => Some(code),
            SnsError::RetriesExhausted { last, .. } => last.code(),
            _ => None,
        }
    }

    /// A short name for metrics: `throttled`, `unavailable` or `permanent`.
    pub(crate) fn metric_kind(&self) -> &'static str {
        match self.kind() {
            FailureKind::Throttled => "throttled",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Permanent => "permanent",
        }
    }
}

impl From<SnsError> for RouteError {
    fn from(err: SnsError) -> RouteError {
        let message = format!("SNS: {err}");
        let route = match err.kind() {
            FailureKind::Throttled => RouteError::throttled(message),
            FailureKind::Unavailable => RouteError::unavailable(message),
            FailureKind::Permanent => RouteError::permanent(message),
        };
        route.with_source(err)
    }
}

/// Why an [`SnsRouter`](super::SnsRouter) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnsConfigError {
    /// No topic at all.
    #[error(
        "the SNS router has no topic: set one with SnsRouterBuilder::topic or default_topic, or \
         per route with route_topic"
    )]
    NoTopic,
    /// A topic ARN that is not an SNS topic ARN.
    #[error(
        "{arn:?} is not an SNS topic ARN; expected arn:PARTITION:sns:REGION:ACCOUNT:NAME, such as \
         arn:aws:sns:us-east-1:123456789012:support (names of FIFO topics end in .fifo)"
    )]
    InvalidTopicArn {
        /// The text given.
        arn: String,
    },
    /// A template that does not parse.
    #[error("the {which} template does not parse: {source}")]
    Template {
        /// `message` or `subject`.
        which: &'static str,
        /// What is wrong with it.
        #[source]
        source: TemplateError,
    },
    /// The start-up check of a topic (GetTopicAttributes) was refused: the
    /// topic does not exist, or the role may not use it.
    #[error(
        "{hint}: SNS topic {topic} failed the start-up check (GetTopicAttributes said {failure})"
    )]
    TopicCheck {
        /// The topic ARN.
        topic: String,
        /// The classified failure.
        failure: AwsFailure,
        /// What to do.
        hint: &'static str,
        /// The SDK's error.
        #[source]
        source: SharedSdkError,
    },
    /// SNS could not be reached to check a topic within the start-up time.
    #[error(
        "check the endpoint URL, the region and the network, or raise \
         SnsRouterBuilder::startup_timeout: SNS did not answer the start-up check of topic {topic} \
         within {after:?}{last}",
        last = last.as_ref().map(|f| format!(" (last failure: {f})")).unwrap_or_default()
    )]
    StartupTimeout {
        /// The topic ARN.
        topic: String,
        /// The time allowed.
        after: std::time::Duration,
        /// The last retryable failure, if a call finished.
        last: Option<AwsFailure>,
    },
    /// A setting out of range.
    #[error("{setting} = {found} is out of range; expected {expected}")]
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// The value given.
        found: String,
        /// What is allowed.
        expected: &'static str,
    },
}

impl From<AwsErrorKind> for FailureKind {
    fn from(kind: AwsErrorKind) -> FailureKind {
        match kind {
            AwsErrorKind::Throttled => FailureKind::Throttled,
            kind if kind.is_retryable() => FailureKind::Unavailable,
            _ => FailureKind::Permanent,
        }
    }
}

/// What to do about a failed call: SNS's own hints (which permission, which
/// parameter), after the shared classification.
fn advice(kind: FailureKind, code: &str) -> &'static str {
    match (kind, AwsErrorKind::from_code(code, None), code) {
        (FailureKind::Throttled, ..) => "retryable: SNS is throttling this account or topic",
        (FailureKind::Unavailable, AwsErrorKind::ExpiredCredentials, _) => {
            "retryable: the credentials expired; a refreshing provider (a role, SSO) signs the next attempt with new ones"
        }
        (FailureKind::Unavailable, ..) => "retryable",
        (_, AwsErrorKind::NotFound, _) => {
            "permanent: check the topic ARN, its region and account, and the endpoint URL; the topic must exist"
        }
        (_, _, c) if c.starts_with("KMS") => {
            "permanent: the topic is encrypted with a KMS key this role cannot use: grant kms:GenerateDataKey* and kms:Decrypt on it and check the key is enabled"
        }
        (_, AwsErrorKind::AccessDenied, _) => {
            "permanent: grant sns:Publish on the topic to this role, and check the topic's access policy allows it"
        }
        (_, _, "InvalidParameter" | "ParameterValueInvalid" | "ValidationException") => {
            "permanent: SNS rejected a parameter; the message says which (a FIFO topic needs a group and deduplication id, a standard topic must not get one)"
        }
        (_, _, "InvalidSecurity") => "permanent: the request must be signed and sent over HTTPS",
        (
            _,
            _,
            "BatchEntryIdsNotDistinct"
            | "BatchRequestTooLong"
            | "EmptyBatchRequest"
            | "InvalidBatchEntryId"
            | "TooManyEntriesInBatchRequest",
        ) => {
            "permanent: the router built a batch SNS does not accept; this is a bug, please report it"
        }
        _ => "permanent: see the message",
    }
}

/// Maps an SDK error of `operation` on `topic` onto an [`SnsError`].
pub(crate) fn from_sdk<E>(operation: &'static str, topic: &str, err: SdkError<E>) -> SnsError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let failure = AwsFailure::from_sdk(&err);
    SnsError::Call {
        operation,
        topic: topic.to_owned(),
        code: failure.code_or_kind().to_owned(),
        message: failure.message,
        status: failure.status,
        kind: failure.kind.into(),
        source: Arc::new(err),
    }
}
/// An entry of a PublishBatch `Failed` list as an [`SnsError`].
pub(crate) fn entry_failed(
    topic: &str,
    code: &str,
    message: Option<&str>,
    sender_fault: bool,
) -> SnsError {
    SnsError::EntryFailed {
        topic: topic.to_owned(),
        code: code.to_owned(),
        message: message.unwrap_or("").to_owned(),
        sender_fault,
        retryable: !sender_fault || AwsErrorKind::from_code(code, None) == AwsErrorKind::Throttled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sns::operation::publish::PublishError;

    fn service_error(code: &str, status: u16) -> SdkError<PublishError> {
        crate::aws::test_support::service_error(PublishError::generic, code, status)
    }

    #[test]
    fn service_codes_split_retryable_from_permanent() {
        let topic = "arn:aws:sns:us-east-1:1:t";
        let cases = [
            ("Throttled", 400, FailureKind::Throttled),
            ("KMSThrottling", 400, FailureKind::Throttled),
            ("InternalError", 500, FailureKind::Unavailable),
            ("Whatever", 503, FailureKind::Unavailable),
            ("NotFound", 404, FailureKind::Permanent),
            ("AuthorizationError", 403, FailureKind::Permanent),
            ("InvalidParameter", 400, FailureKind::Permanent),
            ("KMSAccessDenied", 400, FailureKind::Permanent),
            // The shared classification (issue 14): expired credentials are
            // retryable, and every throttling code counts.
            ("ExpiredToken", 403, FailureKind::Unavailable),
            (
                "ProvisionedThroughputExceededException",
                400,
                FailureKind::Throttled,
            ),
        ];
        for (code, status, kind) in cases {
            let err = from_sdk("Publish", topic, service_error(code, status));
            assert_eq!(err.kind(), kind, "{code}");
            assert_eq!(err.code(), Some(code));
            let route: RouteError = err.into();
            assert_eq!(
                route.is_retryable(),
                kind != FailureKind::Permanent,
                "{code}"
            );
            assert_eq!(
                route.is_throttling(),
                kind == FailureKind::Throttled,
                "{code}"
            );
            let sns = StdError::source(&route).expect("SnsError kept as source");
            assert!(sns.source().is_some(), "SDK error kept as source of {code}");
        }
        let msg = from_sdk("Publish", topic, service_error("NotFound", 404)).to_string();
        assert!(msg.contains("check the topic ARN"), "{msg}");
        assert!(msg.contains(topic) && msg.contains("HTTP 404"), "{msg}");
        let msg = from_sdk("Publish", topic, service_error("AuthorizationError", 403)).to_string();
        assert!(msg.contains("grant sns:Publish"), "{msg}");
    }

    #[test]
    fn entries_follow_sender_fault() {
        let t = "arn:aws:sns:us-east-1:1:t";
        assert!(entry_failed(t, "InternalError", None, false).is_retryable());
        assert!(!entry_failed(t, "InvalidParameter", Some("bad"), true).is_retryable());
        let throttled = entry_failed(t, "Throttled", None, true);
        assert_eq!(throttled.kind(), FailureKind::Throttled);
        let exhausted = SnsError::RetriesExhausted {
            attempts: 3,
            last: Box::new(entry_failed(t, "InternalError", None, false)),
        };
        assert!(exhausted.is_retryable());
        assert_eq!(exhausted.code(), Some("InternalError"));
    }
}
