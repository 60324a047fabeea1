//! The local model's guarantees: the featurizer is the same at train and
//! serve time, a reloaded model scores bit-identically, bad model files are
//! typed errors, odd text does not panic, training is deterministic, and
//! training on the bundled tweets reaches a minimum cross-validated AUC.
//!
//! The cross-validation helpers here (stratified folds, rank AUC) are
//! private to the tests. `cargo test --release --test local_model -- --ignored
//! --nocapture tune` prints the grid the defaults were chosen from.

use std::collections::BTreeMap;

use proptest::prelude::*;
use streamsift::local::{
    CharNgrams, ClassWeight, Example, FeatureBuf, Featurizer, FeaturizerConfig, KindMode,
    LocalClassifier, LocalModel, MODEL_VERSION, ModelFileError, ModelKind, NumericField, TokenBuf,
    TokenKind, Tokenizer, TokenizerConfig, TrainConfig, TrainError,
};
use streamsift::{Classifier, Policy};

const TWEETS: &[u8] = include_bytes!("../examples/data/tweets.jsonl");
const LABELS: &str = include_str!("../examples/data/labels.csv");

/// The bundled labeled tweets as examples (multi-class labels), with the
/// `is_reply` flag and the `followers` number. Malformed lines are skipped.
fn bundled() -> Vec<Example> {
    let gold: BTreeMap<&str, &str> = LABELS
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .collect();
    let mut out = Vec::new();
    for line in TWEETS.split(|&b| b == b'\n') {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(id), Some(text)) = (v["id_str"].as_str(), v["text"].as_str()) else {
            continue;
        };
        let Some(label) = gold.get(id) else { continue };
        let mut e = Example::new(text).labeled(*label);
        e.id = Some(id.to_string());
        e.flags.insert(
            "is_reply".into(),
            v["in_reply_to_status_id_str"].is_string(),
        );
        if let Some(f) = v["user"]["followers_count"].as_f64() {
            e.numbers.insert("followers".into(), f);
        }
        out.push(e);
    }
    out
}

/// Binary labels: anything but "none" is actionable.
fn binary(examples: &[Example]) -> Vec<Example> {
    examples
        .iter()
        .map(|e| {
            let mut e = e.clone();
            let actionable = e.label.as_deref() != Some("none");
            e.label = Some(if actionable { "actionable" } else { "none" }.into());
            e
        })
        .collect()
}

/// Stratified fold index per example, shuffled under `seed`.
fn folds(examples: &[Example], k: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..order.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order.sort_by_key(|&i| examples[i].label.clone());
    let mut fold = vec![0; examples.len()];
    for (rank, &i) in order.iter().enumerate() {
        fold[i] = rank % k;
    }
    fold
}

