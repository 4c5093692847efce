//! Unit tests of deciding: precedence, filters, fail-closed defaults. The
//! shipped rules and the validation messages are covered in
//! `tests/policy_rules.rs`.

use super::*;

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

fn bot() -> Identity {
    Identity::new("bot", &["agents"])
}

fn policy(text: &str) -> Policy {
    Policy::from_str("t.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn deny_outranks_approval_outranks_allow() {
    let p = policy(
        r#"
        [[rule]]
        id = "allow-all"
        action = "allow"
        [[rule]]
        id = "hold-writes"
        action = "require_approval"
        classes = ["write"]
        approvers = ["dba"]
        [[rule]]
        id = "deny-secrets"
        action = "deny"
        tables = ["*.secrets"]
        "#,
    );
    let v = p.decide(&bot(), &stmt(&[Class::Read], &["public.t"]));
    assert_eq!((v.action, &*v.rule), (Action::Allow, "allow-all"));
    let v = p.decide(&bot(), &stmt(&[Class::Write], &["public.t"]));
    assert_eq!(
        (v.action, &*v.rule),
        (Action::RequireApproval, "hold-writes")
    );
    assert_eq!(v.approval.as_ref().map(|a| a.quorum), Some(1));
    let v = p.decide(&bot(), &stmt(&[Class::Write], &["hr.secrets"]));
    assert_eq!((v.action, &*v.rule), (Action::Deny, "deny-secrets"));
}

#[test]
fn ties_go_to_the_first_rule() {
    let p = policy(
        r#"
        [[rule]]
        id = "first"
        action = "allow"
        [[rule]]
        id = "second"
        action = "allow"
        "#,
    );
    assert_eq!(&*p.decide(&bot(), &stmt(&[Class::Read], &[])).rule, "first");
}

#[test]
fn nothing_matching_is_denied() {
    let p = policy("[[rule]]\nid = \"r\"\naction = \"allow\"\nclasses = [\"read\"]\n");
    let v = p.decide(&bot(), &stmt(&[Class::Write], &[]));
    assert_eq!((v.action, &*v.rule), (Action::Deny, DEFAULT_DENY));
    let empty = policy("");
    assert_eq!(empty.rule_count(), 0);
    assert_eq!(
        &*empty.decide(&bot(), &stmt(&[Class::Read], &[])).rule,
        DEFAULT_DENY
    );
}

#[test]
fn a_class_no_rule_covers_is_denied() {
    let p = policy("[[rule]]\nid = \"r\"\naction = \"allow\"\nclasses = [\"read\"]\n");
    let v = p.decide(&bot(), &stmt(&[Class::Read, Class::Export], &[]));
    assert_eq!((v.action, &*v.rule), (Action::Deny, DEFAULT_DENY));
    assert!(v.reason.contains("`export`"), "{}", v.reason);
}

#[test]
fn forbidden_beats_every_rule() {
    let p = policy("[[rule]]\nid = \"r\"\naction = \"allow\"\n");
    let mut s = stmt(&[Class::Session], &[]);
    s.forbidden = Some("switching the client encoding away from UTF-8");
    let v = p.decide(&bot(), &s);
    assert_eq!((v.action, &*v.rule), (Action::Deny, FORBIDDEN));
    assert_eq!(&*v.reason, "switching the client encoding away from UTF-8");
}

#[test]
fn empty_classes_count_as_unparsed() {
    let p = policy("[[rule]]\nid = \"r\"\naction = \"allow\"\nclasses = [\"unparsed\"]\n");
    assert!(p.decide(&bot(), &stmt(&[], &[])).is_allowed());
}

#[test]
fn allow_needs_every_table_deny_needs_any() {
    let p = policy(
        r#"
        [[rule]]
        id = "reports"
        action = "allow"
        tables = ["reports.*"]
        [[rule]]
        id = "no-secrets"
        action = "deny"
        tables = ["*.secrets"]
        "#,
    );
    let decide = |tables: &[&str]| p.decide(&bot(), &stmt(&[Class::Read], tables)).rule;
    assert_eq!(&*decide(&["reports.daily"]), "reports");
    assert_eq!(&*decide(&["public.orders", "reports.daily"]), DEFAULT_DENY);
    assert_eq!(&*decide(&[]), DEFAULT_DENY);
    assert_eq!(&*decide(&["reports.daily", "hr.secrets"]), "no-secrets");
}

#[test]
fn restrictive_globs_match_generously_allow_globs_strictly() {
    let p = policy(
        r#"
        [[rule]]
        id = "reports"
        action = "allow"
        tables = ["reports.*", "public.orders"]
        [[rule]]
        id = "no-secrets"
        action = "deny"
        tables = ["hr.secrets", "payroll"]
        "#,
    );
    let decide = |table: &str| p.decide(&bot(), &stmt(&[Class::Read], &[table])).rule;
    // Unqualified or differently-cased names may be the protected table.
    assert_eq!(&*decide("secrets"), "no-secrets");
    assert_eq!(&*decide("HR.Secrets"), "no-secrets");
    assert_eq!(&*decide("finance.payroll"), "no-secrets");
    assert_eq!(&*decide("public.secrets"), DEFAULT_DENY);
    // Allow globs vouch only for names as written.
    assert_eq!(&*decide("public.orders"), "reports");
    assert_eq!(&*decide("orders"), DEFAULT_DENY);
    assert_eq!(&*decide("Reports.daily"), DEFAULT_DENY);
}

#[test]
fn principal_filters_and_exclusions() {
    let p = policy(
        r#"
        [[rule]]
        id = "agents-read"
        action = "allow"
        classes = ["read"]
        groups = ["agents", "analysts"]
        except_agents = ["intern"]
        except_groups = ["suspended"]
        [[rule]]
        id = "migrator-ddl"
        action = "allow"
        classes = ["ddl"]
        agents = ["migrator"]
        groups = ["deploy"]
        "#,
    );
    let read = stmt(&[Class::Read], &[]);
    let ddl = stmt(&[Class::Ddl], &[]);
    let allowed = |who: Identity, s: &StatementInfo| p.decide(&who, s).is_allowed();
    assert!(allowed(Identity::new("a", &["analysts"]), &read));
    assert!(!allowed(Identity::new("a", &[]), &read));
    assert!(!allowed(Identity::new("intern", &["agents"]), &read));
    assert!(!allowed(
        Identity::new("a", &["agents", "suspended"]),
        &read
    ));
    assert!(allowed(Identity::new("migrator", &["deploy"]), &ddl));
    // Both `agents` and `groups` must admit the identity.
    assert!(!allowed(Identity::new("migrator", &[]), &ddl));
    assert!(!allowed(Identity::new("other", &["deploy"]), &ddl));
}

#[test]
fn reasons_default_to_description_then_to_the_rule() {
    let p = policy(
        r#"
        [[rule]]
        id = "a"
        action = "deny"
        classes = ["ddl"]
        description = "no schema changes"
        [[rule]]
        id = "b"
        action = "deny"
        classes = ["write"]
        [[rule]]
        id = "c"
        action = "deny"
        classes = ["read"]
        reason = "ask the data team"
        description = "ignored"
        "#,
    );
    let reason = |c: Class| p.decide(&bot(), &stmt(&[c], &[])).reason;
    assert_eq!(&*reason(Class::Ddl), "no schema changes");
    assert_eq!(&*reason(Class::Write), "denied by rule `b`");
    assert_eq!(&*reason(Class::Read), "ask the data team");
}

#[test]
fn approval_spec_is_filled_in() {
    let p = policy(
        r#"
        [[rule]]
        id = "hold"
        action = "require_approval"
        approvers = ["dba", "security"]
        quorum = 2
        timeout = "10m"
        show_literals = true
        "#,
    );
    let v = p.decide(&bot(), &stmt(&[Class::Ddl], &[]));
    let spec = v.approval.expect("approval spec");
    assert_eq!(spec.approver_groups, ["dba", "security"]);
    assert_eq!(spec.quorum, 2);
    assert_eq!(spec.timeout, Some(std::time::Duration::from_secs(600)));
    assert!(spec.show_literals);
}

#[test]
fn digest_is_sha256_of_the_text() {
    let p = policy("");
    assert_eq!(
        p.digest(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn policy_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<Verdict>();
}

#[test]
fn row_guard_default_and_per_rule_limits() {
    let p = policy(
        r#"
        [guard]
        max_rows = 1000
        approvers = ["dba"]
        quorum = 2
        [[rule]]
        id = "writes"
        action = "allow"
        classes = ["write"]
        [[rule]]
        id = "small-writes-on-t"
        action = "allow"
        classes = ["read"]
        max_rows = 50
        [[rule]]
        id = "held"
        action = "require_approval"
        classes = ["ddl"]
        approvers = ["dba"]
        "#,
    );
    let g = p.guard().expect("guard");
    assert_eq!((g.max_rows, g.approval.quorum), (Some(1000), 2));
    assert_eq!(g.approval.approver_groups, ["dba"]);
    assert_eq!(
        p.decide(&bot(), &stmt(&[Class::Write], &[])).max_rows,
        Some(1000)
    );
    assert_eq!(
        p.decide(&bot(), &stmt(&[Class::Read], &[])).max_rows,
        Some(50)
    );
    assert_eq!(p.decide(&bot(), &stmt(&[Class::Ddl], &[])).max_rows, None);
    // Without a [guard], nothing is counted.
    let p = policy("[[rule]]\nid = \"w\"\naction = \"allow\"\n");
    assert!(p.guard().is_none());
    assert_eq!(p.decide(&bot(), &stmt(&[Class::Write], &[])).max_rows, None);
}

#[test]
fn row_guard_problems_are_reported() {
    let problems = |text: &str| match Policy::from_str("t.toml", text) {
        Ok(_) => String::new(),
        Err(PolicyError::Invalid(p)) => p.iter().map(|p| p.to_string() + "\n").collect(),
    };
    let e = problems("[[rule]]\nid = \"w\"\naction = \"allow\"\nmax_rows = 5\n");
    assert!(e.contains("no `[guard]`"), "{e}");
    let e = problems("[guard]\nmax_rows = 5\n");
    assert!(e.contains("names no `approvers`"), "{e}");
    let e = problems("[guard]\napprovers = [\"dba\"]\nmax_row = 5\n");
    assert!(e.contains("unknown key `max_row` in `[guard]`"), "{e}");
    let e = problems("[guard]\napprovers = [\"dba\"]\nmax_rows = -1\n");
    assert!(e.contains("0 or more"), "{e}");
    let e = problems(
        "[guard]\napprovers = [\"dba\"]\n[[rule]]\nid = \"d\"\naction = \"deny\"\nmax_rows = 5\n",
    );
    assert!(e.contains("only to `allow` rules"), "{e}");
}

#[test]
fn a_guard_quorum_below_the_destructive_rules_is_reported() {
    let text = |guard: u32| {
        format!(
            "[guard]\nmax_rows = 10\napprovers = [\"dba\"]\nquorum = {guard}\n\n[[rule]]\nid = \"d\"\naction = \"require_approval\"\nclasses = [\"destructive\"]\napprovers = [\"dba\"]\nquorum = 2\n"
        )
    };
    let p = Policy::from_str("t.toml", &text(1)).unwrap();
    assert_eq!(p.guard_quorum_below_destructive(), Some((1, 2)));
    let p = Policy::from_str("t.toml", &text(2)).unwrap();
    assert_eq!(p.guard_quorum_below_destructive(), None);
}

#[test]
fn masks_apply_by_table_and_column_except_to_the_exempt() {
    use crate::classify::lineage::Masks;
    let p = Policy::from_str(
        "m.toml",
        "[[rule]]\nid = \"r\"\naction = \"allow\"\n\n\
         [[mask]]\nid = \"pii\"\ncolumns = [\"hr.users.ssn\", \"users.E*\"]\nmethod = \"hash\"\nkey = \"k.key\"\nexcept_groups = [\"billing\"]\n",
    )
    .unwrap();
    assert_eq!(p.masks().len(), 1);
    assert_eq!(
        p.masks()[0].method,
        MaskMethod::Hash {
            key: std::path::PathBuf::from("k.key")
        }
    );
    let bot = Identity {
        agent: "bot".into(),
        groups: vec![],
    };
    let billing = Identity {
        agent: "payer".into(),
        groups: vec!["billing".into()],
    };
    let m = p.masks_for(&bot);
    // Restrictive table matching: qualified and unqualified catch each other.
    for t in ["users", "public.users", "hr.users", "HR.Users"] {
        assert!(m.table(t), "{t}");
    }
    assert!(!m.table("orders"));
    assert_eq!(m.column("users", "ssn"), Some(0));
    assert_eq!(m.column("app.users", "email"), Some(0));
    assert_eq!(m.column("users", "name"), None);
    let exempt = p.masks_for(&billing);
    assert!(!exempt.table("users"));
    assert_eq!(exempt.column("users", "ssn"), None);
}

#[test]
fn mask_ids_share_the_rules_namespace() {
    let e = Policy::from_str(
        "m.toml",
        "[[rule]]\nid = \"x\"\naction = \"allow\"\n\n[[mask]]\nid = \"x\"\ncolumns = [\"t.c\"]\nmethod = \"null\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("duplicate rule id `x`"), "{e}");
}
