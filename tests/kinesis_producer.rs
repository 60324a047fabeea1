//! KinesisProducer over a real connection (moto, started by each test) and
//! over a scripted HTTP layer for the answers moto never gives (partial
//! failures, throttling, permanent errors).
#![cfg(feature = "kinesis")]

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_kinesis::error::{BoxError, SdkError};
use aws_sdk_kinesis::operation::put_records::PutRecordsError;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use streamsift::RetryPolicy;
use streamsift::kinesis::kpl;
use streamsift::kinesis::producer::{
    KinesisProducer, MAX_RECORD_BYTES, ProduceError, ProducerRecord,
};

// ---------------------------------------------------------------------------
// Seams: a PutRecords counter (interceptor) and a scripted HTTP client.

/// Counts the PutRecords calls a client transmits, with the number of
/// entries and bytes (data + partition keys) of each.
#[derive(Clone, Debug, Default)]
struct PutRecordsCounter {
    calls: Arc<Mutex<Vec<(usize, usize)>>>,
}

impl PutRecordsCounter {
    fn calls(&self) -> Vec<(usize, usize)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Intercept for PutRecordsCounter {
    fn name(&self) -> &'static str {
        "PutRecordsCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        if request.headers().get("x-amz-target") != Some("Kinesis_20131202.PutRecords") {
            return Ok(());
        }
        let body: Value = serde_json::from_slice(request.body().bytes().unwrap_or(b"{}"))?;
        let entries = decode_entries(&body);
        let bytes = entries.iter().map(|(k, d)| k.len() + d.len()).sum();
        self.calls.lock().unwrap().push((entries.len(), bytes));
        Ok(())
    }
}

/// (partition key, data) of each entry of a PutRecords request body.
fn decode_entries(body: &Value) -> Vec<(String, Vec<u8>)> {
    body["Records"]
        .as_array()
        .expect("a Records array")
        .iter()
        .map(|e| {
            let key = e["PartitionKey"]
                .as_str()
                .expect("a PartitionKey")
                .to_owned();
            let data = B64
                .decode(e["Data"].as_str().expect("a Data field"))
                .expect("base64 data");
            (key, data)
        })
        .collect()
}

/// One request as the scripted client saw it.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    body: Value,
}

#[derive(Debug, Default)]
struct ScriptState {
    responses: VecDeque<(u16, Value)>,
    seen: Vec<Seen>,
}

/// An HTTP client that answers from a script, in order, and records every
/// request. The real SDK serialises requests and parses these answers.
#[derive(Clone, Debug, Default)]
struct Scripted {
    state: Arc<Mutex<ScriptState>>,
}

impl Scripted {
    fn new(responses: impl IntoIterator<Item = (u16, Value)>) -> Self {
        let s = Scripted::default();
        s.state.lock().unwrap().responses = responses.into_iter().collect();
        s
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn client(&self) -> Client {
        let conf = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "testing", "testing", None, None, "scripted",
            ))
            .http_client(self.clone())
            .retry_config(RetryConfig::disabled())
            .build();
        Client::from_conf(conf)
    }
}

impl HttpConnector for Scripted {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut state = self.state.lock().unwrap();
        let target = request
            .headers()
            .get("x-amz-target")
            .unwrap_or("")
            .to_owned();
        let body = serde_json::from_slice(request.body().bytes().unwrap_or(b"null"))
            .unwrap_or(Value::Null);
        state.seen.push(Seen { target, body });
        let Some((status, answer)) = state.responses.pop_front() else {
            return HttpConnectorFuture::ready(Err(
                aws_smithy_runtime_api::client::result::ConnectorError::user(
                    "the test script has no answer left for this request".into(),
                ),
            ));
        };
        let mut response = HttpResponse::new(
            StatusCode::try_from(status).expect("a valid status"),
            SdkBody::from(answer.to_string()),
        );
        response
            .headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for Scripted {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

fn ok_entry(shard: &str, seq: u64) -> Value {
    json!({"ShardId": shard, "SequenceNumber": seq.to_string()})
}

fn failed_entry(code: &str) -> Value {
    json!({"ErrorCode": code, "ErrorMessage": format!("scripted {code}")})
}

fn put_records_answer(entries: Vec<Value>) -> (u16, Value) {
    let failed = entries
        .iter()
        .filter(|e| e.get("ErrorCode").is_some())
        .count();
    (
        200,
        json!({"FailedRecordCount": failed, "Records": entries}),
    )
}

fn error_answer(status: u16, code: &str) -> (u16, Value) {
    (
        status,
        json!({"__type": code, "message": format!("scripted {code}")}),
    )
}

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        multiplier: 2.0,
    }
}

