//! Small internal helpers.

/// SplitMix64: a tiny, fast, seedable generator. Deterministic under a seed,
/// which is what jitter and fault injection need; not for cryptography.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform float in `[0, 1)` from a hash of `(seed, a, b)`.
pub(crate) fn unit_f64(seed: u64, a: u64, b: u64) -> f64 {
    let h = splitmix64(seed ^ splitmix64(a ^ splitmix64(b)));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A seedable sequential generator over SplitMix64.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }

    /// Used by the fakes (feature `test-util`).
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A stable 64-bit hash of a string (FNV-1a), for deterministic choices
/// keyed by record ids.
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// How a JSON value's type reads in an error message ("a string", ...).
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Follows a path of object keys and array indices (`user`, `followers_count`
/// or `tags`, `0`) into a JSON value; `None` where a step is missing.
pub(crate) fn json_path<S: AsRef<str>>(
    root: &serde_json::Value,
    segments: impl IntoIterator<Item = S>,
) -> Option<&serde_json::Value> {
    use serde_json::Value;
    let mut at = root;
    for segment in segments {
        let segment = segment.as_ref();
        at = match at {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}
