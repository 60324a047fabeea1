//! Amazon SQS (feature `sqs`): a queue as a source, and a queue as the
//! dead-letter sink.
//!
//! - [`SqsSource`] reads a queue with per-record acknowledgement
//!   ([`AckMode::PerRecord`](crate::AckMode::PerRecord)): a message is
//!   deleted only once its record is done. See [the SQS
//!   guide](crate::guide::sqs) for the ack contract, FIFO queues and redrive
//!   policies.
//! - [`SqsDeadLetter`] keeps dead letters where there is no disk. On AWS
//!   Lambda (or any host without a durable file system) a
//!   [`JsonLinesDeadLetter`](crate::JsonLinesDeadLetter) has nowhere to keep
//!   its file; `SqsDeadLetter` turns each dead letter into one SQS message
//!   instead: a JSON body with the record's id, shard, sequence, partition
//!   key, the failing stage, the kind, reason, class and attempts, and the
//!   original bytes in base64; the stage and kind are message attributes
//!   too, so a consumer can pick its messages. With feature `s3`, payloads
//!   too large for a message go to S3 with a pointer. See [`dead_letter`]
//!   for the message's shape, the size rules, and how to read dead letters
//!   back (`examples/replay_dead_letters.rs` replays them through a
//!   pipeline).

pub mod dead_letter;
mod source;
mod source_error;

pub use dead_letter::{
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_S3_PREFIX, MAX_REASON_BYTES, MESSAGE_FORMAT, PayloadStorage,
    ReceivedDeadLetter, S3Pointer, SqsDeadLetter, SqsDeadLetterBody, SqsDeadLetterBuilder,
    SqsDeadLetterError, Truncation,
};
pub use source::{SqsSource, SqsSourceBuilder};
pub use source_error::SqsConfigError;
