//! HttpRouter against real HTTP(S) servers started on loopback by each test:
//! they record every request and answer from a script (429 with both
//! Retry-After forms, 500 then 200, 400, a slow answer, TLS with a
//! self-signed certificate), through the router alone and through a
//! Pipeline with a dead-letter sink.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use streamsift::fakes::MemorySource;
use streamsift::http::sign::{SIGNATURE_HEADER, verify};
use streamsift::http::{Endpoint, Fields, HttpRouter, presets};
use streamsift::rate::RateLimiter;
use streamsift::testing::router::{self as suite, Case};
use streamsift::{
    Delivery, ErrorClass, Label, MemoryDeadLetter, Pipeline, Policy, Prediction, Record,
    RetryPolicy, RouteError, Router, Sequence, ShardId,
};
use tokio::time::Instant;

/// One request the server saw.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the router posts JSON")
    }
}

/// The server's answer to one request.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Answer {
    fn status(status: u16) -> Self {
        Answer {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }
    fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Script = dyn Fn(usize, &Seen) -> Answer + Send + Sync;

struct Server {
    /// `http(s)://127.0.0.1:port`
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }
}

/// Starts a webhook on a free loopback port; `script(n, request)` answers
/// the `n`th request (0-based). With `tls`, it speaks HTTPS only.
async fn serve(
    script: impl Fn(usize, &Seen) -> Answer + Send + Sync + 'static,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("address");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let script: Arc<Script> = Arc::new(script);
    let (log, now, max) = (seen.clone(), in_flight, max_in_flight.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (log, script, now, max, tls) = (
                log.clone(),
                script.clone(),
                now.clone(),
                max.clone(),
                tls.clone(),
            );
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (log, script, now, max) =
                        (log.clone(), script.clone(), now.clone(), max.clone());
                    async move {
                        let n_now = now.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n_now, Ordering::SeqCst);
                        let path = req.uri().path().to_owned();
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(n, v)| {
                                (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                            })
                            .collect();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let seen = Seen {
                            at: Instant::now(),
                            path,
                            headers,
                            body,
                        };
                        let n = {
                            let mut log = log.lock().expect("log");
                            log.push(seen.clone());
                            log.len() - 1
                        };
                        let answer = script(n, &seen);
                        tokio::time::sleep(answer.delay).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        let mut response = Response::builder().status(answer.status);
                        for (name, value) in &answer.headers {
                            response = response.header(*name, value);
                        }
                        let response = response
                            .body(Full::new(Bytes::from(answer.body)))
                            .expect("a response");
                        Ok::<_, Infallible>(response)
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    Server {
        base: format!("{scheme}://{addr}"),
        seen,
        max_in_flight,
    }
}

/// A tweet, as the support example decodes it.
#[derive(Clone, Debug, serde::Deserialize)]
struct Tweet {
    text: String,
    user: String,
    url: String,
}

fn tweet_fields(t: &Tweet) -> Fields {
    Fields::new(&t.text).author(&t.user).link(&t.url)
}

fn tweet(text: &str) -> Tweet {
    Tweet {
        text: text.to_owned(),
        user: "@ada".to_owned(),
        url: "https://twitter.com/ada/status/1".to_owned(),
    }
}

fn case(text: &str, route: &str) -> Case<Tweet> {
    Case::new(tweet(text), route.to_owned())
}

fn delivery(c: &Case<Tweet>) -> Delivery<'_, Tweet> {
    Delivery {
        item: &c.item,
        record: &c.record,
        prediction: &c.prediction,
        route: &c.route,
    }
}

/// A router with one JSON endpoint on `route`, quick timeouts.
fn json_router(url: &str, route: &str) -> HttpRouter<Tweet> {
    HttpRouter::builder()
        .fields(tweet_fields)
        .route(route.to_owned(), Endpoint::json(url))
        .timeouts(Duration::from_secs(5), Duration::from_secs(10))
        .build()
        .expect("router")
}

const SECRET_PATH: &str = "/services/T0SECRET/B0SECRET/xoxSECRETpath0123";

