//! [`LlmError`]: why one call failed, typed; and [`LlmConfigError`].

use std::time::Duration;

use crate::error::{ClassifyError, ErrorClass};

/// Why the language model gave no usable label, typed.
///
/// It reaches the pipeline as the `source` of a [`ClassifyError`] whose
/// class is [`class`](LlmError::class) and whose message is this error's
/// `Display`; get it back with [`LlmError::of`]. No variant holds item text,
/// the model's answer text or the API key; server messages are reduced to
/// their status and error code.
///
/// ```
/// use streamsift::llm::LlmError;
/// use streamsift::ErrorClass;
/// let e = LlmError::BudgetExhausted { used: 1200, budget: 1000 };
/// assert_eq!(e.class(), ErrorClass::Permanent);
/// let c = e.into_classify_error();
/// assert!(matches!(LlmError::of(&c), Some(LlmError::BudgetExhausted { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The token budget is spent; the classifier fails closed until it is
    /// raised ([`LlmClassifier::add_budget`](super::LlmClassifier::add_budget)).
    /// Permanent: a `Cascade` takes its fallback, a bare pipeline
    /// dead-letters the record.
    #[error(
        "raise the token budget or wait for the next budget period: the LLM token budget is spent ({used} of {budget} tokens used); the record was not sent"
    )]
    BudgetExhausted {
        /// Tokens used so far.
        used: u64,
        /// The budget.
        budget: u64,
    },
    /// HTTP 429 (or Bedrock throttling). Retryable; `retry_after` is the
    /// server's `Retry-After`, which the classifier also honours: no call
    /// leaves before it has passed.
    #[error("the LLM server is rate limiting (HTTP 429){}; retried", fmt_after(.retry_after))]
    RateLimited {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// A 5xx or a connection failure. Retryable.
    #[error("the LLM server is unavailable ({what}); retried")]
    Unavailable {
        /// The status or the transport failure.
        what: String,
    },
    /// No answer within the timeout. Retryable.
    #[error("the LLM server did not answer within {0:?}; retried")]
    Timeout(Duration),
    /// 401 or 403. Permanent.
    #[error("check the API key ({hint}): the LLM server refused it with HTTP {status}")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// Where the key came from (an env var name), never the key.
        hint: String,
    },
    /// The prompt is longer than the model's context (HTTP 400
    /// `context_length_exceeded`). Permanent.
    #[error(
        "shorten the prompt (fewer few-shot examples) or use a model with a longer context: the LLM server says the prompt exceeds the model's context length"
    )]
    ContextLength,
    /// The model or its filter refused (`finish_reason: "content_filter"`,
    /// a `refusal` field, a Bedrock guardrail). Permanent; not repaired.
    #[error("review the item by hand: the LLM refused to classify it ({why})")]
    Refused {
        /// Which signal: `content_filter`, `refusal`, `guardrail`.
        why: &'static str,
    },
    /// The answer was not a label, after the repair retry. Permanent.
    #[error(
        "review the item by hand, or the prompt if this is frequent: the LLM gave no valid label after one repair retry ({problem})"
    )]
    InvalidAnswer {
        /// What was wrong.
        problem: AnswerProblem,
    },
    /// Another refusal of the request (4xx). Permanent.
    #[error("fix the request or the model name: the LLM server answered HTTP {status}{}", fmt_code(.code))]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's error code or type, when it gave one.
        code: Option<String>,
    },
    /// The server's response was not a Chat Completions answer. Permanent.
    #[error(
        "check that the URL is an OpenAI-compatible server: its answer could not be read as a Chat Completions response ({0})"
    )]
    BadResponse(String),
}

