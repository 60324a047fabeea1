//! Evaluation of a classifier's scores: ROC and PR curves, AUC, confusion
//! counts, precision/recall/F1, log-loss, calibration, and the choice of a
//! decision threshold by cost or by recall.
//!
//! Every result type is serde data, so a model file can carry its figures.
//!
//! **Threshold convention:** a score `>= threshold` is predicted positive.
//! This matches [`Policy::Binary`], which notifies at
//! or above its threshold.
//!
//! **Degenerate input** is an [`EvalError`], never a silent NaN: no
//! examples, mismatched lengths, non-finite scores, and (for AUC and the
//! curves) data with only one class. A ratio with a zero denominator, such
//! as precision when nothing is predicted positive, is `None`.
//!
//! ```
//! use streamsift::local::{evaluate_binary, BinaryEvalOptions, Costs};
//!
//! let scores = [0.1, 0.4, 0.35, 0.8, 0.05, 0.6];
//! let truth = [false, false, true, true, false, true];
//! let eval = evaluate_binary(&scores, &truth, &BinaryEvalOptions::default())?;
//! assert!((eval.roc_auc - 8.0 / 9.0).abs() < 1e-12);
//! // With a false negative ten times as costly as a false positive, the
//! // cheapest rule flags everything at or above 0.35 (one false positive).
//! assert_eq!(eval.threshold.threshold, 0.35);
//! assert_eq!(eval.threshold.confusion.fp, 1);
//! let policy = eval.threshold.policy("support");
//! # let _ = policy;
//! # Ok::<(), streamsift::local::EvalError>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::classify::Label;
use crate::policy::Policy;

/// Probabilities are clamped to `[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]` in
/// log-loss, so a confident mistake costs about 34.5 nats, not infinity.
pub const LOG_LOSS_EPS: f64 = 1e-15;

/// Scores or labels that cannot be evaluated.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// No examples.
    #[error("no examples to evaluate; pass at least one score and its truth")]
    Empty,
    /// Scores and truth differ in length.
    #[error("{scores} scores but {truth} truth values; pass exactly one score per example")]
    LengthMismatch {
        /// Number of scores (or probability rows).
        scores: usize,
        /// Number of truth values.
        truth: usize,
    },
    /// The figure needs both classes, but the data has one.
    #[error(
        "{figure} is undefined: all {n} examples are {class}; evaluate on data that has both classes"
    )]
    OneClass {
        /// The figure asked for (`"ROC AUC"`, ...).
        figure: &'static str,
        /// Number of examples.
        n: usize,
        /// `"positive"` or `"negative"`.
        class: &'static str,
    },
    /// A score is NaN or infinite.
    #[error("score {index} is {value}; expected a finite number")]
    NotFinite {
        /// Its index.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A probability is outside `[0, 1]` (or NaN).
    #[error("example {index} has probability {value}; expected a probability in [0, 1]")]
    NotProbability {
        /// The example's index.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Costs that cannot rank thresholds.
    #[error(
        "invalid costs (false negative {false_negative}, false positive {false_positive}): both must be finite and >= 0, and not both 0"
    )]
    InvalidCosts {
        /// Cost of a false negative.
        false_negative: f64,
        /// Cost of a false positive.
        false_positive: f64,
    },
    /// A probability row has the wrong number of entries.
    #[error("probability row {index} has {found} entries; expected {expected}, one per label")]
    RowLength {
        /// The row.
        index: usize,
        /// Its length.
        found: usize,
        /// The number of labels.
        expected: usize,
    },
    /// A true class index is not a label.
    #[error("truth {index} is class {class}, but there are only {n_classes} labels")]
    ClassOutOfRange {
        /// The example.
        index: usize,
        /// Its class.
        class: usize,
        /// The number of labels.
        n_classes: usize,
    },
    /// Another parameter is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The costs of the two kinds of mistake. Only their ratio matters for the
/// choice of threshold; their scale sets the unit of `expected_cost`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    /// The cost of missing a positive (an unanswered support request).
    pub false_negative: f64,
    /// The cost of a false alarm (someone reads a tweet that needed nothing).
    pub false_positive: f64,
}

impl Default for Costs {
    /// 10 : 1 — a missed request costs ten false alarms.
    fn default() -> Self {
        Costs {
            false_negative: 10.0,
            false_positive: 1.0,
        }
    }
}

impl Costs {
    /// Costs of a false negative and a false positive.
    pub fn new(false_negative: f64, false_positive: f64) -> Self {
        Costs {
            false_negative,
            false_positive,
        }
    }