// ---------------------------------------------------------------------------
// moto helpers

async fn moto_client(moto: &common::moto::Moto, counter: &PutRecordsCounter) -> Client {
    let sdk = moto.sdk_config().await;
    let conf = aws_sdk_kinesis::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    Client::from_conf(conf)
}

async fn create_stream(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream on moto");
}

/// Every record of every shard, from TRIM_HORIZON: shard id -> (partition
/// key, data, sequence number) in shard order.
async fn read_all(
    client: &Client,
    stream: &str,
) -> BTreeMap<String, Vec<(String, Vec<u8>, String)>> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    let mut out = BTreeMap::new();
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator
            .expect("an iterator");
        let mut records = Vec::new();
        loop {
            let page = client
                .get_records()
                .shard_iterator(&iterator)
                .limit(10_000)
                .send()
                .await
                .expect("GetRecords");
            let empty = page.records().is_empty();
            for r in page.records() {
                records.push((
                    r.partition_key().to_owned(),
                    r.data().as_ref().to_vec(),
                    r.sequence_number().to_owned(),
                ));
            }
            match page.next_shard_iterator() {
                Some(next) if !empty => iterator = next.to_owned(),
                _ => break,
            }
        }
        out.insert(shard.shard_id().to_owned(), records);
    }
    out
}

// ---------------------------------------------------------------------------
// moto: real connection

#[tokio::test]
async fn records_arrive_on_two_shards_with_their_keys() {
    let moto = common::moto::Moto::start();
    let counter = PutRecordsCounter::default();
    let client = moto_client(&moto, &counter).await;
    create_stream(&client, "tweets", 2).await;

    let producer = KinesisProducer::builder_from_client(client.clone(), "tweets").build();
    let n = 300;
    let records: Vec<ProducerRecord> = (0..n)
        .map(|i| ProducerRecord::new(format!("tweet {i}")).partition_key(format!("user-{}", i % 7)))
        .collect();
    let report = producer.send(records).await.expect("valid input");
    assert_eq!(report.len(), n);
    assert!(
        report.is_complete(),
        "failures: {:?}",
        report.failures().collect::<Vec<_>>()
    );
    assert_eq!(counter.calls().len(), 1, "300 small records fit one call");

    let stored = read_all(&client, "tweets").await;
    assert_eq!(stored.len(), 2);
    // Where the stream says each record is, by data.
    let mut found: HashMap<Vec<u8>, (String, String, String)> = HashMap::new();
    for (shard, records) in &stored {
        for (key, data, seq) in records {
            let before = found.insert(data.clone(), (shard.clone(), key.clone(), seq.clone()));
            assert!(
                before.is_none(),
                "record stored twice: {}",
                String::from_utf8_lossy(data)
            );
        }
    }
    assert_eq!(found.len(), n, "every record stored exactly once");
    let mut shards_used = std::collections::HashSet::new();
    for (i, placed) in report.accepted() {
        let data = format!("tweet {i}").into_bytes();
        let (shard, key, seq) = found.get(&data).expect("stored");
        assert_eq!(key, &format!("user-{}", i % 7));
        assert_eq!(
            shard, &placed.shard_id,
            "report names the shard that holds record {i}"
        );
        assert_eq!(seq, &placed.sequence_number);
        assert_eq!(placed.sub_sequence_number, None);
        assert_eq!(placed.attempts, 1);
        shards_used.insert(shard.clone());
    }
    assert_eq!(shards_used.len(), 2, "7 keys spread over both shards");
    // Per key, one shard, in input order.
    for k in 0..7 {
        let key = format!("user-{k}");
        let on: Vec<&String> = stored
            .iter()
            .filter(|(_, rs)| rs.iter().any(|(rk, _, _)| rk == &key))
            .map(|(s, _)| s)
            .collect();
        assert_eq!(on.len(), 1, "{key} on one shard");
        let order: Vec<String> = stored[on[0]]
            .iter()
            .filter(|(rk, _, _)| rk == &key)
            .map(|(_, d, _)| String::from_utf8(d.clone()).unwrap())
            .collect();
        let expected: Vec<String> = (0..n)
            .filter(|i| i % 7 == k)
            .map(|i| format!("tweet {i}"))
            .collect();
        assert_eq!(order, expected, "{key} in input order");
    }
}

