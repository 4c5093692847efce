//! Rule files → [`Rule`]s, reporting every problem with its position.
//!
//! The file is parsed into toml's spanned document tree and walked by hand
//! rather than deserialised with serde: serde stops at the first error, while
//! an operator fixing a policy wants all of them in one run, each pointing at
//! the key or value at fault.

use super::mask::{ColumnGlob, Mask, MaskMethod};
use super::problem::Problem;
use super::rule::{Principals, Rule, TableGlobs};
use super::verdict::{Action, ApprovalSpec, Verdict};
use super::Guard;
use crate::classify::{Class, ClassSet};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

const RULE_KEYS: &[&str] = &[
    "id",
    "description",
    "action",
    "classes",
    "tables",
    "agents",
    "groups",
    "except_agents",
    "except_groups",
    "reason",
    "approvers",
    "quorum",
    "timeout",
    "show_literals",
    "max_rows",
];
/// Keys of the `[guard]` table (the row-count guard).
const GUARD_KEYS: &[&str] = &[
    "max_rows",
    "approvers",
    "quorum",
    "timeout",
    "show_literals",
];
const APPROVAL_KEYS: &[&str] = &["approvers", "quorum", "timeout", "show_literals"];
/// Keys of a `[[mask]]` table.
const MASK_KEYS: &[&str] = &[
    "id",
    "description",
    "columns",
    "method",
    "keep_last",
    "key",
    "except_agents",
    "except_groups",
];

/// Where each rule id was first defined, so a duplicate can point back at it.
pub(crate) type SeenIds = HashMap<String, (PathBuf, usize, usize)>;

/// What the files parsed so far hold besides their rules.
#[derive(Default)]
pub(crate) struct Loaded {
    pub seen: SeenIds,
    /// The `[guard]` table, and where it is (at most one across all files).
    pub guard: Option<(Guard, String)>,
    /// Where the first rule with its own `max_rows` is (it needs a `[guard]`).
    pub first_max_rows: Option<Problem>,
    /// The `[[mask]]`s, in load order.
    pub masks: Vec<Mask>,
}

/// Parses one file's `text`, appending its valid rules to `rules` and its
/// problems to `problems`. A rule with any problem is left out.
pub(crate) fn parse_file(
    file: &Path,
    text: &str,
    loaded: &mut Loaded,
    rules: &mut Vec<Rule>,
    problems: &mut Vec<Problem>,
) {
    let mut p = FileParser {
        file,
        text,
        problems,
    };
    let first = p.problems.len();
    p.walk(loaded, rules);
    // Keys are visited in the table's order, not the file's: report by position.
    p.problems[first..].sort_by_key(|p| (p.line, p.column));
}

impl FileParser<'_> {
    fn walk(&mut self, loaded: &mut Loaded, rules: &mut Vec<Rule>) {
        let text = self.text;
        let (doc, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            // The recovered tree would only yield confusing follow-on problems.
            for e in errors {
                let at = e.span().map_or(0, |s| s.start);
                self.report(at, e.message().trim().to_string());
            }
            return;
        }
        for (key, value) in doc.get_ref() {
            if key.get_ref() == "guard" {
                self.guard(value, loaded);
                continue;
            }
            if key.get_ref() == "mask" {
                self.masks(value, loaded);
                continue;
            }
            if key.get_ref() != "rule" {
                self.report(
                    key.span().start,
                    format!(
                        "unknown key `{}`; a rule file holds only `[[rule]]` and `[[mask]]` tables and one `[guard]`",
                        key.get_ref()
                    ),
                );
                continue;
            }
            for (table, span) in self.array_of_tables(value, "rule") {
                if let Some(rule) = self.rule(table, span.clone(), &mut loaded.seen) {
                    if rule.verdict.max_rows.is_some() && loaded.first_max_rows.is_none() {
                        loaded.first_max_rows = Some(Problem::at(
                            self.file,
                            self.text,
                            span.start,
                            format!("rule `{}` sets `max_rows`, but no `[guard]` table names who approves a transaction above it (e.g. `[guard]` with `approvers = [\"dba\"]`)", rule.verdict.rule),
                        ));
                    }
                    rules.push(rule);
                }
            }
        }
    }
}

