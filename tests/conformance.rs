//! The Classifier and Router conformance suites against the fakes.

mod common;

use bytes::Bytes;
use common::conformance::{Case, classifier_conformance, router_conformance};
use streamsift::fakes::{KeywordClassifier, RecordingRouter};
use streamsift::{Label, Prediction, Record, Sequence, ShardId};

#[tokio::test]
async fn keyword_classifier_conforms() {
    let classifier = KeywordClassifier::new("none")
        .rule("problem", &["down", "error"])
        .rule("question", &["how"]);
    let items: Vec<String> = [
        "api is down",
        "how do I resize",
        "love it",
        "error 503 again",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let predictions =
        classifier_conformance(&classifier, &items, &["none", "problem", "question"]).await;
    assert_eq!(predictions[0].label.as_str(), "problem");
    assert_eq!(predictions[1].label.as_str(), "question");
}

#[tokio::test]
async fn recording_router_conforms() {
    let router: RecordingRouter<Bytes> = RecordingRouter::new();
    let cases: Vec<Case<Bytes>> = (0..5u64)
        .map(|i| Case {
            item: Bytes::from(format!("tweet {i}")),
            record: Record::new(
                ShardId::new("s0"),
                Sequence::from_offset(i),
                "k",
                format!("tweet {i}"),
            ),
            prediction: Prediction::binary("yes", "no", 0.9),
            route: Label::from(if i % 2 == 0 { "support" } else { "billing" }),
        })
        .collect();
    let receipts = router_conformance(&router, &cases).await;
    assert_eq!(receipts.len(), 5);
    assert_eq!(
        router.len(),
        6,
        "five deliveries and one redelivery recorded"
    );
}
