//! KinesisSource over a real connection: moto's server mode on loopback,
//! started by each test, with a recording and fault-injecting HTTP client
//! where a test needs to see or script calls.
#![cfg(feature = "kinesis")]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use bytes::Bytes;
use common::faulty_http::{Fault, FaultyHttp};
use common::kinesis_streams::{
    batch_checkpoints, create_stream, faulty_client, open_shards, payloads, wait_active,
};
use common::moto::Moto;
use streamsift::checkpoint::{CheckpointStore, FileCheckpointStore, MemoryCheckpointStore};
use streamsift::fakes::RecordingRouter;
use streamsift::kinesis::kpl::Aggregator;
use streamsift::kinesis::{KinesisSource, KinesisSourceBuilder, StartPosition};
use streamsift::{
    Checkpoint, ClassifyError, MemoryDeadLetter, Pipeline, Policy, Position, Prediction, RawBytes,
    Record, Source,
};

async fn client(moto: &Moto) -> Client {
    Client::new(&moto.sdk_config().await)
}

/// Puts `n` records with keys `k0..k{keys}`; payload `key:i` where i counts
/// per key from 0, so per-key order can be checked.
async fn put_keyed(
    client: &Client,
    stream: &str,
    n: usize,
    keys: usize,
    counters: &mut HashMap<String, usize>,
) {
    let mut entries = Vec::new();
    for i in 0..n {
        let key = format!("k{}", i % keys);
        let c = counters.entry(key.clone()).or_default();
        let data = format!("{key}:{c}");
        *c += 1;
        entries.push(
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(data.into_bytes()))
                .build()
                .expect("entry"),
        );
    }
    for chunk in entries.chunks(500) {
        let resp = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(chunk.to_vec()))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(resp.failed_record_count(), Some(0));
    }
}

fn builder(client: Client, stream: &str) -> KinesisSourceBuilder {
    KinesisSource::builder_from_client(client, stream)
        .stop_at_tip(true)
        .idle_wait(Duration::from_millis(50))
        .discovery_interval(Duration::from_millis(500))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
}

