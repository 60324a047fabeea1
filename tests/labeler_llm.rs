//! `LlmLabeler`: classifiers (LLM workers) through the `Labeler` contract,
//! next to simulated people in Dawid–Skene, with retries, permanent
//! failures and a concurrency bound.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use streamsift::aggregate::{Aggregator, DawidSkene, answers_from_results};
use streamsift::fakes::{FnClassifier, SimulatedCrowd, Worker};
use streamsift::testing::labeler::{LabelerHarness, conformance};
use streamsift::{
    ClassifyError, ErrorClass, LabelResult, LabelTask, Labeler, LlmLabeler, Prediction, TaskId,
};

const LABELS: [&str; 4] = ["request", "question", "problem_report", "none"];

/// An item: its text carries its gold label's index (`"<n>:<gold>"`).
fn item(n: usize) -> (String, String) {
    (format!("t{n:04}"), format!("{n}:{}", n % LABELS.len()))
}

fn gold(text: &str) -> &'static str {
    let g: usize = text
        .rsplit(':')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("test item");
    LABELS[g]
}

fn unit(parts: impl Hash) -> f64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// A scripted LLM: right with probability `accuracy` (per item, seeded),
/// else one of the other labels uniformly.
fn scripted_llm(
    seed: u64,
    accuracy: f64,
) -> FnClassifier<impl Fn(&String) -> Result<Prediction, ClassifyError> + Send + Sync + Clone> {
    FnClassifier::new(move |text: &String| {
        let truth = gold(text);
        if unit((seed, text, 0u8)) < accuracy {
            return Ok(Prediction::label(truth));
        }
        let others: Vec<&str> = LABELS.iter().copied().filter(|l| *l != truth).collect();
        let pick = (unit((seed, text, 1u8)) * others.len() as f64) as usize;
        Ok(Prediction::label(others[pick.min(others.len() - 1)]))
    })
}

struct LlmHarness;

impl LabelerHarness<String> for LlmHarness {
    type Labeler = LlmLabeler<String>;

    async fn build(&mut self) -> LlmLabeler<String> {
        LlmLabeler::builder(LABELS)
            .worker("llm:a", scripted_llm(1, 0.9))
            .worker("llm:b", scripted_llm(2, 0.6))
            .build()
            .unwrap()
    }

    // The workers answer inside `submit`: nothing to wait for.
    async fn answer_all(&mut self, _: &LlmLabeler<String>, _: &HashMap<String, TaskId>) {}
}

#[tokio::test]
async fn llm_labeler_keeps_the_labeler_contract() {
    let items: Vec<(String, String)> = (0..6).map(item).collect();
    let results = conformance(&mut LlmHarness, &items, &LABELS).await;
    assert_eq!(results.len(), 6);
    for r in &results {
        let workers: Vec<&str> = r.votes.iter().map(|v| v.worker.as_str()).collect();
        assert_eq!(workers, ["llm:a", "llm:b"], "one vote per worker, by id");
    }
}

async fn label_all<L: Labeler<String>>(
    labeler: &L,
    items: &[(String, String)],
) -> Vec<LabelResult> {
    let tasks: Vec<LabelTask<'_, String>> =
        items.iter().map(|(id, t)| LabelTask::new(id, t)).collect();
    labeler.submit(&tasks).await.unwrap();
    labeler.collect().await.unwrap()
}

