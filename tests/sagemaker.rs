//! SageMakerClassifier against moto's sagemaker-runtime over loopback, with
//! a recording (and, for errors, scripting) HTTP client in front of it.
//!
//! moto answers `InvokeEndpoint` from a queue of results posted to
//! `/moto-api/static/sagemaker/endpoint-results`. The queue is per account
//! and region, not per endpoint: each request with a body (and `Accept`)
//! moto has not seen on that endpoint takes the next queued result, and a
//! request it has seen gets the same result again. The tests queue results
//! in the order their calls are made, and keep calls in a known order where
//! several are queued (concurrency 1).
#![cfg(feature = "sagemaker")]

mod common;

use std::error::Error as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_sdk_sagemakerruntime::Client;
use aws_sdk_sagemakerruntime::error::SdkError;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use common::faulty_http::{Fault, FaultyHttp};
use common::moto::Moto;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use streamsift::fakes::{MemorySource, RecordingRouter};
use streamsift::sagemaker::{JsonResponse, SageMakerClassifier};
use streamsift::testing::classifier::conformance as classifier_conformance;
use streamsift::{Classifier, ClassifyError, MemoryDeadLetter, Pipeline, Policy, Prediction};
use tokio::time::Instant;

const ENDPOINT: &str = "tweet-triage";

#[derive(Clone, Debug, Deserialize, Serialize)]
struct Tweet {
    id: u64,
    text: String,
    followers: u32,
}

fn tweets(n: u64) -> Vec<Tweet> {
    (1..=n)
        .map(|id| Tweet {
            id,
            text: format!("tweet number {id}, about my order"),
            followers: (id * 10) as u32,
        })
        .collect()
}

/// Queues `bodies` (JSON answers) as moto's next InvokeEndpoint results.
fn queue_results(moto: &Moto, bodies: &[Value]) {
    let results: Vec<Value> = bodies
        .iter()
        .map(|b| json!({"Body": b.to_string(), "ContentType": "application/json"}))
        .collect();
    let payload = json!({ "results": results }).to_string();
    let port: u16 = moto
        .endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("moto endpoint has a port");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to moto");
    write!(
        stream,
        "POST /moto-api/static/sagemaker/endpoint-results HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        payload.len(),
        payload
    )
    .expect("send results");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read answer");
    assert!(
        answer.starts_with("HTTP/1.1 201") || answer.starts_with("HTTP/1.0 201"),
        "moto refused the results: {answer}"
    );
}

/// A client whose calls go through a [`FaultyHttp`] to moto, with the SDK's
/// own retries off so each scripted answer reaches the classifier.
async fn moto_client(moto: &Moto, faults: Vec<Fault>) -> (Client, FaultyHttp) {
    let http = FaultyHttp::new(aws_smithy_http_client::Builder::new().build_http(), faults);
    let config = moto
        .sdk_config()
        .await
        .into_builder()
        .http_client(http.clone())
        .retry_config(RetryConfig::disabled())
        .build();
    (Client::new(&config), http)
}

fn fault(nth: usize, status: u16, code: &'static str, body: Option<Value>) -> Fault {
    Fault {
        op: "InvokeEndpoint",
        nth,
        status,
        code,
        body: body.map(|b| b.to_string()),
    }
}

fn binary() -> JsonResponse {
    JsonResponse::new().binary_labels("actionable", "noise")
}

