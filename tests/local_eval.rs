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
