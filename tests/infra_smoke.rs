//! The test harness itself works: real PostgreSQL servers start, accept the
//! service role over TCP with each password method, and TLS material and
//! sqlgate configs come out well-formed.

mod support;

use support::{gen_tls_cert, PgOptions, PgServer, SqlgateConfig, TestDir};

#[test]
fn shared_server_accepts_service_user_over_tcp_with_scram() {
    let pg = PgServer::shared();
    let db = pg.unique_database("smoke");
    let (user, password) = pg.service_user();

    let out = pg
        .psql_tcp(user, password, &db, "SELECT 1;")
        .expect("psql as svc");
    assert_eq!(out, "1");

    // svc owns the database, so it can create tables in it.
    pg.psql_tcp(
        user,
        password,
        &db,
        "CREATE TABLE t (id int); INSERT INTO t VALUES (7);",
    )
    .expect("svc creates a table");
    assert_eq!(pg.psql(&db, "SELECT id FROM t;"), "7");
    assert_eq!(
        pg.psql(&db, "SELECT rolsuper FROM pg_roles WHERE rolname = 'svc';"),
        "f"
    );

    let err = pg.psql_tcp(user, "wrong", &db, "SELECT 1;").unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
}

#[test]
fn md5_server_stores_and_checks_md5_passwords() {
    let pg = PgServer::start(PgOptions {
        host_auth: "md5",
        settings: vec![("idle_in_transaction_session_timeout".into(), "'5s'".into())],
    });
    pg.create_database("app");
    let (user, password) = pg.service_user();

    assert_eq!(
        pg.psql_tcp(user, password, "app", "SELECT 1;").unwrap(),
        "1"
    );
    let stored = pg.psql(
        "postgres",
        "SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'svc';",
    );
    assert_eq!(stored, "md5");
    assert_eq!(
        pg.psql("app", "SHOW idle_in_transaction_session_timeout;"),
        "5s"
    );

    let data_dir = pg.data_dir.clone();
    drop(pg);
    assert!(!data_dir.exists(), "dropped server removes its directory");
}

#[test]
fn tls_cert_and_sqlgate_config_are_well_formed() {
    let dir = TestDir::new("smoke");
    let (cert, key) = gen_tls_cert(dir.path());
    let text = std::fs::read_to_string(&cert).unwrap();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(key.exists());

    let config = SqlgateConfig::new("postgres://svc:pw@127.0.0.1:5432/app")
        .agent("report-bot", "p\"w", &["agents"])
        .extra("[approvals]\ntimeout = \"5m\"");
    let toml = config.render();
    assert!(toml.contains(&format!("listen = \"127.0.0.1:{}\"", config.listen_port)));
    assert!(toml.contains("password = \"p\\\"w\""));
    assert!(toml.contains("groups = [\"agents\"]"));
    assert!(toml.ends_with("[approvals]\ntimeout = \"5m\"\n"));
}
