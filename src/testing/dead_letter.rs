//! The [`DeadLetterSink`] conformance suite.
//!
//! You give the sink and a way to read back what it has stored *as a new
//! process would*: reopen the file, query the table, not a cache in the
//! sink. The suite stores dead letters and reads them back.
//!
//! # Rules
//!
//! A conforming sink keeps these rules; the suite names the one broken.
//!
//! 1. **`store-succeeds`**: storing a dead letter succeeds while the
//!    backend is healthy.
//! 2. **`durable-before-ok`**: once `store` returns `Ok`, the entry is
//!    stored: reading back finds it, with nothing more to wait for. The
//!    pipeline commits the record's checkpoint right after, so an entry
//!    still in a buffer when the process dies is a record lost.
//! 3. **`entry-intact`**: what is read back is the whole entry: record id,
//!    shard, sequence, partition key, stage, class, kind, reason, attempts,
//!    route, time (to the millisecond) and the payload's exact bytes,
//!    including bytes that are not UTF-8 and an empty payload.
//! 4. **`concurrent-stores`**: concurrent stores all land, none torn or
//!    lost.
//! 5. **`redelivery-stored`**: storing the same dead letter again is not
//!    an error (a record redelivered after a restart fails again); the sink
//!    may keep one entry or two.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, UNIX_EPOCH};

use futures::future::join_all;

use super::ensure;
use crate::dead_letter::{DeadLetter, DeadLetterEntry, DeadLetterSink, Stage};
use crate::error::ErrorClass;
use crate::record::{Record, Sequence, ShardId};

const SUITE: &str = "dead-letter sink";

fn dead_letter(n: u64, payload: &[u8], stage: Stage) -> DeadLetter {
    let mut record = Record::new(
        ShardId::new("shardId-000000000001"),
        Sequence::with_sub_sequence(
            format!("4959033827149025660855969253836157109592157598913658{n:04}"),
            n,
        ),
        format!("pk-{n}"),
        payload.to_vec(),
    );
    record.id = format!("dead-letter-conformance-{n}");
    DeadLetter {
        record,
        stage,
        class: if n.is_multiple_of(2) {
            ErrorClass::Permanent
        } else {
            ErrorClass::Retryable
        },
        kind: "invalid_json".to_string(),
        reason: format!("expected value at line 1 column {n}"),
        attempts: 1 + (n % 5) as u32,
        route: (stage == Stage::Route).then(|| "oncall".to_string()),
        // Whole milliseconds, as the entry keeps them.
        at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + n),
    }
}