#[tokio::test]
async fn conformance_and_error_classes_on_a_loopback_webhook() {
    let server = serve(
        |_, seen| match seen.json()["text"].as_str().unwrap_or("") {
            "bad" => Answer::status(400).body("{\"error\":\"missing field\"}"),
            "busy" => Answer::status(503),
            "slow down" => Answer::status(429),
            "gone" => Answer::status(410),
            _ => Answer::status(200).body("{\"id\":\"evt-1\"}"),
        },
        None,
    )
    .await;
    let router = json_router(&format!("{}/hook", server.base), "oncall");
    let cases: Vec<_> = (0..8)
        .map(|i| case(&format!("item {i}"), "oncall"))
        .collect();
    let receipts = suite::conformance(&router, &cases).await;
    assert!(
        receipts
            .iter()
            .all(|r| r.message_id.as_deref() == Some("evt-1")),
        "{receipts:?}"
    );
    suite::expect_errors(
        &router,
        &[
            (case("bad", "oncall"), ErrorClass::Permanent),
            (case("gone", "oncall"), ErrorClass::Permanent),
            (case("busy", "oncall"), ErrorClass::Retryable),
            (case("slow down", "oncall"), ErrorClass::Retryable),
            (case("anything", "nowhere"), ErrorClass::Permanent),
        ],
    )
    .await;
    assert_eq!(router.handles_route(&Label::from("oncall")), Some(true));
    assert_eq!(router.handles_route(&Label::from("nowhere")), Some(false));
    // Nothing was sent for the unknown route.
    assert_eq!(server.seen().len(), 9 + 4);
}

#[tokio::test]
async fn retry_after_in_seconds_and_as_a_date_are_honoured_through_a_pipeline() {
    let server = serve(
        |n, _| match n {
            0 => Answer::status(429).header("retry-after", "1"),
            1 => {
                let at = SystemTime::now() + Duration::from_secs(2);
                Answer::status(429).header("retry-after", httpdate::fmt_http_date(at))
            }
            _ => Answer::status(200),
        },
        None,
    )
    .await;
    let router = json_router(&format!("{}/hook", server.base), "oncall");
    let dead = MemoryDeadLetter::new();
    let tweet = r#"{"text":"my order never came","user":"@ada","url":"https://x.test/1"}"#;
    let report = Pipeline::new(MemorySource::from_payloads(1, [tweet]))
        .json::<Tweet>()
        .classify(|_: &Tweet| std::future::ready(Ok(Prediction::binary("problem", "noise", 0.9))))
        .policy(Policy::binary(0.5, "oncall"))
        .route(router)
        .dead_letter(dead.clone())
        .run()
        .await
        .expect("run");
    assert_eq!(report.stats.routed, 1, "{:?}", report.stats);
    assert_eq!(report.stats.throttled, 2, "{:?}", report.stats);
    assert!(dead.entries().is_empty());
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    // Without the hint the pipeline retries within 100 ms, then 200 ms.
    let first_gap = seen[1].at - seen[0].at;
    let second_gap = seen[2].at - seen[1].at;
    assert!(first_gap >= Duration::from_secs(1), "{first_gap:?}");
    // An HTTP-date has whole seconds: "now + 2 s" is 1 to 2 s away.
    assert!(second_gap >= Duration::from_secs(1), "{second_gap:?}");
    // Every attempt carries the same idempotency key.
    let keys: Vec<_> = seen.iter().map(|s| s.header("idempotency-key")).collect();
    assert!(keys[0].is_some_and(|k| k.len() == 32), "{keys:?}");
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
}

