//! The local model's guarantees: the featurizer is the same at train and
//! serve time, a reloaded model scores bit-identically, bad model files are
//! typed errors, odd text does not panic, training is deterministic, and
//! training on the bundled tweets reaches a minimum cross-validated AUC.
//!
//! The cross-validation helpers here (stratified folds, rank AUC) are
//! private to the tests. `cargo test --release --test local_model -- --ignored
//! --nocapture tune` prints the grid the defaults were chosen from.

use std::collections::BTreeMap;

use streamsift::local::{ClassWeight, Example, KindMode, LocalModel, NumericField, TrainConfig};

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

/// Prints cross-validated AUC (binary) and accuracy (multinomial) over a
/// grid of settings, each averaged over two fold seeds.
#[test]
#[ignore = "tuning grid; run in release with --ignored --nocapture"]
fn tune() {
    let data = bundled();
    let bin = binary(&data);
    type Tweak = Box<dyn Fn(&mut TrainConfig)>;
    let grid: Vec<(&str, Tweak)> = vec![
        ("default", Box::new(|_| {})),
        ("lr=0.1", Box::new(|c| c.learning_rate = 0.1)),
        (
            "lr=0.1 l2=1e-3",
            Box::new(|c| {
                c.learning_rate = 0.1;
                c.l2 = 1e-3
            }),
        ),
        (
            "lr=0.1 l2=1e-3 ep=20",
            Box::new(|c| {
                c.learning_rate = 0.1;
                c.l2 = 1e-3;
                c.epochs = 20
            }),
        ),
        (
            "lr=0.03 l2=1e-3 ep=20",
            Box::new(|c| {
                c.learning_rate = 0.03;
                c.l2 = 1e-3;
                c.epochs = 20
            }),
        ),
        ("no chars", Box::new(|c| c.featurizer.char_ngrams = None)),
        (
            "chars w=1",
            Box::new(|c| {
                if let Some(n) = &mut c.featurizer.char_ngrams {
                    n.weight = 1.0
                }
            }),
        ),
        (
            "chars w=0.1",
            Box::new(|c| {
                if let Some(n) = &mut c.featurizer.char_ngrams {
                    n.weight = 0.1
                }
            }),
        ),
        (
            "chars 3..5",
            Box::new(|c| {
                if let Some(n) = &mut c.featurizer.char_ngrams {
                    n.min = 3
                }
            }),
        ),
        (
            "chars 1..4",
            Box::new(|c| {
                if let Some(n) = &mut c.featurizer.char_ngrams {
                    n.min = 1;
                    n.max = 4
                }
            }),
        ),
        ("osb=1", Box::new(|c| c.featurizer.osb = 1)),
        ("osb=4", Box::new(|c| c.featurizer.osb = 4)),
        (
            "no text flags",
            Box::new(|c| c.featurizer.text_flags = false),
        ),
        ("bits=18", Box::new(|c| c.featurizer.bits = 18)),
        ("bits=22", Box::new(|c| c.featurizer.bits = 22)),
        (
            "uniform weights",
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
            "with is_reply, followers",
            Box::new(|c| {
                c.featurizer.flags = vec!["is_reply".into()];
                c.featurizer.numbers = vec![NumericField::new("followers", 5)];
            }),
        ),
    ];
    for (name, tweak) in &grid {
        let mut b = TrainConfig::binary("actionable");
        tweak(&mut b);
        let mut m = TrainConfig::multinomial();
        tweak(&mut m);
        let a = (cv_binary(&bin, &b, 5, 1) + cv_binary(&bin, &b, 5, 2)) / 2.0;
        let acc = (cv_accuracy(&data, &m, 5, 1) + cv_accuracy(&data, &m, 5, 2)) / 2.0;
        println!("{name:30} auc={a:.4} accuracy={acc:.4}");
    }
}
