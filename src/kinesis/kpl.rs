//! The Kinesis Producer Library (KPL) aggregation format: a de-aggregator
//! for consumers and an [`Aggregator`] for producers.
//!
//! The KPL packs many *user records* into one Kinesis record. Such an
//! *aggregate* is laid out as
//!
//! ```text
//! F3 89 9A C2 | protobuf AggregatedRecord | MD5 of the protobuf bytes (16)
//! ```
//!
//! and the protobuf (proto2) schema is
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! message Tag {
//!   required string key   = 1;
//!   optional string value = 2;
//! }
//! ```
//!
//! A Kinesis record that does not start with the magic bytes, or is shorter
//! than magic + digest (20 bytes), is a plain record: [`deaggregate`]
//! returns `Ok(None)` for it and the caller uses the record as it is.
//!
//! # Decoding rules
//!
//! The decoder is hand-written, total and cheap, so that it can be fuzzed:
//! it never panics, never allocates from a length prefix before checking
//! that length against the bytes that remain, and fails with a typed
//! [`KplError`] on anything malformed:
//!
//! - the MD5 trailer is checked first, over the protobuf bytes (between the
//!   magic and the trailer);
//! - fields may come in any order, and the key tables may follow the
//!   records that refer to them;
//! - unknown fields with wire types 0 (varint), 1 (64-bit), 2
//!   (length-delimited) and 5 (32-bit) are skipped; wire types 3 and 4
//!   (deprecated groups, never written by the KPL) and 6, 7 are rejected;
//! - a known field with the wrong wire type, a missing required field, a key
//!   index outside its table, a key that is not UTF-8, a varint longer than
//!   10 bytes or over 64 bits, and a length that runs past the end of its
//!   message are errors;
//! - when a non-repeated field appears twice, the last one wins (protobuf's
//!   rule);
//! - `Tag`s are checked (their `key` is required, strings must be UTF-8) and
//!   then dropped: [`UserRecord`] does not carry them;
//! - an aggregate with no user records is valid and yields an empty list.
//!
//! [`Deaggregator`] holds the size limits ([`Deaggregator::max_payload_bytes`],
//! [`Deaggregator::max_records`], [`Deaggregator::max_key_bytes`]);
//! [`deaggregate`] and [`deaggregate_bytes`] use the defaults.
//!
//! Some de-aggregators treat a record that carries the magic but fails its
//! MD5 check as a plain record. This module reports an error instead, so
//! that the source can dead-letter the record; a caller that prefers the
//! lenient behaviour can use the payload as a plain record on `Err`.
//!
//! # Example
//!
//! ```
//! use streamsift::kinesis::kpl::{Aggregator, deaggregate_bytes};
//!
//! let mut aggregator = Aggregator::new();
//! assert!(aggregator.add("user-1", None, b"hello")?.is_none());
//! assert!(aggregator.add("user-2", None, b"world")?.is_none());
//! let aggregate = aggregator.flush().expect("two records were added");
//! assert_eq!(aggregate.partition_key, "user-1");
//!
//! let records = deaggregate_bytes(&aggregate.data)?.expect("an aggregate");
//! assert_eq!(records.len(), 2);
//! assert_eq!(records[1].partition_key, "user-2");
//! assert_eq!(&records[1].data[..], b"world");
//! assert_eq!(records[1].sub_sequence, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use md5::{Digest, Md5};

/// The four bytes every KPL aggregate starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 digest that ends every aggregate.
pub const DIGEST_LEN: usize = 16;

/// The shortest payload that can be an aggregate: magic and digest around
/// an empty protobuf message. Shorter payloads are plain records.
pub const MIN_AGGREGATE_LEN: usize = MAGIC.len() + DIGEST_LEN;

/// Kinesis' default limit on one record: data plus partition key, 1 MiB.
/// The [`Aggregator`]'s default maximum size.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// The largest record a stream can be configured to accept (10 MiB, with
/// `UpdateMaxRecordSize`). The [`Deaggregator`]'s default payload limit.
pub const MAX_LARGE_RECORD_BYTES: usize = 10 * 1024 * 1024;

/// Kinesis' limit on a partition key, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Default limit on the user records in one aggregate, for the
/// [`Deaggregator`] and the [`Aggregator`]. Each user record takes at least
/// 6 bytes of protobuf, so a 1 MiB aggregate holds at most about 175,000;
/// this leaves room above that and stops a crafted aggregate of tiny
/// records from making millions of key copies.
pub const DEFAULT_MAX_RECORDS: usize = 1 << 18;

/// Default limit on one entry of a key table, in bytes: a partition key of
/// 256 characters takes at most 1,024 bytes of UTF-8.
pub const DEFAULT_MAX_KEY_BYTES: usize = 4 * MAX_PARTITION_KEY_CHARS;

// Protobuf wire types.
const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

/// The largest protobuf field number.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

// Field tags (field number << 3 | wire type) the encoder writes.
const TAG_PARTITION_KEY_TABLE: u8 = (1 << 3) | WIRE_LEN;
const TAG_EXPLICIT_HASH_KEY_TABLE: u8 = (2 << 3) | WIRE_LEN;
const TAG_RECORDS: u8 = (3 << 3) | WIRE_LEN;
const TAG_PARTITION_KEY_INDEX: u8 = 1 << 3; // varint
const TAG_EXPLICIT_HASH_KEY_INDEX: u8 = 2 << 3; // varint
const TAG_DATA: u8 = (3 << 3) | WIRE_LEN;

fn wire_type_name(wire_type: u8) -> &'static str {
    match wire_type {
        0 => "varint",
        1 => "64-bit",
        2 => "length-delimited",
        3 => "start group",
        4 => "end group",
        5 => "32-bit",
        _ => "invalid",
    }
}

