//! [`HttpRouter`]: deliver to webhooks (Slack, Microsoft Teams, PagerDuty,
//! or any JSON endpoint) over HTTPS, with the receiver's answer mapped to
//! the pipeline's error classes.
//!
//! One router holds one `reqwest` client (rustls, no OpenSSL) and an
//! [`Endpoint`] per route. Routes it does not know are refused up front
//! ([`Router::handles_route`] says `Some(false)`).
//!
//! ```
//! use std::time::Duration;
//! use streamsift::http::{Endpoint, Fields, HttpRouter};
//!
//! struct Tweet { text: String, user: String, url: String }
//!
//! let router = HttpRouter::<Tweet>::builder()
//!     .fields(|t: &Tweet| Fields::new(&t.text).author(&t.user).link(&t.url))
//!     .route("support", Endpoint::slack("https://hooks.slack.com/services/T000/B000/XXXX"))
//!     .route("outage", Endpoint::pagerduty("R0UTINGKEY0000000000000000000000"))
//!     .route("audit", Endpoint::json("https://audit.example.com/hook").concurrency(4))
//!     .timeouts(Duration::from_secs(5), Duration::from_secs(15))
//!     .signing_secret("a shared secret")
//!     .build()
//!     .expect("valid configuration");
//! // The Debug output names hosts, never a webhook's secret path or a key.
//! assert!(!format!("{router:?}").contains("XXXX"));
//! assert!(!format!("{router:?}").contains("R0UTINGKEY"));
//! ```
//!
//! # What a receiver's answer means
//!
//! | answer | result |
//! |---|---|
//! | 2xx | delivered; the [`Receipt`]'s `message_id` is the receiver's id, when it gives one (below) |
//! | 429 | [`RouteError::Throttled`], retried no sooner than its `Retry-After` |
//! | 408, 425, 5xx | [`RouteError::Unavailable`], retried (again no sooner than a `Retry-After`) |
//! | 3xx | permanent: redirects are not followed, so a signed body never goes elsewhere |
//! | other 4xx | permanent, dead-lettered: the status, a hint, and at most 160 characters of the body (control characters dropped, secrets redacted) |
//! | connect, TLS, reset | [`RouteError::Unavailable`], retried |
//! | no answer in time | [`RouteError::Timeout`], retried |
//!
//! `Retry-After` is read in both its forms (delay-seconds and an HTTP-date)
//! and capped ([`HttpRouterBuilder::max_retry_after`], 60 s by default);
//! the hint rides on the error ([`RouteError::retry_after`]) and the
//! pipeline's retry loop waits at least that long before the next attempt.
//!
//! The receipt's `message_id` is PagerDuty's `dedup_key`; for a generic
//! webhook, the first of the JSON answer's `id`, `message_id`, `dedup_key`;
//! for Teams, the `x-ms-workflow-run-id` header; Slack gives none.
//!
//! # Secrets
//!
//! A webhook URL is a credential (Slack's and Teams' paths are the
//! secret), and so are PagerDuty's routing key, header values such as
//! `Authorization`, and the signing secret. None of them appears in an
//! error reason, a log line or a `Debug` output: destinations are named by
//! route, vendor and host, `reqwest` errors are stripped of their URL, and a
//! receiver's body is redacted of them before its snippet goes into a
//! reason.
//!
//! # Limits per destination
//!
//! Each endpoint may have a rate limit (a [`RateLimiter`]: Slack's preset
//! has 1 message per second, Slack's documented limit per webhook) and a
//! concurrency limit (a semaphore; none by default). Share one
//! [`RateLimiter`] between endpoints that post to the same destination.
//!
//! # Idempotency and signing
//!
//! Every request carries `Idempotency-Key`: a SHA-256 of the record id and
//! the route (32 hex characters), the same for every retry and after a
//! restart, so a receiver that honours it drops our redeliveries. With a
//! signing secret, every request is also signed (see [`sign`]).

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::classify::Label;
use crate::error::RouteError;
use crate::rate::RateLimiter;
use crate::router::{Delivery, Receipt, Router};

