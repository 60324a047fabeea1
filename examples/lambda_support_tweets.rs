//! The support-tweets triage as an AWS Lambda function consuming a Kinesis
//! stream: the same model, policy and stages as `examples/support_tweets`,
//! run by [`streamsift::lambda`]. See the guide `streamsift::guide::lambda`
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
//! - `DEAD_LETTER_QUEUE_URL` (build with feature `sqs`): send every dead
//!   letter (the record's bytes, stage, kind, reason) to this SQS queue
//!   ([`streamsift::sqs::SqsDeadLetter`]); with feature `s3` and
//!   `DEAD_LETTER_BUCKET`, payloads too large for a message go to that
//!   bucket. Replay them with `examples/replay_dead_letters.rs`.
//!
//! Without a queue, permanently bad records (not JSON, too large, corrupt
//! KPL aggregates) are written as an `ERROR` log line naming the record
//! (id, shard, sequence number), the stage, kind and reason (its quoted
//! parts left out), kept by CloudWatch Logs. The payload is never logged
//! (tweet text stays out of the logs); the record stays readable in the
//! stream, by its sequence number, for the stream's retention period.

#[path = "support_tweets/app.rs"]
mod app;
#[path = "serving/mod.rs"]
mod serving;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    serving::lambda::main().await
}