/// One of the two key tables of an aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyTable {
    /// `partition_key_table` (field 1).
    PartitionKey,
    /// `explicit_hash_key_table` (field 2).
    ExplicitHashKey,
}

impl KeyTable {
    fn field(self) -> &'static str {
        match self {
            KeyTable::PartitionKey => "AggregatedRecord.partition_key_table",
            KeyTable::ExplicitHashKey => "AggregatedRecord.explicit_hash_key_table",
        }
    }
}

impl fmt::Display for KeyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyTable::PartitionKey => "partition_key_table",
            KeyTable::ExplicitHashKey => "explicit_hash_key_table",
        })
    }
}

/// Why a payload that starts with the KPL magic could not be de-aggregated.
///
/// Every variant is permanent: the same bytes fail the same way. Offsets
/// count from the start of the payload (the magic is bytes 0 to 3). The
/// messages never quote record data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KplError {
    /// The payload is larger than [`Deaggregator::max_payload_bytes`].
    #[error(
        "KPL aggregate of {len} bytes is over the limit of {limit} bytes; \
         raise Deaggregator::max_payload_bytes if the stream holds such records"
    )]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The MD5 trailer does not match the protobuf bytes.
    #[error(
        "KPL aggregate fails its MD5 check: the protobuf bytes hash to {expected} but the \
         trailer holds {found}; the record is corrupt, or is a plain record that happens \
         to start with the KPL magic bytes"
    )]
    DigestMismatch {
        /// The MD5 of the protobuf bytes, in lowercase hex: what the
        /// trailer should hold.
        expected: String,
        /// The trailer's 16 bytes, in lowercase hex.
        found: String,
    },
    /// A varint or a fixed-width value stops at the end of its message.
    #[error(
        "KPL aggregate truncated: the {what} at byte {offset} runs past the end of its \
         message at byte {end}"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Where the enclosing message ends.
        end: usize,
    },
    /// A varint has more than 10 bytes or a value over 64 bits.
    #[error(
        "KPL aggregate has a malformed varint ({what}) at byte {offset}: \
         expected at most 10 bytes and 64 bits"
    )]
    VarintOverflow {
        /// What was being read.
        what: &'static str,
        /// Where the varint starts.
        offset: usize,
    },
    /// A length prefix claims more bytes than remain in its message.
    #[error(
        "KPL aggregate: the {what} at byte {offset} declares {len} bytes, but only \
         {remaining} remain in its message"
    )]
    LengthPastEnd {
        /// The field being read.
        what: &'static str,
        /// Where its length prefix starts.
        offset: usize,
        /// The declared length.
        len: u64,
        /// Bytes left in the enclosing message after the prefix.
        remaining: usize,
    },
    /// A field tag with field number 0 or over 2^29 - 1.
    #[error(
        "KPL aggregate has an invalid field tag {tag} at byte {offset}: \
         expected a field number from 1 to 536870911"
    )]
    InvalidTag {
        /// The tag's value.
        tag: u64,
        /// Where it starts.
        offset: usize,
    },
    /// A field uses a wire type that is not 0, 1, 2 or 5.
    #[error(
        "KPL aggregate: field {field} at byte {offset} has wire type {wire_type} ({}); \
         expected 0, 1, 2 or 5 (groups are not supported)",
        wire_type_name(*.wire_type)
    )]
    UnsupportedWireType {
        /// The field number.
        field: u64,
        /// The wire type found.
        wire_type: u8,
        /// Where the field's tag starts.
        offset: usize,
    },
    /// A known field has the wrong wire type.
    #[error(
        "KPL aggregate: {field} at byte {offset} should have wire type {expected} ({}) \
         but has {found} ({})",
        wire_type_name(*.expected),
        wire_type_name(*.found)
    )]
    WireTypeMismatch {
        /// The field, as `Message.field`.
        field: &'static str,
        /// The wire type the schema gives it.
        expected: u8,
        /// The wire type found.
        found: u8,
        /// Where the field's tag starts.
        offset: usize,
    },
    /// A required field is missing.
    #[error("KPL aggregate: user record {record} lacks the required field {field}")]
    MissingField {
        /// The field, as `Message.field`.
        field: &'static str,
        /// The user record's index in the aggregate.
        record: u64,
    },
    /// A key index points outside its table.
    #[error(
        "KPL aggregate: user record {record} refers to {table} entry {index}, \
         but the table has {len} entries"
    )]
    IndexOutOfRange {
        /// The user record's index in the aggregate.
        record: u64,
        /// The table.
        table: KeyTable,
        /// The index found.
        index: u64,
        /// The table's length.
        len: usize,
    },
    /// A string field is not valid UTF-8.
    #[error(
        "KPL aggregate: the {field} at byte {offset} is not valid UTF-8 \
         (invalid from its byte {valid_up_to})"
    )]
    InvalidUtf8 {
        /// The field, as `Message.field`.
        field: &'static str,
        /// Where the string's bytes start.
        offset: usize,
        /// How many leading bytes of the string are valid.
        valid_up_to: usize,
    },
    /// A key table entry is longer than [`Deaggregator::max_key_bytes`].
    #[error(
        "KPL aggregate: {table} entry {index} is {len} bytes, over the limit of {limit}; \
         raise Deaggregator::max_key_bytes if such keys are expected"
    )]
    KeyTooLong {
        /// The table.
        table: KeyTable,
        /// The entry's index.
        index: usize,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The aggregate holds more than [`Deaggregator::max_records`] user
    /// records.
    #[error(
        "KPL aggregate holds more than {limit} user records; \
         raise Deaggregator::max_records if such aggregates are expected"
    )]
    TooManyRecords {
        /// The limit.
        limit: usize,
    },
}

