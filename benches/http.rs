//! What [`HttpRouter`] costs per notification (issue 15 §1): requests per
//! second against a loopback server that answers `200` at once, at
//! concurrency 1, 16 and 256, against a bare `reqwest` loop making the same
//! requests (same client settings, the same JSON body, `Content-Type` and
//! `Idempotency-Key` headers) in the same run. Goal: the router reaches at
//! least 0.9× the bare client's rate.
//!
//! The router does per delivery what the bare loop does not: look up the
//! route, call the fields extractor, build the body with serde_json, hash
//! the idempotency key, and read and classify the answer. The bare loop
//! posts a body serialized once, with a key computed once.
//!
//! The server runs on its own runtime and thread; the clients share one
//! current-thread runtime (each variant, one after the other). After the
//! criterion groups the bench prints a summary: the median rate of several
//! interleaved timed runs of each variant, and the ratio.
//!
//! ```text
//! cargo bench --bench http --features http             # full run
//! cargo bench --bench http --features http -- --quick  # criterion's quick mode; the summary runs too
//! ```

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use streamsift::http::{Endpoint, Fields, HttpRouter, idempotency_key, presets};
use streamsift::testing::router::Case;
use streamsift::{Delivery, Router};

const CONCURRENCY: [usize; 3] = [1, 16, 256];
const TARGET_RATIO: f64 = 0.9;

/// A webhook that drains the body and answers 200 with no body, at once.
fn start_server() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send the address");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    let addr = rx.recv().expect("the server's address");
    format!("http://{addr}/hook")
}

struct Setup {
    router: HttpRouter<String>,
    bare: reqwest::Client,
    url: String,
    cases: Vec<Case<String>>,
    /// The body and key the bare loop sends (what the router builds for case 0).
    body: Bytes,
    key: String,
}

fn setup(url: String, n: usize) -> Setup {
    let router = HttpRouter::builder()
        .fields(|t: &String| Fields::new(t.as_str()).author("@ada"))
        .route("oncall", Endpoint::json(&url))
        .build()
        .expect("router");
    // The same client settings as the router's.
    let bare = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let cases: Vec<Case<String>> = (0..n)
        .map(|i| {
            Case::new(
                format!("my order #{i} never arrived, please help"),
                "oncall",
            )
        })
        .collect();
    let c = &cases[0];
    let d = delivery(c);
    let body = serde_json::to_vec(&presets::json(
        &d,
        &Fields::new(c.item.as_str()).author("@ada"),
    ))
    .expect("json");
    let key = idempotency_key(&c.record.id, "oncall");
    Setup {
        router,
        bare,
        url,
        cases,
        body: Bytes::from(body),
        key,
    }
}

fn delivery(c: &Case<String>) -> Delivery<'_, String> {
    Delivery {
        item: &c.item,
        record: &c.record,
        prediction: &c.prediction,
        route: &c.route,
    }
}

async fn through_router(s: &Setup, concurrency: usize) {
    let ok = futures::stream::iter(&s.cases)
        .map(|c| async move { s.router.route(&delivery(c)).await.is_ok() })
        .buffer_unordered(concurrency)
        .fold(0usize, |n, ok| async move { n + usize::from(ok) })
        .await;
    assert_eq!(ok, s.cases.len(), "every request delivered");
}

async fn through_bare(s: &Setup, concurrency: usize) {
    let ok = futures::stream::iter(&s.cases)
        .map(|_| async move {
            let answer = s
                .bare
                .post(&s.url)
                .header("content-type", "application/json")
                .header("idempotency-key", &s.key)
                .body(s.body.clone())
                .send()
                .await;
            match answer {
                Ok(a) => a.status().is_success() && a.bytes().await.is_ok(),
                Err(_) => false,
            }
        })
        .buffer_unordered(concurrency)
        .fold(0usize, |n, ok| async move { n + usize::from(ok) })
        .await;
    assert_eq!(ok, s.cases.len(), "every request delivered");
}

fn bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, s: &Setup) {
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(s.cases.len() as u64));
    group.sample_size(10);
    for concurrency in CONCURRENCY {
        group.bench_with_input(
            BenchmarkId::new("bare_reqwest", concurrency),
            &concurrency,
            |b, &k| b.to_async(rt).iter(|| through_bare(s, k)),
        );
        group.bench_with_input(
            BenchmarkId::new("http_router", concurrency),
            &concurrency,
            |b, &k| b.to_async(rt).iter(|| through_router(s, k)),
        );
    }
    group.finish();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn summarize(rt: &tokio::runtime::Runtime, s: &Setup, reps: usize) {
    println!();
    println!(
        "HttpRouter against a bare reqwest loop, {} requests per run, median of {reps} \
         interleaved runs (requests/s):",
        s.cases.len()
    );
    println!("  concurrency | bare reqwest | HttpRouter | ratio | target >= {TARGET_RATIO}");
    for concurrency in CONCURRENCY {
        let (mut bare, mut router) = (Vec::new(), Vec::new());
        // Warm the connection pool for this concurrency first.
        rt.block_on(through_bare(s, concurrency));
        rt.block_on(through_router(s, concurrency));
        for _ in 0..reps {
            let t = Instant::now();
            rt.block_on(through_bare(s, concurrency));
            bare.push(s.cases.len() as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            rt.block_on(through_router(s, concurrency));
            router.push(s.cases.len() as f64 / t.elapsed().as_secs_f64());
        }
        let (b, r) = (median(bare), median(router));
        let ratio = r / b;
        println!(
            "  {concurrency:>11} | {b:>12.0} | {r:>10.0} | {ratio:>5.2} | {}",
            if ratio >= TARGET_RATIO {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}

/// Criterion's own rule: test mode unless run with `--bench`, or with `--test`.
fn test_mode(args: &[String]) -> bool {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--test") || !has("--bench")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let test = test_mode(&args);
    let listing = args.iter().any(|a| a == "--list");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let n = if test { 64 } else { 2_000 };
    let s = setup(start_server(), n);
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &rt, &s);
    criterion.final_summary();
    if listing {
        return;
    }
    if test {
        println!(
            "(test mode: few requests and maybe an unoptimized build; the figures need `cargo bench`)"
        );
    }
    summarize(&rt, &s, if test { 1 } else { 7 });
}
