//! How fast a GetRecords response becomes decoded items: the SDK's parsing of
//! an in-memory response (the baseline, which any Kinesis consumer pays),
//! then that plus `kinesis::unpack` (KPL de-aggregation) and JSON decoding
//! into a tweet type. The answer to "are de-aggregation and decoding the
//! bottleneck?" is the records/s here against Kinesis' own ceiling of
//! 2 MB/s read per shard (about 8,000 tweet-sized records/s).
//!
//! ```text
//! cargo bench --bench kinesis_read --features kinesis
//! cargo bench --bench kinesis_read --features kinesis -- --test   # quick check
//! ```

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use base64::Engine;
use bytes::Bytes;
use criterion::{Criterion, Throughput};
use serde::Deserialize;
use streamsift::ShardId;
use streamsift::kinesis::kpl::Aggregator;
use streamsift::kinesis::unpack;

/// Answers every call with the same GetRecords response.
#[derive(Clone, Debug)]
struct Canned(Bytes);

impl HttpClient for Canned {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for Canned {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let mut resp = HttpResponse::new(
            StatusCode::try_from(200).expect("200"),
            SdkBody::from(self.0.clone()),
        );
        resp.headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        HttpConnectorFuture::ready(Ok(resp))
    }
}

#[allow(dead_code)] // the fields are what decoding fills in
#[derive(Deserialize)]
struct Tweet {
    id_str: String,
    text: String,
    lang: Option<String>,
}

fn tweet(i: usize) -> String {
    format!(
        r#"{{"id_str":"19750066360080{i:05}","created_at":"Mon Oct 05 07:59:47 +0000 2026","text":"@nimbuscloudhelp instance {i} in fra1 won't boot since the maintenance window, stuck at provisioning, ticket #44{i}","lang":"en","user":{{"screen_name":"user{i}","followers_count":{i}}}}}"#
    )
}

/// A GetRecords response body with `records` Kinesis records; with
/// `per_aggregate > 1`, each holds a KPL aggregate of that many tweets.
fn response(records: usize, per_aggregate: usize) -> (Bytes, usize) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut entries = Vec::new();
    let mut users = 0;
    for r in 0..records {
        let data = if per_aggregate > 1 {
            let mut agg = Aggregator::new();
            for u in 0..per_aggregate {
                let _ = agg.add(
                    &format!("user{u}"),
                    None,
                    tweet(r * per_aggregate + u).as_bytes(),
                );
                users += 1;
            }
            agg.flush().expect("an aggregate").data.to_vec()
        } else {
            users += 1;
            tweet(r).into_bytes()
        };
        entries.push(serde_json::json!({
            "SequenceNumber": format!("4959033827149025660855969253836157109592157598913{r:07}"),
            "ApproximateArrivalTimestamp": 1.7e9,
            "Data": b64.encode(&data),
            "PartitionKey": format!("user{r}"),
        }));
    }
    let body = serde_json::json!({
        "Records": entries,
        "NextShardIterator": "AAAAAAAAAAE",
        "MillisBehindLatest": 0,
    });
    (Bytes::from(serde_json::to_vec(&body).expect("json")), users)
}

fn client(body: Bytes) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .http_client(Canned(body))
        .build();
    Client::from_conf(config)
}

/// One GetRecords call, and optionally unpacking and decoding every record.
async fn read_once(
    client: &Client,
    shard: &ShardId,
    decode: bool,
    out: &mut Vec<streamsift::Record>,
) -> usize {
    let resp = client
        .get_records()
        .shard_iterator("AAAAAAAAAAE")
        .send()
        .await
        .expect("canned response");
    if !decode {
        return resp.records.len();
    }
    out.clear();
    for r in resp.records {
        let data = Bytes::from(r.data.into_inner());
        let _ = unpack(
            shard,
            &r.sequence_number,
            &r.partition_key,
            data,
            SystemTime::UNIX_EPOCH,
            out,
        );
    }
    let mut ok = 0;
    for rec in out.iter() {
        if serde_json::from_slice::<Tweet>(&rec.payload).is_ok() {
            ok += 1;
        }
    }
    ok
}

fn test_mode(args: &[String]) -> bool {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--test") || !has("--bench")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let test = test_mode(&args);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shard = ShardId::new("shardId-000000000000");
    let records = if test { 50 } else { 1_000 };
    let cases = [
        ("plain", response(records, 1)),
        ("kpl_x100", response(records / 10, 100)),
    ];

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("kinesis_read");
    for (name, (body, users)) in &cases {
        let client = client(body.clone());
        group.throughput(Throughput::Elements(*users as u64));
        group.bench_function(format!("{name}/sdk_parse_only"), |b| {
            b.to_async(&rt)
                .iter(|| async { read_once(&client, &shard, false, &mut Vec::new()).await });
        });
        group.bench_function(format!("{name}/parse_unpack_decode"), |b| {
            b.to_async(&rt)
                .iter(|| async { read_once(&client, &shard, true, &mut Vec::new()).await });
        });
    }
    group.finish();
    criterion.final_summary();

    // A plain summary with the ratio, measured in this run.
    let reps = if test { 3 } else { 200 };
    println!();
    for (name, (body, users)) in &cases {
        let client = client(body.clone());
        let mut out = Vec::new();
        let time = |decode: bool, out: &mut Vec<streamsift::Record>| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..reps {
                    let n = read_once(&client, &shard, decode, out).await;
                    assert!(n > 0);
                }
                start.elapsed()
            })
        };
        let base = time(false, &mut out);
        let full = time(true, &mut out);
        let per = |d: Duration| (*users * reps) as f64 / d.as_secs_f64();
        println!(
            "{name}: {users} user records per response; SDK parse alone {:.0} records/s; \
             parse + unpack + JSON decode {:.0} records/s ({:.2}x the SDK's time); \
             Kinesis allows about 8,000 such records/s per shard (2 MB/s)",
            per(base),
            per(full),
            full.as_secs_f64() / base.as_secs_f64()
        );
    }
    if test {
        println!(
            "(test mode: few records and maybe an unoptimized build; numbers need `cargo bench --bench kinesis_read --features kinesis`)"
        );
    }
}
