//! Fixtures shared by the approval tests (API/CLI, channels, page).

/// The agent every approval test connects as.
pub const AGENT: &str = "bot";
pub const AGENT_PW: &str = "bot-secret";

/// Reads, writes, session and transaction statements run; destructive ones
/// are held for one `dba` (literals shown); DDL needs two `dba`s; privilege
/// changes time out after a second.
pub const RULES: &str = r#"
[[rule]]
id = "everyday"
action = "allow"
classes = ["read", "write", "session", "transaction"]

[[rule]]
id = "destructive-held"
action = "require_approval"
classes = ["destructive"]
approvers = ["dba"]
show_literals = true

[[rule]]
id = "ddl-two-approvers"
action = "require_approval"
classes = ["ddl"]
approvers = ["dba"]
quorum = 2

[[rule]]
id = "privilege-quick"
action = "require_approval"
classes = ["privilege"]
approvers = ["dba"]
timeout = "1s"
"#;

/// `bot` is both the agent and an approver (its votes are self-approval);
/// `owner` lists `bot` among its agents; `carol` is in the wrong group.
pub const APPROVERS: &str = r#"
[[approver]]
name = "alice"
token = "tok-alice"
groups = ["dba"]

[[approver]]
name = "bob"
token = "tok-bob"
groups = ["dba"]

[[approver]]
name = "carol"
token = "tok-carol"
groups = ["sales"]

[[approver]]
name = "bot"
token = "tok-bot"
groups = ["dba"]

[[approver]]
name = "owner"
token = "tok-owner"
groups = ["dba"]
agents = ["bot"]
"#;

/// A database of its own with a 3-row `items` table owned by the service
/// role, the rules above in a file, and a config with the agent and the
/// approvers. The returned `TestDir` holds the rules file: keep it alive.
pub fn approval_setup(
    pg: &super::PgServer,
    prefix: &str,
) -> (String, super::TestDir, super::SqlgateConfig) {
    let db = pg.unique_database(prefix);
    pg.psql(
        &db,
        "CREATE TABLE items(id int PRIMARY KEY, name text);
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 3) g;
         ALTER TABLE items OWNER TO svc;",
    );
    let rules = super::TestDir::new("rules");
    std::fs::write(rules.join("rules.toml"), RULES).expect("write rules");
    let mut cfg = super::SqlgateConfig::for_pg(pg, &db)
        .agent(AGENT, AGENT_PW, &["agents"])
        .extra(APPROVERS);
    cfg.rules = vec![rules.join("rules.toml")];
    (db, rules, cfg)
}
