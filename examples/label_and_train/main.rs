//! Build a labeled dataset from the unlabeled stream and train on it:
//!
//! ```text
//! cargo run --example label_and_train [-- --sample 600 --majority --out DIR]
//! ```
//!
//! Samples `examples/data/tweets.jsonl`, removes retweets and duplicates,
//! sends one labeling task per tweet, aggregates the answers (Dawid–Skene
//! by default), writes `training.csv`, trains the local binary
//! actionable model (threshold chosen by cost on cross-validated training
//! scores), and writes `report.html`, `model.json` and `aggregation.json`.
//! Offline, a `SimulatedCrowd` labels, its truth taken from
//! `examples/data/labels.csv`; the model is measured against those gold
//! labels on a held-out 30%.

mod app;

use std::process::ExitCode;

use streamsift::local::read_labels_path;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match app::Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(app::AppError::Help) => {
            println!("{}", app::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if options.web {
        eprintln!(
            "error: --web needs the local web labeling page (LocalWebLabeler, feature \
             `label-ui`), which this build does not have yet"
        );
        return ExitCode::from(2);
    }
    let gold = match read_labels_path(&options.gold, "id_str", "label") {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: reading the gold labels: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "label_and_train: sampling {} from {}; labeler: simulated crowd (10 workers, 3 spammers, 3 answers a tweet)",
        if options.sample == 0 {
            "all tweets".to_string()
        } else {
            format!("{} tweets", options.sample)
        },
        options.tweets.display()
    );
    let crowd = app::simulated_crowd(gold, options.seed);
    let started = std::time::Instant::now();
    match app::run(&options, &crowd).await {
        Ok(o) => {
            print_outcome(&o);
            println!("done in {:.1} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_outcome(o: &app::Outcome) {
    let pct = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{:.1}%", 100.0 * x));
    println!(
        "stream: {} tweets read, {} malformed lines skipped; {} sampled",
        o.loaded, o.skipped_lines, o.sampled
    );
    println!(
        "dedup: {} retweets and {} duplicates removed -> {} labeling tasks",
        o.retweets_removed, o.duplicates_removed, o.tasks
    );
    println!(
        "aggregation ({:?}): {} labeled, {} incomplete, {} unanswered; spammers flagged: {}",
        o.method,
        o.labeled,
        o.incomplete,
        o.unanswered,
        if o.spammers.is_empty() {
            "none".to_string()
        } else {
            o.spammers.join(", ")
        }
    );
    println!(
        "crowd labels equal to gold: {} (majority vote {}, Dawid-Skene {})",
        pct(o.label_accuracy),
        pct(o.majority_accuracy),
        pct(o.dawid_skene_accuracy)
    );
    let t = &o.trained;
    println!(
        "model: trained on {} crowd-labeled tweets; hold-out vs gold ({} tweets, {} actionable): \
         AUC {:.3}, threshold {:.3}, precision {}, recall {}",
        t.train,
        t.holdout,
        t.holdout_actionable,
        t.auc,
        t.threshold,
        pct(t.precision),
        pct(t.recall)
    );
    for f in &o.files {
        println!("wrote {}", f.display());
    }
}
