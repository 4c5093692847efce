//! Result rewriting: the seam that masking fills.
//!
//! A [`Planner`] looks at a result's columns and returns a [`RowPlan`] (or
//! none: the rows pass untouched, and large ones stream through in pieces).
//! The plan travels with the statement's expected response; each result
//! row is then rebuilt field by field by the wire's rewriter (PostgreSQL:
//! `proxy/postgres/relay/rows.rs`). Today no policy builds plans; the
//! keep-all plan ([`RowPlan::keep_all`], `SQLGATE_DEBUG_ROW_PLAN=keep-all`)
//! sends every row through the rewrite unchanged, which the tests use to
//! show the path is faithful.
//!
//! Protocol-independent: a column says where it comes from either by the
//! PostgreSQL catalog's numbers or by MySQL's names.

use bytes::Bytes;
use std::sync::{Arc, OnceLock};

/// Where a result column's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// Not a plain table column (an expression), as far as the server says.
    Computed,
    /// PostgreSQL: the table's OID and the column's attribute number.
    Attribute { table: u32, attnum: i16 },
    /// MySQL: the underlying schema, table and column names.
    Named {
        schema: &'a [u8],
        table: &'a [u8],
        column: &'a [u8],
    },
}

/// One column of a result, as a planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column<'a> {
    /// The name the result gives it (an alias, perhaps).
    pub name: &'a [u8],
    pub origin: Origin<'a>,
    /// The wire's type id (PostgreSQL type OID, MySQL column type).
    pub type_id: u32,
    /// Values come in the binary format, not as text.
    pub binary: bool,
}

/// What becomes of one field of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Passed on as the server sent it.
    Keep,
    /// Replaced by SQL NULL.
    Null,
    /// Replaced by this value (in the column's format).
    Value(Bytes),
    /// Replaced by the masked form of its text (a text-like column, whose
    /// text and binary forms are both the text).
    Mask(super::mask::Masker),
}

static KEEP: Field = Field::Keep;

/// What to do with every row of one result: the fields it changes, by
/// position; the others are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowPlan {
    /// Sorted by position, one entry per position at most.
    fields: Vec<(usize, Field)>,
    /// The number of fields every row must have, when the plan knows it (a
    /// mask plan does): a row of another width ends the statement.
    pub width: Option<usize>,
}

impl RowPlan {
    /// The no-op plan: every row goes through the rewrite and comes out
    /// as it was.
    pub fn keep_all() -> RowPlan {
        RowPlan::default()
    }

    /// Field `at` of every row becomes `f`.
    pub fn set(&mut self, at: usize, f: Field) {
        match self.fields.binary_search_by_key(&at, |(i, _)| *i) {
            Ok(i) => self.fields[i].1 = f,
            Err(i) => self.fields.insert(i, (at, f)),
        }
    }

    /// Whether any field is masked (its replacement depends on its value).
    pub fn masks(&self) -> bool {
        self.fields.iter().any(|(_, f)| matches!(f, Field::Mask(_)))
    }

    /// What becomes of field `at`.
    pub fn field(&self, at: usize) -> &Field {
        match self.fields.binary_search_by_key(&at, |(i, _)| *i) {
            Ok(i) => &self.fields[i].1,
            Err(_) => &KEEP,
        }
    }
}

/// Decides how a result's rows are rewritten.
pub trait Planner: Send + Sync {
    /// The plan for a result with these columns; `None` when sqlgate does
    /// not know them (a portal executed without a description sqlgate
    /// saw). A planner that must rewrite cannot pass rows it cannot place:
    /// it says so by planning every field (masking's job, issue 11).
    fn plan(&self, columns: Option<&[Column<'_>]>) -> Option<Arc<RowPlan>>;
}

/// The keep-all plan for every result (`SQLGATE_DEBUG_ROW_PLAN=keep-all`).
pub struct KeepAll(Arc<RowPlan>);

impl Planner for KeepAll {
    fn plan(&self, _: Option<&[Column<'_>]>) -> Option<Arc<RowPlan>> {
        Some(self.0.clone())
    }
}

/// The planner this process runs with: none unless the debug switch
/// `SQLGATE_DEBUG_ROW_PLAN=keep-all` is set (read once). A testing aid for
/// the rewrite path; it changes no result.
pub fn configured() -> Option<Arc<dyn Planner>> {
    static PLANNER: OnceLock<Option<Arc<dyn Planner>>> = OnceLock::new();
    PLANNER
        .get_or_init(|| match std::env::var("SQLGATE_DEBUG_ROW_PLAN").as_deref() {
            Ok("keep-all") => {
                tracing::warn!(
                    "SQLGATE_DEBUG_ROW_PLAN=keep-all: every result row goes through the rewrite path (unchanged)"
                );
                Some(Arc::new(KeepAll(Arc::new(RowPlan::keep_all()))))
            }
            Ok(other) => {
                tracing::warn!("SQLGATE_DEBUG_ROW_PLAN={other:?} is not known; ignored");
                None
            }
            Err(_) => None,
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_keeps_what_it_does_not_name() {
        let mut p = RowPlan::keep_all();
        assert_eq!(p.field(0), &Field::Keep);
        p.set(3, Field::Null);
        p.set(1, Field::Value(Bytes::from_static(b"***")));
        p.set(3, Field::Value(Bytes::from_static(b"x")));
        assert_eq!(p.field(1), &Field::Value(Bytes::from_static(b"***")));
        assert_eq!(p.field(2), &Field::Keep);
        assert_eq!(p.field(3), &Field::Value(Bytes::from_static(b"x")));
        assert_eq!(p.fields.len(), 2);
    }
}
