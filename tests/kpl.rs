//! The KPL aggregation format: the de-aggregator against hand-built bytes
//! and corrupt input, and the encoder against the spec and the decoder.
#![cfg(feature = "kinesis")]

use bytes::Bytes;
use md5::{Digest, Md5};
use proptest::prelude::*;
use streamsift::kinesis::kpl::{
    Aggregate, AggregateError, Aggregator, Deaggregator, KeyTable, KplError, MAGIC,
    MIN_AGGREGATE_LEN, UserRecord, deaggregate, deaggregate_bytes, is_aggregate,
};

// ---------------------------------------------------------------------------
// A tiny protobuf writer, written from the wire format, to build test input.

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return out;
        }
        out.push(low | 0x80);
    }
}

fn tag(field: u64, wire_type: u64) -> Vec<u8> {
    varint((field << 3) | wire_type)
}

fn len_field(field: u64, content: &[u8]) -> Vec<u8> {
    let mut out = tag(field, 2);
    out.extend(varint(content.len() as u64));
    out.extend_from_slice(content);
    out
}

fn varint_field(field: u64, v: u64) -> Vec<u8> {
    let mut out = tag(field, 0);
    out.extend(varint(v));
    out
}

fn record_msg(pk: u64, ehk: Option<u64>, data: &[u8]) -> Vec<u8> {
    let mut out = varint_field(1, pk);
    if let Some(i) = ehk {
        out.extend(varint_field(2, i));
    }
    out.extend(len_field(3, data));
    out
}

/// Magic, body, MD5 of the body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(&Md5::digest(body));
    out
}

fn user(pk: &str, ehk: Option<&str>, data: &[u8], sub_sequence: u64) -> UserRecord {
    UserRecord {
        partition_key: pk.to_owned(),
        explicit_hash_key: ehk.map(str::to_owned),
        data: Bytes::copy_from_slice(data),
        sub_sequence,
    }
}

