//! Approval channels end to end: a real PostgreSQL and the real sqlgate; local
//! HTTP servers stand in for the webhook receiver and for Slack (Web API and
//! `response_url`). They record every request and check signatures, headers
//! and shapes the way the real services (or a careful receiver) would.

mod support;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{PgServer, Sqlgate, SqlgateConfig, TestDir};
use tokio_postgres::{NoTls, SimpleQueryMessage};

use support::fixtures::{AGENT, AGENT_PW};
const HOOK_SECRET: &str = "s3cret";
const SLACK_TOKEN: &str = "xoxb-test";
const SLACK_SECRET: &str = "slack-secret";

// ---------------------------------------------------------------- signing

fn hmac_hex(secret: &str, msg: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(msg);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The documented webhook scheme: `v1=hex(HMAC(secret, "{ts}.{body}"))`.
fn hook_sig(secret: &str, ts: u64, body: &[u8]) -> String {
    let mut msg = format!("{ts}.").into_bytes();
    msg.extend_from_slice(body);
    format!("v1={}", hmac_hex(secret, &msg))
}

/// Decisions are signed in their own domain:
/// `v1=hex(HMAC(secret, "sqlgate-decision.{ts}.{body}"))`.
fn decision_sig(secret: &str, ts: u64, body: &[u8]) -> String {
    let mut msg = format!("sqlgate-decision.{ts}.").into_bytes();
    msg.extend_from_slice(body);
    format!("v1={}", hmac_hex(secret, &msg))
}

/// Slack's scheme: `v0=hex(HMAC(signing_secret, "v0:{ts}:{body}"))`.
fn slack_sig(secret: &str, ts: u64, body: &[u8]) -> String {
    let mut msg = format!("v0:{ts}:").into_bytes();
    msg.extend_from_slice(body);
    format!("v0={}", hmac_hex(secret, &msg))
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------- local "internet"

/// One request as the local servers saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
    /// For `/hook`: the signature verified and the timestamp was fresh.
    signed_ok: bool,
    at: Instant,
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    /// Statuses the webhook answers next (then 200).
    hook_plan: Mutex<VecDeque<u16>>,
    /// Statuses Slack's Web API answers next (with `Retry-After: 1`), then 200.
    api_plan: Mutex<VecDeque<u16>>,
}

impl Recorder {
    fn all(&self, path: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.path == path).cloned().collect()
    }

    /// Waits until `n` requests to `path` matching `pred` have arrived.
    async fn wait(&self, path: &str, n: usize, pred: impl Fn(&Seen) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got: Vec<Seen> = self.all(path).into_iter().filter(|s| pred(s)).collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests to {path}; all: {:#?}",
                got.len(),
                self.seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn record(&self, path: &str, headers: &HeaderMap, body: &Bytes, signed_ok: bool) {
        let body = serde_json::from_slice(body).unwrap_or(Value::Null);
        self.seen.lock().unwrap().push(Seen {
            path: path.to_owned(),
            headers: headers.clone(),
            body,
            signed_ok,
            at: Instant::now(),
        });
    }
}

/// The webhook receiver: verifies like a careful third party, then answers
/// with the planned status.
async fn hook(State(rec): State<Arc<Recorder>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts: u64 = h("x-sqlgate-timestamp").parse().unwrap_or(0);
    let ok = h("content-type") == "application/json"
        && ts.abs_diff(now()) <= 300
        && h("x-sqlgate-signature") == hook_sig(HOOK_SECRET, ts, &body);
    rec.record("/hook", &headers, &body, ok);
    let planned = rec.hook_plan.lock().unwrap().pop_front();
    StatusCode::from_u16(planned.unwrap_or(200)).unwrap()
}

/// Slack's Web API: bearer token, JSON, `ok`; rate limits on demand.
async fn slack_api(
    State(rec): State<Arc<Recorder>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    rec.record(&format!("/api/{method}"), &headers, &body, true);
    if let Some(status) = rec.api_plan.lock().unwrap().pop_front() {
        let status = StatusCode::from_u16(status).unwrap();
        return (status, [("retry-after", "1")], "slow down").into_response();
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let answer = if auth != Some(&format!("Bearer {SLACK_TOKEN}")) {
        json!({"ok": false, "error": "invalid_auth"})
    } else {
        match (serde_json::from_slice::<Value>(&body), method.as_str()) {
            (Err(_), _) => json!({"ok": false, "error": "invalid_json"}),
            (Ok(v), "chat.postMessage") => {
                json!({"ok": true, "channel": v["channel"], "ts": "1700000000.000100", "message": {}})
            }
            (Ok(v), "chat.update") => json!({"ok": true, "channel": v["channel"], "ts": v["ts"]}),
            _ => json!({"ok": false, "error": "unknown_method"}),
        }
    };
    Json(answer).into_response()
}

/// A Slack `response_url`.
async fn respond(State(rec): State<Arc<Recorder>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    rec.record("/respond", &headers, &body, true);
    StatusCode::OK
}

async fn start_local() -> (Arc<Recorder>, u16) {
    let rec = Arc::new(Recorder::default());
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/api/{method}", post(slack_api))
        .route("/respond", post(respond))
        .with_state(rec.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (rec, port)
}

// ---------------------------------------------------------------- sqlgate

fn pg() -> &'static PgServer {
    PgServer::shared()
}

struct Env {
    db: String,
    cfg: SqlgateConfig,
    gate: Sqlgate,
    rec: Arc<Recorder>,
    local: u16,
    http: reqwest::Client,
    _rules: TestDir,
}

enum Channel {
    Webhook,
    /// A webhook for these approver groups only (TOML list items).
    WebhookFor(&'static str),
    Slack,
}

impl Env {
    async fn new(prefix: &str, channel: Channel) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (rec, local) = start_local().await;
        let pg = pg();
        let (db, rules, cfg) = support::fixtures::approval_setup(pg, prefix);
        let mut cfg = cfg;
        let channel = match channel {
            Channel::Webhook => format!(
                "[[approvals.webhook]]\nurl = \"http://127.0.0.1:{local}/hook\"\nsecret = \"{HOOK_SECRET}\"\n\
                 decisions_for = [\"alice\", \"bob\", \"bot\", \"carol\"]"
            ),
            Channel::WebhookFor(groups) => format!(
                "[[approvals.webhook]]\nurl = \"http://127.0.0.1:{local}/hook\"\nsecret = \"{HOOK_SECRET}\"\n\
                 groups = [{groups}]"
            ),
            Channel::Slack => format!(
                "[approvals.slack]\nbot_token = \"{SLACK_TOKEN}\"\nsigning_secret = \"{SLACK_SECRET}\"\n\
                 channel = \"C0123\"\napi_base = \"http://127.0.0.1:{local}/api\"\n\
                 users = {{ U111 = \"alice\", U222 = \"carol\", U333 = \"bob\" }}"
            ),
        };
        let approvals = format!(
            "[approvals]\ntimeout = \"60s\"\nkeepalive = \"500ms\"\npublic_url = \"http://{}\"\n{channel}",
            cfg.admin_addr()
        );
        cfg = cfg.extra(&approvals);
        let gate = Sqlgate::start_with(&cfg);
        Env {
            db,
            cfg,
            gate,
            rec,
            local,
            http: reqwest::Client::new(),
            _rules: rules,
        }
    }

    /// The agent sends `sql` on a new connection; the task ends with its result.
    async fn agent(
        &self,
        sql: &'static str,
    ) -> tokio::task::JoinHandle<Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>> {
        let conninfo = format!(
            "host=127.0.0.1 port={} user={AGENT} password={AGENT_PW} dbname={} sslmode=disable",
            self.cfg.listen_port, self.db
        );
        let (client, conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
        tokio::spawn(conn);
        tokio::spawn(async move { client.simple_query(sql).await })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.cfg.admin_addr())
    }

    /// `GET path` of the HTTP API as alice.
    async fn api_get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .bearer_auth("tok-alice")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// State of a request through the HTTP API.
    async fn state(&self, id: &str) -> String {
        let v = self.api_get(&format!("/v1/approvals/{id}")).await;
        v["state"].as_str().unwrap_or("?").to_owned()
    }

    /// POSTs a decision callback, signed with `secret` at `ts`.
    async fn callback(&self, body: &Value, secret: &str, ts: u64) -> (u16, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let sig = decision_sig(secret, ts, &body);
        self.callback_raw(body, &ts.to_string(), &sig).await
    }

    async fn callback_raw(&self, body: Vec<u8>, ts: &str, sig: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url("/v1/webhook/decision"))
            .header("content-type", "application/json")
            .header("X-Sqlgate-Timestamp", ts)
            .header("X-Sqlgate-Signature", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or_default())
    }

    /// A Slack `block_actions` click, form-encoded and signed like Slack does.
    fn click_body(&self, user: &str, action: &str, id: &str) -> Vec<u8> {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": "someone", "team_id": "T1"},
            "api_app_id": "A1",
            "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0123"},
            "channel": {"id": "C0123", "name": "approvals"},
            "response_url": format!("http://127.0.0.1:{}/respond", self.local),
            "actions": [{"type": "button", "action_id": action, "block_id": "sqlgate_decision",
                         "value": id, "action_ts": "1700000001.000200"}],
        });
        format!("payload={}", form_encode(&payload.to_string())).into_bytes()
    }

    async fn slack_post(&self, body: Vec<u8>, ts: u64, sig: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url("/v1/slack/interactions"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Slack-Request-Timestamp", ts.to_string())
            .header("X-Slack-Signature", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or_default())
    }

    async fn click(&self, user: &str, action: &str, id: &str) -> (u16, Value) {
        let body = self.click_body(user, action, id);
        let ts = now();
        let sig = slack_sig(SLACK_SECRET, ts, &body);
        self.slack_post(body, ts, &sig).await
    }
}

