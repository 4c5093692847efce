//! Typed configuration: read from TOML once, validated into a ready value.
//!
//! Unknown keys are rejected (with the key's name and position, from `toml`);
//! relative paths are taken relative to the config file's folder; secrets may
//! come from the environment (`password_env`, `token_env`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config `{path}`: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    admin: Option<RawAdmin>,
    #[serde(default, rename = "listener")]
    listeners: Vec<RawListener>,
    #[serde(default, rename = "agent")]
    agents: Vec<RawAgent>,
    #[serde(default, rename = "approver")]
    approvers: Vec<RawApprover>,
    policy: RawPolicy,
    audit: RawAudit,
    approvals: Option<RawApprovals>,
    limits: Option<RawLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Postgres,
    Mysql,
}

impl Protocol {
    /// As the config and the audit records name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Mysql => "mysql",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTls {
    Disable,
    #[default]
    Prefer,
    Require,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    protocol: Protocol,
    listen: SocketAddr,
    upstream: String,
    tls: Option<RawTls>,
    #[serde(default)]
    upstream_tls: UpstreamTls,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    #[serde(default)]
    required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    password: Option<String>,
    password_env: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprover {
    name: String,
    token: Option<String>,
    token_env: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    /// Agents this person runs: their requests are not this person's to approve.
    #[serde(default)]
    agents: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    rules: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: PathBuf,
    key: Option<PathBuf>,
    durability: Option<Durability>,
    checkpoint_every: Option<u64>,
    checkpoint_interval: Option<String>,
    max_file_bytes: Option<u64>,
    previous_key: Option<PathBuf>,
    anchor: Option<String>,
    anchor_required: Option<bool>,
}

/// When statement records reach the disk (see the README's audit section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Allowed statements are group-committed within a short window; held,
    /// approved and denied ones are always on disk before they go on.
    #[default]
    Batch,
    /// Every statement's record is on disk before its result is released.
    Strict,
}

/// The audit log's settings.
#[derive(Debug, Clone)]
pub struct Audit {
    pub path: PathBuf,
    /// Ed25519 signing key; created (mode 0600) on first start if missing.
    pub key: PathBuf,
    pub durability: Durability,
    /// A signed checkpoint after this many records…
    pub checkpoint_every: u64,
    /// …or this long after the last one, whichever comes first (and at shutdown).
    pub checkpoint_interval: Duration,
    /// Rotate to a new file (chain continues) past this size; 0 = never.
    pub max_file_bytes: u64,
    /// The key that signed the log before `key` (a key change): recovery
    /// checks the old tail with it and the rotation record carries its
    /// signature.
    pub previous_key: Option<PathBuf>,
    /// Where every checkpoint also goes, outside the log's own files.
    pub anchor: Option<Anchor>,
    /// Serve only once the anchor took a checkpoint over this run's start:
    /// a run the anchor never saw (its collector down throughout) can't
    /// then be cut from the log unseen.
    pub anchor_required: bool,
}

impl Audit {
    /// A log at `path` signed with `key`, every other setting the default.
    pub fn new(path: PathBuf, key: PathBuf) -> Audit {
        Audit {
            path,
            key,
            durability: Durability::Batch,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            max_file_bytes: 0,
            previous_key: None,
            anchor: None,
            anchor_required: false,
        }
    }
}

/// A copy of every checkpoint kept where whoever can cut the log cannot
/// (`[audit] anchor`): a log that ends before its anchor's last checkpoint
/// was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// An append-only file, meant for another volume or host mount; read back
    /// at start-up, so a cut log is refused.
    File(PathBuf),
    /// The local syslog socket (`/dev/log`), facility `log audit`: for a
    /// collector that ships it elsewhere. Not read back at start-up.
    Syslog(PathBuf),
    /// An HTTP(S) endpoint each checkpoint line is POSTed to (retried, in
    /// the background). Not read back at start-up.
    Http(String),
}

