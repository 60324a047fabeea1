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
    /// The defaults chosen by 5-fold cross-validation on the bundled tweets
    /// (the `tune` test in `tests/local_model.rs`): 2^20 buckets, unigrams,
    /// OSB up to gap 2, character 2..5-grams weighted 0.1, text flags, L2
    /// norm. (Gap 1 alone scored within noise of gap 2 there; gap 2 keeps
    /// some word-order slack for longer data.)
    fn default() -> Self {
        FeaturizerConfig {
            bits: 20,
            seed: 0,
            tokenizer: TokenizerConfig::default(),
            unigrams: true,
            bigrams: true,
            osb: 2,
            char_ngrams: Some(CharNgrams {
                min: 2,
                max: 5,
                weight: 0.1,
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
            && (c.min < 1 || c.min > c.max || c.max > 10 || !c.weight.is_finite())
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
    /// The padded word whose character n-grams are being made.
    chars: Vec<char>,
    /// The running hash of the n-gram starting at each character.
    states: Vec<u64>,
    /// The hashes of one word's character n-grams.
    grams: Vec<u64>,
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

    /// The features of the last featurized text (unscaled after
    /// `featurize_unscaled`).
    pub(crate) fn features(&self) -> &[Feature] {
        &self.features
    }

    /// The capacity held, in elements, summed over the inner buffers (to
    /// check that steady-state use does not grow it).
    pub fn capacity(&self) -> usize {
        let s = &self.scratch;
        s.hashes.capacity()
            + s.chars.capacity()
            + s.states.capacity()
            + s.grams.capacity()
            + self.features.capacity()
    }
}

/// A feature's description, for reports: which token(s) or field made it.
#[derive(Clone, Copy, Debug)]
enum Name<'a> {
    Unigram(&'a str),
    Pair(&'a str, &'a str, usize),
    Char(&'a [char]),
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
                cs.iter().try_for_each(|&c| {
                    fmt::Write::write_char(f, if c == BOUNDARY { '_' } else { c })
                })
            }
            Name::TextFlag(n) => write!(f, "flag:{n}"),
            Name::Flag(n, v) => write!(f, "{n}={v}"),
            Name::Number(n, bin) => write!(f, "{n}:bin{bin}"),
        }
    }
}

/// The word-boundary mark in character n-grams.
const BOUNDARY: char = '\u{1}';

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

/// A cheaper finaliser for the many character n-grams: one multiply, whose
/// high bits depend on every input bit, folded onto the low bits (the
/// bucket); the top bit (the sign) is the product's.
#[inline]
fn mix_fast(z: u64) -> u64 {
    let z = z.wrapping_mul(0x9FB2_1C65_1E98_DF25);
    z ^ (z >> 32)
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
/// scaling, and its name, built only if the sink asks for it.
trait Sink {
    fn put<'n>(&mut self, hash: u64, value: f32, name: impl FnOnce() -> Name<'n>);

    /// The character n-grams of one word: their hashes before finalising
    /// (done here, with the namespace `ns`), their value, and the name of
    /// each.
    #[inline]
    fn put_grams<'n>(
        &mut self,
        states: &[u64],
        ns: u64,
        value: f32,
        name: impl Fn(usize) -> Name<'n>,
    ) {
        for (j, &h) in states.iter().enumerate() {
            self.put(mix_fast(ns ^ h), value, || name(j));
        }
    }
}

/// Collects signed features and the sum of their squared values.
struct Collect<'a> {
    features: &'a mut Vec<Feature>,
    mask: u64,
    squares: f32,
}