#[tokio::test]
async fn a_500_then_200_is_delivered_once_and_signed_each_time() {
    let server = serve(
        |n, _| {
            if n == 0 {
                Answer::status(500).body("upstream hiccup")
            } else {
                Answer::status(202)
            }
        },
        None,
    )
    .await;
    let router = HttpRouter::builder()
        .fields(tweet_fields)
        .route("oncall", Endpoint::json(format!("{}/hook", server.base)))
        .signing_secret("whsec-test")
        .build()
        .expect("router");
    let dead = MemoryDeadLetter::new();
    let tweet = r#"{"text":"refund please","user":"@bo","url":"https://x.test/2"}"#;
    let report = Pipeline::new(MemorySource::from_payloads(1, [tweet]))
        .json::<Tweet>()
        .classify(|_: &Tweet| std::future::ready(Ok(Prediction::binary("problem", "noise", 0.8))))
        .policy(Policy::binary(0.5, "oncall"))
        .route(router)
        .dead_letter(dead.clone())
        .run()
        .await
        .expect("run");
    assert_eq!(report.stats.routed, 1, "{:?}", report.stats);
    assert_eq!(report.stats.retries, 1, "{:?}", report.stats);
    assert!(dead.entries().is_empty());
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        let signature = s.header(SIGNATURE_HEADER).expect("signed");
        verify(
            b"whsec-test",
            signature,
            &s.body,
            SystemTime::now(),
            Duration::from_secs(300),
        )
        .expect("the receiver's check passes");
        assert!(
            verify(
                b"other",
                signature,
                &s.body,
                SystemTime::now(),
                Duration::from_secs(300)
            )
            .is_err()
        );
        assert_eq!(s.header("content-type"), Some("application/json"));
        assert_eq!(s.json()["text"], "refund please");
        assert_eq!(s.json()["author"], "@bo");
    }
    assert_eq!(
        seen[0].header("idempotency-key"),
        seen[1].header("idempotency-key")
    );
}

#[tokio::test]
async fn a_400_is_dead_lettered_once_with_status_and_a_clean_snippet_and_no_secret() {
    let server = serve(
        move |_, _| {
            Answer::status(400).body(format!(
                "invalid \u{1b}[31mrequest\r\n for {SECRET_PATH}: {}",
                "x".repeat(5000)
            ))
        },
        None,
    )
    .await;
    let router = HttpRouter::builder()
        .fields(tweet_fields)
        .route(
            "oncall",
            Endpoint::json(format!("{}{SECRET_PATH}?token=qsSECRET99", server.base))
                .header("Authorization", "Bearer hdrSECRET-0123456789"),
        )
        .build()
        .expect("router");
    let dead = MemoryDeadLetter::new();
    let tweet = r#"{"text":"bad one","user":"@cy","url":"https://x.test/3"}"#;
    let report = Pipeline::new(MemorySource::from_payloads(1, [tweet]))
        .json::<Tweet>()
        .classify(|_: &Tweet| std::future::ready(Ok(Prediction::binary("problem", "noise", 0.9))))
        .policy(Policy::binary(0.5, "oncall"))
        .route(router)
        .dead_letter(dead.clone())
        .retry(RetryPolicy::default())
        .run()
        .await
        .expect("run");
    assert_eq!(report.stats.routed, 0);
    assert_eq!(server.seen().len(), 1, "a 400 is not retried");
    assert_eq!(
        server.seen()[0].header("authorization"),
        Some("Bearer hdrSECRET-0123456789")
    );
    let entries = dead.entries();
    assert_eq!(entries.len(), 1);
    let reason = &entries[0].reason;
    assert!(reason.contains("HTTP 400 Bad Request"), "{reason}");
    assert!(
        reason.contains("invalid [31mrequest for /<redacted>"),
        "{reason}"
    );
    assert!(!reason.chars().any(char::is_control), "{reason:?}");
    assert!(reason.len() < 600, "{} bytes: {reason}", reason.len());
    for secret in ["T0SECRET", "B0SECRET", "xoxSECRET", "qsSECRET", "hdrSECRET"] {
        assert!(!reason.contains(secret), "{secret} in {reason}");
        assert!(
            !format!("{report:?}").contains(secret),
            "{secret} in the report"
        );
    }
}

