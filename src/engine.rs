//! The engine: what the protocol side asks about each statement, and who may log in.
//!
//! The proxy hands over SQL text and an identity and gets back a `Decision`
//! (the analysis plus one `Verdict` per statement); it never decides itself.

use crate::approval::{Approvals, Approver};
use crate::audit::AuditLog;
use crate::auth::scram::Verifier;
use crate::catalog::Catalog;
use crate::classify::{Analysis, Classifier, ClassifierOptions, Dialect};
use crate::config::Config;
use crate::config::Protocol;
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
    /// One per upstream database served (PostgreSQL listeners).
    catalogs: HashMap<String, Arc<Catalog>>,
}

/// The verdicts for one query string.
pub struct Decision {
    pub analysis: Arc<Analysis>,
    pub verdicts: Vec<Verdict>,
    /// The classification before the catalog placed anything (the cached
    /// one): what a later re-decision starts from.
    pub classified: Arc<Analysis>,
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
        let catalogs = cfg
            .listeners
            .iter()
            .filter(|l| l.protocol == Protocol::Postgres)
            .map(|l| {
                let db = l.upstream.database.clone();
                (db.clone(), Arc::new(Catalog::new(&db)))
            })
            .collect();
        Engine {
            catalogs,
            classifier: Classifier::new(
                Dialect::Postgres,
                ClassifierOptions {
                    max_parse_bytes: cfg.max_parse_bytes,
                    ..ClassifierOptions::default()
                },
            ),
            policy,
            approvals: Approvals::new(approvers, cfg.approval_timeout, audit.clone()),
            audit,
            agents,
            decoy_secret,
        }
    }

    /// The agent a login name means (compared as configured names are:
    /// `config::person_name`).
    pub fn agent(&self, name: &str) -> Option<&AgentEntry> {
        self.agents.get(&crate::config::login_name(name))
    }

    /// A verifier for a login name that is not an agent: the exchange runs
    /// to the end and fails like a wrong password would.
    pub fn decoy(&self, name: &str) -> Verifier {
        Verifier::decoy(name, &self.decoy_secret)
    }

    /// The catalog of upstream database `db`, if a listener serves it.
    pub fn catalog(&self, db: &str) -> Option<&Arc<Catalog>> {
        self.catalogs.get(db)
    }

    /// Every catalog, for `/healthz`.
    pub fn catalogs(&self) -> Vec<Arc<Catalog>> {
        self.catalogs.values().cloned().collect()
    }

    /// Decides a query string sent to the database of `catalog`: user-defined
    /// functions are placed from it, unless the session changed the schema
    /// in a transaction block still open (`schema_pending`: the catalog
    /// can't see that yet).
    pub fn decide_in(
        &self,
        catalog: Option<&Catalog>,
        who: &Identity,
        sql: &str,
        schema_pending: bool,
    ) -> Decision {
        self.decide_classified(catalog, who, self.classifier.classify(sql), schema_pending)
    }

    /// [`Engine::decide_in`] from a classification already made
    /// ([`Decision::classified`]): a prepared statement decided again
    /// against a newer catalog.
    pub fn decide_classified(
        &self,
        catalog: Option<&Catalog>,
        who: &Identity,
        classified: Arc<Analysis>,
        schema_pending: bool,
    ) -> Decision {
        let analysis = match catalog {
            Some(c) => c.resolve(classified.clone(), schema_pending),
            None => classified.clone(),
        };
        self.verdicts(analysis, classified, who)
    }

    /// Decides without a catalog: user-defined functions stay `unparsed`.
    pub fn decide(&self, who: &Identity, sql: &str) -> Decision {
        let a = self.classifier.classify(sql);
        self.verdicts(a.clone(), a, who)
    }

    fn verdicts(
        &self,
        analysis: Arc<Analysis>,
        classified: Arc<Analysis>,
        who: &Identity,
    ) -> Decision {
        let verdicts = analysis
            .statements
            .iter()
            .map(|s| self.policy.decide(who, s))
            .collect();
        Decision {
            analysis,
            verdicts,
            classified,
        }
    }
}