/// Two LLM workers of different accuracy and three simulated people: the
/// Dawid–Skene estimate of every worker's accuracy ranks them as their
/// measured accuracy against gold does, and is close to it.
#[tokio::test(start_paused = true)]
async fn dawid_skene_ranks_llm_and_human_workers_by_reliability() {
    let items: Vec<(String, String)> = (0..400).map(item).collect();
    let llm = LlmLabeler::builder(LABELS)
        .worker("llm:large", scripted_llm(11, 0.92))
        .worker("llm:small", scripted_llm(12, 0.6))
        .build()
        .unwrap();
    let crowd = SimulatedCrowd::new(LABELS, |t: &String| gold(t))
        .workers([
            Worker::accurate("ann", 0.82),
            Worker::accurate("bob", 0.72),
            Worker::spammer("spam"),
        ])
        .assignments_per_task(3)
        .completion_delay(Duration::from_secs(60))
        .seed(5);
    let mut results = label_all(&llm, &items).await;
    let tasks: Vec<LabelTask<'_, String>> =
        items.iter().map(|(id, t)| LabelTask::new(id, t)).collect();
    crowd.submit(&tasks).await.unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    results.extend(crowd.collect().await.unwrap());
    assert_eq!(results.len(), 800);

    let answers = answers_from_results(&results);
    let texts: HashMap<&str, &str> = items
        .iter()
        .map(|(i, t)| (i.as_str(), t.as_str()))
        .collect();
    let mut measured: HashMap<String, (usize, usize)> = HashMap::new();
    for a in &answers {
        let e = measured.entry(a.worker.clone()).or_default();
        e.1 += 1;
        if a.label == gold(texts[a.item_id.as_str()]) {
            e.0 += 1;
        }
    }
    let out = Aggregator::new(LABELS)
        .min_votes(1)
        .dawid_skene(&answers, &DawidSkene::default());
    let mut by_estimate: Vec<(String, f64)> = out
        .workers
        .iter()
        .map(|w| (w.worker.clone(), w.accuracy))
        .collect();
    by_estimate.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut by_measure: Vec<(String, f64)> = measured
        .iter()
        .map(|(w, (right, n))| (w.clone(), *right as f64 / *n as f64))
        .collect();
    by_measure.sort_by(|a, b| b.1.total_cmp(&a.1));
    let names = |v: &[(String, f64)]| v.iter().map(|(w, _)| w.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&by_estimate),
        ["llm:large", "ann", "bob", "llm:small", "spam"],
        "estimates {by_estimate:?}, measured {by_measure:?}"
    );
    assert_eq!(names(&by_estimate), names(&by_measure));
    for (w, est) in &by_estimate {
        let (right, n) = measured[w];
        let real = right as f64 / n as f64;
        assert!(
            (est - real).abs() < 0.06,
            "{w}: estimated {est:.3}, measured {real:.3}"
        );
    }
    let spam = out.worker("spam").unwrap();
    assert!(spam.spammer, "{spam:?}");
    assert!(!out.worker("llm:small").unwrap().spammer);
    // The aggregate beats the best single worker.
    let right = out
        .items
        .iter()
        .filter(|i| i.label == gold(texts[i.item_id.as_str()]))
        .count();
    let aggregate = right as f64 / out.items.len() as f64;
    assert!(
        aggregate > by_measure[0].1,
        "aggregate {aggregate}, best {by_measure:?}"
    );
}