#[tokio::test]
async fn json_single_and_batch_calls_map_predictions_and_send_json() {
    let moto = Moto::start();
    queue_results(
        &moto,
        &[
            json!({"label": "actionable", "scores": {"actionable": 0.9, "noise": 0.1}}),
            json!({"predictions": [0.2, 0.7, 0.4]}),
        ],
    );
    let (client, http) = moto_client(&moto, vec![]).await;
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .response(binary())
        .max_batch_size(3)
        .build();
    let items = tweets(4);

    let one = classifier.classify(&items[0]).await.expect("classify");
    assert_eq!(one.label, "actionable");
    assert_eq!(one.score("noise"), Some(0.1));
    assert_eq!(one.positive_score, Some(0.9));

    let refs: Vec<&Tweet> = items[1..].iter().collect();
    let batch: Vec<Prediction> = classifier
        .classify_batch(&refs)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("batch");
    assert_eq!(
        batch,
        vec![
            Prediction::binary("actionable", "noise", 0.2),
            Prediction::binary("actionable", "noise", 0.7),
            Prediction::binary("actionable", "noise", 0.4),
        ]
    );
    assert_eq!(batch[1].label, "actionable");

    // What the SDK sent: one call per request, JSON of the item, then the
    // batch as {"instances":[…]}, to the endpoint's invocations path.
    let calls = http.calls_of("InvokeEndpoint");
    assert_eq!(calls.len(), 2, "one call for the item, one for the batch");
    for call in &calls {
        assert!(
            call.uri
                .ends_with(&format!("/endpoints/{ENDPOINT}/invocations")),
            "{}",
            call.uri
        );
        assert_eq!(call.header("content-type"), Some("application/json"));
        assert_eq!(call.header("accept"), Some("application/json"));
    }
    let sent: Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(sent, serde_json::to_value(&items[0]).unwrap());
    let sent: Value = serde_json::from_str(&calls[1].body).unwrap();
    assert_eq!(sent, json!({ "instances": &items[1..] }));
}

#[tokio::test]
async fn csv_requests_in_chunks_with_class_probabilities() {
    let moto = Moto::start();
    queue_results(
        &moto,
        &[
            json!({"predictions": [[0.1, 0.8, 0.1], [0.6, 0.3, 0.1]]}),
            json!({"predictions": [[0.2, 0.2, 0.6], [0.3, 0.4, 0.3]]}),
            json!({"predictions": [[0.05, 0.05, 0.9]]}),
        ],
    );
    let (client, http) = moto_client(&moto, vec![]).await;
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .csv(["text", "followers"])
        .response(JsonResponse::new().class_labels(["billing", "delivery", "other"]))
        .max_batch_size(2)
        .concurrency(1)
        .build();
    let items = tweets(5);
    let refs: Vec<&Tweet> = items.iter().collect();
    let labels: Vec<String> = classifier
        .classify_batch(&refs)
        .await
        .into_iter()
        .map(|r| r.expect("item").label.to_string())
        .collect();
    assert_eq!(
        labels,
        ["delivery", "billing", "other", "delivery", "other"]
    );

    let calls = http.calls_of("InvokeEndpoint");
    assert_eq!(calls.len(), 3, "5 items in chunks of 2");
    assert_eq!(calls[0].header("content-type"), Some("text/csv"));
    assert_eq!(
        calls[0].body,
        "\"tweet number 1, about my order\",10\n\"tweet number 2, about my order\",20\n"
    );
    assert_eq!(calls[2].body, "\"tweet number 5, about my order\",50\n");
}

#[tokio::test]
async fn a_batch_answered_with_too_few_predictions_fails_permanently() {
    let moto = Moto::start();
    queue_results(&moto, &[json!({"predictions": [0.1, 0.2]})]);
    let (client, http) = moto_client(&moto, vec![]).await;
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .max_batch_size(3)
        .build();
    let items = tweets(3);
    let refs: Vec<&Tweet> = items.iter().collect();
    let out = classifier.classify_batch(&refs).await;
    assert_eq!(out.len(), 3);
    for result in out {
        let err = result.expect_err("the batch must fail");
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            text.contains("returned 2 predictions for 3 items"),
            "{text}"
        );
        assert!(text.contains(ENDPOINT), "{text}");
    }
    assert_eq!(
        http.calls_of("InvokeEndpoint").len(),
        1,
        "a count mismatch is not retried item by item"
    );
}

