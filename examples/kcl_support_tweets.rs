//! The support-tweets triage as a record processor under the KCL's
//! MultiLangDaemon ([`streamsift::kcl`]): the daemon starts one of these
//! per shard lease and talks to it on stdin/stdout. See the README's
//! "Running under the KCL" for the `.properties` file.
//!
//! Environment: `MODEL_DIR` and `SNS_TOPIC_ARN` as for
//! `lambda_support_tweets`; `DEAD_LETTER_PATH` (default
//! `./dead-letter.jsonl`) for the JSON-lines dead-letter file. Logs go to
//! stderr (stdout is the protocol), level from `RUST_LOG` (default `info`).

#[path = "support_tweets/app.rs"]
mod app;
#[path = "serving/mod.rs"]
mod serving;

use app::model::{self, Triage};
use app::{MAX_RECORD_BYTES, Tweet};
use serving::{load_models, notifier};
use streamsift::JsonLinesDeadLetter;
use streamsift::kcl::KclProcessor;

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
    let models = load_models()?;
    tracing::info!("model loaded");
    let dead_letter_path =
        std::env::var("DEAD_LETTER_PATH").unwrap_or_else(|_| "dead-letter.jsonl".into());
    let processor = streamsift::batch::builder()
        .json::<Tweet>()
        .classify(Triage::new(&models))
        .policy(model::triage_policy())
        .route(notifier().await?)
        .dead_letter(JsonLinesDeadLetter::new(dead_letter_path))
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