#[tokio::test]
async fn a_slow_server_times_out_as_retryable() {
    let server = serve(
        |_, _| Answer::status(200).after(Duration::from_secs(10)),
        None,
    )
    .await;
    let router = HttpRouter::builder()
        .route(
            "oncall",
            Endpoint::json(format!("{}{SECRET_PATH}", server.base)),
        )
        .timeouts(Duration::from_secs(5), Duration::from_millis(300))
        .build()
        .expect("router");
    let c = case("anything", "oncall");
    let started = Instant::now();
    let err = router.route(&delivery(&c)).await.expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, RouteError::Timeout(_)), "{err}");
    assert!(err.is_retryable());
    assert!(!err.to_string().contains("SECRET"), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_retryable_and_names_no_secret() {
    // A port that was free a moment ago: nothing listens there now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let router = json_router(&format!("http://127.0.0.1:{port}{SECRET_PATH}"), "oncall");
    let c = case("anything", "oncall");
    let err = router.route(&delivery(&c)).await.expect_err("refused");
    assert!(err.is_retryable(), "{err}");
    let mut chain = format!("{err} / {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(" / {s} / {s:?}"));
        source = s.source();
    }
    assert!(!chain.contains("SECRET"), "{chain}");
    assert!(chain.contains("could not connect"), "{chain}");
}

fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    use tokio_rustls::rustls;
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .expect("server config");
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        cert.cert.pem(),
    )
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate_trusted_by_the_test() {
    let (acceptor, pem) = tls_acceptor();
    let server = serve(|_, _| Answer::status(200), Some(acceptor)).await;
    assert!(server.base.starts_with("https://"));
    let url = format!("{}/hook", server.base);
    let trusted = HttpRouter::builder()
        .fields(tweet_fields)
        .route("oncall", Endpoint::json(&url))
        .root_certificate_pem(pem.as_bytes())
        .build()
        .expect("router");
    let c = case("over TLS", "oncall");
    let receipt = trusted
        .route(&delivery(&c))
        .await
        .expect("delivered over TLS");
    assert_eq!(receipt.route.as_str(), "oncall");
    assert_eq!(server.seen().len(), 1);
    assert_eq!(server.seen()[0].json()["text"], "over TLS");
    // Without the test's root the handshake fails: retryable, like any
    // connect failure (a certificate can be fixed while records wait).
    let untrusted = json_router(&url, "oncall");
    let err = untrusted.route(&delivery(&c)).await.expect_err("untrusted");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(server.seen().len(), 1, "no request went through");
}

#[tokio::test]
async fn per_destination_concurrency_and_rate_limits_hold() {
    let server = serve(
        |_, _| Answer::status(200).after(Duration::from_millis(100)),
        None,
    )
    .await;
    let router = HttpRouter::builder()
        .fields(tweet_fields)
        .route(
            "oncall",
            Endpoint::json(format!("{}/a", server.base)).concurrency(2),
        )
        .route(
            "paced",
            Endpoint::json(format!("{}/b", server.base)).rate_limit(RateLimiter::with_burst(
                std::num::NonZeroU32::new(10).expect("10"),
                std::num::NonZeroU32::MIN,
            )),
        )
        .build()
        .expect("router");
    let cases: Vec<_> = (0..8).map(|i| case(&format!("c{i}"), "oncall")).collect();
    let ds: Vec<_> = cases.iter().map(delivery).collect();
    let all = futures::future::join_all(ds.iter().map(|d| router.route(d))).await;
    assert!(all.iter().all(Result::is_ok));
    assert_eq!(server.max_in_flight.load(Ordering::SeqCst), 2);
    // 10/s with a burst of 1: 5 requests span at least 400 ms.
    let paced: Vec<_> = (0..5).map(|i| case(&format!("p{i}"), "paced")).collect();
    let ds: Vec<_> = paced.iter().map(delivery).collect();
    let all = futures::future::join_all(ds.iter().map(|d| router.route(d))).await;
    assert!(all.iter().all(Result::is_ok));
    let b: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.path == "/b")
        .map(|s| s.at)
        .collect();
    assert_eq!(b.len(), 5);
    let span = *b.iter().max().expect("5") - *b.iter().min().expect("5");
    assert!(span >= Duration::from_millis(390), "{span:?}");
}

#[tokio::test]
async fn slack_routes_on_one_webhook_share_its_one_message_a_second() {
    let server = serve(|_, _| Answer::status(200).body("ok"), None).await;
    let url = format!("{}/services/T0/B0/SAMEHOOK", server.base);
    let router = HttpRouter::builder()
        .fields(tweet_fields)
        .route("support", Endpoint::slack(&url))
        .route("billing", Endpoint::slack(&url))
        .build()
        .expect("router");
    let cases = [
        case("a", "support"),
        case("b", "billing"),
        case("c", "support"),
    ];
    let ds: Vec<_> = cases.iter().map(delivery).collect();
    let all = futures::future::join_all(ds.iter().map(|d| router.route(d))).await;
    assert!(all.iter().all(Result::is_ok));
    let at: Vec<_> = server.seen().iter().map(|s| s.at).collect();
    let span = *at.iter().max().expect("3") - *at.iter().min().expect("3");
    // One limiter for the webhook: 0 s, 1 s, 2 s (two limiters: 0, 0, 1 s).
    assert!(span >= Duration::from_millis(1900), "{span:?}");
}