#[tokio::test]
async fn batches_split_at_500_records() {
    let moto = common::moto::Moto::start();
    let counter = PutRecordsCounter::default();
    let client = moto_client(&moto, &counter).await;
    create_stream(&client, "many", 1).await;

    let producer = KinesisProducer::builder_from_client(client.clone(), "many")
        .seed(7)
        .build();
    let report = producer
        .send_all((0..1201).map(|i| format!("r{i}")))
        .await
        .expect("valid input");
    assert!(report.is_complete());
    assert_eq!(report.calls(), 3);
    let calls = counter.calls();
    assert_eq!(
        calls.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![500, 500, 201],
        "entries per PutRecords call"
    );
    let stored = read_all(&client, "many").await;
    let data: Vec<Vec<u8>> = stored.values().flatten().map(|r| r.1.clone()).collect();
    let expected: Vec<Vec<u8>> = (0..1201).map(|i| format!("r{i}").into_bytes()).collect();
    assert_eq!(data, expected, "all 1201 stored once, in order (one shard)");
}

#[tokio::test]
async fn batches_split_at_5_mib_counting_partition_keys() {
    let moto = common::moto::Moto::start();
    let counter = PutRecordsCounter::default();
    let client = moto_client(&moto, &counter).await;
    create_stream(&client, "big", 1).await;

    // Each record is 1 MiB exactly with its 2-byte key: 5 fill a call to
    // the byte (5 MiB), so 11 records need 3 calls.
    let producer = KinesisProducer::builder_from_client(client.clone(), "big").build();
    let records: Vec<ProducerRecord> = (0..11u8)
        .map(|i| {
            ProducerRecord::new(vec![b'a' + i; MAX_RECORD_BYTES - 2])
                .partition_key(format!("k{}", i % 10))
        })
        .collect();
    let report = producer.send(records).await.expect("valid input");
    assert!(
        report.is_complete(),
        "failures: {:?}",
        report.failures().collect::<Vec<_>>()
    );
    let calls = counter.calls();
    assert_eq!(calls.iter().map(|c| c.0).collect::<Vec<_>>(), vec![5, 5, 1]);
    assert!(
        calls.iter().all(|c| c.1 <= 5 * 1024 * 1024),
        "bytes per call: {calls:?}"
    );
    assert_eq!(
        calls[0].1,
        5 * 1024 * 1024,
        "the first call is full to the byte"
    );

    // Six records whose data and keys add up to 5 MiB exactly fit one call;
    // one more byte of data and they need two. The data alone stays under
    // 5 MiB, so this only holds if the partition keys are counted.
    let six = |last: usize| -> Vec<ProducerRecord> {
        let mut sizes = vec![MAX_RECORD_BYTES - 2; 4];
        sizes.push(MAX_RECORD_BYTES - 12);
        sizes.push(last);
        sizes
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                ProducerRecord::new(vec![b'0' + i as u8; n]).partition_key(format!("k{i}"))
            })
            .collect()
    };
    for (last, expected) in [(8, vec![6]), (9, vec![5, 1])] {
        let counter = PutRecordsCounter::default();
        let producer =
            KinesisProducer::builder_from_client(moto_client(&moto, &counter).await, "big").build();
        let records = six(last);
        let data_bytes: usize = records.iter().map(|r| r.data().len()).sum();
        assert!(data_bytes < 5 * 1024 * 1024);
        let report = producer.send(records).await.expect("valid input");
        assert!(report.is_complete());
        let calls = counter.calls();
        assert_eq!(
            calls.iter().map(|c| c.0).collect::<Vec<_>>(),
            expected,
            "last record {last} bytes"
        );
        assert!(
            calls.iter().all(|c| c.1 <= 5 * 1024 * 1024),
            "bytes per call: {calls:?}"
        );
    }

    let stored = read_all(&client, "big").await;
    assert_eq!(stored.values().map(Vec::len).sum::<usize>(), 11 + 6 + 6);
}

