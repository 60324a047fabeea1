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
#[path = "serving/mod.rs"]
mod serving;

use std::time::{Duration, Instant};

use app::MAX_RECORD_BYTES;
use app::Tweet;
use app::model::{self, Triage};
use serving::{load_models, notifier};
use streamsift::lambda::KinesisHandler;
use streamsift::{DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterSink};

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
