//! Classifying with a large language model: [`LlmClassifier`] (feature
//! `llm`; Bedrock with feature `bedrock`).
//!
//! [`LlmClassifier`] is a [`Classifier`](crate::Classifier) of any item that
//! implements [`Document`](crate::local::Document) (its `text()` is sent).
//! It speaks the OpenAI-compatible Chat Completions API, which OpenAI, Azure
//! OpenAI, vLLM, llama.cpp's server, Ollama and others serve, or Amazon
//! Bedrock's Converse API. The [module docs](crate::llm) hold the reference:
//! each step of a call, the error table, the counters.
//!
//! # OpenAI, vLLM, Ollama, llama.cpp
//!
//! Only the base URL, the model name and the key differ:
//!
//! ```no_run
//! use streamsift::llm::{LlmClassifier, PromptTemplate};
//!
//! # fn demo() -> Result<(), streamsift::llm::LlmConfigError> {
//! let template = PromptTemplate::new("triage-v1")
//!     .label("actionable", "a customer needs help from support")
//!     .label("noise", "anything else: praise, jokes, news, spam")
//!     .cost("actionable", 10.0, 1.0);
//!
//! // OpenAI: the key from an environment variable (build() fails if unset).
//! let openai = LlmClassifier::openai("https://api.openai.com/v1", "gpt-4o-mini", template.clone())
//!     .api_key_env("OPENAI_API_KEY")
//!     .build()?;
//! // vLLM (`vllm serve Qwen/Qwen2.5-7B-Instruct`): structured output and logprobs.
//! let vllm = LlmClassifier::openai("http://localhost:8000/v1", "Qwen/Qwen2.5-7B-Instruct", template.clone())
//!     .build()?;
//! // Ollama: no logprobs through its OpenAI API, so no scores.
//! let ollama = LlmClassifier::openai("http://localhost:11434/v1", "llama3.1", template.clone())
//!     .top_logprobs(None)
//!     .build()?;
//! // llama.cpp's llama-server.
//! let llama_cpp = LlmClassifier::openai("http://localhost:8080/v1", "local", template.clone()).build()?;
//! // Azure OpenAI: the deployment's URL and the `api-key` header.
//! let azure = LlmClassifier::openai(
//!     "https://my-resource.openai.azure.com/openai/deployments/my-deployment",
//!     "gpt-4o-mini",
//!     template,
//! )
//! .api_key_env("AZURE_OPENAI_API_KEY")
//! .api_key_header("api-key")
//! .build()?;
//! # let _ = (openai, vllm, ollama, llama_cpp, azure); Ok(()) }
//! ```
//!
//! A server that refuses structured output (`response_format` with a JSON
//! schema) gets the plain prompt from then on; the strict parser and one
//! repair retry still keep every answer inside the label set.
//!
//! # Amazon Bedrock
//!
//! With feature `bedrock`, the same classifier sends Bedrock's Converse
//! API (`aws-sdk-bedrockruntime`), with structured output through
//! `outputConfig` (a JSON schema), and token usage from its `usage`. Bedrock
//! gives no logprobs: predictions carry no score.
//!
//! ```no_run
//! # #[cfg(feature = "bedrock")]
//! # async fn demo() -> Result<(), streamsift::llm::LlmConfigError> {
//! use streamsift::llm::{LlmClassifier, PromptTemplate};
//! let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let template = PromptTemplate::new("triage-v1")
//!     .label("actionable", "a customer needs help")
//!     .label("noise", "anything else");
//! let bedrock = LlmClassifier::bedrock(&config, "anthropic.claude-3-5-haiku-20241022-v1:0", template)
//!     .budget_tokens(5_000_000)
//!     .build()?;
//! # let _ = bedrock; Ok(()) }
//! ```
//!
//! Its errors map as the other AWS backends' do: throttling is retryable
//! (`RateLimited`), `ModelNotReady`/`ModelTimeout`/`ModelError` and 5xx are
//! retryable, access errors are `Unauthorized` with the IAM hint, a
//! `ValidationException` about the input's length or the
//! `ModelContextWindowExceeded` stop reason is `ContextLength`, and a
//! guardrail or content filter is `Refused`.
//!
//! # The prompt is data
//!
//! [`PromptTemplate`](crate::llm::PromptTemplate) is a serde struct with a
//! format version and your own revision name: the instructions, each label
//! with a one-line description, the cost asymmetry (told to the model as a
//! ratio and a break-even), and few-shot examples picked per label from a
//! labeled dataset with a fixed seed, at most
//! [`MAX_EXAMPLES_PER_LABEL`](crate::llm::MAX_EXAMPLES_PER_LABEL) per label.
//! Store it as JSON next to the model; its hash is in
//! [`LlmClassifier::fingerprint`] and in every cache key, so a changed prompt
//! never reuses an old answer.
//!
//! ```
//! use streamsift::llm::PromptTemplate;
//! use streamsift::local::Example;
//! let data = vec![
//!     Example::new("refund please").labeled("actionable"),
//!     Example::new("great game last night").labeled("noise"),
//! ];
//! let template = PromptTemplate::new("triage-v2")
//!     .label("actionable", "a customer needs help")
//!     .label("noise", "anything else")
//!     .few_shot(&data, 4, 7);
//! let stored = template.to_json();
//! assert_eq!(PromptTemplate::from_json(&stored)?.hash(), template.hash());
//! # Ok::<(), streamsift::llm::LlmConfigError>(())
//! ```
//!
//! Tweets are attacker-controlled. The item's text never enters the
//! system prompt: it is sent as a JSON string, with `<`, `>` and `&` escaped,
//! in its own user message between `<item>` tags. Whatever it says, an
//! answer outside the label set is refused (schema enum, strict parser,
//! one repair, then a permanent `InvalidAnswer`).
//!
//! # Cost controls
//!
//! - **Cache**: answers are kept in memory
//!   ([`cache_capacity`](crate::llm::LlmClassifierBuilder::cache_capacity)),
//!   keyed by model, prompt hash and normalized text; with
//!   [`cache_file`](crate::llm::LlmClassifierBuilder::cache_file) also in a
//!   JSON-lines file that the next start reloads. The file holds hashes and
//!   labels, never text.
//! - **Rate**: a shared [`RateLimiter`](crate::rate::RateLimiter), and every
//!   429's `Retry-After` holds all calls until it has passed.
//! - **Budget**: [`budget_tokens`](crate::llm::LlmClassifierBuilder::budget_tokens)
//!   counts prompt and completion tokens from each answer's `usage` (or an
//!   estimate when a server sends none). Past it, classify fails closed with
//!   the permanent [`LlmError::BudgetExhausted`](crate::llm::LlmError):
//!   a `Cascade` takes its fallback; a bare pipeline dead-letters the record
//!   with the reason "raise the token budget ...". Nothing is dropped.
//!   [`add_budget`](crate::llm::LlmClassifier::add_budget) opens the next period.
//! - **Counters**: [`LlmClassifier::usage`], and `metrics` counters named
//!   `streamsift_llm_*`.
//!
//! # Without logprobs
//!
//! Confidence comes from token logprobs (`logprobs: true`,
//! `top_logprobs`). A server that returns none (Ollama, llama.cpp without
//! them, Bedrock) gives predictions with **no score**. A binary
//! [`Policy`](crate::Policy) then sends each one to review, never notifying
//! nor discarding it on a guess; a multi-class rule with a minimum
//! confidence treats it as uncertain. Set up review (a labeler, or
//! `review_via_router`), or such records are dead-lettered.
//!
//! [`LlmClassifier`]: crate::llm::LlmClassifier
//! [`LlmClassifier::fingerprint`]: crate::llm::LlmClassifier::fingerprint
//! [`LlmClassifier::usage`]: crate::llm::LlmClassifier::usage