/// ROC AUC by ranks (ties get the mean rank).
fn auc(scores: &[(f64, bool)]) -> f64 {
    let mut s = scores.to_vec();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < s.len() {
        let mut j = i;
        while j < s.len() && s[j].0 == s[i].0 {
            j += 1;
        }
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * s[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let pos = s.iter().filter(|x| x.1).count() as f64;
    let neg = s.len() as f64 - pos;
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Out-of-fold positive scores of a binary config over k folds.
fn cv_binary(examples: &[Example], config: &TrainConfig, k: usize, seed: u64) -> f64 {
    let fold = folds(examples, k, seed);
    let mut scores = Vec::new();
    for f in 0..k {
        let train: Vec<Example> = (0..examples.len())
            .filter(|&i| fold[i] != f)
            .map(|i| examples[i].clone())
            .collect();
        let model = LocalModel::train(&train, config).unwrap();
        for (i, e) in examples.iter().enumerate().filter(|(i, _)| fold[*i] == f) {
            let _ = i;
            let p = model.positive_probability(e).unwrap();
            scores.push((p, e.label.as_deref() == Some("actionable")));
        }
    }
    auc(&scores)
}

/// Out-of-fold accuracy of a multinomial config over k folds.
fn cv_accuracy(examples: &[Example], config: &TrainConfig, k: usize, seed: u64) -> f64 {
    let fold = folds(examples, k, seed);
    let mut right = 0usize;
    for f in 0..k {
        let train: Vec<Example> = (0..examples.len())
            .filter(|&i| fold[i] != f)
            .map(|i| examples[i].clone())
            .collect();
        let model = LocalModel::train(&train, config).unwrap();
        for (_, e) in examples.iter().enumerate().filter(|(i, _)| fold[*i] == f) {
            let p = model.predict(e);
            right += usize::from(Some(p.label.as_str()) == e.label.as_deref());
        }
    }
    right as f64 / examples.len() as f64
}

#[test]
fn auc_helper_matches_hand_computed_cases() {
    assert_eq!(auc(&[(0.1, false), (0.9, true)]), 1.0);
    assert_eq!(auc(&[(0.9, false), (0.1, true)]), 0.0);
    assert_eq!(auc(&[(0.5, false), (0.5, true)]), 0.5);
    // Pairs (pos, neg): (0.8 > 0.3), (0.8 > 0.6), (0.4 > 0.3), (0.4 < 0.6) -> 3/4.
    assert_eq!(
        auc(&[(0.8, true), (0.4, true), (0.3, false), (0.6, false)]),
        0.75
    );
}

#[test]
fn bundled_data_loads() {
    let data = bundled();
    assert_eq!(data.len(), 1060);
    let positives = binary(&data)
        .iter()
        .filter(|e| e.label.as_deref() == Some("actionable"))
        .count();
    assert_eq!(positives, 230);
}

/// A small binary model on the bundled data (shared by several tests).
fn small_binary_model() -> LocalModel {
    let data = binary(&bundled());
    let mut config = TrainConfig::binary("actionable");
    config.featurizer.flags = vec!["is_reply".into()];
    config.featurizer.numbers = vec![NumericField::new("followers", 5)];
    LocalModel::train(&data, &config).unwrap()
}

#[test]
fn cross_validated_auc_on_bundled_data_is_high() {
    // Measured: 0.9867 (5 folds, seed 1, default settings). The threshold is
    // set a little below, so a real regression fails it.
    let bin = binary(&bundled());
    let auc = cv_binary(&bin, &TrainConfig::binary("actionable"), 5, 1);
    println!("5-fold AUC = {auc:.4}");
    assert!(auc >= 0.975, "5-fold cross-validated AUC {auc:.4} < 0.975");
}

#[test]
fn cross_validated_accuracy_on_bundled_data_is_high() {
    // Measured: 0.931 (5 folds, seed 1, default settings); five labels, the
    // majority label alone is 0.78.
    let data = bundled();
    let acc = cv_accuracy(&data, &TrainConfig::multinomial(), 5, 1);
    println!("5-fold accuracy = {acc:.4}");
    assert!(
        acc >= 0.90,
        "5-fold cross-validated accuracy {acc:.4} < 0.90"
    );
}

#[test]
fn training_is_deterministic_under_a_seed() {
    let data = binary(&bundled());
    let mut config = TrainConfig::binary("actionable");
    config.seed = 7;
    config.epochs = 3;
    let a = LocalModel::train(&data, &config).unwrap();
    let b = LocalModel::train(&data, &config).unwrap();
    let strip = |m: &LocalModel| {
        let mut v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        v["metadata"]["train_seconds"] = 0.into();
        v["metadata"]["trained_at_unix"] = 0.into();
        v
    };
    assert_eq!(strip(&a), strip(&b));
    config.seed = 8;
    let c = LocalModel::train(&data, &config).unwrap();
    assert_ne!(strip(&a)["weights"], strip(&c)["weights"]);
}

#[test]
fn progress_reports_every_epoch_with_falling_loss() {
    let data = binary(&bundled());
    let mut config = TrainConfig::binary("actionable");
    config.epochs = 4;
    let mut reports = Vec::new();
    let model =
        LocalModel::train_with_progress(&data, &config, |r| reports.push(r.clone())).unwrap();
    assert_eq!(
        reports.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(
        reports
            .iter()
            .all(|r| r.epochs == 4 && r.log_loss.is_finite())
    );
    assert!(reports[3].log_loss < reports[0].log_loss);
    let m = model.metadata();
    assert!(m.train_log_loss > 0.0 && m.train_log_loss < reports[0].log_loss);
    assert_eq!(m.examples, 1060);
    assert_eq!(m.label_counts["actionable"], 230);
}

#[test]
fn reloaded_model_scores_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let mut binary_model = small_binary_model();
    binary_model.set_policy(Some(Policy::binary(0.3, "support")));
    binary_model.evaluation = Some(serde_json::json!({"auc": 0.98}));
    let multi = LocalModel::train(&bundled(), &TrainConfig::multinomial()).unwrap();
    for (name, model) in [("binary", binary_model), ("multi", multi)] {
        let path = dir.path().join(format!("{name}.json"));
        model.save(&path).unwrap();
        let loaded = LocalModel::load(&path).unwrap();
        assert_eq!(loaded.kind(), model.kind());
        assert_eq!(loaded.labels(), model.labels());
        assert_eq!(loaded.policy(), model.policy());
        assert_eq!(loaded.evaluation, model.evaluation);
        assert_eq!(loaded.metadata(), model.metadata());
        assert_eq!(loaded.featurizer().config(), model.featurizer().config());
        for e in bundled().iter().take(300) {
            let (a, b) = (model.predict_proba(e), loaded.predict_proba(e));
            for ((la, pa), (lb, pb)) in a.iter().zip(&b) {
                assert_eq!(la, lb);
                assert_eq!(pa.to_bits(), pb.to_bits(), "{name}: {:?}", e.text);
            }
        }
        // And the file is stable: saving the loaded model gives the same text.
        assert_eq!(loaded.to_json(), model.to_json());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn f32_weights_round_trip_through_json(bits in any::<u32>()) {
        let x = f32::from_bits(bits);
        prop_assume!(x.is_finite());
        let text = serde_json::to_string(&x).unwrap();
        let back: f32 = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back.to_bits(), x.to_bits());
    }

    #[test]
    fn same_text_gives_same_features(text in "\\PC{0,200}", other in "\\PC{0,50}") {
        let config = FeaturizerConfig::default();
        let f1 = Featurizer::new(config.clone()).unwrap();
        let f2 = Featurizer::new(config).unwrap();
        let mut warm = FeatureBuf::new();
        // A buffer that featurized other text first gives the same answer as a fresh one,
        // and a second featurizer built from the same config agrees.
        f1.featurize(other.as_str(), &mut warm);
        let a = f1.featurize(text.as_str(), &mut warm).to_vec();
        let b = f2.featurize(text.as_str(), &mut FeatureBuf::new()).to_vec();
        prop_assert_eq!(&a, &b);
        let dim = f1.dim() as u32;
        prop_assert!(a.iter().all(|f| f.index < dim && f.value.is_finite()));
    }
}

#[test]
fn odd_text_gives_a_valid_probability() {
    let model = small_binary_model();
    let long = "delayed flight again ".repeat(5_000);
    let wide = "🙂é\u{301}中文 ".repeat(20_000);
    assert!(long.len() >= 100_000 && wide.len() >= 100_000);
    for text in ["", " ", "\u{0}", "?", long.as_str(), wide.as_str()] {
        let p = model.positive_probability(text).unwrap();
        assert!((0.0..=1.0).contains(&p), "{p} for {:.20}", text);
    }
}

#[test]
fn classifier_returns_binary_and_multinomial_predictions() {
    let data = bundled();
    let binary_model = small_binary_model();
    let multi = LocalModel::train(&data, &TrainConfig::multinomial()).unwrap();
    assert_eq!(multi.kind(), ModelKind::Multinomial);
    let b = LocalClassifier::new(binary_model);
    let m = LocalClassifier::new(multi);
    let item = Example::new("@nimbuscloud fra1 instances not booting, stuck on provisioning");
    let pb = futures::executor::block_on(b.classify(&item)).unwrap();
    assert_eq!(pb.label, "actionable");
    assert!(pb.positive_score.unwrap() > 0.5);
    let pm = futures::executor::block_on(m.classify(&item)).unwrap();
    assert_eq!(pm.label, "problem_report");
    let total: f64 = pm.scores.iter().map(|s| s.1).sum();
    assert!((total - 1.0).abs() < 1e-9);
    assert_eq!(pm.scores.len(), 5);
}

#[test]
fn top_features_are_named_and_signed() {
    let model = small_binary_model();
    let top = model.top_features(10);
    assert_eq!(top.positive.len(), 10);
    assert_eq!(top.negative.len(), 10);
    assert!(top.positive.windows(2).all(|w| w[0].weight >= w[1].weight));
    assert!(top.negative.windows(2).all(|w| w[0].weight <= w[1].weight));
    assert!(
        top.positive
            .iter()
            .all(|f| f.weight > 0.0 && !f.name.is_empty())
    );
    // The model's own features push the same way as their weights say.
    let neg = model.top_features_for("none", 10).unwrap();
    assert_eq!(neg.positive[0].weight, -top.negative[0].weight);
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_model_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let json = small_binary_model().to_json();

    let err = LocalModel::load(dir.path().join("missing.json")).unwrap_err();
    assert!(
        matches!(err, ModelFileError::Io { action: "read", .. }),
        "{err}"
    );

    let truncated = write(&dir, "t.json", &json[..json.len() / 2]);
    let err = LocalModel::load(&truncated).unwrap_err();
    assert!(
        matches!(err, ModelFileError::Truncated { line: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"));

    let corrupt = write(
        &dir,
        "c.json",
        &json.replacen("\"labels\":[", "\"labels\":[}", 1),
    );
    let err = LocalModel::load(&corrupt).unwrap_err();
    assert!(
        matches!(err, ModelFileError::Parse { line: 1, column, .. } if column > 1),
        "{err}"
    );

    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut other = v.clone();
    other["version"] = (MODEL_VERSION + 1).into();
    let err = LocalModel::from_json(&other.to_string()).unwrap_err();
    match &err {
        ModelFileError::Version {
            found,
            expected,
            crate_version,
        } => {
            assert_eq!((*found, *expected), (MODEL_VERSION + 1, MODEL_VERSION));
            assert_eq!(crate_version, env!("CARGO_PKG_VERSION"));
        }
        _ => panic!("expected a version error, got {err}"),
    }
    assert!(err.to_string().contains("retrain"));

    let mut not_model = v.clone();
    not_model["format"] = "something-else".into();
    let err = LocalModel::from_json(&not_model.to_string()).unwrap_err();
    assert!(matches!(err, ModelFileError::NotAModel { .. }), "{err}");
    let err = LocalModel::from_json("[1, 2]").unwrap_err();
    assert!(matches!(err, ModelFileError::Parse { .. }), "{err}");

    let mut missing = v.clone();
    missing.as_object_mut().unwrap().remove("featurizer");
    let err = LocalModel::from_json(&missing.to_string()).unwrap_err();
    assert!(err.to_string().contains("featurizer"), "{err}");

    let mut short = v.clone();
    short["weights"]["values"].as_array_mut().unwrap().pop();
    let err = LocalModel::from_json(&short.to_string()).unwrap_err();
    assert!(matches!(err, ModelFileError::Shape(_)), "{err}");

    let mut outside = v.clone();
    outside["featurizer"]["bits"] = 4.into();
    let err = LocalModel::from_json(&outside.to_string()).unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");

    let mut bad_bits = v.clone();
    bad_bits["featurizer"]["bits"] = 60.into();
    let err = LocalModel::from_json(&bad_bits.to_string()).unwrap_err();
    assert!(matches!(err, ModelFileError::Config(_)), "{err}");
}

#[test]
fn training_input_errors_are_typed() {
    let config = TrainConfig::binary("yes");
    assert_eq!(
        LocalModel::train(&[], &config).unwrap_err(),
        TrainError::NoExamples
    );
    let one = [
        Example::new("a").labeled("yes"),
        Example::new("b").labeled("yes"),
    ];
    assert!(matches!(
        LocalModel::train(&one, &config),
        Err(TrainError::OneLabel { .. })
    ));
    let unlabeled = [Example::new("a").labeled("yes"), Example::new("b")];
    assert!(matches!(
        LocalModel::train(&unlabeled, &config),
        Err(TrainError::Unlabeled { index: 1, .. })
    ));
    let other = [
        Example::new("a").labeled("x"),
        Example::new("b").labeled("z"),
    ];
    assert!(matches!(
        LocalModel::train(&other, &config),
        Err(TrainError::UnknownPositive { .. })
    ));
    let mut bad = config.clone();
    bad.learning_rate = f64::NAN;
    let two = [
        Example::new("a").labeled("yes"),
        Example::new("b").labeled("no"),
    ];
    assert!(matches!(
        LocalModel::train(&two, &bad),
        Err(TrainError::Setting {
            name: "learning_rate",
            ..
        })
    ));
}

#[test]
fn missing_configured_fields_are_counted_at_serve_time() {
    let model = small_binary_model();
    let before = model.featurizer().missing_fields();
    // The bundled data has both fields on every tweet.
    assert_eq!(model.metadata().missing_fields.values().sum::<u64>(), 0);
    model.positive_probability("no fields here").unwrap();
    let after = model.featurizer().missing_fields();
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(*a, b + 1, "{name}");
    }
}

#[test]
fn tokenizer_handles_tweet_tokens() {
    let tok = Tokenizer::new(TokenizerConfig::default());
    let mut buf = TokenBuf::new();
    tok.tokenize("@AmericanAir Flight 1234 delayed AGAIN?!! Sooooo done :-( <3 #NeverAgain http://t.co/abc 😤", &mut buf);
    let got: Vec<(TokenKind, &str)> = buf.iter().collect();
    use TokenKind::*;
    assert_eq!(
        got,
        [
            (Mention, "@americanair"),
            (Word, "flight"),
            (Number, "<num>"),
            (Word, "delayed"),
            (Word, "again"),
            (Punct, "?"),
            (Punct, "!"),
            (Word, "soo"),
            (Word, "done"),
            (Emoticon, ":("),
            (Emoticon, "<3"),
            (Hashtag, "#neveragain"),
            (Url, "<url>"),
            (Emoji, "😤"),
        ]
    );
}

/// Prints cross-validated AUC (binary) and accuracy (multinomial) over a
/// grid of settings, each averaged over fold seeds (two unless
/// `TUNE_SEEDS` says otherwise; `TUNE_ONLY` picks settings by name).
type Tweak = Box<dyn Fn(&mut TrainConfig)>;

/// The settings `tune` and `airline_cv` compare, by name.
fn grid() -> Vec<(&'static str, Tweak)> {
    let chars = |w: f32| {
        move |c: &mut TrainConfig| {
            if let Some(n) = &mut c.featurizer.char_ngrams {
                n.weight = w;
            }
        }
    };
    let range = |min: usize, max: usize, weight: f32| {
        move |c: &mut TrainConfig| {
            c.featurizer.char_ngrams = Some(CharNgrams { min, max, weight });
        }
    };
    vec![
        ("default", Box::new(|_| {})),
        ("chars 2..5 w=0.1", Box::new(range(2, 5, 0.1))),
        (
            "old default: osb=2, chars 2..5 w=0.1",
            Box::new(|c| {
                c.featurizer.osb = 2;
                c.featurizer.char_ngrams = Some(CharNgrams {
                    min: 2,
                    max: 5,
                    weight: 0.1,
                });
            }),
        ),
        ("chars 3..5 w=0.1", Box::new(range(3, 5, 0.1))),
        ("chars 3..5 w=0.15", Box::new(range(3, 5, 0.15))),
        ("chars 2..4 w=0.1", Box::new(range(2, 4, 0.1))),
        ("chars 3..4 w=0.1", Box::new(range(3, 4, 0.1))),
        ("chars 3..6 w=0.1", Box::new(range(3, 6, 0.1))),
        ("chars 3..5 w=0.12", Box::new(range(3, 5, 0.12))),
        (
            "osb=1, chars 3..5 w=0.15",
            Box::new(|c| {
                c.featurizer.osb = 1;
                c.featurizer.char_ngrams = Some(CharNgrams {
                    min: 3,
                    max: 5,
                    weight: 0.15,
                });
            }),
        ),
        (
            "osb=1, chars 3..5 w=0.12",
            Box::new(|c| {
                c.featurizer.osb = 1;
                c.featurizer.char_ngrams = Some(CharNgrams {
                    min: 3,
                    max: 5,
                    weight: 0.12,
                });
            }),
        ),
        (
            "osb=1, chars 3..5 w=0.2",
            Box::new(|c| {
                c.featurizer.osb = 1;
                c.featurizer.char_ngrams = Some(CharNgrams {
                    min: 3,
                    max: 5,
                    weight: 0.2,
                });
            }),
        ),
        (
            "osb=1, chars 3..4 w=0.15",
            Box::new(|c| {
                c.featurizer.osb = 1;
                c.featurizer.char_ngrams = Some(CharNgrams {
                    min: 3,
                    max: 4,
                    weight: 0.15,
                });
            }),
        ),
        (
            "osb=1, chars 3..4 w=0.2",
            Box::new(|c| {
                c.featurizer.osb = 1;
                c.featurizer.char_ngrams = Some(CharNgrams {
                    min: 3,
                    max: 4,
                    weight: 0.2,
                });
            }),
        ),
        ("chars 3..5 w=0.2", Box::new(range(3, 5, 0.2))),
        ("lr=0.3", Box::new(|c| c.learning_rate = 0.3)),
        ("lr=0.05", Box::new(|c| c.learning_rate = 0.05)),
        ("l2=1e-4", Box::new(|c| c.l2 = 1e-4)),
        ("l2=3e-3", Box::new(|c| c.l2 = 3e-3)),
        ("epochs=5", Box::new(|c| c.epochs = 5)),
        ("epochs=20", Box::new(|c| c.epochs = 20)),
        ("l1=1e-4", Box::new(|c| c.l1 = 1e-4)),
        ("no chars", Box::new(|c| c.featurizer.char_ngrams = None)),
        ("chars w=0.3", Box::new(chars(0.3))),
        ("chars w=0.05", Box::new(chars(0.05))),
        ("osb=1", Box::new(|c| c.featurizer.osb = 1)),
        ("osb=2", Box::new(|c| c.featurizer.osb = 2)),
        ("osb=4", Box::new(|c| c.featurizer.osb = 4)),
        (
            "no text flags",
            Box::new(|c| c.featurizer.text_flags = false),
        ),
        ("bits=18", Box::new(|c| c.featurizer.bits = 18)),
        ("bits=19", Box::new(|c| c.featurizer.bits = 19)),
        (
            "bits=18, chars 3..5 w=0.1",
            Box::new(|c| {
                c.featurizer.bits = 18;
                c.featurizer.char_ngrams = Some(CharNgrams {
                    min: 3,
                    max: 5,
                    weight: 0.1,
                });
            }),
        ),
        (
            "uniform class weights",
            Box::new(|c| c.class_weight = ClassWeight::Uniform),
        ),
        (
            "numbers kept",
            Box::new(|c| c.featurizer.tokenizer.numbers = KindMode::Keep),
        ),
        (
            "mentions as kind",
            Box::new(|c| c.featurizer.tokenizer.mentions = KindMode::Kind),
        ),
        (
            "+ is_reply, followers",
            Box::new(|c| {
                c.featurizer.flags = vec!["is_reply".into()];
                c.featurizer.numbers = vec![NumericField::new("followers", 5)];
            }),
        ),
    ]
}

/// How many fold seeds (`TUNE_SEEDS`, default 2) and which settings
/// (`TUNE_ONLY=a,b`: names containing a or b; default all) to run.
fn tune_selection() -> (u64, Vec<(&'static str, Tweak)>) {
    let seeds: u64 = std::env::var("TUNE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let only = std::env::var("TUNE_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|w| name.contains(w));
    let grid = grid()
        .into_iter()
        .filter(|(name, _)| wanted(name))
        .collect();
    (seeds, grid)
}

/// Prints the mean over fold seeds of the 5-fold CV AUC (binary) and
/// accuracy (multinomial) of each selected setting.
fn run_grid(bin: &[Example], multi: &[Example]) {
    let (seeds, grid) = tune_selection();
    for (name, tweak) in &grid {
        let mut b = TrainConfig::binary("actionable");
        tweak(&mut b);
        let mut m = TrainConfig::multinomial();
        tweak(&mut m);
        let n = seeds as f64;
        let a = (1..=seeds).map(|s| cv_binary(bin, &b, 5, s)).sum::<f64>() / n;
        let acc = (1..=seeds)
            .map(|s| cv_accuracy(multi, &m, 5, s))
            .sum::<f64>()
            / n;
        println!("{name:30} auc={a:.4} accuracy={acc:.4}");
    }
}

#[test]
#[ignore = "tuning grid; run in release with --ignored --nocapture"]
fn tune() {
    let data = bundled();
    run_grid(&binary(&data), &data);
}

/// Splits one CSV record into fields (RFC 4180 quoting: `"a ""b"" c"`);
/// `None` if a quote is left open.
fn csv_fields(record: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = record.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut()?;
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => field.push(c),
        }
    }
    (!quoted).then_some(fields)
}

/// The rows of a CSV file with a header `id,text,label` as examples
/// (records may span lines inside quotes); rows that do not parse are
/// skipped.
fn read_labeled_csv(path: &std::path::Path) -> Vec<Example> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut record = String::new();
    for line in text.lines().skip(1) {
        if !record.is_empty() {
            record.push('\n');
        }
        record.push_str(line);
        let Some(fields) = csv_fields(&record) else {
            continue;
        };
        record.clear();
        if let [_, text, label] = fields.as_slice() {
            out.push(Example::new(text.as_str()).labeled(label.as_str()));
        }
    }
    out
}

/// The same grid as `tune`, cross-validated on an external labeled set kept
/// outside the project: `AIRLINE_DIR` names a directory with
/// `binary_train.csv` (labels `complaint`/`other`) and `reason_train.csv`
/// (one label per reason). Only those training splits are read. Skipped
/// without `AIRLINE_DIR`.
#[test]
#[ignore = "tuning on external data; set AIRLINE_DIR, run in release with --ignored --nocapture"]
fn airline_cv() {
    let Some(dir) = std::env::var_os("AIRLINE_DIR") else {
        eprintln!("AIRLINE_DIR is not set: skipped");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let bin: Vec<Example> = read_labeled_csv(&dir.join("binary_train.csv"))
        .into_iter()
        .map(|e| {
            let complaint = e.label.as_deref() == Some("complaint");
            e.labeled(if complaint { "actionable" } else { "none" })
        })
        .collect();
    let reason = read_labeled_csv(&dir.join("reason_train.csv"));
    println!(
        "airline: {} binary rows, {} reason rows",
        bin.len(),
        reason.len()
    );
    run_grid(&bin, &reason);
}

/// The public Classifier conformance suite on the local classifier, binary
/// and multinomial, over a slice of the bundled tweets.
#[tokio::test]
async fn local_classifier_conforms() {
    let data = bundled();
    let items: Vec<Example> = data.iter().step_by(53).cloned().collect();
    let binary_model = LocalClassifier::new(small_binary_model());
    let predictions = streamsift::testing::classifier::conformance(
        &binary_model,
        &items,
        &["actionable", "none"],
    )
    .await;
    assert_eq!(predictions.len(), items.len());

    let mut labels: Vec<String> = data.iter().filter_map(|e| e.label.clone()).collect();
    labels.sort();
    labels.dedup();
    let allowed: Vec<&str> = labels.iter().map(String::as_str).collect();
    let multi =
        LocalClassifier::new(LocalModel::train(&data, &TrainConfig::multinomial()).unwrap());
    streamsift::testing::classifier::conformance(&multi, &items, &allowed).await;
}
