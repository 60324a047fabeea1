//! Hostile input, end to end: each bad record gets a clear, typed error and
//! a dead-letter entry with its reason, and the good records in the same
//! batch are delivered untouched. Also: a model file with absurd dimensions
//! is refused before anything is allocated.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use streamsift::fakes::{MemorySource, RecordingRouter};
use streamsift::local::{LocalModel, ModelFileError, escape_html};
use streamsift::{
    ClassifyError, DeadLetterEntry, Decoder, Json, JsonLinesDeadLetter, Pipeline, Policy,
    Prediction, Record, Sequence, ShardId, Stage,
};

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
struct Tweet {
    id: u64,
    text: String,
}

const MIB: usize = 1024 * 1024;

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// A valid tweet whose JSON is exactly `len` bytes long.
fn tweet_of_len(id: u64, len: usize) -> Vec<u8> {
    let head = format!("{{\"id\":{id},\"text\":\"");
    let tail = "\"}";
    let fill = len - head.len() - tail.len();
    let mut v = head.into_bytes();
    v.extend(std::iter::repeat_n(b'x', fill));
    v.extend_from_slice(tail.as_bytes());
    assert_eq!(v.len(), len);
    v
}

struct Case {
    name: &'static str,
    payload: Vec<u8>,
    partition_key: String,
    /// `None`: a valid record that must be delivered as it is.
    /// `Some((kind, reason))`: it must be dead-lettered at the decode stage
    /// with this kind and a reason containing this text.
    dead: Option<(&'static str, &'static str)>,
}

fn case(
    name: &'static str,
    payload: impl Into<Vec<u8>>,
    dead: Option<(&'static str, &'static str)>,
) -> Case {
    Case {
        name,
        payload: payload.into(),
        partition_key: format!("pk-{name}"),
        dead,
    }
}