fn model_error_body(original_status: u16) -> Value {
    json!({
        "__type": "ModelError",
        "Message": "Received client error (400) from primary with message \"bad input\"",
        "OriginalStatusCode": original_status,
        "OriginalMessage": "could not parse field text",
        "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/tweet-triage"
    })
}

fn assert_sdk_source(err: &ClassifyError) {
    let source = err.source().expect("the SDK error is kept as the source");
    assert!(
        source
            .downcast_ref::<SdkError<InvokeEndpointError>>()
            .is_some(),
        "source is {source:?}"
    );
}

#[tokio::test]
async fn scripted_errors_map_to_retryable_or_permanent() {
    let moto = Moto::start();
    queue_results(&moto, &[json!({"label": "noise"})]);
    let faults = vec![
        fault(1, 424, "ModelError", Some(model_error_body(400))),
        fault(2, 400, "ThrottlingException", None),
        fault(
            3,
            400,
            "ValidationError",
            Some(json!({
                "__type": "ValidationError",
                "Message": "Endpoint tweet-triage of account 123456789012 not found."
            })),
        ),
        fault(4, 503, "ServiceUnavailable", None),
        fault(5, 429, "ModelNotReadyException", None),
        fault(6, 500, "InternalFailure", None),
        fault(7, 424, "ModelError", Some(model_error_body(503))),
    ];
    let (client, http) = moto_client(&moto, faults).await;
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT).build();
    let item = &tweets(1)[0];

    let err = classifier.classify(item).await.expect_err("ModelError");
    assert_eq!(err.kind(), "permanent");
    let text = err.to_string();
    assert!(text.contains("the model container failed"), "{text}");
    assert!(
        text.contains("HTTP 400: could not parse field text"),
        "{text}"
    );
    assert!(
        text.contains("log-group:/aws/sagemaker/Endpoints/tweet-triage"),
        "{text}"
    );
    assert_sdk_source(&err);

    let err = classifier.classify(item).await.expect_err("throttled");
    assert!(err.is_throttling(), "{err}");
    assert_sdk_source(&err);

    let err = classifier.classify(item).await.expect_err("validation");
    assert_eq!(err.kind(), "permanent");
    let text = err.to_string();
    assert!(
        text.contains("Endpoint tweet-triage of account 123456789012 not found."),
        "{text}"
    );
    assert!(text.contains("check the endpoint name"), "{text}");

    for expected in [
        "ServiceUnavailable",
        "ModelNotReadyException",
        "InternalFailure",
    ] {
        let err = classifier.classify(item).await.expect_err(expected);
        assert_eq!(err.kind(), "unavailable", "{expected}: {err}");
        assert!(err.to_string().contains(expected), "{err}");
    }

    let err = classifier.classify(item).await.expect_err("ModelError 503");
    assert_eq!(err.kind(), "unavailable", "an overloaded container: {err}");

    // The next call reaches moto and succeeds.
    let ok = classifier.classify(item).await.expect("after the faults");
    assert_eq!(ok.label, "noise");
    let calls = http.calls_of("InvokeEndpoint");
    assert_eq!(calls.len(), 8, "no SDK retries: one call per classify");
    assert!(calls[..7].iter().all(|c| c.injected) && !calls[7].injected);
}

