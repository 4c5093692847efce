//! Typed configuration: read from TOML once, validated into a ready value.
//!
//! Unknown keys are rejected (with the key's name and position, from `toml`);
//! relative paths are taken relative to the config file's folder; secrets may
//! come from the environment (`password_env`, `token_env`). One file per
//! section: `listener` (`[[listener]]` and its upstream URL), `people`
//! (`[[agent]]`, `[[approver]]`), `audit`, `approvals`; the limits and the
//! whole here.

mod approvals;
mod audit;
mod listener;
mod people;

pub use approvals::{channel_receives, Channels, Slack, Teams, Webhook};
pub use audit::{Anchor, Audit, Durability};
pub use listener::{parse_upstream, Listener, Tls, Upstream, UpstreamTls};
pub use people::{login_name, person_name, Agent, Approver};

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
    listeners: Vec<listener::RawListener>,
    #[serde(default, rename = "agent")]
    agents: Vec<people::RawAgent>,
    #[serde(default, rename = "approver")]
    approvers: Vec<people::RawApprover>,
    policy: RawPolicy,
    audit: audit::RawAudit,
    approvals: Option<approvals::RawApprovals>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    rules: Vec<PathBuf>,
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
        let listeners = listener::build(raw.listeners, &abs)?;
        let agents = people::agents(raw.agents)?;
        let approvers = people::approvers(raw.approvers, &agents)?;
        let channels = approvals::channels(raw.approvals.as_ref(), &approvers)?;
        let invalid = ConfigError::Invalid;
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
            audit: audit::build(&raw.audit, &abs)?,
            approval_timeout: duration(
                "approvals.timeout",
                raw.approvals.as_ref().and_then(|a| a.timeout.clone()),
                Duration::from_secs(300),
            )?,
            channels,
            approval_keepalive: duration(
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
            shutdown_timeout: duration(
                "limits.shutdown_timeout",
                limits.shutdown_timeout,
                Duration::from_secs(30),
            )?,
        })
    }
}

/// A duration setting (`10s`, `5m`), or `default` when not set.
fn duration(what: &str, s: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    match s {
        None => Ok(default),
        Some(s) => humantime::parse_duration(&s)
            .map_err(|e| ConfigError::Invalid(format!("`{what}` = `{s}`: {e}"))),
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

#[cfg(test)]
mod tests;
