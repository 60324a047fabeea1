//! Training: logistic regression (binary) and softmax regression
//! (multinomial) by AdaGrad SGD with L2/L1 regularisation and class weights.
//!
//! Training is deterministic under [`TrainConfig::seed`]: the same examples
//! and configuration give bit-identical weights (the examples are shuffled
//! each epoch by a seeded generator; nothing depends on threads or time).
//!
//! The settings ([`TrainConfig`], [`Task`], [`ClassWeight`]) live in
//! [`super::config`], which both this module and [`super::model`] use, so
//! `train → model` has no edge back.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::config::{ClassWeight, Task, TrainConfig};
use super::doc::Example;
use super::features::{BucketNamer, ConfigError, FeatureBuf, Featurizer};
use super::model::{LocalModel, ModelKind, NamedBucket, TrainingMetadata, sigmoid, softmax};
use crate::classify::Label;
use crate::util::Rng;

/// Progress after one epoch, for the progress callback.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// The epoch just finished, from 1.
    pub epoch: usize,
    /// The number of epochs.
    pub epochs: usize,
    /// The mean log-loss of each example just before the model learnt from
    /// it in this epoch (progressive validation loss).
    pub log_loss: f64,
    /// Time since training started.
    pub elapsed: Duration,
}

/// Why training could not start.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrainError {
    /// No examples.
    #[error("no training examples: give at least one example of each of two labels")]
    NoExamples,
    /// An example has no label.
    #[error(
        "training example {index} (id {id:?}) has no label: label it or leave it out of training"
    )]
    Unlabeled {
        /// Its position.
        index: usize,
        /// Its id, if any.
        id: Option<String>,
    },
    /// Fewer than two labels.
    #[error("training needs at least two labels, found only {found:?}")]
    OneLabel {
        /// The labels found.
        found: Vec<String>,
    },
    /// The positive label of a binary task does not occur.
    #[error(
        "the positive label {positive:?} does not occur in the training data; labels found: {found:?}"
    )]
    UnknownPositive {
        /// The positive label asked for.
        positive: String,
        /// The labels found.
        found: Vec<String>,
    },
    /// A numeric setting is out of range.
    #[error("training setting {name} is {value}, expected {expected}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// The value found.
        value: f64,
        /// The valid range.
        expected: &'static str,
    },
    /// The featurizer configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// How many buckets per weight column get a readable name for reports.
const NAMED_PER_COLUMN: usize = 200;

impl LocalModel {
    /// Trains a model on labeled examples. See [`TrainConfig`] and the
    /// example on [`LocalModel`].
    pub fn train(examples: &[Example], config: &TrainConfig) -> Result<LocalModel, TrainError> {
        LocalModel::train_with_progress(examples, config, |_| {})
    }