    fn validate(&self) -> Result<(), EvalError> {
        let ok = |c: f64| c.is_finite() && c >= 0.0;
        if ok(self.false_negative)
            && ok(self.false_positive)
            && (self.false_negative > 0.0 || self.false_positive > 0.0)
        {
            Ok(())
        } else {
            Err(EvalError::InvalidCosts {
                false_negative: self.false_negative,
                false_positive: self.false_positive,
            })
        }
    }
}

/// Counts of a binary decision against the truth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

impl Confusion {
    /// Counts at `threshold` (a score `>= threshold` is positive).
    ///
    /// ```
    /// use streamsift::local::Confusion;
    /// let c = Confusion::at(&[0.2, 0.5, 0.9], &[false, true, false], 0.5)?;
    /// assert_eq!((c.tp, c.fp, c.tn, c.fn_), (1, 1, 1, 0));
    /// assert_eq!(c.precision(), Some(0.5));
    /// # Ok::<(), streamsift::local::EvalError>(())
    /// ```
    pub fn at(scores: &[f64], truth: &[bool], threshold: f64) -> Result<Confusion, EvalError> {
        check_binary(scores, truth)?;
        let mut c = Confusion::default();
        for (&s, &t) in scores.iter().zip(truth) {
            match (s >= threshold, t) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        Ok(c)
    }

    /// All examples.
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// `tp / (tp + fp)`; `None` when nothing is predicted positive.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }

    /// `tp / (tp + fn)`; `None` when there are no positives.
    pub fn recall(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// `fp / (fp + tn)`; `None` when there are no negatives.
    pub fn false_positive_rate(&self) -> Option<f64> {
        ratio(self.fp, self.fp + self.tn)
    }

    /// `2tp / (2tp + fp + fn)`; `None` when there are no positives and none
    /// is predicted.
    pub fn f1(&self) -> Option<f64> {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// `(tp + tn) / total`; `None` when empty.
    pub fn accuracy(&self) -> Option<f64> {
        ratio(self.tp + self.tn, self.total())
    }

    /// `fn × cost_fn + fp × cost_fp`.
    pub fn total_cost(&self, costs: &Costs) -> f64 {
        self.fn_ as f64 * costs.false_negative + self.fp as f64 * costs.false_positive
    }
}

fn check_binary(scores: &[f64], truth: &[bool]) -> Result<(), EvalError> {
    if scores.len() != truth.len() {
        return Err(EvalError::LengthMismatch {
            scores: scores.len(),
            truth: truth.len(),
        });
    }
    if scores.is_empty() {
        return Err(EvalError::Empty);
    }
    if let Some((index, &value)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(EvalError::NotFinite { index, value });
    }
    Ok(())
}

fn check_probabilities(scores: &[f64]) -> Result<(), EvalError> {
    match scores
        .iter()
        .enumerate()
        .find(|(_, s)| !(0.0..=1.0).contains(*s))
    {
        Some((index, &value)) => Err(EvalError::NotProbability { index, value }),
        None => Ok(()),
    }
}

/// Cumulative counts at each distinct score, from the highest down.
struct Sweep {
    /// Distinct scores, descending.
    thresholds: Vec<f64>,
    /// True positives with score >= thresholds[k].
    tp: Vec<u64>,
    /// False positives with score >= thresholds[k].
    fp: Vec<u64>,
    positives: u64,
    negatives: u64,
}

impl Sweep {
    fn new(scores: &[f64], truth: &[bool]) -> Result<Sweep, EvalError> {
        check_binary(scores, truth)?;
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let mut sweep = Sweep {
            thresholds: Vec::new(),
            tp: Vec::new(),
            fp: Vec::new(),
            positives: 0,
            negatives: 0,
        };
        let (mut tp, mut fp) = (0u64, 0u64);
        for (k, &i) in order.iter().enumerate() {
            if truth[i] {
                tp += 1;
            } else {
                fp += 1;
            }
            let last_of_group = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
            if last_of_group {
                sweep.thresholds.push(scores[i]);
                sweep.tp.push(tp);
                sweep.fp.push(fp);
            }
        }
        sweep.positives = tp;
        sweep.negatives = fp;
        Ok(sweep)
    }

    fn require_both(&self, figure: &'static str) -> Result<(), EvalError> {
        let n = (self.positives + self.negatives) as usize;
        if self.positives == 0 {
            return Err(EvalError::OneClass {
                figure,
                n,
                class: "negative",
            });
        }
        if self.negatives == 0 {
            return Err(EvalError::OneClass {
                figure,
                n,
                class: "positive",
            });
        }
        Ok(())
    }

    /// A threshold above every score: nothing is predicted positive.
    fn above_all(&self) -> f64 {
        self.thresholds.first().map_or(0.0, |t| t.next_up())
    }

    /// Candidates from the highest threshold (nothing positive) down:
    /// `(threshold, tp, fp)`.
    fn candidates(&self) -> impl Iterator<Item = (f64, u64, u64)> + '_ {
        std::iter::once((self.above_all(), 0, 0)).chain(
            self.thresholds
                .iter()
                .zip(self.tp.iter().zip(&self.fp))
                .map(|(&t, (&tp, &fp))| (t, tp, fp)),
        )
    }

    fn confusion(&self, tp: u64, fp: u64) -> Confusion {
        Confusion {
            tp,
            fp,
            tn: self.negatives - fp,
            fn_: self.positives - tp,
        }
    }
}

/// One point of a ROC curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// Scores `>=` this are positive.
    pub threshold: f64,
    /// False positive rate.
    pub fpr: f64,
    /// True positive rate (recall).
    pub tpr: f64,
}

/// The ROC curve: one point per distinct score, from `(0, 0)` (threshold
/// above every score) to `(1, 1)`. Needs both classes.
pub fn roc_curve(scores: &[f64], truth: &[bool]) -> Result<Vec<RocPoint>, EvalError> {
    let sweep = Sweep::new(scores, truth)?;
    sweep.require_both("the ROC curve")?;
    Ok(roc_from(&sweep))
}

fn roc_from(sweep: &Sweep) -> Vec<RocPoint> {
    let (p, n) = (sweep.positives as f64, sweep.negatives as f64);
    sweep
        .candidates()
        .map(|(threshold, tp, fp)| RocPoint {
            threshold,
            fpr: fp as f64 / n,
            tpr: tp as f64 / p,
        })
        .collect()
}

/// The area under the ROC curve: the probability that a random positive
/// scores above a random negative, a tie counting one half (the
/// Mann–Whitney U statistic over `positives × negatives`). Needs both
/// classes.
///
/// ```
/// use streamsift::local::roc_auc;
/// // 3 of the 4 (positive, negative) pairs are ordered right
/// let auc = roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true])?;
/// assert_eq!(auc, 0.75);
/// # Ok::<(), streamsift::local::EvalError>(())
/// ```
pub fn roc_auc(scores: &[f64], truth: &[bool]) -> Result<f64, EvalError> {
    let sweep = Sweep::new(scores, truth)?;
    sweep.require_both("ROC AUC")?;
    Ok(auc_from(&sweep))
}

fn auc_from(sweep: &Sweep) -> f64 {
    // Trapezoids in integer counts: sum of dfp × (tp_prev + tp), over
    // 2 × P × N. A tied group is one diagonal step, which is where the
    // one-half for ties comes from.
    let (mut prev_tp, mut prev_fp) = (0u128, 0u128);
    let mut twice_area = 0u128;
    for (&tp, &fp) in sweep.tp.iter().zip(&sweep.fp) {
        let (tp, fp) = (u128::from(tp), u128::from(fp));
        twice_area += (fp - prev_fp) * (tp + prev_tp);
        prev_tp = tp;
        prev_fp = fp;
    }
    twice_area as f64 / (2.0 * sweep.positives as f64 * sweep.negatives as f64)
}

/// One point of a precision–recall curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrPoint {
    /// Scores `>=` this are positive.
    pub threshold: f64,
    /// Precision at the threshold.
    pub precision: f64,
    /// Recall at the threshold.
    pub recall: f64,
}