impl Anchor {
    /// `syslog`, `syslog:<socket path>`, an http(s) URL or a file path.
    fn parse(text: &str, abs: impl Fn(&Path) -> PathBuf) -> Result<Anchor, String> {
        let text = text.trim();
        if text == "syslog" {
            return Ok(Anchor::Syslog(PathBuf::from("/dev/log")));
        }
        if let Some(socket) = text.strip_prefix("syslog:") {
            return Ok(Anchor::Syslog(abs(Path::new(socket))));
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return Ok(Anchor::Http(text.to_owned()));
        }
        if text.is_empty() || text.contains("://") {
            return Err(format!(
                "`audit.anchor` = {text:?}: expected a file path, `syslog`, `syslog:<socket>` or an http(s) URL"
            ));
        }
        Ok(Anchor::File(abs(Path::new(text))))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    timeout: Option<String>,
    keepalive: Option<String>,
    public_url: Option<String>,
    #[serde(default)]
    webhook: Vec<RawWebhook>,
    slack: Option<RawSlack>,
    teams: Option<RawTeams>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret: Option<String>,
    secret_env: Option<String>,
    /// Approvers whose votes this webhook's secret may carry; none: the
    /// webhook only notifies.
    #[serde(default)]
    decisions_for: Vec<String>,
    /// Only requests these approver groups may decide (none: every request).
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    bot_token: Option<String>,
    bot_token_env: Option<String>,
    signing_secret: Option<String>,
    signing_secret_env: Option<String>,
    channel: String,
    api_base: Option<String>,
    #[serde(default)]
    users: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeams {
    webhook_url: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// A webhook that receives every approval request (and decision), signed.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
    /// Approvers (normalised names) it may vote for; empty: notify-only.
    pub decisions_for: Vec<String>,
    /// Only requests for these approver groups reach it (empty: all).
    pub groups: Vec<String>,
}

/// Slack: requests go to a channel with Approve/Deny buttons.
#[derive(Debug, Clone)]
pub struct Slack {
    pub bot_token: String,
    pub signing_secret: String,
    pub channel: String,
    /// `https://slack.com/api` unless set (tests point it at a local server).
    pub api_base: String,
    /// Slack user id → approver name.
    pub users: std::collections::BTreeMap<String, String>,
    /// Only requests for these approver groups reach it (empty: all).
    pub groups: Vec<String>,
}

/// Microsoft Teams: an Adaptive Card to an incoming-webhook (Workflows) URL.
#[derive(Debug, Clone)]
pub struct Teams {
    pub webhook_url: String,
    /// Only requests for these approver groups reach it (empty: all).
    pub groups: Vec<String>,
}

/// Whether a channel for `groups` (empty: every group) receives a request
/// whose approvers are `request_groups`: people who can't decide it don't
/// see it (review H, H3).
pub fn channel_receives(groups: &[String], request_groups: &[String]) -> bool {
    groups.is_empty() || groups.iter().any(|g| request_groups.contains(g))
}

/// The approval channels.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    /// Where approvers reach the admin listener (links in messages).
    pub public_url: Option<String>,
    pub webhooks: Vec<Webhook>,
    pub slack: Option<Slack>,
    pub teams: Option<Teams>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_message_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_prelogin_per_address: Option<usize>,
    max_parse_bytes: Option<usize>,
    shutdown_timeout: Option<String>,
}

/// The largest `limits.max_parse_bytes`: parsing costs more than linearly
/// in the length (a 16 KiB INSERT takes ~11 ms), on the session's task.
pub const MAX_PARSE_BYTES_CAP: usize = 1 << 20;

/// Where and how sqlgate logs in upstream.
#[derive(Clone)]
pub struct Upstream {
    /// A host name or address, or (starting with `/`) the directory of the
    /// server's Unix-domain socket, as in libpq.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
}

impl Upstream {
    /// The Unix-domain socket to connect to, when `host` is a directory
    /// (libpq's convention: `<dir>/.s.PGSQL.<port>`).
    pub fn socket_path(&self) -> Option<PathBuf> {
        self.host
            .starts_with('/')
            .then(|| Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port)))
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the upstream password.
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub protocol: Protocol,
    pub listen: SocketAddr,
    pub upstream: Upstream,
    pub tls: Option<Tls>,
    pub upstream_tls: UpstreamTls,
}

