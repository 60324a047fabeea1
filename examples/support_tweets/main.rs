//! Support-tweet triage, offline: `cargo run --example support_tweets`.
//!
//! Replays a bundled stream of tweets to a fictional cloud host through the
//! whole streamsift Pipeline, prints a notification per actionable tweet
//! grouped by support team, and ends with a summary measured against the
//! bundled gold labels. Ctrl-C stops it gracefully (drain, commit, report).

mod app;

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = Shutdown::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("ctrl-c: draining in-flight tweets, then stopping");
            on_ctrl_c.cancel();
        }
    });

    let settings = app::Settings::default();
    println!("streamsift support_tweets: triage of @nimbuscloud mentions (bundled, offline)");
    println!(
        "classifier: keyword rules (streamsift::fakes::KeywordClassifier), a stand-in until the trained local model lands"
    );
    println!(
        "stream: {} shards, {} in flight; notifier throttles {:.0}% of sends (simulated), retried with backoff\n",
        settings.shards,
        settings.max_in_flight,
        settings.flaky_notifier * 100.0
    );

    let summary = app::run(&settings, shutdown).await?;

    let mut out = String::new();
    for (label, team) in app::TEAMS {
        let notes = summary.inboxes.get(label).map(Vec::as_slice).unwrap_or(&[]);
        writeln!(out, "== {team} ({label}): {} notifications", notes.len())?;
        for n in notes {
            writeln!(
                out,
                "  [notify {label}] @{} ({:.0}%): {}",
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
    writeln!(out, "== Human triage (uncertain): {} tweets", review.len())?;
    for n in review {
        writeln!(
            out,
            "  [review] @{}: {}",
            n.screen_name,
            snippet(&n.text, 110)
        )?;
    }
    print!("{out}");

    let stats = &summary.report.stats;
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
    println!("\nteam                 notified  correct  gold  precision  recall");
    for t in &summary.teams {
        println!(
            "  {:<19} {:>8} {:>8} {:>5} {:>9.1}% {:>6.1}%",
            t.label,
            t.notified,
            t.correct,
            t.gold,
            t.precision * 100.0,
            t.recall * 100.0
        );
    }
    println!(
        "\nactionable tweets that reached a person (a team or triage): {} of {} ({:.1}%)",
        summary.actionable_reached,
        summary.actionable_gold,
        100.0 * summary.actionable_reached as f64 / summary.actionable_gold.max(1) as f64
    );
    println!("\ndead letters ({}):", settings.dead_letter_path.display());
    for (kind, reason) in &summary.dead_letters {
        println!("  {kind:<13} {}", snippet(reason, 100));
    }
    if !stats.reconciles() {
        return Err("the run report does not reconcile".into());
    }
    Ok(())
}
