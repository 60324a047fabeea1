//! SQS: reading an Amazon SQS queue, with each message deleted once its
//! record is done.
//!
//! Feature `sqs`. [`SqsSource`](crate::sqs::SqsSource) is a
//! [`Source`](crate::Source) like any other:
//!
//! ```no_run
//! use std::time::Duration;
//! use streamsift::sqs::SqsSource;
//! use streamsift::{ClassifyError, JsonLinesDeadLetter, Pipeline, Policy, Prediction};
//!
//! #[derive(serde::Deserialize)]
//! struct Tweet { text: String }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let source = SqsSource::builder(&config, "https://sqs.eu-west-1.amazonaws.com/123456789012/tweets")
//!     .receivers(4)            // concurrent long polls (default 1)
//!     .max_receive_count(5)    // dead-letter a message received more than 5 times
//!     .build()                 // GetQueueAttributes: a missing queue fails here, named
//!     .await?;
//! let report = Pipeline::new(source)
//!     .json::<Tweet>()
//!     .classify(|t: &Tweet| {
//!         let score = if t.text.contains("down") { 0.9 } else { 0.1 };
//!         async move { Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", score)) }
//!     })
//!     .policy(Policy::binary(0.5, "oncall"))
//!     .route(|d: &streamsift::Delivery<'_, Tweet>| {
//!         let route = d.route.clone();
//!         async move { Ok::<_, streamsift::RouteError>(streamsift::Receipt::new(route)) }
//!     })
//!     .dead_letter(JsonLinesDeadLetter::create("dead-letters.jsonl")?)
//!     .ack_every(10, Duration::from_millis(100)) // the defaults
//!     .run()
//!     .await?;
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! # The ack contract
//!
//! A queue has no positions to checkpoint, so the source answers
//! [`AckMode::PerRecord`](crate::AckMode::PerRecord) from
//! [`Source::acks`](crate::Source::acks) and the pipeline calls
//! [`Source::ack`](crate::Source::ack) instead of `commit`:
//!
//! - a record is acked only once it is **done**: routed, skipped, discarded,
//!   sent for review, or durably dead-lettered. Never before;
//! - acks go in batches (`ack_every`: 10 records or 100 ms), one call at a
//!   time; the source deletes them with DeleteMessageBatch (10 per call,
//!   up to 4 calls at once), retrying only the entries that failed;
//! - a graceful stop (source ended, or [`Shutdown`](crate::Shutdown))
//!   drains what is in flight, then acks it; after a fatal error nothing
//!   that is not done is acked;
//! - a failed ack call is retried with backoff for up to `commit_timeout`;
//!   then the run stops with [`PipelineError::Ack`](crate::PipelineError::Ack)
//!   rather than process on without deleting (which would deliver
//!   everything twice). What was not acked comes again: a duplicate, never a
//!   loss. An entry SQS refuses for good (an expired receipt handle) is left
//!   to come again the same way.
//!
//! While a record is in flight, a heartbeat renews its message's visibility
//! timeout (ChangeMessageVisibilityBatch) before it expires, up to
//! `max_extension` (1 h by default), so a slow classifier does not cause a
//! redelivery. When the source is dropped, the messages it still holds are
//! made visible again at once.
//!
//! # FIFO queues
//!
//! For a `.fifo` queue the shard is the message group, and the source asks
//! for `PerRecord { ordered: true }`: the pipeline runs the records of a
//! group one at a time, in order. A record being retried holds up its own
//! group only; other groups go on. Memory does not grow with the number of
//! groups: a group's bookkeeping is released once nothing of it is
//! outstanding.
//!
//! # Redelivery and the redrive policy
//!
//! Every message SQS hands out counts a receive (ApproximateReceiveCount).
//! Two places can stop a message that keeps coming back:
//!
//! - **The pipeline**, with `max_receive_count(n)`: on its `n + 1`th receive
//!   the record is dead-lettered at the decode stage with a reason that
//!   says so, and deleted. The dead letter keeps the original bytes, ready
//!   for a replay.
//! - **SQS**, with the queue's redrive policy (`maxReceiveCount`): SQS moves
//!   the message to the queue's dead-letter queue on its own.
//!
//! Set `n` **below** the redrive `maxReceiveCount` to have the pipeline's
//! dead letters (with reasons) and keep the redrive policy as a backstop for
//! consumers that crash before they can dead-letter anything; the source
//! warns at start-up when `n` is not below it. Leave `n` unset to leave it
//! all to SQS.
//!
//! # Bad input
//!
//! A body over `max_body_bytes` (1 MiB by default) becomes a record with its
//! `defect` set and is dead-lettered, then deleted; malformed JSON is
//! dead-lettered by the decoder, as for any source. SQS itself refuses
//! bodies that are not valid Unicode, so invalid UTF-8 cannot arrive.
//!
//! # Permissions
//!
//! `sqs:GetQueueAttributes` (the start-up check), `sqs:ReceiveMessage`,
//! `sqs:DeleteMessage` and `sqs:ChangeMessageVisibility` on the queue. A
//! denied start-up check fails at once with a hint that names them.
