//! How fast KPL aggregates are unpacked (issue 4): user records per second
//! from in-memory aggregates, against baselines over the same bytes.
//!
//! The input is aggregates of 100 tweet-sized user records (about 200 bytes
//! of JSON each, partition keys drawn from 97 user names), built with
//! [`Aggregator`] outside the timed section. Variants, each over the same
//! aggregates:
//!
//! - `memcpy`: copy every aggregate into a reused buffer, the floor for
//!   touching the bytes once;
//! - `md5`: hash every aggregate's protobuf body, the integrity check every
//!   de-aggregation pays;
//! - `deaggregate_bytes`: the zero-copy de-aggregator (data shares the
//!   input buffer; keys are copied into `String`s);
//! - `deaggregate`: the copying de-aggregator from `&[u8]`.
//!
//! After the criterion groups the bench prints a summary measured in the
//! same run (the median of several timed passes over every aggregate, the
//! variants interleaved): records/s and the ratio to `memcpy`.
//!
//! ```text
//! cargo bench --features kinesis --bench kpl             # full run
//! cargo bench --features kinesis --bench kpl -- --test   # quick check
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use md5::{Digest, Md5};
use streamsift::kinesis::kpl::{
    Aggregate, Aggregator, DIGEST_LEN, MAGIC, deaggregate, deaggregate_bytes,
};

const RECORDS_PER_AGGREGATE: usize = 100;
const RECORD_BYTES: usize = 200;
const USERS: usize = 97;
/// Aggregates per criterion iteration (10,000 user records).
const BATCH_AGGREGATES: usize = 100;
/// Aggregates in the summary's timed pass, and passes per variant.
const FULL_AGGREGATES: usize = 1_000;
const FULL_REPS: usize = 7;
const TEST_AGGREGATES: usize = 10;
const TEST_REPS: usize = 1;

const WORDS: &[&str] = &[
    "outage", "down", "again", "login", "fails", "since", "noon", "please", "fix", "love", "the",
    "new", "release", "coffee", "queue", "slow", "today", "thanks", "team", "503", "error", "app",
];

/// A tweet-like JSON record of exactly `RECORD_BYTES` bytes.
fn tweet(i: usize) -> Vec<u8> {
    let mut text = String::new();
    let mut w = i;
    while text.len() < RECORD_BYTES {
        text.push_str(WORDS[w % WORDS.len()]);
        text.push(' ');
        w = w.wrapping_mul(31).wrapping_add(7);
    }
    let mut json = format!(
        r#"{{"id":{},"user":"user_{}","lang":"en","text":"{}"}}"#,
        1_000_000_000_000u64 + i as u64,
        i % USERS,
        text
    )
    .into_bytes();
    // Trim the text to size and close the JSON again.
    json.truncate(RECORD_BYTES - 2);
    json.extend_from_slice(b"\"}");
    json
}

fn make_aggregates(n: usize) -> Vec<Aggregate> {
    let mut aggregator = Aggregator::new().max_records(RECORDS_PER_AGGREGATE);
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while out.len() < n {
        let key = format!("user_{}", i % USERS);
        if let Some(done) = aggregator.add(&key, None, &tweet(i)).expect("fits") {
            out.push(done);
        }
        i += 1;
    }
    out
}

fn run_memcpy(aggregates: &[Aggregate], buf: &mut Vec<u8>) -> usize {
    let mut bytes = 0;
    for a in aggregates {
        buf.clear();
        buf.extend_from_slice(&a.data);
        bytes += black_box(&buf).len();
    }
    bytes
}

fn run_md5(aggregates: &[Aggregate]) -> usize {
    let mut ok = 0;
    for a in aggregates {
        let body = &a.data[MAGIC.len()..a.data.len() - DIGEST_LEN];
        let digest = Md5::digest(body);
        ok += usize::from(digest[..] == a.data[a.data.len() - DIGEST_LEN..]);
    }
    ok
}

