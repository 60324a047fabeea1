//! Writing a custom Source, Classifier, Router or Labeler.
//!
//! Each extension point is a small trait. The hot-path ones
//! ([`Source`](crate::Source), [`Classifier`](crate::Classifier),
//! [`Router`](crate::Router)) are implemented with plain `async fn` and cost
//! no allocation per record; the cold one ([`Labeler`](crate::Labeler)) is
//! object-safe through `async_trait`. Closures are classifiers and routers
//! too.
//!
//! Every error type says whether trying again can help:
//! `Throttled`, `Unavailable` and `Timeout` are retried by the pipeline with
//! jittered backoff, within its [`RetryPolicy`](crate::RetryPolicy);
//! `Permanent` dead-letters the record at once. Choose carefully: a
//! permanent error for a transient fault loses a notification to the
//! dead-letter file, and a retryable error for bad input costs every retry
//! before it gets there. Do not retry inside your component: the pipeline
//! already does, and retries that stack multiply.
//!
//! # A Router: a webhook with status-code mapping
//!
//! A router delivers one item and returns a [`Receipt`](crate::Receipt).
//! The mapping from the backend's answer to the error class is the part
//! that matters. Here the HTTP call is left out (use `reqwest` or `hyper`);
//! only the status code decides:
//!
//! ```
//! use streamsift::{Delivery, Receipt, RouteError, Router};
//!
//! struct Webhook;
//!
//! impl Webhook {
//!     async fn post(&self, _body: String) -> u16 {
//!         202 // your HTTP client here
//!     }
//! }
//!
//! impl Router<String> for Webhook {
//!     async fn route(&self, d: &Delivery<'_, String>) -> Result<Receipt, RouteError> {
//!         let body = format!("{{\"route\":\"{}\",\"id\":\"{}\"}}", d.route, d.record.id);
//!         match self.post(body).await {
//!             200..=299 => Ok(Receipt::new(d.route.clone())),
//!             429 => Err(RouteError::throttled("webhook answered 429")),
//!             500..=599 => Err(RouteError::unavailable("webhook answered 5xx")),
//!             code => Err(RouteError::permanent(format!(
//!                 "webhook refused the delivery with {code}; check its URL and token"
//!             ))),
//!         }
//!     }
//! }
//! ```
//!
//! A router that decides not to deliver (a filter, a quiet hour) returns a
//! receipt with `skipped` set: the record is done and counted as skipped.
//! Routers combine: [`ByLabel`](crate::ByLabel) picks one per route,
//! [`FanOut`](crate::FanOut) delivers to all, [`Filter`](crate::Filter)
//! guards one with a predicate, [`Fallback`](crate::Fallback) tries a second
//! when the first fails, and [`DeadLetterRouter`](crate::DeadLetterRouter)
//! sends a route straight to a dead-letter sink.
//!
//! # A Classifier
//!
//! A classifier returns a [`Prediction`](crate::Prediction): a label and
//! optional scores per label. [`Prediction::binary`](crate::Prediction::binary)
//! builds the two-label case from one score.
//!
//! ```
//! use streamsift::{Classifier, ClassifyError, Prediction};
//!
//! struct Urgency;
//!
//! impl Classifier<String> for Urgency {
//!     async fn classify(&self, text: &String) -> Result<Prediction, ClassifyError> {
//!         if text.is_empty() {
//!             return Err(ClassifyError::permanent("empty text: nothing to classify"));
//!         }
//!         let urgent = ["down", "outage", "error"].iter().any(|w| text.contains(w));
//!         Ok(Prediction::binary("urgent", "routine", if urgent { 0.9 } else { 0.1 }))
//!     }
//! }
//! ```
//!
//! A backend that predicts in bulk overrides
//! [`classify_batch`](crate::Classifier::classify_batch). For classifiers
//! chosen at run time, wrap them in a [`BoxClassifier`](crate::BoxClassifier).
//!
//! # A Source
//!
//! A source yields [`Batch`](crate::Batch)es, each from one shard and in
//! shard order, and takes back [`Checkpoint`](crate::Checkpoint)s. The
//! contract:
//!
//! - **At-least-once.** After a restart, resume after the last committed
//!   position of each shard. Records processed but not committed come again.
//! - **Stable ids.** A record delivered again carries the same `id`,
//!   `shard` and `sequence`.
//! - **`&self` everywhere.** The pipeline commits while a read is pending,
//!   so keep state behind a lock or in atomics.
//! - **Cancellation.** A read future may be dropped (at shutdown); records it
//!   had taken are simply read again next time, since nothing committed them.
//! - **`Ok(None)`** ends the stream; an endless source waits instead.
//! - A batch with `shard_end` set is the shard's last; the pipeline then
//!   commits [`Position::ShardEnd`](crate::Position::ShardEnd) once the shard
//!   is done.
//!
//! A one-shard source over lines held in memory, run through a pipeline:
//!
//! ```
//! use std::sync::Mutex;
//! use streamsift::{Batch, Checkpoint, MemoryDeadLetter, Pipeline, Policy, Prediction, Record};
//! use streamsift::{ClassifyError, Position, Receipt, RouteError, Sequence, ShardId, Source};
//! use streamsift::SourceError;
//!
//! struct Lines {
//!     lines: Vec<String>,
//!     next: Mutex<usize>,
//!     committed: Mutex<Option<Position>>,
//! }
//!
//! impl Source for Lines {
//!     async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
//!         let mut next = self.next.lock().unwrap();
//!         if *next >= self.lines.len() {
//!             return Ok(None);
//!         }
//!         let shard = ShardId::new("lines");
//!         let records = (*next..self.lines.len().min(*next + 100))
//!             .map(|i| {
//!                 let seq = Sequence::from_offset(i as u64);
//!                 Record::new(shard.clone(), seq, format!("line-{i}"), self.lines[i].clone())
//!             })
//!             .collect::<Vec<_>>();
//!         *next += records.len();
//!         Ok(Some(Batch::new(shard, records)))
//!     }
//!
//!     async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
//!         // A real source writes these to durable storage before returning.
//!         for c in checkpoints {
//!             *self.committed.lock().unwrap() = Some(c.position);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let source = Lines {
//!     lines: vec!["the site is down".into(), "thanks!".into()],
//!     next: Mutex::new(0),
//!     committed: Mutex::new(None),
//! };
//! let report = Pipeline::new(source)
//!     .decode(streamsift::Utf8)
//!     .classify(|t: &String| {
//!         let score = if t.contains("down") { 0.9 } else { 0.1 };
//!         async move { Ok::<_, ClassifyError>(Prediction::binary("actionable", "none", score)) }
//!     })
//!     .policy(Policy::binary(0.5, "oncall"))
//!     .route(|d: &streamsift::Delivery<'_, String>| {
//!         let route = d.route.clone();
//!         async move { Ok::<_, RouteError>(Receipt::new(route)) }
//!     })
//!     .dead_letter(MemoryDeadLetter::new())
//!     .run()
//!     .await
//!     .expect("run");
//! assert_eq!((report.stats.routed, report.stats.discarded), (1, 1));
//! assert_eq!(report.checkpoints.len(), 1); // the shard's last position was committed
//! # });
//! ```
//!
//! Positions are compared as big integers (Kinesis sequence numbers are up
//! to 128 bits); [`Sequence::from_offset`](crate::Sequence::from_offset) is
//! the simple case. To keep positions across restarts, a source can store
//! them in a [`CheckpointStore`](crate::checkpoint::CheckpointStore): in
//! memory, a file, or DynamoDB (feature `dynamodb`).
//!
//! # A Labeler
//!
//! A labeler sends items to people and, hours later, hands back their
//! labels. [`submit`](crate::Labeler::submit) returns once the tasks are
//! accepted (one [`TaskId`](crate::TaskId) per task, in order);
//! [`collect`](crate::Labeler::collect) is polled for whatever finished.
//! Submitting an item id already submitted must return the existing task, not
//! a new one: the pipeline may submit a record again after a crash.
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Mutex;
//! use streamsift::{LabelError, LabelResult, LabelTask, Labeler, TaskId};
//!
//! /// Files each item as a ticket; a person's answer comes back later.
//! #[derive(Default)]
//! struct TicketQueue {
//!     tickets: Mutex<HashMap<String, TaskId>>,
//!     answered: Mutex<Vec<LabelResult>>,
//! }
//!
//! #[async_trait::async_trait]
//! impl Labeler<String> for TicketQueue {
//!     async fn submit(&self, tasks: &[LabelTask<'_, String>]) -> Result<Vec<TaskId>, LabelError> {
//!         let mut tickets = self.tickets.lock().unwrap();
//!         let n = tickets.len();
//!         Ok(tasks
//!             .iter()
//!             .enumerate()
//!             .map(|(i, t)| {
//!                 // The same item id keeps its ticket: submit is idempotent.
//!                 tickets.entry(t.item_id.to_string()).or_insert_with(|| TaskId(format!("T{}", n + i))).clone()
//!             })
//!             .collect())
//!     }
//!
//!     async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
//!         Ok(std::mem::take(&mut *self.answered.lock().unwrap()))
//!     }
//! }
//! ```
//!
//! Give it to [`Pipeline::review`](crate::Pipeline::review) for the review
//! band, or to [`active::ActiveLearner`](crate::active::ActiveLearner) to
//! turn the answers into training data ([`labeling`](super::labeling)).
//!
//! # Proving a component: the conformance suites
//!
//! The crate's own backends are checked by one conformance suite per trait:
//! ids and order preserved, errors classified, idempotent submits, nothing
//! lost across a restart. With the `test-util` feature, `streamsift::testing`
//! exposes the same suites for `Source`, `Classifier`, `Router`, `Labeler`,
//! `CheckpointStore` and `DeadLetterSink`, so one call in your test proves a
//! custom component; `streamsift::fakes` (same feature) holds the in-memory
//! sources, recording routers, keyword classifiers and fault injectors
//! (`Faulty`) to test your pipeline with. In `Cargo.toml`:
//!
//! ```toml
//! [dev-dependencies]
//! streamsift = { path = "../streamsift", features = ["test-util"] } # or the version/git you use
//! ```
//!
//! and in a test:
//!
//! ```
//! # #[cfg(feature = "test-util")]
//! # async fn proof() {
//! use streamsift::testing::router::{Case, conformance};
//! use streamsift::{Delivery, Receipt, RouteError, Router};
//!
//! struct Pager;
//! impl Router<String> for Pager {
//!     async fn route(&self, d: &Delivery<'_, String>) -> Result<Receipt, RouteError> {
//!         Ok(Receipt::new(d.route.clone()))
//!     }
//! }
//!
//! conformance(&Pager, &[Case::new("the site is down".to_string(), "oncall")]).await;
//! # }
//! ```
//!
//! Each suite's rules are listed in its module's docs; a broken rule panics
//! naming it. The suites make one attempt per case: cases a component
//! cannot serve, for good or for now, go to the error-class checks
//! (`router::expect_errors`). The `custom_router` example (a webhook) and
//! the `custom_source` example (a generator with its own positions) are
//! complete programs (under 40 and 60 lines).
