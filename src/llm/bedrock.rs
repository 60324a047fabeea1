//! The Amazon Bedrock Converse transport (feature `bedrock`).

use std::fmt;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, JsonSchemaDefinition, Message,
    OutputConfig, OutputFormat, OutputFormatStructure, OutputFormatType, StopReason,
    SystemContentBlock,
};

use super::error::LlmError;
use super::transport::{CallError, ChatAnswer, ChatRequest, Finish, Role, Usage};
use crate::aws::{AwsErrorKind, AwsFailure};

pub(crate) struct BedrockTransport {
    client: Client,
    pub(crate) model_id: String,
}

impl fmt::Debug for BedrockTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client (and its credentials) is left out on purpose.
        f.debug_struct("Bedrock")
            .field("model_id", &self.model_id)
            .finish_non_exhaustive()
    }
}

impl BedrockTransport {
    pub(crate) fn new(config: &aws_config::SdkConfig, model_id: String) -> Self {
        let conf = aws_sdk_bedrockruntime::config::Builder::from(config)
            .retry_config(RetryConfig::disabled());
        BedrockTransport {
            client: Client::from_conf(conf.build()),
            model_id,
        }
    }

    pub(crate) async fn call(&self, req: &ChatRequest<'_>) -> Result<ChatAnswer, CallError> {
        let bad = |what: &str| {
            CallError::Llm(LlmError::BadResponse(format!(
                "the request could not be built: {what}"
            )))
        };
        let mut call = self
            .client
            .converse()
            .model_id(&self.model_id)
            .system(SystemContentBlock::Text(req.system.to_owned()))
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(i32::try_from(req.max_tokens).unwrap_or(i32::MAX))
                    .temperature(0.0)
                    .build(),
            );
        for m in req.messages {
            let role = match m.role {
                Role::User => ConversationRole::User,
                Role::Assistant => ConversationRole::Assistant,
            };
            let msg = Message::builder()
                .role(role)
                .content(ContentBlock::Text(m.content.clone()))
                .build()
                .map_err(|e| bad(&e.to_string()))?;
            call = call.messages(msg);
        }
        if let Some(schema) = req.schema {
            let def = JsonSchemaDefinition::builder()
                .name("label_answer")
                .schema(schema.to_string())
                .build()
                .map_err(|e| bad(&e.to_string()))?;
            let format = OutputFormat::builder()
                .r#type(OutputFormatType::JsonSchema)
                .structure(OutputFormatStructure::JsonSchema(def))
                .build()
                .map_err(|e| bad(&e.to_string()))?;
            call = call.output_config(OutputConfig::builder().text_format(format).build());
        }
        let out = call.send().await.map_err(|e| {
            let failure = AwsFailure::from_sdk(&e);
            map_failure(&failure)
        })?;
        let finish = match out.stop_reason() {
            StopReason::MaxTokens => Finish::Length,
            StopReason::ContentFiltered | StopReason::GuardrailIntervened => Finish::ContentFilter,
            StopReason::ModelContextWindowExceeded => {
                return Err(CallError::Llm(LlmError::ContextLength));
            }
            StopReason::EndTurn | StopReason::StopSequence => Finish::Stop,
            _ => Finish::Other,
        };
        let content = out.output().and_then(|o| o.as_message().ok()).map(|m| {
            m.content()
                .iter()
                .filter_map(|b| b.as_text().ok().map(String::as_str))
                .collect::<String>()
        });
        let usage = out.usage().map_or(Usage::default(), |u| Usage {
            prompt_tokens: u64::try_from(u.input_tokens()).ok(),
            completion_tokens: u64::try_from(u.output_tokens()).ok(),
        });
        Ok(ChatAnswer {
            content,
            finish,
            refusal: false,
            logprobs: None,
            usage,
        })
    }
}

fn map_failure(f: &AwsFailure) -> CallError {
    // The message is read only to detect the case; it is not kept.
    let msg = f.message.to_ascii_lowercase();
    if f.has_code("ValidationException") {
        if msg.contains("too long") || msg.contains("context") || msg.contains("too many tokens") {
            return CallError::Llm(LlmError::ContextLength);
        }
        if msg.contains("outputconfig")
            || msg.contains("output_config")
            || msg.contains("structured output")
            || msg.contains("json_schema")
            || msg.contains("output format")
        {
            return CallError::SchemaUnsupported;
        }
    }
    if f.has_code("ModelNotReadyException")
        || f.has_code("ModelTimeoutException")
        || f.has_code("ModelErrorException")
    {
        return CallError::Llm(LlmError::Unavailable {
            what: f.code_or_kind().to_owned(),
        });
    }
    CallError::Llm(match f.kind {
        AwsErrorKind::Throttled => LlmError::RateLimited { retry_after: None },
        AwsErrorKind::AccessDenied => LlmError::Unauthorized {
            status: f.status.unwrap_or(403),
            hint: "the AWS credentials and their IAM policy (bedrock:InvokeModel on the model)"
                .to_owned(),
        },
        kind if kind.is_retryable() => LlmError::Unavailable {
            what: f.code_or_kind().to_owned(),
        },
        _ => LlmError::Rejected {
            status: f.status.unwrap_or(400),
            code: Some(f.code_or_kind().to_owned()),
        },
    })
}