#[tokio::test]
async fn a_batch_refused_by_the_model_is_classified_item_by_item() {
    let moto = Moto::start();
    queue_results(
        &moto,
        &[
            json!({"label": "actionable"}),
            json!({"label": "noise"}),
            json!({"label": "actionable"}),
        ],
    );
    let faults = vec![fault(1, 424, "ModelError", Some(model_error_body(400)))];
    let (client, http) = moto_client(&moto, faults).await;
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .max_batch_size(3)
        .build();
    let items = tweets(3);
    let refs: Vec<&Tweet> = items.iter().collect();
    let labels: Vec<String> = classifier
        .classify_batch(&refs)
        .await
        .into_iter()
        .map(|r| r.expect("item").label.to_string())
        .collect();
    assert_eq!(labels, ["actionable", "noise", "actionable"]);
    let calls = http.calls_of("InvokeEndpoint");
    assert_eq!(calls.len(), 4, "the refused batch, then one call per item");
    assert!(calls[0].injected);
    for (call, item) in calls[1..].iter().zip(&items) {
        let sent: Value = serde_json::from_str(&call.body).unwrap();
        assert_eq!(sent, serde_json::to_value(item).unwrap());
    }

    // With splitting off, the batch's error reaches every item.
    let faults = vec![fault(1, 424, "ModelError", Some(model_error_body(400)))];
    let (client, _http) = moto_client(&moto, faults).await;
    let strict = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .max_batch_size(3)
        .split_failed_batches(false)
        .build();
    for result in strict.classify_batch(&refs).await {
        let err = result.expect_err("the batch failed");
        assert!(
            err.to_string().contains("could not parse field text"),
            "{err}"
        );
        assert!(!err.is_retryable());
    }
}

/// The Classifier conformance suite against moto. The suite classifies each
/// item in turn, then all at once, then in one `classify_batch`, and expects
/// the same answers. moto gives a new body the next queued result and a body
/// it has seen the same result again, so: one single-item result per item
/// (taken by the sequential round, in order: a lone call is a micro-batch of
/// one, sent as the item's JSON), then one `{"predictions":[…]}` holding the
/// same answers, taken by the concurrent round (one micro-batch of all the
/// items) and answered again to `classify_batch`, which sends the same body.
/// A second classifier with the default batch size of 1 then runs the suite
/// with nothing new queued: every body it sends was seen before.
#[tokio::test]
async fn classifier_conformance_against_moto() {
    let moto = Moto::start();
    let answers = [
        ("actionable", 0.91),
        ("noise", 0.12),
        ("actionable", 0.55),
        ("noise", 0.03),
    ];
    let mut bodies: Vec<Value> = answers
        .iter()
        .map(|(label, p)| json!({"label": label, "scores": {"actionable": p, "noise": 1.0 - p}}))
        .collect();
    bodies.push(json!({
        "predictions": answers
            .iter()
            .map(|(label, p)| json!({"label": label, "scores": {"actionable": p, "noise": 1.0 - p}}))
            .collect::<Vec<_>>()
    }));
    queue_results(&moto, &bodies);
    let (client, http) = moto_client(&moto, vec![]).await;
    let items = tweets(answers.len() as u64);

    let batching = SageMakerClassifier::<Tweet>::builder_from_client(client.clone(), ENDPOINT)
        .response(binary())
        .max_batch_size(answers.len())
        .build();
    let predictions = classifier_conformance(&batching, &items, &["actionable", "noise"]).await;
    for (p, (label, score)) in predictions.iter().zip(answers) {
        assert_eq!(p.label, label);
        assert_eq!(p.positive_score, Some(score));
    }
    let calls = http.calls_of("InvokeEndpoint");
    assert_eq!(
        calls.len(),
        answers.len() + 2,
        "one call per sequential classify, one micro-batch for the concurrent round, \
         then one classify_batch call"
    );
    let concurrent: Value = serde_json::from_str(&calls[answers.len()].body).unwrap();
    assert_eq!(concurrent, json!({ "instances": &items }));

    let single = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .response(binary())
        .build();
    let again = classifier_conformance(&single, &items, &["actionable", "noise"]).await;
    assert_eq!(again, predictions);
}