/// The precision–recall curve: one point per distinct score, from the
/// highest threshold down. Needs at least one positive.
pub fn pr_curve(scores: &[f64], truth: &[bool]) -> Result<Vec<PrPoint>, EvalError> {
    let sweep = Sweep::new(scores, truth)?;
    require_positive(&sweep, "the precision-recall curve")?;
    Ok(pr_from(&sweep))
}

fn require_positive(sweep: &Sweep, figure: &'static str) -> Result<(), EvalError> {
    if sweep.positives == 0 {
        return Err(EvalError::OneClass {
            figure,
            n: sweep.negatives as usize,
            class: "negative",
        });
    }
    Ok(())
}

fn pr_from(sweep: &Sweep) -> Vec<PrPoint> {
    let p = sweep.positives as f64;
    sweep
        .thresholds
        .iter()
        .zip(sweep.tp.iter().zip(&sweep.fp))
        .map(|(&threshold, (&tp, &fp))| PrPoint {
            threshold,
            precision: tp as f64 / (tp + fp) as f64,
            recall: tp as f64 / p,
        })
        .collect()
}

/// Average precision: `Σ (Rₖ − Rₖ₋₁) · Pₖ` over the distinct thresholds
/// from the highest down, with `R₀ = 0` (the step-wise area under the PR
/// curve, no interpolation). Needs at least one positive.
///
/// ```
/// use streamsift::local::average_precision;
/// // thresholds 0.8, 0.4, 0.35, 0.1 give (P, R) = (1, ½), (½, ½), (⅔, 1), (½, 1)
/// let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true])?;
/// assert!((ap - (0.5 * 1.0 + 0.5 * 2.0 / 3.0)).abs() < 1e-12);
/// # Ok::<(), streamsift::local::EvalError>(())
/// ```
pub fn average_precision(scores: &[f64], truth: &[bool]) -> Result<f64, EvalError> {
    let sweep = Sweep::new(scores, truth)?;
    require_positive(&sweep, "average precision")?;
    Ok(ap_from(&sweep))
}