#[tokio::test]
async fn hostile_records_are_dead_lettered_with_reasons_and_the_rest_unaffected() {
    let key_256: String = "é".repeat(256);
    assert_eq!(key_256.chars().count(), 256);
    let hostile = vec![
        // Not an error: a tweet is text, and routers get it verbatim. It is
        // escaped where it enters HTML (checked below).
        case(
            "script",
            r#"{"id":101,"text":"<script>alert('pwned')</script> is the site down?"}"#,
            None,
        ),
        // Kinesis' own limit is 1 MiB: exactly that is accepted, one byte
        // more is refused before the decoder sees it.
        case("one_mib", tweet_of_len(102, MIB), None),
        case(
            "over_one_mib",
            tweet_of_len(103, MIB + 1),
            Some(("too_large", "exceeds the limit of 1048576 bytes")),
        ),
        // Deep nesting, 200,000 levels: refused with a clear error, no
        // stack overflow (for `serde_json::Value`, which does recurse, the
        // recursion limit of 128 stops it: see the next test).
        case(
            "deep_array",
            nested(200_000),
            Some(("invalid_json", "invalid type: sequence, expected u64")),
        ),
        case(
            "deep_object",
            format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000)),
            Some(("invalid_json", "missing field `id`")),
        ),
        case(
            "deep_in_text_field",
            format!("{{\"id\":110,\"text\":{}}}", nested(100_000)),
            Some(("invalid_json", "invalid type: sequence, expected a string")),
        ),
        // Deep nesting in a field the type does not have: serde_json skips it
        // without recursing (no stack overflow at 100,000 levels, measured
        // here), so the tweet is valid and delivered; the size limit bounds
        // the work.
        case(
            "deep_ignored_field",
            format!(
                "{{\"id\":104,\"text\":\"x\",\"extra\":{}}}",
                nested(100_000)
            ),
            None,
        ),
        case(
            "invalid_utf8",
            b"{\"id\":105,\"text\":\"caf\xe9 \xff\xfe\"}".to_vec(),
            Some(("invalid_utf8", "invalid byte at offset 21")),
        ),
        case(
            "raw_nul",
            b"{\"id\":106,\"text\":\"a\0b\"}".to_vec(),
            Some(("invalid_json", "control character")),
        ),
        case(
            "nul_only",
            b"\0\0\0\0".to_vec(),
            Some(("invalid_json", "expected value")),
        ),
        // An escaped NUL is valid JSON text and is delivered as it is.
        case("escaped_nul", r#"{"id":107,"text":"a\u0000b"}"#, None),
        Case {
            name: "key_256_good",
            payload: br#"{"id":108,"text":"fine"}"#.to_vec(),
            partition_key: key_256.clone(),
            dead: None,
        },
        Case {
            name: "key_256_bad",
            payload: b"{\"id\":109,".to_vec(),
            partition_key: key_256.clone(),
            dead: Some(("invalid_json", "EOF while parsing")),
        },
        case("empty", Vec::new(), Some(("empty", "empty"))),
    ];

    // Good tweets around and between the hostile ones, all in one batch of
    // one shard.
    let shard = ShardId::new("shard-0");
    let mut records = Vec::new();
    let mut good: HashMap<String, Tweet> = HashMap::new();
    let mut expect_dead: HashMap<String, (&'static str, &'static str, &'static str)> =
        HashMap::new();
    let mut originals: HashMap<String, (Vec<u8>, String)> = HashMap::new();
    let mut offset = 0u64;
    let mut push = |payload: Vec<u8>, key: String, records: &mut Vec<Record>| {
        let r = Record::new(shard.clone(), Sequence::from_offset(offset), key, payload);
        offset += 1;
        records.push(r.clone());
        r
    };
    for (i, c) in hostile.iter().enumerate() {
        let t = Tweet {
            id: i as u64,
            text: format!("good tweet {i}"),
        };
        let r = push(
            format!("{{\"id\":{},\"text\":\"{}\"}}", t.id, t.text).into_bytes(),
            format!("pk-good-{i}"),
            &mut records,
        );
        good.insert(r.id, t);
        let r = push(c.payload.clone(), c.partition_key.clone(), &mut records);
        originals.insert(r.id.clone(), (c.payload.clone(), c.partition_key.clone()));
        match c.dead {
            None => {
                let t: Tweet = serde_json::from_slice(&c.payload).unwrap();
                good.insert(r.id, t);
            }
            Some((kind, reason)) => {
                expect_dead.insert(r.id, (c.name, kind, reason));
            }
        }
    }
    let batch_len = records.len();
    let source = MemorySource::from_records(records).batch_size(batch_len);

    let dir = tempfile::tempdir().unwrap();
    let dead_path = dir.path().join("dead.jsonl");
    let router = RecordingRouter::new();
    let report = Pipeline::new(source)
        .json::<Tweet>()
        .classify(|_: &Tweet| async {
            Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", 0.9))
        })
        .policy(Policy::binary(0.5, "oncall"))
        .route(router.clone())
        .dead_letter(JsonLinesDeadLetter::create(&dead_path).unwrap())
        .run()
        .await
        .unwrap();

    assert!(report.stats.reconciles(), "{:?}", report.stats);
    assert_eq!(report.stats.records_in, batch_len as u64);
    let dl_ids: Vec<String> = JsonLinesDeadLetter::read_entries(&dead_path)
        .unwrap()
        .into_iter()
        .map(|e| e.record_id)
        .collect();
    let missing: Vec<_> = expect_dead
        .iter()
        .filter(|(id, _)| !dl_ids.contains(id))
        .map(|(_, v)| v.0)
        .collect();
    assert!(missing.is_empty(), "not dead-lettered: {missing:?}");
    assert_eq!(report.stats.dead_lettered, expect_dead.len() as u64);
    assert_eq!(report.stats.routed, good.len() as u64);

    // Every good record (and every valid hostile one) delivered once, as it was.
    let deliveries = router.deliveries();
    let mut delivered: BTreeMap<String, Tweet> = BTreeMap::new();
    for d in &deliveries {
        assert!(
            delivered
                .insert(d.record_id.clone(), d.item.clone())
                .is_none(),
            "delivered twice: {}",
            d.record_id
        );
    }
    assert_eq!(delivered.len(), good.len());
    for (id, t) in &good {
        assert_eq!(delivered.get(id), Some(t), "record {id}");
    }

    // Every hostile record dead-lettered once, with its kind and reason; the
    // entry keeps the partition key and the exact original bytes.
    let entries: Vec<DeadLetterEntry> = JsonLinesDeadLetter::read_entries(&dead_path)
        .expect("the dead-letter file stays valid JSON lines whatever the payloads");
    assert_eq!(entries.len(), expect_dead.len());
    for e in &entries {
        let (name, kind, reason) = expect_dead
            .get(&e.record_id)
            .unwrap_or_else(|| panic!("unexpected dead letter {e:?}"));
        assert_eq!(e.stage, Stage::Decode, "{name}");
        assert_eq!(e.kind, *kind, "{name}: {}", e.reason);
        assert!(
            e.reason.contains(reason),
            "{name}: reason {:?} should mention {reason:?}",
            e.reason
        );
        let (bytes, key) = &originals[&e.record_id];
        assert_eq!(&e.partition_key, key, "{name}");
        assert_eq!(
            &e.payload_bytes().unwrap(),
            bytes,
            "{name}: payload not recoverable"
        );
    }

    // The <script> tweet reached the router verbatim; where tweet text enters
    // HTML (the evaluation report), it is escaped.
    let script = deliveries
        .iter()
        .find(|d| d.item.id == 101)
        .expect("the script tweet is delivered");
    assert!(script.item.text.starts_with("<script>"));
    let html = escape_html(&script.item.text);
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    // The escaped NUL survives as a NUL character.
    assert!(deliveries.iter().any(|d| d.item.text == "a\0b"));
}

