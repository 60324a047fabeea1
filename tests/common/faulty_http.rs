//! An HTTP client for the AWS SDK that sits between the SDK and a real
//! emulator: it records every call (operation, time, shard) and answers
//! chosen calls itself with scripted errors, so throttling, 5xx and expired
//! iterators can be tested over a real connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use tokio::time::Instant;

/// One call the SDK made.
#[derive(Clone, Debug)]
pub struct Call {
    /// The operation, from `X-Amz-Target` (`GetRecords`, ...).
    pub op: String,
    /// When the request reached this client.
    pub at: Instant,
    /// The shard it was for, when known (GetShardIterator names it; a
    /// GetRecords call is traced through the iterator it used).
    pub shard: Option<String>,
    /// Whether the answer was scripted (an injected fault).
    pub injected: bool,
    /// The request body (JSON for Kinesis).
    pub body: String,
    /// The request URI (path and query, with the endpoint's scheme and host).
    pub uri: String,
    /// The request headers, names lower-cased, in the order sent.
    pub headers: Vec<(String, String)>,
}

impl Call {
    /// The value of header `name` (case-insensitive), if it was sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted answer: the `nth` call (1-based) of `op` gets `status` and
/// the error `code`, or, when `body` is set, that body instead. Status 0
/// means no answer at all: [`TIMED_OUT`] (the call hangs, for the caller's
/// deadline to end) or [`REFUSED`] (the connection fails at once); see
/// [`Fault::timed_out`] and [`Fault::refused`].
#[derive(Clone, Debug, Default)]
pub struct Fault {
    pub op: &'static str,
    pub nth: usize,
    pub status: u16,
    pub code: &'static str,
    pub body: Option<String>,
}

/// The `code` of a status-0 fault that never answers (the call hangs for
/// [`HANG`], then fails as a timeout).
pub const TIMED_OUT: &str = "TIMED_OUT";
/// The `code` of a status-0 fault that fails as a refused connection.
pub const REFUSED: &str = "CONNECTION_REFUSED";
/// How long a [`TIMED_OUT`] call hangs before it fails.
pub const HANG: std::time::Duration = std::time::Duration::from_secs(30);

impl Fault {
    /// The `nth` call of `op` gets no answer: it hangs for [`HANG`].
    pub fn timed_out(op: &'static str, nth: usize) -> Self {
        Fault {
            op,
            nth,
            status: 0,
            code: TIMED_OUT,
            body: None,
        }
    }