fn ap_from(sweep: &Sweep) -> f64 {
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    for point in pr_from(sweep) {
        ap += (point.recall - prev_recall) * point.precision;
        prev_recall = point.recall;
    }
    ap
}

/// Mean binary log-loss (cross-entropy, natural log) of probabilities,
/// clamped to `[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]`.
pub fn log_loss(scores: &[f64], truth: &[bool]) -> Result<f64, EvalError> {
    check_binary(scores, truth)?;
    check_probabilities(scores)?;
    let total: f64 = scores
        .iter()
        .zip(truth)
        .map(|(&s, &t)| {
            let p = s.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            -(if t { p.ln() } else { (1.0 - p).ln() })
        })
        .sum();
    Ok(total / scores.len() as f64)
}

/// Which rule chose a threshold.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum ThresholdRule {
    /// The lowest expected cost.
    MinExpectedCost,
    /// The highest threshold whose recall reaches `target`.
    MinRecall {
        /// The recall asked for.
        target: f64,
    },
}

/// A chosen decision threshold and how it does on the evaluation data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdChoice {
    /// Scores `>=` this are positive.
    pub threshold: f64,
    /// The rule that chose it.
    pub rule: ThresholdRule,
    /// The costs used.
    pub costs: Costs,
    /// Total cost divided by the number of examples.
    pub expected_cost: f64,
    /// Precision at the threshold (`None` if nothing is predicted positive).
    pub precision: Option<f64>,
    /// Recall at the threshold (`None` if there are no positives).
    pub recall: Option<f64>,
    /// The counts at the threshold.
    pub confusion: Confusion,
}

impl ThresholdChoice {
    /// A binary [`Policy`] that notifies `route` at or above the threshold,
    /// ready to be saved with the model.
    ///
    /// ```
    /// use streamsift::{Action, Policy, Prediction};
    /// use streamsift::local::{choose_threshold_by_cost, Costs};
    /// let choice = choose_threshold_by_cost(&[0.2, 0.7], &[false, true], Costs::default())?;
    /// let policy = choice.policy("support");
    /// assert_eq!(policy, Policy::binary(0.7, "support"));
    /// assert_eq!(policy.decide(&Prediction::binary("yes", "no", 0.7)), Action::Notify("support".into()));
    /// # Ok::<(), streamsift::local::EvalError>(())
    /// ```
    pub fn policy(&self, route: impl Into<Label>) -> Policy {
        Policy::binary(self.threshold, route)
    }

    /// F1 at the threshold.
    pub fn f1(&self) -> Option<f64> {
        self.confusion.f1()
    }

    fn new(
        sweep: &Sweep,
        threshold: f64,
        tp: u64,
        fp: u64,
        rule: ThresholdRule,
        costs: Costs,
    ) -> Self {
        let confusion = sweep.confusion(tp, fp);
        ThresholdChoice {
            threshold,
            rule,
            costs,
            expected_cost: confusion.total_cost(&costs) / confusion.total() as f64,
            precision: confusion.precision(),
            recall: confusion.recall(),
            confusion,
        }
    }
}

/// Whether cost `a` is lower than `b` beyond floating-point noise: costs
/// within a relative 1e-12 of each other are a tie.
fn cheaper(a: f64, b: f64) -> bool {
    a < b - 1e-12 * a.abs().max(b.abs())
}

