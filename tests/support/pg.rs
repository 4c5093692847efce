//! A real, throwaway PostgreSQL server for integration tests.
//!
//! `initdb` into a fresh directory, tuned for speed over durability, listening
//! on 127.0.0.1:<free port> and on a unix socket in its own directory.
//! Local (socket) connections are `trust` and used by the harness as the
//! superuser `postgres`; TCP connections use [`PgOptions::host_auth`] and are
//! what sqlgate and the clients under test use, as the non-superuser
//! service role `svc`.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI), the
//! server runs as `$SQLGATE_TEST_PG_USER` (default: Debian's `postgres`
//! user) through `runuser`, and its directory is handed to that user.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::process::{
    chown_tree, command_as, free_port, is_root, signal, spawn_watchdog, tail, user_ids,
    wait_pid_gone, TestDir,
};

/// Superuser created by initdb; reachable only over the unix socket.
pub const SUPERUSER: &str = "postgres";
/// The login role sqlgate uses upstream: not a superuser, owns test databases.
pub const SERVICE_USER: &str = "svc";
pub const SERVICE_PASSWORD: &str = "svc-secret";

/// How to build a server.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// pg_hba method for TCP connections: "scram-sha-256" (default), "md5",
    /// "password" or "trust". With "md5" the passwords are also *stored* as
    /// md5 (`password_encryption = md5`), otherwise PostgreSQL would answer
    /// md5 clients with SCRAM.
    pub host_auth: &'static str,
    /// Extra `postgresql.conf` settings, e.g.
    /// `("idle_in_transaction_session_timeout".into(), "'2s'".into())`.
    /// Values are written verbatim, so quote strings.
    pub settings: Vec<(String, String)>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            host_auth: "scram-sha-256",
            settings: Vec::new(),
        }
    }
}

/// A running PostgreSQL. Stopped (immediately) and deleted on drop.
pub struct PgServer {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Directory of the unix socket (the `-h` for psql).
    pub socket_dir: PathBuf,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub options: PgOptions,
    postmaster_pid: u32,
    watchdog: Option<Child>,
    dir: TestDir,
}

/// Finds a PostgreSQL binary: `$SQLGATE_PG_BINDIR`, then the highest
/// `/usr/lib/postgresql/<version>/bin`, then `PATH`.
pub fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("SQLGATE_PG_BINDIR") {
        dirs.push(dir.into());
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    dirs.extend(versioned.into_iter().map(|(_, p)| p));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("PostgreSQL binary `{name}` not found; run scripts/install-deps.sh")
        })
}

/// Watchdog cleanup (`$1` = server dir): immediate shutdown, then SIGKILL.
/// Reads the pid at cleanup time, since the watchdog starts before the server.
const STOP_POSTMASTER_SH: &str = r#"
if [ -f "$1/data/postmaster.pid" ]; then
  pid=$(head -n1 "$1/data/postmaster.pid")
  kill -QUIT "$pid" 2>/dev/null
  i=0; while alive "$pid" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null
fi"#;

/// The user the server runs as: None means "as ourselves" (not root).
fn server_user() -> Option<String> {
    if !is_root() {
        return None;
    }
    Some(std::env::var("SQLGATE_TEST_PG_USER").unwrap_or_else(|_| "postgres".to_string()))
}

