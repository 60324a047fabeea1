//! The local labeling page (`label-ui`): HTTP-level tests against the real
//! server on loopback, and a headless Chromium test that labels by keyboard.
#![cfg(feature = "label-ui")]

mod common;
use common::logs::process_logs;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use streamsift::label_ui::{
    CONTENT_SECURITY_POLICY, LabelUiError, LocalWebLabeler, LocalWebLabelerBuilder, Progress,
    ReviewProgress, StoreFootprint,
};
use streamsift::testing::labeler::{LabelerHarness, conformance as labeler_conformance};
use streamsift::{LabelTask, Labeler, TaskId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LABELS: [&str; 3] = ["problem_report", "question", "none"];
const HOSTILE_IMG: &str = "<img src=x onerror=\"window.pwned=1\"> my order is late";
const HOSTILE_SCRIPT: &str = "<script>window.pwned=2</script> & \"quotes\" 'too'";

/// A response: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn http(
    labeler: &LocalWebLabeler<String>,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut stream = TcpStream::connect(labeler.local_addr()).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        labeler.local_addr(),
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    if let Some(auth) = auth {
        request.push_str(&format!("Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A POST to the API with the right token.
async fn api(labeler: &LocalWebLabeler<String>, path: &str, body: Value) -> Reply {
    let auth = format!("Bearer {}", labeler.token().expose());
    http(labeler, "POST", path, Some(&auth), Some(&body)).await
}

/// The id of the item the person is shown next (None when nothing is left).
async fn next(labeler: &LocalWebLabeler<String>, worker: &str) -> Option<String> {
    let reply = api(labeler, "/api/state", json!({ "worker": worker })).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["item"]["id"].as_str().map(str::to_owned)
}

async fn answer(labeler: &LocalWebLabeler<String>, worker: &str, item: &str, label: &str) -> Reply {
    api(
        labeler,
        "/api/answer",
        json!({ "worker": worker, "item": item, "label": label }),
    )
    .await
}

async fn start(path: &Path, k: usize) -> LocalWebLabeler<String> {
    LocalWebLabelerBuilder::new(path, LABELS)
        .answers_per_item(k)
        .title("<script>alert('title')</script>")
        .start(|text: &String| text.clone())
        .await
        .unwrap()
}

async fn submit(labeler: &LocalWebLabeler<String>, items: &[(&str, &str)]) -> Vec<String> {
    let texts: Vec<String> = items.iter().map(|(_, t)| t.to_string()).collect();
    let tasks: Vec<LabelTask<'_, String>> = items
        .iter()
        .zip(&texts)
        .map(|((id, _), text)| LabelTask {
            item_id: id,
            item: text,
            prediction: None,
            suggestion: None,
        })
        .collect();
    labeler
        .submit(&tasks)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.0)
        .collect()
}

/// The dataset's events, parsed.
fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (kind, item, worker, label) of each event after the item lines.
fn actions(path: &Path) -> Vec<(String, String, String, String)> {
    events(path)
        .into_iter()
        .filter(|e| e["kind"] != "item")
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (s("kind"), s("item"), s("worker"), s("label"))
        })
        .collect()
}

fn act(kind: &str, item: &str, worker: &str, label: &str) -> (String, String, String, String) {
    (kind.into(), item.into(), worker.into(), label.into())
}

#[tokio::test]
async fn every_api_call_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let labeler = start(&dir.path().join("labels.jsonl"), 1).await;
    submit(&labeler, &[("a", "hello")]).await;
    let token = labeler.token().expose().to_owned();
    let body = json!({ "worker": "ann" });
    for path in ["/api/state", "/api/undo"] {
        let missing = http(&labeler, "POST", path, None, Some(&body)).await;
        assert_eq!(missing.status, 401, "{path}: {}", missing.body);
        let wrong = http(
            &labeler,
            "POST",
            path,
            Some(&format!("Bearer {}", "0".repeat(64))),
            Some(&body),
        )
        .await;
        assert_eq!(wrong.status, 403, "{path}: {}", wrong.body);
        let not_bearer = http(&labeler, "POST", path, Some(&token), Some(&body)).await;
        assert_eq!(not_bearer.status, 403, "{path}: {}", not_bearer.body);
        assert!(!wrong.body.contains(&token));
    }
    // A refused call changes nothing, even with a valid body.
    let sneaky = http(
        &labeler,
        "POST",
        "/api/answer",
        None,
        Some(&json!({ "worker": "ann", "item": "a", "label": "none" })),
    )
    .await;
    assert_eq!(sneaky.status, 401);
    assert!(actions(labeler.dataset()).is_empty());
    // With the token: 200.
    assert_eq!(next(&labeler, "ann").await.as_deref(), Some("a"));

    // The page itself is public and carries no secret, under a strict CSP.
    let page = http(&labeler, "GET", "/", None, None).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(&token));
    assert_eq!(
        page.header("content-security-policy"),
        Some(CONTENT_SECURITY_POLICY)
    );
    assert!(CONTENT_SECURITY_POLICY.contains("default-src 'none'"));
    assert!(CONTENT_SECURITY_POLICY.contains("connect-src 'self'"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    // Loopback only, and the token is in the URL for the person but not in
    // Debug output.
    assert!(labeler.local_addr().ip().is_loopback());
    assert!(
        labeler
            .url_with_token()
            .ends_with(&format!("#token={token}"))
    );
    assert!(!labeler.url().contains(&token));
    assert!(!format!("{labeler:?}").contains(&token));
    assert!(!format!("{:?}", labeler.token()).contains(&token));
}

#[tokio::test]
async fn hostile_text_is_escaped_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let labeler = start(&dir.path().join("labels.jsonl"), 1).await;
    submit(&labeler, &[("x1", HOSTILE_IMG), ("x2", HOSTILE_SCRIPT)]).await;

    let page = http(&labeler, "GET", "/", None, None).await;
    // The (hostile) title is escaped in the server-rendered HTML.
    assert!(
        page.body
            .contains("&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;")
    );
    assert!(!page.body.contains("<script>alert"));
    // The script renders item text with textContent only.
    let js = http(&labeler, "GET", "/app.js", None, None).await;
    assert_eq!(js.status, 200);
    assert!(js.body.contains("textContent"));
    assert!(!js.body.contains("innerHTML") && !js.body.contains("outerHTML"));
    assert!(!js.body.contains("insertAdjacentHTML") && !js.body.contains("document.write"));

    for (id, text) in [("x1", HOSTILE_IMG), ("x2", HOSTILE_SCRIPT)] {
        let reply = api(&labeler, "/api/state", json!({ "worker": "ann" })).await;
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        // No markup characters at all in the JSON body; the text survives.
        assert!(!reply.body.contains('<') && !reply.body.contains('>'));
        assert!(reply.body.contains("\\u003c"));
        let view = reply.json();
        assert_eq!(view["item"]["id"], id);
        assert_eq!(view["item"]["text"], text);
        assert_eq!(answer(&labeler, "ann", id, "none").await.status, 200);
    }
    // Stored as given: escaping is the page's job, not the dataset's.
    let stored: Vec<Value> = events(labeler.dataset())
        .into_iter()
        .filter(|e| e["kind"] == "item")
        .collect();
    assert_eq!(stored[0]["text"], HOSTILE_IMG);
    assert_eq!(stored[1]["text"], HOSTILE_SCRIPT);
}

