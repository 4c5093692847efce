//! The Teams channel and the approval page, end to end: a real PostgreSQL,
//! the real sqlgate, a local HTTP server standing in for the Teams webhook,
//! and a real headless Chromium driving the approval page.

mod browser;
mod support;

use axum::extract::State;
use axum::http::StatusCode;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{PgServer, Sqlgate, SqlgateConfig, TestDir};
use tokio::sync::mpsc;

use support::fixtures::{AGENT, AGENT_PW};
const XSS: &str = "UPDATE items SET name = '<script>alert(1)</script>'";

struct Env {
    db: String,
    cfg: SqlgateConfig,
    gate: Sqlgate,
    _rules: TestDir,
    http: reqwest::Client,
}

impl Env {
    /// `teams`: the stand-in webhook's URL, if the Teams channel is on.
    fn new(prefix: &str, teams: Option<&str>) -> Env {
        let pg = PgServer::shared();
        let (db, rules, cfg) = support::fixtures::approval_setup(pg, prefix);
        let mut cfg = cfg;
        let public_url = format!("http://{}", cfg.admin_addr());
        let mut approvals =
            format!("[approvals]\ntimeout = \"120s\"\npublic_url = \"{public_url}\"\n");
        if let Some(url) = teams {
            approvals.push_str(&format!("[approvals.teams]\nwebhook_url = \"{url}\"\n"));
        }
        cfg = cfg.extra(&approvals);
        let gate = Sqlgate::start_with(&cfg);
        let _ = rustls::crypto::ring::default_provider().install_default();
        Env {
            db,
            cfg,
            gate,
            _rules: rules,
            http: reqwest::Client::new(),
        }
    }

    fn admin(&self) -> String {
        format!("http://{}", self.cfg.admin_addr())
    }