/// Picks the threshold with the lowest total cost
/// `fn × costs.false_negative + fp × costs.false_positive` on this data.
///
/// The candidates are every distinct score (a score `>=` the threshold is
/// positive) and one value just above the highest score (nothing
/// positive), so the best rule of the form "score ≥ t" is always found.
/// **Ties** (costs equal to a relative 1e-12) go to the **highest**
/// threshold: the same cost with fewer notifications. One class only is
/// allowed (with all negatives, the best is to notify nothing).
///
/// ```
/// use streamsift::local::{choose_threshold_by_cost, Costs};
/// let scores = [0.1, 0.4, 0.35, 0.8];
/// let truth = [false, false, true, true];
/// // 10:1 — catching the positive at 0.35 is worth one false positive
/// let c = choose_threshold_by_cost(&scores, &truth, Costs::new(10.0, 1.0))?;
/// assert_eq!((c.threshold, c.confusion.fp, c.confusion.fn_), (0.35, 1, 0));
/// assert_eq!(c.expected_cost, 0.25);
/// // 1:3 — a false positive is dearer; missing one positive is cheaper
/// let c = choose_threshold_by_cost(&scores, &truth, Costs::new(1.0, 3.0))?;
/// assert_eq!((c.threshold, c.confusion.fp, c.confusion.fn_), (0.8, 0, 1));
/// # Ok::<(), streamsift::local::EvalError>(())
/// ```
pub fn choose_threshold_by_cost(
    scores: &[f64],
    truth: &[bool],
    costs: Costs,
) -> Result<ThresholdChoice, EvalError> {
    costs.validate()?;
    let sweep = Sweep::new(scores, truth)?;
    Ok(by_cost(&sweep, costs))
}

fn by_cost(sweep: &Sweep, costs: Costs) -> ThresholdChoice {
    let mut best: Option<(f64, u64, u64, f64)> = None;
    for (t, tp, fp) in sweep.candidates() {
        let cost = sweep.confusion(tp, fp).total_cost(&costs);
        if best.is_none_or(|(_, _, _, c)| cheaper(cost, c)) {
            best = Some((t, tp, fp, cost));
        }
    }
    let (t, tp, fp, _) = best.unwrap_or((sweep.above_all(), 0, 0, 0.0));
    ThresholdChoice::new(sweep, t, tp, fp, ThresholdRule::MinExpectedCost, costs)
}

/// Picks the highest threshold whose recall is at least `min_recall`
/// (candidates as in [`choose_threshold_by_cost`]); `costs` only fill in
/// `expected_cost`. Needs at least one positive.
///
/// ```
/// use streamsift::local::{threshold_for_recall, Costs};
/// let scores = [0.9, 0.8, 0.7, 0.6, 0.5];
/// let truth = [true, false, true, false, true];
/// let c = threshold_for_recall(&scores, &truth, 0.6, Costs::default())?;
/// assert_eq!(c.threshold, 0.7); // recall 2/3
/// assert_eq!(threshold_for_recall(&scores, &truth, 1.0, Costs::default())?.threshold, 0.5);
/// # Ok::<(), streamsift::local::EvalError>(())
/// ```
pub fn threshold_for_recall(
    scores: &[f64],
    truth: &[bool],
    min_recall: f64,
    costs: Costs,
) -> Result<ThresholdChoice, EvalError> {
    costs.validate()?;
    if !(0.0..=1.0).contains(&min_recall) {
        return Err(EvalError::InvalidArgument(format!(
            "min_recall must be in [0, 1], got {min_recall}"
        )));
    }
    let sweep = Sweep::new(scores, truth)?;
    require_positive(&sweep, "recall")?;
    Ok(by_recall(&sweep, min_recall, costs))
}

fn by_recall(sweep: &Sweep, min_recall: f64, costs: Costs) -> ThresholdChoice {
    let p = sweep.positives as f64;
    let rule = ThresholdRule::MinRecall { target: min_recall };
    for (t, tp, fp) in sweep.candidates() {
        if tp as f64 / p >= min_recall {
            return ThresholdChoice::new(sweep, t, tp, fp, rule, costs);
        }
    }
    // The lowest candidate has recall 1, so the loop always returns; keep
    // a total answer anyway.
    let (t, tp, fp) = sweep.candidates().last().unwrap_or((0.0, 0, 0));
    ThresholdChoice::new(sweep, t, tp, fp, rule, costs)
}

