//! KinesisSource under faults, over a real loopback connection to moto:
//! exact start positions whatever fails at start-up, no loss at SHARD_END,
//! checkpoints that name the stream incarnation, bounded retries and
//! bounded per-shard state.
//!
//! `start_position_exact_under_fault_schedules` is a property test over
//! schedules of start-up faults × start position × lineage (see its doc).
//! It prints its seed; replay a failure with
//! `STREAMSIFT_PROPTEST_SEED=<seed> cargo test --all-features --test kinesis_faults -- start_position_exact_under_fault_schedules`
//! and run more cases with `STREAMSIFT_PROPTEST_CASES=<n>` (default 12).
//!
//! moto notes: AT_TIMESTAMP compares the record's arrival time (moto's own
//! clock, the same host clock here) with the requested time, records at or
//! after it included; closed shards keep handing out iterators (the source
//! ends them by the ListShards "closed" flag); sequence numbers restart at 1
//! in a recreated stream.
#![cfg(feature = "kinesis")]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use common::faulty_http::Fault;
use common::kinesis_streams::{
    batch_checkpoints, create_stream, faulty_client, open_shards, payloads, wait_active,
};
use common::moto::Moto;
use streamsift::checkpoint::{CheckpointStore, FileCheckpointStore, MemoryCheckpointStore};
use streamsift::kinesis::{KinesisSource, KinesisSourceBuilder, StartPosition, StartupError};
use streamsift::{Checkpoint, Position, Source};

/// Puts `n` records with payloads `{tag}:{i}`, keys spread over 8 values.
async fn put(client: &Client, stream: &str, tag: &str, n: usize) {
    let entries: Vec<_> = (0..n)
        .map(|i| {
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key(format!("k{}", i % 8))
                .data(Blob::new(format!("{tag}:{i}").into_bytes()))
                .build()
                .expect("entry")
        })
        .collect();
    put_entries(client, stream, entries).await;
}

/// PutRecords of `entries`, every one accepted.
async fn put_entries(
    client: &Client,
    stream: &str,
    entries: Vec<aws_sdk_kinesis::types::PutRecordsRequestEntry>,
) -> aws_sdk_kinesis::operation::put_records::PutRecordsOutput {
    let resp = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(resp.failed_record_count(), Some(0));
    resp
}

async fn split_only_shard(client: &Client, stream: &str) {
    let open = open_shards(client, stream).await;
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(&open[0])
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .expect("SplitShard");
    wait_active(client, stream).await;
}

fn builder(client: Client, stream: &str) -> KinesisSourceBuilder {
    KinesisSource::builder_from_client(client, stream)
        .idle_wait(Duration::from_millis(50))
        .discovery_interval(Duration::from_millis(300))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
}

/// Reads (committing each batch, SHARD_END included) until `want` records
/// arrived, then `linger` more to catch any extra; at most `limit` overall.
async fn read_for(source: &KinesisSource, want: usize, linger: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut stop_at: Option<tokio::time::Instant> = None;
    loop {
        let until = stop_at.unwrap_or(deadline).min(deadline);
        let Ok(next) = tokio::time::timeout_at(until, source.next_batch()).await else {
            break;
        };
        let Some(batch) = next.expect("next_batch") else {
            break;
        };
        let cps = batch_checkpoints(&batch);
        got.extend(payloads(&batch.records));
        source.commit(cps).await.expect("commit");
        if got.len() >= want && stop_at.is_none() {
            stop_at = Some(tokio::time::Instant::now() + linger);
        }
    }
    got
}

fn tagged(got: &[String], tag: &str) -> usize {
    got.iter()
        .filter(|p| p.split_once(':').is_some_and(|(t, _)| t == tag))
        .count()
}

