//! The vocabulary shared by the classifier, the policy and the audit log.
//! Kept apart from the analysis code so that policy and protocol code depend on
//! these small types only.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which SQL dialect a statement is written in (chosen by the listener's protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    Postgres,
    Mysql,
}

/// What a statement does, as far as the policy cares. A statement can carry
/// several classes (`DELETE FROM t` is `write` and `destructive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Read,
    Write,
    Ddl,
    Privilege,
    Export,
    Destructive,
    ServerAccess,
    Session,
    Transaction,
    Unparsed,
}

impl Class {
    pub const ALL: [Class; 10] = [
        Class::Read,
        Class::Write,
        Class::Ddl,
        Class::Privilege,
        Class::Export,
        Class::Destructive,
        Class::ServerAccess,
        Class::Session,
        Class::Transaction,
        Class::Unparsed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Ddl => "ddl",
            Class::Privilege => "privilege",
            Class::Export => "export",
            Class::Destructive => "destructive",
            Class::ServerAccess => "server_access",
            Class::Session => "session",
            Class::Transaction => "transaction",
            Class::Unparsed => "unparsed",
        }
    }

    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A small set of classes (a bit set: copying it is free).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ClassSet(u16);

impl ClassSet {
    pub const EMPTY: ClassSet = ClassSet(0);

    pub fn of(classes: &[Class]) -> ClassSet {
        let mut s = ClassSet::EMPTY;
        for c in classes {
            s.insert(*c);
        }
        s
    }
    pub fn insert(&mut self, c: Class) {
        self.0 |= c.bit();
    }
    pub fn remove(&mut self, c: Class) {
        self.0 &= !c.bit();
    }
    pub fn contains(self, c: Class) -> bool {
        self.0 & c.bit() != 0
    }
    pub fn intersects(self, other: ClassSet) -> bool {
        self.0 & other.0 != 0
    }
    pub fn union(self, other: ClassSet) -> ClassSet {
        ClassSet(self.0 | other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Class> {
        Class::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl fmt::Debug for ClassSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for ClassSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Class::as_str))
    }
}

/// What the classifier learned about one top-level statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementInfo {
    /// Never empty: a statement the classifier cannot place is `unparsed`.
    pub classes: ClassSet,
    /// Tables (and views) the statement touches, normalised as described in
    /// `classify`'s docs, sorted and de-duplicated.
    pub tables: Vec<String>,
    /// The statement's text with every literal replaced by `?`, comments removed
    /// and white space folded. Never holds a literal's value: safe to log.
    pub fingerprint: String,
    /// The leading command, upper case (`SELECT`, `DELETE`, `CREATE TABLE`, …).
    pub command: String,
    /// Set when the statement would undermine sqlgate's own analysis (for
    /// example switching `standard_conforming_strings` off or the client
    /// encoding away from UTF-8). Such statements are denied whatever the rules say.
    pub forbidden: Option<&'static str>,
    /// Why the statement is `unparsed`, or how the keyword fallback placed it.
    pub note: Option<String>,
    /// A literal of this statement is code (a function or procedure body,
    /// `DO`, a rule, trigger or policy expression): approvers are shown its
    /// full text whatever `show_literals` says, and a grant covers only that
    /// exact text (its SHA-256), never the fingerprint.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub code: bool,
    /// A DELETE, UPDATE, MERGE or `INSERT … ON CONFLICT DO UPDATE`: it
    /// changes existing rows, and its CommandComplete tag counts them, so
    /// the row guard can (PostgreSQL). Rows changed where no tag counts them
    /// (a data-modifying CTE, a function body) make the statement
    /// `destructive` instead.
    #[serde(skip)]
    pub changes_rows: bool,
    /// The statement may change what unqualified names mean for the rest of
    /// the session (`search_path`, temporary objects, code sqlgate did not
    /// read): standing grants for unqualified names stop applying.
    #[serde(skip)]
    pub moves_names: bool,
    /// `DECLARE … WITH HOLD`: the cursor outlives its transaction.
    #[serde(skip)]
    pub keeps_cursor: bool,
    /// Calls of functions that are not reviewed built-ins, which only the
    /// database's catalog can place. Until something resolves them (see
    /// `catalog`), `classes` holds `unparsed` for them: fail closed.
    #[serde(skip)]
    pub pending: Option<Box<Pending>>,
}

/// What a statement's classes are without its unresolved function calls.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pending {
    /// The classes of everything else in the statement.
    pub base: ClassSet,
    /// The functions called, `schema.name` or `name` as written (folded).
    pub functions: Vec<String>,
    /// Built-ins called by an unqualified name: a user function of the same
    /// name in another schema may be the one PostgreSQL picks (a better
    /// overload, or `pg_catalog` later in `search_path`).
    pub builtins: Vec<String>,
}

/// The analysis of one query string: one entry per top-level statement,
/// in order. An empty or comment-only string has no statements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Analysis {
    pub statements: Vec<StatementInfo>,
}
