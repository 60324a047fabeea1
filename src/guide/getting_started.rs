//! Getting started: a pipeline in one `main`.
//!
//! A [`Pipeline`](crate::Pipeline) reads records from a
//! [`Source`](crate::Source), decodes each one into your type, asks a
//! [`Classifier`](crate::Classifier) what it is, lets a
//! [`Policy`](crate::Policy) decide what to do with it, and hands the
//! actionable ones to a [`Router`](crate::Router). The builder reads in that
//! order:
//!
//! ```
//! use streamsift::fakes::MemorySource;
//! use streamsift::{ClassifyError, Delivery, MemoryDeadLetter, Pipeline, Policy, Prediction};
//! use streamsift::{Receipt, RouteError, Router};
//!
//! #[derive(serde::Deserialize)]
//! struct Mention {
//!     text: String,
//! }
//!
//! /// Where actionable mentions go: your pager, ticket queue or webhook.
//! struct Pager;
//!
//! impl Router<Mention> for Pager {
//!     async fn route(&self, d: &Delivery<'_, Mention>) -> Result<Receipt, RouteError> {
//!         println!("[{}] {}", d.route, d.item.text);
//!         Ok(Receipt::new(d.route.clone()))
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let source = MemorySource::from_payloads(
//!     2, // shards
//!     [r#"{"text":"site down!"}"#, r#"{"text":"love it"}"#, "not json"],
//! );
//! let dead_letters = MemoryDeadLetter::new();
//! let report = Pipeline::new(source)
//!     .json::<Mention>()
//!     .classify(|m: &Mention| {
//!         let score = if m.text.contains("down") { 0.9 } else { 0.05 };
//!         async move { Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", score)) }
//!     })
//!     .policy(Policy::binary(0.5, "oncall"))
//!     .route(Pager)
//!     .dead_letter(dead_letters.clone())
//!     .run()
//!     .await
//!     .expect("the run failed");
//!
//! assert_eq!(report.stats.records_in, 3);
//! assert_eq!(report.stats.routed, 1); // "site down!"
//! assert_eq!(report.stats.discarded, 1); // "love it"
//! assert_eq!(report.stats.dead_lettered, 1); // "not json", kept with its reason
//! assert_eq!(dead_letters.entries()[0].kind, "invalid_json");
//! # });
//! ```
//!
//! The stages, in order:
//!
//! - **Source.** Here `MemorySource` (from `streamsift::fakes`, feature
//!   `test-util`), which
//!   holds the records in memory. For real input, a file (JSON lines or
//!   plain text, resuming from a checkpoint store) is `FileSource`, and
//!   Kinesis is `kinesis::KinesisSource` (feature `kinesis`). Writing your
//!   own takes two methods: see [`custom_components`](super::custom_components).
//! - **Decode.** [`json::<T>()`](crate::Pipeline::json) parses each payload
//!   with serde; [`decode`](crate::Pipeline::decode) takes any
//!   [`Decoder`](crate::Decoder): [`Utf8`](crate::Utf8) for text,
//!   [`RawBytes`](crate::RawBytes), or a closure. A payload that does not
//!   decode (not UTF-8, not JSON, empty, over
//!   [`max_record_bytes`](crate::Pipeline::max_record_bytes)) is
//!   dead-lettered with a typed reason; the stream goes on.
//! - **Classify.** Any [`Classifier`](crate::Classifier), or an async
//!   closure returning a [`Prediction`](crate::Prediction). The crate ships
//!   an in-process model ([`local_classifier`](super::local_classifier)) and,
//!   behind features, Amazon ML and SageMaker endpoints.
//! - **Policy.** [`Policy::binary`](crate::Policy::binary) notifies a route
//!   at or above a threshold; [`with_review_band`](crate::Policy::with_review_band)
//!   sends the uncertain band to human review;
//!   [`Policy::by_label`](crate::Policy::by_label) routes multi-class
//!   predictions by label with a minimum confidence. A policy is plain serde
//!   data, so a trained model can carry the one chosen for it.
//! - **Route.** Any [`Router`](crate::Router), an async closure, or a
//!   combination: [`ByLabel`](crate::ByLabel), [`FanOut`](crate::FanOut),
//!   [`Filter`](crate::Filter), [`Fallback`](crate::Fallback). Routers of
//!   different types mix through [`BoxRouter`](crate::BoxRouter).
//! - **Review.** Items in the review band go to the
//!   [`Labeler`](crate::Labeler) given to [`review`](crate::Pipeline::review),
//!   or to a route named [`REVIEW_ROUTE`](crate::REVIEW_ROUTE) (`"review"`)
//!   when the router has one. A policy with a review band needs one of the
//!   two; see [`labeling`](super::labeling).
//! - **Dead letters.** Every pipeline names its
//!   [`DeadLetterSink`](crate::DeadLetterSink): where a record that fails for
//!   good goes, with its stage, kind, reason and original bytes.
//!   [`JsonLinesDeadLetter`](crate::JsonLinesDeadLetter) appends to a file
//!   and syncs each entry before the record counts as done;
//!   [`MemoryDeadLetter`](crate::MemoryDeadLetter) keeps them in memory.
//!
//! # What `run()` gives back
//!
//! [`run`](crate::Pipeline::run) ends when the source is exhausted, when
//! [`Shutdown::cancel`](crate::Shutdown::cancel) is called (take the handle
//! with [`shutdown`](crate::Pipeline::shutdown) before `run`), or when
//! something the pipeline cannot work around fails (the source for good, the
//! dead-letter sink, commits). It returns a [`RunReport`](crate::RunReport):
//! counts per stage and shard ([`Stats`](crate::Stats)), the last checkpoint
//! per shard, the elapsed time and why it stopped. An error
//! ([`PipelineError`](crate::PipelineError)) carries the report of what was
//! done before it. The counts always add up:
//! `records_in = routed + skipped + discarded + sent_for_review + dead_lettered + unfinished`.
//!
//! # Reading a file, and stopping on Ctrl-C
//!
//! A long-running pipeline keeps its place in a checkpoint store, so a
//! restart resumes where the last one committed:
//!
//! ```no_run
//! use streamsift::checkpoint::FileCheckpointStore;
//! use streamsift::FileSource;
//! use streamsift::{ClassifyError, JsonLinesDeadLetter, Pipeline, Policy, Prediction};
//! use streamsift::{Receipt, RouteError};
//!
//! #[derive(serde::Deserialize)]
//! struct Mention {
//!     text: String,
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let checkpoints = FileCheckpointStore::new("state/checkpoints");
//!     let source = FileSource::open("mentions.jsonl", checkpoints).await?;
//!     let pipeline = Pipeline::new(source)
//!         .json::<Mention>()
//!         .classify(|m: &Mention| {
//!             let score = if m.text.contains("down") { 0.9 } else { 0.05 };
//!             async move { Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", score)) }
//!         })
//!         .policy(Policy::binary(0.5, "oncall"))
//!         .route(|d: &streamsift::Delivery<'_, Mention>| {
//!             let route = d.route.clone();
//!             async move { Ok::<_, RouteError>(Receipt::new(route)) }
//!         })
//!         .dead_letter(JsonLinesDeadLetter::builder("state/dead-letter.jsonl").create_dirs(true).open()?)
//!         .max_in_flight(64);
//!     let shutdown = pipeline.shutdown();
//!     tokio::spawn(async move {
//!         let _ = tokio::signal::ctrl_c().await;
//!         shutdown.cancel(); // stop reading, finish what is in flight, commit
//!     });
//!     let report = pipeline.run().await?;
//!     println!("{report}");
//!     Ok(())
//! }
//! ```
//!
//! # Knobs that matter
//!
//! | builder method | default | what it bounds |
//! |---|---|---|
//! | [`max_in_flight`](crate::Pipeline::max_in_flight) | 256 | records processed at once (memory and concurrency) |
//! | [`max_unacked`](crate::Pipeline::max_unacked) | 10,000 | records done but not yet committed (what a crash can redeliver) |
//! | [`commit_every`](crate::Pipeline::commit_every) | 1,000 records or 5 s | how often checkpoints are committed |
//! | [`retry`](crate::Pipeline::retry) | [`RetryPolicy::default`](crate::RetryPolicy) | attempts and backoff per call |
//! | [`max_record_bytes`](crate::Pipeline::max_record_bytes) | 1 MiB | a payload's size; larger ones are dead-lettered |
//! | [`call_timeout`](crate::Pipeline::call_timeout) / [`record_timeout`](crate::Pipeline::record_timeout) | 10 s / 60 s | one attempt of one call / one record, all attempts |
//! | [`commit_timeout`](crate::Pipeline::commit_timeout) | 60 s | how long commits may keep failing before the run stops |
//!
//! # Observability
//!
//! The pipeline emits `tracing` spans (debug level, one per record) and
//! [`metrics`](https://docs.rs/metrics) counters named `streamsift_*`:
//! records in, decoded, classified per label, routed per route, discarded,
//! sent for review, dead-lettered per stage, skipped, panics, retries,
//! throttles and commits; the gauges `streamsift_in_flight` and
//! `streamsift_tracked_shards`; and the histogram
//! `streamsift_end_to_end_latency_seconds`. Install any `metrics` recorder
//! (Prometheus, StatsD) to export them. Logs carry record ids, stages and
//! error kinds, never payload text. The crate only emits them: to see its
//! warnings (a retry streak, a dead letter) install a subscriber in your
//! binary, as the examples do with
//! `tracing_subscriber::fmt().with_env_filter(EnvFilter::from_default_env())`.
//!
//! Next: [`custom_components`](super::custom_components) to plug in your
//! own parts, or [`reliability`](super::reliability) for what the pipeline
//! promises.