/// One bin of a reliability (calibration) table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge (inclusive).
    pub low: f64,
    /// Upper edge (exclusive, except the last bin's, which includes 1).
    pub high: f64,
    /// Examples in the bin.
    pub count: u64,
    /// Positives in the bin.
    pub positives: u64,
    /// Mean predicted probability (`None` for an empty bin).
    pub mean_predicted: Option<f64>,
    /// Observed positive rate (`None` for an empty bin).
    pub observed_rate: Option<f64>,
}

/// Calibration of probabilities: `bins` equal-width bins over `[0, 1]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reliability {
    /// The bins, low to high.
    pub bins: Vec<ReliabilityBin>,
    /// Expected calibration error: `Σ count/n × |mean_predicted − observed_rate|`.
    pub expected_calibration_error: f64,
}

/// A reliability table: in each probability bin, the mean predicted
/// probability against the observed rate of positives. A calibrated model
/// has them close.
///
/// ```
/// use streamsift::local::reliability;
/// let r = reliability(&[0.1, 0.2, 0.9, 0.8], &[false, true, true, true], 2)?;
/// assert_eq!(r.bins[0].count, 2);
/// assert_eq!(r.bins[0].observed_rate, Some(0.5));
/// assert!((r.bins[1].mean_predicted.unwrap() - 0.85).abs() < 1e-12);
/// # Ok::<(), streamsift::local::EvalError>(())
/// ```
pub fn reliability(scores: &[f64], truth: &[bool], bins: usize) -> Result<Reliability, EvalError> {
    check_binary(scores, truth)?;
    check_probabilities(scores)?;
    if bins == 0 {
        return Err(EvalError::InvalidArgument("bins must be at least 1".into()));
    }
    let mut sums = vec![(0u64, 0u64, 0.0f64); bins];
    for (&s, &t) in scores.iter().zip(truth) {
        let b = bin_of(s, bins);
        if let Some(slot) = sums.get_mut(b) {
            slot.0 += 1;
            slot.1 += u64::from(t);
            slot.2 += s;
        }
    }
    let n = scores.len() as f64;
    let mut ece = 0.0;
    let bins = sums
        .iter()
        .enumerate()
        .map(|(i, &(count, positives, sum))| {
            let mean_predicted = (count > 0).then(|| sum / count as f64);
            let observed_rate = ratio(positives, count);
            if let (Some(m), Some(o)) = (mean_predicted, observed_rate) {
                ece += count as f64 / n * (m - o).abs();
            }
            ReliabilityBin {
                low: i as f64 / bins as f64,
                high: (i + 1) as f64 / bins as f64,
                count,
                positives,
                mean_predicted,
                observed_rate,
            }
        })
        .collect();
    Ok(Reliability {
        bins,
        expected_calibration_error: ece,
    })
}

fn bin_of(p: f64, bins: usize) -> usize {
    ((p * bins as f64) as usize).min(bins - 1)
}

/// Counts of scores per bin, separately for each class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreHistogram {
    /// `bins + 1` edges over `[0, 1]`.
    pub edges: Vec<f64>,
    /// Positives per bin.
    pub positive: Vec<u64>,
    /// Negatives per bin.
    pub negative: Vec<u64>,
}

/// A histogram of probabilities per class, `bins` equal-width bins over
/// `[0, 1]` (the last bin includes 1).
pub fn score_histogram(
    scores: &[f64],
    truth: &[bool],
    bins: usize,
) -> Result<ScoreHistogram, EvalError> {
    check_binary(scores, truth)?;
    check_probabilities(scores)?;
    if bins == 0 {
        return Err(EvalError::InvalidArgument("bins must be at least 1".into()));
    }
    let mut h = ScoreHistogram {
        edges: (0..=bins).map(|i| i as f64 / bins as f64).collect(),
        positive: vec![0; bins],
        negative: vec![0; bins],
    };
    for (&s, &t) in scores.iter().zip(truth) {
        let side = if t { &mut h.positive } else { &mut h.negative };
        if let Some(slot) = side.get_mut(bin_of(s, bins)) {
            *slot += 1;
        }
    }
    Ok(h)
}

/// Options of [`evaluate_binary`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BinaryEvalOptions {
    /// Costs for the threshold choice (default 10 : 1).
    pub costs: Costs,
    /// Choose the highest threshold with at least this recall instead of
    /// the cheapest (default `None`: by cost).
    pub min_recall: Option<f64>,
    /// Bins of the reliability table (default 10).
    pub calibration_bins: usize,
    /// Bins of the score histogram (default 20).
    pub histogram_bins: usize,
    /// Keep at most this many points of each curve (default 400), evenly
    /// spaced along the curve with both ends kept, so a model file stays
    /// small. AUC and average precision use every point regardless.
    pub max_curve_points: usize,
}

