//! Aggregation against a simulated crowd: Dawid–Skene beats majority vote
//! when 30% of the workers are spammers, and finds the spammers.

use std::collections::HashMap;
use std::time::Duration;

use streamsift::aggregate::{Aggregation, Aggregator, DawidSkene, answers_from_results};
use streamsift::fakes::{SimulatedCrowd, Worker};
use streamsift::{LabelTask, Labeler};

const LABELS: [&str; 5] = ["request", "question", "problem_report", "angry", "none"];
const SEED: u64 = 20_261_129;

/// Items are numbers; the true label is a fixed pseudo-random function of
/// the number, skewed towards "none" as real tweets are.
fn truth(n: &u32) -> &'static str {
    match n.wrapping_mul(2_654_435_761) % 10 {
        0 => "request",
        1 => "question",
        2 | 3 => "problem_report",
        4 => "angry",
        _ => "none",
    }
}

fn accuracy(out: &Aggregation, truths: &HashMap<String, &str>) -> f64 {
    let right = out
        .items
        .iter()
        .filter(|i| truths.get(&i.item_id).is_some_and(|t| i.label == *t))
        .count();
    right as f64 / truths.len() as f64
}

#[tokio::test(start_paused = true)]
async fn dawid_skene_beats_majority_vote_with_thirty_percent_spammers() {
    // 10 workers: 7 honest of varied skill, 3 spammers (30%); each item
    // is answered by 3 of them.
    let mut workers: Vec<Worker> = [0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6]
        .iter()
        .enumerate()
        .map(|(i, acc)| Worker::accurate(format!("honest-{i}"), *acc))
        .collect();
    workers.extend((0..3).map(|i| Worker::spammer(format!("spammer-{i}"))));
    let crowd = SimulatedCrowd::new(LABELS, truth)
        .workers(workers)
        .assignments_per_task(3)
        .completion_delay(Duration::from_secs(60))
        .seed(SEED);

    let items: Vec<u32> = (0..2000).collect();
    let ids: Vec<String> = items.iter().map(|n| format!("tweet-{n}")).collect();
    let tasks: Vec<LabelTask<'_, u32>> = items
        .iter()
        .zip(&ids)
        .map(|(n, id)| LabelTask {
            item_id: id,
            item: n,
            prediction: None,
            suggestion: None,
        })
        .collect();
    crowd.submit(&tasks).await.expect("submit");
    tokio::time::advance(Duration::from_secs(60)).await;
    let results = crowd.collect().await.expect("collect");
    assert_eq!(results.len(), items.len());

    let truths: HashMap<String, &str> = ids.iter().cloned().zip(items.iter().map(truth)).collect();
    let answers = answers_from_results(&results);
    let agg = Aggregator::new(LABELS).min_votes(3);
    let majority = agg.majority(&answers);
    let ds = agg.dawid_skene(&answers, &DawidSkene::default());
    let (mv_acc, ds_acc) = (accuracy(&majority, &truths), accuracy(&ds, &truths));
    println!(
        "2000 items, 3 answers each, 3 of 10 workers spammers (seed {SEED}): \
         majority vote accuracy {mv_acc:.4}, Dawid-Skene accuracy {ds_acc:.4} \
         ({} EM iterations, converged: {})",
        ds.iterations, ds.converged
    );
    for w in &ds.workers {
        println!(
            "  {:<10} answers {:>4}  accuracy {:.3}  spammer score {:.3}  spammer {}",
            w.worker, w.answers, w.accuracy, w.spammer_score, w.spammer
        );
    }
    assert!(ds.converged, "EM converges within its cap");
    assert_eq!(majority.items.len(), 2000);
    assert_eq!(ds.items.len(), 2000);
    assert!(majority.incomplete.is_empty() && ds.incomplete.is_empty());
    assert!(
        ds_acc > mv_acc + 0.01,
        "Dawid-Skene {ds_acc} should beat majority vote {mv_acc} by more than a point"
    );

    // The spammers, and only they, are flagged.
    let mut flagged = ds.spammers();
    flagged.sort_unstable();
    assert_eq!(flagged, vec!["spammer-0", "spammer-1", "spammer-2"]);
    // Estimated accuracy tracks the simulated one.
    for (i, acc) in [0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6].iter().enumerate() {
        let est = ds
            .worker(&format!("honest-{i}"))
            .map(|w| w.accuracy)
            .unwrap_or(0.0);
        assert!(
            (est - acc).abs() < 0.08,
            "honest-{i}: estimated {est}, true {acc}"
        );
    }
    for w in ds.workers.iter().filter(|w| w.spammer) {
        assert!(w.accuracy < 0.35, "{w:?}");
    }
    // Confidence is a probability and agrees with the label's posterior.
    for item in &ds.items {
        assert!((0.0..=1.0).contains(&item.confidence));
        assert!((0.0..=1.0).contains(&item.agreement));
        assert_eq!(item.votes, 3);
    }
}

#[tokio::test(start_paused = true)]
async fn items_missing_answers_are_reported_incomplete() {
    // One worker, asked for 3 answers per task: every item has 1 vote.
    let crowd = SimulatedCrowd::new(LABELS, truth)
        .worker(Worker::accurate("solo", 0.9))
        .completion_delay(Duration::from_secs(1))
        .seed(SEED);
    let items = [1u32, 2, 3];
    let ids = ["a", "b", "c"];
    let tasks: Vec<_> = items
        .iter()
        .zip(ids)
        .map(|(n, id)| LabelTask {
            item_id: id,
            item: n,
            prediction: None,
            suggestion: None,
        })
        .collect();
    crowd.submit(&tasks).await.expect("submit");
    tokio::time::advance(Duration::from_secs(1)).await;
    let answers = answers_from_results(&crowd.collect().await.expect("collect"));
    let agg = Aggregator::new(LABELS).min_votes(3);
    for out in [
        agg.majority(&answers),
        agg.dawid_skene(&answers, &DawidSkene::default()),
    ] {
        assert!(out.items.is_empty());
        let missing: Vec<&str> = out.incomplete.iter().map(|i| i.item_id.as_str()).collect();
        assert_eq!(missing, ids);
        assert!(out.incomplete.iter().all(|i| i.votes == 1 && i.needed == 3));
    }
}
