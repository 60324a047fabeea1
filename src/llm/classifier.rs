//! [`LlmClassifier`], its builder, and one classification's steps.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::answer::{label_scores, parse_label};
use super::cache::{self, Cache};
use super::error::{LlmConfigError, LlmError};
use super::openai::OpenAiTransport;
use super::prompt::{PromptTemplate, answer_json, hash_fields, item_message};
use super::transport::{CallError, ChatAnswer, ChatRequest, Finish, Msg, Role};
use crate::classify::{Classifier, Label, Prediction};
use crate::error::ClassifyError;
use crate::local::Document;
use crate::rate::RateLimiter;

/// `max_tokens` by default: room for `{"label": "..."}` and little else.
pub const DEFAULT_MAX_TOKENS: u32 = 32;
/// `top_logprobs` by default.
pub const DEFAULT_TOP_LOGPROBS: u8 = 5;
/// The per-call timeout by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Cached answers kept in memory by default (the oldest go first).
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

pub(crate) enum Transport {
    OpenAi(OpenAiTransport),
    #[cfg(feature = "bedrock")]
    Bedrock(super::bedrock::BedrockTransport),
}

impl Transport {
    fn kind(&self) -> &'static str {
        match self {
            Transport::OpenAi(_) => "openai",
            #[cfg(feature = "bedrock")]
            Transport::Bedrock(_) => "bedrock",
        }
    }

    fn model(&self) -> &str {
        match self {
            Transport::OpenAi(t) => &t.model,
            #[cfg(feature = "bedrock")]
            Transport::Bedrock(t) => &t.model_id,
        }
    }

    async fn call(&self, req: &ChatRequest<'_>) -> Result<ChatAnswer, CallError> {
        match self {
            Transport::OpenAi(t) => t.call(req).await,
            #[cfg(feature = "bedrock")]
            Transport::Bedrock(t) => t.call(req).await,
        }
    }

    fn supports_logprobs(&self) -> bool {
        matches!(self, Transport::OpenAi(_))
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::OpenAi(t) => t.fmt(f),
            #[cfg(feature = "bedrock")]
            Transport::Bedrock(t) => t.fmt(f),
        }
    }
}

/// Token and call counters of an [`LlmClassifier`] (shared by its clones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LlmUsage {
    /// HTTP (or Bedrock) calls made, repairs and fallbacks included.
    pub calls: u64,
    /// Items answered from the cache, with no call.
    pub cache_hits: u64,
    /// Prompt tokens, from the answers' `usage`.
    pub prompt_tokens: u64,
    /// Completion tokens, from the answers' `usage`.
    pub completion_tokens: u64,
    /// Tokens estimated (4 characters a token) for answers that carried no
    /// `usage`; they count against the budget too.
    pub estimated_tokens: u64,
    /// Repair retries sent.
    pub repairs: u64,
    /// Items refused because the budget was spent.
    pub budget_refusals: u64,
}

impl LlmUsage {
    /// All tokens counted against the budget.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens + self.estimated_tokens
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    cache_hits: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    estimated_tokens: AtomicU64,
    repairs: AtomicU64,
    budget_refusals: AtomicU64,
}

struct Inner {
    transport: Transport,
    template: PromptTemplate,
    labels: Vec<String>,
    positive: Option<String>,
    system: String,
    schema: Value,
    /// The few-shot conversation, before each item.
    preamble: Vec<Msg>,
    structured: bool,
    /// Set once the server refused `response_format`.
    schema_refused: AtomicBool,
    top_logprobs: Option<u8>,
    max_tokens: u32,
    rate: Option<RateLimiter>,
    /// No call leaves before this (a 429's `Retry-After`).
    not_before: std::sync::Mutex<Option<tokio::time::Instant>>,
    cache: Cache,
    prompt_hash: String,
    fingerprint: String,
    budget: AtomicU64,
    counters: Counters,
}

/// A large language model as a [`Classifier`]: an OpenAI-compatible Chat
/// Completions server (feature `llm`) or Amazon Bedrock's Converse API
/// (feature `bedrock`). See the [module docs](crate::llm).
///
/// Cloning is cheap; clones share the cache, the counters and the budget.
pub struct LlmClassifier {
    inner: Arc<Inner>,
}