struct FileParser<'a> {
    file: &'a Path,
    text: &'a str,
    problems: &'a mut Vec<Problem>,
}

type Value<'i> = Spanned<DeValue<'i>>;

impl FileParser<'_> {
    fn report(&mut self, offset: usize, message: String) {
        self.problems
            .push(Problem::at(self.file, self.text, offset, message));
    }

    fn rule(
        &mut self,
        table: &DeTable<'_>,
        span: Range<usize>,
        seen: &mut SeenIds,
    ) -> Option<Rule> {
        let before = self.problems.len();
        for key in table.keys() {
            if !RULE_KEYS.contains(&key.get_ref().as_ref()) {
                self.report(
                    key.span().start,
                    format!("unknown key `{}` in rule", key.get_ref()),
                );
            }
        }
        let get = |k: &str| table.get(k);

        let id = self.id(get("id"), span.start, seen);
        let named = id
            .as_deref()
            .map_or_else(|| "this rule".to_string(), |id| format!("rule `{id}`"));
        let action = match get("action") {
            None => {
                self.report(span.start, format!("{named} has no `action`"));
                None
            }
            Some(v) => self.string(v, "action").and_then(|s| {
                let action = Action::parse(s);
                if action.is_none() {
                    self.report(
                        v.span().start,
                        format!(
                            "unknown action `{s}`; expected `allow`, `deny` or `require_approval`"
                        ),
                    );
                }
                action
            }),
        };
        let description = get("description").and_then(|v| self.string(v, "description"));
        let reason = get("reason").and_then(|v| self.nonempty_string(v, "reason"));
        let classes = get("classes").and_then(|v| self.classes(v));
        let tables = get("tables").and_then(|v| self.tables(v, action));
        let principals = Principals {
            agents: get("agents").and_then(|v| self.names(v, "agents", false)),
            groups: get("groups").and_then(|v| self.names(v, "groups", false)),
            except_agents: get("except_agents")
                .and_then(|v| self.names(v, "except_agents", true))
                .unwrap_or_default(),
            except_groups: get("except_groups")
                .and_then(|v| self.names(v, "except_groups", true))
                .unwrap_or_default(),
        };
        let approval = self.approval(table, action, &named, span.start);
        let max_rows = table.get("max_rows").and_then(|v| {
            if action.is_some_and(|a| a != Action::Allow) {
                self.report(
                    v.span().start,
                    format!("`max_rows` applies only to `allow` rules (statements that were approved or denied are not counted), and {named} is not one"),
                );
                return None;
            }
            self.max_rows(v)
        });

        if self.problems.len() != before {
            return None;
        }
        // INVARIANT: with no problems reported, `id` and `action` are set.
        let (id, action) = (id?, action?);
        let reason = reason
            .or(description)
            .map(str::to_string)
            .unwrap_or_else(|| default_reason(action, &id));
        Some(Rule {
            classes,
            tables,
            principals,
            verdict: Verdict {
                action,
                rule: Arc::from(id.as_str()),
                reason: Arc::from(reason),
                approval: approval.map(Arc::new),
                max_rows,
                also: Arc::from([]),
            },
        })
    }

    /// The `[guard]` table: the default row limit and who approves above it.
    fn guard(&mut self, value: &Value<'_>, loaded: &mut Loaded) {
        let at = value.span().start;
        let Some(table) = value.get_ref().as_table() else {
            self.report(at, "`guard` must be a table, written `[guard]`".into());
            return;
        };
        if let Some((_, first)) = &loaded.guard {
            let m = format!("a second `[guard]` table; the first is at {first}");
            self.report(at, m);
            return;
        }
        let before = self.problems.len();
        self.known_keys(table, GUARD_KEYS, "`[guard]`");
        let max_rows = table.get("max_rows").and_then(|v| self.max_rows(v));
        let spec = self.approval(table, Some(Action::RequireApproval), "`[guard]`", at);
        if self.problems.len() != before {
            return;
        }
        let Some(spec) = spec else { return };
        let (line, column) = super::problem::line_col(self.text, at);
        loaded.guard = Some((
            Guard {
                max_rows,
                approval: Arc::new(spec),
            },
            format!("{}:{line}:{column}", self.file.display()),
        ));
    }

    fn max_rows(&mut self, v: &Value<'_>) -> Option<u64> {
        let Some(int) = v.get_ref().as_integer() else {
            self.wrong_type(v, "max_rows", "an integer");
            return None;
        };
        match i64::from_str_radix(int.as_str(), int.radix())
            .ok()
            .and_then(|n| u64::try_from(n).ok())
        {
            Some(n) => Some(n),
            None => {
                self.report(
                    v.span().start,
                    format!("`max_rows` must be 0 or more, not `{int}`"),
                );
                None
            }
        }
    }

    fn id(&mut self, v: Option<&Value<'_>>, rule_at: usize, seen: &mut SeenIds) -> Option<String> {
        let Some(v) = v else {
            self.report(rule_at, "rule has no `id`".into());
            return None;
        };
        let id = self.string(v, "id")?;
        let valid = !id.is_empty()
            && id
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
        if !valid {
            self.report(
                v.span().start,
                format!("rule id `{id}` must be non-empty and use only a-z, 0-9, `_`, `.` and `-`"),
            );
            return None;
        }
        let (line, column) = super::problem::line_col(self.text, v.span().start);
        if let Some((file, l, c)) = seen.get(id) {
            let first = format!("{}:{l}:{c}", file.display());
            self.report(
                v.span().start,
                format!("duplicate rule id `{id}`; first defined at {first}"),
            );
            return None;
        }
        seen.insert(id.to_string(), (self.file.to_path_buf(), line, column));
        Some(id.to_string())
    }

    fn string<'v>(&mut self, v: &'v Value<'_>, key: &str) -> Option<&'v str> {
        let s = v.get_ref().as_str();
        if s.is_none() {
            self.wrong_type(v, key, "a string");
        }
        s
    }

    fn nonempty_string<'v>(&mut self, v: &'v Value<'_>, key: &str) -> Option<&'v str> {
        let s = self.string(v, key)?;
        if s.trim().is_empty() {
            self.report(v.span().start, format!("`{key}` must not be empty"));
            return None;
        }
        Some(s)
    }

    fn wrong_type(&mut self, v: &Value<'_>, key: &str, expected: &str) {
        let found = v.get_ref().type_str();
        self.report(
            v.span().start,
            format!("`{key}` must be {expected}, not {found}"),
        );
    }

    /// The strings of an array, each with its offset. `None` after reporting
    /// a problem; an empty array is a problem unless `may_be_empty`, because
    /// a filter listing nothing would silently match nothing.
    fn strings<'v>(
        &mut self,
        v: &'v Value<'_>,
        key: &str,
        may_be_empty: bool,
    ) -> Option<Vec<(&'v str, usize)>> {
        let Some(array) = v.get_ref().as_array() else {
            self.wrong_type(v, key, "an array of strings");
            return None;
        };
        if array.is_empty() && !may_be_empty {
            self.report(
                v.span().start,
                format!("`{key}` is empty and would match nothing; omit it to match everything"),
            );
            return None;
        }
        let mut out = Vec::with_capacity(array.len());
        let mut ok = true;
        for item in array {
            match item.get_ref().as_str() {
                Some("") => {
                    self.report(item.span().start, format!("`{key}` holds an empty name"));
                    ok = false;
                }
                Some(s) => out.push((s, item.span().start)),
                None => {
                    let found = item.get_ref().type_str();
                    self.report(
                        item.span().start,
                        format!("each entry of `{key}` must be a string, not {found}"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn names(&mut self, v: &Value<'_>, key: &str, may_be_empty: bool) -> Option<Vec<String>> {
        let items = self.strings(v, key, may_be_empty)?;
        Some(items.into_iter().map(|(s, _)| s.to_string()).collect())
    }

    fn classes(&mut self, v: &Value<'_>) -> Option<ClassSet> {
        let mut set = ClassSet::EMPTY;
        let mut ok = true;
        for (name, at) in self.strings(v, "classes", false)? {
            match Class::parse(name) {
                Some(c) => set.insert(c),
                None => {
                    let known: Vec<&str> = Class::ALL.iter().map(|c| c.as_str()).collect();
                    self.report(
                        at,
                        format!(
                            "unknown class `{name}`; expected one of {}",
                            known.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(set)
    }

    fn tables(&mut self, v: &Value<'_>, action: Option<Action>) -> Option<TableGlobs> {
        let items = self.strings(v, "tables", false)?;
        // Restrictive rules match generously (see `rule.rs`): ignore case.
        self.table_globs(items, action != Some(Action::Allow))
    }

    /// Table patterns (each with its offset), compiled for a rule that
    /// allows or (`restrictive`) one that restricts.
    fn table_globs(&mut self, items: Vec<(&str, usize)>, restrictive: bool) -> Option<TableGlobs> {
        let mut full = GlobSetBuilder::new();
        let mut unqualified = GlobSetBuilder::new();
        let mut tails = GlobSetBuilder::new();
        let mut exact = Vec::new();
        let mut ok = true;
        for (pattern, at) in items {
            let Some(glob) = self.glob(pattern, pattern, at, restrictive) else {
                ok = false;
                continue;
            };
            if !restrictive {
                exact.push((glob.compile_matcher(), pattern.matches('.').count()));
            }
            full.add(glob);
            if !restrictive {
                continue;
            }
            match pattern.rsplit_once('.') {
                Some((_, tail)) => {
                    if let Some(g) = self.glob(tail, pattern, at, true) {
                        tails.add(g);
                    }
                }
                None => {
                    if let Some(g) = self.glob(pattern, pattern, at, true) {
                        unqualified.add(g);
                    }
                }
            }
        }
        let build = |b: GlobSetBuilder| b.build().unwrap_or_else(|_| GlobSet::empty());
        ok.then(|| TableGlobs {
            exact,
            full: build(full),
            unqualified: build(unqualified),
            tails: build(tails),
        })
    }

    /// The `[[mask]]` tables.
    fn masks(&mut self, value: &Value<'_>, loaded: &mut Loaded) {
        for (table, span) in self.array_of_tables(value, "mask") {
            if let Some(m) = self.mask(table, span.start, &mut loaded.seen) {
                loaded.masks.push(m);
            }
        }
    }

    /// Reports the keys of `table` (a `what`) that are not `known`.
    fn known_keys(&mut self, table: &DeTable<'_>, known: &[&str], what: &str) {
        for key in table.keys() {
            if !known.contains(&key.get_ref().as_ref()) {
                self.report(
                    key.span().start,
                    format!(
                        "unknown key `{}` in {what}; expected one of {}",
                        key.get_ref(),
                        known.join(", ")
                    ),
                );
            }
        }
    }

    /// The tables of `[[key]]`, each with its span; what is not one is reported.
    fn array_of_tables<'v, 'i>(
        &mut self,
        value: &'v Value<'i>,
        key: &str,
    ) -> Vec<(&'v DeTable<'i>, Range<usize>)> {
        let wrong = format!("`{key}` must be an array of tables, written `[[{key}]]`");
        let Some(array) = value.get_ref().as_array() else {
            self.report(value.span().start, wrong);
            return Vec::new();
        };
        let mut out = Vec::with_capacity(array.len());
        for item in array {
            match item.get_ref().as_table() {
                Some(table) => out.push((table, item.span())),
                None => self.report(item.span().start, wrong.clone()),
            }
        }
        out
    }

    fn mask(&mut self, table: &DeTable<'_>, at: usize, seen: &mut SeenIds) -> Option<Mask> {
        let before = self.problems.len();
        self.known_keys(table, MASK_KEYS, "mask");
        let id = match table.get("id") {
            Some(v) => self.id(Some(v), at, seen),
            None => {
                self.report(at, "mask has no `id`".into());
                None
            }
        };
        let named = id
            .as_deref()
            .map_or_else(|| "this mask".to_string(), |id| format!("mask `{id}`"));
        let columns = match table.get("columns") {
            Some(v) => self.column_globs(v),
            None => {
                self.report(
                    at,
                    format!("{named} has no `columns` (e.g. `columns = [\"users.ssn\"]`)"),
                );
                None
            }
        };
        let method = self.mask_method(table, &named, at);
        let _ = table
            .get("description")
            .and_then(|v| self.string(v, "description"));
        let exempt = Principals {
            agents: None,
            groups: None,
            except_agents: table
                .get("except_agents")
                .and_then(|v| self.names(v, "except_agents", true))
                .unwrap_or_default(),
            except_groups: table
                .get("except_groups")
                .and_then(|v| self.names(v, "except_groups", true))
                .unwrap_or_default(),
        };
        if self.problems.len() != before {
            return None;
        }
        Some(Mask {
            id: Arc::from(id?.as_str()),
            method: method?,
            columns: columns?,
            exempt,
        })
    }

    /// `columns`: `[schema.]table.column` globs.
    fn column_globs(&mut self, v: &Value<'_>) -> Option<Vec<ColumnGlob>> {
        let items = self.strings(v, "columns", false)?;
        let mut out = Vec::with_capacity(items.len());
        for (pattern, at) in items {
            let Some((table, column)) = pattern
                .rsplit_once('.')
                .filter(|(t, c)| !t.is_empty() && !c.is_empty())
            else {
                self.report(
                    at,
                    format!("column `{pattern}` must name its table: `table.column` or `schema.table.column`"),
                );
                continue;
            };
            let table = self.table_globs(vec![(table, at)], true);
            let column = self
                .glob(column, pattern, at, true)
                .map(|g| g.compile_matcher());
            if let (Some(table), Some(column)) = (table, column) {
                out.push(ColumnGlob { table, column });
            }
        }
        Some(out)
    }

    fn mask_method(&mut self, table: &DeTable<'_>, named: &str, at: usize) -> Option<MaskMethod> {
        let keep_last = table.get("keep_last");
        let key = table.get("key");
        let method = match table.get("method") {
            None => {
                self.report(
                    at,
                    format!("{named} has no `method` (redact, partial, hash, null or email)"),
                );
                return None;
            }
            Some(v) => (self.string(v, "method")?, v.span().start),
        };
        for (key, v, owner) in [("keep_last", keep_last, "partial"), ("key", key, "hash")] {
            if let Some(v) = v.filter(|_| method.0 != owner) {
                self.report(
                    v.span().start,
                    format!(
                        "`{key}` applies only to `method = \"{owner}\"`, and {named} is `{}`",
                        method.0
                    ),
                );
            }
        }
        match method.0 {
            "redact" => Some(MaskMethod::Redact),
            "null" => Some(MaskMethod::Null),
            "email" => Some(MaskMethod::Email),
            "partial" => {
                let Some(v) = keep_last else {
                    self.report(
                        at,
                        format!(
                            "{named} is `partial` but has no `keep_last` (e.g. `keep_last = 4`)"
                        ),
                    );
                    return None;
                };
                let n = v
                    .get_ref()
                    .as_integer()
                    .and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok());
                match n
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=64).contains(n))
                {
                    Some(keep_last) => Some(MaskMethod::Partial { keep_last }),
                    None => {
                        self.report(
                            v.span().start,
                            "`keep_last` must be an integer from 1 to 64".into(),
                        );
                        None
                    }
                }
            }
            "hash" => {
                let Some(v) = key else {
                    self.report(at, format!("{named} is `hash` but has no `key` (a file holding the HMAC key, e.g. `key = \"mask.key\"`)"));
                    return None;
                };
                let path = self.nonempty_string(v, "key")?;
                let path = PathBuf::from(path);
                let path = if path.is_absolute() {
                    path
                } else {
                    self.file.parent().unwrap_or(Path::new(".")).join(path)
                };
                Some(MaskMethod::Hash { key: path })
            }
            other => {
                self.report(method.1, format!("unknown mask method `{other}`; expected redact, partial, hash, null or email"));
                None
            }
        }
    }

    fn glob(
        &mut self,
        pattern: &str,
        shown: &str,
        at: usize,
        fold_case: bool,
    ) -> Option<globset::Glob> {
        match GlobBuilder::new(pattern)
            .case_insensitive(fold_case)
            .build()
        {
            Ok(g) => Some(g),
            Err(e) => {
                self.report(at, format!("bad table glob `{shown}`: {}", e.kind()));
                None
            }
        }
    }

    fn approval(
        &mut self,
        table: &DeTable<'_>,
        action: Option<Action>,
        named: &str,
        rule_at: usize,
    ) -> Option<ApprovalSpec> {
        if action != Some(Action::RequireApproval) {
            if let Some(action) = action {
                for (key, _) in table
                    .iter()
                    .filter(|(k, _)| APPROVAL_KEYS.contains(&k.get_ref().as_ref()))
                {
                    self.report(
                        key.span().start,
                        format!(
                            "`{}` applies only to `require_approval` rules, and {named} is `{action}`",
                            key.get_ref()
                        ),
                    );
                }
            }
            return None;
        }
        let approvers = match table.get("approvers") {
            Some(v) => self.names(v, "approvers", false),
            None => {
                self.report(
                    rule_at,
                    format!("{named} requires approval but names no `approvers` (e.g. `approvers = [\"dba\"]`)"),
                );
                None
            }
        };
        let quorum = match table.get("quorum") {
            None => Some(1),
            Some(v) => self.quorum(v),
        };
        let timeout = table.get("timeout").and_then(|v| {
            let text = self.string(v, "timeout")?;
            match humantime::parse_duration(text) {
                Ok(d) if d.is_zero() => {
                    self.report(v.span().start, "`timeout` must be longer than zero".into());
                    None
                }
                Ok(d) => Some(d),
                Err(e) => {
                    self.report(
                        v.span().start,
                        format!("bad `timeout` `{text}`: {e}; write e.g. \"90s\" or \"10m\""),
                    );
                    None
                }
            }
        });
        let show_literals = match table.get("show_literals") {
            None => Some(false),
            Some(v) => {
                let b = v.get_ref().as_bool();
                if b.is_none() {
                    self.wrong_type(v, "show_literals", "true or false");
                }
                b
            }
        };
        Some(ApprovalSpec {
            approver_groups: approvers?,
            quorum: quorum?,
            timeout: if table.contains_key("timeout") {
                Some(timeout?)
            } else {
                None
            },
            show_literals: show_literals?,
        })
    }

    fn quorum(&mut self, v: &Value<'_>) -> Option<u32> {
        let Some(int) = v.get_ref().as_integer() else {
            self.wrong_type(v, "quorum", "an integer");
            return None;
        };
        let n = i64::from_str_radix(int.as_str(), int.radix()).ok();
        match n.and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n >= 1 => Some(n),
            _ => {
                self.report(
                    v.span().start,
                    format!("`quorum` must be at least 1, not `{int}`"),
                );
                None
            }
        }
    }
}

fn default_reason(action: Action, id: &str) -> String {
    match action {
        Action::Allow => format!("allowed by rule `{id}`"),
        Action::Deny => format!("denied by rule `{id}`"),
        Action::RequireApproval => format!("held for approval by rule `{id}`"),
    }
}
