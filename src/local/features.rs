//! The hashing featurizer: one code path for training and serving.
//!
//! A [`Featurizer`] turns a [`Document`] into a sparse vector of
//! [`Feature`]s: word unigrams, orthogonal sparse bigrams (pairs of tokens
//! up to `osb` apart, the gap encoded), optional character n-grams inside
//! words, derived text flags, the document's boolean fields, and its numeric
//! fields binned at quantiles learnt from the training data. Each feature is
//! hashed (a stable hash written here, part of the model-file format) into one
//! of `2^bits` buckets with a sign taken from another bit of the hash, so
//! collisions cancel on average and there is no vocabulary to grow.
//!
//! The configuration ([`FeaturizerConfig`]) is stored in the model file, so
//! the model is always served with the featurizer it was trained with.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::doc::Document;
use super::text::{TokenBuf, TokenKind, Tokenizer, TokenizerConfig};

/// Character n-grams inside words (each word padded with a boundary mark).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CharNgrams {
    /// Shortest n-gram, in characters (at least 1).
    pub min: usize,
    /// Longest n-gram, in characters (at most 10).
    pub max: usize,
    /// The value of each n-gram feature before normalisation (word features
    /// have 1), so many n-grams do not drown the word features.
    pub weight: f32,
}

/// How a feature vector is scaled after hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// Divide by the Euclidean norm of the emitted feature occurrences (like
    /// tf-idf's `l2`, but computed before equal features are summed, which
    /// saves a sort per text): long and short texts weigh about the same.
    L2,
    /// Raw counts.
    None,
}

/// A numeric field of the document, binned at quantiles of the training
/// data (like Amazon ML's `quantile_bin`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NumericField {
    /// The field's name, as passed to [`Document::number`].
    pub name: String,
    /// How many bins to learn (2..=1000).
    pub bins: usize,
    /// The learnt bin edges, increasing; value `x` falls in bin
    /// `#edges <= x`. Empty until [`Featurizer::fit`] learns them.
    #[serde(default)]
    pub edges: Vec<f64>,
}

impl NumericField {
    /// A field to bin into `bins` quantile bins, edges not yet learnt.
    pub fn new(name: impl Into<String>, bins: usize) -> Self {
        NumericField {
            name: name.into(),
            bins,
            edges: Vec::new(),
        }
    }
}

/// What the featurizer emits. Stored in the model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeaturizerConfig {
    /// Hash into `2^bits` buckets (4..=26).
    pub bits: u8,
    /// Seed of the feature hash.
    pub seed: u64,
    /// How text is split into tokens.
    pub tokenizer: TokenizerConfig,
    /// Emit each token.
    pub unigrams: bool,
    /// Emit adjacent token pairs (the same features as OSB with gap 1).
    pub bigrams: bool,
    /// Orthogonal sparse bigrams: pair each token with each of the next
    /// `osb` tokens, the gap encoded in the feature. 0 turns them off.
    pub osb: usize,
    /// Character n-grams inside words, if any.
    pub char_ngrams: Option<CharNgrams>,
    /// Emit derived text flags: has a question mark, an exclamation mark, a
    /// URL, an `@`, starts with `@`, has a `#`, an emoji or emoticon, a
    /// digit, and a length bucket. URLs, emoji and emoticons count even when
    /// the tokenizer drops them.
    pub text_flags: bool,
    /// Boolean fields of the document to use (see [`Document::flag`]).
    pub flags: Vec<String>,
    /// Numeric fields of the document to bin (see [`Document::number`]).
    pub numbers: Vec<NumericField>,
    /// Scaling of the final vector.
    pub norm: Norm,
}

impl Default for FeaturizerConfig {
    /// The defaults chosen by 5-fold cross-validation (the `tune` and
    /// `airline_cv` tests in `tests/local_model.rs`): 2^20 buckets,
    /// unigrams, adjacent pairs (OSB gap 1), character 3..5-grams weighted
    /// 0.15, text flags, L2 norm. On the bundled tweets this scored as the
    /// earlier defaults (gap 2, 2..5-grams at 0.1) did, within noise; on a
    /// larger external set of airline tweets (cross-validated on its
    /// training split only) it scored higher, and it emits about a third
    /// fewer features, so it is faster.
    fn default() -> Self {
        FeaturizerConfig {
            bits: 20,
            seed: 0,
            tokenizer: TokenizerConfig::default(),
            unigrams: true,
            bigrams: true,
            osb: 1,
            char_ngrams: Some(CharNgrams {
                min: 3,
                max: 5,
                weight: 0.15,
            }),
            text_flags: true,
            flags: Vec::new(),
            numbers: Vec::new(),
            norm: Norm::L2,
        }
    }
}

/// An invalid featurizer configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// `bits` is out of range.
    #[error(
        "featurizer bits must be in 4..=26, found {found}: pick a table size 2^bits in that range"
    )]
    Bits {
        /// The value found.
        found: u8,
    },
    /// `osb` is too large.
    #[error("featurizer osb gap must be at most 16, found {found}")]
    Osb {
        /// The value found.
        found: usize,
    },
    /// Character n-gram lengths are out of range.
    #[error(
        "character n-grams need 1 <= min <= max <= 10 and a finite weight, found min {min}, max {max}, weight {weight}"
    )]
    CharNgrams {
        /// `min` found.
        min: usize,
        /// `max` found.
        max: usize,
        /// `weight` found.
        weight: f32,
    },
    /// A numeric field's bins or edges are invalid.
    #[error(
        "numeric field {name:?}: {problem}; bins must be in 2..=1000 and edges finite and strictly increasing"
    )]
    Numeric {
        /// The field.
        name: String,
        /// What is wrong.
        problem: String,
    },
}

