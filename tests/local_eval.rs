//! Dataset tools, evaluation and the HTML report of the local classifier.

use std::collections::HashMap;

use streamsift::local::{
    DatasetError, DedupOptions, Example, LoadOptions, Mode, RETWEET_FLAG, RemovalReason, dedup,
    dedup_examples, labels_of, normalize_text, read_labels_csv, stratified_k_fold,
    stratified_split,
};

const TWEETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/tweets.jsonl");
const LABELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/labels.csv");

// ------------------------------------------------------------ loading

#[test]
fn csv_missing_label_column_names_column_and_line_and_lists_found() {
    let csv = "id,text\n1,hello\n";
    let err = LoadOptions::new("text")
        .label("label")
        .load_csv(csv.as_bytes())
        .unwrap_err();
    match &err {
        DatasetError::MissingColumn {
            line,
            column,
            found,
        } => {
            assert_eq!(*line, 1);
            assert_eq!(column, "label");
            assert_eq!(found, &["id".to_string(), "text".to_string()]);
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("line 1") && msg.contains("`label`") && msg.contains("id, text"),
        "{msg}"
    );
}

#[test]
fn csv_short_row_is_a_missing_column_on_its_line() {
    let csv = "id,text,label\n1,fine,a\n2,no label here\n";
    let err = LoadOptions::new("text")
        .label("label")
        .load_csv(csv.as_bytes())
        .unwrap_err();
    assert!(
        matches!(&err, DatasetError::MissingColumn { line: 3, column, .. } if column == "label"),
        "{err:?}"
    );
}

#[test]
fn csv_empty_label_is_missing_label_with_line() {
    let csv = "text,label\nfine,a\n\"multi\nline\",b\nno label,\n";
    let err = LoadOptions::new("text")
        .label("label")
        .load_csv(csv.as_bytes())
        .unwrap_err();
    // the quoted newline makes the third record start on line 3 and the
    // fourth on line 5
    assert!(
        matches!(err, DatasetError::MissingLabel { line: 5, .. }),
        "{err:?}"
    );
}

#[test]
fn csv_invalid_utf8_names_line_column_and_byte() {
    let mut csv = b"id,text\n1,ok\n2,caf".to_vec();
    csv.push(0xE9);
    csv.extend_from_slice(b" au lait\n");
    let err = LoadOptions::new("text").load_csv(&csv[..]).unwrap_err();
    match err {
        DatasetError::InvalidUtf8 { line, byte, column } => {
            assert_eq!((line, byte, column.as_deref()), (3, 3, Some("text")));
        }
        other => panic!("expected InvalidUtf8, got {other:?}"),
    }
}

#[test]
fn json_lines_errors_are_typed_with_line_and_position() {
    let opts = LoadOptions::new("text").label("label");
    type Check = fn(&DatasetError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (
            b"{\"text\":\"a\",\"label\":\"x\"}\n{\"text\": oops}\n".to_vec(),
            |e| {
                matches!(
                    e,
                    DatasetError::Json {
                        line: 2,
                        column: 10,
                        ..
                    }
                )
            },
        ),
        (b"{\"text\":\"a\",\"label\":\"x\"}\n[1,2]\n".to_vec(), |e| {
            matches!(
                e,
                DatasetError::NotAnObject {
                    line: 2,
                    found: "an array"
                }
            )
        }),
        (
            b"{\"text\":\"a\",\"label\":\"x\"}\n\n{\"text\":\"b\",\"label\":\"x\"}\n".to_vec(),
            |e| matches!(e, DatasetError::EmptyLine { line: 2 }),
        ),
        (
            b"{\"label\":\"x\",\"txt\":\"a\"}\n".to_vec(),
            |e| matches!(e, DatasetError::MissingColumn { line: 1, column, found } if column == "text" && found == &["label", "txt"]),
        ),
        (b"{\"text\":12345,\"label\":\"x\"}\n".to_vec(), |e| {
            matches!(
                e,
                DatasetError::WrongType {
                    line: 1,
                    expected: "a string",
                    ..
                }
            )
        }),
        (b"{\"text\":\"a\",\"label\":null}\n".to_vec(), |e| {
            matches!(e, DatasetError::MissingLabel { line: 1, .. })
        }),
        (b"{\"text\":\"caf\xE9\",\"label\":\"x\"}\n".to_vec(), |e| {
            matches!(
                e,
                DatasetError::InvalidUtf8 {
                    line: 1,
                    byte: 12,
                    column: None
                }
            )
        }),
    ];
    for (i, (input, check)) in cases.iter().enumerate() {
        let err = opts.load_json_lines(&input[..]).unwrap_err();
        assert!(check(&err), "case {i}: unexpected {err:?}");
        assert!(err.to_string().contains("line"), "case {i}: {err}");
    }
}

#[test]
fn overlong_lines_are_rejected_and_the_next_line_still_reads() {
    let long = "x".repeat(5000);
    let input = format!("{{\"text\":\"{long}\"}}\n{{\"text\":\"short\"}}\n");
    let opts = LoadOptions::new("text").max_line_bytes(1000);
    let err = opts.load_json_lines(input.as_bytes()).unwrap_err();
    assert!(
        matches!(err, DatasetError::LineTooLong { line: 1, limit: 1000, bytes } if bytes > 1000),
        "{err:?}"
    );
    let data = opts
        .mode(Mode::Lenient)
        .load_json_lines(input.as_bytes())
        .unwrap();
    assert_eq!(data.examples.len(), 1);
    assert_eq!(data.examples[0].text, "short");
    assert_eq!(data.lines, vec![2]);
    assert_eq!(data.skipped.len(), 1);
}

#[test]
fn empty_and_100_kb_texts_load_intact_and_a_bom_is_skipped() {
    let big = "é".repeat(50 * 1024); // 100 KiB of UTF-8
    let input = format!("\u{feff}{{\"text\":\"\"}}\n{{\"text\":\"{big}\"}}\n");
    let data = LoadOptions::new("text")
        .load_json_lines(input.as_bytes())
        .unwrap();
    assert_eq!(data.examples[0].text, "");
    assert_eq!(data.examples[1].text, big);
    let csv = format!("\u{feff}text,label\n\"\",a\n{big},b\n");
    let data = LoadOptions::new("text")
        .label("label")
        .load_csv(csv.as_bytes())
        .unwrap();
    assert_eq!(data.examples[0].text, "");
    assert_eq!(data.examples[1].text.len(), 100 * 1024);
}

#[test]
fn json_paths_flags_and_numbers() {
    let input = concat!(
        r#"{"text":"a","user":{"followers_count":48},"in_reply_to_status_id_str":"12","x":"false"}"#,
        "\n",
        r#"{"text":"b","user":{"followers_count":"7"},"in_reply_to_status_id_str":null,"x":"yes"}"#,
        "\n",
        r#"{"text":"c","in_reply_to_status_id_str":""}"#,
        "\n",
        r#"{"text":"d","user":{"followers_count":"many"}}"#,
        "\n",
    );
    let opts = LoadOptions::new("text")
        .flag("is_reply", "in_reply_to_status_id_str")
        .flag("x", "x")
        .number("followers", "user.followers_count")
        .mode(Mode::Lenient);
    let data = opts.load_json_lines(input.as_bytes()).unwrap();
    let ex = &data.examples;
    assert_eq!(ex.len(), 3);
    assert_eq!((ex[0].flags["is_reply"], ex[0].flags["x"]), (true, false));
    assert_eq!((ex[1].flags["is_reply"], ex[1].flags["x"]), (false, true));
    assert!(!ex[2].flags["is_reply"]);
    assert_eq!(ex[0].numbers.get("followers"), Some(&48.0));
    assert_eq!(ex[1].numbers.get("followers"), Some(&7.0));
    assert_eq!(ex[2].numbers.get("followers"), None, "absent, not zero");
    assert!(matches!(
        &data.skipped[..],
        [(4, DatasetError::WrongType { line: 4, .. })]
    ));
}

#[test]
fn bundled_tweets_load_leniently_and_every_bad_line_is_accounted_for() {
    let strict = LoadOptions::tweets().load_path(TWEETS).unwrap_err();
    assert!(
        matches!(strict, DatasetError::Json { line: 90, .. }),
        "{strict:?}"
    );

    let data = LoadOptions::tweets()
        .mode(Mode::Lenient)
        .load_path(TWEETS)
        .unwrap();
    let skipped: Vec<usize> = data.skipped.iter().map(|(l, _)| *l).collect();
    assert_eq!(skipped, vec![90, 180, 489, 692, 696, 703, 738, 848]);
    assert!(matches!(
        data.skipped[1].1,
        DatasetError::InvalidUtf8 { line: 180, .. }
    ));
    assert_eq!(data.examples.len() + data.skipped.len(), 1069);

    let labels = read_labels_csv(std::fs::File::open(LABELS).unwrap(), "id_str", "label").unwrap();
    let err = data.join_labels(&labels, Mode::Strict).unwrap_err();
    assert!(
        matches!(err, DatasetError::MissingLabel { line: 875, .. }),
        "{err:?}"
    );

    let data = LoadOptions::tweets()
        .mode(Mode::Lenient)
        .load_path(TWEETS)
        .unwrap()
        .join_labels(&labels, Mode::Lenient)
        .unwrap();
    assert_eq!(data.skipped.len(), 9, "the nine malformed lines");
    assert_eq!(data.examples.len(), 1060);
    assert!(data.examples.iter().all(|e| e.label.is_some()));
    let retweets = data
        .examples
        .iter()
        .filter(|e| e.flags[RETWEET_FLAG])
        .count();
    assert_eq!(retweets, 52);
    assert!(data.examples.iter().any(|e| e.flags["is_reply"]));
    assert!(
        data.examples
            .iter()
            .all(|e| e.numbers.contains_key("followers"))
    );
}

#[test]
fn labels_file_with_conflicting_labels_is_an_error() {
    let csv = "id_str,label\n1,a\n2,b\n1,a\n1,c\n";
    let err = read_labels_csv(csv.as_bytes(), "id_str", "label").unwrap_err();
    assert!(
        matches!(&err, DatasetError::ConflictingLabels { line: 5, id, .. } if id == "1"),
        "{err:?}"
    );
}

#[test]
fn join_labels_keeps_existing_labels_and_reports_missing_ids() {
    let data = LoadOptions::new("text")
        .load_csv("text\nhello\n".as_bytes())
        .unwrap();
    let err = data.join_labels(&HashMap::new(), Mode::Strict).unwrap_err();
    assert!(
        matches!(err, DatasetError::MissingId { line: 2 }),
        "{err:?}"
    );
}

// ------------------------------------------------------------ dedup

#[test]
fn normalisation_folds_width_case_urls_mentions_and_punctuation() {
    assert_eq!(
        normalize_text("@Nimbus  Is the ＡＰＩ down??? https://t.co/abc"),
        "is the api down"
    );
    assert_eq!(normalize_text("is the API down"), "is the api down");
    assert_eq!(normalize_text("@only https://t.co/x"), "");
    // emoji are kept, so these differ
    assert_ne!(normalize_text("great 🙂"), normalize_text("great 😡"));
}

#[test]
fn dedup_removes_retweets_exact_and_near_duplicates_and_reports_ids() {
    let mut rt = Example::new("we are hiring").labeled("none");
    rt.id = Some("r".into());
    rt.flags.insert(RETWEET_FLAG.into(), true);
    let with_id = |id: &str, text: &str, label: &str| Example {
        id: Some(id.into()),
        ..Example::new(text).labeled(label)
    };
    let examples = vec![
        with_id("1", "Is the API down?", "problem"),
        with_id("2", "RT @nimbus: Is the API down?", "problem"),
        rt,
        with_id("3", "Is the API down?", "problem"),
        with_id("4", "@nimbus is the api DOWN https://t.co/x", "none"),
        with_id("5", "@a", "none"),
        with_id("6", "@b", "none"),
        with_id("7", "something else", "none"),
    ];
    let (kept, report) = dedup_examples(examples, &DedupOptions::default());
    let kept_ids: Vec<_> = kept.iter().map(|e| e.id.clone().unwrap()).collect();
    // "@a" and "@b" normalise to nothing and are not near duplicates
    assert_eq!(kept_ids, ["1", "5", "6", "7"]);
    assert_eq!(report.input, 8);
    assert_eq!(report.kept, 4);
    assert_eq!(report.ids(RemovalReason::Retweet), ["2", "r"]);
    assert_eq!(report.ids(RemovalReason::ExactDuplicate), ["3"]);
    assert_eq!(report.ids(RemovalReason::NearDuplicate), ["4"]);
    assert!(
        report
            .removed
            .iter()
            .filter(|r| r.reason != RemovalReason::Retweet)
            .all(|r| r.duplicate_of == Some(0))
    );
    // ids 1 and 3 say "problem", id 4 says "none": the majority wins
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.conflicts[0].chosen, "problem");
    assert_eq!(kept[0].label.as_deref(), Some("problem"));
}

