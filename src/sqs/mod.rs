//! Amazon SQS (feature `sqs`): [`SqsSource`] reads a queue with per-record
//! acknowledgement ([`AckMode::PerRecord`](crate::AckMode::PerRecord)): a
//! message is deleted only once its record is done. See
//! [the SQS guide](crate::guide::sqs) for the ack contract, FIFO queues and
//! redrive policies.

mod source;
mod source_error;

pub use source::{SqsSource, SqsSourceBuilder};
pub use source_error::SqsConfigError;
