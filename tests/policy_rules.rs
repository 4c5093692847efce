//! The shipped rules and rule-file validation, through the public API:
//! `rules/default.toml` decides each class as documented, and every kind of
//! mistake in a rule file is reported at the right `file:line:col`.

use sqlgate::classify::{Class, ClassSet, StatementInfo};
use sqlgate::policy::{Action, Identity, Policy, Problem};
use std::path::PathBuf;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules")
}

fn shipped() -> Policy {
    Policy::load(&[rules_dir().join("default.toml")]).unwrap_or_else(|e| panic!("{e}"))
}

fn stmt(classes: &[Class], tables: &[&str]) -> StatementInfo {
    StatementInfo {
        classes: ClassSet::of(classes),
        tables: tables.iter().map(|t| t.to_string()).collect(),
        fingerprint: "SELECT ?".into(),
        command: "SELECT".into(),
        forbidden: None,
        note: None,
        code: false,
        changes_rows: false,
        moves_names: false,
        keeps_cursor: false,
        pending: None,
    }
}

fn agent() -> Identity {
    Identity::new("report-bot", &["agents"])
}

/// The problems `text` has, as `line:col: message` strings.
fn problems(text: &str) -> Vec<String> {
    match Policy::from_str("bad.toml", text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(e) => e
            .problems()
            .iter()
            .map(|p| {
                assert_eq!(
                    p.to_string(),
                    format!("bad.toml:{}:{}: {}", p.line, p.column, p.message)
                );
                format!("{}:{}: {}", p.line, p.column, p.message)
            })
            .collect(),
    }
}

/// Asserts exactly one problem, at `line:col`, whose message contains `needle`.
fn one_problem(text: &str, at: &str, needle: &str) {
    let found = problems(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(&format!("{at}: ")) && found[0].contains(needle),
        "expected `{at}: …{needle}…`, got {found:#?}"
    );
}

// --- the shipped policy -----------------------------------------------------

#[test]
fn shipped_rules_check_clean() {
    let problems: Vec<Problem> = Policy::check(&[rules_dir()]);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(shipped().rule_count() >= 10);
}

#[test]
fn shipped_rules_decide_each_class_as_documented() {
    let p = shipped();
    let expect = [
        (Class::Read, Action::Allow, "read-allowed"),
        (Class::Write, Action::Allow, "write-allowed"),
        (Class::Session, Action::Allow, "session-allowed"),
        (Class::Transaction, Action::Allow, "transaction-allowed"),
        (Class::Ddl, Action::RequireApproval, "ddl-needs-approval"),
        (
            Class::Privilege,
            Action::RequireApproval,
            "privilege-needs-approval",
        ),
        (
            Class::Export,
            Action::RequireApproval,
            "export-needs-approval",
        ),
        (
            Class::Destructive,
            Action::RequireApproval,
            "destructive-needs-approval",
        ),
        (
            Class::Unparsed,
            Action::RequireApproval,
            "unparsed-needs-approval",
        ),
        (Class::ServerAccess, Action::Deny, "server-access-denied"),
    ];
    assert_eq!(expect.len(), Class::ALL.len());
    for (class, action, rule) in expect {
        let v = p.decide(&agent(), &stmt(&[class], &["public.t"]));
        assert_eq!((v.action, &*v.rule), (action, rule), "class `{class}`");
        assert!(!v.reason.is_empty());
        match action {
            Action::RequireApproval => {
                let spec = v.approval.expect("approval spec");
                assert_eq!(spec.approver_groups, ["dba"]);
                assert_eq!(spec.quorum, 1);
                assert!(!spec.show_literals);
            }
            _ => assert!(v.approval.is_none()),
        }
    }
}

#[test]
fn shipped_rules_let_the_most_restrictive_class_win() {
    let p = shipped();
    let decide = |classes: &[Class]| p.decide(&agent(), &stmt(classes, &[]));
    let v = decide(&[Class::Write, Class::Destructive]);
    assert_eq!(
        (v.action, &*v.rule),
        (Action::RequireApproval, "destructive-needs-approval")
    );
    let v = decide(&[Class::Read, Class::Export, Class::ServerAccess]);
    assert_eq!((v.action, &*v.rule), (Action::Deny, "server-access-denied"));
    // Two holds: the first in file order decides.
    let v = decide(&[Class::Export, Class::Ddl]);
    assert_eq!(&*v.rule, "ddl-needs-approval");
}