    /// The `nth` call of `op` fails to connect (connection refused).
    pub fn refused(op: &'static str, nth: usize) -> Self {
        Fault {
            op,
            nth,
            status: 0,
            code: REFUSED,
            body: None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<Call>,
    counts: HashMap<String, usize>,
    faults: Vec<Fault>,
    iterators: HashMap<String, String>,
    /// Faults that answer every call of their op from their `nth` on.
    standing: Vec<Fault>,
}

/// Records calls and injects faults; clone it to keep a handle for asserts.
#[derive(Clone, Debug)]
pub struct FaultyHttp {
    inner: SharedHttpClient,
    state: Arc<Mutex<State>>,
}

impl FaultyHttp {
    /// Wraps `inner` (the SDK's default client, from a loaded config).
    pub fn new(inner: SharedHttpClient, faults: Vec<Fault>) -> Self {
        FaultyHttp {
            inner,
            state: Arc::new(Mutex::new(State {
                faults,
                ..State::default()
            })),
        }
    }

    /// From now on, answers every call of `fault.op` from its `nth` on
    /// (1-based, counting all calls of that op) as `fault` says, until
    /// [`clear_standing`](Self::clear_standing).
    pub fn fail_from(&self, fault: Fault) {
        self.state.lock().unwrap().standing.push(fault);
    }

    /// Drops every fault added with [`fail_from`](Self::fail_from).
    pub fn clear_standing(&self) {
        self.state.lock().unwrap().standing.clear();
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Calls of one operation.
    pub fn calls_of(&self, op: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.op == op).collect()
    }
}

impl HttpClient for FaultyHttp {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultyConnector {
            inner: self.inner.http_connector(settings, components),
            state: self.state.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    state: Arc<Mutex<State>>,
}

/// The operation of a REST-style call (no `X-Amz-Target`), from its path.
fn rest_op(uri: &str) -> Option<&'static str> {
    let path = uri.split('?').next().unwrap_or("");
    if path.ends_with("/async-invocations") {
        Some("InvokeEndpointAsync")
    } else if path.ends_with("/invocations") {
        Some("InvokeEndpoint")
    } else {
        None
    }
}

fn json_field(body: &[u8], field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get(field)?.as_str().map(str::to_string)
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        // awsJson names the operation in X-Amz-Target, REST in the path,
        // and the Query protocol (SNS, SQS) in the form body's Action.
        let query_action = request.body().bytes().and_then(|b| {
            std::str::from_utf8(b)
                .ok()?
                .split('&')
                .find_map(|kv| kv.strip_prefix("Action="))
                .map(str::to_string)
        });
        let op = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .or_else(|| rest_op(request.uri()))
            .map(str::to_string)
            .or(query_action)
            .unwrap_or_default();
        let uri = request.uri().to_string();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect();
        let body = request
            .body()
            .bytes()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let shard = {
            let st = self.state.lock().unwrap();
            match op.as_str() {
                "GetShardIterator" => json_field(&body, "ShardId"),
                "GetRecords" => {
                    json_field(&body, "ShardIterator").and_then(|it| st.iterators.get(&it).cloned())
                }
                _ => None,
            }
        };
        let fault = {
            let mut st = self.state.lock().unwrap();
            let n = {
                let c = st.counts.entry(op.clone()).or_default();
                *c += 1;
                *c
            };
            let fault = st
                .faults
                .iter()
                .find(|f| f.op == op && f.nth == n)
                .or_else(|| st.standing.iter().find(|f| f.op == op && n >= f.nth))
                .cloned();
            st.calls.push(Call {
                op: op.clone(),
                at: Instant::now(),
                shard: shard.clone(),
                injected: fault.is_some(),
                body: String::from_utf8_lossy(&body).into_owned(),
                uri,
                headers,
            });
            fault
        };
        if let Some(fault) = fault.as_ref().filter(|f| f.status == 0) {
            let op = fault.op;
            if fault.code == TIMED_OUT {
                return HttpConnectorFuture::new(async move {
                    tokio::time::sleep(HANG).await;
                    Err(ConnectorError::timeout(
                        format!("{op}: no answer within {HANG:?} (injected by the test)").into(),
                    ))
                });
            }
            let refused = std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("{op}: connection refused (injected by the test)"),
            );
            return HttpConnectorFuture::ready(Err(ConnectorError::io(refused.into())));
        }
        if let Some(fault) = fault {
            let body = fault.body.clone().unwrap_or_else(|| {
                format!(
                    r#"{{"__type":"{}","message":"injected by the test"}}"#,
                    fault.code
                )
            });
            let mut resp = HttpResponse::new(
                StatusCode::try_from(fault.status).expect("valid status"),
                SdkBody::from(body),
            );
            resp.headers_mut()
                .insert("content-type", "application/x-amz-json-1.1");
            resp.headers_mut().insert("x-amzn-requestid", "injected");
            return HttpConnectorFuture::ready(Ok(resp));
        }
        let inner = self.inner.clone();
        let state = self.state.clone();
        HttpConnectorFuture::new(async move {
            let mut resp = inner.call(request).await?;
            // Learn which shard an iterator belongs to, to attribute
            // GetRecords calls. Only for the small JSON answers of these two.
            if let (Some(shard), true) = (shard, op == "GetShardIterator" || op == "GetRecords") {
                let bytes = ByteStream::new(resp.take_body())
                    .collect()
                    .await
                    .map(|b| b.into_bytes())
                    .unwrap_or_default();
                let next = json_field(&bytes, "ShardIterator")
                    .or_else(|| json_field(&bytes, "NextShardIterator"));
                if let Some(it) = next {
                    state.lock().unwrap().iterators.insert(it, shard);
                }
                *resp.body_mut() = SdkBody::from(bytes);
            }
            Ok(resp)
        })
    }
}
