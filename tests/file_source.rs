//! `FileSource`: the Source conformance suite on it (one file, several
//! files, a reader standing in for stdin), and what is particular to it:
//! line-numbered ids, lines that are not UTF-8, too long or torn, a missing
//! file, a file that grows or shrinks between runs.

use std::sync::Arc;

use streamsift::checkpoint::{CheckpointStore, FileCheckpointStore, MemoryCheckpointStore};
use streamsift::file_source::{DEFAULT_STREAM, FileSourceError};
use streamsift::testing::source::conformance;
use streamsift::{
    Checkpoint, ClassifyError, Delivery, FileSource, MemoryDeadLetter, Pipeline, Policy, Position,
    Prediction, Receipt, Record, RouteError, Sequence, ShardId, Source, Stage,
};

async fn read_all<S: CheckpointStore>(source: &FileSource<S>) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(batch) = source.next_batch().await.expect("next_batch") {
        out.extend(batch.records);
    }
    out
}

fn ids(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

async fn commit_line(source: &impl Source, shard: &str, line: u64) {
    source
        .commit(vec![Checkpoint {
            shard: ShardId::new(shard),
            position: Position::Sequence(Sequence::from_offset(line)),
        }])
        .await
        .expect("commit");
}

#[tokio::test]
async fn one_file_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tweets.jsonl");
    let text: String = (0..250).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(&path, text).expect("write");
    let store = FileCheckpointStore::new(dir.path().join("checkpoints"));
    conformance(
        || {
            let (path, store) = (path.clone(), store.clone());
            async move {
                FileSource::builder(store)
                    .file(path)
                    .batch_size(20)
                    .open()
                    .await
                    .expect("open")
            }
        },
        250,
    )
    .await;
}

#[tokio::test]
async fn three_files_conform_as_three_shards() {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths: Vec<_> = (0..3)
        .map(|f| {
            let path = dir.path().join(format!("part-{f}.txt"));
            // Files of different lengths; the last has no final newline.
            let mut text: String = (0..40 + f * 30).map(|i| format!("line {i}\n")).collect();
            if f == 2 {
                text.pop();
            }
            std::fs::write(&path, text).expect("write");
            path
        })
        .collect();
    let store = Arc::new(MemoryCheckpointStore::new());
    conformance(
        || {
            let (paths, store) = (paths.clone(), Arc::clone(&store));
            async move {
                paths
                    .iter()
                    .fold(FileSource::builder(store), |b, p| b.file(p))
                    .stream("parts")
                    .batch_size(7)
                    .open()
                    .await
                    .expect("open")
            }
        },
        40 + 70 + 100,
    )
    .await;
}

#[tokio::test]
async fn a_reader_conforms_like_stdin() {
    let text: String = (0..90).map(|i| format!("line {i}\n")).collect();
    let store = MemoryCheckpointStore::new();
    conformance(
        || {
            let (text, store) = (text.clone(), store.clone());
            async move {
                FileSource::builder(store)
                    .reader("stdin", std::io::Cursor::new(text.into_bytes()))
                    .batch_size(10)
                    .open()
                    .await
                    .expect("open")
            }
        },
        90,
    )
    .await;
}

#[tokio::test]
async fn ids_name_the_file_and_the_line_from_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tweets.jsonl");
    std::fs::write(&path, "a\r\nb\n\nd").expect("write");
    let source = FileSource::open(&path, MemoryCheckpointStore::new())
        .await
        .expect("open");
    let records = read_all(&source).await;
    assert_eq!(
        ids(&records),
        [
            "tweets.jsonl:1",
            "tweets.jsonl:2",
            "tweets.jsonl:3",
            "tweets.jsonl:4"
        ]
    );
    let payloads: Vec<&[u8]> = records.iter().map(|r| &r.payload[..]).collect();
    assert_eq!(
        payloads,
        [&b"a"[..], b"b", b"", b"d"],
        "CRLF cut, empty line kept"
    );
    assert!(records.iter().all(|r| r.shard.as_str() == "tweets.jsonl"));
    assert_eq!(records[1].sequence, Sequence::from_offset(2));
    assert_eq!(source.stream_name(), DEFAULT_STREAM);

    let stdin = FileSource::builder(MemoryCheckpointStore::new())
        .reader("stdin", std::io::Cursor::new(b"x\ny\nz\n".to_vec()))
        .open()
        .await
        .expect("open");
    assert_eq!(
        ids(&read_all(&stdin).await),
        ["stdin:1", "stdin:2", "stdin:3"]
    );
}

