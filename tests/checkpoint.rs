//! The checkpoint stores: the public conformance suite
//! (`streamsift::testing::checkpoint`) run against the in-memory, file and
//! DynamoDB (moto) stores and against deliberately broken stores, then what
//! is particular to each.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use streamsift::checkpoint::{CheckpointStore, FileCheckpointStore, MemoryCheckpointStore};
use streamsift::testing::checkpoint::conformance;
use streamsift::{Checkpoint, CheckpointError, Position, Sequence, ShardId};

/// A 56-digit sequence number as AWS gives them.
const AWS_SEQ: &str = "49590338271490256608559692538361571095921575989136588898";
const AWS_SEQ_NEXT: &str = "49590338271490256608559692538361571095921575989136588899";

fn seq(n: &str) -> Position {
    Position::Sequence(Sequence::new(n))
}

fn sub(n: &str, s: u64) -> Position {
    Position::Sequence(Sequence::with_sub_sequence(n, s))
}

fn cp(shard: &str, position: Position) -> Checkpoint {
    Checkpoint {
        shard: ShardId::new(shard),
        position,
    }
}

fn shard(id: &str) -> ShardId {
    ShardId::new(id)
}

/// Asserts a refused backwards save: permanent, naming the shard and both
/// positions.
fn assert_refused(result: Result<(), CheckpointError>, shard: &str, stored: &str, attempted: &str) {
    let err = match result {
        Ok(()) => panic!("a backwards save of {shard} ({stored} -> {attempted}) was accepted"),
        Err(e) => e,
    };
    assert!(
        !err.is_retryable(),
        "a backwards save must be permanent: {err}"
    );
    let text = err.to_string();
    assert!(text.contains("backwards"), "{text}");
    assert!(text.contains(shard), "names the shard: {text}");
    assert!(
        text.contains(&format!("stored {stored}")),
        "names the stored position: {text}"
    );
    assert!(
        text.contains(&format!("attempted {attempted}")),
        "names the attempted position: {text}"
    );
}

async fn load(store: &impl CheckpointStore, stream: &str) -> BTreeMap<ShardId, Position> {
    match store.load(stream).await {
        Ok(map) => map,
        Err(e) => panic!("load {stream}: {e}"),
    }
}

async fn save(store: &impl CheckpointStore, stream: &str, checkpoints: &[Checkpoint]) {
    if let Err(e) = store.save(stream, checkpoints).await {
        panic!("save {stream} {checkpoints:?}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance(Arc::new(MemoryCheckpointStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    conformance(Arc::new(FileCheckpointStore::new(
        dir.path().join("checkpoints"),
    )))
    .await;
}

/// The crate's stores word a backwards refusal one way (the suite only asks
/// that the shard and both positions be named).
#[tokio::test]
async fn the_crate_stores_say_backwards_and_name_stored_and_attempted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores: Vec<Arc<dyn CheckpointStore>> = vec![
        Arc::new(MemoryCheckpointStore::new()),
        Arc::new(FileCheckpointStore::new(dir.path().join("checkpoints"))),
    ];
    for store in &stores {
        save(store, "w", &[cp("s0", seq(AWS_SEQ_NEXT))]).await;
        assert_refused(
            store.save("w", &[cp("s0", seq("10"))]).await,
            "s0",
            &format!("sequence {AWS_SEQ_NEXT}"),
            "sequence 10",
        );
        save(store, "w", &[cp("s1", seq("7"))]).await;
        assert_refused(
            store.save("w", &[cp("s1", sub("7", 3))]).await,
            "s1",
            "sequence 7",
            "sequence 7 sub-sequence 3",
        );
        save(store, "w", &[cp("s2", Position::ShardEnd)]).await;
        assert_refused(
            store.save("w", &[cp("s2", seq("1000"))]).await,
            "s2",
            "SHARD_END",
            "sequence 1000",
        );
    }
}

/// How a [`Toy`] store breaks the contract.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Bug {
    None,
    /// Stores whatever it is given.
    AcceptsBackwards,
    /// Compares sequence numbers as text ("10" before "9").
    TextOrder,
    /// Stores the checkpoints of a batch one by one, up to the refused one.
    Partial,
    /// Refuses a backwards save with a retryable error.
    RetryableRefusal,
    /// Escapes '/' as "%2F" in its keys, so "a/b" and "a%2Fb" collide.
    Collides,
}

/// A store over a map, right except for its bug.
#[derive(Debug)]
struct Toy {
    bug: Bug,
    map: std::sync::Mutex<BTreeMap<(String, ShardId), Position>>,
}

