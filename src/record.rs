//! The record model: what a [`Source`](crate::Source) yields and what a
//! checkpoint points at.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The name of a shard or partition, cheap to clone (shared, not copied).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(Arc<str>);

impl ShardId {
    /// Creates a shard id.
    ///
    /// ```
    /// let shard = streamsift::ShardId::new("shardId-000000000000");
    /// assert_eq!(shard.as_str(), "shardId-000000000000");
    /// ```
    pub fn new(id: impl AsRef<str>) -> Self {
        ShardId(Arc::from(id.as_ref()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ShardId {
    fn from(s: &str) -> Self {
        ShardId::new(s)
    }
}

/// A record's position within its shard: a sequence number or offset, and an
/// optional sub-sequence for records unpacked from an aggregate (KPL).
///
/// Sequence numbers are opaque text: Kinesis uses decimal strings of up to
/// 129 digits, which no integer type holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sequence {
    /// The sequence number or offset, as the source gave it.
    pub number: String,
    /// The position of a user record inside an aggregated record, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_sequence: Option<u64>,
}

impl Sequence {
    /// A plain sequence number.
    pub fn new(number: impl Into<String>) -> Self {
        Sequence {
            number: number.into(),
            sub_sequence: None,
        }
    }

    /// A sequence number from an integer offset.
    pub fn from_offset(offset: u64) -> Self {
        Sequence::new(offset.to_string())
    }

    /// A user record inside an aggregated record.
    pub fn with_sub_sequence(number: impl Into<String>, sub: u64) -> Self {
        Sequence {
            number: number.into(),
            sub_sequence: Some(sub),
        }
    }
}

impl Sequence {
    /// Compares two positions as a stream orders them: sequence numbers as
    /// unbounded decimal integers (never as fixed-width text: emulators use
    /// small numbers, AWS uses 56 digits), then sub-sequence, where a plain
    /// sequence number comes after all of its sub-records (it stands for the
    /// whole aggregate). Numbers that are not decimal compare as text.
    ///
    /// ```
    /// use std::cmp::Ordering;
    /// use streamsift::Sequence;
    /// assert_eq!(Sequence::new("9").cmp_position(&Sequence::new("10")), Ordering::Less);
    /// assert_eq!(
    ///     Sequence::with_sub_sequence("10", 3).cmp_position(&Sequence::new("10")),
    ///     Ordering::Less
    /// );
    /// ```
    pub fn cmp_position(&self, other: &Sequence) -> std::cmp::Ordering {
        compare_sequence_numbers(&self.number, &other.number).then_with(|| {
            match (self.sub_sequence, other.sub_sequence) {
                (Some(a), Some(b)) => a.cmp(&b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
        })
    }
}

/// Compares two sequence numbers as unbounded decimal integers; text that is
/// not all ASCII digits compares as text (after any decimal number).
pub fn compare_sequence_numbers(a: &str, b: &str) -> std::cmp::Ordering {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    match (digits(a), digits(b)) {
        (true, true) => {
            let a = a.trim_start_matches('0');
            let b = b.trim_start_matches('0');
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        }
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sub_sequence {
            Some(sub) => write!(f, "{}/{}", self.number, sub),
            None => f.write_str(&self.number),
        }
    }
}

/// One record from a stream.
///
/// The payload is kept as raw bytes; turning it into a user type is the job of
/// a [`Decoder`](crate::Decoder), a separate stage whose failures are
/// dead-lettered rather than fatal.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// A stable id given by the source (for Kinesis, shard and sequence).
    /// Redelivery after a crash carries the same id.
    pub id: String,
    /// The partition key the producer chose.
    pub partition_key: String,
    /// The shard or partition the record came from.
    pub shard: ShardId,
    /// Its position in the shard.
    pub sequence: Sequence,
    /// The payload, untouched.
    pub payload: Bytes,
    /// When the record arrived at the stream (Kinesis'
    /// `ApproximateArrivalTimestamp`), or when the source read it.
    pub arrival: SystemTime,
    /// Set by a source that could not unpack the record, such as a KPL
    /// aggregate that fails its checksum. The pipeline dead-letters such a
    /// record at the decode stage with this reason ([`DecodeError::Corrupt`](crate::DecodeError::Corrupt))
    /// and moves on; the raw payload is kept for inspection.
    pub defect: Option<Arc<str>>,
}

impl Record {
    /// Builds a record; `id` defaults to `"{shard}:{sequence}"`.
    ///
    /// ```
    /// use streamsift::{Record, Sequence, ShardId};
    /// let r = Record::new(ShardId::new("s0"), Sequence::from_offset(7), "key", &b"{}"[..]);
    /// assert_eq!(r.id, "s0:7");
    /// ```
    pub fn new(
        shard: ShardId,
        sequence: Sequence,
        partition_key: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        Record {
            id: format!("{shard}:{sequence}"),
            partition_key: partition_key.into(),
            shard,
            sequence,
            payload: payload.into(),
            arrival: SystemTime::now(),
            defect: None,
        }
    }
}

impl fmt::Debug for Record {
    // The payload is customer text; show its size, not its content, so that
    // logs of records do not leak it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("partition_key", &self.partition_key)
            .field("shard", &self.shard)
            .field("sequence", &self.sequence)
            .field("payload_len", &self.payload.len())
            .field("arrival", &self.arrival)
            .field("defect", &self.defect)
            .finish()
    }
}

/// Where a shard's processing has got to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// Every record up to and including this one is done.
    Sequence(Sequence),
    /// The shard is closed and every record in it is done (`SHARD_END`).
    ShardEnd,
}

/// A checkpoint the pipeline commits back to its source.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The shard.
    pub shard: ShardId,
    /// How far it is done.
    pub position: Position,
}

/// A batch of records from one shard, in shard order.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The shard the records came from. Every record in the batch belongs to it.
    pub shard: ShardId,
    /// The records, oldest first.
    pub records: Vec<Record>,
    /// True when the shard is closed and this is its last batch. The
    /// pipeline then commits [`Position::ShardEnd`] once every record of the
    /// shard is done.
    pub shard_end: bool,
    /// How far behind the tip of the stream the reader is, if known.
    pub millis_behind: Option<u64>,
}

impl Batch {
    /// A batch of records from one shard.
    pub fn new(shard: ShardId, records: Vec<Record>) -> Self {
        Batch {
            shard,
            records,
            shard_end: false,
            millis_behind: None,
        }
    }
}
