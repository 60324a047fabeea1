//! A scripted Mechanical Turk at the HTTP layer. MTurk has no emulator, so
//! this SDK HTTP client plays the requester API (awsJson1_1, operation in
//! `X-Amz-Target: MTurkRequesterServiceV20170117.<Op>`): it keeps HITs,
//! honours `UniqueRequestToken`, pages assignments by `MaxResults` /
//! `NextToken`, and records every request so tests can look at what the
//! real SDK sent.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_credential_types::Credentials;
use aws_sdk_mturk::config::BehaviorVersion;
use aws_sdk_mturk::config::retry::RetryConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::{Value, json};

pub const SECRET: &str = "mturk-test-secret-key-never-printed";

/// One scripted HTTP answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn error(status: u16, kind: &str, message: &str) -> Self {
        Reply {
            status,
            body: json!({"__type": kind, "Message": message}),
        }
    }

    pub fn throttled() -> Self {
        Reply::error(400, "ThrottlingException", "Rate exceeded")
    }
}

/// One request the SDK sent.
#[derive(Clone, Debug)]
pub struct Call {
    pub op: String,
    pub host: String,
    pub body: Value,
}

#[derive(Clone, Debug)]
pub struct Hit {
    pub id: String,
    pub annotation: String,
    pub question: String,
    pub token: String,
    pub max_assignments: usize,
    pub assignments: Vec<Value>,
}

#[derive(Default)]
pub struct State {
    pub calls: Vec<Call>,
    pub queued: HashMap<String, VecDeque<Reply>>,
    pub hits: Vec<Hit>,
    pub balance: String,
    /// The next CreateHITWithHITType creates its HIT, then answers 503 (a
    /// response lost on the way back).
    pub lose_next_create: bool,
    /// "Already exists" messages name the HIT id (MTurk's documented
    /// behaviour) unless this is off.
    pub name_hit_in_message: bool,
}

/// The scripted MTurk. Clone it freely: clones share the state.
#[derive(Clone)]
pub struct MturkServer {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MturkServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MturkServer")
    }
}

impl Default for MturkServer {
    fn default() -> Self {
        Self::new()
    }
}

/// A QuestionFormAnswers document with one FreeText answer.
pub fn answer_xml(field: &str, value: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\
         <QuestionFormAnswers xmlns=\"http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd\">\
         <Answer><QuestionIdentifier>{field}</QuestionIdentifier><FreeText>{value}</FreeText></Answer>\
         </QuestionFormAnswers>"
    )
}

impl MturkServer {
    pub fn new() -> Self {
        MturkServer {
            state: Arc::new(Mutex::new(State {
                balance: "10000.00".to_owned(),
                name_hit_in_message: true,
                ..State::default()
            })),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The next call of `op` gets `reply`, before the simulation answers.
    pub fn queue(&self, op: &str, reply: Reply) {
        self.state()
            .queued
            .entry(op.to_owned())
            .or_default()
            .push_back(reply);
    }

    pub fn calls_of(&self, op: &str) -> Vec<Call> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.op == op)
            .cloned()
            .collect()
    }

    pub fn ops(&self) -> Vec<String> {
        self.state().calls.iter().map(|c| c.op.clone()).collect()
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state().hits.clone()
    }

    /// Workers submit `answer(hit, n)` (an answers XML) for every missing
    /// assignment of every HIT.
    pub fn answer_all(&self, answer: impl Fn(&Hit, usize) -> String) {
        let mut st = self.state();
        for hit in st.hits.iter_mut() {
            while hit.assignments.len() < hit.max_assignments {
                let n = hit.assignments.len();
                let xml = answer(hit, n);
                hit.assignments.push(json!({
                    "AssignmentId": format!("{}-A{n}", hit.id),
                    "WorkerId": format!("WORKER{n}"),
                    "HITId": hit.id,
                    "AssignmentStatus": "Submitted",
                    "Answer": xml,
                }));
            }
        }
    }

