//! `[[agent]]` and `[[approver]]`: who connects and who decides, and how
//! their names are compared.

use super::{secret, ConfigError};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) name: String,
    pub(super) password: Option<String>,
    pub(super) password_env: Option<String>,
    #[serde(default)]
    pub(super) groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprover {
    pub(super) name: String,
    pub(super) token: Option<String>,
    pub(super) token_env: Option<String>,
    #[serde(default)]
    pub(super) groups: Vec<String>,
    /// Agents this person runs: their requests are not this person's to approve.
    #[serde(default)]
    pub(super) agents: Vec<String>,
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

/// The validated `[[agent]]`s.
pub(super) fn agents(raw: Vec<RawAgent>) -> Result<Vec<Agent>, ConfigError> {
    let mut agents: Vec<Agent> = Vec::new();
    for a in raw {
        let password = secret(&a.name, "agent", a.password, a.password_env, "password")?;
        let name = person_name("agent", &a.name).map_err(ConfigError::Invalid)?;
        if agents.iter().any(|x| x.name == name) {
            return Err(ConfigError::Invalid(format!(
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
    Ok(agents)
}

/// The validated `[[approver]]`s; the agents they run must be `agents`.
pub(super) fn approvers(
    raw: Vec<RawApprover>,
    agents: &[Agent],
) -> Result<Vec<Approver>, ConfigError> {
    let invalid = ConfigError::Invalid;
    let mut approvers: Vec<Approver> = Vec::new();
    for a in raw {
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
    Ok(approvers)
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
