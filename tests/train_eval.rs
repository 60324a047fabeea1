//! The train_eval example on a split of the bundled tweets: its figures are
//! sane, its threshold comes from cross-validation on the training file
//! only, its outputs (model file, report) are what it says, its last line
//! parses, and bad input is a clear error.
//!
//! The example's logic lives in `examples/train_eval/app.rs`; this test
//! runs it on files written to a temporary directory.

#[path = "../examples/train_eval/app.rs"]
mod app;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use streamsift::Policy;
use streamsift::local::{
    Costs, DatasetError, Example, LoadOptions, LocalModel, Mode, TrainConfig,
    choose_threshold_by_cost, out_of_fold_scores, read_labels_csv, stratified_split,
};

const TWEETS: &[u8] = include_bytes!("../examples/data/tweets.jsonl");
const LABELS: &str = include_str!("../examples/data/labels.csv");

/// The bundled labeled tweets (malformed lines skipped).
fn bundled() -> Vec<Example> {
    let gold = read_labels_csv(LABELS.as_bytes(), "id_str", "label").unwrap();
    LoadOptions::tweets()
        .mode(Mode::Lenient)
        .load_json_lines(TWEETS)
        .unwrap()
        .join_labels(&gold, Mode::Lenient)
        .unwrap()
        .examples
}

fn binary_label(l: &str) -> &str {
    if l == "none" { "none" } else { "actionable" }
}

/// Writes a stratified 70/30 split as `train.csv` and `test.csv`, labels
/// mapped by `map`.
fn write_split(dir: &Path, map: fn(&str) -> &str) -> (PathBuf, PathBuf) {
    let data = bundled();
    let labels: Vec<&str> = data.iter().map(|e| e.label.as_deref().unwrap()).collect();
    let split = stratified_split(&labels, 0.3, 11).unwrap();
    let write = |name: &str, idx: &[usize]| {
        let path = dir.join(name);
        let mut w = csv::Writer::from_path(&path).unwrap();
        w.write_record(["id", "text", "label"]).unwrap();
        for &i in idx {
            let e = &data[i];
            w.write_record([e.id.as_deref().unwrap(), &e.text, map(labels[i])])
                .unwrap();
        }
        w.flush().unwrap();
        path
    };
    (
        write("train.csv", &split.train),
        write("test.csv", &split.test),
    )
}

fn args(train: &Path, test: &Path) -> app::Args {
    let mut a = app::Args::from_args([
        "--train".to_string(),
        train.display().to_string(),
        "--test".to_string(),
        test.display().to_string(),
    ])
    .unwrap();
    a.folds = 5;
    a
}

/// `key=value` pairs of the last line; every value must be a number.
fn parse_line(line: &str) -> BTreeMap<String, f64> {
    line.split(' ')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("not k=v: {kv}"));
            (
                k.to_string(),
                v.parse().unwrap_or_else(|_| panic!("{k}={v}")),
            )
        })
        .collect()
}

