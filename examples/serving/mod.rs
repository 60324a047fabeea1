//! What the support-tweets serving examples (`lambda_support_tweets`,
//! `kcl_support_tweets`) share: loading the bundled or given models once,
//! and the notifier; and the two mains, so the tests can run them in a
//! child process of their own (`cargo test --examples` builds examples as
//! test harnesses, not as these binaries).

#![allow(dead_code)]

#[cfg(feature = "kcl")]
pub mod kcl;
#[cfg(feature = "lambda")]
pub mod lambda;

use std::sync::Arc;

use super::app::Tweet;
use super::app::model::{self, Models};
use streamsift::local::LocalModel;
use streamsift::{
    DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterSink, Delivery, JsonLinesDeadLetter,
    Receipt, RouteError, Router,
};

const BUNDLED_ACTIONABLE: &str = include_str!("../data/support_actionable.model.json");
const BUNDLED_TEAM: &str = include_str!("../data/support_team.model.json");

/// The models, from `MODEL_DIR` or the copies bundled at build time.
pub fn load_models() -> Result<Models, Box<dyn std::error::Error>> {
    let (actionable, team) = match std::env::var_os("MODEL_DIR") {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            (
                LocalModel::load(dir.join("support_actionable.model.json"))?,
                LocalModel::load(dir.join("support_team.model.json"))?,
            )
        }
        None => (
            LocalModel::from_json(BUNDLED_ACTIONABLE)?,
            LocalModel::from_json(BUNDLED_TEAM)?,
        ),
    };
    let figure = |key: &str| {
        actionable
            .evaluation
            .as_ref()
            .map(|e| e[key].clone())
            .ok_or_else(|| format!("the actionable model file has no `{key}` in its evaluation"))
    };
    let held_out = serde_json::from_value(figure("held_out")?)?;
    let fingerprint = serde_json::from_value(figure("fingerprint")?)?;
    Ok(Models {
        actionable: Arc::new(actionable),
        team: Arc::new(team),
        held_out,
        fingerprint,
        origin: model::Origin::Bundled,
    })
}

/// Where notifications go.
pub enum Notify {
    /// Written to the log (no topic configured).
    Log,
    /// Published to SNS.
    #[cfg(feature = "sns")]
    Sns(streamsift::sns::SnsRouter<Tweet>),
}

impl Router<Tweet> for Notify {
    async fn route(&self, d: &Delivery<'_, Tweet>) -> Result<Receipt, RouteError> {
        match self {
            Notify::Log => {
                tracing::info!(
                    route = %d.route,
                    tweet_id = %d.item.id_str,
                    author = %d.item.user.screen_name,
                    "notification (dry run: no SNS_TOPIC_ARN)"
                );
                Ok(Receipt::new(d.route.clone()))
            }
            #[cfg(feature = "sns")]
            Notify::Sns(sns) => sns.route(d).await,
        }
    }
}

pub async fn notifier() -> Result<Notify, Box<dyn std::error::Error>> {
    #[cfg(feature = "sns")]
    if let Ok(arn) = std::env::var("SNS_TOPIC_ARN") {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sns = streamsift::sns::SnsRouter::<Tweet>::builder(&config)
            .topic(arn)
            .message_attributes(true)
            .source_name("support_tweets")
            .build()
            .await?;
        return Ok(Notify::Sns(sns));
    }
    Ok(Notify::Log)
}

/// Where dead letters go: an SQS queue (`DEAD_LETTER_QUEUE_URL`, feature
/// `sqs`), a JSON-lines file, or (Lambda without a queue) a log line that
/// names the record and never carries its payload.
pub enum DeadLetters {
    /// One `ERROR` log line per dead letter, payload left out.
    Log(LogDeadLetter),
    /// A JSON-lines file.
    File(JsonLinesDeadLetter),
    /// One SQS message per dead letter, the payload kept.
    #[cfg(feature = "sqs")]
    Sqs(streamsift::sqs::SqsDeadLetter),
}

#[async_trait::async_trait]
impl DeadLetterSink for DeadLetters {
    async fn store(&self, dead_letter: &DeadLetter) -> Result<(), DeadLetterError> {
        match self {
            DeadLetters::Log(log) => log.store(dead_letter).await,
            DeadLetters::File(file) => file.store(dead_letter).await,
            #[cfg(feature = "sqs")]
            DeadLetters::Sqs(sqs) => sqs.store(dead_letter).await,
        }
    }
}

/// The SQS dead-letter queue named by `DEAD_LETTER_QUEUE_URL`, if set,
/// checked now (a queue that does not exist stops the start); with feature
/// `s3` and `DEAD_LETTER_BUCKET`, payloads too large for a message go to
/// that bucket.
pub async fn sqs_dead_letters() -> Result<Option<DeadLetters>, Box<dyn std::error::Error>> {
    let Some(url) = std::env::var("DEAD_LETTER_QUEUE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    #[cfg(feature = "sqs")]
    {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        #[allow(unused_mut)]
        let mut builder = streamsift::sqs::SqsDeadLetter::builder(&config, &url);
        #[cfg(feature = "s3")]
        if let Ok(bucket) = std::env::var("DEAD_LETTER_BUCKET") {
            // Path-style addressing when an endpoint is set (an emulator).
            let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some();
            let s3 = aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&config)
                    .force_path_style(path_style)
                    .build(),
            );
            builder = builder.s3(s3, bucket);
        }
        Ok(Some(DeadLetters::Sqs(builder.build().await?)))
    }
    #[cfg(not(feature = "sqs"))]
    {
        let _ = url;
        Err(
            "DEAD_LETTER_QUEUE_URL is set, but this build has no SQS support: build with \
             `--features sqs` (and `s3` for large payloads), or unset it"
                .into(),
        )
    }
}

/// The dead-letter route where there is no queue: one `ERROR` log line per
/// dead letter, naming the record (id, shard, sequence number), the stage,
/// the kind and the reason with its quoted parts left out (serde quotes the
/// offending value: `invalid type: string "…"`), never the payload: tweet
/// text stays out of the logs. The record itself stays in the stream (for
/// its retention period) under that sequence number.
#[derive(Debug)]
pub struct LogDeadLetter;

#[async_trait::async_trait]
impl DeadLetterSink for LogDeadLetter {
    async fn store(&self, dead_letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let entry = DeadLetterEntry::from_dead_letter(dead_letter);
        tracing::error!(
            record_id = %entry.record_id,
            shard = %entry.shard,
            sequence = %entry.sequence,
            stage = entry.stage.as_str(),
            kind = %entry.kind,
            class = %entry.class,
            attempts = entry.attempts,
            route = entry.route.as_deref().unwrap_or("-"),
            reason = %without_quoted(&entry.reason),
            "dead-lettered record"
        );
        Ok(())
    }
}

/// `reason` with whatever is between double quotes or backticks replaced
/// by `…`: where error messages quote the input they could not use.
pub fn without_quoted(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut open: Option<char> = None;
    for c in reason.chars() {
        match open {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    open = Some(c);
                }
            }
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}
