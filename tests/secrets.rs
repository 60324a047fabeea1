//! Secrets stay secret: a recognisable fake access key, secret key and
//! session token go into the `SdkConfig` every AWS-backed component is built
//! from; none of them may appear in the components' `Debug` output, in the
//! logs (captured at every level streamsift logs at), in the dead-letter file
//! or in the run report, even when every call fails and is retried.
//!
//! Nothing reaches AWS: the endpoint is a loopback server that records each
//! request (showing the token really was sent) and answers 403.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streamsift::checkpoint::dynamodb::DynamoDbCheckpointStore;
use streamsift::fakes::MemorySource;
use streamsift::kinesis::{KinesisProducer, KinesisSource};
use streamsift::machine_learning::{AmazonMlClassifier, AmazonMlClassifierBuilder};
use streamsift::sagemaker::SageMakerClassifier;
use streamsift::sns::SnsRouter;
use streamsift::{ClassifyError, JsonLinesDeadLetter, Pipeline, Policy, Prediction, RetryPolicy};

const ACCESS_KEY: &str = "AKIAFAKESECRETKEY7777";
const SECRET_KEY: &str = "s3cr3t/SECRET+key/DO-NOT-LEAK/0123456789";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzTOKEN-do-not-leak-QWERTYUIOP0987654321";

/// Every secret, and recognisable parts of them (a leak may be truncated).
fn needles() -> Vec<&'static str> {
    vec![
        SECRET_KEY,
        &SECRET_KEY[..20],
        SESSION_TOKEN,
        &SESSION_TOKEN[..24],
        "DO-NOT-LEAK",
        "do-not-leak",
    ]
}

fn assert_clean(what: &str, text: &str) {
    for needle in needles() {
        assert!(
            !text.contains(needle),
            "{what} contains the secret {needle:?}:\n{text}"
        );
    }
}

async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .credentials_provider(aws_credential_types::Credentials::new(
            ACCESS_KEY,
            SECRET_KEY,
            Some(SESSION_TOKEN.to_string()),
            None,
            "streamsift-secrets-test",
        ))
        .load()
        .await
}