#[tokio::test]
async fn a_restart_loses_nothing_and_resumes_where_each_person_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    let items = [("a", "one"), ("b", "two"), ("c", "three"), ("d", "four")];
    let first_ids = {
        let labeler = start(&path, 1).await;
        let ids = submit(&labeler, &items).await;
        assert_eq!(next(&labeler, "ann").await.as_deref(), Some("a"));
        assert_eq!(answer(&labeler, "ann", "a", "question").await.status, 200);
        assert_eq!(next(&labeler, "ann").await.as_deref(), Some("b"));
        assert_eq!(answer(&labeler, "ann", "b", "none").await.status, 200);
        let undone = api(&labeler, "/api/undo", json!({ "worker": "ann" })).await;
        assert_eq!(undone.json()["item"]["id"], "b", "undo shows b again");
        labeler.shutdown().await;
        ids
    };
    let labeler = start(&path, 1).await;
    // Submitting the same items again is idempotent, across the restart.
    assert_eq!(submit(&labeler, &items).await, first_ids);
    let item_lines = events(&path).iter().filter(|e| e["kind"] == "item").count();
    assert_eq!(item_lines, 4);
    assert_eq!(labeler.progress().done, 1);
    assert_eq!(labeler.progress().total, 4);
    // ann carries on at b (her answer on it was undone), not at a.
    let view = api(&labeler, "/api/state", json!({ "worker": "ann" }))
        .await
        .json();
    assert_eq!(view["item"]["id"], "b");
    assert_eq!(view["progress"]["mine"], 1);
    assert_eq!(view["progress"]["done"], 1);
    assert_eq!(view["can_undo"], true, "a's answer can still be undone");
    let results = labeler.collect().await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].item_id, "a");
    assert_eq!(results[0].label, "question");
    assert_eq!(results[0].task.0, first_ids[0]);
    labeler.shutdown().await;

    // Collected results are not handed out twice, even after a restart.
    let labeler = start(&path, 1).await;
    assert!(labeler.collect().await.unwrap().is_empty());
    let undo = api(&labeler, "/api/undo", json!({ "worker": "ann" })).await;
    assert_eq!(undo.status, 409, "a collected answer cannot be undone");
}

