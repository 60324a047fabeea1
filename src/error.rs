//! Error types shared by the component traits.
//!
//! Every component error says whether it is worth retrying. The pipeline
//! retries [`ErrorClass::Retryable`] errors with backoff and dead-letters
//! [`ErrorClass::Permanent`] ones at once.

use std::fmt;
use std::time::Duration;

/// A boxed error from a backend (an SDK error, an I/O error), kept as the
/// `source` of our own errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whether an error is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts, connection resets: try again later.
    Retryable,
    /// Bad input, missing resources, authorization: trying again will not help.
    Permanent,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
        })
    }
}

/// A server's hint of how long to wait before trying again (an HTTP
/// `Retry-After`), carried in an error's source chain so every error type
/// can hold one without a new variant. Set it with `with_retry_after` (for
/// example [`RouteError::with_retry_after`]) and read it with
/// `retry_after`; the pipeline's retry loop waits at least this long before
/// the next attempt.
#[derive(Debug, thiserror::Error)]
#[error("the backend asked to retry after {after:?}")]
pub struct RetryAfter {
    /// How long the backend asked us to wait.
    pub after: Duration,
    /// The error's own source, kept.
    #[source]
    source: Option<BoxError>,
}

macro_rules! component_error {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            /// The backend asked us to slow down. Retryable.
            #[error("{what} throttled: {message}", what = $what)]
            Throttled {
                /// What the backend said.
                message: String,
                /// The backend's own error.
                #[source]
                source: Option<BoxError>,
            },
            /// A transient failure: a 5xx, a reset connection. Retryable.
            #[error("{what} unavailable (retryable): {message}", what = $what)]
            Unavailable {
                /// What went wrong.
                message: String,
                /// The backend's own error.
                #[source]
                source: Option<BoxError>,
            },
            /// The call did not finish in time. Retryable.
            #[error("{what} timed out after {0:?}", what = $what)]
            Timeout(Duration),
            /// A failure that retrying cannot fix: invalid input, a missing
            /// resource, a refused permission.
            #[error("{what} failed permanently: {message}", what = $what)]
            Permanent {
                /// What went wrong and what to do about it.
                message: String,
                /// The backend's own error.
                #[source]
                source: Option<BoxError>,
            },
        }

        impl $name {
            /// A retryable, transient failure.
            pub fn unavailable(message: impl Into<String>) -> Self {
                $name::Unavailable { message: message.into(), source: None }
            }

            /// A throttling response.
            pub fn throttled(message: impl Into<String>) -> Self {
                $name::Throttled { message: message.into(), source: None }
            }

            /// A failure that retrying cannot fix.
            pub fn permanent(message: impl Into<String>) -> Self {
                $name::Permanent { message: message.into(), source: None }
            }

            /// Attaches the backend's own error as the source.
            pub fn with_source(mut self, err: impl Into<BoxError>) -> Self {
                match &mut self {
                    $name::Throttled { source, .. }
                    | $name::Unavailable { source, .. }
                    | $name::Permanent { source, .. } => *source = Some(err.into()),
                    $name::Timeout(_) => {}
                }
                self
            }

            /// Adds the backend's hint of how long to wait before the next
            /// attempt (a [`RetryAfter`] wrapping the current source). Call
            /// it after [`with_source`](Self::with_source), which replaces
            /// the source. No effect on `Timeout`.
            pub fn with_retry_after(mut self, after: Duration) -> Self {
                match &mut self {
                    $name::Throttled { source, .. }
                    | $name::Unavailable { source, .. }
                    | $name::Permanent { source, .. } => {
                        let inner = source.take();
                        *source = Some(Box::new(RetryAfter { after, source: inner }));
                    }
                    $name::Timeout(_) => {}
                }
                self
            }

            /// The backend's hint of how long to wait before the next
            /// attempt, if it gave one (see [`with_retry_after`](Self::with_retry_after)).
            pub fn retry_after(&self) -> Option<Duration> {
                let mut next = std::error::Error::source(self);
                while let Some(err) = next {
                    if let Some(hint) = err.downcast_ref::<RetryAfter>() {
                        return Some(hint.after);
                    }
                    next = err.source();
                }
                None
            }

            /// Whether retrying may help.
            pub fn class(&self) -> ErrorClass {
                match self {
                    $name::Permanent { .. } => ErrorClass::Permanent,
                    _ => ErrorClass::Retryable,
                }
            }

            /// Shorthand for `class() == ErrorClass::Retryable`.
            pub fn is_retryable(&self) -> bool {
                self.class() == ErrorClass::Retryable
            }

            /// A short, stable name for the kind of failure (`throttled`,
            /// `unavailable`, `timeout`, `permanent`), used in metrics and
            /// dead-letter entries.
            pub fn kind(&self) -> &'static str {
                match self {
                    $name::Throttled { .. } => "throttled",
                    $name::Unavailable { .. } => "unavailable",
                    $name::Timeout(_) => "timeout",
                    $name::Permanent { .. } => "permanent",
                }
            }

            /// True for throttling, which the pipeline counts separately.
            pub fn is_throttling(&self) -> bool {
                matches!(self, $name::Throttled { .. })
            }
        }
    };
}

component_error!(
    /// Why a [`Classifier`](crate::Classifier) could not classify an item.
    ClassifyError,
    "classifier"
);
component_error!(
    /// Why a [`Router`](crate::Router) could not deliver an item.
    RouteError,
    "router"
);
component_error!(
    /// Why a [`Source`](crate::Source) could not read or commit.
    SourceError,
    "source"
);
component_error!(
    /// Why a [`CheckpointStore`](crate::checkpoint::CheckpointStore) could not
    /// load or save checkpoints.
    CheckpointError,
    "checkpoint store"
);
component_error!(
    /// Why a [`Labeler`](crate::Labeler) could not submit or collect tasks.
    LabelError,
    "labeler"
);
component_error!(
    /// Why a [`DeadLetterSink`](crate::DeadLetterSink) could not store an entry.
    DeadLetterError,
    "dead-letter sink"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_split_retryable_from_permanent() {
        assert!(RouteError::throttled("slow down").is_retryable());
        assert!(RouteError::unavailable("503").is_retryable());
        assert!(RouteError::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(!RouteError::permanent("no such topic").is_retryable());
        assert!(ClassifyError::throttled("x").is_throttling());
        assert!(!ClassifyError::unavailable("x").is_throttling());
    }

    #[test]
    fn messages_keep_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = SourceError::unavailable("GetRecords failed").with_source(io);
        assert_eq!(
            err.to_string(),
            "source unavailable (retryable): GetRecords failed"
        );
        let src = std::error::Error::source(&err).expect("source kept");
        assert_eq!(src.to_string(), "reset by peer");
    }

    #[test]
    fn a_retry_after_hint_travels_with_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = RouteError::throttled("429")
            .with_source(io)
            .with_retry_after(Duration::from_secs(7));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert!(err.is_throttling());
        let hint = std::error::Error::source(&err).expect("hint");
        assert_eq!(hint.source().expect("io kept").to_string(), "reset by peer");
        assert_eq!(RouteError::throttled("429").retry_after(), None);
    }
}
