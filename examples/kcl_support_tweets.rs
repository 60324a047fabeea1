//! The support-tweets triage as a record processor under the KCL's
//! MultiLangDaemon ([`streamsift::kcl`]): the daemon starts one of these
//! per shard lease and talks to it on stdin/stdout. See the guide
//! `streamsift::guide::kcl` for the `.properties` file.
//!
//! Environment: `MODEL_DIR`, `SNS_TOPIC_ARN` and `DEAD_LETTER_QUEUE_URL`
//! (feature `sqs`) as for `lambda_support_tweets`; without a queue,
//! `DEAD_LETTER_PATH` (required then: there is no default) for the
//! JSON-lines dead-letter file. Logs go to
//! stderr (stdout is the protocol), level from `RUST_LOG` (default `info`).

#[path = "support_tweets/app.rs"]
mod app;
#[path = "serving/mod.rs"]
mod serving;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    serving::kcl::main().await
}