#[test]
fn shipped_rules_deny_forbidden_statements() {
    let mut s = stmt(&[Class::Session], &[]);
    s.forbidden = Some("turning standard_conforming_strings off");
    let v = shipped().decide(&agent(), &s);
    assert_eq!((v.action, &*v.rule), (Action::Deny, "builtin:forbidden"));
    assert_eq!(&*v.reason, "turning standard_conforming_strings off");
}

#[test]
fn the_documented_migrator_example_works() {
    let text = std::fs::read_to_string(rules_dir().join("default.toml")).unwrap();
    let text = text
        .replace(
            "# except_agents = [\"migrator\"]",
            "except_agents = [\"migrator\"]",
        )
        .replace(
            "# [[rule]]\n# id = \"migrator-runs-ddl\"",
            "[[rule]]\nid = \"migrator-runs-ddl\"",
        )
        .replace(
            "# description = \"The migration agent",
            "description = \"The migration agent",
        )
        .replace(
            "# action = \"allow\"\n# classes = [\"ddl\"]\n# agents",
            "action = \"allow\"\nclasses = [\"ddl\"]\nagents",
        );
    let p = Policy::from_str("default.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let ddl = stmt(&[Class::Ddl], &[]);
    let v = p.decide(&Identity::new("migrator", &["agents"]), &ddl);
    assert_eq!((v.action, &*v.rule), (Action::Allow, "migrator-runs-ddl"));
    let v = p.decide(&agent(), &ddl);
    assert_eq!(
        (v.action, &*v.rule),
        (Action::RequireApproval, "ddl-needs-approval")
    );
}

#[test]
fn digest_covers_the_loaded_bytes_in_order() {
    let bytes = std::fs::read(rules_dir().join("default.toml")).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let from_text = Policy::from_str("default.toml", &text).unwrap();
    assert_eq!(shipped().digest(), from_text.digest());
    assert_eq!(shipped().digest().len(), 64);
    assert_ne!(
        Policy::from_str("x", "").unwrap().digest(),
        shipped().digest()
    );
}

// --- loading files and directories ------------------------------------------

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sqlgate-policy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_directory_loads_its_toml_files_sorted_and_ids_are_global() {
    let dir = temp_dir("dir");
    std::fs::write(
        dir.join("20-b.toml"),
        "[[rule]]\nid = \"b\"\naction = \"allow\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("10-a.toml"),
        "[[rule]]\nid = \"a\"\naction = \"allow\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a rule file").unwrap();
    let p = Policy::load(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(p.rule_count(), 2);
    // Ties go to the first file by name.
    assert_eq!(&*p.decide(&agent(), &stmt(&[Class::Read], &[])).rule, "a");

    std::fs::write(
        dir.join("30-c.toml"),
        "\n[[rule]]\nid = \"a\"\naction = \"deny\"\n",
    )
    .unwrap();
    let found = Policy::check(std::slice::from_ref(&dir));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].file, dir.join("30-c.toml"));
    assert_eq!((found[0].line, found[0].column), (3, 6));
    let first = format!("first defined at {}:2:6", dir.join("10-a.toml").display());
    assert!(found[0].message.contains(&first), "{}", found[0].message);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_files_and_empty_directories_are_problems() {
    let dir = temp_dir("empty");
    let missing = dir.join("nope.toml");
    let found = Policy::check(&[dir.clone(), missing.clone()]);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].message.contains("no `*.toml`"));
    assert_eq!(found[1].file, missing);
    assert!(found[1]
        .to_string()
        .starts_with(&format!("{}: cannot read", missing.display())));
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- validation: one mistake each --------------------------------------------

#[test]
fn bad_toml_syntax() {
    let found = problems("[[rule]]\nid = \"a\"\naction = allow\n");
    assert!(found[0].starts_with("3:10: "), "{found:#?}");
}

#[test]
fn unknown_key_in_rule() {
    one_problem(
        "[[rule]]\nid = \"a\"\naction = \"deny\"\ntabels = [\"x\"]\n",
        "4:1",
        "unknown key `tabels` in rule",
    );
}

#[test]
fn unknown_top_level_key() {
    one_problem("version = 2\n", "1:1", "unknown key `version`");
}

#[test]
fn rule_that_is_not_a_table() {
    one_problem(
        "rule = \"deny\"\n",
        "1:8",
        "`rule` must be an array of tables",
    );
}

#[test]
fn missing_id_and_action() {
    let found = problems("\n[[rule]]\ndescription = \"x\"\n");
    assert_eq!(
        found,
        ["2:1: rule has no `id`", "2:1: this rule has no `action`"]
    );
}

#[test]
fn bad_id() {
    one_problem(
        "[[rule]]\nid = \"No Spaces\"\naction = \"deny\"\n",
        "2:6",
        "rule id `No Spaces`",
    );
}