#[tokio::test]
async fn debug_output_has_no_credentials() {
    let config = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    "AKIDEXAMPLEKEYID",
                    "wJalrXUtnFEMI-example-secret",
                    Some("session-token-example".into()),
                    None,
                    "test",
                ),
            ),
        )
        .build();
    let classifier = SageMakerClassifier::<Tweet>::builder(&config, ENDPOINT)
        .target_variant("blue")
        .build();
    let text = format!("{classifier:?}");
    assert!(text.contains(ENDPOINT) && text.contains("blue"), "{text}");
    for secret in [
        "AKIDEXAMPLEKEYID",
        "wJalrXUtnFEMI-example-secret",
        "session-token-example",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_sending() {
    // Nothing listens on port 9: a call that went out would fail as
    // unavailable, not with the size error asserted here.
    let http = FaultyHttp::new(aws_smithy_http_client::Builder::new().build_http(), vec![]);
    let config = common::moto::sdk_config_for("http://127.0.0.1:9")
        .await
        .into_builder()
        .http_client(http.clone())
        .retry_config(RetryConfig::disabled())
        .build();
    let classifier = SageMakerClassifier::<Tweet>::builder(&config, ENDPOINT)
        .max_batch_size(2)
        .max_payload_bytes(40)
        .build();
    let items = tweets(2);
    let refs: Vec<&Tweet> = items.iter().collect();
    for result in classifier.classify_batch(&refs).await {
        let err = result.expect_err("too large");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("over the 40-byte limit"), "{err}");
    }
    assert!(http.calls().is_empty(), "nothing was sent");
}

// ---- Micro-batching of concurrent `classify` calls ----

/// The probability the test model gives tweet `id`: its last digit / 10.
fn model_score(id: u64) -> f64 {
    (id % 10) as f64 / 10.0
}

/// An in-process model endpoint: answers each InvokeEndpoint at once with
/// `{"predictions":[…]}`, one [`model_score`] per instance of the JSON body
/// (`{"instances":[…]}`, or a single tweet). It answers whatever the batch
/// sizes turn out to be, and needs no socket, so it runs under paused time.
#[derive(Clone, Debug)]
struct ModelServer;

impl HttpClient for ModelServer {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(ModelServer)
    }
}

impl HttpConnector for ModelServer {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body: Value = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let instances = match body.get("instances") {
            Some(Value::Array(list)) => list.clone(),
            _ => vec![body],
        };
        let scores: Vec<f64> = instances
            .iter()
            .map(|i| model_score(i["id"].as_u64().unwrap_or(0)))
            .collect();
        let answer = json!({ "predictions": scores }).to_string();
        let mut resp = HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from(answer));
        resp.headers_mut()
            .insert("content-type", "application/json");
        HttpConnectorFuture::ready(Ok(resp))
    }
}

/// A client whose calls are recorded (and scripted by `faults`) by a
/// [`FaultyHttp`] in front of a [`ModelServer`].
async fn model_client(faults: Vec<Fault>) -> (Client, FaultyHttp) {
    let http = FaultyHttp::new(SharedHttpClient::new(ModelServer), faults);
    let config = common::moto::sdk_config_for("http://model.test")
        .await
        .into_builder()
        .http_client(http.clone())
        .retry_config(RetryConfig::disabled())
        .build();
    (Client::new(&config), http)
}

/// The tweet ids in a recorded call's JSON body, in order.
fn ids_in(call: &common::faulty_http::Call) -> Vec<u64> {
    let body: Value = serde_json::from_str(&call.body).expect("a JSON body");
    match body.get("instances") {
        Some(Value::Array(list)) => list.iter().filter_map(|i| i["id"].as_u64()).collect(),
        _ => body["id"].as_u64().into_iter().collect(),
    }
}