fn deleted_rows(r: &[SimpleQueryMessage]) -> Option<u64> {
    r.iter().find_map(|m| match m {
        SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    })
}

fn event(s: &Seen) -> &str {
    s.body["event"].as_str().unwrap_or("")
}

// ---------------------------------------------------------------- webhook

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivers_signed_events_and_a_signed_callback_decides() {
    let env = Env::new("chan_hook", Channel::Webhook).await;
    let agent = env.agent("DELETE FROM items").await;

    let got = env
        .rec
        .wait("/hook", 1, |s| event(s) == "approval.requested")
        .await;
    let req = &got[0];
    assert!(req.signed_ok, "bad signature on {req:#?}");
    assert_eq!(req.headers["x-sqlgate-event"], "approval.requested");
    let id = req.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("apr_"));
    assert_eq!(req.body["agent"], AGENT);
    assert_eq!(req.body["database"], env.db.as_str());
    assert_eq!(req.body["rule"], "destructive-held");
    assert_eq!(req.body["state"], "pending");
    assert_eq!(req.body["statements"][0]["text"], "DELETE FROM items");
    let base = format!("http://{}", env.cfg.admin_addr());
    assert_eq!(
        req.body["approve_url"],
        format!("{base}/v1/approvals/{id}/approve")
    );
    assert_eq!(
        req.body["deny_url"],
        format!("{base}/v1/approvals/{id}/deny")
    );
    assert_eq!(req.body["page_url"], format!("{base}/approvals/{id}"));

    let decision = json!({"request": id, "approver": "alice", "decision": "approve",
                          "reason": "cleanup agreed"});
    let ts = now();
    let (s, v) = env.callback(&decision, HOOK_SECRET, ts).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("approved")), "{v}");
    assert_eq!(v["votes"][0]["approver"], "alice");
    assert_eq!(v["votes"][0]["channel"], "webhook");

    let r = agent.await.unwrap();
    let r = r.unwrap_or_else(|e| panic!("approved DELETE must run: {e}\n{}", env.gate.log()));
    assert_eq!(deleted_rows(&r), Some(3));

    let got = env
        .rec
        .wait("/hook", 1, |s| event(s) == "approval.decided")
        .await;
    let d = &got[0];
    assert!(d.signed_ok, "bad signature on {d:#?}");
    assert_eq!(d.body["id"], id.as_str());
    assert_eq!(d.body["state"], "approved");
    assert_eq!(d.body["outcome"]["by"][0], "alice");
    assert_eq!(d.body["page_url"], format!("{base}/approvals/{id}"));

    // The very same callback again is a replay, refused before any vote.
    let (s, v) = env.callback(&decision, HOOK_SECRET, ts).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("replay"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_for_other_groups_never_sees_the_request() {
    // Review H, H3: the request is for `dba`; the webhook is `sales`'s.
    let env = Env::new("chan_groups", Channel::WebhookFor("\"sales\"")).await;
    let agent = env.agent("DELETE FROM items").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let v = env.api_get("/v1/approvals").await;
        if let Some(id) = v["approvals"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "never held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        env.rec.all("/hook").is_empty(),
        "{:#?}",
        env.rec.all("/hook")
    );
    assert_eq!(env.state(&id).await, "pending");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_callbacks_are_refused_unless_signed_fresh_new_and_by_an_eligible_approver() {
    let env = Env::new("chan_hook_refusals", Channel::Webhook).await;
    let agent = env.agent("DELETE FROM items").await;
    let got = env
        .rec
        .wait("/hook", 1, |s| event(s) == "approval.requested")
        .await;
    let id = got[0].body["id"].as_str().unwrap().to_owned();
    let by = |who: &str| json!({"request": id, "approver": who, "decision": "approve"});

    // No signature, a wrong secret, a tampered body, a non-v1 scheme.
    let body = serde_json::to_vec(&by("alice")).unwrap();
    let (s, _) = env.callback_raw(body.clone(), &now().to_string(), "").await;
    assert_eq!(s, 401);
    let (s, v) = env.callback(&by("alice"), "not-the-secret", now()).await;
    assert_eq!(s, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("signature"), "{v}");
    let ts = now();
    // Signed as a notification is: not a decision (separate domains).
    let (s, _) = env
        .callback_raw(
            body.clone(),
            &ts.to_string(),
            &hook_sig(HOOK_SECRET, ts, &body),
        )
        .await;
    assert_eq!(s, 401);
    let sig = decision_sig(HOOK_SECRET, ts, &body);
    let tampered = serde_json::to_vec(&by("bob")).unwrap();
    let (s, _) = env.callback_raw(tampered, &ts.to_string(), &sig).await;
    assert_eq!(s, 401);
    let (s, _) = env
        .callback_raw(body.clone(), &ts.to_string(), &sig.replace("v1=", "v0="))
        .await;
    assert_eq!(s, 401);
    // Correctly signed, but ten minutes old (or ahead).
    let (s, v) = env.callback(&by("alice"), HOOK_SECRET, now() - 600).await;
    assert_eq!(s, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("stale"), "{v}");
    let (s, _) = env.callback(&by("alice"), HOOK_SECRET, now() + 600).await;
    assert_eq!(s, 401);

    // Signed and fresh, but nobody we know; then the agent itself; then the wrong group.
    let ts = now();
    let (s, v) = env.callback(&by("mallory"), HOOK_SECRET, ts).await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("mallory"), "{v}");
    // The same signed callback twice: the second is a replay.
    let (s, v) = env.callback(&by("mallory"), HOOK_SECRET, ts).await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = env.callback(&by(AGENT), HOOK_SECRET, now()).await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("own request"), "{v}");
    let (s, v) = env.callback(&by("carol"), HOOK_SECRET, now()).await;
    assert_eq!(s, 403, "{v}");
    // Malformed bodies and unknown requests.
    let (s, _) = env
        .callback(
            &json!({"request": id, "approver": "alice", "decision": "maybe"}),
            HOOK_SECRET,
            now(),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = env
        .callback(
            &json!({"request": "apr_nope", "approver": "alice", "decision": "approve"}),
            HOOK_SECRET,
            now(),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(env.state(&id).await, "pending");

    // A proper denial ends it.
    let deny = json!({"request": id, "approver": "bob", "decision": "deny", "reason": "not today"});
    let (s, v) = env.callback(&deny, HOOK_SECRET, now()).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("denied")), "{v}");
    let e = agent.await.unwrap().expect_err("denied");
    let db = e.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "42501");
    assert!(db.message().contains("not today"), "{}", db.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_server_errors_with_backoff_and_gives_up_on_client_errors() {
    let env = Env::new("chan_hook_retry", Channel::Webhook).await;
    env.rec.hook_plan.lock().unwrap().extend([500, 500]);
    let agent = env.agent("DELETE FROM items").await;
    let got = env
        .rec
        .wait("/hook", 3, |s| event(s) == "approval.requested")
        .await;
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|s| s.signed_ok));
    // The same event each time, waits growing: 0.5 s, then 1 s.
    assert_eq!(got[0].body["id"], got[2].body["id"]);
    assert!(got[1].at - got[0].at >= Duration::from_millis(450));
    assert!(got[2].at - got[1].at >= Duration::from_millis(950));
    let id = got[0].body["id"].as_str().unwrap().to_owned();

    // The decision event meets a 400: final, no retry.
    env.rec.hook_plan.lock().unwrap().push_back(400);
    let approve = json!({"request": id, "approver": "alice", "decision": "approve"});
    let (s, v) = env.callback(&approve, HOOK_SECRET, now()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(deleted_rows(&agent.await.unwrap().unwrap()), Some(3));
    env.rec
        .wait("/hook", 1, |s| event(s) == "approval.decided")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let decided = env
        .rec
        .all("/hook")
        .into_iter()
        .filter(|s| event(s) == "approval.decided")
        .count();
    assert_eq!(decided, 1);
    assert_eq!(env.rec.all("/hook").len(), 4);
}