impl PgServer {
    /// One server per test binary, started on first use with default
    /// options. Create a database per test; never change global state here.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| PgServer::start(PgOptions::default()))
    }

    /// Starts a private server; panics with the server log on failure.
    pub fn start(options: PgOptions) -> PgServer {
        let user = server_user();
        let ids = user.as_deref().map(|u| {
            user_ids(u).unwrap_or_else(|| {
                panic!("running as root, so PostgreSQL must run as user `{u}`, which does not exist; run scripts/install-deps.sh or set SQLGATE_TEST_PG_USER")
            })
        });
        let dir = TestDir::new("pg");
        // Armed before initdb so that a test killed at any point cleans up.
        let watchdog = spawn_watchdog(dir.path(), STOP_POSTMASTER_SH);
        let data_dir = dir.join("data");
        let socket_dir = dir.join("sock");
        let log_path = dir.join("postgres.log");
        fs::create_dir(&socket_dir).expect("create socket dir");
        if let Some((uid, gid)) = ids {
            chown_tree(dir.path(), uid, gid);
        }

        initdb(user.as_deref(), &data_dir, &dir.join("initdb.log"));
        write_config(&data_dir, &socket_dir, &options);

        // A free port can be taken between free_port() and bind: retry.
        let mut port = 0;
        let mut started = false;
        for _ in 0..5 {
            port = free_port();
            if pg_ctl_start(user.as_deref(), &data_dir, &log_path, port) {
                started = true;
                break;
            }
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            if !log.contains("could not bind") && !log.contains("already in use") {
                break;
            }
        }
        if !started {
            panic!(
                "PostgreSQL failed to start in {}; server log:\n{}",
                dir.path().display(),
                tail(&log_path, 8000)
            );
        }
        let postmaster_pid = read_postmaster_pid(&data_dir);
        let server = PgServer {
            port,
            socket_dir,
            data_dir,
            log_path,
            options,
            postmaster_pid,
            watchdog: Some(watchdog),
            dir,
        };
        server.bootstrap_roles();
        server
    }

    /// Creates the service role (and gives the superuser a TCP password).
    fn bootstrap_roles(&self) {
        let encryption = if self.options.host_auth == "md5" {
            "SET password_encryption = 'md5';\n"
        } else {
            ""
        };
        self.psql(
            "postgres",
            &format!(
                "{encryption}\
                 CREATE ROLE {SERVICE_USER} LOGIN PASSWORD '{SERVICE_PASSWORD}';\n\
                 ALTER ROLE {SUPERUSER} PASSWORD '{SUPERUSER}';\n"
            ),
        );
    }

    /// `(name, password)` of the non-superuser login role sqlgate connects
    /// upstream with. It owns the databases made by [`Self::create_database`].
    pub fn service_user(&self) -> (&str, &str) {
        (SERVICE_USER, SERVICE_PASSWORD)
    }

    /// `postgres://svc:…@127.0.0.1:<port>/<db>`: the upstream URL for sqlgate.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SERVICE_USER}:{SERVICE_PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Creates database `name` owned by the service role.
    pub fn create_database(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE \"{name}\" OWNER {SERVICE_USER};"),
        );
    }

    /// Creates a database with a unique name starting with `prefix`; returns it.
    pub fn unique_database(&self, prefix: &str) -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.create_database(&name);
        name
    }

    /// Runs `sql` as the superuser over the unix socket (one statement at a
    /// time, stopping at the first error) and returns the unaligned,
    /// tuples-only output without the trailing newline. Panics with psql's
    /// stderr on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let socket = self.socket_dir.to_string_lossy().into_owned();
        let port = self.port.to_string();
        run_psql(
            &["-h", &socket, "-p", &port, "-U", SUPERUSER, "-d", db],
            None,
            sql,
        )
        .unwrap_or_else(|err| panic!("psql on db `{db}` failed: {err}\nSQL:\n{sql}"))
    }

    /// Runs `sql` over TCP as `user` with `password` (what a client would do);
    /// returns output, or psql's stderr on failure.
    pub fn psql_tcp(
        &self,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        let port = self.port.to_string();
        run_psql(
            &["-h", "127.0.0.1", "-p", &port, "-U", user, "-d", db],
            Some(password),
            sql,
        )
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.postmaster_pid
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Immediate shutdown: SIGQUIT to the postmaster; nothing to keep.
        signal(self.postmaster_pid, "QUIT");
        if !wait_pid_gone(self.postmaster_pid, Duration::from_secs(5)) {
            signal(self.postmaster_pid, "KILL");
            wait_pid_gone(self.postmaster_pid, Duration::from_secs(2));
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // `dir` removes itself.
    }
}

fn initdb(user: Option<&str>, data_dir: &Path, log: &Path) {
    let out = command_as(user, &pg_bin("initdb"))
        .arg("-D")
        .arg(data_dir)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
        // Rewritten by write_config; initdb insists on a superuser password
        // when given a password method here.
        .args(["--auth-local=trust", "--auth-host=trust"])
        .stdin(Stdio::null())
        .output()
        .expect("spawn initdb");
    let _ = fs::write(log, [&out.stdout[..], &out.stderr[..]].concat());
    if !out.status.success() {
        panic!(
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn write_config(data_dir: &Path, socket_dir: &Path, options: &PgOptions) {
    let method = options.host_auth;
    assert!(
        ["scram-sha-256", "md5", "password", "trust"].contains(&method),
        "unsupported host_auth `{method}`"
    );
    // Existing files belong to the server user: append/overwrite in place
    // so ownership and mode stay.
    let hba = format!(
        "local all all trust\n\
         host all all 127.0.0.1/32 {method}\n\
         host all all ::1/128 {method}\n"
    );
    fs::write(data_dir.join("pg_hba.conf"), hba).expect("write pg_hba.conf");

    let mut conf = format!(
        "\n# --- sqlgate test harness ---\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         max_connections = 100\n\
         shared_buffers = 16MB\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         wal_level = minimal\n\
         max_wal_senders = 0\n\
         jit = off\n\
         log_min_messages = warning\n\
         log_connections = off\n",
        socket_dir.display()
    );
    if method == "md5" {
        conf.push_str("password_encryption = md5\n");
    }
    for (key, value) in &options.settings {
        conf.push_str(&format!("{key} = {value}\n"));
    }
    fs::OpenOptions::new()
        .append(true)
        .open(data_dir.join("postgresql.conf"))
        .and_then(|mut f| f.write_all(conf.as_bytes()))
        .expect("append postgresql.conf");
}

/// `pg_ctl start -w`; false if the server did not come up.
fn pg_ctl_start(user: Option<&str>, data_dir: &Path, log: &Path, port: u16) -> bool {
    command_as(user, &pg_bin("pg_ctl"))
        .args(["start", "-w", "-t", "60", "-D"])
        .arg(data_dir)
        .arg("-l")
        .arg(log)
        .args(["-o", &format!("-p {port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn read_postmaster_pid(data_dir: &Path) -> u32 {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).expect("read postmaster.pid");
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid in postmaster.pid")
}

/// psql with harness defaults: no psqlrc, unaligned, tuples only, stop on
/// the first error, never prompt for a password, SQL on stdin.
fn run_psql(conn: &[&str], password: Option<&str>, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new(pg_bin("psql"));
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGOPTIONS",
        "PGSSLMODE",
    ] {
        cmd.env_remove(var);
    }
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    let mut child = cmd
        .args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1"])
        .args(conn)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn psql: {e}"))?;
    let mut stdin = child.stdin.take().expect("psql stdin");
    let sql = sql.to_string();
    // Write from a thread so a large result cannot deadlock the pipes.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(sql.as_bytes());
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait psql: {e}"))?;
    let _ = writer.join();
    if out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_string())
    } else {
        Err(format!(
            "{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}