    /// Trains a model, calling `progress` after each epoch.
    pub fn train_with_progress(
        examples: &[Example],
        config: &TrainConfig,
        mut progress: impl FnMut(&EpochReport),
    ) -> Result<LocalModel, TrainError> {
        let started = Instant::now();
        check_settings(config)?;
        let (kind, labels, targets, label_counts) = targets(examples, &config.task)?;
        let featurizer = Featurizer::fit(config.featurizer.clone(), examples.iter())?;
        let data = Matrix::build(&featurizer, examples);
        let missing_fields = featurizer.missing_fields().into_iter().collect();
        let columns = match kind {
            ModelKind::Binary => 1,
            ModelKind::Multinomial => labels.len(),
        };
        let class_weights = class_weights(&config.class_weight, &labels, &targets);
        let mut sgd = Sgd::new(data.columns.len(), columns, config);
        sgd.init_bias(&targets, &class_weights, labels.len(), kind);

        let mut order: Vec<usize> = (0..examples.len()).collect();
        let mut rng = Rng::new(config.seed);
        for epoch in 1..=config.epochs {
            for i in (1..order.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                order.swap(i, j);
            }
            let mut loss = 0.0;
            for &i in &order {
                let y = targets[i];
                loss += sgd.step(data.row(i), y, class_weights[y], kind);
            }
            progress(&EpochReport {
                epoch,
                epochs: config.epochs,
                log_loss: loss / examples.len() as f64,
                elapsed: started.elapsed(),
            });
        }

        let dim = featurizer.dim();
        let mut weights = vec![0.0f32; dim * columns];
        for (compact, &bucket) in data.columns.iter().enumerate() {
            let at = bucket as usize * columns;
            for (dst, &w) in weights[at..at + columns]
                .iter_mut()
                .zip(sgd.weights(compact))
            {
                *dst = w;
            }
        }
        let bias: Vec<f32> = sgd.bias.iter().map(|&b| b as f32).collect();
        let mut model = LocalModel {
            featurizer,
            kind,
            labels: labels.into_iter().map(Label::from).collect(),
            weights,
            bias,
            policy: None,
            metadata: TrainingMetadata {
                config: config.clone(),
                examples: examples.len(),
                label_counts,
                train_log_loss: 0.0,
                train_seconds: 0.0,
                trained_at_unix: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                crate_version: env!("CARGO_PKG_VERSION").to_string(),
                missing_fields,
            },
            evaluation: None,
            feature_names: Vec::new(),
        };
        model.metadata.train_log_loss = train_log_loss(&model, &data, &targets);
        model.feature_names = name_top_buckets(&model, examples, &data.columns);
        model.metadata.train_seconds = started.elapsed().as_secs_f64();
        Ok(model)
    }
}

fn check_settings(config: &TrainConfig) -> Result<(), TrainError> {
    let checks: [(&'static str, f64, bool, &'static str); 4] = [
        (
            "epochs",
            config.epochs as f64,
            (1..=10_000).contains(&config.epochs),
            "1..=10000",
        ),
        (
            "learning_rate",
            config.learning_rate,
            config.learning_rate > 0.0 && config.learning_rate.is_finite(),
            "a finite number > 0",
        ),
        (
            "l2",
            config.l2,
            config.l2 >= 0.0 && config.l2.is_finite(),
            "a finite number >= 0",
        ),
        (
            "l1",
            config.l1,
            config.l1 >= 0.0 && config.l1.is_finite(),
            "a finite number >= 0",
        ),
    ];
    for (name, value, ok, expected) in checks {
        if !ok {
            return Err(TrainError::Setting {
                name,
                value,
                expected,
            });
        }
    }
    if let ClassWeight::Custom(map) = &config.class_weight
        && let Some((_, &w)) = map.iter().find(|(_, w)| !(w.is_finite() && **w > 0.0))
    {
        return Err(TrainError::Setting {
            name: "class_weight",
            value: w,
            expected: "finite weights > 0",
        });
    }
    Ok(())
}

type Targets = (ModelKind, Vec<String>, Vec<usize>, BTreeMap<String, usize>);

/// The model kind, its labels, each example's class index and the raw label
/// counts.
fn targets(examples: &[Example], task: &Task) -> Result<Targets, TrainError> {
    if examples.is_empty() {
        return Err(TrainError::NoExamples);
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (index, e) in examples.iter().enumerate() {
        let label = e.label.as_ref().ok_or_else(|| TrainError::Unlabeled {
            index,
            id: e.id.clone(),
        })?;
        *counts.entry(label.clone()).or_default() += 1;
    }
    let found: Vec<String> = counts.keys().cloned().collect();
    if found.len() < 2 {
        return Err(TrainError::OneLabel { found });
    }
    let label_of = |e: &Example| e.label.as_deref().unwrap_or_default().to_string();
    match task {
        Task::Binary { positive } => {
            if !counts.contains_key(positive) {
                return Err(TrainError::UnknownPositive {
                    positive: positive.clone(),
                    found,
                });
            }
            let others: Vec<&String> = found.iter().filter(|l| *l != positive).collect();
            let negative = match others.as_slice() {
                [only] => (*only).clone(),
                _ => format!("not_{positive}"),
            };
            let targets = examples
                .iter()
                .map(|e| usize::from(label_of(e) == *positive))
                .collect();
            Ok((
                ModelKind::Binary,
                vec![negative, positive.clone()],
                targets,
                counts,
            ))
        }
        Task::Multinomial => {
            let index: HashMap<&str, usize> = found
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i))
                .collect();
            let targets = examples
                .iter()
                .map(|e| index.get(label_of(e).as_str()).copied().unwrap_or(0))
                .collect();
            Ok((ModelKind::Multinomial, found.clone(), targets, counts))
        }
    }
}

