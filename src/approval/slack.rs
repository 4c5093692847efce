//! Slack channel: each held statement becomes a message with Approve/Deny
//! buttons in the configured channel; a click comes back through Slack's
//! interactivity request URL and ends in [`Approvals::vote`].
//!
//! Outgoing (Slack Web API, `Authorization: Bearer {bot_token}`, JSON):
//! - on a new request `POST {api_base}/chat.postMessage` with
//!   `{channel, text, blocks}` (see `message.rs`); the `channel`/`ts` of the
//!   answer are kept so that
//! - on its decision `POST {api_base}/chat.update` replaces the message with
//!   the outcome and the votes, without buttons.
//!
//! Slack answers 200 with `{"ok": false, "error": "…"}` on most failures, so
//! `ok` is what counts. Rate limits (429, `Retry-After`) and refused
//! connections are retried a little; other failures are logged: the request
//! is still reachable through the API, the page and the other channels.
//!
//! Incoming: `POST /v1/slack/interactions` (set it as the app's Interactivity
//! Request URL: `{public_url}/v1/slack/interactions`); see `actions.rs`.
//!
//! The bot needs the `chat:write` scope and must be a member of the channel.

mod actions;
mod message;

use super::{Approvals, Notice, Request};
use crate::config::Slack;
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

pub use actions::{signature, SIGNATURE_HEADER, TIMESTAMP_HEADER};
pub use message::{APPROVE_ACTION, DENY_ACTION};

/// How long a Web API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per Web API call (see [`WebApi::call`] for which failures are retried).
const CALL_ATTEMPTS: u32 = 3;
/// The longest `Retry-After` we honour; beyond it the call fails and is logged.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long after its expiry a request's message is still remembered, should
/// its decision notice have been missed (the broadcast lagged).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Error)]
pub enum SlackError {
    #[error("slack `{method}`: {source}")]
    Http {
        method: &'static str,
        source: reqwest::Error,
    },
    #[error("slack `{method}` answered `ok: false`: {error}")]
    Api { method: &'static str, error: String },
}

/// A thin Slack Web API client: bearer token, JSON in, `ok` checked.
#[derive(Clone)]
pub(crate) struct WebApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl WebApi {
    pub(crate) fn new(s: &Slack) -> Result<WebApi, reqwest::Error> {
        Ok(WebApi {
            http: reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?,
            base: s.api_base.trim_end_matches('/').to_owned(),
            token: s.bot_token.clone(),
        })
    }

    /// Calls a Web API method. Retried only where Slack cannot have acted:
    /// a connection that never opened, or 429 (rate limited; Slack says when
    /// to come back in `Retry-After`). A timeout is not retried — the message
    /// may have been posted, and a duplicate with live buttons is worse than none.
    pub(crate) async fn call(
        &self,
        method: &'static str,
        body: &Value,
    ) -> Result<Value, SlackError> {
        let http = |source| SlackError::Http { method, source };
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let sent = self
                .http
                .post(format!("{}/{method}", self.base))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await;
            let wait = match &sent {
                Err(e) if e.is_connect() => Duration::from_secs(1),
                Ok(r) if r.status().as_u16() == 429 => retry_after(r.headers()),
                _ => break sent.map_err(http)?,
            };
            if attempt >= CALL_ATTEMPTS {
                break sent.map_err(http)?;
            }
            tokio::time::sleep(wait).await;
        };
        let answer: Value = resp
            .error_for_status()
            .map_err(http)?
            .json()
            .await
            .map_err(http)?;
        if answer["ok"] != true {
            let error = answer["error"]
                .as_str()
                .unwrap_or("no error given")
                .to_owned();
            return Err(SlackError::Api { method, error });
        }
        Ok(answer)
    }

