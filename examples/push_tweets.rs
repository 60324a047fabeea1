//! Replays a JSON-lines file of tweets into a Kinesis stream at a given rate,
//! as the original application's feeder script did.
//!
//! ```sh
//! # against moto or kinesis-local (dummy credentials are used when none are set):
//! cargo run --example push_tweets --features kinesis -- \
//!     --stream tweets --file examples/data/tweets.jsonl --rate 100/s \
//!     --endpoint-url http://127.0.0.1:5000 --create-shards 2
//! ```
//!
//! Options (`--help` lists them): `--stream NAME|ARN` (required), `--file PATH` (default
//! `examples/data/tweets.jsonl`), `--rate N/s` (also `N/m`, `N/h`; default
//! `100/s`), `--endpoint-url URL`, `--region REGION` (default from the
//! environment, else `us-east-1`), `--create-shards N` (create the stream
//! with N shards if it does not exist, and wait until it is active),
//! `--aggregate` (KPL aggregation), `--loop` (replay the file until Ctrl-C).
//!
//! Each tweet's partition key is its `user.screen_name`, so one user's
//! tweets go to one shard in order; tweets without one get a random key.
//! Lines that are not valid JSON are sent anyway, as raw bytes: the
//! pipeline reading the stream dead-letters them, which is what the demo
//! shows. Progress is printed every second, and a summary at the end.

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser as _;
use clap::builder::NonEmptyStringValueParser;

use aws_sdk_kinesis::config::Credentials;
use streamsift::kinesis::producer::{
    KinesisProducer, MAX_PARTITION_KEY_CHARS, MAX_RECORD_BYTES, ProducerRecord, SendReport,
};
use tokio::io::AsyncBufReadExt;

/// Sends at most this often; each send carries the records due since the
/// last one.
const TICK: Duration = Duration::from_millis(100);

/// Replays a JSON-lines file of tweets into a Kinesis stream at a given rate.
#[derive(Debug, clap::Parser)]
#[command(
    name = "push_tweets",
    after_help = "Logs: warnings and errors go to stderr; RUST_LOG=info (or debug) shows more. \
Exit status: 0 when every record was accepted, 1 on an error, 2 on a bad command line."
)]
struct Args {
    /// The stream (a name, or an ARN).
    #[arg(long, value_name = "NAME|ARN", value_parser = NonEmptyStringValueParser::new())]
    stream: String,
    /// The JSON-lines file to replay.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "examples/data/tweets.jsonl"
    )]
    file: PathBuf,
    /// Records per second (N/s), per minute (N/m) or per hour (N/h).
    #[arg(long, value_name = "N/s", default_value = "100/s", value_parser = parse_rate)]
    rate: f64,
    /// An emulator's URL (moto, kinesis-local); dummy credentials are used
    /// when none are set.
    #[arg(long, value_name = "URL", value_parser = NonEmptyStringValueParser::new())]
    endpoint_url: Option<String>,
    /// The region [default: the environment's, else us-east-1].
    #[arg(long, value_name = "REGION", value_parser = NonEmptyStringValueParser::new())]
    region: Option<String>,
    /// Create the stream with N shards if it does not exist, and wait until
    /// it is active.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    create_shards: Option<i32>,
    /// Aggregate records (KPL aggregation).
    #[arg(long)]
    aggregate: bool,
    /// Replay the file until Ctrl-C.
    #[arg(long = "loop")]
    repeat: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let (n, per) = s.split_once('/').unwrap_or((s, "s"));
    let n: f64 = n
        .trim()
        .parse()
        .map_err(|_| format!("--rate {s:?}: expected a number of records, such as 100/s"))?;
    let seconds = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        other => {
            return Err(format!(
                "--rate {s:?}: unknown unit {other:?}; use /s, /m or /h"
            ));
        }
    };
    let rate = n / seconds;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err(format!("--rate {s:?}: expected a positive rate"))
    }
}

/// The tweet's `user.screen_name`, if the line is a JSON object with one
/// that is a valid partition key; `Err` if the line is not JSON at all.
fn screen_name(line: &[u8]) -> Result<Option<String>, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_slice(line)?;
    Ok(value
        .pointer("/user/screen_name")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty() && s.chars().count() <= MAX_PARTITION_KEY_CHARS)
        .map(str::to_owned))
}

#[derive(Debug, Default)]
struct Totals {
    lines: u64,
    sent: u64,
    failed: u64,
    retried: u64,
    calls: u64,
    aggregates: u64,
    invalid_json: u64,
    random_keys: u64,
    skipped_too_large: u64,
}

impl Totals {
    fn add(&mut self, report: &SendReport) {
        self.sent += report.accepted_count() as u64;
        self.failed += report.failed_count() as u64;
        self.retried += report.retried();
        self.calls += report.calls();
        self.aggregates += report.aggregates();
    }
}