#[test]
fn conflicting_duplicate_labels_take_the_majority_and_are_reported() {
    let examples = vec![
        Example::new("refund please").labeled("billing"),
        Example::new("Refund, please!").labeled("none"),
        Example::new("refund please").labeled("none"),
        Example::new("other").labeled("x"),
    ];
    let (kept, report) = dedup_examples(examples, &DedupOptions::default());
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].label.as_deref(), Some("none"), "2 votes to 1");
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.conflicts[0].chosen, "none");
    assert_eq!(report.conflicts[0].votes["billing"], 1);
    assert_eq!(report.conflicts[0].votes["none"], 2);

    // a tie goes to the label seen first
    let tie = vec![
        Example::new("refund please").labeled("billing"),
        Example::new("refund please").labeled("none"),
    ];
    let (kept, report) = dedup_examples(tie, &DedupOptions::default());
    assert_eq!(kept[0].label.as_deref(), Some("billing"));
    assert_eq!(report.conflicts[0].chosen, "billing");
}

#[test]
fn dedup_options_switch_each_rule_off() {
    let examples = vec![
        Example::new("RT @x: hi"),
        Example::new("Hello there"),
        Example::new("hello there!"),
        Example::new("Hello there"),
    ];
    let only_exact = DedupOptions {
        retweets: false,
        exact: true,
        near: false,
    };
    let (keep, _) = dedup(&examples, &only_exact);
    assert_eq!(keep.iter().map(|k| k.0).collect::<Vec<_>>(), [0, 1, 2]);
    let none = DedupOptions {
        retweets: false,
        exact: false,
        near: false,
    };
    assert_eq!(dedup(&examples, &none).0.len(), 4);
}