fn run_deaggregate_bytes(aggregates: &[Aggregate]) -> usize {
    let mut records = 0;
    for a in aggregates {
        let unpacked = deaggregate_bytes(&a.data)
            .expect("valid")
            .expect("aggregate");
        records += black_box(unpacked).len();
    }
    records
}

fn run_deaggregate(aggregates: &[Aggregate]) -> usize {
    let mut records = 0;
    for a in aggregates {
        let unpacked = deaggregate(&a.data).expect("valid").expect("aggregate");
        records += black_box(unpacked).len();
    }
    records
}

fn bench(c: &mut Criterion, aggregates: &[Aggregate]) {
    let batch = &aggregates[..BATCH_AGGREGATES.min(aggregates.len())];
    let records = (batch.len() * RECORDS_PER_AGGREGATE) as u64;
    let mut group = c.benchmark_group("kpl");
    group.throughput(Throughput::Elements(records));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    let mut buf = Vec::new();
    group.bench_function("memcpy", |b| b.iter(|| run_memcpy(batch, &mut buf)));
    group.bench_function("md5", |b| b.iter(|| run_md5(batch)));
    group.bench_function("deaggregate_bytes", |b| {
        b.iter(|| run_deaggregate_bytes(batch))
    });
    group.bench_function("deaggregate", |b| b.iter(|| run_deaggregate(batch)));
    group.finish();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn summarize(aggregates: &[Aggregate], reps: usize) {
    let records = aggregates.iter().map(|a| a.user_records).sum::<usize>();
    let bytes = aggregates.iter().map(|a| a.data.len()).sum::<usize>();
    let mut buf = Vec::with_capacity(2 * bytes / aggregates.len().max(1));
    let mut times = [const { Vec::new() }; 4];
    for _ in 0..reps {
        let t = Instant::now();
        assert_eq!(run_memcpy(aggregates, &mut buf), bytes);
        times[0].push(t.elapsed());
        let t = Instant::now();
        assert_eq!(run_md5(aggregates), aggregates.len());
        times[1].push(t.elapsed());
        let t = Instant::now();
        assert_eq!(run_deaggregate_bytes(aggregates), records);
        times[2].push(t.elapsed());
        let t = Instant::now();
        assert_eq!(run_deaggregate(aggregates), records);
        times[3].push(t.elapsed());
    }
    let names = ["memcpy", "md5", "deaggregate_bytes", "deaggregate"];
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    println!();
    println!(
        "KPL de-aggregation: {} aggregates of {RECORDS_PER_AGGREGATE} records of \
         {RECORD_BYTES} B ({records} records, {:.1} MB), median of {reps} pass(es)",
        aggregates.len(),
        bytes as f64 / 1e6
    );
    let base = medians[0].as_secs_f64();
    for (name, m) in names.iter().zip(&medians) {
        let s = m.as_secs_f64();
        println!(
            "  {name:<18} {:>9.1} ns/record {:>12.0} records/s {:>8.1} MB/s  {:>6.1}x memcpy",
            s * 1e9 / records as f64,
            records as f64 / s,
            bytes as f64 / s / 1e6,
            s / base
        );
    }
}

/// Criterion's own rule: test mode unless run with `--bench`, or with `--test`.
fn test_mode(args: &[String]) -> bool {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--test") || !has("--bench")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let test = test_mode(&args);
    let listing = args.iter().any(|a| a == "--list");
    let (n, reps) = if test {
        (TEST_AGGREGATES, TEST_REPS)
    } else {
        (FULL_AGGREGATES, FULL_REPS)
    };
    let aggregates = make_aggregates(n);
    // Every aggregate holds exactly RECORDS_PER_AGGREGATE records.
    assert!(
        aggregates
            .iter()
            .all(|a| a.user_records == RECORDS_PER_AGGREGATE)
    );

    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &aggregates);
    criterion.final_summary();
    if listing {
        return;
    }
    if test {
        println!();
        println!(
            "(test mode: few aggregates and maybe an unoptimized build; this checks the \
             harness, the numbers need `cargo bench --features kinesis --bench kpl`)"
        );
    }
    summarize(&aggregates, reps);
}
