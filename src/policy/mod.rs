//! The policy: rules from TOML files that turn a classified statement and the
//! identity of the agent sending it into a [`Verdict`] — allow, deny, or hold
//! for approval.
//!
//! The proxy asks once per statement, so [`Policy::decide`] does no I/O and
//! no allocation; all parsing, validation and glob compilation happen once in
//! [`Policy::load`], which reports every problem in every file at once.
//!
//! # How a statement is decided
//!
//! 1. A statement the classifier marked `forbidden` (it would undermine
//!    sqlgate's own analysis) is denied by `builtin:forbidden`, whatever the
//!    rules say.
//! 2. A rule *matches* when all of its filters admit the statement:
//!    - `classes`: the statement has at least one of them (omitted: any class);
//!    - `agents` / `groups`: the agent is listed / is in a listed group (each
//!      filter given must hold), and neither `except_agents` nor
//!      `except_groups` excludes it;
//!    - `tables`: for `deny` and `require_approval` rules, *any* table the
//!      statement touches matches a glob; for `allow` rules, *every* table
//!      does and there is at least one, so an allow on `reports.*` cannot be
//!      stretched by a join onto another table. (Glob details: `rule.rs`.)
//! 3. Among the matching rules the most restrictive action wins:
//!    `deny` > `require_approval` > `allow`; ties go to the first rule in load
//!    order (files in the order given, a directory's files sorted by name,
//!    rules in file order). The verdict names that rule.
//! 4. Fail closed: if no rule matches, or the winner is not `deny` but some
//!    class of the statement is covered by no matching rule (an `allow` for
//!    `read` says nothing about the `export` in `SELECT … INTO OUTFILE`), the
//!    statement is denied by `builtin:default-deny`.
//!
//! `unparsed` is an ordinary class; the shipped rules hold it for approval.
//!
//! # The row guard
//!
//! The shape of a statement says little about how much it destroys
//! (`DELETE … WHERE id > 0` is an ordinary write). An optional `[guard]`
//! table sets a default `max_rows` and the approval (`approvers`, `quorum`,
//! `timeout`, `show_literals`, as for a rule) needed to commit a
//! transaction in which an allowed DELETE, UPDATE or MERGE affected more
//! rows than that; an `allow` rule's own `max_rows` overrides the default for
//! the statements it allows. The limit travels on the [`Verdict`]; the proxy
//! counts rows from the server's answers and holds the commit.

mod mask;
mod parse;
mod problem;
mod rule;
mod verdict;

pub use mask::{Mask, MaskMethod, MasksFor};
pub use problem::{PolicyError, Problem};
pub use verdict::{Action, ApprovalSpec, Identity, Verdict};

use crate::classify::{Class, ClassSet, StatementInfo};
use rule::Rule;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The rule id of the denial when no rule admits a statement.
pub const DEFAULT_DENY: &str = "builtin:default-deny";
/// The rule id of the denial of a statement the classifier marks forbidden.
pub const FORBIDDEN: &str = "builtin:forbidden";

/// The row guard's settings (`[guard]`, see the module docs).
#[derive(Debug, Clone)]
pub struct Guard {
    /// The default limit; `None`: only rules with their own `max_rows` are counted.
    pub max_rows: Option<u64>,
    /// Who approves committing a transaction above a limit.
    pub approval: Arc<ApprovalSpec>,
}

/// A validated, compiled set of rules. Built once, then shared (`Arc`) by
/// every session; it is immutable, so reloading means building a new one.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    digest: String,
    /// Prebuilt default denials: one for "nothing matched", one per class
    /// left uncovered, indexed like `Class::ALL`.
    no_match: Verdict,
    uncovered: Vec<Verdict>,
    forbidden_rule: Arc<str>,
    guard: Option<Guard>,
    masks: Vec<Mask>,
}