// ---- presets, against the vendors' documented formats -------------------

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/vendors/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // The fixtures start with a `//` header saying where their shape is from.
    let json: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The set of `path: type` of a JSON value; array elements share `[]`.
fn shape(v: &Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(items) => {
            for item in items {
                shape(item, &format!("{at}[]"), out);
            }
            "array"
        }
        // PagerDuty's custom_details is free-form by design.
        Value::Object(_) if at.ends_with(".custom_details") => "object",
        Value::Object(map) => {
            for (k, item) in map {
                shape(item, &format!("{at}.{k}"), out);
            }
            "object"
        }
    };
    out.insert(format!("{at}: {kind}"));
}

/// Every field we send (path and type) appears in the vendor's documented
/// example, and the fields that example requires are all sent.
fn assert_shape(ours: &Value, documented: &Value, required: &[&str]) {
    let (mut a, mut b) = (Default::default(), Default::default());
    shape(ours, "", &mut a);
    shape(documented, "", &mut b);
    let extra: Vec<_> = a.difference(&b).collect();
    assert!(
        extra.is_empty(),
        "fields not in the documented format: {extra:?}"
    );
    for r in required {
        assert!(a.contains(*r), "required {r} missing from {a:?}");
    }
}

fn slack_case() -> Case<Tweet> {
    Case::new(
        Tweet {
            text: "@acme my order #1234 never arrived <!channel> & nobody answers".to_owned(),
            user: "@ada".to_owned(),
            url: "https://twitter.com/ada/status/1790000000000000001".to_owned(),
        },
        "support",
    )
    .record(Record::new(
        ShardId::new("shardId-000000000000"),
        Sequence::new("49650000000000000000000000000000000000000000000000000042"),
        "ada",
        &b""[..],
    ))
    .prediction(Prediction::binary("problem", "noise", 0.93))
}

