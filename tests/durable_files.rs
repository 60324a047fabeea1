//! Issue 13, durable files: every JSON-lines file the crate appends to cuts
//! a torn tail (a write cut short by a crash) before appending, with a
//! warning that names the file and the byte count but never the bytes, and
//! dead-letter files are only ever appended to or rotated aside.
//!
//! The rollback of a failed append (short write, failed fsync) is tested
//! with an injected failing file in `src/jsonl.rs`.

mod common;

use std::time::SystemTime;

use common::logs::process_logs;
use streamsift::active::{DatasetStore, LabeledExample};
use streamsift::dead_letter::{DeadLetter, DeadLetterSink, JsonLinesDeadLetter, Stage};
use streamsift::error::ErrorClass;
use streamsift::local::Example;
use streamsift::record::{Record, Sequence, ShardId};

fn dead_letter(offset: u64, payload: &str) -> DeadLetter {
    DeadLetter {
        record: Record::new(
            ShardId::new("s1"),
            Sequence::from_offset(offset),
            "pk",
            payload.as_bytes().to_vec(),
        ),
        stage: Stage::Decode,
        class: ErrorClass::Permanent,
        kind: "invalid_json".into(),
        reason: "not JSON".into(),
        attempts: 1,
        route: None,
        at: SystemTime::now(),
    }
}

#[tokio::test]
async fn durable_files_dead_letter_torn_tail_is_cut() {
    let logs = process_logs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dl.jsonl");
    JsonLinesDeadLetter::create(&path)
        .unwrap()
        .store(&dead_letter(1, "first"))
        .await
        .unwrap();
    // A crash in the middle of the next append left half a line.
    let torn = "{\"id\":\"s1:2\",\"payload\":\"TORN-PAYLOAD-MARKER";
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(torn.as_bytes());
    std::fs::write(&path, &bytes).unwrap();

    // The restarted process appends: on a line of its own.
    let sink = JsonLinesDeadLetter::create(&path).unwrap();
    sink.store(&dead_letter(3, "third")).await.unwrap();
    sink.store(&dead_letter(4, "fourth")).await.unwrap();
    let entries = JsonLinesDeadLetter::read_entries(&path).expect("every line is an entry");
    let ids: Vec<&str> = entries.iter().map(|e| e.record_id.as_str()).collect();
    assert_eq!(ids, ["s1:1", "s1:3", "s1:4"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n') && !text.contains("TORN"), "{text}");

    let logs = logs.text();
    let warning = logs
        .lines()
        .find(|l| l.contains("unfinished last line") && l.contains("dl.jsonl"))
        .unwrap_or_else(|| panic!("no warning naming the file:\n{logs}"));
    assert!(
        warning.contains(&format!("bytes={}", torn.len())),
        "{warning}"
    );
    assert!(
        !logs.contains("TORN-PAYLOAD-MARKER"),
        "the torn bytes leaked into the logs:\n{logs}"
    );
}

#[test]
fn durable_files_dataset_store_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    let store = DatasetStore::new(&path);
    let labeled = |id: &str| LabeledExample {
        example: {
            let mut e = Example::new(format!("text {id}")).labeled("problem");
            e.id = Some(id.into());
            e
        },
        agreement: 1.0,
        answers: 3,
        task: format!("t-{id}"),
    };
    store.append(&[labeled("a")]).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"id\":\"b\",\"text\":\"half");
    std::fs::write(&path, &bytes).unwrap();
    store.append(&[labeled("c")]).unwrap();
    let ids: Vec<String> = store
        .labeled()
        .expect("no glued line")
        .into_iter()
        .filter_map(|l| l.example.id)
        .collect();
    assert_eq!(ids, ["a", "c"]);
}

#[tokio::test]
async fn durable_files_dead_letter_rotate_keeps_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dl.jsonl");
    assert_eq!(JsonLinesDeadLetter::rotate(&path).unwrap(), None, "no file");
    let mut moved = Vec::new();
    for round in 0..3u64 {
        let sink = JsonLinesDeadLetter::create(&path).unwrap();
        sink.store(&dead_letter(round, "x")).await.unwrap();
        drop(sink);
        // Rotated within the same millisecond: still a name of its own.
        moved.push(JsonLinesDeadLetter::rotate(&path).unwrap().expect("moved"));
    }
    assert!(!path.exists());
    for (round, old) in moved.iter().enumerate() {
        let entries = JsonLinesDeadLetter::read_entries(old).unwrap();
        assert_eq!(entries.len(), 1, "{}", old.display());
        assert_eq!(entries[0].record_id, format!("s1:{round}"));
    }
}

#[tokio::test]
async fn durable_files_dead_letter_on_a_full_disk_is_a_retryable_error() {
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full here");
        return;
    }
    let sink = JsonLinesDeadLetter::create("/dev/full").unwrap();
    let err = sink.store(&dead_letter(1, "x")).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    // Trying again is still an error, never a silent success.
    assert!(sink.store(&dead_letter(1, "x")).await.is_err());
}