impl Policy {
    /// Loads rule files, or directories (their `*.toml` files, sorted by
    /// name; not recursive). Fails with every problem found.
    pub fn load(paths: &[PathBuf]) -> Result<Policy, PolicyError> {
        let (sources, mut problems) = read_sources(paths);
        let mut loaded = parse::Loaded::default();
        let mut rules = Vec::new();
        for (file, text) in &sources {
            parse::parse_file(file, text, &mut loaded, &mut rules, &mut problems);
        }
        let (guard, masks) = finish(loaded, &mut problems);
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        let mut hasher = Sha256::new();
        for (_, text) in &sources {
            hasher.update(text.as_bytes());
        }
        Ok(Policy::new(
            rules,
            hex::encode(hasher.finalize()),
            guard,
            masks,
        ))
    }

    /// Builds a policy from TOML text; `name` stands for the file name in
    /// problems. Meant for tests and embedded policies.
    #[allow(clippy::should_implement_trait)] // it takes a name as well as the text
    pub fn from_str(name: &str, toml_text: &str) -> Result<Policy, PolicyError> {
        let mut loaded = parse::Loaded::default();
        let mut rules = Vec::new();
        let mut problems = Vec::new();
        let file = Path::new(name);
        parse::parse_file(file, toml_text, &mut loaded, &mut rules, &mut problems);
        let (guard, masks) = finish(loaded, &mut problems);
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        Ok(Policy::new(
            rules,
            hex::encode(Sha256::digest(toml_text.as_bytes())),
            guard,
            masks,
        ))
    }

    /// Validates rule files without building a policy (`sqlgate rules check`).
    /// An empty result means [`Policy::load`] would succeed.
    pub fn check(paths: &[PathBuf]) -> Vec<Problem> {
        match Policy::load(paths) {
            Ok(_) => Vec::new(),
            Err(PolicyError::Invalid(problems)) => problems,
        }
    }

    fn new(mut rules: Vec<Rule>, digest: String, guard: Option<Guard>, masks: Vec<Mask>) -> Policy {
        let deny = |reason: String| Verdict {
            action: Action::Deny,
            rule: Arc::from(DEFAULT_DENY),
            reason: Arc::from(reason),
            approval: None,
            max_rows: None,
            also: Arc::from([]),
        };
        // The guard's default limit goes on every allow verdict without its own.
        let default = guard.as_ref().and_then(|g| g.max_rows);
        for r in rules.iter_mut().filter(|r| r.action() == Action::Allow) {
            r.verdict.max_rows = r.verdict.max_rows.or(default);
        }
        Policy {
            rules,
            digest,
            no_match: deny("no rule allows this statement for this agent".into()),
            uncovered: Class::ALL
                .iter()
                .map(|c| {
                    deny(format!(
                        "no rule allows statements of class `{c}` for this agent"
                    ))
                })
                .collect(),
            forbidden_rule: Arc::from(FORBIDDEN),
            guard,
            masks,
        }
    }

    /// The `[[mask]]`s, in load order.
    pub fn masks(&self) -> &[Mask] {
        &self.masks
    }

    /// The masks as they apply to `who` (its exemptions left out), for
    /// [`crate::classify::lineage`].
    pub fn masks_for<'a>(&'a self, who: &'a Identity) -> MasksFor<'a> {
        MasksFor {
            masks: &self.masks,
            who,
        }
    }

    /// The row guard, when the rules configure one.
    pub fn guard(&self) -> Option<&Guard> {
        self.guard.as_ref()
    }

    /// When the row guard's approvals ask for fewer approvers than a rule
    /// holding `destructive` statements: the highest such quorum. A DELETE
    /// with a WHERE that matches every row is held by the guard, not that
    /// rule, so the stricter quorum would be one approval away.
    pub fn guard_quorum_below_destructive(&self) -> Option<(u32, u32)> {
        let guard = self.guard.as_ref()?.approval.quorum.max(1);
        let strictest = self
            .rules
            .iter()
            .filter(|r| {
                r.action() == Action::RequireApproval && r.covers().contains(Class::Destructive)
            })
            .filter_map(|r| r.verdict.approval.as_ref().map(|a| a.quorum))
            .max()?;
        (strictest > guard).then_some((guard, strictest))
    }