#[test]
fn presets_follow_the_vendors_documented_formats() {
    let c = slack_case();
    let d = delivery(&c);
    let f = tweet_fields(&c.item);

    let slack = presets::slack(&d, &f);
    assert_shape(
        &slack,
        &fixture("slack_incoming_webhook.json"),
        &[
            ".text: string",
            ".blocks[].type: string",
            ".blocks[].text.type: string",
        ],
    );
    let section = slack["blocks"][0]["text"]["text"]
        .as_str()
        .expect("section");
    assert!(
        section.contains("&lt;!channel&gt; &amp; nobody"),
        "{section}"
    );
    assert!(!slack.to_string().contains("<!channel>"));
    assert_eq!(slack["blocks"][2]["elements"][0]["url"], c.item.url);

    let teams = presets::teams(&d, &f);
    assert_shape(
        &teams,
        &fixture("teams_workflow_webhook.json"),
        &[
            ".type: string",
            ".attachments[].contentType: string",
            ".attachments[].content.type: string",
            ".attachments[].content.version: string",
            ".attachments[].content.body[].type: string",
        ],
    );
    assert_eq!(teams["type"], "message");
    assert_eq!(
        teams["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(teams["attachments"][0]["content"]["type"], "AdaptiveCard");
    // The tweet's text and author are TextRuns (never Markdown), nowhere else.
    let mut md = c.clone();
    md.item.text = "**urgent** [reset your password](https://evil.example) - now".to_owned();
    md.item.user = "[admin](https://evil.example)".to_owned();
    let (f_md, d_md) = (tweet_fields(&md.item), delivery(&md));
    let card = &presets::teams(&d_md, &f_md)["attachments"][0]["content"];
    let body = card["body"].as_array().expect("body");
    for element in body {
        if element["type"] != "RichTextBlock" {
            assert!(!element.to_string().contains("evil.example"), "{element}");
        }
    }
    let runs = &body[1]["inlines"];
    assert_eq!(runs[0]["type"], "TextRun");
    assert_eq!(runs[0]["text"], md.item.text.as_str());
    assert!(
        runs[1]["text"]
            .as_str()
            .expect("author")
            .contains("[admin]")
    );

    let pd = presets::pagerduty(&d, &f, "R0UTINGKEY");
    assert_shape(
        &pd,
        &fixture("pagerduty_events_v2.json"),
        &[
            ".routing_key: string",
            ".event_action: string",
            ".dedup_key: string",
            ".payload.summary: string",
            ".payload.source: string",
            ".payload.severity: string",
        ],
    );
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["dedup_key"], c.record.id);
    assert_eq!(pd["payload"]["severity"], "critical");
    assert!(
        pd["payload"]["summary"]
            .as_str()
            .expect("summary")
            .chars()
            .count()
            <= 1024
    );

    // The generic body the router posts (serialized without a Value) is
    // byte for byte presets::json's.
    let router = json_router("http://127.0.0.1:9/hook", "support");
    let posted = router.render(&d).expect("rendered");
    assert_eq!(
        posted,
        serde_json::to_vec(&presets::json(&d, &f)).expect("json")
    );

    // A link that is not http(s) is never posted.
    let mut evil = c.clone();
    evil.item.url = "javascript:alert(1)".to_owned();
    let f = tweet_fields(&evil.item);
    let d = delivery(&evil);
    for body in [
        presets::slack(&d, &f),
        presets::teams(&d, &f),
        presets::pagerduty(&d, &f, "k"),
    ] {
        assert!(!body.to_string().contains("javascript:"), "{body}");
    }
}

#[tokio::test]
async fn slack_errors_map_to_permanent_with_a_hint_and_429_is_retried() {
    let server = serve(
        |_, seen| match seen.path.as_str() {
            "/archived" => Answer::status(410).body("channel_is_archived"),
            "/removed" => Answer::status(404).body("no_service"),
            "/general" => Answer::status(403).body("posting_to_general_channel_denied"),
            "/payload" => Answer::status(400).body("invalid_payload"),
            "/busy" => Answer::status(429).header("retry-after", "30"),
            "/down" => Answer::status(500).body("rollup_error"),
            _ => Answer::status(200).body("ok"),
        },
        None,
    )
    .await;
    let mut builder = HttpRouter::builder().fields(tweet_fields);
    for path in [
        "archived", "removed", "general", "payload", "busy", "down", "ok",
    ] {
        builder = builder.route(
            path.to_owned(),
            Endpoint::slack(format!("{}/{path}", server.base)).no_rate_limit(),
        );
    }
    let router = builder
        .max_retry_after(Duration::from_secs(5))
        .build()
        .expect("router");
    let at = |route: &str| {
        let c = case("hello", route);
        let router = &router;
        async move { router.route(&delivery(&c)).await }
    };
    let receipt = at("ok").await.expect("ok");
    assert_eq!(receipt.message_id, None);
    for (route, hint) in [
        ("archived", "unarchive it"),
        ("removed", "create a new incoming webhook"),
        ("general", "use another channel's webhook"),
        ("payload", "invalid_payload"),
    ] {
        let err = at(route).await.expect_err(route);
        assert!(!err.is_retryable(), "{route}: {err}");
        assert!(err.to_string().contains(hint), "{route}: {err}");
    }
    let busy = at("busy").await.expect_err("429");
    assert!(busy.is_throttling());
    assert_eq!(busy.retry_after(), Some(Duration::from_secs(5)), "capped");
    assert!(at("down").await.expect_err("500").is_retryable());
    let posted = server.seen()[0].json();
    assert!(posted["blocks"].is_array(), "{posted}");
}

#[tokio::test]
async fn pagerduty_202_400_and_429() {
    let server = serve(
        |_, seen| {
            let event = seen.json();
            match event["payload"]["summary"].as_str().unwrap_or("") {
                s if s.contains("reject") => Answer::status(400).body(
                    r#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.severity' is invalid"]}"#,
                ),
                s if s.contains("flood") => Answer::status(429),
                _ => Answer::status(202).body(
                    json!({"status":"success","message":"Event processed","dedup_key": event["dedup_key"]})
                        .to_string(),
                ),
            }
        },
        None,
    )
    .await;
    let router = HttpRouter::builder()
        .fields(tweet_fields)
        .route(
            "outage",
            Endpoint::pagerduty("R0UTINGKEY-0123456789abcdef")
                .url(format!("{}/v2/enqueue", server.base)),
        )
        .build()
        .expect("router");
    let ok = case("site down", "outage");
    let receipt = router.route(&delivery(&ok)).await.expect("202");
    assert_eq!(receipt.message_id.as_deref(), Some(ok.record.id.as_str()));
    let sent = server.seen()[0].json();
    assert_eq!(sent["routing_key"], "R0UTINGKEY-0123456789abcdef");
    assert_eq!(sent["event_action"], "trigger");
    assert_eq!(sent["dedup_key"], ok.record.id);
    let err = router
        .route(&delivery(&case("reject me", "outage")))
        .await
        .expect_err("400");
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("PagerDuty refused the event"),
        "{err}"
    );
    assert!(err.to_string().contains("Event object is invalid"), "{err}");
    assert!(!err.to_string().contains("R0UTINGKEY"), "{err}");
    let err = router
        .route(&delivery(&case("flood", "outage")))
        .await
        .expect_err("429");
    assert!(err.is_throttling());
    assert!(!format!("{router:?}").contains("R0UTINGKEY"));
}