#[tokio::test]
async fn each_item_gets_k_answers_from_different_people() {
    let dir = tempfile::tempdir().unwrap();
    let labeler = start(&dir.path().join("labels.jsonl"), 2).await;
    submit(&labeler, &[("a", "site down"), ("b", "how do I reset?")]).await;

    assert_eq!(next(&labeler, "ann").await.as_deref(), Some("a"));
    assert_eq!(
        answer(&labeler, "ann", "a", "problem_report").await.status,
        200
    );
    let again = answer(&labeler, "ann", "a", "none").await;
    assert_eq!(again.status, 409, "one answer per person: {}", again.body);
    assert_eq!(next(&labeler, "ann").await.as_deref(), Some("b"));
    assert_eq!(answer(&labeler, "ann", "b", "question").await.status, 200);
    assert_eq!(
        next(&labeler, "ann").await,
        None,
        "ann never sees an item twice"
    );
    assert!(
        labeler.collect().await.unwrap().is_empty(),
        "one vote of two"
    );

    assert_eq!(next(&labeler, "bob").await.as_deref(), Some("a"));
    assert_eq!(
        answer(&labeler, "bob", "a", "problem_report").await.status,
        200
    );
    assert_eq!(next(&labeler, "bob").await.as_deref(), Some("b"));
    assert_eq!(answer(&labeler, "bob", "b", "none").await.status, 200);
    let third = answer(&labeler, "cid", "a", "none").await;
    assert_eq!(third.status, 409, "a has its two answers: {}", third.body);
    assert_eq!(next(&labeler, "cid").await, None);

    let mut results = labeler.collect().await.unwrap();
    results.sort_by(|x, y| x.item_id.cmp(&y.item_id));
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].label, "problem_report");
    assert_eq!(results[0].agreement, 1.0);
    let voters: Vec<&str> = results[0].votes.iter().map(|v| v.worker.as_str()).collect();
    assert_eq!(voters, ["ann", "bob"]);
    // A split vote goes to the category listed first, with agreement 1/2.
    assert_eq!(results[1].label, "question");
    assert_eq!(results[1].agreement, 0.5);
    assert!(
        labeler.collect().await.unwrap().is_empty(),
        "each result once"
    );
}

#[tokio::test]
async fn undo_and_skip_are_saved_as_they_happen() {
    let dir = tempfile::tempdir().unwrap();
    let labeler = start(&dir.path().join("labels.jsonl"), 1).await;
    submit(&labeler, &[("a", "1"), ("b", "2"), ("c", "3")]).await;
    let path = labeler.dataset().to_owned();

    assert_eq!(answer(&labeler, "ann", "a", "none").await.status, 200);
    let view = api(&labeler, "/api/undo", json!({ "worker": "ann" }))
        .await
        .json();
    assert_eq!(view["item"]["id"], "a");
    assert_eq!(view["can_undo"], false);
    assert!(labeler.collect().await.unwrap().is_empty(), "undone");
    let nothing = api(&labeler, "/api/undo", json!({ "worker": "ann" })).await;
    assert_eq!(nothing.status, 409);

    let view = api(
        &labeler,
        "/api/skip",
        json!({ "worker": "ann", "item": "a" }),
    )
    .await
    .json();
    assert_eq!(view["item"]["id"], "b", "skip moves on");
    assert_eq!(answer(&labeler, "ann", "b", "question").await.status, 200);
    assert_eq!(next(&labeler, "ann").await.as_deref(), Some("c"));
    assert_eq!(answer(&labeler, "ann", "c", "none").await.status, 200);
    // Skipped items come back once nothing else is left.
    assert_eq!(next(&labeler, "ann").await.as_deref(), Some("a"));
    // Another person is not affected by ann's skip.
    assert_eq!(next(&labeler, "bob").await, None, "a is leased to ann");
    let released = api(&labeler, "/api/release", json!({ "worker": "ann" })).await;
    assert_eq!(released.json()["released"], 1);
    assert_eq!(next(&labeler, "bob").await.as_deref(), Some("a"));

    assert_eq!(
        actions(&path),
        [
            act("answer", "a", "ann", "none"),
            act("undo", "a", "ann", ""),
            act("skip", "a", "ann", ""),
            act("answer", "b", "ann", "question"),
            act("answer", "c", "ann", "none"),
        ]
    );
}

