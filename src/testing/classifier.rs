//! The [`Classifier`] conformance suite.
//!
//! # Rules
//!
//! A conforming classifier keeps these rules; the suite names the one
//! broken.
//!
//! 1. **`classify-succeeds`**: every item given to [`conformance`] gets a
//!    prediction (give it items your classifier can classify).
//! 2. **`known-label`**: the predicted label is one of the labels the
//!    caller allows (the policy's routes are keyed by them).
//! 3. **`scores-in-range`**: every score, and the confidence of the
//!    predicted label, is a finite number in `[0, 1]` (a policy compares
//!    them with thresholds).
//! 4. **`order-independent`**: classifying the items concurrently gives
//!    the same predictions as one by one (the pipeline classifies up to
//!    `max_in_flight` items at once, in any order).
//! 5. **`batch-matches-single`**: `classify_batch` returns one answer per
//!    item, in order, equal to what `classify` says for that item.
//!
//! A classifier whose answers vary from call to call (sampling, a model
//! being retrained) cannot pass rules 4 and 5; test it with a fixed model.

use futures::future::join_all;

use super::ensure;
use crate::classify::{Classifier, Prediction};
use crate::error::ClassifyError;

const SUITE: &str = "classifier";

fn check_prediction(p: &Prediction, index: usize, allowed: &[&str]) {
    ensure!(
        SUITE,
        "known-label",
        allowed.contains(&p.label.as_str()),
        "item {index} got label {:?}, which is not one of {allowed:?}",
        p.label.as_str()
    );
    for (label, score) in &p.scores {
        ensure!(
            SUITE,
            "scores-in-range",
            score.is_finite() && (0.0..=1.0).contains(score),
            "item {index}: score {score} for {:?} is not in [0, 1]",
            label.as_str()
        );
    }
    if let Some(s) = p.positive_score {
        ensure!(
            SUITE,
            "scores-in-range",
            s.is_finite() && (0.0..=1.0).contains(&s),
            "item {index}: positive score {s} is not in [0, 1]"
        );
    }
    if let Some(c) = p.confidence() {
        ensure!(
            SUITE,
            "scores-in-range",
            c.is_finite() && (0.0..=1.0).contains(&c),
            "item {index}: confidence {c} is not in [0, 1]"
        );
    }
}

/// Runs every rule on `classifier` over `items` (at least one), with the
/// labels it may answer in `allowed`. Returns the predictions, in item
/// order, for checks of your own.
///
/// ```
/// use streamsift::testing::classifier;
/// use streamsift::{ClassifyError, Prediction};
///
/// let shouting = |text: &String| {
///     let score = if text.chars().any(char::is_lowercase) { 0.1 } else { 0.9 };
///     async move { Ok::<_, ClassifyError>(Prediction::binary("angry", "calm", score)) }
/// };
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let items = ["WHY IS IT DOWN".to_string(), "thanks".to_string()];
/// let predictions = classifier::conformance(&shouting, &items, &["angry", "calm"]).await;
/// assert_eq!(predictions[0].label.as_str(), "angry");
/// # });
/// ```
///
/// # Panics
/// At the first broken rule, naming it (see the [module docs](self)).
pub async fn conformance<T, C>(classifier: &C, items: &[T], allowed: &[&str]) -> Vec<Prediction>
where
    T: Sync,
    C: Classifier<T>,
{
    assert!(
        !items.is_empty(),
        "the classifier suite needs at least one item"
    );
    let mut sequential = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match classifier.classify(item).await {
            Ok(p) => {
                check_prediction(&p, i, allowed);
                sequential.push(p);
            }
            Err(e) => super::broken(
                SUITE,
                "classify-succeeds",
                format_args!("item {i} could not be classified: {e}"),
            ),
        }
    }
    let concurrent = join_all(items.iter().map(|i| classifier.classify(i))).await;
    same_as_alone(
        "order-independent",
        "classified concurrently",
        concurrent,
        &sequential,
    );
    let refs: Vec<&T> = items.iter().collect();
    let batch = classifier.classify_batch(&refs).await;
    ensure!(
        SUITE,
        "batch-matches-single",
        batch.len() == items.len(),
        "classify_batch of {} items returned {} answers",
        items.len(),
        batch.len()
    );
    same_as_alone(
        "batch-matches-single",
        "in classify_batch",
        batch,
        &sequential,
    );
    sequential
}

/// Checks rule `rule`: each of `answers` (got `how`) equals the prediction
/// the same item got alone.
fn same_as_alone(
    rule: &'static str,
    how: &str,
    answers: Vec<Result<Prediction, ClassifyError>>,
    alone: &[Prediction],
) {
    for (i, (answer, alone)) in answers.into_iter().zip(alone).enumerate() {
        match answer {
            Ok(p) => ensure!(
                SUITE,
                rule,
                &p == alone,
                "item {i} {how} got {:?} ({:?}), alone {:?} ({:?})",
                p.label.as_str(),
                p.confidence(),
                alone.label.as_str(),
                alone.confidence()
            ),
            Err(e) => super::broken(
                SUITE,
                rule,
                format_args!("item {i} failed {how} but not alone: {e}"),
            ),
        }
    }
}
