//! A batching PutRecords producer.