#[tokio::test]
async fn ten_concurrent_calls_go_out_as_batches_of_four_four_and_two() {
    let moto = Moto::start();
    // One call at a time, so moto's queued results meet the calls in order.
    let expected_sizes = [4, 4, 2];
    let results: Vec<Value> = [0.11, 0.22, 0.33]
        .iter()
        .zip(expected_sizes)
        .map(|(base, n)| {
            json!({"predictions": (0..n).map(|k| base + k as f64 / 100.0).collect::<Vec<_>>()})
        })
        .collect();
    queue_results(&moto, &results);
    let (client, http) = moto_client(&moto, vec![]).await;
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .response(binary())
        .max_batch_size(4)
        .concurrency(1)
        .build();
    let items = tweets(10);
    let answers = join_all(items.iter().map(|t| classifier.classify(t))).await;

    let calls = http.calls_of("InvokeEndpoint");
    let batches: Vec<Vec<u64>> = calls.iter().map(ids_in).collect();
    assert_eq!(
        batches,
        [vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]],
        "the calls in the order they were made"
    );
    let sent: Value = serde_json::from_str(&calls[2].body).unwrap();
    assert_eq!(sent, json!({ "instances": &items[8..] }));
    // Each caller gets the score at its own place in its own call.
    for (item, answer) in items.iter().zip(answers) {
        let (call, place) = batches
            .iter()
            .enumerate()
            .find_map(|(c, ids)| ids.iter().position(|&id| id == item.id).map(|p| (c, p)))
            .expect("every item was sent");
        let expected = results[call]["predictions"][place].as_f64().unwrap();
        let p = answer.expect("classify");
        assert_eq!(p.positive_score, Some(expected), "tweet {}", item.id);
    }
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_sends_fewer_calls_than_records_and_routes_every_record() {
    let (client, http) = model_client(vec![]).await;
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .response(binary())
        .max_batch_size(4)
        .build();
    let items = tweets(40);
    let payloads: Vec<Bytes> = items
        .iter()
        .map(|t| Bytes::from(serde_json::to_vec(t).unwrap()))
        .collect();
    let router = RecordingRouter::<Tweet>::new();
    let report = Pipeline::new(MemorySource::from_payloads(2, payloads))
        .json::<Tweet>()
        .classify(classifier)
        .policy(Policy::binary(0.5, "support"))
        .route(router.clone())
        .dead_letter(MemoryDeadLetter::new())
        .max_in_flight(8)
        .run()
        .await
        .expect("the pipeline runs");

    let mut routed: Vec<u64> = router.deliveries().into_iter().map(|d| d.item.id).collect();
    routed.sort_unstable();
    let expected: Vec<u64> = (1..=40).filter(|&id| model_score(id) >= 0.5).collect();
    assert_eq!(routed, expected, "the tweets the model scores 0.5 or more");
    assert_eq!(report.stats.routed, expected.len() as u64);
    assert_eq!(report.stats.discarded, 40 - expected.len() as u64);
    assert_eq!(report.stats.dead_lettered, 0);

    let calls = http.calls_of("InvokeEndpoint");
    let mut sent: Vec<u64> = calls.iter().flat_map(ids_in).collect();
    sent.sort_unstable();
    assert_eq!(sent, (1..=40).collect::<Vec<_>>(), "each record sent once");
    assert!(calls.iter().all(|c| ids_in(c).len() <= 4));
    assert!(
        calls.len() < 40,
        "{} InvokeEndpoint calls for 40 records",
        calls.len()
    );
    println!(
        "pipeline: 40 records, max_in_flight 8, max_batch_size 4: {} InvokeEndpoint calls, sizes {:?}",
        calls.len(),
        calls.iter().map(|c| ids_in(c).len()).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_waits_at_most_linger_and_a_full_one_not_at_all() {
    let (client, http) = model_client(vec![]).await;
    let linger = Duration::from_millis(50);
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client.clone(), ENDPOINT)
        .response(binary())
        .max_batch_size(4)
        .linger(linger)
        .build();
    let items = tweets(8);
    let start = Instant::now();
    let classify = |i: usize| {
        let (classifier, item) = (classifier.clone(), items[i].clone());
        tokio::spawn(async move { classifier.classify(&item).await })
    };

    // Two calls 10 ms apart share one batch, sent `linger` after the first.
    let first = classify(0);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = classify(1);
    for (task, id) in [(first, 1), (second, 2)] {
        let p = task.await.unwrap().expect("classify");
        assert_eq!(p.positive_score, Some(model_score(id)));
    }
    let calls = http.calls_of("InvokeEndpoint");
    assert_eq!(calls.len(), 1);
    assert_eq!(ids_in(&calls[0]), [1, 2]);
    assert_eq!(calls[0].at - start, linger, "sent when the linger ran out");

    // Four at once fill a batch, which goes out without waiting.
    let full = Instant::now();
    let tasks: Vec<_> = (2..6).map(classify).collect();
    for task in tasks {
        task.await.unwrap().expect("classify");
    }
    let calls = http.calls_of("InvokeEndpoint");
    assert_eq!(calls.len(), 2);
    assert_eq!(ids_in(&calls[1]), [3, 4, 5, 6]);
    assert_eq!(calls[1].at, full, "a full batch is sent at once");

    // A lone call waits the whole linger for company.
    let lone = Instant::now();
    classify(6).await.unwrap().expect("classify");
    let calls = http.calls_of("InvokeEndpoint");
    assert_eq!(ids_in(&calls[2]), [7]);
    assert_eq!(calls[2].at - lone, linger);

    // With max_batch_size(1) the call is made directly: no linger.
    let direct = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .response(binary())
        .linger(linger)
        .build();
    let now = Instant::now();
    direct.classify(&items[7]).await.expect("classify");
    let calls = http.calls_of("InvokeEndpoint");
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[3].at, now, "no wait without batching");
}

