//! A small AWS Lambda Runtime API emulator for tests: an HTTP/1.1 server on
//! a free loopback port that hands out queued invocations on
//! `GET /2018-06-01/runtime/invocation/next` (with the
//! `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//! `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`
//! headers) and records what the function posts to
//! `.../invocation/{id}/response`, `.../invocation/{id}/error` and
//! `.../init/error`. Point a function process at it with
//! `AWS_LAMBDA_RUNTIME_API=<addr>`.
//!
//! cargo-lambda's `watch` would do this too, but installing it from
//! crates.io compiles a large tree, which CI would pay on every run.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One invocation to hand out.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The request id.
    pub request_id: String,
    /// The deadline, in milliseconds since the Unix epoch.
    pub deadline_ms: u64,
    /// The event, as JSON.
    pub body: String,
}

/// What the function posted back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `POST /invocation/{id}/response`.
    Response {
        /// The request id.
        request_id: String,
        /// The body.
        body: String,
    },
    /// `POST /invocation/{id}/error`.
    Error {
        /// The request id.
        request_id: String,
        /// The body.
        body: String,
    },
    /// `POST /init/error`.
    InitError {
        /// The body.
        body: String,
    },
}

#[derive(Default)]
struct State {
    queue: VecDeque<Invocation>,
    answers: Vec<Answer>,
    /// `GET /next` requests received.
    polls: usize,
}

/// The running emulator. Its threads end with the test process.
pub struct RuntimeApi {
    addr: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:support-tweets";

impl RuntimeApi {
    /// Starts serving `invocations`, in order, on a free loopback port.
    pub fn start(invocations: Vec<Invocation>) -> io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let state = Arc::new((
            Mutex::new(State {
                queue: invocations.into(),
                ..State::default()
            }),
            Condvar::new(),
        ));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = serve(conn, &shared);
                });
            }
        });
        Ok(RuntimeApi { addr, state })
    }

    /// `host:port`, the value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Waits until `n` answers came back or `limit` passed; returns the
    /// answers so far.
    pub fn wait_for_answers(&self, n: usize, limit: Duration) -> Vec<Answer> {
        let (lock, cvar) = &*self.state;
        let end = Instant::now() + limit;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        while state.answers.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = cvar
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        state.answers.clone()
    }

    /// Waits until the function asked for the next invocation `n` times
    /// or `limit` passed; returns how many times it asked.
    pub fn wait_for_polls(&self, n: usize, limit: Duration) -> usize {
        let (lock, cvar) = &*self.state;
        let end = Instant::now() + limit;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        while state.polls < n {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = cvar
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        state.polls
    }

    /// How many times the function asked for the next invocation.
    pub fn polls(&self) -> usize {
        let (lock, _) = &*self.state;
        lock.lock().unwrap_or_else(|e| e.into_inner()).polls
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut content_length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Ok(None);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                content_length = value.parse().unwrap_or(0);
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(content_length, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Some(Request { method, path, body }))
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &str,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

fn serve(conn: TcpStream, shared: &(Mutex<State>, Condvar)) -> io::Result<()> {
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let (lock, cvar) = shared;
    while let Some(req) = read_request(&mut reader)? {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let path = req.path.as_str();
        if req.method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
            let next = {
                let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
                state.polls += 1;
                cvar.notify_all();
                state.queue.pop_front()
            };
            let Some(inv) = next else {
                // No more work: hold the request, as Lambda does between
                // events, until the test kills the function.
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            };
            respond(
                &mut writer,
                "200 OK",
                &[
                    ("Lambda-Runtime-Aws-Request-Id", inv.request_id.clone()),
                    ("Lambda-Runtime-Deadline-Ms", inv.deadline_ms.to_string()),
                    ("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN.to_string()),
                    (
                        "Lambda-Runtime-Trace-Id",
                        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
                            .to_string(),
                    ),
                ],
                &inv.body,
            )?;
            continue;
        }
        let answer = if let Some(rest) = path.strip_prefix("/2018-06-01/runtime/invocation/") {
            match rest.rsplit_once('/') {
                Some((id, "response")) => Some(Answer::Response {
                    request_id: id.to_string(),
                    body,
                }),
                Some((id, "error")) => Some(Answer::Error {
                    request_id: id.to_string(),
                    body,
                }),
                _ => None,
            }
        } else if path == "/2018-06-01/runtime/init/error" {
            Some(Answer::InitError { body })
        } else {
            None
        };
        match answer {
            Some(answer) if req.method == "POST" => {
                let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
                state.answers.push(answer);
                cvar.notify_all();
                drop(state);
                respond(&mut writer, "202 Accepted", &[], r#"{"status":"OK"}"#)?;
            }
            _ => respond(
                &mut writer,
                "404 Not Found",
                &[],
                r#"{"errorMessage":"unknown path","errorType":"InvalidRequest"}"#,
            )?,
        }
    }
    Ok(())
}
