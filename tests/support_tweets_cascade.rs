//! `support_tweets --cascade`: the cost curve's figures are this run's (the
//! guide page quotes them), the calibrated cascade beats local-only and
//! LLM-only on the hold-out, and the pipeline run with the cascade reaches
//! people with every held-out actionable tweet and bills one LLM call per
//! tweet of the band.

#[path = "../examples/support_tweets/app.rs"]
mod app;

use std::sync::Arc;

use app::cascade as c;
use streamsift::Shutdown;

#[tokio::test]
async fn the_cost_curve_and_the_cascade_run() {
    let dir = tempfile::tempdir().unwrap();
    let settings = app::Settings {
        dead_letter_path: dir.path().join("dl.jsonl"),
        ..app::Settings::default()
    };
    let (data, models) = app::prepare(&settings).unwrap();
    let llm = Arc::new(c::simulated_llm());
    let curve = c::cost_curve(&data, &models, &llm).unwrap();
    assert_eq!(llm.calls(), 0, "the curve uses answers, not billed calls");

    let row = |name: &str| {
        curve
            .rows
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row {name}"))
            .cost
    };
    let local = row("local model only");
    let llm_only = row("LLM only");
    assert_eq!(local.second_share, 0.0);
    assert_eq!(llm_only.second_share, 1.0);
    // The claim of the guide page: calibrated on one half and priced on the
    // other, the cascade costs less than either model alone, and sends a
    // minority of the tweets to the LLM.
    let cal = curve.cross_fitted;
    assert!(
        cal.cost_per_record < local.cost_per_record
            && cal.cost_per_record < llm_only.cost_per_record,
        "cascade {} vs local {} and LLM {}",
        cal.cost_per_record,
        local.cost_per_record,
        llm_only.cost_per_record
    );
    assert!(cal.second_share < 0.5, "{}", cal.second_share);
    // Widening the band never sends fewer tweets to the LLM.
    let fixed: Vec<f64> = curve
        .rows
        .iter()
        .filter(|r| r.name.starts_with("cascade, threshold"))
        .map(|r| r.cost.second_share)
        .collect();
    assert_eq!(fixed.len(), c::HALF_WIDTHS.len());
    assert!(fixed.windows(2).all(|w| w[0] <= w[1]), "{fixed:?}");

    // The guide page quotes this table: it must be this run's.
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/guide/cascade.rs"))
            .unwrap();
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let guide = squash(&guide);
    for line in c::render(&curve).lines().skip(1).take(curve.rows.len() + 1) {
        assert!(
            guide.contains(&squash(line)),
            "src/guide/cascade.rs should quote {line:?}: update its table from \
             `cargo run --example support_tweets -- --cascade`"
        );
    }

    // The run with the cascade as the classifier.
    let (summary, stats) = c::run(
        &settings,
        &data,
        &models,
        curve.band,
        llm.clone(),
        Shutdown::new(),
    )
    .await
    .unwrap();
    let decoded = summary.report.stats.decoded;
    assert_eq!(stats.first + stats.second + stats.fallback, decoded);
    assert_eq!(stats.fallback, 0, "every bundled tweet has a gold label");
    assert_eq!(llm.calls(), stats.second);
    assert!(stats.second > 0 && stats.second < decoded / 2, "{stats:?}");
    assert_eq!(
        summary.held_out.actionable_reached, summary.held_out.actionable_gold,
        "every held-out actionable tweet reached a person"
    );
    assert!(summary.report.stats.reconciles());
}

#[cfg(feature = "llm")]
#[path = "llm_support/server.rs"]
mod llm_server;

/// `--cascade --llm-url URL --llm-model NAME`: stage 2 is a real
/// OpenAI-compatible server (a scripted one on loopback). Only the band's
/// tweets reach it, each request carries the model, the key from the named
/// variable and the five labels as the schema's enum, and every decoded
/// tweet is decided by one stage or the other.
#[cfg(feature = "llm")]
#[tokio::test]
async fn the_cascade_calls_an_openai_compatible_server_for_the_band_only() {
    use serde_json::json;
    const KEY_ENV: &str = "STREAMSIFT_TEST_CASCADE_KEY";
    // SAFETY: this test alone reads or writes this variable.
    unsafe { std::env::set_var(KEY_ENV, "sk-test-cascade") };
    let server = llm_server::Scripted::start(|seen, _| {
        let msgs = seen.body["messages"].as_array().cloned().unwrap_or_default();
        let last = msgs.last().and_then(|m| m["content"].as_str()).unwrap_or("");
        let item = last.split("<item>").nth(1).unwrap_or("").to_lowercase();
        let label = if item.contains("down") || item.contains("error") {
            "problem_report"
        } else {
            "none"
        };
        llm_server::Reply::json(
            200,
            json!({
                "choices": [{"message": {"role": "assistant", "content": json!({"label": label}).to_string()}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 300, "completion_tokens": 5}
            }),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let settings = app::Settings {
        dead_letter_path: dir.path().join("dl.jsonl"),
        ..app::Settings::default()
    };
    let (data, models) = app::prepare(&settings).unwrap();
    let band = c::cost_curve(&data, &models, &c::simulated_llm())
        .unwrap()
        .band;
    let url = format!("{}/v1", server.url);
    let llm = Arc::new(c::real_llm(&url, "test-model", KEY_ENV, &data).unwrap());
    let (summary, stats) = c::run(
        &settings,
        &data,
        &models,
        band,
        llm.clone(),
        Shutdown::new(),
    )
    .await
    .unwrap();

    let decoded = summary.report.stats.decoded;
    assert_eq!(stats.first + stats.second + stats.fallback, decoded);
    assert_eq!(stats.fallback, 0, "{stats:?}");
    assert!(stats.second > 0 && stats.second < decoded / 2, "{stats:?}");
    let usage = llm.usage();
    // Repeated texts are answered from the cache; every other band tweet is
    // one call.
    assert_eq!(usage.calls + usage.cache_hits, stats.second, "{usage:?}");
    assert_eq!(server.count() as u64, usage.calls);
    assert_eq!(usage.prompt_tokens, 300 * usage.calls);
    for s in server.seen() {
        assert!(s.path.ends_with("/v1/chat/completions"), "{}", s.path);
        assert_eq!(s.body["model"], "test-model");
        assert_eq!(
            s.headers.get("authorization").map(String::as_str),
            Some("Bearer sk-test-cascade")
        );
        let schema = s.body["response_format"].to_string();
        for label in [
            "problem_report",
            "support_request",
            "technical_question",
            "feature_request",
        ] {
            assert!(schema.contains(label), "{label} missing from {schema}");
        }
    }
    assert!(summary.report.stats.reconciles());
}
