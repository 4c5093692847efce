//! `[[mask]]`: columns whose values an agent must not see (issue 11).
//!
//! A mask names columns by `[schema.]table.column` globs, a method, and who
//! is exempt. Tables match as in restrictive rules (`rule.rs`: case
//! ignored, `users` and `*.users` catch each other), columns ignoring case:
//! an ambiguity masks more, never less.
//!
//! What a statement may do with a masked column is
//! [`crate::classify::lineage`]'s: the plan says which result columns pass
//! one through (to be masked in the rows) and refuses the rest.

use super::rule::{Principals, TableGlobs};
use super::verdict::Identity;
use std::path::PathBuf;
use std::sync::Arc;

/// How a masked value is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskMethod {
    /// A fixed text (`****`), whatever the value's length.
    Redact,
    /// Everything but the last `keep_last` characters replaced.
    Partial { keep_last: u32 },
    /// A keyed HMAC of the value (the key file like the audit key's): the
    /// same value masks alike, so joins by it still line up.
    Hash { key: PathBuf },
    /// NULL.
    Null,
    /// The local part replaced, the domain kept.
    Email,
}

impl MaskMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            MaskMethod::Redact => "redact",
            MaskMethod::Partial { .. } => "partial",
            MaskMethod::Hash { .. } => "hash",
            MaskMethod::Null => "null",
            MaskMethod::Email => "email",
        }
    }
}

/// One column glob: its table part and its column part.
#[derive(Debug)]
pub(crate) struct ColumnGlob {
    pub table: TableGlobs,
    pub column: globset::GlobMatcher,
}

/// A validated `[[mask]]`.
#[derive(Debug)]
pub struct Mask {
    pub id: Arc<str>,
    pub method: MaskMethod,
    pub(crate) columns: Vec<ColumnGlob>,
    pub(crate) exempt: Principals,
}

impl Mask {
    fn applies_to(&self, who: &Identity) -> bool {
        !self.exempt.except_agents.contains(&who.agent)
            && !who.in_any_group(&self.exempt.except_groups)
    }

    fn covers_table(&self, table: &str) -> bool {
        self.columns
            .iter()
            .any(|c| c.table.matches_restrictive(table))
    }

    fn covers(&self, table: &str, column: &str) -> bool {
        self.columns
            .iter()
            .any(|c| c.table.matches_restrictive(table) && c.column.is_match(column))
    }
}

/// The masks that apply to one agent, as the lineage asks about them; a
/// column's mask is its index in [`super::Policy::masks`].
pub struct MasksFor<'a> {
    pub(crate) masks: &'a [Mask],
    pub(crate) who: &'a Identity,
}

impl MasksFor<'_> {
    /// Whether any mask applies to this agent at all.
    pub fn any(&self) -> bool {
        self.masks.iter().any(|m| m.applies_to(self.who))
    }
}

impl crate::classify::lineage::Masks for MasksFor<'_> {
    fn table(&self, table: &str) -> bool {
        self.masks
            .iter()
            .any(|m| m.applies_to(self.who) && m.covers_table(table))
    }

    fn column(&self, table: &str, column: &str) -> Option<usize> {
        self.masks
            .iter()
            .position(|m| m.applies_to(self.who) && m.covers(table, column))
    }
}