impl Default for BinaryEvalOptions {
    fn default() -> Self {
        BinaryEvalOptions {
            costs: Costs::default(),
            min_recall: None,
            calibration_bins: 10,
            histogram_bins: 20,
            max_curve_points: 400,
        }
    }
}

/// Everything [`evaluate_binary`] measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BinaryEvaluation {
    /// Examples.
    pub n: u64,
    /// Positive examples.
    pub positives: u64,
    /// Negative examples.
    pub negatives: u64,
    /// Area under the ROC curve.
    pub roc_auc: f64,
    /// Average precision (area under the PR curve, step-wise).
    pub average_precision: f64,
    /// Mean log-loss.
    pub log_loss: f64,
    /// The ROC curve (possibly thinned, see
    /// [`BinaryEvalOptions::max_curve_points`]).
    pub roc: Vec<RocPoint>,
    /// The PR curve (possibly thinned).
    pub pr: Vec<PrPoint>,
    /// The chosen threshold.
    pub threshold: ThresholdChoice,
    /// Counts at 0.5, for comparison with the chosen threshold.
    pub at_half: Confusion,
    /// The reliability table.
    pub reliability: Reliability,
    /// Score histogram per class.
    pub histogram: ScoreHistogram,
}

/// Evaluates probabilities of the positive class against the truth: ROC AUC,
/// average precision, log-loss, the curves, a threshold (by cost, or by
/// recall if [`BinaryEvalOptions::min_recall`] is set), calibration and a
/// histogram. Needs both classes and probabilities in `[0, 1]`.
pub fn evaluate_binary(
    scores: &[f64],
    truth: &[bool],
    options: &BinaryEvalOptions,
) -> Result<BinaryEvaluation, EvalError> {
    options.costs.validate()?;
    let sweep = Sweep::new(scores, truth)?;
    sweep.require_both("ROC AUC")?;
    check_probabilities(scores)?;
    let threshold = match options.min_recall {
        Some(r) if (0.0..=1.0).contains(&r) => by_recall(&sweep, r, options.costs),
        Some(r) => {
            return Err(EvalError::InvalidArgument(format!(
                "min_recall must be in [0, 1], got {r}"
            )));
        }
        None => by_cost(&sweep, options.costs),
    };
    Ok(BinaryEvaluation {
        n: scores.len() as u64,
        positives: sweep.positives,
        negatives: sweep.negatives,
        roc_auc: auc_from(&sweep),
        average_precision: ap_from(&sweep),
        log_loss: log_loss(scores, truth)?,
        roc: thin(roc_from(&sweep), options.max_curve_points),
        pr: thin(pr_from(&sweep), options.max_curve_points),
        threshold,
        at_half: Confusion::at(scores, truth, 0.5)?,
        reliability: reliability(scores, truth, options.calibration_bins)?,
        histogram: score_histogram(scores, truth, options.histogram_bins)?,
    })
}

/// Keeps at most `max` points, evenly spaced by index, first and last kept.
fn thin<T: Copy>(points: Vec<T>, max: usize) -> Vec<T> {
    let len = points.len();
    if len <= max.max(2) {
        return points;
    }
    let max = max.max(2);
    let mut out = Vec::with_capacity(max);
    let mut last = usize::MAX;
    for k in 0..max {
        let i = ((k as f64) * (len - 1) as f64 / (max - 1) as f64).round() as usize;
        if i != last
            && let Some(&p) = points.get(i)
        {
            out.push(p);
            last = i;
        }
    }
    out
}

// ---------------------------------------------------------------- multi-class

/// Precision, recall and F1 of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The class's label.
    pub label: String,
    /// Of the examples predicted as this class, the share that are
    /// (`None` if none is predicted).
    pub precision: Option<f64>,
    /// Of the examples of this class, the share predicted so (`None` if
    /// the class has no examples).
    pub recall: Option<f64>,
    /// `2tp / (2tp + fp + fn)`; `None` only if the class neither occurs
    /// nor is predicted.
    pub f1: Option<f64>,
    /// Examples of this class.
    pub support: u64,
    /// Examples predicted as this class.
    pub predicted: u64,
}

