//! Cross-validation on training data: out-of-fold scores, a binary model
//! whose decision threshold was chosen on them, and the figures of a fixed
//! threshold on other data.
//!
//! A threshold chosen on the data it is then measured on looks better than
//! it is. [`fit_binary_by_cost`] therefore picks the threshold on
//! **out-of-fold** scores of the training data (each example scored by a
//! model that did not see it) and trains the served model on all of it; a
//! test set, if there is one, only measures the result
//! ([`threshold_at`]).

use super::config::{Task, TrainConfig};
use super::dataset::{DatasetError, labels_of, stratified_k_fold};
use super::doc::Example;
use super::eval::{
    Confusion, Costs, EvalError, ThresholdChoice, ThresholdRule, choose_threshold_by_cost,
};
use super::model::LocalModel;
use super::train::{EpochReport, TrainError};

/// Why cross-validation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CvError {
    /// The folds could not be made (for example fewer examples than folds).
    #[error("cross-validation folds: {0}")]
    Folds(#[from] DatasetError),
    /// A fold's model (or the final one) could not be trained.
    #[error("training: {0}")]
    Train(#[from] TrainError),
    /// The out-of-fold scores could not be evaluated.
    #[error("evaluating out-of-fold scores: {0}")]
    Eval(#[from] EvalError),
    /// The task is not the one the function needs.
    #[error("expected a {expected} task in the training config, found {found}")]
    WrongTask {
        /// The task the function needs.
        expected: &'static str,
        /// The task configured.
        found: &'static str,
    },
}

/// Which model is training, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CvStage {
    /// The model of fold `fold` (from 0) out of `folds`.
    Fold {
        /// The fold.
        fold: usize,
        /// The number of folds.
        folds: usize,
    },
    /// The final model, on all the training data.
    Final,
}

/// Out-of-fold scores of a binary task: each example's probability of the
/// positive label from a model trained on the other `folds - 1` folds
/// (stratified by label, deterministic under `seed`). `progress` is called
/// after every epoch of every fold's model.
///
/// ```
/// use streamsift::local::{out_of_fold_scores, Example, TrainConfig};
/// let data: Vec<Example> = (0..20)
///     .map(|i| if i % 2 == 0 {
///         Example::new(format!("outage number {i}, site down")).labeled("problem")
///     } else {
///         Example::new(format!("thanks for release {i}")).labeled("none")
///     })
///     .collect();
/// let scores = out_of_fold_scores(&data, &TrainConfig::binary("problem"), 5, 0, |_, _| {})?;
/// assert_eq!(scores.len(), data.len());
/// assert!(scores[0] > scores[1]);
/// # Ok::<(), streamsift::local::CvError>(())
/// ```
pub fn out_of_fold_scores(
    examples: &[Example],
    config: &TrainConfig,
    folds: usize,
    seed: u64,
    mut progress: impl FnMut(CvStage, &EpochReport),
) -> Result<Vec<f64>, CvError> {
    if !matches!(config.task, Task::Binary { .. }) {
        return Err(CvError::WrongTask {
            expected: "binary",
            found: "multinomial",
        });
    }
    let splits = stratified_k_fold(&labels_of(examples), folds, seed)?;
    let mut scores = vec![0.0; examples.len()];
    for (fold, split) in splits.iter().enumerate() {
        let (train, _) = split.apply(examples);
        let stage = CvStage::Fold { fold, folds };
        let model = LocalModel::train_with_progress(&train, config, |r| progress(stage, r))?;
        for &i in &split.test {
            if let (Some(slot), Some(e)) = (scores.get_mut(i), examples.get(i)) {
                *slot = model.positive_probability(e).unwrap_or(0.0);
            }
        }
    }
    Ok(scores)
}

/// Out-of-fold class probabilities of a multinomial task, one row per
/// example in the order of `labels` (every label of `examples`, sorted, as
/// [`LocalModel::labels`] orders them). A label missing from a fold's
/// training part gets probability 0 in that fold.
pub fn out_of_fold_probabilities(
    examples: &[Example],
    config: &TrainConfig,
    folds: usize,
    seed: u64,
    mut progress: impl FnMut(CvStage, &EpochReport),
) -> Result<(Vec<String>, Vec<Vec<f64>>), CvError> {
    if config.task != Task::Multinomial {
        return Err(CvError::WrongTask {
            expected: "multinomial",
            found: "binary",
        });
    }
    let mut labels: Vec<String> = examples.iter().filter_map(|e| e.label.clone()).collect();
    labels.sort();
    labels.dedup();
    let splits = stratified_k_fold(&labels_of(examples), folds, seed)?;
    let mut rows = vec![vec![0.0; labels.len()]; examples.len()];
    for (fold, split) in splits.iter().enumerate() {
        let (train, _) = split.apply(examples);
        let stage = CvStage::Fold { fold, folds };
        let model = LocalModel::train_with_progress(&train, config, |r| progress(stage, r))?;
        for &i in &split.test {
            let (Some(row), Some(e)) = (rows.get_mut(i), examples.get(i)) else {
                continue;
            };
            for (label, p) in model.predict_proba(e) {
                if let Ok(j) = labels.binary_search_by(|l| l.as_str().cmp(label.as_str())) {
                    row[j] = p;
                }
            }
        }
    }
    Ok((labels, rows))
}

/// A binary model with its cost-chosen threshold, from [`fit_binary_by_cost`].
#[derive(Clone, Debug)]
pub struct CostFit {
    /// The model trained on all the examples, its policy set to the chosen
    /// threshold (route: the positive label).
    pub model: LocalModel,
    /// The threshold and how it does on the out-of-fold scores (the
    /// cross-validated precision, recall and cost).
    pub choice: ThresholdChoice,
    /// Each example's out-of-fold score.
    pub oof_scores: Vec<f64>,
    /// Each example's truth (its label is the positive one).
    pub truth: Vec<bool>,
    /// The number of folds.
    pub folds: usize,
}

/// Trains a binary model on all of `examples` and sets its policy to the
/// threshold of least expected cost on `folds`-fold out-of-fold scores
/// ([`out_of_fold_scores`], then [`choose_threshold_by_cost`]). No example
/// is scored by a model that saw it when the threshold is chosen.
pub fn fit_binary_by_cost(
    examples: &[Example],
    config: &TrainConfig,
    costs: Costs,
    folds: usize,
    seed: u64,
    mut progress: impl FnMut(CvStage, &EpochReport),
) -> Result<CostFit, CvError> {
    let Task::Binary { positive } = &config.task else {
        return Err(CvError::WrongTask {
            expected: "binary",
            found: "multinomial",
        });
    };
    let oof_scores = out_of_fold_scores(examples, config, folds, seed, &mut progress)?;
    let truth: Vec<bool> = examples
        .iter()
        .map(|e| e.label.as_deref() == Some(positive.as_str()))
        .collect();
    let choice = choose_threshold_by_cost(&oof_scores, &truth, costs)?;
    let mut model =
        LocalModel::train_with_progress(examples, config, |r| progress(CvStage::Final, r))?;
    model.set_policy(Some(choice.policy(positive.clone())));
    Ok(CostFit {
        model,
        choice,
        oof_scores,
        truth,
        folds,
    })
}

/// How a threshold chosen elsewhere does on these scores: the confusion
/// counts, precision, recall and expected cost at `threshold` (a score
/// `>= threshold` is positive). Use it to measure a cross-validated
/// threshold on a test set without choosing anything there.
///
/// ```
/// use streamsift::local::{threshold_at, Costs};
/// let c = threshold_at(&[0.2, 0.6, 0.7], &[false, false, true], 0.5, Costs::default())?;
/// assert_eq!((c.confusion.tp, c.confusion.fp), (1, 1));
/// assert_eq!(c.precision, Some(0.5));
/// # Ok::<(), streamsift::local::EvalError>(())
/// ```
pub fn threshold_at(
    scores: &[f64],
    truth: &[bool],
    threshold: f64,
    costs: Costs,
) -> Result<ThresholdChoice, EvalError> {
    let confusion = Confusion::at(scores, truth, threshold)?;
    if confusion.total() == 0 {
        return Err(EvalError::Empty);
    }
    Ok(ThresholdChoice {
        threshold,
        rule: ThresholdRule::MinExpectedCost,
        costs,
        expected_cost: confusion.total_cost(&costs) / confusion.total() as f64,
        precision: confusion.precision(),
        recall: confusion.recall(),
        confusion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Vec<Example> {
        let pos = [
            "site down again",
            "api returns 500",
            "cannot log in, error",
            "outage in fra1",
            "deploy failing with error",
            "database down",
        ];
        let neg = [
            "thanks team",
            "love the new ui",
            "great release",
            "nice docs",
            "congrats on the launch",
            "happy customer here",
            "thanks for the swag",
            "lovely conference talk",
            "great support",
            "cool blog post",
        ];
        pos.iter()
            .map(|t| Example::new(*t).labeled("problem"))
            .chain(neg.iter().map(|t| Example::new(*t).labeled("none")))
            .collect()
    }

    #[test]
    fn out_of_fold_scores_come_from_models_that_did_not_see_the_example() {
        let data = toy();
        let config = TrainConfig::binary("problem");
        let oof = out_of_fold_scores(&data, &config, 3, 1, |_, _| {}).unwrap();
        // Recompute fold by fold by hand.
        let folds = stratified_k_fold(&labels_of(&data), 3, 1).unwrap();
        for split in &folds {
            let (train, _) = split.apply(&data);
            let model = LocalModel::train(&train, &config).unwrap();
            for &i in &split.test {
                assert_eq!(oof[i], model.positive_probability(&data[i]).unwrap());
            }
        }
        // And they differ from in-sample scores of a model trained on all.
        let all = LocalModel::train(&data, &config).unwrap();
        assert!(
            data.iter()
                .zip(&oof)
                .any(|(e, &s)| all.positive_probability(e).unwrap() != s)
        );
    }

    #[test]
    fn fit_sets_the_policy_to_the_threshold_chosen_out_of_fold() {
        let data = toy();
        let config = TrainConfig::binary("problem");
        let mut epochs = Vec::new();
        let fit = fit_binary_by_cost(&data, &config, Costs::default(), 3, 1, |s, r| {
            epochs.push((s, r.epoch))
        })
        .unwrap();
        let expected =
            choose_threshold_by_cost(&fit.oof_scores, &fit.truth, Costs::default()).unwrap();
        assert_eq!(fit.choice, expected);
        assert_eq!(
            fit.model.policy(),
            Some(&crate::Policy::binary(expected.threshold, "problem"))
        );
        // 3 folds and the final model, each `epochs` epochs, in order.
        assert_eq!(epochs.len(), 4 * config.epochs);
        assert_eq!(epochs[0], (CvStage::Fold { fold: 0, folds: 3 }, 1));
        assert_eq!(epochs.last(), Some(&(CvStage::Final, config.epochs)));
    }

    #[test]
    fn wrong_task_and_too_many_folds_are_errors() {
        let data = toy();
        let err =
            out_of_fold_scores(&data, &TrainConfig::multinomial(), 3, 0, |_, _| {}).unwrap_err();
        assert!(matches!(err, CvError::WrongTask { .. }), "{err}");
        let err =
            out_of_fold_probabilities(&data, &TrainConfig::binary("problem"), 3, 0, |_, _| {})
                .unwrap_err();
        assert!(matches!(err, CvError::WrongTask { .. }), "{err}");
        let err = out_of_fold_scores(&data, &TrainConfig::binary("problem"), 99, 0, |_, _| {})
            .unwrap_err();
        assert!(matches!(err, CvError::Folds(_)), "{err}");
    }

    #[test]
    fn out_of_fold_probabilities_are_rows_over_all_labels() {
        let mut data = toy();
        for t in [
            "how do I resize a volume?",
            "which regions have gpus?",
            "is ipv6 supported?",
        ] {
            data.push(Example::new(t).labeled("question"));
        }
        let (labels, rows) =
            out_of_fold_probabilities(&data, &TrainConfig::multinomial(), 3, 0, |_, _| {}).unwrap();
        assert_eq!(labels, ["none", "problem", "question"]);
        assert_eq!(rows.len(), data.len());
        for row in &rows {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{row:?}");
        }
    }

    #[test]
    fn threshold_at_measures_without_choosing() {
        let scores = [0.1, 0.3, 0.35, 0.8];
        let truth = [false, true, false, true];
        let c = threshold_at(&scores, &truth, 0.3, Costs::new(10.0, 1.0)).unwrap();
        assert_eq!(
            (
                c.confusion.tp,
                c.confusion.fp,
                c.confusion.tn,
                c.confusion.fn_
            ),
            (2, 1, 1, 0)
        );
        assert_eq!(c.recall, Some(1.0));
        assert_eq!(c.expected_cost, 0.25);
        assert!(threshold_at(&[], &[], 0.5, Costs::default()).is_err());
    }
}
