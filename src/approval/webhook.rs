//! Webhook channel: every approval request and decision is POSTed, signed, to
//! a URL of the operator's choosing; a signed callback brings decisions back.
//!
//! This is the integration point for everything we don't ship a channel for
//! (PagerDuty, an internal portal, a ticket bot), so the scheme below is the
//! contract a third party implements against.
//!
//! # Outgoing: `POST {url}`
//!
//! Body: `application/json`, the request as `GET /v1/approvals/{id}` shows it,
//! plus
//! - `"event"`: `"approval.requested"` when a statement is held, or
//!   `"approval.decided"` when it is decided (approved, denied, timed out or
//!   withdrawn; `state` and `outcome` say which, `votes` who voted);
//! - when `[approvals] public_url` is set: `"page_url"`
//!   (`{public_url}/approvals/{id}`), and on `approval.requested` also
//!   `"approve_url"` / `"deny_url"` (`{public_url}/v1/approvals/{id}/approve`,
//!   `…/deny`; these take an approver's bearer token, see the HTTP API).
//!
//! Headers:
//! - `X-Sqlgate-Event`: the event name again;
//! - `X-Sqlgate-Timestamp`: unix seconds at sending;
//! - `X-Sqlgate-Signature`: `v1=` followed by the lowercase hex
//!   HMAC-SHA256, keyed with the webhook's `secret`, of the ASCII timestamp,
//!   a `.`, and the raw body bytes: `HMAC(secret, "{timestamp}.{body}")`.
//!
//! A receiver should recompute the HMAC over the exact bytes received, compare
//! in constant time, and refuse timestamps more than 5 minutes from its clock.
//!
//! Delivery: any 2xx is success. Connection errors, timeouts (10 s), 429 and
//! 5xx are retried after 0.5 s, 1 s, 2 s and 4 s (5 attempts at most), each
//! attempt signed afresh with a new timestamp; a request's own notice is not
//! retried past its expiry. Other statuses are final. Every delivery is its
//! own task, so a slow receiver never delays the proxy or other deliveries;
//! therefore events of one request may arrive out of order — use `state`.
//!
//! # Incoming: `POST /v1/webhook/decision` on the admin listener
//!
//! Body: `{"request": "apr_…", "approver": "alice", "decision": "approve" |
//! "deny", "reason": "…" (optional), "grant": "15m" (optional, approve only,
//! at most 24h)}`, signed exactly like outgoing deliveries (same headers, same
//! base string) with the secret of any configured webhook. Answers:
//! - 200 with the request JSON after the vote;
//! - 401 missing, malformed or wrong signature, or a timestamp more than
//!   5 minutes off;
//! - 409 a replay: the same (timestamp, signature) was accepted before;
//! - 400 a body that isn't the JSON above;
//! - 403 an approver name that isn't an `[[approver]]`, or a refused vote
//!   (not in the rule's groups, self-approval); 404 unknown request;
//!   409 already voted or already decided.
//!
//! The caller vouches for the approver's identity: anyone holding the secret
//! can vote as any approver, so treat the secret like every approver's token.

use super::sign::{self, ReplayGuard, SignatureError};
use super::{Approvals, Notice, Request, Vote, VoteError};
use crate::config::Webhook;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::sync::broadcast::error::RecvError;

pub const TIMESTAMP_HEADER: &str = "X-Sqlgate-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Sqlgate-Signature";
pub const EVENT_HEADER: &str = "X-Sqlgate-Event";

/// Waits before the 2nd, 3rd, … attempt.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The signature header value for `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    format!(
        "v1={}",
        sign::hmac_hex(secret.as_bytes(), &[ts.as_bytes(), b".", body])
    )
}

/// Forwards notices to one webhook until the approval service stops.
pub async fn run(w: Webhook, public_url: Option<String>, approvals: Approvals) {
    let mut notices = approvals.subscribe();
    let http = match reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(url = %w.url, error = %e, "webhook channel disabled: no HTTP client");
            return;
        }
    };
    let w = Arc::new(w);
    loop {
        let (event, r) = match notices.recv().await {
            Ok(Notice::Created(r)) => ("approval.requested", r),
            Ok(Notice::Decided(r)) => ("approval.decided", r),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(url = %w.url, missed = n, "webhook fell behind; notices dropped");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if !crate::config::channel_receives(&w.groups, &r.approver_groups) {
            continue;
        }
        let body = payload(&r, event, public_url.as_deref());
        // Only the request's own notice is bounded by its expiry: once it has
        // expired nobody can act on it, but the decision is still news.
        let until = (event == "approval.requested").then_some(r.expires);
        tokio::spawn(deliver(
            http.clone(),
            w.clone(),
            event,
            r.id.clone(),
            body,
            until,
        ));
    }
}