impl Sink for Collect<'_> {
    #[inline]
    fn put_grams<'n>(
        &mut self,
        states: &[u64],
        ns: u64,
        value: f32,
        _name: impl Fn(usize) -> Name<'n>,
    ) {
        self.squares += states.len() as f32 * (value * value);
        let (mask, bits) = (self.mask, value.to_bits());
        self.features.extend(states.iter().map(|&h| {
            let hash = mix_fast(ns ^ h);
            let sign = ((hash >> 63) as u32) << 31;
            Feature {
                index: (hash & mask) as u32,
                value: f32::from_bits(bits ^ sign),
            }
        }));
    }

    #[inline]
    fn put<'n>(&mut self, hash: u64, value: f32, _name: impl FnOnce() -> Name<'n>) {
        self.squares += value * value;
        // The top bit of the hash is the sign: flip the float's sign bit.
        let sign = ((hash >> 63) as u32) << 31;
        self.features.push(Feature {
            index: (hash & self.mask) as u32,
            value: f32::from_bits(value.to_bits() ^ sign),
        });
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

/// Emits the character n-grams of one padded word, by length, then by
/// start. The hash of a gram is FNV-1a over the UTF-8 bytes of its
/// characters, continued one character at a time from the gram's first,
/// then xored with the namespace `ns` and finalised by [`mix_fast`].
/// `states` and `grams` are scratch space.
fn char_ngrams<S: Sink>(
    chars: &[char],
    cn: &CharNgrams,
    seed: u64,
    ns: u64,
    (states, grams): (&mut Vec<u64>, &mut Vec<u64>),
    sink: &mut S,
) {
    let len = chars.len();
    let (min, max) = (cn.min.max(1), cn.max.min(len));
    states.clear();
    states.resize(len, seed);
    grams.clear();
    for n in 1..=max {
        // Before: states[s] hashes chars[s..s + n - 1]. Extend each gram
        // that has room by one character.
        let count = len + 1 - n;
        let states = &mut states[..count];
        for (h, &ch) in states.iter_mut().zip(&chars[n - 1..]) {
            *h = fnv_char(*h, ch);
        }
        if n >= min {
            grams.extend_from_slice(states);
        }
    }
    sink.put_grams(grams, ns, cn.weight, |mut j| {
        // Gram `j` of the order above: find its length and start.
        for n in min..=max {
            let count = len + 1 - n;
            if j < count {
                return Name::Char(chars.get(j..j + n).unwrap_or_default());
            }
            j -= count;
        }
        Name::Char(&[])
    });
}

/// One FNV-1a step over the UTF-8 bytes of `ch`.
#[inline]
fn fnv_char(h: u64, ch: char) -> u64 {
    let code = u32::from(ch);
    if code < 0x80 {
        (h ^ u64::from(code)).wrapping_mul(FNV_PRIME)
    } else {
        fnv(h, ch.encode_utf8(&mut [0u8; 4]).as_bytes())
    }
}

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
        let ns = std::array::from_fn(|i| mix(seed ^ mix(i as u64 ^ GOLDEN)));
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
            squares: 0.0,
        };
        self.walk(doc, tokens, scratch, true, &mut sink);
        let squares = sink.squares;
        if self.config.norm == Norm::L2 && squares > 0.0 {
            1.0 / squares.sqrt()
        } else {
            1.0
        }
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
    /// name) to `sink`.
    fn walk<D: Document + ?Sized, S: Sink>(
        &self,
        doc: &D,
        tokens: &TokenBuf,
        scratch: &mut Scratch,
        count_missing: bool,
        sink: &mut S,
    ) {
        let c = &self.config;
        let Scratch {
            hashes,
            chars,
            states,
            grams,
        } = scratch;
        // One pass over the tokens: hash each (for unigrams and pairs) and
        // emit the character n-grams of words and hashtags.
        hashes.clear();
        let char_ns = premix(self.ns[NS_CHAR as usize]);
        for (kind, t) in tokens.iter() {
            hashes.push(fnv(self.token_seed, t.as_bytes()));
            let Some(cn) = &c.char_ngrams else { continue };
            let word = match kind {
                TokenKind::Word => t,
                TokenKind::Hashtag => t.trim_start_matches('#'),
                _ => continue,
            };
            chars.clear();
            chars.push(BOUNDARY);
            if word.is_ascii() {
                chars.extend(word.bytes().map(char::from));
            } else {
                chars.extend(word.chars());
            }
            chars.push(BOUNDARY);
            char_ngrams(chars, cn, self.token_seed, char_ns, (states, grams), sink);
        }
        if c.unigrams {
            let ns = premix(self.ns[NS_UNIGRAM as usize]);
            for (i, &h) in hashes.iter().enumerate() {
                sink.put(mix(ns ^ h), 1.0, || {
                    Name::Unigram(tokens.get(i).map_or("", |t| t.1))
                });
            }
        }
        let max_gap = c.osb.max(usize::from(c.bigrams));
        for gap in 1..=max_gap {
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
                sink.put(mix(ns ^ i as u64), 1.0, || Name::TextFlag(TEXT_FLAGS[i]));
            });
        }
        for (i, name) in c.flags.iter().enumerate() {
            match doc.flag(name) {
                Some(v) => {
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
        let has = |b: u8| text.contains(&b);
        let checks = [
            has(b'?'),
            has(b'!'),
            tokens.has_kind(TokenKind::Url),
            has(b'@'),
            text.trim_ascii_start().first() == Some(&b'@'),
            has(b'#'),
            tokens.has_kind(TokenKind::Emoji) || tokens.has_kind(TokenKind::Emoticon),
            text.iter().any(u8::is_ascii_digit),
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
        // By length, then by start; `@cd` is a mention, not a word.
        assert_eq!(
            n,
            ["chars:_a", "chars:ab", "chars:b_", "chars:_ab", "chars:ab_"]
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

        // Character n-grams (hashed with `mix_fast` since the hot-path
        // rework; pinned then, deliberately), including a non-ASCII one.
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

    const PINNED_DELAYED: (u32, f32) = (195_832, -1.0);
    const PINNED_CHARS: [(u32, f32, &str); 4] = [
        (784_361, -1.0, "chars:_fl"),
        (577_054, -1.0, "chars:fly"),
        (173_165, -1.0, "chars:ly_"),
        (578_362, -1.0, "chars:_é_"),
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
