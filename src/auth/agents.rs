//! The configured agents, and the secrets each wire's login checks them
//! against: derived once from the configured password, which is not kept.

use super::scram::Verifier;
use crate::config;
use crate::policy::Identity;
use std::collections::HashMap;
use std::sync::Arc;

/// One `[[agent]]`.
pub struct Agent {
    pub name: Arc<str>,
    pub identity: Identity,
    pub secrets: Secrets,
}

/// What each login method checks a password against. MySQL's
/// `mysql_native_password` and `caching_sha2_password` secrets join the
/// PostgreSQL SCRAM verifier here.
pub struct Secrets {
    pub scram: Verifier,
}

pub struct Agents {
    by_name: HashMap<String, Agent>,
    /// Keys the decoy exchanges run for names that are no agent, so each
    /// such name fails alike every time, as a wrong password would.
    decoy_secret: [u8; 32],
}

impl Agents {
    pub fn new(agents: &[config::Agent]) -> Agents {
        let by_name = agents
            .iter()
            .map(|a| {
                let agent = Agent {
                    name: Arc::from(a.name.as_str()),
                    identity: Identity {
                        agent: a.name.clone(),
                        groups: a.groups.clone(),
                    },
                    secrets: Secrets {
                        scram: Verifier::from_password(&a.password),
                    },
                };
                (a.name.clone(), agent)
            })
            .collect();
        let mut decoy_secret = [0u8; 32];
        rand::fill(&mut decoy_secret);
        Agents {
            by_name,
            decoy_secret,
        }
    }

    /// The agent a login name means (compared as configured names are:
    /// `config::login_name`).
    pub fn get(&self, name: &str) -> Option<&Agent> {
        self.by_name.get(&config::login_name(name))
    }

    /// A SCRAM verifier for a login name that is not an agent: the exchange
    /// runs to the end and fails like a wrong password would.
    pub fn scram_decoy(&self, name: &str) -> Verifier {
        Verifier::decoy(name, &self.decoy_secret)
    }
}