fn throttle(op: &'static str, nth: usize) -> Fault {
    Fault {
        op,
        nth,
        status: 400,
        code: "LimitExceededException",
        body: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_position_latest_survives_throttled_list_shards() {
    let moto = Moto::start();
    let plain = Client::new(&moto.sdk_config().await);
    create_stream(&plain, "latest-ls", 2).await;
    put(&plain, "latest-ls", "old", 20).await;

    let (kinesis, _http) = faulty_client(&moto, vec![throttle("ListShards", 1)]).await;
    let source = builder(kinesis, "latest-ls")
        .start_position(StartPosition::Latest)
        .build()
        .await
        .expect("build");
    put(&plain, "latest-ls", "new", 12).await;
    let got = read_for(&source, 12, Duration::from_millis(800)).await;
    assert_eq!(
        tagged(&got, "old"),
        0,
        "a LATEST source replayed records written before it started: {got:?}"
    );
    assert_eq!(tagged(&got, "new"), 12, "{got:?}");
    assert_eq!(got.len(), 12, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_position_latest_survives_throttled_get_shard_iterator() {
    let moto = Moto::start();
    let plain = Client::new(&moto.sdk_config().await);
    create_stream(&plain, "latest-gsi", 1).await;
    put(&plain, "latest-gsi", "old", 10).await;

    let faults = (1..=3).map(|n| throttle("GetShardIterator", n)).collect();
    let (kinesis, http) = faulty_client(&moto, faults).await;
    let source = builder(kinesis, "latest-gsi")
        .start_position(StartPosition::Latest)
        .build()
        .await
        .expect("build");
    // Written at once after the source started, while its first iterator
    // calls are throttled: they must all be read.
    put(&plain, "latest-gsi", "new", 6).await;
    let got = read_for(&source, 6, Duration::from_millis(500)).await;
    assert_eq!(tagged(&got, "old"), 0, "{got:?}");
    assert_eq!(
        tagged(&got, "new"),
        6,
        "records written after start were lost when the iterator call was retried: {got:?}"
    );
    assert!(http.calls_of("GetShardIterator").len() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_position_at_timestamp_and_trim_horizon_are_exact_across_a_split() {
    let moto = Moto::start();
    let plain = Client::new(&moto.sdk_config().await);
    create_stream(&plain, "exact", 1).await;
    // moto moves a parent's records into the children at SplitShard, with
    // new arrival times; so split first, and write the records whose
    // exactness is checked afterwards (into the children; the parent is
    // closed and empty, and read in lineage order).
    split_only_shard(&plain, "exact").await;
    put(&plain, "exact", "before", 10).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let at = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    put(&plain, "exact", "after", 10).await;
    put(&plain, "exact", "child", 10).await;

    let faults = vec![
        throttle("ListShards", 1),
        throttle("GetShardIterator", 1),
        throttle("GetShardIterator", 3),
    ];
    let (kinesis, _) = faulty_client(&moto, faults).await;
    let source = builder(kinesis, "exact")
        .start_position(StartPosition::AtTimestamp(at))
        .stop_at_tip(true)
        .build()
        .await
        .expect("build");
    let got = read_for(&source, usize::MAX, Duration::ZERO).await;
    assert_eq!(tagged(&got, "before"), 0, "{got:?}");
    assert_eq!(tagged(&got, "after"), 10, "{got:?}");
    assert_eq!(tagged(&got, "child"), 10, "{got:?}");
    assert_eq!(got.len(), 20);

    let (kinesis, _) = faulty_client(&moto, vec![throttle("ListShards", 1)]).await;
    let source = builder(kinesis, "exact")
        .stop_at_tip(true)
        .build()
        .await
        .expect("build");
    let got = read_for(&source, usize::MAX, Duration::ZERO).await;
    assert_eq!(
        got.len(),
        30,
        "TRIM_HORIZON reads every record once: {got:?}"
    );
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 30);
}

/// moto empties a parent into its children at SplitShard, so the lineage is
/// scripted here over a real two-shard stream: shard 0 is the parent P,
/// shard 1 its child C (ListShards answered by the test, every other call by
/// moto).
fn lineage_listing(real: &[aws_sdk_kinesis::types::Shard], closed: bool) -> String {
    let shard = |s: &aws_sdk_kinesis::types::Shard| {
        let range = s.hash_key_range().expect("range");
        let seq = s.sequence_number_range().expect("seq");
        serde_json::json!({
            "ShardId": s.shard_id(),
            "HashKeyRange": {"StartingHashKey": range.starting_hash_key(), "EndingHashKey": range.ending_hash_key()},
            "SequenceNumberRange": {"StartingSequenceNumber": seq.starting_sequence_number()},
        })
    };
    let mut p = shard(&real[0]);
    if !closed {
        return serde_json::json!({ "Shards": [p] }).to_string();
    }
    p["SequenceNumberRange"]["EndingSequenceNumber"] = serde_json::json!("99999999");
    let mut c = shard(&real[1]);
    c["ParentShardId"] = serde_json::json!(real[0].shard_id());
    serde_json::json!({ "Shards": [p, c] }).to_string()
}

/// Finds a partition key that moto puts into `shard` (probing with
/// records tagged `probe`, written before any source starts).
async fn key_for(client: &Client, stream: &str, shard: &str) -> String {
    for i in 0..64 {
        let key = format!("key{i}");
        let out = client
            .put_record()
            .stream_name(stream)
            .partition_key(&key)
            .data(Blob::new(format!("probe:{i}").into_bytes()))
            .send()
            .await
            .expect("PutRecord");
        if out.shard_id() == shard {
            return key;
        }
    }
    panic!("no partition key of 64 maps to {shard}");
}

async fn put_to(client: &Client, stream: &str, key: &str, tag: &str, n: usize) {
    for i in 0..n {
        client
            .put_record()
            .stream_name(stream)
            .partition_key(key)
            .data(Blob::new(format!("{tag}:{i}").into_bytes()))
            .send()
            .await
            .expect("PutRecord");
    }
}

fn listing(body: String) -> Fault {
    Fault {
        op: "ListShards",
        nth: 1,
        status: 200,
        code: "",
        body: Some(body),
    }
}

/// The parent's records are committed only through `SHARD_END` (as the
/// pipeline does when its last records finish together). That commit
/// fails; the children must not start; the run dies; the restart must read
/// the parent's uncommitted records again rather than treat the closed,
/// never-checkpointed parent as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_loss_shard_end_commit_failure_does_not_start_children() {
    let moto = Moto::start();
    let plain = Client::new(&moto.sdk_config().await);
    create_stream(&plain, "ends", 2).await;
    let real = plain
        .list_shards()
        .stream_name("ends")
        .send()
        .await
        .expect("ListShards")
        .shards()
        .to_vec();
    let p_key = key_for(&plain, "ends", real[0].shard_id()).await;
    let c_key = key_for(&plain, "ends", real[1].shard_id()).await;
    put_to(&plain, "ends", &p_key, "old", 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileCheckpointStore::new(dir.path());
    let path = store.path_for("ends");

    let (kinesis, http) = faulty_client(&moto, Vec::new()).await;
    http.fail_from(listing(lineage_listing(&real, false)));
    let first = builder(kinesis, "ends")
        .start_position(StartPosition::Latest)
        .checkpoints(store.clone())
        .build()
        .await
        .expect("build");
    // Room for a LATEST iterator taken late (the old behaviour).
    tokio::time::sleep(Duration::from_millis(500)).await;
    put_to(&plain, "ends", &p_key, "parent", 5).await;
    let mut first_got = Vec::new();
    while first_got.len() < 5 {
        let batch = tokio::time::timeout(Duration::from_secs(20), first.next_batch())
            .await
            .expect("the parent's records arrive")
            .expect("next_batch")
            .expect("open stream");
        first_got.extend(payloads(&batch.records));
    }
    // Now P is closed and C is its child.
    http.clear_standing();
    http.fail_from(listing(lineage_listing(&real, true)));
    put_to(&plain, "ends", &c_key, "child", 5).await;
    let parent = loop {
        let batch = tokio::time::timeout(Duration::from_secs(20), first.next_batch())
            .await
            .expect("the parent ends")
            .expect("next_batch")
            .expect("open stream");
        first_got.extend(payloads(&batch.records));
        if batch.shard_end {
            break batch.shard;
        }
    };
    // Make the store fail: a directory where the file goes.
    let aside = dir.path().join("aside");
    if path.exists() {
        std::fs::rename(&path, &aside).expect("move the file aside");
    }
    std::fs::create_dir(&path).expect("block the file");
    first
        .commit(vec![Checkpoint {
            shard: parent.clone(),
            position: Position::ShardEnd,
        }])
        .await
        .expect_err("the SHARD_END commit fails");
    // The child must not start while the parent's end is not stored.
    let early = tokio::time::timeout(Duration::from_millis(1500), first.next_batch()).await;
    if let Ok(Ok(Some(batch))) = &early {
        panic!(
            "shard {} was read although its parent's SHARD_END commit failed",
            batch.shard
        );
    }
    drop(first);
    std::fs::remove_dir(&path).expect("unblock");
    if aside.exists() {
        std::fs::rename(&aside, &path).expect("restore");
    }

    // The restart.
    let (kinesis, http) = faulty_client(&moto, Vec::new()).await;
    http.fail_from(listing(lineage_listing(&real, true)));
    let second = builder(kinesis, "ends")
        .start_position(StartPosition::Latest)
        .checkpoints(store)
        .stop_at_tip(true)
        .build()
        .await
        .expect("build");
    let got = read_for(&second, usize::MAX, Duration::ZERO).await;
    assert_eq!(tagged(&first_got, "parent"), 5, "{first_got:?}");
    assert_eq!(tagged(&first_got, "old"), 0, "{first_got:?}");
    assert_eq!(
        tagged(&got, "parent"),
        5,
        "the parent's uncommitted records were lost after its SHARD_END commit failed: {got:?}"
    );
    assert_eq!(tagged(&got, "child"), 5, "{got:?}");
    assert_eq!(tagged(&got, "old"), 0, "{got:?}");
    assert_eq!(tagged(&got, "probe"), 0, "{got:?}");
}

async fn recreate(client: &Client, name: &str) {
    client
        .delete_stream()
        .stream_name(name)
        .send()
        .await
        .expect("DeleteStream");
    // A creation time in another millisecond than the first.
    tokio::time::sleep(Duration::from_millis(20)).await;
    create_stream(client, name, 1).await;
}

async fn refuses_old_checkpoints(
    moto: &Moto,
    stream: &str,
    store: std::sync::Arc<dyn CheckpointStore>,
) {
    let kinesis = Client::new(&moto.sdk_config().await);
    create_stream(&kinesis, stream, 1).await;
    put(&kinesis, stream, "first", 6).await;
    let source = builder(kinesis.clone(), stream)
        .checkpoints_shared(store.clone())
        .stop_at_tip(true)
        .build()
        .await
        .expect("build");
    assert_eq!(read_for(&source, usize::MAX, Duration::ZERO).await.len(), 6);
    drop(source);
    assert!(!store.load(stream).await.expect("load").is_empty());

    recreate(&kinesis, stream).await;
    put(&kinesis, stream, "second", 9).await;
    let source = builder(kinesis.clone(), stream)
        .checkpoints_shared(store.clone())
        .stop_at_tip(true)
        .build()
        .await
        .expect("build");
    let err = tokio::time::timeout(Duration::from_secs(20), source.next_batch())
        .await
        .expect("an answer")
        .expect_err("checkpoints of the deleted stream are refused");
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("belong to"), "{text}");
    assert!(text.contains("reset_checkpoints_on_new_stream"), "{text}");
    let typed = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<streamsift::checkpoint::IncarnationMismatch>())
        .expect("the source is an IncarnationMismatch");
    assert_ne!(typed.found.created_ms, typed.expected.created_ms);
    drop(source);

    let source = builder(kinesis, stream)
        .checkpoints_shared(store.clone())
        .reset_checkpoints_on_new_stream(true)
        .stop_at_tip(true)
        .build()
        .await
        .expect("build");
    let got = read_for(&source, usize::MAX, Duration::ZERO).await;
    assert_eq!(
        tagged(&got, "second"),
        9,
        "after the reset every record is read: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incarnation_recreated_stream_refuses_old_checkpoints() {
    let moto = Moto::start();
    refuses_old_checkpoints(
        &moto,
        "inc-mem",
        std::sync::Arc::new(MemoryCheckpointStore::new()),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    refuses_old_checkpoints(
        &moto,
        "inc-file",
        std::sync::Arc::new(FileCheckpointStore::new(dir.path())),
    )
    .await;
    #[cfg(feature = "dynamodb")]
    {
        use streamsift::checkpoint::DynamoDbCheckpointStore;
        let store = DynamoDbCheckpointStore::builder(&moto.sdk_config().await, "inc-leases")
            .create_table_if_missing(true)
            .build()
            .await
            .expect("table");
        refuses_old_checkpoints(&moto, "inc-ddb", std::sync::Arc::new(store)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_retries_under_an_always_failing_dependency() {
    let moto = Moto::start();
    let plain = Client::new(&moto.sdk_config().await);
    create_stream(&plain, "down", 2).await;
    let (kinesis, http) = faulty_client(&moto, Vec::new()).await;
    // Every call of `op` from now on answers `status` / `code`.
    let fail_always = |op: &'static str, status: u16, code: &'static str| {
        http.fail_from(Fault {
            op,
            nth: 1,
            status,
            code,
            body: None,
        })
    };
    fail_always("DescribeStreamSummary", 500, "InternalFailure");
    fail_always("ListShards", 500, "InternalFailure");
    let source = builder(kinesis, "down")
        .backoff(Duration::from_millis(10), Duration::from_millis(200))
        .build()
        .await
        .expect("build");
    let window = Duration::from_secs(2);
    let r = tokio::time::timeout(window, source.next_batch()).await;
    assert!(r.is_err(), "nothing can be read while the stream is down");
    let start_calls = http.calls_of("DescribeStreamSummary").len();
    // Backoff 10 ms doubling to 200 ms, full jitter, never below 10 ms.
    assert!(
        (3..=60).contains(&start_calls),
        "{start_calls} DescribeStreamSummary calls in {window:?}"
    );
    // Now the listing fails forever after start-up.
    http.clear_standing();
    fail_always("ListShards", 400, "LimitExceededException");
    let _ = tokio::time::timeout(window, source.next_batch()).await;
    let listings = http.calls_of("ListShards").len();
    assert!(
        (3..=60).contains(&listings),
        "{listings} ListShards calls in {window:?}"
    );
    // And GetShardIterator, once the listing works.
    http.clear_standing();
    fail_always(
        "GetShardIterator",
        400,
        "ProvisionedThroughputExceededException",
    );
    let _ = tokio::time::timeout(window, source.next_batch()).await;
    let iterators = http.calls_of("GetShardIterator").len();
    assert!(
        (2..=2 * 60).contains(&iterators),
        "{iterators} GetShardIterator calls for 2 shards in {window:?}"
    );
    assert!(source.stats().throttled >= 3, "{:?}", source.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_memory_shards_that_age_out_are_released() {
    let moto = Moto::start();
    let plain = Client::new(&moto.sdk_config().await);
    create_stream(&plain, "aging", 1).await;
    put(&plain, "aging", "a", 5).await;
    split_only_shard(&plain, "aging").await;
    put(&plain, "aging", "b", 5).await;
    // The listing as moto gives it, then with the parent gone (aged out).
    let real = plain
        .list_shards()
        .stream_name("aging")
        .send()
        .await
        .expect("ListShards");
    let open: Vec<serde_json::Value> = real
        .shards()
        .iter()
        .filter(|s| s.parent_shard_id().is_some())
        .map(|s| {
            let range = s.hash_key_range().expect("range");
            serde_json::json!({
                "ShardId": s.shard_id(),
                "ParentShardId": s.parent_shard_id(),
                "HashKeyRange": {"StartingHashKey": range.starting_hash_key(), "EndingHashKey": range.ending_hash_key()},
                "SequenceNumberRange": {"StartingSequenceNumber": s.sequence_number_range().expect("seq").starting_sequence_number()},
            })
        })
        .collect();
    assert_eq!(open.len(), 2);
    let (kinesis, http) = faulty_client(&moto, Vec::new()).await;
    let source = builder(kinesis, "aging").build().await.expect("build");
    let mut got = Vec::new();
    // Read until the 10 records are in, then 1.5 s more (several listings).
    let mut until = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(next) = tokio::time::timeout_at(until, source.next_batch()).await {
        let batch = next.expect("next_batch").expect("open stream");
        got.extend(payloads(&batch.records));
        let cps = batch_checkpoints(&batch);
        if batch.shard_end {
            // From now on the parent has aged out of the listing.
            http.fail_from(Fault {
                op: "ListShards",
                nth: 1,
                status: 200,
                code: "",
                body: Some(serde_json::json!({ "Shards": open }).to_string()),
            });
        }
        source.commit(cps).await.expect("commit");
        if got.len() == 10 {
            until = until.min(tokio::time::Instant::now() + Duration::from_millis(1500));
        }
    }
    assert_eq!(got.len(), 10, "{got:?}");
    let entries = source.stats().shard_entries;
    // Two children: known, and closed never. The parent is gone.
    assert!(
        entries <= 2,
        "the source still holds {entries} per-shard entries after its parent aged out"
    );
}

// ---------------------------------------------------------------------------
// Property: exact start positions under schedules of start-up faults.
// ---------------------------------------------------------------------------

/// An operation the source makes at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    ListShards,
    DescribeStreamSummary,
    GetShardIterator,
    GetRecords,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::ListShards => "ListShards",
            Op::DescribeStreamSummary => "DescribeStreamSummary",
            Op::GetShardIterator => "GetShardIterator",
            Op::GetRecords => "GetRecords",
        }
    }
}

/// How a call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultKind {
    Throttled,
    ServerError,
    TimedOut,
    Refused,
}

/// One step of a schedule: the next `times` calls of `op` fail as `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step {
    op: Op,
    kind: FaultKind,
    times: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Latest,
    TrimHorizon,
    /// `AT_TIMESTAMP` of a time between the `before` and `mid` records.
    AtTimestamp,
    /// From checkpoints stored after the `before` records.
    Resumed,
}

/// The stream's shards as ListShards reports them. moto empties a parent
/// into its children at a real SplitShard/MergeShards, so a reshard is
/// scripted: a real stream of 2 (or 3) open shards, listed with the first
/// one (two) closed and the last one their child. The reshard happened
/// before the source starts, so records written after the start go only to
/// the open child.
///
/// `SplitDuringRun` splits while the source runs: ListShards lists the
/// parent alone (open) until the source has read what was written to it
/// after the start, then the parent closed and its child, which takes the
/// `late` records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lineage {
    NoReshard,
    Split,
    Merge,
    SplitDuringRun,
}

#[derive(Clone, Debug)]
struct Case {
    schedule: Vec<Step>,
    start: Start,
    lineage: Lineage,
}

fn case_strategy() -> impl proptest::strategy::Strategy<Value = Case> {
    use proptest::prelude::*;
    let op = prop_oneof![
        Just(Op::ListShards),
        Just(Op::DescribeStreamSummary),
        Just(Op::GetShardIterator),
        Just(Op::GetRecords),
    ];
    let kind = prop_oneof![
        Just(FaultKind::Throttled),
        Just(FaultKind::ServerError),
        Just(FaultKind::TimedOut),
        Just(FaultKind::Refused),
    ];
    let step = (op, kind, 1usize..=3).prop_map(|(op, kind, times)| Step { op, kind, times });
    let start = prop_oneof![
        Just(Start::Latest),
        Just(Start::TrimHorizon),
        Just(Start::AtTimestamp),
        Just(Start::Resumed),
    ];
    let lineage = prop_oneof![
        2 => Just(Lineage::NoReshard),
        1 => Just(Lineage::Split),
        1 => Just(Lineage::Merge),
        1 => Just(Lineage::SplitDuringRun),
    ];
    (proptest::collection::vec(step, 0..=3), start, lineage).prop_map(
        |(schedule, start, lineage)| Case {
            schedule,
            start,
            lineage,
        },
    )
}

/// The faults of a schedule: each step takes the next calls of its op.
fn faults_of(schedule: &[Step]) -> Vec<Fault> {
    let mut next: std::collections::HashMap<&'static str, usize> = Default::default();
    let mut faults = Vec::new();
    for step in schedule {
        let op = step.op.name();
        for _ in 0..step.times {
            let n = next.entry(op).or_insert(0);
            *n += 1;
            faults.push(match step.kind {
                FaultKind::Throttled => throttle(op, *n),
                FaultKind::ServerError => Fault {
                    op,
                    nth: *n,
                    status: 500,
                    code: "InternalFailure",
                    body: None,
                },
                FaultKind::TimedOut => Fault::timed_out(op, *n),
                FaultKind::Refused => Fault::refused(op, *n),
            });
        }
    }
    faults
}

/// A record written by a case: its payload, shard, and when.
#[derive(Clone, Debug)]
struct Written {
    payload: String,
    shard: String,
    phase: &'static str,
    sequence: String,
}

/// Puts `n` records tagged `phase` into each of `shards` (by explicit hash
/// key, the shard's first), returning what was written.
async fn put_phase(
    client: &Client,
    stream: &str,
    shards: &[(String, String)],
    phase: &'static str,
    n: usize,
) -> Vec<Written> {
    let mut entries = Vec::new();
    for (shard, hash) in shards {
        for i in 0..n {
            entries.push(
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .explicit_hash_key(hash)
                    .data(Blob::new(format!("{phase}:{shard}:{i}").into_bytes()))
                    .build()
                    .expect("entry"),
            );
        }
    }
    let payloads: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8(e.data().as_ref().to_vec()).expect("utf-8"))
        .collect();
    let resp = put_entries(client, stream, entries).await;
    resp.records()
        .iter()
        .zip(payloads)
        .map(|(r, payload)| Written {
            payload,
            shard: r.shard_id().unwrap_or_default().to_string(),
            phase,
            sequence: r.sequence_number().unwrap_or_default().to_string(),
        })
        .collect()
}

/// ListShards' answer for a scripted reshard of `real` (moto's shards).
fn scripted_listing(real: &[aws_sdk_kinesis::types::Shard], lineage: Lineage) -> Option<String> {
    let parents = match lineage {
        Lineage::NoReshard => return None,
        Lineage::SplitDuringRun => {
            // Before the split: the parent alone, open.
            let p = &real[0];
            let range = p.hash_key_range().expect("range");
            let seq = p.sequence_number_range().expect("seq");
            return Some(
                serde_json::json!({ "Shards": [{
                    "ShardId": p.shard_id(),
                    "HashKeyRange": {"StartingHashKey": range.starting_hash_key(), "EndingHashKey": range.ending_hash_key()},
                    "SequenceNumberRange": {"StartingSequenceNumber": seq.starting_sequence_number()},
                }]})
                .to_string(),
            );
        }
        Lineage::Split => 1,
        Lineage::Merge => 2,
    };
    let entry = |s: &aws_sdk_kinesis::types::Shard| {
        let range = s.hash_key_range().expect("range");
        let seq = s.sequence_number_range().expect("seq");
        serde_json::json!({
            "ShardId": s.shard_id(),
            "HashKeyRange": {"StartingHashKey": range.starting_hash_key(), "EndingHashKey": range.ending_hash_key()},
            "SequenceNumberRange": {"StartingSequenceNumber": seq.starting_sequence_number()},
        })
    };
    let mut shards = Vec::new();
    for p in &real[..parents] {
        let mut e = entry(p);
        e["SequenceNumberRange"]["EndingSequenceNumber"] =
            serde_json::json!("99999999999999999999");
        shards.push(e);
    }
    let mut child = entry(&real[parents]);
    child["ParentShardId"] = serde_json::json!(real[0].shard_id());
    if parents == 2 {
        child["AdjacentParentShardId"] = serde_json::json!(real[1].shard_id());
    }
    shards.push(child);
    Some(serde_json::json!({ "Shards": shards }).to_string())
}

/// A shard id and an explicit hash key that lands in it.
type ShardKey = (String, String);

static CASE_NUMBER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs one case against `moto`: writes `before` records, (for
/// AT_TIMESTAMP) a time, `mid` records, starts the source under the
/// schedule's faults, writes `after` records, reads until quiet, and checks
/// that what was read is exactly what the start position promises, each
/// record once.
async fn run_case(moto: &Moto, case: &Case) -> Result<(), String> {
    let n = CASE_NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stream = format!("prop-{n}");
    let plain = Client::new(&moto.sdk_config().await);
    let shard_count = match case.lineage {
        Lineage::NoReshard | Lineage::Split | Lineage::SplitDuringRun => 2,
        Lineage::Merge => 3,
    };
    create_stream(&plain, &stream, shard_count).await;
    let real = plain
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .expect("ListShards")
        .shards()
        .to_vec();
    let all: Vec<(String, String)> = real
        .iter()
        .map(|s| {
            (
                s.shard_id().to_string(),
                s.hash_key_range()
                    .expect("range")
                    .starting_hash_key()
                    .to_string(),
            )
        })
        .collect();
    // Before the start, every shard that exists takes records; after it,
    // only open shards: the child of a reshard done before the start, the
    // parent of a split still to come.
    let (pre, open): (Vec<ShardKey>, Vec<ShardKey>) = match case.lineage {
        Lineage::NoReshard => (all.clone(), all.clone()),
        Lineage::Split | Lineage::Merge => (all.clone(), all[all.len() - 1..].to_vec()),
        Lineage::SplitDuringRun => (all[..1].to_vec(), all[..1].to_vec()),
    };
    let child = match case.lineage {
        Lineage::NoReshard => None,
        _ => Some(all[all.len() - 1].0.clone()),
    };

    let mut written = put_phase(&plain, &stream, &pre, "before", 3).await;
    tokio::time::sleep(Duration::from_millis(15)).await;
    let at = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_millis(15)).await;
    let store = MemoryCheckpointStore::new();
    if case.start == Start::Resumed {
        // Checkpoints after the `before` records: of every shard, or, with
        // a reshard, of the parents only (their child was never reached,
        // so it is read whole once they end).
        let mut cps = Vec::new();
        for (shard, _) in &all {
            if child.as_ref() == Some(shard) {
                continue;
            }
            let last = written
                .iter()
                .rfind(|w| &w.shard == shard)
                .expect("a before record");
            cps.push(Checkpoint {
                shard: streamsift::ShardId::new(shard),
                position: Position::Sequence(streamsift::Sequence::new(&last.sequence)),
            });
        }
        store.save(&stream, &cps).await.expect("seed checkpoints");
    }
    written.extend(put_phase(&plain, &stream, &pre, "mid", 3).await);
    tokio::time::sleep(Duration::from_millis(15)).await;

    let (kinesis, http) = faulty_client(moto, faults_of(&case.schedule)).await;
    if let Some(body) = scripted_listing(&real, case.lineage) {
        http.fail_from(listing(body));
    }
    let source = builder(kinesis, &stream)
        .call_timeout(Duration::from_millis(250))
        .checkpoints(store)
        .start_position(match case.start {
            Start::Latest => StartPosition::Latest,
            Start::TrimHorizon | Start::Resumed => StartPosition::TrimHorizon,
            Start::AtTimestamp => StartPosition::AtTimestamp(at),
        })
        .build()
        .await
        .map_err(|e| format!("build: {e}"))?;
    written.extend(put_phase(&plain, &stream, &open, "after", 3).await);

    let expects = |w: &Written| match case.start {
        Start::TrimHorizon => true,
        Start::Latest => w.phase == "after" || w.phase == "late",
        Start::AtTimestamp => w.phase != "before",
        Start::Resumed => w.phase != "before" || child.as_ref() == Some(&w.shard),
    };
    let mut got = Vec::new();
    if case.lineage == Lineage::SplitDuringRun {
        // Read what the parent holds, then split: the parent closes, its
        // child appears and takes the late records.
        let so_far = written.iter().filter(|w| expects(w)).count();
        got = read_for(&source, so_far, Duration::ZERO).await;
        http.clear_standing();
        http.fail_from(listing(
            scripted_listing(&real, Lineage::Split).expect("a split listing"),
        ));
        written.extend(put_phase(&plain, &stream, &all[1..], "late", 3).await);
    }
    let expected: Vec<&Written> = written.iter().filter(|w| expects(w)).collect();
    got.extend(
        read_for(
            &source,
            expected.len() - got.len().min(expected.len()),
            Duration::from_millis(400),
        )
        .await,
    );
    drop(source);
    let _ = plain.delete_stream().stream_name(&stream).send().await;

    let want: HashSet<&str> = expected.iter().map(|w| w.payload.as_str()).collect();
    let seen: HashSet<&str> = got.iter().map(String::as_str).collect();
    let missing: Vec<&&str> = want.difference(&seen).collect();
    let extra: Vec<&&str> = seen.difference(&want).collect();
    let mut duplicates: Vec<&String> = got
        .iter()
        .filter(|p| got.iter().filter(|q| q == p).count() > 1)
        .collect();
    duplicates.dedup();
    eprintln!(
        "  {stream}: {:?} {:?} {:?}: read {} of {} expected",
        case.start,
        case.lineage,
        case.schedule,
        got.len(),
        want.len()
    );
    if missing.is_empty() && extra.is_empty() && duplicates.is_empty() {
        return Ok(());
    }
    Err(format!(
        "stream {stream}, {case:?}: missing {missing:?}, not expected {extra:?}, read more \
         than once {duplicates:?}; read {} records, expected {}; injected faults answered: {:?}",
        got.len(),
        want.len(),
        http.calls()
            .iter()
            .filter(|c| c.injected)
            .map(|c| c.op.as_str())
            .collect::<Vec<_>>()
    ))
}

/// The property: whatever start-up calls fail, and however often, a source
/// reads exactly what its start position promises: LATEST the records
/// written after it started, TRIM_HORIZON all, AT_TIMESTAMP those at or
/// after the time, a resumed source those after its checkpoints (and a
/// child its parents led to, whole); each once. One moto server serves
/// every case, a fresh stream each.
///
/// Cases: `STREAMSIFT_PROPTEST_CASES` (default 12). Every run prints its
/// seed; a failure prints the case (schedule, start, lineage) and the seed.
/// Replay a failure with:
///
/// ```text
/// STREAMSIFT_PROPTEST_SEED=<seed> cargo test --all-features --test kinesis_faults -- start_position_exact_under_fault_schedules
/// ```
#[test]
fn start_position_exact_under_fault_schedules() {
    use proptest::test_runner::{
        Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
    };
    let cases: u32 = std::env::var("STREAMSIFT_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("STREAMSIFT_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!(
        "start_position_exact_under_fault_schedules: {cases} cases, seed {seed} \
         (replay: STREAMSIFT_PROPTEST_SEED={seed})"
    );
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        // Each case costs a second or two of moto time: shrink a little.
        max_shrink_iters: 6,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let moto = Moto::start();
    let result = runner.run(&case_strategy(), |case| {
        rt.block_on(run_case(&moto, &case))
            .map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => panic!(
            "{reason}\nminimal failing case: {case:?}\nseed {seed}: replay with \
             STREAMSIFT_PROPTEST_SEED={seed} cargo test --all-features --test kinesis_faults \
             -- start_position_exact_under_fault_schedules"
        ),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason} (seed {seed})"),
    }
}

/// A closed `--endpoint-url`: the source fails within its start-up timeout,
/// with the endpoint named first in the message, instead of retrying
/// DescribeStreamSummary without end (issue 14 §5: it hung for minutes).
/// Virtual time: connections to a closed loopback port are refused at once,
/// and every pause in between is the source's own.
#[tokio::test(start_paused = true)]
async fn startup_closed_endpoint_fails_within_the_startup_timeout() {
    let port = common::moto::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = common::moto::sdk_config_for(&endpoint).await;
    let started = tokio::time::Instant::now();
    let source = KinesisSource::builder(&config, "tweets")
        .startup_timeout(Duration::from_secs(3))
        .call_timeout(Duration::from_millis(500))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .await
        .expect("build: nothing is called before the first read");
    let err = tokio::time::timeout(Duration::from_secs(600), source.next_batch())
        .await
        .expect("the source fails instead of retrying for ever")
        .expect_err("nothing can be read from a closed endpoint");
    let lasted = started.elapsed();
    assert!(
        lasted <= Duration::from_millis(3500),
        "failed after {lasted:?}, over the 3 s start-up timeout (plus one call)"
    );
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    let hint = format!("could not reach Kinesis at {endpoint} within 3s: check --endpoint-url");
    assert!(text.contains(&hint), "hint first: {text}");
    let typed = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<StartupError>())
        .expect("the source is a StartupError");
    match typed {
        StartupError::Unreachable {
            attempts, stream, ..
        } => {
            assert!(*attempts >= 2, "retried before giving up: {attempts}");
            assert_eq!(stream, "tweets");
        }
        other => panic!("expected Unreachable, found {other:?}"),
    }
}

/// A stream that does not exist fails at once, naming the stream, after one
/// DescribeStreamSummary: no retries, whatever the start-up timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_missing_stream_fails_at_once_naming_it() {
    let moto = Moto::start();
    let (kinesis, http) = faulty_client(&moto, Vec::new()).await;
    let source = KinesisSource::builder_from_client(kinesis, "no-such-stream")
        .startup_timeout(Duration::from_secs(60))
        .build()
        .await
        .expect("build");
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(20), source.next_batch())
        .await
        .expect("an answer")
        .expect_err("a missing stream is an error");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "source failed permanently: the Kinesis stream \"no-such-stream\" does not exist"
        ),
        "hint first, naming the stream: {text}"
    );
    assert_eq!(
        http.calls_of("DescribeStreamSummary").len(),
        1,
        "a missing stream is not retried"
    );
    let typed = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<StartupError>());
    assert!(
        matches!(typed, Some(StartupError::StreamNotFound { stream, .. }) if stream == "no-such-stream"),
        "{typed:?}"
    );
}