pub mod presets;
mod response;
pub mod sign;

/// The header that carries the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    sign::to_hex(&Sha256::digest(bytes))
}

/// The idempotency key for a record on a route: the first 32 hex
/// characters of SHA-256(`record_id` NUL `route`). Stable across retries
/// and restarts; different per route, so a fan-out is not mistaken for a
/// retry.
///
/// ```
/// use streamsift::http::idempotency_key;
/// let a = idempotency_key("shard-0:42", "support");
/// assert_eq!(a, idempotency_key("shard-0:42", "support"));
/// assert_ne!(a, idempotency_key("shard-0:42", "oncall"));
/// assert_eq!(a.len(), 32);
/// ```
pub fn idempotency_key(record_id: &str, route: &str) -> String {
    let mut bytes = Vec::with_capacity(record_id.len() + route.len() + 1);
    bytes.extend_from_slice(record_id.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(route.as_bytes());
    let mut key = sha256_hex(&bytes);
    key.truncate(32);
    key
}

/// What a preset shows of an item: its text, and optionally its author and
/// a link to it. Set how to get them from your item type with
/// [`HttpRouterBuilder::fields`]; by default the text is the record's
/// payload (as UTF-8, lossy) and there is no author or link.
///
/// Its `Debug` shows lengths, not the (customer) text.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fields {
    /// The item's text (a tweet's `text`).
    pub text: String,
    /// Who wrote it (a tweet's `@screen_name`).
    pub author: Option<String>,
    /// Where to read it (a tweet's URL); only `http(s)` links are posted.
    pub link: Option<String>,
}

impl Fields {
    /// Fields with this text and no author or link.
    pub fn new(text: impl Into<String>) -> Self {
        Fields {
            text: text.into(),
            author: None,
            link: None,
        }
    }

    /// Sets the author.
    pub fn author(mut self, author: impl Into<String>) -> Self {
        self.author = Some(author.into());
        self
    }

