//! `[approvals]`: how long a statement may wait, and the channels that
//! carry approval requests (webhooks, Slack, Teams).

use super::{person_name, secret, Approver, ConfigError};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprovals {
    pub(super) timeout: Option<String>,
    pub(super) keepalive: Option<String>,
    public_url: Option<String>,
    #[serde(default)]
    pub(super) webhook: Vec<RawWebhook>,
    pub(super) slack: Option<RawSlack>,
    pub(super) teams: Option<RawTeams>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub(super) url: String,
    pub(super) secret: Option<String>,
    pub(super) secret_env: Option<String>,
    /// Approvers whose votes this webhook's secret may carry; none: the
    /// webhook only notifies.
    #[serde(default)]
    pub(super) decisions_for: Vec<String>,
    /// Only requests these approver groups may decide (none: every request).
    #[serde(default)]
    pub(super) groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlack {
    pub(super) bot_token: Option<String>,
    pub(super) bot_token_env: Option<String>,
    pub(super) signing_secret: Option<String>,
    pub(super) signing_secret_env: Option<String>,
    pub(super) channel: String,
    pub(super) api_base: Option<String>,
    #[serde(default)]
    pub(super) users: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub(super) groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeams {
    pub(super) webhook_url: String,
    #[serde(default)]
    pub(super) groups: Vec<String>,
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

/// The validated channels; the approvers they name must be `approvers`.
pub(super) fn channels(
    raw: Option<&RawApprovals>,
    approvers: &[Approver],
) -> Result<Channels, ConfigError> {
    let invalid = ConfigError::Invalid;
    let Some(a) = raw else {
        return Ok(Channels::default());
    };
    let mut channels = Channels {
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
    Ok(channels)
}
