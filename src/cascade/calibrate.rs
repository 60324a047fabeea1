//! Choosing a cascade's uncertain band from labeled data: [`calibrate`].

use serde::Serialize;

use super::UncertainBand;
use crate::local::Costs;

/// One labeled item, as the calibration sees it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// The gold answer: the item is positive (it needs someone).
    pub positive: bool,
    /// Stage 1's positive score; `None` (or NaN) when it gives none, so
    /// stage 2 always decides the item.
    pub first_score: Option<f64>,
    /// Stage 2's decision for the item once the policy has read it: `true`
    /// when a person sees it (notified or sent to review; also when stage
    /// 2 fails and the cascade falls back to review), `false` when it is
    /// discarded.
    pub second_positive: bool,
}

impl Sample {
    fn score(&self) -> Option<f64> {
        self.first_score.filter(|s| !s.is_nan())
    }
}

/// What one band costs on the calibration data.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BandCost {
    /// The band.
    pub band: UncertainBand,
    /// Expected cost per record: (false negatives x their cost + false
    /// positives x theirs + stage-2 calls x the price per call) / records.
    pub cost_per_record: f64,
    /// Share of records that reach stage 2, in `[0, 1]`.
    pub second_share: f64,
    /// Records that reach stage 2.
    pub second_calls: usize,
    /// Positives the cascade discards.
    pub false_negatives: usize,
    /// Negatives the cascade sends to a person.
    pub false_positives: usize,
}

/// Why [`calibrate`] could not run.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum CalibrateError {
    /// No samples.
    #[error("calibrating a cascade needs labeled samples: give at least one (got none)")]
    NoSamples,
    /// A cost or the price is negative, NaN or infinite.
    #[error(
        "costs must be finite and >= 0: pass Costs::new(fn, fp) and a stage-2 price like 0.002 (got {what} = {value})"
    )]
    InvalidCost {
        /// Which cost.
        what: &'static str,
        /// Its value.
        value: f64,
    },
}

/// The band chosen by [`calibrate`], with the two baselines priced on the
/// same data.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    /// The band of least expected cost (on ties: the fewest stage-2 calls,
    /// then the narrowest).
    pub best: BandCost,
    /// Stage 1 alone (the empty band).
    pub first_only: BandCost,
    /// Stage 2 for everything.
    pub second_only: BandCost,
    #[serde(skip)]
    samples: Vec<Sample>,
    #[serde(skip)]
    threshold: f64,
    #[serde(skip)]
    costs: Costs,
    #[serde(skip)]
    price: f64,
}

impl Calibration {
    /// Prices any band on the calibration data: for a cost curve.
    pub fn evaluate(&self, band: UncertainBand) -> BandCost {
        evaluate(&self.samples, band, self.threshold, self.costs, self.price)
    }

