//! AmazonMlClassifier at the HTTP layer. Amazon ML has no emulator, so a
//! scripted HTTP client answers the real SDK's requests (GetMLModel,
//! Predict) and records what it was sent: the host, the operation and the
//! JSON body.
#![cfg(feature = "machine-learning")]

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_machinelearning::Client;
use aws_sdk_machinelearning::config::retry::RetryConfig;
use aws_sdk_machinelearning::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use streamsift::fakes::{MemorySource, RecordingRouter};
use streamsift::machine_learning::{
    AmazonMlClassifier, ConnectError, MAX_OBSERVATION_BYTES, ModelKind, RateLimiter,
};
use streamsift::{Classifier, MemoryDeadLetter, Pipeline, Policy, RetryPolicy};
use tokio::time::Instant;

const MODEL: &str = "ml-TestModel0001";
const REGIONAL_HOST: &str = "machinelearning.us-east-1.amazonaws.com";
const REALTIME: &str = "https://realtime.machinelearning.us-east-1.amazonaws.com";
const REALTIME_HOST: &str = "realtime.machinelearning.us-east-1.amazonaws.com";
const SECRET: &str = "wJalrXUtnFEMI-test-secret-never-printed";

// ---------------------------------------------------------------------------
// The scripted HTTP client
// ---------------------------------------------------------------------------

/// One scripted HTTP answer.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Answer {
            status: 200,
            body: body.to_string(),
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        Answer {
            status,
            body: json!({"__type": code, "message": message}).to_string(),
        }
    }
}

/// One request the SDK sent.
#[derive(Clone, Debug)]
struct Seen {
    op: String,
    host: String,
    body: Value,
    at: Instant,
}

type Responder = Arc<dyn Fn(&str, &Value) -> Answer + Send + Sync>;

#[derive(Default)]
struct State {
    calls: Vec<Seen>,
    queued: HashMap<String, VecDeque<Answer>>,
}

/// Answers each request from a per-operation queue first, then from a
/// responder that sees the operation and the JSON body. Records every call.
#[derive(Clone)]
struct Scripted {
    state: Arc<Mutex<State>>,
    responder: Responder,
}

impl fmt::Debug for Scripted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scripted")
    }
}

impl Scripted {
    fn new(responder: impl Fn(&str, &Value) -> Answer + Send + Sync + 'static) -> Self {
        Scripted {
            state: Arc::default(),
            responder: Arc::new(responder),
        }
    }

    /// The next call of `op` gets `answer` (before the responder).
    fn queue(&self, op: &str, answer: Answer) {
        self.state
            .lock()
            .unwrap()
            .queued
            .entry(op.to_string())
            .or_default()
            .push_back(answer);
    }

    fn calls_of(&self, op: &str) -> Vec<Seen> {
        let st = self.state.lock().unwrap();
        st.calls.iter().filter(|c| c.op == op).cloned().collect()
    }
}

impl HttpClient for Scripted {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

fn host_of(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or("").to_string()
}

impl HttpConnector for Scripted {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let op = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("")
            .to_string();
        let body: Value = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let queued = {
            let mut st = self.state.lock().unwrap();
            st.calls.push(Seen {
                op: op.clone(),
                host: host_of(request.uri()),
                body: body.clone(),
                at: Instant::now(),
            });
            st.queued.get_mut(&op).and_then(VecDeque::pop_front)
        };
        let answer = queued.unwrap_or_else(|| (self.responder)(&op, &body));
        let mut resp = HttpResponse::new(
            StatusCode::try_from(answer.status).expect("valid status"),
            SdkBody::from(answer.body),
        );
        resp.headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        resp.headers_mut().insert("x-amzn-requestid", "scripted");
        HttpConnectorFuture::ready(Ok(resp))
    }
}

fn client(http: &Scripted) -> Client {
    let config = aws_sdk_machinelearning::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTESTONLY", SECRET, None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .http_client(http.clone())
        .build();
    Client::from_conf(config)
}