/// The model's prediction is not shown to people unless the page is
/// configured to suggest it; a task's own suggestion is; a suggestion
/// outside the categories is not; peeking (no name) holds nothing.
#[tokio::test]
async fn suggestions_come_from_the_task_or_from_predictions_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let model = streamsift::Prediction::binary("question", "none", 0.7);
    let odd = streamsift::Prediction::label("angry");
    let text = "how?".to_string();
    for suggest in [false, true] {
        let labeler =
            LocalWebLabelerBuilder::new(dir.path().join(format!("{suggest}.jsonl")), LABELS)
                .suggest_predictions(suggest)
                .start(|text: &String| text.clone())
                .await
                .unwrap();
        labeler
            .submit(&[
                LabelTask::new("p", &text).with_prediction(&model),
                LabelTask::new("s", &text)
                    .with_prediction(&model)
                    .with_suggestion(&odd),
            ])
            .await
            .unwrap();
        let peek = api(&labeler, "/api/peek", json!({})).await;
        assert_eq!(peek.status, 200, "{}", peek.body);
        let view = peek.json();
        assert_eq!(view["item"]["id"], "p");
        if suggest {
            assert_eq!(
                view["item"]["suggestion"],
                json!({"label": "question", "confidence": 0.7})
            );
        } else {
            assert!(view["item"].get("suggestion").is_none(), "{view}");
        }
        // Peeking held nothing: ann gets p, then s, which has no
        // suggestion (its own is outside the categories).
        assert_eq!(next(&labeler, "ann").await.as_deref(), Some("p"));
        assert_eq!(answer(&labeler, "ann", "p", "none").await.status, 200);
        let view = api(&labeler, "/api/state", json!({ "worker": "ann" }))
            .await
            .json();
        assert_eq!(view["item"]["id"], "s");
        assert!(view["item"].get("suggestion").is_none(), "{view}");
        let expected = if suggest { (1, 0) } else { (0, 0) };
        let r = labeler.review_progress();
        assert_eq!((r.suggested, r.accepted), expected);
        // Undoing an answer takes it out of the counts.
        api(&labeler, "/api/undo", json!({ "worker": "ann" })).await;
        assert_eq!(labeler.review_progress(), ReviewProgress::default());
        // The peek API takes no fields and needs the token.
        let extra = api(&labeler, "/api/peek", json!({ "worker": "x" })).await;
        assert!((400..500).contains(&extra.status));
        let no_token = http(&labeler, "POST", "/api/peek", None, Some(&json!({}))).await;
        assert_eq!(no_token.status, 401);
    }
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let labeler = start(&dir.path().join("labels.jsonl"), 1).await;
    submit(&labeler, &[("a", "1")]).await;
    let unknown_label = answer(&labeler, "ann", "a", "angry").await;
    assert_eq!(unknown_label.status, 400);
    assert!(
        unknown_label.json()["error"]
            .as_str()
            .unwrap()
            .contains("angry")
    );
    assert_eq!(answer(&labeler, "ann", "zz", "none").await.status, 404);
    for name in ["", " ann", "a\u{7}b", &"x".repeat(65)] {
        let r = api(&labeler, "/api/state", json!({ "worker": name })).await;
        assert_eq!(r.status, 400, "{name:?}");
    }
    let extra = api(
        &labeler,
        "/api/state",
        json!({ "worker": "ann", "admin": true }),
    )
    .await;
    assert!(
        extra.status >= 400 && extra.status < 500,
        "{}",
        extra.status
    );
    assert!(actions(labeler.dataset()).is_empty());
}