impl KplError {
    /// A short, stable name for the kind of failure, for metric labels and
    /// dead-letter entries.
    pub fn kind(&self) -> &'static str {
        match self {
            KplError::PayloadTooLarge { .. } => "payload_too_large",
            KplError::DigestMismatch { .. } => "digest_mismatch",
            KplError::Truncated { .. } => "truncated",
            KplError::VarintOverflow { .. } => "varint_overflow",
            KplError::LengthPastEnd { .. } => "length_past_end",
            KplError::InvalidTag { .. } => "invalid_tag",
            KplError::UnsupportedWireType { .. } => "unsupported_wire_type",
            KplError::WireTypeMismatch { .. } => "wire_type_mismatch",
            KplError::MissingField { .. } => "missing_field",
            KplError::IndexOutOfRange { .. } => "index_out_of_range",
            KplError::InvalidUtf8 { .. } => "invalid_utf8",
            KplError::KeyTooLong { .. } => "key_too_long",
            KplError::TooManyRecords { .. } => "too_many_records",
        }
    }
}

/// One user record unpacked from an aggregate.
///
/// `Debug` shows the data's length, not its content.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user record's partition key (from the aggregate's table, not the
    /// outer Kinesis record's key).
    pub partition_key: String,
    /// Its explicit hash key, if the producer gave one.
    pub explicit_hash_key: Option<String>,
    /// Its data. From [`deaggregate_bytes`] this shares the input's buffer.
    pub data: Bytes,
    /// Its index in the aggregate, from 0: the sub-sequence number the KCL
    /// checkpoints with.
    pub sub_sequence: u64,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("partition_key", &self.partition_key)
            .field("explicit_hash_key", &self.explicit_hash_key)
            .field("data_len", &self.data.len())
            .field("sub_sequence", &self.sub_sequence)
            .finish()
    }
}

/// Whether `payload` is framed as an aggregate: it starts with [`MAGIC`] and
/// is at least [`MIN_AGGREGATE_LEN`] bytes long. It says nothing about
/// whether the rest is valid.
pub fn is_aggregate(payload: &[u8]) -> bool {
    payload.len() >= MIN_AGGREGATE_LEN && payload.starts_with(&MAGIC)
}

/// De-aggregates `payload` with the default limits, copying each user
/// record's data. See [`Deaggregator::deaggregate`].
pub fn deaggregate(payload: &[u8]) -> Result<Option<Vec<UserRecord>>, KplError> {
    Deaggregator::new().deaggregate(payload)
}

/// De-aggregates `payload` with the default limits; each user record's
/// data is a slice of `payload` (no copy). See
/// [`Deaggregator::deaggregate_bytes`].
pub fn deaggregate_bytes(payload: &Bytes) -> Result<Option<Vec<UserRecord>>, KplError> {
    Deaggregator::new().deaggregate_bytes(payload)
}

/// The 128-bit hash Kinesis maps a partition key to: the MD5 of its UTF-8
/// bytes read as a big-endian integer. A record goes to the shard whose
/// hash key range holds this value (or its explicit hash key, if given).
///
/// ```
/// use streamsift::kinesis::kpl::partition_key_hash;
/// // MD5("") = d41d8cd98f00b204e9800998ecf8427e
/// assert_eq!(partition_key_hash(""), 0xd41d8cd98f00b204e9800998ecf8427e);
/// ```
pub fn partition_key_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(md5(partition_key.as_bytes()))
}

fn md5(bytes: &[u8]) -> [u8; DIGEST_LEN] {
    Md5::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A de-aggregator with size limits. Cheap to build and `Copy`.
///
/// ```
/// use streamsift::kinesis::kpl::Deaggregator;
/// let strict = Deaggregator::new().max_records(1_000).max_key_bytes(256);
/// assert_eq!(strict.deaggregate(b"not an aggregate"), Ok(None));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deaggregator {
    max_payload_bytes: usize,
    max_records: usize,
    max_key_bytes: usize,
}

impl Default for Deaggregator {
    fn default() -> Self {
        Self::new()
    }
}

impl Deaggregator {
    /// Limits of [`MAX_LARGE_RECORD_BYTES`] per payload,
    /// [`DEFAULT_MAX_RECORDS`] user records and [`DEFAULT_MAX_KEY_BYTES`]
    /// per key.
    pub const fn new() -> Self {
        Deaggregator {
            max_payload_bytes: MAX_LARGE_RECORD_BYTES,
            max_records: DEFAULT_MAX_RECORDS,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
        }
    }

    /// Rejects aggregates longer than `bytes` ([`KplError::PayloadTooLarge`])
    /// before hashing them.
    pub const fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Rejects aggregates with more than `records` user records
    /// ([`KplError::TooManyRecords`]).
    pub const fn max_records(mut self, records: usize) -> Self {
        self.max_records = records;
        self
    }

    /// Rejects key table entries longer than `bytes`
    /// ([`KplError::KeyTooLong`]).
    pub const fn max_key_bytes(mut self, bytes: usize) -> Self {
        self.max_key_bytes = bytes;
        self
    }

    /// De-aggregates `payload`, copying each user record's data into its
    /// own buffer.
    ///
    /// Returns `Ok(None)` when the payload is a plain record (see
    /// [`is_aggregate`]), `Ok(Some(records))` with the user records in
    /// order (`sub_sequence` 0, 1, ...), or the first problem found. The
    /// checks are described in the [module docs](self).
    pub fn deaggregate(&self, payload: &[u8]) -> Result<Option<Vec<UserRecord>>, KplError> {
        self.parse(payload, |_, data| Bytes::copy_from_slice(data))
    }

