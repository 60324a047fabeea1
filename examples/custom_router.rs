//! A custom Router in under 40 lines: POST alerts to a webhook (`-- --url URL`), paced by the
//! public RateLimiter; 2xx is delivered, 429/408/5xx retried, any other status dead-lettered.
use streamsift::{fakes::MemorySource, rate::RateLimiter, *};
use {serde_json::Value, std::process::ExitCode};
struct Webhook(reqwest::Client, String, RateLimiter);
impl Router<Value> for Webhook {
    async fn route(&self, d: &Delivery<'_, Value>) -> Result<Receipt, RouteError> {
        self.2.acquire().await; // paced: at most 50 requests a second to this webhook
        let a = self.0.post(&self.1).json(d.item).send().await;
        let a = a.map_err(|e| RouteError::unavailable("no answer").with_source(e.without_url()))?;
        let said = format!("webhook answered {}", a.status());
        match a.status().as_u16() {
            200..=299 => Ok(Receipt::new(d.route.clone())),
            429 => Err(RouteError::throttled(said)), // retried, counted as throttled
            408 | 500..=599 => Err(RouteError::unavailable(said)), // retried with backoff
            _ => Err(RouteError::permanent(said)),   // dead-lettered at once
        }
    }
}
#[tokio::main]
pub async fn main() -> ExitCode {
    let url = clap::arg!(--url <URL> "the webhook").default_value("http://127.0.0.1:8080/hook");
    let mut args = clap::Command::new("custom_router").arg(url).get_matches();
    let pace = RateLimiter::new(50.try_into().unwrap());
    let hook = Webhook(Default::default(), args.remove_one("url").unwrap(), pace);
    let dead = MemoryDeadLetter::new();
    let alerts = (1..=4).map(|id| format!(r#"{{"alert":{id}}}"#));
    let run = Pipeline::new(MemorySource::from_payloads(1, alerts)).json::<Value>();
    let run = run.classify(|_: &Value| async { Ok(Prediction::binary("alert", "-", 1.0)) });
    let run = run.policy(Policy::binary(0.5, "oncall")).route(hook);
    let report = run.dead_letter(dead.clone()).run().await;
    let s = report.expect("a valid pipeline").stats;
    let (routed, retried, throttled) = (s.routed, s.retries, s.throttled);
    println!("delivered {routed}, retried {retried} ({throttled} throttled)");
    for dl in dead.entries() {
        println!("dead letter {}: {}", dl.record.id, dl.reason);
    }
    ExitCode::SUCCESS
}