#[test]
fn duplicate_id() {
    one_problem(
        "[[rule]]\nid = \"a\"\naction = \"deny\"\n[[rule]]\nid = \"a\"\naction = \"allow\"\n",
        "5:6",
        "duplicate rule id `a`; first defined at bad.toml:2:6",
    );
}

#[test]
fn unknown_action() {
    one_problem(
        "[[rule]]\nid = \"a\"\naction = \"block\"\n",
        "3:10",
        "unknown action `block`",
    );
}

#[test]
fn unknown_class() {
    one_problem(
        "[[rule]]\nid = \"a\"\naction = \"deny\"\nclasses = [\"read\", \"writes\"]\n",
        "4:20",
        "unknown class `writes`; expected one of read, write,",
    );
}

#[test]
fn bad_glob() {
    one_problem(
        "[[rule]]\nid = \"a\"\naction = \"deny\"\ntables = [\"public.[oops\"]\n",
        "4:11",
        "bad table glob `public.[oops`",
    );
}

#[test]
fn wrong_types() {
    one_problem(
        "[[rule]]\nid = \"a\"\naction = \"deny\"\nclasses = \"read\"\n",
        "4:11",
        "`classes` must be an array of strings, not string",
    );
    one_problem(
        "[[rule]]\nid = 7\naction = \"deny\"\n",
        "2:6",
        "`id` must be a string, not integer",
    );
    one_problem(
        "[[rule]]\nid = \"a\"\naction = \"deny\"\nagents = [\"x\", 1]\n",
        "4:16",
        "each entry of `agents` must be a string",
    );
}

#[test]
fn empty_filters_are_rejected() {
    one_problem(
        "[[rule]]\nid = \"a\"\naction = \"allow\"\ngroups = []\n",
        "4:10",
        "`groups` is empty",
    );
}

#[test]
fn approval_keys_on_a_non_approval_rule() {
    let found = problems("[[rule]]\nid = \"a\"\naction = \"deny\"\nquorum = 2\ntimeout = \"1m\"\n");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("4:1: `quorum` applies only to `require_approval` rules"));
    assert!(found[1].starts_with("5:1: `timeout` applies only"));
}

#[test]
fn approval_without_approvers() {
    one_problem(
        "[[rule]]\nid = \"a\"\naction = \"require_approval\"\n",
        "1:1",
        "rule `a` requires approval but names no `approvers`",
    );
}

#[test]
fn quorum_zero_and_negative() {
    let base = "[[rule]]\nid = \"a\"\naction = \"require_approval\"\napprovers = [\"dba\"]\n";
    one_problem(
        &format!("{base}quorum = 0\n"),
        "5:10",
        "`quorum` must be at least 1, not `0`",
    );
    one_problem(
        &format!("{base}quorum = -3\n"),
        "5:10",
        "`quorum` must be at least 1",
    );
    one_problem(
        &format!("{base}quorum = \"2\"\n"),
        "5:10",
        "`quorum` must be an integer",
    );
}

#[test]
fn bad_durations() {
    let base = "[[rule]]\nid = \"a\"\naction = \"require_approval\"\napprovers = [\"dba\"]\n";
    one_problem(
        &format!("{base}timeout = \"ten minutes\"\n"),
        "5:11",
        "bad `timeout` `ten minutes`",
    );
    one_problem(
        &format!("{base}timeout = \"0s\"\n"),
        "5:11",
        "`timeout` must be longer than zero",
    );
    one_problem(
        &format!("{base}show_literals = \"yes\"\n"),
        "5:17",
        "`show_literals` must be true or false",
    );
}

#[test]
fn several_problems_in_one_file_are_reported_together() {
    let text = r#"# a policy with many mistakes
[[rule]]
id = "ok"
action = "allow"
classes = ["read"]

[[rule]]
id = "ok"
action = "deny"
classes = ["reed"]

[[rule]]
id = "hold"
action = "require_approval"
approvers = ["dba"]
quorum = 0
timeout = "soon"

[[rule]]
id = "wrong"
action = "allow"
show_literals = true
colour = "red"
"#;
    let found = problems(text);
    let at: Vec<&str> = found
        .iter()
        .map(|p| p.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        at,
        ["8:6", "10:12", "16:10", "17:11", "22:1", "23:1"],
        "{found:#?}"
    );
    assert!(found[5].contains("unknown key `colour`"));
    // A valid rule in a file with problems still doesn't make a policy.
    assert!(Policy::from_str("bad.toml", text).is_err());
}

