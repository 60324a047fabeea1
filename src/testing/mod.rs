//! Conformance suites: prove a custom component with one call.
//!
//! Behind the `test-util` feature. Put the crate in your
//! `[dev-dependencies]` with it:
//!
//! ```toml
//! [dev-dependencies]
//! streamsift = { version = "0.1", features = ["test-util"] }
//! ```
//!
//! One suite per trait, each a module whose docs list the rules a
//! conforming component keeps. A suite panics at the first broken rule,
//! with a message that names it, for example
//!
//! ```text
//! router conformance: rule "redelivery-accepted" broken: delivering record
//! conformance:0 again failed: router failed permanently: duplicate
//! ```
//!
//! so it reads like any failed assertion in `cargo test`. The crate's own
//! components pass the same suites: the fakes, [`FileSource`](crate::FileSource),
//! the checkpoint stores (memory, file, DynamoDB on moto), the dead-letter
//! sinks, and the AWS backends against their emulators.
//!
//! | trait | suite | one call |
//! |---|---|---|
//! | [`Source`](crate::Source) | [`source`] | `source::conformance(make_source, n).await` |
//! | [`Classifier`](crate::Classifier) | [`classifier`] | `classifier::conformance(&c, &items, &labels).await` |
//! | [`Router`](crate::Router) | [`router`] | `router::conformance(&r, &cases).await` |
//! | [`Labeler`](crate::Labeler) | [`labeler`] | `labeler::conformance(&mut harness, &items, &labels).await` |
//! | [`CheckpointStore`](crate::checkpoint::CheckpointStore) | [`checkpoint`] | `checkpoint::conformance(Arc::new(store)).await` |
//! | [`DeadLetterSink`](crate::DeadLetterSink) | [`dead_letter`] | `dead_letter::conformance(&sink, read_back).await` |
//!
//! # A custom router
//!
//! A router that sends each item to a ticket queue: give the suite a few
//! deliveries and it checks receipts, concurrency and redelivery.
//!
//! ```
//! use std::sync::Mutex;
//! use streamsift::testing::router::{self, Case};
//! use streamsift::{Delivery, Receipt, RouteError, Router};
//!
//! /// Files one ticket per item; the ticket number is the message id.
//! #[derive(Default)]
//! struct Tickets(Mutex<Vec<String>>);
//!
//! impl Router<String> for Tickets {
//!     async fn route(&self, d: &Delivery<'_, String>) -> Result<Receipt, RouteError> {
//!         let mut queue = self.0.lock().map_err(|_| RouteError::unavailable("lock poisoned"))?;
//!         queue.push(format!("[{}] {}", d.route, d.item));
//!         Ok(Receipt::new(d.route.clone()).with_message_id(format!("T-{}", queue.len())))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cases = [
//!     Case::new("the api is down".to_string(), "oncall"),
//!     Case::new("how do I log in?".to_string(), "support"),
//! ];
//! let receipts = router::conformance(&Tickets::default(), &cases).await;
//! assert_eq!(receipts[1].route.as_str(), "support");
//! # }
//! ```
//!
//! # A custom source
//!
//! A source over lines held in memory, with its commits kept in a shared
//! map so that a "restart" (a new source over the same lines and map)
//! resumes after them. `make` builds a fresh source each time; the suite
//! reads part of the stream, restarts, and checks that every record comes
//! once, in order, with stable ids.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use streamsift::testing::source;
//! use streamsift::{Batch, Checkpoint, Position, Record, Sequence, ShardId, Source, SourceError};
//!
//! struct Lines {
//!     lines: Arc<Vec<String>>,
//!     committed: Arc<Mutex<Option<u64>>>,
//!     next: Mutex<u64>,
//! }
//!
//! impl Lines {
//!     fn new(lines: Arc<Vec<String>>, committed: Arc<Mutex<Option<u64>>>) -> Self {
//!         let next = committed.lock().unwrap().map_or(0, |done| done + 1);
//!         Lines { lines, committed, next: Mutex::new(next) }
//!     }
//! }
//!
//! impl Source for Lines {
//!     async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
//!         let mut next = self.next.lock().unwrap();
//!         let start = *next as usize;
//!         if start >= self.lines.len() {
//!             return Ok(None);
//!         }
//!         let end = (start + 10).min(self.lines.len());
//!         let records = (start..end)
//!             .map(|i| {
//!                 let line = self.lines[i].clone();
//!                 Record::new(ShardId::new("lines"), Sequence::from_offset(i as u64), "", line)
//!             })
//!             .collect();
//!         *next = end as u64;
//!         Ok(Some(Batch::new(ShardId::new("lines"), records)))
//!     }
//!
//!     async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
//!         for cp in checkpoints {
//!             if let Position::Sequence(seq) = cp.position {
//!                 let at = seq.number.parse().map_err(|_| SourceError::permanent("not ours"))?;
//!                 *self.committed.lock().unwrap() = Some(at);
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let lines: Arc<Vec<String>> = Arc::new((0..100).map(|i| format!("line {i}")).collect());
//! let committed = Arc::new(Mutex::new(None));
//! source::conformance(
//!     || std::future::ready(Lines::new(lines.clone(), committed.clone())),
//!     100,
//! )
//! .await;
//! # }
//! ```

pub mod checkpoint;
pub mod classifier;
pub mod dead_letter;
pub mod labeler;
pub mod router;
pub mod source;

/// Panics with the suite's name and the broken rule: the one way every
/// suite reports a failure.
#[track_caller]
pub(crate) fn broken(suite: &str, rule: &str, detail: std::fmt::Arguments<'_>) -> ! {
    panic!("{suite} conformance: rule \"{rule}\" broken: {detail}")
}

/// `ensure!(suite, rule, condition, "detail {}", ..)`: reports `rule` as
/// broken unless `condition` holds.
macro_rules! ensure {
    ($suite:expr, $rule:expr, $cond:expr, $($detail:tt)+) => {
        if !$cond {
            $crate::testing::broken($suite, $rule, format_args!($($detail)+))
        }
    };
}
pub(crate) use ensure;