/// A loopback HTTP server that keeps every request it gets (so the test can
/// show the credentials really were sent, signed into the headers) and
/// answers each with 403, the way AWS answers a bad token.
fn refusing_server() -> (String, Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead as _, BufReader, Read as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                let end = line == "\r\n";
                head.push_str(&line);
                if end {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let body = String::from_utf8_lossy(&body).into_owned();
            let (content_type, answer) = if body.starts_with("Action=") {
                (
                    "text/xml",
                    "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>\
                     <Message>The security token included in the request is invalid.</Message>\
                     </Error><RequestId>r-1</RequestId></ErrorResponse>"
                        .to_string(),
                )
            } else {
                (
                    "application/x-amz-json-1.1",
                    r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#
                        .to_string(),
                )
            };
            seen.lock().unwrap().push(format!("{head}{body}"));
            let response = format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{answer}",
                answer.len()
            );
            let mut stream = reader.into_inner();
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (endpoint, requests)
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct Tweet {
    id: u64,
    text: String,
}

#[cfg(feature = "llm")]
impl streamsift::local::Document for Tweet {
    fn text(&self) -> &str {
        &self.text
    }
}

#[tokio::test]
async fn credentials_never_appear_in_debug_logs_dead_letters_or_reports() {
    let logs = Captured::default();
    let writer = logs.clone();
    // Everything streamsift logs, at every level, plus the SDK's own
    // warnings and errors (its debug/trace output is the SDK's business and
    // is off in any sane production setting).
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,streamsift=trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (endpoint, requests) = refusing_server();
    let config = sdk_config(&endpoint).await;
    // The config itself: the SDK redacts the secret key in Debug.
    assert_clean("SdkConfig Debug", &format!("{config:?}"));

    // Every component that holds a client or credentials.
    let producer = KinesisProducer::builder(&config, "tweets").build();
    let source_builder = KinesisSource::builder(&config, "tweets");
    let store = DynamoDbCheckpointStore::builder(&config, "leases")
        .check_table(false)
        .build()
        .await
        .expect("no check, no I/O");
    let sagemaker: SageMakerClassifier<Tweet> = SageMakerClassifier::builder(&config, "ep").build();
    let aml: AmazonMlClassifierBuilder<Tweet> =
        AmazonMlClassifier::<Tweet>::builder(&config, "ml-model");
    let router: SnsRouter<Tweet> = SnsRouter::builder(&config)
        .check_topics(false)
        .topic("arn:aws:sns:us-east-1:123456789012:alerts")
        .retry_policy(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            multiplier: 2.0,
        })
        .build()
        .await
        .unwrap();
    for (what, debug) in [
        ("KinesisProducer", format!("{producer:?} {producer:#?}")),
        (
            "KinesisSourceBuilder",
            format!("{source_builder:?} {source_builder:#?}"),
        ),
        ("DynamoDbCheckpointStore", format!("{store:?} {store:#?}")),
        (
            "SageMakerClassifier",
            format!("{sagemaker:?} {sagemaker:#?}"),
        ),
        ("AmazonMlClassifierBuilder", format!("{aml:?} {aml:#?}")),
        ("SnsRouter", format!("{router:?} {router:#?}")),
    ] {
        assert_clean(what, &debug);
    }

    // A run where every route call fails (connection refused), is retried,
    // logged and dead-lettered.
    let dir = tempfile::tempdir().unwrap();
    let dead_path = dir.path().join("dead.jsonl");
    let source = MemorySource::from_payloads(
        1,
        vec![
            r#"{"id":1,"text":"site down"}"#,
            r#"{"id":2,"text":"still down"}"#,
        ],
    );
    let report = Pipeline::new(source)
        .json::<Tweet>()
        .classify(|_: &Tweet| async {
            Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", 0.9))
        })
        .policy(Policy::binary(0.5, "oncall"))
        .route(router)
        .dead_letter(JsonLinesDeadLetter::create(&dead_path).unwrap())
        .retry(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            multiplier: 2.0,
        })
        .call_timeout(Duration::from_secs(5))
        .run()
        .await
        .unwrap();
    assert_eq!(report.stats.dead_lettered, 2, "{report:?}");

    // A producer call that fails, logged by the producer.
    let put = producer
        .send(vec![
            streamsift::kinesis::ProducerRecord::new("hello").partition_key("k"),
        ])
        .await;
    let put_debug = format!("{put:?}");
    let failed = match &put {
        Err(_) => true,
        Ok(report) => report.outcomes().iter().all(Result::is_err),
    };
    assert!(failed, "{endpoint} refuses everything: {put_debug}");
    assert_clean("producer error", &put_debug);

    let dead = std::fs::read_to_string(&dead_path).unwrap();
    assert!(dead.contains("route"), "{dead}");
    assert_clean("dead-letter file", &dead);
    assert_clean("run report (Debug)", &format!("{report:?}"));
    assert_clean(
        "run report (JSON)",
        &serde_json::to_string(&report).unwrap(),
    );
    let _ = std::io::stdout().flush();
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_clean("logs", &logs);

    // The secrets were live: the session token went out in the signed
    // requests' headers (and the secret key signed them), so a component
    // that logged or kept its requests would have leaked it.
    let requests = requests.lock().unwrap().clone();
    assert!(requests.len() >= 2, "{} requests", requests.len());
    assert!(
        requests
            .iter()
            .all(|r| r.to_ascii_lowercase().contains("x-amz-security-token")
                && r.contains(SESSION_TOKEN)),
        "every request carries the session token"
    );
    assert!(requests.iter().any(|r| r.contains("Action=Publish")));
    assert!(logs.contains("dead-lettering record"), "{logs}");
    // And the check catches a real leak: the raw requests fail it.
    let raw = requests.join("\n");
    assert!(std::panic::catch_unwind(|| assert_clean("raw requests", &raw)).is_err());
}