#[tokio::test]
async fn binding_beyond_loopback_warns_and_logs_never_show_the_token() {
    let logs = process_logs();
    let dir = tempfile::tempdir().unwrap();

    let local = start(&dir.path().join("a.jsonl"), 1).await;
    assert!(
        logs.text().contains("labeling page started"),
        "{}",
        logs.text()
    );
    assert!(!logs.text().contains("beyond loopback"));
    let local_token = local.token().expose().to_owned();
    submit(&local, &[("a", "x")]).await;
    assert_eq!(answer(&local, "ann", "a", "none").await.status, 200);
    assert_eq!(answer(&local, "ann", "a", "none").await.status, 409);

    let open = LocalWebLabelerBuilder::new(dir.path().join("b.jsonl"), LABELS)
        .bind_beyond_loopback("0.0.0.0:0".parse().unwrap())
        .start(|t: &String| t.clone())
        .await
        .unwrap();
    assert!(open.local_addr().ip().is_unspecified());
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("beyond loopback"),
        "{text}"
    );
    for token in [local_token.as_str(), open.token().expose()] {
        assert!(
            !text.contains(token),
            "a token leaked into the logs:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_corrupt_dataset_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    std::fs::write(
        &path,
        "{\"kind\":\"item\",\"id\":\"a\",\"text\":\"t\"}\n{\"kind\":\"answer\",\"item\":\"a\",\"worker\":\"w\",\"label\":\"none\",\"at\":1}\nnot json\n",
    )
    .unwrap();
    let err = LocalWebLabelerBuilder::new(&path, LABELS)
        .start(|t: &String| t.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, LabelUiError::CorruptLine { line: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("line 3"), "{err}");
    let no_labels = LocalWebLabelerBuilder::new(dir.path().join("x.jsonl"), Vec::<String>::new())
        .start(|t: &String| t.clone())
        .await
        .unwrap_err();
    assert!(matches!(no_labels, LabelUiError::InvalidConfig(_)));
}

/// Issue 13, bounded memory: a long-running page keeps in memory only the
/// items not collected yet (and their leases and undo entries); collected
/// items are released, only their ids are remembered, and a restart
/// rebuilds the same bounded state from the file, which keeps everything.
#[tokio::test]
async fn bounded_memory_label_store_releases_collected_items() {
    const ITEMS: usize = 10_000;
    const BATCH: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    let labeler = start(&path, 1).await;
    let text = "my order is late".to_owned();
    // Largest footprint seen with a batch outstanding, and after collecting.
    let (mut peak, mut after_collect) = (StoreFootprint::default(), StoreFootprint::default());
    let max = |a: &mut StoreFootprint, b: StoreFootprint| {
        a.items = a.items.max(b.items);
        a.leases = a.leases.max(b.leases);
        a.undo_entries = a.undo_entries.max(b.undo_entries);
        a.collected_ids = a.collected_ids.max(b.collected_ids);
    };
    for round in 0..ITEMS / BATCH {
        let ids: Vec<String> = (0..BATCH)
            .map(|i| format!("tweet-{}", round * BATCH + i))
            .collect();
        let tasks: Vec<LabelTask<'_, String>> = ids
            .iter()
            .map(|id| LabelTask {
                item_id: id,
                item: &text,
                prediction: None,
                suggestion: None,
            })
            .collect();
        labeler.submit(&tasks).await.unwrap();
        // bob is shown one item (and holds its lease); ann labels the rest,
        // each answer's reply showing her next item.
        let bobs = next(&labeler, "bob").await.expect("an item for bob");
        let mut view = api(&labeler, "/api/state", json!({ "worker": "ann" }))
            .await
            .json();
        while let Some(id) = view["item"]["id"].as_str() {
            let reply = answer(&labeler, "ann", id, "none").await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            view = reply.json();
        }
        max(&mut peak, labeler.footprint());
        assert_eq!(answer(&labeler, "bob", &bobs, "question").await.status, 200);
        max(&mut peak, labeler.footprint());
        let results = labeler.collect().await.unwrap();
        assert_eq!(results.len(), BATCH, "round {round}: the batch is done");
        max(&mut after_collect, labeler.footprint());
    }
    eprintln!(
        "bounded memory: {ITEMS} items in batches of {BATCH}; peak with a batch \
         outstanding {peak:?}; peak after collecting {after_collect:?}"
    );
    assert!(
        peak.items <= BATCH && peak.leases <= BATCH && peak.undo_entries <= BATCH,
        "memory grows with the stream: peak {} items, {} leases, {} undo entries in \
         memory for {ITEMS} items submitted, with at most {BATCH} outstanding at once",
        peak.items,
        peak.leases,
        peak.undo_entries
    );
    assert_eq!(
        (
            after_collect.items,
            after_collect.leases,
            after_collect.undo_entries
        ),
        (0, 0, 0),
        "collected items, their leases and undo entries are released"
    );
    assert_eq!(labeler.footprint().collected_ids, ITEMS);
    assert_eq!(
        labeler.progress(),
        Progress {
            done: ITEMS,
            total: ITEMS
        }
    );
    let ann = api(&labeler, "/api/state", json!({ "worker": "ann" }))
        .await
        .json();
    assert_eq!(ann["progress"]["mine"], ITEMS - ITEMS / BATCH);
    assert_eq!(ann["can_undo"], false, "collected answers cannot be undone");

    // A collected item submitted again keeps its task and is not redone.
    let first = [LabelTask {
        item_id: "tweet-0",
        item: &text,
        prediction: None,
        suggestion: None,
    }];
    let again = labeler.submit(&first).await.unwrap();
    assert_eq!(again[0].0, "web:tweet-0");
    assert_eq!(labeler.footprint().items, 0);
    assert_eq!(next(&labeler, "cid").await, None, "nothing to label again");
    labeler.shutdown().await;

    // The file keeps everything; a restart rebuilds the same bounded state.
    let lines = events(&path);
    assert_eq!(lines.iter().filter(|e| e["kind"] == "item").count(), ITEMS);
    assert_eq!(
        lines.iter().filter(|e| e["kind"] == "collected").count(),
        ITEMS
    );
    let labeler = start(&path, 1).await;
    assert_eq!(
        labeler.footprint(),
        StoreFootprint {
            items: 0,
            leases: 0,
            collected_ids: ITEMS,
            undo_entries: 0
        }
    );
    assert_eq!(labeler.progress().done, ITEMS);
    assert!(
        labeler.collect().await.unwrap().is_empty(),
        "collected once"
    );
    assert_eq!(labeler.submit(&first).await.unwrap(), again);
    let ann = api(&labeler, "/api/state", json!({ "worker": "ann" }))
        .await
        .json();
    assert_eq!(ann["progress"]["mine"], ITEMS - ITEMS / BATCH);
    assert_eq!(ann["item"], Value::Null);
    assert_eq!(ann["can_undo"], false);
}

/// People answer through the HTTP API, as the page does: each asks for
/// their next item and answers it until nothing is left for them.
struct WebHarness {
    dir: tempfile::TempDir,
    people: Vec<&'static str>,
    answers_per_item: usize,
    built: usize,
}

fn truth(text: &str) -> &'static str {
    if text.contains("down") {
        "problem_report"
    } else if text.contains('?') {
        "question"
    } else {
        "none"
    }
}

impl LabelerHarness<String> for WebHarness {
    type Labeler = LocalWebLabeler<String>;

    async fn build(&mut self) -> LocalWebLabeler<String> {
        self.built += 1;
        let path = self
            .dir
            .path()
            .join(format!("conformance-{}.jsonl", self.built));
        start(&path, self.answers_per_item).await
    }