#[tokio::test(start_paused = true)]
async fn an_error_for_one_batch_reaches_exactly_its_callers() {
    let items = tweets(8);
    let check = |http: &FaultyHttp, answers: Vec<Result<Prediction, ClassifyError>>, kind: &str| {
        let calls = http.calls_of("InvokeEndpoint");
        assert_eq!(calls.len(), 2, "two batches of four");
        assert!(calls[0].injected && !calls[1].injected);
        let failed = ids_in(&calls[0]);
        assert_eq!(failed.len(), 4);
        for (item, answer) in items.iter().zip(answers) {
            if failed.contains(&item.id) {
                let err = answer.expect_err("in the failed batch");
                assert_eq!(err.kind(), kind, "{err}");
            } else {
                let p = answer.expect("in the other batch");
                assert_eq!(p.positive_score, Some(model_score(item.id)));
            }
        }
    };

    // Throttled: retryable, so the batch is not split; its four callers
    // get the error, the other four their predictions.
    let (client, http) = model_client(vec![fault(1, 400, "ThrottlingException", None)]).await;
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .response(binary())
        .max_batch_size(4)
        .concurrency(1)
        .build();
    let answers = join_all(items.iter().map(|t| classifier.classify(t))).await;
    check(&http, answers, "throttled");

    // A refused batch with splitting off: the model's error, to the same four.
    let faults = vec![fault(1, 424, "ModelError", Some(model_error_body(400)))];
    let (client, http) = model_client(faults).await;
    let strict = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .response(binary())
        .max_batch_size(4)
        .concurrency(1)
        .split_failed_batches(false)
        .build();
    let answers = join_all(items.iter().map(|t| strict.classify(t))).await;
    check(&http, answers, "permanent");

    // With splitting on (the default), the refused batch's items are sent
    // one by one and every caller gets its prediction.
    let faults = vec![fault(1, 424, "ModelError", Some(model_error_body(400)))];
    let (client, http) = model_client(faults).await;
    let splitting = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .response(binary())
        .max_batch_size(4)
        .concurrency(1)
        .build();
    let answers = join_all(items.iter().map(|t| splitting.classify(t))).await;
    for (item, answer) in items.iter().zip(answers) {
        let p = answer.expect("classified");
        assert_eq!(p.positive_score, Some(model_score(item.id)));
    }
    let sizes: Vec<usize> = http
        .calls_of("InvokeEndpoint")
        .iter()
        .map(|c| ids_in(c).len())
        .collect();
    assert_eq!(
        sizes,
        [4, 1, 1, 1, 1, 4],
        "refused, its items alone, the next batch"
    );
}

