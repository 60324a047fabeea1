//! The model file: versioned JSON.
//!
//! ```json
//! { "format": "streamsift-local-model", "version": 1, "kind": "binary",
//!   "labels": ["none", "actionable"], "featurizer": { ... },
//!   "bias": [..], "weights": { "buckets": [..], "values": [..] },
//!   "policy": null, "metadata": { ... }, "evaluation": null,
//!   "feature_names": [ { "bucket": 17, "sign": 1.0, "name": "delayed" } ] }
//! ```
//!
//! Weights are stored sparsely: the buckets with a non-zero weight, and for
//! each, one `f32` per column (row-major). Numbers round-trip exactly (serde
//! JSON writes the shortest representation that parses back to the same
//! float, and this crate enables its exact float parsing), so a reloaded model
//! gives bit-identical scores.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::features::{ConfigError, Featurizer, FeaturizerConfig};
use super::model::{LocalModel, ModelKind, NamedBucket, TrainingMetadata};
use crate::classify::Label;
use crate::policy::Policy;

/// The `format` field of a model file.
pub const MODEL_FORMAT: &str = "streamsift-local-model";
/// The model-file version this build reads and writes.
pub const MODEL_VERSION: u32 = 1;
/// The most weights (buckets x columns) a model file may ask for: 2^28
/// `f32`s, 1 GiB. A file asking for more is refused before anything is
/// allocated.
pub const MAX_WEIGHT_CELLS: usize = 1 << 28;

/// Why a model file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// Reading or writing the file failed.
    #[error("cannot {action} model file {path}: {source}")]
    Io {
        /// `"read"` or `"write"`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file ends in the middle of the JSON document.
    #[error(
        "model file is truncated: the JSON ends early at line {line}, column {column}; \
         the write was probably interrupted: save or copy the model again"
    )]
    Truncated {
        /// Line (1-based) where the text ends.
        line: usize,
        /// Column (1-based).
        column: usize,
    },
    /// The file is not valid JSON, or a field has the wrong type or is
    /// missing.
    #[error(
        "model file is corrupt at line {line}, column {column}: {message}; \
         expected a streamsift model file: save or copy the model again"
    )]
    Parse {
        /// Line (1-based).
        line: usize,
        /// Column (1-based).
        column: usize,
        /// What the parser found.
        message: String,
    },
    /// The JSON is not a streamsift model.
    #[error("not a streamsift model file: expected \"format\": \"{MODEL_FORMAT}\", found {found}")]
    NotAModel {
        /// The `format` found (`"none"` if absent).
        found: String,
    },
    /// The file was written by an incompatible version.
    #[error(
        "model file version {found} cannot be read by this build, which reads version {expected}: \
         retrain and save the model with this version of streamsift, or load it with the \
         streamsift version that wrote it ({crate_version})"
    )]
    Version {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        expected: u32,
        /// The crate version that wrote the file, if it says.
        crate_version: String,
    },
    /// The parts of the file do not fit together.
    #[error("model file is inconsistent: {0}; it was edited or damaged: save the model again")]
    Shape(String),
    /// The stored featurizer configuration is invalid.
    #[error("model file has an invalid featurizer: {0}")]
    Config(#[from] ConfigError),
}

