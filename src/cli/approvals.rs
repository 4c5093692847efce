//! `sqlgate approvals list|show|approve|deny|grants|revoke`: the CLI on
//! `/v1/approvals` and `/v1/grants`.

use anyhow::{bail, Context};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// List requests (pending unless --state says otherwise).
    List {
        /// pending, approved, denied, timed_out, withdrawn or all.
        #[arg(long)]
        state: Option<String>,
        /// Print the requests as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one request as JSON.
    Show { id: String },
    /// Approve a request.
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        /// Also approve the same statement for the same agent for this long (e.g. 15m).
        #[arg(long)]
        grant: Option<String>,
    },
    /// Deny a request.
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// List the standing grants in force (that your groups could give).
    Grants,
    /// End a standing grant now (its id is the request that gave it).
    Revoke { id: String },
}

pub fn run(admin: Option<String>, token: Option<String>, cmd: Command) -> anyhow::Result<()> {
    let admin = admin.context("name the admin API with --admin URL or SQLGATE_ADMIN")?;
    let token = token.context("give your approver token with --token or SQLGATE_TOKEN")?;
    let base = admin.trim_end_matches('/').to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        let call = |req: reqwest::RequestBuilder| async {
            let resp = req
                .bearer_auth(&token)
                .send()
                .await
                .with_context(|| format!("cannot reach {base}"))?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            if !status.is_success() {
                let msg = body["error"].as_str().unwrap_or("no detail").to_owned();
                bail!(
                    "{} {}: {msg}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                );
            }
            Ok(body)
        };
        match cmd {
            Command::List { state, json } => {
                // States are plain words (checked by the server), no escaping needed.
                let url = match &state {
                    Some(s) => format!("{base}/v1/approvals?state={s}"),
                    None => format!("{base}/v1/approvals"),
                };
                let body = call(http.get(url)).await?;
                let list = body["approvals"].as_array().cloned().unwrap_or_default();
                if json {
                    // serde_json leaves DEL, C1 and bidi characters raw.
                    println!("{}", super::terminal_safe_json(&list)?);
                } else {
                    print_table(&list);
                }
            }
            Command::Show { id } => {
                let body = call(http.get(format!("{base}/v1/approvals/{id}"))).await?;
                println!("{}", super::terminal_safe_json(&body)?);
            }
            Command::Approve { id, reason, grant } => {
                let body = serde_json::json!({ "reason": reason, "grant": grant });
                let r = call(
                    http.post(format!("{base}/v1/approvals/{id}/approve"))
                        .json(&body),
                )
                .await?;
                println!("{id}: {}", r["state"].as_str().unwrap_or("?"));
            }
            Command::Deny { id, reason } => {
                let body = serde_json::json!({ "reason": reason });
                let r = call(
                    http.post(format!("{base}/v1/approvals/{id}/deny"))
                        .json(&body),
                )
                .await?;
                println!("{id}: {}", r["state"].as_str().unwrap_or("?"));
            }
            Command::Grants => {
                let body = call(http.get(format!("{base}/v1/grants"))).await?;
                println!("{}", super::terminal_safe_json(&body["grants"])?);
            }
            Command::Revoke { id } => {
                call(http.post(format!("{base}/v1/grants/{id}/revoke"))).await?;
                println!("{id}: revoked");
            }
        }
        Ok(())
    })
}

fn print_table(list: &[serde_json::Value]) {
    if list.is_empty() {
        println!("no requests");
        return;
    }
    println!(
        "{:<30} {:<16} {:<28} {:<10} STATEMENT",
        "ID", "AGENT", "RULE", "STATE"
    );
    for r in list {
        let field = |v: &serde_json::Value| super::terminal_safe(v.as_str().unwrap_or(""));
        // Every statement of the request, not just the first.
        let texts: Vec<String> = r["statements"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|s| field(&s["text"]))
            .collect();
        let stmt = match texts.len() {
            0 | 1 => texts.concat(),
            n => format!("({n} statements) {}", texts.join(" | ")),
        };
        // Held out of a longer query string: the rest runs with it.
        let stmt = match r["string"].as_array().map(Vec::len) {
            Some(n) if n > 0 => format!("(of {n} in its string) {stmt}"),
            _ => stmt,
        };
        let stmt = if r["session_note"].is_string() {
            format!("(session changed names) {stmt}")
        } else {
            stmt
        };
        let stmt = match stmt.char_indices().nth(60) {
            Some((at, _)) => format!(
                "{}… (truncated: `sqlgate approvals show` has it all)",
                &stmt[..at]
            ),
            None => stmt,
        };
        println!(
            "{:<30} {:<16} {:<28} {:<10} {stmt}",
            field(&r["id"]),
            field(&r["agent"]),
            field(&r["rule"]),
            field(&r["state"]),
        );
    }
}
