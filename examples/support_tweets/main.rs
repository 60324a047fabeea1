//! Support-tweet triage, offline: `cargo run --example support_tweets`.
//!
//! Replays a bundled stream of tweets to a fictional cloud host through the
//! whole streamsift Pipeline, classified by the crate's local model, prints
//! a notification per actionable tweet grouped by support team, and ends
//! with a summary measured against the bundled gold labels. Ctrl-C stops it
//! gracefully (drain, commit, report).
//!
//! `--help` lists the options: `--retrain` trains the models even if the
//! bundled model files are fresh; `--write-model` trains them and saves them
//! as the bundled files (`examples/data/support_*.model.json`);
//! `--dead-letter PATH` (or `STREAMSIFT_DEAD_LETTER`) says where dead
//! letters go. Warnings go to stderr (`RUST_LOG` for more); an error is
//! printed with a hint and exits 1; a run that could not deliver some
//! notifications exits 3.
//!
//! With `--features aws`, flags move stages to AWS: `--kinesis-stream`,
//! `--ml-model-id` or `--sagemaker-endpoint`, `--sns-topic-arn [ROUTE=]ARN`,
//! `--endpoint-url`, `--region` and more, each with an environment variable
//! (see `aws.rs` and the guide `streamsift::guide::aws`). Without them, the run
//! is the offline one.
//!
//! With `--features http`, `--slack-webhook ROUTE=URL`, `--teams-webhook
//! ROUTE=URL` and `--pagerduty-routing-key ROUTE=KEY` send routes to those
//! services; with `--features sqs` (or `aws`), `--sqs-queue-url URL` reads
//! the tweets from SQS; with either, `--dedup-window 1h` never notifies a
//! tweet twice within the window. Each has a `STREAMSIFT_...` variable
//! (see `notify.rs`):
//! `cargo run --example support_tweets --features http -- --slack-webhook
//! support_request=https://hooks.slack.com/services/... --dedup-window 1h`.

pub mod app;
#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser as _;
use std::fmt::Write as _;

use streamsift::{REVIEW_ROUTE, Shutdown};

