//! Notification hygiene: page people once, and not 300 times in a minute.
//!
//! Two router combinators wrap any [`Router`](crate::Router) (SNS, a
//! webhook, your own), with no feature flag:
//!
//! - [`Dedup`](crate::router::Dedup): never the same key twice within a
//!   window. The key is the record id by default, so a record the stream
//!   delivers again after a crash does not page anyone again; or any
//!   closure, such as [`repost_key`](crate::router::dedup::repost_key)
//!   (same author, same text once normalised: case, spacing, URLs,
//!   Unicode forms). With a [`FileDedupStore`](crate::router::FileDedupStore)
//!   the keys survive restarts.
//! - [`Digest`](crate::router::Digest): at most N messages per route per
//!   window; the rest become one "and 37 more…" message at the window's
//!   end, through the same router.
//!
//! ```
//! use std::time::Duration;
//! use streamsift::fakes::{MemorySource, RecordingRouter};
//! use streamsift::router::dedup::{Dedup, FileDedupStore};
//! use streamsift::router::digest::{Digest, DigestBatch};
//! use streamsift::{ClassifyError, MemoryDeadLetter, Pipeline, Policy, Prediction, Utf8};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let slack: RecordingRouter<String> = RecordingRouter::new();
//! let window = Duration::from_secs(5);
//! let digest = Digest::new(slack.clone(), 3, window, |b: &DigestBatch<'_, String>| {
//!     format!("and {} more problem reports", b.total())
//! });
//! // Dedup outside Digest: duplicates do not use up the three slots.
//! let router = Dedup::new(digest, FileDedupStore::open(dir.path().join("dedup.log"), Duration::from_secs(86_400))?);
//!
//! let tweets = (0..10).map(|i| format!("checkout broken #{i}"));
//! let report = Pipeline::new(MemorySource::from_payloads(1, tweets))
//!     .decode(Utf8)
//!     .classify(|_: &String| async { Ok::<_, ClassifyError>(Prediction::binary("problem", "other", 0.9)) })
//!     .policy(Policy::binary(0.5, "support"))
//!     .route(router)
//!     .dead_letter(MemoryDeadLetter::new())
//!     // A folded record waits for its digest: both timeouts above the window.
//!     .call_timeout(window * 3)
//!     .record_timeout(window * 6)
//!     .run()
//!     .await?;
//! assert_eq!(report.stats.routed, 10);
//! assert_eq!(slack.len(), 4); // 3 tweets, then "and 7 more problem reports"
//! # Ok(()) }
//! ```
//!
//! # What is promised
//!
//! **Dedup is effectively once per key and window**, on top of the
//! pipeline's at-least-once delivery: a key is recorded (appended and
//! fsynced) only after the inner router accepted, and a redelivered record
//! is skipped (counted as `skipped` in the run report). It ends at one
//! place: a crash between the inner router's acceptance and the fsync
//! sends that key once more after the restart. Deliveries of one key in
//! flight at once are serialised, the second skipped if the first was
//! accepted. The module docs of [`dedup`](crate::router::dedup) say it in
//! full, with the file format (hashed keys only: no customer text on disk)
//! and its bounds (memory and file grow with the window, not the stream).
//!
//! **Digest keeps checkpoints honest**: a folded record is done only when
//! its digest is accepted; if the digest fails, its records fail
//! retryably and are folded into the next digest. Because a folded record
//! waits for its window to end, set `call_timeout` and `record_timeout`
//! above the window: the pipeline refuses to start otherwise
//! ([`ConfigError::TimeoutWithinHold`](crate::ConfigError::TimeoutWithinHold)),
//! since every folded record would time out. Expect folded records to
//! hold `max_in_flight` slots and the shard's checkpoint until the digest
//! is sent. See [`digest`](crate::router::digest).
//!
//! The cost: a redelivered (skipped) record, and a new key's bookkeeping,
//! are measured in `benches/README.md` (section "Dedup"); a new key also
//! waits for one fsync, shared by the deliveries in flight at the time.
