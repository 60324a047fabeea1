//! What one SNS message is made of, and the SNS rules it must follow: the
//! subject, the size limit, message attributes, and FIFO ids. Pure
//! functions, unit-tested here.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Most bytes SNS accepts in one message, message attributes included:
/// 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// Most bytes SNS accepts in one PublishBatch call, all entries together.
pub const MAX_BATCH_BYTES: usize = 262_144;
/// Most entries SNS accepts in one PublishBatch call.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Most characters in a subject.
pub const MAX_SUBJECT_CHARS: usize = 100;
/// Most characters in a FIFO `MessageGroupId` or `MessageDeduplicationId`.
pub const MAX_FIFO_ID_CHARS: usize = 128;

/// The marker appended to a truncated message, before the byte count.
const MARKER_HEAD: &str = "… [truncated ";
const MARKER_TAIL: &str = " bytes]";

/// Makes `subject` acceptable to SNS, or `None` when nothing is left.
///
/// SNS requires ASCII text with no line breaks or control characters,
/// starting with a letter, digit or punctuation mark, of at most
/// [`MAX_SUBJECT_CHARS`] characters. The rule:
///
/// 1. Unicode compatibility decomposition (NFKD), then combining marks are
///    dropped, so `é` becomes `e` and `ﬁ` becomes `fi`.
/// 2. Whitespace and control characters (line breaks, tabs) become spaces;
///    runs of spaces become one space; leading and trailing spaces go.
/// 3. Any other character outside printable ASCII (emoji, CJK) becomes `?`.
/// 4. A result longer than 100 characters is cut to its first 97, trailing
///    spaces removed, and `...` appended.
///
/// ```
/// use streamsift::sns::sanitize_subject;
/// assert_eq!(sanitize_subject("Café\nopen 🎉").as_deref(), Some("Cafe open ?"));
/// assert_eq!(sanitize_subject(" \t\n").as_deref(), None);
/// assert_eq!(sanitize_subject(&"x".repeat(150)).map(|s| s.len()), Some(100));
/// ```
pub fn sanitize_subject(subject: &str) -> Option<String> {
    let mut out = String::with_capacity(subject.len().min(MAX_SUBJECT_CHARS + 3));
    let mut space = false;
    for c in subject.nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(if c.is_ascii_graphic() { c } else { '?' });
        if out.len() > MAX_SUBJECT_CHARS {
            break;
        }
    }
    if out.is_empty() {
        return None;
    }
    if out.len() > MAX_SUBJECT_CHARS {
        out.truncate(MAX_SUBJECT_CHARS - 3);
        let kept = out.trim_end().len();
        out.truncate(kept);
        out.push_str("...");
    }
    Some(out)
}

/// Cuts `message` to at most `max_bytes` bytes, marking the cut.
///
/// A message that fits is returned as is. Otherwise it is cut at the last
/// UTF-8 character boundary that leaves room for the marker
/// `… [truncated N bytes]`, where N is the number of bytes removed, and the
/// marker is appended; the result is at most `max_bytes` bytes. Returns
/// `None` when `max_bytes` cannot hold even the marker.
///
/// ```
/// use streamsift::sns::truncate_message;
/// assert_eq!(truncate_message("short", 10).as_deref(), Some("short"));
/// let long = "é".repeat(40); // 80 bytes
/// let cut = truncate_message(&long, 40).unwrap();
/// assert_eq!(cut, "éééééééé… [truncated 64 bytes]");
/// assert!(cut.len() <= 40);
/// ```
pub fn truncate_message(message: &str, max_bytes: usize) -> Option<Cow<'_, str>> {
    if message.len() <= max_bytes {
        return Some(Cow::Borrowed(message));
    }
    // The marker's length depends on N; N is at most the message length, so
    // reserve room for that many digits.
    let digits = message.len().to_string().len();
    let reserve = MARKER_HEAD.len() + digits + MARKER_TAIL.len();
    let room = max_bytes.checked_sub(reserve)?;
    let mut keep = room.min(message.len());
    while !message.is_char_boundary(keep) {
        keep -= 1;
    }
    let removed = message.len() - keep;
    let mut out = String::with_capacity(keep + reserve);
    out.push_str(&message[..keep]);
    out.push_str(MARKER_HEAD);
    out.push_str(&removed.to_string());
    out.push_str(MARKER_TAIL);
    Some(Cow::Owned(out))
}

/// Whether `c` may appear in a FIFO group or deduplication id: ASCII
/// letters, digits and punctuation.
fn fifo_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c.is_ascii_punctuation()
}

