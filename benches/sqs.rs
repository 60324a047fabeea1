//! Records/s through `SqsSource` from moto (server mode on loopback), at
//! batches of 10, with 1 and 8 receivers, against a bare SDK loop in the
//! same run (one receiver: ReceiveMessage of 10, then DeleteMessageBatch).
//! moto is not AWS: the figures say what the source costs over the SDK on
//! the same emulator, not what SQS gives.
//!
//! ```text
//! cargo bench --bench sqs --features sqs              # 300 messages per variant, 3 rounds
//! cargo test --bench sqs --features sqs               # quick check: 100 messages, 1 round
//! ```
//!
//! The pipeline around the source does nothing (a fixed prediction, a
//! router that accepts), so what is timed is receiving, handing records to
//! the pipeline, and deleting them. Each variant starts from a full queue
//! (filled outside the clock) and stops when the last record is routed
//! and every message is deleted.

#[path = "../tests/common/moto.rs"]
#[allow(dead_code)]
mod moto;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use streamsift::sqs::SqsSource;
use streamsift::{
    ClassifyError, Delivery, MemoryDeadLetter, Pipeline, Policy, Prediction, Receipt, RouteError,
    Shutdown,
};

async fn fill(sqs: &Client, url: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let mut call = sqs.send_message_batch().queue_url(url);
        for &i in chunk {
            call = call.entries(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(format!(r#"{{"text":"message {i}"}}"#))
                    .build()
                    .expect("entry"),
            );
        }
        call.send().await.expect("SendMessageBatch");
    }
}

async fn empty(sqs: &Client, url: &str) -> bool {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .send()
        .await
        .expect("GetQueueAttributes");
    out.attributes()
        .is_some_and(|a| a.values().all(|v| v == "0"))
}

/// The bare loop: receive 10, delete them, until `n` are deleted.
async fn bare(sqs: &Client, url: &str, n: usize) -> Duration {
    let start = Instant::now();
    let mut deleted = 0;
    while deleted < n {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(300)
            .send()
            .await
            .expect("ReceiveMessage");
        let mut call = sqs.delete_message_batch().queue_url(url);
        let messages = out.messages();
        if messages.is_empty() {
            continue;
        }
        for (i, m) in messages.iter().enumerate() {
            call = call.entries(
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().expect("handle"))
                    .build()
                    .expect("entry"),
            );
        }
        let out = call.send().await.expect("DeleteMessageBatch");
        deleted += out.successful().len();
    }
    start.elapsed()
}

/// The pipeline over SqsSource with `receivers`: time until `n` records
/// are routed and the queue is empty.
async fn through_source(
    config: &aws_config::SdkConfig,
    sqs: &Client,
    url: &str,
    n: usize,
    receivers: usize,
) -> Duration {
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let shutdown = Shutdown::new();
    let source = SqsSource::builder(config, url)
        .receivers(receivers)
        .wait_time(Duration::from_secs(1))
        // Long enough that a slow emulator never lets a message reappear.
        .visibility_timeout(Duration::from_secs(300))
        .build()
        .await
        .expect("SqsSource builds");
    let ids = seen.clone();
    let stop = shutdown.clone();
    let start = Instant::now();
    let report = Pipeline::new(source)
        .json::<serde_json::Value>()
        .classify(|_: &serde_json::Value| async {
            Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", 0.9))
        })
        .policy(Policy::binary(0.5, "oncall"))
        .route(move |d: &Delivery<'_, serde_json::Value>| {
            let route = d.route.clone();
            let mut ids = ids.lock().expect("not poisoned");
            if ids.insert(d.record.id.clone()) && ids.len() == n {
                stop.cancel();
            }
            async move { Ok::<_, RouteError>(Receipt::new(route)) }
        })
        .dead_letter(MemoryDeadLetter::new())
        .shutdown_handle(shutdown)
        .run()
        .await
        .expect("the pipeline runs");
    let elapsed = start.elapsed();
    let routed = report.stats.routed as usize;
    assert!(routed >= n, "every message routed");
    if routed > n {
        // moto's threaded server can hand one message to two concurrent
        // receives: at-least-once, as SQS allows.
        println!("  ({} duplicate deliveries from moto)", routed - n);
    }
    assert!(empty(sqs, url).await, "every message deleted");
    elapsed
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // moto scans its whole queue on every receive, so it slows as the
    // queue grows: 300 messages keeps the emulator's own cost down.
    let (n, rounds) = if full { (300, 3) } else { (100, 1) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = moto::Moto::start();
    runtime.block_on(async {
        let config = server.sdk_config().await;
        let sqs = Client::new(&config);
        let mut rows = Vec::new();
        for round in 0..rounds {
            let mut row = Vec::new();
            for variant in ["bare loop, 1 receiver", "SqsSource, 1 receiver", "SqsSource, 8 receivers"] {
                let name = format!("bench-{round}-{}", row.len());
                let url = moto::create_queue(&sqs, &name, &[]).await;
                fill(&sqs, &url, n).await;
                let took = match variant {
                    "bare loop, 1 receiver" => bare(&sqs, &url, n).await,
                    "SqsSource, 1 receiver" => through_source(&config, &sqs, &url, n, 1).await,
                    _ => through_source(&config, &sqs, &url, n, 8).await,
                };
                let rate = n as f64 / took.as_secs_f64();
                println!("round {round}: {variant}: {n} messages in {took:.2?}: {rate:.0} records/s");
                row.push(rate);
            }
            rows.push(row);
        }
        let median = |i: usize| {
            let mut v: Vec<f64> = rows.iter().map(|r| r[i]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "median of {rounds} rounds, {n} messages each: bare loop {:.0}/s; SqsSource 1 receiver {:.0}/s ({:.2}x the bare loop); 8 receivers {:.0}/s ({:.2}x)",
            median(0),
            median(1),
            median(1) / median(0),
            median(2),
            median(2) / median(0)
        );
    });
}
