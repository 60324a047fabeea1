//! Fix the bug, then replay: reads dead letters back from a JSON-lines file
//! (`--from-file PATH`, written by `JsonLinesDeadLetter`) or an SQS queue
//! (`--from-sqs URL`, written by `streamsift::sqs::SqsDeadLetter`) and
//! feeds each record's original bytes through the support-tweets stages
//! again (the bundled local model and policy of `examples/support_tweets`;
//! notifications go to `SNS_TOPIC_ARN` with feature `sns`, else to the log).
//!
//! ```text
//! cargo run --features sqs --example replay_dead_letters -- --from-file dead-letter.jsonl --stage route
//! cargo run --features s3 --example replay_dead_letters -- --from-sqs https://sqs.../support-dead-letters --dry-run
//! ```
//!
//! - `--stage STAGE`, `--kind KIND` (repeatable): replay only dead letters
//!   of these stages and kinds; the others are left alone.
//! - `--dry-run`: list what would be replayed (ids, stage, kind), replay
//!   nothing, delete nothing.
//! - A record is replayed when the stages finish it (routed, sent for
//!   review, or dropped by the policy). From SQS, its message is deleted
//!   only then; a record that fails again, a truncated payload (it is not
//!   the original record), an unreadable message, and a message left out
//!   by the filter stay on the queue and are visible again after
//!   `--visibility-timeout` seconds (default 60). A file is never changed.
//!   `DEAD_LETTER_BUCKET` (feature `s3`) names the bucket of payloads too
//!   large for a message.
//!
//! The report on stdout names records by id, stage and kind, never their
//! payload. Exit status: 0 when every selected dead letter was replayed,
//! 3 when some were not, 1 on an error (hint first, on stderr).

#[path = "support_tweets/app.rs"]
mod app;
#[path = "common/mod.rs"]
mod common;
#[path = "serving/mod.rs"]
mod serving;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use streamsift::batch::RecordOutcome;
use streamsift::{DeadLetterEntry, JsonLinesDeadLetter, MemoryDeadLetter, Record};

/// Replay dead letters through the support-tweets stages.
#[derive(Debug, Parser)]
#[command(name = "replay_dead_letters")]
pub struct Cli {
    /// A JSON-lines dead-letter file.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "from_sqs",
        conflicts_with = "from_sqs"
    )]
    pub from_file: Option<PathBuf>,
    /// An SQS dead-letter queue URL.
    #[arg(long, value_name = "URL")]
    pub from_sqs: Option<String>,
    /// List what would be replayed; replay and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replay only dead letters of this stage (decode, classify, route, review, routed).
    #[arg(long, value_name = "STAGE")]
    pub stage: Vec<String>,
    /// Replay only dead letters of this kind (invalid_json, unavailable, ...).
    #[arg(long, value_name = "KIND")]
    pub kind: Vec<String>,
    /// Seconds a message read from SQS but not replayed stays hidden.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub visibility_timeout: u64,
}

/// What the replay did.
#[derive(Debug, Default)]
pub struct Report {
    pub read: usize,
    pub filtered_out: usize,
    pub replayed: usize,
    pub failed_again: usize,
    pub not_replayable: usize,
    pub deleted: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    main_with(std::env::args_os()).await
}

/// The whole program, for a command line (the program name first).
pub async fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    common::init_tracing();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(&cli).await {
        Ok(report) => {
            println!(
                "replay_dead_letters: {} read, {} left out by the filter, {} replayed, {} failed \
                 again, {} not replayable, {} deleted{}",
                report.read,
                report.filtered_out,
                report.replayed,
                report.failed_again,
                report.not_replayable,
                report.deleted,
                if cli.dry_run { " (dry run)" } else { "" }
            );
            if report.failed_again + report.not_replayable == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => common::fail(
            &*e,
            Some("check the --from-file path or the --from-sqs URL, and the credentials"),
        ),
    }
}

fn selected(cli: &Cli, entry: &DeadLetterEntry) -> bool {
    (cli.stage.is_empty() || cli.stage.iter().any(|s| s == entry.stage.as_str()))
        && (cli.kind.is_empty() || cli.kind.contains(&entry.kind))
}

/// The support-tweets stages, dead letters kept in memory: a record that
/// fails again is reported and stays where it was read from.
async fn stages() -> Result<impl Replayer, Box<dyn std::error::Error>> {
    let models = serving::load_models()?;
    let processor = streamsift::batch::builder()
        .json::<app::Tweet>()
        .classify(app::model::Triage::new(&models))
        .policy(app::model::triage_policy())
        .route(serving::notifier().await?)
        .review_via_router()
        .dead_letter(MemoryDeadLetter::new())
        .max_in_flight(16)
        .max_record_bytes(app::MAX_RECORD_BYTES)
        .into_batch_processor()?;
    Ok(processor)
}

/// Replays records; true for each one the stages finished.
trait Replayer {
    async fn replay(&self, records: Vec<Record>) -> Vec<bool>;
}