/// One weight per class index.
fn class_weights(cw: &ClassWeight, labels: &[String], targets: &[usize]) -> Vec<f64> {
    let k = labels.len();
    match cw {
        ClassWeight::Uniform => vec![1.0; k],
        ClassWeight::Balanced => {
            let mut n = vec![0usize; k];
            targets.iter().for_each(|&t| n[t] += 1);
            n.iter()
                .map(|&c| {
                    if c == 0 {
                        1.0
                    } else {
                        targets.len() as f64 / (k as f64 * c as f64)
                    }
                })
                .collect()
        }
        ClassWeight::Custom(map) => labels
            .iter()
            .map(|l| map.get(l).copied().unwrap_or(1.0))
            .collect(),
    }
}

/// The training data featurized once, in compressed sparse rows, with
/// buckets renumbered to the ones that occur (so training memory follows
/// the data, not `2^bits`). Each row lists each column once, in the order
/// the featurizer first emitted it; features of one row that share a bucket
/// are summed, and sums that cancel to zero are dropped.
struct Matrix {
    offsets: Vec<usize>,
    cols: Vec<u32>,
    values: Vec<f32>,
    /// Compact column -> bucket.
    columns: Vec<u32>,
}

/// No compact column yet.
const UNSEEN: u32 = u32::MAX;

impl Matrix {
    fn build(featurizer: &Featurizer, examples: &[Example]) -> Matrix {
        let mut buf = FeatureBuf::new();
        let mut offsets = Vec::with_capacity(examples.len() + 1);
        offsets.push(0);
        let mut cols: Vec<u32> = Vec::new();
        let mut values: Vec<f32> = Vec::new();
        // Bucket -> compact column, numbered in order of first occurrence.
        let mut compact = vec![UNSEEN; featurizer.dim()];
        let mut columns: Vec<u32> = Vec::new();
        // Compact column -> (the last row it was in, its position in `cols`).
        let mut last: Vec<(usize, usize)> = Vec::new();
        for (row, e) in examples.iter().enumerate() {
            let start = cols.len();
            for f in featurizer.featurize(e, &mut buf) {
                let Some(slot) = compact.get_mut(f.index as usize) else {
                    continue;
                };
                if *slot == UNSEEN {
                    *slot = columns.len() as u32;
                    columns.push(f.index);
                    last.push((usize::MAX, 0));
                }
                let c = *slot as usize;
                match last[c] {
                    (r, pos) if r == row => values[pos] += f.value,
                    _ => {
                        last[c] = (row, cols.len());
                        cols.push(c as u32);
                        values.push(f.value);
                    }
                }
            }
            // Drop sums that cancelled (colliding features of opposite sign).
            let mut kept = start;
            for i in start..cols.len() {
                if values[i] != 0.0 {
                    cols[kept] = cols[i];
                    values[kept] = values[i];
                    kept += 1;
                }
            }
            cols.truncate(kept);
            values.truncate(kept);
            offsets.push(cols.len());
        }
        Matrix {
            offsets,
            cols,
            values,
            columns,
        }
    }

    fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.offsets[i], self.offsets[i + 1]);
        (&self.cols[a..b], &self.values[a..b])
    }
}

/// AdaGrad state over compact columns.
struct Sgd {
    /// Per compact column, `k` weights then `k` sums of squared gradients
    /// (adjacent, so one step touches one place per feature). `f32`, as the
    /// model keeps them: half the memory traffic and twice the SIMD lanes
    /// of `f64`.
    state: Vec<f32>,
    bias: Vec<f64>,
    bias_g2: Vec<f64>,
    k: usize,
    eta: f64,
    l2: f64,
    l1: f64,
    z: Vec<f64>,
    /// `z` in f32 when there are more than 8 labels.
    zf: Vec<f32>,
}

