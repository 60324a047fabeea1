//! Enhanced fan-out (RegisterStreamConsumer + SubscribeToShard) against
//! kinesis-local, which implements SubscribeToShard; moto does not.
#![cfg(feature = "kinesis")]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use common::kinesis_local::KinesisLocal;
use streamsift::kinesis::KinesisSource;
use streamsift::{Checkpoint, Position, Source};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_fan_out_reads_every_shard_and_resubscribes() {
    let emulator = KinesisLocal::start();
    // kinesis-local takes the account from the access key id.
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&emulator.endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "000000000000",
            "testing",
            None,
            None,
            "streamsift-tests",
        ))
        .load()
        .await;
    let kinesis = Client::new(&config);
    kinesis
        .create_stream()
        .stream_name("efo")
        .shard_count(2)
        .send()
        .await
        .expect("CreateStream");
    for _ in 0..100 {
        let s = kinesis
            .describe_stream_summary()
            .stream_name("efo")
            .send()
            .await
            .expect("describe");
        if s.stream_description_summary()
            .map(|d| d.stream_status().as_str())
            == Some("ACTIVE")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let put = |from: usize, to: usize| {
        let kinesis = kinesis.clone();
        async move {
            for i in from..to {
                kinesis
                    .put_record()
                    .stream_name("efo")
                    .partition_key(format!("k{}", i % 7))
                    .data(Blob::new(format!("{i}").into_bytes()))
                    .send()
                    .await
                    .expect("PutRecord");
            }
        }
    };
    put(0, 60).await;

    let source = KinesisSource::builder_from_client(kinesis.clone(), "efo")
        .enhanced_fan_out("streamsift-test")
        // Resubscribe often, to exercise the continuation path.
        .resubscribe_after(Duration::from_millis(300))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .await
        .expect("build with a registered consumer");
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), read_until(&source, 60, &mut seen))
        .await
        .expect("the first 60 within 60 s");
    let subscriptions_before = source.stats().read_calls;
    // Several resubscriptions happen while the stream is quiet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    put(60, 120).await;
    tokio::time::timeout(Duration::from_secs(60), read_until(&source, 120, &mut seen))
        .await
        .expect("the next 60 within 60 s");
    let subscriptions = source.stats().read_calls;
    assert!(
        subscriptions >= subscriptions_before + 4,
        "both shards resubscribed while idle: {subscriptions_before} then {subscriptions}"
    );
    assert_eq!(seen.len(), 120, "every record once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 120);
}

async fn read_until(source: &KinesisSource, want: usize, seen: &mut Vec<String>) {
    while seen.len() < want {
        let batch = source
            .next_batch()
            .await
            .expect("next_batch")
            .expect("open stream");
        if let Some(last) = batch.records.last() {
            source
                .commit(vec![Checkpoint {
                    shard: batch.shard.clone(),
                    position: Position::Sequence(last.sequence.clone()),
                }])
                .await
                .expect("commit");
        }
        seen.extend(
            batch
                .records
                .iter()
                .map(|r| String::from_utf8(r.payload.to_vec()).unwrap()),
        );
    }
}
