//! The HTTP side: the page, its script and style, and the token-checked API.
//!
//! The page itself carries no data and no secret, so it is served without
//! the token; the token travels in the URL fragment (never sent to the
//! server, never in a `Referer`) and the page's script sends it as
//! `Authorization: Bearer <token>` on every API call.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::local::escape_html;

use super::store::{Counts, Refusal, ShownItem, Store};
use super::token::AccessToken;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");

/// The Content-Security-Policy sent with every response of the labeling
/// page: scripts, styles and requests from this server only, no inline
/// script or style, no images, no framing, no form posts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// What the handlers share with the labeler.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    pub(crate) token: AccessToken,
    pub(crate) title: String,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        // Every store method leaves the state consistent at each statement
        // that can panic, so a poisoned lock is still usable.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/state", post(state))
        .route("/peek", post(peek))
        .route("/answer", post(answer))
        .route("/skip", post(skip))
        .route("/undo", post(undo))
        .route("/release", post(release))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route("/app.css", get(|| async { asset("text/css", APP_CSS) }))
        .nest("/api", api)
        .layer(middleware::map_response(security_headers))
        .with_state(shared)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 401 without a token, 403 with a wrong one; the token is never echoed.
async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b""));
    match given {
        None => error(
            StatusCode::UNAUTHORIZED,
            "this API needs the access token: open the link printed when the labeler started",
        ),
        Some(token) if !shared.token.matches(token) => error(
            StatusCode::FORBIDDEN,
            "wrong access token: open the link printed when this labeler started (each start makes a new one)",
        ),
        Some(_) => next.run(request).await,
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    let html = INDEX_HTML.replace("{{TITLE}}", &escape_html(&shared.title));
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// JSON with `<`, `>` and `&` written as `\u` escapes, so that no HTML
/// parser that ever sees the body finds markup in it.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let text = match serde_json::to_string(value) {
        Ok(text) => text,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not encode the response: {e}"),
            )
                .into_response();
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        Body::from(hide_markup(&text)),
    )
        .into_response()
}

/// Rewrites `<`, `>` and `&` in JSON text as `\u` escapes (they can only
/// occur inside strings, where the escapes mean the same characters).
fn hide_markup(json: &str) -> String {
    let mut safe = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => safe.push_str("\\u003c"),
            '>' => safe.push_str("\\u003e"),
            '&' => safe.push_str("\\u0026"),
            c => safe.push(c),
        }
    }
    safe
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &ErrorBody { error: message })
}

/// What every API call answers: the categories, the person's next item,
/// progress, and whether `u` has something to undo.
#[derive(Serialize)]
struct View<'a> {
    labels: Vec<&'a str>,
    item: Option<ShownItem>,
    progress: Counts,
    can_undo: bool,
}

fn view(store: &mut Store, worker: &str, prefer: Option<&str>) -> Response {
    let item = store.next_for(worker, prefer);
    let progress = store.counts(Some(worker));
    let can_undo = store.can_undo(worker);
    let body = View {
        labels: store.labels().iter().map(|l| l.as_str()).collect(),
        item,
        progress,
        can_undo,
    };
    json(StatusCode::OK, &body)
}

/// Longest accepted person name, in characters.
const MAX_WORKER: usize = 64;

/// Why a person's name is refused, if it is.
fn check_worker(worker: &str) -> Option<Response> {
    let n = worker.chars().count();
    let bad =
        n == 0 || n > MAX_WORKER || worker.chars().any(char::is_control) || worker.trim() != worker;
    bad.then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "the person's name must be 1 to 64 characters, without control characters or surrounding spaces",
        )
    })
}

fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::UnknownItem(m) => error(StatusCode::NOT_FOUND, &m),
        Refusal::UnknownLabel(m) => error(StatusCode::BAD_REQUEST, &m),
        Refusal::Conflict(m) => error(StatusCode::CONFLICT, &m),
    }
}

fn storage_failed(err: super::LabelUiError) -> Response {
    tracing::error!(error = %err, "label page could not save an event");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("the answer was NOT saved: {err}"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhoRequest {
    worker: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerRequest {
    worker: String,
    item: String,
    label: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipRequest {
    worker: String,
    item: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeekRequest {}

/// The categories and the item a person would get first, held for no one:
/// what the page shows before the person has typed their name.
async fn peek(State(shared): State<Arc<Shared>>, Json(_): Json<PeekRequest>) -> Response {
    let store = shared.lock();
    let body = View {
        labels: store.labels().iter().map(|l| l.as_str()).collect(),
        item: store.peek(),
        progress: store.counts(None),
        can_undo: false,
    };
    json(StatusCode::OK, &body)
}

async fn state(State(shared): State<Arc<Shared>>, Json(req): Json<WhoRequest>) -> Response {
    if let Some(r) = check_worker(&req.worker) {
        return r;
    }
    view(&mut shared.lock(), &req.worker, None)
}

async fn answer(State(shared): State<Arc<Shared>>, Json(req): Json<AnswerRequest>) -> Response {
    if let Some(r) = check_worker(&req.worker) {
        return r;
    }
    let mut store = shared.lock();
    match store.answer(&req.worker, &req.item, &req.label) {
        Ok(Ok(())) => view(&mut store, &req.worker, None),
        Ok(Err(refusal)) => refused(refusal),
        Err(e) => storage_failed(e),
    }
}

async fn skip(State(shared): State<Arc<Shared>>, Json(req): Json<SkipRequest>) -> Response {
    if let Some(r) = check_worker(&req.worker) {
        return r;
    }
    let mut store = shared.lock();
    match store.skip(&req.worker, &req.item) {
        Ok(Ok(())) => view(&mut store, &req.worker, None),
        Ok(Err(refusal)) => refused(refusal),
        Err(e) => storage_failed(e),
    }
}

async fn undo(State(shared): State<Arc<Shared>>, Json(req): Json<WhoRequest>) -> Response {
    if let Some(r) = check_worker(&req.worker) {
        return r;
    }
    let mut store = shared.lock();
    match store.undo(&req.worker) {
        Ok(Ok(item)) => view(&mut store, &req.worker, Some(&item)),
        Ok(Err(refusal)) => refused(refusal),
        Err(e) => storage_failed(e),
    }
}

#[derive(Serialize)]
struct Released {
    released: usize,
}

/// Gives back the items held for a person (the page calls it when the
/// person changes their name).
async fn release(State(shared): State<Arc<Shared>>, Json(req): Json<WhoRequest>) -> Response {
    if let Some(r) = check_worker(&req.worker) {
        return r;
    }
    let released = shared.lock().release(&req.worker);
    json(StatusCode::OK, &Released { released })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape_html(r#"<img src=x onerror="alert(1)">&'"#),
            "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn json_bodies_carry_no_markup() {
        let hostile = "<script>alert(1)</script> & <img src=x onerror=alert(1)>";
        let text = serde_json::to_string(&ErrorBody { error: hostile }).unwrap();
        let safe = hide_markup(&text);
        assert!(!safe.contains('<') && !safe.contains('>') && !safe.contains('&'));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["error"], hostile);
    }
}