#[derive(Clone)]
pub struct Agent {
    pub name: String,
    pub password: String,
    pub groups: Vec<String>,
}

#[derive(Clone)]
pub struct Approver {
    pub name: String,
    pub token: String,
    pub groups: Vec<String>,
    pub agents: Vec<String>,
}

/// The validated configuration.
pub struct Config {
    pub admin_listen: Option<SocketAddr>,
    pub listeners: Vec<Listener>,
    pub agents: Vec<Agent>,
    pub approvers: Vec<Approver>,
    pub rules: Vec<PathBuf>,
    pub audit: Audit,
    pub approval_timeout: Duration,
    /// While a statement is held inside a transaction, sqlgate pings the
    /// database this often so that `idle_in_transaction_session_timeout`
    /// does not end the session under a thinking human.
    pub approval_keepalive: Duration,
    pub channels: Channels,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    /// Connections from one client address that may be logging in at once
    /// (see `proxy::prelogin`); more are refused at accept.
    pub max_prelogin_per_address: usize,
    /// Query strings longer than this are not read (see
    /// `ClassifierOptions::max_parse_bytes`).
    pub max_parse_bytes: usize,
    pub shutdown_timeout: Duration,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config text; relative paths resolve against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let invalid = |m: String| ConfigError::Invalid(m);

        if raw.listeners.is_empty() {
            return Err(invalid("at least one `[[listener]]` is required".into()));
        }
        let mut listeners = Vec::new();
        for l in raw.listeners {
            if l.protocol == Protocol::Mysql {
                return Err(invalid(format!(
                    "listener `{}`: protocol `mysql` is not available yet",
                    l.listen
                )));
            }
            let upstream = parse_upstream(&l.upstream)
                .map_err(|m| invalid(format!("listener `{}`: upstream: {m}", l.listen)))?;
            if upstream.socket_path().is_some() && l.upstream_tls == UpstreamTls::Require {
                return Err(invalid(format!(
                    "listener `{}`: `upstream_tls = \"require\"` with a Unix-socket upstream: \
                     TLS is not used over Unix sockets (as in libpq)",
                    l.listen
                )));
            }
            listeners.push(Listener {
                protocol: l.protocol,
                listen: l.listen,
                upstream,
                tls: l.tls.map(|t| Tls {
                    cert: abs(&t.cert),
                    key: abs(&t.key),
                    required: t.required,
                }),
                upstream_tls: l.upstream_tls,
            });
        }