// ---------------------------------------------------------------------------
// Scripted Amazon ML answers
// ---------------------------------------------------------------------------

fn model(kind: &str, status: &str, endpoint: Option<(&str, Option<&str>)>) -> Value {
    let mut v = json!({
        "MLModelId": MODEL,
        "Name": "support tweets",
        "Status": status,
        "MLModelType": kind,
        "ScoreThreshold": 0.5,
    });
    if let Some((endpoint_status, url)) = endpoint {
        let mut info = json!({"EndpointStatus": endpoint_status, "PeakRequestsPerSecond": 200});
        if let Some(url) = url {
            info["EndpointUrl"] = json!(url);
        }
        v["EndpointInfo"] = info;
    }
    v
}

fn ready(kind: &str) -> Value {
    model(kind, "COMPLETED", Some(("READY", Some(REALTIME))))
}

fn binary_answer(score: f64) -> Answer {
    let label = if score >= 0.5 { "1" } else { "0" };
    Answer::ok(json!({"Prediction": {
        "predictedLabel": label,
        "predictedScores": {label: score},
        "details": {"PredictiveModelType": "BINARY", "Algorithm": "SGD"}
    }}))
}

/// A stand-in model: tweets saying "down" or "refund" are actionable.
fn binary_model(record: &Value) -> Answer {
    let text = record["Record"]["text"].as_str().unwrap_or("");
    let score = if text.contains("down") || text.contains("refund") {
        0.875
    } else {
        0.125
    };
    binary_answer(score)
}

/// Scripted Amazon ML with a READY model of `kind` and a Predict that
/// follows `predict`.
fn amazon_ml(kind: &'static str, predict: fn(&Value) -> Answer) -> Scripted {
    Scripted::new(move |op, body| match op {
        "GetMLModel" => Answer::ok(ready(kind)),
        "Predict" => predict(body),
        _ => Answer::error(400, "InvalidAction", "not scripted"),
    })
}