/// The LLM classifier's API key, and (with `bedrock`) the AWS secrets
/// behind its Bedrock transport, stay out of `Debug`, logs, dead letters
/// and the report while every call is refused (403) and dead-lettered.
#[cfg(feature = "llm")]
#[tokio::test]
async fn the_llm_api_key_never_appears_in_debug_logs_dead_letters_or_reports() {
    use streamsift::llm::{LlmClassifier, PromptTemplate};

    const API_KEY: &str = "sk-proj-DO-NOT-LEAK-llm-key-5555";
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,streamsift=trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (endpoint, requests) = refusing_server();
    let template = PromptTemplate::new("secrets-v1")
        .label("actionable", "needs help")
        .label("noise", "anything else");
    let builder =
        LlmClassifier::openai(format!("{endpoint}/v1"), "m", template.clone()).api_key(API_KEY);
    let builder_debug = format!("{builder:?} {builder:#?}");
    let llm = builder.build().unwrap();
    let mut debug = vec![
        ("LlmClassifierBuilder", builder_debug),
        ("LlmClassifier", format!("{llm:?} {llm:#?}")),
    ];
    #[cfg(feature = "bedrock")]
    let bedrock = {
        let config = sdk_config(&endpoint).await;
        let b = LlmClassifier::bedrock(&config, "model-id", template.clone());
        debug.push(("LlmClassifierBuilder (bedrock)", format!("{b:?} {b:#?}")));
        let c = b.build().unwrap();
        debug.push(("LlmClassifier (bedrock)", format!("{c:?} {c:#?}")));
        c
    };
    for (what, text) in &debug {
        assert_clean(what, text);
        assert!(!text.contains(API_KEY), "{what}: {text}");
    }

    let dir = tempfile::tempdir().unwrap();
    let dead_path = dir.path().join("dead.jsonl");
    let source = MemorySource::from_payloads(
        1,
        vec![
            r#"{"id":1,"text":"site down"}"#,
            r#"{"id":2,"text":"still down"}"#,
        ],
    );
    let report = Pipeline::new(source)
        .json::<Tweet>()
        .classify(llm.clone())
        .policy(Policy::binary(0.5, "oncall"))
        .route(streamsift::fakes::RecordingRouter::new())
        .dead_letter(JsonLinesDeadLetter::create(&dead_path).unwrap())
        .run()
        .await
        .unwrap();
    assert_eq!(report.stats.dead_lettered, 2, "{report:?}");
    #[cfg(feature = "bedrock")]
    {
        let e = streamsift::Classifier::classify(
            &bedrock,
            &Tweet {
                id: 3,
                text: "x".into(),
            },
        )
        .await
        .unwrap_err();
        assert_clean("bedrock error", &format!("{e} {e:?}"));
    }

    let dead = std::fs::read_to_string(&dead_path).unwrap();
    assert!(dead.contains("check the API key"), "{dead}");
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for (what, text) in [
        ("dead-letter file", dead),
        ("run report (Debug)", format!("{report:?}")),
        ("run report (JSON)", serde_json::to_string(&report).unwrap()),
        ("logs", logs),
    ] {
        assert_clean(what, &text);
        assert!(!text.contains(API_KEY), "{what}: {text}");
    }
    // The key was live: it went out in the Authorization header.
    let requests = requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.contains(&format!("Bearer {API_KEY}"))),
        "{requests:?}"
    );
}

// ---- HttpRouter (feature http): webhook URLs, routing keys, header values
// and the signing secret are credentials too.

#[cfg(feature = "http")]
const WEBHOOK_SECRET: &str = "XOXWEBHOOKsecretPATH0123456789";
#[cfg(feature = "http")]
const ROUTING_KEY: &str = "R0UTINGKEYsecret0123456789abcdef";
#[cfg(feature = "http")]
const AUTH_TOKEN: &str = "Bearer AUTHsecretTOKEN-0123456789";
#[cfg(feature = "http")]
const HMAC_SECRET: &str = "HMACsecret-whsec-0123456789";
#[cfg(feature = "http")]
const QUERY_SECRET: &str = "QUERYsecretSIG0123456789";

#[cfg(feature = "http")]
fn assert_http_clean(what: &str, text: &str) {
    for needle in [
        WEBHOOK_SECRET,
        &WEBHOOK_SECRET[..16],
        ROUTING_KEY,
        &ROUTING_KEY[..16],
        "AUTHsecretTOKEN",
        HMAC_SECRET,
        "HMACsecret",
        QUERY_SECRET,
        "QUERYsecret",
    ] {
        assert!(
            !text.contains(needle),
            "{what} contains the secret {needle:?}:\n{text}"
        );
    }
}

