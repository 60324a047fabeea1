//! What a transport is given and gives back, whatever the wire protocol.

use serde_json::Value;

use super::error::LlmError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    User,
    Assistant,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Msg {
    pub(crate) role: Role,
    pub(crate) content: String,
}

/// One call: the system prompt, the conversation, and what to ask for.
pub(crate) struct ChatRequest<'a> {
    pub(crate) system: &'a str,
    pub(crate) messages: &'a [Msg],
    /// The answer schema, when structured output is on.
    pub(crate) schema: Option<&'a Value>,
    /// `top_logprobs`, when logprobs are asked for.
    pub(crate) top_logprobs: Option<u8>,
    pub(crate) max_tokens: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    Length,
    ContentFilter,
    Other,
}

#[derive(Clone, Debug)]
pub(crate) struct TokenLogprob {
    pub(crate) token: String,
    pub(crate) logprob: f64,
    pub(crate) top: Vec<(String, f64)>,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: Option<u64>,
    pub(crate) completion_tokens: Option<u64>,
}

#[derive(Clone, Debug)]
pub(crate) struct ChatAnswer {
    pub(crate) content: Option<String>,
    pub(crate) finish: Finish,
    pub(crate) refusal: bool,
    pub(crate) logprobs: Option<Vec<TokenLogprob>>,
    pub(crate) usage: Usage,
}

pub(crate) enum CallError {
    /// The server refused structured output (HTTP 400 naming
    /// `response_format`): fall back to the plain prompt once.
    SchemaUnsupported,
    Llm(LlmError),
}
