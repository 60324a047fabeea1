//! The OpenAI-compatible Chat Completions transport.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

use super::error::LlmError;
use super::transport::{CallError, ChatAnswer, ChatRequest, Finish, TokenLogprob, Usage};

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

pub(crate) struct OpenAiTransport {
    pub(crate) client: reqwest::Client,
    pub(crate) url: reqwest::Url,
    pub(crate) model: String,
    pub(crate) api_key: Option<String>,
    /// `Authorization: Bearer` (None) or a named header (Azure's `api-key`).
    pub(crate) key_header: Option<String>,
    /// Where the key came from, for the 401 hint.
    pub(crate) key_source: String,
    pub(crate) timeout: Duration,
}

impl fmt::Debug for OpenAiTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("url", &self.url.as_str())
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("key_source", &self.key_source)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OpenAiTransport {
    pub(crate) fn body(&self, req: &ChatRequest<'_>) -> Value {
        let mut messages = vec![json!({"role": "system", "content": req.system})];
        for m in req.messages {
            messages.push(json!({"role": m.role.as_str(), "content": m.content}));
        }
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": req.max_tokens,
        });
        if let Some(schema) = req.schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": "label_answer", "strict": true, "schema": schema}
            });
        }
        if let Some(n) = req.top_logprobs {
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(n);
        }
        body
    }

    pub(crate) async fn call(&self, req: &ChatRequest<'_>) -> Result<ChatAnswer, CallError> {
        let mut http = self.client.post(self.url.clone()).json(&self.body(req));
        if let Some(key) = &self.api_key {
            http = match &self.key_header {
                None => http.bearer_auth(key),
                Some(h) => http.header(h.as_str(), key.as_str()),
            };
        }
        let resp = http
            .send()
            .await
            .map_err(|e| CallError::Llm(self.transport_error(e)))?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| CallError::Llm(self.transport_error(e)))?;
        if !(200..300).contains(&status) {
            return Err(self.status_error(status, retry_after, &bytes));
        }
        parse_answer(&bytes).map_err(CallError::Llm)
    }

    fn transport_error(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout(self.timeout)
        } else if e.is_connect() {
            LlmError::Unavailable {
                what: "could not connect".to_owned(),
            }
        } else {
            // reqwest's Display names the URL, never headers or the body.
            LlmError::Unavailable {
                what: format!("request failed: {}", e.without_url()),
            }
        }
    }

    fn status_error(&self, status: u16, retry_after: Option<Duration>, body: &[u8]) -> CallError {
        let err: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let e = &err["error"];
        let code = e["code"].as_str().or(e["type"].as_str()).map(str::to_owned);
        // Read only for detection: the message may quote the request.
        let message = e["message"]
            .as_str()
            .or(err["message"].as_str())
            .unwrap_or("");
        let mentions = |s: &str| message.contains(s) || e["param"].as_str() == Some(s);
        match status {
            429 => CallError::Llm(LlmError::RateLimited { retry_after }),
            401 | 403 => CallError::Llm(LlmError::Unauthorized {
                status,
                hint: self.key_source.clone(),
            }),
            400 | 422
                if code.as_deref() == Some("context_length_exceeded")
                    || message.contains("context length")
                    || message.contains("context_length")
                    || message.contains("maximum context") =>
            {
                CallError::Llm(LlmError::ContextLength)
            }
            400 | 422 if mentions("response_format") || mentions("json_schema") => {
                CallError::SchemaUnsupported
            }
            s if s >= 500 => CallError::Llm(LlmError::Unavailable {
                what: format!("HTTP {s}"),
            }),
            s => CallError::Llm(LlmError::Rejected { status: s, code }),
        }
    }
}

/// `Retry-After` (seconds) or `retry-after-ms`, capped at
/// [`MAX_RETRY_AFTER`]. An HTTP date is ignored.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let d = if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Duration::try_from_secs_f64(ms / 1000.0).ok()
    } else {
        get("retry-after")
            .and_then(|v| v.parse::<f64>().ok())
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    };
    d.map(|d| d.min(MAX_RETRY_AFTER))
}

pub(crate) fn parse_answer(bytes: &[u8]) -> Result<ChatAnswer, LlmError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| LlmError::BadResponse(format!("not JSON: {e}")))?;
    let choice = v["choices"]
        .get(0)
        .ok_or_else(|| LlmError::BadResponse("no choices".to_owned()))?;
    let message = &choice["message"];
    let finish = match choice["finish_reason"].as_str() {
        Some("stop") | Some("tool_calls") | None => Finish::Stop,
        Some("length") => Finish::Length,
        Some("content_filter") => Finish::ContentFilter,
        Some(_) => Finish::Other,
    };
    let refusal = message["refusal"].as_str().is_some_and(|r| !r.is_empty());
    let content = message["content"].as_str().map(str::to_owned);
    let logprobs = choice["logprobs"]["content"].as_array().map(|tokens| {
        tokens
            .iter()
            .map(|t| TokenLogprob {
                token: t["token"].as_str().unwrap_or("").to_owned(),
                logprob: t["logprob"].as_f64().unwrap_or(f64::NEG_INFINITY),
                top: t["top_logprobs"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| {
                                Some((x["token"].as_str()?.to_owned(), x["logprob"].as_f64()?))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    });
    let usage = Usage {
        prompt_tokens: v["usage"]["prompt_tokens"].as_u64(),
        completion_tokens: v["usage"]["completion_tokens"].as_u64(),
    };
    Ok(ChatAnswer {
        content,
        finish,
        refusal,
        logprobs,
        usage,
    })
}
