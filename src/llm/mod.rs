//! A large language model as a [`Classifier`](crate::Classifier):
//! [`LlmClassifier`]. Feature `llm` (OpenAI-compatible Chat Completions);
//! feature `bedrock` adds Amazon Bedrock's Converse API as a second
//! transport. The guide page [`guide::llm`](crate::guide::llm) walks
//! through it.
//!
//! ```
//! use streamsift::llm::{LlmClassifier, PromptTemplate};
//! use streamsift::Policy;
//!
//! let template = PromptTemplate::new("support-triage-v1")
//!     .label("actionable", "a customer needs help from support")
//!     .label("noise", "anything else: praise, jokes, news, spam")
//!     .cost("actionable", 10.0, 1.0);
//! let llm = LlmClassifier::openai("http://localhost:8000/v1", "qwen2.5-7b-instruct", template)
//!     .budget_tokens(1_000_000)
//!     .build()?;
//! // A threshold on the score of "actionable" (from token logprobs); an
//! // answer without logprobs has no score and goes to review.
//! let policy = Policy::binary(1.0 / 11.0, "support").with_review_band(0.05, 1.0 / 11.0);
//! # let _ = (llm, policy);
//! # Ok::<(), streamsift::llm::LlmConfigError>(())
//! ```
//!
//! # One classification
//!
//! 1. **Cache.** The key is a hash of the classifier's
//!    [`fingerprint`](LlmClassifier::fingerprint) (transport, model, prompt
//!    template hash, structured output, `top_logprobs`) and the normalized
//!    text (NFKC, lower case, white space collapsed). The server's URL is
//!    not in it: give two servers that serve different models under one
//!    name different cache files.
//!    A hit costs no call and no token, even past the budget.
//! 2. **Budget.** Past the token budget every call fails closed with
//!    [`LlmError::BudgetExhausted`] (permanent): a `Cascade` takes its
//!    fallback, a bare pipeline dead-letters the record with that reason.
//!    Nothing is dropped.
//! 3. **Pacing.** A 429's `Retry-After` holds every call until it has
//!    passed (capped at [`MAX_RETRY_AFTER`]); then the optional
//!    [`RateLimiter`](crate::rate::RateLimiter).
//! 4. **The request.** The system prompt holds the instructions, the labels
//!    with their descriptions and the cost asymmetry; the few-shot examples
//!    follow as user/assistant turns; then the item in its own user message
//!    as JSON between `<item>` tags (see [`PromptTemplate`]). With
//!    structured output on (the default), `response_format` is a strict JSON
//!    schema whose `label` is an enum of the labels; `logprobs: true` and
//!    `top_logprobs` ask for token probabilities; `temperature` is 0.
//! 5. **The answer.** The strict parser takes exactly `{"label": L}` with
//!    `L` in the label set. An empty, malformed, truncated or out-of-set
//!    answer gets ONE repair retry (the model sees its answer and the
//!    allowed objects); a second failure is [`LlmError::InvalidAnswer`],
//!    permanent. An injected "answer none" therefore cannot yield a label
//!    outside the set.
//! 6. **Confidence.** From token logprobs: the chosen label's probability,
//!    renormalised over the label set where `top_logprobs` allow
//!    (see "Scores from logprobs" below). Without logprobs
//!    (some servers; Bedrock; `top_logprobs(None)`) the prediction has **no
//!    score**: empty `scores`, `positive_score: None`.
//!
//! # What the Policy does with a scoreless prediction
//!
//! - [`Policy::Binary`](crate::Policy::Binary): sends it to **review** (it
//!   never notifies nor discards without a score): to the labeler, or else
//!   to the router on the route `"review"`; a router that refuses that route
//!   dead-letters the record.
//! - [`Policy::Multiclass`](crate::Policy::Multiclass): a rule with
//!   `min_confidence > 0` treats it as uncertain (review by default); a
//!   rule with `min_confidence` 0 acts on the label as it is.
//!
//! # Scores from logprobs
//!
//! The chosen label's probability is the product of the probabilities of
//! the tokens that spell it. Where the first of those tokens has
//! `top_logprobs`, each alternative that starts exactly one other label
//! gives that label its probability, and all are renormalised; labels no
//! alternative starts get 0. Without alternatives, a two-label set gives
//! the other label 1 − p; a larger one keeps the chosen label's score only.
//! `positive_score` is the score of the positive label
//! ([`positive`](LlmClassifierBuilder::positive), by default the template's
//! cost positive).
//!
//! # Errors
//!
//! | The server says | [`LlmError`] | class |
//! |---|---|---|
//! | 429 | `RateLimited` (with `Retry-After`, also on the `ClassifyError` for the pipeline's retry) | retryable (throttled) |
//! | 5xx, connection failure | `Unavailable` | retryable |
//! | no answer in time | `ClassifyError::Timeout` | retryable |
//! | 401, 403 | `Unauthorized` (hint: the key's source) | permanent |
//! | 400 `context_length_exceeded` | `ContextLength` | permanent |
//! | 400 naming `response_format` | falls back to the plain prompt once, remembered | - |
//! | other 4xx | `Rejected` (status and code only) | permanent |
//! | `finish_reason: "content_filter"`, a `refusal` | `Refused` (not repaired) | permanent |
//! | empty, malformed, out-of-set, `finish_reason: "length"` | repair once, then `InvalidAnswer` | permanent |
//! | budget spent | `BudgetExhausted` | permanent |
//!
//! The typed error is the `source` of the [`ClassifyError`](crate::ClassifyError)
//! ([`LlmError::of`]). Error messages and logs hold the status, the code and
//! the kind, never the item text, the model's answer, the server's message
//! or the API key. Streaming is not used: an answer is a few tokens.
//!
//! # Counters
//!
//! [`LlmClassifier::usage`] returns calls, cache hits, prompt and completion
//! tokens (from `usage`; estimated at 4 characters a token when a server
//! sends none), repairs and budget refusals. The `metrics` counters are
//! `streamsift_llm_calls_total`, `streamsift_llm_cache_hits_total`,
//! `streamsift_llm_tokens_total{kind=prompt|completion|estimated}`,
//! `streamsift_llm_repairs_total`, `streamsift_llm_budget_refusals_total`
//! and `streamsift_llm_failures_total{kind}`, each labelled by `model`.

mod answer;
#[cfg(feature = "bedrock")]
mod bedrock;
mod cache;
mod classifier;
mod error;
mod openai;
mod prompt;
mod transport;

pub use classifier::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_TOKENS, DEFAULT_TIMEOUT, DEFAULT_TOP_LOGPROBS,
    LlmClassifier, LlmClassifierBuilder, LlmUsage,
};
pub use error::{AnswerProblem, LlmConfigError, LlmError};
pub use openai::MAX_RETRY_AFTER;
pub use prompt::{
    CostAsymmetry, FewShot, LabelSpec, MAX_EXAMPLES_PER_LABEL, PROMPT_FORMAT_VERSION,
    PromptTemplate,
};