    /// POSTs a message to an interaction's `response_url` (no token: the URL is the credential).
    pub(crate) async fn respond(&self, url: &str, body: &Value) -> Result<(), reqwest::Error> {
        self.http
            .post(url)
            .json(body)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Where this API lives, as `scheme://host:port`.
    pub(crate) fn origin(&self) -> &str {
        origin(&self.base)
    }
}

/// Slack's `Retry-After` (seconds), bounded; 1 s when absent or unreadable.
fn retry_after(h: &reqwest::header::HeaderMap) -> Duration {
    h.get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1))
        .min(MAX_RETRY_AFTER)
}

/// `scheme://authority` of a URL (everything before the path).
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// A posted message: where to update it.
#[derive(Debug, Clone)]
struct Posted {
    channel: String,
    ts: String,
}

/// Posts new requests and updates them once decided, until the service stops.
pub async fn run(s: Slack, public_url: Option<String>, approvals: Approvals) {
    let mut notices = approvals.subscribe();
    let api = match WebApi::new(&s) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "slack channel disabled: no HTTP client");
            return;
        }
    };
    let s = Arc::new(s);
    let public_url: Option<Arc<str>> = public_url.map(Into::into);
    // Request id → the task posting its message (and its expiry). Kept in this
    // loop only: the decision waits for the post, so a quick decision never
    // races ahead of the message it has to update.
    let mut posts: HashMap<String, (JoinHandle<Option<Posted>>, SystemTime)> = HashMap::new();
    loop {
        match notices.recv().await {
            Ok(Notice::Created(r) | Notice::Decided(r))
                if !crate::config::channel_receives(&s.groups, &r.approver_groups) => {}
            Ok(Notice::Created(r)) => {
                let now = SystemTime::now();
                posts.retain(|_, (_, expires)| *expires + FORGET_AFTER > now);
                let task =
                    tokio::spawn(post(api.clone(), s.clone(), r.clone(), public_url.clone()));
                posts.insert(r.id.clone(), (task, r.expires));
            }
            Ok(Notice::Decided(r)) => {
                if let Some((task, _)) = posts.remove(&r.id) {
                    tokio::spawn(update(api.clone(), task, r, public_url.clone()));
                }
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "slack channel fell behind; notices dropped");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn post(
    api: WebApi,
    s: Arc<Slack>,
    r: Arc<Request>,
    public_url: Option<Arc<str>>,
) -> Option<Posted> {
    let (text, blocks) = message::requested(&r, public_url.as_deref());
    let body = json!({"channel": s.channel, "text": text, "blocks": blocks, "unfurl_links": false});
    match api.call("chat.postMessage", &body).await {
        Ok(answer) => {
            let posted = Posted {
                channel: answer["channel"].as_str().unwrap_or(&s.channel).to_owned(),
                ts: answer["ts"].as_str()?.to_owned(),
            };
            tracing::debug!(request = %r.id, ts = %posted.ts, "slack message posted");
            Some(posted)
        }
        Err(e) => {
            tracing::warn!(request = %r.id, error = %e, "slack message not posted");
            None
        }
    }
}

async fn update(
    api: WebApi,
    posting: JoinHandle<Option<Posted>>,
    r: Arc<Request>,
    public_url: Option<Arc<str>>,
) {
    let Ok(Some(p)) = posting.await else {
        return;
    };
    let (text, blocks) = message::decided(&r, public_url.as_deref());
    let body = json!({"channel": p.channel, "ts": p.ts, "text": text, "blocks": blocks});
    if let Err(e) = api.call("chat.update", &body).await {
        tracing::warn!(request = %r.id, error = %e, "slack message not updated");
    }
}

/// The interactivity endpoint, mounted only when Slack is configured.
pub fn routes(s: Option<Slack>, approvals: Approvals) -> Router {
    match s {
        None => Router::new(),
        Some(s) => actions::routes(s, approvals),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn origin_is_scheme_and_authority() {
        assert_eq!(
            super::origin("http://127.0.0.1:9/api"),
            "http://127.0.0.1:9"
        );
        assert_eq!(super::origin("https://slack.com/api/"), "https://slack.com");
        assert_eq!(super::origin("https://slack.com"), "https://slack.com");
    }
}