fn snippet(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

fn percent(a: usize, b: usize) -> f64 {
    100.0 * a as f64 / b.max(1) as f64
}

fn pct(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{:.1}%", v * 100.0))
}

fn print_teams(teams: &[app::TeamScore]) {
    println!("  team                 notified  correct  gold  precision  recall");
    for t in teams {
        println!(
            "  {:<19} {:>9} {:>8} {:>5} {:>9.1}% {:>6.1}%",
            t.label,
            t.notified,
            t.correct,
            t.gold,
            t.precision * 100.0,
            t.recall * 100.0
        );
    }
}

fn print_models(data: &app::model::LabeledData, models: &app::model::Models) {
    use app::model::{FOLDS, HOLDOUT_FRACTION, Origin, TEAM_MIN_CONFIDENCE};
    match &models.origin {
        Origin::Bundled => println!(
            "classifier: streamsift::local, loaded from {} and {} (fresh: trained from this data with this build's featurizer)",
            file_name(&app::model::bundled_actionable_path()),
            file_name(&app::model::bundled_team_path())
        ),
        Origin::Trained { reason, seconds } => println!(
            "classifier: streamsift::local, trained at start-up in {seconds:.1} s ({reason}); \
             `cargo run --release --example support_tweets -- --write-model` saves it as the bundled model"
        ),
    }
    let h = &models.held_out;
    println!(
        "  trained on {} labeled tweets ({} retweets and duplicates left out); {} more held out ({:.0}%, stratified), never trained on",
        data.train.len(),
        data.duplicates_removed,
        data.holdout.len(),
        HOLDOUT_FRACTION * 100.0
    );
    println!(
        "  actionable vs none: logistic regression; threshold {:.3} chosen by cost 10:1 (missed request : false alarm) \
         on {FOLDS}-fold cross-validated scores of the training tweets",
        app::model::threshold(models).unwrap_or(h.threshold)
    );
    println!(
        "  which team: softmax regression over the 4 teams; below {:.0}% sure, the tweet goes to human triage",
        TEAM_MIN_CONFIDENCE * 100.0
    );
    println!(
        "  held-out check on {} tweets ({} actionable): precision {}, recall {} at the threshold (ROC AUC {:.3}); \
         team right for {} of {} actionable",
        h.tweets,
        h.actionable,
        pct(h.precision),
        pct(h.recall),
        h.auc,
        h.team_correct,
        h.actionable
    );
}

fn file_name(path: &std::path::Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Where dead letters go when neither `--dead-letter` nor this is set: see
/// [`app::Settings`].
const ENV_DEAD_LETTER: &str = "STREAMSIFT_DEAD_LETTER";

#[tokio::main]
async fn main() -> ExitCode {
    main_with(std::env::args_os()).await
}

/// The whole program, for a command line (the program name first): what
/// `main` runs, and what the tests run in a child process.
pub async fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    common::init_tracing();
    let cli = match app::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(cli).await {
        Ok(code) => code,
        Err(e) => common::fail(&*e, hint_for(&*e)),
    }
}

/// What to do about an error that stopped the run.
fn hint_for(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    #[cfg(feature = "aws")]
    if error.downcast_ref::<app::aws::SetupError>().is_some() {
        return Some(
            "check that the service (or the emulator at --endpoint-url) is reachable, \
             the names and ARNs exist in that region, and the credentials may use them",
        );
    }
    #[cfg(any(feature = "http", feature = "sqs"))]
    if let Some(e) = error.downcast_ref::<app::notify::NotifyArgError>() {
        use app::notify::NotifyArgError as E;
        return Some(match e {
            E::BadDuration { .. } => {
                "give --dedup-window as a whole number and a unit: 30s, 10m, 1h or 2d"
            }
            E::BadRate { .. } => {
                "give --slack-rate as a whole number of messages a second (Slack allows 1)"
            }
            E::TwoSources => "drop --kinesis-stream or --sqs-queue-url",
            E::NeedsHttp => "build the example with `--features http`",
            _ => {
                "give each webhook or routing key as ROUTE=VALUE with ROUTE a team label \
                 (problem_report, support_request, technical_question, feature_request) or review"
            }
        });
    }
    #[cfg(any(feature = "http", feature = "sqs"))]
    if error
        .downcast_ref::<app::notify::NotifySetupError>()
        .is_some()
    {
        return Some(
            "check the webhook URLs (absolute http(s) URLs), the SQS queue URL and its \
             credentials, and that the dead-letter directory is writable",
        );
    }
    if error.downcast_ref::<std::io::Error>().is_some() {
        return Some("check that the --dead-letter path's directory can be created and written");
    }
    None
}

async fn run(cli: app::Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let shutdown = Shutdown::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("ctrl-c: draining in-flight tweets, then stopping");
            on_ctrl_c.cancel();
        }
    });

    let mut settings = app::Settings {
        retrain: cli.retrain || cli.write_model,
        ..app::Settings::default()
    };
    let write_model = cli.write_model;
    let from_env = std::env::var_os(ENV_DEAD_LETTER).filter(|v| !v.is_empty());
    if let Some(path) = cli.dead_letter.or(from_env.map(Into::into)) {
        settings.dead_letter_path = path;
    }
    #[cfg(feature = "aws")]
    let aws_options = {
        let mut options = cli.aws;
        options.fill_from_env(|var| std::env::var(var).ok())?;
        options
    };
    #[cfg(any(feature = "http", feature = "sqs"))]
    let notify_options = {
        let mut options = cli.notify;
        options.fill_from_env(|var| std::env::var(var).ok())?;
        options
    };
    #[cfg(feature = "aws")]
    let (on_aws, remote_model) = (aws_options.uses_aws(), aws_options.uses_remote_classifier());
    #[cfg(not(feature = "aws"))]
    let (on_aws, remote_model) = (false, false);

    if on_aws {
        println!("streamsift support_tweets: triage of @nimbuscloud mentions, on AWS");
    } else {
        println!("streamsift support_tweets: triage of @nimbuscloud mentions (bundled, offline)");
    }
    let (data, models) = app::prepare(&settings)?;
    if !remote_model {
        print_models(&data, &models);
    }
    if write_model {
        app::model::save_bundled(&models)?;
        println!(
            "wrote {} and {}",
            app::model::bundled_actionable_path().display(),
            app::model::bundled_team_path().display()
        );
    }

    #[cfg(any(feature = "http", feature = "sqs"))]
    if notify_options.uses_any() {
        let (summary, _banner, topics) = app::notify::run(
            &settings,
            &notify_options,
            #[cfg(feature = "aws")]
            &aws_options,
            &data,
            &models,
            shutdown,
        )
        .await?;
        return print_summary(&settings, &summary, &topics);
    }

    #[cfg(feature = "aws")]
    if on_aws {
        let config = app::aws::sdk_config(&aws_options).await;
        let (summary, deployment) =
            app::aws::run(&settings, &aws_options, &config, &data, &models, shutdown).await?;
        println!("{deployment}\n");
        return print_summary(&settings, &summary, &deployment.topics);
    }

    if cli.cascade && !on_aws {
        #[cfg(feature = "llm")]
        if let (Some(url), Some(name)) = (&cli.llm_url, &cli.llm_model) {
            let llm = app::cascade::real_llm(url, name, &cli.llm_api_key_env, &data)?;
            return run_cascade_real(&settings, &data, &models, llm, shutdown).await;
        }
        return run_cascade(&settings, &data, &models, shutdown).await;
    }

    println!(
        "stream: {} shards, {} in flight; notifier throttles {:.0}% of sends (simulated), retried with backoff\n",
        settings.shards,
        settings.max_in_flight,
        settings.flaky_notifier * 100.0
    );
    let summary = app::run_with(&settings, &data, &models, shutdown).await?;
    print_summary(&settings, &summary, &BTreeMap::new())
}

