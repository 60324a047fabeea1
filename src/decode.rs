//! Decoding: turning a record's bytes into the user's type.
//!
//! Decoding is its own stage. A record that fails to decode goes to the
//! dead-letter sink with a [`DecodeError`] saying why; it never panics or
//! stops the pipeline.

use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::record::Record;

/// Why a record could not be decoded. Decode errors are always permanent:
/// the same bytes will fail the same way again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload was empty.
    #[error("empty payload: expected a non-empty record")]
    Empty,
    /// The payload is larger than the configured limit.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// The payload is not valid UTF-8.
    #[error("payload is not valid UTF-8: invalid byte at offset {valid_up_to}")]
    InvalidUtf8 {
        /// How many leading bytes were valid.
        valid_up_to: usize,
    },
    /// The payload is not valid JSON, or not the JSON the type expects.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    InvalidJson {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What serde expected and found.
        message: String,
    },
    /// A user decoder's own reason.
    #[error("{0}")]
    Invalid(String),
    /// The source could not unpack the record (for example a KPL aggregate
    /// whose checksum does not match); the decoder was not called. The
    /// record's [`defect`](Record::defect) says why.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl DecodeError {
    /// A short, stable name for the kind of failure, used as a metric label
    /// and in dead-letter entries.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
            DecodeError::InvalidJson { .. } => "invalid_json",
            DecodeError::Invalid(_) => "invalid",
            DecodeError::Corrupt(_) => "corrupt",
        }
    }
}

/// Turns a [`Record`] into an item of type `T`.
///
/// Implemented by [`Json`], [`Utf8`], [`RawBytes`], [`PassThrough`] and by
/// any `Fn(&Record) -> Result<T, DecodeError>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Decoder of `{T}`",
    label = "not a decoder of `{T}`",
    note = "set the decoder with `.json::<{T}>()`, `.decode(Utf8)` or `.decode(|r: &Record| -> Result<{T}, DecodeError> {{ .. }})`; `()` means neither `.decode(..)` nor `.json()` was called"
)]
pub trait Decoder<T>: Send + Sync {
    /// Decodes one record.
    fn decode(&self, record: &Record) -> Result<T, DecodeError>;
}

impl<T, F> Decoder<T> for F
where
    F: Fn(&Record) -> Result<T, DecodeError> + Send + Sync,
{
    fn decode(&self, record: &Record) -> Result<T, DecodeError> {
        self(record)
    }
}

/// Decodes the payload as JSON with serde. The default decoder.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// A JSON decoder for `T`.
    ///
    /// ```
    /// use streamsift::{Decoder, Json, Record, Sequence, ShardId};
    /// #[derive(serde::Deserialize)]
    /// struct Msg { text: String }
    /// let r = Record::new(ShardId::new("s"), Sequence::from_offset(0), "k", &br#"{"text":"hi"}"#[..]);
    /// let msg: Msg = Json::new().decode(&r).unwrap();
    /// assert_eq!(msg.text, "hi");
    /// ```
    pub fn new() -> Self {
        Json(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Json::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Json::new()
    }
}

impl<T> fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

impl<T: DeserializeOwned> Decoder<T> for Json<T> {
    fn decode(&self, record: &Record) -> Result<T, DecodeError> {
        let bytes = &record.payload[..];
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        // Check UTF-8 first so the error says what is really wrong.
        if let Err(e) = std::str::from_utf8(bytes) {
            return Err(DecodeError::InvalidUtf8 {
                valid_up_to: e.valid_up_to(),
            });
        }
        serde_json::from_slice(bytes).map_err(|e| {
            // serde_json's message ends with its own position; we report
            // the position in separate fields.
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
            DecodeError::InvalidJson {
                line: e.line(),
                column: e.column(),
                message,
            }
        })
    }
}

/// Decodes the payload as UTF-8 text.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8;

impl Decoder<String> for Utf8 {
    fn decode(&self, record: &Record) -> Result<String, DecodeError> {
        if record.payload.is_empty() {
            return Err(DecodeError::Empty);
        }
        std::str::from_utf8(&record.payload)
            .map(str::to_owned)
            .map_err(|e| DecodeError::InvalidUtf8 {
                valid_up_to: e.valid_up_to(),
            })
    }
}

/// Hands over the payload bytes as they are (no copy).
#[derive(Clone, Copy, Debug, Default)]
pub struct RawBytes;

impl Decoder<Bytes> for RawBytes {
    fn decode(&self, record: &Record) -> Result<Bytes, DecodeError> {
        Ok(record.payload.clone())
    }
}

/// Hands over the whole record (a cheap clone: the payload is shared).
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThrough;

impl Decoder<Record> for PassThrough {
    fn decode(&self, record: &Record) -> Result<Record, DecodeError> {
        Ok(record.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Sequence, ShardId};

    fn rec(payload: &'static [u8]) -> Record {
        Record::new(ShardId::new("s"), Sequence::from_offset(1), "k", payload)
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Msg {
        text: String,
    }

    #[test]
    fn json_errors_are_typed() {
        let d = Json::<Msg>::new();
        assert_eq!(d.decode(&rec(b"")), Err(DecodeError::Empty));
        assert_eq!(
            d.decode(&rec(b"{\"text\":\"\xff\"}")),
            Err(DecodeError::InvalidUtf8 { valid_up_to: 9 })
        );
        match d.decode(&rec(b"{\"text\": 1}")) {
            Err(DecodeError::InvalidJson {
                line: 1, message, ..
            }) => {
                assert!(message.contains("expected a string"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            d.decode(&rec(b"{\"text\":\"ok\"}")),
            Ok(Msg { text: "ok".into() })
        );
    }

    #[test]
    fn closures_are_decoders() {
        let upper = |r: &Record| -> Result<String, DecodeError> {
            Utf8.decode(r).map(|s| s.to_uppercase())
        };
        assert_eq!(upper.decode(&rec(b"abc")).unwrap(), "ABC");
        assert_eq!(
            Utf8.decode(&rec(b"a\xffb")),
            Err(DecodeError::InvalidUtf8 { valid_up_to: 1 })
        );
    }
}
