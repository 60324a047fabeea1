//! The active-learning loop: queue order, rate and budget limits, a queue
//! that survives a restart, retraining, and the hot swap under load.

mod common;
use common::logs::process_logs;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use streamsift::active::{
    ActiveConfig, ActiveLearner, Budget, DatasetStore, HotSwapClassifier, RateLimit,
    RetrainTrigger, Retrainer, Uncertainty,
};
use streamsift::fakes::{MemorySource, RecordingRouter, SimulatedCrowd, Worker};
use streamsift::local::{Document, Example, LoadOptions, LocalClassifier, LocalModel, TrainConfig};
use streamsift::{
    Classifier, ClassifyError, LabelError, LabelResult, LabelTask, Labeler, MemoryDeadLetter,
    Pipeline, Policy, Position, Prediction, Sequence, TaskId, Vote,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Msg {
    n: u64,
    text: String,
}

impl Document for Msg {
    fn text(&self) -> &str {
        &self.text
    }
}

fn to_example(m: &Msg) -> Example {
    Example::new(m.text.clone())
}

/// A labeler that records each submitted batch and labels at once.
#[derive(Default)]
struct RecordingLabeler {
    batches: Mutex<Vec<Vec<String>>>,
    ready: Mutex<Vec<LabelResult>>,
}

impl RecordingLabeler {
    fn batches(&self) -> Vec<Vec<String>> {
        self.batches.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Labeler<Msg> for RecordingLabeler {
    async fn submit(&self, tasks: &[LabelTask<'_, Msg>]) -> Result<Vec<TaskId>, LabelError> {
        self.batches
            .lock()
            .unwrap()
            .push(tasks.iter().map(|t| t.item_id.to_string()).collect());
        let mut ready = self.ready.lock().unwrap();
        Ok(tasks
            .iter()
            .map(|t| {
                let task = TaskId(format!("rec-{}", t.item_id));
                let label = if t.item.text.contains("down") {
                    "problem"
                } else {
                    "none"
                };
                ready.push(LabelResult {
                    task: task.clone(),
                    item_id: t.item_id.to_string(),
                    label: label.into(),
                    agreement: 1.0,
                    votes: vec![Vote {
                        worker: "r".into(),
                        label: label.into(),
                    }],
                });
                task
            })
            .collect())
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        Ok(std::mem::take(&mut *self.ready.lock().unwrap()))
    }
}

fn msg(n: u64, text: &str) -> Msg {
    Msg {
        n,
        text: text.to_string(),
    }
}

/// The ids of the labels in the learner's dataset store, in stored order.
fn stored_ids<L: Labeler<Msg>>(learner: &ActiveLearner<Msg, L>) -> Vec<String> {
    learner
        .store()
        .labeled()
        .unwrap()
        .into_iter()
        .filter_map(|l| l.example.id)
        .collect()
}

async fn submit_scored<L: Labeler<Msg>>(learner: &L, items: &[(&str, Msg, f64)]) {
    for (id, m, score) in items {
        let p = Prediction::binary("problem", "none", *score);
        learner
            .submit(&[LabelTask {
                item_id: id,
                item: m,
                prediction: Some(&p),
                suggestion: None,
            }])
            .await
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn most_uncertain_first() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(RecordingLabeler::default());
    let learner = ActiveLearner::builder(Arc::clone(&inner), to_example)
        .queue_file(dir.path().join("q.jsonl"))
        .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
        .config(ActiveConfig {
            uncertainty: Uncertainty::Threshold(0.3),
            batch_size: 2,
            ..ActiveConfig::default()
        })
        .open()
        .unwrap();
    // Distances to the threshold 0.3: a .6, b .01, c .2, d .05, e .29
    let items = [
        ("a", msg(1, "a"), 0.9),
        ("b", msg(2, "b"), 0.31),
        ("c", msg(3, "c"), 0.1),
        ("d", msg(4, "d"), 0.25),
        ("e", msg(5, "e"), 0.01),
    ];
    submit_scored(&learner, &items).await;
    for _ in 0..3 {
        learner.tick().await.unwrap();
    }
    assert_eq!(
        inner.batches(),
        vec![vec!["b", "d"], vec!["c", "e"], vec!["a"]]
    );
    // Every label reached the store, with its text.
    let stored = learner.store().examples().unwrap();
    assert_eq!(stored.len(), 5);
    assert!(stored.iter().all(|e| e.label.as_deref() == Some("none")));
    assert_eq!(stored[0].text, "b");
    assert_eq!(learner.stats().snapshot().labels_gathered, 5);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(RecordingLabeler::default());
    let learner = ActiveLearner::builder(Arc::clone(&inner), to_example)
        .queue_file(dir.path().join("q.jsonl"))
        .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
        .config(ActiveConfig {
            batch_size: 10,
            rate: Some(RateLimit {
                tasks: 3,
                per: Duration::from_secs(60),
            }),
            ..ActiveConfig::default()
        })
        .open()
        .unwrap();
    let items: Vec<(String, Msg)> = (0..8).map(|n| (format!("m{n}"), msg(n, "x"))).collect();
    let scored: Vec<(&str, Msg, f64)> = items
        .iter()
        .map(|(id, m)| (id.as_str(), m.clone(), 0.5))
        .collect();
    submit_scored(&learner, &scored).await;

    assert_eq!(learner.tick().await.unwrap().submitted, 3);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        learner.tick().await.unwrap().submitted,
        0,
        "window not over"
    );
    assert_eq!(learner.stats().snapshot().rate_limited, 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(learner.tick().await.unwrap().submitted, 3);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(learner.tick().await.unwrap().submitted, 2, "only 2 left");
    assert_eq!(learner.stats().snapshot().tasks_submitted, 8);
}

#[tokio::test(start_paused = true)]
async fn budget_limits_tasks_and_spend_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let open = |inner: Arc<RecordingLabeler>, budget: Budget| {
        ActiveLearner::builder(inner, to_example)
            .queue_file(dir.path().join("q.jsonl"))
            .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
            .config(ActiveConfig {
                batch_size: 4,
                budget,
                ..ActiveConfig::default()
            })
            .open()
            .unwrap()
    };
    // 0.1 a task, at most 0.5: five tasks.
    let spend = Budget {
        max_tasks: None,
        cost_per_task: 0.1,
        max_spend: Some(0.5),
    };
    let inner = Arc::new(RecordingLabeler::default());
    let learner = open(Arc::clone(&inner), spend);
    let items: Vec<(String, Msg)> = (0..12).map(|n| (format!("m{n}"), msg(n, "x"))).collect();
    let scored: Vec<(&str, Msg, f64)> = items
        .iter()
        .map(|(id, m)| (id.as_str(), m.clone(), 0.5))
        .collect();
    submit_scored(&learner, &scored).await;
    assert_eq!(learner.tick().await.unwrap().submitted, 4);
    assert_eq!(learner.tick().await.unwrap().submitted, 1);
    assert_eq!(learner.tick().await.unwrap().submitted, 0);
    assert_eq!(learner.stats().snapshot().budget_exhausted, 1);
    assert_eq!(learner.spent_tasks(), 5);
    drop(learner);

    // The count survives a restart: the same budget allows nothing more.
    let learner = open(Arc::clone(&inner), spend);
    assert_eq!(learner.spent_tasks(), 5);
    assert_eq!(learner.pending(), 7);
    assert_eq!(learner.tick().await.unwrap().submitted, 0);
    drop(learner);

    // A task cap of 7 allows two more.
    let learner = open(
        Arc::clone(&inner),
        Budget {
            max_tasks: Some(7),
            ..Budget::default()
        },
    );
    assert_eq!(learner.tick().await.unwrap().submitted, 2);
    assert_eq!(learner.tick().await.unwrap().submitted, 0);
    let submitted: usize = inner.batches().iter().map(Vec::len).sum();
    assert_eq!(submitted, 7);
}

fn crowd() -> SimulatedCrowd<Msg> {
    SimulatedCrowd::new(["problem", "none"], |m: &Msg| {
        if m.text.contains("down") {
            "problem"
        } else {
            "none"
        }
    })
    .workers([
        Worker::accurate("a", 1.0),
        Worker::accurate("b", 1.0),
        Worker::accurate("c", 1.0),
    ])
    .completion_delay(Duration::from_secs(600))
}

fn payloads(texts: &[&str]) -> Vec<String> {
    texts
        .iter()
        .enumerate()
        .map(|(n, t)| serde_json::to_string(&msg(n as u64, t)).unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn queue_survives_a_restart_after_the_checkpoint_moved_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("q.jsonl");
    let labels = dir.path().join("labels.jsonl");
    let open = || {
        ActiveLearner::builder(crowd(), to_example)
            .queue_file(&queue)
            .dataset(DatasetStore::new(&labels))
            .config(ActiveConfig {
                batch_size: 2,
                ..ActiveConfig::default()
            })
            .open()
            .unwrap()
    };
    let texts = ["api down", "thanks", "login down", "hello", "db down", "ok"];
    let source = MemorySource::from_payloads(2, payloads(&texts));
    let stream = source.stream();
    let learner = open();
    // Everything goes to review.
    let report = Pipeline::new(source)
        .json::<Msg>()
        .classify(|_: &Msg| async {
            Ok::<_, ClassifyError>(Prediction::binary("problem", "none", 0.5))
        })
        .policy(Policy::binary(0.5, "team").with_review_band(0.0, 1.01))
        .route(RecordingRouter::new())
        .review(learner.clone())
        .dead_letter(MemoryDeadLetter::new())
        .run()
        .await
        .unwrap();
    assert_eq!(report.stats.sent_for_review, 6);
    // The checkpoints are past every record.
    let checkpoints = stream.checkpoints();
    assert_eq!(checkpoints.len(), 2);
    for position in checkpoints.values() {
        assert_eq!(*position, Position::Sequence(Sequence::from_offset(2)));
    }
    assert_eq!(learner.tick().await.unwrap().submitted, 2);
    assert_eq!((learner.pending(), learner.awaiting()), (4, 2));
    drop(learner); // a crash: the crowd's state is lost with it

    let learner = open();
    assert_eq!((learner.pending(), learner.awaiting()), (4, 2));
    let first = learner.tick().await.unwrap();
    assert_eq!((first.resubmitted, first.submitted), (2, 2));
    assert_eq!(
        learner.spent_tasks(),
        4,
        "resubmission is not charged again"
    );
    learner.tick().await.unwrap();
    tokio::time::advance(Duration::from_secs(600)).await;
    let done = learner.tick().await.unwrap();
    assert_eq!(done.labels, 6);
    assert_eq!((learner.pending(), learner.awaiting()), (0, 0));

    // The store holds every text once, labeled by the crowd, and local's
    // loader reads it.
    let data = LoadOptions::new("text")
        .id("id")
        .label("label")
        .load_path(&labels)
        .unwrap();
    let by_text: BTreeMap<&str, &str> = data
        .examples
        .iter()
        .map(|e| (e.text.as_str(), e.label.as_deref().unwrap()))
        .collect();
    assert_eq!(by_text.len(), 6);
    assert_eq!(by_text["api down"], "problem");
    assert_eq!(by_text["thanks"], "none");
}

#[tokio::test(start_paused = true)]
async fn retrain_after_n_labels_swaps_a_new_model_in() {
    let dir = tempfile::tempdir().unwrap();
    let base = vec![
        Example::new("hello there").labeled("none"),
        Example::new("great day").labeled("none"),
        Example::new("site down").labeled("problem"),
        Example::new("nice weather").labeled("none"),
    ];
    let config = TrainConfig::binary("problem");
    let first = LocalModel::train(&base, &config).unwrap();
    let swap = HotSwapClassifier::new(LocalClassifier::new(first));
    let retrainer = Retrainer::local(
        swap.clone(),
        base,
        config,
        RetrainTrigger {
            every_labels: Some(6),
            interval: None,
        },
    );
    let learner = ActiveLearner::builder(crowd(), to_example)
        .queue_file(dir.path().join("q.jsonl"))
        .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
        .stats(swap.stats().clone())
        .retrainer(retrainer)
        .open()
        .unwrap();
    let texts = [
        "checkout is down again",
        "payments down for everyone",
        "login page down",
        "have a lovely weekend",
        "coffee time",
        "dashboard down since noon",
        "sunny and warm",
        "api down in eu",
    ];
    let probe = msg(99, "the checkout api is down");
    let before = swap.classify(&probe).await.unwrap().positive_score.unwrap();
    let report = Pipeline::new(MemorySource::from_payloads(1, payloads(&texts)))
        .json::<Msg>()
        .classify(swap.clone())
        .policy(Policy::binary(0.5, "team").with_review_band(0.0, 1.01))
        .route(RecordingRouter::new())
        .review(learner.clone())
        .dead_letter(MemoryDeadLetter::new())
        .active_stats(swap.stats().clone())
        .run()
        .await
        .unwrap();
    assert_eq!(report.stats.sent_for_review, 8);
    let active = report.active.expect("the report carries the active stats");
    assert_eq!(active.queued, 8);
    assert_eq!(active.versions.len(), 1);
    assert_eq!(active.versions[0].records, 8 + 1, "8 records and the probe");

    assert_eq!(learner.tick().await.unwrap().retrained, None);
    tokio::time::advance(Duration::from_secs(600)).await;
    let tick = learner.tick().await.unwrap();
    assert_eq!(tick.labels, 8);
    assert_eq!(tick.retrained, Some(2));
    assert_eq!(swap.version(), 2);
    let after = swap.classify(&probe).await.unwrap().positive_score.unwrap();
    assert!(
        after > before,
        "more labeled problems should raise the probe's score: {before} -> {after}"
    );
    let stats = learner.stats().snapshot();
    assert_eq!((stats.retrains, stats.current_version), (1, 2));
    assert_eq!(stats.labels_gathered, 8);
}

/// A model made of many parts that must all carry its version; classify
/// reads them across an await point, so a model mutated in place while a
/// record is classified would be caught.
struct VersionedModel {
    version: u64,
    parts: Vec<u64>,
}

impl Classifier<Msg> for VersionedModel {
    async fn classify(&self, item: &Msg) -> Result<Prediction, ClassifyError> {
        let first = self.parts[0];
        tokio::task::yield_now().await;
        if self.parts.iter().any(|p| *p != first) || first != self.version {
            return Err(ClassifyError::permanent("half-loaded model"));
        }
        // A deterministic score per item; 10% of items in the review band.
        let score = (item.n % 100) as f64 / 100.0;
        Ok(Prediction {
            label: format!("v{}", self.version).into(),
            scores: Vec::new(),
            positive_score: Some(score),
            decided_by: None,
        })
    }
}

fn versioned(version: u64) -> VersionedModel {
    VersionedModel {
        version,
        parts: vec![version; 256],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_loses_and_fails_nothing() {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let swap = HotSwapClassifier::new(versioned(1));
    let learner = ActiveLearner::builder(crowd(), to_example)
        .queue_file(dir.path().join("q.jsonl"))
        .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
        .stats(swap.stats().clone())
        .open()
        .unwrap();
    let texts: Vec<String> = (0..N)
        .map(|n| serde_json::to_string(&msg(n, &format!("message {n}"))).unwrap())
        .collect();
    let router = RecordingRouter::new();
    let dead = MemoryDeadLetter::new();
    let done = Arc::new(AtomicBool::new(false));
    let swapper = {
        let swap = swap.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut swaps = 0u64;
            while !done.load(Ordering::Relaxed) {
                // Build the next model fully, then swap it in.
                let next = versioned(swap.version() + 1);
                swap.swap(next);
                swaps += 1;
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            swaps
        })
    };
    let report = Pipeline::new(MemorySource::from_payloads(4, texts))
        .json::<Msg>()
        .classify(swap.clone())
        // Route everything outside the review band [0.40, 0.50).
        .policy(Policy::binary(0.0, "team").with_review_band(0.40, 0.50))
        .route(router.clone())
        .review(learner.clone())
        .dead_letter(dead.clone())
        .max_in_flight(64)
        .active_stats(swap.stats().clone())
        .run()
        .await
        .unwrap();
    done.store(true, Ordering::Relaxed);
    let swaps = swapper.await.unwrap();

    let s = &report.stats;
    assert!(s.reconciles(), "{s:?}");
    assert_eq!(s.records_in, N);
    assert_eq!(s.dead_lettered, 0, "{:?}", dead.entries());
    assert_eq!(s.discarded, 0);
    assert_eq!(s.sent_for_review, N / 10);
    assert_eq!(s.routed + s.sent_for_review, N);

    // Every record routed or queued exactly once.
    let routed: Vec<u64> = router.deliveries().iter().map(|d| d.item.n).collect();
    let queued: Vec<u64> = learner.pending_tasks().iter().map(|t| t.item.n).collect();
    let routed_set: BTreeSet<u64> = routed.iter().copied().collect();
    let queued_set: BTreeSet<u64> = queued.iter().copied().collect();
    assert_eq!(routed_set.len(), routed.len(), "a record routed twice");
    assert_eq!(queued_set.len(), queued.len(), "a record queued twice");
    assert!(routed_set.is_disjoint(&queued_set));
    assert_eq!(
        routed_set.union(&queued_set).count() as u64,
        N,
        "a record lost"
    );
    for n in &queued_set {
        assert!((40..50).contains(&(n % 100)), "{n} is not in the band");
    }

    // Each record's prediction names one version, and the per-version
    // counts of the classifier agree with the labels the pipeline counted.
    let active = report.active.expect("active stats in the report");
    let used: Vec<_> = active.versions.iter().filter(|v| v.records > 0).collect();
    assert!(
        used.len() >= 3,
        "the swaps happened during the run: {swaps} swaps, {} versions used",
        used.len()
    );
    eprintln!("{swaps} swaps; {} versions classified records", used.len());
    let mut from_labels = 0;
    for v in &active.versions {
        let label = format!("v{}", v.version);
        let counted = s.classified.get(label.as_str()).copied().unwrap_or(0);
        assert_eq!(counted, v.records, "version {}", v.version);
        from_labels += counted;
    }
    assert_eq!(from_labels, N);
    assert_eq!(s.classified.values().sum::<u64>(), N);
    for d in router.deliveries() {
        let v: u64 = d.prediction.label.as_str()[1..].parse().unwrap();
        assert!(v >= 1 && v <= active.current_version);
    }
}

#[tokio::test(start_paused = true)]
async fn closed_loop_retrains_and_swaps_while_the_stream_flows() {
    const N: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let base = vec![
        Example::new("hello there").labeled("none"),
        Example::new("site down").labeled("problem"),
        Example::new("nice weather").labeled("none"),
        Example::new("app down").labeled("problem"),
    ];
    let config = TrainConfig::binary("problem");
    let swap = HotSwapClassifier::new(LocalClassifier::new(
        LocalModel::train(&base, &config).unwrap(),
    ));
    let retrainer = Retrainer::local(
        swap.clone(),
        base,
        config,
        RetrainTrigger {
            every_labels: Some(20),
            interval: None,
        },
    );
    let learner = ActiveLearner::builder(
        crowd().completion_delay(Duration::from_secs(60)),
        to_example,
    )
    .queue_file(dir.path().join("q.jsonl"))
    .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
    .config(ActiveConfig {
        batch_size: 20,
        tick_interval: Duration::from_secs(10),
        ..ActiveConfig::default()
    })
    .stats(swap.stats().clone())
    .retrainer(retrainer)
    .open()
    .unwrap();
    let shutdown = streamsift::Shutdown::new();
    let background = tokio::spawn({
        let (learner, shutdown) = (learner.clone(), shutdown.clone());
        async move { learner.run(shutdown).await }
    });
    let (tx, source) = MemorySource::channel(2, 64);
    let feeder = tokio::spawn(async move {
        for n in 0..N {
            let text = match n % 4 {
                0 => format!("service {n} is down"),
                1 => format!("outage: login {n} down"),
                2 => format!("good morning {n}"),
                _ => format!("lunch {n} was great"),
            };
            tx.send(serde_json::to_string(&msg(n, &text)).unwrap())
                .await
                .unwrap();
            if n % 20 == 19 {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    });
    let report = Pipeline::new(source)
        .json::<Msg>()
        .classify(swap.clone())
        .policy(Policy::binary(0.5, "team").with_review_band(0.2, 0.8))
        .route(RecordingRouter::new())
        .review(learner.clone())
        .dead_letter(MemoryDeadLetter::new())
        .active_stats(swap.stats().clone())
        .run()
        .await
        .unwrap();
    feeder.await.unwrap();
    shutdown.cancel();
    background.await.unwrap();

    let s = &report.stats;
    assert!(s.reconciles(), "{s:?}");
    assert_eq!((s.records_in, s.dead_lettered), (N, 0));
    let active = report.active.unwrap();
    eprintln!("{active:?}");
    assert!(active.retrains >= 1, "{active:?}");
    assert!(active.labels_gathered >= 20, "{active:?}");
    let classified: u64 = active.versions.iter().map(|v| v.records).sum();
    assert_eq!(classified, N);
    assert!(
        active
            .versions
            .iter()
            .any(|v| v.version > 1 && v.records > 0),
        "a retrained model classified part of the stream: {active:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_retraining_keeps_the_model_in_service() {
    let dir = tempfile::tempdir().unwrap();
    let swap = HotSwapClassifier::new(versioned(1));
    let train: streamsift::active::TrainFn<VersionedModel> =
        Arc::new(|examples: &[Example]| Err(format!("refusing {} examples", examples.len())));
    let retrainer = Retrainer::new(
        swap.clone(),
        Vec::new(),
        train,
        RetrainTrigger {
            every_labels: Some(1),
            interval: None,
        },
    );
    let inner = Arc::new(RecordingLabeler::default());
    let learner = ActiveLearner::builder(Arc::clone(&inner), to_example)
        .queue_file(dir.path().join("q.jsonl"))
        .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
        .stats(swap.stats().clone())
        .retrainer(retrainer)
        .open()
        .unwrap();
    submit_scored(&learner, &[("a", msg(1, "api down"), 0.5)]).await;
    let tick = learner.tick().await.unwrap();
    assert_eq!((tick.labels, tick.retrained), (1, None));
    let stats = learner.stats().snapshot();
    assert_eq!((stats.retrains, stats.retrain_failures), (0, 1));
    assert_eq!(swap.version(), 1);
    assert_eq!(swap.classify(&msg(2, "x")).await.unwrap().label, "v1");
}

#[tokio::test(start_paused = true)]
async fn retrain_on_a_schedule_when_new_labels_came_in() {
    let dir = tempfile::tempdir().unwrap();
    let base = vec![
        Example::new("site down").labeled("problem"),
        Example::new("nice day").labeled("none"),
    ];
    let config = TrainConfig::binary("problem");
    let swap = HotSwapClassifier::new(LocalClassifier::new(
        LocalModel::train(&base, &config).unwrap(),
    ));
    let retrainer = Retrainer::local(
        swap.clone(),
        base,
        config,
        RetrainTrigger {
            every_labels: None,
            interval: Some(Duration::from_secs(3600)),
        },
    );
    let inner = Arc::new(RecordingLabeler::default());
    let learner = ActiveLearner::builder(Arc::clone(&inner), to_example)
        .queue_file(dir.path().join("q.jsonl"))
        .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
        .stats(swap.stats().clone())
        .retrainer(retrainer)
        .open()
        .unwrap();
    submit_scored(&learner, &[("a", msg(1, "checkout down"), 0.5)]).await;
    assert_eq!(
        learner.tick().await.unwrap().retrained,
        None,
        "not an hour yet"
    );
    tokio::time::advance(Duration::from_secs(3600)).await;
    // The hour is over and a label came in since the last retraining.
    assert_eq!(learner.tick().await.unwrap().retrained, Some(2));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(
        learner.tick().await.unwrap().retrained,
        None,
        "no new label since"
    );
    submit_scored(&learner, &[("b", msg(2, "lovely"), 0.5)]).await;
    assert_eq!(learner.tick().await.unwrap().retrained, Some(3));
    assert_eq!(swap.version(), 3);
}

/// The `Labeler` contract holds for the learner around a simulated crowd:
/// "people answer" is a round that submits, time passing, and a round that
/// collects.
struct LearnerHarness {
    dir: tempfile::TempDir,
    built: usize,
}

impl streamsift::testing::labeler::LabelerHarness<Msg> for LearnerHarness {
    type Labeler = ActiveLearner<Msg, SimulatedCrowd<Msg>>;

    async fn build(&mut self) -> Self::Labeler {
        self.built += 1;
        ActiveLearner::builder(crowd(), to_example)
            .queue_file(self.dir.path().join(format!("q{}.jsonl", self.built)))
            .dataset(DatasetStore::new(
                self.dir.path().join(format!("l{}.jsonl", self.built)),
            ))
            .open()
            .unwrap()
    }

    async fn answer_all(
        &mut self,
        learner: &Self::Labeler,
        _: &std::collections::HashMap<String, TaskId>,
    ) {
        learner.tick().await.unwrap();
        tokio::time::advance(Duration::from_secs(600)).await;
        learner.tick().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn the_learner_conforms_to_the_labeler_contract() {
    let mut harness = LearnerHarness {
        dir: tempfile::tempdir().unwrap(),
        built: 0,
    };
    let items: Vec<(String, Msg)> = ["api down", "hello", "db down", "thanks"]
        .iter()
        .enumerate()
        .map(|(n, t)| (format!("m{n}"), msg(n as u64, t)))
        .collect();
    let results =
        streamsift::testing::labeler::conformance(&mut harness, &items, &["problem", "none"]).await;
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].label, "problem");
}

/// Customer text put in every item of the poison test: it must never reach
/// the logs.
const MARKER: &str = "CUSTOMER-TEXT-MARKER";

/// A labeler whose user code panics: `submit` on any batch holding a
/// "poison" item, `collect` on its first call.
#[derive(Default)]
struct PanickyLabeler {
    inner: RecordingLabeler,
    collected_once: AtomicBool,
}

#[async_trait::async_trait]
impl Labeler<Msg> for PanickyLabeler {
    async fn submit(&self, tasks: &[LabelTask<'_, Msg>]) -> Result<Vec<TaskId>, LabelError> {
        if let Some(t) = tasks.iter().find(|t| t.item.text.contains("poison")) {
            panic!("the labeler chokes on {}", t.item.text);
        }
        self.inner.submit(tasks).await
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        if !self.collected_once.swap(true, Ordering::SeqCst) {
            panic!("collect fails the first time");
        }
        self.inner.collect().await
    }
}

/// A model that panics on items saying "boom".
struct PanickyModel;

impl Classifier<Msg> for PanickyModel {
    async fn classify(&self, item: &Msg) -> Result<Prediction, ClassifyError> {
        if item.text.contains("boom") {
            panic!("the model chokes on {}", item.text);
        }
        Ok(Prediction::binary("problem", "none", 0.5))
    }
}

#[tokio::test(start_paused = true)]
async fn poison_never_stops_the_active_learning_loop() {
    let logs = process_logs();
    let dir = tempfile::tempdir().unwrap();
    let swap = HotSwapClassifier::new(PanickyModel);
    let trainings = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = Arc::clone(&trainings);
    let train: streamsift::active::TrainFn<PanickyModel> = Arc::new(move |_: &[Example]| {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("the trainer chokes the first time");
        }
        Ok(PanickyModel)
    });
    let retrainer = Retrainer::new(
        swap.clone(),
        Vec::new(),
        train,
        RetrainTrigger {
            every_labels: Some(1),
            interval: None,
        },
    );
    let inner = Arc::new(PanickyLabeler::default());
    let learner = ActiveLearner::builder(Arc::clone(&inner), |m: &Msg| {
        if m.text.contains("bad-example") {
            panic!("cannot convert {}", m.text);
        }
        Example::new(m.text.clone())
    })
    .queue_file(dir.path().join("q.jsonl"))
    .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
    .stats(swap.stats().clone())
    .retrainer(retrainer)
    .config(ActiveConfig {
        batch_size: 10,
        ..ActiveConfig::default()
    })
    .open()
    .unwrap();
    let text = |s: &str| format!("{s} {MARKER}");
    submit_scored(
        &learner,
        &[
            ("a", msg(1, &text("api down")), 0.5),
            ("p", msg(2, &text("poison")), 0.5),
            ("b", msg(3, &text("login down")), 0.5),
            ("x", msg(4, &text("bad-example")), 0.5),
        ],
    )
    .await;

    // Round 1: the batch panics, so its items go one by one and only the
    // poison item fails; then collect panics: no labels this round.
    let tick = learner.tick().await.expect("a panic fails only its item");
    assert_eq!(tick.submitted, 3, "{tick:?}");
    assert_eq!(learner.pending(), 0, "the poison item left the queue");
    assert_eq!(learner.awaiting(), 3);

    // Round 2: three labels come in; one item's conversion panics, and the
    // retraining panics; the round stores the other two.
    let tick = learner.tick().await.expect("panics fail their item alone");
    assert_eq!((tick.labels, tick.retrained), (2, None), "{tick:?}");
    assert_eq!(learner.awaiting(), 0, "the unconvertible item left too");
    assert_eq!(stored_ids(&learner), ["a", "b"]);

    // The loop goes on: a new label retrains (the trainer works now).
    submit_scored(&learner, &[("c", msg(5, &text("site down")), 0.5)]).await;
    let tick = learner.tick().await.expect("the learner keeps working");
    assert_eq!((tick.labels, tick.retrained), (1, Some(2)), "{tick:?}");

    // The served model panics on one record: that record fails alone.
    let err = swap
        .classify(&msg(6, &text("boom")))
        .await
        .expect_err("a panic is an error for that record");
    assert!(!err.is_retryable(), "{err}");
    assert!(swap.classify(&msg(7, &text("fine"))).await.is_ok());

    let stats = format!("{:?}", learner.stats().snapshot());
    assert!(stats.contains("panics: 5"), "{stats}");
    let logs = logs.text();
    for stage in ["submit", "collect", "to_example", "retrain", "classify"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("kind=\"panic\"") && l.contains(&format!("stage=\"{stage}\""))),
            "no panic logged at the {stage} stage:\n{logs}"
        );
    }
    assert!(
        !logs.contains(MARKER),
        "customer text reached the logs:\n{logs}"
    );
}

/// A labeler that refuses some items for good (a text it cannot take),
/// or, with `everything`, every item (a revoked key).
#[derive(Default)]
struct RefusingLabeler {
    inner: RecordingLabeler,
    everything: AtomicBool,
}

#[async_trait::async_trait]
impl Labeler<Msg> for RefusingLabeler {
    async fn submit(&self, tasks: &[LabelTask<'_, Msg>]) -> Result<Vec<TaskId>, LabelError> {
        if self.everything.load(Ordering::SeqCst) {
            return Err(LabelError::permanent("401: the key was revoked"));
        }
        if let Some(t) = tasks.iter().find(|t| t.item.text.contains("spam")) {
            return Err(LabelError::permanent(format!(
                "cannot take {}",
                t.item.text
            )));
        }
        self.inner.submit(tasks).await
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        self.inner.collect().await
    }
}

/// An item the labeler refuses for good leaves the queue, so it cannot
/// hold up the items batched with it (before, every round resubmitted the
/// same refused batch and nothing was ever labeled). With a batch of one
/// the next item, alone, shows that the labeler works. A labeler that
/// refuses everything (a revoked key) keeps every item.
#[tokio::test(start_paused = true)]
async fn an_item_refused_for_good_leaves_the_queue_and_others_are_labeled() {
    let logs = process_logs();
    for batch_size in [10, 1] {
        let dir = tempfile::tempdir().unwrap();
        let inner = Arc::new(RefusingLabeler::default());
        let learner = ActiveLearner::builder(Arc::clone(&inner), to_example)
            .queue_file(dir.path().join("q.jsonl"))
            .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
            .config(ActiveConfig {
                batch_size,
                ..ActiveConfig::default()
            })
            .open()
            .unwrap();
        submit_scored(
            &learner,
            &[
                ("s", msg(1, &format!("spam {MARKER}")), 0.5),
                ("a", msg(2, "api down"), 0.6),
                ("b", msg(3, "login down"), 0.7),
            ],
        )
        .await;
        for _ in 0..3 {
            learner.tick().await.expect("a refused item fails alone");
        }
        let mut stored = stored_ids(&learner);
        stored.sort();
        assert_eq!(stored, ["a", "b"], "batch size {batch_size}");
        assert_eq!((learner.pending(), learner.awaiting()), (0, 0));
        assert_eq!(learner.stats().snapshot().refused, 1);

        // The key is revoked: every item is refused, none leaves.
        inner.everything.store(true, Ordering::SeqCst);
        submit_scored(
            &learner,
            &[("c", msg(4, "site down")), ("d", msg(5, "pay down"))].map(|(id, m)| (id, m, 0.5)),
        )
        .await;
        let err = learner.tick().await.expect_err("the round fails");
        assert!(err.to_string().contains("revoked"), "{err}");
        assert_eq!(
            learner.pending(),
            2,
            "batch size {batch_size}: nothing left the queue"
        );
        assert_eq!(learner.stats().snapshot().refused, 1);
        inner.everything.store(false, Ordering::SeqCst);
        learner.tick().await.unwrap();
        learner.tick().await.unwrap();
        assert_eq!(learner.store().labeled().unwrap().len(), 4);
    }
    let logs = logs.text();
    assert!(
        logs.lines()
            .any(|l| l.contains("kind=\"refused\"") && l.contains("id=s")),
        "the refusal is logged with the item's id:\n{logs}"
    );
    assert!(
        !logs.contains(MARKER),
        "customer text reached the logs:\n{logs}"
    );
}

/// Active learning with LLM workers as the inner labeler (a scripted
/// classifier stands in for the LLM): while the LLM is down the tick fails
/// and the items stay queued; once it answers, they are labeled and stored.
#[tokio::test(start_paused = true)]
async fn an_llm_labeler_can_be_the_inner_labeler() {
    use streamsift::LlmLabeler;
    use streamsift::fakes::FnClassifier;

    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let llm = {
        let (down, calls) = (down.clone(), calls.clone());
        FnClassifier::new(move |m: &Msg| {
            calls.fetch_add(1, Ordering::SeqCst);
            if down.load(Ordering::SeqCst) {
                return Err(ClassifyError::unavailable("503"));
            }
            Ok(Prediction::label(if m.text.contains("down") {
                "problem"
            } else {
                "none"
            }))
        })
    };
    let labeler = LlmLabeler::builder(["problem", "none"])
        .worker("llm:prompt-v1", llm)
        .retry(2, Duration::from_millis(100))
        .build()
        .unwrap();
    let learner = ActiveLearner::builder(labeler, to_example)
        .queue_file(dir.path().join("q.jsonl"))
        .dataset(DatasetStore::new(dir.path().join("labels.jsonl")))
        .config(ActiveConfig {
            batch_size: 10,
            ..ActiveConfig::default()
        })
        .open()
        .unwrap();
    let msgs = [
        msg(1, "api down"),
        msg(2, "thanks"),
        msg(3, "site down again"),
    ];
    let ids = ["m1", "m2", "m3"];
    let p = Prediction::binary("problem", "none", 0.5);
    let tasks: Vec<LabelTask<'_, Msg>> = ids
        .iter()
        .zip(&msgs)
        .map(|(id, m)| LabelTask::new(id, m).with_prediction(&p))
        .collect();
    learner.submit(&tasks).await.unwrap();

    let err = learner.tick().await.unwrap_err();
    assert_eq!(err.kind(), "labeler", "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 6, "3 items x 2 attempts");
    assert_eq!(
        learner.pending(),
        3,
        "nothing is lost while the LLM is down"
    );
    assert!(learner.store().labeled().unwrap().is_empty());

    down.store(false, Ordering::SeqCst);
    let mut labels = 0;
    for _ in 0..2 {
        let report = learner.tick().await.unwrap();
        labels += report.labels;
    }
    assert_eq!(labels, 3);
    assert_eq!(learner.pending(), 0);
    let stored: BTreeMap<String, String> = learner
        .store()
        .labeled()
        .unwrap()
        .into_iter()
        .map(|l| (l.example.text, l.example.label.unwrap()))
        .collect();
    assert_eq!(
        stored,
        BTreeMap::from([
            ("api down".to_string(), "problem".to_string()),
            ("site down again".to_string(), "problem".to_string()),
            ("thanks".to_string(), "none".to_string()),
        ])
    );
    assert_eq!(learner.labeler().stats()[0].votes, 3);
}