    /// Like [`deaggregate`](Self::deaggregate), but each user record's data
    /// is a slice of `payload`, sharing its buffer.
    pub fn deaggregate_bytes(&self, payload: &Bytes) -> Result<Option<Vec<UserRecord>>, KplError> {
        // The range was read from `payload`'s own bytes by `parse`, which
        // only hands over ranges that `get` accepted, so `slice` is in bounds.
        self.parse(payload, |range, _| payload.slice(range))
    }

    fn parse(
        &self,
        payload: &[u8],
        mut data_of: impl FnMut(Range<usize>, &[u8]) -> Bytes,
    ) -> Result<Option<Vec<UserRecord>>, KplError> {
        if !is_aggregate(payload) {
            return Ok(None);
        }
        if payload.len() > self.max_payload_bytes {
            return Err(KplError::PayloadTooLarge {
                len: payload.len(),
                limit: self.max_payload_bytes,
            });
        }
        let body_end = payload.len() - DIGEST_LEN; // >= MAGIC.len(), checked above
        let (framed, trailer) = payload.split_at(body_end);
        let body = framed.get(MAGIC.len()..).unwrap_or_default();
        let digest = md5(body);
        if digest[..] != *trailer {
            return Err(KplError::DigestMismatch {
                expected: hex(&digest),
                found: hex(trailer),
            });
        }

        // Pass 1: the tables and where each Record message lies. Every entry
        // pushed here consumed at least 2 bytes of input, so these vectors
        // are bounded by the payload's size.
        let mut partition_keys: Vec<&str> = Vec::new();
        let mut hash_keys: Vec<&str> = Vec::new();
        let mut records: Vec<Range<usize>> = Vec::new();
        let mut top = Reader::new(payload, MAGIC.len(), body_end);
        while let Some(tag) = top.tag()? {
            match tag.field {
                1 => {
                    let table = KeyTable::PartitionKey;
                    tag.expect(WIRE_LEN, table.field())?;
                    let range = top.len_delimited(table.field())?;
                    let key = self.key(payload, range, table, partition_keys.len())?;
                    partition_keys.push(key);
                }
                2 => {
                    let table = KeyTable::ExplicitHashKey;
                    tag.expect(WIRE_LEN, table.field())?;
                    let range = top.len_delimited(table.field())?;
                    let key = self.key(payload, range, table, hash_keys.len())?;
                    hash_keys.push(key);
                }
                3 => {
                    tag.expect(WIRE_LEN, "AggregatedRecord.records")?;
                    let range = top.len_delimited("AggregatedRecord.records")?;
                    if records.len() >= self.max_records {
                        return Err(KplError::TooManyRecords {
                            limit: self.max_records,
                        });
                    }
                    records.push(range);
                }
                _ => top.skip(&tag)?,
            }
        }

        // Pass 2: each Record, resolved against the tables.
        let mut out = Vec::with_capacity(records.len());
        for (sub_sequence, range) in (0u64..).zip(records) {
            let raw = parse_record(payload, range, sub_sequence)?;
            let partition_key = lookup(
                &partition_keys,
                raw.partition_key_index,
                KeyTable::PartitionKey,
                sub_sequence,
            )?;
            let explicit_hash_key = match raw.explicit_hash_key_index {
                Some(index) => Some(lookup(
                    &hash_keys,
                    index,
                    KeyTable::ExplicitHashKey,
                    sub_sequence,
                )?),
                None => None,
            };
            let data = payload.get(raw.data.clone()).ok_or(KplError::Truncated {
                what: "Record.data",
                offset: raw.data.start,
                end: payload.len(),
            })?;
            out.push(UserRecord {
                partition_key: partition_key.to_owned(),
                explicit_hash_key: explicit_hash_key.map(str::to_owned),
                data: data_of(raw.data, data),
                sub_sequence,
            });
        }
        Ok(Some(out))
    }

    /// A key table entry: within the length limit and valid UTF-8.
    fn key<'a>(
        &self,
        payload: &'a [u8],
        range: Range<usize>,
        table: KeyTable,
        index: usize,
    ) -> Result<&'a str, KplError> {
        if range.len() > self.max_key_bytes {
            return Err(KplError::KeyTooLong {
                table,
                index,
                len: range.len(),
                limit: self.max_key_bytes,
            });
        }
        utf8(payload, range, table.field())
    }
}

fn lookup<'a>(
    table: &[&'a str],
    index: u64,
    which: KeyTable,
    record: u64,
) -> Result<&'a str, KplError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .copied()
        .ok_or(KplError::IndexOutOfRange {
            record,
            table: which,
            index,
            len: table.len(),
        })
}

fn utf8<'a>(
    payload: &'a [u8],
    range: Range<usize>,
    field: &'static str,
) -> Result<&'a str, KplError> {
    let offset = range.start;
    let bytes = payload.get(range).ok_or(KplError::Truncated {
        what: field,
        offset,
        end: payload.len(),
    })?;
    std::str::from_utf8(bytes).map_err(|e| KplError::InvalidUtf8 {
        field,
        offset,
        valid_up_to: e.valid_up_to(),
    })
}

/// A `Record` message before its indices are resolved.
struct RawRecord {
    partition_key_index: u64,
    explicit_hash_key_index: Option<u64>,
    data: Range<usize>,
}

fn parse_record(payload: &[u8], range: Range<usize>, record: u64) -> Result<RawRecord, KplError> {
    let mut partition_key_index = None;
    let mut explicit_hash_key_index = None;
    let mut data = None;
    let mut r = Reader::new(payload, range.start, range.end);
    while let Some(tag) = r.tag()? {
        match tag.field {
            1 => {
                tag.expect(WIRE_VARINT, "Record.partition_key_index")?;
                partition_key_index = Some(r.varint("Record.partition_key_index")?);
            }
            2 => {
                tag.expect(WIRE_VARINT, "Record.explicit_hash_key_index")?;
                explicit_hash_key_index = Some(r.varint("Record.explicit_hash_key_index")?);
            }
            3 => {
                tag.expect(WIRE_LEN, "Record.data")?;
                data = Some(r.len_delimited("Record.data")?);
            }
            4 => {
                tag.expect(WIRE_LEN, "Record.tags")?;
                let tag_range = r.len_delimited("Record.tags")?;
                check_tag(payload, tag_range, record)?;
            }
            _ => r.skip(&tag)?,
        }
    }
    Ok(RawRecord {
        partition_key_index: partition_key_index.ok_or(KplError::MissingField {
            field: "Record.partition_key_index",
            record,
        })?,
        explicit_hash_key_index,
        data: data.ok_or(KplError::MissingField {
            field: "Record.data",
            record,
        })?,
    })
}

