//! The access token: random, compared in constant time, never printed by
//! `Debug`.

use std::fmt;

use super::LabelUiError;

/// The secret that every API call of the labeling page must carry, drawn
/// from the operating system's random number generator (32 bytes, shown as
/// 64 hex digits).
///
/// Its `Debug` output is redacted; read it with [`expose`](Self::expose)
/// only to hand it to the person labeling.
#[derive(Clone)]
pub struct AccessToken(String);

impl AccessToken {
    /// A fresh token from the OS random number generator.
    pub(crate) fn generate() -> Result<AccessToken, LabelUiError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| LabelUiError::Random(e.to_string()))?;
        let mut hex = String::with_capacity(64);
        for b in bytes {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Ok(AccessToken(hex))
    }

    /// The token's text. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token. The time taken depends only on the
    /// lengths, not on where the first differing byte is.
    pub(crate) fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        if candidate.len() != expected.len() {
            return false;
        }
        let diff = expected
            .iter()
            .zip(candidate)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_redacted() {
        let a = AccessToken::generate().unwrap();
        let b = AccessToken::generate().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(a.matches(a.expose().as_bytes()));
        assert!(!a.matches(b.expose().as_bytes()));
        assert!(!a.matches(&a.expose().as_bytes()[..63]));
        assert!(!a.matches(b""));
    }
}
