//! The support-tweets stages as a Lambda function (`lambda_support_tweets`).

use std::time::{Duration, Instant};

use super::super::app::MAX_RECORD_BYTES;
use super::super::app::Tweet;
use super::super::app::model::{self, Triage};
use super::{load_models, notifier};
use streamsift::lambda::KinesisHandler;
use streamsift::{DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterSink};

/// The dead-letter route: one `ERROR` log line per dead letter, naming the
/// record (id, shard, sequence number), the stage, the kind and the reason,
/// never the payload: tweet text stays out of the logs. The record itself
/// stays in the stream (for its retention period) under that sequence
/// number; issue 15 gives Lambda a sink that keeps payloads (an on-failure
/// destination).
#[derive(Debug)]
struct LogDeadLetter;

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
            reason = %entry.reason,
            "dead-lettered record"
        );
        Ok(())
    }
}

/// The Lambda function: loads the models once, then serves events until
/// the execution environment ends.
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
        // The router takes every route, "review" included.
        .review_via_router()
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
