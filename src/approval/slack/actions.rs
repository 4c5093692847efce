//! `POST /v1/slack/interactions`: Slack tells us someone clicked Approve or Deny.
//!
//! Slack signs every request (its "signing secret" scheme):
//! `X-Slack-Request-Timestamp: <unix seconds>` and
//! `X-Slack-Signature: v0=<hex HMAC-SHA256(signing_secret, "v0:{timestamp}:{raw body}")>`.
//! We refuse (401) a missing or wrong signature, or a timestamp more than
//! 5 minutes from our clock. A replayed click needs no guard of its own: the
//! vote it carries was already cast, so it is refused as "already voted".
//!
//! The body is `application/x-www-form-urlencoded` with one field, `payload`,
//! holding JSON: `{"type": "block_actions", "user": {"id": "U…"}, "actions":
//! [{"action_id": "sqlgate_approve", "value": "apr_…"}], "response_url": …}`.
//! The Slack user id is mapped through `[approvals.slack] users` to an
//! approver; who may decide is then up to [`Approvals::vote`], as in every
//! channel.
//!
//! What the clicker is told — not mapped, refused, "recorded, 1 of 2" — is an
//! ephemeral message (`{"response_type": "ephemeral", "replace_original":
//! false, "text": …}`). It is both the HTTP answer and, since Slack shows
//! block-action answers only through it, POSTed to the payload's
//! `response_url`. That URL is followed only when it is on
//! `https://hooks.slack.com/` or on the configured `api_base`'s origin (tests,
//! proxies): a signed payload should not make us call arbitrary hosts. A
//! vote that decides gets `{}`: the message itself is then updated with the
//! outcome (`chat.update`, from the decision notice).

use super::{message, WebApi};
use crate::approval::sign::{self, SignatureError};
use crate::approval::{Approvals, State, Vote};
use crate::config::Slack;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub const TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Slack-Signature";

const SLACK_HOOKS: &str = "https://hooks.slack.com/";

struct Interactions {
    slack: Slack,
    approvals: Approvals,
    api: Option<WebApi>,
}

pub fn routes(slack: Slack, approvals: Approvals) -> Router {
    let api = WebApi::new(&slack)
        .map_err(|e| tracing::warn!(error = %e, "slack: no HTTP client for response_url"))
        .ok();
    Router::new()
        .route("/v1/slack/interactions", post(interaction))
        .with_state(Arc::new(Interactions {
            slack,
            approvals,
            api,
        }))
}

/// The signature header value Slack would send (also for tests and tools).
pub fn signature(signing_secret: &str, timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    format!(
        "v0={}",
        sign::hmac_hex(
            signing_secret.as_bytes(),
            &[b"v0:", ts.as_bytes(), b":", body]
        )
    )
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: Option<User>,
    #[serde(default)]
    actions: Vec<Action>,
    response_url: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: String,
}

#[derive(Deserialize)]
struct Action {
    action_id: String,
    value: Option<String>,
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

async fn interaction(
    AxumState(it): AxumState<Arc<Interactions>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = verify(&it.slack.signing_secret, &headers, &body) {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
        return error(status, e);
    }
    let Some(payload) = form_value(&body, "payload") else {
        return error(StatusCode::BAD_REQUEST, "expected a form field `payload`");
    };
    let p: Payload = match serde_json::from_str(&payload) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("`payload`: {e}")),
    };
    let Some(reply) = handle(&it, &p) else {
        // Not ours (another action, another interaction type): acknowledge.
        return Json(json!({})).into_response();
    };
    let reply = json!({"response_type": "ephemeral", "replace_original": false, "text": reply});
    if let (Some(api), Some(url)) = (&it.api, p.response_url.as_deref()) {
        if followable(url, api.origin()) {
            let (api, url, body) = (api.clone(), url.to_owned(), reply.clone());
            tokio::spawn(async move {
                if let Err(e) = api.respond(&url, &body).await {
                    tracing::warn!(error = %e, "slack response_url failed");
                }
            });
        } else {
            tracing::warn!(url, "slack response_url not followed: unexpected host");
        }
    }
    Json(reply).into_response()
}

