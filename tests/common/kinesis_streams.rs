//! Stream set-up shared by the Kinesis tests against moto: clients (plain
//! or through a [`FaultyHttp`]), streams created and waited for, payloads.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use streamsift::{Batch, Checkpoint, Position, Record};

use super::faulty_http::{Fault, FaultyHttp};
use super::moto::Moto;

/// A client whose HTTP calls go through a [`FaultyHttp`] to moto.
pub async fn faulty_client(moto: &Moto, faults: Vec<Fault>) -> (Client, FaultyHttp) {
    let base = moto.sdk_config().await;
    let http = FaultyHttp::new(aws_smithy_http_client::Builder::new().build_http(), faults);
    let config = base.into_builder().http_client(http.clone()).build();
    (Client::new(&config), http)
}

/// Creates a stream of `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    wait_active(client, name).await;
}

/// Waits (up to 10 s) until the stream is ACTIVE.
pub async fn wait_active(client: &Client, name: &str) {
    for _ in 0..100 {
        let s = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("DescribeStreamSummary");
        if s.stream_description_summary()
            .is_some_and(|d| d.stream_status().as_str() == "ACTIVE")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream {name} never became ACTIVE");
}

/// The ids of the stream's open shards (no ending sequence number).
pub async fn open_shards(client: &Client, stream: &str) -> Vec<String> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    shards
        .shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_none()
        })
        .map(|s| s.shard_id().to_string())
        .collect()
}

/// What the pipeline commits for `batch` once all its records are done:
/// the last record's position, then `SHARD_END` after a shard's last batch.
pub fn batch_checkpoints(batch: &Batch) -> Vec<Checkpoint> {
    let mut cps = Vec::new();
    if let Some(last) = batch.records.last() {
        cps.push(Checkpoint {
            shard: batch.shard.clone(),
            position: Position::Sequence(last.sequence.clone()),
        });
    }
    if batch.shard_end {
        cps.push(Checkpoint {
            shard: batch.shard.clone(),
            position: Position::ShardEnd,
        });
    }
    cps
}

/// The records' payloads as text.
pub fn payloads(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.payload.to_vec()).expect("utf-8 payload"))
        .collect()
}