        let mut agents: Vec<Agent> = Vec::new();
        for a in raw.agents {
            let password = secret(&a.name, "agent", a.password, a.password_env, "password")?;
            let name = person_name("agent", &a.name).map_err(invalid)?;
            if agents.iter().any(|x| x.name == name) {
                return Err(invalid(format!(
                    "agent `{}` is defined twice (names are compared as `{name}`)",
                    a.name
                )));
            }
            agents.push(Agent {
                name,
                password,
                groups: a.groups,
            });
        }
        let mut approvers: Vec<Approver> = Vec::new();
        for a in raw.approvers {
            let token = secret(&a.name, "approver", a.token, a.token_env, "token")?;
            let name = person_name("approver", &a.name).map_err(invalid)?;
            if approvers.iter().any(|x| x.name == name) {
                return Err(invalid(format!(
                    "approver `{}` is defined twice (names are compared as `{name}`)",
                    a.name
                )));
            }
            if approvers.iter().any(|x| x.token == token) {
                return Err(invalid(format!(
                    "approver `{}` has the same token as another approver: tokens must be unique",
                    a.name
                )));
            }
            if token.chars().count() < crate::approval::MIN_TOKEN_CHARS {
                // A warning, not an error: short tokens are fine on a
                // loopback-only admin port (demos, tests).
                tracing::warn!(
                    approver = %a.name,
                    "the approver's token is shorter than {} characters: anyone who can reach the admin port may guess it (use `openssl rand -hex 32`)",
                    crate::approval::MIN_TOKEN_CHARS
                );
            }
            let mut runs = Vec::new();
            for agent in &a.agents {
                let n = person_name("agent", agent).map_err(invalid)?;
                if !agents.iter().any(|x| x.name == n) {
                    return Err(invalid(format!(
                        "approver `{}`: `agents` names `{agent}`, which is not an [[agent]]",
                        a.name
                    )));
                }
                runs.push(n);
            }
            approvers.push(Approver {
                name,
                token,
                groups: a.groups,
                agents: runs,
            });
        }
        let dur = |what: &str, s: Option<String>, default: Duration| match s {
            None => Ok(default),
            Some(s) => {
                humantime::parse_duration(&s).map_err(|e| invalid(format!("`{what}` = `{s}`: {e}")))
            }
        };
        let mut channels = match raw.approvals.as_ref() {
            None => Channels::default(),
            Some(a) => Channels {
                public_url: a.public_url.clone(),
                webhooks: a
                    .webhook
                    .iter()
                    .map(|w| {
                        Ok(Webhook {
                            url: w.url.clone(),
                            secret: secret(
                                &w.url,
                                "webhook",
                                w.secret.clone(),
                                w.secret_env.clone(),
                                "secret",
                            )?,
                            decisions_for: w
                                .decisions_for
                                .iter()
                                .map(|n| person_name("approver", n).map_err(invalid))
                                .collect::<Result<_, _>>()?,
                            groups: w.groups.clone(),
                        })
                    })
                    .collect::<Result<_, ConfigError>>()?,
                slack: match &a.slack {
                    None => None,
                    Some(s) => Some(Slack {
                        bot_token: secret(
                            "slack",
                            "approvals",
                            s.bot_token.clone(),
                            s.bot_token_env.clone(),
                            "bot_token",
                        )?,
                        signing_secret: secret(
                            "slack",
                            "approvals",
                            s.signing_secret.clone(),
                            s.signing_secret_env.clone(),
                            "signing_secret",
                        )?,
                        channel: s.channel.clone(),
                        api_base: s
                            .api_base
                            .clone()
                            .unwrap_or_else(|| "https://slack.com/api".into()),
                        users: s.users.clone(),
                        groups: s.groups.clone(),
                    }),
                },
                teams: a.teams.as_ref().map(|t| Teams {
                    webhook_url: t.webhook_url.clone(),
                    groups: t.groups.clone(),
                }),
            },
        };
        if let Some(s) = channels.slack.as_mut() {
            for name in s.users.values_mut() {
                *name = person_name("approver", name).map_err(invalid)?;
            }
        }
        for w in &channels.webhooks {
            if let Some(n) = w
                .decisions_for
                .iter()
                .find(|n| !approvers.iter().any(|a| &a.name == *n))
            {
                return Err(invalid(format!(
                    "approvals.webhook `{}`: decisions_for names `{n}`, who is not an [[approver]]",
                    w.url
                )));
            }
        }
        for name in channels.slack.iter().flat_map(|s| s.users.values()) {
            if !approvers.iter().any(|a| &a.name == name) {
                return Err(invalid(format!(
                    "approvals.slack.users maps to `{name}`, who is not an [[approver]]"
                )));
            }
        }
        let limits = raw.limits.unwrap_or(RawLimits {
            max_message_bytes: None,
            max_connections: None,
            max_prelogin_per_address: None,
            max_parse_bytes: None,
            shutdown_timeout: None,
        });
        if limits
            .max_parse_bytes
            .is_some_and(|n| n == 0 || n > MAX_PARSE_BYTES_CAP)
        {
            return Err(invalid(format!(
                "`limits.max_parse_bytes` must be between 1 and {MAX_PARSE_BYTES_CAP}"
            )));
        }
        if limits.max_prelogin_per_address == Some(0) {
            return Err(invalid(
                "`limits.max_prelogin_per_address` must be at least 1 (0 would refuse every client)"
                    .into(),
            ));
        }
        Ok(Config {
            admin_listen: raw.admin.map(|a| a.listen),
            listeners,
            agents,
            approvers,
            rules: raw.policy.rules.iter().map(|p| abs(p)).collect(),
            audit: Audit {
                path: abs(&raw.audit.path),
                // Default: `signing.key` beside the log.
                key: match &raw.audit.key {
                    Some(k) => abs(k),
                    None => abs(&raw.audit.path.with_file_name("signing.key")),
                },
                durability: raw.audit.durability.unwrap_or_default(),
                checkpoint_every: raw.audit.checkpoint_every.unwrap_or(1000).max(1),
                checkpoint_interval: dur(
                    "audit.checkpoint_interval",
                    raw.audit.checkpoint_interval.clone(),
                    Duration::from_secs(10),
                )?,
                max_file_bytes: raw.audit.max_file_bytes.unwrap_or(0),
                previous_key: raw.audit.previous_key.as_deref().map(abs),
                anchor: match &raw.audit.anchor {
                    Some(a) => Some(Anchor::parse(a, abs).map_err(invalid)?),
                    None => None,
                },
                anchor_required: match raw.audit.anchor_required {
                    Some(true) if raw.audit.anchor.is_none() => {
                        return Err(invalid(
                            "`audit.anchor_required = true` needs `audit.anchor`".to_owned(),
                        ))
                    }
                    r => r.unwrap_or(false),
                },
            },
            approval_timeout: dur(
                "approvals.timeout",
                raw.approvals.as_ref().and_then(|a| a.timeout.clone()),
                Duration::from_secs(300),
            )?,
            channels,
            approval_keepalive: dur(
                "approvals.keepalive",
                raw.approvals.as_ref().and_then(|a| a.keepalive.clone()),
                Duration::from_secs(10),
            )?,
            max_message_bytes: limits.max_message_bytes.unwrap_or(16 << 20),
            max_connections: limits.max_connections.unwrap_or(1000),
            max_prelogin_per_address: limits.max_prelogin_per_address.unwrap_or(16),
            max_parse_bytes: limits
                .max_parse_bytes
                .unwrap_or(crate::classify::ClassifierOptions::default().max_parse_bytes),
            shutdown_timeout: dur(
                "limits.shutdown_timeout",
                limits.shutdown_timeout,
                Duration::from_secs(30),
            )?,
        })
    }
}