/// A statement's text in a delivery is cut past this many bytes
/// (`text_truncated: true`).
pub const MAX_PAYLOAD_TEXT: usize = 8 * 1024;

/// The JSON body of one delivery.
pub fn payload(r: &Request, event: &str, public_url: Option<&str>) -> Vec<u8> {
    let mut v = r.to_json();
    v["event"] = event.into();
    // Each statement's text up to a cap: the whole text is one request
    // away (`page_url`, or `GET /v1/approvals/{id}`), named by `sql_sha256`.
    for st in v["statements"].as_array_mut().into_iter().flatten() {
        let Some(text) = st["text"].as_str() else {
            continue;
        };
        if text.len() > MAX_PAYLOAD_TEXT {
            let mut end = MAX_PAYLOAD_TEXT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let cut = text[..end].to_owned();
            st["text"] = cut.into();
            st["text_truncated"] = true.into();
        }
    }
    if let Some(base) = public_url.map(|u| u.trim_end_matches('/')) {
        let id = &r.id;
        v["page_url"] = format!("{base}/approvals/{id}").into();
        if event == "approval.requested" {
            v["approve_url"] = format!("{base}/v1/approvals/{id}/approve").into();
            v["deny_url"] = format!("{base}/v1/approvals/{id}/deny").into();
        }
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

async fn deliver(
    http: reqwest::Client,
    w: Arc<Webhook>,
    event: &'static str,
    id: String,
    body: Vec<u8>,
    until: Option<SystemTime>,
) {
    for attempt in 0..=BACKOFF.len() {
        if attempt > 0 {
            let wait = BACKOFF[attempt - 1];
            if until.is_some_and(|u| SystemTime::now() + wait > u) {
                tracing::warn!(url = %w.url, request = %id, event, "webhook gave up: the request expired");
                return;
            }
            tokio::time::sleep(wait).await;
        }
        let ts = sign::now_unix();
        let sent = http
            .post(&w.url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("sqlgate/", env!("CARGO_PKG_VERSION")))
            .header(EVENT_HEADER, event)
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, signature(&w.secret, ts, &body))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                tracing::debug!(url = %w.url, request = %id, event, attempt, "webhook delivered");
                return;
            }
            Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 429 => {
                tracing::warn!(url = %w.url, request = %id, event, status = %resp.status(), attempt, "webhook failed; will retry");
            }
            Ok(resp) => {
                // The receiver understood and refused: retrying won't change its mind.
                tracing::warn!(url = %w.url, request = %id, event, status = %resp.status(), "webhook refused the delivery; not retrying");
                return;
            }
            Err(e) => {
                tracing::warn!(url = %w.url, request = %id, event, error = %e, attempt, "webhook unreachable; will retry");
            }
        }
    }
    tracing::error!(url = %w.url, request = %id, event, "webhook gave up after {} attempts", BACKOFF.len() + 1);
}

/// What a decision's signature covers before the timestamp.
pub const DECISION_DOMAIN: &[u8] = b"sqlgate-decision.";

/// The decision callback, mounted only when a webhook accepts decisions.
pub fn routes(hooks: Vec<Webhook>, approvals: Approvals) -> Router {
    // Notify-only webhooks take no decisions.
    let hooks: Vec<(String, Vec<String>)> = hooks
        .into_iter()
        .filter(|w| !w.decisions_for.is_empty())
        .map(|w| (w.secret, w.decisions_for))
        .collect();
    if hooks.is_empty() {
        return Router::new();
    }
    let state = Arc::new(Callback {
        secrets: hooks,
        approvals,
        replays: ReplayGuard::default(),
    });
    Router::new()
        .route("/v1/webhook/decision", post(decision))
        .with_state(state)
}

struct Callback {
    /// Each decision webhook's secret and the approvers it may vote for.
    secrets: Vec<(String, Vec<String>)>,
    approvals: Approvals,
    replays: ReplayGuard,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    request: String,
    approver: String,
    decision: Decision,
    reason: Option<String>,
    grant: Option<String>,
}

#[derive(Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Decision {
    Approve,
    Deny,
}

