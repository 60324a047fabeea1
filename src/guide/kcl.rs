//! KCL: the same stages as a record processor under the KCL's MultiLangDaemon.
//!
//! Feature `kcl`, no AWS crate. The Kinesis Client Library's
//! `MultiLangDaemon` (Java) holds the shard leases in DynamoDB, balances
//! them over workers, fails them over, and starts one child process per
//! shard lease, speaking JSON lines on its stdin and stdout.
//! [`kcl::KclProcessor`](crate::kcl::KclProcessor) is that child: it runs
//! each `processRecords` batch through a
//! [`BatchProcessor`](crate::batch::BatchProcessor) (the pipeline's own
//! stages and retry rules) and checkpoints through the daemon.
//!
//! ```no_run
//! use streamsift::kcl::KclProcessor;
//! use streamsift::{ClassifyError, JsonLinesDeadLetter, Policy, Prediction, Receipt, RouteError};
//!
//! #[derive(serde::Deserialize)]
//! struct Tweet {
//!     text: String,
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // stdout carries the protocol: send logs to stderr (tracing-subscriber's
//!     // `with_writer(std::io::stderr)`), never to stdout.
//!     let processor = streamsift::batch::builder()
//!         .json::<Tweet>()
//!         .classify(|t: &Tweet| {
//!             let score = if t.text.contains("down") { 0.9 } else { 0.1 };
//!             async move { Ok::<_, ClassifyError>(Prediction::binary("actionable", "none", score)) }
//!         })
//!         .policy(Policy::binary(0.5, "oncall"))
//!         .route(|d: &streamsift::Delivery<'_, Tweet>| {
//!             let route = d.route.clone();
//!             async move { Ok::<_, RouteError>(Receipt::new(route)) }
//!         })
//!         .dead_letter(JsonLinesDeadLetter::create("/var/lib/support-tweets/dead-letter.jsonl")?)
//!         .into_batch_processor()?;
//!     let summary = KclProcessor::new(processor).run_stdio().await?;
//!     eprintln!("{summary:?}");
//!     Ok(())
//! }
//! ```
//!
//! `examples/kcl_support_tweets.rs` is the support-tweets triage as that
//! child (`MODEL_DIR`, `SNS_TOPIC_ARN` and `DEAD_LETTER_PATH` from the
//! environment, which the daemon's children inherit).
//!
//! # Guarantees
//!
//! - It checkpoints through the daemon only once every record of a batch is
//!   done (routed, discarded, reviewed or dead-lettered); at `shardEnded` it
//!   checkpoints `SHARD_END` so the child shards can start; at
//!   `shutdownRequested` it checkpoints what is done; at `leaseLost` it does
//!   not checkpoint.
//! - Records whose retries run out are dead-lettered, as in the pipeline
//!   (the daemon would not redeliver them). If the dead-letter sink fails, it
//!   checkpoints the records before that one and exits with an error; the
//!   daemon restarts the shard from the checkpoint.
//! - A checkpoint answered with `ThrottlingException` is retried with
//!   backoff; other errors leave the position pending for the next one.
//! - A line that is not a protocol message stops it with a typed error that
//!   names the line.
//!
//! The protocol is that of KCL 2.x/3.x (`software.amazon.kinesis.multilang`);
//! the message table is in [`kcl`](crate::kcl).
//!
//! # Running the daemon
//!
//! Put the `amazon-kinesis-client-multilang` jar and its dependencies on the
//! classpath and give it a properties file:
//!
//! ```text
//! java -cp 'lib/*' software.amazon.kinesis.multilang.MultiLangDaemon \
//!     --properties-file support_tweets.properties
//! ```
//!
//! ```text
//! # The record processor, started once per shard lease.
//! executableName = /opt/support_tweets/kcl_support_tweets
//! streamName = support-tweets
//! # Also the name of the DynamoDB lease table.
//! applicationName = support-tweets-triage
//! regionName = us-east-1
//! AwsCredentialsProvider = DefaultCredentialsProvider
//! initialPositionInStream = LATEST
//! # A worker that does not renew its leases within this time loses them to others.
//! failoverTimeMillis = 10000
//! maxRecords = 1000
//! idleTimeBetweenReadsInMillis = 1000
//! ```
//!
//! The worker's role needs the stream's read actions (as for Lambda:
//! `kinesis:DescribeStream`, `DescribeStreamSummary`, `GetRecords`,
//! `GetShardIterator`, `ListShards`), `sns:Publish` on the topic, read and
//! write on the lease table (and, for KCL 3.x, its coordinator-state and
//! worker-metrics tables), and `cloudwatch:PutMetricData` for the KCL's own
//! metrics.
//!
//! `tests/kcl.rs` plays the daemon against the example's processor over real
//! pipes: a whole lease (initialize, batches with checkpoint round trips, a
//! throttled and a failed checkpoint answer, shutdown, lease lost), a shard
//! end, and protocol errors, asserting every line the processor writes.