fn secret(
    name: &str,
    kind: &str,
    value: Option<String>,
    env: Option<String>,
    what: &str,
) -> Result<String, ConfigError> {
    match (value, env) {
        (Some(v), None) if !v.is_empty() => Ok(v),
        (None, Some(var)) => match std::env::var(&var) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => Err(ConfigError::Invalid(format!(
                "{kind} `{name}`: environment variable `{var}` is not set"
            ))),
        },
        (Some(_), Some(_)) => Err(ConfigError::Invalid(format!(
            "{kind} `{name}`: give `{what}` or `{what}_env`, not both"
        ))),
        _ => Err(ConfigError::Invalid(format!(
            "{kind} `{name}`: `{what}` or `{what}_env` is required"
        ))),
    }
}

/// Parses `postgres://user:password@host:port/database`. A host that
/// percent-decodes to an absolute path (`%2Fvar%2Frun%2Fpostgresql`) names the
/// directory of the server's Unix-domain socket, as in libpq.
///
/// Hand-written rather than with the `url` crate: we need only these five
/// parts (plus percent-decoding), and `url` pulls in IDNA/ICU tables.
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let rest = s
        .strip_prefix("postgres://")
        .or_else(|| s.strip_prefix("postgresql://"))
        .ok_or("must start with `postgres://`")?;
    if rest.contains('?') {
        return Err("query parameters are not supported; use `upstream_tls`".into());
    }
    let (auth, hostpart) = rest
        .rsplit_once('@')
        .ok_or("must name a user (`user@host`)")?;
    let (user, password) = match auth.split_once(':') {
        Some((u, p)) => (pct(u, "user")?, Some(pct(p, "password")?)),
        None => (pct(auth, "user")?, None),
    };
    let (hostport, database) = hostpart
        .split_once('/')
        .ok_or("must name a database (`host/database`)")?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            p.parse::<u16>().map_err(|_| format!("bad port `{p}`"))?,
        ),
        _ => (hostport.to_owned(), 5432),
    };
    // A bracketed IPv6 address is taken as written (its zone id may hold a
    // `%`); anything else is percent-decoded, which is how a socket
    // directory is given.
    let host = if hostport.starts_with('[') {
        host
    } else {
        pct(&host, "host")?
    };
    if user.is_empty() || host.is_empty() || database.is_empty() {
        return Err("user, host and database must not be empty".into());
    }
    let up = Upstream {
        host,
        port,
        user,
        password,
        database: pct(database, "database")?,
    };
    // Linux's sun_path holds 107 bytes and a NUL.
    if up.socket_path().is_some_and(|p| p.as_os_str().len() > 107) {
        return Err(format!(
            "the socket directory `{}` is too long for a Unix socket path",
            up.host
        ));
    }
    Ok(up)
}

