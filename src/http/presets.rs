//! The bodies the presets post, one function per vendor, public so you can
//! see (and test) exactly what a receiver gets.
//!
//! Every body is a [`serde_json::Value`] built field by field and
//! serialized by serde_json, never JSON written by hand, so a tweet cannot
//! break out of its string. Where a vendor renders markup (Slack's
//! `mrkdwn`), the text is escaped for it first ([`escape_mrkdwn`]); links go
//! into link fields (a Slack button's `url`, an Adaptive Card's
//! `Action.OpenUrl`), never into markup, and only when they are `http(s)`.
//!
//! | preset | wire format | checked against |
//! |---|---|---|
//! | [`slack`] | Slack incoming webhook, Block Kit (`text` + `blocks`) | `tests/fixtures/vendors/slack_incoming_webhook.json` |
//! | [`teams`] | Teams workflow webhook: `{"type":"message","attachments":[Adaptive Card]}` | `tests/fixtures/vendors/teams_workflow_webhook.json` |
//! | [`pagerduty`] | PagerDuty Events API v2 `trigger` | `tests/fixtures/vendors/pagerduty_events_v2.json` |
//! | [`json()`](fn@json) | the generic webhook: one flat object | - |

use serde_json::{Value, json};

use super::Fields;
use crate::router::Delivery;

/// The longest text a Slack section takes is 3000 characters; keep room for
/// the label line.
const SLACK_TEXT_CHARS: usize = 2800;
/// PagerDuty's `summary` is at most 1024 characters.
const PAGERDUTY_SUMMARY_CHARS: usize = 1024;
/// PagerDuty's `dedup_key` is at most 255 characters.
const PAGERDUTY_DEDUP_CHARS: usize = 255;
/// A generous bound for the other free-text fields (author, fallback).
const SHORT_CHARS: usize = 200;

/// Escapes text for Slack's `mrkdwn`: `&`, `<` and `>` become `&amp;`,
/// `&lt;` and `&gt;` (Slack's documented control characters), so a tweet
/// cannot mention `<!channel>`, link `<https://evil|bank>` or spoof a user.
///
/// ```
/// use streamsift::http::presets::escape_mrkdwn;
/// assert_eq!(escape_mrkdwn("<!channel> & <https://x|y>"), "&lt;!channel&gt; &amp; &lt;https://x|y&gt;");
/// ```
pub fn escape_mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The delivery's score: the positive-class probability of a binary model,
/// else the predicted label's.
pub(crate) fn score_of<T>(d: &Delivery<'_, T>) -> Option<f64> {
    d.prediction
        .positive_score
        .or_else(|| d.prediction.confidence())
}

fn score_text(score: Option<f64>) -> String {
    score.map_or_else(|| "n/a".to_owned(), |s| format!("{s:.2}"))
}

/// A link we put in a link field: `http` or `https` only (no `javascript:`,
/// no `slack://`), at most 3000 characters (Slack's button limit).
fn safe_link(link: Option<&str>) -> Option<&str> {
    let link = link?.trim();
    let lower = link.get(..8).unwrap_or(link).to_ascii_lowercase();
    let ok = (lower.starts_with("https://") || lower.starts_with("http://"))
        && link.len() <= 3000
        && !link.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then_some(link)
}

/// Slack incoming webhook, Block Kit: a `text` fallback (notifications and
/// old clients) and `blocks`: a `section` with the label, score and the
/// item's text (escaped mrkdwn), a `context` with the author (plain text),
/// and an `actions` button opening the link. Author and link blocks are left
/// out when the item has none.
///
/// ```
/// use streamsift::http::{Fields, presets};
/// use streamsift::{Delivery, Label, Prediction, Record, Sequence, ShardId};
///
/// let record = Record::new(ShardId::new("shard-0"), Sequence::from_offset(42), "pk", &b""[..]);
/// let prediction = Prediction::binary("problem", "noise", 0.93);
/// let route = Label::from("support");
/// let item = String::new();
/// let d = Delivery { item: &item, record: &record, prediction: &prediction, route: &route };
/// let body = presets::slack(&d, &Fields::new("my order <never> came"));
/// assert_eq!(body["blocks"][0]["text"]["text"], "*problem* (score 0.93)\nmy order &lt;never&gt; came");
/// ```
pub fn slack<T>(d: &Delivery<'_, T>, f: &Fields) -> Value {
    let label = escape_mrkdwn(d.prediction.label.as_str());
    let score = score_text(score_of(d));
    let text = escape_mrkdwn(&truncate(&f.text, SLACK_TEXT_CHARS));
    let fallback = escape_mrkdwn(&truncate(&f.text, SHORT_CHARS));
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": format!("*{label}* (score {score})\n{text}") },
    })];
    if let Some(author) = f.author.as_deref().filter(|a| !a.trim().is_empty()) {
        blocks.push(json!({
            "type": "context",
            "elements": [
                { "type": "plain_text", "text": format!("by {}", truncate(author, SHORT_CHARS)), "emoji": false },
            ],
        }));
    }
    if let Some(link) = safe_link(f.link.as_deref()) {
        blocks.push(json!({
            "type": "actions",
            "elements": [
                { "type": "button", "text": { "type": "plain_text", "text": "Open" }, "url": link },
            ],
        }));
    }
    json!({
        "text": format!("{label} ({score}): {fallback}"),
        "blocks": blocks,
    })
}

