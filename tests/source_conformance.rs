//! One conformance suite for the `Source` contract, run against the
//! in-memory fake and against `KinesisSource` on moto.
//!
//! The contract:
//! 1. every record of the stream is delivered, once, when each batch is
//!    committed as soon as it is read;
//! 2. a batch holds records of its own shard only, in shard order;
//! 3. record ids are unique and stable: a redelivery carries the same id;
//! 4. after a restart, nothing at or before a committed position comes again,
//!    and everything after it does;
//! 5. committing the same checkpoint twice is harmless.

mod common;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use streamsift::fakes::MemorySource;
use streamsift::{Checkpoint, Position, Record, Source};

/// Reads until the source ends, committing each batch. With `stop_after`,
/// stops early (committing only what it read so far) once that many
/// records are in.
async fn read_all<S: Source>(source: &S, stop_after: Option<usize>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut last_by_shard: HashMap<String, Record> = HashMap::new();
    let run = async {
        while let Some(batch) = source.next_batch().await.expect("next_batch") {
            for r in &batch.records {
                assert_eq!(r.shard, batch.shard, "a record in another shard's batch");
                if let Some(prev) = last_by_shard.get(r.shard.as_str()) {
                    assert_eq!(
                        prev.sequence.cmp_position(&r.sequence),
                        std::cmp::Ordering::Less,
                        "shard {} out of order: {} then {}",
                        r.shard,
                        prev.sequence,
                        r.sequence
                    );
                }
                last_by_shard.insert(r.shard.to_string(), r.clone());
            }
            let mut checkpoints = Vec::new();
            if let Some(last) = batch.records.last() {
                checkpoints.push(Checkpoint {
                    shard: batch.shard.clone(),
                    position: Position::Sequence(last.sequence.clone()),
                });
            }
            if batch.shard_end {
                checkpoints.push(Checkpoint {
                    shard: batch.shard.clone(),
                    position: Position::ShardEnd,
                });
            }
            out.extend(batch.records);
            // Committing twice is harmless.
            source.commit(checkpoints.clone()).await.expect("commit");
            source.commit(checkpoints).await.expect("commit again");
            if stop_after.is_some_and(|n| out.len() >= n) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the source ended within 60 s");
    out
}

/// Runs the suite. `make(n)` gives a fresh source over the same stream of
/// `n` records that resumes from what earlier sources committed.
async fn conformance<S, F, Fut>(make: F, n: usize)
where
    S: Source,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    // Part of the stream, then a restart.
    let first = make().await;
    let early = read_all(&first, Some(n / 3)).await;
    assert!(
        early.len() >= n / 3 && early.len() < n,
        "read part of the stream: {}",
        early.len()
    );
    drop(first);

    let second = make().await;
    let rest = read_all(&second, None).await;

    let early_ids: HashSet<&str> = early.iter().map(|r| r.id.as_str()).collect();
    let rest_ids: HashSet<&str> = rest.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(early_ids.len(), early.len(), "ids unique in the first run");
    assert_eq!(rest_ids.len(), rest.len(), "ids unique in the second run");
    assert!(
        early_ids.is_disjoint(&rest_ids),
        "a committed record came again after the restart"
    );
    assert_eq!(early.len() + rest.len(), n, "every record, once");

    // A third source has nothing left.
    let third = make().await;
    assert!(
        read_all(&third, None).await.is_empty(),
        "everything was committed"
    );
}

#[tokio::test(start_paused = true)]
async fn memory_source_conforms() {
    let n = 300;
    let payloads: Vec<String> = (0..n).map(|i| format!("{{\"n\":{i}}}")).collect();
    let base = MemorySource::from_payloads(3, payloads)
        .batch_size(25)
        .close_shards();
    // Each restart resumes from what the readers before it committed.
    conformance(|| std::future::ready(base.restart()), n).await;
}

#[cfg(feature = "kinesis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_source_conforms() {
    use aws_sdk_kinesis::primitives::Blob;
    use streamsift::checkpoint::MemoryCheckpointStore;
    use streamsift::kinesis::KinesisSource;

    let moto = common::moto::Moto::start();
    let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk_config().await);
    kinesis
        .create_stream()
        .stream_name("conf")
        .shard_count(3)
        .send()
        .await
        .expect("CreateStream");
    let n = 300;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let entries = chunk
            .iter()
            .map(|i| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(format!("pk-{i}"))
                    .data(Blob::new(format!("{{\"n\":{i}}}").into_bytes()))
                    .build()
                    .expect("entry")
            })
            .collect();
        kinesis
            .put_records()
            .stream_name("conf")
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
    }
    let store = MemoryCheckpointStore::new();
    conformance(
        || {
            let builder = KinesisSource::builder_from_client(kinesis.clone(), "conf")
                .checkpoints(store.clone())
                .stop_at_tip(true)
                .limit(25)
                .idle_wait(Duration::from_millis(20));
            async move { builder.build().await.expect("build") }
        },
        n,
    )
    .await;
}
