//! The engine: what the protocol side asks about each statement, and who may log in.
//!
//! The proxy hands over SQL text, the dialect of the listener it came
//! through and an identity, and gets back a `Decision` (the analysis plus
//! one `Verdict` per statement); it never decides itself. The engine never
//! touches bytes.

use crate::approval::{Approvals, Approver};
use crate::audit::AuditLog;
use crate::auth::Agents;
use crate::catalog::Catalog;
use crate::classify::{Analysis, Classifier, ClassifierOptions, Dialect};
use crate::config::Config;
use crate::config::Protocol;
use crate::policy::{Action, Identity, Policy, Verdict};
use std::collections::HashMap;
use std::sync::Arc;

pub struct Engine {
    /// One classifier per dialect, each with its own cache.
    postgres: Classifier,
    mysql: Classifier,
    pub policy: Policy,
    pub audit: AuditLog,
    pub approvals: Approvals,
    /// Who may log in, with each wire's secrets (`auth`).
    pub agents: Agents,
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
        let opts = ClassifierOptions {
            max_parse_bytes: cfg.max_parse_bytes,
            ..ClassifierOptions::default()
        };
        Engine {
            catalogs,
            postgres: Classifier::new(Dialect::Postgres, opts),
            mysql: Classifier::new(Dialect::Mysql, opts),
            policy,
            approvals: Approvals::new(approvers, cfg.approval_timeout, audit.clone()),
            audit,
            agents: Agents::new(&cfg.agents),
        }
    }

    /// The classifier that reads `dialect`'s SQL.
    pub fn classifier(&self, dialect: Dialect) -> &Classifier {
        match dialect {
            Dialect::Postgres => &self.postgres,
            Dialect::Mysql => &self.mysql,
        }
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
        dialect: Dialect,
        catalog: Option<&Catalog>,
        who: &Identity,
        sql: &str,
        schema_pending: bool,
    ) -> Decision {
        let classified = self.classifier(dialect).classify(sql);
        self.decide_classified(catalog, who, classified, schema_pending)
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
    pub fn decide(&self, dialect: Dialect, who: &Identity, sql: &str) -> Decision {
        let a = self.classifier(dialect).classify(sql);
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
