//! HMAC-SHA256 request signing, and the check a receiver makes.
//!
//! # The scheme
//!
//! When a signing secret is set ([`HttpRouterBuilder::signing_secret`](super::HttpRouterBuilder::signing_secret)),
//! every request carries the header
//!
//! ```text
//! X-Streamsift-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
//! ```
//!
//! where the MAC is computed with the shared secret over the bytes
//! `"<t>.<body>"`: the timestamp as decimal ASCII, one `.`, then the request
//! body exactly as sent. This is the shape Stripe's webhooks use (GitHub
//! signs the body alone, without a timestamp); the timestamp lets the
//! receiver refuse a replayed request outside a tolerance window. Each
//! attempt (retries included) is signed with its own timestamp.
//!
//! A receiver checks it with [`verify`]: it parses the header, refuses a
//! timestamp outside the window, and compares the MAC in constant time
//! (the `hmac` crate's `verify_slice`). Several `v1=` entries are allowed
//! (any one matching passes), so a sender can rotate secrets.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Streamsift-Signature";

type HmacSha256 = Hmac<Sha256>;

/// Signs request bodies with a shared secret. Its `Debug` shows no secret.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl Signer {
    /// A signer with `secret` (any bytes; 32 random bytes is a good choice).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Signer {
            secret: secret.into(),
        }
    }

    /// The header value for `body` sent at `at`:
    /// `t=<unix seconds>,v1=<hex>`.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use streamsift::http::sign::{Signer, verify};
    ///
    /// let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let header = Signer::new("s3cret").sign(at, br#"{"text":"hi"}"#);
    /// assert!(header.starts_with("t=1700000000,v1="));
    /// assert!(verify(b"s3cret", &header, br#"{"text":"hi"}"#, at, Duration::from_secs(300)).is_ok());
    /// ```
    pub fn sign(&self, at: SystemTime, body: &[u8]) -> String {
        let t = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mac = mac_for(&self.secret, t, body);
        let bytes = mac.finalize().into_bytes();
        format!("t={t},v1={}", to_hex(&bytes))
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer { secret: <redacted> }")
    }
}

fn mac_for(secret: &[u8], t: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why [`verify`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The header is not `t=<unix seconds>,v1=<hex>`.
    #[error(
        "expected a signature header of the form t=<unix seconds>,v1=<hex>, found a malformed one"
    )]
    Malformed,
    /// The timestamp is further from now than the tolerance: a replay, or
    /// a clock that is off.
    #[error(
        "the signature's timestamp is {age:?} away from now, more than the {tolerance:?} allowed: \
         refuse it (a replay), or check both clocks"
    )]
    OutsideTolerance {
        /// How far the timestamp is from `now`.
        age: Duration,
        /// The window allowed.
        tolerance: Duration,
    },
    /// No `v1` MAC matches the body with this secret.
    #[error("the signature does not match the body: a different secret, or a changed body")]
    Mismatch,
}

/// Checks a request's [`SIGNATURE_HEADER`] value against its raw body, for
/// receivers: the timestamp must be within `tolerance` of `now` (either
/// side), and one `v1` MAC must match, compared in constant time.
///
/// Pass the body bytes exactly as received, before any JSON parsing.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use streamsift::http::sign::{Signer, VerifyError, verify};
///
/// let now = SystemTime::now();
/// let header = Signer::new("s3cret").sign(now, b"{}");
/// let window = Duration::from_secs(300);
/// assert_eq!(verify(b"s3cret", &header, b"{}", now, window), Ok(()));
/// assert_eq!(verify(b"other", &header, b"{}", now, window), Err(VerifyError::Mismatch));
/// let later = now + Duration::from_secs(3600);
/// assert!(matches!(
///     verify(b"s3cret", &header, b"{}", later, window),
///     Err(VerifyError::OutsideTolerance { .. })
/// ));
/// ```
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let mut t = None;
    let mut macs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<u64>().map_err(|_| VerifyError::Malformed)?),
            Some(("v1", v)) => macs.push(from_hex(v).ok_or(VerifyError::Malformed)?),
            Some(_) => {} // other schemes: ignored, as receivers of Stripe's do
            None => return Err(VerifyError::Malformed),
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if macs.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let sent = UNIX_EPOCH + Duration::from_secs(t);
    let age = now
        .duration_since(sent)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if age > tolerance {
        return Err(VerifyError::OutsideTolerance { age, tolerance });
    }
    let expected = mac_for(secret, t, body);
    if macs
        .iter()
        .any(|mac| expected.clone().verify_slice(mac).is_ok())
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_vector() {
        // HMAC-SHA256(key = "key", "The quick brown fox jumps over the lazy
        // dog"), the widely published test value: the MAC and hex are right.
        let mut mac = HmacSha256::new_from_slice(b"key").expect("key");
        mac.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            to_hex(&mac.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn the_mac_covers_timestamp_dot_body() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut mac = HmacSha256::new_from_slice(b"k").expect("key");
        mac.update(b"1700000000.body");
        let want = format!("t=1700000000,v1={}", to_hex(&mac.finalize().into_bytes()));
        assert_eq!(Signer::new("k").sign(at, b"body"), want);
    }

    #[test]
    fn a_changed_body_or_a_malformed_header_is_refused() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let header = Signer::new("k").sign(at, b"body");
        let w = Duration::from_secs(60);
        assert_eq!(verify(b"k", &header, b"body", at, w), Ok(()));
        assert_eq!(
            verify(b"k", &header, b"bodY", at, w),
            Err(VerifyError::Mismatch)
        );
        // The timestamp is signed too: moving it breaks the MAC.
        let moved = header.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(b"k", &moved, b"body", at, w),
            Err(VerifyError::Mismatch)
        );
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=0g", "garbage"] {
            assert_eq!(
                verify(b"k", bad, b"body", at, w),
                Err(VerifyError::Malformed),
                "{bad}"
            );
        }
        // A rotated secret: either MAC passes.
        let old = Signer::new("old").sign(at, b"body");
        let both = format!("{header},{}", old.split(',').nth(1).expect("v1"));
        assert_eq!(verify(b"old", &both, b"body", at, w), Ok(()));
        assert_eq!(
            format!("{:?}", Signer::new("hunter2")),
            "Signer { secret: <redacted> }"
        );
    }
}