impl ModelFileError {
    fn from_json(e: serde_json::Error) -> Self {
        let (line, column) = (e.line(), e.column());
        if e.classify() == serde_json::error::Category::Eof {
            ModelFileError::Truncated { line, column }
        } else {
            ModelFileError::Parse {
                line,
                column,
                message: e.to_string(),
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct SparseWeights {
    buckets: Vec<u32>,
    values: Vec<f32>,
}

#[derive(Serialize, Deserialize)]
struct FileRepr {
    format: String,
    version: u32,
    kind: ModelKind,
    labels: Vec<String>,
    featurizer: FeaturizerConfig,
    bias: Vec<f32>,
    weights: SparseWeights,
    policy: Option<Policy>,
    metadata: TrainingMetadata,
    evaluation: Option<serde_json::Value>,
    feature_names: Vec<NamedBucket>,
}

/// Only the fields that say what the file is, read first so a file of
/// another version gets a version error, not a field error.
#[derive(Deserialize)]
struct Header {
    format: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
    metadata: Option<HeaderMetadata>,
}

#[derive(Deserialize)]
struct HeaderMetadata {
    crate_version: Option<String>,
}

impl LocalModel {
    /// The model as JSON text (the model-file format).
    pub fn to_json(&self) -> String {
        let k = self.bias.len().max(1);
        let mut buckets = Vec::new();
        let mut values = Vec::new();
        for (bucket, row) in self.weights.chunks_exact(k).enumerate() {
            if row.iter().any(|&w| w != 0.0) {
                buckets.push(bucket as u32);
                values.extend_from_slice(row);
            }
        }
        let repr = FileRepr {
            format: MODEL_FORMAT.to_string(),
            version: MODEL_VERSION,
            kind: self.kind,
            labels: self.labels.iter().map(|l| l.as_str().to_string()).collect(),
            featurizer: self.featurizer.config().clone(),
            bias: self.bias.clone(),
            weights: SparseWeights { buckets, values },
            policy: self.policy.clone(),
            metadata: self.metadata.clone(),
            evaluation: self.evaluation.clone(),
            feature_names: self.feature_names.clone(),
        };
        // Serializing plain data with string keys cannot fail; an empty
        // string would then fail to load with a clear error.
        serde_json::to_string(&repr).unwrap_or_default()
    }

    /// Reads a model from JSON text (the model-file format).
    pub fn from_json(text: &str) -> Result<LocalModel, ModelFileError> {
        let header: Header = serde_json::from_str(text).map_err(ModelFileError::from_json)?;
        let format = header.format.map_or("none".to_string(), |f| f.to_string());
        if format != format!("\"{MODEL_FORMAT}\"") {
            return Err(ModelFileError::NotAModel { found: format });
        }
        let found = header.version.as_ref().and_then(|v| v.as_u64());
        if found != Some(u64::from(MODEL_VERSION)) {
            let crate_version = header
                .metadata
                .and_then(|m| m.crate_version)
                .unwrap_or_else(|| "unknown".to_string());
            return Err(match found.and_then(|v| u32::try_from(v).ok()) {
                Some(found) => ModelFileError::Version {
                    found,
                    expected: MODEL_VERSION,
                    crate_version,
                },
                None => ModelFileError::Shape(format!(
                    "\"version\" must be a whole number, found {}",
                    header.version.map_or("none".to_string(), |v| v.to_string())
                )),
            });
        }
        let repr: FileRepr = serde_json::from_str(text).map_err(ModelFileError::from_json)?;
        LocalModel::from_repr(repr)
    }

    fn from_repr(repr: FileRepr) -> Result<LocalModel, ModelFileError> {
        let featurizer = Featurizer::new(repr.featurizer)?;
        let shape = |msg: String| Err(ModelFileError::Shape(msg));
        let columns = match repr.kind {
            ModelKind::Binary => 1,
            ModelKind::Multinomial => repr.labels.len(),
        };
        match repr.kind {
            ModelKind::Binary if repr.labels.len() != 2 => {
                return shape(format!(
                    "a binary model has 2 labels, found {}",
                    repr.labels.len()
                ));
            }
            ModelKind::Multinomial if repr.labels.len() < 2 => {
                return shape(format!(
                    "a multinomial model has at least 2 labels, found {}",
                    repr.labels.len()
                ));
            }
            _ => {}
        }
        if repr.bias.len() != columns {
            return shape(format!(
                "expected {columns} bias values, found {}",
                repr.bias.len()
            ));
        }
        let SparseWeights { buckets, values } = repr.weights;
        if values.len() != buckets.len() * columns {
            return shape(format!(
                "{} weight buckets need {} values ({} per bucket), found {}",
                buckets.len(),
                buckets.len() * columns,
                columns,
                values.len()
            ));
        }
        let dim = featurizer.dim();
        if let Some(&b) = buckets.iter().find(|&&b| b as usize >= dim) {
            return shape(format!(
                "weight bucket {b} is outside the featurizer's 2^{} = {dim} buckets",
                featurizer.config().bits
            ));
        }
        if buckets.windows(2).any(|w| w[0] >= w[1]) {
            return shape("weight buckets are not strictly increasing".to_string());
        }
        if let Some(nb) = repr.feature_names.iter().find(|n| n.bucket as usize >= dim) {
            return shape(format!(
                "named bucket {} is outside the {dim} buckets",
                nb.bucket
            ));
        }
        if values.iter().chain(&repr.bias).any(|w| !w.is_finite()) {
            return shape("a weight is not a finite number".to_string());
        }
        // Refuse a table too large to hold before allocating it: a file of a
        // few bytes can ask for 2^26 buckets times thousands of labels.
        let cells = dim
            .checked_mul(columns)
            .filter(|&cells| cells <= MAX_WEIGHT_CELLS);
        let Some(cells) = cells else {
            return shape(format!(
                "the weight table would hold 2^{} buckets x {columns} columns = {} weights, more \
                 than the {MAX_WEIGHT_CELLS} this build loads; lower the featurizer's bits or the \
                 number of labels",
                featurizer.config().bits,
                (dim as u128) * (columns as u128),
            ));
        };
        let mut weights = vec![0.0f32; cells];
        for (&b, row) in buckets.iter().zip(values.chunks_exact(columns)) {
            let at = b as usize * columns;
            weights[at..at + columns].copy_from_slice(row);
        }
        Ok(LocalModel {
            featurizer,
            kind: repr.kind,
            labels: repr.labels.into_iter().map(Label::from).collect(),
            weights,
            bias: repr.bias,
            policy: repr.policy,
            metadata: repr.metadata,
            evaluation: repr.evaluation,
            feature_names: repr.feature_names,
        })
    }

    /// Saves the model to `path`. It writes a temporary file beside it and
    /// renames it over `path`, so a crash never leaves a half-written model.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ModelFileError> {
        let path = path.as_ref();
        let io = |source| ModelFileError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        };
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(self.to_json().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&tmp, path).map_err(io)
    }

    /// Loads a model saved by [`save`](LocalModel::save).
    ///
    /// ```
    /// use streamsift::local::{Example, LocalModel, ModelFileError, TrainConfig};
    /// let data = vec![
    ///     Example::new("refund please, flight cancelled").labeled("complaint"),
    ///     Example::new("great trip, thanks").labeled("other"),
    /// ];
    /// let model = LocalModel::train(&data, &TrainConfig::binary("complaint")).unwrap();
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("model.json");
    /// model.save(&path).unwrap();
    /// let loaded = LocalModel::load(&path).unwrap();
    /// assert_eq!(
    ///     model.positive_probability("cancelled again"),
    ///     loaded.positive_probability("cancelled again"),
    /// );
    /// std::fs::write(&path, r#"{"format": "streamsift-local-model", "version": 99}"#).unwrap();
    /// assert!(matches!(LocalModel::load(&path), Err(ModelFileError::Version { found: 99, .. })));
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<LocalModel, ModelFileError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|source| ModelFileError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        LocalModel::from_json(&text)
    }
}
