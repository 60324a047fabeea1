//! What every example binary shares: a log subscriber and the way `main`
//! prints an error for people. Include it with
//! `#[path = "common/mod.rs"] mod common;` (or `#[path = "../common/mod.rs"]`
//! from an example's own folder).

#![allow(dead_code)] // each example uses part of this module

use std::error::Error;
use std::fmt::Write as _;
use std::process::ExitCode;

/// Logs to stderr, `warn` and above unless `RUST_LOG` says otherwise
/// (`RUST_LOG=streamsift=info`, `RUST_LOG=debug`, ...). The default leaves
/// out aws-config's warnings (the region and credential chains probe IMDS
/// and log each miss as a long dump); a failure that matters still ends the
/// run with an error. Installing twice is harmless (the second call does
/// nothing).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// The error as people read it: the hint (what to do) first when there is
/// one, then the error, then each cause on a line of its own. A message that
/// repeats its cause's text (`"stream x: {source}"`) is shortened to its own
/// part, so no cause is printed twice. Only `Display` is used, never `Debug`.
pub fn human_error(error: &(dyn Error + 'static), hint: Option<&str>) -> String {
    let mut chain: Vec<String> = Vec::new();
    let mut current: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        let next = e.source().map(|s| s.to_string());
        let own = match &next {
            Some(cause) if !cause.is_empty() && text.ends_with(cause.as_str()) => text
                [..text.len() - cause.len()]
                .trim_end_matches([' ', ':', ';', ',', '('])
                .to_string(),
            _ => text,
        };
        if !own.trim().is_empty() {
            chain.push(own);
        }
        current = e.source();
    }
    let mut out = String::new();
    if let Some(hint) = hint {
        let _ = writeln!(out, "hint: {hint}");
    }
    let mut lines = chain.iter();
    if let Some(first) = lines.next() {
        let _ = writeln!(out, "error: {first}");
    }
    for cause in lines {
        let _ = writeln!(out, "  caused by: {cause}");
    }
    out
}

/// Prints [`human_error`] to stderr and returns the failure exit code (1).
pub fn fail(error: &(dyn Error + 'static), hint: Option<&str>) -> ExitCode {
    eprint!("{}", human_error(error, hint));
    ExitCode::FAILURE
}