impl Toy {
    fn new(bug: Bug) -> Arc<Toy> {
        Arc::new(Toy {
            bug,
            map: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    fn key(&self, stream: &str) -> String {
        if self.bug == Bug::Collides {
            stream.replace('/', "%2F")
        } else {
            stream.to_string()
        }
    }

    fn forward(&self, stored: &Position, next: &Position) -> bool {
        match (self.bug, stored, next) {
            (Bug::AcceptsBackwards, _, _) => true,
            (Bug::TextOrder, Position::Sequence(a), Position::Sequence(b)) => {
                (a.number.as_str(), a.sub_sequence) <= (b.number.as_str(), b.sub_sequence)
            }
            _ => streamsift::checkpoint::is_forward(stored, next),
        }
    }
}

#[async_trait::async_trait]
impl CheckpointStore for Toy {
    async fn load(&self, stream: &str) -> Result<BTreeMap<ShardId, Position>, CheckpointError> {
        let key = self.key(stream);
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map
            .iter()
            .filter(|((s, _), _)| *s == key)
            .map(|((_, shard), p)| (shard.clone(), p.clone()))
            .collect())
    }

    async fn save(&self, stream: &str, checkpoints: &[Checkpoint]) -> Result<(), CheckpointError> {
        let key = self.key(stream);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = map.clone();
        for c in checkpoints {
            if let Position::Sequence(s) = &c.position
                && s.number.is_empty()
            {
                return Err(CheckpointError::permanent("empty sequence number"));
            }
            let k = (key.clone(), c.shard.clone());
            if let Some(stored) = next.get(&k)
                && !self.forward(stored, &c.position)
            {
                let text = format!(
                    "backwards: {} stored {stored:?} attempted {:?}",
                    c.shard, c.position
                );
                if self.bug == Bug::Partial {
                    *map = next;
                }
                return Err(if self.bug == Bug::RetryableRefusal {
                    CheckpointError::unavailable(text)
                } else {
                    CheckpointError::permanent(text)
                });
            }
            next.insert(k, c.position.clone());
        }
        *map = next;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_toy_store_conforms() {
    conformance(Toy::new(Bug::None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "checkpoint store conformance: rule \"numeric-order\" broken")]
async fn a_store_that_moves_back_is_caught() {
    conformance(Toy::new(Bug::AcceptsBackwards)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "checkpoint store conformance: rule \"numeric-order\" broken")]
async fn a_store_comparing_sequence_numbers_as_text_is_caught() {
    conformance(Toy::new(Bug::TextOrder)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "checkpoint store conformance: rule \"batch-all-or-nothing\" broken")]
async fn a_store_that_saves_part_of_a_refused_batch_is_caught() {
    conformance(Toy::new(Bug::Partial)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "checkpoint store conformance: rule \"forward-only\" broken")]
async fn a_store_that_refuses_backwards_saves_as_retryable_is_caught() {
    conformance(Toy::new(Bug::RetryableRefusal)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "checkpoint store conformance: rule \"streams-isolated\" broken")]
async fn a_store_whose_stream_keys_collide_is_caught() {
    conformance(Toy::new(Bug::Collides)).await;
}

#[tokio::test]
async fn memory_store_can_be_inspected_and_seeded() {
    let store = MemoryCheckpointStore::new();
    let view = store.clone();
    save(&store, "tweets", &[cp("s0", seq("4"))]).await;
    assert_eq!(view.positions("tweets").get(&shard("s0")), Some(&seq("4")));
    assert_eq!(view.streams(), vec!["tweets".to_string()]);
    assert_eq!(view.save_count(), 1);
    assert!(store.save("tweets", &[cp("s0", seq("3"))]).await.is_err());
    assert_eq!(view.save_count(), 1, "a refused save is not counted");

    store
        .record_lineage("tweets", &shard("s2"), &[shard("s0"), shard("s1")])
        .await
        .expect("lineage");
    assert_eq!(
        view.lineage("tweets").get(&shard("s2")),
        Some(&vec![shard("s0"), shard("s1")])
    );

    // Seeding bypasses the forward-only rule, for setting up a restart.
    view.seed("tweets", shard("s0"), seq("1"));
    assert_eq!(
        load(&store, "tweets").await.get(&shard("s0")),
        Some(&seq("1"))
    );
}

mod file {
    use super::*;

    #[tokio::test]
    async fn a_new_store_over_the_same_directory_sees_the_data() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = FileCheckpointStore::new(dir.path());
        save(
            &first,
            "tweets",
            &[cp("s0", sub(AWS_SEQ, 4)), cp("s1", Position::ShardEnd)],
        )
        .await;
        drop(first);
        let second = FileCheckpointStore::new(dir.path());
        let expected: BTreeMap<ShardId, Position> = [
            (shard("s0"), sub(AWS_SEQ, 4)),
            (shard("s1"), Position::ShardEnd),
        ]
        .into_iter()
        .collect();
        assert_eq!(load(&second, "tweets").await, expected);
        // And it keeps refusing to go back.
        assert_refused(
            second.save("tweets", &[cp("s1", seq("5"))]).await,
            "s1",
            "SHARD_END",
            "sequence 5",
        );
    }

    #[tokio::test]
    async fn the_file_is_versioned_json_named_after_the_stream() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileCheckpointStore::new(dir.path());
        let stream = "arn:aws:kinesis:us-east-1:123456789012:stream/tweets";
        save(&store, stream, &[cp("shardId-000000000000", sub("12", 3))]).await;
        let path = store.path_for(stream);
        assert_eq!(path.parent(), Some(dir.path()));
        let text = std::fs::read_to_string(&path).expect("the stream's file exists");
        let json: serde_json::Value = serde_json::from_str(&text).expect("the file is JSON");
        assert_eq!(json["format"], "streamsift-checkpoints");
        assert_eq!(json["version"], 2);
        assert_eq!(json["stream"], stream);
        assert_eq!(json["shards"]["shardId-000000000000"]["number"], "12");
        assert_eq!(json["shards"]["shardId-000000000000"]["sub_sequence"], 3);
        // Only the one file: the temp file was renamed, not left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[tokio::test]
    async fn a_temp_file_left_by_a_crash_does_not_matter() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileCheckpointStore::new(dir.path());
        save(&store, "tweets", &[cp("s0", seq("10"))]).await;
        let name = store
            .path_for("tweets")
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        // What a crash between writing and renaming leaves: a half-written
        // temp file next to the good one.
        let temp = dir.path().join(format!(".{name}.tmp-999999-0"));
        std::fs::write(&temp, b"{\"format\": \"streamsift-checkp").expect("write temp");
        assert_eq!(
            load(&store, "tweets").await.get(&shard("s0")),
            Some(&seq("10"))
        );
        save(&store, "tweets", &[cp("s0", seq("11"))]).await;
        let reopened = FileCheckpointStore::new(dir.path());
        assert_eq!(
            load(&reopened, "tweets").await.get(&shard("s0")),
            Some(&seq("11"))
        );
    }

    fn assert_corrupt(err: CheckpointError, path: &std::path::Path, what: &str) {
        assert!(!err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string()),
            "names the path: {text}"
        );
        assert!(text.contains(what), "says what is wrong ({what}): {text}");
        assert!(text.contains("move it away"), "says what to do: {text}");
    }

    #[tokio::test]
    async fn a_truncated_file_is_a_clear_error_and_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileCheckpointStore::new(dir.path());
        save(
            &store,
            "tweets",
            &[cp("s0", seq("10")), cp("s1", seq("20"))],
        )
        .await;
        let path = store.path_for("tweets");
        let full = std::fs::read(&path).expect("read");
        let torn = &full[..full.len() / 2];
        std::fs::write(&path, torn).expect("truncate");

        let err = store
            .load("tweets")
            .await
            .expect_err("a torn file must not load");
        assert_corrupt(err, &path, "not a complete JSON object");
        // A save does not paper over it either, and leaves the file as it is.
        let err = store
            .save("tweets", &[cp("s0", seq("30"))])
            .await
            .expect_err("a save over a torn file must fail");
        assert_corrupt(err, &path, "not a complete JSON object");
        assert_eq!(std::fs::read(&path).expect("read"), torn);
    }

    #[tokio::test]
    async fn empty_wrong_format_and_newer_files_are_clear_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileCheckpointStore::new(dir.path());
        let path = store.path_for("tweets");

        std::fs::write(&path, b"").expect("write");
        let err = store.load("tweets").await.expect_err("empty file");
        assert_corrupt(err, &path, "it is empty");

        std::fs::write(&path, br#"{"shards": {}}"#).expect("write");
        let err = store.load("tweets").await.expect_err("no format field");
        assert_corrupt(err, &path, "no format field");

        std::fs::write(
            &path,
            br#"{"format": "streamsift-checkpoints", "version": 1, "stream": "tweets",
                 "shards": {"s0": {"kind": "sequence"}}}"#,
        )
        .expect("write");
        let err = store.load("tweets").await.expect_err("missing number");
        assert_corrupt(err, &path, "do not match format version 1");

        std::fs::write(
            &path,
            br#"{"format": "streamsift-checkpoints", "version": 3, "stream": "tweets", "shards": {}}"#,
        )
        .expect("write");
        let err = store.load("tweets").await.expect_err("newer version");
        assert!(err.to_string().contains("newer streamsift"), "{err}");
    }