#[test]
fn the_error_lists_every_problem() {
    let err =
        Policy::from_str("bad.toml", "[[rule]]\nid = \"A\"\naction = \"nope\"\n").unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("2 problems in the rules:"), "{shown}");
    assert!(shown.contains("\n  bad.toml:2:6: rule id `A`"), "{shown}");
    assert!(
        shown.contains("\n  bad.toml:3:10: unknown action `nope`"),
        "{shown}"
    );
}

#[test]
fn allow_globs_do_not_stretch_across_dots() {
    let p = sqlgate::policy::Policy::from_str(
        "t.toml",
        "[[rule]]\nid = \"reports\"\naction = \"allow\"\nclasses = [\"read\"]\ntables = [\"reports.*\"]\n",
    )
    .unwrap();
    let who = sqlgate::policy::Identity::new("bot", &[]);
    let stmt = |t: &str| sqlgate::classify::StatementInfo {
        classes: sqlgate::classify::ClassSet::of(&[sqlgate::classify::Class::Read]),
        tables: vec![t.to_owned()],
        fingerprint: String::new(),
        command: "SELECT".into(),
        forbidden: None,
        note: None,
        code: false,
        changes_rows: false,
        moves_names: false,
        keeps_cursor: false,
        pending: None,
    };
    assert_eq!(
        p.decide(&who, &stmt("reports.daily")).action,
        sqlgate::policy::Action::Allow
    );
    for t in ["reports.x.secrets", "daily", "other.daily"] {
        assert_eq!(
            p.decide(&who, &stmt(t)).action,
            sqlgate::policy::Action::Deny,
            "{t}"
        );
    }
}

#[test]
fn the_documented_quorum_2_advice_protects_drop_table() {
    // rules/default.toml: "quorum = 2" on destructive-needs-approval. DROP
    // TABLE, TRUNCATE and ALTER … DROP COLUMN are `ddl` too, and the ddl
    // rule comes first: its quorum 1 must not be the only one asked.
    let text = std::fs::read_to_string(rules_dir().join("default.toml")).unwrap();
    let at = text.find("id = \"destructive-needs-approval\"").unwrap();
    let q = at + text[at..].find("quorum = 1").unwrap();
    let text = format!(
        "{}quorum = 2{}",
        &text[..q],
        &text[q + "quorum = 1".len()..]
    );
    let p = Policy::from_str("default.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let drop = stmt(&[Class::Ddl, Class::Destructive], &["customers"]);
    let v = p.decide(&agent(), &drop);
    assert_eq!(v.action, Action::RequireApproval);
    let quorums: Vec<(String, u32)> = std::iter::once(&v)
        .chain(v.also.iter())
        .map(|v| (v.rule.to_string(), v.approval.as_ref().unwrap().quorum))
        .collect();
    assert!(
        quorums.contains(&("destructive-needs-approval".into(), 2)),
        "{quorums:?}"
    );
    assert!(
        quorums.iter().any(|(r, _)| r == "ddl-needs-approval"),
        "{quorums:?}"
    );
    // One class, one rule: nothing more is asked.
    assert!(p
        .decide(&agent(), &stmt(&[Class::Ddl], &[]))
        .also
        .is_empty());
}

#[test]
fn rules_naming_tables_hold_what_sqlgate_could_not_read() {
    // An `unparsed` statement (a body, a procedure, a text sqlgate did not
    // see into) may touch any table: deny and approval rules that name
    // tables match it; an allow that names tables never vouches for it.
    let p = Policy::from_str(
        "t.toml",
        "[[rule]]\nid = \"secrets\"\naction = \"deny\"\ntables = [\"*.secrets\"]\n\
         [[rule]]\nid = \"hr\"\naction = \"require_approval\"\ntables = [\"hr.*\"]\napprovers = [\"dba\"]\nquorum = 2\n\
         [[rule]]\nid = \"unread\"\naction = \"require_approval\"\nclasses = [\"unparsed\"]\napprovers = [\"dba\"]\n\
         [[rule]]\nid = \"reports\"\naction = \"allow\"\nclasses = [\"read\", \"unparsed\"]\ntables = [\"public.reports\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let unread = stmt(&[Class::Unparsed, Class::Read], &["public.reports"]);
    let v = p.decide(&agent(), &unread);
    assert_eq!((v.action, &*v.rule), (Action::Deny, "secrets"));
    // What was read is judged by the tables it names.
    let read = stmt(&[Class::Read], &["public.reports"]);
    assert_eq!(p.decide(&agent(), &read).action, Action::Allow);
    let hr = stmt(&[Class::Read], &["hr.salaries"]);
    let v = p.decide(&agent(), &hr);
    assert_eq!((v.action, &*v.rule), (Action::RequireApproval, "hr"));
}
