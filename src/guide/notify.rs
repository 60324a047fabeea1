//! Notifying people: webhooks, Slack, Microsoft Teams and PagerDuty with
//! [`HttpRouter`](crate::http::HttpRouter) (feature `http`).
//!
//! # One router, an endpoint per route
//!
//! The policy picks a route per record; an [`HttpRouter`](crate::http::HttpRouter)
//! maps each route to an [`Endpoint`](crate::http::Endpoint): a URL, a body
//! (a preset, a JSON template or a closure), extra headers and limits. A
//! route it does not know is refused before the first record
//! ([`Router::handles_route`](crate::Router::handles_route) answers
//! `Some(false)`), and a delivery to it fails as permanent.
//!
//! ```
//! use std::time::Duration;
//! use streamsift::http::{Endpoint, Fields, HttpRouter};
//! use streamsift::{ClassifyError, Pipeline, Policy, Prediction, fakes::MemorySource};
//!
//! #[derive(serde::Deserialize)]
//! struct Tweet { text: String, user: String, url: String }
//!
//! let slack = std::env::var("SLACK_WEBHOOK").unwrap_or("https://hooks.slack.com/services/T0/B0/XXXX".into());
//! let router = HttpRouter::<Tweet>::builder()
//!     // How a preset finds the text, author and link of your item type.
//!     .fields(|t: &Tweet| Fields::new(&t.text).author(&t.user).link(&t.url))
//!     .route("support", Endpoint::slack(slack))
//!     .route("outage", Endpoint::pagerduty("your-integration-key"))
//!     .timeouts(Duration::from_secs(5), Duration::from_secs(15))
//!     .build()?;
//! let pipeline = Pipeline::new(MemorySource::from_payloads(1, Vec::<String>::new()))
//!     .json::<Tweet>()
//!     .classify(|_: &Tweet| async { Ok::<_, ClassifyError>(Prediction::binary("problem", "noise", 0.9)) })
//!     .policy(Policy::binary(0.5, "support"))
//!     .route(router);
//! # let _ = pipeline;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The item's text, author and link reach the presets through
//! [`fields`](crate::http::HttpRouterBuilder::fields), a closure from your
//! item type to [`Fields`](crate::http::Fields). Without it the text is the
//! record's payload. Keep the closure cheap: it runs once per delivery.
//!
//! # Presets
//!
//! | preset | posts | limits and answers |
//! |---|---|---|
//! | [`Endpoint::slack`](crate::http::Endpoint::slack) | Block Kit: label and score, the text (escaped mrkdwn), the author, an "Open" button | 1 message/s per webhook (Slack's limit); `invalid_payload`, `channel_is_archived`, `channel_not_found`, `no_service`, `action_prohibited`, `posting_to_general_channel_denied` are permanent with a hint; 429 and 5xx retried |
//! | [`Endpoint::teams`](crate::http::Endpoint::teams) | a workflow `message` with one Adaptive Card | 202 delivered |
//! | [`Endpoint::pagerduty`](crate::http::Endpoint::pagerduty) | Events API v2 `trigger`, `dedup_key` = record id, severity from the score | 202 delivered (receipt: `dedup_key`); 400 permanent; 429 retried |
//! | [`Endpoint::json`](crate::http::Endpoint::json) | `{id, route, label, score, text, author, link}` | the table below |
//!
//! The exact bodies are in [`http::presets`](crate::http::presets); each is
//! checked against a fixture in the vendor's documented shape
//! (`tests/fixtures/vendors/`). A tweet is attacker-controlled: the bodies
//! are built with serde_json, Slack text is escaped (`&`, `<`, `>`), and
//! links go only into link fields, only when `http(s)`.
//!
//! For your own format, give a template or a closure:
//!
//! ```
//! use serde_json::json;
//! use streamsift::http::Endpoint;
//! let zendesk: Endpoint<String> = Endpoint::json("https://example.zendesk.com/api/v2/tickets")
//!     .header("Authorization", "Bearer from-your-secret-store")
//!     .body_template(json!({"ticket": {"subject": "{{label}} ({{score}})", "comment": {"body": "{{text}}"}}}));
//! ```
//!
//! # Answers, retries and `Retry-After`
//!
//! 2xx is delivered. 429 is throttled; 408, 425 and 5xx are unavailable;
//! connect, TLS and reset errors are unavailable; no answer in time is a
//! timeout: all retried by the pipeline with its
//! [`RetryPolicy`](crate::RetryPolicy). Other 4xx and 3xx are permanent and
//! dead-lettered with the status, a hint and a short, cleaned excerpt of the
//! body. A `Retry-After` (seconds or an HTTP-date, capped by
//! [`max_retry_after`](crate::http::HttpRouterBuilder::max_retry_after))
//! rides on the error ([`RouteError::retry_after`](crate::RouteError::retry_after)),
//! and the pipeline waits at least that long before the next attempt.
//! Keep the router's request timeout below the pipeline's
//! [`call_timeout`](crate::Pipeline::call_timeout), and the sum of the
//! waits within its `record_timeout`.
//!
//! # Limits per destination
//!
//! [`rate_limit`](crate::http::Endpoint::rate_limit) paces one endpoint
//! with the public [`RateLimiter`](crate::rate::RateLimiter) (share a clone
//! between endpoints that reach the same receiver);
//! [`concurrency`](crate::http::Endpoint::concurrency) bounds its requests
//! in flight. A custom router uses the same limiter: see
//! `examples/custom_router.rs`.
//!
//! # Idempotency and signing
//!
//! Every request carries `Idempotency-Key`, a hash of the record id and the
//! route ([`idempotency_key`](crate::http::idempotency_key)): the same for
//! every retry and after a restart. A receiver that keeps the keys it has
//! seen drops our redeliveries; PagerDuty gets the same effect from
//! `dedup_key`.
//!
//! With [`signing_secret`](crate::http::HttpRouterBuilder::signing_secret),
//! every request is signed, `X-Streamsift-Signature: t=<unix>,v1=<hex>`, an
//! HMAC-SHA256 over `"<t>.<body>"` (the Stripe scheme). A receiver checks it
//! with [`http::sign::verify`](crate::http::sign::verify):
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use streamsift::http::sign::{Signer, verify};
//! # let body = br#"{"text":"hi"}"#;
//! # let header = Signer::new("shared secret").sign(SystemTime::now(), body);
//! // In your webhook handler, with the raw body bytes and the header value:
//! verify(b"shared secret", &header, body, SystemTime::now(), Duration::from_secs(300))?;
//! # Ok::<(), streamsift::http::sign::VerifyError>(())
//! ```
//!
//! # Secrets
//!
//! Webhook URLs (Slack's and Teams' paths), routing keys, header values and
//! the signing secret never appear in reasons, logs or `Debug` output:
//! destinations are named by route, vendor and host.
//!
//! # Dedup and digests
//!
//! *(To come: the `Dedup` and `Digest` router combinators, which work with
//! any router, an `HttpRouter` included.)*