    #[tokio::test]
    async fn a_version_1_file_loads_as_incarnation_unknown_and_meta_round_trips() {
        use streamsift::checkpoint::{StreamIncarnation, StreamMeta};
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileCheckpointStore::new(dir.path());
        let path = store.path_for("tweets");
        std::fs::write(
            &path,
            br#"{"format": "streamsift-checkpoints", "version": 1, "stream": "tweets",
                 "shards": {"s0": {"kind": "sequence", "number": "7"}}}"#,
        )
        .expect("write");
        assert_eq!(
            load(&store, "tweets").await.get(&shard("s0")),
            Some(&seq("7"))
        );
        assert_eq!(store.load_meta("tweets").await.expect("meta"), None);
        let meta = StreamMeta::new(
            Some(StreamIncarnation {
                arn: "arn:aws:kinesis:us-east-1:123456789012:stream/tweets".into(),
                created_ms: 1_700_000_000_123,
            }),
            Some(1_700_000_001_000_456),
        );
        store.save_meta("tweets", &meta).await.expect("save meta");
        let reopened = FileCheckpointStore::new(dir.path());
        assert_eq!(
            reopened.load_meta("tweets").await.expect("meta"),
            Some(meta)
        );
        assert_eq!(
            load(&reopened, "tweets").await.get(&shard("s0")),
            Some(&seq("7")),
            "positions kept"
        );
        save(&reopened, "tweets", &[cp("s0", seq("8"))]).await;
        assert!(
            reopened.load_meta("tweets").await.expect("meta").is_some(),
            "a save keeps the meta"
        );
        reopened.reset("tweets").await.expect("reset");
        assert!(load(&reopened, "tweets").await.is_empty());
        assert_eq!(reopened.load_meta("tweets").await.expect("meta"), None);
    }

    #[tokio::test]
    async fn a_file_of_another_stream_is_not_read_as_this_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileCheckpointStore::new(dir.path());
        save(&store, "a", &[cp("s0", seq("10"))]).await;
        std::fs::copy(store.path_for("a"), store.path_for("b")).expect("copy");
        let err = store
            .load("b")
            .await
            .expect_err("the file belongs to stream a");
        assert!(err.to_string().contains("belongs to stream \"a\""), "{err}");
    }

    #[tokio::test]
    async fn a_directory_that_is_a_file_is_a_permanent_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let not_a_dir = dir.path().join("plain-file");
        std::fs::write(&not_a_dir, b"x").expect("write");
        let store = FileCheckpointStore::new(&not_a_dir);
        let err = store.load("tweets").await.expect_err("not a directory");
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("plain-file"), "{err}");
        let err = store
            .save("tweets", &[cp("s0", seq("1"))])
            .await
            .expect_err("not a directory");
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("writable directory"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_store_instances_over_one_directory_do_not_lose_updates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let stores = [
            Arc::new(FileCheckpointStore::new(dir.path())),
            Arc::new(FileCheckpointStore::new(dir.path())),
        ];
        let mut tasks = Vec::new();
        for n in [
            7u64, 20, 3, 15, 1, 12, 18, 9, 4, 16, 11, 2, 19, 6, 14, 10, 5, 17, 8, 13,
        ] {
            let store = Arc::clone(&stores[(n % 2) as usize]);
            tasks.push(tokio::spawn(async move {
                // A shard of its own, which no other save may overwrite, and
                // a shared one that only moves forward.
                let own = store
                    .save("tweets", &[cp(&format!("x{n}"), seq(&n.to_string()))])
                    .await;
                let shared = store.save("tweets", &[cp("s0", seq(&n.to_string()))]).await;
                (n, own, shared)
            }));
        }
        for task in tasks {
            let (n, own, shared) = task.await.expect("task");
            assert!(own.is_ok(), "x{n}: {own:?}");
            if let Err(e) = shared {
                assert!(e.to_string().contains("backwards"), "s0 to {n}: {e}");
            }
        }
        let stored = load(&*stores[0], "tweets").await;
        for n in 1..=20u64 {
            let own = shard(&format!("x{n}"));
            assert_eq!(stored.get(&own), Some(&seq(&n.to_string())), "x{n} lost");
        }
        assert_eq!(stored.get(&shard("s0")), Some(&seq("20")));
    }

    /// A pipeline that is cancelled (its task aborted, as a crash-restart in
    /// one process does) drops a save while the store's blocking write is
    /// still running. That write must land before any later load or save of
    /// the file, never after: landing after a restart's load made the
    /// restart's next commit "backwards" (the flaky
    /// `kinesis::restart_from_the_file_store_loses_nothing`: "refused to move
    /// shard ... backwards: stored 192, attempted 188"), and landing after a
    /// restart's save put back that shard's older position.
    ///
    /// A race against real threads: each round aborts a save at another
    /// moment of its read-and-write; the file has 4,000 other shards so the
    /// write takes a few milliseconds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_loss_a_cancelled_save_lands_before_any_later_load_or_save() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileCheckpointStore::new(dir.path());
        let filler: Vec<Checkpoint> = (0..4000)
            .map(|i| cp(&format!("filler-{i:04}"), seq("1")))
            .collect();
        save(&store, "big", &filler).await;
        save(&store, "big", &[cp("a", seq("1")), cp("b", seq("1"))]).await;
        let mut refused = Vec::new();
        let mut regressed = Vec::new();
        for round in 0u64..40 {
            let base = 1_000_000 * (round + 1);
            // The first run: a save of both shards, given up on somewhere
            // between its start and the end of its write.
            let first = {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .save(
                            "big",
                            &[
                                cp("a", seq(&base.to_string())),
                                cp("b", seq(&base.to_string())),
                            ],
                        )
                        .await
                })
            };
            tokio::time::sleep(std::time::Duration::from_micros(round * 750 % 30_000)).await;
            first.abort();
            let _ = first.await;
            // The restart: load, go on from there on shard a, then save b
            // past whatever it loaded.
            let loaded = load(&store, "big").await;
            let number = |p: Option<&Position>| match p {
                Some(Position::Sequence(s)) => s.number.parse::<u64>().expect("number"),
                other => panic!("{other:?}"),
            };
            let (a, b) = (
                number(loaded.get(&shard("a"))),
                number(loaded.get(&shard("b"))),
            );
            let next_b = b + 1;
            if let Err(e) = store
                .save("big", &[cp("b", seq(&next_b.to_string()))])
                .await
            {
                refused.push(format!("round {round}: {e}"));
                continue;
            }
            // Let any straggling write land, then look.
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            let after = load(&store, "big").await;
            let (a2, b2) = (
                number(after.get(&shard("a"))),
                number(after.get(&shard("b"))),
            );
            if a2 != a || b2 != next_b {
                regressed.push(format!(
                    "round {round}: loaded a={a} b={b}, saved b={next_b}, then found a={a2} b={b2}"
                ));
            }
        }
        assert!(
            refused.is_empty() && regressed.is_empty(),
            "a cancelled save landed after a later load or save.\nrefused: {refused:#?}\n\
             changed after the restart's save: {regressed:#?}"
        );
    }
}