#[test]
fn binary_run_on_bundled_split() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = write_split(dir.path(), binary_label);
    let mut a = args(&train, &test);
    a.positive = Some("actionable".into());
    a.model = Some(dir.path().join("model.json"));
    a.report = Some(dir.path().join("report.html"));
    let mut epochs = 0;
    let outcome = app::run(&a, |_, _| epochs += 1).unwrap();
    let app::Task::Binary(b) = &outcome.task else {
        panic!("expected a binary run")
    };

    // Progress: 5 folds and the final model, every epoch.
    assert_eq!(epochs, 6 * TrainConfig::binary("x").epochs);
    // Counts match the files.
    let n_test: usize = outcome.test_counts.values().sum();
    assert_eq!(b.test.confusion.total() as usize, n_test);
    assert_eq!(
        (b.test.confusion.tp + b.test.confusion.fn_) as usize,
        outcome.test_counts["actionable"]
    );
    // The figures are sane for this data (the model is far from chance).
    assert!(b.evaluation.roc_auc > 0.9, "auc {}", b.evaluation.roc_auc);
    assert!(b.evaluation.roc_auc <= 1.0);
    let (p, r) = (b.test.precision.unwrap(), b.test.recall.unwrap());
    assert!(p > 0.5 && r > 0.7, "precision {p} recall {r}");
    assert!(b.test.threshold > 0.0 && b.test.threshold < 1.0);
    assert_eq!(
        b.evaluation.threshold, b.test,
        "the report marks the CV threshold"
    );
    assert!(outcome.train_s > 0.0 && outcome.cv_s > 0.0);
    assert!(outcome.predict_us > 0.0);

    // The threshold is the cheapest on out-of-fold scores of the TRAINING
    // file, recomputed here independently; the test file played no part.
    let train_data = LoadOptions::new("text")
        .label("label")
        .load_path(&train)
        .unwrap();
    let config = TrainConfig::binary("actionable");
    let oof = out_of_fold_scores(&train_data.examples, &config, 5, 0, |_, _| {}).unwrap();
    let truth: Vec<bool> = train_data
        .examples
        .iter()
        .map(|e| e.label.as_deref() == Some("actionable"))
        .collect();
    let expected = choose_threshold_by_cost(&oof, &truth, Costs::default()).unwrap();
    assert_eq!(b.cv, expected);
    assert_eq!(b.test.threshold, expected.threshold);

    // The saved model reloads with its policy and scores identically.
    let saved = LocalModel::load(a.model.as_ref().unwrap()).unwrap();
    assert_eq!(
        saved.policy(),
        Some(&Policy::binary(expected.threshold, "actionable"))
    );
    let test_data = LoadOptions::new("text")
        .label("label")
        .load_path(&test)
        .unwrap();
    for e in &test_data.examples {
        assert_eq!(
            saved.positive_probability(e),
            outcome.model.positive_probability(e)
        );
    }
    let eval = saved.evaluation.as_ref().unwrap();
    assert_eq!(eval["test"]["roc_auc"].as_f64(), Some(b.evaluation.roc_auc));
    assert_eq!(
        eval["cross_validation"]["threshold"].as_f64(),
        Some(expected.threshold)
    );

    // The report is one self-contained HTML file with the plots.
    let html = std::fs::read_to_string(a.report.as_ref().unwrap()).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.matches("<svg").count() >= 3);
    assert!(!html.contains("<script"));

    // The printed figures and the last line agree with the outcome.
    let text = app::render(&a, &outcome);
    assert!(text.contains(&format!("test ROC AUC       {:.4}", b.evaluation.roc_auc)));
    assert!(text.contains("out-of-fold scores of the training data"));
    let last = app::summary_line(&outcome);
    let line = parse_line(&last);
    assert_eq!(
        line.keys().collect::<Vec<_>>(),
        [
            "auc",
            "precision",
            "predict_us",
            "recall",
            "threshold",
            "train_s"
        ]
    );
    assert!((line["auc"] - b.evaluation.roc_auc).abs() < 5e-5);
    assert!((line["threshold"] - expected.threshold).abs() < 5e-5);
    assert!((line["precision"] - p).abs() < 5e-5);
    assert!((line["recall"] - r).abs() < 5e-5);
    let key_order: Vec<&str> = last
        .split(' ')
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    assert_eq!(
        key_order,
        [
            "auc",
            "threshold",
            "precision",
            "recall",
            "train_s",
            "predict_us"
        ]
    );
}

#[test]
fn multiclass_run_on_bundled_split_and_jsonl_input() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = write_split(dir.path(), |l| l);
    // The test file as JSON lines with a nested label, to use the other
    // loader and a dotted column path.
    let test_jsonl = dir.path().join("test.jsonl");
    let test_rows = LoadOptions::new("text")
        .label("label")
        .load_path(&test)
        .unwrap();
    let lines: Vec<String> = test_rows
        .examples
        .iter()
        .map(|e| serde_json::json!({"text": e.text, "meta": {"label": e.label}}).to_string())
        .collect();
    std::fs::write(&test_jsonl, lines.join("\n") + "\n").unwrap();
    let train_jsonl = dir.path().join("train.jsonl");
    let train_rows = LoadOptions::new("text")
        .label("label")
        .load_path(&train)
        .unwrap();
    let lines: Vec<String> = train_rows
        .examples
        .iter()
        .map(|e| serde_json::json!({"text": e.text, "meta": {"label": e.label}}).to_string())
        .collect();
    std::fs::write(&train_jsonl, lines.join("\n") + "\n").unwrap();

    let mut a = args(&train_jsonl, &test_jsonl);
    a.label_column = "meta.label".into();
    a.report = Some(dir.path().join("multi.html"));
    let outcome = app::run(&a, |_, _| {}).unwrap();
    let app::Task::Multi(m) = &outcome.task else {
        panic!("five labels and no --positive: expected multinomial")
    };
    let e = &m.evaluation;
    assert_eq!(e.labels.len(), 5);
    assert_eq!(e.n as usize, test_rows.len());
    // Far above always answering "none" (the majority, about 78%).
    let majority = outcome.test_counts["none"] as f64 / e.n as f64;
    assert!(
        e.accuracy > majority + 0.05,
        "accuracy {} vs majority {majority}",
        e.accuracy
    );
    assert!(
        e.macro_f1 > 0.5 && e.macro_f1 <= 1.0,
        "macro-F1 {}",
        e.macro_f1
    );
    let line = parse_line(&app::summary_line(&outcome));
    assert!((line["accuracy"] - e.accuracy).abs() < 5e-5);
    assert!((line["macro_f1"] - e.macro_f1).abs() < 5e-5);
    assert!(app::summary_line(&outcome).starts_with("accuracy="));
    let html = std::fs::read_to_string(a.report.as_ref().unwrap()).unwrap();
    assert!(html.contains("technical_question"));
}

