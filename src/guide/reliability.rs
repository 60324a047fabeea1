//! Reliability: what the pipeline promises, and how it is checked.
//!
//! # The guarantees
//!
//! - **At-least-once.** A shard's checkpoint, `SHARD_END` included, is
//!   committed only once every record at or before it is done: routed,
//!   skipped by a router, discarded, sent for review, or durably
//!   dead-lettered. That holds on every stop path: the source ending,
//!   [`Shutdown::cancel`](crate::Shutdown::cancel), a failure, a crash. After
//!   a crash at most [`max_unacked`](crate::Pipeline::max_unacked) records
//!   (default 10,000) come again: a record leaves that window only when a
//!   commit covers it. A notification can therefore be sent twice; make
//!   routers idempotent where that matters (the record id is stable across
//!   redeliveries).
//! - **Nothing lost on bad input.** Invalid UTF-8, malformed JSON, empty and
//!   oversized payloads get a typed [`DecodeError`](crate::DecodeError) and a
//!   dead letter with the reason and the original bytes (base64 when they
//!   are not UTF-8). Permanent failures, exhausted retries, timeouts and
//!   panics in your code (kind `panic`, with the stage) are dead-lettered:
//!   a poison record never stalls its shard or stops the run. If the
//!   dead-letter sink itself fails, the run stops without committing past
//!   that record.
//! - **Bounded memory.** At most [`max_in_flight`](crate::Pipeline::max_in_flight)
//!   records are processed at once, plus one fetched batch; the source is
//!   read only when there is room, and a closed shard's bookkeeping is
//!   released once its `SHARD_END` is committed.
//! - **Bounded time per call.** Each attempt of classify, route, review,
//!   dead-letter store and commit gets a whole
//!   [`call_timeout`](crate::Pipeline::call_timeout);
//!   [`record_timeout`](crate::Pipeline::record_timeout) bounds a record.
//! - **Nothing spins.** Reads, commits and calls back off with jitter.
//!   Commits that keep failing for
//!   [`commit_timeout`](crate::Pipeline::commit_timeout) stop the run, and
//!   nothing commits after that.
//! - **Counts are true.** Every [`RunReport`](crate::RunReport) satisfies
//!   `records_in = routed + skipped + discarded + sent_for_review + dead_lettered + unfinished`,
//!   in total and per shard.
//! - **No customer text in logs.** Logs and `Debug` output carry record ids,
//!   stages and error kinds, never payloads or reasons that quote them;
//!   those go to the dead letter only.
//!
//! # The invariants
//!
//! Each guarantee is an invariant, listed in `ARCHITECTURE.md` (no loss,
//! bounded duplicates, start position, per-call time, poison never stops a
//! stream, nothing spins, counts are true, durable files, bounded memory, no
//! customer text in logs). Each is checked after every step of a seeded
//! simulation, and each failure ever found has a regression test named
//! after its invariant in `tests/invariants.rs`, `tests/kinesis_faults.rs`
//! or `tests/durable_files.rs`.
//!
//! # The deterministic simulation
//!
//! `tests/simulation.rs` builds a world from a seed: one to four shards
//! with splits and merges, a few hundred records (some poison: they panic
//! in one stage every time), a fault schedule on every dependency (slow,
//! hanging, throttled, retryable, permanent, panicking, outages, commits
//! applied with their answer lost), crashes that drop the run, and
//! shutdowns. The real [`Pipeline`](crate::Pipeline) runs in it on tokio's
//! paused clock, restarting from its checkpoint store after each crash; so
//! does the [`BatchProcessor`](crate::batch::BatchProcessor) under a
//! Lambda-like and a KCL-like driver; and the Pipeline again over a
//! queue-like source that acks per record (as SQS), with ordered message
//! groups and faults on acks. An oracle that knows every record checks the
//! invariants at every commit and ack, run end and seed end.
//!
//! ```text
//! cargo test --all-features --test simulation                          # the CI seeds
//! STREAMSIFT_SIM_SEEDS=50000 cargo test --all-features --test simulation   # a campaign
//! STREAMSIFT_SIM_SEEDS=50000 STREAMSIFT_SIM_FIRST=50001 cargo test ...     # its second half
//! ```
//!
//! A failing seed prints the one command that replays it, with its trace:
//!
//! ```text
//! STREAMSIFT_SIM_SEED=<seed> cargo test --all-features --test simulation -- --nocapture simulate_seeds
//! ```
//!
//! The Kinesis source has its counterpart: a property test in
//! `tests/kinesis_faults.rs` (start-up fault schedules × start positions ×
//! shard lineage, against moto through a fault-injecting HTTP client;
//! `STREAMSIFT_PROPTEST_SEED` replays a case).
//!
//! # The other runs
//!
//! | test | what it does |
//! |---|---|
//! | `tests/crash_restart.rs` | re-runs itself as a worker over a file source and SIGKILLs it 20 times under a seed (`STREAMSIFT_CRASH_SEED`), half of the kills inside a checkpoint write; then checks every record was delivered or dead-lettered, the checkpoint file always loads and never moves back, and no restart redelivers more than `max_unacked` |
//! | `tests/soak.rs` | every component wrapped in a fault injector (throttled reads and commits, retryable and permanent classify failures, route timeouts and slow calls); the run must reconcile exactly against what the router and sink recorded, each retryable fault must cost exactly one retry, in-flight and RSS must stay bounded. `-- --ignored soak_full` runs the 1M-record size; `STREAMSIFT_SOAK_RECORDS=n` any size |
//! | `tests/hostile_input.rs` | records over 1 MiB, nesting 200,000 deep, invalid UTF-8, NUL bytes, empty payloads, long partition keys, a model file asking for terabytes: each gets a typed error and one dead letter (or a refusal), and the good records around them are delivered unchanged |
//! | `tests/secrets.rs` | a recognisable fake secret in every AWS component's config must not appear in `Debug`, logs, dead letters, reports or errors |
//! | `fuzz/` | cargo-fuzz targets (KPL de-aggregation, record decoding, model files, the KCL protocol, MTurk answers); its own workspace, run with `cargo +nightly fuzz run <target>` |
//! | `tests/common/reconcile.rs` | the accounting every report must satisfy, and at-least-once coverage over several runs of one stream; used by the runs above |
//!
//! The figures of the campaigns (seeds, faults injected, kills, duplicates,
//! fuzzing runs) are in `benches/README.md` in the repository, each beside
//! the command that produced it.
//!
//! # What is not promised
//!
//! - **Exactly-once.** A call that timed out may have taken effect, and
//!   records after the last commit come again after a crash.
//! - **Order of notifications.** Records of a shard run concurrently and
//!   finish out of order; only checkpoints are ordered. Set
//!   [`max_in_flight`](crate::Pipeline::max_in_flight) to 1 for strict
//!   order, at the cost of throughput.