/// `--cascade`: the cost curve on the hold-out, then the run with the
/// cascade as the classifier.
async fn run_cascade(
    settings: &app::Settings,
    data: &app::model::LabeledData,
    models: &app::model::Models,
    shutdown: Shutdown,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use app::cascade as c;
    let llm = std::sync::Arc::new(c::simulated_llm());
    let curve = c::cost_curve(data, models, &llm)?;
    println!("\n{}", c::render(&curve));
    println!(
        "stream: {} shards, {} in flight; stage 2 is the simulated LLM ({} ms a call, {} tokens, {} a call)\n",
        settings.shards,
        settings.max_in_flight,
        c::LLM_LATENCY.as_millis(),
        c::LLM_TOKENS_PER_CALL,
        c::LLM_COST_PER_CALL
    );
    let (summary, stats) =
        c::run(settings, data, models, curve.band, llm.clone(), shutdown).await?;
    let code = print_summary(settings, &summary, &BTreeMap::new())?;
    println!(
        "\ncascade: {} decided by the local model, {} by the LLM, {} fell back to review; \
         LLM calls {}, tokens {}, cost {:.2}",
        stats.first,
        stats.second,
        stats.fallback,
        llm.calls(),
        llm.tokens(),
        llm.cost()
    );
    Ok(code)
}

/// `--cascade --llm-url URL --llm-model NAME`: a real server as stage 2,
/// with the band calibrated on the simulated LLM (measure your model's
/// answers on the hold-out to calibrate it for real).
#[cfg(feature = "llm")]
async fn run_cascade_real(
    settings: &app::Settings,
    data: &app::model::LabeledData,
    models: &app::model::Models,
    llm: streamsift::llm::LlmClassifier,
    shutdown: Shutdown,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use app::cascade as c;
    let sim = c::simulated_llm();
    let band = c::cost_curve(data, models, &sim)?.band;
    println!(
        "\nstage 2: a real OpenAI-compatible server; band [{:.3}, {:.3}] (calibrated with the simulated LLM)\n",
        band.low, band.high
    );
    let llm = std::sync::Arc::new(llm);
    let (summary, stats) = c::run(settings, data, models, band, llm.clone(), shutdown).await?;
    let code = print_summary(settings, &summary, &BTreeMap::new())?;
    println!(
        "\ncascade: {} decided by the local model, {} by the LLM, {} fell back to review; LLM usage {:?}",
        stats.first,
        stats.second,
        stats.fallback,
        llm.usage()
    );
    Ok(code)
}