#[derive(Debug, Error)]
enum CallbackError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the body must be JSON like {{\"request\": \"apr_…\", \"approver\": \"alice\", \"decision\": \"approve\"}}: {0}")]
    Body(String),
    #[error("unknown approver `{0}`, or not one this webhook may vote for")]
    UnknownApprover(String),
    #[error("{0}")]
    Grant(String),
    #[error(transparent)]
    Vote(#[from] VoteError),
}

impl IntoResponse for CallbackError {
    fn into_response(self) -> Response {
        let status = match &self {
            CallbackError::Signature(e) => e.http_status(),
            CallbackError::Body(_) | CallbackError::Grant(_) => 400,
            CallbackError::UnknownApprover(_) => 403,
            CallbackError::Vote(e) => e.http_status(),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

async fn decision(
    State(cb): State<Arc<Callback>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, CallbackError> {
    let now = sign::now_unix();
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let ts = sign::fresh_timestamp(header(TIMESTAMP_HEADER), TIMESTAMP_HEADER, now)?;
    let sig = header(SIGNATURE_HEADER)
        .ok_or(SignatureError::Missing(SIGNATURE_HEADER))?
        .trim();
    // Exactly 64 hex digits: one signature has one spelling in the replay
    // guard (`v1= <hex>` must not pass as another).
    let hex = sig
        .strip_prefix("v1=")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(SignatureError::Malformed(SIGNATURE_HEADER))?;
    let ts_text = ts.to_string();
    // The decision domain: an outgoing notification (signed over
    // "{ts}.{body}") can never pass for a decision.
    let base: [&[u8]; 4] = [DECISION_DOMAIN, ts_text.as_bytes(), b".", &body];
    // Check every secret, not just up to the first match, so the time taken
    // says nothing about which (or whether an earlier) secret matched.
    let matched = cb.secrets.iter().fold(None, |m, (secret, allowed)| {
        let ok = sign::verify_hex(secret.as_bytes(), &base, hex);
        m.or(ok.then_some(allowed))
    });
    let Some(allowed) = matched else {
        return Err(SignatureError::Mismatch.into());
    };
    cb.replays.admit(ts, &hex.to_ascii_lowercase(), now)?;

    let d: DecisionBody =
        serde_json::from_slice(&body).map_err(|e| CallbackError::Body(e.to_string()))?;
    let who = cb
        .approvals
        .approver(&d.approver)
        .filter(|a| allowed.contains(&a.name))
        .cloned()
        .ok_or(CallbackError::UnknownApprover(d.approver))?;
    if d.reason
        .as_ref()
        .is_some_and(|r| r.len() > crate::admin::approvals::MAX_REASON)
    {
        return Err(CallbackError::Body(format!(
            "`reason` is longer than {} bytes",
            crate::admin::approvals::MAX_REASON
        )));
    }
    let approve = d.decision == Decision::Approve;
    let grant = parse_grant(d.grant.as_deref(), approve).map_err(CallbackError::Grant)?;
    let r = cb.approvals.vote(
        &d.request,
        &who,
        Vote {
            approve,
            reason: d.reason.filter(|r| !r.trim().is_empty()),
            channel: "webhook",
            grant,
        },
    )?;
    Ok(Json(r.to_json()))
}

/// `grant` as the HTTP API takes it: a humantime duration, approve only,
/// bounded like every standing grant.
fn parse_grant(grant: Option<&str>, approve: bool) -> Result<Option<Duration>, String> {
    let Some(g) = grant else { return Ok(None) };
    if !approve {
        return Err("`grant` goes with approve only".into());
    }
    let d = humantime::parse_duration(g).map_err(|e| format!("`grant` = `{g}`: {e}"))?;
    let max = crate::admin::approvals::MAX_GRANT;
    if d > max {
        return Err(format!(
            "a grant may last at most {}",
            humantime::format_duration(max)
        ));
    }
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_v1_hmac_of_timestamp_dot_body() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            signature("s3cret", 1_700_000_000, br#"{"a":1}"#),
            "v1=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[test]
    fn grants_are_bounded_and_approve_only() {
        assert_eq!(parse_grant(None, true), Ok(None));
        assert_eq!(
            parse_grant(Some("15m"), true),
            Ok(Some(Duration::from_secs(900)))
        );
        assert!(parse_grant(Some("15m"), false).is_err());
        assert!(parse_grant(Some("2days"), true).is_err());
        assert!(parse_grant(Some("soon"), true).is_err());
    }
}