impl<D, C, R> Replayer for streamsift::batch::BatchProcessor<D, C, R, app::Tweet>
where
    D: streamsift::Decoder<app::Tweet>,
    C: streamsift::Classifier<app::Tweet>,
    R: streamsift::Router<app::Tweet>,
{
    async fn replay(&self, records: Vec<Record>) -> Vec<bool> {
        let report = self.process(records, None).await;
        report
            .outcomes
            .iter()
            .map(|o| o.is_done() && !matches!(o, RecordOutcome::DeadLettered { .. }))
            .collect()
    }
}

fn say(what: &str, entry: &DeadLetterEntry) {
    println!(
        "{what}: {} (stage {}, kind {})",
        entry.record_id,
        entry.stage.as_str(),
        entry.kind
    );
}

async fn run(cli: &Cli) -> Result<Report, Box<dyn std::error::Error>> {
    let mut report = Report::default();
    let replayer = stages().await?;
    if let Some(path) = &cli.from_file {
        let entries = JsonLinesDeadLetter::read_entries(path)
            .map_err(|e| format!("cannot read dead letters from {}: {e}", path.display()))?;
        report.read = entries.len();
        let mut chosen = Vec::new();
        for entry in entries {
            if !selected(cli, &entry) {
                report.filtered_out += 1;
            } else if cli.dry_run {
                say("would replay", &entry);
            } else {
                match entry.to_record() {
                    Ok(record) => chosen.push((entry, record)),
                    Err(_) => {
                        say("not replayable (payload_base64 is not base64)", &entry);
                        report.not_replayable += 1;
                    }
                }
            }
        }
        for chunk in chosen.chunks(64) {
            let done = replayer
                .replay(chunk.iter().map(|(_, r)| r.clone()).collect())
                .await;
            for ((entry, _), ok) in chunk.iter().zip(done) {
                tally(&mut report, entry, ok);
            }
        }
        return Ok(report);
    }
    let url = cli
        .from_sqs
        .as_deref()
        .ok_or("give --from-file or --from-sqs")?;
    replay_sqs(cli, url, &replayer, &mut report).await?;
    Ok(report)
}

fn tally(report: &mut Report, entry: &DeadLetterEntry, ok: bool) {
    if ok {
        say("replayed", entry);
        report.replayed += 1;
    } else {
        say("failed again", entry);
        report.failed_again += 1;
    }
}

#[cfg(feature = "sqs")]
async fn replay_sqs(
    cli: &Cli,
    url: &str,
    replayer: &impl Replayer,
    report: &mut Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    #[allow(unused_mut)]
    let mut builder = streamsift::sqs::SqsDeadLetter::builder(&config, url);
    #[cfg(feature = "s3")]
    if let Ok(bucket) = std::env::var("DEAD_LETTER_BUCKET") {
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(path_style)
                .build(),
        );
        builder = builder.s3(s3, bucket);
    }
    let queue = builder.build().await?;
    let visibility = Duration::from_secs(cli.visibility_timeout.max(1));
    let mut seen = std::collections::HashSet::new();
    loop {
        // Messages not deleted stay hidden for `visibility`; one seen
        // already (visible again on a long run) is not read twice, and the
        // loop ends when no unseen message comes.
        let batch = queue
            .receive(10, Duration::from_secs(1), visibility)
            .await?;
        let mut chosen = Vec::new();
        let mut fresh = 0;
        for message in batch {
            let id = match &message {
                Ok(m) => m.message_id.clone(),
                Err(streamsift::sqs::SqsDeadLetterError::Unreadable { message_id, .. }) => {
                    message_id.clone()
                }
                Err(_) => String::new(),
            };
            if !seen.insert(id) {
                continue;
            }
            fresh += 1;
            report.read += 1;
            let m = match message {
                Ok(m) => m,
                Err(e) => {
                    println!("not replayable: {e}");
                    report.not_replayable += 1;
                    continue;
                }
            };
            if !selected(cli, &m.entry) {
                report.filtered_out += 1;
            } else if let Some(cut) = m.truncated {
                say(
                    &format!(
                        "not replayable (payload cut from {} to {} bytes)",
                        cut.original_bytes, cut.kept_bytes
                    ),
                    &m.entry,
                );
                report.not_replayable += 1;
            } else if cli.dry_run {
                say("would replay", &m.entry);
            } else {
                match m.entry.to_record() {
                    Ok(record) => chosen.push((m, record)),
                    Err(_) => {
                        say("not replayable (payload_base64 is not base64)", &m.entry);
                        report.not_replayable += 1;
                    }
                }
            }
        }
        if fresh == 0 {
            return Ok(());
        }
        let done = replayer
            .replay(chosen.iter().map(|(_, r)| r.clone()).collect())
            .await;
        for ((m, _), ok) in chosen.iter().zip(done) {
            tally(report, &m.entry, ok);
            if ok {
                queue.delete(m).await?;
                report.deleted += 1;
            }
        }
    }
}

#[cfg(not(feature = "sqs"))]
async fn replay_sqs(
    _cli: &Cli,
    _url: &str,
    _replayer: &impl Replayer,
    _report: &mut Report,
) -> Result<(), Box<dyn std::error::Error>> {
    Err("--from-sqs needs a build with `--features sqs`".into())
}
