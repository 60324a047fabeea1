//! A small deterministic PRNG (SplitMix64) and a hash for fault decisions.

/// One SplitMix64 step: a well-mixed 64-bit value from `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, for hashing names into fault decisions and the trace.
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A uniform float in `[0, 1)` from a tuple of keys: the same keys give the
/// same draw, whatever else happened before (so a fault decision does not
/// depend on how many other decisions were made).
pub fn unit(seed: u64, keys: &[u64]) -> f64 {
    let mut h = mix(seed);
    for k in keys {
        h = mix(h ^ *k);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A sequential SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(mix(seed ^ 0x51u64))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// A probability that is 0 for about half the seeds ("swarm testing":
    /// each seed turns on a different subset of faults) and up to `max`
    /// otherwise.
    pub fn swarm(&mut self, max: f64) -> f64 {
        if self.chance(0.5) {
            0.0
        } else {
            self.f64() * max
        }
    }
}