impl Clone for LlmClassifier {
    fn clone(&self) -> Self {
        LlmClassifier {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl fmt::Debug for LlmClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("LlmClassifier")
            .field("transport", &i.transport)
            .field("prompt_revision", &i.template.revision)
            .field("labels", &i.labels)
            .field("structured", &i.structured)
            .field("top_logprobs", &i.top_logprobs)
            .field("max_tokens", &i.max_tokens)
            .field("fingerprint", &i.fingerprint)
            .finish_non_exhaustive()
    }
}

enum KeySource {
    None,
    Given(String),
    Env(String),
}

/// Configures an [`LlmClassifier`]; see [`LlmClassifier::openai`].
pub struct LlmClassifierBuilder {
    transport: BuilderTransport,
    template: PromptTemplate,
    key: KeySource,
    key_header: Option<String>,
    structured: bool,
    top_logprobs: Option<u8>,
    max_tokens: u32,
    timeout: Duration,
    rate: Option<RateLimiter>,
    cache_capacity: usize,
    cache_file: Option<PathBuf>,
    budget: Option<u64>,
    positive: Option<String>,
}

enum BuilderTransport {
    OpenAi {
        base_url: String,
        model: String,
    },
    #[cfg(feature = "bedrock")]
    Bedrock(super::bedrock::BedrockTransport),
}

impl fmt::Debug for LlmClassifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match &self.key {
            KeySource::None => "none".to_owned(),
            KeySource::Given(_) => "<redacted>".to_owned(),
            KeySource::Env(n) => format!("env {n}"),
        };
        f.debug_struct("LlmClassifierBuilder")
            .field("prompt_revision", &self.template.revision)
            .field("api_key", &key)
            .field("structured", &self.structured)
            .field("top_logprobs", &self.top_logprobs)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl LlmClassifier {
    /// A builder for an OpenAI-compatible server: `base_url` is the API
    /// root (`https://api.openai.com/v1`, `http://localhost:8000/v1` for
    /// vLLM, `http://localhost:11434/v1` for Ollama, `http://localhost:8080/v1`
    /// for llama.cpp's server); requests go to `{base_url}/chat/completions`.
    ///
    /// ```
    /// use streamsift::llm::{LlmClassifier, PromptTemplate};
    /// let template = PromptTemplate::new("triage-v1")
    ///     .label("actionable", "a customer needs help")
    ///     .label("noise", "anything else");
    /// let classifier = LlmClassifier::openai("http://localhost:8000/v1", "qwen2.5-7b-instruct", template)
    ///     .budget_tokens(2_000_000)
    ///     .build()?;
    /// assert_eq!(classifier.labels(), ["actionable", "noise"]);
    /// # Ok::<(), streamsift::llm::LlmConfigError>(())
    /// ```
    pub fn openai(
        base_url: impl Into<String>,
        model: impl Into<String>,
        template: PromptTemplate,
    ) -> LlmClassifierBuilder {
        LlmClassifierBuilder::new(
            BuilderTransport::OpenAi {
                base_url: base_url.into(),
                model: model.into(),
            },
            template,
        )
    }

    /// A builder for Amazon Bedrock's Converse API with model (or inference
    /// profile) `model_id`; the client is made from `config` with the SDK's
    /// retries off (the pipeline retries). Bedrock returns no logprobs, so
    /// its predictions carry no score.
    #[cfg(feature = "bedrock")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bedrock")))]
    pub fn bedrock(
        config: &aws_config::SdkConfig,
        model_id: impl Into<String>,
        template: PromptTemplate,
    ) -> LlmClassifierBuilder {
        let mut b = LlmClassifierBuilder::new(
            BuilderTransport::Bedrock(super::bedrock::BedrockTransport::new(
                config,
                model_id.into(),
            )),
            template,
        );
        b.top_logprobs = None;
        b
    }

    /// The fingerprint of what decides this classifier's answers: the
    /// transport kind, the model, the prompt template's hash, structured
    /// output on or off, and `top_logprobs` (32 hex digits).
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Checks at start-up, within the timeout, that the server answers and
    /// accepts the key: `GET {base_url}/models` (served by OpenAI, vLLM,
    /// Ollama and llama.cpp's server). Returns `Ok(true)` when the server
    /// answered 2xx, the typed error otherwise (401/403: `Unauthorized`
    /// with the key's source; no answer: `Unavailable` or `Timeout`). It
    /// costs no token. Bedrock has no call that checks a model without
    /// running it, so for Bedrock nothing is sent and it returns
    /// `Ok(false)`.
    pub async fn check(&self) -> Result<bool, LlmError> {
        match &self.inner.transport {
            Transport::OpenAi(t) => t.check().await.map(|()| true),
            #[cfg(feature = "bedrock")]
            Transport::Bedrock(_) => Ok(false),
        }
    }

    /// The prompt template's hash (part of every cache key).
    pub fn prompt_hash(&self) -> &str {
        &self.inner.prompt_hash
    }

    /// The prompt template.
    pub fn template(&self) -> &PromptTemplate {
        &self.inner.template
    }

    /// The labels it may answer.
    pub fn labels(&self) -> Vec<&str> {
        self.inner.labels.iter().map(String::as_str).collect()
    }

    /// Whether requests still ask for structured output (false once the
    /// server refused it).
    pub fn structured_output_active(&self) -> bool {
        self.inner.structured && !self.inner.schema_refused.load(Ordering::Relaxed)
    }

    /// The counters so far.
    pub fn usage(&self) -> LlmUsage {
        let c = &self.inner.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LlmUsage {
            calls: g(&c.calls),
            cache_hits: g(&c.cache_hits),
            prompt_tokens: g(&c.prompt_tokens),
            completion_tokens: g(&c.completion_tokens),
            estimated_tokens: g(&c.estimated_tokens),
            repairs: g(&c.repairs),
            budget_refusals: g(&c.budget_refusals),
        }
    }

    /// The token budget (`u64::MAX` when unlimited).
    pub fn budget(&self) -> u64 {
        self.inner.budget.load(Ordering::Relaxed)
    }

    /// Raises the token budget by `tokens` (a new budget period).
    pub fn add_budget(&self, tokens: u64) {
        let _ = self
            .inner
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_add(tokens))
            });
    }

    /// Entries in the in-memory cache.
    pub fn cached(&self) -> usize {
        self.inner.cache.len()
    }

    /// Classifies one text. [`Classifier::classify`] calls this with the
    /// item's [`Document::text`].
    pub async fn classify_text(&self, text: &str) -> Result<Prediction, ClassifyError> {
        match self.classify_inner(text).await {
            Ok(p) => Ok(p),
            Err(e) => {
                metrics::counter!("streamsift_llm_failures_total", "model" => self.inner.transport.model().to_owned(), "kind" => e.kind())
                    .increment(1);
                tracing::debug!(
                    model = self.inner.transport.model(),
                    kind = e.kind(),
                    "llm classification failed"
                );
                Err(e.into_classify_error())
            }
        }
    }

    async fn classify_inner(&self, text: &str) -> Result<Prediction, LlmError> {
        let i = &*self.inner;
        let model = i.transport.model().to_owned();
        let key = cache::key(&i.fingerprint, text);
        if let Some(p) = i.cache.get(&key) {
            i.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("streamsift_llm_cache_hits_total", "model" => model).increment(1);
            return Ok(p);
        }
        let mut messages = i.preamble.clone();
        messages.push(Msg {
            role: Role::User,
            content: item_message(text),
        });
        let mut repaired = false;
        loop {
            self.check_budget()?;
            let structured = self.structured_output_active();
            let req = ChatRequest {
                system: &i.system,
                messages: &messages,
                schema: structured.then_some(&i.schema),
                top_logprobs: i.top_logprobs,
                max_tokens: i.max_tokens,
            };
            self.wait_turn().await;
            i.counters.calls.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("streamsift_llm_calls_total", "model" => model.clone()).increment(1);
            let answer = match i.transport.call(&req).await {
                Ok(a) => a,
                Err(CallError::SchemaUnsupported) if structured => {
                    i.schema_refused.store(true, Ordering::Relaxed);
                    tracing::warn!(model = %model, "the LLM server refused response_format; falling back to the plain prompt with the strict parser");
                    continue;
                }
                Err(CallError::SchemaUnsupported) => {
                    return Err(LlmError::Rejected {
                        status: 400,
                        code: Some("response_format".to_owned()),
                    });
                }
                Err(CallError::Llm(e)) => {
                    if let LlmError::RateLimited {
                        retry_after: Some(d),
                    } = &e
                    {
                        self.hold_until(*d);
                    }
                    return Err(e);
                }
            };
            self.account(&answer, &messages);
            if answer.refusal {
                return Err(LlmError::Refused { why: "refusal" });
            }
            if answer.finish == Finish::ContentFilter {
                return Err(LlmError::Refused {
                    why: "content_filter",
                });
            }
            match parse_label(&answer, &i.labels) {
                Ok(label) => {
                    let p = self.prediction(label, &answer);
                    i.cache.put(key, p.clone()).await;
                    return Ok(p);
                }
                Err(problem) if !repaired => {
                    repaired = true;
                    i.counters.repairs.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("streamsift_llm_repairs_total", "model" => model.clone())
                        .increment(1);
                    messages.push(Msg {
                        role: Role::Assistant,
                        content: answer.content.clone().unwrap_or_default(),
                    });
                    messages.push(Msg {
                        role: Role::User,
                        content: repair_message(problem, &i.labels),
                    });
                }
                Err(problem) => return Err(LlmError::InvalidAnswer { problem }),
            }
        }
    }

    fn prediction(&self, label: &str, answer: &ChatAnswer) -> Prediction {
        let i = &*self.inner;
        let scores = match (&answer.logprobs, answer.content.as_deref()) {
            (Some(tokens), Some(content)) if !tokens.is_empty() => {
                label_scores(content.trim(), tokens, label, &i.labels)
                    .or_else(|| label_scores(content, tokens, label, &i.labels))
            }
            _ => None,
        };
        let scores: Vec<(Label, f64)> = scores
            .unwrap_or_default()
            .into_iter()
            .map(|(l, s)| (Label::from(l), s))
            .collect();
        let positive_score = i.positive.as_deref().and_then(|pos| {
            scores
                .iter()
                .find(|(l, _)| l.as_str() == pos)
                .map(|(_, s)| *s)
        });
        Prediction {
            label: Label::from(label.to_owned()),
            scores,
            positive_score,
            decided_by: None,
        }
    }

    fn check_budget(&self) -> Result<(), LlmError> {
        let used = self.usage().total_tokens();
        let budget = self.budget();
        if used >= budget {
            self.inner
                .counters
                .budget_refusals
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("streamsift_llm_budget_refusals_total", "model" => self.inner.transport.model().to_owned())
                .increment(1);
            return Err(LlmError::BudgetExhausted { used, budget });
        }
        Ok(())
    }

    fn account(&self, answer: &ChatAnswer, messages: &[Msg]) {
        let i = &*self.inner;
        let c = &i.counters;
        let model = i.transport.model().to_owned();
        match (answer.usage.prompt_tokens, answer.usage.completion_tokens) {
            (Some(p), Some(q)) => {
                c.prompt_tokens.fetch_add(p, Ordering::Relaxed);
                c.completion_tokens.fetch_add(q, Ordering::Relaxed);
                metrics::counter!("streamsift_llm_tokens_total", "model" => model.clone(), "kind" => "prompt").increment(p);
                metrics::counter!("streamsift_llm_tokens_total", "model" => model, "kind" => "completion").increment(q);
            }
            _ => {
                // No usage: estimate, so the budget still binds.
                let chars = i.system.len()
                    + messages.iter().map(|m| m.content.len()).sum::<usize>()
                    + answer.content.as_deref().map_or(0, str::len);
                let est = (chars as u64).div_ceil(4);
                c.estimated_tokens.fetch_add(est, Ordering::Relaxed);
                metrics::counter!("streamsift_llm_tokens_total", "model" => model, "kind" => "estimated").increment(est);
            }
        }
    }

    async fn wait_turn(&self) {
        let i = &*self.inner;
        let until = *i.not_before.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = until {
            tokio::time::sleep_until(t).await;
        }
        if let Some(r) = &i.rate {
            r.acquire().await;
        }
    }

    fn hold_until(&self, d: Duration) {
        let t = tokio::time::Instant::now() + d;
        let mut g = self
            .inner
            .not_before
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if g.is_none_or(|old| old < t) {
            *g = Some(t);
        }
    }
}

