//! The support-tweets stages as a KCL MultiLang record processor
//! (`kcl_support_tweets`).

use super::super::app::model::{self, Triage};
use super::super::app::{MAX_RECORD_BYTES, Tweet};
use super::{load_models, notifier};
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
    // No default: under the daemon the working directory is the daemon's,
    // and a file appearing there would be a surprise.
    let dead_letter_path = std::env::var_os("DEAD_LETTER_PATH")
        .filter(|p| !p.is_empty())
        .ok_or(
            "DEAD_LETTER_PATH is not set; set it in the daemon's environment to the JSON-lines \
             file where records that cannot be processed are kept (its directory must exist)",
        )?;
    let processor = streamsift::batch::builder()
        .json::<Tweet>()
        .classify(Triage::new(&models))
        .policy(model::triage_policy())
        .route(notifier().await?)
        // The router takes every route, "review" included.
        .review_via_router()
        .dead_letter(JsonLinesDeadLetter::create(dead_letter_path)?)
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
