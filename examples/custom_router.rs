//! A custom Router: POST each alert to a webhook and map the HTTP status: 2xx delivered; 408,
//! 429 (throttled) and 5xx retried with backoff; others permanent, so the alert is dead-lettered.
//! `cargo run --example custom_router -- --url http://127.0.0.1:8080/hook`
#[path = "common/mod.rs"]
mod common;
use clap::Parser as _;
use serde_json::Value;
use streamsift::{Delivery, MemoryDeadLetter, Pipeline, Policy, Prediction};
use streamsift::{Receipt, RouteError, Router, fakes::MemorySource};

struct Webhook(reqwest::Client, String);
impl Router<Value> for Webhook {
    async fn route(&self, d: &Delivery<'_, Value>) -> Result<Receipt, RouteError> {
        let sent = self.0.post(&self.1).json(d.item).send().await;
        let status = sent.map_err(|e| RouteError::unavailable("unreachable").with_source(e))?;
        let status = status.status();
        let said = format!("webhook answered {status}");
        match status.as_u16() {
            200..=299 => Ok(Receipt::new(d.route.clone())),
            429 => Err(RouteError::throttled(said)),
            408 | 500..=599 => Err(RouteError::unavailable(said)),
            _ => Err(RouteError::permanent(said)),
        }
    }
}
/// POST four alerts to a webhook; print what was delivered and dead-lettered.
#[derive(clap::Parser)]
struct Cli {
    /// The webhook's URL.
    #[arg(long)]
    url: String,
}

#[tokio::main]
pub async fn main() -> std::process::ExitCode {
    common::init_tracing();
    let url = Cli::parse().url;
    let alerts = (1..=4).map(|id| format!(r#"{{"alert":{id},"text":"disk {id} is full"}}"#));
    let dead_letters = MemoryDeadLetter::new();
    let run = Pipeline::new(MemorySource::from_payloads(1, alerts))
        .json::<Value>()
        .classify(|_: &Value| std::future::ready(Ok(Prediction::binary("alert", "-", 1.0))))
        .policy(Policy::binary(0.5, "oncall"))
        .route(Webhook(reqwest::Client::new(), url))
        .dead_letter(dead_letters.clone())
        .run();
    let s = match run.await {
        Ok(report) => report.stats,
        Err(e) => return common::fail(&e, Some("check --url")),
    };
    println!(
        "delivered {}, retried {} ({} throttled)",
        s.routed, s.retries, s.throttled
    );
    for dl in dead_letters.entries() {
        println!("dead letter {}: {}", dl.record.id, dl.reason);
    }
    std::process::ExitCode::SUCCESS
}