    async fn answer_all(&mut self, labeler: &LocalWebLabeler<String>, _: &HashMap<String, TaskId>) {
        for worker in self.people.clone() {
            loop {
                let view = api(labeler, "/api/state", json!({ "worker": worker }))
                    .await
                    .json();
                let Some(id) = view["item"]["id"].as_str() else {
                    break;
                };
                let text = view["item"]["text"].as_str().unwrap();
                let reply = answer(labeler, worker, id, truth(text)).await;
                assert_eq!(reply.status, 200, "{}", reply.body);
            }
        }
    }
}

#[tokio::test]
async fn local_web_labeler_conforms() {
    let tweets: Vec<(String, String)> = [
        "the api is down again",
        "how do I rotate keys?",
        "nice weather <b>today</b>",
        "console down for everyone",
        "thanks!",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| (format!("tweet-{i}"), t.to_string()))
    .collect();
    for k in [1, 2] {
        let mut harness = WebHarness {
            dir: tempfile::tempdir().unwrap(),
            people: vec!["ann", "bob", "cid"],
            answers_per_item: k,
            built: 0,
        };
        let results = labeler_conformance(&mut harness, &tweets, &LABELS).await;
        assert_eq!(results.len(), 5);
        for r in &results {
            assert_eq!(r.votes.len(), k, "{}: K = {k} answers", r.item_id);
            let text = &tweets.iter().find(|(id, _)| *id == r.item_id).unwrap().1;
            assert_eq!(r.label, truth(text), "accurate people, right labels");
            assert_eq!(r.agreement, 1.0);
        }
    }
}

// ---------------------------------------------------------------------------
// Headless Chromium, driven through chromedriver (WebDriver) by fantoccini.

mod browser {
    use super::*;
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    use fantoccini::{Client, ClientBuilder, Locator};
    use std::process::{Child, Command, Stdio};

    const CHROMIUM: &str = "/usr/bin/chromium";
    const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

    /// Kills chromedriver (and with it the browser it started) on drop.
    struct Driver(Child);

    impl Drop for Driver {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Says loudly that the browser test did not run. Written to the
    /// process's stderr directly, past libtest's output capture, so that it
    /// shows in a plain `cargo test` run.
    fn skip(why: &str) {
        use std::io::Write;
        let banner = format!(
            "\n{bar}\n!!! SKIPPED: headless Chromium test: {why}\n!!! Install it with: \
             apt-get install -y chromium chromium-driver (scripts/test.sh does)\n{bar}\n",
            bar = "!".repeat(78)
        );
        let _ = std::io::stderr().write_all(banner.as_bytes());
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Starts chromedriver and a headless Chromium session, or says why not.
    async fn browser(profile: &Path) -> Result<(Driver, Client), String> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                return Err(format!("{bin} is not installed"));
            }
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {CHROMEDRIVER}: {e}"))?;
        let driver = Driver(child);
        let mut up = false;
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !up {
            return Err("chromedriver did not listen within 10 s".into());
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| format!("chromium did not start a session: {e}"))?;
        Ok((driver, client))
    }

    async fn press(client: &Client, key: char) {
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        client.perform_actions(keys).await.unwrap();
    }

    /// Waits until the shown item's id is `want` (None: nothing left).
    async fn shown(client: &Client, want: Option<&str>) {
        let mut last = Value::Null;
        for _ in 0..200 {
            last = client
                .execute(
                    "const i = document.getElementById('item'); \
                     return document.body.dataset.ready === 'yes' ? (i.dataset.id || null) : 'loading';",
                    vec![],
                )
                .await
                .unwrap();
            if last.as_str() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("waited 10 s for item {want:?}; the page shows {last}");
    }

    /// Runs `script` in the page until it returns `want`, for up to 10 s;
    /// returns what it last returned.
    async fn wait_for(client: &Client, script: &str, want: &Value) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            last = client.execute(script, vec![]).await.unwrap();
            if &last == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last
    }

    /// Defect (main at e9cdab1): the page showed nothing of the item until
    /// a name was typed. The item shows at once; the name is asked for to
    /// answer, and answering works once it is typed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_item_shows_before_a_name_is_typed() {
        let dir = tempfile::tempdir().unwrap();
        let labeler = start(&dir.path().join("labels.jsonl"), 1).await;
        submit(&labeler, &[("t1", HOSTILE_IMG), ("t2", "the app crashes")]).await;
        let (_driver, client) = match browser(&dir.path().join("profile")).await {
            Ok(b) => b,
            Err(why) => return skip(&why),
        };
        client.goto(&labeler.url_with_token()).await.unwrap();
        let text = wait_for(
            &client,
            "return document.getElementById('item').textContent;",
            &json!(HOSTILE_IMG),
        )
        .await;
        assert_eq!(
            text,
            json!(HOSTILE_IMG),
            "the item shows before a name is typed"
        );
        let buttons = client
            .execute(
                "return document.querySelectorAll('#buttons button').length;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(buttons, json!(3), "and its answer buttons");
        let status = client.find(Locator::Id("status")).await.unwrap();
        let prompt = status.text().await.unwrap();
        assert!(prompt.contains("Type your name"), "{prompt:?}");
        // Clicking an answer without a name records nothing and asks again.
        client
            .execute("document.querySelector('#buttons button').click();", vec![])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(actions(labeler.dataset()).is_empty());
        let focused = client
            .execute("return document.activeElement.id;", vec![])
            .await
            .unwrap();
        assert_eq!(focused, "worker", "the name box gets the focus");
        let name = client.find(Locator::Id("worker")).await.unwrap();
        name.send_keys("dan\u{E007}").await.unwrap();
        shown(&client, Some("t1")).await;
        assert_eq!(status.text().await.unwrap(), "", "the prompt goes away");
        press(&client, '3').await;
        shown(&client, Some("t2")).await;
        assert_eq!(
            actions(labeler.dataset()),
            [act("answer", "t1", "dan", "none")]
        );
        assert_eq!(
            wait_for(&client, "return typeof window.pwned;", &json!("undefined")).await,
            "undefined"
        );
        client.close().await.unwrap();
    }