// ---------------------------------------------------------------------------
// Items
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
struct User {
    screen_name: String,
    followers: u64,
    verified: bool,
    location: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Tweet {
    id: u64,
    text: String,
    user: User,
    in_reply_to: Option<u64>,
    hashtags: Vec<String>,
    sentiment: f64,
}

fn tweet(id: u64, text: &str) -> Tweet {
    Tweet {
        id,
        text: text.to_string(),
        user: User {
            screen_name: format!("user{id}"),
            followers: 10 * id,
            verified: id.is_multiple_of(2),
            location: None,
        },
        in_reply_to: None,
        hashtags: vec!["support".into(), "help".into()],
        sentiment: -0.25,
    }
}

async fn binary_classifier(http: &Scripted) -> AmazonMlClassifier<Tweet> {
    AmazonMlClassifier::<Tweet>::builder_from_client(client(http), MODEL)
        .labels("actionable", "noise")
        .build()
        .await
        .expect("connect")
}

// ---------------------------------------------------------------------------
// Start-up: endpoint discovery
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ready_endpoint_is_discovered_and_predict_goes_there() {
    let http = amazon_ml("BINARY", binary_model);
    let c = binary_classifier(&http).await;
    assert_eq!(c.endpoint(), REALTIME);
    assert_eq!(c.kind(), ModelKind::Binary);
    assert_eq!(c.model_id(), MODEL);
    assert_eq!(c.score_threshold(), Some(0.5));
    assert_eq!(c.peak_requests_per_second(), Some(200));
    assert_eq!(c.rate_limiter().map(RateLimiter::per_second), Some(200));

    let p = c
        .classify(&tweet(1, "site is down again"))
        .await
        .expect("predict");
    assert_eq!(p.label, "actionable");
    assert_eq!(p.positive_score, Some(0.875));
    assert_eq!(p.score("noise"), Some(0.125));

    let get = http.calls_of("GetMLModel");
    assert_eq!(get.len(), 1);
    assert_eq!(
        get[0].host, REGIONAL_HOST,
        "GetMLModel uses the client's endpoint"
    );
    assert_eq!(get[0].body, json!({"MLModelId": MODEL}));
    let predict = http.calls_of("Predict");
    assert_eq!(predict.len(), 1);
    assert_eq!(
        predict[0].host, REALTIME_HOST,
        "Predict goes to the model's realtime endpoint, not the regional one"
    );
    assert_eq!(predict[0].body["MLModelId"], MODEL);
    assert_eq!(predict[0].body["PredictEndpoint"], REALTIME);
}

#[tokio::test]
async fn endpoint_url_without_scheme_gets_https() {
    let http = Scripted::new(|op, body| match op {
        "GetMLModel" => Answer::ok(model(
            "BINARY",
            "COMPLETED",
            Some(("READY", Some("ml-endpoint.example.internal:8443"))),
        )),
        _ => binary_model(body),
    });
    let c = binary_classifier(&http).await;
    assert_eq!(c.endpoint(), "https://ml-endpoint.example.internal:8443");
    c.classify(&tweet(1, "x")).await.expect("predict");
    assert_eq!(
        http.calls_of("Predict")[0].host,
        "ml-endpoint.example.internal:8443"
    );
}

async fn connect_err(get_ml_model: Answer) -> (ConnectError, Scripted) {
    let http = Scripted::new(|_, body| binary_model(body));
    http.queue("GetMLModel", get_ml_model);
    let err = AmazonMlClassifier::<Tweet>::builder_from_client(client(&http), MODEL)
        .build()
        .await
        .expect_err("start-up should fail");
    (err, http)
}

#[tokio::test]
async fn endpoint_none_says_create_one() {
    let (err, http) = connect_err(Answer::ok(model(
        "BINARY",
        "COMPLETED",
        Some(("NONE", None)),
    )))
    .await;
    assert!(
        matches!(&err, ConnectError::EndpointNotReady { status, .. } if status == "NONE"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("CreateRealtimeEndpoint"), "{text}");
    assert!(text.contains(MODEL), "{text}");
    assert!(!err.is_retryable());
    assert!(http.calls_of("Predict").is_empty());

    // No EndpointInfo at all reads as NONE too.
    let (err, _) = connect_err(Answer::ok(model("BINARY", "COMPLETED", None))).await;
    assert!(matches!(&err, ConnectError::EndpointNotReady { status, .. } if status == "NONE"));
}

#[tokio::test]
async fn endpoint_updating_says_wait_and_is_retryable() {
    let (err, http) = connect_err(Answer::ok(model(
        "BINARY",
        "COMPLETED",
        Some(("UPDATING", Some(REALTIME))),
    )))
    .await;
    assert!(
        matches!(&err, ConnectError::EndpointNotReady { status, .. } if status == "UPDATING"),
        "{err:?}"
    );
    assert!(err.to_string().contains("wait until"), "{err}");
    assert!(err.is_retryable());
    assert!(http.calls_of("Predict").is_empty());
}

#[tokio::test]
async fn other_start_up_failures_are_clear() {
    let (err, _) = connect_err(Answer::ok(model(
        "BINARY",
        "COMPLETED",
        Some(("FAILED", Some(REALTIME))),
    )))
    .await;
    assert!(err.to_string().contains("DeleteRealtimeEndpoint"), "{err}");

    let (err, _) = connect_err(Answer::ok(model(
        "BINARY",
        "INPROGRESS",
        Some(("NONE", None)),
    )))
    .await;
    assert!(matches!(&err, ConnectError::ModelNotReady { status, .. } if status == "INPROGRESS"));
    assert!(err.to_string().contains("expected COMPLETED"), "{err}");
    assert!(err.is_retryable());

    let (err, _) = connect_err(Answer::ok(ready("REGRESSION"))).await;
    assert!(matches!(err, ConnectError::Regression { .. }), "{err:?}");
    assert!(err.to_string().contains("BINARY or MULTICLASS"), "{err}");

    let (err, _) = connect_err(Answer::ok(model(
        "BINARY",
        "COMPLETED",
        Some(("READY", None)),
    )))
    .await;
    assert!(matches!(err, ConnectError::NoEndpointUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn missing_model_is_model_not_found() {
    let (err, _) = connect_err(Answer::error(
        400,
        "ResourceNotFoundException",
        "No MLModel with id ml-TestModel0001 exists",
    ))
    .await;
    assert!(matches!(err, ConnectError::ModelNotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("check the model ID, the region"), "{text}");
    assert!(text.contains("No MLModel with id"), "{text}");
    assert!(std::error::Error::source(&err).is_some(), "SDK error kept");
    assert!(!err.is_retryable());
}

/// Issue 14 §5: a GetMLModel outage at start-up is retried, within the
/// start-up timeout: a passing outage costs a retry, a lasting one ends in
/// `StartupTimeout` (it was a `Call` error at the first 500 before).
#[tokio::test(start_paused = true)]
async fn get_ml_model_outage_is_retried_until_the_startup_timeout() {
    let http = amazon_ml("BINARY", binary_model);
    http.queue(
        "GetMLModel",
        Answer::error(500, "InternalServerException", "oops"),
    );
    let c = AmazonMlClassifier::<Tweet>::builder_from_client(client(&http), MODEL)
        .build()
        .await
        .expect("a passing outage is retried");
    assert_eq!(c.model_id(), MODEL);
    assert_eq!(http.calls_of("GetMLModel").len(), 2);

    let down = Scripted::new(|_, _| Answer::error(503, "ServiceUnavailable", "down"));
    let started = Instant::now();
    let err = AmazonMlClassifier::<Tweet>::builder_from_client(client(&down), MODEL)
        .startup_timeout(Duration::from_secs(4))
        .build()
        .await
        .expect_err("a lasting outage fails the start-up");
    assert_eq!(started.elapsed(), Duration::from_secs(4));
    assert!(
        matches!(&err, ConnectError::StartupTimeout { after, last: Some(last), .. }
            if *after == Duration::from_secs(4) && last.has_code("ServiceUnavailable")),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        err.to_string().starts_with("check the endpoint URL"),
        "{err}"
    );
}

/// Issue 14 §5: an endpoint nothing listens on fails the start-up within
/// the start-up timeout. A closed port on loopback; time paused.
#[tokio::test(start_paused = true)]
async fn an_unreachable_endpoint_fails_within_the_startup_timeout() {
    let port = common::moto::free_port();
    let config = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "AKIDTESTONLY",
                SECRET,
                None,
                None,
                "test",
            )),
        )
        .build();
    let started = Instant::now();
    let err = AmazonMlClassifier::<Tweet>::builder(&config, MODEL)
        .startup_timeout(Duration::from_secs(6))
        .build()
        .await
        .expect_err("nothing listens there");
    assert_eq!(started.elapsed(), Duration::from_secs(6));
    assert!(
        matches!(err, ConnectError::StartupTimeout { .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------
// Predict
// ---------------------------------------------------------------------------

#[tokio::test]
async fn record_is_the_flattened_json_of_the_item() {
    let http = amazon_ml("BINARY", binary_model);
    let c = binary_classifier(&http).await;
    let mut t = tweet(4, "refund please");
    t.in_reply_to = None;
    t.user.location = None;
    c.classify(&t).await.expect("predict");
    let record: BTreeMap<String, String> =
        serde_json::from_value(http.calls_of("Predict")[0].body["Record"].clone())
            .expect("Record is a map of strings");
    let expected: BTreeMap<String, String> = [
        ("id", "4"),
        ("text", "refund please"),
        ("user.screen_name", "user4"),
        ("user.followers", "40"),
        ("user.verified", "true"),
        ("hashtags.0", "support"),
        ("hashtags.1", "help"),
        ("sentiment", "-0.25"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(record, expected, "nulls left out, never \"None\"");
}

#[tokio::test]
async fn a_record_fn_replaces_the_mapping() {
    let http = amazon_ml("BINARY", binary_model);
    let c = AmazonMlClassifier::<String>::builder_from_client(client(&http), MODEL)
        .record_fn(|t: &String| HashMap::from([("text".to_string(), t.clone())]))
        .build()
        .await
        .expect("connect");
    let p = c.classify(&"server down".to_string()).await.unwrap();
    assert_eq!(p.label, "1", "default binary labels are Amazon ML's own");
    assert_eq!(
        http.calls_of("Predict")[0].body["Record"],
        json!({"text": "server down"})
    );
}

#[tokio::test]
async fn multiclass_prediction_keeps_every_score() {
    let http = amazon_ml("MULTICLASS", |_| {
        Answer::ok(json!({"Prediction": {
            "predictedLabel": "billing",
            "predictedScores": {"billing": 0.625, "outage": 0.25, "other": 0.125},
            "details": {"PredictiveModelType": "MULTICLASS", "Algorithm": "SGD"}
        }}))
    });
    let c = binary_classifier(&http).await;
    assert_eq!(c.kind(), ModelKind::Multiclass);
    let p = c.classify(&tweet(2, "charged twice")).await.unwrap();
    assert_eq!(p.label, "billing");
    assert_eq!(p.positive_score, None);
    let scores: Vec<(&str, f64)> = p.scores.iter().map(|(l, s)| (l.as_str(), *s)).collect();
    assert_eq!(
        scores,
        vec![("billing", 0.625), ("other", 0.125), ("outage", 0.25)]
    );
}

#[tokio::test]
async fn throttling_is_retryable_and_the_next_call_succeeds() {
    let http = amazon_ml("BINARY", binary_model);
    let c = binary_classifier(&http).await;
    http.queue(
        "Predict",
        Answer::error(
            400,
            "LimitExceededException",
            "Rate exceeded for the realtime endpoint",
        ),
    );
    let t = tweet(1, "down");
    let err = c.classify(&t).await.expect_err("throttled");
    assert!(err.is_throttling() && err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("max_requests_per_second"), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "SDK error kept as source"
    );
    assert_eq!(
        http.calls_of("Predict").len(),
        1,
        "the SDK did not retry on its own"
    );
    let p = c.classify(&t).await.expect("second call succeeds");
    assert_eq!(p.label, "actionable");
    assert_eq!(http.calls_of("Predict").len(), 2);
}

#[tokio::test]
async fn service_errors_map_to_retryable_or_permanent_with_advice() {
    let http = amazon_ml("BINARY", binary_model);
    let c = binary_classifier(&http).await;
    let cases: [(u16, &str, bool, &str); 6] = [
        (
            500,
            "InternalServerException",
            true,
            "InternalServerException",
        ),
        (503, "ServiceUnavailable", true, "HTTP 503"),
        (400, "PredictorNotMountedException", true, "not mounted"),
        (
            400,
            "ResourceNotFoundException",
            false,
            "may have been deleted",
        ),
        (
            400,
            "InvalidInputException",
            false,
            "schema attribute names",
        ),
        (
            400,
            "AccessDeniedException",
            false,
            "machinelearning:Predict",
        ),
    ];
    for (status, code, retryable, advice) in cases {
        http.queue("Predict", Answer::error(status, code, "scripted"));
        let err = c.classify(&tweet(1, "x")).await.expect_err(code);
        assert_eq!(err.is_retryable(), retryable, "{code}: {err}");
        assert!(!err.is_throttling(), "{code}");
        assert!(err.to_string().contains(advice), "{code}: {err}");
        assert!(err.to_string().contains(MODEL), "{code}: {err}");
    }
}

#[tokio::test]
async fn a_regression_answer_is_a_permanent_error() {
    let http = amazon_ml("BINARY", |_| {
        Answer::ok(json!({"Prediction": {
            "predictedValue": 3.5,
            "details": {"PredictiveModelType": "REGRESSION"}
        }}))
    });
    let c = binary_classifier(&http).await;
    let err = c.classify(&tweet(1, "x")).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("REGRESSION"), "{err}");
}

#[tokio::test]
async fn observations_over_100_kb_fail_before_sending() {
    let http = amazon_ml("BINARY", binary_model);
    let c = binary_classifier(&http).await;
    let big = tweet(1, &"x".repeat(MAX_OBSERVATION_BYTES));
    let err = c.classify(&big).await.expect_err("too big");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("100 KB") && text.contains("record mapping"),
        "{text}"
    );
    assert!(http.calls_of("Predict").is_empty(), "nothing was sent");

    // Just under the limit goes out.
    let base = c.record(&tweet(1, "")).unwrap();
    let room = MAX_OBSERVATION_BYTES - streamsift::machine_learning::observation_size(&base);
    let fits = tweet(1, &"x".repeat(room));
    assert_eq!(
        streamsift::machine_learning::observation_size(&c.record(&fits).unwrap()),
        MAX_OBSERVATION_BYTES
    );
    c.classify(&fits).await.expect("exactly 100 KB is allowed");
    assert_eq!(http.calls_of("Predict").len(), 1);
    let over = tweet(1, &"x".repeat(room + 1));
    assert!(c.classify(&over).await.is_err());
    assert_eq!(http.calls_of("Predict").len(), 1);
}

#[tokio::test]
async fn debug_output_has_no_credentials() {
    let http = amazon_ml("BINARY", binary_model);
    let c = binary_classifier(&http).await;
    let text = format!("{c:?}");
    assert!(text.contains(MODEL) && text.contains(REALTIME), "{text}");
    assert!(
        !text.contains(SECRET) && !text.contains("AKIDTESTONLY"),
        "{text}"
    );
    let builder = AmazonMlClassifier::<Tweet>::builder_from_client(client(&http), MODEL);
    let text = format!("{builder:?}");
    assert!(
        !text.contains(SECRET) && !text.contains("AKIDTESTONLY"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Rate limit, through the real SDK, on a paused clock
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn predict_calls_are_paced_by_the_rate_limit() {
    let http = amazon_ml("BINARY", binary_model);
    let c = AmazonMlClassifier::<Tweet>::builder_from_client(client(&http), MODEL)
        .max_requests_per_second(NonZeroU32::new(20).unwrap())
        .build()
        .await
        .expect("connect");
    assert_eq!(c.rate_limiter().map(RateLimiter::burst), Some(2));
    let items: Vec<Tweet> = (0..60).map(|i| tweet(i, "hello")).collect();
    let t0 = Instant::now();
    let results = futures::future::join_all(items.iter().map(|t| c.classify(t))).await;
    assert!(results.iter().all(Result::is_ok));
    let mut at: Vec<Duration> = http.calls_of("Predict").iter().map(|s| s.at - t0).collect();
    at.sort();
    assert_eq!(at.len(), 60);
    // Two at once, then one every 50 ms: the 60th at 58 × 50 ms.
    assert_eq!(at[1], Duration::ZERO);
    assert_eq!(at[2], Duration::from_millis(50));
    assert_eq!(at[59], Duration::from_millis(58 * 50));
    for (i, start) in at.iter().enumerate() {
        let in_second = at[i..]
            .iter()
            .take_while(|d| **d < *start + Duration::from_secs(1))
            .count();
        assert!(in_second <= 22, "{in_second} calls within 1 s of {start:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_default_rate_is_the_endpoints_peak() {
    let http = Scripted::new(|op, body| match op {
        "GetMLModel" => {
            let mut m = ready("BINARY");
            m["EndpointInfo"]["PeakRequestsPerSecond"] = json!(50);
            Answer::ok(m)
        }
        _ => binary_model(body),
    });
    let c = binary_classifier(&http).await;
    assert_eq!(c.rate_limiter().map(RateLimiter::per_second), Some(50));
    let shared = RateLimiter::new(NonZeroU32::new(7).unwrap());
    let c2 = AmazonMlClassifier::<Tweet>::builder_from_client(client(&http), MODEL)
        .rate_limiter(shared.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(c2.rate_limiter().map(RateLimiter::per_second), Some(7));
    let c3 = AmazonMlClassifier::<Tweet>::builder_from_client(client(&http), MODEL)
        .no_rate_limit()
        .build()
        .await
        .unwrap();
    assert!(c3.rate_limiter().is_none());
}

// ---------------------------------------------------------------------------
// Conformance and the pipeline
// ---------------------------------------------------------------------------

#[tokio::test]
async fn classifier_conformance_over_scripted_amazon_ml() {
    let http = amazon_ml("BINARY", binary_model);
    let c = binary_classifier(&http).await;
    let items: Vec<Tweet> = [
        "our site is down",
        "thanks, great service",
        "I want a refund",
        "lovely weather",
        "down for an hour now",
        "just saying hi",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| tweet(i as u64, t))
    .collect();
    let predictions =
        streamsift::testing::classifier::conformance(&c, &items, &["actionable", "noise"]).await;
    let labels: Vec<&str> = predictions.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "actionable",
            "noise",
            "actionable",
            "noise",
            "actionable",
            "noise"
        ]
    );
    // classify, concurrent classify and classify_batch: 3 rounds of 6.
    assert_eq!(http.calls_of("Predict").len(), 18);
}

#[tokio::test(start_paused = true)]
async fn pipeline_retries_a_throttled_predict_and_routes_the_tweet() {
    let http = amazon_ml("BINARY", binary_model);
    http.queue(
        "Predict",
        Answer::error(400, "LimitExceededException", "Rate exceeded"),
    );
    let c = binary_classifier(&http).await;
    let payloads: Vec<String> = [tweet(1, "site down"), tweet(2, "hello")]
        .iter()
        .map(|t| serde_json::to_string(t).unwrap())
        .collect();
    let router = RecordingRouter::new();
    let dead = MemoryDeadLetter::new();
    let report = Pipeline::new(MemorySource::from_payloads(1, payloads))
        .json::<Tweet>()
        .classify(c)
        .policy(Policy::binary(0.5, "support"))
        .route(router.clone())
        .dead_letter(dead.clone())
        .max_in_flight(1)
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            multiplier: 2.0,
        })
        .run()
        .await
        .expect("run");
    assert_eq!(report.stats.routed, 1);
    assert_eq!(report.stats.discarded, 1);
    assert_eq!(report.stats.dead_lettered, 0);
    assert_eq!(report.stats.retries, 1);
    assert_eq!(report.stats.throttled, 1);
    assert_eq!(router.deliveries()[0].item.id, 1);
    assert_eq!(http.calls_of("Predict").len(), 3);
}

#[tokio::test]
async fn permanent_predict_errors_are_dead_lettered_not_retried() {
    let http = amazon_ml("BINARY", binary_model);
    http.queue(
        "Predict",
        Answer::error(400, "InvalidInputException", "Unknown attribute foo"),
    );
    let c = binary_classifier(&http).await;
    let payload = serde_json::to_string(&tweet(1, "site down")).unwrap();
    let dead = MemoryDeadLetter::new();
    let report = Pipeline::new(MemorySource::from_payloads(1, vec![payload]))
        .json::<Tweet>()
        .classify(c)
        .policy(Policy::binary(0.5, "support"))
        .route(RecordingRouter::new())
        .dead_letter(dead.clone())
        .run()
        .await
        .expect("run");
    assert_eq!(report.stats.dead_lettered, 1);
    assert_eq!(report.stats.retries, 0);
    assert_eq!(http.calls_of("Predict").len(), 1);
    let entries = dead.entries();
    assert_eq!(entries[0].stage.as_str(), "classify");
    assert!(
        entries[0].reason.contains("Unknown attribute foo"),
        "{}",
        entries[0].reason
    );
}
