//! A rule as the engine uses it: validated, globs compiled, verdict prebuilt.
//! Matching is the hot path, so everything here is comparisons over data
//! prepared at load time; nothing allocates.
//!
//! Table globs match generously in rules that restrict (`deny`,
//! `require_approval`) and strictly in rules that allow, so that an ambiguity
//! in a table name always resolves towards the safer outcome:
//!
//! - restrictive rules ignore case, and compare qualified and unqualified
//!   names by their last part: `*.secrets` catches `secrets` (which may
//!   resolve to `hr.secrets` through the search path), and `secrets` catches
//!   `hr.secrets`. A consequence: `hr.*` in a deny rule also catches every
//!   unqualified table name.
//! - allow rules match the name exactly as the classifier normalised it, part
//!   for part: `reports.*` admits `reports.daily` but neither an unqualified
//!   `daily` nor `reports.x.secrets` (a `*` never stretches across a dot in
//!   an allow rule: the name must have as many dotted parts as the pattern).

use super::verdict::{Action, Identity, Verdict};
use crate::classify::{Class, ClassSet, StatementInfo};
use globset::GlobSet;

/// The globs of one rule's `tables`, compiled for the rule's action.
#[derive(Debug)]
pub(crate) struct TableGlobs {
    /// Allow rules: each pattern with its number of dots.
    pub exact: Vec<(globset::GlobMatcher, usize)>,
    /// Every pattern, matched against the whole normalised name.
    pub full: GlobSet,
    /// Restrictive rules only: the unqualified patterns, matched against the
    /// last part of a qualified name.
    pub unqualified: GlobSet,
    /// Restrictive rules only: the last part of each qualified pattern,
    /// matched against an unqualified name.
    pub tails: GlobSet,
}

impl TableGlobs {
    pub(crate) fn matches_restrictive(&self, table: &str) -> bool {
        if self.full.is_match(table) {
            return true;
        }
        match table.rsplit_once('.') {
            Some((_, last)) => self.unqualified.is_match(last),
            None => self.tails.is_match(table),
        }
    }
}

/// Who a rule applies to. Every filter present must admit the identity.
#[derive(Debug, Default)]
pub(crate) struct Principals {
    pub agents: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub except_agents: Vec<String>,
    pub except_groups: Vec<String>,
}

impl Principals {
    fn admit(&self, who: &Identity) -> bool {
        if let Some(agents) = &self.agents {
            if !agents.contains(&who.agent) {
                return false;
            }
        }
        if let Some(groups) = &self.groups {
            if !who.in_any_group(groups) {
                return false;
            }
        }
        !self.except_agents.contains(&who.agent) && !who.in_any_group(&self.except_groups)
    }
}

#[derive(Debug)]
pub(crate) struct Rule {
    /// `None` means every class.
    pub classes: Option<ClassSet>,
    pub tables: Option<TableGlobs>,
    pub principals: Principals,
    /// Prebuilt so that deciding only clones `Arc`s.
    pub verdict: Verdict,
}

impl Rule {
    pub fn action(&self) -> Action {
        self.verdict.action
    }

    /// The classes this rule speaks for (all of them when it names none).
    pub fn covers(&self) -> ClassSet {
        self.classes.unwrap_or_else(all_classes)
    }

    /// Whether the rule applies to `stmt` (whose classes are `classes`, made
    /// non-empty by the caller) coming from `who`.
    pub fn matches(&self, who: &Identity, classes: ClassSet, stmt: &StatementInfo) -> bool {
        if let Some(own) = self.classes {
            if !own.intersects(classes) {
                return false;
            }
        }
        if !self.principals.admit(who) {
            return false;
        }
        match &self.tables {
            None => true,
            // INVARIANT: an allow rule must vouch for every table, or a join
            // could carry an unlisted table in on an allowed one's back.
            Some(globs) if self.action() == Action::Allow => {
                !stmt.tables.is_empty()
                    && stmt.tables.iter().all(|t| {
                        let dots = t.matches('.').count();
                        globs.exact.iter().any(|(m, d)| *d == dots && m.is_match(t))
                    })
            }
            // A statement sqlgate could not fully read (`unparsed`: a body,
            // a procedure or a text it did not see into) may touch any table.
            Some(_) if classes.contains(Class::Unparsed) => true,
            Some(globs) => stmt.tables.iter().any(|t| globs.matches_restrictive(t)),
        }
    }
}

pub(crate) fn all_classes() -> ClassSet {
    ClassSet::of(&crate::classify::Class::ALL)
}