fn decode_err(payload: &[u8]) -> KplError {
    match deaggregate(payload) {
        Err(e) => e,
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

/// The body of a small aggregate, byte by byte from the spec:
/// keys "alice", "bob"; hash key "42"; records
/// (alice, -, "one"), (bob, 42, "two"), (alice, -, "").
const SMALL_BODY: &[u8] = &[
    0x0A, 0x05, b'a', b'l', b'i', b'c', b'e', // partition_key_table[0] = "alice"
    0x0A, 0x03, b'b', b'o', b'b', // partition_key_table[1] = "bob"
    0x12, 0x02, b'4', b'2', // explicit_hash_key_table[0] = "42"
    0x1A, 0x07, // records[0], 7 bytes:
    0x08, 0x00, //   partition_key_index = 0
    0x1A, 0x03, b'o', b'n', b'e', //   data = "one"
    0x1A, 0x09, // records[1], 9 bytes:
    0x08, 0x01, //   partition_key_index = 1
    0x10, 0x00, //   explicit_hash_key_index = 0
    0x1A, 0x03, b't', b'w', b'o', //   data = "two"
    0x1A, 0x04, // records[2], 4 bytes:
    0x08, 0x00, //   partition_key_index = 0
    0x1A, 0x00, //   data = ""
];

fn small_records() -> Vec<UserRecord> {
    vec![
        user("alice", None, b"one", 0),
        user("bob", Some("42"), b"two", 1),
        user("alice", None, b"", 2),
    ]
}

// ---------------------------------------------------------------------------
// Decoding known bytes

#[test]
fn hand_built_aggregate_decodes() {
    let payload = frame(SMALL_BODY);
    assert!(is_aggregate(&payload));
    assert_eq!(deaggregate(&payload), Ok(Some(small_records())));
    assert_eq!(
        deaggregate_bytes(&Bytes::from(payload)),
        Ok(Some(small_records()))
    );
}

#[test]
fn encoder_writes_exactly_the_spec_bytes() {
    let mut aggregator = Aggregator::new();
    for r in small_records() {
        let added = aggregator.add(&r.partition_key, r.explicit_hash_key.as_deref(), &r.data);
        assert_eq!(added, Ok(None));
    }
    let aggregate = aggregator.flush().expect("three records");
    assert_eq!(aggregate.data, frame(SMALL_BODY));
    assert_eq!(aggregate.partition_key, "alice");
    assert_eq!(aggregate.explicit_hash_key, None);
    assert_eq!(aggregate.user_records, 3);
    assert_eq!(aggregate.size(), aggregate.data.len() + "alice".len());
    assert!(aggregator.is_empty());
    assert_eq!(aggregator.flush(), None);
}

#[test]
fn outer_record_takes_the_first_user_records_keys() {
    let mut aggregator = Aggregator::new();
    aggregator.add("first", Some("1000"), b"a").unwrap();
    aggregator.add("second", Some("2000"), b"b").unwrap();
    let aggregate = aggregator.flush().unwrap();
    assert_eq!(aggregate.partition_key, "first");
    assert_eq!(aggregate.explicit_hash_key.as_deref(), Some("1000"));
}

#[test]
fn fields_in_any_order_unknown_fields_and_tags() {
    // Records before the tables they refer to; unknown fields of every
    // accepted wire type at every level; tags with and without a value; a
    // repeated non-repeated field (the last one wins).
    let unknown = |field: u64| -> Vec<u8> {
        let mut out = varint_field(field, 300);
        out.extend(tag(field + 1, 1));
        out.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        out.extend(len_field(field + 2, b"ignored"));
        out.extend(tag(field + 3, 5));
        out.extend([9, 9, 9, 9]);
        out
    };
    let mut tag_with_value = len_field(1, b"source");
    tag_with_value.extend(len_field(2, b"firehose"));
    tag_with_value.extend(unknown(5));
    let tag_without_value = len_field(1, b"k");

    let mut record0 = unknown(10);
    record0.extend(len_field(3, b"stale"));
    record0.extend(varint_field(1, 1));
    record0.extend(len_field(4, &tag_with_value));
    record0.extend(len_field(3, b"fresh"));
    record0.extend(len_field(4, &tag_without_value));
    let mut record1 = len_field(3, b"x");
    record1.extend(varint_field(2, 0));
    record1.extend(varint_field(1, 0));

    let mut body = len_field(3, &record0);
    body.extend(unknown(20));
    body.extend(len_field(1, b"k0"));
    body.extend(len_field(3, &record1));
    body.extend(len_field(2, b"7"));
    body.extend(len_field(1, "ключ".as_bytes()));
    body.extend(unknown(536_870_900)); // field numbers up to 2^29 - 1

    assert_eq!(
        deaggregate(&frame(&body)),
        Ok(Some(vec![
            user("ключ", None, b"fresh", 0),
            user("k0", Some("7"), b"x", 1),
        ]))
    );
}

#[test]
fn an_aggregate_with_no_records_is_empty() {
    assert_eq!(deaggregate(&frame(&[])), Ok(Some(vec![])));
    // Tables but no records.
    assert_eq!(deaggregate(&frame(&len_field(1, b"k"))), Ok(Some(vec![])));
}

#[test]
fn deaggregate_bytes_shares_the_input_buffer() {
    let payload = Bytes::from(frame(SMALL_BODY));
    let records = deaggregate_bytes(&payload).unwrap().unwrap();
    let whole = payload.as_ptr_range();
    for r in records.iter().filter(|r| !r.data.is_empty()) {
        let part = r.data.as_ptr_range();
        assert!(
            whole.start <= part.start && part.end <= whole.end,
            "record {} was copied",
            r.sub_sequence
        );
    }
}

#[test]
fn debug_output_hides_record_data() {
    let records = deaggregate(&frame(&{
        let mut body = len_field(1, b"pk");
        body.extend(len_field(3, &record_msg(0, None, b"secret tweet text")));
        body
    }))
    .unwrap()
    .unwrap();
    let shown = format!("{records:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("data_len: 17"), "{shown}");

    let mut aggregator = Aggregator::new();
    aggregator.add("pk", None, b"secret tweet text").unwrap();
    assert!(!format!("{aggregator:?}").contains("secret"));
    let aggregate = aggregator.flush().unwrap();
    assert!(!format!("{aggregate:?}").contains("secret"));
}

// ---------------------------------------------------------------------------
// Plain records

#[test]
fn non_aggregated_payloads_are_none() {
    assert_eq!(deaggregate(b""), Ok(None));
    assert_eq!(deaggregate(br#"{"text":"hello"}"#), Ok(None));
    // Magic, but shorter than magic + digest.
    let mut short = MAGIC.to_vec();
    short.extend([0u8; 15]);
    assert_eq!(short.len(), MIN_AGGREGATE_LEN - 1);
    assert!(!is_aggregate(&short));
    assert_eq!(deaggregate(&short), Ok(None));
    // Long, but the magic is off by one bit.
    let mut almost = frame(SMALL_BODY);
    almost[3] ^= 1;
    assert_eq!(deaggregate(&almost), Ok(None));
    // At magic + digest length it is an aggregate and must check out.
    let mut twenty = MAGIC.to_vec();
    twenty.extend([0u8; 16]);
    assert!(matches!(
        deaggregate(&twenty),
        Err(KplError::DigestMismatch { .. })
    ));
}

// ---------------------------------------------------------------------------
// Corruption

#[test]
fn corrupt_md5_is_reported_with_both_digests() {
    let good = frame(SMALL_BODY);
    let expected = hex(&Md5::digest(SMALL_BODY));

    let mut bad_trailer = good.clone();
    let last = bad_trailer.len() - 1;
    bad_trailer[last] ^= 0xFF;
    let found = hex(&bad_trailer[bad_trailer.len() - 16..]);
    let err = decode_err(&bad_trailer);
    assert_eq!(
        err,
        KplError::DigestMismatch {
            expected: expected.clone(),
            found: found.clone()
        }
    );
    let message = err.to_string();
    assert!(
        message.contains(&expected) && message.contains(&found),
        "{message}"
    );
    assert_eq!(err.kind(), "digest_mismatch");

    // A flipped bit in the body: the trailer no longer matches.
    let mut bad_body = good;
    bad_body[10] ^= 0x01;
    assert!(matches!(
        decode_err(&bad_body),
        KplError::DigestMismatch { found, .. } if found == expected
    ));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn truncated_at_every_length_is_none_or_an_error() {
    let full = frame(SMALL_BODY);
    for n in 0..full.len() {
        let cut = &full[..n];
        match deaggregate(cut) {
            Ok(None) => assert!(n < MIN_AGGREGATE_LEN, "length {n} taken as plain"),
            Ok(Some(records)) => panic!("length {n} decoded to {records:?}"),
            Err(_) => assert!(n >= MIN_AGGREGATE_LEN, "length {n} is too short to fail"),
        }
        assert_eq!(
            deaggregate_bytes(&Bytes::copy_from_slice(cut)).is_err(),
            n >= MIN_AGGREGATE_LEN
        );
    }
}

#[test]
fn truncated_body_with_a_matching_digest_never_invents_records() {
    // The trailer is recomputed, so the protobuf parser itself sees every
    // prefix. A cut on a field boundary is a valid, shorter aggregate whose
    // records are a prefix of the original's; any other cut is an error.
    let all = small_records();
    let mut kinds = std::collections::BTreeSet::new();
    for n in 0..SMALL_BODY.len() {
        match deaggregate(&frame(&SMALL_BODY[..n])) {
            Ok(Some(records)) => assert_eq!(records[..], all[..records.len()], "cut at {n}"),
            Ok(None) => panic!("cut at {n} taken as plain"),
            Err(e) => {
                kinds.insert(e.kind());
            }
        }
    }
    // A cut inside a string runs past the end of the message; a cut just
    // after a tag leaves its length varint truncated.
    assert!(kinds.contains("length_past_end"), "{kinds:?}");
    assert!(kinds.contains("truncated"), "{kinds:?}");
}

#[test]
fn key_index_out_of_range() {
    let mut body = len_field(1, b"only");
    body.extend(len_field(3, &record_msg(0, None, b"ok")));
    body.extend(len_field(3, &record_msg(1, None, b"bad")));
    assert_eq!(
        decode_err(&frame(&body)),
        KplError::IndexOutOfRange {
            record: 1,
            table: KeyTable::PartitionKey,
            index: 1,
            len: 1
        }
    );

    let mut body = len_field(1, b"only");
    body.extend(len_field(2, b"12"));
    body.extend(len_field(3, &record_msg(0, Some(u64::MAX), b"bad")));
    assert_eq!(
        decode_err(&frame(&body)),
        KplError::IndexOutOfRange {
            record: 0,
            table: KeyTable::ExplicitHashKey,
            index: u64::MAX,
            len: 1
        }
    );

    // No tables at all.
    let body = len_field(3, &record_msg(0, None, b"x"));
    assert!(matches!(
        decode_err(&frame(&body)),
        KplError::IndexOutOfRange { len: 0, .. }
    ));
}

#[test]
fn missing_required_fields() {
    let with_record = |record: &[u8]| {
        let mut body = len_field(1, b"k");
        body.extend(len_field(3, record));
        frame(&body)
    };
    assert_eq!(
        decode_err(&with_record(&len_field(3, b"data only"))),
        KplError::MissingField {
            field: "Record.partition_key_index",
            record: 0
        }
    );
    assert_eq!(
        decode_err(&with_record(&varint_field(1, 0))),
        KplError::MissingField {
            field: "Record.data",
            record: 0
        }
    );
    let mut tagged = record_msg(0, None, b"x");
    tagged.extend(len_field(4, &len_field(2, b"value without key")));
    assert_eq!(
        decode_err(&with_record(&tagged)),
        KplError::MissingField {
            field: "Tag.key",
            record: 0
        }
    );
}

#[test]
fn wire_type_mismatches() {
    let with_record = |record: &[u8]| {
        let mut body = len_field(1, b"k");
        body.extend(len_field(3, record));
        frame(&body)
    };
    // data as a varint
    let mut record = varint_field(1, 0);
    record.extend(varint_field(3, 5));
    assert!(matches!(
        decode_err(&with_record(&record)),
        KplError::WireTypeMismatch {
            field: "Record.data",
            expected: 2,
            found: 0,
            ..
        }
    ));
    // partition_key_index as bytes
    let mut record = len_field(1, b"0");
    record.extend(len_field(3, b"x"));
    assert!(matches!(
        decode_err(&with_record(&record)),
        KplError::WireTypeMismatch {
            field: "Record.partition_key_index",
            expected: 0,
            found: 2,
            ..
        }
    ));
    // a table entry as a 32-bit value
    let mut body = tag(1, 5);
    body.extend([0, 0, 0, 0]);
    let err = decode_err(&frame(&body));
    assert_eq!(
        err,
        KplError::WireTypeMismatch {
            field: "AggregatedRecord.partition_key_table",
            expected: 2,
            found: 5,
            offset: 4
        }
    );
    assert!(err.to_string().contains("length-delimited"), "{err}");
}

#[test]
fn groups_and_invalid_wire_types_are_rejected() {
    for wire_type in [3, 4, 6, 7] {
        let body = tag(9, wire_type);
        assert_eq!(
            decode_err(&frame(&body)),
            KplError::UnsupportedWireType {
                field: 9,
                wire_type: wire_type as u8,
                offset: 4
            }
        );
    }
    // Field number 0.
    assert!(matches!(
        decode_err(&frame(&[0x00])),
        KplError::InvalidTag { tag: 0, offset: 4 }
    ));
}

#[test]
fn invalid_utf8_in_keys_and_tags() {
    let mut body = len_field(1, b"ok");
    body.extend(len_field(1, &[b'a', 0xFF, b'b']));
    assert_eq!(
        decode_err(&frame(&body)),
        KplError::InvalidUtf8 {
            field: "AggregatedRecord.partition_key_table",
            offset: 4 + 4 + 2,
            valid_up_to: 1
        }
    );

    let body = len_field(2, &[0xC3]);
    assert!(matches!(
        decode_err(&frame(&body)),
        KplError::InvalidUtf8 {
            field: "AggregatedRecord.explicit_hash_key_table",
            ..
        }
    ));

    let mut record = record_msg(0, None, b"x");
    record.extend(len_field(4, &len_field(1, &[0xED, 0xA0, 0x80]))); // a surrogate
    let mut body = len_field(1, b"k");
    body.extend(len_field(3, &record));
    assert!(matches!(
        decode_err(&frame(&body)),
        KplError::InvalidUtf8 {
            field: "Tag.key",
            ..
        }
    ));

    // Record data is bytes, not a string: anything goes.
    let mut body = len_field(1, b"k");
    body.extend(len_field(3, &record_msg(0, None, &[0xFF, 0x00, 0xFE])));
    assert_eq!(
        deaggregate(&frame(&body)),
        Ok(Some(vec![user("k", None, &[0xFF, 0x00, 0xFE], 0)]))
    );
}

#[test]
fn lengths_past_the_end_of_their_message() {
    // A nested length that fits the payload but not its Record message.
    let mut record = varint_field(1, 0);
    record.extend(tag(3, 2));
    record.extend(varint(10)); // data claims 10 bytes, the Record has 2 left
    record.extend(b"ab");
    let mut body = len_field(1, b"k");
    body.extend(len_field(3, &record));
    body.extend(len_field(1, b"padding that follows the record"));
    assert!(matches!(
        decode_err(&frame(&body)),
        KplError::LengthPastEnd {
            what: "Record.data",
            len: 10,
            remaining: 2,
            ..
        }
    ));

    // A length prefix of 2^64 - 1 is refused, not allocated.
    let mut body = tag(1, 2);
    body.extend(varint(u64::MAX));
    assert!(matches!(
        decode_err(&frame(&body)),
        KplError::LengthPastEnd { len: u64::MAX, .. }
    ));

    // A fixed-width unknown field cut short, and a varint cut short.
    let mut body = tag(15, 1);
    body.extend([1, 2, 3]);
    assert!(matches!(
        decode_err(&frame(&body)),
        KplError::Truncated { .. }
    ));
    assert!(matches!(
        decode_err(&frame(&[0x78, 0x80])), // field 15, varint cut short
        KplError::Truncated { .. }
    ));
    // An 11-byte varint.
    let mut body = tag(15, 0);
    body.extend([0x80; 10]);
    body.push(0x00);
    assert!(matches!(
        decode_err(&frame(&body)),
        KplError::VarintOverflow { .. }
    ));
}

#[test]
fn limits_refuse_absurd_sizes() {
    let mut body = len_field(1, b"k");
    for _ in 0..3 {
        body.extend(len_field(3, &record_msg(0, None, b"x")));
    }
    let payload = frame(&body);
    assert_eq!(
        Deaggregator::new()
            .max_records(3)
            .deaggregate(&payload)
            .map(|r| r.map(|r| r.len())),
        Ok(Some(3))
    );
    assert_eq!(
        Deaggregator::new().max_records(2).deaggregate(&payload),
        Err(KplError::TooManyRecords { limit: 2 })
    );
    assert_eq!(
        Deaggregator::new()
            .max_payload_bytes(payload.len() - 1)
            .deaggregate(&payload),
        Err(KplError::PayloadTooLarge {
            len: payload.len(),
            limit: payload.len() - 1
        })
    );

    let long_key = "x".repeat(1025);
    let mut body = len_field(1, long_key.as_bytes());
    body.extend(len_field(3, &record_msg(0, None, b"x")));
    assert_eq!(
        decode_err(&frame(&body)),
        KplError::KeyTooLong {
            table: KeyTable::PartitionKey,
            index: 0,
            len: 1025,
            limit: 1024
        }
    );
    assert!(
        Deaggregator::new()
            .max_key_bytes(2000)
            .deaggregate(&frame(&body))
            .is_ok()
    );
}

// ---------------------------------------------------------------------------
// The encoder

#[test]
fn keys_are_stored_once_per_aggregate() {
    let mut aggregator = Aggregator::new();
    for i in 0..50u8 {
        aggregator
            .add("shared-partition-key", Some("123456789"), &[i])
            .unwrap();
    }
    let aggregate = aggregator.flush().unwrap();
    let data = &aggregate.data[..];
    let count = |needle: &[u8]| data.windows(needle.len()).filter(|w| *w == needle).count();
    assert_eq!(count(b"shared-partition-key"), 1);
    assert_eq!(count(b"123456789"), 1);
    let records = deaggregate(data).unwrap().unwrap();
    assert_eq!(records.len(), 50);
    assert!(
        records
            .iter()
            .all(|r| r.partition_key == "shared-partition-key"
                && r.explicit_hash_key.as_deref() == Some("123456789"))
    );
}

#[test]
fn aggregates_split_at_the_size_and_count_limits() {
    // By size: see the Aggregator's doc example for the arithmetic.
    let mut aggregator = Aggregator::new().max_bytes(100);
    let mut out = Vec::new();
    for i in 0..5u8 {
        out.extend(aggregator.add("key", None, &[i; 30]).unwrap());
    }
    out.extend(aggregator.flush());
    let sizes: Vec<usize> = out.iter().map(Aggregate::size).collect();
    assert_eq!(sizes, [100, 100, 64]);

    // By count.
    let mut aggregator = Aggregator::new().max_records(2);
    let mut out = Vec::new();
    for i in 0..5u8 {
        out.extend(aggregator.add("key", None, &[i]).unwrap());
    }
    out.extend(aggregator.flush());
    let counts: Vec<usize> = out.iter().map(|a| a.user_records).collect();
    assert_eq!(counts, [2, 2, 1]);
}

#[test]
fn default_limit_is_one_mib_including_the_outer_partition_key() {
    let mut aggregator = Aggregator::new();
    let chunk = vec![0xAB; 100_000];
    let mut out = Vec::new();
    for _ in 0..25 {
        out.extend(aggregator.add("pk", None, &chunk).unwrap());
    }
    out.extend(aggregator.flush());
    // Each user record takes 100,010 bytes; ten fit in 1 MiB, eleven do not.
    let counts: Vec<usize> = out.iter().map(|a| a.user_records).collect();
    assert_eq!(counts, [10, 10, 5]);
    assert!(out.iter().all(|a| a.size() <= 1024 * 1024));
}

#[test]
fn refused_records_leave_the_aggregator_unchanged() {
    let mut aggregator = Aggregator::new().max_bytes(64);
    aggregator.add("k", None, b"small").unwrap();
    let before = aggregator.size();

    let err = aggregator.add("k", None, &[0; 64]).unwrap_err();
    assert!(matches!(
        err,
        AggregateError::RecordTooLarge {
            data_len: 64,
            limit: 64,
            ..
        }
    ));
    assert_eq!(
        aggregator.add("", None, b"x"),
        Err(AggregateError::InvalidPartitionKey { chars: 0 })
    );
    let too_long = "é".repeat(257);
    assert_eq!(
        aggregator.add(&too_long, None, b"x"),
        Err(AggregateError::InvalidPartitionKey { chars: 257 })
    );
    for bad in [
        "",
        "012",
        "-5",
        "1e3",
        "340282366920938463463374607431768211456",
    ] {
        assert!(
            matches!(
                aggregator.add("k", Some(bad), b"x"),
                Err(AggregateError::InvalidExplicitHashKey { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(aggregator.len(), 1);
    assert_eq!(aggregator.size(), before);

    // 256 characters of 2 bytes each is a valid key.
    let max_key = "é".repeat(256);
    assert!(Aggregator::new().add(&max_key, Some("0"), b"x").is_ok());
}

// ---------------------------------------------------------------------------
// Properties

#[derive(Clone, Debug)]
struct Input {
    pk: String,
    ehk: Option<String>,
    data: Vec<u8>,
}

fn input() -> impl Strategy<Value = Input> {
    let pk = prop_oneof![
        Just("a".to_owned()),
        Just("tweet-42".to_owned()),
        Just("日本語のキー".to_owned()),
        "[a-zA-Z0-9]{1,20}",
    ];
    let ehk = prop_oneof![
        3 => Just(None),
        1 => Just(Some("0".to_owned())),
        1 => any::<u128>().prop_map(|v| Some(v.to_string())),
    ];
    let data = prop::collection::vec(any::<u8>(), 0..300);
    (pk, ehk, data).prop_map(|(pk, ehk, data)| Input { pk, ehk, data })
}

fn aggregate_all(inputs: &[Input], max_bytes: usize) -> Vec<Aggregate> {
    let mut aggregator = Aggregator::new().max_bytes(max_bytes);
    let mut out = Vec::new();
    for r in inputs {
        out.extend(
            aggregator
                .add(&r.pk, r.ehk.as_deref(), &r.data)
                .expect("the inputs fit"),
        );
    }
    out.extend(aggregator.flush());
    out
}

proptest! {
    #[test]
    fn round_trip(inputs in prop::collection::vec(input(), 1..60), max_bytes in 500usize..4_000) {
        let aggregates = aggregate_all(&inputs, max_bytes);
        let mut decoded = Vec::new();
        for (i, aggregate) in aggregates.iter().enumerate() {
            prop_assert!(aggregate.size() <= max_bytes);
            let records = deaggregate_bytes(&aggregate.data).unwrap().unwrap();
            prop_assert_eq!(records.len(), aggregate.user_records);
            let first = &records[0];
            prop_assert_eq!(&aggregate.partition_key, &first.partition_key);
            prop_assert_eq!(&aggregate.explicit_hash_key, &first.explicit_hash_key);
            for (j, r) in records.iter().enumerate() {
                prop_assert_eq!(r.sub_sequence, j as u64);
            }
            // Tight: the next aggregate's first record would not have fitted.
            if let Some(next) = aggregates.get(i + 1) {
                let next_first = &deaggregate(&next.data).unwrap().unwrap()[0];
                let mut with_next = Aggregator::new().max_bytes(usize::MAX);
                for r in records.iter().chain([next_first]) {
                    with_next.add(&r.partition_key, r.explicit_hash_key.as_deref(), &r.data).unwrap();
                }
                prop_assert!(with_next.size() > max_bytes);
            }
            decoded.extend(records);
        }
        prop_assert_eq!(decoded.len(), inputs.len());
        for (got, want) in decoded.iter().zip(&inputs) {
            prop_assert_eq!(&got.partition_key, &want.pk);
            prop_assert_eq!(&got.explicit_hash_key, &want.ehk);
            prop_assert_eq!(&got.data[..], &want.data[..]);
        }
    }

    /// Random bodies behind a valid digest: the parser sees them all. It
    /// must not panic, and what it accepts must be plausible.
    #[test]
    fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
        match deaggregate(&frame(&body)) {
            Ok(Some(records)) => {
                // Each Record message takes at least 6 bytes.
                prop_assert!(records.len() * 6 <= body.len());
                for (j, r) in records.iter().enumerate() {
                    prop_assert_eq!(r.sub_sequence, j as u64);
                }
            }
            Ok(None) => prop_assert!(false, "a framed body was taken as plain"),
            Err(e) => prop_assert_ne!(e.kind(), "digest_mismatch"),
        }
    }

    /// Random byte edits of a valid aggregate, with the digest recomputed.
    #[test]
    fn mutated_aggregates_never_panic(
        inputs in prop::collection::vec(input(), 1..8),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let aggregate = &aggregate_all(&inputs, usize::MAX)[0];
        let mut body = aggregate.data[MAGIC.len()..aggregate.data.len() - 16].to_vec();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        match deaggregate(&frame(&body)) {
            Ok(Some(records)) => prop_assert!(records.len() * 6 <= body.len()),
            Ok(None) => prop_assert!(false, "a framed body was taken as plain"),
            // The digest is right, so only the protobuf can be wrong.
            Err(e) => prop_assert_ne!(e.kind(), "digest_mismatch"),
        }
    }
}
