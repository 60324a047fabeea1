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
        err.to_string()
            .contains("invalid value 'many' for '--sample <N>'"),
        "{err}"
    );
    let err = app::Options::parse(["--bogus".to_string()]).unwrap_err();
    assert!(
        err.to_string().contains("unexpected argument '--bogus'"),
        "{err}"
    );
    let err = app::Options::parse(["--web", "--mturk"].map(String::from)).unwrap_err();
    assert!(err.to_string().contains("cannot be used with"), "{err}");
    let help = app::Options::parse(["--help".to_string()]).unwrap_err();
    assert!(help.to_string().contains("--max-spend <USD>"), "{help}");
}

/// `--web`: the flow with the local labeling page, one person answering
/// through its HTTP API (what the page's script calls) with the gold label.
#[cfg(feature = "label-ui")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_labeling_page_feeds_the_flow() {
    use std::sync::Arc;
    use streamsift::label_ui::LocalWebLabelerBuilder;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One JSON POST on its own connection; returns status and body.
    async fn post(
        addr: std::net::SocketAddr,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (
            status,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }

    let dir = tempfile::tempdir().unwrap();
    let mut options = app::Options::parse(["--web".to_string()]).unwrap();
    options.out = dir.path().to_path_buf();
    options.sample = 150;
    options.poll = Duration::from_millis(20);
    options.max_wait = Duration::from_secs(120);
    assert_eq!(options.min_votes, 1, "one person, one answer");
    assert_eq!(options.method, app::Method::Majority);
    let expected = app::prepare(&options).unwrap().examples.len();
    let gold = read_labels_path(&options.gold, "id_str", "label").unwrap();

    let labeler = Arc::new(
        LocalWebLabelerBuilder::new(dir.path().join("web-labels.jsonl"), app::CATEGORIES)
            .start(|e: &Example| e.text.clone())
            .await
            .unwrap(),
    );
    let (addr, token) = (labeler.local_addr(), labeler.token().expose().to_string());
    let person = tokio::spawn(async move {
        let mut answered = 0;
        while answered < expected {
            let (status, state) = post(
                addr,
                &token,
                "/api/state",
                serde_json::json!({"worker": "ann"}),
            )
            .await;
            assert_eq!(status, 200, "{state}");
            let Some(id) = state["item"]["id"].as_str().map(str::to_owned) else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let label = gold.get(&id).cloned().unwrap_or_else(|| "none".to_string());
            let (status, reply) = post(
                addr,
                &token,
                "/api/answer",
                serde_json::json!({"worker": "ann", "item": id, "label": label}),
            )
            .await;
            assert_eq!(status, 200, "{reply}");
            answered += 1;
        }
        answered
    });
    let outcome = app::run(&options, &labeler).await.unwrap();
    assert_eq!(person.await.unwrap(), expected);
    assert_eq!(outcome.tasks, expected);
    assert_eq!((outcome.unanswered, outcome.incomplete), (0, 0));
    assert_eq!(outcome.labeled, expected);
    // The person answered with the gold labels.
    assert_eq!(outcome.label_accuracy, Some(1.0));
    assert!(dir.path().join("training.csv").exists());
    assert!(dir.path().join("report.html").exists());
    // Every answer is in the page's own dataset file.
    let saved = std::fs::read_to_string(dir.path().join("web-labels.jsonl")).unwrap();
    assert!(
        saved.lines().count() >= expected,
        "{} lines",
        saved.lines().count()
    );
}

#[cfg(feature = "mturk")]
#[path = "common/mturk_server.rs"]
#[allow(dead_code)]
mod mturk_server;

/// `--mturk`: the flow's HITs against a scripted MTurk at the HTTP layer
/// (the real SDK serialises every request), workers answering with the gold
/// label.
#[cfg(feature = "mturk")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mturk_hits_feed_the_flow() {
    use mturk_server::{MturkServer, answer_xml};

    let dir = tempfile::tempdir().unwrap();
    let mut options =
        app::Options::parse(["--mturk", "--max-spend", "100"].map(String::from)).unwrap();
    assert_eq!(options.max_spend_cents, 10_000);
    options.out = dir.path().to_path_buf();
    options.sample = 120;
    options.poll = Duration::from_millis(20);
    options.max_wait = Duration::from_secs(120);
    let expected = app::prepare(&options).unwrap().examples.len();
    let gold = read_labels_path(&options.gold, "id_str", "label").unwrap();

    let server = MturkServer::new();
    let labeler = app::mturk_builder(
        &options,
        aws_sdk_mturk::Client::from_conf(server.config().build()),
    )
    .build();
    let workers = {
        let server = server.clone();
        let gold = gold.clone();
        tokio::spawn(async move {
            while server.hits().len() < expected {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            server.answer_all(|hit, _| {
                let label = gold.get(&hit.annotation).map_or("none", String::as_str);
                answer_xml("category", label)
            });
        })
    };
    let outcome = app::run(&options, &labeler).await.unwrap();
    workers.await.unwrap();
    assert_eq!(server.hits().len(), expected, "one HIT per tweet");
    let hit = &server.hits()[0];
    assert_eq!(hit.max_assignments, 3);
    assert!(
        hit.question.contains("value=\"technical_question\""),
        "{}",
        hit.question
    );
    assert_eq!((outcome.unanswered, outcome.incomplete), (0, 0));
    assert_eq!(outcome.labeled, expected);
    assert_eq!(outcome.label_accuracy, Some(1.0));
    assert!(dir.path().join("report.html").exists());
}

