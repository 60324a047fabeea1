//! The cascade end to end through a Pipeline: stage 1 decides what it is
//! sure of, stage 2 the band, the policy's review band sends what stage 2 is
//! unsure of to a labeler, and a stage-2 failure reaches people too.

use std::sync::{Arc, Mutex};

use streamsift::cascade::{Cascade, UncertainBand};
use streamsift::fakes::{MemorySource, RecordingRouter};
use streamsift::{
    CascadeStage, ClassifyError, LabelError, LabelResult, LabelTask, Labeler, MemoryDeadLetter,
    Pipeline, Policy, Prediction, TaskId, Utf8,
};

/// Each item a labeler was given, with what decided it.
type Seen = Arc<Mutex<Vec<(String, Option<CascadeStage>)>>>;

/// A labeler that keeps the items and what decided each.
#[derive(Clone, Default)]
struct Reviewers(Seen);

#[async_trait::async_trait]
impl Labeler<String> for Reviewers {
    async fn submit(&self, tasks: &[LabelTask<'_, String>]) -> Result<Vec<TaskId>, LabelError> {
        let mut seen = self.0.lock().unwrap();
        for t in tasks {
            seen.push((t.item.clone(), t.prediction.and_then(|p| p.decided_by)));
        }
        Ok(tasks
            .iter()
            .map(|t| TaskId(t.item_id.to_string()))
            .collect())
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        Ok(Vec::new())
    }
}

/// Reads `key=value` from an item like "s1=0.5 s2=0.9".
fn field<'a>(item: &'a str, key: &str) -> Option<&'a str> {
    item.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn score(item: &str, key: &str) -> Result<Prediction, ClassifyError> {
    match field(item, key) {
        Some("fail") => Err(ClassifyError::permanent("stage refused")),
        Some(s) => s
            .parse::<f64>()
            .map(|s| Prediction::binary("yes", "no", s))
            .map_err(|_| ClassifyError::permanent("not a score")),
        None => Ok(Prediction::label("yes")),
    }
}

#[tokio::test(start_paused = true)]
async fn stage_two_uncertainty_and_failures_reach_the_labeler() {
    let stage1 = |item: &String| std::future::ready(score(item, "s1"));
    let stage2 = |item: &String| std::future::ready(score(item, "s2"));
    let cascade = Arc::new(Cascade::new(stage1, stage2).band(UncertainBand::new(0.2, 0.8)));
    let reviewers = Reviewers::default();
    let router = RecordingRouter::<String>::new();
    let items = [
        "s1=0.95",         // stage 1 notifies
        "s1=0.05",         // stage 1 discards
        "s1=0.5 s2=0.97",  // stage 2 notifies
        "s1=0.5 s2=0.02",  // stage 2 discards
        "s1=0.6 s2=0.45",  // stage 2 unsure: review
        "s1=0.3 s2=fail",  // stage 2 fails: fallback, review
        "s1=0.99 s2=fail", // outside the band: stage 2 never asked
    ];
    let report = Pipeline::new(MemorySource::from_payloads(1, items))
        .decode(Utf8)
        .classify(cascade.clone())
        .policy(Policy::binary(0.5, "team").with_review_band(0.3, 0.7))
        .review(reviewers.clone())
        .route(router.clone())
        .dead_letter(MemoryDeadLetter::new())
        .run()
        .await
        .unwrap();
    let mut notified: Vec<String> = router.deliveries().into_iter().map(|d| d.item).collect();
    notified.sort();
    assert_eq!(notified, ["s1=0.5 s2=0.97", "s1=0.95", "s1=0.99 s2=fail"]);
    let mut reviewed = reviewers.0.lock().unwrap().clone();
    reviewed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        reviewed,
        [
            ("s1=0.3 s2=fail".to_string(), Some(CascadeStage::Fallback)),
            ("s1=0.6 s2=0.45".to_string(), Some(CascadeStage::Second)),
        ]
    );
    assert_eq!(report.stats.sent_for_review, 2);
    assert_eq!(report.stats.discarded, 2);
    assert_eq!(report.stats.dead_lettered, 0, "nothing lost, nothing dead");
    let stats = cascade.stats();
    assert_eq!((stats.first, stats.second, stats.fallback), (3, 3, 1));
}