#[test]
fn dedup_on_the_bundled_data_removes_the_retweets_and_duplicates() {
    let labels = read_labels_csv(std::fs::File::open(LABELS).unwrap(), "id_str", "label").unwrap();
    let data = LoadOptions::tweets()
        .mode(Mode::Lenient)
        .load_path(TWEETS)
        .unwrap()
        .join_labels(&labels, Mode::Lenient)
        .unwrap();
    let n = data.len();
    let (deduped, report) = data.dedup(&DedupOptions::default());
    assert_eq!(report.count(RemovalReason::Retweet), 52);
    assert!(report.count(RemovalReason::ExactDuplicate) > 0);
    assert_eq!(deduped.len(), report.kept);
    assert_eq!(report.kept + report.removed.len(), n);
    assert_eq!(deduped.lines.len(), deduped.examples.len());
    assert!(deduped.examples.iter().all(|e| !e.flags[RETWEET_FLAG]));
    let mut seen = std::collections::HashSet::new();
    for e in &deduped.examples {
        let key = normalize_text(&e.text);
        assert!(
            key.is_empty() || seen.insert(key),
            "duplicate left: {}",
            e.text
        );
    }
}

// ------------------------------------------------------------ splits

#[test]
fn stratified_split_keeps_class_shares_and_is_deterministic() {
    let labels: Vec<&str> = (0..100)
        .map(|i| if i % 10 == 0 { "pos" } else { "neg" })
        .collect();
    let a = stratified_split(&labels, 0.3, 42).unwrap();
    let b = stratified_split(&labels, 0.3, 42).unwrap();
    let c = stratified_split(&labels, 0.3, 43).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.test.len(), 30);
    assert_eq!(a.test.iter().filter(|&&i| labels[i] == "pos").count(), 3);
    let mut all: Vec<usize> = a.train.iter().chain(&a.test).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    assert!(stratified_split(&labels, 1.0, 1).is_err());
    assert!(stratified_split(&labels, f64::NAN, 1).is_err());
}