/// `--llm-sim`: two simulated LLM workers pre-label the sample (no people),
/// the model trains on their Dawid-Skene labels, and the report holds what
/// was measured against gold.
#[tokio::test]
async fn llm_sim_pre_labels_and_trains_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = app::Options::parse(["--llm-sim".to_string()]).unwrap();
    options.out = dir.path().to_path_buf();
    options.sample = 400;
    assert!(options.llm_sim && !options.review);
    let prepared = app::prepare(&options).unwrap();
    let gold = read_labels_path(&options.gold, "id_str", "label").unwrap();
    let llm = app::simulated_llm_labeler(&prepared.examples, &gold, options.seed).unwrap();
    let o = app::run_llm(&options, &llm, None::<&SimulatedCrowd<Example>>)
        .await
        .unwrap();
    eprintln!("{o:#?}");

    assert_eq!(o.tasks, prepared.examples.len());
    assert_eq!((o.llm_labeled, o.llm_unanswered), (o.tasks, 0));
    assert_eq!(o.csv_rows, o.tasks);
    // Each worker votes on every task, about as accurately as simulated.
    for ((id, votes, acc), want) in o.workers.iter().zip(app::SIM_ACCURACY) {
        assert_eq!(*votes, o.tasks, "{id}");
        let acc = acc.unwrap();
        assert!((acc - want).abs() < 0.06, "{id}: {acc} vs {want}");
    }
    // They disagree on some tweets; without review, nobody looked at them.
    assert!(
        o.disagreements > 0 && o.disagreements < o.tasks / 2,
        "{o:?}"
    );
    assert_eq!((o.reviewed, o.accepted), (0, 0));
    assert_eq!(o.label_accuracy, o.llm_label_accuracy);
    // Dawid-Skene over the two is at least as good as the worse worker.
    let llm_acc = o.llm_label_accuracy.unwrap();
    assert!(llm_acc >= o.workers[1].2.unwrap(), "{llm_acc}");
    // The CSV's labels are those measured.
    let data = LoadOptions::new("text")
        .id("id")
        .label("label")
        .load_path(dir.path().join("training.csv"))
        .unwrap();
    let right = data
        .examples
        .iter()
        .filter(|e| gold.get(e.id.as_deref().unwrap()) == e.label.as_ref())
        .count();
    let known = data
        .examples
        .iter()
        .filter(|e| gold.contains_key(e.id.as_deref().unwrap()))
        .count();
    assert_eq!(Some(right as f64 / known as f64), o.label_accuracy);
    // The model learned something real, measured on gold.
    assert!(o.trained.auc > 0.75, "{:?}", o.trained);
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("LLM workers disagreed on"));
    assert!(LocalModel::load(dir.path().join("model.json")).is_ok());
}

#[test]
fn llm_arguments_are_checked() {
    let o = app::Options::parse(["--llm-sim", "--review"].map(String::from)).unwrap();
    assert!(o.review && o.llm_sim);
    assert_eq!(
        o.max_wait,
        Duration::from_secs(8 * 60 * 60),
        "people review"
    );
    let err = app::Options::parse(["--llm-sim", "--web"].map(String::from)).unwrap_err();
    assert!(err.to_string().contains("cannot be used with"), "{err}");
    let err =
        app::Options::parse(["--llm", "http://x", "--llm-sim"].map(String::from)).unwrap_err();
    assert!(err.to_string().contains("cannot be used with"), "{err}");
    let o = app::Options::parse(
        ["--llm", "http://127.0.0.1:9/v1", "--llm-model", "m"].map(String::from),
    )
    .unwrap();
    assert_eq!(o.llm.as_deref(), Some("http://127.0.0.1:9/v1"));
    assert_eq!(
        (o.llm_model.as_str(), o.llm_key_env.as_str()),
        ("m", "OPENAI_API_KEY")
    );
}