/// Runs every rule on `sink`. `read_back` returns every entry stored so
/// far, read from where the sink keeps them (see the module docs); the
/// sink must hold nothing of this suite's yet (ids start with
/// `dead-letter-conformance-`; other entries are ignored).
///
/// ```
/// use streamsift::testing::dead_letter;
/// use streamsift::JsonLinesDeadLetter;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("dead.jsonl");
/// let sink = JsonLinesDeadLetter::create(&path).expect("open the dead-letter file");
/// dead_letter::conformance(&sink, || {
///     let path = path.clone();
///     async move { JsonLinesDeadLetter::read_entries(&path).unwrap_or_default() }
/// })
/// .await;
/// # });
/// ```
///
/// # Panics
/// At the first broken rule, naming it (see the [module docs](self)).
pub async fn conformance<S, F, Fut>(sink: &S, mut read_back: F)
where
    S: DeadLetterSink,
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<DeadLetterEntry>>,
{
    // Ours only, by record id (the sink may hold entries of its own).
    let ours = |entries: Vec<DeadLetterEntry>| -> Vec<DeadLetterEntry> {
        entries
            .into_iter()
            .filter(|e| entry_id(e).starts_with("dead-letter-conformance-"))
            .collect()
    };

    // One at a time: each is readable as soon as store returns.
    let singles = [
        dead_letter(0, br#"{"text":"the api is down"}"#, Stage::Decode),
        dead_letter(1, &[0xff, 0xfe, b'{', 0x80], Stage::Decode),
        dead_letter(2, b"", Stage::Classify),
        dead_letter(
            3,
            "caf\u{e9} \u{1F600}\n\"quoted\"".as_bytes(),
            Stage::Route,
        ),
    ];
    let mut expected: Vec<DeadLetterEntry> = Vec::new();
    for dl in &singles {
        if let Err(e) = sink.store(dl).await {
            super::broken(
                SUITE,
                "store-succeeds",
                format_args!("storing the dead letter of {} failed: {e}", dl.record.id),
            )
        }
        expected.push(DeadLetterEntry::from_dead_letter(dl));
        let stored = ours(read_back().await);
        ensure!(
            SUITE,
            "durable-before-ok",
            stored.iter().any(|e| entry_id(e) == dl.record.id),
            "store({}) returned Ok, but reading back right after finds {} of this suite's \
             entries and not that one",
            dl.record.id,
            stored.len()
        );
    }
    let stored = ours(read_back().await);
    for want in &expected {
        let id = entry_id(want);
        let Some(got) = stored.iter().find(|e| entry_id(e) == id) else {
            super::broken(
                SUITE,
                "durable-before-ok",
                format_args!("the entry of {id} is no longer there"),
            )
        };
        ensure!(
            SUITE,
            "entry-intact",
            got.payload_bytes().ok() == want.payload_bytes().ok(),
            "the entry of {id} came back with other payload bytes ({} bytes, stored {})",
            got.payload_bytes().map_or(0, |b| b.len()),
            want.payload_bytes().map_or(0, |b| b.len())
        );
        ensure!(
            SUITE,
            "entry-intact",
            same_entry(got, want),
            "the entry of {id} came back changed: a field other than the payload differs \
             (stage, class, kind, reason, attempts, route, shard, sequence, partition key or \
             time)"
        );
    }

    // Concurrent stores all land.
    let many: Vec<DeadLetter> = (10..42)
        .map(|n| dead_letter(n, format!("{{\"n\":{n}}}").as_bytes(), Stage::Route))
        .collect();
    let answers = join_all(many.iter().map(|dl| sink.store(dl))).await;
    for (dl, answer) in many.iter().zip(answers) {
        if let Err(e) = answer {
            super::broken(
                SUITE,
                "store-succeeds",
                format_args!(
                    "storing the dead letter of {} (one of {} concurrent stores) failed: {e}",
                    dl.record.id,
                    many.len()
                ),
            )
        }
    }
    let stored = ours(read_back().await);
    let by_id: HashMap<String, &DeadLetterEntry> =
        stored.iter().map(|e| (entry_id(e), e)).collect();
    for dl in &many {
        let want = DeadLetterEntry::from_dead_letter(dl);
        match by_id.get(&dl.record.id) {
            None => super::broken(
                SUITE,
                "concurrent-stores",
                format_args!(
                    "the entry of {} (one of {} concurrent stores) is missing",
                    dl.record.id,
                    many.len()
                ),
            ),
            Some(got) => ensure!(
                SUITE,
                "concurrent-stores",
                same_entry(got, &want),
                "the entry of {} (stored concurrently) came back changed",
                dl.record.id
            ),
        }
    }

    // The same dead letter again.
    if let Err(e) = sink.store(&singles[0]).await {
        super::broken(
            SUITE,
            "redelivery-stored",
            format_args!(
                "storing the dead letter of {} a second time failed: {e}",
                singles[0].record.id
            ),
        )
    }
}

/// The record id of an entry, whatever the field is called: read through
/// its JSON form, which is the stable, documented shape.
fn entry_id(entry: &DeadLetterEntry) -> String {
    let value = serde_json::to_value(entry).unwrap_or_default();
    ["record_id", "id"]
        .iter()
        .find_map(|k| value.get(k).and_then(|v| v.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// Equal entries, comparing the payload as bytes (text or base64 are two
/// spellings of the same bytes).
fn same_entry(a: &DeadLetterEntry, b: &DeadLetterEntry) -> bool {
    let strip = |e: &DeadLetterEntry| {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.remove("payload");
            map.remove("payload_base64");
        }
        v
    };
    strip(a) == strip(b) && a.payload_bytes().ok() == b.payload_bytes().ok()
}