/// Checks a `Tag` message: `key` present, both strings UTF-8.
fn check_tag(payload: &[u8], range: Range<usize>, record: u64) -> Result<(), KplError> {
    let mut has_key = false;
    let mut r = Reader::new(payload, range.start, range.end);
    while let Some(tag) = r.tag()? {
        match tag.field {
            1 => {
                tag.expect(WIRE_LEN, "Tag.key")?;
                let s = r.len_delimited("Tag.key")?;
                utf8(payload, s, "Tag.key")?;
                has_key = true;
            }
            2 => {
                tag.expect(WIRE_LEN, "Tag.value")?;
                let s = r.len_delimited("Tag.value")?;
                utf8(payload, s, "Tag.value")?;
            }
            _ => r.skip(&tag)?,
        }
    }
    if has_key {
        Ok(())
    } else {
        Err(KplError::MissingField {
            field: "Tag.key",
            record,
        })
    }
}

/// A field's tag as read.
struct FieldTag {
    field: u64,
    wire_type: u8,
    offset: usize,
}

impl FieldTag {
    fn expect(&self, wire_type: u8, field: &'static str) -> Result<(), KplError> {
        if self.wire_type == wire_type {
            Ok(())
        } else {
            Err(KplError::WireTypeMismatch {
                field,
                expected: wire_type,
                found: self.wire_type,
                offset: self.offset,
            })
        }
    }
}

/// Reads protobuf fields from `buf[pos..end]`; offsets are positions in
/// `buf`, the whole payload. Invariant: `pos <= end <= buf.len()`.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], start: usize, end: usize) -> Self {
        let end = end.min(buf.len());
        Reader {
            buf,
            pos: start.min(end),
            end,
        }
    }

    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, KplError> {
        // Fast path: tags, key indices and short lengths take one byte.
        if self.pos < self.end
            && let Some(&byte) = self.buf.get(self.pos)
            && byte < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(byte));
        }
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = match self.buf.get(self.pos) {
                Some(&b) if self.pos < self.end => b,
                _ => {
                    return Err(KplError::Truncated {
                        what,
                        offset: start,
                        end: self.end,
                    });
                }
            };
            self.pos += 1;
            // The tenth byte (shift 63) may only hold the top bit.
            if shift == 63 && byte > 1 {
                return Err(KplError::VarintOverflow {
                    what,
                    offset: start,
                });
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        // Unreachable: the tenth byte either ended the varint or failed.
        Err(KplError::VarintOverflow {
            what,
            offset: start,
        })
    }

    /// The next field's tag, or `None` at the end of the message.
    fn tag(&mut self) -> Result<Option<FieldTag>, KplError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let offset = self.pos;
        let tag = self.varint("field tag")?;
        let field = tag >> 3;
        if field == 0 || field > MAX_FIELD_NUMBER {
            return Err(KplError::InvalidTag { tag, offset });
        }
        Ok(Some(FieldTag {
            field,
            wire_type: (tag & 7) as u8,
            offset,
        }))
    }

    /// A length-delimited field's content, as a range of `buf`.
    fn len_delimited(&mut self, what: &'static str) -> Result<Range<usize>, KplError> {
        let offset = self.pos;
        let len = self.varint(what)?;
        let remaining = self.remaining();
        match usize::try_from(len) {
            Ok(n) if n <= remaining => {
                let start = self.pos;
                self.pos += n;
                Ok(start..self.pos)
            }
            _ => Err(KplError::LengthPastEnd {
                what,
                offset,
                len,
                remaining,
            }),
        }
    }

    fn fixed(&mut self, n: usize, what: &'static str) -> Result<(), KplError> {
        if self.remaining() < n {
            return Err(KplError::Truncated {
                what,
                offset: self.pos,
                end: self.end,
            });
        }
        self.pos += n;
        Ok(())
    }

    /// Skips an unknown field's value.
    fn skip(&mut self, tag: &FieldTag) -> Result<(), KplError> {
        match tag.wire_type {
            WIRE_VARINT => self.varint("unknown varint field").map(drop),
            WIRE_I64 => self.fixed(8, "unknown 64-bit field"),
            WIRE_LEN => self
                .len_delimited("unknown length-delimited field")
                .map(drop),
            WIRE_I32 => self.fixed(4, "unknown 32-bit field"),
            wire_type => Err(KplError::UnsupportedWireType {
                field: tag.field,
                wire_type,
                offset: tag.offset,
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// Encoder

/// Why the [`Aggregator`] refused a user record. The aggregator is left as
/// it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// The partition key is empty or longer than 256 characters.
    #[error("partition key of {chars} characters is invalid: Kinesis expects 1 to 256 characters")]
    InvalidPartitionKey {
        /// Its length in characters.
        chars: usize,
    },
    /// The explicit hash key is not a decimal integer from 0 to 2^128 - 1
    /// without leading zeros.
    #[error(
        "explicit hash key {found:?} is invalid: Kinesis expects a decimal integer from 0 to \
         2^128 - 1 without leading zeros"
    )]
    InvalidExplicitHashKey {
        /// The key (at most its first 64 characters).
        found: String,
    },
    /// The user record does not fit in an aggregate of the maximum size
    /// even on its own.
    #[error(
        "a user record with {data_len} bytes of data needs an aggregate of {needed} bytes \
         (magic, protobuf, MD5 and partition key), over the limit of {limit}; send it \
         without aggregation if it fits in a plain record, or shrink it"
    )]
    RecordTooLarge {
        /// The user record's data length.
        data_len: usize,
        /// The size of an aggregate holding only this record, counted as
        /// [`Aggregate::size`] counts.
        needed: usize,
        /// The aggregator's maximum size.
        limit: usize,
    },
}

