//! A fingerprint of "what a model would be trained from": the examples, the
//! training configuration, and the features this build's featurizer makes of
//! them. Store it with a model (for example in
//! [`LocalModel::evaluation`](super::LocalModel)) and compare it later to
//! tell whether a saved model is still the one training would produce.
//!
//! Hashing the featurized examples, not only the configuration, means a
//! change to the tokenizer or the feature hash (which changes no setting)
//! also makes the fingerprint differ. A change to the training algorithm
//! alone does not; the crate version is part of the fingerprint for that.

use std::fmt::Write as _;

use super::config::TrainConfig;
use super::doc::Example;
use super::features::{FeatureBuf, Featurizer};
use super::file::MODEL_VERSION;
use super::train::TrainError;

/// 64-bit FNV-1a, written out here so the value is stable across Rust
/// releases and platforms (unlike `std`'s `DefaultHasher`).
#[derive(Clone, Copy, Debug)]
struct Fnv(u64);

impl Fnv {
    fn new(seed: u64) -> Fnv {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.bytes(&seed.to_le_bytes());
        h
    }
    fn bytes(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// A length-prefixed field, so `("ab","c")` and `("a","bc")` differ.
    fn field(&mut self, data: &[u8]) {
        self.bytes(&(data.len() as u64).to_le_bytes());
        self.bytes(data);
    }
}

/// The fingerprint of training `config` on `examples` with this build: a
/// 32-hex-digit string (two independent 64-bit FNV-1a hashes) over the
/// crate version, the model-file version, the configuration, every example
/// (id, text, label, fields) in order, and the features the configured
/// featurizer makes of each example. Equal inputs give equal fingerprints on
/// every platform; any change to them almost surely changes it.
///
/// ```
/// use streamsift::local::{training_fingerprint, Example, TrainConfig};
/// let data = vec![Example::new("site down").labeled("problem"), Example::new("thanks").labeled("none")];
/// let config = TrainConfig::binary("problem");
/// let a = training_fingerprint(&data, &config)?;
/// assert_eq!(a, training_fingerprint(&data, &config)?);
/// let mut other = data.clone();
/// other[1].label = Some("problem".into());
/// assert_ne!(a, training_fingerprint(&other, &config)?);
/// # Ok::<(), streamsift::local::TrainError>(())
/// ```
pub fn training_fingerprint(
    examples: &[Example],
    config: &TrainConfig,
) -> Result<String, TrainError> {
    let featurizer = Featurizer::fit(config.featurizer.clone(), examples.iter())?;
    let mut hashes = [Fnv::new(1), Fnv::new(2)];
    let mut put = |data: &[u8]| hashes.iter_mut().for_each(|h| h.field(data));
    put(env!("CARGO_PKG_VERSION").as_bytes());
    put(&MODEL_VERSION.to_le_bytes());
    // TrainConfig serialises deterministically (its maps are BTreeMaps).
    put(serde_json::to_string(config).unwrap_or_default().as_bytes());
    put(&(examples.len() as u64).to_le_bytes());
    let mut buf = FeatureBuf::new();
    for e in examples {
        put(serde_json::to_string(e).unwrap_or_default().as_bytes());
        let features = featurizer.featurize(e, &mut buf);
        put(&(features.len() as u64).to_le_bytes());
        for f in features {
            put(&f.index.to_le_bytes());
            put(&f.value.to_bits().to_le_bytes());
        }
    }
    let mut out = String::with_capacity(32);
    for h in hashes {
        let _ = write!(out, "{:016x}", h.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::FeaturizerConfig;

    fn data() -> Vec<Example> {
        vec![
            Example::new("the api is down").labeled("problem"),
            Example::new("love it").labeled("none"),
        ]
    }

    #[test]
    fn each_input_changes_the_fingerprint() {
        let config = TrainConfig::binary("problem");
        let base = training_fingerprint(&data(), &config).unwrap();
        assert_eq!(base.len(), 32);
        assert!(base.chars().all(|c| c.is_ascii_hexdigit()));

        let mut text = data();
        text[0].text.push('!');
        let mut field = data();
        field[0].flags.insert("is_reply".into(), true);
        let mut order = data();
        order.reverse();
        let mut seed = config.clone();
        seed.seed = 1;
        let mut features = config.clone();
        // Any setting other than the default's.
        features.featurizer = FeaturizerConfig {
            osb: FeaturizerConfig::default().osb + 1,
            ..FeaturizerConfig::default()
        };
        let variants = [
            training_fingerprint(&text, &config).unwrap(),
            training_fingerprint(&field, &config).unwrap(),
            training_fingerprint(&order, &config).unwrap(),
            training_fingerprint(&data(), &seed).unwrap(),
            training_fingerprint(&data(), &features).unwrap(),
            training_fingerprint(&data()[..1], &config).unwrap(),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, base, "variant {i}");
        }
    }

    #[test]
    fn equal_inputs_give_equal_fingerprints() {
        // Recomputed from equal inputs; and not the value for no examples.
        let config = TrainConfig::binary("problem");
        let a = training_fingerprint(&data(), &config).unwrap();
        let b = training_fingerprint(&data(), &config.clone()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, training_fingerprint(&[], &config).unwrap());
    }
}