    /// Defect (main at e9cdab1): the page said "Type your name (top right)"
    /// while the box was at the left. Whatever side the hint names, the
    /// box is there: at the top, on that half of the window.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_name_hint_matches_where_the_box_is() {
        let dir = tempfile::tempdir().unwrap();
        let labeler = start(&dir.path().join("labels.jsonl"), 1).await;
        submit(&labeler, &[("t1", "hello")]).await;
        let (_driver, client) = match browser(&dir.path().join("profile")).await {
            Ok(b) => b,
            Err(why) => return skip(&why),
        };
        client.goto(&labeler.url_with_token()).await.unwrap();
        let hint = wait_for(
            &client,
            "const s = document.getElementById('status').textContent; \
             return s.includes('name') ? 'hint' : s;",
            &json!("hint"),
        )
        .await;
        assert_eq!(hint, "hint", "a hint to type the name");
        // A wide window, a laptop's half screen, a phone: the header may
        // wrap, and the hint must stay true.
        for width in [1280u32, 720, 420] {
            client.set_window_size(width, 900).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let layout = client
                .execute(
                    "const r = document.getElementById('worker').getBoundingClientRect(); \
                     const item = document.getElementById('item').getBoundingClientRect(); \
                     return [document.getElementById('status').textContent, \
                             r.left + r.width / 2, document.documentElement.clientWidth, \
                             r.bottom <= item.top];",
                    vec![],
                )
                .await
                .unwrap();
            let text = layout[0].as_str().unwrap().to_lowercase();
            let (center, width) = (layout[1].as_f64().unwrap(), layout[2].as_f64().unwrap());
            let says_left = text.contains("left");
            let says_right = text.contains("right");
            assert!(says_left != says_right, "the hint names one side: {text:?}");
            let is_left = center < width / 2.0;
            assert_eq!(
                says_left, is_left,
                "the hint says {text:?}; the box is centred at x = {center} of {width}"
            );
            if text.contains("top") {
                assert_eq!(
                    layout[3], true,
                    "the hint says top; the box is below the item"
                );
            }
        }
        client.close().await.unwrap();
    }

    /// Labeling as review: the suggestion shows with its confidence, one
    /// key (Enter or `a`) accepts it, a number key picks another label, and
    /// the dataset records whether each answer accepted the suggestion.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_suggestion_is_accepted_with_one_key_or_overridden_with_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let labeler = start(&dir.path().join("labels.jsonl"), 1).await;
        let sure = streamsift::Prediction::from_scores(vec![
            ("problem_report".into(), 0.87),
            ("none".into(), 0.13),
        ])
        .unwrap();
        let question = streamsift::Prediction::label("question");
        let none = streamsift::Prediction::label("none");
        let texts = [
            HOSTILE_SCRIPT.to_string(),
            "how do I log in?".to_string(),
            "the login page is down".to_string(),
            "thanks".to_string(),
        ];
        labeler
            .submit(&[
                LabelTask::new("t1", &texts[0]).with_suggestion(&sure),
                LabelTask::new("t2", &texts[1]).with_suggestion(&question),
                LabelTask::new("t3", &texts[2]).with_suggestion(&none),
                LabelTask::new("t4", &texts[3]),
            ])
            .await
            .unwrap();
        let (_driver, client) = match browser(&dir.path().join("profile")).await {
            Ok(b) => b,
            Err(why) => return skip(&why),
        };
        client.goto(&labeler.url_with_token()).await.unwrap();
        let name = client.find(Locator::Id("worker")).await.unwrap();
        name.send_keys("eve\u{E007}").await.unwrap();
        shown(&client, Some("t1")).await;
        let suggestion = client
            .execute(
                "const s = document.getElementById('suggestion'); \
                 const b = document.querySelector('#buttons button.suggested'); \
                 return [s.hidden, document.getElementById('suggested-label').textContent, \
                         document.getElementById('suggested-confidence').textContent, \
                         b ? b.dataset.label : null];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            suggestion,
            json!([false, "problem_report", "(87% sure)", "problem_report"])
        );
        let enter = '\u{E007}';
        press(&client, enter).await; // accept problem_report
        shown(&client, Some("t2")).await;
        press(&client, 'a').await; // accept question
        shown(&client, Some("t3")).await;
        let confidence = client
            .execute(
                "return document.getElementById('suggested-confidence').textContent;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(confidence, "", "no confidence given, none shown");
        press(&client, '1').await; // not the suggested none: problem_report
        shown(&client, Some("t4")).await;
        let hidden = client
            .execute(
                "return document.getElementById('suggestion').hidden;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(hidden, true, "no suggestion, nothing shown");
        press(&client, 'a').await; // nothing to accept
        press(&client, '3').await; // none
        shown(&client, None).await;
        assert_eq!(
            client
                .execute("return typeof window.pwned;", vec![])
                .await
                .unwrap(),
            "undefined"
        );
        client.close().await.unwrap();

        let answers: Vec<(String, String, Value)> = events(labeler.dataset())
            .into_iter()
            .filter(|e| e["kind"] == "answer")
            .map(|e| {
                (
                    e["item"].as_str().unwrap().to_owned(),
                    e["label"].as_str().unwrap().to_owned(),
                    e["accepted"].clone(),
                )
            })
            .collect();
        let row = |i: &str, l: &str, a: Value| (i.to_owned(), l.to_owned(), a);
        assert_eq!(
            answers,
            [
                row("t1", "problem_report", json!(true)),
                row("t2", "question", json!(true)),
                row("t3", "problem_report", json!(false)),
                row("t4", "none", Value::Null),
            ]
        );
        assert_eq!(
            labeler.review_progress(),
            ReviewProgress {
                suggested: 3,
                accepted: 2
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_person_labels_by_keyboard_in_headless_chromium() {
        let dir = tempfile::tempdir().unwrap();
        let labeler = start(&dir.path().join("labels.jsonl"), 1).await;
        submit(
            &labeler,
            &[
                ("t1", HOSTILE_IMG),
                ("t2", "the app crashes on start"),
                ("t3", HOSTILE_SCRIPT),
                ("t4", "thanks, all good"),
            ],
        )
        .await;
        let (_driver, client) = match browser(&dir.path().join("profile")).await {
            Ok(b) => b,
            Err(why) => return skip(&why),
        };
        let started = std::time::Instant::now();
        client.goto(&labeler.url_with_token()).await.unwrap();
        // A first visit shows the item and asks for the person's name.
        let mut ready = Value::Null;
        for _ in 0..200 {
            ready = client
                .execute("return document.body.dataset.ready || null;", vec![])
                .await
                .unwrap();
            if ready == "name" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(ready, "name");
        let name = client.find(Locator::Id("worker")).await.unwrap();
        name.send_keys("carol\u{E007}").await.unwrap(); // Enter
        shown(&client, Some("t1")).await;

        // The hostile text is shown as text, and nothing in it ran.
        let item = client.find(Locator::Id("item")).await.unwrap();
        assert_eq!(item.text().await.unwrap(), HOSTILE_IMG.trim_end());
        let injected = client
            .execute(
                "return [document.querySelectorAll('#item *').length, typeof window.pwned];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(injected, json!([0, "undefined"]));
        // The stylesheet loaded under the CSP (the page's own origin).
        let style = client
            .execute(
                "return getComputedStyle(document.getElementById('item')).whiteSpace;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(style, "pre-wrap");
        // The token left the address bar.
        let url = client.current_url().await.unwrap();
        assert!(!url.as_str().contains("token"), "{url}");

        press(&client, '1').await; // t1 -> problem_report
        shown(&client, Some("t2")).await;
        press(&client, '2').await; // t2 -> question
        shown(&client, Some("t3")).await;
        assert_eq!(
            item.text().await.unwrap(),
            HOSTILE_SCRIPT,
            "the <script> text shows as text"
        );
        press(&client, 'u').await; // undo t2
        shown(&client, Some("t2")).await;
        press(&client, '3').await; // t2 -> none
        shown(&client, Some("t3")).await;
        press(&client, 's').await; // skip t3
        shown(&client, Some("t4")).await;
        press(&client, '3').await; // t4 -> none
        shown(&client, Some("t3")).await; // the skipped one comes back
        press(&client, '2').await; // t3 -> question
        shown(&client, None).await;
        let progress = client
            .find(Locator::Id("progress"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(progress.starts_with("4 / 4 done"), "{progress}");
        let injected = client
            .execute("return typeof window.pwned;", vec![])
            .await
            .unwrap();
        assert_eq!(injected, "undefined");
        client.close().await.unwrap();
        eprintln!(
            "browser session (page load to last key) took {:?}",
            started.elapsed()
        );

        assert_eq!(
            actions(labeler.dataset()),
            [
                act("answer", "t1", "carol", "problem_report"),
                act("answer", "t2", "carol", "question"),
                act("undo", "t2", "carol", ""),
                act("answer", "t2", "carol", "none"),
                act("skip", "t3", "carol", ""),
                act("answer", "t4", "carol", "none"),
                act("answer", "t3", "carol", "question"),
            ]
        );
        let mut results = labeler.collect().await.unwrap();
        results.sort_by(|a, b| a.item_id.cmp(&b.item_id));
        let labels: Vec<&str> = results.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["problem_report", "none", "question", "none"]);
    }
}