/// Everything [`evaluate_multiclass`] measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MulticlassEvaluation {
    /// The labels, in class-index order.
    pub labels: Vec<String>,
    /// Examples.
    pub n: u64,
    /// `confusion[truth][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// Per-class figures, in class-index order.
    pub per_class: Vec<ClassMetrics>,
    /// Share predicted right.
    pub accuracy: f64,
    /// Mean F1 over the classes whose F1 is defined (that occur or are
    /// predicted).
    pub macro_f1: f64,
    /// Mean log-loss of the true class's probability (clamped).
    pub log_loss: f64,
}

/// Evaluates class probabilities: the prediction is the class of highest
/// probability (a tie goes to the lowest index). `probs` has one row per
/// example, one entry per label, each in `[0, 1]`; any type that is a slice
/// of floats works (`Vec<f64>`, `[f64; 3]`, `&[f64]`).
///
/// ```
/// use streamsift::local::evaluate_multiclass;
/// let labels = ["bug", "billing", "none"];
/// let probs = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.1, 0.4]];
/// let truth = [0, 1, 2, 2];
/// let e = evaluate_multiclass(&truth, &probs, &labels)?;
/// assert_eq!(e.accuracy, 0.75);
/// assert_eq!(e.confusion[2], vec![1, 0, 1]); // one "none" taken for a bug
/// assert_eq!(e.per_class[0].precision, Some(0.5));
/// # Ok::<(), streamsift::local::EvalError>(())
/// ```
pub fn evaluate_multiclass<P: AsRef<[f64]>, L: AsRef<str>>(
    truth: &[usize],
    probs: &[P],
    labels: &[L],
) -> Result<MulticlassEvaluation, EvalError> {
    let k = labels.len();
    if truth.len() != probs.len() {
        return Err(EvalError::LengthMismatch {
            scores: probs.len(),
            truth: truth.len(),
        });
    }
    if truth.is_empty() {
        return Err(EvalError::Empty);
    }
    if k < 2 {
        return Err(EvalError::InvalidArgument(format!(
            "multi-class evaluation needs at least 2 labels, got {k}"
        )));
    }
    let mut confusion = vec![vec![0u64; k]; k];
    let mut loss = 0.0;
    for (index, (&t, row)) in truth.iter().zip(probs).enumerate() {
        let row = row.as_ref();
        if row.len() != k {
            return Err(EvalError::RowLength {
                index,
                found: row.len(),
                expected: k,
            });
        }
        if t >= k {
            return Err(EvalError::ClassOutOfRange {
                index,
                class: t,
                n_classes: k,
            });
        }
        if let Some(&value) = row.iter().find(|p| !(0.0..=1.0).contains(*p)) {
            return Err(EvalError::NotProbability { index, value });
        }
        let mut predicted = 0;
        for (j, &p) in row.iter().enumerate() {
            if p > row[predicted] {
                predicted = j;
            }
        }
        confusion[t][predicted] += 1;
        loss -= row[t].clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS).ln();
    }
    let n = truth.len() as u64;
    let mut per_class = Vec::with_capacity(k);
    let mut correct = 0;
    for (c, label) in labels.iter().enumerate() {
        let tp = confusion[c][c];
        correct += tp;
        let support: u64 = confusion[c].iter().sum();
        let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
        per_class.push(ClassMetrics {
            label: label.as_ref().to_string(),
            precision: ratio(tp, predicted),
            recall: ratio(tp, support),
            f1: ratio(2 * tp, support + predicted),
            support,
            predicted,
        });
    }
    let f1s: Vec<f64> = per_class.iter().filter_map(|c| c.f1).collect();
    Ok(MulticlassEvaluation {
        labels: labels.iter().map(|l| l.as_ref().to_string()).collect(),
        n,
        confusion,
        per_class,
        accuracy: correct as f64 / n as f64,
        macro_f1: f1s.iter().sum::<f64>() / f1s.len().max(1) as f64,
        log_loss: loss / n as f64,
    })
}

/// [`evaluate_multiclass`] with probabilities in one flat row-major slice of
/// `truth.len() × labels.len()` values.
pub fn evaluate_multiclass_flat<L: AsRef<str>>(
    truth: &[usize],
    probs: &[f64],
    labels: &[L],
) -> Result<MulticlassEvaluation, EvalError> {
    let k = labels.len();
    if k == 0 || probs.len() != truth.len() * k {
        return Err(EvalError::LengthMismatch {
            scores: probs.len().checked_div(k).unwrap_or(probs.len()),
            truth: truth.len(),
        });
    }
    let rows: Vec<&[f64]> = probs.chunks(k).collect();
    evaluate_multiclass(truth, &rows, labels)
}