/// Microsoft Teams workflow webhook ("Post to a channel when a webhook
/// request is received"): a `message` with one Adaptive Card attachment
/// (`application/vnd.microsoft.card.adaptive`, card version 1.4): the label
/// and score as a heading, the text and author as a `RichTextBlock` of
/// `TextRun`s, a fact set with the route, and an `Action.OpenUrl` to the
/// link.
///
/// Teams renders a Markdown subset (bold, italics, lists, links) in
/// `TextBlock`s and facts but not in `TextRun`s, so the tweet's text and
/// author appear exactly as written: a tweet cannot add a link, emphasis,
/// fields or actions to the card.
pub fn teams<T>(d: &Delivery<'_, T>, f: &Fields) -> Value {
    let mut runs = vec![json!({ "type": "TextRun", "text": truncate(&f.text, SLACK_TEXT_CHARS) })];
    if let Some(author) = f.author.as_deref().filter(|a| !a.trim().is_empty()) {
        runs.push(json!({
            "type": "TextRun",
            "text": format!("\nby {}", truncate(author, SHORT_CHARS)),
            "isSubtle": true,
        }));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": format!("{} (score {})", d.prediction.label.as_str(), score_text(score_of(d))),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": true,
            },
            { "type": "RichTextBlock", "inlines": runs },
            { "type": "FactSet", "facts": [{ "title": "Route", "value": d.route.as_str() }] },
        ],
    });
    if let Some(link) = safe_link(f.link.as_deref()) {
        card["actions"] = json!([{ "type": "Action.OpenUrl", "title": "Open", "url": link }]);
    }
    json!({
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card,
            },
        ],
    })
}

/// PagerDuty's severity for a score: `critical` from 0.9, `error` from
/// 0.75, `warning` from 0.5, else `info` (and `warning` when there is no
/// score).
///
/// ```
/// use streamsift::http::presets::pagerduty_severity;
/// assert_eq!(pagerduty_severity(Some(0.95)), "critical");
/// assert_eq!(pagerduty_severity(Some(0.8)), "error");
/// assert_eq!(pagerduty_severity(Some(0.5)), "warning");
/// assert_eq!(pagerduty_severity(Some(0.1)), "info");
/// ```
pub fn pagerduty_severity(score: Option<f64>) -> &'static str {
    match score {
        Some(s) if s >= 0.9 => "critical",
        Some(s) if s >= 0.75 => "error",
        Some(s) if s >= 0.5 => "warning",
        Some(_) => "info",
        None => "warning",
    }
}

/// The `dedup_key` for a record: its id, or, past PagerDuty's 255
/// characters, the first 190 characters and a SHA-256 of the whole id.
pub fn pagerduty_dedup_key(record_id: &str) -> String {
    if record_id.chars().count() <= PAGERDUTY_DEDUP_CHARS {
        return record_id.to_owned();
    }
    let head: String = record_id.chars().take(190).collect();
    format!("{head}#{}", &super::sha256_hex(record_id.as_bytes())[..64])
}

/// PagerDuty Events API v2, `event_action: "trigger"`: the `routing_key`
/// (the integration key), `dedup_key` from the record id (so a redelivered
/// record updates the same alert instead of paging twice), and a `payload`
/// with `summary` (label, score and text, at most 1024 characters),
/// `source` (`streamsift/<route>`), `severity` from
/// [`pagerduty_severity`], `class` (the label) and `custom_details`;
/// `links` carries the item's link.
pub fn pagerduty<T>(d: &Delivery<'_, T>, f: &Fields, routing_key: &str) -> Value {
    let score = score_of(d);
    let label = d.prediction.label.as_str();
    let summary = truncate(
        &format!("{label} ({}): {}", score_text(score), f.text),
        PAGERDUTY_SUMMARY_CHARS,
    );
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": pagerduty_dedup_key(&d.record.id),
        "client": "streamsift",
        "payload": {
            "summary": summary,
            "source": format!("streamsift/{}", d.route.as_str()),
            "severity": pagerduty_severity(score),
            "class": label,
            "custom_details": {
                "route": d.route.as_str(),
                "label": label,
                "score": score,
                "record_id": d.record.id,
                "author": f.author,
                "text": f.text,
            },
        },
    });
    if let Some(link) = safe_link(f.link.as_deref()) {
        event["links"] = json!([{ "href": link, "text": "Open the item" }]);
    }
    event
}

/// The generic webhook: `{"id", "route", "label", "score", "text",
/// "author", "link"}` (`id` is the record id; `score`, `author`, `link`
/// may be `null`).
pub fn json<T>(d: &Delivery<'_, T>, f: &Fields) -> Value {
    serde_json::to_value(Plain::new(d, f)).unwrap_or(Value::Null)
}

/// The generic body, borrowed, serialized without an intermediate
/// [`Value`] (the hot path); fields in the order a `Value` sorts them, so
/// the bytes match [`json()`](fn@json)'s.
#[derive(serde::Serialize)]
pub(crate) struct Plain<'a> {
    author: Option<&'a str>,
    id: &'a str,
    label: &'a str,
    link: Option<&'a str>,
    route: &'a str,
    score: Option<f64>,
    text: &'a str,
}

impl<'a> Plain<'a> {
    pub(crate) fn new<T>(d: &'a Delivery<'_, T>, f: &'a Fields) -> Self {
        Plain {
            author: f.author.as_deref(),
            id: &d.record.id,
            label: d.prediction.label.as_str(),
            link: f.link.as_deref(),
            route: d.route.as_str(),
            score: score_of(d),
            text: &f.text,
        }
    }
}