/// The source's commit makes one attempt, SHARD_END or not: the pipeline's
/// commit retry (backoff, `commit_timeout`) is the one place that decides
/// whether to try again, so attempts never stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_makes_one_attempt_even_for_shard_end() {
    let moto = Moto::start();
    let plain = Client::new(&moto.sdk_config().await);
    create_stream(&plain, "once", 1).await;
    let store = std::sync::Arc::new(CountingFailingStore::default());
    let source = builder(plain, "once")
        .checkpoints_shared(store.clone())
        .build()
        .await
        .expect("build");
    let shard = streamsift::ShardId::new("shardId-000000000000");
    let err = source
        .commit(vec![Checkpoint {
            shard,
            position: Position::ShardEnd,
        }])
        .await
        .expect_err("the store fails");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(
        store.saves.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one save per commit call"
    );
}

/// A memory store whose saves always fail retryably, counting them.
#[derive(Debug, Default)]
struct CountingFailingStore {
    inner: MemoryCheckpointStore,
    saves: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl CheckpointStore for CountingFailingStore {
    async fn load(
        &self,
        stream: &str,
    ) -> Result<
        std::collections::BTreeMap<streamsift::ShardId, Position>,
        streamsift::CheckpointError,
    > {
        self.inner.load(stream).await
    }

    async fn save(
        &self,
        _stream: &str,
        _checkpoints: &[Checkpoint],
    ) -> Result<(), streamsift::CheckpointError> {
        self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(streamsift::CheckpointError::unavailable(
            "the store is down",
        ))
    }
}