#[test]
fn two_labels_without_positive_choose_the_rarer() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = write_split(dir.path(), binary_label);
    let mut a = args(&train, &test);
    a.folds = 2;
    let outcome = app::run(&a, |_, _| {}).unwrap();
    let app::Task::Binary(b) = &outcome.task else {
        panic!("two labels: expected binary")
    };
    assert_eq!(
        (b.positive.as_str(), b.negative.as_str()),
        ("actionable", "none")
    );
    assert!(b.positive_inferred);
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = write_split(dir.path(), binary_label);

    // A file that does not exist.
    let missing = dir.path().join("nope.csv");
    let err = app::run(&args(&missing, &test), |_, _| {}).unwrap_err();
    assert!(
        matches!(
            &err,
            app::AppError::Load {
                which: "training",
                source: DatasetError::Open { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("nope.csv"), "{err}");

    // A column that is not there: the message names it and the line.
    let mut a = args(&train, &test);
    a.text_column = "body".into();
    let err = app::run(&a, |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("`body`") && err.contains("line 1"), "{err}");
    assert!(err.contains("training data"), "{err}");

    // A multi-class test label that training never saw.
    let odd_train = dir.path().join("odd_train.csv");
    std::fs::write(
        &odd_train,
        "text,label\nsite down,problem\nthanks,none\nhow do I,question\n",
    )
    .unwrap();
    let odd_test = dir.path().join("odd_test.csv");
    std::fs::write(
        &odd_test,
        "text,label\nsite down,problem\nrefund please,billing\n",
    )
    .unwrap();
    let err = app::run(&args(&odd_train, &odd_test), |_, _| {}).unwrap_err();
    assert!(
        matches!(&err, app::AppError::UnknownTestLabel { line: 3, label, .. } if label == "billing"),
        "{err}"
    );

    // A positive label that is not in the training data.
    let mut a = args(&train, &test);
    a.positive = Some("complaint".into());
    let err = app::run(&a, |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("complaint"), "{err}");

    // An unknown extension.
    let txt = dir.path().join("train.txt");
    std::fs::write(&txt, "x").unwrap();
    let err = app::run(&args(&txt, &test), |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains(".csv"), "{err}");
}

#[test]
fn arguments_are_parsed_and_checked() {
    let parse = |v: &[&str]| app::Args::from_args(v.iter().map(|s| s.to_string()));
    let a = parse(&[
        "--train",
        "a.csv",
        "--test=b.jsonl",
        "--positive",
        "complaint",
        "--fn-cost",
        "5",
        "--fp-cost",
        "0.5",
        "--model",
        "m.json",
        "--report",
        "r.html",
        "--text-column",
        "body",
        "--label-column",
        "y",
        "--folds",
        "3",
        "--seed",
        "9",
    ])
    .unwrap();
    assert_eq!(a.train, PathBuf::from("a.csv"));
    assert_eq!(a.test, PathBuf::from("b.jsonl"));
    assert_eq!(a.positive.as_deref(), Some("complaint"));
    assert_eq!((a.fn_cost, a.fp_cost, a.folds, a.seed), (5.0, 0.5, 3, 9));
    assert_eq!(
        (a.text_column.as_str(), a.label_column.as_str()),
        ("body", "y")
    );
    assert_eq!(a.model, Some(PathBuf::from("m.json")));
    assert_eq!(a.report, Some(PathBuf::from("r.html")));

    let d = parse(&["--train", "a.csv", "--test", "b.csv"]).unwrap();
    assert_eq!((d.fn_cost, d.fp_cost, d.folds), (10.0, 1.0, 5));
    assert_eq!(
        (d.text_column.as_str(), d.label_column.as_str()),
        ("text", "label")
    );

    // Mistakes are clap's errors: the kind, and a message naming the flag.
    use clap::error::ErrorKind;
    let refused = |v: &[&str], kind: ErrorKind, text: &str| {
        let err = parse(v).expect_err("refused");
        let shown = err.to_string();
        assert_eq!(err.kind(), kind, "{shown}");
        assert!(shown.contains(text), "{text:?} not in {shown}");
    };
    refused(
        &["--test", "b.csv"],
        ErrorKind::MissingRequiredArgument,
        "--train <FILE>",
    );
    refused(
        &["--train", "a.csv"],
        ErrorKind::MissingRequiredArgument,
        "--test <FILE>",
    );
    refused(&["--train"], ErrorKind::InvalidValue, "--train <FILE>");
    refused(
        &["--train", "a", "--test", "b", "--fn-cost", "-1"],
        ErrorKind::ValueValidation,
        "expected a number >= 0",
    );
    refused(
        &["--train", "a", "--test", "b", "--folds", "1"],
        ErrorKind::ValueValidation,
        "--folds <K>",
    );
    refused(
        &["--train", "a", "--test", "b", "--epochs", "3"],
        ErrorKind::UnknownArgument,
        "'--epochs'",
    );
    refused(&["-h"], ErrorKind::DisplayHelp, "--fn-cost <X>");
}
