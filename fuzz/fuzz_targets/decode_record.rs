//! Record decoding on arbitrary bytes: `Json` into a user type (nested
//! structs, options, vectors, maps, numbers), `Json` into
//! `serde_json::Value` (deep nesting), and `Utf8`. No decoder may panic or
//! overflow the stack, and the decoders must agree on what is valid UTF-8.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use streamsift::{Decoder, Json, Record, Sequence, ShardId, Utf8};

#[allow(dead_code)] // fields are only deserialized
#[derive(Debug, Deserialize)]
struct Tweet {
    id: u64,
    text: String,
    user: Option<User>,
    entities: Option<Entities>,
    lang: Option<String>,
    #[serde(default)]
    extra: BTreeMap<String, f64>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct User {
    screen_name: String,
    followers_count: Option<i64>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct Entities {
    #[serde(default)]
    hashtags: Vec<Tag>,
    #[serde(default)]
    reply_to: Option<Box<Tweet>>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct Tag {
    text: String,
    indices: Vec<u32>,
}

fuzz_target!(|data: &[u8]| {
    let record = Record::new(
        ShardId::new("shard-0"),
        Sequence::from_offset(0),
        "pk",
        data.to_vec(),
    );
    let utf8: Result<String, _> = Utf8.decode(&record);
    assert_eq!(
        utf8.is_ok(),
        !data.is_empty() && std::str::from_utf8(data).is_ok(),
        "Utf8 accepts exactly the non-empty valid UTF-8 payloads"
    );
    if let Ok(text) = &utf8 {
        assert_eq!(text.as_bytes(), data);
    }
    let tweet: Result<Tweet, _> = Json::new().decode(&record);
    let value: Result<serde_json::Value, _> = Json::new().decode(&record);
    if tweet.is_ok() || value.is_ok() {
        assert!(utf8.is_ok(), "JSON accepted a payload that is not UTF-8");
    }
    // Every error renders a message (no panic in Display).
    for e in [tweet.err(), value.err(), utf8.err()].into_iter().flatten() {
        assert!(!e.to_string().is_empty());
        let _ = e.kind();
    }
});
