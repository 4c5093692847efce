use super::*;

#[test]
fn upstream_urls() {
    let u = parse_upstream("postgres://svc:p%40ss@127.0.0.1:5433/app").unwrap();
    assert_eq!(
        (
            u.user.as_str(),
            u.password.as_deref(),
            u.host.as_str(),
            u.port
        ),
        ("svc", Some("p@ss"), "127.0.0.1", 5433)
    );
    assert_eq!(u.database, "app");
    assert_eq!(parse_upstream("postgres://svc@db/app").unwrap().port, 5432);
    let m = parse_upstream("mysql://svc@db/app").unwrap();
    assert_eq!((m.protocol, m.port), (Protocol::Mysql, 3306));
    let sock = parse_upstream("mysql://svc@%2Frun%2Fmysqld%2Fmysqld.sock/app").unwrap();
    assert_eq!(
        sock.socket_path().unwrap(),
        Path::new("/run/mysqld/mysqld.sock")
    );
    assert!(parse_upstream("mariadb://svc@db/app").is_err());
    let crossed = MINIMAL.replace("postgres://svc:secret@", "mysql://svc:secret@");
    let e = Config::from_toml(&crossed, Path::new("."))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("needs a `postgres://` upstream"), "{e}");
    assert!(parse_upstream("postgres://db/app").is_err());
    assert!(parse_upstream("postgres://svc@db:x/app").is_err());
    assert!(!format!("{u:?}").contains("p@ss"));
    assert_eq!(u.socket_path(), None);
    let e = parse_upstream("postgres://svc:se%zzcret@db/app").unwrap_err();
    assert!(!e.contains("cret") && e.contains("password"), "{e}");
    let long = format!("postgres://svc@%2F{}/app", "d".repeat(120));
    assert!(parse_upstream(&long).unwrap_err().contains("too long"));
    let u = parse_upstream("postgres://svc@%2Fvar%2Frun%2Fpostgresql:5433/app").unwrap();
    assert_eq!(u.host, "/var/run/postgresql");
    assert_eq!(
        u.socket_path().unwrap(),
        Path::new("/var/run/postgresql/.s.PGSQL.5433")
    );
    let unix = MINIMAL.replace("127.0.0.1:5432", "%2Ftmp");
    assert!(Config::from_toml(&unix, Path::new(".")).is_ok());
    let require = unix.replace("[[agent]]", "upstream_tls = \"require\"\n[[agent]]");
    let e = Config::from_toml(&require, Path::new("."))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("Unix"), "{e}");
}

const MINIMAL: &str = r#"
    [[listener]]
    protocol = "postgres"
    listen = "127.0.0.1:6432"
    upstream = "postgres://svc:secret@127.0.0.1:5432/app"
    [[agent]]
    name = "bot"
    password = "pw"
    [policy]
    rules = ["rules/"]
    [audit]
    path = "audit.jsonl"
"#;

#[test]
fn loads_and_rejects_unknown_keys() {
    let c = Config::from_toml(MINIMAL, Path::new("/etc/sqlgate")).unwrap();
    assert_eq!(c.audit.path, Path::new("/etc/sqlgate/audit.jsonl"));
    assert_eq!(c.audit.key, Path::new("/etc/sqlgate/signing.key"));
    assert_eq!(c.approval_timeout, Duration::from_secs(300));
    assert_eq!(c.max_prelogin_per_address, 16);
    let zero = format!("{MINIMAL}\n[limits]\nmax_prelogin_per_address = 0\n");
    let e = Config::from_toml(&zero, Path::new(".")).err().unwrap();
    assert!(e.to_string().contains("max_prelogin_per_address"), "{e}");
    assert_eq!(c.max_parse_bytes, 65_536);
    for n in [0, MAX_PARSE_BYTES_CAP + 1] {
        let t = format!("{MINIMAL}\n[limits]\nmax_parse_bytes = {n}\n");
        let e = Config::from_toml(&t, Path::new(".")).err().unwrap();
        assert!(e.to_string().contains("max_parse_bytes"), "{e}");
    }
    let big = format!("{MINIMAL}\n[limits]\nmax_parse_bytes = 1048576\n");
    assert_eq!(
        Config::from_toml(&big, Path::new("."))
            .unwrap()
            .max_parse_bytes,
        1 << 20
    );
    let bad = MINIMAL.replace("[policy]", "[policy]\nrulez = 1");
    let e = Config::from_toml(&bad, Path::new("."))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("rulez"), "{e}");
    let two = MINIMAL.replace(
        "password = \"pw\"",
        "password = \"pw\"\npassword_env = \"X\"",
    );
    assert!(Config::from_toml(&two, Path::new(".")).is_err());
}

#[test]
fn names_are_compared_as_people_read_them() {
    let with = |extra: &str| Config::from_toml(&format!("{MINIMAL}\n{extra}"), Path::new("."));
    let err = |extra: &str| with(extra).err().map(|e| e.to_string()).unwrap_or_default();
    let approver = |name: &str, token: &str, agents: &str| {
        format!("[[approver]]\nname = \"{name}\"\ntoken = \"{token}\"\ngroups = [\"dba\"]\nagents = [{agents}]\n")
    };
    // `Bot`, `ｂｏｔ` are the agent `bot`: a clash.
    for twin in ["Bot", "\u{ff42}\u{ff4f}\u{ff54}"] {
        let e = err(&format!("[[agent]]\nname = \"{twin}\"\npassword = \"x\"\n"));
        assert!(e.contains("twice"), "{twin}: {e}");
    }
    // Surrounding space, a Cyrillic look-alike: refused.
    assert!(err(&approver("bot ", "t1", "")).contains("white space"));
    assert!(err(&approver("b\u{43e}t", "t1", "")).contains("look-alike"));
    // `agents` entries must be agents; tokens unique.
    assert!(err(&approver("alice", "t1", "\"nobody\"")).contains("not an [[agent]]"));
    let two = format!(
        "{}{}",
        approver("alice", "t1", ""),
        approver("bob", "t1", "")
    );
    assert!(err(&two).contains("same token"));
    // The operator's `Bot` entry means the agent `bot`.
    let c = with(&approver("Mallory", "t2", "\"Bot\"")).unwrap();
    assert_eq!(
        (
            c.approvers[0].name.as_str(),
            c.approvers[0].agents[0].as_str()
        ),
        ("mallory", "bot")
    );
}