#[tokio::test]
async fn aggregated_records_deaggregate_to_the_originals_on_their_own_shards() {
    let moto = common::moto::Moto::start();
    let counter = PutRecordsCounter::default();
    let client = moto_client(&moto, &counter).await;
    create_stream(&client, "agg", 2).await;

    let producer = KinesisProducer::builder_from_client(client.clone(), "agg")
        .aggregate(true)
        .aggregate_max_bytes(4 * 1024)
        .build();
    let n = 400;
    let originals: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("user-{}", i % 10),
                format!("{{\"id\":{i},\"text\":\"tweet number {i}\"}}").into_bytes(),
            )
        })
        .collect();
    let report = producer
        .send(
            originals
                .iter()
                .map(|(k, d)| ProducerRecord::new(d.clone()).partition_key(k.clone()))
                .collect(),
        )
        .await
        .expect("valid input");
    assert!(
        report.is_complete(),
        "failures: {:?}",
        report.failures().collect::<Vec<_>>()
    );
    assert!(report.aggregates() > 0);
    let kinesis_records: usize = counter.calls().iter().map(|c| c.0).sum();
    assert!(
        kinesis_records < n / 5,
        "{kinesis_records} Kinesis records for {n} user records: aggregation packs them"
    );

    // The shard map, to check each user record is where its key belongs.
    let shards = client
        .list_shards()
        .stream_name("agg")
        .send()
        .await
        .unwrap();
    let range_of: HashMap<String, (u128, u128)> = shards
        .shards()
        .iter()
        .map(|s| {
            let r = s.hash_key_range().unwrap();
            (
                s.shard_id().to_owned(),
                (
                    r.starting_hash_key().parse().unwrap(),
                    r.ending_hash_key().parse().unwrap(),
                ),
            )
        })
        .collect();

    let stored = read_all(&client, "agg").await;
    let mut got: HashMap<Vec<u8>, (String, String, String, u64)> = HashMap::new();
    let mut by_key: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for (shard, records) in &stored {
        let (start, end) = range_of[shard];
        for (_outer_key, payload, seq) in records {
            let users = kpl::deaggregate(payload)
                .expect("a valid aggregate")
                .unwrap_or_else(|| {
                    panic!("shard {shard} holds a plain record; expected aggregates")
                });
            for u in users {
                let h = kpl::partition_key_hash(&u.partition_key);
                assert!(
                    start <= h && h <= end,
                    "{} landed on {shard}, outside its range",
                    u.partition_key
                );
                by_key
                    .entry(u.partition_key.clone())
                    .or_default()
                    .push(u.data.to_vec());
                let before = got.insert(
                    u.data.to_vec(),
                    (shard.clone(), u.partition_key, seq.clone(), u.sub_sequence),
                );
                assert!(before.is_none(), "user record stored twice");
            }
        }
    }
    assert_eq!(got.len(), n, "every user record stored once");
    for (i, (key, data)) in originals.iter().enumerate() {
        let (shard, k, seq, sub) = &got[data];
        assert_eq!(k, key);
        let placed = report.outcomes()[i].as_ref().unwrap();
        assert_eq!(&placed.shard_id, shard);
        assert_eq!(&placed.sequence_number, seq);
        assert_eq!(placed.sub_sequence_number, Some(*sub), "record {i}");
    }
    for (key, datas) in by_key {
        let expected: Vec<Vec<u8>> = originals
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, d)| d.clone())
            .collect();
        assert_eq!(datas, expected, "{key}'s records in input order");
    }
}