#[test]
fn split_of_examples_by_label_and_apply() {
    let examples: Vec<Example> = (0..20)
        .map(|i| Example::new(format!("t{i}")).labeled(if i < 4 { "a" } else { "b" }))
        .collect();
    let split = stratified_split(&labels_of(&examples), 0.25, 9).unwrap();
    let (train, test) = split.apply(&examples);
    assert_eq!((train.len(), test.len()), (15, 5));
    assert_eq!(
        test.iter()
            .filter(|e| e.label.as_deref() == Some("a"))
            .count(),
        1
    );
}

#[test]
fn k_fold_covers_every_index_once_with_balanced_strata() {
    let labels: Vec<u8> = (0..53)
        .map(|i| (i % 3 == 0) as u8 + (i % 7 == 0) as u8)
        .collect();
    let folds = stratified_k_fold(&labels, 5, 3).unwrap();
    assert_eq!(folds, stratified_k_fold(&labels, 5, 3).unwrap());
    let mut count = vec![0; labels.len()];
    for f in &folds {
        assert_eq!(f.train.len() + f.test.len(), labels.len());
        for &i in &f.test {
            count[i] += 1;
            assert!(!f.train.contains(&i));
        }
        let sizes: Vec<usize> = folds.iter().map(|f| f.test.len()).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
    }
    assert!(count.iter().all(|&c| c == 1));
    for class in 0..3u8 {
        let per_fold: Vec<usize> = folds
            .iter()
            .map(|f| f.test.iter().filter(|&&i| labels[i] == class).count())
            .collect();
        assert!(
            per_fold.iter().max().unwrap() - per_fold.iter().min().unwrap() <= 1,
            "{per_fold:?}"
        );
    }
    assert!(stratified_k_fold(&labels, 1, 0).is_err());
    assert!(stratified_k_fold(&labels[..3], 4, 0).is_err());
}

// ------------------------------------------------------------ evaluation

mod eval {
    use proptest::prelude::*;
    use streamsift::local::{
        BinaryEvalOptions, Confusion, Costs, EvalError, ThresholdRule, average_precision,
        choose_threshold_by_cost, evaluate_binary, evaluate_multiclass, evaluate_multiclass_flat,
        log_loss, pr_curve, reliability, roc_auc, roc_curve, score_histogram, threshold_for_recall,
    };
    use streamsift::{Action, Policy, Prediction};