impl FeaturizerConfig {
    /// Checks the ranges of every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(4..=26).contains(&self.bits) {
            return Err(ConfigError::Bits { found: self.bits });
        }
        if self.osb > 16 {
            return Err(ConfigError::Osb { found: self.osb });
        }
        if let Some(c) = &self.char_ngrams
            && (c.min < 1 || c.min > c.max || c.max > MAX_CHAR_NGRAM || !c.weight.is_finite())
        {
            return Err(ConfigError::CharNgrams {
                min: c.min,
                max: c.max,
                weight: c.weight,
            });
        }
        for field in &self.numbers {
            let problem = if !(2..=1000).contains(&field.bins) {
                Some(format!("bins is {}", field.bins))
            } else if field.edges.len() >= field.bins {
                Some(format!(
                    "{} edges for {} bins",
                    field.edges.len(),
                    field.bins
                ))
            } else if field.edges.iter().any(|e| !e.is_finite())
                || field.edges.windows(2).any(|w| w[0] >= w[1])
            {
                Some("edges are not finite and strictly increasing".to_string())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ConfigError::Numeric {
                    name: field.name.clone(),
                    problem,
                });
            }
        }
        Ok(())
    }
}

/// One hashed feature: a bucket and a signed value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Feature {
    /// The bucket, below `2^bits`.
    pub index: u32,
    /// The value, its sign from the hash.
    pub value: f32,
}

/// Reusable scratch space for [`Featurizer::featurize`]. Keep one per thread
/// (or per worker) and reuse it: once it has grown to the largest text seen,
/// featurizing allocates nothing.
#[derive(Clone, Debug, Default)]
pub struct FeatureBuf {
    tokens: TokenBuf,
    scratch: Scratch,
    features: Vec<Feature>,
}

/// The featurizer's working space besides the tokens and the output.
#[derive(Clone, Debug, Default)]
struct Scratch {
    /// One hash per token.
    hashes: Vec<u64>,
    /// The padded word whose character n-grams are being made (UTF-8,
    /// boundary marks around it, then 8 zero bytes so any 8-byte window
    /// starting inside the word can be read).
    bytes: Vec<u8>,
    /// The byte offset of each character of `bytes` and its end (words
    /// that are not ASCII only).
    starts: Vec<usize>,
}

impl FeatureBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        FeatureBuf::default()
    }

    /// The tokens of the last featurized text.
    pub fn tokens(&self) -> &TokenBuf {
        &self.tokens
    }

    /// The capacity held, in elements, summed over the inner buffers (to
    /// check that steady-state use does not grow it).
    pub fn capacity(&self) -> usize {
        let s = &self.scratch;
        s.hashes.capacity() + s.bytes.capacity() + s.starts.capacity() + self.features.capacity()
    }
}

/// A feature's description, for reports: which token(s) or field made it.
#[derive(Clone, Copy, Debug)]
enum Name<'a> {
    Unigram(&'a str),
    Pair(&'a str, &'a str, usize),
    Char(&'a str),
    TextFlag(&'static str),
    Flag(&'a str, bool),
    Number(&'a str, usize),
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Unigram(t) => f.write_str(t),
            Name::Pair(a, b, gap) => {
                f.write_str(a)?;
                for _ in 1..*gap {
                    f.write_str(" _")?;
                }
                write!(f, " {b}")
            }
            Name::Char(cs) => {
                f.write_str("chars:")?;
                cs.chars().try_for_each(|c| {
                    fmt::Write::write_char(f, if c == char::from(BOUNDARY) { '_' } else { c })
                })
            }
            Name::TextFlag(n) => write!(f, "flag:{n}"),
            Name::Flag(n, v) => write!(f, "{n}={v}"),
            Name::Number(n, bin) => write!(f, "{n}:bin{bin}"),
        }
    }
}

/// The word-boundary mark in character n-grams (a byte no word contains).
const BOUNDARY: u8 = 0x01;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// FNV-1a over bytes, continuing from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The SplitMix64 finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A cheap mixer for the many character n-grams: one full 64x64->128-bit
/// multiply, the high half (which depends on every input bit) folded onto
/// the low half (whose low bits are the bucket).
#[inline]
fn mum(z: u64) -> u64 {
    let p = u128::from(z) * 0x9FB2_1C65_1E98_DF25;
    (p >> 64) as u64 ^ p as u64
}

/// The hash of one character n-gram: its UTF-8 bytes read as little-endian
/// 8-byte words (the last one zero-padded), each xored into the state and
/// mixed by [`mum`], starting from `ns`, the namespace of grams of its
/// length in characters. A gram of up to 8 bytes (any ASCII gram the
/// defaults make) is one xor and one multiply.
fn gram_hash(ns: u64, bytes: &[u8]) -> u64 {
    bytes.chunks(8).fold(ns, |h, chunk| {
        let mut word = [0u8; 8];
        if let Some(dst) = word.get_mut(..chunk.len()) {
            dst.copy_from_slice(chunk);
        }
        mum(h ^ u64::from_le_bytes(word))
    })
}

/// An order-sensitive combination of two hashes.
fn combine(a: u64, b: u64) -> u64 {
    mix(premix(a) ^ b)
}

/// The part of [`combine`] that depends on its first argument only, so a
/// loop combining one namespace with many hashes computes it once:
/// `combine(a, b) == mix(premix(a) ^ b)`.
fn premix(a: u64) -> u64 {
    a.wrapping_mul(GOLDEN).rotate_left(23)
}

/// Where [`Featurizer::walk`] sends each feature: its 64-bit hash (bucket
/// in the low bits, sign in the top bit), its value before signing and
/// scaling, and its name, built only if the sink asks for it. Training
/// collects the features ([`Collect`]); serving folds them straight into
/// dot products ([`Dot`]); both see exactly the same features.
trait Sink {
    fn put<'n>(&mut self, hash: u64, value: f32, name: impl FnOnce() -> Name<'n>);

    /// A character n-gram. Every gram has the same `value` (the n-gram
    /// weight), which a sink may apply once to their sum.
    #[inline]
    fn put_gram<'n>(&mut self, hash: u64, value: f32, name: impl FnOnce() -> Name<'n>) {
        self.put(hash, value, name);
    }
}