fn repair_message(problem: super::error::AnswerProblem, labels: &[String]) -> String {
    let allowed: Vec<String> = labels.iter().map(|l| answer_json(l)).collect();
    format!(
        "Your answer was invalid: {problem}. Answer again with only one of these JSON objects and nothing else: {}",
        allowed.join(", ")
    )
}

impl<T: Document + Sync> Classifier<T> for LlmClassifier {
    async fn classify(&self, item: &T) -> Result<Prediction, ClassifyError> {
        self.classify_text(item.text()).await
    }
}

impl LlmClassifierBuilder {
    fn new(transport: BuilderTransport, template: PromptTemplate) -> Self {
        let positive = template.cost.as_ref().map(|c| c.positive.clone());
        LlmClassifierBuilder {
            transport,
            template,
            key: KeySource::None,
            key_header: None,
            structured: true,
            top_logprobs: Some(DEFAULT_TOP_LOGPROBS),
            max_tokens: DEFAULT_MAX_TOKENS,
            timeout: DEFAULT_TIMEOUT,
            rate: None,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            cache_file: None,
            budget: None,
            positive,
        }
    }

    /// The API key (sent as `Authorization: Bearer`). It is never printed:
    /// not by `Debug`, not in logs or errors.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.key = KeySource::Given(key.into());
        self
    }

    /// Reads the API key from environment variable `name` at
    /// [`build`](Self::build), which fails if it is not set.
    pub fn api_key_env(mut self, name: impl Into<String>) -> Self {
        self.key = KeySource::Env(name.into());
        self
    }

    /// Sends the key in header `name` instead of `Authorization: Bearer`
    /// (Azure OpenAI's `api-key`).
    pub fn api_key_header(mut self, name: impl Into<String>) -> Self {
        self.key_header = Some(name.into());
        self
    }

    /// Ask for structured output (a JSON schema whose `label` is an enum of
    /// the labels); on by default. When the server refuses it (HTTP 400
    /// naming `response_format`), the classifier falls back to the plain
    /// prompt once and remembers it.
    pub fn structured_output(mut self, on: bool) -> Self {
        self.structured = on;
        self
    }

    /// Ask for token logprobs with `n` alternatives per token (default
    /// [`DEFAULT_TOP_LOGPROBS`]); `None` asks for none, and predictions
    /// then carry no score. OpenAI allows 0 to 20.
    pub fn top_logprobs(mut self, n: Option<u8>) -> Self {
        self.top_logprobs = n;
        self
    }

    /// `max_tokens` of each answer (default [`DEFAULT_MAX_TOKENS`]).
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = n;
        self
    }

    /// Per-call timeout (default [`DEFAULT_TIMEOUT`]); OpenAI transport only
    /// (set Bedrock's in the `SdkConfig`).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Paces calls with `limiter` (share a clone between classifiers that
    /// call the same server).
    pub fn rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.rate = Some(limiter);
        self
    }

    /// How many answers the in-memory cache keeps (default
    /// [`DEFAULT_CACHE_CAPACITY`]; 0 turns the cache off).
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }

    /// Also keeps the cache in a JSON-lines file: loaded at
    /// [`build`](Self::build), appended to after each new answer. Lines hold
    /// a hash of the text, never the text.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }

    /// Fails closed past `tokens` (prompt + completion, from the answers'
    /// `usage`): every later item that is not cached gets
    /// [`LlmError::BudgetExhausted`]. Concurrent calls may overshoot by what
    /// the calls in flight use.
    pub fn budget_tokens(mut self, tokens: u64) -> Self {
        self.budget = Some(tokens);
        self
    }

    /// The label whose score becomes `positive_score` (for a binary
    /// [`Policy`](crate::Policy)); by default the template's cost positive.
    pub fn positive(mut self, label: impl Into<String>) -> Self {
        self.positive = Some(label.into());
        self
    }

    /// Checks the configuration and builds the classifier. Nothing is sent.
    pub fn build(self) -> Result<LlmClassifier, LlmConfigError> {
        self.template.validate()?;
        if let Some(p) = &self.positive
            && !self.template.has_label(p)
        {
            return Err(LlmConfigError::Invalid(format!(
                "name one of the labels as the positive label: {p:?} is not one"
            )));
        }
        if self.max_tokens == 0 {
            return Err(LlmConfigError::Invalid(
                "give max_tokens above 0".to_owned(),
            ));
        }
        if self.top_logprobs.is_some_and(|n| n > 20) {
            return Err(LlmConfigError::Invalid(
                "ask for at most 20 top_logprobs (the OpenAI API's limit)".to_owned(),
            ));
        }
        let (api_key, key_source) = match self.key {
            KeySource::None => (None, "no API key was given".to_owned()),
            KeySource::Given(k) => (Some(k), "the key given to .api_key(..)".to_owned()),
            KeySource::Env(name) => match std::env::var(&name) {
                Ok(k) if !k.trim().is_empty() => (
                    Some(k.trim().to_owned()),
                    format!("environment variable {name}"),
                ),
                _ => return Err(LlmConfigError::MissingApiKey(name)),
            },
        };
        let transport = match self.transport {
            BuilderTransport::OpenAi { base_url, model } => {
                // The path gets `/chat/completions`; a query (Azure's
                // `api-version`) is kept.
                let mut url = reqwest::Url::parse(base_url.trim())
                    .map_err(|e| LlmConfigError::BadUrl(format!("{e}")))?;
                let path = url.path().trim_end_matches('/').to_owned();
                url.set_path(&format!("{path}/chat/completions"));
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(LlmConfigError::BadUrl(format!("scheme {:?}", url.scheme())));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(LlmConfigError::BadUrl(
                        "credentials in the URL: pass the key with .api_key(..) instead".to_owned(),
                    ));
                }
                if model.trim().is_empty() {
                    return Err(LlmConfigError::Invalid(
                        "name the model: it is empty".to_owned(),
                    ));
                }
                let client = reqwest::Client::builder()
                    .timeout(self.timeout)
                    .connect_timeout(self.timeout.min(Duration::from_secs(10)))
                    .build()
                    .map_err(|e| LlmConfigError::Client(e.to_string()))?;
                Transport::OpenAi(OpenAiTransport {
                    client,
                    url,
                    model,
                    api_key,
                    key_header: self.key_header,
                    key_source,
                    timeout: self.timeout,
                })
            }
            #[cfg(feature = "bedrock")]
            BuilderTransport::Bedrock(t) => Transport::Bedrock(t),
        };
        let top_logprobs = if transport.supports_logprobs() {
            self.top_logprobs
        } else {
            None
        };
        let prompt_hash = self.template.hash();
        let fingerprint = hash_fields(&[
            transport.kind().as_bytes(),
            transport.model().as_bytes(),
            prompt_hash.as_bytes(),
            &[u8::from(self.structured)],
            &[top_logprobs.map_or(255, |n| n)],
        ]);
        let cache = Cache::new(self.cache_capacity, self.cache_file.as_deref())?;
        let mut preamble = Vec::new();
        for e in &self.template.examples {
            preamble.push(Msg {
                role: Role::User,
                content: item_message(&e.text),
            });
            preamble.push(Msg {
                role: Role::Assistant,
                content: answer_json(&e.label),
            });
        }
        let labels = self
            .template
            .labels
            .iter()
            .map(|l| l.name.clone())
            .collect();
        Ok(LlmClassifier {
            inner: Arc::new(Inner {
                system: self.template.system_prompt(),
                schema: self.template.answer_schema(),
                transport,
                labels,
                positive: self.positive,
                preamble,
                structured: self.structured,
                schema_refused: AtomicBool::new(false),
                top_logprobs,
                max_tokens: self.max_tokens,
                rate: self.rate,
                not_before: std::sync::Mutex::new(None),
                cache,
                prompt_hash,
                fingerprint,
                budget: AtomicU64::new(self.budget.unwrap_or(u64::MAX)),
                counters: Counters::default(),
                template: self.template,
            }),
        })
    }
}