#[tokio::test]
async fn templates_fill_headers_and_bodies_without_breaking_json() {
    let server = serve(|_, _| Answer::status(200), None).await;
    let router = HttpRouter::builder()
        .fields(tweet_fields)
        .route(
            "oncall",
            Endpoint::json(format!("{}/hook", server.base))
                .header("X-Record", "{{id}}/{{route}}/{{label}}")
                .body_template(json!({"summary": "{{label}}: {{text}}", "score": "{{score}}", "by": ["{{author}}"]})),
        )
        .route(
            "custom",
            Endpoint::json(format!("{}/hook", server.base))
                .body_fn(|d, f| json!({"ticket": {"subject": d.prediction.label.as_str(), "body": f.text}})),
        )
        .build()
        .expect("router");
    let hostile = "\"}, \"admin\": true, \"x\": {\"y\": \" {{id}}";
    let c = case(hostile, "oncall");
    router.route(&delivery(&c)).await.expect("ok");
    let c2 = case(hostile, "custom");
    router.route(&delivery(&c2)).await.expect("ok");
    let seen = server.seen();
    let body = seen[0].json();
    assert_eq!(body["summary"], format!("actionable: {hostile}"));
    assert_eq!(body["score"], 0.9);
    assert_eq!(body["by"][0], "@ada");
    assert!(body.get("admin").is_none());
    assert_eq!(
        seen[0].header("x-record"),
        Some(format!("{}/oncall/actionable", c.record.id).as_str())
    );
    assert_eq!(seen[1].json()["ticket"]["body"], hostile);
}

// ---- the README's "What Slack receives" ---------------------------------

#[test]
fn readme_shows_exactly_what_slack_receives() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("## What Slack receives")
        .expect("a \"What Slack receives\" section in README.md");
    let section = &readme[start..];
    let block: String = section
        .lines()
        .skip_while(|l| !l.starts_with("```json"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n");
    let c = slack_case();
    let router = HttpRouter::builder()
        .fields(tweet_fields)
        .route(
            "support",
            Endpoint::slack("https://hooks.slack.com/services/T0/B0/XXXXXXXXXXXX"),
        )
        .build()
        .expect("router");
    let posted = router.render(&delivery(&c)).expect("rendered");
    let posted: Value = serde_json::from_slice(&posted).expect("JSON");
    // One block per line, as the README lays it out.
    let blocks: Vec<String> = posted["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| format!("    {b}"))
        .collect();
    let layout = format!(
        "{{\n  \"blocks\": [\n{}\n  ],\n  \"text\": {}\n}}",
        blocks.join(",\n"),
        posted["text"]
    );
    let shown: Value = serde_json::from_str(&block).unwrap_or_else(|e| {
        panic!("README.md's Slack block is not JSON ({e}); paste this:\n{layout}")
    });
    assert_eq!(
        shown, posted,
        "README.md's Slack JSON is stale; paste this:\n{layout}"
    );
    assert_eq!(
        block, layout,
        "README.md's Slack JSON: keep the one-block-per-line layout"
    );
}