/// A line that is not UTF-8, a line that is far too long, and a torn last
/// line go through a real pipeline: each is dead-lettered once, with its
/// bytes, and every other line is routed.
#[tokio::test]
async fn bad_lines_are_dead_lettered_and_the_others_routed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mixed.jsonl");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"{\"text\":\"one\"}\n");
    bytes.extend_from_slice(b"{\"text\":\"caf\xe9\"}\n"); // Latin-1, not UTF-8
    bytes.extend_from_slice(b"{\"text\":\"three\"}\n");
    bytes.extend_from_slice(format!("{{\"text\":\"{}\"}}\n", "x".repeat(5000)).as_bytes());
    bytes.extend_from_slice(b"{\"text\":\"five\"}\n");
    bytes.extend_from_slice(b"{\"text\":\"six"); // torn: no closing, no newline
    std::fs::write(&path, &bytes).expect("write");

    #[derive(serde::Deserialize)]
    struct Msg {
        text: String,
    }
    let source = FileSource::builder(MemoryCheckpointStore::new())
        .file(&path)
        .max_line_bytes(1000)
        .batch_size(2)
        .open()
        .await
        .expect("open");
    let dead = MemoryDeadLetter::new();
    let routed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&routed);
    let report = Pipeline::new(source)
        .json::<Msg>()
        .classify(|m: &Msg| {
            let ok = !m.text.is_empty();
            async move {
                Ok::<_, ClassifyError>(Prediction::binary("yes", "no", if ok { 0.9 } else { 0.0 }))
            }
        })
        .policy(Policy::binary(0.5, "out"))
        .route(move |d: &Delivery<'_, Msg>| {
            sink.lock().unwrap().push(d.record.id.clone());
            let route = d.route.clone();
            async move { Ok::<_, RouteError>(Receipt::new(route)) }
        })
        .dead_letter(dead.clone())
        .run()
        .await
        .expect("run");
    assert_eq!(report.stats.records_in, 6, "every line is a record");
    let mut routed = routed.lock().unwrap().clone();
    routed.sort();
    assert_eq!(routed, ["mixed.jsonl:1", "mixed.jsonl:3", "mixed.jsonl:5"]);
    let mut letters: Vec<(String, Stage, String, usize)> = dead
        .entries()
        .iter()
        .map(|d| {
            (
                d.record.id.clone(),
                d.stage,
                d.kind.clone(),
                d.record.payload.len(),
            )
        })
        .collect();
    letters.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        letters,
        [
            (
                "mixed.jsonl:2".to_string(),
                Stage::Decode,
                "invalid_utf8".to_string(),
                15
            ),
            (
                "mixed.jsonl:4".to_string(),
                Stage::Decode,
                "corrupt".to_string(),
                1000
            ),
            (
                "mixed.jsonl:6".to_string(),
                Stage::Decode,
                "invalid_json".to_string(),
                12
            ),
        ]
    );
    let long = dead
        .entries()
        .into_iter()
        .find(|d| d.record.id == "mixed.jsonl:4")
        .expect("the long line");
    assert!(
        long.reason.contains("5011 bytes") && long.reason.contains("max_line_bytes"),
        "{}",
        long.reason
    );
    assert_eq!(
        &dead
            .entries()
            .into_iter()
            .find(|d| d.record.id == "mixed.jsonl:2")
            .expect("the Latin-1 line")
            .record
            .payload[..],
        b"{\"text\":\"caf\xe9\"}",
        "the raw bytes are kept"
    );
}