/// `value` with its sign flipped if the top bit of `hash` is set.
#[inline]
fn signed(hash: u64, value: f32) -> f32 {
    let sign = ((hash >> 63) as u32) << 31;
    f32::from_bits(value.to_bits() ^ sign)
}

/// Collects signed features.
struct Collect<'a> {
    features: &'a mut Vec<Feature>,
    mask: u64,
}

impl Sink for Collect<'_> {
    #[inline]
    fn put<'n>(&mut self, hash: u64, value: f32, _name: impl FnOnce() -> Name<'n>) {
        self.features.push(Feature {
            index: (hash & self.mask) as u32,
            value: signed(hash, value),
        });
    }
}

/// Accumulates the dot product of the features with one weight column
/// (`weights[bucket]`), unscaled: `sum` for the features of value 1,
/// `grams` for the character n-grams before their common value.
struct Dot<'a> {
    weights: &'a [f32],
    mask: u64,
    sum: f64,
    grams: f32,
}

impl Dot<'_> {
    #[inline]
    fn weight(&self, hash: u64) -> f32 {
        let w = self.weights.get((hash & self.mask) as usize);
        signed(hash, w.copied().unwrap_or(0.0))
    }
}

impl Sink for Dot<'_> {
    #[inline]
    fn put_gram<'n>(&mut self, hash: u64, _value: f32, _name: impl FnOnce() -> Name<'n>) {
        self.grams += self.weight(hash);
    }

    #[inline]
    fn put<'n>(&mut self, hash: u64, value: f32, _name: impl FnOnce() -> Name<'n>) {
        self.sum += f64::from(self.weight(hash) * value);
    }
}

/// Accumulates the dot products of the features with the first
/// `out.len()` of `k` weight columns (`weights[bucket * k + column]`),
/// unscaled.
struct DotColumns<'a, 'o> {
    weights: &'a [f32],
    k: usize,
    mask: u64,
    out: &'o mut [f64],
}

impl Sink for DotColumns<'_, '_> {
    #[inline]
    fn put<'n>(&mut self, hash: u64, value: f32, _name: impl FnOnce() -> Name<'n>) {
        let k = self.k;
        let row = (hash & self.mask) as usize * k;
        let value = f64::from(signed(hash, value));
        if let Some(w) = self.weights.get(row..row + k) {
            for (o, &w) in self.out.iter_mut().zip(w) {
                *o += f64::from(w) * value;
            }
        }
    }
}

/// Passes every feature with its name to a closure (reports).
struct Named<F>(F);

impl<F: FnMut(u64, f32, Name<'_>)> Sink for Named<F> {
    fn put<'n>(&mut self, hash: u64, value: f32, name: impl FnOnce() -> Name<'n>) {
        (self.0)(hash, value, name());
    }
}

/// Readable names for a set of buckets, found by featurizing documents
/// until each has one (see [`Featurizer::name_buckets`]).
#[derive(Debug)]
pub(crate) struct BucketNamer {
    /// One bit per bucket still wanted (checked per feature, cheaply).
    unnamed: Vec<u64>,
    names: BTreeMap<u32, (f32, String)>,
    left: usize,
    mask: u64,
}

impl BucketNamer {
    /// Wants a name for each of `buckets`, all below `dim`.
    pub(crate) fn new(dim: usize, buckets: impl IntoIterator<Item = u32>) -> Self {
        let mut unnamed = vec![0u64; dim.div_ceil(64)];
        let mut left = 0;
        for b in buckets {
            if let Some(word) = unnamed.get_mut(b as usize / 64) {
                let bit = 1u64 << (b % 64);
                left += usize::from(*word & bit == 0);
                *word |= bit;
            }
        }
        BucketNamer {
            unnamed,
            names: BTreeMap::new(),
            left,
            mask: (dim as u64).wrapping_sub(1),
        }
    }

    /// How many wanted buckets have no name yet.
    pub(crate) fn left(&self) -> usize {
        self.left
    }

    /// The names found: bucket -> (sign, name), by bucket.
    pub(crate) fn into_names(self) -> BTreeMap<u32, (f32, String)> {
        self.names
    }
}

impl Sink for BucketNamer {
    fn put<'n>(&mut self, hash: u64, _value: f32, name: impl FnOnce() -> Name<'n>) {
        let b = (hash & self.mask) as usize;
        if let Some(word) = self.unnamed.get_mut(b / 64)
            && *word & (1u64 << (b % 64)) != 0
        {
            *word &= !(1u64 << (b % 64));
            let sign = if hash >> 63 == 1 { -1.0 } else { 1.0 };
            self.names.insert(b as u32, (sign, name().to_string()));
            self.left = self.left.saturating_sub(1);
        }
    }
}

/// Padded ASCII words up to this many bytes take the fast path of
/// [`char_ngrams`] (a stack buffer; each gram one 8-byte load).
const SHORT_WORD: usize = 56;

/// The low `n` bytes of a word, for `n` in `0..=8`.
const BYTE_MASKS: [u64; 9] = [
    0,
    0xff,
    0xffff,
    0xff_ffff,
    0xffff_ffff,
    0xff_ffff_ffff,
    0xffff_ffff_ffff,
    0xff_ffff_ffff_ffff,
    u64::MAX,
];

