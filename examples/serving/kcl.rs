//! The support-tweets stages as a KCL MultiLang record processor
//! (`kcl_support_tweets`).

use super::super::app::model::{self, Triage};
use super::super::app::{MAX_RECORD_BYTES, Tweet};
use super::{DeadLetters, load_models, notifier, sqs_dead_letters};
use streamsift::JsonLinesDeadLetter;
use streamsift::kcl::KclProcessor;

/// The record processor: logs to stderr, loads the models, then speaks the
/// protocol on stdin/stdout until stdin closes.
pub async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "record processor stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    let models = load_models()?;
    tracing::info!(
        load_ms = started.elapsed().as_millis() as u64,
        "model loaded"
    );
    // An SQS queue when DEAD_LETTER_QUEUE_URL is set; otherwise a file, with
    // no default: under the daemon the working directory is the daemon's,
    // and a file appearing there would be a surprise.
    let dead_letters = match sqs_dead_letters().await? {
        Some(queue) => queue,
        None => {
            let path = std::env::var_os("DEAD_LETTER_PATH")
                .filter(|p| !p.is_empty())
                .ok_or(
                    "neither DEAD_LETTER_QUEUE_URL nor DEAD_LETTER_PATH is set; set one in the \
                     daemon's environment: an SQS queue URL, or the JSON-lines file (its \
                     directory must exist) where records that cannot be processed are kept",
                )?;
            DeadLetters::File(JsonLinesDeadLetter::create(path)?)
        }
    };
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
    let summary = KclProcessor::new(processor)
        .checkpoint_backoff(std::time::Duration::from_millis(50))
        .run_stdio()
        .await?;
    tracing::info!(
        shard = summary.shard.as_deref().unwrap_or("-"),
        batches = summary.batches,
        records = summary.records,
        dead_lettered = summary.dead_lettered,
        checkpoints = summary.checkpoints,
        ended_by = summary.ended_by.as_deref().unwrap_or("-"),
        "daemon closed stdin"
    );
    Ok(())
}
