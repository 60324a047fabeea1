//! Lambda: the same stages as an AWS Lambda Kinesis consumer.
//!
//! Feature `lambda`. An event source mapping polls the stream and invokes
//! the function with batches; [`lambda::KinesisHandler`](crate::lambda::KinesisHandler)
//! runs each batch through a [`BatchProcessor`](crate::batch::BatchProcessor),
//! which owns the very same stages and retry rules as the
//! [`Pipeline`](crate::Pipeline), and answers with the records Lambda must
//! deliver again. Lambda owns the shards, the checkpoints and the failover.
//!
//! ```no_run
//! use streamsift::lambda::KinesisHandler;
//! use streamsift::{ClassifyError, JsonLinesDeadLetter, Policy, Prediction, Receipt, RouteError};
//!
//! #[derive(serde::Deserialize)]
//! struct Tweet {
//!     text: String,
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     streamsift::lambda::init_tracing(); // JSON lines on stdout, for CloudWatch Logs
//!     // Build once per execution environment: load the model here, not per event.
//!     let processor = streamsift::batch::builder() // the Pipeline builder, with no source
//!         .json::<Tweet>()
//!         .classify(|t: &Tweet| {
//!             let score = if t.text.contains("down") { 0.9 } else { 0.1 };
//!             async move { Ok::<_, ClassifyError>(Prediction::binary("actionable", "none", score)) }
//!         })
//!         .policy(Policy::binary(0.5, "oncall"))
//!         .route(|d: &streamsift::Delivery<'_, Tweet>| {
//!             let route = d.route.clone(); // an SnsRouter in production
//!             async move { Ok::<_, RouteError>(Receipt::new(route)) }
//!         })
//!         // /tmp is the only writable place, and it does not outlive the
//!         // environment: in production, a sink that stores elsewhere (S3, SQS).
//!         .dead_letter(JsonLinesDeadLetter::create("/tmp/dead-letter.jsonl")?)
//!         .max_in_flight(64)
//!         .into_batch_processor()?;
//!     let handler = KinesisHandler::new(processor).emf_namespace("streamsift");
//!     streamsift::lambda::run(handler).await?; // lambda_runtime's loop
//!     Ok(())
//! }
//! ```
//!
//! `examples/lambda_support_tweets.rs` is the support-tweets triage
//! packaged this way (models bundled into the binary or read from
//! `MODEL_DIR`, notifications to `SNS_TOPIC_ARN` or, without it, to the log).
//!
//! # What the handler does with a batch
//!
//! - **Decoding.** Each record's `data` arrives base64-decoded; KPL
//!   aggregates are unpacked (MD5-checked), so one Kinesis record can be
//!   several pipeline records.
//! - **Partial batch failures.** With `ReportBatchItemFailures`, Lambda
//!   checkpoints just before the *lowest* sequence number reported and
//!   redelivers everything after it. So the handler reports the first
//!   record that is not done and every later one that is not done; records
//!   before it are never reported. An aggregate is done when all its user
//!   records are.
//! - **Permanently bad records** (not JSON, too large, a corrupt aggregate,
//!   a route that refuses for good) are dead-lettered and count as done:
//!   they never block the shard.
//! - **Retryable failures** that outlast the retry policy are reported, so
//!   Lambda redelivers them, up to the mapping's `MaximumRetryAttempts`; then
//!   its on-failure destination gets the batch's metadata.
//! - **The deadline.** No record starts later than the safety margin
//!   ([`KinesisHandler::safety_margin`](crate::lambda::KinesisHandler::safety_margin))
//!   before the invocation's deadline, and records still running then are
//!   abandoned; both are reported, and the function answers before Lambda
//!   times it out (a timeout would retry the whole batch).
//! - **Logs and metrics.** [`init_tracing`](crate::lambda::init_tracing)
//!   writes JSON lines (level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`). With
//!   `emf_namespace`, each invocation prints one Embedded Metric Format line
//!   that CloudWatch turns into metrics (records in, routed, skipped,
//!   discarded, reviewed, dead-lettered, failed, not started, retries,
//!   panics).
//!
//! Delivery is at-least-once: an abandoned call may have taken effect, and
//! done records after a failure come again.
//!
//! # Build and deploy
//!
//! These commands are not run by this repository's CI (it has no AWS
//! account); the handler is tested locally, below.
//!
//! ```sh
//! # cargo-lambda (cargo install cargo-lambda, plus zig) cross-compiles for Graviton
//! cargo lambda build --release --arm64 --example lambda_support_tweets --features lambda,sns
//! cargo lambda deploy --binary-name lambda_support_tweets support-tweets \
//!   --iam-role arn:aws:iam::ACCOUNT:role/support-tweets-lambda \
//!   --env-var SNS_TOPIC_ARN=arn:aws:sns:REGION:ACCOUNT:support-notifications \
//!   --timeout 60 --memory 512
//! aws lambda create-event-source-mapping --function-name support-tweets \
//!   --event-source-arn arn:aws:kinesis:REGION:ACCOUNT:stream/support-tweets \
//!   --starting-position LATEST --batch-size 500 --maximum-batching-window-in-seconds 1 \
//!   --parallelization-factor 1 --function-response-types ReportBatchItemFailures \
//!   --bisect-batch-on-function-error --maximum-retry-attempts 10 \
//!   --maximum-record-age-in-seconds 86400 \
//!   --destination-config '{"OnFailure":{"Destination":"arn:aws:sqs:REGION:ACCOUNT:support-tweets-failed"}}'
//! ```
//!
//! | mapping setting | value | why |
//! |---|---|---|
//! | `FunctionResponseTypes` | `ReportBatchItemFailures` | required: without it any failure retries the whole batch |
//! | `BatchSize` | 100–1,000 | a batch must finish within the timeout less the safety margin |
//! | `MaximumBatchingWindowInSeconds` | 1 | fuller batches, fewer invocations, at most 1 s more latency |
//! | `ParallelizationFactor` | 1 (up to 10) | concurrent batches per shard; above 1, order holds per partition key only |
//! | `BisectBatchOnFunctionError` | true | isolates an event the function cannot read at all |
//! | `MaximumRetryAttempts` | 10 | the default retries until the record expires: a backend outage would stall the shard |
//! | `MaximumRecordAgeInSeconds` | 86,400 | notifications older than a day are not worth sending |
//! | on-failure destination | an SQS queue | the metadata of batches given up on, to replay from the stream |
//!
//! Set the function's timeout well above what one batch needs.
//!
//! # Where dead letters go
//!
//! A Lambda function has no durable disk (`/tmp` dies with the execution
//! environment), so a JSON-lines file is no place for dead letters there.
//! With feature `sqs`, `sqs::SqsDeadLetter` sends each one to an SQS queue
//! as one message: the record's id, shard, sequence, the stage, kind,
//! reason and attempts, and the original bytes in base64, with `stage` and
//! `kind` as message attributes. The pipeline counts the record done only
//! once SendMessage succeeded; a failing queue is retried and then fails
//! the record (Lambda redelivers it), never dropped. A payload too large
//! for a message (256 KiB, base64 included) goes to S3 with feature `s3`
//! (`SqsDeadLetterBuilder::s3`), with a pointer in the message; without
//! it the payload is cut and the message says so. Build checks the queue
//! (and bucket): a missing one fails the cold start, naming it.
//!
//! `examples/lambda_support_tweets.rs` uses the queue named by
//! `DEAD_LETTER_QUEUE_URL` (and the bucket `DEAD_LETTER_BUCKET`). Without
//! it, each dead letter is an `ERROR` log line naming the record (id,
//! shard, sequence number), the stage, kind and reason with its quoted
//! parts left out: never the payload. Once the bug is fixed,
//! `examples/replay_dead_letters.rs --from-sqs URL` feeds the kept records
//! through the stages again and deletes each message only once its record
//! is done. Add to the role: `sqs:SendMessage` and `sqs:GetQueueAttributes`
//! on the queue (and `s3:PutObject`, `s3:ListBucket` on the bucket).
//!
//! # The function's role
//!
//! ```json
//! {"Version": "2012-10-17", "Statement": [
//!   {"Sid": "ReadTheStream", "Effect": "Allow",
//!    "Action": ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
//!               "kinesis:GetShardIterator", "kinesis:ListShards", "kinesis:ListStreams"],
//!    "Resource": "arn:aws:kinesis:REGION:ACCOUNT:stream/support-tweets"},
//!   {"Sid": "Notify", "Effect": "Allow", "Action": "sns:Publish",
//!    "Resource": "arn:aws:sns:REGION:ACCOUNT:support-notifications"},
//!   {"Sid": "OnFailureDestination", "Effect": "Allow", "Action": "sqs:SendMessage",
//!    "Resource": "arn:aws:sqs:REGION:ACCOUNT:support-tweets-failed"},
//!   {"Sid": "Logs", "Effect": "Allow",
//!    "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
//!    "Resource": "arn:aws:logs:REGION:ACCOUNT:log-group:/aws/lambda/support-tweets:*"}
//! ]}
//! ```
//!
//! The Kinesis actions are those of the managed policy
//! `AWSLambdaKinesisExecutionRole` (the mapping polls with the function's
//! role). Add `kinesis:SubscribeToShard` for an enhanced fan-out consumer,
//! and `kms:Decrypt` for a stream encrypted with a customer managed key.
//!
//! # Tested locally, without AWS
//!
//! `tests/lambda.rs` runs the handler on Kinesis events in the documented
//! shape (`tests/fixtures/lambda/`: plain tweets, KPL aggregates, malformed
//! and oversized records): partial failures, the deadline stop on a paused
//! clock, dead letters, a failing dead-letter sink.
//! `tests/lambda_runtime.rs` runs the example's function as a child process
//! under `lambda_runtime`, against a small Runtime API emulator, and checks
//! its answers and that the model was loaded once for all invocations.
