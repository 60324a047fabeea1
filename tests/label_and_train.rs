//! The label_and_train example's flow on a small sample: the outputs it
//! writes, what they hold, and how it fails without labels.
//!
//! The flow lives in `examples/label_and_train/app.rs`; this test runs it
//! into a temporary directory.

#[path = "../examples/label_and_train/app.rs"]
mod app;

use std::collections::BTreeSet;
use std::time::Duration;

use streamsift::fakes::{SimulatedCrowd, Worker};
use streamsift::local::{Example, LoadOptions, LocalModel, read_labels_path};

fn options(out: &std::path::Path, sample: usize) -> app::Options {
    app::Options {
        out: out.to_path_buf(),
        sample,
        ..app::Options::default()
    }
}

#[tokio::test]
async fn small_sample_writes_a_dataset_a_model_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let options = options(dir.path(), 300);
    let gold = read_labels_path(&options.gold, "id_str", "label").unwrap();
    let crowd = app::simulated_crowd(gold.clone(), options.seed);
    let outcome = app::run(&options, &crowd).await.unwrap();

    // Sampling and dedup.
    assert_eq!(outcome.sampled, 300);
    assert!(outcome.retweets_removed > 0, "{outcome:?}");
    assert_eq!(
        outcome.tasks,
        300 - outcome.retweets_removed - outcome.duplicates_removed
    );
    assert_eq!(crowd.submitted(), outcome.tasks);
    assert_eq!(outcome.unanswered, 0);
    assert_eq!(outcome.labeled + outcome.incomplete, outcome.tasks);

    // The training CSV: local's loader reads it; one row per labeled tweet,
    // no retweet, each id once, labels from the category set.
    let csv = dir.path().join("training.csv");
    let data = LoadOptions::new("text")
        .id("id")
        .label("label")
        .load_path(&csv)
        .unwrap();
    assert_eq!(data.len(), outcome.csv_rows);
    assert_eq!(data.len(), outcome.labeled);
    let ids: BTreeSet<&str> = data
        .examples
        .iter()
        .filter_map(|e| e.id.as_deref())
        .collect();
    assert_eq!(ids.len(), data.len());
    assert!(data.examples.iter().all(|e| !e.text.starts_with("RT @")));
    let categories: BTreeSet<&str> = app::CATEGORIES.into_iter().collect();
    assert!(
        data.examples
            .iter()
            .all(|e| categories.contains(e.label.as_deref().unwrap()))
    );
    // The CSV's labels are the aggregation's, which agree with gold mostly.
    let right = data
        .examples
        .iter()
        .filter(|e| gold.get(e.id.as_deref().unwrap()) == e.label.as_ref())
        .count();
    assert_eq!(
        Some(right as f64 / data.len() as f64),
        outcome.label_accuracy
    );

    // Dawid-Skene finds the spammers and beats majority vote here.
    let (ds, mv) = (
        outcome.dawid_skene_accuracy.unwrap(),
        outcome.majority_accuracy.unwrap(),
    );
    assert!(ds > mv, "Dawid-Skene {ds} vs majority {mv}");
    assert!(
        outcome.spammers.iter().all(|w| w.starts_with('s')),
        "an accurate worker flagged: {:?}",
        outcome.spammers
    );

    // The model and the report.
    let model = LocalModel::load(dir.path().join("model.json")).unwrap();
    assert!(
        model.policy().is_some(),
        "the cost-chosen threshold is saved"
    );
    let t = &outcome.trained;
    assert!(t.holdout > 0 && t.holdout_actionable > 0);
    assert!(t.auc > 0.8, "hold-out AUC against gold: {}", t.auc);
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("<svg"), "the report has its charts");
    assert!(html.contains("crowd labels equal to gold"));
    let agg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("aggregation.json")).unwrap())
            .unwrap();
    assert_eq!(agg["workers"].as_array().unwrap().len(), 10);
}

#[tokio::test(start_paused = true)]
async fn no_labels_in_time_is_reported_not_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path(), 50);
    options.max_wait = Duration::from_secs(5);
    // People who take an hour.
    let slow = SimulatedCrowd::new(app::CATEGORIES, |_: &Example| "none")
        .worker(Worker::accurate("w", 1.0))
        .completion_delay(Duration::from_secs(3600));
    let prepared = app::prepare(&options).unwrap();
    let (results, unanswered) =
        app::label(&slow, &prepared.examples, options.poll, options.max_wait)
            .await
            .unwrap();
    assert!(results.is_empty());
    assert_eq!(unanswered, prepared.examples.len());
    let err = app::run(&options, &slow).await.unwrap_err();
    assert!(matches!(err, app::AppError::TooFewLabels(_)), "{err}");
    assert!(err.to_string().contains("--sample"), "{err}");
}

#[test]
fn bad_arguments_are_clear() {
    let err = app::Options::parse(["--sample".to_string(), "many".to_string()]).unwrap_err();
    assert!(
        err.to_string().contains("--sample expects a count"),
        "{err}"
    );
    let err = app::Options::parse(["--bogus".to_string()]).unwrap_err();
    assert!(err.to_string().contains("unknown option"), "{err}");
}