/// Prints the notifications per route and the summary; `topics` names the
/// SNS topic of each route that published there.
fn print_summary(
    settings: &app::Settings,
    summary: &app::Summary,
    topics: &BTreeMap<String, String>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let stats = &summary.report.stats;
    if stats.records_in == 0 {
        // A drained stream: scores over nothing would read as 0% recall.
        println!(
            "nothing new since the last checkpoint: 0 records read, nothing published ({:.1} s)",
            summary.report.elapsed.as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let published = |route: &str| {
        topics
            .get(route)
            .map(|arn| format!(", published to {arn}"))
            .unwrap_or_default()
    };
    let mut out = String::new();
    for (label, team) in app::TEAMS {
        let notes = summary.inboxes.get(label).map(Vec::as_slice).unwrap_or(&[]);
        writeln!(
            out,
            "== {team} ({label}): {} notifications{}",
            notes.len(),
            published(label)
        )?;
        for n in notes {
            writeln!(
                out,
                "  [notify {label}] @{} ({:.0}% actionable, {:.0}% this team): {}",
                n.screen_name,
                n.actionable * 100.0,
                n.confidence * 100.0,
                snippet(&n.text, 110)
            )?;
        }
        writeln!(out)?;
    }
    // Routes other than the teams and triage (a binary remote model's
    // `actionable`).
    for (route, notes) in &summary.inboxes {
        if *route == REVIEW_ROUTE || app::TEAMS.iter().any(|(l, _)| *l == route.as_str()) {
            continue;
        }
        writeln!(
            out,
            "== {route}: {} notifications{}",
            notes.len(),
            published(route.as_str())
        )?;
        for n in notes {
            writeln!(
                out,
                "  [notify {route}] @{} ({:.0}% sure): {}",
                n.screen_name,
                n.confidence * 100.0,
                snippet(&n.text, 110)
            )?;
        }
        writeln!(out)?;
    }
    let review = summary
        .inboxes
        .get(&REVIEW_ROUTE)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    writeln!(
        out,
        "== Human triage (uncertain): {} tweets{}",
        review.len(),
        published(REVIEW_ROUTE.as_str())
    )?;
    for n in review {
        writeln!(
            out,
            "  [review] @{} ({:.0}% actionable, team unsure): {}",
            n.screen_name,
            n.actionable * 100.0,
            snippet(&n.text, 110)
        )?;
    }
    print!("{out}");
    if !topics.is_empty() {
        // Counted by this run (what SNS accepted), so docs need not copy them.
        println!("\n== Published to SNS by this run");
        for (route, arn) in topics {
            let n = summary.inboxes.get(route.as_str()).map_or(0, Vec::len);
            println!("  {route:<19} {n:>5} messages -> {arn}");
        }
    }

    println!("\n== Summary");
    println!("lines in stream       {:>8}", summary.lines);
    println!("records processed     {:>8}", stats.records_in);
    println!("decoded               {:>8}", stats.decoded);
    println!("notified (teams)      {:>8}", stats.routed);
    println!(
        "sent to human triage  {:>8}   ({} of them noise)",
        stats.sent_for_review, summary.review_noise
    );
    println!("discarded as noise    {:>8}", stats.discarded);
    println!("dead letters          {:>8}", stats.dead_lettered);
    println!(
        "retries               {:>8}   ({} throttled)",
        stats.retries, stats.throttled
    );
    println!("records/s             {:>8.0}", summary.records_per_sec);
    println!("\npredicted label        count");
    for (label, n) in &stats.classified {
        println!("  {:<20} {n:>5}", label.as_str());
    }
    println!(
        "\nheld-out tweets only ({} of them, never trained on): the honest figures",
        summary.held_out_ids.len()
    );
    print_teams(&summary.held_out.teams);
    println!(
        "  actionable tweets that reached a person (a team or triage): {} of {} ({:.1}%)",
        summary.held_out.actionable_reached,
        summary.held_out.actionable_gold,
        percent(
            summary.held_out.actionable_reached,
            summary.held_out.actionable_gold
        )
    );
    println!(
        "\nall labeled tweets (about 70% of them were trained on, so these flatter the model)"
    );
    print_teams(&summary.teams);
    println!(
        "  actionable tweets that reached a person (a team or triage): {} of {} ({:.1}%)",
        summary.actionable_reached,
        summary.actionable_gold,
        percent(summary.actionable_reached, summary.actionable_gold)
    );
    println!("\ndead letters ({}):", settings.dead_letter_path.display());
    for (kind, reason) in &summary.dead_letters {
        println!("  {kind:<13} {}", snippet(reason, 100));
    }
    if let Some(earlier) = &summary.rotated_dead_letters {
        println!(
            "  (the previous run's dead letters are kept in {})",
            earlier.display()
        );
    }
    if !stats.reconciles() {
        return Err("the run report does not reconcile".into());
    }
    if !summary.undelivered.is_empty() {
        let mut by_route: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
        for (route, reason) in &summary.undelivered {
            by_route
                .entry(route.as_str())
                .or_insert((0, reason.as_str()))
                .0 += 1;
        }
        eprintln!(
            "hint: check the configuration of these routes (does the topic exist, in this region, \
             and may these credentials publish to it?), then replay the dead letters"
        );
        eprintln!(
            "error: {} notifications could not be delivered and were dead-lettered to {}",
            summary.undelivered.len(),
            settings.dead_letter_path.display()
        );
        for (route, (n, reason)) in by_route {
            eprintln!(
                "  {route}: {n}, the first because: {}",
                snippet(reason, 160)
            );
        }
        return Ok(ExitCode::from(app::EXIT_UNDELIVERED));
    }
    Ok(ExitCode::SUCCESS)
}