const EPS: f64 = 1e-8;

impl Sgd {
    fn new(dim: usize, k: usize, config: &TrainConfig) -> Sgd {
        Sgd {
            state: vec![0.0; dim * 2 * k],
            bias: vec![0.0; k],
            bias_g2: vec![0.0; k],
            k,
            eta: config.learning_rate,
            l2: config.l2,
            l1: config.l1,
            z: vec![0.0; k],
            zf: Vec::new(),
        }
    }

    /// The weights of compact column `col`.
    fn weights(&self, col: usize) -> &[f32] {
        let at = col * 2 * self.k;
        &self.state[at..at + self.k]
    }

    /// Starts the biases at the (weighted) class log-priors.
    fn init_bias(&mut self, targets: &[usize], weights: &[f64], labels: usize, kind: ModelKind) {
        let mut mass = vec![0.0; labels];
        for &t in targets {
            mass[t] += weights[t];
        }
        let total: f64 = mass.iter().sum();
        let prior = |m: f64| (m / total).clamp(1e-6, 1.0 - 1e-6);
        match kind {
            ModelKind::Binary => {
                let p = prior(mass[1]);
                self.bias[0] = (p / (1.0 - p)).ln();
            }
            ModelKind::Multinomial => {
                for (b, &m) in self.bias.iter_mut().zip(&mass) {
                    *b = prior(m).ln();
                }
            }
        }
    }

    /// One step on one example; returns its log-loss before the step.
    fn step(&mut self, row: (&[u32], &[f32]), y: usize, weight: f64, kind: ModelKind) -> f64 {
        // The same code, specialised for the common widths so the compiler
        // unrolls the per-label loops (the results are the same).
        match self.k {
            1 => self.step_k(1, row, y, weight, kind),
            2 => self.step_k(2, row, y, weight, kind),
            3 => self.step_k(3, row, y, weight, kind),
            4 => self.step_k(4, row, y, weight, kind),
            5 => self.step_k(5, row, y, weight, kind),
            6 => self.step_k(6, row, y, weight, kind),
            7 => self.step_k(7, row, y, weight, kind),
            8 => self.step_k(8, row, y, weight, kind),
            k => self.step_k(k, row, y, weight, kind),
        }
    }