/// A finished aggregate, ready to be one entry of a PutRecords call.
///
/// `Debug` shows the data's length, not its content.
#[derive(Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// The partition key for the outer Kinesis record: the first user
    /// record's partition key, as the KPL does.
    pub partition_key: String,
    /// The explicit hash key for the outer Kinesis record: the first user
    /// record's, if it had one.
    pub explicit_hash_key: Option<String>,
    /// The record's data: magic, protobuf and MD5.
    pub data: Bytes,
    /// How many user records it holds (at least 1).
    pub user_records: usize,
}

impl Aggregate {
    /// Its size as Kinesis counts it against the per-record limit: the
    /// data's length plus the partition key's length (in UTF-8 bytes, which
    /// is never less than Kinesis' count).
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

impl fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregate")
            .field("partition_key", &self.partition_key)
            .field("explicit_hash_key", &self.explicit_hash_key)
            .field("data_len", &self.data.len())
            .field("user_records", &self.user_records)
            .finish()
    }
}

/// Packs user records into KPL aggregates.
///
/// Records are added in order with [`add`](Self::add); when the next one
/// would push the aggregate over [`max_bytes`](Self::max_bytes) or
/// [`max_records`](Self::max_records), the aggregate built so far is
/// finished and returned, and the new record starts the next one.
/// [`flush`](Self::flush) finishes the last one. Each user record is in
/// exactly one aggregate, and the order of user records is kept across
/// aggregates.
///
/// **Size.** An aggregate's size is counted as Kinesis counts a record:
/// `4 (magic) + protobuf + 16 (MD5) + outer partition key (UTF-8 bytes)`,
/// which is [`Aggregate::size`]. Every aggregate returned satisfies
/// `size() <= max_bytes`. The default is [`MAX_RECORD_BYTES`] (1 MiB).
///
/// **Keys.** Partition keys and explicit hash keys are stored once per
/// aggregate in its tables, and each user record refers to them by index.
/// The outer record's partition key and explicit hash key are the first
/// user record's, as with the KPL. Partition keys must have 1 to 256
/// characters; explicit hash keys must be decimal integers below 2^128
/// without leading zeros (Kinesis' own rules), else
/// [`AggregateError`].
///
/// **Shards.** The aggregator does not know the stream's shards: an
/// aggregate goes to the shard of its first user record's key, and so do
/// all user records in it. The KPL aggregates per shard so that each user
/// record lands on the shard its own key maps to; to get that, keep one
/// aggregator per shard and pick it with [`partition_key_hash`] and the
/// shards' hash key ranges. Without it, user records with the same key stay
/// in order only within one aggregator's output.
///
/// The KPL sends a batch of one user record as a plain record; this
/// aggregator always returns an aggregate, which consumers de-aggregate the
/// same way.
///
/// ```
/// use streamsift::kinesis::kpl::{Aggregator, deaggregate};
///
/// let mut aggregator = Aggregator::new().max_bytes(100);
/// let mut finished = Vec::new();
/// for i in 0..5 {
///     if let Some(aggregate) = aggregator.add("key", None, &[i; 30])? {
///         finished.push(aggregate);
///     }
/// }
/// finished.extend(aggregator.flush());
/// // 4 + 16 + 3 ("key") + 5 (table) + 2 * 36 (records) = 100 bytes: two per aggregate.
/// assert_eq!(finished.len(), 3);
/// assert!(finished.iter().all(|a| a.size() <= 100));
/// let records = deaggregate(&finished[2].data)?.expect("an aggregate");
/// assert_eq!(&records[0].data[..], &[4; 30]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Aggregator {
    max_bytes: usize,
    max_records: usize,
    /// Index of each partition key in the current table.
    partition_keys: HashMap<String, u64>,
    /// Index of each explicit hash key in the current table.
    hash_keys: HashMap<String, u64>,
    /// Encoded field-1 entries.
    partition_key_table: Vec<u8>,
    /// Encoded field-2 entries.
    hash_key_table: Vec<u8>,
    /// Encoded field-3 entries.
    records: Vec<u8>,
    count: usize,
    outer_partition_key: String,
    outer_hash_key: Option<String>,
}

impl fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregator")
            .field("max_bytes", &self.max_bytes)
            .field("max_records", &self.max_records)
            .field("user_records", &self.count)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new()
    }
}

impl Aggregator {
    /// An empty aggregator with a maximum size of [`MAX_RECORD_BYTES`] and
    /// at most [`DEFAULT_MAX_RECORDS`] user records per aggregate.
    ///
    /// ```
    /// use streamsift::kinesis::kpl::Aggregator;
    /// let aggregator = Aggregator::new();
    /// assert!(aggregator.is_empty());
    /// ```
    pub fn new() -> Self {
        Aggregator {
            max_bytes: MAX_RECORD_BYTES,
            max_records: DEFAULT_MAX_RECORDS,
            partition_keys: HashMap::new(),
            hash_keys: HashMap::new(),
            partition_key_table: Vec::new(),
            hash_key_table: Vec::new(),
            records: Vec::new(),
            count: 0,
            outer_partition_key: String::new(),
            outer_hash_key: None,
        }
    }