// ---------------------------------------------------------------------------
// Validation: nothing is sent

#[tokio::test]
async fn an_oversized_record_fails_before_any_call() {
    let script = Scripted::new([put_records_answer(vec![ok_entry(
        "shardId-000000000000",
        1,
    )])]);
    let producer = KinesisProducer::builder_from_client(script.client(), "tweets").build();
    let records = vec![
        ProducerRecord::new("small").partition_key("a"),
        ProducerRecord::new("fine").partition_key("b"),
        // 1 MiB of data + a 1-byte key: one byte over.
        ProducerRecord::new(vec![0u8; MAX_RECORD_BYTES]).partition_key("c"),
    ];
    let err = producer.send(records).await.expect_err("over the limit");
    match &err {
        ProduceError::RecordTooLarge {
            index,
            bytes,
            limit,
        } => {
            assert_eq!(
                (*index, *bytes, *limit),
                (2, MAX_RECORD_BYTES + 1, MAX_RECORD_BYTES)
            );
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains("Nothing was sent"), "{err}");
    assert!(
        script.seen().is_empty(),
        "no request at all: {:?}",
        script.seen()
    );

    // Exactly at the limit (data + key) is accepted.
    let report = producer
        .send(vec![
            ProducerRecord::new(vec![0u8; MAX_RECORD_BYTES - 1]).partition_key("c"),
        ])
        .await
        .expect("at the limit");
    assert!(report.is_complete());
    assert_eq!(script.seen().len(), 1);
}

#[tokio::test]
async fn invalid_keys_fail_before_any_call() {
    let script = Scripted::new([]);
    let producer = KinesisProducer::builder_from_client(script.client(), "tweets").build();
    let too_long = "é".repeat(257);
    let err = producer
        .send(vec![
            ProducerRecord::new("x"),
            ProducerRecord::new("y").partition_key(too_long),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProduceError::InvalidPartitionKey {
                index: 1,
                chars: 257
            }
        ),
        "{err:?}"
    );
    let err = producer
        .send(vec![ProducerRecord::new("x").partition_key("")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProduceError::InvalidPartitionKey { index: 0, chars: 0 }
        ),
        "{err:?}"
    );
    let err = producer
        .send(vec![
            ProducerRecord::new("x").explicit_hash_key("340282366920938463463374607431768211456"),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProduceError::InvalidExplicitHashKey { index: 0, .. }),
        "{err:?}"
    );
    assert!(script.seen().is_empty());
    // 256 two-byte characters are fine (the limit is in characters).
    let ok = "é".repeat(256);
    let script = Scripted::new([put_records_answer(vec![ok_entry(
        "shardId-000000000000",
        1,
    )])]);
    let producer = KinesisProducer::builder_from_client(script.client(), "tweets").build();
    assert!(
        producer
            .send(vec![ProducerRecord::new("x").partition_key(ok)])
            .await
            .unwrap()
            .is_complete()
    );
}

// ---------------------------------------------------------------------------
// Scripted answers: partial failures, whole-call failures

#[tokio::test(start_paused = true)]
async fn a_partial_failure_resends_exactly_the_failed_entries() {
    let script = Scripted::new([
        put_records_answer(vec![
            failed_entry("ProvisionedThroughputExceededException"),
            ok_entry("shardId-000000000000", 11),
            failed_entry("InternalFailure"),
            ok_entry("shardId-000000000001", 12),
            failed_entry("KMSThrottlingException"),
        ]),
        put_records_answer(vec![
            ok_entry("shardId-000000000001", 21),
            ok_entry("shardId-000000000000", 22),
            ok_entry("shardId-000000000001", 23),
        ]),
    ]);
    let producer = KinesisProducer::builder_from_client(script.client(), "tweets")
        .retry_policy(fast_retries(3))
        .build();
    let records: Vec<ProducerRecord> = (0..5)
        .map(|i| ProducerRecord::new(format!("r{i}")).partition_key(format!("k{i}")))
        .collect();
    let report = producer.send(records).await.expect("valid input");

    let seen = script.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.target == "Kinesis_20131202.PutRecords")
    );
    assert_eq!(seen[0].body["StreamName"], "tweets");
    let resent = decode_entries(&seen[1].body);
    assert_eq!(
        resent,
        vec![
            ("k0".to_owned(), b"r0".to_vec()),
            ("k2".to_owned(), b"r2".to_vec()),
            ("k4".to_owned(), b"r4".to_vec()),
        ],
        "the retry resends the failed entries, only them, in input order"
    );

    assert!(report.is_complete());
    assert_eq!((report.calls(), report.retried()), (2, 3));
    let placed: Vec<(String, String, u32)> = report
        .outcomes()
        .iter()
        .map(|o| {
            let a = o.as_ref().unwrap();
            (a.shard_id.clone(), a.sequence_number.clone(), a.attempts)
        })
        .collect();
    let expected = [
        ("shardId-000000000001", "21", 2),
        ("shardId-000000000000", "11", 1),
        ("shardId-000000000000", "22", 2),
        ("shardId-000000000001", "12", 1),
        ("shardId-000000000001", "23", 2),
    ];
    let expected: Vec<(String, String, u32)> = expected
        .iter()
        .map(|(s, q, a)| (s.to_string(), q.to_string(), *a))
        .collect();
    assert_eq!(placed, expected);
}