/// Emits the character n-grams of `word` padded with a boundary mark on
/// each side, by start, then by length, each hashed by [`gram_hash`] with
/// the namespace `ns[n]` of its length `n`. Returns how many it emitted.
/// `bytes` and `starts` are scratch space for the general path. Not
/// inlined: in its own frame the sink's running sums stay in registers.
#[inline(never)]
fn char_ngrams<S: Sink>(
    word: &str,
    cn: &CharNgrams,
    ns: &[u64; MAX_CHAR_NGRAM + 1],
    (bytes, starts): (&mut Vec<u8>, &mut Vec<usize>),
    sink: &mut S,
) -> usize {
    let (min, max, value) = (cn.min.max(1), cn.max.min(MAX_CHAR_NGRAM), cn.weight);
    let end = word.len() + 2;
    let mut emitted = 0;
    if max <= 8 && end <= SHORT_WORD && word.is_ascii() {
        // One byte per character: gram `(start, n)` is the low `n` bytes of
        // the 8 bytes at `start`, so its hash is one `mum`.
        let max = max.min(8);
        let mut pad = [0u8; SHORT_WORD + 8];
        if let Some(inner) = pad.get_mut(1..end - 1) {
            inner.copy_from_slice(word.as_bytes());
        }
        pad[0] = BOUNDARY;
        pad[end - 1] = BOUNDARY;
        let text = |a: usize, b: usize| {
            pad.get(a..b)
                .and_then(|g| std::str::from_utf8(g).ok())
                .unwrap_or_default()
        };
        for s in 0..end {
            let chunk = pad
                .get(s..s + 8)
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
                .map_or(0, u64::from_le_bytes);
            for n in min..=max.min(end - s) {
                let hash = mum(ns[n] ^ (chunk & BYTE_MASKS[n]));
                sink.put_gram(hash, value, || Name::Char(text(s, s + n)));
                emitted += 1;
            }
        }
        return emitted;
    }
    bytes.clear();
    bytes.push(BOUNDARY);
    bytes.extend_from_slice(word.as_bytes());
    bytes.push(BOUNDARY);
    starts.clear();
    starts.push(0);
    starts.extend(word.char_indices().map(|(i, _)| i + 1));
    starts.push(end - 1);
    starts.push(end);
    let chars = starts.len() - 1;
    let at = |i: usize| starts.get(i).copied().unwrap_or(end);
    let text = |a: usize, b: usize| {
        bytes
            .get(a..b)
            .and_then(|g| std::str::from_utf8(g).ok())
            .unwrap_or_default()
    };
    for s in 0..chars {
        for (n, &ns_n) in ns.iter().enumerate().take(max.min(chars - s) + 1).skip(min) {
            let gram = bytes.get(at(s)..at(s + n)).unwrap_or_default();
            let hash = gram_hash(ns_n, gram);
            sink.put_gram(hash, value, || Name::Char(text(at(s), at(s + n))));
            emitted += 1;
        }
    }
    emitted
}

/// The longest character n-gram (see [`CharNgrams::max`]).
const MAX_CHAR_NGRAM: usize = 10;

const NS_UNIGRAM: u64 = 1;
const NS_PAIR: u64 = 2;
const NS_CHAR: u64 = 3;
const NS_TEXT_FLAG: u64 = 4;
const NS_FLAG: u64 = 5;
const NS_NUMBER: u64 = 6;

const TEXT_FLAGS: [&str; 12] = [
    "has_question",
    "has_exclamation",
    "has_url",
    "has_mention",
    "starts_with_mention",
    "has_hashtag",
    "has_emoji",
    "has_digit",
    "tokens<=5",
    "tokens<=10",
    "tokens<=20",
    "tokens>20",
];

/// The featurizer. Cheap to share (`&self` methods); featurize with a
/// [`FeatureBuf`] per thread.
///
/// ```
/// use streamsift::local::{FeatureBuf, Featurizer, FeaturizerConfig};
/// let featurizer = Featurizer::new(FeaturizerConfig::default()).unwrap();
/// let mut buf = FeatureBuf::new();
/// let a = featurizer.featurize("my flight is delayed again", &mut buf).to_vec();
/// let b = featurizer.featurize("my flight is delayed again", &mut buf).to_vec();
/// assert_eq!(a, b);
/// let norm: f32 = a.iter().map(|f| f.value * f.value).sum();
/// assert!((norm - 1.0).abs() < 1e-5);
/// ```
#[derive(Debug)]
pub struct Featurizer {
    config: FeaturizerConfig,
    tokenizer: Tokenizer,
    mask: u64,
    token_seed: u64,
    ns: [u64; 7],
    /// The namespace of character n-grams of each length.
    char_ns: [u64; MAX_CHAR_NGRAM + 1],
    flag_hashes: Vec<u64>,
    number_hashes: Vec<u64>,
    /// Missing configured fields since creation: flags, then numbers.
    missing: Vec<AtomicU64>,
}