#[test]
fn decoders_refuse_deep_nesting_without_overflowing_the_stack() {
    // Directly, on a small stack: the recursion limit must fire well
    // before 256 KiB of stack is used.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let record = Record::new(
                ShardId::new("s"),
                Sequence::from_offset(0),
                "k",
                Bytes::from(nested(1_000_000)),
            );
            let as_value: Result<serde_json::Value, _> = Json::new().decode(&record);
            let as_tweet: Result<Tweet, _> = Json::new().decode(&record);
            (
                as_value.unwrap_err().to_string(),
                as_tweet.unwrap_err().to_string(),
            )
        })
        .unwrap();
    let (value_err, tweet_err) = handle.join().expect("no stack overflow");
    assert!(
        value_err.contains("recursion limit exceeded"),
        "{value_err}"
    );
    // A struct expects an object, so it fails at the first '[' already.
    assert!(tweet_err.contains("invalid type"), "{tweet_err}");
}

fn model_json() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/support_team.model.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_model_file_with_absurd_dimensions_is_refused_before_allocating() {
    // 2^26 buckets x 5,000 labels = 335 billion weights (1.3 TB): allocating
    // that would abort the process, so getting an error back at all shows
    // nothing was allocated. The file itself is small.
    let mut v = model_json();
    v["kind"] = "multinomial".into();
    v["featurizer"]["bits"] = 26.into();
    let labels: Vec<String> = (0..5_000).map(|i| format!("label{i}")).collect();
    v["bias"] = serde_json::Value::from(vec![0.0f32; labels.len()]);
    v["labels"] = serde_json::Value::from(labels);
    v["weights"] = serde_json::json!({ "buckets": [], "values": [] });
    v["feature_names"] = serde_json::json!([]);
    let text = v.to_string();
    assert!(text.len() < 200_000, "{} bytes", text.len());
    let err = LocalModel::from_json(&text).unwrap_err();
    assert!(matches!(err, ModelFileError::Shape(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("2^26 buckets x 5000 columns"), "{msg}");
    assert!(msg.contains("lower the featurizer's bits"), "{msg}");

    // Bits beyond the featurizer's range: a config error, not a 2^64 table.
    let mut v = model_json();
    v["featurizer"]["bits"] = 64.into();
    let err = LocalModel::from_json(&v.to_string()).unwrap_err();
    assert!(matches!(err, ModelFileError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("4..=26"), "{err}");

    // A bucket index far outside the table.
    let mut v = model_json();
    v["weights"]["buckets"] = serde_json::json!([u32::MAX]);
    let columns = v["labels"].as_array().unwrap().len();
    v["weights"]["values"] = serde_json::Value::from(vec![0.5f32; columns]);
    let err = LocalModel::from_json(&v.to_string()).unwrap_err();
    assert!(err.to_string().contains("outside the featurizer"), "{err}");

    // The unmodified file still loads.
    LocalModel::from_json(&model_json().to_string()).unwrap();
}