#[tokio::test(start_paused = true)]
async fn an_oversized_micro_batch_is_sent_in_halves() {
    let items = tweets(4);
    let body = |ids: &[Tweet]| json!({ "instances": ids }).to_string().len();
    let limit = body(&items[..2]).max(body(&items[2..]));
    assert!(body(&items) > limit);
    let (client, http) = model_client(vec![]).await;
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .response(binary())
        .max_batch_size(4)
        .max_payload_bytes(limit)
        .split_failed_batches(false)
        .build();
    let answers = join_all(items.iter().map(|t| classifier.classify(t))).await;
    for (item, answer) in items.iter().zip(answers) {
        let p = answer.expect("classified in a half");
        assert_eq!(p.positive_score, Some(model_score(item.id)));
    }
    let calls = http.calls_of("InvokeEndpoint");
    let batches: Vec<Vec<u64>> = calls.iter().map(ids_in).collect();
    assert_eq!(
        batches,
        [vec![1, 2], vec![3, 4]],
        "the 4-item body was never sent"
    );
    assert!(calls.iter().all(|c| c.body.len() <= limit));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_is_left_out_and_the_others_answered() {
    let (client, http) = model_client(vec![]).await;
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .response(binary())
        .max_batch_size(4)
        .linger(Duration::from_millis(20))
        .build();
    let items = tweets(3);
    let tasks: Vec<_> = items
        .iter()
        .cloned()
        .map(|item| {
            let classifier = classifier.clone();
            tokio::spawn(async move { classifier.classify(&item).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    tasks[1].abort();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(answer) => {
                assert_ne!(i, 1, "the aborted caller did not finish");
                let p = answer.expect("classify");
                assert_eq!(p.positive_score, Some(model_score(items[i].id)));
            }
            Err(e) => assert!(i == 1 && e.is_cancelled(), "{i}: {e}"),
        }
    }
    let calls = http.calls_of("InvokeEndpoint");
    assert_eq!(calls.len(), 1);
    assert_eq!(ids_in(&calls[0]), [1, 3], "the cancelled item is not sent");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_classifier_ends_its_batcher_task() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let (client, _http) = model_client(vec![]).await;
    let before = metrics.num_alive_tasks();
    let classifier = SageMakerClassifier::<Tweet>::builder_from_client(client, ENDPOINT)
        .response(binary())
        .max_batch_size(4)
        .build();
    let items = tweets(2);
    for answer in join_all(items.iter().map(|t| classifier.classify(t))).await {
        answer.expect("classify");
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        metrics.num_alive_tasks(),
        before + 1,
        "the batcher task, and no task per batch left over"
    );
    let clone = classifier.clone();
    drop(classifier);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(metrics.num_alive_tasks(), before + 1, "a clone keeps it");
    drop(clone);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(metrics.num_alive_tasks(), before, "the task ended");
}

/// Issue 14, retries decided in one place: both constructors turn the
/// SDK's own retries off, even for a config that has them on (the SDK's
/// default, standard retries with 3 attempts), so a 503 reaches the
/// pipeline after one call: pipeline attempts × 1 × 1 calls per record.
#[tokio::test(start_paused = true)]
async fn the_sdk_does_not_retry_under_the_pipeline() {
    let http = FaultyHttp::new(
        SharedHttpClient::new(ModelServer),
        vec![fault(1, 503, "ServiceUnavailable", None)],
    );
    let config = common::moto::sdk_config_for("http://model.test")
        .await
        .into_builder()
        .http_client(http.clone())
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .build();
    for classifier in [
        SageMakerClassifier::<Tweet>::builder(&config, ENDPOINT).build(),
        SageMakerClassifier::<Tweet>::builder_from_client(Client::new(&config), ENDPOINT).build(),
    ] {
        let before = http.calls().len();
        let first = classifier.classify(&tweets(1)[0]).await;
        let calls = http.calls().len() - before;
        if before == 0 {
            let err = first.expect_err("the scripted 503 reaches the caller");
            assert!(err.is_retryable(), "{err}");
        }
        assert_eq!(calls, 1, "one call, no SDK retry");
    }
}