impl Clone for Featurizer {
    fn clone(&self) -> Self {
        Featurizer {
            config: self.config.clone(),
            tokenizer: self.tokenizer.clone(),
            mask: self.mask,
            token_seed: self.token_seed,
            ns: self.ns,
            char_ns: self.char_ns,
            flag_hashes: self.flag_hashes.clone(),
            number_hashes: self.number_hashes.clone(),
            missing: self
                .missing
                .iter()
                .map(|m| AtomicU64::new(m.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

impl Featurizer {
    /// A featurizer with this configuration, used as is (numeric fields keep
    /// the edges they have). Use [`fit`](Featurizer::fit) to learn numeric
    /// bins from training data.
    pub fn new(config: FeaturizerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let seed = config.seed;
        let ns: [u64; 7] = std::array::from_fn(|i| mix(seed ^ mix(i as u64 ^ GOLDEN)));
        let char_ns = std::array::from_fn(|n| combine(ns[NS_CHAR as usize], n as u64));
        let token_seed = fnv(FNV_OFFSET, &seed.to_le_bytes());
        let name_hash = |name: &str| fnv(token_seed, name.as_bytes());
        let flag_hashes = config.flags.iter().map(|n| name_hash(n)).collect();
        let number_hashes = config.numbers.iter().map(|n| name_hash(&n.name)).collect();
        let missing = (0..config.flags.len() + config.numbers.len())
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(Featurizer {
            tokenizer: Tokenizer::new(config.tokenizer.clone()),
            mask: (1u64 << config.bits) - 1,
            token_seed,
            ns,
            char_ns,
            flag_hashes,
            number_hashes,
            missing,
            config,
        })
    }

    /// A featurizer whose numeric fields' bin edges are learnt from `docs`
    /// at quantiles (fields that already have edges keep them). A field that
    /// no document carries gets no edges: every value then falls in bin 0.
    pub fn fit<'a, D: Document + ?Sized + 'a>(
        mut config: FeaturizerConfig,
        docs: impl IntoIterator<Item = &'a D>,
    ) -> Result<Self, ConfigError> {
        let todo: Vec<usize> = (0..config.numbers.len())
            .filter(|&i| config.numbers[i].edges.is_empty())
            .collect();
        if !todo.is_empty() {
            let mut values: Vec<Vec<f64>> = vec![Vec::new(); todo.len()];
            for doc in docs {
                for (slot, &i) in todo.iter().enumerate() {
                    if let Some(x) = doc.number(&config.numbers[i].name)
                        && x.is_finite()
                    {
                        values[slot].push(x);
                    }
                }
            }
            for (slot, &i) in todo.iter().enumerate() {
                let field = &mut config.numbers[i];
                field.edges = quantile_edges(&mut values[slot], field.bins);
            }
        }
        Featurizer::new(config)
    }

    /// The configuration (stored in the model file).
    pub fn config(&self) -> &FeaturizerConfig {
        &self.config
    }

    /// The number of buckets, `2^bits`.
    pub fn dim(&self) -> usize {
        1usize << self.config.bits
    }

    /// How often each configured field was missing from a featurized
    /// document since this featurizer was created (training and serving
    /// alike). A field that is often missing at serve time but was present
    /// in training is training/serving skew. Also counted in the `metrics`
    /// counter `streamsift_local_missing_field_total{field}`.
    pub fn missing_fields(&self) -> Vec<(String, u64)> {
        let names = self
            .config
            .flags
            .iter()
            .chain(self.config.numbers.iter().map(|n| &n.name));
        names
            .zip(&self.missing)
            .map(|(n, m)| (n.clone(), m.load(Ordering::Relaxed)))
            .collect()
    }

    /// Featurizes `doc` into `buf` and returns the features in the order
    /// they were emitted. Two features that hash to one bucket stay two
    /// entries (a dot product sums them anyway; sorting them would cost more
    /// than the rest of featurizing). With [`Norm::L2`] the values are scaled
    /// so that the sum of their squares is 1.
    pub fn featurize<'b, D: Document + ?Sized>(
        &self,
        doc: &D,
        buf: &'b mut FeatureBuf,
    ) -> &'b [Feature] {
        let scale = self.featurize_unscaled(doc, buf);
        let features = &mut buf.features;
        if scale != 1.0 {
            features.iter_mut().for_each(|f| f.value *= scale);
        }
        features
    }

    /// Featurizes `doc` into `buf` without the final scaling, and returns
    /// the factor that [`featurize`](Featurizer::featurize) multiplies every
    /// value by (1 without [`Norm::L2`]). Serving multiplies the dot product
    /// by it once instead. The features are in [`FeatureBuf::features`].
    pub(crate) fn featurize_unscaled<D: Document + ?Sized>(
        &self,
        doc: &D,
        buf: &mut FeatureBuf,
    ) -> f32 {
        let FeatureBuf {
            tokens,
            scratch,
            features,
        } = buf;
        self.tokenizer.tokenize(doc.text(), tokens);
        features.clear();
        let mut sink = Collect {
            features,
            mask: self.mask,
        };
        let squares = self.walk(doc, tokens, scratch, true, &mut sink);
        self.scale(squares)
    }

    /// The factor every value is multiplied by, given the sum of squares.
    fn scale(&self, squares: f32) -> f32 {
        if self.config.norm == Norm::L2 && squares > 0.0 {
            1.0 / squares.sqrt()
        } else {
            1.0
        }
    }

    /// The dot products of `doc`'s features, before scaling, with the first
    /// `out.len()` of the `k` weight columns of a dense table
    /// (`weights[bucket * k + column]`), written to `out`; returns the scale, as
    /// [`featurize_unscaled`](Featurizer::featurize_unscaled) does. The
    /// same features, met one at a time instead of collected first: this is
    /// the serving path. Buckets past the end of `weights` count as 0.
    pub(crate) fn dot_unscaled<D: Document + ?Sized>(
        &self,
        doc: &D,
        buf: &mut FeatureBuf,
        weights: &[f32],
        k: usize,
        out: &mut [f64],
    ) -> f32 {
        let FeatureBuf {
            tokens, scratch, ..
        } = buf;
        self.tokenizer.tokenize(doc.text(), tokens);
        let squares = if let ([z], 1) = (&mut *out, k) {
            let mut sink = Dot {
                weights,
                mask: self.mask,
                sum: 0.0,
                grams: 0.0,
            };
            let squares = self.walk(doc, tokens, scratch, true, &mut sink);
            let value = self.config.char_ngrams.as_ref().map_or(0.0, |c| c.weight);
            *z = sink.sum + f64::from(sink.grams * value);
            squares
        } else {
            out.fill(0.0);
            let mut sink = DotColumns {
                weights,
                k,
                mask: self.mask,
                out,
            };
            self.walk(doc, tokens, scratch, true, &mut sink)
        };
        self.scale(squares)
    }

    /// Each feature of `doc` before hashing is resolved: its bucket, its sign
    /// and a readable name (`"delayed"`, `"my _ delayed"`, `"chars:_fl"`,
    /// `"flag:has_question"`, `"is_reply=true"`). For reports, not for the
    /// hot path: it allocates. Does not count missing fields.
    pub fn describe<D: Document + ?Sized>(&self, doc: &D) -> Vec<(u32, f32, String)> {
        let mut buf = FeatureBuf::new();
        let FeatureBuf {
            tokens, scratch, ..
        } = &mut buf;
        self.tokenizer.tokenize(doc.text(), tokens);
        let mut out = Vec::new();
        self.walk(
            doc,
            tokens,
            scratch,
            false,
            &mut Named(|h: u64, _, name: Name<'_>| {
                let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
                out.push(((h & self.mask) as u32, sign, name.to_string()));
            }),
        );
        out
    }

    /// Names the buckets `namer` still wants that `doc` has a feature in
    /// (the first feature found in each, with its sign).
    pub(crate) fn name_buckets<D: Document + ?Sized>(
        &self,
        doc: &D,
        buf: &mut FeatureBuf,
        namer: &mut BucketNamer,
    ) {
        let FeatureBuf {
            tokens, scratch, ..
        } = buf;
        self.tokenizer.tokenize(doc.text(), tokens);
        namer.mask = self.mask;
        self.walk(doc, tokens, scratch, false, namer);
    }

    /// Emits every feature's hash and value (and, if the sink wants it, its
    /// name) to `sink`, and returns the sum of the squared values.
    fn walk<D: Document + ?Sized, S: Sink>(
        &self,
        doc: &D,
        tokens: &TokenBuf,
        scratch: &mut Scratch,
        count_missing: bool,
        sink: &mut S,
    ) -> f32 {
        let c = &self.config;
        let Scratch {
            hashes,
            bytes,
            starts,
        } = scratch;
        // Every feature but the character n-grams has value 1.
        let (mut units, mut grams) = (0usize, 0usize);
        // One pass over the tokens: hash each (for unigrams and pairs) and
        // emit the character n-grams of words and hashtags.
        hashes.clear();
        for (kind, t) in tokens.iter() {
            hashes.push(fnv(self.token_seed, t.as_bytes()));
            let Some(cn) = &c.char_ngrams else { continue };
            let word = match kind {
                TokenKind::Word => t,
                TokenKind::Hashtag => t.trim_start_matches('#'),
                _ => continue,
            };
            grams += char_ngrams(word, cn, &self.char_ns, (bytes, starts), sink);
        }
        if c.unigrams {
            units += hashes.len();
            let ns = premix(self.ns[NS_UNIGRAM as usize]);
            for (i, &h) in hashes.iter().enumerate() {
                sink.put(mix(ns ^ h), 1.0, || {
                    Name::Unigram(tokens.get(i).map_or("", |t| t.1))
                });
            }
        }
        let max_gap = c.osb.max(usize::from(c.bigrams));
        for gap in 1..=max_gap {
            units += hashes.len().saturating_sub(gap);
            let ns = premix(combine(self.ns[NS_PAIR as usize], gap as u64));
            for (i, (&ha, &hb)) in hashes.iter().zip(hashes.iter().skip(gap)).enumerate() {
                sink.put(combine(mix(ns ^ ha), hb), 1.0, || {
                    let a = tokens.get(i).map_or("", |t| t.1);
                    let b = tokens.get(i + gap).map_or("", |t| t.1);
                    Name::Pair(a, b, gap)
                });
            }
        }
        if c.text_flags {
            let ns = premix(self.ns[NS_TEXT_FLAG as usize]);
            self.text_flags(tokens, |i| {
                units += 1;
                sink.put(mix(ns ^ i as u64), 1.0, || Name::TextFlag(TEXT_FLAGS[i]));
            });
        }
        for (i, name) in c.flags.iter().enumerate() {
            match doc.flag(name) {
                Some(v) => {
                    units += 1;
                    let h = combine(self.ns[NS_FLAG as usize], self.flag_hashes[i]);
                    sink.put(combine(h, u64::from(v)), 1.0, || Name::Flag(name, v));
                }
                None if count_missing => self.count_missing(i, name),
                None => {}
            }
        }
        for (i, field) in c.numbers.iter().enumerate() {
            match doc.number(&field.name).filter(|x| !x.is_nan()) {
                Some(x) => {
                    units += 1;
                    let bin = field.edges.partition_point(|&e| e <= x);
                    let h = combine(self.ns[NS_NUMBER as usize], self.number_hashes[i]);
                    sink.put(combine(h, bin as u64), 1.0, || {
                        Name::Number(&field.name, bin)
                    });
                }
                None if count_missing => self.count_missing(c.flags.len() + i, &field.name),
                None => {}
            }
        }
        let w = c.char_ngrams.as_ref().map_or(0.0, |cn| cn.weight);
        units as f32 + grams as f32 * (w * w)
    }

    fn count_missing(&self, slot: usize, name: &str) {
        if let Some(m) = self.missing.get(slot) {
            m.fetch_add(1, Ordering::Relaxed);
        }
        metrics::counter!("streamsift_local_missing_field_total", "field" => name.to_string())
            .increment(1);
    }

    /// Calls `on` with the index (into `TEXT_FLAGS`) of each flag that holds.
    fn text_flags(&self, tokens: &TokenBuf, mut on: impl FnMut(usize)) {
        let text = tokens.normalized().as_bytes();
        // One pass over the bytes, each marking the flag it shows.
        let seen = text
            .iter()
            .fold(0u8, |acc, &b| acc | BYTE_FLAGS[usize::from(b)]);
        let has = |bit: u8| seen & bit != 0;
        let checks = [
            has(QUESTION),
            has(EXCLAMATION),
            tokens.has_kind(TokenKind::Url),
            has(AT),
            text.trim_ascii_start().first() == Some(&b'@'),
            has(HASH),
            tokens.has_kind(TokenKind::Emoji) || tokens.has_kind(TokenKind::Emoticon),
            has(DIGIT),
        ];
        for (i, _) in checks.iter().enumerate().filter(|(_, b)| **b) {
            on(i);
        }
        let n = tokens.len();
        on(match n {
            0..=5 => 8,
            6..=10 => 9,
            11..=20 => 10,
            _ => 11,
        });
    }
}

const QUESTION: u8 = 1;
const EXCLAMATION: u8 = 2;
const AT: u8 = 4;
const HASH: u8 = 8;
const DIGIT: u8 = 16;

/// The text-flag bit each byte shows (0 for most).
const BYTE_FLAGS: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'?' as usize] = QUESTION;
    table[b'!' as usize] = EXCLAMATION;
    table[b'@' as usize] = AT;
    table[b'#' as usize] = HASH;
    let mut d = b'0';
    while d <= b'9' {
        table[d as usize] = DIGIT;
        d += 1;
    }
    table
};

