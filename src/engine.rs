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
use crate::classify::lineage::{self, Lineage};
use crate::classify::{Analysis, Class, Classifier, ClassifierOptions, Dialect};
use crate::config::Config;
use crate::config::Protocol;
use crate::policy::{Action, Identity, Policy, Verdict};
use crate::session::mask::{MaskPlan, MaskedColumn, Masker};
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
    /// Each `[[mask]]`'s method, ready (keys read), in the policy's order.
    maskers: Vec<Masker>,
}

/// The verdicts for one query string.
pub struct Decision {
    pub analysis: Arc<Analysis>,
    pub verdicts: Vec<Verdict>,
    /// The classification before the catalog placed anything (the cached
    /// one): what a later re-decision starts from.
    pub classified: Arc<Analysis>,
    /// Per statement, the result columns masks apply to (`None` for all
    /// when no mask applies to the string: the common case).
    pub masks: Option<Arc<[Option<Arc<MaskPlan>>]>>,
}

impl Decision {
    /// Statement `i`'s mask plan, if masks apply to its result.
    pub fn mask_plan(&self, i: usize) -> Option<Arc<MaskPlan>> {
        self.masks.as_ref()?.get(i)?.clone()
    }
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
    /// The engine for `cfg` and `policy`; fails when a `hash` mask's key
    /// can't be read or made.
    pub fn new(cfg: &Config, policy: Policy, audit: AuditLog) -> Result<Engine, String> {
        let maskers = maskers(&policy)?;
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
        Ok(Engine {
            maskers,
            catalogs,
            postgres: Classifier::new(Dialect::Postgres, opts),
            mysql: Classifier::new(Dialect::Mysql, opts),
            policy,
            approvals: Approvals::new(approvers, cfg.approval_timeout, audit.clone()),
            audit,
            agents: Agents::new(&cfg.agents),
        })
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
            masks: None,
        }
    }

    /// Whether the rules hold masks (else [`Engine::apply_masks`] does nothing).
    pub fn has_masks(&self) -> bool {
        !self.maskers.is_empty()
    }

    /// Applies the masks to `d`, the decision on `sql` for `who`: a
    /// statement whose use of a masked column the lineage refuses is denied
    /// (rule: the mask), the others get the plan for their results. A
    /// statement sqlgate could not fully read (`unparsed`) may read masked
    /// columns through what it could not see: denied too, for an agent
    /// masks apply to.
    /// `catalog`: the column lists `*` expands to (without it, a `*` over
    /// a table with masked columns is refused). `utf8`: the session's
    /// client encoding is UTF8; in another, the server converts each row
    /// before sqlgate masks it, and a character the encoding lacks comes
    /// back in an error, bytes and all: masked results are refused there.
    pub fn apply_masks(
        &self,
        who: &Identity,
        sql: &str,
        catalog: Option<&Catalog>,
        utf8: bool,
        d: &mut Decision,
    ) {
        if !self.has_masks() {
            return;
        }
        let masks = self.policy.masks_for(who);
        if !masks.any() {
            return;
        }
        use lineage::Masks;
        let reaches = |s: &crate::classify::StatementInfo| {
            s.classes.contains(Class::Unparsed) || s.tables.iter().any(|t| masks.table(t))
        };
        if !d.analysis.statements.iter().any(reaches) {
            return;
        }
        let cols: &dyn lineage::Columns = match catalog {
            Some(c) => c,
            None => &lineage::NoColumns,
        };
        let found = lineage::of_text(sql, &d.analysis, &masks, cols);
        // A statement of the string that may change settings (`SET
        // client_encoding`, `set_config`) changes how the server converts
        // the masked rows after it, within the string: the conversion
        // errors would carry the characters.
        let settings = d
            .analysis
            .statements
            .iter()
            .any(|s| s.classes.contains(Class::Session));
        let mut plans = Vec::with_capacity(found.len());
        for (i, l) in found.into_iter().enumerate() {
            let unparsed = d.analysis.statements[i].classes.contains(Class::Unparsed);
            let l = match l {
                _ if unparsed => Lineage::Refused(lineage::Refusal {
                    column: String::new(),
                    mask: None,
                    why: "sqlgate could not read all of this statement, so it cannot tell that no masked column is in what it reads".into(),
                }),
                l => l,
            };
            // A masked result the session can't be trusted to receive.
            let unsafe_here = if settings {
                Some("its query string also changes session settings (send a masked query on its own)")
            } else if !utf8 {
                Some("masked results are served only in sessions whose client encoding is UTF8 (the server's conversion errors show the characters it can't convert)")
            } else {
                None
            };
            let l = match (l, unsafe_here) {
                (Lineage::Columns(cols), Some(why)) if cols.iter().any(Option::is_some) => {
                    Lineage::Refused(lineage::Refusal {
                        column: String::new(),
                        mask: cols.iter().flatten().next().map(|c| c.mask),
                        why: why.into(),
                    })
                }
                (l, _) => l,
            };
            plans.push(match l {
                Lineage::Refused(r) => {
                    if let Some(v) = d.verdicts.get_mut(i) {
                        *v = self.mask_denial(&r);
                    }
                    None
                }
                Lineage::Columns(cols) if cols.iter().any(Option::is_some) => {
                    Some(Arc::new(self.mask_plan(&cols)))
                }
                _ => None,
            });
        }
        d.masks = Some(Arc::from(plans));
    }

    fn mask_plan(&self, cols: &[Option<lineage::Source>]) -> MaskPlan {
        MaskPlan {
            width: cols.len(),
            columns: cols
                .iter()
                .enumerate()
                .filter_map(|(position, c)| {
                    let c = c.as_ref()?;
                    Some(MaskedColumn {
                        position,
                        column: format!("{}.{}", c.table, c.column),
                        mask: self.policy.masks().get(c.mask)?.id.clone(),
                        masker: self.maskers.get(c.mask)?.clone(),
                        output: c.output.clone(),
                    })
                })
                .collect(),
        }
    }

    fn mask_denial(&self, r: &lineage::Refusal) -> Verdict {
        let id = r
            .mask
            .and_then(|i| self.policy.masks().get(i))
            .map(|m| m.id.clone());
        let what = if r.column.is_empty() {
            "masked columns".to_string()
        } else {
            format!("`{}`", r.column)
        };
        let by = id
            .as_deref()
            .map_or_else(String::new, |id| format!(" (mask `{id}`)"));
        Verdict {
            action: Action::Deny,
            rule: id.unwrap_or_else(|| Arc::from(MASK_RULE)),
            reason: Arc::from(format!(
                "{what} is masked for this agent{by}: {}; select the column itself, bare or aliased, and filter or order by other columns",
                r.why
            )),
            approval: None,
            max_rows: None,
            also: Arc::from([]),
        }
    }
}

/// The rule a mask refusal names when no one mask is at stake.
pub const MASK_RULE: &str = "builtin:mask";

/// Each mask's method, ready: `hash` keys read (or made).
fn maskers(policy: &Policy) -> Result<Vec<Masker>, String> {
    use crate::policy::MaskMethod;
    policy
        .masks()
        .iter()
        .map(|m| {
            Ok(match &m.method {
                MaskMethod::Redact => Masker::Redact,
                MaskMethod::Partial { keep_last } => Masker::Partial {
                    keep_last: *keep_last as usize,
                },
                MaskMethod::Null => Masker::Null,
                MaskMethod::Email => Masker::Email,
                MaskMethod::Hash { key } => Masker::Hash {
                    key: crate::session::mask::load_key(key).map_err(|e| {
                        format!("mask `{}`: its key `{}`: {e}", m.id, key.display())
                    })?,
                },
            })
        })
        .collect()
}