#[tokio::test]
async fn a_missing_file_is_a_clear_error_naming_the_path_hint_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nope").join("tweets.jsonl");
    let err = FileSource::open(&path, MemoryCheckpointStore::new())
        .await
        .expect_err("a missing file");
    assert!(matches!(err, FileSourceError::NotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("check the path"), "hint first: {text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    let source_err: streamsift::SourceError = err.into();
    assert!(!source_err.is_retryable());

    let err = FileSource::open(dir.path(), MemoryCheckpointStore::new())
        .await
        .expect_err("a directory");
    assert!(matches!(err, FileSourceError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("check that the input file"),
        "{err}"
    );
}

#[tokio::test]
async fn builder_mistakes_are_clear_errors() {
    let err = FileSource::builder(MemoryCheckpointStore::new())
        .open()
        .await
        .expect_err("no input");
    assert!(matches!(err, FileSourceError::NoInput), "{err:?}");
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["a", "b"] {
        std::fs::create_dir(dir.path().join(sub)).expect("dir");
        std::fs::write(dir.path().join(sub).join("t.jsonl"), "x\n").expect("write");
    }
    let err = FileSource::builder(MemoryCheckpointStore::new())
        .file(dir.path().join("a/t.jsonl"))
        .file(dir.path().join("b/t.jsonl"))
        .open()
        .await
        .expect_err("two inputs named t.jsonl");
    assert!(err.to_string().contains("\"t.jsonl\""), "{err}");

    // A store holding another source's positions.
    let store = MemoryCheckpointStore::new();
    store
        .save(
            DEFAULT_STREAM,
            &[Checkpoint {
                shard: ShardId::new("t.jsonl"),
                position: Position::Sequence(Sequence::with_sub_sequence("4", 1)),
            }],
        )
        .await
        .expect("seed");
    let err = FileSource::open(dir.path().join("a/t.jsonl"), store)
        .await
        .expect_err("a foreign checkpoint");
    assert!(
        matches!(err, FileSourceError::ForeignCheckpoint { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("use another stream name"),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_that_grows_is_read_from_where_the_last_run_stopped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("log.txt");
    std::fs::write(&path, "1\n2\n3\n").expect("write");
    let store = MemoryCheckpointStore::new();
    let first = FileSource::open(&path, store.clone()).await.expect("open");
    assert_eq!(
        read_all(&first).await.len(),
        3,
        "the source ends at the end"
    );
    commit_line(&first, "log.txt", 3).await;

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open for append");
    std::io::Write::write_all(&mut f, b"4\n5\n").expect("append");
    let second = FileSource::open(&path, store.clone()).await.expect("open");
    assert_eq!(ids(&read_all(&second).await), ["log.txt:4", "log.txt:5"]);
}

#[tokio::test]
async fn a_file_shorter_than_its_checkpoint_is_an_error_at_its_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("log.txt");
    std::fs::write(&path, "1\n2\n3\n4\n").expect("write");
    let store = MemoryCheckpointStore::new();
    let first = FileSource::open(&path, store.clone()).await.expect("open");
    read_all(&first).await;
    commit_line(&first, "log.txt", 4).await;

    std::fs::write(&path, "new 1\n").expect("replace");
    let second = FileSource::open(&path, store).await.expect("open");
    let err = second.next_batch().await.expect_err("replaced file");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("log.txt has 1 lines") && text.contains("line 4"),
        "{text}"
    );
}

/// A read future dropped part-way (at shutdown) loses no line: the next
/// call gives every line, once, in order.
#[tokio::test]
async fn a_dropped_read_loses_nothing() {
    let (mut writer, reader) = tokio::io::duplex(64);
    let source = FileSource::builder(MemoryCheckpointStore::new())
        .reader("pipe", reader)
        .batch_size(4)
        .open()
        .await
        .expect("open");
    use tokio::io::AsyncWriteExt;
    writer.write_all(b"a\nb\nc").await.expect("write");
    // Three lines are not a batch of four and the pipe is open: the read
    // waits, having taken "a", "b" and part of "c". Drop it.
    let pending = tokio::time::timeout(std::time::Duration::from_millis(50), source.next_batch());
    assert!(pending.await.is_err(), "the read waits for more lines");
    writer.write_all(b"c\nd\ne\n").await.expect("write");
    drop(writer);
    let records = read_all(&source).await;
    assert_eq!(
        ids(&records),
        ["pipe:1", "pipe:2", "pipe:3", "pipe:4", "pipe:5"]
    );
    let payloads: Vec<&[u8]> = records.iter().map(|r| &r.payload[..]).collect();
    assert_eq!(payloads, [&b"a"[..], b"b", b"cc", b"d", b"e"]);
}
