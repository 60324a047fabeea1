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

use aws_config::retry::RetryConfig;
use aws_sdk_sagemakerruntime::Client;
use aws_sdk_sagemakerruntime::error::SdkError;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use common::conformance::classifier_conformance;
use common::faulty_http::{Fault, FaultyHttp};
use common::moto::Moto;
use serde::Serialize;
use serde_json::{Value, json};
use streamsift::sagemaker::{JsonResponse, SageMakerClassifier};
use streamsift::{Classifier, ClassifyError, Prediction};

const ENDPOINT: &str = "tweet-triage";

#[derive(Debug, Serialize)]
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
    let classifier = SageMakerClassifier::<Tweet>::builder(client, ENDPOINT)
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
    let classifier = SageMakerClassifier::<Tweet>::builder(client, ENDPOINT)
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
    let classifier = SageMakerClassifier::<Tweet>::builder(client, ENDPOINT)
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
    let classifier = SageMakerClassifier::<Tweet>::builder(client, ENDPOINT).build();
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
    let classifier = SageMakerClassifier::<Tweet>::builder(client, ENDPOINT)
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
    let strict = SageMakerClassifier::<Tweet>::builder(client, ENDPOINT)
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
/// (taken by the sequential round, in order, and answered again from moto's
/// memory in the concurrent round), then one `{"predictions":[…]}` holding
/// the same answers for the batch call. A second classifier with the
/// default batch size of 1 then runs the suite with nothing new queued:
/// every body it sends was seen before.
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

    let batching = SageMakerClassifier::<Tweet>::builder(client.clone(), ENDPOINT)
        .response(binary())
        .max_batch_size(answers.len())
        .build();
    let predictions = classifier_conformance(&batching, &items, &["actionable", "noise"]).await;
    for (p, (label, score)) in predictions.iter().zip(answers) {
        assert_eq!(p.label, label);
        assert_eq!(p.positive_score, Some(score));
    }
    assert_eq!(
        http.calls_of("InvokeEndpoint").len(),
        2 * answers.len() + 1,
        "sequential and concurrent calls, then one batch call"
    );

    let single = SageMakerClassifier::<Tweet>::builder(client, ENDPOINT)
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
    let classifier = SageMakerClassifier::<Tweet>::builder(Client::new(&config), ENDPOINT)
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
    let classifier = SageMakerClassifier::<Tweet>::builder(Client::new(&config), ENDPOINT)
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