/// Drives a source the way the pipeline does, with every record done at
/// once: commits each batch's last position, and `SHARD_END` after a
/// shard's last batch. Returns the records in the order read.
async fn drain(source: &KinesisSource) -> Vec<Record> {
    let mut out = Vec::new();
    let fut = async {
        while let Some(batch) = source.next_batch().await.expect("next_batch") {
            let cps = batch_checkpoints(&batch);
            out.extend(batch.records);
            source.commit(cps).await.expect("commit");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("the source ended within 60 s");
    out
}

/// Every payload `key:i` appears in increasing `i` for its key.
fn assert_per_key_order(payloads: &[String]) {
    let mut last: HashMap<&str, i64> = HashMap::new();
    for p in payloads {
        let (key, n) = p.split_once(':').expect("key:n");
        let n: i64 = n.parse().expect("n");
        let prev = last.insert(key, n).unwrap_or(-1);
        assert!(n > prev, "key {key}: {n} came after {prev}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_shards_are_read_completely_exactly_once() {
    let moto = Moto::start();
    let kinesis = client(&moto).await;
    create_stream(&kinesis, "tweets", 3).await;
    let mut counters = HashMap::new();
    put_keyed(&kinesis, "tweets", 600, 40, &mut counters).await;

    let source = builder(kinesis, "tweets").build().await.expect("build");
    let records = drain(&source).await;
    let got = payloads(&records);
    assert_eq!(got.len(), 600);
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        600,
        "no duplicates"
    );
    let shards: HashSet<_> = records.iter().map(|r| r.shard.clone()).collect();
    assert_eq!(shards.len(), 3, "records came from every shard");
    assert_per_key_order(&got);
    let stats = source.stats();
    assert_eq!(stats.records, 600);
    assert!(stats.read_calls >= 3, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_routes_every_record_and_commits_to_the_store() {
    let moto = Moto::start();
    let kinesis = client(&moto).await;
    create_stream(&kinesis, "tweets", 2).await;
    let mut counters = HashMap::new();
    put_keyed(&kinesis, "tweets", 250, 10, &mut counters).await;

    let store = MemoryCheckpointStore::new();
    let source = builder(kinesis, "tweets")
        .checkpoints(store.clone())
        .build()
        .await
        .expect("build");
    let router = RecordingRouter::new();
    let report = Pipeline::new(source)
        .decode(RawBytes)
        .classify(|_: &Bytes| {
            std::future::ready(Ok::<_, ClassifyError>(Prediction::binary("yes", "no", 1.0)))
        })
        .policy(Policy::binary(0.5, "all"))
        .route(router.clone())
        .dead_letter(MemoryDeadLetter::new())
        .commit_every(50, Duration::from_millis(100))
        .run()
        .await
        .expect("run");
    assert_eq!(report.stats.records_in, 250);
    assert_eq!(report.stats.routed, 250);
    assert_eq!(router.len(), 250);
    let stored = store.positions("tweets");
    assert_eq!(stored.len(), 2, "a checkpoint per shard: {stored:?}");
    for position in stored.values() {
        assert!(matches!(position, Position::Sequence(_)), "{position:?}");
    }
}

/// Reads part of the stream, "crashes" (the pipeline future is dropped, so
/// no final commit), and restarts from the same store: the union covers
/// every record, and duplicates stay within what was read but not committed.
async fn restart_loses_nothing(
    store: std::sync::Arc<dyn CheckpointStore>,
    moto: &Moto,
    stream: &str,
) {
    let kinesis = client(moto).await;
    create_stream(&kinesis, stream, 2).await;
    let mut counters = HashMap::new();
    put_keyed(&kinesis, stream, 400, 8, &mut counters).await;

    let commit_every = 20;
    let max_in_flight = 8;
    let stream_name = stream;
    let store_for_check = store.clone();
    let stream = stream.to_string();
    let run = move |router: RecordingRouter<Bytes>| {
        let store = store.clone();
        let kinesis = kinesis.clone();
        let stream = stream.clone();
        async move {
            let source = builder(kinesis, &stream)
                .checkpoints_shared(store)
                .build()
                .await
                .expect("build");
            Pipeline::new(source)
                .decode(RawBytes)
                // Slow enough that commits land while records flow.
                .classify(|_: &Bytes| async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<_, ClassifyError>(Prediction::binary("yes", "no", 1.0))
                })
                .policy(Policy::binary(0.5, "all"))
                .route(router)
                .dead_letter(MemoryDeadLetter::new())
                .max_in_flight(max_in_flight)
                .commit_every(commit_every, Duration::from_secs(3600))
                .run()
                .await
        }
    };

    // First run: killed (its task aborted, so no final commit) once about
    // half is routed.
    let first = RecordingRouter::new();
    let handle = tokio::spawn(run(first.clone()));
    let watch = async {
        while first.len() < 200 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), watch)
        .await
        .expect("first run reached 200 records");
    handle.abort();
    let _ = handle.await;
    let first_ids: Vec<String> = first
        .deliveries()
        .into_iter()
        .map(|d| d.record_id)
        .collect();

    // What the first run committed before it died.
    let committed = store_for_check.load(stream_name).await.expect("load");

    // Second run: to the end.
    let second = RecordingRouter::new();
    let report = tokio::time::timeout(Duration::from_secs(60), run(second.clone()))
        .await
        .expect("second run finished")
        .expect("second run");
    let second_ids: Vec<String> = second
        .deliveries()
        .into_iter()
        .map(|d| d.record_id)
        .collect();

    let all: HashSet<&String> = first_ids.iter().chain(second_ids.iter()).collect();
    assert_eq!(all.len(), 400, "every record delivered at least once");
    assert!(
        !committed.is_empty(),
        "the first run committed something before the crash"
    );
    let is_committed = |id: &str| {
        let (shard, seq) = id.rsplit_once(':').expect("shard:sequence");
        match committed.get(&streamsift::ShardId::new(shard)) {
            Some(Position::Sequence(c)) => {
                streamsift::compare_sequence_numbers(seq, &c.number) != std::cmp::Ordering::Greater
            }
            Some(Position::ShardEnd) => true,
            None => false,
        }
    };
    // Nothing at or before a committed checkpoint is read again; what is
    // read again is exactly what the first run did after its last commit.
    let first_set: HashSet<&String> = first_ids.iter().collect();
    let duplicates: Vec<&String> = second_ids
        .iter()
        .filter(|id| first_set.contains(id))
        .collect();
    for id in &duplicates {
        assert!(!is_committed(id), "{id} was committed, yet delivered again");
    }
    let uncommitted_in_first = first_ids.iter().filter(|id| !is_committed(id)).count();
    assert_eq!(
        duplicates.len(),
        uncommitted_in_first,
        "every record done but not committed is redone, and nothing else"
    );
    assert!(
        duplicates.len() < 200,
        "{} duplicates: some of the first run's work was kept",
        duplicates.len()
    );
    assert_eq!(report.stats.records_in as usize, second_ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_the_file_store_loses_nothing() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    restart_loses_nothing(
        std::sync::Arc::new(FileCheckpointStore::new(dir.path())),
        &moto,
        "tweets",
    )
    .await;
    assert!(
        dir.path().read_dir().expect("dir").count() >= 1,
        "a checkpoint file was written"
    );
}

#[cfg(feature = "dynamodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_the_dynamodb_store_loses_nothing() {
    use streamsift::checkpoint::dynamodb::DynamoDbCheckpointStore;
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let store = DynamoDbCheckpointStore::builder(&config, "streamsift-leases")
        .worker_id("worker-1")
        .create_table_if_missing(true)
        .build()
        .await
        .expect("create lease table");
    restart_loses_nothing(std::sync::Arc::new(store), &moto, "tweets").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_children_are_read_after_their_parents_in_key_order() {
    let moto = Moto::start();
    let kinesis = client(&moto).await;
    create_stream(&kinesis, "reshard", 1).await;
    let mut counters = HashMap::new();
    put_keyed(&kinesis, "reshard", 100, 12, &mut counters).await;

    // Split the only shard in the middle of its hash range.
    let shards = kinesis
        .list_shards()
        .stream_name("reshard")
        .send()
        .await
        .expect("ListShards");
    let parent = shards.shards()[0].shard_id().to_string();
    kinesis
        .split_shard()
        .stream_name("reshard")
        .shard_to_split(&parent)
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .expect("SplitShard");
    wait_active(&kinesis, "reshard").await;
    put_keyed(&kinesis, "reshard", 100, 12, &mut counters).await;

    // Merge the two children back into one.
    let open = open_shards(&kinesis, "reshard").await;
    assert_eq!(open.len(), 2, "the split made two open children: {open:?}");
    kinesis
        .merge_shards()
        .stream_name("reshard")
        .shard_to_merge(&open[0])
        .adjacent_shard_to_merge(&open[1])
        .send()
        .await
        .expect("MergeShards");
    wait_active(&kinesis, "reshard").await;
    put_keyed(&kinesis, "reshard", 100, 12, &mut counters).await;

    let lineage = kinesis
        .list_shards()
        .stream_name("reshard")
        .send()
        .await
        .expect("ListShards");
    let parents: BTreeMap<String, Vec<String>> = lineage
        .shards()
        .iter()
        .map(|s| {
            let p = s
                .parent_shard_id()
                .into_iter()
                .chain(s.adjacent_parent_shard_id())
                .map(str::to_string)
                .collect();
            (s.shard_id().to_string(), p)
        })
        .collect();
    assert_eq!(parents.len(), 4, "{parents:?}");

    let store = MemoryCheckpointStore::new();
    let source = builder(kinesis, "reshard")
        .checkpoints(store.clone())
        .build()
        .await
        .expect("build");
    let records = drain(&source).await;
    let got = payloads(&records);
    assert_eq!(got.len(), 300);
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 300);
    assert_per_key_order(&got);
    // Every record of a parent comes before any record of its children.
    let first_of: HashMap<String, usize> = records
        .iter()
        .enumerate()
        .rev()
        .map(|(i, r)| (r.shard.to_string(), i))
        .collect();
    let last_of: HashMap<String, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.shard.to_string(), i))
        .collect();
    for (child, ps) in &parents {
        for p in ps {
            if let (Some(pl), Some(cf)) = (last_of.get(p), first_of.get(child)) {
                assert!(
                    pl < cf,
                    "child {child} read (at {cf}) before its parent {p} ended (at {pl})"
                );
            }
        }
    }
    // Closed shards are checkpointed at SHARD_END; the open one is not.
    let stored = store.positions("reshard");
    let ended = stored
        .values()
        .filter(|p| **p == Position::ShardEnd)
        .count();
    assert_eq!(
        ended, 3,
        "three closed shards end with SHARD_END: {stored:?}"
    );
    assert_eq!(source.stats().shards_ended, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_iterator_is_renewed_without_loss_or_duplicates() {
    let moto = Moto::start();
    let plain = client(&moto).await;
    create_stream(&plain, "expiry", 1).await;
    let mut counters = HashMap::new();
    put_keyed(&plain, "expiry", 50, 5, &mut counters).await;

    let faults = vec![Fault {
        op: "GetRecords",
        nth: 2,
        status: 400,
        code: "ExpiredIteratorException",
        body: None,
    }];
    let (kinesis, http) = faulty_client(&moto, faults).await;
    // Small pages, so the expiry hits in the middle of the shard.
    let source = builder(kinesis, "expiry")
        .limit(10)
        .build()
        .await
        .expect("build");
    let got = payloads(&drain(&source).await);
    assert_eq!(got.len(), 50);
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 50);
    assert_per_key_order(&got);
    assert_eq!(source.stats().iterators_renewed, 1);
    // One iterator at the start, one renewal.
    assert_eq!(http.calls_of("GetShardIterator").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried_and_nothing_is_lost() {
    let moto = Moto::start();
    let plain = client(&moto).await;
    create_stream(&plain, "faults", 2).await;
    let mut counters = HashMap::new();
    put_keyed(&plain, "faults", 200, 10, &mut counters).await;

    let faults = vec![
        Fault {
            op: "ListShards",
            nth: 1,
            status: 400,
            code: "LimitExceededException",
            body: None,
        },
        Fault {
            op: "GetShardIterator",
            nth: 1,
            status: 500,
            code: "InternalFailure",
            body: None,
        },
        Fault {
            op: "GetRecords",
            nth: 1,
            status: 400,
            code: "ProvisionedThroughputExceededException",
            body: None,
        },
        Fault {
            op: "GetRecords",
            nth: 2,
            status: 400,
            code: "ProvisionedThroughputExceededException",
            body: None,
        },
        Fault {
            op: "GetRecords",
            nth: 4,
            status: 503,
            code: "ServiceUnavailable",
            body: None,
        },
        Fault {
            op: "GetRecords",
            nth: 6,
            status: 400,
            code: "KMSThrottlingException",
            body: None,
        },
    ];
    let (kinesis, http) = faulty_client(&moto, faults).await;
    let source = builder(kinesis, "faults")
        .limit(25)
        .build()
        .await
        .expect("build");
    let got = payloads(&drain(&source).await);
    assert_eq!(got.len(), 200);
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 200);
    assert_per_key_order(&got);
    let stats = source.stats();
    assert_eq!(stats.throttled, 4, "{stats:?}");
    assert_eq!(stats.transient_errors, 2, "{stats:?}");
    assert_eq!(http.calls().iter().filter(|c| c.injected).count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_a_clear_permanent_error() {
    let moto = Moto::start();
    let kinesis = client(&moto).await;
    let source = builder(kinesis, "no-such-stream")
        .build()
        .await
        .expect("build");
    let err = source
        .next_batch()
        .await
        .expect_err("a missing stream fails");
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("ResourceNotFoundException"), "{text}");
    assert!(text.contains("check the stream name"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_records_stays_within_five_calls_per_second_per_shard() {
    let moto = Moto::start();
    let plain = client(&moto).await;
    create_stream(&plain, "rate", 2).await;
    let mut counters = HashMap::new();
    put_keyed(&plain, "rate", 20, 4, &mut counters).await;

    // A throttle in the middle too: the retry must not bunch calls up.
    let faults = vec![Fault {
        op: "GetRecords",
        nth: 5,
        status: 400,
        code: "ProvisionedThroughputExceededException",
        body: None,
    }];
    let (kinesis, http) = faulty_client(&moto, faults).await;
    // Never stop, never idle: the reader polls as fast as it is allowed.
    let source = KinesisSource::builder_from_client(kinesis, "rate")
        .idle_wait(Duration::ZERO)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .await
        .expect("build");
    let reading = async {
        loop {
            let batch = source.next_batch().await.expect("next_batch");
            assert!(batch.is_some());
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), reading).await;

    let mut by_shard: HashMap<String, Vec<tokio::time::Instant>> = HashMap::new();
    for call in http.calls_of("GetRecords") {
        by_shard
            .entry(call.shard.expect("every GetRecords is traced to a shard"))
            .or_default()
            .push(call.at);
    }
    assert_eq!(by_shard.len(), 2, "both shards polled");
    for (shard, times) in by_shard {
        assert!(
            times.len() >= 10,
            "{shard}: only {} calls in 3 s; the reader should poll at the limit",
            times.len()
        );
        assert_paced(&shard, &times);
    }
}

/// The source's pacing as seen on the wire: consecutive GetRecords calls of
/// one shard at least 200 ms apart (the source paces each call from when the
/// previous one was handed to the HTTP client), and so never more than five
/// in any one-second window. 5 ms allows for the few statements between the
/// source's clock reading and this client's.
fn assert_paced(shard: &str, times: &[tokio::time::Instant]) {
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(195),
            "{shard}: two GetRecords calls {gap:?} apart; expected at least 200 ms \
             (gaps: {:?})",
            times.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
        );
    }
    for w in times.windows(6) {
        let span = w[5] - w[0];
        assert!(
            span >= Duration::from_millis(995),
            "{shard}: 6 calls within {span:?}"
        );
    }
}

/// Credentials that take 150 ms to resolve on every third request, as a
/// refresh from STS or the instance metadata service does: the request
/// leaves that much after the reader began it.
#[derive(Debug, Default)]
struct SlowCredentials(std::sync::atomic::AtomicUsize);

impl aws_credential_types::provider::ProvideCredentials for SlowCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            if n % 3 == 2 {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            Ok(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "slow",
            ))
        })
    }
}

/// A call held back before it leaves (a slow credentials refresh) must not
/// let the next call of the shard follow it within less than 200 ms: the
/// pace counts from when a call left, not from when the reader began it.
/// The old reader paced from the start, so the call after a held-back one
/// left only 50 ms after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_spins_get_records_paced_from_when_each_call_leaves() {
    let moto = Moto::start();
    let plain = client(&moto).await;
    create_stream(&plain, "paced", 1).await;
    let mut counters = HashMap::new();
    put_keyed(&plain, "paced", 10, 2, &mut counters).await;

    let http = FaultyHttp::new(
        aws_smithy_http_client::Builder::new().build_http(),
        Vec::new(),
    );
    let config = moto
        .sdk_config()
        .await
        .into_builder()
        .http_client(http.clone())
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                SlowCredentials::default(),
            ),
        )
        .identity_cache(aws_sdk_kinesis::config::IdentityCache::no_cache())
        .build();
    let source = KinesisSource::builder(&config, "paced")
        .idle_wait(Duration::ZERO)
        .build()
        .await
        .expect("build");
    let reading = async {
        loop {
            let batch = source.next_batch().await.expect("next_batch");
            assert!(batch.is_some());
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), reading).await;
    let times: Vec<tokio::time::Instant> = http
        .calls_of("GetRecords")
        .into_iter()
        .map(|c| c.at)
        .collect();
    assert!(
        times.len() >= 6,
        "only {} GetRecords calls in 3 s; the reader should poll at the limit",
        times.len()
    );
    assert_paced("shardId-000000000000", &times);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_aggregates_are_unpacked_and_a_corrupt_one_is_dead_lettered() {
    let moto = Moto::start();
    let kinesis = client(&moto).await;
    create_stream(&kinesis, "kpl", 1).await;

    // Three aggregates of 10 user records each, the middle one corrupted.
    let mut aggregates = Vec::new();
    for a in 0..3 {
        let mut agg = Aggregator::new();
        for i in 0..10 {
            let key = format!("user{}", i % 3);
            assert!(
                agg.add(&key, None, format!("{{\"a\":{a},\"i\":{i}}}").as_bytes())
                    .expect("add")
                    .is_none()
            );
        }
        aggregates.push(agg.flush().expect("an aggregate"));
    }
    for (n, agg) in aggregates.iter().enumerate() {
        let mut data = agg.data.to_vec();
        if n == 1 {
            let mid = data.len() / 2;
            data[mid] ^= 0xFF;
        }
        kinesis
            .put_record()
            .stream_name("kpl")
            .partition_key(&agg.partition_key)
            .data(Blob::new(data))
            .send()
            .await
            .expect("PutRecord");
    }

    let dead = MemoryDeadLetter::new();
    let router = RecordingRouter::new();
    let source = builder(kinesis.clone(), "kpl")
        .build()
        .await
        .expect("build");
    let report = Pipeline::new(source)
        .json::<serde_json::Value>()
        .classify(|_: &serde_json::Value| {
            std::future::ready(Ok::<_, ClassifyError>(Prediction::binary("yes", "no", 1.0)))
        })
        .policy(Policy::binary(0.5, "all"))
        .route(router.clone())
        .dead_letter(dead.clone())
        .run()
        .await
        .expect("run");
    assert_eq!(router.len(), 20, "the two good aggregates' user records");
    assert_eq!(report.stats.dead_lettered, 1);
    let entries = dead.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kind, "corrupt");
    assert!(
        entries[0].reason.contains("KPL aggregate"),
        "{}",
        entries[0].reason
    );
    // User records carry sub-sequence numbers.
    let ids: Vec<String> = router
        .deliveries()
        .into_iter()
        .map(|d| d.record_id)
        .collect();
    assert!(ids.iter().all(|id| id.contains('/')), "{ids:?}");

    // A checkpoint inside an aggregate: a restart skips what was done.
    let store = MemoryCheckpointStore::new();
    let first = builder(kinesis.clone(), "kpl")
        .checkpoints(store.clone())
        .build()
        .await
        .expect("build");
    let batch = first.next_batch().await.expect("next").expect("a batch");
    let fourth = batch.records[3].clone();
    assert_eq!(fourth.sequence.sub_sequence, Some(3));
    first
        .commit(vec![Checkpoint {
            shard: fourth.shard.clone(),
            position: Position::Sequence(fourth.sequence.clone()),
        }])
        .await
        .expect("commit");
    drop(first);
    let second = builder(kinesis, "kpl")
        .checkpoints(store)
        .build()
        .await
        .expect("build");
    let rest = drain(&second).await;
    assert_eq!(
        rest.len(),
        6 + 1 + 10,
        "6 left of the first aggregate, the corrupt one, the third"
    );
    assert_eq!(rest[0].sequence.number, fourth.sequence.number);
    assert_eq!(rest[0].sequence.sub_sequence, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_skips_old_records_and_reads_new_ones() {
    let moto = Moto::start();
    let kinesis = client(&moto).await;
    create_stream(&kinesis, "latest", 1).await;
    let mut counters = HashMap::new();
    put_keyed(&kinesis, "latest", 10, 2, &mut counters).await;

    let source = KinesisSource::builder_from_client(kinesis.clone(), "latest")
        .start_position(StartPosition::Latest)
        .idle_wait(Duration::from_millis(50))
        .build()
        .await
        .expect("build");
    // Give the reader time to take its LATEST iterator, then write more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    put_keyed(&kinesis, "latest", 6, 2, &mut counters).await;
    let mut got = Vec::new();
    while got.len() < 6 {
        let batch = tokio::time::timeout(Duration::from_secs(20), source.next_batch())
            .await
            .expect("new records arrive")
            .expect("next_batch")
            .expect("open stream");
        got.extend(payloads(&batch.records));
    }
    assert_eq!(got.len(), 6);
    assert!(
        got.iter()
            .all(|p| p.split_once(':').unwrap().1.parse::<u32>().unwrap() >= 5),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shards_follows_next_token_without_naming_the_stream_again() {
    let moto = Moto::start();
    let plain = client(&moto).await;
    create_stream(&plain, "paged", 3).await;
    let mut counters = HashMap::new();
    put_keyed(&plain, "paged", 90, 9, &mut counters).await;
    // moto's own paging wants the stream named again with the token, which
    // Kinesis refuses; so the two pages are scripted, from moto's real
    // shards, and every other call goes to moto.
    let real = plain
        .list_shards()
        .stream_name("paged")
        .send()
        .await
        .expect("ListShards");
    let shard_json = |s: &aws_sdk_kinesis::types::Shard| {
        let range = s.hash_key_range().expect("range");
        let seq = s.sequence_number_range().expect("seq range");
        serde_json::json!({
            "ShardId": s.shard_id(),
            "HashKeyRange": {"StartingHashKey": range.starting_hash_key(), "EndingHashKey": range.ending_hash_key()},
            "SequenceNumberRange": {"StartingSequenceNumber": seq.starting_sequence_number()},
        })
    };
    let shards: Vec<_> = real.shards().iter().map(shard_json).collect();
    assert_eq!(shards.len(), 3);
    let page1 =
        serde_json::json!({"Shards": [shards[0].clone()], "NextToken": "page-2"}).to_string();
    let page2 = serde_json::json!({"Shards": [shards[1].clone(), shards[2].clone()]}).to_string();
    let faults = vec![
        Fault {
            op: "ListShards",
            nth: 1,
            status: 200,
            code: "",
            body: Some(page1),
        },
        Fault {
            op: "ListShards",
            nth: 2,
            status: 200,
            code: "",
            body: Some(page2),
        },
    ];
    let (kinesis, http) = faulty_client(&moto, faults).await;
    let source = builder(kinesis, "paged")
        .list_shards_page_size(1)
        .discovery_interval(Duration::from_secs(3600))
        .build()
        .await
        .expect("build");
    let got = payloads(&drain(&source).await);
    assert_eq!(got.len(), 90, "records from the shards of both pages");
    let calls = http.calls_of("ListShards");
    let first: serde_json::Value = serde_json::from_str(&calls[0].body).expect("json");
    let second: serde_json::Value = serde_json::from_str(&calls[1].body).expect("json");
    assert_eq!(first["StreamName"], "paged");
    assert_eq!(first["MaxResults"], 1);
    assert_eq!(second["NextToken"], "page-2");
    assert!(
        second.get("StreamName").is_none(),
        "the stream is not named with a token: {second}"
    );
}