    const F: bool = false;
    const T: bool = true;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// AUC by counting pairs, ties one half: the definition.
    fn pairwise_auc(scores: &[f64], truth: &[bool]) -> f64 {
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for (i, &si) in scores.iter().enumerate() {
            for (j, &sj) in scores.iter().enumerate() {
                if truth[i] && !truth[j] {
                    pairs += 1.0;
                    wins += if si > sj {
                        1.0
                    } else if si == sj {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        wins / pairs
    }

    #[test]
    fn auc_hand_computed_cases() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[F, F, T, T]).unwrap(),
            0.75
        );
        // perfect and reversed
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[F, F, T, T]).unwrap(), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[F, F, T, T]).unwrap(), 0.0);
        // all tied: every pair counts one half
        assert_eq!(roc_auc(&[0.5; 5], &[F, T, F, T, T]).unwrap(), 0.5);
        // ties across classes: pos {0.5, 0.7}, neg {0.5, 0.3}
        // pairs: 0.5~0.5 -> ½, 0.5>0.3, 0.7>0.5, 0.7>0.3 -> 3.5 / 4
        assert_eq!(
            roc_auc(&[0.5, 0.7, 0.5, 0.3], &[T, T, F, F]).unwrap(),
            0.875
        );
        // scores need not be probabilities
        assert_eq!(roc_auc(&[-3.0, 12.0, 7.5], &[F, T, F]).unwrap(), 1.0);
    }

    #[test]
    fn roc_curve_hand_computed() {
        let roc = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[F, F, T, T]).unwrap();
        let pts: Vec<(f64, f64, f64)> = roc.iter().map(|p| (p.threshold, p.fpr, p.tpr)).collect();
        assert!(pts[0].0 > 0.8 && pts[0].1 == 0.0 && pts[0].2 == 0.0);
        assert_eq!(
            &pts[1..],
            &[
                (0.8, 0.0, 0.5),
                (0.4, 0.5, 0.5),
                (0.35, 0.5, 1.0),
                (0.1, 1.0, 1.0)
            ]
        );
    }

    #[test]
    fn pr_curve_and_average_precision_hand_computed() {
        let pr = pr_curve(&[0.1, 0.4, 0.35, 0.8], &[F, F, T, T]).unwrap();
        let pts: Vec<(f64, f64)> = pr.iter().map(|p| (p.precision, p.recall)).collect();
        assert_eq!(pts, [(1.0, 0.5), (0.5, 0.5), (2.0 / 3.0, 1.0), (0.5, 1.0)]);
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[F, F, T, T]).unwrap();
        assert!(close(ap, 0.5 + 0.5 * 2.0 / 3.0), "{ap}");
        // a tie between a positive and a negative is one step, precision ½
        let ap = average_precision(&[0.5, 0.5], &[T, F]).unwrap();
        assert_eq!(ap, 0.5);
    }

    proptest! {
        #[test]
        fn auc_equals_the_pairwise_definition_with_ties(
            data in prop::collection::vec((0u8..6, any::<bool>()), 2..60)
        ) {
            let scores: Vec<f64> = data.iter().map(|(s, _)| f64::from(*s) / 5.0).collect();
            let truth: Vec<bool> = data.iter().map(|(_, t)| *t).collect();
            let both = truth.iter().any(|&t| t) && truth.iter().any(|&t| !t);
            match roc_auc(&scores, &truth) {
                Ok(auc) => {
                    prop_assert!(both);
                    prop_assert!((auc - pairwise_auc(&scores, &truth)).abs() < 1e-12);
                }
                Err(e) => {
                    prop_assert!(!both);
                    let is_one_class = matches!(e, EvalError::OneClass { .. });
                    prop_assert!(is_one_class);
                }
            }
        }

        #[test]
        fn cost_choice_is_the_minimum_over_all_score_thresholds(
            data in prop::collection::vec((0u8..8, any::<bool>()), 1..50),
            cfn in 0.5f64..20.0,
            cfp in 0.5f64..20.0,
        ) {
            let scores: Vec<f64> = data.iter().map(|(s, _)| f64::from(*s) / 7.0).collect();
            let truth: Vec<bool> = data.iter().map(|(_, t)| *t).collect();
            let costs = Costs::new(cfn, cfp);
            let choice = choose_threshold_by_cost(&scores, &truth, costs).unwrap();
            let direct = Confusion::at(&scores, &truth, choice.threshold).unwrap();
            prop_assert_eq!(direct, choice.confusion);
            let chosen = direct.total_cost(&costs);
            // no threshold (any score, or above all) does better
            let mut candidates = scores.clone();
            candidates.push(2.0);
            for &t in &candidates {
                let c = Confusion::at(&scores, &truth, t).unwrap().total_cost(&costs);
                prop_assert!(chosen <= c + 1e-9);
                // among equal costs, the chosen threshold is the highest
                if (c - chosen).abs() < 1e-9 * c.max(1.0) && t <= 1.0 {
                    prop_assert!(t <= choice.threshold);
                }
            }
            prop_assert!((choice.expected_cost - chosen / scores.len() as f64).abs() < 1e-12);
        }
    }

    #[test]
    fn cost_threshold_hand_computed() {
        // positives at 0.9, 0.6, 0.3; negatives at 0.8, 0.5, 0.2, 0.1
        let scores = [0.9, 0.8, 0.6, 0.5, 0.3, 0.2, 0.1];
        let truth = [T, F, T, F, T, F, F];
        // candidate (threshold: fn, fp) -> cost at 10:1
        //   above: 3,0 -> 30   0.9: 2,0 -> 20   0.8: 2,1 -> 21   0.6: 1,1 -> 11
        //   0.5: 1,2 -> 12     0.3: 0,2 -> 2    0.2: 0,3 -> 3    0.1: 0,4 -> 4
        let c = choose_threshold_by_cost(&scores, &truth, Costs::default()).unwrap();
        assert_eq!(c.threshold, 0.3);
        assert_eq!(c.rule, ThresholdRule::MinExpectedCost);
        assert_eq!(
            (
                c.confusion.tp,
                c.confusion.fp,
                c.confusion.tn,
                c.confusion.fn_
            ),
            (3, 2, 2, 0)
        );
        assert!(close(c.expected_cost, 2.0 / 7.0));
        assert_eq!(c.precision, Some(0.6));
        assert_eq!(c.recall, Some(1.0));
        // at 1:1 -> above 3, 0.9 2, 0.8 3, 0.6 2, 0.5 3, 0.3 2, 0.2 3, 0.1 4:
        // a three-way tie at cost 2, broken towards the highest threshold
        let c = choose_threshold_by_cost(&scores, &truth, Costs::new(1.0, 1.0)).unwrap();
        assert_eq!(c.threshold, 0.9);
        assert!(close(c.expected_cost, 2.0 / 7.0));
        // false positives free: 0.3, 0.2 and 0.1 all cost 0 (no positive
        // missed); the highest of them wins
        let c = choose_threshold_by_cost(&scores, &truth, Costs::new(1.0, 0.0)).unwrap();
        assert_eq!(c.threshold, 0.3);
        assert_eq!(c.expected_cost, 0.0);
    }

    #[test]
    fn cost_choice_with_one_class_and_bad_costs() {
        // all negatives: notify nothing, the threshold is above every score
        let c = choose_threshold_by_cost(&[0.2, 0.9], &[F, F], Costs::default()).unwrap();
        assert!(c.threshold > 0.9);
        assert_eq!(c.confusion.fp, 0);
        assert_eq!(c.precision, None);
        assert_eq!(c.recall, None);
        for bad in [
            Costs::new(-1.0, 1.0),
            Costs::new(0.0, 0.0),
            Costs::new(f64::NAN, 1.0),
        ] {
            assert!(matches!(
                choose_threshold_by_cost(&[0.2], &[T], bad),
                Err(EvalError::InvalidCosts { .. })
            ));
        }
    }

    #[test]
    fn threshold_for_recall_is_the_highest_reaching_it() {
        let scores = [0.9, 0.8, 0.6, 0.5, 0.3, 0.2, 0.1];
        let truth = [T, F, T, F, T, F, F];
        let c = threshold_for_recall(&scores, &truth, 0.5, Costs::default()).unwrap();
        assert_eq!(c.threshold, 0.6);
        assert_eq!(c.recall, Some(2.0 / 3.0));
        assert_eq!(c.rule, ThresholdRule::MinRecall { target: 0.5 });
        let c = threshold_for_recall(&scores, &truth, 1.0, Costs::default()).unwrap();
        assert_eq!(c.threshold, 0.3);
        let c = threshold_for_recall(&scores, &truth, 0.0, Costs::default()).unwrap();
        assert!(c.threshold > 0.9 && c.confusion.tp == 0);
        assert!(threshold_for_recall(&scores, &truth, 1.5, Costs::default()).is_err());
        assert!(matches!(
            threshold_for_recall(&[0.3], &[F], 0.9, Costs::default()),
            Err(EvalError::OneClass { .. })
        ));
    }

    #[test]
    fn choice_becomes_a_policy_that_agrees_with_the_confusion() {
        let scores = [0.9, 0.8, 0.6, 0.5, 0.3, 0.2, 0.1];
        let truth = [T, F, T, F, T, F, F];
        let c = choose_threshold_by_cost(&scores, &truth, Costs::default()).unwrap();
        let policy = c.policy("support");
        assert_eq!(policy, Policy::binary(0.3, "support"));
        let notified = scores
            .iter()
            .filter(|&&s| {
                policy.decide(&Prediction::binary("yes", "no", s))
                    == Action::Notify("support".into())
            })
            .count() as u64;
        assert_eq!(notified, c.confusion.tp + c.confusion.fp);
        // survives a round trip through JSON, as in a model file
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"fn\":0"), "{json}");
        let back: streamsift::local::ThresholdChoice = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn degenerate_input_is_an_error_not_nan() {
        assert_eq!(roc_auc(&[], &[]), Err(EvalError::Empty));
        assert_eq!(
            roc_auc(&[0.1, 0.2], &[T]),
            Err(EvalError::LengthMismatch {
                scores: 2,
                truth: 1
            })
        );
        let err = roc_auc(&[0.1, 0.2], &[T, T]).unwrap_err();
        assert!(matches!(
            err,
            EvalError::OneClass {
                class: "positive",
                n: 2,
                ..
            }
        ));
        assert!(err.to_string().contains("undefined"), "{err}");
        assert!(matches!(
            roc_auc(&[0.1, f64::NAN], &[T, F]),
            Err(EvalError::NotFinite { index: 1, .. })
        ));
        assert!(matches!(
            log_loss(&[0.1, 1.5], &[T, F]),
            Err(EvalError::NotProbability { index: 1, .. })
        ));
        assert!(evaluate_binary(&[0.3, 0.4], &[F, F], &BinaryEvalOptions::default()).is_err());
        assert!(reliability(&[0.3], &[T], 0).is_err());
        // precision undefined when nothing is predicted positive
        let c = Confusion::at(&[0.1, 0.2], &[T, F], 0.5).unwrap();
        assert_eq!(
            (c.precision(), c.recall(), c.f1()),
            (None, Some(0.0), Some(0.0))
        );
    }

    #[test]
    fn log_loss_is_clamped_and_matches_hand_values() {
        let l = log_loss(&[0.8, 0.3], &[T, F]).unwrap();
        assert!(close(l, -(0.8f64.ln() + 0.7f64.ln()) / 2.0));
        let worst = log_loss(&[0.0], &[T]).unwrap();
        assert!(
            worst.is_finite() && (worst - 34.538776).abs() < 1e-5,
            "{worst}"
        );
    }

    #[test]
    fn reliability_and_histogram_count_every_example() {
        let scores = [0.05, 0.15, 0.15, 0.55, 0.95, 1.0];
        let truth = [F, F, T, T, T, T];
        let r = reliability(&scores, &truth, 5).unwrap();
        let counts: Vec<u64> = r.bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, [3, 0, 1, 0, 2]);
        assert_eq!(r.bins[1].mean_predicted, None);
        assert!(close(r.bins[0].mean_predicted.unwrap(), 0.35 / 3.0));
        assert_eq!(r.bins[0].observed_rate, Some(1.0 / 3.0));
        // ECE = 3/6·|0.11667−0.3333| + 1/6·|0.55−1| + 2/6·|0.975−1|
        let ece = 0.5 * (0.35 / 3.0 - 1.0 / 3.0f64).abs() + (0.45 / 6.0) + (0.025 / 3.0);
        assert!(
            close(r.expected_calibration_error, ece),
            "{}",
            r.expected_calibration_error
        );
        let h = score_histogram(&scores, &truth, 2).unwrap();
        assert_eq!(h.edges, [0.0, 0.5, 1.0]);
        assert_eq!(
            (h.negative.clone(), h.positive.clone()),
            (vec![2, 0], vec![1, 3])
        );
    }

    #[test]
    fn evaluate_binary_ties_the_figures_together_and_serialises() {
        let scores: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 / 1000.0)
            .collect();
        let truth: Vec<bool> = scores
            .iter()
            .enumerate()
            .map(|(i, s)| *s > 0.6 || i % 13 == 0)
            .collect();
        let opts = BinaryEvalOptions {
            max_curve_points: 50,
            ..BinaryEvalOptions::default()
        };
        let e = evaluate_binary(&scores, &truth, &opts).unwrap();
        assert_eq!(e.roc_auc, roc_auc(&scores, &truth).unwrap());
        assert_eq!(
            e.average_precision,
            average_precision(&scores, &truth).unwrap()
        );
        assert_eq!(e.positives + e.negatives, 1000);
        assert_eq!(e.roc.len(), 50);
        assert_eq!((e.roc[0].fpr, e.roc[0].tpr), (0.0, 0.0));
        assert_eq!((e.roc[49].fpr, e.roc[49].tpr), (1.0, 1.0));
        assert_eq!(
            e.threshold,
            choose_threshold_by_cost(&scores, &truth, Costs::default()).unwrap()
        );
        assert_eq!(e.at_half, Confusion::at(&scores, &truth, 0.5).unwrap());
        assert_eq!(e.histogram.positive.iter().sum::<u64>(), e.positives);
        // serde_json without its `float_roundtrip` feature may move a float
        // by one ulp on parsing, so compare with a tolerance
        let back: streamsift::local::BinaryEvaluation =
            serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert!((back.roc_auc - e.roc_auc).abs() < 1e-15);
        assert!((back.threshold.threshold - e.threshold.threshold).abs() < 1e-15);
        assert_eq!(back.threshold.confusion, e.threshold.confusion);
        assert_eq!(back.roc.len(), e.roc.len());
        assert_eq!(back.reliability.bins.len(), 10);
        assert_eq!(back.histogram, e.histogram);

        let by_recall = evaluate_binary(
            &scores,
            &truth,
            &BinaryEvalOptions {
                min_recall: Some(0.9),
                ..BinaryEvalOptions::default()
            },
        )
        .unwrap();
        assert!(by_recall.threshold.recall.unwrap() >= 0.9);
    }

    #[test]
    fn multiclass_hand_computed() {
        let labels = ["a", "b", "c"];
        let probs = vec![
            vec![0.6, 0.3, 0.1], // a -> a
            vec![0.2, 0.7, 0.1], // a -> b
            vec![0.1, 0.8, 0.1], // b -> b
            vec![0.4, 0.4, 0.2], // b -> a (tie goes to the lower index)
            vec![0.1, 0.2, 0.7], // c -> c
        ];
        let truth = [0, 0, 1, 1, 2];
        let e = evaluate_multiclass(&truth, &probs, &labels).unwrap();
        assert_eq!(
            e.confusion,
            vec![vec![1, 1, 0], vec![1, 1, 0], vec![0, 0, 1]]
        );
        assert_eq!(e.accuracy, 0.6);
        assert_eq!(e.per_class[0].precision, Some(0.5));
        assert_eq!(e.per_class[0].recall, Some(0.5));
        assert_eq!(e.per_class[2].f1, Some(1.0));
        assert!(close(e.macro_f1, (0.5 + 0.5 + 1.0) / 3.0));
        let ll = -(0.6f64.ln() + 0.2f64.ln() + 0.8f64.ln() + 0.4f64.ln() + 0.7f64.ln()) / 5.0;
        assert!(close(e.log_loss, ll));
        let flat: Vec<f64> = probs.concat();
        assert_eq!(evaluate_multiclass_flat(&truth, &flat, &labels).unwrap(), e);
    }

    #[test]
    fn multiclass_classes_never_seen_are_left_out_of_macro_f1() {
        let e = evaluate_multiclass(
            &[0, 1],
            &[[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]],
            &["a", "b", "c"],
        )
        .unwrap();
        assert_eq!(e.per_class[2].f1, None);
        assert_eq!(e.per_class[2].precision, None);
        assert_eq!(e.macro_f1, 1.0);
    }

    #[test]
    fn multiclass_bad_input() {
        let labels = ["a", "b"];
        assert!(matches!(
            evaluate_multiclass(&[0, 2], &[[0.5, 0.5], [0.5, 0.5]], &labels),
            Err(EvalError::ClassOutOfRange {
                index: 1,
                class: 2,
                n_classes: 2
            })
        ));
        assert!(matches!(
            evaluate_multiclass(&[0], &[vec![0.5, 0.3, 0.2]], &labels),
            Err(EvalError::RowLength {
                index: 0,
                found: 3,
                expected: 2
            })
        ));
        assert!(matches!(
            evaluate_multiclass(&[0], &[[f64::NAN, 0.5]], &labels),
            Err(EvalError::NotProbability { index: 0, .. })
        ));
        assert_eq!(
            evaluate_multiclass::<[f64; 2], &str>(&[], &[], &labels),
            Err(EvalError::Empty)
        );
        assert!(evaluate_multiclass_flat(&[0, 1], &[0.5, 0.5, 0.5], &labels).is_err());
    }
}