    /// Runs `sql` as the agent in a task (it will be held).
    async fn agent(&self, sql: &'static str) -> tokio::task::JoinHandle<Result<u64, String>> {
        let conninfo = format!(
            "host=127.0.0.1 port={} user={AGENT} password={AGENT_PW} dbname={} sslmode=disable",
            self.cfg.listen_port, self.db
        );
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        // Simple query: the rule shows literals, so approvers see the text as sent.
        tokio::spawn(async move {
            let msgs = client.simple_query(sql).await.map_err(|e| e.to_string())?;
            Ok(msgs
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                    _ => None,
                })
                .unwrap_or(0))
        })
    }

    async fn api(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.admin());
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let resp = req.bearer_auth("tok-alice").send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or_default(),
        )
    }

    /// The one pending request's id, once there is one.
    async fn pending_id(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = self
                .api("GET", "/v1/approvals", serde_json::Value::Null)
                .await;
            if let Some(id) = v["approvals"][0]["id"].as_str() {
                return id.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "nothing held; log:\n{}",
                self.gate.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_to_string(self.gate.dir().join("audit/sqlgate.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// A local stand-in for a Teams incoming webhook: records every POST body
/// and answers with scripted statuses (then 200).
struct FakeTeams {
    url: String,
    posts: mpsc::UnboundedReceiver<(Instant, serde_json::Value)>,
}

#[derive(Clone)]
struct FakeState {
    statuses: Arc<Mutex<VecDeque<u16>>>,
    posts: mpsc::UnboundedSender<(Instant, serde_json::Value)>,
}

impl FakeTeams {
    async fn start(statuses: &[u16]) -> FakeTeams {
        let (tx, posts) = mpsc::unbounded_channel();
        let state = FakeState {
            statuses: Arc::new(Mutex::new(statuses.iter().copied().collect())),
            posts: tx,
        };
        async fn post(State(s): State<FakeState>, body: axum::body::Bytes) -> StatusCode {
            let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let _ = s.posts.send((Instant::now(), v));
            let code = s.statuses.lock().unwrap().pop_front().unwrap_or(200);
            StatusCode::from_u16(code).unwrap()
        }
        let app = axum::Router::new()
            .route("/webhook", axum::routing::post(post))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeTeams { url, posts }
    }

    async fn next(&mut self) -> (Instant, serde_json::Value) {
        tokio::time::timeout(Duration::from_secs(20), self.posts.recv())
            .await
            .expect("a Teams post within 20 s")
            .unwrap()
    }
}

/// The card inside a Teams message, after checking the envelope.
fn card(message: &serde_json::Value) -> &serde_json::Value {
    assert_eq!(message["type"], "message", "{message}");
    let attachments = message["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let c = &attachments[0]["content"];
    assert_eq!(c["type"], "AdaptiveCard");
    assert_eq!(
        c["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert_eq!(c["version"], "1.4");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_gets_a_card_linking_to_the_page_then_the_decision() {
    let mut teams = FakeTeams::start(&[]).await;
    let env = Env::new("teams_card", Some(&teams.url));
    let agent = env.agent("DELETE FROM items").await;
    let (_, message) = teams.next().await;
    let id = env.pending_id().await;
    let c = card(&message);
    let body = c["body"].as_array().unwrap();
    let facts = &body.iter().find(|b| b["type"] == "FactSet").unwrap()["facts"];
    let fact = |t: &str| {
        facts
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["title"] == t)
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(fact("Agent"), AGENT);
    assert_eq!(fact("Database"), env.db);
    assert_eq!(fact("Rule"), "destructive-held");
    assert!(fact("Classes").contains("destructive"));
    assert!(!fact("Expires").is_empty());
    // The statement is shown verbatim in monospace (a TextRun: no Markdown).
    let stmt = body
        .iter()
        .find(|b| b["inlines"][1]["text"] == "DELETE FROM items")
        .unwrap_or_else(|| panic!("no statement block in {message}"));
    assert_eq!(stmt["type"], "RichTextBlock");
    assert_eq!(stmt["inlines"][1]["fontType"], "Monospace");
    assert!(c["body"].to_string().contains("items"));
    let page = format!("{}/approvals/{id}", env.admin());
    let actions = c["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2);
    for (a, title) in actions.iter().zip(["Approve…", "Deny…"]) {
        assert_eq!(a["type"], "Action.OpenUrl");
        assert_eq!(a["title"], title);
        assert_eq!(a["url"], page.as_str());
    }

    let (s, v) = env
        .api(
            "POST",
            &format!("/v1/approvals/{id}/approve"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(agent.await.unwrap().unwrap(), 3);
    let (_, decided) = teams.next().await;
    let text = card(&decided)["body"].to_string();
    assert!(
        text.contains("Approved by alice") && text.contains(&id),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_delivery_is_retried_after_a_5xx() {
    let mut teams = FakeTeams::start(&[500]).await;
    let env = Env::new("teams_retry", Some(&teams.url));
    let agent = env.agent("DELETE FROM items").await;
    let (t1, first) = teams.next().await;
    let (t2, second) = teams.next().await;
    assert_eq!(first, second, "the same card again");
    assert!(
        t2 - t1 >= Duration::from_millis(400),
        "backoff: {:?}",
        t2 - t1
    );
    card(&second);
    // The proxy was never blocked by the failing webhook: the hold is there.
    let id = env.pending_id().await;
    env.api(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        serde_json::json!({"reason": "no"}),
    )
    .await;
    assert!(agent.await.unwrap().is_err());
    let (_, decided) = teams.next().await;
    assert!(card(&decided)["body"]
        .to_string()
        .contains("Denied by alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_static_strict_and_never_carries_the_statement() {
    let env = Env::new("page_http", None);
    let agent = env.agent(XSS).await;
    let id = env.pending_id().await;
    // The payload really is in the request the page will load.
    let (_, v) = env
        .api(
            "GET",
            &format!("/v1/approvals/{id}"),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(v["statements"][0]["text"], XSS);

    let resp = env
        .http
        .get(format!("{}/approvals/{id}", env.admin()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    for d in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(d), "{d} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let html = resp.text().await.unwrap();
    assert!(!html.contains("alert(1)") && !html.contains(&id));
    // Scripts only by src (CSP has no 'unsafe-inline'), no inline handlers.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<script src=\"/approvals/app.js\""));
    for handler in [
        " onclick",
        " onload",
        " onerror",
        " onsubmit",
        "javascript:",
        "style=",
    ] {
        assert!(!html.contains(handler), "{handler}");
    }

    let js = env
        .http
        .get(format!("{}/approvals/app.js", env.admin()))
        .send()
        .await
        .unwrap();
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let js = js.text().await.unwrap();
    assert!(js.contains("textContent") && js.contains("sessionStorage"));
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!js.contains(sink), "the page script must not use {sink}");
    }
    let css = env
        .http
        .get(format!("{}/approvals/app.css", env.admin()))
        .send()
        .await
        .unwrap();
    assert!(css.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    agent.abort();
}

/// The whole path as an approver walks it: open the link, give the token,
/// read the statement, approve; the agent's statement then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_in_a_real_browser_and_the_statement_runs() {
    let Some(chromium) = browser::find() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is required in CI (scripts/install-deps.sh installs it)");
        }
        eprintln!("skipped: no chromium on PATH (install it with scripts/install-deps.sh)");
        return;
    };
    let started = Instant::now();
    let env = Env::new("page_browser", None);
    let agent = env.agent(XSS).await;
    let id = env.pending_id().await;
    let page = format!("{}/approvals/{id}", env.admin());
    let missing = format!("{}/approvals/apr_missing", env.admin());

    let seen = tokio::task::spawn_blocking(move || {
        let mut b = browser::Browser::launch(&chromium);
        let tab = b.open(&page);
        b.wait_for(&tab, "document.readyState === 'complete' && !!document.getElementById('token')", Duration::from_secs(20));
        b.eval(
            &tab,
            "document.getElementById('token').value = 'tok-alice'; \
             document.getElementById('signin').requestSubmit(); true",
        );
        b.wait_for(&tab, "document.getElementById('f-agent').textContent === 'bot'", Duration::from_secs(10));
        let shown = b.eval(
            &tab,
            "({ statement: document.querySelector('#statements code').textContent, \
                statementElements: document.querySelector('#statements code').childElementCount, \
                scripts: document.scripts.length, \
                state: document.getElementById('state').textContent, \
                rule: document.getElementById('f-rule').textContent, \
                tokenStored: sessionStorage.getItem('sqlgate.approver-token'), \
                tokenField: document.getElementById('token').value, \
                url: location.href })",
        );
        b.eval(
            &tab,
            "document.getElementById('reason').value = 'reviewed in the browser'; \
             document.getElementById('approve').click(); true",
        );
        b.wait_for(&tab, "document.getElementById('state').textContent === 'approved'", Duration::from_secs(10));
        let message = b.eval(&tab, "document.getElementById('message').textContent");
        // An unknown id: the page shows the API's 404 (the token is still in this tab).
        b.navigate(&tab, &missing);
        let not_found = b.wait_for(
            &tab,
            "document.getElementById('message').textContent.includes('404') && document.getElementById('message').textContent",
            Duration::from_secs(10),
        );
        let dialog = b.saw("Page.javascriptDialogOpening");
        (shown, message, not_found, dialog)
    })
    .await
    .unwrap();
    let (shown, message, not_found, dialog) = seen;

    assert_eq!(shown["statement"], XSS, "{shown}");
    assert_eq!(
        shown["statementElements"], 0,
        "inserted as text, not markup"
    );
    assert_eq!(shown["scripts"], 1, "only app.js: {shown}");
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["rule"], "destructive-held");
    assert_eq!(shown["tokenStored"], "tok-alice");
    assert_eq!(shown["tokenField"], "", "the field is cleared once stored");
    assert!(!shown["url"].as_str().unwrap().contains("tok-"), "{shown}");
    assert!(!dialog, "the statement's <script> must never run");
    assert!(
        message.as_str().unwrap().contains("Approved by alice"),
        "{message}"
    );
    assert!(
        not_found
            .as_str()
            .unwrap()
            .contains("unknown approval request `apr_missing`"),
        "{not_found}"
    );

    let n = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("the approved statement completes")
        .unwrap()
        .unwrap_or_else(|e| panic!("approved UPDATE must run: {e}"));
    assert_eq!(n, 3);
    let vote = env
        .audit()
        .into_iter()
        .find(|r| r["kind"] == "approval_vote")
        .expect("vote record");
    assert_eq!(vote["channel"], "page");
    assert_eq!(vote["approver"], "alice");
    assert_eq!(vote["reason"], "reviewed in the browser");
    eprintln!("browser test took {:?}", started.elapsed());
}