/// `--llm-sim --review`: people review the LLM workers' disagreements on the
/// labeling page (a person answering through its HTTP API with the gold
/// label), each shown with the LLM's label as its suggestion; their answers
/// replace the LLM's, and the final labels beat the LLM's.
#[cfg(feature = "label-ui")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_sim_review_of_disagreements_on_the_page() {
    use std::sync::Arc;
    use streamsift::label_ui::LocalWebLabelerBuilder;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn post(
        addr: std::net::SocketAddr,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (
            status,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }

    let dir = tempfile::tempdir().unwrap();
    let mut options = app::Options::parse(["--llm-sim", "--review"].map(String::from)).unwrap();
    options.out = dir.path().to_path_buf();
    options.sample = 400;
    options.poll = Duration::from_millis(20);
    options.max_wait = Duration::from_secs(120);
    let prepared = app::prepare(&options).unwrap();
    let gold = read_labels_path(&options.gold, "id_str", "label").unwrap();
    let llm = app::simulated_llm_labeler(&prepared.examples, &gold, options.seed).unwrap();
    let page = Arc::new(
        LocalWebLabelerBuilder::new(dir.path().join("review.jsonl"), app::CATEGORIES)
            .start(|e: &Example| e.text.clone())
            .await
            .unwrap(),
    );
    let (addr, token) = (page.local_addr(), page.token().expose().to_string());
    let person_gold = gold.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let person = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut answered, mut suggested) = (0usize, 0usize);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (status, state) = post(
                    addr,
                    &token,
                    "/api/state",
                    serde_json::json!({"worker": "ann"}),
                )
                .await;
                assert_eq!(status, 200, "{state}");
                let Some(id) = state["item"]["id"].as_str().map(str::to_owned) else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                suggested += usize::from(state["item"]["suggestion"]["label"].is_string());
                let label = person_gold
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| "none".into());
                let body = serde_json::json!({"worker": "ann", "item": id, "label": label});
                let (status, reply) = post(addr, &token, "/api/answer", body).await;
                assert_eq!(status, 200, "{reply}");
                answered += 1;
            }
            (answered, suggested)
        })
    };
    let o = app::run_llm(&options, &llm, Some(&page)).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (answered, suggested) = person.await.unwrap();
    eprintln!("{o:#?}");

    assert!(o.disagreements > 0);
    assert_eq!(o.reviewed, o.disagreements, "every disagreement reviewed");
    assert_eq!(answered, o.disagreements, "and only those");
    assert_eq!(suggested, answered, "each shown with the LLM's suggestion");
    let review = page.review_progress();
    assert_eq!(
        (review.suggested, review.accepted),
        (o.reviewed, o.accepted)
    );
    assert!(
        o.accepted < o.reviewed,
        "people overrode some suggestions: {o:?}"
    );
    let (llm_acc, final_acc) = (o.llm_label_accuracy.unwrap(), o.label_accuracy.unwrap());
    assert!(
        final_acc > llm_acc,
        "review helps: {llm_acc} -> {final_acc}"
    );
}

#[cfg(feature = "llm")]
#[path = "llm_support/server.rs"]
mod llm_server;

/// `--llm URL`: the two prompt templates' workers call an OpenAI-compatible
/// server (a scripted one on loopback), every task gets both votes, and the
/// flow trains on what they said. The requests carry the model, the key
/// from the named variable, and the label set as the schema's enum.
#[cfg(feature = "llm")]
#[tokio::test]
async fn llm_url_pre_labels_through_an_openai_compatible_server() {
    use serde_json::json;
    const KEY_ENV: &str = "STREAMSIFT_TEST_LABEL_AND_TRAIN_KEY";
    // SAFETY: this test alone reads or writes this variable.
    unsafe { std::env::set_var(KEY_ENV, "sk-test-label-and-train") };
    let server = llm_server::Scripted::start(|seen, _| {
        let msgs = seen.body["messages"].as_array().cloned().unwrap_or_default();
        let item = msgs
            .last()
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_lowercase();
        // The post itself, between the item tags.
        let item = item.split("<item>").nth(1).unwrap_or("").to_owned();
        let problem = ["down", "error", "fail", "broken", "not ", "can't"];
        let label = if item.contains('?') {
            "technical_question"
        } else if problem.iter().any(|w| item.contains(w)) {
            "problem_report"
        } else {
            "none"
        };
        let content = json!({ "label": label }).to_string();
        llm_server::Reply::json(
            200,
            json!({
                "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 120, "completion_tokens": 5}
            }),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path(), 150);
    options.llm = Some(format!("{}/v1", server.url));
    let labeler =
        app::server_llm_labeler(options.llm.as_deref().unwrap(), "test-model", KEY_ENV).unwrap();
    let prepared = app::prepare(&options).unwrap();
    let o = app::run_llm(&options, &labeler, None::<&SimulatedCrowd<Example>>)
        .await
        .unwrap();

    assert_eq!(o.tasks, prepared.examples.len());
    assert_eq!((o.llm_labeled, o.llm_unanswered), (o.tasks, 0), "{o:?}");
    assert_eq!(o.csv_rows, o.tasks);
    for (id, votes, _) in &o.workers {
        assert_eq!(*votes, o.tasks, "{id}");
    }
    // Both templates answered alike, so they never disagree.
    assert_eq!(o.disagreements, 0, "{o:?}");
    let seen = server.seen();
    assert_eq!(seen.len(), 2 * o.tasks, "one call per task and worker");
    for s in &seen {
        assert!(s.path.ends_with("/v1/chat/completions"), "{}", s.path);
        assert_eq!(s.body["model"], "test-model");
        assert_eq!(
            s.headers.get("authorization").map(String::as_str),
            Some("Bearer sk-test-label-and-train")
        );
        let schema = s.body["response_format"].to_string();
        for category in app::CATEGORIES {
            assert!(
                schema.contains(category),
                "{category} missing from {schema}"
            );
        }
    }
}
