//! A custom Source: readings from a generator, one shard, ten a batch, each at its offset; the
//! pipeline commits positions back once readings are done. Every 7th is garbled: dead-lettered.
//! `cargo run --example custom_source -- --count 25`
#[path = "common/mod.rs"]
mod common;
use clap::Parser as _;
use std::{future::ready, sync::Mutex};
use streamsift::{Batch, Checkpoint, Delivery, MemoryDeadLetter, Pipeline, Policy, Position};
use streamsift::{Prediction, Receipt, Record, Sequence, ShardId, Source, SourceError};

/// The next offset to read, and how many readings there are.
struct Readings(Mutex<u64>, u64);
impl Source for Readings {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        let mut next = self.0.lock().expect("not poisoned");
        let (shard, end) = (ShardId::new("sensor-1"), (*next + 10).min(self.1));
        let payload = |n: u64| format!("{n}{}", if n % 7 == 6 { "?" } else { "" });
        let records: Vec<Record> = (*next..end)
            .map(|n| Record::new(shard.clone(), Sequence::from_offset(n), "k", payload(n)))
            .collect();
        *next = end;
        Ok((!records.is_empty()).then(|| Batch::new(shard, records)))
    }
    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        for c in checkpoints {
            if let Position::Sequence(s) = c.position {
                println!("committed {} up to offset {s}", c.shard);
            }
        }
        Ok(())
    }
}
/// Run generated readings through a pipeline; readings of 20 and above raise an alarm.
#[derive(clap::Parser)]
struct Cli {
    /// How many readings.
    #[arg(long, default_value_t = 25)]
    count: u64,
}

#[tokio::main]
pub async fn main() -> std::process::ExitCode {
    common::init_tracing();
    let dead_letters = MemoryDeadLetter::new();
    let run = Pipeline::new(Readings(Mutex::new(0), Cli::parse().count))
        .json::<u64>()
        .classify(|n: &u64| ready(Ok(Prediction::binary("high", "ok", *n as f64 / 40.0))))
        .policy(Policy::binary(0.5, "alarm"))
        .route(|d: &Delivery<'_, u64>| ready(Ok(Receipt::new(d.route.clone()))))
        .dead_letter(dead_letters.clone())
        .run();
    let s = match run.await {
        Ok(report) => report.stats,
        Err(e) => return common::fail(&e, None),
    };
    let (read, alarms, dead) = (s.records_in, s.routed, dead_letters.len());
    println!("read {read}, alarms {alarms}, dead letters {dead}");
    std::process::ExitCode::SUCCESS
}