    /// Sets the maximum [`Aggregate::size`]. Use the stream's maximum
    /// record size, or less to spread load (the KPL's default is 51,200
    /// bytes). Applies from the next [`add`](Self::add).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets the maximum number of user records per aggregate (at least 1;
    /// 0 is taken as 1). Keep it at or below the consumer's
    /// [`Deaggregator::max_records`].
    pub fn max_records(mut self, records: usize) -> Self {
        self.max_records = records.max(1);
        self
    }

    /// The number of user records in the aggregate being built.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the aggregate being built has no user records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The [`Aggregate::size`] the aggregate being built would have if
    /// finished now; 0 when empty.
    pub fn size(&self) -> usize {
        if self.count == 0 {
            0
        } else {
            MIN_AGGREGATE_LEN + self.body_len() + self.outer_partition_key.len()
        }
    }

    fn body_len(&self) -> usize {
        self.partition_key_table.len() + self.hash_key_table.len() + self.records.len()
    }

    /// Adds a user record.
    ///
    /// Returns `Ok(Some(aggregate))` when the record did not fit in the
    /// aggregate being built: that aggregate is finished and returned, and
    /// the record starts a new one. Returns `Ok(None)` when it was added to
    /// the current one. On error nothing changes.
    pub fn add(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
    ) -> Result<Option<Aggregate>, AggregateError> {
        validate_partition_key(partition_key)?;
        if let Some(key) = explicit_hash_key {
            validate_explicit_hash_key(key)?;
        }

        // Would it fit alone?
        let alone = MIN_AGGREGATE_LEN
            + partition_key.len()
            + table_entry_len(partition_key.len())
            + explicit_hash_key.map_or(0, |k| table_entry_len(k.len()))
            + record_entry_len(0, explicit_hash_key.map(|_| 0), data.len());
        if alone > self.max_bytes {
            return Err(AggregateError::RecordTooLarge {
                data_len: data.len(),
                needed: alone,
                limit: self.max_bytes,
            });
        }

        let finished = if self.count == 0 {
            None
        } else if self.count >= self.max_records
            || self.size() + self.added_len(partition_key, explicit_hash_key, data.len())
                > self.max_bytes
        {
            self.take()
        } else {
            None
        };
        self.push(partition_key, explicit_hash_key, data);
        Ok(finished)
    }

    /// Finishes and returns the aggregate being built, or `None` if it has
    /// no user records. The aggregator is then empty and can be reused.
    pub fn flush(&mut self) -> Option<Aggregate> {
        self.take()
    }

    /// Bytes the record adds to a non-empty aggregate.
    fn added_len(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> usize {
        let mut len = 0;
        let pk_index = match self.partition_keys.get(partition_key) {
            Some(&i) => i,
            None => {
                len += table_entry_len(partition_key.len());
                self.partition_keys.len() as u64
            }
        };
        let hk_index = explicit_hash_key.map(|key| match self.hash_keys.get(key) {
            Some(&i) => i,
            None => {
                len += table_entry_len(key.len());
                self.hash_keys.len() as u64
            }
        });
        len + record_entry_len(pk_index, hk_index, data_len)
    }

    fn push(&mut self, partition_key: &str, explicit_hash_key: Option<&str>, data: &[u8]) {
        if self.count == 0 {
            self.outer_partition_key = partition_key.to_owned();
            self.outer_hash_key = explicit_hash_key.map(str::to_owned);
        }
        let pk_index = intern(
            &mut self.partition_keys,
            &mut self.partition_key_table,
            TAG_PARTITION_KEY_TABLE,
            partition_key,
        );
        let hk_index = explicit_hash_key.map(|key| {
            intern(
                &mut self.hash_keys,
                &mut self.hash_key_table,
                TAG_EXPLICIT_HASH_KEY_TABLE,
                key,
            )
        });
        let inner = record_len(pk_index, hk_index, data.len());
        let buf = &mut self.records;
        buf.push(TAG_RECORDS);
        put_varint(buf, inner as u64);
        buf.push(TAG_PARTITION_KEY_INDEX);
        put_varint(buf, pk_index);
        if let Some(i) = hk_index {
            buf.push(TAG_EXPLICIT_HASH_KEY_INDEX);
            put_varint(buf, i);
        }
        buf.push(TAG_DATA);
        put_varint(buf, data.len() as u64);
        buf.extend_from_slice(data);
        self.count += 1;
    }

    fn take(&mut self) -> Option<Aggregate> {
        if self.count == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(MIN_AGGREGATE_LEN + self.body_len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.partition_key_table);
        out.extend_from_slice(&self.hash_key_table);
        out.extend_from_slice(&self.records);
        let digest = md5(out.get(MAGIC.len()..).unwrap_or_default());
        out.extend_from_slice(&digest);
        let aggregate = Aggregate {
            partition_key: std::mem::take(&mut self.outer_partition_key),
            explicit_hash_key: self.outer_hash_key.take(),
            data: Bytes::from(out),
            user_records: self.count,
        };
        self.partition_keys.clear();
        self.hash_keys.clear();
        self.partition_key_table.clear();
        self.hash_key_table.clear();
        self.records.clear();
        self.count = 0;
        Some(aggregate)
    }
}

/// The index of `key` in a table, adding it (map and encoded entry) if new.
fn intern(map: &mut HashMap<String, u64>, table: &mut Vec<u8>, tag: u8, key: &str) -> u64 {
    if let Some(&i) = map.get(key) {
        return i;
    }
    let i = map.len() as u64;
    map.insert(key.to_owned(), i);
    table.push(tag);
    put_varint(table, key.len() as u64);
    table.extend_from_slice(key.as_bytes());
    i
}

fn validate_partition_key(key: &str) -> Result<(), AggregateError> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(AggregateError::InvalidPartitionKey { chars });
    }
    Ok(())
}

