//! Train and evaluate the local classifier on your own data:
//!
//! ```text
//! cargo run --release --example train_eval -- --train train.csv --test test.csv \
//!     [--text-column text] [--label-column label] [--positive actionable] \
//!     [--fn-cost 10] [--fp-cost 1] [--model model.json] [--report report.html]
//! ```
//!
//! Prints ROC AUC, the threshold chosen by cost on cross-validated training
//! scores, precision and recall at it on the test data, the confusion
//! matrix, training time and the mean predict time per record; with more
//! than two labels (and no `--positive`), accuracy and macro-F1. The last
//! line is machine-readable. `--help` lists every option; an error is
//! printed with a hint and exits 1.

mod app;
#[path = "../common/mod.rs"]
mod common;

use std::process::ExitCode;

use clap::Parser as _;

use indicatif::{ProgressBar, ProgressStyle};
use streamsift::local::CvStage;

/// Training expected to take longer than this (judged from the first epoch)
/// gets a progress bar.
const LONG_TRAINING_S: f64 = 1.0;

pub fn main() -> ExitCode {
    common::init_tracing();
    let args = app::Args::parse();
    println!(
        "streamsift train_eval: training on {}, testing on {}",
        args.train.display(),
        args.test.display()
    );

    // One bar over every epoch of every model trained (the cross-validation
    // folds, then the final model). Its length is set at the first epoch,
    // when the number of epochs and models is known.
    let bar = ProgressBar::hidden();
    let mut started = false;
    let bar_for_training = bar.clone();
    let result = app::run(&args, |stage, report| {
        if !started {
            started = true;
            let models = match stage {
                CvStage::Fold { folds, .. } => folds + 1,
                CvStage::Final => 1,
            };
            let total = (models * report.epochs) as u64;
            // Draw only for long training; the bar hides itself when stderr
            // is not a terminal.
            if report.elapsed.as_secs_f64() * total as f64 > LONG_TRAINING_S {
                bar_for_training.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            bar_for_training.set_length(total);
            if let Ok(style) =
                ProgressStyle::with_template("{msg:>14} [{bar:30}] epoch {pos}/{len} {elapsed}")
            {
                bar_for_training.set_style(style.progress_chars("=> "));
            }
        }
        bar_for_training.set_message(match stage {
            CvStage::Fold { fold, folds } => format!("CV fold {}/{folds}", fold + 1),
            CvStage::Final => "final model".to_string(),
        });
        bar_for_training.inc(1);
    });
    bar.finish_and_clear();

    match result {
        Ok(outcome) => {
            print!("{}", app::render(&args, &outcome));
            if let Some(path) = &args.model {
                println!("model saved to     {}", path.display());
            }
            if let Some(path) = &args.report {
                println!("report written to  {}", path.display());
            }
            println!("{}", app::summary_line(&outcome));
            ExitCode::SUCCESS
        }
        Err(e) => common::fail(
            &e,
            Some("check the --train and --test files and their --text-column and --label-column"),
        ),
    }
}