/// Answers 400 with a body that quotes the request's secrets back (its
/// request line, its Authorization header, the routing key of its body):
/// the worst case for an error snippet.
#[cfg(feature = "http")]
fn echoing_server() -> String {
    use std::io::{BufRead as _, BufReader, Read as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let (mut first, mut auth, mut length) = (String::new(), String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                } else if lower.starts_with("authorization:") {
                    auth = line.trim().to_string();
                } else if first.is_empty() {
                    first = line.trim().to_string();
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let key = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["routing_key"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let answer = format!("{key} {first} {auth}");
            let response = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let mut stream = reader.into_inner();
            let _ = stream.write_all(response.as_bytes());
        }
    });
    endpoint
}

#[cfg(feature = "http")]
#[tokio::test]
async fn webhook_secrets_never_appear_in_debug_logs_dead_letters_or_reports() {
    use streamsift::http::{Endpoint, HttpRouter};
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,streamsift=trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let echo = echoing_server();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let slack = |base: &str| format!("{base}/services/T0/B0/{WEBHOOK_SECRET}?sig={QUERY_SECRET}");
    let builder = HttpRouter::<Tweet>::builder()
        .route(
            "support",
            Endpoint::slack(slack(&echo))
                .no_rate_limit()
                .header("Authorization", AUTH_TOKEN),
        )
        .route(
            "outage",
            Endpoint::pagerduty(ROUTING_KEY).url(format!("{echo}/v2/enqueue")),
        )
        .route("closed", Endpoint::teams(slack(&closed)))
        // The policy may send unsure items to review: give them a route.
        .route("review", Endpoint::json(slack(&echo)))
        .signing_secret(HMAC_SECRET);
    assert_http_clean("HttpRouterBuilder", &format!("{builder:?} {builder:#?}"));
    let router = builder.build().unwrap();
    assert_http_clean("HttpRouter", &format!("{router:?} {router:#?}"));

    let dir = tempfile::tempdir().unwrap();
    let dead_path = dir.path().join("dead.jsonl");
    let source = MemorySource::from_payloads(
        1,
        vec![
            r#"{"id":1,"text":"support"}"#,
            r#"{"id":2,"text":"outage"}"#,
            r#"{"id":3,"text":"closed"}"#,
        ],
    );
    let report = Pipeline::new(source)
        .json::<Tweet>()
        .classify(|t: &Tweet| {
            let label = t.text.clone();
            async move {
                Ok::<_, ClassifyError>(
                    Prediction::from_scores(vec![(label.into(), 0.9), ("noise".into(), 0.1)])
                        .unwrap(),
                )
            }
        })
        .policy(Policy::by_label(
            &["support", "outage", "closed"],
            &["noise"],
            0.5,
        ))
        .route(router)
        .dead_letter(JsonLinesDeadLetter::create(&dead_path).unwrap())
        .retry(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            multiplier: 2.0,
        })
        .call_timeout(Duration::from_secs(5))
        .run()
        .await
        .unwrap();
    assert_eq!(report.stats.dead_lettered, 3, "{report:?}");
    let dead = std::fs::read_to_string(&dead_path).unwrap();
    // The receiver's answer did quote the secrets: they were redacted.
    assert!(dead.contains("<redacted>"), "{dead}");
    assert!(dead.contains("HTTP 400"), "{dead}");
    assert!(dead.contains("could not connect"), "{dead}");
    assert_http_clean("dead-letter file", &dead);
    assert_http_clean("run report (Debug)", &format!("{report:?}"));
    assert_http_clean(
        "run report (JSON)",
        &serde_json::to_string(&report).unwrap(),
    );
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_http_clean("logs", &logs);
    assert!(logs.contains("dead-lettering record"), "{logs}");
    // And the check catches a real leak: the raw URL fails it.
    let raw = slack(&echo);
    assert!(std::panic::catch_unwind(|| assert_http_clean("raw URL", &raw)).is_err());
}
