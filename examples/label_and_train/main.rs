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
//!
//! With `--llm-sim` (offline) or `--llm URL` (an OpenAI-compatible server,
//! `--features llm`), LLM workers pre-label the sample instead
//! ([`LlmLabeler`](streamsift::LlmLabeler), two workers, Dawid-Skene over
//! their votes); with `--review` (`--features label-ui`) people review the
//! tweets the two workers disagree on, on the local labeling page, each with
//! the LLM's label as the suggestion (Enter accepts it). The model is then
//! trained and measured against gold as above.

mod app;
#[path = "../common/mod.rs"]
mod common;

use std::process::ExitCode;

use clap::Parser as _;

use streamsift::local::read_labels_path;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    common::init_tracing();
    let options = app::Options::from_cli(app::Cli::parse());
    if options.llm_sim || options.llm.is_some() {
        return llm(&options).await;
    }
    if options.web {
        return web(&options).await;
    }
    if options.mturk {
        return mturk(&options).await;
    }
    let gold = match read_labels_path(&options.gold, "id_str", "label") {
        Ok(g) => g,
        Err(e) => {
            return common::fail(
                &e,
                Some("check the --gold path (a CSV with id_str and label)"),
            );
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
    finish(app::run(&options, &crowd).await, started)
}

/// Labels on the local web page: people open the printed URL (with its
/// token) and answer by keyboard; answers are saved to
/// `OUT/web-labels.jsonl` as they come, so a restart resumes.
#[cfg(feature = "label-ui")]
async fn web(options: &app::Options) -> ExitCode {
    use streamsift::label_ui::LocalWebLabelerBuilder;
    use streamsift::local::Example;

    if let Err(e) = std::fs::create_dir_all(&options.out) {
        return common::fail(&e, Some("check that the --out directory can be created"));
    }
    let dataset = options.out.join("web-labels.jsonl");
    let labeler = match LocalWebLabelerBuilder::new(&dataset, app::CATEGORIES)
        .answers_per_item(options.answers)
        .title("label_and_train: what category would this tweet belong in?")
        .start(|e: &Example| e.text.clone())
        .await
    {
        Ok(l) => l,
        Err(e) => {
            return common::fail(&e, Some("the labeling page could not start"));
        }
    };
    println!(
        "label_and_train: labeling page at {} (open the URL with the token printed above); \
         {} answer(s) per tweet; answers are saved to {}",
        labeler.url(),
        options.answers,
        dataset.display()
    );
    let started = std::time::Instant::now();
    let result = app::run(options, &labeler).await;
    labeler.shutdown().await;
    finish(result, started)
}

#[cfg(not(feature = "label-ui"))]
async fn web(_: &app::Options) -> ExitCode {
    eprintln!(
        "hint: run `cargo run --features label-ui --example label_and_train -- --web`\n\
         error: --web needs the labeling page (LocalWebLabeler), built with feature label-ui"
    );
    ExitCode::from(2)
}

/// Sends one HIT per tweet to the Mechanical Turk **sandbox** (3
/// assignments each, the original's settings), with a question over this
/// data's categories, and collects the answers as workers submit them.
#[cfg(feature = "mturk")]
async fn mturk(options: &app::Options) -> ExitCode {
    use streamsift::mturk::Cents;

    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let labeler = app::mturk_builder(options, aws_sdk_mturk::Client::new(&config)).build();
    println!(
        "label_and_train: HITs go to the Mechanical Turk sandbox ({}), at most ${} committed",
        labeler.endpoint().requester_url(),
        Cents(options.max_spend_cents).to_dollars()
    );
    let started = std::time::Instant::now();
    finish(app::run(options, &labeler).await, started)
}

#[cfg(not(feature = "mturk"))]
async fn mturk(_: &app::Options) -> ExitCode {
    eprintln!(
        "hint: run `cargo run --features mturk --example label_and_train -- --mturk --sample 40`\n\
         error: --mturk needs the Mechanical Turk labeler, built with feature mturk"
    );
    ExitCode::from(2)
}

/// The LLM workers: two simulated ones (`--llm-sim`), or one server's model
/// under two prompts (`--llm URL`).
async fn llm(options: &app::Options) -> ExitCode {
    let labeler = match llm_labeler(options) {
        Ok(l) => l,
        Err(code) => return code,
    };
    println!(
        "label_and_train: LLM workers {} pre-label the sample{}",
        labeler.worker_ids().join(", "),
        if options.review {
            "; people review their disagreements on the labeling page"
        } else {
            ""
        }
    );
    let started = std::time::Instant::now();
    let result = if options.review {
        review(options, &labeler).await
    } else {
        app::run_llm(
            options,
            &labeler,
            None::<&streamsift::fakes::SimulatedCrowd<_>>,
        )
        .await
    };
    match result {
        Ok(o) => {
            print_llm_outcome(&o);
            println!("done in {:.1} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => common::fail(
            &e,
            Some(
                "check the LLM server (--llm, --llm-model, the key's variable) and the input files",
            ),
        ),
    }
}

fn llm_labeler(
    options: &app::Options,
) -> Result<streamsift::LlmLabeler<streamsift::local::Example>, ExitCode> {
    if options.llm_sim {
        let prepared =
            app::prepare(options).map_err(|e| common::fail(&e, Some("check the --tweets path")))?;
        let gold = read_labels_path(&options.gold, "id_str", "label")
            .map_err(|e| common::fail(&e, Some("check the --gold path")))?;
        return app::simulated_llm_labeler(&prepared.examples, &gold, options.seed)
            .map_err(|e| common::fail(&e, None));
    }
    server_labeler(options)
}

#[cfg(feature = "llm")]
fn server_labeler(
    options: &app::Options,
) -> Result<streamsift::LlmLabeler<streamsift::local::Example>, ExitCode> {
    let url = options.llm.clone().unwrap_or_default();
    app::server_llm_labeler(&url, &options.llm_model, &options.llm_key_env).map_err(|e| {
        common::fail(
            &*e,
            Some("check --llm (a base URL such as http://localhost:8000/v1)"),
        )
    })
}

#[cfg(not(feature = "llm"))]
fn server_labeler(
    _: &app::Options,
) -> Result<streamsift::LlmLabeler<streamsift::local::Example>, ExitCode> {
    eprintln!(
        "hint: run `cargo run --features llm --example label_and_train -- --llm URL --llm-model NAME` \
         (or --llm-sim offline)\n\
         error: --llm needs the LLM classifier, built with feature llm"
    );
    Err(ExitCode::from(2))
}

#[cfg(feature = "label-ui")]
async fn review(
    options: &app::Options,
    labeler: &streamsift::LlmLabeler<streamsift::local::Example>,
) -> Result<app::LlmOutcome, app::AppError> {
    use streamsift::label_ui::LocalWebLabelerBuilder;
    use streamsift::local::Example;

    std::fs::create_dir_all(&options.out).map_err(|e| app::AppError::Write {
        path: options.out.clone(),
        message: e.to_string(),
    })?;
    let dataset = options.out.join("review-labels.jsonl");
    let page = LocalWebLabelerBuilder::new(&dataset, app::CATEGORIES)
        .title("label_and_train: review the LLM's label (Enter accepts, a number picks another)")
        .start(|e: &Example| e.text.clone())
        .await
        .map_err(|e| app::AppError::Label(e.into()))?;
    println!(
        "label_and_train: review page at {} (open the URL with the token printed above); \
         answers are saved to {}",
        page.url(),
        dataset.display()
    );
    let result = app::run_llm(options, labeler, Some(&page)).await;
    page.shutdown().await;
    result
}

#[cfg(not(feature = "label-ui"))]
async fn review(
    _: &app::Options,
    _: &streamsift::LlmLabeler<streamsift::local::Example>,
) -> Result<app::LlmOutcome, app::AppError> {
    Err(app::AppError::Usage(
        "hint: run with --features label-ui\nerror: --review needs the labeling page (LocalWebLabeler)"
            .to_string(),
    ))
}

fn print_llm_outcome(o: &app::LlmOutcome) {
    let pct = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{:.1}%", 100.0 * x));
    println!(
        "LLM pre-labeling: {} tasks, {} labeled, {} with no LLM vote",
        o.tasks, o.llm_labeled, o.llm_unanswered
    );
    for (w, votes, acc) in &o.workers {
        println!("  worker {w}: {votes} votes, {} equal to gold", pct(*acc));
    }
    println!(
        "disagreements: {}; reviewed by people: {} ({} accepted the LLM's suggestion)",
        o.disagreements, o.reviewed, o.accepted
    );
    println!(
        "labels equal to gold: LLM {}, final {}",
        pct(o.llm_label_accuracy),
        pct(o.label_accuracy)
    );
    let t = &o.trained;
    println!(
        "model: trained on {} LLM-labeled tweets; hold-out vs gold ({} tweets, {} actionable): \
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

/// Prints the outcome (or the error) of a run that began at `started`.
fn finish(result: Result<app::Outcome, app::AppError>, started: std::time::Instant) -> ExitCode {
    match result {
        Ok(o) => {
            print_outcome(&o);
            println!("done in {:.1} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => common::fail(
            &e,
            Some("check the input files (--tweets, --gold) and that --out is writable"),
        ),
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