/// Bin edges at the `k/bins` quantiles of `values`, deduplicated.
fn quantile_edges(values: &mut [f64], bins: usize) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let mut edges: Vec<f64> = Vec::new();
    if n == 0 {
        return edges;
    }
    for k in 1..bins {
        let x = values[(k * n / bins).min(n - 1)];
        if edges.last().is_none_or(|&last| x > last) {
            edges.push(x);
        }
    }
    // The lowest edge at the minimum would leave bin 0 empty; keep edges
    // strictly above it so bin 0 holds the smallest values.
    if edges.first() == values.first() {
        edges.remove(0);
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::Example;

    fn names(config: FeaturizerConfig, text: &str) -> Vec<String> {
        let f = Featurizer::new(config).unwrap();
        f.describe(text).into_iter().map(|(_, _, n)| n).collect()
    }

    fn words_only() -> FeaturizerConfig {
        FeaturizerConfig {
            char_ngrams: None,
            text_flags: false,
            osb: 0,
            bigrams: false,
            ..FeaturizerConfig::default()
        }
    }

    #[test]
    fn unigrams_bigrams_and_osb() {
        let config = FeaturizerConfig {
            osb: 3,
            ..words_only()
        };
        let n = names(config, "a b c d");
        let want = [
            "a", "b", "c", "d", "a b", "b c", "c d", "a _ c", "b _ d", "a _ _ d",
        ];
        assert_eq!(n, want);
    }

    #[test]
    fn bigrams_alone_are_osb_gap_one() {
        let bigrams = Featurizer::new(FeaturizerConfig {
            bigrams: true,
            ..words_only()
        })
        .unwrap();
        let osb1 = Featurizer::new(FeaturizerConfig {
            osb: 1,
            ..words_only()
        })
        .unwrap();
        assert_eq!(bigrams.describe("x y z"), osb1.describe("x y z"));
    }

    #[test]
    fn char_ngrams_stay_inside_words() {
        let config = FeaturizerConfig {
            unigrams: false,
            char_ngrams: Some(CharNgrams {
                min: 2,
                max: 3,
                weight: 1.0,
            }),
            ..words_only()
        };
        let n = names(config, "ab @cd");
        // By start, then by length; `@cd` is a mention, not a word.
        assert_eq!(
            n,
            ["chars:_a", "chars:_ab", "chars:ab", "chars:ab_", "chars:b_"]
        );
    }

    #[test]
    fn text_and_document_flags_and_numeric_bins() {
        let mut config = FeaturizerConfig {
            text_flags: true,
            unigrams: false,
            flags: vec!["is_reply".into(), "verified".into()],
            numbers: vec![NumericField::new("followers", 4)],
            ..words_only()
        };
        let docs: Vec<Example> = (0..100)
            .map(|i| {
                let mut e = Example::new("x");
                e.numbers.insert("followers".into(), f64::from(i));
                e
            })
            .collect();
        let f = Featurizer::fit(config.clone(), &docs).unwrap();
        assert_eq!(f.config().numbers[0].edges, [25.0, 50.0, 75.0]);
        config.numbers = f.config().numbers.clone();

        let mut doc = Example::new("@help why?? https://x.co");
        doc.flags.insert("is_reply".into(), true);
        doc.numbers.insert("followers".into(), 60.0);
        let n: Vec<String> = f.describe(&doc).into_iter().map(|(_, _, n)| n).collect();
        assert_eq!(
            n,
            [
                "flag:has_question",
                "flag:has_url",
                "flag:has_mention",
                "flag:starts_with_mention",
                "flag:tokens<=5",
                "is_reply=true",
                "followers:bin2",
            ]
        );
        // "verified" is missing: counted at featurize time, not by describe.
        assert_eq!(f.missing_fields()[1], ("verified".to_string(), 0));
        let mut buf = FeatureBuf::new();
        f.featurize(&doc, &mut buf);
        f.featurize(&doc, &mut buf);
        assert_eq!(
            f.missing_fields(),
            [
                ("is_reply".to_string(), 0),
                ("verified".to_string(), 2),
                ("followers".to_string(), 0)
            ]
        );
    }

    #[test]
    fn featurize_matches_describe_and_is_normalised() {
        let f = Featurizer::new(FeaturizerConfig::default()).unwrap();
        let text = "@united my bag is lost AGAIN!!! 😡 #fail";
        let mut buf = FeatureBuf::new();
        let features = f.featurize(text, &mut buf).to_vec();
        let mut described: Vec<u32> = f.describe(text).into_iter().map(|d| d.0).collect();
        described.sort_unstable();
        described.dedup();
        // Every emitted bucket comes from a described feature (a bucket can
        // vanish only if colliding features cancel exactly).
        assert!(
            features
                .iter()
                .all(|x| described.binary_search(&x.index).is_ok())
        );
        let norm: f32 = features.iter().map(|x| x.value * x.value).sum();
        assert!((norm - 1.0).abs() < 1e-5);
    }

    #[test]
    fn steady_state_does_not_grow_buffers() {
        let f = Featurizer::new(FeaturizerConfig::default()).unwrap();
        let mut buf = FeatureBuf::new();
        let texts = [
            "short one",
            "a much longer text with many words in it, #tags and @mentions",
        ];
        for t in texts {
            f.featurize(t, &mut buf);
        }
        let cap = buf.capacity();
        for _ in 0..100 {
            for t in texts {
                f.featurize(t, &mut buf);
            }
        }
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn hash_is_stable_across_runs_and_platforms() {
        // Fixed values: a change here breaks every saved model file.
        assert_eq!(fnv(FNV_OFFSET, b"abc"), 0xe71f_a219_0541_574b);
        let f = Featurizer::new(FeaturizerConfig {
            bits: 20,
            ..words_only()
        })
        .unwrap();
        let d = f.describe("delayed");
        assert_eq!(d.len(), 1);
        let (index, sign, _) = d[0].clone();
        let pinned = (index, sign);
        assert_eq!(pinned, PINNED_DELAYED);

        // Character n-grams (hashed by `gram_hash`, 8-byte words and a
        // 128-bit multiply, since the second hot-path rework; pinned anew
        // then, deliberately), including a non-ASCII one.
        let f = Featurizer::new(FeaturizerConfig {
            bits: 20,
            unigrams: false,
            char_ngrams: Some(CharNgrams {
                min: 3,
                max: 3,
                weight: 1.0,
            }),
            ..words_only()
        })
        .unwrap();
        let got: Vec<(u32, f32, String)> = f.describe("fly é");
        let got: Vec<(u32, f32, &str)> = got.iter().map(|(i, s, n)| (*i, *s, n.as_str())).collect();
        assert_eq!(got, PINNED_CHARS);
    }

    /// Records every character n-gram: its hash and its text.
    #[derive(Default)]
    struct Grams(Vec<(u64, String)>);

    impl Sink for Grams {
        fn put<'n>(&mut self, hash: u64, _value: f32, name: impl FnOnce() -> Name<'n>) {
            if let Name::Char(text) = name() {
                self.0.push((hash, text.to_string()));
            }
        }
    }

    #[test]
    fn every_char_ngram_path_hashes_the_gram_bytes() {
        let f = Featurizer::new(FeaturizerConfig::default()).unwrap();
        let long = "x".repeat(70);
        // ASCII short (fast path), non-ASCII, ASCII too long for the fast
        // path, and grams longer than 8 bytes.
        let words = ["fly", "a", "naïve", "ça", "don't", long.as_str()];
        for (min, max) in [(1, 5), (2, 5), (3, 4), (1, 10), (9, 10)] {
            let cn = CharNgrams {
                min,
                max,
                weight: 1.0,
            };
            for word in words {
                let mut sink = Grams::default();
                let mut scratch = Scratch::default();
                let emitted = char_ngrams(
                    word,
                    &cn,
                    &f.char_ns,
                    (&mut scratch.bytes, &mut scratch.starts),
                    &mut sink,
                );
                assert_eq!(emitted, sink.0.len());
                let chars = word.chars().count() + 2;
                let want: usize = (min..=max.min(chars)).map(|n| chars + 1 - n).sum();
                assert_eq!(emitted, want, "{word:?} {min}..{max}");
                for (hash, text) in &sink.0 {
                    let n = text.chars().count();
                    assert!((min..=max).contains(&n));
                    assert_eq!(*hash, gram_hash(f.char_ns[n], text.as_bytes()), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn dot_products_match_the_collected_features() {
        let f = Featurizer::new(FeaturizerConfig {
            bits: 12,
            ..FeaturizerConfig::default()
        })
        .unwrap();
        let dim = f.dim();
        let weight = |i: usize| ((i as u64).wrapping_mul(GOLDEN) >> 40) as f32 / 1e7 - 0.8;
        let texts = [
            "",
            "@united my bag is lost AGAIN!!! 😡 #fail",
            "naïve café, délai de 3h ?",
            "thanks so much, great crew https://t.co/x",
        ];
        let mut buf = FeatureBuf::new();
        for k in [1usize, 3] {
            let weights: Vec<f32> = (0..dim * k).map(weight).collect();
            for text in texts {
                let features = f.featurize(text, &mut buf).to_vec();
                let mut want = vec![0.0f64; k];
                for x in &features {
                    for (c, w) in want.iter_mut().enumerate() {
                        *w += f64::from(weights[x.index as usize * k + c]) * f64::from(x.value);
                    }
                }
                let mut got = vec![0.0f64; k];
                let scale = f.dot_unscaled(text, &mut buf, &weights, k, &mut got);
                for (g, w) in got.iter().zip(&want) {
                    let g = g * f64::from(scale);
                    assert!((g - w).abs() < 1e-5, "{text:?} k={k}: {g} vs {w}");
                }
            }
        }
    }

    const PINNED_DELAYED: (u32, f32) = (195_832, -1.0);
    const PINNED_CHARS: [(u32, f32, &str); 4] = [
        (703_326, 1.0, "chars:_fl"),
        (1_014_203, 1.0, "chars:fly"),
        (778_338, 1.0, "chars:ly_"),
        (148_034, -1.0, "chars:_é_"),
    ];

    #[test]
    fn invalid_configs_are_rejected() {
        let bad_bits = FeaturizerConfig {
            bits: 40,
            ..FeaturizerConfig::default()
        };
        assert_eq!(
            Featurizer::new(bad_bits).unwrap_err(),
            ConfigError::Bits { found: 40 }
        );
        let bad_edges = FeaturizerConfig {
            numbers: vec![NumericField {
                name: "n".into(),
                bins: 4,
                edges: vec![2.0, 1.0],
            }],
            ..FeaturizerConfig::default()
        };
        assert!(matches!(
            Featurizer::new(bad_edges),
            Err(ConfigError::Numeric { .. })
        ));
    }
}
