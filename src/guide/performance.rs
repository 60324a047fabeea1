//! Performance: where the time goes, and how to measure it.
//!
//! The figures (per-record overhead, latency hiding, the local classifier,
//! Kinesis reads, memory, the whole support-tweets workload) live in
//! `benches/README.md` in the repository, each beside the command that
//! measured it and the machine it ran on. This page says what they mean
//! for your pipeline.
//!
//! # The benches
//!
//! ```text
//! cargo bench --bench overhead                     # per-record cost; latency hiding
//! cargo bench --all-features --bench e2e           # the bundled tweets through the bundled model
//! cargo bench --bench classifier                   # the local classifier, one tweet at a time
//! cargo bench --features kinesis --bench kinesis_read   # GetRecords response -> decoded records
//! cargo bench --features kinesis --bench kpl       # KPL de-aggregation
//! cargo bench --bench memory                       # peak RSS at 1M and 10M records
//! cargo test --all-features --benches              # each once, quickly, as CI runs them
//! ```
//!
//! Each bench runs its baselines in the same process, interleaved with the
//! variant it compares, and reports ratios: on a shared machine absolute
//! times swing, ratios much less.
//!
//! # What a record costs
//!
//! - **The pipeline itself** costs about what running records concurrently
//!   as futures costs at all: the `overhead` bench compares it with a bare
//!   `futures::StreamExt::buffer_unordered` chain making the same calls with
//!   no checkpoints, and with a sequential hand loop. A call that finishes on
//!   its first poll gets no timer and a record that finishes on its first
//!   poll never becomes a task, so cheap in-process stages stay cheap.
//! - **Your classifier** is usually most of the work on a real workload;
//!   the `e2e` bench compares the whole pipeline with a plain loop that
//!   only decodes and predicts.
//! - **Remote calls** (SNS, SageMaker, webhooks) dominate whenever they are
//!   on the path. The pipeline hides their latency by running up to
//!   `max_in_flight` records at once; the `overhead` bench's second part
//!   measures how close it comes to `max_in_flight / latency`.
//!
//! # Tuning
//!
//! - **[`max_in_flight`](crate::Pipeline::max_in_flight)** sets throughput
//!   against a remote dependency: about `max_in_flight / latency` records
//!   per second. Raise it for slow routers; keep it within what the backend
//!   accepts before it throttles.
//! - **Batching backends.** A SageMaker endpoint with `max_batch_size` over 1
//!   micro-batches concurrent calls; keep `max_in_flight` at a multiple of the
//!   batch size or every batch waits out its linger. The SNS router publishes
//!   with PublishBatch per topic.
//! - **Commits.** [`commit_every`](crate::Pipeline::commit_every) trades
//!   checkpoint writes (a DynamoDB write, two fsyncs for the file store)
//!   against what a crash redelivers.
//! - **CPU-bound stages share one core.** The pipeline polls every record
//!   from one task, so a heavy in-process classifier uses one core per
//!   pipeline. Run one pipeline per group of shards, or several processes
//!   (see [`scaling_out`](super::scaling_out)).
//! - **Memory is flat** in the stream's length: it depends on
//!   `max_in_flight`, `max_unacked` and the source's buffers (for Kinesis,
//!   `channel_capacity` batches), not on how many records went by.