    #[inline(always)]
    fn step_k(
        &mut self,
        k: usize,
        (cols, vals): (&[u32], &[f32]),
        y: usize,
        weight: f64,
        kind: ModelKind,
    ) -> f64 {
        let width = 2 * k;
        let z = &mut self.z[..k];
        z.copy_from_slice(&self.bias[..k]);
        for (&c, &v) in cols.iter().zip(vals) {
            let at = c as usize * width;
            let w = &self.state[at..at + k];
            for (z, &w) in z.iter_mut().zip(w) {
                *z += f64::from(w) * f64::from(v);
            }
        }
        // Gradient of the loss with respect to each logit, kept in `z`.
        let loss = match kind {
            ModelKind::Binary => {
                let p = sigmoid(z[0]);
                let target = if y == 1 { 1.0 } else { 0.0 };
                z[0] = weight * (p - target);
                let q = if y == 1 { p } else { 1.0 - p };
                -q.max(1e-15).ln()
            }
            ModelKind::Multinomial => {
                softmax(z);
                let q = z[y];
                for (c, z) in z.iter_mut().enumerate() {
                    let target = if c == y { 1.0 } else { 0.0 };
                    *z = weight * (*z - target);
                }
                -q.max(1e-15).ln()
            }
        };
        let (eta, l2, l1) = (self.eta, self.l2, self.l1);
        for ((b, g2), &g) in self.bias.iter_mut().zip(&mut self.bias_g2).zip(&*z) {
            *g2 += g * g;
            *b -= eta * g / (g2.sqrt() + EPS);
        }
        // The per-feature update in f32. Two copies of the loop so the
        // common one (no L1) has no branch inside and the compiler can
        // vectorise it across labels.
        let (eta, l2, l1) = (eta as f32, l2 as f32, l1 as f32);
        let mut zf = [0.0f32; 8];
        let zf: &mut [f32] = if k <= 8 {
            &mut zf[..k]
        } else {
            self.zf.resize(k, 0.0);
            &mut self.zf
        };
        for (zf, &z) in zf.iter_mut().zip(&*z) {
            *zf = z as f32;
        }
        let zf = &*zf;
        let state = &mut self.state;
        let update = |g: f32, w: &mut f32, g2: &mut f32| {
            *g2 += g * g;
            let rate = eta / (g2.sqrt() + EPS as f32);
            *w -= rate * g;
            rate
        };
        for (&col, &v) in cols.iter().zip(vals) {
            let at = col as usize * width;
            let (w, g2) = state[at..at + width].split_at_mut(k);
            if l1 > 0.0 {
                for ((w, g2), &z) in w.iter_mut().zip(g2.iter_mut()).zip(zf) {
                    let rate = update(z * v + l2 * *w, w, g2);
                    *w = w.signum() * (w.abs() - rate * l1).max(0.0);
                }
            } else {
                for ((w, g2), &z) in w.iter_mut().zip(g2.iter_mut()).zip(zf) {
                    update(z * v + l2 * *w, w, g2);
                }
            }
        }
        loss
    }
}

/// Mean log-loss of the final (f32) model on the training rows.
fn train_log_loss(model: &LocalModel, data: &Matrix, targets: &[usize]) -> f64 {
    let mut features = Vec::new();
    let mut z = vec![0.0; model.bias.len()];
    let mut total = 0.0;
    for (i, &y) in targets.iter().enumerate() {
        let (cols, vals) = data.row(i);
        features.clear();
        features.extend(
            cols.iter()
                .zip(vals)
                .map(|(&c, &v)| super::features::Feature {
                    index: data.columns[c as usize],
                    value: v,
                }),
        );
        model.logits(&features, &mut z);
        let q = match model.kind {
            ModelKind::Binary => {
                let p = sigmoid(z[0]);
                if y == 1 { p } else { 1.0 - p }
            }
            ModelKind::Multinomial => {
                softmax(&mut z);
                z[y]
            }
        };
        total -= q.max(1e-15).ln();
    }
    total / targets.len().max(1) as f64
}

/// Names the buckets with the largest |weight| in each column, from the
/// first training example that has a feature in each. `buckets` are the
/// buckets that occur in the training data (the only ones with weights).
fn name_top_buckets(model: &LocalModel, examples: &[Example], buckets: &[u32]) -> Vec<NamedBucket> {
    let k = model.bias.len();
    let mut wanted: Vec<u32> = Vec::new();
    let mut col: Vec<(u32, f32)> = Vec::with_capacity(buckets.len());
    for c in 0..k {
        col.clear();
        col.extend(buckets.iter().filter_map(|&b| {
            let w = *model.weights.get(b as usize * k + c)?;
            (w != 0.0).then_some((b, w))
        }));
        let by_size =
            |a: &(u32, f32), b: &(u32, f32)| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0));
        if col.len() > NAMED_PER_COLUMN {
            col.select_nth_unstable_by(NAMED_PER_COLUMN, by_size);
            col.truncate(NAMED_PER_COLUMN);
        }
        wanted.extend(col.iter().map(|&(b, _)| b));
    }
    let mut namer = BucketNamer::new(model.featurizer.dim(), wanted);
    let mut buf = FeatureBuf::new();
    for e in examples {
        if namer.left() == 0 {
            break;
        }
        model.featurizer.name_buckets(e, &mut buf, &mut namer);
    }
    namer
        .into_names()
        .into_iter()
        .map(|(bucket, (sign, name))| NamedBucket { bucket, sign, name })
        .collect()
}