/// 128-bit FNV-1a: stable across versions and platforms, so an id hashed
/// today matches one hashed after a restart.
fn fnv1a_128(s: &str) -> u128 {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in s.as_bytes() {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    h
}

/// Turns any text into a valid FIFO `MessageGroupId` or
/// `MessageDeduplicationId` (1 to 128 ASCII letters, digits and
/// punctuation).
///
/// Text that is already valid is kept as is, so ids stay readable (Kinesis
/// record ids, `shardId-…:495…`, are). Anything else, empty, too long, or
/// with other characters, becomes its first 80 valid characters (others
/// dropped), then `~`, then the 32 hex digits of the 128-bit FNV-1a hash of
/// the whole original text, which keeps distinct inputs distinct. The rule
/// is deterministic, so a redelivered record gets the same id.
///
/// ```
/// use streamsift::sns::fifo_id;
/// assert_eq!(fifo_id("shardId-000000000000:4959"), "shardId-000000000000:4959");
/// let hashed = fifo_id("naïve id");
/// assert!(hashed.starts_with("naveid~") && hashed.len() == 7 + 32);
/// assert_eq!(fifo_id(&"x".repeat(300)).len(), 80 + 1 + 32);
/// ```
pub fn fifo_id(raw: &str) -> String {
    let len = raw.chars().count();
    if (1..=MAX_FIFO_ID_CHARS).contains(&len) && raw.chars().all(fifo_char) {
        return raw.to_owned();
    }
    let mut out: String = raw.chars().filter(|c| fifo_char(*c)).take(80).collect();
    out.push('~');
    out.push_str(&format!("{:032x}", fnv1a_128(raw)));
    out
}

/// One message attribute: a name, an SNS data type (`String` or
/// `Number`), and a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Attribute {
    pub(crate) name: &'static str,
    pub(crate) data_type: &'static str,
    pub(crate) value: String,
}

impl Attribute {
    /// Bytes SNS counts for it: name, data type and value.
    pub(crate) fn size(&self) -> usize {
        self.name.len() + self.data_type.len() + self.value.len()
    }
}

/// A message ready to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) message: String,
    pub(crate) subject: Option<String>,
    pub(crate) attributes: Vec<Attribute>,
    pub(crate) group_id: Option<String>,
    pub(crate) dedup_id: Option<String>,
    /// Whether the message was cut to fit.
    pub(crate) truncated: bool,
}

impl Outgoing {
    /// The bytes this message adds to a request: message, subject and
    /// attributes (a conservative reading of the SNS limit, which counts
    /// message and attributes).
    pub(crate) fn size(&self) -> usize {
        self.message.len()
            + self.subject.as_ref().map_or(0, String::len)
            + self.attributes.iter().map(Attribute::size).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_ascii_single_line_and_short() {
        assert_eq!(
            sanitize_subject("  Ünïcode\r\n\tline ✈ two  ").as_deref(),
            Some("Unicode line ? two")
        );
        assert_eq!(sanitize_subject("ﬁle №5").as_deref(), Some("file No5"));
        let long = format!("{} {}", "x".repeat(96), "y".repeat(10));
        let cut = sanitize_subject(&long).unwrap();
        assert_eq!(
            cut,
            format!("{}...", "x".repeat(96)),
            "97 chars, trailing space removed"
        );
        let exact = "y".repeat(100);
        assert_eq!(sanitize_subject(&exact).as_deref(), Some(exact.as_str()));
        let over = "y".repeat(101);
        assert_eq!(
            sanitize_subject(&over),
            Some(format!("{}...", "y".repeat(97)))
        );
        for s in [cut, sanitize_subject("日本語\u{0}\u{7f}x").unwrap()] {
            assert!(s.len() <= MAX_SUBJECT_CHARS);
            assert!(s.chars().all(|c| c == ' ' || c.is_ascii_graphic()), "{s:?}");
        }
    }

    #[test]
    fn truncation_cuts_at_a_char_boundary_and_counts_removed_bytes() {
        let msg = "ab€".repeat(1000); // 5 bytes per repeat
        for max in [30, 31, 32, 33, 100, 4999] {
            let cut = truncate_message(&msg, max).unwrap();
            assert!(cut.len() <= max, "{} > {max}", cut.len());
            let (kept, marker) = cut.split_once("… [truncated ").unwrap();
            let n: usize = marker.trim_end_matches(" bytes]").parse().unwrap();
            assert_eq!(kept.len() + n, msg.len(), "N counts the bytes removed");
            assert!(msg.starts_with(kept));
        }
        assert_eq!(truncate_message(&msg, 5000).unwrap().len(), 5000);
        assert_eq!(truncate_message(&msg, 10), None);
    }

    #[test]
    fn fifo_ids_keep_valid_text_and_hash_the_rest() {
        let valid = "s0:49590338271490256608559692538361571095921575989136588898/3";
        assert_eq!(fifo_id(valid), valid);
        assert_ne!(
            fifo_id("a b"),
            fifo_id("a  b"),
            "distinct inputs stay distinct"
        );
        assert_eq!(fifo_id("a b"), fifo_id("a b"), "deterministic");
        let empty = fifo_id("");
        assert_eq!(empty.len(), 33);
        for id in [fifo_id("é"), fifo_id(&"z".repeat(129)), empty] {
            assert!((1..=MAX_FIFO_ID_CHARS).contains(&id.chars().count()));
            assert!(id.chars().all(fifo_char), "{id}");
        }
        // A stable hash (FNV-1a 128 test vectors): these must not change
        // between versions, or redelivered records would no longer be
        // deduplicated.
        assert_eq!(fnv1a_128(""), 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d);
        assert_eq!(fnv1a_128("a"), 0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964);
        assert_eq!(fifo_id(""), "~6c62272e07bb014262b821756295c58d");
    }
}