    /// The calibration samples.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

fn evaluate(
    samples: &[Sample],
    band: UncertainBand,
    threshold: f64,
    costs: Costs,
    price: f64,
) -> BandCost {
    let (mut calls, mut fneg, mut fpos) = (0usize, 0usize, 0usize);
    for s in samples {
        let decision = match s.score() {
            Some(score) if !band.contains(score) => score >= threshold,
            _ => {
                calls += 1;
                s.second_positive
            }
        };
        match (s.positive, decision) {
            (true, false) => fneg += 1,
            (false, true) => fpos += 1,
            _ => {}
        }
    }
    let n = samples.len().max(1) as f64;
    BandCost {
        band,
        cost_per_record: (fneg as f64 * costs.false_negative
            + fpos as f64 * costs.false_positive
            + calls as f64 * price)
            / n,
        second_share: calls as f64 / n,
        second_calls: calls,
        false_negatives: fneg,
        false_positives: fpos,
    }
}

/// Picks the uncertain band of least expected cost per record.
///
/// `threshold` is stage 1's decision threshold (a score at or above it
/// means a person sees the item); `costs` prices a false negative and a
/// false positive; `price` is one stage-2 call, in the same unit. Every
/// band whose ends lie between distinct stage-1 scores is tried (the
/// reported ends are midpoints between neighbouring scores, the outer ones
/// 0 and 1), so the result is the exact optimum on this data; validate it
/// on data it was not chosen on.
///
/// ```
/// use streamsift::cascade::{Sample, calibrate};
/// use streamsift::local::Costs;
///
/// // Stage 1 is unsure around 0.5; stage 2 is always right.
/// let samples: Vec<Sample> = (0..100)
///     .map(|i| {
///         let score = i as f64 / 100.0;
///         // Sure below 0.3 (noise) and from 0.7 (actionable); a coin toss between.
///         let unsure = score > 0.3 && score < 0.7;
///         let positive = score >= 0.7 || (unsure && (i * 7) % 10 < 5);
///         Sample { positive, first_score: Some(score), second_positive: positive }
///     })
///     .collect();
/// let c = calibrate(&samples, 0.5, Costs::new(10.0, 1.0), 0.05).unwrap();
/// assert!(c.best.cost_per_record <= c.first_only.cost_per_record);
/// assert!(c.best.cost_per_record <= c.second_only.cost_per_record);
/// assert!(c.best.second_share < 1.0);
/// ```
pub fn calibrate(
    samples: &[Sample],
    threshold: f64,
    costs: Costs,
    price: f64,
) -> Result<Calibration, CalibrateError> {
    if samples.is_empty() {
        return Err(CalibrateError::NoSamples);
    }
    for (what, value) in [
        ("false-negative cost", costs.false_negative),
        ("false-positive cost", costs.false_positive),
        ("stage-2 price", price),
    ] {
        if !value.is_finite() || value < 0.0 {
            return Err(CalibrateError::InvalidCost { what, value });
        }
    }
    // Cost of stage 1 and of stage 2 deciding one sample.
    let error_cost = |positive: bool, decision: bool| match (positive, decision) {
        (true, false) => costs.false_negative,
        (false, true) => costs.false_positive,
        _ => 0.0,
    };
    let mut scored: Vec<(f64, f64, f64)> = Vec::new();
    for s in samples {
        // Unscored samples cost the same under every band.
        if let Some(score) = s.score() {
            scored.push((
                score,
                error_cost(s.positive, score >= threshold),
                error_cost(s.positive, s.second_positive) + price,
            ));
        }
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Groups of equal scores: (score, stage-1 cost, stage-2 cost, count).
    let mut groups: Vec<(f64, f64, f64, usize)> = Vec::new();
    for (score, c1, c2) in scored {
        match groups.last_mut() {
            Some(g) if g.0 == score => {
                g.1 += c1;
                g.2 += c2;
                g.3 += 1;
            }
            _ => groups.push((score, c1, c2, 1)),
        }
    }
    let m = groups.len();
    let mut p1 = vec![0.0; m + 1];
    let mut p2 = vec![0.0; m + 1];
    let mut pn = vec![0usize; m + 1];
    for (k, g) in groups.iter().enumerate() {
        p1[k + 1] = p1[k] + g.1;
        p2[k + 1] = p2[k] + g.2;
        pn[k + 1] = pn[k] + g.3;
    }
    // The empty band, then every [a, b] of groups.
    let mut best: (f64, usize, usize, Option<(usize, usize)>) = (p1[m], 0, 0, None);
    let better = |cost: f64, calls: usize, width: usize, best: &(f64, usize, usize, _)| {
        let eps = 1e-9 * (1.0 + best.0.abs());
        cost < best.0 - eps || (cost <= best.0 + eps && (calls, width) < (best.1, best.2))
    };
    for a in 0..m {
        for b in a..m {
            let cost = p1[a] + (p2[b + 1] - p2[a]) + (p1[m] - p1[b + 1]);
            let calls = pn[b + 1] - pn[a];
            if better(cost, calls, b - a + 1, &best) {
                best = (cost, calls, b - a + 1, Some((a, b)));
            }
        }
    }
    let band = match best.3 {
        None => UncertainBand::empty(),
        Some((a, b)) => {
            let low = if a == 0 {
                groups[0].0.min(0.0)
            } else {
                (groups[a - 1].0 + groups[a].0) / 2.0
            };
            let high = if b == m - 1 {
                groups[m - 1].0.max(1.0)
            } else {
                (groups[b].0 + groups[b + 1].0) / 2.0
            };
            UncertainBand::new(low, high)
        }
    };
    let samples = samples.to_vec();
    Ok(Calibration {
        best: evaluate(&samples, band, threshold, costs, price),
        first_only: evaluate(&samples, UncertainBand::empty(), threshold, costs, price),
        second_only: evaluate(&samples, UncertainBand::all(), threshold, costs, price),
        samples,
        threshold,
        costs,
        price,
    })
}
