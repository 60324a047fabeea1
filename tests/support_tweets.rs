//! The support_tweets example: its summary matches its gold labels, the
//! local model reaches people with the actionable tweets it never saw, the
//! bundled model files are fresh and are exactly what training produces, and
//! a tweet is featurized alike when served and when trained on.
//!
//! The example's logic lives in `examples/support_tweets/app.rs` and
//! `model.rs`; this test runs it and recomputes every figure of the summary
//! independently, from the bundled files and the deliveries.

#[path = "../examples/support_tweets/app.rs"]
mod app;

use std::collections::{HashMap, HashSet};

use app::model::{self, LabeledData, NotUsable, Origin};
use streamsift::local::{Document, FeatureBuf, LoadOptions, Mode, RETWEET_FLAG};
use streamsift::{Label, REVIEW_ROUTE, Shutdown};

/// Held-out actionable tweets that must reach a person (a team or triage).
/// The measured figure is in the README, checked below against this run.
const HELD_OUT_REACH_FLOOR: f64 = 0.90;

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

    // The held-out tweets: the hold-out of the labeled data, recounted.
    let data = LabeledData::load(app::TWEETS, app::GOLD).unwrap();
    let held_out: HashSet<&str> = data
        .holdout
        .iter()
        .map(|e| e.id.as_deref().unwrap())
        .collect();
    assert_eq!(summary.held_out_ids.len(), held_out.len());
    assert!(held_out.iter().all(|id| summary.held_out_ids.contains(*id)));
    let trained: HashSet<&str> = data
        .train
        .iter()
        .map(|e| e.id.as_deref().unwrap())
        .collect();
    assert!(
        held_out.is_disjoint(&trained),
        "a held-out tweet was trained on"
    );
    let h_actionable: Vec<&str> = held_out
        .iter()
        .copied()
        .filter(|id| gold[*id] != app::NOISE)
        .collect();
    let h_reached = h_actionable
        .iter()
        .filter(|id| reached.contains(**id))
        .count();
    assert_eq!(summary.held_out.actionable_gold, h_actionable.len());
    assert_eq!(summary.held_out.actionable_reached, h_reached);
    for t in &summary.held_out.teams {
        let ids: Vec<&str> = notified
            .get(t.label.as_str())
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|id| held_out.contains(id))
            .collect();
        assert_eq!(t.notified, ids.len(), "{}", t.label);
        assert_eq!(
            t.correct,
            ids.iter().filter(|id| gold[**id] == t.label).count(),
            "{}",
            t.label
        );
    }
    // The local model gets the actionable tweets it never saw to a person.
    let share = h_reached as f64 / h_actionable.len() as f64;
    assert!(
        share >= HELD_OUT_REACH_FLOOR,
        "held-out actionable tweets that reached a person: {h_reached} of {} ({share:.3})",
        h_actionable.len()
    );
    // The README quotes these figures: they must be this run's.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let thousands = |n: usize| {
        let s = n.to_string();
        if n >= 1000 {
            format!("{},{}", &s[..s.len() - 3], &s[s.len() - 3..])
        } else {
            s
        }
    };
    for claim in [
        format!(
            "replays {} bundled lines ({} tweets",
            thousands(lines.len()),
            thousands(gold.len())
        ),
        format!("plus {} malformed lines", lines.len() - gold.len()),
        format!(
            "{h_reached} of the {} actionable ones reach a person",
            h_actionable.len()
        ),
    ] {
        assert!(
            readme.contains(&claim),
            "README.md should say {claim:?}: update its figures from this run"
        );
    }

    // And it does not page for everything: most noise is dropped.
    let noise_total = gold.values().filter(|l| l.as_str() == app::NOISE).count();
    assert!(
        (stats.discarded as f64) > 0.8 * noise_total as f64,
        "{} of {noise_total} noise tweets dropped",
        stats.discarded
    );
}

#[test]
fn bundled_model_is_fresh_and_is_what_training_produces() {
    let data = LabeledData::load(app::TWEETS, app::GOLD).unwrap();
    let bundled = match model::bundled(&data) {
        Ok(m) => m,
        Err(e) => panic!(
            "{e}\nregenerate the bundled model with \
             `cargo run --release --example support_tweets -- --write-model` and commit it"
        ),
    };
    assert_eq!(bundled.origin, Origin::Bundled);
    let trained = model::train(&data).unwrap();
    // Training is deterministic: the files are exactly what it produces.
    assert_eq!(bundled.actionable.policy(), trained.actionable.policy());
    assert_eq!(bundled.held_out, trained.held_out);
    assert_eq!(bundled.fingerprint, trained.fingerprint);
    for e in data.train.iter().chain(&data.holdout) {
        assert_eq!(
            bundled.actionable.positive_probability(e),
            trained.actionable.positive_probability(e)
        );
        assert_eq!(bundled.team.predict_proba(e), trained.team.predict_proba(e));
    }
    // The threshold was chosen by cost, and the held-out figures are sane.
    let h = &bundled.held_out;
    assert!(h.threshold > 0.0 && h.threshold < 1.0);
    assert!(h.auc > 0.95, "held-out AUC {}", h.auc);
    assert!(h.recall.unwrap() >= HELD_OUT_REACH_FLOOR, "{h:?}");
    assert!(h.precision.unwrap() > 0.5, "{h:?}");
    assert_eq!(h.tweets, data.holdout.len());
}