// ------------------------------------------------------------ report

mod report {
    use streamsift::local::{
        BinaryEvalOptions, ReportInput, evaluate_binary, evaluate_multiclass, worst_misclassified,
    };

    const HOSTILE: [&str; 3] = [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "'><svg onload=alert(1)>",
    ];

    fn hostile_report() -> String {
        let scores = [0.95, 0.9, 0.2, 0.85, 0.1, 0.3];
        let truth = [false, true, true, false, false, true];
        let texts = [
            HOSTILE[0],
            "ok",
            HOSTILE[1],
            HOSTILE[2],
            "fine",
            "meh & <b>",
        ];
        let eval = evaluate_binary(&scores, &truth, &BinaryEvalOptions::default()).unwrap();
        let worst = worst_misclassified(
            &texts,
            &scores,
            &truth,
            eval.threshold.threshold,
            HOSTILE[1],
            HOSTILE[0],
            10,
        )
        .unwrap();
        assert!(
            worst.len() >= 2,
            "the hostile texts are mistakes: {worst:?}"
        );
        let multi = evaluate_multiclass(
            &[0, 1, 2],
            &[[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3]],
            &[HOSTILE[0], HOSTILE[1], HOSTILE[2]],
        )
        .unwrap();
        ReportInput::new(format!("Report {}", HOSTILE[0]))
            .note(HOSTILE[1], "meh & <b>")
            .binary(eval, HOSTILE[1], HOSTILE[0])
            .multiclass(multi)
            .features(vec![
                (HOSTILE[0].to_string(), 1.5),
                (HOSTILE[1].to_string(), -2.0),
                ("nan<feature>".to_string(), f64::NAN),
                ("plain".to_string(), 0.5),
            ])
            .examples(worst)
            .render()
    }

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        let html = hostile_report();
        let lower = html.to_ascii_lowercase();
        for tag in ["<script", "<img", "<svg onload", "onerror=alert(1)>", "<b>"] {
            assert!(!lower.contains(tag), "unescaped {tag:?} in the report");
        }
        // the text is there, escaped: in the title, tables, labels, features
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("&#39;&gt;&lt;svg onload=alert(1)&gt;"));
        assert!(html.contains("meh &amp; &lt;b&gt;"));
        assert!(html.contains("<title>Report &lt;script&gt;"));
        // every tag in the document is one the renderer writes itself
        let allowed = [
            "!doctype",
            "html",
            "head",
            "meta",
            "title",
            "style",
            "body",
            "h1",
            "h2",
            "h3",
            "table",
            "tr",
            "th",
            "td",
            "div",
            "figure",
            "figcaption",
            "svg",
            "line",
            "text",
            "polyline",
            "circle",
            "rect",
            "span",
            "p",
        ];
        let mut rest = lower.as_str();
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let name: String = rest
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
                .collect();
            assert!(allowed.contains(&name.as_str()), "unexpected tag <{name}");
        }
    }

    #[test]
    fn report_is_self_contained_and_has_every_part() {
        let html = hostile_report();
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external reference"
        );
        assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("<img"));
        for part in [
            "ROC curve",
            "Precision–recall curve",
            "Score histogram per class",
            "Reliability plot",
            "Confusion matrix at threshold",
            "Multi-class",
            "Top features",
            "Worst mistakes",
            "ROC AUC",
        ] {
            assert!(html.contains(part), "missing {part}");
        }
        assert!(html.matches("<svg").count() >= 4);
        assert!(
            html.contains("class=\"mark\""),
            "the chosen threshold is marked"
        );
        assert!(html.contains("1 features with a non-finite weight"));
        assert!(
            !html.contains("NaN") && !html.contains("inf"),
            "no raw non-finite numbers"
        );
    }

    #[test]
    fn worst_misclassified_ranks_confident_mistakes_first() {
        let texts = ["a", "b", "c", "d", "e"];
        let scores = [0.99, 0.6, 0.05, 0.4, 0.9];
        let truth = [false, false, true, true, true];
        let w = worst_misclassified(&texts, &scores, &truth, 0.5, "pos", "neg", 10).unwrap();
        let order: Vec<&str> = w.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(order, ["a", "c", "b", "d"]);
        assert_eq!(
            (w[0].truth.as_str(), w[0].predicted.as_str()),
            ("neg", "pos")
        );
        assert_eq!(
            worst_misclassified(&texts, &scores, &truth, 0.5, "p", "n", 1)
                .unwrap()
                .len(),
            1
        );
        assert!(worst_misclassified(&texts[..2], &scores, &truth, 0.5, "p", "n", 1).is_err());
    }

    #[test]
    fn report_writes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.html");
        ReportInput::new("empty").write_to(&path).unwrap();
        let html = std::fs::read_to_string(&path).unwrap();
        assert!(html.contains("<h1>empty</h1>") && html.ends_with("</html>\n"));
    }
}
