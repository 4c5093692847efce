//! The engine: what the protocol side asks about each statement, and who may log in.
//!
//! The proxy hands over SQL text and an identity and gets back a `Decision`
//! (the analysis plus one `Verdict` per statement); it never decides itself.

use crate::approval::{Approvals, Approver};
use crate::audit::AuditLog;
use crate::auth::scram::Verifier;
use crate::classify::{Analysis, Classifier, ClassifierOptions, Dialect};
use crate::config::Config;
use crate::policy::{Action, Identity, Policy, Verdict};
use std::collections::HashMap;
use std::sync::Arc;

pub struct AgentEntry {
    pub name: Arc<str>,
    pub identity: Identity,
    pub verifier: Verifier,
}

pub struct Engine {
    pub classifier: Classifier,
    pub policy: Policy,
    pub audit: AuditLog,
    pub approvals: Approvals,
    agents: HashMap<String, AgentEntry>,
    decoy_secret: [u8; 32],
}

/// The verdicts for one query string.
pub struct Decision {
    pub analysis: Arc<Analysis>,
    pub verdicts: Vec<Verdict>,
}

impl Decision {
    /// The first statement that may not run now, if any.
    pub fn blocking(&self) -> Option<usize> {
        self.verdicts.iter().position(|v| v.action != Action::Allow)
    }

    /// The first statement that is denied outright, if any.
    pub fn first_deny(&self) -> Option<usize> {
        self.verdicts.iter().position(|v| v.action == Action::Deny)
    }
}

impl Engine {
    pub fn new(cfg: &Config, policy: Policy, audit: AuditLog) -> Engine {
        let agents = cfg
            .agents
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    AgentEntry {
                        name: Arc::from(a.name.as_str()),
                        identity: Identity {
                            agent: a.name.clone(),
                            groups: a.groups.clone(),
                        },
                        verifier: Verifier::from_password(&a.password),
                    },
                )
            })
            .collect();
        let mut decoy_secret = [0u8; 32];
        rand::fill(&mut decoy_secret);
        let approvers = cfg
            .approvers
            .iter()
            .map(|a| Approver::new(&a.name, &a.token, &a.groups, &a.agents))
            .collect();
        Engine {
            classifier: Classifier::new(Dialect::Postgres, ClassifierOptions::default()),
            policy,
            approvals: Approvals::new(approvers, cfg.approval_timeout, audit.clone()),
            audit,
            agents,
            decoy_secret,
        }
    }

    pub fn agent(&self, name: &str) -> Option<&AgentEntry> {
        self.agents.get(name)
    }

    /// A verifier for a login name that is not an agent: the exchange runs
    /// to the end and fails like a wrong password would.
    pub fn decoy(&self, name: &str) -> Verifier {
        Verifier::decoy(name, &self.decoy_secret)
    }

    pub fn decide(&self, who: &Identity, sql: &str) -> Decision {
        let analysis = self.classifier.classify(sql);
        let verdicts = analysis
            .statements
            .iter()
            .map(|s| self.policy.decide(who, s))
            .collect();
        Decision { analysis, verdicts }
    }
}
