//! The support-tweets triage as an AWS Lambda function consuming a Kinesis
//! stream: the same model, policy and stages as `examples/support_tweets`,
//! run by [`streamsift::lambda`]. See the README's "Running on AWS Lambda"
//! for building (`cargo lambda build --release --arm64 --example
//! lambda_support_tweets --features lambda,sns`), deploying, the event
//! source mapping settings and the IAM policy.
//!
//! Environment:
//! - `MODEL_DIR`: a directory holding `support_actionable.model.json` and
//!   `support_team.model.json`; without it, the models bundled into the
//!   binary at build time are used.
//! - `SNS_TOPIC_ARN` (build with feature `sns`): publish every notification
//!   to this topic, with the route as the `route` message attribute.
//!   Without it, notifications are written to the log (a dry run).
//! - `EMF_NAMESPACE`: CloudWatch namespace of the per-invocation metrics
//!   (default `streamsift`).
//! - `SAFETY_MARGIN_MS`: stop starting records this long before the
//!   deadline (default 2000).
//!
//! Permanently bad records (not JSON, too large, corrupt KPL aggregates) go
//! to the dead-letter route: an `ERROR` log line holding the whole
//! dead-letter entry (payload in base64), kept by CloudWatch Logs.

#[path = "support_tweets/app.rs"]
mod app;

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::model::{self, Models, Triage};
use app::{MAX_RECORD_BYTES, Tweet};
use streamsift::lambda::KinesisHandler;
use streamsift::local::LocalModel;
use streamsift::{
    DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterSink, Delivery, Receipt, RouteError,
    Router,
};

const BUNDLED_ACTIONABLE: &str = include_str!("data/support_actionable.model.json");
const BUNDLED_TEAM: &str = include_str!("data/support_team.model.json");

/// The models, from `MODEL_DIR` or the copies bundled at build time.
fn load_models() -> Result<Models, Box<dyn std::error::Error>> {
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
enum Notify {
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

async fn notifier() -> Result<Notify, Box<dyn std::error::Error>> {
    #[cfg(feature = "sns")]
    if let Ok(arn) = std::env::var("SNS_TOPIC_ARN") {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sns = streamsift::sns::SnsRouter::<Tweet>::builder_from_conf(&config)
            .topic(arn)
            .message_attributes(true)
            .source_name("support_tweets")
            .build()?;
        return Ok(Notify::Sns(sns));
    }
    Ok(Notify::Log)
}

/// The dead-letter route: one `ERROR` log line per dead letter.
#[derive(Debug)]
struct LogDeadLetter;

#[async_trait::async_trait]
impl DeadLetterSink for LogDeadLetter {
    async fn store(&self, dead_letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let entry = DeadLetterEntry::from_dead_letter(dead_letter);
        let json = serde_json::to_string(&entry).map_err(|e| {
            DeadLetterError::permanent(format!("dead letter could not be serialized: {e}"))
        })?;
        tracing::error!(dead_letter = %json, "dead-lettered record");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    streamsift::lambda::init_tracing();
    let started = Instant::now();
    let models = load_models()?;
    tracing::info!(
        load_ms = started.elapsed().as_millis() as u64,
        from = if std::env::var_os("MODEL_DIR").is_some() {
            "MODEL_DIR"
        } else {
            "bundled"
        },
        "model loaded"
    );
    let processor = streamsift::batch::builder()
        .json::<Tweet>()
        .classify(Triage::new(&models))
        .policy(model::triage_policy())
        .route(notifier().await?)
        .dead_letter(LogDeadLetter)
        .max_in_flight(64)
        .max_record_bytes(MAX_RECORD_BYTES)
        .into_batch_processor()?;
    let margin = std::env::var("SAFETY_MARGIN_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(streamsift::lambda::DEFAULT_SAFETY_MARGIN);
    let namespace = std::env::var("EMF_NAMESPACE").unwrap_or_else(|_| "streamsift".into());
    let handler = KinesisHandler::new(processor)
        .safety_margin(margin)
        .emf_namespace(namespace);
    streamsift::lambda::run(handler).await?;
    Ok(())
}
