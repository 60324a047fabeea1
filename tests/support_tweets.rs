//! The support_tweets example's summary matches its gold labels.
//!
//! The example's logic lives in `examples/support_tweets/app.rs`; this test
//! runs it and recomputes every figure of the summary independently, from
//! the bundled files and the deliveries.

#[path = "../examples/support_tweets/app.rs"]
mod app;

use std::collections::{HashMap, HashSet};

use streamsift::{REVIEW_ROUTE, Shutdown};

#[tokio::test]
async fn summary_numbers_match_the_gold_labels() {
    let dir = tempfile::tempdir().unwrap();
    let settings = app::Settings {
        dead_letter_path: dir.path().join("dl.jsonl"),
        ..app::Settings::default()
    };
    let summary = app::run(&settings, Shutdown::new()).await.unwrap();
    let stats = &summary.report.stats;

    // The bundled data: at least 1,000 labeled tweets, about 20% actionable,
    // and every line either decodes or is dead-lettered.
    let gold = app::gold_labels(app::GOLD);
    assert!(gold.len() >= 1_000, "{} gold tweets", gold.len());
    let actionable = gold.values().filter(|l| l.as_str() != app::NOISE).count();
    let share = actionable as f64 / gold.len() as f64;
    assert!((0.15..0.30).contains(&share), "actionable share {share}");
    for (label, _) in app::TEAMS {
        assert!(
            gold.values().filter(|l| l.as_str() == label).count() >= 40,
            "{label} is thin"
        );
    }
    let lines = app::lines(app::TWEETS);
    assert_eq!(summary.lines, lines.len());
    assert_eq!(stats.records_in as usize, lines.len());
    assert_eq!(
        stats.decoded as usize,
        gold.len(),
        "every gold tweet decodes"
    );
    assert_eq!(
        stats.dead_lettered as usize,
        lines.len() - gold.len(),
        "every malformed line is dead-lettered"
    );
    assert_eq!(
        summary.dead_letters.len(),
        stats.dead_lettered as usize,
        "the file holds them all"
    );
    let kinds: HashSet<&str> = summary
        .dead_letters
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    for kind in ["invalid_json", "invalid_utf8", "empty", "too_large"] {
        assert!(kinds.contains(kind), "no {kind} dead letter");
    }
    assert!(stats.reconciles());

    // Recount the deliveries against the gold file, independently.
    let mut notified: HashMap<&str, Vec<&str>> = HashMap::new();
    for (route, notes) in &summary.inboxes {
        for n in notes {
            notified
                .entry(route.as_str())
                .or_default()
                .push(n.tweet_id.as_str());
        }
    }
    let delivered: usize = summary
        .inboxes
        .iter()
        .filter(|(r, _)| **r != REVIEW_ROUTE)
        .map(|(_, v)| v.len())
        .sum();
    assert_eq!(
        delivered as u64, stats.routed,
        "one notification per routed tweet"
    );
    assert_eq!(
        summary.inboxes.get(&REVIEW_ROUTE).map_or(0, Vec::len) as u64,
        stats.sent_for_review
    );
    for t in &summary.teams {
        let ids = notified.get(t.label.as_str()).cloned().unwrap_or_default();
        let correct = ids.iter().filter(|id| gold[**id] == t.label).count();
        let gold_n = gold.values().filter(|l| **l == t.label).count();
        assert_eq!(t.notified, ids.len(), "{}", t.label);
        assert_eq!(t.correct, correct, "{}", t.label);
        assert_eq!(t.gold, gold_n, "{}", t.label);
        assert!((t.precision - correct as f64 / ids.len().max(1) as f64).abs() < 1e-12);
        assert!((t.recall - correct as f64 / gold_n as f64).abs() < 1e-12);
    }
    let reached: HashSet<&str> = notified.values().flatten().copied().collect();
    let reached_actionable = gold
        .iter()
        .filter(|(id, l)| l.as_str() != app::NOISE && reached.contains(id.as_str()))
        .count();
    assert_eq!(summary.actionable_reached, reached_actionable);
    assert_eq!(summary.actionable_gold, actionable);
    // Per-label counts cover every decoded tweet.
    let classified: u64 = stats.classified.values().sum();
    assert_eq!(classified, stats.decoded);
    assert_eq!(
        stats.routed + stats.discarded + stats.sent_for_review,
        stats.decoded,
        "every decoded tweet is notified, dropped or triaged"
    );
    // The flaky notifier was retried, and nothing was lost to it.
    assert!(stats.retries > 0);
    assert_eq!(stats.dead_lettered_by_stage.get("route"), None);
}