#[tokio::test(start_paused = true)]
async fn retries_run_out_and_permanent_entry_errors_are_not_resent() {
    let script = Scripted::new([
        put_records_answer(vec![
            failed_entry("ProvisionedThroughputExceededException"),
            failed_entry("KMSAccessDeniedException"),
            ok_entry("shardId-000000000000", 1),
        ]),
        put_records_answer(vec![failed_entry("ProvisionedThroughputExceededException")]),
        put_records_answer(vec![failed_entry("ProvisionedThroughputExceededException")]),
    ]);
    let producer = KinesisProducer::builder_from_client(script.client(), "tweets")
        .retry_policy(fast_retries(3))
        .build();
    let start = tokio::time::Instant::now();
    let report = producer.send_all(["a", "b", "c"]).await.unwrap();
    assert!(
        start.elapsed() > Duration::ZERO,
        "backed off between attempts"
    );

    let seen = script.seen();
    assert_eq!(
        seen.len(),
        3,
        "3 attempts for the throttled record, 1 for the others"
    );
    assert_eq!(decode_entries(&seen[1].body).len(), 1);
    assert_eq!(decode_entries(&seen[1].body)[0].1, b"a");
    assert_eq!(decode_entries(&seen[2].body)[0].1, b"a");

    assert_eq!((report.accepted_count(), report.failed_count()), (1, 2));
    match &report.outcomes()[0] {
        Err(ProduceError::RetriesExhausted { attempts: 3, last }) => {
            assert!(matches!(
                **last,
                ProduceError::EntryFailed {
                    retryable: true,
                    ..
                }
            ));
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    let b = report.outcomes()[1].as_ref().unwrap_err();
    assert!(
        matches!(b, ProduceError::EntryFailed { code, retryable: false, .. } if code == "KMSAccessDeniedException"),
        "{b:?}"
    );
    assert_eq!(
        report.outcomes()[0].as_ref().unwrap_err().code(),
        Some("ProvisionedThroughputExceededException")
    );
    let err = report.into_result().unwrap_err();
    assert!(
        matches!(
            err,
            ProduceError::Incomplete {
                failed: 2,
                total: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn whole_call_throttling_and_5xx_are_retried() {
    let script = Scripted::new([
        error_answer(400, "ProvisionedThroughputExceededException"),
        error_answer(503, "ServiceUnavailable"),
        error_answer(500, "InternalFailure"),
        put_records_answer(vec![
            ok_entry("shardId-000000000000", 5),
            ok_entry("shardId-000000000000", 6),
        ]),
    ]);
    let producer = KinesisProducer::builder_from_client(script.client(), "tweets")
        .retry_policy(fast_retries(4))
        .build();
    let report = producer.send_all(["x", "y"]).await.unwrap();
    assert!(
        report.is_complete(),
        "{:?}",
        report.failures().collect::<Vec<_>>()
    );
    assert_eq!(script.seen().len(), 4);
    for s in script.seen() {
        assert_eq!(
            decode_entries(&s.body).len(),
            2,
            "the whole batch is resent"
        );
    }
    assert_eq!(report.outcomes()[1].as_ref().unwrap().attempts, 4);
}

#[tokio::test(start_paused = true)]
async fn a_missing_stream_is_a_typed_permanent_error_and_stops_the_send() {
    let script = Scripted::new([error_answer(400, "ResourceNotFoundException")]);
    let producer = KinesisProducer::builder_from_client(script.client(), "nope")
        .retry_policy(fast_retries(5))
        .build();
    // 600 records: two calls' worth; the second must not be attempted.
    let report = producer
        .send_all((0..600).map(|i| format!("r{i}")))
        .await
        .unwrap();
    assert_eq!(script.seen().len(), 1, "no retry, no second call");
    assert_eq!(report.failed_count(), 600);

    let first = report.outcomes()[0].as_ref().unwrap_err();
    match first {
        ProduceError::Call {
            stream,
            code,
            retryable,
            source,
            ..
        } => {
            assert_eq!(stream, "nope");
            assert_eq!(code, "ResourceNotFoundException");
            assert!(!retryable);
            assert!(matches!(
                &**source,
                SdkError::ServiceError(e) if matches!(e.err(), PutRecordsError::ResourceNotFoundException(_))
            ));
        }
        other => panic!("expected Call, got {other:?}"),
    }
    assert!(!first.is_retryable());
    assert!(
        first.to_string().contains("check the stream name"),
        "{first}"
    );
    // The SDK error is the source (shared, so that every record of the
    // call can carry it), and reachable directly.
    let source = std::error::Error::source(first).expect("a source");
    assert!(
        source
            .downcast_ref::<Arc<SdkError<PutRecordsError>>>()
            .is_some()
    );
    assert!(
        first
            .put_records_error()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_resource_not_found_exception())
    );

    let last = report.outcomes()[599].as_ref().unwrap_err();
    assert!(matches!(last, ProduceError::NotSent { .. }), "{last:?}");
    assert_eq!(last.code(), Some("ResourceNotFoundException"));
}

// ---------------------------------------------------------------------------
// Keys and stream ARNs, seen on the wire

#[tokio::test]
async fn keys_come_from_the_record_the_function_or_a_seeded_generator() {
    let answer = || {
        put_records_answer(
            (0..3)
                .map(|i| ok_entry("shardId-000000000000", i))
                .collect(),
        )
    };
    let script = Scripted::new([answer(), answer()]);
    let producer = KinesisProducer::builder_from_client(script.client(), "tweets")
        .partition_key_fn(|data: &[u8]| {
            serde_json::from_slice::<Value>(data)
                .ok()
                .and_then(|v| v["user"].as_str().map(str::to_owned))
        })
        .seed(42)
        .build();
    let batch = || {
        vec![
            ProducerRecord::new(r#"{"user":"alice"}"#).partition_key("own"),
            ProducerRecord::new(r#"{"user":"bob"}"#),
            ProducerRecord::new("not json"),
        ]
    };
    producer.send(batch()).await.unwrap();
    let keys: Vec<String> = decode_entries(&script.seen()[0].body)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(keys[0], "own");
    assert_eq!(keys[1], "bob");
    let random = &keys[2];
    let parts: Vec<&str> = random.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        vec![8, 4, 4, 4, 12],
        "{random}"
    );
    assert!(parts[2].starts_with('4'), "version-4 shaped: {random}");

    // Same seed, same random keys; the next draw differs.
    let script2 = Scripted::new([put_records_answer(vec![ok_entry(
        "shardId-000000000000",
        9,
    )])]);
    let again = KinesisProducer::builder_from_client(script2.client(), "tweets")
        .seed(42)
        .build();
    assert!(
        again
            .send(vec![ProducerRecord::new("not json")])
            .await
            .unwrap()
            .is_complete()
    );
    let k2 = decode_entries(&script2.seen()[0].body)[0].0.clone();
    assert_eq!(&k2, random);
    producer.send(batch()).await.unwrap();
    let next = decode_entries(&script.seen()[1].body)[2].0.clone();
    assert_ne!(&next, random);
}

#[tokio::test]
async fn a_stream_arn_is_sent_as_stream_arn() {
    let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/tweets";
    let script = Scripted::new([put_records_answer(vec![ok_entry(
        "shardId-000000000000",
        1,
    )])]);
    let producer = KinesisProducer::builder_from_client(script.client(), arn).build();
    assert_eq!(producer.stream(), arn);
    let report = producer
        .send(vec![
            ProducerRecord::new("x")
                .partition_key("k")
                .explicit_hash_key("12345"),
        ])
        .await
        .unwrap();
    assert!(report.is_complete());
    let body = &script.seen()[0].body;
    assert_eq!(body["StreamARN"], arn);
    assert!(body.get("StreamName").is_none(), "{body}");
    assert_eq!(body["Records"][0]["ExplicitHashKey"], "12345");
}

/// Sends, retries and failures reach the `metrics` recorder.
#[test]
fn counters_go_through_the_metrics_facade() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let script = Scripted::new([
        put_records_answer(vec![
            ok_entry("shardId-000000000000", 1),
            failed_entry("ProvisionedThroughputExceededException"),
            failed_entry("KMSAccessDeniedException"),
            ok_entry("shardId-000000000000", 2),
        ]),
        put_records_answer(vec![ok_entry("shardId-000000000000", 3)]),
    ]);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let report = metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                KinesisProducer::builder_from_client(script.client(), "tweets")
                    .build()
                    .send_all(["a", "b", "c", "d"])
                    .await
            })
            .unwrap()
    });
    assert_eq!((report.accepted_count(), report.failed_count()), (3, 1));
    let counters: BTreeMap<String, u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => {
                let labels: Vec<String> = key
                    .key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                Some((format!("{}{labels:?}", key.key().name()), n))
            }
            _ => None,
        })
        .collect();
    let get = |name: &str| counters.get(&format!("{name}[\"stream=tweets\"]")).copied();
    assert_eq!(get("streamsift_producer_records_sent_total"), Some(3));
    assert_eq!(get("streamsift_producer_failures_total"), Some(1));
    assert_eq!(get("streamsift_producer_retries_total"), Some(1));
    assert_eq!(get("streamsift_producer_put_records_calls_total"), Some(2));
}