/// What was wrong with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerProblem {
    /// No content at all.
    #[error("the answer was empty")]
    Empty,
    /// Not a JSON object with exactly one string field `label`.
    #[error("the answer was not the JSON object {{\"label\": ...}}")]
    Malformed,
    /// A label outside the label set (an injected "none", a typo).
    #[error("the answer named a label outside the label set")]
    OutsideLabelSet,
    /// Cut off at the token limit (`finish_reason: "length"`); raise
    /// `max_tokens`.
    #[error("the answer was cut off at max_tokens (finish_reason \"length\"): raise max_tokens")]
    Truncated,
}

fn fmt_after(d: &Option<Duration>) -> String {
    d.map(|d| format!(", retry after {d:?}"))
        .unwrap_or_default()
}

fn fmt_code(c: &Option<String>) -> String {
    c.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
}

impl LlmError {
    /// Retryable or permanent, as documented on each variant.
    pub fn class(&self) -> ErrorClass {
        match self {
            LlmError::RateLimited { .. } | LlmError::Unavailable { .. } | LlmError::Timeout(_) => {
                ErrorClass::Retryable
            }
            _ => ErrorClass::Permanent,
        }
    }

    /// A short, stable name: `budget_exhausted`, `rate_limited`,
    /// `unavailable`, `timeout`, `unauthorized`, `context_length`,
    /// `refused`, `invalid_answer`, `rejected`, `bad_response`.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::BudgetExhausted { .. } => "budget_exhausted",
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Unavailable { .. } => "unavailable",
            LlmError::Timeout(_) => "timeout",
            LlmError::Unauthorized { .. } => "unauthorized",
            LlmError::ContextLength => "context_length",
            LlmError::Refused { .. } => "refused",
            LlmError::InvalidAnswer { .. } => "invalid_answer",
            LlmError::Rejected { .. } => "rejected",
            LlmError::BadResponse(_) => "bad_response",
        }
    }

    /// The [`ClassifyError`] the pipeline sees: throttled, timeout,
    /// unavailable or permanent, with this error as its source. A 429's
    /// `Retry-After` rides along ([`ClassifyError::retry_after`]), so the
    /// pipeline waits that long before it retries.
    pub fn into_classify_error(self) -> ClassifyError {
        let message = self.to_string();
        let (e, after) = match &self {
            LlmError::RateLimited { retry_after } => {
                (ClassifyError::throttled(message), *retry_after)
            }
            LlmError::Timeout(d) => return ClassifyError::Timeout(*d),
            LlmError::Unavailable { .. } => (ClassifyError::unavailable(message), None),
            _ => (ClassifyError::permanent(message), None),
        };
        let e = e.with_source(self);
        match after {
            Some(after) => e.with_retry_after(after),
            None => e,
        }
    }

    /// The typed error behind a [`ClassifyError`] from an
    /// [`LlmClassifier`](super::LlmClassifier), if there is one (anywhere
    /// in its source chain). A timeout carries no source: it is
    /// `ClassifyError::Timeout`.
    pub fn of(err: &ClassifyError) -> Option<&LlmError> {
        let mut next = std::error::Error::source(err);
        while let Some(e) = next {
            if let Some(llm) = e.downcast_ref::<LlmError>() {
                return Some(llm);
            }
            next = e.source();
        }
        None
    }
}

/// A configuration the classifier cannot start with; the message says what
/// to change first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LlmConfigError {
    /// The prompt template is invalid.
    #[error("{0}")]
    Template(String),
    /// The API key's environment variable is not set (or not Unicode).
    #[error(
        "set the environment variable {0} to the API key, or pass the key with .api_key(..): it is not set"
    )]
    MissingApiKey(String),
    /// The base URL is not an http(s) URL.
    #[error("give an http:// or https:// base URL such as http://localhost:8000/v1: {0}")]
    BadUrl(String),
    /// The cache file could not be read or written.
    #[error("check the cache file {path}: {problem}")]
    CacheFile {
        /// The file.
        path: String,
        /// What went wrong (never an item's text: the file holds none).
        problem: String,
    },
    /// The HTTP client could not be built.
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
    /// Another invalid setting.
    #[error("{0}")]
    Invalid(String),
}