    /// Sets the link.
    pub fn link(mut self, link: impl Into<String>) -> Self {
        self.link = Some(link.into());
        self
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fields")
            .field("text_chars", &self.text.chars().count())
            .field("author", &self.author.as_ref().map(|_| "<set>"))
            .field("link", &self.link.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Which receiver's conventions an endpoint follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vendor {
    Json,
    Slack,
    Teams,
    PagerDuty,
}

impl Vendor {
    fn name(self) -> &'static str {
        match self {
            Vendor::Json => "webhook",
            Vendor::Slack => "Slack webhook",
            Vendor::Teams => "Teams workflow webhook",
            Vendor::PagerDuty => "PagerDuty Events API",
        }
    }
}

type BodyFn<T> = dyn Fn(&Delivery<'_, T>, &Fields) -> Value + Send + Sync;

enum Body<T> {
    Preset,
    Template(Value),
    Fn(Arc<BodyFn<T>>),
}

/// One destination: a URL, how to build the body, extra headers, limits.
///
/// Build it with a preset constructor ([`slack`](Endpoint::slack),
/// [`teams`](Endpoint::teams), [`pagerduty`](Endpoint::pagerduty),
/// [`json`](Endpoint::json)) and adjust. The URL is checked when the
/// router is built. Its `Debug` shows the scheme and host only.
pub struct Endpoint<T> {
    url: String,
    vendor: Vendor,
    routing_key: Option<String>,
    body: Body<T>,
    headers: Vec<(String, String)>,
    rate: Option<RateLimiter>,
    /// The preset's own limit (Slack's), shared by every route that posts
    /// to the same URL.
    per_url_rate: bool,
    concurrency: Option<usize>,
}

impl<T> Endpoint<T> {
    fn new(url: impl Into<String>, vendor: Vendor) -> Self {
        Endpoint {
            url: url.into(),
            vendor,
            routing_key: None,
            body: Body::Preset,
            headers: Vec::new(),
            rate: None,
            per_url_rate: false,
            concurrency: None,
        }
    }

    /// A generic JSON webhook (body: [`presets::json`]); no rate limit.
    pub fn json(url: impl Into<String>) -> Self {
        Self::new(url, Vendor::Json)
    }

    /// A Slack incoming webhook (body: [`presets::slack`]), limited to 1
    /// message per second with no burst, Slack's documented limit per
    /// webhook (routes that post to the same webhook URL share it). Slack's error bodies (`invalid_payload`,
    /// `channel_is_archived`, `no_service`, ...) become permanent errors
    /// with a hint; 429 and 5xx are retried.
    pub fn slack(url: impl Into<String>) -> Self {
        let mut e = Self::new(url, Vendor::Slack);
        e.rate = Some(RateLimiter::with_burst(NonZeroU32::MIN, NonZeroU32::MIN));
        e.per_url_rate = true;
        e
    }

    /// A Microsoft Teams workflow webhook (body: [`presets::teams`], an
    /// Adaptive Card). Teams answers 202 Accepted.
    pub fn teams(url: impl Into<String>) -> Self {
        Self::new(url, Vendor::Teams)
    }

    /// PagerDuty Events API v2 with this integration (routing) key (body:
    /// [`presets::pagerduty`]), posted to [`PAGERDUTY_EVENTS_URL`]: 202 is
    /// delivered (the receipt carries the `dedup_key`), 400 is permanent,
    /// 429 and 5xx are retried.
    pub fn pagerduty(routing_key: impl Into<String>) -> Self {
        let mut e = Self::new(PAGERDUTY_EVENTS_URL, Vendor::PagerDuty);
        e.routing_key = Some(routing_key.into());
        e
    }

    /// Posts to another URL (a proxy, a test server), keeping the preset.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The body from a JSON template: every string in `template` has its
    /// placeholders replaced: `{{id}}` (record id), `{{route}}`,
    /// `{{label}}`, `{{score}}`, `{{text}}`, `{{author}}`, `{{link}}`. A
    /// string that is exactly `"{{score}}"` becomes a number. Values go in
    /// as JSON strings, serialized by serde_json: a tweet cannot change the
    /// template's shape.
    ///
    /// ```
    /// use serde_json::json;
    /// use streamsift::http::Endpoint;
    /// let e: Endpoint<String> = Endpoint::json("https://example.com/hook")
    ///     .body_template(json!({"summary": "{{label}}: {{text}}", "score": "{{score}}"}));
    /// ```
    pub fn body_template(mut self, template: Value) -> Self {
        self.body = Body::Template(template);
        self
    }

    /// The body from a closure over the delivery and its [`Fields`].
    ///
    /// ```
    /// use serde_json::json;
    /// use streamsift::http::Endpoint;
    /// let e: Endpoint<String> = Endpoint::json("https://example.com/hook")
    ///     .body_fn(|d, f| json!({ "ticket": { "subject": d.prediction.label.as_str(), "body": f.text } }));
    /// ```
    pub fn body_fn(
        mut self,
        body: impl Fn(&Delivery<'_, T>, &Fields) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.body = Body::Fn(Arc::new(body));
        self
    }

    /// Adds a header. The value may use `{{id}}`, `{{route}}`, `{{label}}`
    /// and `{{score}}` (never the item's text); a value without
    /// placeholders is static, e.g. `Authorization: Bearer ...`. Header
    /// values are never logged or shown in `Debug`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Paces requests to this endpoint (clone one limiter into several
    /// endpoints to share it).
    pub fn rate_limit(mut self, limiter: RateLimiter) -> Self {
        self.rate = Some(limiter);
        self.per_url_rate = false;
        self
    }

    /// Removes the rate limit (Slack's preset has one).
    pub fn no_rate_limit(mut self) -> Self {
        self.rate = None;
        self.per_url_rate = false;
        self
    }

    /// At most `max` requests in flight to this endpoint (at least 1).
    pub fn concurrency(mut self, max: usize) -> Self {
        self.concurrency = Some(max.max(1));
        self
    }
}

impl<T> fmt::Debug for Endpoint<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = Url::parse(&self.url)
            .map(|u| redacted(&u))
            .unwrap_or_else(|_| "<unparsable URL>".to_owned());
        f.debug_struct("Endpoint")
            .field("vendor", &self.vendor.name())
            .field("url", &url)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("rate", &self.rate)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// `https://host:port/<redacted>`: the scheme and host, never the path or
/// query, where webhook secrets live.
fn redacted(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/<redacted>", url.scheme()),
        None => format!("{}://{host}/<redacted>", url.scheme()),
    }
}

/// Why an [`HttpRouter`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpConfigError {
    /// A route's URL is not an absolute `http(s)` URL. The URL itself is
    /// not repeated (it may hold a secret).
    #[error("give route {route:?} an absolute http(s) URL: its URL {problem}")]
    Url {
        /// The route.
        route: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A header name or static value is not valid HTTP.
    #[error("fix header {name:?} of route {route:?}: {problem}")]
    Header {
        /// The route.
        route: String,
        /// The header's name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The router has no routes.
    #[error("add at least one route with .route(label, Endpoint::...)")]
    NoRoutes,
    /// The HTTP client could not be built (a bad root certificate).
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

struct Route<T> {
    url: Url,
    /// The URL's secret parts and other credentials, for redaction.
    secrets: Vec<String>,
    who: String,
    vendor: Vendor,
    routing_key: Option<String>,
    body: Body<T>,
    headers: Vec<(HeaderName, HeaderTemplate)>,
    rate: Option<RateLimiter>,
    permits: Option<Arc<Semaphore>>,
}

enum HeaderTemplate {
    Static(HeaderValue),
    Template(String),
}

type FieldsFn<T> = dyn Fn(&T) -> Fields + Send + Sync;

/// Builds an [`HttpRouter`].
pub struct HttpRouterBuilder<T> {
    routes: Vec<(Label, Endpoint<T>)>,
    fields: Option<Arc<FieldsFn<T>>>,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_retry_after: Duration,
    signer: Option<sign::Signer>,
    roots: Vec<Vec<u8>>,
}

impl<T> fmt::Debug for HttpRouterBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRouterBuilder")
            .field("routes", &self.routes)
            .field("signed", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> HttpRouterBuilder<T> {
    /// Delivers items on `route` to `endpoint` (a later call for the same
    /// route replaces it).
    pub fn route(mut self, route: impl Into<Label>, endpoint: Endpoint<T>) -> Self {
        let route = route.into();
        self.routes.retain(|(r, _)| *r != route);
        self.routes.push((route, endpoint));
        self
    }

    /// How to get an item's text, author and link for the presets and
    /// templates. Without it, the text is the record's payload.
    pub fn fields(mut self, fields: impl Fn(&T) -> Fields + Send + Sync + 'static) -> Self {
        self.fields = Some(Arc::new(fields));
        self
    }

    /// The connect timeout (default 5 s) and the whole-request timeout,
    /// connect to last body byte (default 15 s). Either expiring is a
    /// retryable [`RouteError::Timeout`]. Keep the request timeout under the
    /// pipeline's call timeout.
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// The longest `Retry-After` honoured (default 60 s); a longer one is
    /// cut to this.
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// Signs every request with HMAC-SHA256 under this secret (see [`sign`]).
    pub fn signing_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.signer = Some(sign::Signer::new(secret));
        self
    }

    /// Also trusts this root certificate (PEM), e.g. a private CA or a test
    /// server's self-signed certificate, besides the system's roots.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(pem.into());
        self
    }

    /// Checks every route's URL and headers and builds the client.
    pub fn build(self) -> Result<HttpRouter<T>, HttpConfigError> {
        if self.routes.is_empty() {
            return Err(HttpConfigError::NoRoutes);
        }
        let mut client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("streamsift/", env!("CARGO_PKG_VERSION")));
        for pem in &self.roots {
            let cert = reqwest::Certificate::from_pem(pem).map_err(HttpConfigError::Client)?;
            client = client.add_root_certificate(cert);
        }
        let client = client.build().map_err(HttpConfigError::Client)?;
        let mut routes = BTreeMap::new();
        let mut per_url: BTreeMap<String, RateLimiter> = BTreeMap::new();
        for (label, e) in self.routes {
            let route = label.as_str().to_owned();
            let url = Url::parse(&e.url).map_err(|err| HttpConfigError::Url {
                route: route.clone(),
                problem: format!("does not parse ({err})"),
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(HttpConfigError::Url {
                    route,
                    problem: format!("has scheme {:?}, not http(s) with a host", url.scheme()),
                });
            }
            // What to redact from a receiver's answer: the path and its
            // long segments (Slack's token is 24 characters; short ones such
            // as "services" or "hook" are no secret), the query, the key.
            let mut secrets = Vec::new();
            let path = url.path().trim_matches('/');
            secrets.extend(
                std::iter::once(path)
                    .chain(path.split('/'))
                    .filter(|s| s.len() >= 12)
                    .map(str::to_owned),
            );
            if let Some(q) = url.query() {
                secrets.push(q.to_owned());
            }
            secrets.extend(e.routing_key.clone());
            let mut headers = Vec::new();
            for (name, value) in e.headers {
                let bad = |problem: String| HttpConfigError::Header {
                    route: route.clone(),
                    name: name.clone(),
                    problem,
                };
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| bad("not a valid header name".to_owned()))?;
                let template = if value.contains("{{") {
                    HeaderTemplate::Template(value)
                } else {
                    if value.len() >= 8 {
                        secrets.push(value.clone());
                    }
                    let v = HeaderValue::from_str(&value)
                        .map_err(|_| bad("the value has characters HTTP forbids".to_owned()))?;
                    HeaderTemplate::Static(v)
                };
                headers.push((header, template));
            }
            let rate = match (e.per_url_rate, e.rate) {
                (true, Some(own)) => Some(
                    per_url
                        .entry(url.as_str().to_owned())
                        .or_insert(own)
                        .clone(),
                ),
                (_, rate) => rate,
            };
            let who = format!(
                "{} for route {:?} ({})",
                e.vendor.name(),
                route,
                url.host_str().unwrap_or("?")
            );
            routes.insert(
                label,
                Arc::new(Route {
                    url,
                    secrets,
                    who,
                    vendor: e.vendor,
                    routing_key: e.routing_key,
                    body: e.body,
                    headers,
                    rate,
                    permits: e.concurrency.map(|n| Arc::new(Semaphore::new(n))),
                }),
            );
        }
        Ok(HttpRouter {
            client,
            routes,
            fields: self.fields,
            request_timeout: self.request_timeout,
            max_retry_after: self.max_retry_after,
            signer: self.signer,
        })
    }
}

/// A [`Router`] that POSTs each delivery to its route's webhook; see the
/// [module docs](self).
pub struct HttpRouter<T> {
    client: reqwest::Client,
    routes: BTreeMap<Label, Arc<Route<T>>>,
    fields: Option<Arc<FieldsFn<T>>>,
    request_timeout: Duration,
    max_retry_after: Duration,
    signer: Option<sign::Signer>,
}

impl<T> fmt::Debug for HttpRouter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: BTreeMap<&str, String> = self
            .routes
            .iter()
            .map(|(label, r)| {
                (
                    label.as_str(),
                    format!("{} {}", r.vendor.name(), redacted(&r.url)),
                )
            })
            .collect();
        f.debug_struct("HttpRouter")
            .field("routes", &routes)
            .field("request_timeout", &self.request_timeout)
            .field("signed", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> HttpRouter<T> {
    /// Starts a builder: no routes, timeouts 5 s (connect) and 15 s
    /// (request), `Retry-After` capped at 60 s, unsigned.
    pub fn builder() -> HttpRouterBuilder<T> {
        HttpRouterBuilder {
            routes: Vec::new(),
            fields: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_retry_after: Duration::from_secs(60),
            signer: None,
            roots: Vec::new(),
        }
    }

    /// The routes this router delivers to.
    pub fn routes(&self) -> impl Iterator<Item = &Label> {
        self.routes.keys()
    }

    fn fields_of(&self, d: &Delivery<'_, T>) -> Fields {
        match &self.fields {
            Some(f) => f(d.item),
            None => Fields::new(String::from_utf8_lossy(&d.record.payload)),
        }
    }

    /// The exact body this router would post for `d` (for tests and docs).
    pub fn render(&self, d: &Delivery<'_, T>) -> Result<Vec<u8>, RouteError> {
        let route = self.route_for(d.route)?;
        render(route, d, &self.fields_of(d))
    }

    fn route_for(&self, label: &Label) -> Result<&Arc<Route<T>>, RouteError> {
        self.routes.get(label).ok_or_else(|| {
            let known: Vec<&str> = self.routes.keys().map(Label::as_str).collect();
            RouteError::permanent(format!(
                "add an Endpoint for route {:?} to the HttpRouter (it knows {known:?})",
                label.as_str()
            ))
        })
    }

    async fn deliver(&self, d: &Delivery<'_, T>) -> Result<Receipt, RouteError> {
        let route = self.route_for(d.route)?;
        let fields = self.fields_of(d);
        let body = render(route, d, &fields)?;
        let mut request = self
            .client
            .post(route.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                IDEMPOTENCY_HEADER,
                idempotency_key(&d.record.id, d.route.as_str()),
            );
        for (name, value) in &route.headers {
            let value = match value {
                HeaderTemplate::Static(v) => v.clone(),
                HeaderTemplate::Template(t) => {
                    HeaderValue::from_str(&fill(t, d, None)).map_err(|_| {
                        RouteError::permanent(format!(
                            "fix the template of header {name} of route {:?}: the filled value \
                             has characters HTTP forbids",
                            d.route.as_str()
                        ))
                    })?
                }
            };
            request = request.header(name.clone(), value);
        }
        // Limits: a permit first (bounded in-flight), then the pacing slot.
        let _permit = match &route.permits {
            Some(s) => Some(
                s.acquire()
                    .await
                    .map_err(|_| RouteError::unavailable("the endpoint's limiter was closed"))?,
            ),
            None => None,
        };
        if let Some(rate) = &route.rate {
            rate.acquire().await;
        }
        if let Some(signer) = &self.signer {
            request = request.header(
                sign::SIGNATURE_HEADER,
                signer.sign(SystemTime::now(), &body),
            );
        }
        let answer = request
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(route, e))?;
        let status = answer.status();
        if status.is_success() {
            let mut receipt = Receipt::new(d.route.clone());
            let id = match route.vendor {
                // Slack gives no id; Teams' is a header: no body to read.
                Vendor::Slack => None,
                Vendor::Teams => response::message_id(route.vendor, answer.headers(), &[]),
                Vendor::Json | Vendor::PagerDuty => {
                    let body = read_bounded(answer).await.unwrap_or_default();
                    response::message_id(route.vendor, &reqwest::header::HeaderMap::new(), &body)
                }
            };
            if let Some(id) = id {
                receipt = receipt.with_message_id(id);
            }
            return Ok(receipt);
        }
        let hint = response::retry_after(answer.headers(), SystemTime::now(), self.max_retry_after);
        let body = read_bounded(answer).await;
        let secrets: Vec<&str> = route.secrets.iter().map(String::as_str).collect();
        let body = body.unwrap_or_default();
        Err(response::error_for(
            route.vendor,
            &route.who,
            status,
            &body,
            hint,
            &secrets,
        ))
    }

    fn transport_error(&self, route: &Route<T>, e: reqwest::Error) -> RouteError {
        let who = &route.who;
        // The URL holds the secret: drop it from the error before keeping it.
        let timed_out = e.is_timeout();
        let connect = e.is_connect();
        let e = e.without_url();
        if timed_out {
            tracing::debug!(who = %who, "webhook request timed out");
            return RouteError::Timeout(self.request_timeout);
        }
        let what = if connect {
            "could not connect (refused, DNS or TLS)"
        } else {
            "failed in transit"
        };
        RouteError::unavailable(format!(
            "check that the {who} is reachable: the request {what}; retrying with backoff"
        ))
        .with_source(e)
    }
}

/// Reads at most [`response::MAX_BODY`] bytes of an answer.
async fn read_bounded(mut answer: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        let room = response::MAX_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= response::MAX_BODY {
            break;
        }
    }
    Ok(body)
}

fn render<T>(route: &Route<T>, d: &Delivery<'_, T>, f: &Fields) -> Result<Vec<u8>, RouteError> {
    let value = match &route.body {
        Body::Preset if route.vendor == Vendor::Json => {
            return serde_json::to_vec(&presets::Plain::new(d, f))
                .map_err(|e| RouteError::permanent("the body is not valid JSON").with_source(e));
        }
        Body::Preset => match route.vendor {
            Vendor::Json => presets::json(d, f),
            Vendor::Slack => presets::slack(d, f),
            Vendor::Teams => presets::teams(d, f),
            Vendor::PagerDuty => {
                presets::pagerduty(d, f, route.routing_key.as_deref().unwrap_or_default())
            }
        },
        Body::Template(t) => fill_value(t, d, f),
        Body::Fn(body) => body(d, f),
    };
    serde_json::to_vec(&value)
        .map_err(|e| RouteError::permanent("the body is not valid JSON").with_source(e))
}

/// Fills `{{...}}` placeholders in a string, in one pass (a value that
/// itself contains `{{id}}` stays literal). Without `fields`, the
/// customer-text placeholders are left empty (headers never carry them);
/// unknown placeholders are kept as written.
fn fill<T>(template: &str, d: &Delivery<'_, T>, fields: Option<&Fields>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        let text = |pick: fn(&Fields) -> Option<&str>| fields.and_then(pick).unwrap_or_default();
        match name {
            "id" => out.push_str(&d.record.id),
            "route" => out.push_str(d.route.as_str()),
            "label" => out.push_str(d.prediction.label.as_str()),
            "score" => {
                if let Some(s) = presets::score_of(d) {
                    out.push_str(&format!("{s:.2}"));
                }
            }
            "text" => out.push_str(text(|f| Some(f.text.as_str()))),
            "author" => out.push_str(text(|f| f.author.as_deref())),
            "link" => out.push_str(text(|f| f.link.as_deref())),
            _ => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn fill_value<T>(template: &Value, d: &Delivery<'_, T>, f: &Fields) -> Value {
    match template {
        Value::String(s) if s == "{{score}}" => presets::score_of(d)
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::String(s) => Value::String(fill(s, d, Some(f))),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_value(v, d, f)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_value(v, d, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl<T: Sync> Router<T> for HttpRouter<T> {
    fn route(
        &self,
        delivery: &Delivery<'_, T>,
    ) -> impl Future<Output = Result<Receipt, RouteError>> + Send {
        self.deliver(delivery)
    }

    fn handles_route(&self, route: &Label) -> Option<bool> {
        Some(self.routes.contains_key(route))
    }
}