#[tokio::test]
async fn aggregation_without_a_shard_map_sends_nothing() {
    let script = Scripted::new([error_answer(400, "AccessDeniedException")]);
    let producer = KinesisProducer::builder_from_client(script.client(), "tweets")
        .aggregate(true)
        .build();
    let err = producer.send_all(["a", "b", "c"]).await.unwrap_err();
    assert!(
        matches!(&err, ProduceError::ShardMap { code, .. } if code == "AccessDeniedException"),
        "{err:?}"
    );
    assert!(err.to_string().contains("kinesis:ListShards"), "{err}");
    let seen = script.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "Kinesis_20131202.ListShards");
}

/// The producer's retry policy is the only one: a client handed in with
/// generous SDK retries (5 attempts) still sends one HTTP request per
/// producer attempt, so attempts never stack.
#[tokio::test(start_paused = true)]
async fn retries_do_not_stack_the_sdk_retries_of_a_given_client_are_off() {
    let script = Scripted::new((0..10).map(|_| error_answer(500, "InternalFailure")));
    let generous = Client::from_conf(
        script
            .client()
            .config()
            .to_builder()
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            .build(),
    );
    let producer = KinesisProducer::builder_from_client(generous, "tweets")
        .retry_policy(fast_retries(2))
        .build();
    let report = producer.send_all(["x"]).await.unwrap();
    assert_eq!(report.failed_count(), 1);
    assert_eq!(
        script.seen().len(),
        2,
        "2 producer attempts must be 2 requests, not 2 × the SDK's 5"
    );
}