/// Reads the file line by line (raw bytes, so invalid UTF-8 is kept),
/// starting again at the end with `--loop`.
struct Lines {
    path: PathBuf,
    repeat: bool,
    reader: tokio::io::BufReader<tokio::fs::File>,
    buf: Vec<u8>,
    read_any: bool,
    /// Empty lines skipped (there is nothing to send for them).
    empty: u64,
}

impl Lines {
    async fn open(path: PathBuf, repeat: bool) -> std::io::Result<Lines> {
        let file = tokio::fs::File::open(&path).await?;
        Ok(Lines {
            path,
            repeat,
            reader: tokio::io::BufReader::new(file),
            buf: Vec::new(),
            read_any: false,
            empty: 0,
        })
    }

    /// The next non-empty line, without its line ending.
    async fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            self.buf.clear();
            let n = self.reader.read_until(b'\n', &mut self.buf).await?;
            if n == 0 {
                if !self.repeat || !self.read_any {
                    return Ok(None);
                }
                let file = tokio::fs::File::open(&self.path).await?;
                self.reader = tokio::io::BufReader::new(file);
                continue;
            }
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if self.buf.is_empty() {
                self.empty += 1;
            } else {
                self.read_any = true;
                return Ok(Some(self.buf.clone()));
            }
        }
    }
}

async fn sdk_config(args: &Args) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let env_region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .ok();
    let region = args
        .region
        .clone()
        .or(env_region)
        .unwrap_or_else(|| "us-east-1".to_owned());
    loader = loader.region(aws_config::Region::new(region));
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && std::env::var_os("AWS_PROFILE").is_none()
        {
            println!(
                "no AWS credentials in the environment: using dummy ones for the emulator at {url}"
            );
            loader = loader.credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "push_tweets-emulator",
            ));
        }
    }
    loader.load().await
}

/// Creates the stream with `shards` shards unless it exists, then waits
/// until it is ACTIVE.
async fn ensure_stream(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shards: i32,
) -> Result<(), Box<dyn std::error::Error>> {
    use aws_sdk_kinesis::error::ProvideErrorMetadata;
    match client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
    {
        Ok(_) => println!("created stream {stream} with {shards} shards"),
        Err(e) if e.code() == Some("ResourceInUseException") => {
            println!("stream {stream} exists; not creating it");
        }
        Err(e) => {
            return Err(format!(
                "CreateStream {stream}: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            )
            .into());
        }
    }
    for _ in 0..120 {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await?;
        let status = summary
            .stream_description_summary()
            .map(|d| d.stream_status().as_str().to_owned());
        if status.as_deref() == Some("ACTIVE") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("stream {stream} did not become ACTIVE within 60 s").into())
}

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => common::fail(
            &*e,
            Some(
                "check --file, that the stream exists (or pass --create-shards), and that \
                 the endpoint (--endpoint-url) is reachable",
            ),
        ),
    }
}

async fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let config = sdk_config(&args).await;
    if let Some(shards) = args.create_shards {
        if args.stream.starts_with("arn:") {
            return Err("--create-shards needs a stream name, not an ARN".into());
        }
        ensure_stream(&aws_sdk_kinesis::Client::new(&config), &args.stream, shards).await?;
    }
    let producer = KinesisProducer::builder(&config, args.stream.clone())
        .aggregate(args.aggregate)
        .build();
    let mut lines = Lines::open(args.file.clone(), args.repeat)
        .await
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;

    println!(
        "pushing {} into {} at {:.1} records/s{}{}",
        args.file.display(),
        args.stream,
        args.rate,
        if args.aggregate {
            ", KPL-aggregated"
        } else {
            ""
        },
        if args.repeat {
            ", looping until Ctrl-C"
        } else {
            ""
        },
    );

    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("ctrl-c: finishing the current batch");
            let _ = stop_tx.send(true);
        }
    });

    let mut totals = Totals::default();
    let mut first_failures = 0;
    let started = Instant::now();
    let mut last_tick = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_progress_sent = 0;
    // Records due but not sent yet; fractions carry over between ticks.
    let mut budget = 0.0f64;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut done = false;
    while !done {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let now = Instant::now();
        // Due records by elapsed time, so a slow send is caught up on,
        // capped at one second's worth to avoid a burst after a stall.
        budget = (budget + args.rate * now.duration_since(last_tick).as_secs_f64())
            .min(args.rate.max(1.0));
        last_tick = now;
        let due = budget.floor() as usize;
        if due == 0 {
            continue;
        }
        let mut batch = Vec::with_capacity(due);
        while batch.len() < due {
            let Some(line) = lines.next().await? else {
                done = true;
                break;
            };
            totals.lines += 1;
            let key = match screen_name(&line) {
                Ok(key) => key,
                Err(_) => {
                    totals.invalid_json += 1;
                    None
                }
            };
            if key.is_none() {
                totals.random_keys += 1;
            }
            let key_bytes = key.as_ref().map_or(36, String::len);
            if line.len() + key_bytes > MAX_RECORD_BYTES {
                totals.skipped_too_large += 1;
                continue;
            }
            let record = ProducerRecord::new(line);
            batch.push(match key {
                Some(key) => record.partition_key(key),
                None => record,
            });
        }
        budget -= batch.len() as f64;
        if !batch.is_empty() {
            let report = producer.send(batch).await?;
            for (i, error) in report.failures() {
                if first_failures < 5 {
                    eprintln!("record {i} of a batch failed: {error}");
                }
                first_failures += 1;
            }
            totals.add(&report);
        }
        if last_progress.elapsed() >= Duration::from_secs(1) || done {
            let window = last_progress.elapsed().as_secs_f64();
            println!(
                "sent {:>7}  ({:>6.1}/s)  retries {:>4}  failures {:>4}  not-JSON lines {:>3}",
                totals.sent,
                (totals.sent - last_progress_sent) as f64 / window.max(f64::EPSILON),
                totals.retried,
                totals.failed,
                totals.invalid_json,
            );
            last_progress = Instant::now();
            last_progress_sent = totals.sent;
        }
    }

    let elapsed = started.elapsed().as_secs_f64();
    println!();
    println!("summary for stream {}", args.stream);
    println!("  non-empty lines read  {}", totals.lines);
    println!("  records accepted      {}", totals.sent);
    println!("  records failed        {}", totals.failed);
    println!(
        "  not valid JSON (sent as raw bytes, for the dead-letter demo)  {}",
        totals.invalid_json
    );
    println!("  random partition keys {}", totals.random_keys);
    if lines.empty > 0 {
        println!("  empty lines skipped   {}", lines.empty);
    }
    if totals.skipped_too_large > 0 {
        println!("  skipped, over 1 MiB   {}", totals.skipped_too_large);
    }
    println!("  PutRecords calls      {}", totals.calls);
    println!("  entries retried       {}", totals.retried);
    if args.aggregate {
        println!("  aggregates sent       {}", totals.aggregates);
    }
    println!(
        "  elapsed               {elapsed:.1} s  ({:.1} records/s)",
        totals.sent as f64 / elapsed.max(f64::EPSILON)
    );
    if totals.failed > 0 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        Args::try_parse_from(std::iter::once("push_tweets").chain(list.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn rates_parse_per_second_minute_and_hour() {
        assert_eq!(parse_rate("100/s"), Ok(100.0));
        assert_eq!(parse_rate("120/m"), Ok(2.0));
        assert_eq!(parse_rate("7200/h"), Ok(2.0));
        assert_eq!(parse_rate("5"), Ok(5.0));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10/d").is_err());
    }

    #[test]
    fn arguments_parse_with_clap() {
        let a = args(&[
            "--stream",
            "tweets",
            "--rate=50/s",
            "--endpoint-url",
            "http://127.0.0.1:5000",
            "--create-shards",
            "2",
            "--aggregate",
            "--loop",
        ])
        .unwrap();
        assert_eq!(a.stream, "tweets");
        assert_eq!(a.rate, 50.0);
        assert_eq!(a.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(a.create_shards, Some(2));
        assert!(a.aggregate && a.repeat);
        assert_eq!(a.file, PathBuf::from("examples/data/tweets.jsonl"));
        assert!(
            args(&["--rate", "1/s"])
                .unwrap_err()
                .contains("--stream <NAME|ARN>")
        );
        assert!(
            args(&["--stream"])
                .unwrap_err()
                .contains("a value is required")
        );
        assert!(
            args(&["--stream", "s", "--bogus"])
                .unwrap_err()
                .contains("unexpected argument '--bogus'")
        );
        assert!(
            args(&["--stream", "s", "--rate", "10/d"])
                .unwrap_err()
                .contains("use /s, /m or /h")
        );
        assert!(args(&["--stream", "s", "--create-shards", "0"]).is_err());
    }

    #[test]
    fn keys_come_from_the_screen_name() {
        assert_eq!(
            screen_name(br#"{"user":{"screen_name":"marek_ops"}}"#).unwrap(),
            Some("marek_ops".to_owned())
        );
        assert_eq!(screen_name(br#"{"text":"no user"}"#).unwrap(), None);
        assert_eq!(
            screen_name(br#"{"user":{"screen_name":""}}"#).unwrap(),
            None
        );
        assert!(screen_name(b"{\"text\": truncated").is_err());
        assert!(screen_name(&[0xff, 0xfe]).is_err());
    }
}