    /// Decides what to do with `stmt` sent by `who`. See the module docs for
    /// the order of precedence.
    pub fn decide(&self, who: &Identity, stmt: &StatementInfo) -> Verdict {
        if let Some(why) = stmt.forbidden {
            // Rare, and denied anyway: the one allocation on this path.
            return Verdict {
                action: Action::Deny,
                rule: self.forbidden_rule.clone(),
                reason: Arc::from(why),
                approval: None,
                max_rows: None,
                also: Arc::from([]),
            };
        }
        // INVARIANT: the classifier never leaves `classes` empty; if it ever
        // did, treat the statement as one it could not understand.
        let classes = if stmt.classes.is_empty() {
            ClassSet::of(&[Class::Unparsed])
        } else {
            stmt.classes
        };
        let mut winner: Option<&Rule> = None;
        let mut covered = ClassSet::EMPTY;
        // Every matching approval rule after the first (rare: allocates).
        let mut also: Vec<Verdict> = Vec::new();
        for rule in &self.rules {
            if !rule.matches(who, classes, stmt) {
                continue;
            }
            if rule.action() == Action::Deny {
                // Nothing outranks a deny, and ties go to the first.
                return rule.verdict.clone();
            }
            covered = covered.union(rule.covers());
            if winner.is_none_or(|w| rule.action().severity() > w.action().severity()) {
                winner = Some(rule);
            } else if rule.action() == Action::RequireApproval
                && !also.iter().any(|v| v.rule == rule.verdict.rule)
            {
                also.push(rule.verdict.clone());
            }
        }
        let Some(winner) = winner else {
            return self.no_match.clone();
        };
        if let Some(gap) = classes.iter().find(|c| !covered.contains(*c)) {
            return self
                .uncovered
                .get(gap as usize)
                .unwrap_or(&self.no_match)
                .clone();
        }
        if winner.action() == Action::RequireApproval && !also.is_empty() {
            return Verdict {
                also: Arc::from(also),
                ..winner.verdict.clone()
            };
        }
        winner.verdict.clone()
    }

    /// How many rules were loaded.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// SHA-256 (hex) over the loaded files' bytes, concatenated in load
    /// order — the same as `cat FILES | sha256sum` — so an audit record can
    /// name the exact policy that decided.
    pub fn digest(&self) -> String {
        self.digest.clone()
    }
}

/// The guard, after the checks that span files (a rule's own `max_rows`
/// needs a `[guard]` to say who approves), and the masks.
fn finish(loaded: parse::Loaded, problems: &mut Vec<Problem>) -> (Option<Guard>, Vec<Mask>) {
    let guard = match (loaded.guard, loaded.first_max_rows) {
        (None, Some(p)) => {
            problems.push(p);
            None
        }
        (g, _) => g.map(|(g, _)| g),
    };
    (guard, loaded.masks)
}

/// The files to load, in order, with their text; and problems reading them.
fn read_sources(paths: &[PathBuf]) -> (Vec<(PathBuf, String)>, Vec<Problem>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if path.is_dir() {
            match toml_files_in(path) {
                Ok(found) if found.is_empty() => problems.push(Problem::whole_file(
                    path,
                    "directory holds no `*.toml` rule files".into(),
                )),
                Ok(found) => files.extend(found),
                Err(e) => problems.push(Problem::whole_file(
                    path,
                    format!("cannot list directory: {e}"),
                )),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut sources = Vec::with_capacity(files.len());
    for file in files {
        match std::fs::read(&file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => sources.push((file, text)),
                Err(_) => problems.push(Problem::whole_file(&file, "file is not UTF-8".into())),
            },
            Err(e) => problems.push(Problem::whole_file(&file, format!("cannot read: {e}"))),
        }
    }
    (sources, problems)
}

fn toml_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests;