    /// An MTurk client configuration whose HTTP goes to this server: test
    /// credentials, no SDK retries (the labeler's own are under test).
    pub fn config(&self) -> aws_sdk_mturk::config::Builder {
        aws_sdk_mturk::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new(
                "AKIDMTURKTEST",
                SECRET,
                None,
                None,
                "test",
            ))
            .retry_config(RetryConfig::disabled())
            .http_client(self.clone())
    }

    fn simulate(&self, st: &mut State, op: &str, body: &Value) -> Reply {
        let ok = |body: Value| Reply { status: 200, body };
        match op {
            "GetAccountBalance" => ok(json!({"AvailableBalance": st.balance})),
            "CreateHITType" => ok(json!({"HITTypeId": "3HITTYPE0000000000000000000001"})),
            "CreateHITWithHITType" => {
                let token = body["UniqueRequestToken"].as_str().unwrap_or("").to_owned();
                if let Some(hit) = st
                    .hits
                    .iter()
                    .find(|h| !token.is_empty() && h.token == token)
                {
                    let message = if st.name_hit_in_message {
                        format!(
                            "The HIT with ID `{}` already exists in the system from a previous \
                             call using the same UniqueRequestToken.",
                            hit.id
                        )
                    } else {
                        "There is already a HIT with this UniqueRequestToken.".to_owned()
                    };
                    return Reply {
                        status: 400,
                        body: json!({
                            "__type": "RequestError",
                            "Message": message,
                            "TurkErrorCode": "AWS.MechanicalTurk.HitAlreadyExists",
                        }),
                    };
                }
                let id = format!("3HIT{:026}", st.hits.len() + 1);
                st.hits.push(Hit {
                    id: id.clone(),
                    annotation: body["RequesterAnnotation"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    question: body["Question"].as_str().unwrap_or("").to_owned(),
                    token,
                    max_assignments: body["MaxAssignments"].as_u64().unwrap_or(1) as usize,
                    assignments: Vec::new(),
                });
                if std::mem::take(&mut st.lose_next_create) {
                    return Reply::error(503, "ServiceFault", "lost on the way back");
                }
                ok(json!({"HIT": {
                    "HITId": id,
                    "HITTypeId": body["HITTypeId"],
                    "MaxAssignments": body["MaxAssignments"],
                    "HITStatus": "Assignable",
                }}))
            }
            "ListHITs" => ok(json!({
                "NumResults": st.hits.len(),
                "HITs": st.hits.iter().map(|h| json!({
                    "HITId": h.id,
                    "RequesterAnnotation": h.annotation,
                })).collect::<Vec<_>>(),
            })),
            "ListAssignmentsForHIT" => {
                let id = body["HITId"].as_str().unwrap_or("");
                let Some(hit) = st.hits.iter().find(|h| h.id == id) else {
                    return Reply::error(400, "RequestError", "Hit does not exist.");
                };
                let size = body["MaxResults"].as_u64().unwrap_or(10).max(1) as usize;
                let start: usize = body["NextToken"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("page-"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let page: Vec<Value> = hit
                    .assignments
                    .iter()
                    .skip(start)
                    .take(size)
                    .cloned()
                    .collect();
                let mut out = json!({"NumResults": page.len(), "Assignments": page});
                if start + size < hit.assignments.len() {
                    out["NextToken"] = json!(format!("page-{}", start + size));
                }
                ok(out)
            }
            "ApproveAssignment" | "RejectAssignment" => {
                let id = body["AssignmentId"].as_str().unwrap_or("");
                let status = if op == "ApproveAssignment" {
                    "Approved"
                } else {
                    "Rejected"
                };
                for hit in st.hits.iter_mut() {
                    for a in hit.assignments.iter_mut() {
                        if a["AssignmentId"] == id {
                            a["AssignmentStatus"] = json!(status);
                            return ok(json!({}));
                        }
                    }
                }
                Reply::error(400, "RequestError", "Assignment does not exist.")
            }
            other => Reply::error(400, "RequestError", &format!("not scripted: {other}")),
        }
    }
}

impl HttpClient for MturkServer {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for MturkServer {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request
            .headers()
            .get("x-amz-target")
            .unwrap_or("")
            .to_owned();
        let op = target
            .strip_prefix("MTurkRequesterServiceV20170117.")
            .unwrap_or(&target)
            .to_owned();
        let body: Value = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let uri = request.uri().to_owned();
        let host = uri
            .split_once("://")
            .map_or(uri.as_str(), |(_, r)| r)
            .split(['/', '?'])
            .next()
            .unwrap_or("")
            .to_owned();
        let reply = {
            let mut st = self.state();
            st.calls.push(Call {
                op: op.clone(),
                host,
                body: body.clone(),
            });
            match st.queued.get_mut(&op).and_then(VecDeque::pop_front) {
                Some(r) => r,
                None => self.simulate(&mut st, &op, &body),
            }
        };
        let mut resp = HttpResponse::new(
            StatusCode::try_from(reply.status).expect("valid status"),
            SdkBody::from(reply.body.to_string()),
        );
        resp.headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        resp.headers_mut().insert("x-amzn-requestid", "scripted");
        HttpConnectorFuture::ready(Ok(resp))
    }
}