fn validate_explicit_hash_key(key: &str) -> Result<(), AggregateError> {
    let digits = !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit());
    let no_leading_zero = key == "0" || !key.starts_with('0');
    if digits && no_leading_zero && key.parse::<u128>().is_ok() {
        Ok(())
    } else {
        Err(AggregateError::InvalidExplicitHashKey {
            found: key.chars().take(64).collect(),
        })
    }
}

fn varint_len(value: u64) -> usize {
    // 1 byte per 7 bits, at least 1.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// A table entry: tag, length, bytes.
fn table_entry_len(key_len: usize) -> usize {
    1 + varint_len(key_len as u64) + key_len
}

/// The content of a `Record` message.
fn record_len(pk_index: u64, hk_index: Option<u64>, data_len: usize) -> usize {
    1 + varint_len(pk_index)
        + hk_index.map_or(0, |i| 1 + varint_len(i))
        + 1
        + varint_len(data_len as u64)
        + data_len
}

/// A `records` entry: tag, length, `Record` message.
fn record_entry_len(pk_index: u64, hk_index: Option<u64>, data_len: usize) -> usize {
    let inner = record_len(pk_index, hk_index, data_len);
    1 + varint_len(inner as u64) + inner
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_varint(bytes: &[u8]) -> Result<u64, KplError> {
        Reader::new(bytes, 0, bytes.len()).varint("test")
    }

    #[test]
    fn varints_round_trip_and_have_the_predicted_length() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX >> 1,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            assert_eq!(buf.len(), varint_len(value), "length of {value}");
            assert_eq!(read_varint(&buf), Ok(value));
        }
    }

    #[test]
    fn known_varint_encodings() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 300);
        assert_eq!(buf, [0xAC, 0x02]);
        let mut buf = Vec::new();
        put_varint(&mut buf, u64::MAX);
        assert_eq!(
            buf,
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]
        );
    }

    #[test]
    fn varint_over_64_bits_or_10_bytes_is_rejected() {
        // Tenth byte 0x02 would set bit 64.
        let mut too_big = [0xFF; 10];
        too_big[9] = 0x02;
        assert_eq!(
            read_varint(&too_big),
            Err(KplError::VarintOverflow {
                what: "test",
                offset: 0
            })
        );
        // Eleven bytes.
        let mut too_long = [0x80; 11];
        too_long[10] = 0x00;
        assert!(matches!(
            read_varint(&too_long),
            Err(KplError::VarintOverflow { .. })
        ));
    }

    #[test]
    fn truncated_varint_is_an_error() {
        assert_eq!(
            read_varint(&[0x80, 0x80]),
            Err(KplError::Truncated {
                what: "test",
                offset: 0,
                end: 2
            })
        );
        assert!(matches!(read_varint(&[]), Err(KplError::Truncated { .. })));
    }

    #[test]
    fn reader_stays_within_its_end() {
        // A varint that would continue past `end` is truncated even though
        // the buffer has more bytes.
        let buf = [0x80, 0x01, 0x00];
        let mut r = Reader::new(&buf, 0, 1);
        assert!(matches!(r.varint("x"), Err(KplError::Truncated { .. })));
        // A length that fits the buffer but not the message.
        let buf = [0x02, 0xAA, 0xBB];
        let mut r = Reader::new(&buf, 0, 2);
        assert_eq!(
            r.len_delimited("x"),
            Err(KplError::LengthPastEnd {
                what: "x",
                offset: 0,
                len: 2,
                remaining: 1
            })
        );
    }

    #[test]
    fn huge_length_prefix_is_rejected_without_allocating() {
        let mut buf = Vec::new();
        put_varint(&mut buf, u64::MAX);
        let mut r = Reader::new(&buf, 0, buf.len());
        assert!(matches!(
            r.len_delimited("x"),
            Err(KplError::LengthPastEnd { len: u64::MAX, .. })
        ));
    }

    #[test]
    fn field_number_zero_is_an_invalid_tag() {
        let buf = [0x02, 0x00];
        let mut r = Reader::new(&buf, 0, buf.len());
        assert!(matches!(
            r.tag(),
            Err(KplError::InvalidTag { tag: 2, offset: 0 })
        ));
    }

    #[test]
    fn size_arithmetic_matches_the_encoding() {
        let mut a = Aggregator::new();
        let keys = ["a", "bb", "a", "ccc"];
        let hash_keys = [None, Some("12345"), Some("12345"), Some("0")];
        let mut predicted = 0;
        for (i, (pk, hk)) in keys.iter().zip(hash_keys).enumerate() {
            let data = vec![7u8; 100 * i];
            predicted = if a.is_empty() {
                MIN_AGGREGATE_LEN
                    + pk.len()
                    + table_entry_len(pk.len())
                    + hk.map_or(0, |k| table_entry_len(k.len()))
                    + record_entry_len(0, hk.map(|_| 0), data.len())
            } else {
                a.size() + a.added_len(pk, hk, data.len())
            };
            assert_eq!(a.add(pk, hk, &data), Ok(None));
            assert_eq!(a.size(), predicted);
        }
        let aggregate = a.flush().expect("four records");
        assert_eq!(aggregate.size(), predicted);
        assert_eq!(aggregate.user_records, 4);
    }

    #[test]
    fn explicit_hash_key_validation() {
        for ok in ["0", "1", "340282366920938463463374607431768211455"] {
            assert_eq!(validate_explicit_hash_key(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "01",
            "-1",
            "+1",
            "1.0",
            "abc",
            // 2^128
            "340282366920938463463374607431768211456",
        ] {
            assert!(validate_explicit_hash_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xAB, 0x0F, 0xF0]), "00ab0ff0");
    }
}
