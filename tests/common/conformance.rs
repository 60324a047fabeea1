//! Conformance suites for the `Classifier` and `Router` traits, run against
//! the fakes (tests/conformance.rs) and against every backend (each
//! backend's own test file calls them over a real or scripted connection).

use futures::future::join_all;
use streamsift::{Classifier, Delivery, Label, Prediction, Receipt, Record, Router};

fn check_prediction(p: &Prediction, allowed: &[&str]) {
    assert!(
        allowed.contains(&p.label.as_str()),
        "label {:?} is not one of {allowed:?}",
        p.label.as_str()
    );
    for (label, score) in &p.scores {
        assert!(
            score.is_finite() && (0.0..=1.0).contains(score),
            "score {score} for {label:?}"
        );
    }
    if let Some(c) = p.confidence() {
        assert!((0.0..=1.0).contains(&c), "confidence {c}");
    }
}

/// The `Classifier` contract: every item gets a prediction with a known
/// label and scores in [0, 1]; results do not depend on call order or
/// concurrency; `classify_batch` answers item by item, in order, as
/// `classify` does. Returns the predictions for backend-specific checks.
pub async fn classifier_conformance<T, C>(
    classifier: &C,
    items: &[T],
    allowed: &[&str],
) -> Vec<Prediction>
where
    T: Sync,
    C: Classifier<T>,
{
    assert!(!items.is_empty());
    let mut sequential = Vec::new();
    for item in items {
        let p = classifier.classify(item).await.expect("classify");
        check_prediction(&p, allowed);
        sequential.push(p);
    }
    let concurrent: Vec<Prediction> = join_all(items.iter().map(|i| classifier.classify(i)))
        .await
        .into_iter()
        .map(|r| r.expect("concurrent classify"))
        .collect();
    assert_eq!(
        concurrent, sequential,
        "concurrent calls give the same answers"
    );
    let refs: Vec<&T> = items.iter().collect();
    let batch: Vec<Prediction> = classifier
        .classify_batch(&refs)
        .await
        .into_iter()
        .map(|r| r.expect("classify_batch item"))
        .collect();
    assert_eq!(batch.len(), items.len(), "one answer per item");
    assert_eq!(
        batch, sequential,
        "classify_batch answers as classify does, in order"
    );
    sequential
}

/// One delivery's parts, owned, for [`router_conformance`].
pub struct Case<T> {
    pub item: T,
    pub record: Record,
    pub prediction: Prediction,
    pub route: Label,
}

/// The `Router` contract: every delivery is accepted with a receipt for its
/// route (or a receipt marked skipped); deliveries may run concurrently;
/// delivering a record again (at-least-once redelivery) is not an error.
/// Returns the receipts of the concurrent round, in input order.
pub async fn router_conformance<T, R>(router: &R, cases: &[Case<T>]) -> Vec<Receipt>
where
    T: Sync,
    R: Router<T>,
{
    assert!(!cases.is_empty());
    let deliveries: Vec<Delivery<'_, T>> = cases
        .iter()
        .map(|c| Delivery {
            item: &c.item,
            record: &c.record,
            prediction: &c.prediction,
            route: &c.route,
        })
        .collect();
    let receipts: Vec<Receipt> = join_all(deliveries.iter().map(|d| router.route(d)))
        .await
        .into_iter()
        .map(|r| r.expect("route"))
        .collect();
    for (receipt, case) in receipts.iter().zip(cases) {
        if !receipt.skipped {
            assert_eq!(
                receipt.route, case.route,
                "the receipt names the delivery's route"
            );
        }
    }
    // A redelivery of the first record is accepted too.
    let again = router.route(&deliveries[0]).await.expect("redelivery");
    assert_eq!(again.skipped, receipts[0].skipped);
    receipts
}