// ---------------------------------------------------------------- slack

/// Every string value anywhere in `v`.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn text_of(v: &Value) -> String {
    let mut out = Vec::new();
    strings(v, &mut out);
    out.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_posts_buttons_and_a_signed_click_approves_and_updates_the_message() {
    let env = Env::new("chan_slack", Channel::Slack).await;
    // Slack rate-limits the first post: it is retried after `Retry-After`.
    env.rec.api_plan.lock().unwrap().push_back(429);
    let agent = env.agent("DELETE FROM items").await;

    let posted = env.rec.wait("/api/chat.postMessage", 2, |_| true).await;
    assert!(posted[1].at - posted[0].at >= Duration::from_millis(900));
    assert_eq!(posted[0].body, posted[1].body);
    let p = &posted[1];
    assert_eq!(p.headers["authorization"], format!("Bearer {SLACK_TOKEN}"));
    assert!(p.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(p.body["channel"], "C0123");
    assert!(p.body["text"].as_str().unwrap().contains("DELETE"));
    let blocks = p.body["blocks"].as_array().expect("blocks");
    let all = text_of(&p.body["blocks"]);
    assert!(all.contains("```DELETE FROM items```"), "{all}");
    for want in ["bot", "destructive-held", "destructive", "items"] {
        assert!(all.contains(want), "{want} missing from {all}");
    }
    let actions = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("an actions block");
    let buttons = actions["elements"].as_array().unwrap();
    assert_eq!(buttons.len(), 2);
    let id = buttons[0]["value"].as_str().unwrap().to_owned();
    assert!(id.starts_with("apr_"));
    assert_eq!(
        (
            &buttons[0]["action_id"],
            &buttons[0]["style"],
            &buttons[0]["type"]
        ),
        (
            &json!("sqlgate_approve"),
            &json!("primary"),
            &json!("button")
        )
    );
    assert_eq!(
        (
            &buttons[1]["action_id"],
            &buttons[1]["style"],
            &buttons[1]["value"]
        ),
        (&json!("sqlgate_deny"), &json!("danger"), &json!(id))
    );

    // Alice (U111) clicks Approve.
    let (s, v) = env.click("U111", "sqlgate_approve", &id).await;
    assert_eq!((s, &v), (200, &json!({})));
    let r = agent.await.unwrap();
    let r = r.unwrap_or_else(|e| panic!("approved DELETE must run: {e}\n{}", env.gate.log()));
    assert_eq!(deleted_rows(&r), Some(3));

    let updated = env.rec.wait("/api/chat.update", 1, |_| true).await;
    let u = &updated[0];
    assert_eq!(u.headers["authorization"], format!("Bearer {SLACK_TOKEN}"));
    assert_eq!(u.body["channel"], "C0123");
    assert_eq!(u.body["ts"], "1700000000.000100");
    let all = text_of(&u.body);
    assert!(all.contains("Approved") && all.contains("alice"), "{all}");
    assert!(all.contains("via slack"), "{all}");
    let blocks = u.body["blocks"].as_array().unwrap();
    assert!(blocks.iter().all(|b| b["type"] != "actions"), "{blocks:?}");
    assert!(env.rec.all("/respond").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_refuses_bad_signatures_unmapped_users_wrong_groups_and_counts_toward_quorum() {
    let env = Env::new("chan_slack_refusals", Channel::Slack).await;
    let agent = env.agent("DELETE FROM items").await;
    let posted = env.rec.wait("/api/chat.postMessage", 1, |_| true).await;
    let id = posted[0].body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap()["elements"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();

    // Signatures: wrong secret, tampered body, stale timestamp, none.
    let body = env.click_body("U111", "sqlgate_approve", &id);
    let ts = now();
    let (s, _) = env
        .slack_post(body.clone(), ts, &slack_sig("wrong", ts, &body))
        .await;
    assert_eq!(s, 401);
    let sig = slack_sig(SLACK_SECRET, ts, &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b"&x=1");
    let (s, _) = env.slack_post(tampered, ts, &sig).await;
    assert_eq!(s, 401);
    let old = now() - 600;
    let (s, _) = env
        .slack_post(body.clone(), old, &slack_sig(SLACK_SECRET, old, &body))
        .await;
    assert_eq!(s, 401);
    let (s, _) = env.slack_post(body.clone(), ts, "").await;
    assert_eq!(s, 401);
    assert_eq!(env.state(&id).await, "pending");

    // An unmapped Slack user is told so, and nothing is recorded.
    let (s, v) = env.click("U999", "sqlgate_approve", &id).await;
    assert_eq!(s, 200);
    assert_eq!(v["response_type"], "ephemeral");
    assert_eq!(v["replace_original"], false);
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("not mapped to a sqlgate approver"),
        "{v}"
    );
    let said = env.rec.wait("/respond", 1, |_| true).await;
    assert_eq!(said[0].body, v);
    assert_eq!(env.state(&id).await, "pending");

    // Carol (U222) is mapped but in the wrong group.
    let (s, v) = env.click("U222", "sqlgate_deny", &id).await;
    assert_eq!(s, 200);
    assert_eq!(v["response_type"], "ephemeral");
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("carol") && text.contains("dba"), "{text}");
    assert_eq!(env.state(&id).await, "pending");

    // Bob (U333) denies: decided, the message shows it.
    let (s, v) = env.click("U333", "sqlgate_deny", &id).await;
    assert_eq!((s, &v), (200, &json!({})));
    assert!(agent.await.unwrap().is_err());
    let updated = env.rec.wait("/api/chat.update", 1, |_| true).await;
    let all = text_of(&updated[0].body);
    assert!(all.contains("Denied") && all.contains("bob"), "{all}");
    // Clicking on a decided request: told why not.
    let (s, v) = env.click("U111", "sqlgate_approve", &id).await;
    assert_eq!(s, 200);
    assert!(
        v["text"].as_str().unwrap().contains("already denied"),
        "{v}"
    );

    // Quorum 2: the first approval is recorded, the second decides.
    let agent = env.agent("CREATE TABLE t2(x int)").await;
    let posted = env.rec.wait("/api/chat.postMessage", 2, |_| true).await;
    let id2 = posted[1].body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap()["elements"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, id2);
    let (s, v) = env.click("U111", "sqlgate_approve", &id2).await;
    assert_eq!(s, 200);
    assert!(v["text"].as_str().unwrap().contains("1 of 2"), "{v}");
    assert_eq!(env.state(&id2).await, "pending");
    let (s, v) = env.click("U333", "sqlgate_approve", &id2).await;
    assert_eq!((s, &v), (200, &json!({})));
    agent.await.unwrap().expect("approved by two");
    let updated = env.rec.wait("/api/chat.update", 2, |_| true).await;
    let all = text_of(&updated[1].body);
    assert!(all.contains("alice") && all.contains("bob"), "{all}");
}