#[test]
fn a_bundled_model_for_other_data_is_stale() {
    let mut data = LabeledData::load(app::TWEETS, app::GOLD).unwrap();
    let e = data
        .train
        .iter_mut()
        .find(|e| e.label.as_deref() == Some(app::NOISE))
        .unwrap();
    e.label = Some("problem_report".into());
    let err = model::bundled(&data).unwrap_err();
    assert!(matches!(err, NotUsable::Stale), "{err}");
    assert!(err.to_string().contains("stale"));
}

#[test]
fn a_tweet_is_featurized_alike_when_served_and_when_trained_on() {
    let data = LabeledData::load(app::TWEETS, app::GOLD).unwrap();
    let models = model::bundled(&data)
        .or_else(|_| model::train(&data))
        .unwrap();
    let loaded = LoadOptions::tweets()
        .mode(Mode::Lenient)
        .load_json_lines(app::TWEETS)
        .unwrap();
    let by_id: HashMap<&str, _> = loaded
        .examples
        .iter()
        .map(|e| (e.id.as_deref().unwrap(), e))
        .collect();
    let featurizer = models.actionable.featurizer();
    let (mut a, mut b) = (FeatureBuf::new(), FeatureBuf::new());
    let mut compared = 0;
    for line in app::lines(app::TWEETS) {
        let Ok(tweet) = serde_json::from_slice::<app::Tweet>(&line) else {
            continue;
        };
        let Some(example) = by_id.get(tweet.id_str.as_str()) else {
            continue;
        };
        for flag in ["is_reply", RETWEET_FLAG] {
            assert_eq!(
                tweet.flag(flag),
                example.flag(flag),
                "{flag} of {}",
                tweet.id_str
            );
        }
        assert_eq!(tweet.number("followers"), example.number("followers"));
        assert_eq!(
            featurizer.featurize(&tweet, &mut a),
            featurizer.featurize(*example, &mut b),
            "{}",
            tweet.id_str
        );
        assert_eq!(
            models.actionable.positive_probability(&tweet),
            models.actionable.positive_probability(*example)
        );
        compared += 1;
    }
    assert_eq!(compared, loaded.len());
}

#[test]
fn triage_uses_the_saved_threshold_then_the_team_model() {
    let data = LabeledData::load(app::TWEETS, app::GOLD).unwrap();
    let models = model::bundled(&data)
        .or_else(|_| model::train(&data))
        .unwrap();
    let threshold = model::threshold(&models).unwrap();
    let triage = model::Triage::new(&models);
    let teams: HashSet<&str> = app::TEAMS.iter().map(|(l, _)| *l).collect();
    let (mut above, mut below) = (0, 0);
    for line in app::lines(app::TWEETS) {
        let Ok(tweet) = serde_json::from_slice::<app::Tweet>(&line) else {
            continue;
        };
        let p = models.actionable.positive_probability(&tweet).unwrap();
        let prediction = triage.predict(&tweet);
        assert_eq!(prediction.positive_score, Some(p));
        if p >= threshold {
            above += 1;
            assert!(teams.contains(prediction.label.as_str()), "{prediction:?}");
            assert_eq!(prediction, {
                let mut t = models.team.predict(&tweet);
                t.positive_score = Some(p);
                t
            });
        } else {
            below += 1;
            assert_eq!(prediction.label, Label::from_static(app::NOISE));
        }
    }
    assert!(above > 100 && below > 500, "{above} above, {below} below");
}

/// Issue 13, no loss: a restarted run must not delete the dead letters of
/// the run before it (their records may be committed past already). The
/// earlier file is moved aside, never removed or truncated.
#[tokio::test]
async fn no_loss_example_keeps_dead_letters_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dl.jsonl");
    let settings = app::Settings {
        dead_letter_path: path.clone(),
        ..app::Settings::default()
    };
    let first = app::run(&settings, Shutdown::new()).await.unwrap();
    let first_count = first.report.stats.dead_lettered as usize;
    assert!(first_count > 0, "the bundled stream has malformed lines");
    let first_ids: Vec<String> = streamsift::dead_letter::JsonLinesDeadLetter::read_entries(&path)
        .unwrap()
        .into_iter()
        .map(|e| e.record_id)
        .collect();
    assert_eq!(first_ids.len(), first_count);

    let second = app::run(&settings, Shutdown::new()).await.unwrap();
    assert_eq!(
        second.dead_letters.len(),
        second.report.stats.dead_lettered as usize,
        "the file at the path holds this run's dead letters"
    );
    let mut kept: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let file = entry.unwrap().path();
        if file != path {
            kept.extend(
                streamsift::dead_letter::JsonLinesDeadLetter::read_entries(&file)
                    .unwrap()
                    .into_iter()
                    .map(|e| e.record_id),
            );
        }
    }
    assert_eq!(
        kept,
        first_ids,
        "the first run's dead letters are gone: {} of {} kept beside {}",
        kept.len(),
        first_ids.len(),
        path.display()
    );
}
