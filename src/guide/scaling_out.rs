//! Scaling out: one process, Lambda, or the KCL.
//!
//! The stages you build (decoder, classifier, policy, router, dead-letter
//! sink) are the same in all three; only the driver changes. The streaming
//! [`Pipeline`](crate::Pipeline) reads a [`Source`](crate::Source) itself;
//! the Lambda handler and the KCL processor are given batches by AWS's own
//! machinery and run them through a
//! [`BatchProcessor`](crate::batch::BatchProcessor) built with
//! [`batch::builder`](crate::batch::builder).
//!
//! | | one process, `KinesisSource` | Lambda event source mapping | KCL MultiLangDaemon |
//! |---|---|---|---|
//! | who reads and balances | this crate; one process reads every shard | Lambda, one poller per shard | the KCL: leases in DynamoDB, balanced over workers |
//! | parallelism | records of every shard concurrently (`max_in_flight`) | one batch per shard at a time (up to 10 with `ParallelizationFactor`); records of a batch concurrently | one batch per shard at a time; records of a batch concurrently |
//! | ordering | checkpoints in order; notifications of a shard may finish out of order | the same within a batch; with `ParallelizationFactor` > 1, order only per partition key | as one process |
//! | failover | none across machines: restart the process, it resumes from its checkpoints | managed: a failed invocation is retried | a dead worker's leases are taken after `failoverTimeMillis` |
//! | cost | the machine | per request and per GB-second, nothing when idle | the workers, plus the lease table (a checkpoint per batch per shard) |
//! | choose when | a few shards fit one machine's CPU and network | bursty or modest streams, no servers to run | large steady streams, long-lived state (the model) per worker |
//!
//! Guides: [`getting_started`](super::getting_started) for one process;
//! `guide::kinesis`, `guide::lambda` and `guide::kcl` (features `kinesis`,
//! `lambda`, `kcl`) for the rest.
//!
//! # Sizing a stream
//!
//! Work it out from four numbers, each either from AWS's documentation or
//! measured on your own records with the benches (`benches/README.md` has
//! the figures for the bundled tweets, and a worked example for 1,000
//! shards at 1 MB/s each):
//!
//! 1. **Records per second.** A shard takes 1 MB/s or 1,000 records/s of
//!    writes; divide the bytes per second by your mean record size. Small
//!    records exceed the record limit before the byte limit, so producers
//!    must aggregate (KPL, or `KinesisProducer` with `.aggregate(true)`).
//! 2. **CPU per record.** Decode + classify + the pipeline's own overhead
//!    (the `kinesis_read`, `classifier` and `overhead` benches). The pipeline
//!    polls every record from one task, so CPU-bound stages in one pipeline
//!    share one core: one core's records per second bounds one process.
//! 3. **Concurrency.** Lambda needs one concurrent execution per shard (times
//!    the parallelization factor), against a per-Region quota; the KCL needs
//!    one child process per lease, each with its own copy of the model.
//! 4. **The notification backend.** SNS publishes per second are a
//!    per-account, per-Region quota. At large scale, notify a queue or a
//!    stream rather than people ([`FanOut`](crate::FanOut) /
//!    [`ByLabel`](crate::ByLabel) to an SQS or Kinesis router), and send
//!    people digests.
//!
//! Measure the time per record on the machine you will run on: the figures
//! in `benches/README.md` come from one development VM.
