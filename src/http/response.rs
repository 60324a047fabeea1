//! From an HTTP answer to a receipt or a classed error.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::error::RouteError;

use super::Vendor;

/// How much of an answer's body we read (the rest is dropped unread).
pub(crate) const MAX_BODY: usize = 16 * 1024;
/// How many characters of an answer's body go into an error reason.
pub(crate) const SNIPPET_CHARS: usize = 160;

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP-date
/// (RFC 9110 §10.2.3), capped at `cap`. A date in the past means "now"
/// (zero); an unparsable value means no hint.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(cap))
}

pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now, cap)
}

/// A short, printable excerpt of an answer's body: at most
/// [`SNIPPET_CHARS`] characters, control characters dropped, whitespace
/// runs folded, and every `secret` replaced by `<redacted>`.
pub(crate) fn snippet(body: &[u8], secrets: &[&str]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_BODY)]);
    let mut text = text.into_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "<redacted>");
    }
    let mut out = String::new();
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}') {
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if out.chars().count() >= SNIPPET_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// The id a receiver gave the delivery, from a JSON body: PagerDuty's
/// `dedup_key`; for the generic webhook the first of `id`, `message_id`,
/// `dedup_key` (a string or a number), at most 200 characters.
pub(crate) fn message_id(vendor: Vendor, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let keys: &[&str] = match vendor {
        Vendor::Slack => return None,
        Vendor::Teams => {
            // Power Automate answers 202 with the run's id in a header.
            let id = headers.get("x-ms-workflow-run-id")?.to_str().ok()?;
            return clean_id(id);
        }
        Vendor::PagerDuty => &["dedup_key"],
        Vendor::Json => &["id", "message_id", "dedup_key"],
    };
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    keys.iter().find_map(|k| match value.get(k)? {
        serde_json::Value::String(s) => clean_id(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn clean_id(id: &str) -> Option<String> {
    let id: String = id.chars().filter(|c| !c.is_control()).take(200).collect();
    (!id.is_empty()).then_some(id)
}

/// What to tell a person about a Slack error body (Slack's documented
/// incoming-webhook errors), hint first.
fn slack_hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "invalid_payload" => {
            "Slack could not read the message (invalid_payload): report it, the preset built a body Slack refused"
        }
        "no_text" => "Slack got a message with no text (no_text): give the item some text",
        "invalid_blocks" | "invalid_blocks_format" => {
            "Slack refused the Block Kit blocks: report it, the preset built blocks Slack refused"
        }
        "channel_is_archived" => {
            "the channel was archived (channel_is_archived): unarchive it, or give the route a webhook of a live channel"
        }
        "channel_not_found" => {
            "the webhook's channel is gone (channel_not_found): create a new webhook for the route"
        }
        "no_service" | "no_service_id" | "no_team" | "team_disabled" | "invalid_token" => {
            "the webhook was removed or disabled: create a new incoming webhook and update the route's URL"
        }
        "action_prohibited" => {
            "a workspace admin restricts this webhook (action_prohibited): ask them to allow it"
        }
        "posting_to_general_channel_denied" => {
            "only admins may post to this channel (posting_to_general_channel_denied): use another channel's webhook"
        }
        "user_not_found" => "the user the message names does not exist (user_not_found)",
        _ => return None,
    })
}

/// Maps an answer that was not a success to a classed error.
///
/// `who` names the destination for people ("Slack webhook for route
/// \"support\""), never its URL.
pub(crate) fn error_for(
    vendor: Vendor,
    who: &str,
    status: StatusCode,
    body: &[u8],
    hint: Option<Duration>,
    secrets: &[&str],
) -> RouteError {
    let said = snippet(body, secrets);
    let answered = if said.is_empty() {
        format!("{who} answered HTTP {status}")
    } else {
        format!("{who} answered HTTP {status}: {said}")
    };
    let code = status.as_u16();
    let err = match code {
        429 => RouteError::throttled(format!(
            "slow down: {answered}; retrying after its Retry-After, or with backoff"
        )),
        408 | 425 | 500..=599 => RouteError::unavailable(format!(
            "the receiver is failing for now: {answered}; retrying with backoff"
        )),
        300..=399 => RouteError::permanent(format!(
            "use the final URL for the route (redirects are not followed, so a signed body \
             never goes elsewhere): {answered}"
        )),
        _ => {
            let vendor_hint = match vendor {
                Vendor::Slack => slack_hint(said.trim()),
                Vendor::PagerDuty if code == 400 => Some(
                    "PagerDuty refused the event (invalid event): check the routing key and the event fields",
                ),
                Vendor::PagerDuty if code == 404 || code == 401 || code == 403 => {
                    Some("PagerDuty refused the routing key: check the integration key")
                }
                _ => None,
            };
            let hint = vendor_hint.unwrap_or(
                "fix the request or the endpoint's configuration; retrying will not help",
            );
            RouteError::permanent(format!("{hint}: {answered}"))
        }
    };
    match hint {
        Some(after) if err.is_retryable() => err.with_retry_after(after),
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates_with_a_cap() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        let cap = Duration::from_secs(60);
        assert_eq!(
            parse_retry_after("7", now, cap),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after("3600", now, cap), Some(cap));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now, cap),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 09:28:00 GMT", now, cap),
            Some(cap)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now, cap),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now, cap), None);
        assert_eq!(parse_retry_after("-1", now, cap), None);
    }

    #[test]
    fn a_snippet_is_short_printable_and_redacted() {
        let body = "bad\r\n\x1b[31mkey R0UT1NGKEY in  \u{202e}body\t".repeat(40);
        let s = snippet(body.as_bytes(), &["R0UT1NGKEY"]);
        assert!(!s.contains("R0UT1NGKEY"), "{s}");
        assert!(s.contains("<redacted>"), "{s}");
        assert!(!s.chars().any(char::is_control), "{s:?}");
        assert!(!s.contains('\u{202e}'));
        assert!(
            s.chars().count() <= SNIPPET_CHARS + 1,
            "{}",
            s.chars().count()
        );
        assert!(s.ends_with('…'));
        assert_eq!(snippet(b"  invalid_payload\n", &[]), "invalid_payload");
    }

    #[test]
    fn statuses_map_to_classes() {
        let e = |code: u16, body: &str| {
            error_for(
                Vendor::Slack,
                "Slack webhook for route \"support\"",
                StatusCode::from_u16(code).expect("status"),
                body.as_bytes(),
                Some(Duration::from_secs(2)),
                &[],
            )
        };
        assert!(e(429, "").is_throttling());
        assert_eq!(e(429, "").retry_after(), Some(Duration::from_secs(2)));
        for code in [408, 425, 500, 502, 503, 504] {
            assert!(e(code, "rollup_error").is_retryable(), "{code}");
        }
        for (code, body) in [
            (400, "invalid_payload"),
            (400, "no_text"),
            (403, "action_prohibited"),
            (403, "posting_to_general_channel_denied"),
            (404, "channel_not_found"),
            (404, "no_service"),
            (410, "channel_is_archived"),
            (401, "whatever"),
            (301, ""),
        ] {
            let err = e(code, body);
            assert!(!err.is_retryable(), "{code} {body}");
            assert_eq!(err.retry_after(), None);
            assert!(err.to_string().contains(&code.to_string()), "{err}");
        }
        assert!(
            e(410, "channel_is_archived")
                .to_string()
                .contains("unarchive it"),
        );
        assert!(e(404, "no_service").to_string().contains("create a new"));
    }
}
