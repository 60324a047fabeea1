//! The KCL MultiLang record processor (`streamsift::kcl`, feature `kcl`),
//! driven as the MultiLangDaemon drives it: the support-tweets record
//! processor (`examples/serving/kcl.rs`, the body of
//! `examples/kcl_support_tweets.rs`) runs as a child process, and a scripted
//! daemon in this test talks to it over real pipes through whole lease
//! lifecycles, asserting every line the processor writes on stdout.
//!
//! `harness = false`: the child's stdout is the protocol and must hold
//! nothing else, which a libtest child could not promise, so this binary is
//! both the daemon (no argument) and, re-executed with
//! `STREAMSIFT_KCL_CHILD` set, the record processor. (`cargo test
//! --examples` builds the examples as test harnesses, so the example binary
//! itself is not there to run.)

#[path = "../examples/support_tweets/app.rs"]
mod app;
#[path = "../examples/serving/mod.rs"]
mod serving;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

/// Set in the child process: run the record processor instead of the test.
const CHILD: &str = "STREAMSIFT_KCL_CHILD";

type Scenario = (&'static str, fn());

const SCENARIOS: [Scenario; 5] = [
    (
        "a_lease_from_initialize_to_lease_lost_checkpoints_only_done_records",
        a_lease_from_initialize_to_lease_lost_checkpoints_only_done_records,
    ),
    (
        "a_shard_end_is_checkpointed_with_no_sequence_number",
        a_shard_end_is_checkpointed_with_no_sequence_number,
    ),
    (
        "an_empty_batch_writes_no_checkpoint",
        an_empty_batch_writes_no_checkpoint,
    ),
    (
        "a_line_that_is_not_a_protocol_message_stops_the_processor_with_a_clear_error",
        a_line_that_is_not_a_protocol_message_stops_the_processor_with_a_clear_error,
    ),
    (
        "an_unasked_checkpoint_answer_is_a_protocol_error",
        an_unasked_checkpoint_answer_is_a_protocol_error,
    ),
];

fn main() -> std::process::ExitCode {
    if std::env::var_os(CHILD).is_some() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        return runtime.block_on(serving::kcl::main());
    }
    println!("running {} tests", SCENARIOS.len());
    for (name, scenario) in SCENARIOS {
        print!("test {name} ... ");
        scenario();
        println!("ok");
    }
    std::process::ExitCode::SUCCESS
}

/// A scripted MultiLangDaemon talking to one record processor.
struct Daemon {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    _dir: tempfile::TempDir,
    dead_letters: std::path::PathBuf,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let dead_letters = dir.path().join("dead-letter.jsonl");
        let mut child = Command::new(std::env::current_exe().expect("test binary path"))
            .env(CHILD, "1")
            .env("DEAD_LETTER_PATH", &dead_letters)
            .env("RUST_LOG", "info")
            .env_remove("MODEL_DIR")
            .env_remove("SNS_TOPIC_ARN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("record processor starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Daemon {
            child,
            stdin,
            lines,
            _dir: dir,
            dead_letters,
        }
    }

    fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{message}").expect("write to processor");
        stdin.flush().expect("flush");
    }

    /// The next protocol line the processor wrote (blank lines skipped).
    /// The wait is bounded so a broken processor fails the test instead of
    /// hanging it; it is not a timing assertion.
    fn next(&mut self) -> Option<Value> {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => {
                    return Some(serde_json::from_str(&line).unwrap_or_else(|e| {
                        panic!("processor wrote a non-JSON line on stdout ({e}): {line}")
                    }));
                }
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => panic!("processor wrote nothing for 60 s"),
            }
        }
    }

    fn expect(&mut self, want: Value) {
        let got = self.next();
        assert_eq!(
            got.as_ref(),
            Some(&want),
            "processor wrote {got:?}, expected {want}"
        );
    }

    fn expect_status(&mut self, action: &str) {
        self.expect(json!({ "action": "status", "responseFor": action }));
    }

    /// Closes stdin and returns the exit status, the remaining stdout
    /// lines and stderr.
    fn finish(mut self) -> (std::process::ExitStatus, Vec<Value>, String) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("processor exits");
        let mut rest = Vec::new();
        while let Some(v) = self.next() {
            rest.push(v);
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        (status, rest, stderr)
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn tweet(id: &str, text: &str) -> String {
    b64(
        json!({ "id_str": id, "text": text, "user": { "screen_name": "someone" } })
            .to_string()
            .as_bytes(),
    )
}

fn record(data: &str, seq: &str, sub: u64) -> Value {
    json!({
        "action": "record",
        "data": data,
        "partitionKey": "pk-1",
        "sequenceNumber": seq,
        "subSequenceNumber": sub,
        "approximateArrivalTimestamp": 1_796_000_000_000u64,
    })
}

fn process_records(records: Vec<Value>) -> Value {
    json!({ "action": "processRecords", "millisBehindLatest": 1200, "records": records })
}

fn checkpoint_answer(seq: Option<&str>, sub: Option<u64>, error: Option<&str>) -> Value {
    json!({ "action": "checkpoint", "sequenceNumber": seq, "subSequenceNumber": sub, "error": error })
}

fn checkpoint_request(seq: Option<&str>, sub: Option<u64>) -> Value {
    json!({ "action": "checkpoint", "sequenceNumber": seq, "subSequenceNumber": sub })
}

fn a_lease_from_initialize_to_lease_lost_checkpoints_only_done_records() {
    let mut d = Daemon::start();
    d.send(json!({
        "action": "initialize",
        "shardId": "shardId-000000000007",
        "sequenceNumber": "TRIM_HORIZON",
        "subSequenceNumber": 0,
    }));
    d.expect_status("initialize");

    // Two good tweets: checkpoint at the last, confirmed.
    d.send(process_records(vec![
        record(
            &tweet("1", "@nimbuscloud the API is down in us-east"),
            "101",
            0,
        ),
        record(&tweet("2", "lovely weather today"), "102", 0),
    ]));
    d.expect(checkpoint_request(Some("102"), Some(0)));
    d.send(checkpoint_answer(Some("102"), Some(0), None));
    d.expect_status("processRecords");

    // Two bad records (dead-lettered, so done) and a good one; the daemon
    // throttles the first checkpoint, the processor tries again.
    d.send(process_records(vec![
        record(&b64(b"not json at all"), "103", 0),
        record("%%% not base64 %%%", "104", 0),
        record(&tweet("5", "how do I rotate my API keys?"), "105", 0),
    ]));
    d.expect(checkpoint_request(Some("105"), Some(0)));
    d.send(checkpoint_answer(
        Some("105"),
        Some(0),
        Some("ThrottlingException"),
    ));
    d.expect(checkpoint_request(Some("105"), Some(0)));
    d.send(checkpoint_answer(Some("105"), Some(0), None));
    d.expect_status("processRecords");

    // Two user records of one KPL aggregate; the checkpoint fails for good
    // this time: no retry, the position stays pending.
    d.send(process_records(vec![
        record(&tweet("6", "billing page shows an error"), "106", 1),
        record(&tweet("7", "good morning"), "106", 2),
    ]));
    d.expect(checkpoint_request(Some("106"), Some(2)));
    d.send(checkpoint_answer(
        Some("106"),
        Some(2),
        Some("InvalidStateException"),
    ));
    d.expect_status("processRecords");

    // Shutdown requested: the pending position is checkpointed now.
    d.send(json!({ "action": "shutdownRequested" }));
    d.expect(checkpoint_request(Some("106"), Some(2)));
    d.send(checkpoint_answer(Some("106"), Some(2), None));
    d.expect_status("shutdownRequested");

    // Lease lost: no checkpoint, just the status.
    d.send(json!({ "action": "leaseLost" }));
    d.expect_status("leaseLost");

    // The dead letters were stored before the records' checkpoint.
    let entries = streamsift::JsonLinesDeadLetter::read_entries(&d.dead_letters).unwrap();
    let (status, rest, stderr) = d.finish();
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");
    assert!(rest.is_empty(), "unexpected lines: {rest:?}");
    let mut ids: Vec<&str> = entries.iter().map(|e| e.record_id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["shardId-000000000007:103", "shardId-000000000007:104"]
    );
    assert!(
        stderr.contains("checkpoint failed in the daemon"),
        "{stderr}"
    );
}

fn a_shard_end_is_checkpointed_with_no_sequence_number() {
    let mut d = Daemon::start();
    d.send(json!({ "action": "initialize", "shardId": "shardId-000000000008" }));
    d.expect_status("initialize");
    d.send(process_records(vec![record(
        &tweet("9", "@nimbuscloud console down"),
        "201",
        0,
    )]));
    d.expect(checkpoint_request(Some("201"), Some(0)));
    d.send(checkpoint_answer(Some("201"), Some(0), None));
    d.expect_status("processRecords");
    d.send(json!({ "action": "shardEnded" }));
    d.expect(checkpoint_request(None, None));
    d.send(checkpoint_answer(None, None, None));
    d.expect_status("shardEnded");
    let (status, rest, stderr) = d.finish();
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");
    assert!(rest.is_empty(), "unexpected lines: {rest:?}");
}

fn an_empty_batch_writes_no_checkpoint() {
    let mut d = Daemon::start();
    d.send(json!({ "action": "initialize", "shardId": "shardId-000000000009" }));
    d.expect_status("initialize");
    d.send(process_records(vec![]));
    d.expect_status("processRecords");
    let (status, rest, _) = d.finish();
    assert!(status.success());
    assert!(rest.is_empty(), "unexpected lines: {rest:?}");
}

fn a_line_that_is_not_a_protocol_message_stops_the_processor_with_a_clear_error() {
    let mut d = Daemon::start();
    d.send(json!({ "action": "initialize", "shardId": "shardId-000000000010" }));
    d.expect_status("initialize");
    d.stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"{\"action\":\"dance\"}\n")
        .expect("write");
    let (status, rest, stderr) = d.finish();
    assert!(!status.success());
    assert!(rest.is_empty(), "unexpected lines: {rest:?}");
    assert!(
        stderr.contains("line 2 from the daemon is not a MultiLang message"),
        "{stderr}"
    );
}

fn an_unasked_checkpoint_answer_is_a_protocol_error() {
    let mut d = Daemon::start();
    d.send(json!({ "action": "initialize", "shardId": "shardId-000000000011" }));
    d.expect_status("initialize");
    d.send(checkpoint_answer(Some("1"), Some(0), None));
    let (status, rest, stderr) = d.finish();
    assert!(!status.success());
    assert!(rest.is_empty(), "unexpected lines: {rest:?}");
    assert!(stderr.contains("found action \"checkpoint\""), "{stderr}");
}
