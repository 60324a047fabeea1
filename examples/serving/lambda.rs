//! The support-tweets stages as a Lambda function (`lambda_support_tweets`).

use std::time::{Duration, Instant};

use super::super::app::MAX_RECORD_BYTES;
use super::super::app::Tweet;
use super::super::app::model::{self, Triage};
use super::{DeadLetters, LogDeadLetter, load_models, notifier, sqs_dead_letters};
use streamsift::lambda::KinesisHandler;

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
    // There is no disk on Lambda: an SQS queue when one is configured,
    // otherwise log lines without payloads.
    let dead_letters = sqs_dead_letters()
        .await?
        .unwrap_or(DeadLetters::Log(LogDeadLetter));
    let processor = streamsift::batch::builder()
        .json::<Tweet>()
        .classify(Triage::new(&models))
        .policy(model::triage_policy())
        .route(notifier().await?)
        // The router takes every route, "review" included.
        .review_via_router()
        .dead_letter(dead_letters)
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