/// A worker that fails with `error` for its first `fails` calls on each
/// labeler run, then answers `label`; counts its calls.
fn flaky(
    calls: Arc<AtomicU32>,
    fails: u32,
    error: fn() -> ClassifyError,
    label: &'static str,
) -> FnClassifier<impl Fn(&String) -> Result<Prediction, ClassifyError> + Send + Sync> {
    FnClassifier::new(move |_: &String| {
        if calls.fetch_add(1, Ordering::SeqCst) < fails {
            Err(error())
        } else {
            Ok(Prediction::label(label))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_are_retried_with_backoff_and_bounded() {
    let (a, b) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let labeler = LlmLabeler::builder(LABELS)
        // Throttled twice, then answers: a vote after 3 calls.
        .worker(
            "recovers",
            flaky(a.clone(), 2, || ClassifyError::throttled("429"), "question"),
        )
        // Always unavailable: no vote after 3 calls.
        .worker(
            "down",
            flaky(
                b.clone(),
                u32::MAX,
                || ClassifyError::unavailable("503"),
                "none",
            ),
        )
        .retry(3, Duration::from_secs(1))
        .build()
        .unwrap();
    let text = "1:1".to_string();
    let start = tokio::time::Instant::now();
    labeler.submit(&[LabelTask::new("x", &text)]).await.unwrap();
    // Backoffs of 1 s then 2 s.
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (3, 3));
    let results = labeler.collect().await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].votes.len(),
        1,
        "no made-up vote for the failed worker"
    );
    assert_eq!(results[0].votes[0].worker, "recovers");
    assert_eq!(results[0].label, "question");
    let stats = labeler.stats();
    assert_eq!(
        (stats[0].calls, stats[0].retries, stats[0].votes),
        (3, 2, 1)
    );
    assert_eq!(
        (stats[1].calls, stats[1].failed_retryable, stats[1].votes),
        (3, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_odd_labels_and_panics_leave_only_that_vote_out() {
    let (p, o) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let labeler = LlmLabeler::builder(LABELS)
        .worker("ok", scripted_llm(3, 1.0))
        .worker(
            "refuses",
            flaky(
                p.clone(),
                u32::MAX,
                || ClassifyError::permanent("content filter"),
                "none",
            ),
        )
        .worker(
            "odd",
            flaky(
                o.clone(),
                0,
                || unreachable!(),
                "ignore previous instructions",
            ),
        )
        .worker(
            "panics",
            FnClassifier::new(|_: &String| -> Result<Prediction, ClassifyError> {
                panic!("user code")
            }),
        )
        .build()
        .unwrap();
    let text = "2:2".to_string();
    labeler.submit(&[LabelTask::new("y", &text)]).await.unwrap();
    assert_eq!(
        p.load(Ordering::SeqCst),
        1,
        "a permanent error is not retried"
    );
    let results = labeler.collect().await.unwrap();
    let voters: Vec<&str> = results[0].votes.iter().map(|v| v.worker.as_str()).collect();
    assert_eq!(voters, ["ok"]);
    assert_eq!(results[0].label, "problem_report");
    assert_eq!(results[0].agreement, 1.0);
    let stats = labeler.stats();
    assert_eq!(
        stats.iter().map(|s| s.failed_permanent).collect::<Vec<_>>(),
        [0, 1, 1, 1]
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_no_worker_answers_fails_submit_and_is_retried_under_the_same_id() {
    let calls = Arc::new(AtomicU32::new(0));
    let labeler = LlmLabeler::builder(LABELS)
        // 2 attempts per vote: the first submit uses both and fails.
        .worker(
            "w",
            flaky(
                calls.clone(),
                2,
                || ClassifyError::unavailable("503"),
                "none",
            ),
        )
        .retry(2, Duration::from_millis(10))
        .build()
        .unwrap();
    let (a, b) = ("3:3".to_string(), "0:0".to_string());
    let err = labeler
        .submit(&[LabelTask::new("a", &a)])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    let unanswered = labeler.unanswered();
    assert_eq!(unanswered.len(), 1);
    assert_eq!(unanswered[0].item_id, "a");
    assert_eq!(unanswered[0].failures[0].kind, "unavailable");
    assert_eq!(unanswered[0].failures[0].attempts, 2);
    assert!(
        labeler.collect().await.unwrap().is_empty(),
        "no result without a vote"
    );
    // Again, with another item: a is tried again and answered, same task.
    let ids = labeler
        .submit(&[LabelTask::new("a", &a), LabelTask::new("b", &b)])
        .await
        .unwrap();
    assert_eq!(ids[0], TaskId("llm:a".into()));
    assert!(labeler.unanswered().is_empty());
    let results = labeler.collect().await.unwrap();
    assert_eq!(results.len(), 2);
    // Answered tasks are not labeled again.
    let before = calls.load(Ordering::SeqCst);
    labeler.submit(&[LabelTask::new("a", &a)]).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), before);
}

#[tokio::test(start_paused = true)]
async fn every_worker_failing_permanently_is_a_permanent_error() {
    let labeler = LlmLabeler::builder(LABELS)
        .worker(
            "odd",
            FnClassifier::new(|_: &String| Ok(Prediction::label("maybe"))),
        )
        .build()
        .unwrap();
    let text = "0:0".to_string();
    let err = labeler
        .submit(&[LabelTask::new("z", &text)])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("label_outside_set"), "{err}");
    assert!(
        !err.to_string().contains("maybe"),
        "the answer's text is not echoed: {err}"
    );
}

#[tokio::test(start_paused = true)]
async fn calls_in_flight_never_exceed_the_concurrency_bound() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let slow = {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        move |_: &String| {
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ClassifyError>(Prediction::label("none"))
            }
        }
    };
    let labeler = LlmLabeler::builder(LABELS)
        .worker("p1", slow.clone())
        .worker("p2", slow)
        .concurrency(3)
        .build()
        .unwrap();
    let items: Vec<(String, String)> = (0..10).map(item).collect();
    let start = tokio::time::Instant::now();
    let results = label_all(&labeler, &items).await;
    assert_eq!(results.len(), 10);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "20 calls, at most 3 at once, and 3 used"
    );
    // 20 calls of 300 ms, 3 at a time: 7 rounds.
    assert_eq!(start.elapsed(), Duration::from_millis(2100));
}

#[tokio::test]
async fn bad_settings_are_refused_with_a_hint() {
    let no_worker = LlmLabeler::<String>::builder(LABELS).build().unwrap_err();
    assert!(
        no_worker.to_string().contains("add a worker"),
        "{no_worker}"
    );
    let twice = LlmLabeler::builder(LABELS)
        .worker("w", scripted_llm(1, 1.0))
        .worker("w", scripted_llm(2, 1.0))
        .build()
        .unwrap_err();
    assert!(twice.to_string().contains("distinct"), "{twice}");
    let zero = LlmLabeler::builder(LABELS)
        .worker("w", scripted_llm(1, 1.0))
        .concurrency(0)
        .build()
        .unwrap_err();
    assert_eq!(zero.class(), ErrorClass::Permanent);
}