/// Votes for the click; the text to show the clicker, or `None` when the
/// decision itself is the answer (or the payload isn't a click of ours).
fn handle(it: &Interactions, p: &Payload) -> Option<String> {
    if p.kind != "block_actions" {
        return None;
    }
    let action = p
        .actions
        .iter()
        .find(|a| a.action_id == message::APPROVE_ACTION || a.action_id == message::DENY_ACTION)?;
    let id = action.value.as_deref().unwrap_or("");
    let Some(user) = &p.user else {
        return Some("sqlgate could not tell who clicked; nothing was recorded.".into());
    };
    let approver = it
        .slack
        .users
        .get(&user.id)
        .and_then(|name| it.approvals.approver(name));
    let Some(approver) = approver else {
        return Some(format!(
            "Your Slack user `{}` is not mapped to a sqlgate approver, so your click was not \
             recorded. Ask an admin to add you to `[approvals.slack] users`.",
            message::esc(&user.id)
        ));
    };
    let approve = action.action_id == message::APPROVE_ACTION;
    let vote = Vote {
        approve,
        reason: None,
        channel: "slack",
        grant: None,
    };
    match it.approvals.vote(id, approver, vote) {
        Err(e) => Some(format!("Not recorded: {}", message::esc(&e.to_string()))),
        Ok(r) => match r.state() {
            State::Decided { .. } => None,
            State::Pending => {
                let n = r.votes().iter().filter(|v| v.approve).count();
                Some(format!(
                    "Your approval of `{}` is recorded: {n} of {} approvals needed.",
                    message::esc(&r.id),
                    r.quorum
                ))
            }
        },
    }
}

fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let ts = sign::fresh_timestamp(header(TIMESTAMP_HEADER), TIMESTAMP_HEADER, sign::now_unix())?;
    let sig = header(SIGNATURE_HEADER).ok_or(SignatureError::Missing(SIGNATURE_HEADER))?;
    let hex = sig
        .trim()
        .strip_prefix("v0=")
        .ok_or(SignatureError::Malformed(SIGNATURE_HEADER))?;
    let ts = ts.to_string();
    if sign::verify_hex(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body], hex) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn followable(url: &str, api_origin: &str) -> bool {
    url.starts_with(SLACK_HOOKS) || url.starts_with(&format!("{api_origin}/"))
}

/// The value of `key` in an `application/x-www-form-urlencoded` body.
fn form_value(body: &[u8], key: &str) -> Option<String> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[..0]),
        };
        (url_decode(k)? == key).then(|| url_decode(v)).flatten()
    })
}

/// Form decoding: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn url_decode(s: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_signature_is_v0_hmac_of_v0_timestamp_body() {
        // printf 'v0:1531420618:token=x&payload=%7B%7D' | openssl dgst -sha256 -hmac slack-secret
        assert_eq!(
            signature("slack-secret", 1531420618, b"token=x&payload=%7B%7D"),
            "v0=5d8d55f502f174880f5a0a925beb5ad2c5f43ada0c49144d7e031ac9f58ec09e"
        );
    }

    #[test]
    fn form_fields_decode() {
        let body = b"token=x&payload=%7B%22a%22%3A+%22b%C3%A9%22%7D&empty";
        assert_eq!(
            form_value(body, "payload").as_deref(),
            Some("{\"a\": \"bé\"}")
        );
        assert_eq!(form_value(body, "empty").as_deref(), Some(""));
        assert_eq!(form_value(body, "missing"), None);
        assert_eq!(form_value(b"payload=%zz", "payload"), None);
        assert_eq!(form_value(b"payload=%4", "payload"), None);
        assert_eq!(form_value(b"payload=%FF", "payload"), None);
    }

    #[test]
    fn response_urls_are_followed_only_to_slack_or_the_api_origin() {
        let o = "http://127.0.0.1:9";
        assert!(followable("https://hooks.slack.com/actions/T/1/x", o));
        assert!(followable("http://127.0.0.1:9/respond", o));
        assert!(!followable("http://127.0.0.1:99/respond", o));
        assert!(!followable("https://hooks.slack.com.evil.test/x", o));
        assert!(!followable("http://169.254.169.254/latest", o));
    }
}