/// Percent-decodes one part of the URL. Errors name the part, never its
/// text: the part may be the password.
fn pct(s: &str, part: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-escape in the {part}"))?;
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the {part} is not UTF-8 once decoded"))
}

/// An agent or approver name as people read it: Unicode NFKC, lower case,
/// and then only `a-z 0-9 . _ - @`, so `Bot` and `ｂｏｔ` are `bot` (a clash
/// with it is an error) and a look-alike from another script (`bоt`, with a
/// Cyrillic `о`) is refused rather than taken for someone else. Surrounding
/// white space is refused. Hand-written on purpose: an ASCII allow-list
/// after NFKC needs no confusables table to be safe.
pub fn person_name(what: &str, raw: &str) -> Result<String, String> {
    if raw.trim() != raw {
        return Err(format!("{what} name `{raw}` has white space around it"));
    }
    let n = login_name(raw);
    let ok = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@')
    };
    if n.is_empty() || !n.chars().all(ok) {
        return Err(format!(
            "{what} name `{}` may hold only letters a-z, digits and . _ - @ (compared case-insensitively after Unicode NFKC; look-alike letters of other scripts are refused)",
            raw.escape_debug()
        ));
    }
    Ok(n)
}

/// A login name as an agent's name is compared (see [`person_name`]).
pub fn login_name(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    raw.nfkc().collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u = parse_upstream("postgres://svc:p%40ss@127.0.0.1:5433/app").unwrap();
        assert_eq!(
            (
                u.user.as_str(),
                u.password.as_deref(),
                u.host.as_str(),
                u.port
            ),
            ("svc", Some("p@ss"), "127.0.0.1", 5433)
        );
        assert_eq!(u.database, "app");
        assert_eq!(parse_upstream("postgres://svc@db/app").unwrap().port, 5432);
        assert!(parse_upstream("mysql://svc@db/app").is_err());
        assert!(parse_upstream("postgres://db/app").is_err());
        assert!(parse_upstream("postgres://svc@db:x/app").is_err());
        assert!(!format!("{u:?}").contains("p@ss"));
        assert_eq!(u.socket_path(), None);
        let e = parse_upstream("postgres://svc:se%zzcret@db/app").unwrap_err();
        assert!(!e.contains("cret") && e.contains("password"), "{e}");
        let long = format!("postgres://svc@%2F{}/app", "d".repeat(120));
        assert!(parse_upstream(&long).unwrap_err().contains("too long"));
        let u = parse_upstream("postgres://svc@%2Fvar%2Frun%2Fpostgresql:5433/app").unwrap();
        assert_eq!(u.host, "/var/run/postgresql");
        assert_eq!(
            u.socket_path().unwrap(),
            Path::new("/var/run/postgresql/.s.PGSQL.5433")
        );
        let unix = MINIMAL.replace("127.0.0.1:5432", "%2Ftmp");
        assert!(Config::from_toml(&unix, Path::new(".")).is_ok());
        let require = unix.replace("[[agent]]", "upstream_tls = \"require\"\n[[agent]]");
        let e = Config::from_toml(&require, Path::new("."))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("Unix"), "{e}");
    }

    const MINIMAL: &str = r#"
        [[listener]]
        protocol = "postgres"
        listen = "127.0.0.1:6432"
        upstream = "postgres://svc:secret@127.0.0.1:5432/app"
        [[agent]]
        name = "bot"
        password = "pw"
        [policy]
        rules = ["rules/"]
        [audit]
        path = "audit.jsonl"
    "#;

    #[test]
    fn loads_and_rejects_unknown_keys() {
        let c = Config::from_toml(MINIMAL, Path::new("/etc/sqlgate")).unwrap();
        assert_eq!(c.audit.path, Path::new("/etc/sqlgate/audit.jsonl"));
        assert_eq!(c.audit.key, Path::new("/etc/sqlgate/signing.key"));
        assert_eq!(c.approval_timeout, Duration::from_secs(300));
        assert_eq!(c.max_prelogin_per_address, 16);
        let zero = format!("{MINIMAL}\n[limits]\nmax_prelogin_per_address = 0\n");
        let e = Config::from_toml(&zero, Path::new(".")).err().unwrap();
        assert!(e.to_string().contains("max_prelogin_per_address"), "{e}");
        assert_eq!(c.max_parse_bytes, 65_536);
        for n in [0, MAX_PARSE_BYTES_CAP + 1] {
            let t = format!("{MINIMAL}\n[limits]\nmax_parse_bytes = {n}\n");
            let e = Config::from_toml(&t, Path::new(".")).err().unwrap();
            assert!(e.to_string().contains("max_parse_bytes"), "{e}");
        }
        let big = format!("{MINIMAL}\n[limits]\nmax_parse_bytes = 1048576\n");
        assert_eq!(
            Config::from_toml(&big, Path::new("."))
                .unwrap()
                .max_parse_bytes,
            1 << 20
        );
        let bad = MINIMAL.replace("[policy]", "[policy]\nrulez = 1");
        let e = Config::from_toml(&bad, Path::new("."))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("rulez"), "{e}");
        let two = MINIMAL.replace(
            "password = \"pw\"",
            "password = \"pw\"\npassword_env = \"X\"",
        );
        assert!(Config::from_toml(&two, Path::new(".")).is_err());
    }

    #[test]
    fn names_are_compared_as_people_read_them() {
        let with = |extra: &str| Config::from_toml(&format!("{MINIMAL}\n{extra}"), Path::new("."));
        let err = |extra: &str| with(extra).err().map(|e| e.to_string()).unwrap_or_default();
        let approver = |name: &str, token: &str, agents: &str| {
            format!("[[approver]]\nname = \"{name}\"\ntoken = \"{token}\"\ngroups = [\"dba\"]\nagents = [{agents}]\n")
        };
        // `Bot`, `ｂｏｔ` are the agent `bot`: a clash.
        for twin in ["Bot", "\u{ff42}\u{ff4f}\u{ff54}"] {
            let e = err(&format!("[[agent]]\nname = \"{twin}\"\npassword = \"x\"\n"));
            assert!(e.contains("twice"), "{twin}: {e}");
        }
        // Surrounding space, a Cyrillic look-alike: refused.
        assert!(err(&approver("bot ", "t1", "")).contains("white space"));
        assert!(err(&approver("b\u{43e}t", "t1", "")).contains("look-alike"));
        // `agents` entries must be agents; tokens unique.
        assert!(err(&approver("alice", "t1", "\"nobody\"")).contains("not an [[agent]]"));
        let two = format!(
            "{}{}",
            approver("alice", "t1", ""),
            approver("bob", "t1", "")
        );
        assert!(err(&two).contains("same token"));
        // The operator's `Bot` entry means the agent `bot`.
        let c = with(&approver("Mallory", "t2", "\"Bot\"")).unwrap();
        assert_eq!(
            (
                c.approvers[0].name.as_str(),
                c.approvers[0].agents[0].as_str()
            ),
            ("mallory", "bot")
        );
    }
}