#[cfg(feature = "dynamodb")]
mod dynamodb {
    use super::*;

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
    use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
    use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
        ScalarAttributeType,
    };
    use streamsift::checkpoint::{DynamoDbCheckpointStore, LeaseKeys};

    use crate::common::moto::{Moto, free_port, sdk_config_for};

    const TABLE: &str = "streamsift-leases";

    async fn store(moto: &Moto, worker: &str, keys: LeaseKeys) -> DynamoDbCheckpointStore {
        DynamoDbCheckpointStore::builder(&moto.sdk_config().await, TABLE)
            .worker_id(worker)
            .lease_keys(keys)
            .create_table_if_missing(true)
            .build()
            .await
            .expect("create the lease table")
    }

    async fn raw_item(client: &Client, key: &str) -> HashMap<String, AttributeValue> {
        client
            .get_item()
            .table_name(TABLE)
            .key("leaseKey", AttributeValue::S(key.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
            .unwrap_or_else(|| panic!("no item {key}"))
    }

    fn s(item: &HashMap<String, AttributeValue>, name: &str) -> String {
        match item.get(name) {
            Some(AttributeValue::S(v)) => v.clone(),
            other => panic!("{name} should be S, is {other:?}"),
        }
    }

    fn n(item: &HashMap<String, AttributeValue>, name: &str) -> String {
        match item.get(name) {
            Some(AttributeValue::N(v)) => v.clone(),
            other => panic!("{name} should be N, is {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb_store_conforms() {
        let moto = Moto::start();
        let store = store(&moto, "worker-a", LeaseKeys::StreamAndShard).await;
        // Twice is fine: the table exists the second time.
        DynamoDbCheckpointStore::builder(&moto.sdk_config().await, TABLE)
            .create_table_if_missing(true)
            .build()
            .await
            .expect("idempotent");
        conformance(Arc::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_have_the_kcl_lease_columns() {
        let moto = Moto::start();
        let store = store(&moto, "worker-a", LeaseKeys::ShardId).await;
        let client = Client::new(&moto.sdk_config().await);

        save(
            &store,
            "tweets",
            &[cp("shardId-000000000000", sub(AWS_SEQ, 2))],
        )
        .await;
        let item = raw_item(&client, "shardId-000000000000").await;
        assert_eq!(s(&item, "leaseKey"), "shardId-000000000000");
        assert_eq!(s(&item, "checkpoint"), AWS_SEQ);
        assert_eq!(n(&item, "checkpointSubSequenceNumber"), "2");
        assert_eq!(n(&item, "leaseCounter"), "1");
        assert_eq!(s(&item, "leaseOwner"), "worker-a");
        assert_eq!(n(&item, "ownerSwitchesSinceCheckpoint"), "0");
        assert_eq!(s(&item, "streamName"), "tweets");
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "checkpoint",
                "checkpointSubSequenceNumber",
                "leaseCounter",
                "leaseKey",
                "leaseOwner",
                "ownerSwitchesSinceCheckpoint",
                "streamName"
            ]
        );

        // The whole record done: no sub-sequence; the counter moves on.
        save(
            &store,
            "tweets",
            &[cp("shardId-000000000000", seq(AWS_SEQ))],
        )
        .await;
        let item = raw_item(&client, "shardId-000000000000").await;
        assert!(
            !item.contains_key("checkpointSubSequenceNumber"),
            "{item:?}"
        );
        assert_eq!(n(&item, "leaseCounter"), "2");

        save(
            &store,
            "tweets",
            &[cp("shardId-000000000000", Position::ShardEnd)],
        )
        .await;
        let item = raw_item(&client, "shardId-000000000000").await;
        assert_eq!(s(&item, "checkpoint"), "SHARD_END");

        // Lineage: a string set under the KCL's name, on a new lease.
        store
            .record_lineage(
                "tweets",
                &shard("shardId-000000000002"),
                &[shard("shardId-000000000000"), shard("shardId-000000000001")],
            )
            .await
            .expect("lineage");
        let child = raw_item(&client, "shardId-000000000002").await;
        match child.get("parentShardId") {
            Some(AttributeValue::Ss(set)) => {
                let mut set = set.clone();
                set.sort();
                assert_eq!(set, ["shardId-000000000000", "shardId-000000000001"]);
            }
            other => panic!("parentShardId should be SS, is {other:?}"),
        }
        assert_eq!(s(&child, "checkpoint"), "TRIM_HORIZON");
        assert_eq!(n(&child, "leaseCounter"), "0");
        // A lease without a checkpoint yet is not a position.
        let loaded = load(&store, "tweets").await;
        assert_eq!(loaded.get(&shard("shardId-000000000002")), None);
        assert_eq!(
            loaded.get(&shard("shardId-000000000000")),
            Some(&Position::ShardEnd)
        );

        // Checkpointing the child keeps its lineage; recording it again
        // does not change it.
        save(&store, "tweets", &[cp("shardId-000000000002", seq("1"))]).await;
        store
            .record_lineage("tweets", &shard("shardId-000000000002"), &[shard("other")])
            .await
            .expect("lineage again");
        let leases = store.leases("tweets").await.expect("leases");
        let child = leases
            .iter()
            .find(|l| l.shard == shard("shardId-000000000002"))
            .expect("child lease");
        assert_eq!(child.position, Some(seq("1")));
        let mut parents = child.parents.clone();
        parents.sort();
        assert_eq!(
            parents,
            [shard("shardId-000000000000"), shard("shardId-000000000001")]
        );
        assert_eq!(child.lease_owner.as_deref(), Some("worker-a"));
        assert_eq!(child.lease_counter, Some(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multi_stream_keys_prefix_the_stream() {
        let moto = Moto::start();
        let store = store(&moto, "w", LeaseKeys::StreamAndShard).await;
        let client = Client::new(&moto.sdk_config().await);
        let stream = "arn:aws:kinesis:us-east-1:123456789012:stream/tweets";
        save(&store, stream, &[cp("shardId-000000000000", seq("3"))]).await;
        let key = format!("{stream}:shardId-000000000000");
        assert_eq!(store.lease_key(stream, &shard("shardId-000000000000")), key);
        let item = raw_item(&client, &key).await;
        assert_eq!(s(&item, "streamName"), stream);
        assert_eq!(s(&item, "shardId"), "shardId-000000000000");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_stream_table_refuses_another_stream() {
        let moto = Moto::start();
        let store = store(&moto, "w", LeaseKeys::ShardId).await;
        save(&store, "tweets", &[cp("shardId-000000000000", seq("3"))]).await;
        let err = store
            .load("orders")
            .await
            .expect_err("another stream's table");
        assert!(err.to_string().contains("holds one stream"), "{err}");
        let err = store
            .save("orders", &[cp("shardId-000000000000", seq("4"))])
            .await
            .expect_err("another stream's lease");
        assert!(err.to_string().contains("holds one stream"), "{err}");
        let err = store
            .record_lineage("orders", &shard("shardId-000000000000"), &[shard("p")])
            .await
            .expect_err("another stream's lease");
        assert!(err.to_string().contains("another stream"), "{err}");
        assert_eq!(
            load(&store, "tweets")
                .await
                .get(&shard("shardId-000000000000")),
            Some(&seq("3"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_worker_cannot_move_a_checkpoint_back() {
        let moto = Moto::start();
        let a = store(&moto, "worker-a", LeaseKeys::ShardId).await;
        let b = store(&moto, "worker-b", LeaseKeys::ShardId).await;
        let client = Client::new(&moto.sdk_config().await);

        save(&a, "tweets", &[cp("shardId-000000000000", seq("100"))]).await;
        save(&b, "tweets", &[cp("shardId-000000000000", seq("200"))]).await;
        assert_refused(
            a.save("tweets", &[cp("shardId-000000000000", seq("150"))])
                .await,
            "shardId-000000000000",
            "sequence 200",
            "sequence 150",
        );
        let item = raw_item(&client, "shardId-000000000000").await;
        assert_eq!(s(&item, "checkpoint"), "200");
        assert_eq!(s(&item, "leaseOwner"), "worker-b");
        assert_eq!(n(&item, "leaseCounter"), "2");
        // Worker A may still move it forward, and takes the lease.
        save(&a, "tweets", &[cp("shardId-000000000000", seq("300"))]).await;
        let item = raw_item(&client, "shardId-000000000000").await;
        assert_eq!(s(&item, "leaseOwner"), "worker-a");
        assert_eq!(n(&item, "leaseCounter"), "3");
    }

    /// What another writer does to the lease between a save's read and its
    /// write.
    #[derive(Clone, Copy, Debug)]
    enum Meddle {
        /// Bumps `leaseCounter` and takes the lease, as a KCL worker's
        /// renewal or steal would.
        Bump,
        /// Writes a newer checkpoint.
        Advance(u64),
    }

    /// An interceptor that runs `meddle` with its own client just before the
    /// first `times` UpdateItem calls are sent, and counts the calls: a
    /// deterministic race between a save's read and its write.
    #[derive(Debug)]
    struct Meddler {
        endpoint: String,
        key: String,
        meddle: Meddle,
        times: AtomicU32,
        updates: Arc<AtomicU32>,
    }

    impl Intercept for Meddler {
        fn name(&self) -> &'static str {
            "Meddler"
        }

        fn read_before_execution(
            &self,
            context: &BeforeSerializationInterceptorContextRef<'_>,
            _cfg: &mut ConfigBag,
        ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
            if context.input().downcast_ref::<UpdateItemInput>().is_none() {
                return Ok(());
            }
            self.updates.fetch_add(1, Ordering::SeqCst);
            let left = self.times.load(Ordering::SeqCst);
            if left == 0 {
                return Ok(());
            }
            self.times.store(left - 1, Ordering::SeqCst);
            let (endpoint, key, meddle) = (self.endpoint.clone(), self.key.clone(), self.meddle);
            // Interceptors are synchronous: do the other writer's call on a
            // thread of its own and wait for it.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let client = Client::new(&sdk_config_for(&endpoint).await);
                    let mut update = client
                        .update_item()
                        .table_name(TABLE)
                        .key("leaseKey", AttributeValue::S(key))
                        .expression_attribute_values(":one", AttributeValue::N("1".into()))
                        .expression_attribute_values(":o", AttributeValue::S("intruder".into()));
                    update = match meddle {
                        Meddle::Bump => update.update_expression(
                            "SET leaseCounter = leaseCounter + :one, leaseOwner = :o",
                        ),
                        Meddle::Advance(to) => update
                            .update_expression(
                                "SET leaseCounter = leaseCounter + :one, leaseOwner = :o, \
                                 #cp = :cp",
                            )
                            .expression_attribute_names("#cp", "checkpoint")
                            .expression_attribute_values(":cp", AttributeValue::S(to.to_string())),
                    };
                    update.send().await.expect("the other writer's UpdateItem");
                });
            })
            .join()
            .expect("meddling thread");
            Ok(())
        }
    }

    /// A store whose UpdateItem calls race with `meddle`, the first `times`
    /// times; and the count of UpdateItem calls.
    async fn meddled_store(
        moto: &Moto,
        meddle: Meddle,
        times: u32,
    ) -> (DynamoDbCheckpointStore, Arc<AtomicU32>) {
        let updates = Arc::new(AtomicU32::new(0));
        let meddler = Meddler {
            endpoint: moto.endpoint.clone(),
            key: "shardId-000000000000".into(),
            meddle,
            times: AtomicU32::new(times),
            updates: Arc::clone(&updates),
        };
        let conf = aws_sdk_dynamodb::config::Builder::from(&moto.sdk_config().await)
            .interceptor(meddler)
            .build();
        let store = DynamoDbCheckpointStore::builder_from_client(Client::from_conf(conf), TABLE)
            .worker_id("worker-a")
            .conflict_retries(2)
            .build()
            .await
            .expect("build");
        (store, updates)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_loses_a_race_rereads_and_retries() {
        let moto = Moto::start();
        let plain = store(&moto, "worker-a", LeaseKeys::ShardId).await;
        let client = Client::new(&moto.sdk_config().await);
        save(&plain, "tweets", &[cp("shardId-000000000000", seq("100"))]).await;

        let (store, updates) = meddled_store(&moto, Meddle::Bump, 1).await;
        save(&store, "tweets", &[cp("shardId-000000000000", seq("150"))]).await;
        assert_eq!(updates.load(Ordering::SeqCst), 2, "one conflict, one retry");
        let item = raw_item(&client, "shardId-000000000000").await;
        assert_eq!(s(&item, "checkpoint"), "150");
        assert_eq!(s(&item, "leaseOwner"), "worker-a");
        // 1 after the first save, 2 after the intruder, 3 after the retry.
        assert_eq!(n(&item, "leaseCounter"), "3");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_newer_checkpoint_written_during_a_save_wins() {
        let moto = Moto::start();
        let plain = store(&moto, "worker-a", LeaseKeys::ShardId).await;
        let client = Client::new(&moto.sdk_config().await);
        save(&plain, "tweets", &[cp("shardId-000000000000", seq("100"))]).await;

        // The save reads 100, then the intruder writes 500 before the save's
        // write of 150 lands.
        let (store, updates) = meddled_store(&moto, Meddle::Advance(500), 1).await;
        assert_refused(
            store
                .save("tweets", &[cp("shardId-000000000000", seq("150"))])
                .await,
            "shardId-000000000000",
            "sequence 500",
            "sequence 150",
        );
        assert_eq!(
            updates.load(Ordering::SeqCst),
            1,
            "the conditional write failed once"
        );
        let item = raw_item(&client, "shardId-000000000000").await;
        assert_eq!(s(&item, "checkpoint"), "500");
        assert_eq!(s(&item, "leaseOwner"), "intruder");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endless_conflicts_give_a_clear_error() {
        let moto = Moto::start();
        let plain = store(&moto, "worker-a", LeaseKeys::ShardId).await;
        save(&plain, "tweets", &[cp("shardId-000000000000", seq("100"))]).await;

        let (store, updates) = meddled_store(&moto, Meddle::Bump, u32::MAX).await;
        let err = store
            .save("tweets", &[cp("shardId-000000000000", seq("150"))])
            .await
            .expect_err("every write loses its race");
        let text = err.to_string();
        assert!(!err.is_retryable(), "{text}");
        assert!(text.contains("gave up"), "{text}");
        assert!(text.contains("3 conditional-write conflicts"), "{text}");
        assert!(text.contains("intruder"), "names the other writer: {text}");
        assert_eq!(
            updates.load(Ordering::SeqCst),
            3,
            "the write and two retries"
        );
    }

    /// A missing table fails at build, at once (one DescribeTable), naming
    /// the table and the endpoint and saying how to create it; a store
    /// built without the check says so at the first call.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_table_fails_at_build_and_says_to_create_it() {
        let moto = Moto::start();
        let config = moto.sdk_config().await;
        let started = std::time::Instant::now();
        let err = DynamoDbCheckpointStore::builder(&config, "no-such-table")
            .build()
            .await
            .expect_err("no table");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(!err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "checkpoint store failed permanently: the checkpoint table \"no-such-table\" \
                 does not exist at {}",
                moto.endpoint
            )),
            "hint first, naming the table and the endpoint: {text}"
        );
        assert!(text.contains("create_table_if_missing(true)"), "{text}");

        let unchecked = DynamoDbCheckpointStore::builder(&config, "no-such-table")
            .check_table(false)
            .build()
            .await
            .expect("no check, no I/O");
        let err = unchecked.load("tweets").await.expect_err("no table");
        assert!(!err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(text.contains("no-such-table"), "{text}");
        assert!(text.contains("create_table_if_missing"), "{text}");
    }

    /// A closed endpoint: build fails within its start-up timeout, saying
    /// which endpoint it could not reach.
    #[tokio::test(start_paused = true)]
    async fn an_unreachable_dynamodb_fails_at_build_within_the_startup_timeout() {
        let endpoint = format!("http://127.0.0.1:{}", free_port());
        let started = tokio::time::Instant::now();
        let err = DynamoDbCheckpointStore::builder(&sdk_config_for(&endpoint).await, TABLE)
            .startup_timeout(std::time::Duration::from_secs(3))
            .build()
            .await
            .expect_err("nothing listens");
        assert!(
            started.elapsed() <= std::time::Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(!err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("could not reach DynamoDB at {endpoint} within 3s")),
            "{text}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_with_another_key_schema_is_refused() {
        let moto = Moto::start();
        let client = Client::new(&moto.sdk_config().await);
        client
            .create_table()
            .table_name("other-schema")
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("key"),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute"),
            )
            .send()
            .await
            .expect("create");
        let err = DynamoDbCheckpointStore::builder_from_client(client, "other-schema")
            .create_table_if_missing(true)
            .build()
            .await
            .expect_err("wrong schema");
        assert!(
            err.to_string().contains("expected the KCL lease schema"),
            "{err}"
        );
    }

    /// A one-answer DynamoDB: every request gets `status` with an error
    /// body of type `code`. Returns the endpoint.
    async fn scripted(status: u16, code: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        // Read one request: head, then Content-Length bytes.
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + length {
                            let mut chunk = [0u8; 4096];
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..head_end + length);
                        let body = format!(
                            "{{\"__type\":\"com.amazonaws.dynamodb.v20120810#{code}\",\
                             \"message\":\"scripted {code}\"}}"
                        );
                        let response = format!(
                            "HTTP/1.1 {status} Scripted\r\nContent-Type: application/x-amz-json-1.0\r\n\
                             x-amzn-RequestId: scripted\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if conn.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        endpoint
    }

    async fn no_retry_store(endpoint: &str) -> DynamoDbCheckpointStore {
        let conf = aws_sdk_dynamodb::config::Builder::from(&sdk_config_for(endpoint).await)
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .build();
        DynamoDbCheckpointStore::builder_from_client(Client::from_conf(conf), TABLE)
            .check_table(false)
            .build()
            .await
            .expect("no check, no I/O")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sdk_errors_map_to_retryable_or_permanent() {
        let cases: [(u16, &str, &str, &str); 5] = [
            (
                400,
                "ProvisionedThroughputExceededException",
                "throttled",
                "scripted",
            ),
            (400, "ThrottlingException", "throttled", "scripted"),
            (500, "InternalServerError", "unavailable", "scripted"),
            (
                400,
                "AccessDeniedException",
                "permanent",
                "dynamodb:UpdateItem",
            ),
            (
                400,
                "ResourceNotFoundException",
                "permanent",
                "create_table_if_missing",
            ),
        ];
        for (status, code, kind, mentions) in cases {
            let store = no_retry_store(&scripted(status, code).await).await;
            let err = store
                .save("tweets", &[cp("s0", seq("1"))])
                .await
                .expect_err("the scripted server always fails");
            assert_eq!(err.kind(), kind, "{code}: {err}");
            assert!(err.to_string().contains(mentions), "{code}: {err}");
            let err = store.load("tweets").await.expect_err("scan fails too");
            assert_eq!(err.kind(), kind, "{code}: {err}");
        }

        // Nothing listening: a connection failure is worth retrying.
        let store = no_retry_store(&format!("http://127.0.0.1:{}", free_port())).await;
        let err = store.load("tweets").await.expect_err("connection refused");
        assert_eq!(err.kind(), "unavailable", "{err}");
    }

    /// A store whose every DynamoDB call is answered by `fault` (a
    /// [`FaultyHttp`] in front of an address nothing listens on), built
    /// from a config whose SDK retry setting is generous (50 tries): the
    /// store's bound must not depend on what the client was built with.
    async fn always_failing_store(
        status: u16,
        code: &'static str,
    ) -> (
        DynamoDbCheckpointStore,
        crate::common::faulty_http::FaultyHttp,
    ) {
        use crate::common::faulty_http::{Fault, FaultyHttp};
        let http = FaultyHttp::new(
            aws_smithy_http_client::Builder::new().build_http(),
            Vec::new(),
        );
        for op in ["GetItem", "PutItem", "UpdateItem", "Scan", "DeleteItem"] {
            http.fail_from(Fault {
                op,
                nth: 1,
                status,
                code,
                body: None,
            });
        }
        let config = sdk_config_for(&format!("http://127.0.0.1:{}", free_port()))
            .await
            .into_builder()
            .http_client(http.clone())
            .retry_config(
                aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(50),
            )
            .build();
        let store = DynamoDbCheckpointStore::builder_from_client(Client::new(&config), TABLE)
            .worker_id("w")
            .check_table(false)
            .build()
            .await
            .expect("no check, no I/O");
        (store, http)
    }

    /// An always-throttling (or always-5xx) DynamoDB: each store call sends
    /// one request and returns a retryable error at once, whatever retry
    /// setting the client was built with (50 tries here): the store and the
    /// SDK never retry under the caller's retries (the pipeline's commit
    /// retry is the one place that decides). Virtual time: the faults are
    /// answered without I/O.
    #[tokio::test(start_paused = true)]
    async fn retries_do_not_stack_an_always_failing_dynamodb_gets_one_request_per_store_call() {
        use tokio::time::{Duration, Instant};
        for (status, code, kind) in [
            (400, "ProvisionedThroughputExceededException", "throttled"),
            (500, "InternalServerError", "unavailable"),
        ] {
            let (store, http) = always_failing_store(status, code).await;
            let started = Instant::now();
            let err = store
                .save("tweets", &[cp("s0", seq("7"))])
                .await
                .expect_err("every call fails");
            assert!(err.is_retryable(), "{code}: {err}");
            assert_eq!(err.kind(), kind, "{code}: {err}");
            assert_eq!(
                http.calls().len(),
                1,
                "{code}: one save sent {} DynamoDB requests; expected 1 (no retries under the \
                 caller's)",
                http.calls().len()
            );
            assert_eq!(
                started.elapsed(),
                Duration::ZERO,
                "{code}: no pause inside the store"
            );

            let err = store.load("tweets").await.expect_err("scan fails");
            assert!(err.is_retryable(), "{code}: {err}");
            assert_eq!(http.calls().len(), 2, "{code}: one Scan");
        }
    }

    /// The per-lease lock map holds only saves in progress: after many saves
    /// over many shards (done, refused as backwards, failed, given up by the
    /// caller mid-way, concurrent) it is empty again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bounded_memory_lease_locks_do_not_grow_over_many_saves_of_many_shards() {
        use futures::FutureExt;
        let moto = Moto::start();
        let store = store(&moto, "worker-locks", LeaseKeys::ShardId).await;
        let shards: Vec<String> = (0..60).map(|i| format!("shardId-{i:012}")).collect();
        for round in 2..5u32 {
            for chunk in shards.chunks(20) {
                let cps: Vec<Checkpoint> = chunk
                    .iter()
                    .map(|s| cp(s, seq(&round.to_string())))
                    .collect();
                save(&store, "locks", &cps).await;
                assert_eq!(store.held_locks(), 0, "after saving round {round}");
            }
        }
        // Refused: backwards.
        for s in &shards[..20] {
            store
                .save("locks", &[cp(s, seq("1"))])
                .await
                .expect_err("backwards");
        }
        assert_eq!(
            store.held_locks(),
            0,
            "locks of saves refused as backwards are kept"
        );
        // Given up by the caller after its first poll (its reads in flight).
        for s in &shards[20..40] {
            let dropped = store.save("locks", &[cp(s, seq("9"))]).now_or_never();
            assert!(
                dropped.is_none(),
                "a save to moto cannot finish in one poll"
            );
        }
        assert_eq!(
            store.held_locks(),
            0,
            "locks of saves dropped by their callers are kept"
        );
        // Concurrent saves of the same shards.
        let saves = shards[40..].iter().flat_map(|s| {
            [5u32, 6].map(|n| {
                let store = store.clone();
                let s = s.clone();
                async move { store.save("locks", &[cp(&s, seq(&n.to_string()))]).await }
            })
        });
        for result in futures::future::join_all(saves).await {
            if let Err(e) = result {
                assert!(e.to_string().contains("backwards"), "{e}");
            }
        }
        assert_eq!(
            store.held_locks(),
            0,
            "{} per-lease locks held with no save in progress, after saves over {} shards",
            store.held_locks(),
            shards.len()
        );
    }

    #[tokio::test]
    async fn debug_shows_table_and_worker_only() {
        let conf = sdk_config_for("http://127.0.0.1:9").await;
        let store = DynamoDbCheckpointStore::builder(&conf, "leases")
            .worker_id("w1")
            .check_table(false)
            .build()
            .await
            .expect("no check, no I/O");
        let text = format!("{store:?}");
        assert!(text.contains("leases") && text.contains("w1"), "{text}");
        assert!(!text.contains("testing"), "no credentials in Debug: {text}");
        assert!(!text.contains("Client"), "no client in Debug: {text}");
    }
}
