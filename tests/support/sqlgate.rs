//! Runs the `sqlgate` binary under test with a config file.
//!
//! [`SqlgateConfig`] renders the TOML for the common case (one postgres
//! listener, some agents, the repo's rules); [`Sqlgate::start`] takes any
//! TOML, runs `sqlgate serve --config <file>` in its own directory (so
//! relative paths such as the audit log land there), waits until every
//! `listen = "host:port"` in the config accepts TCP, and stops it on drop.

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::pg::PgServer;
use super::process::{free_port, signal, spawn_watchdog, tail, TestDir};

/// How long [`Sqlgate::start`] waits for the listeners to accept.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long drop waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Builder for the common sqlgate config.
#[derive(Clone, Debug)]
pub struct SqlgateConfig {
    pub admin_port: u16,
    pub listen_port: u16,
    /// `postgres://user:password@host:port/db`
    pub upstream_url: String,
    /// `(name, password, groups)`
    pub agents: Vec<(String, String, Vec<String>)>,
    /// Rule files or directories; absolute paths.
    pub rules: Vec<PathBuf>,
    /// Relative to the sqlgate run directory unless absolute.
    pub audit_path: PathBuf,
    /// Raw TOML appended at the end. Put whole tables here (`[approvals]`,
    /// `[[approver]]`, …): a bare `key = value` would land in the last table.
    pub extra: String,
    /// More `key = value` lines for `[audit]`.
    pub audit_extra: String,
}

impl SqlgateConfig {
    /// Free ports, the repo's `rules/`, audit log `audit/sqlgate.jsonl`,
    /// no agents.
    pub fn new(upstream_url: impl Into<String>) -> SqlgateConfig {
        SqlgateConfig {
            admin_port: free_port(),
            listen_port: free_port(),
            upstream_url: upstream_url.into(),
            agents: Vec::new(),
            rules: vec![repo_rules_dir()],
            audit_path: PathBuf::from("audit/sqlgate.jsonl"),
            extra: String::new(),
            audit_extra: String::new(),
        }
    }

    /// Upstream = database `db` on `pg`, as its service user.
    pub fn for_pg(pg: &PgServer, db: &str) -> SqlgateConfig {
        SqlgateConfig::new(pg.url(db))
    }

    /// Adds an agent.
    pub fn agent(mut self, name: &str, password: &str, groups: &[&str]) -> SqlgateConfig {
        self.agents.push((
            name.to_string(),
            password.to_string(),
            groups.iter().map(|g| g.to_string()).collect(),
        ));
        self
    }

    /// Adds `key = value` lines to `[audit]`.
    pub fn audit(mut self, toml: &str) -> SqlgateConfig {
        self.audit_extra.push_str(toml);
        self.audit_extra.push('\n');
        self
    }

    /// Appends raw TOML (see [`SqlgateConfig::extra`]).
    pub fn extra(mut self, toml: &str) -> SqlgateConfig {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// `127.0.0.1:<listen_port>`: where agents connect.
    pub fn listen_addr(&self) -> String {
        format!("127.0.0.1:{}", self.listen_port)
    }

    pub fn admin_addr(&self) -> String {
        format!("127.0.0.1:{}", self.admin_port)
    }

    pub fn render(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "[admin]\nlisten = {}\n", q(&self.admin_addr()));
        let _ = writeln!(
            t,
            "[[listener]]\nprotocol = \"postgres\"\nlisten = {}\nupstream = {}\n",
            q(&self.listen_addr()),
            q(&self.upstream_url)
        );
        for (name, password, groups) in &self.agents {
            let groups: Vec<String> = groups.iter().map(|g| q(g)).collect();
            let _ = writeln!(
                t,
                "[[agent]]\nname = {}\npassword = {}\ngroups = [{}]\n",
                q(name),
                q(password),
                groups.join(", ")
            );
        }
        let rules: Vec<String> = self.rules.iter().map(|r| q(&r.to_string_lossy())).collect();
        let _ = writeln!(t, "[policy]\nrules = [{}]\n", rules.join(", "));
        let _ = writeln!(
            t,
            "[audit]\npath = {}\n{}",
            q(&self.audit_path.to_string_lossy()),
            self.audit_extra
        );
        t.push_str(&self.extra);
        t
    }
}

/// The repo's shipped rules directory.
pub fn repo_rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A running `sqlgate serve`. SIGTERM, then SIGKILL, on drop.
pub struct Sqlgate {
    /// Every `listen` address found in the config (admin and listeners).
    pub listen: Vec<SocketAddr>,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
    watchdog: Option<Child>,
    dir: TestDir,
}

impl Sqlgate {
    /// Starts `sqlgate serve --config <dir>/sqlgate.toml` and waits up to
    /// 20 s until all its listen addresses accept TCP; panics with the log
    /// if it exits or times out.
    pub fn start(config_toml: &str) -> Sqlgate {
        Sqlgate::start_env(config_toml, &[])
    }

    /// [`Sqlgate::start`] with these environment variables set.
    pub fn start_env(config_toml: &str, env: &[(&str, &str)]) -> Sqlgate {
        let dir = TestDir::new("sqlgate");
        let config_path = dir.join("sqlgate.toml");
        let log_path = dir.join("sqlgate.log");
        fs::write(&config_path, config_toml).expect("write sqlgate.toml");
        let log = fs::File::create(&log_path).expect("create sqlgate.log");
        let child = Command::new(env!("CARGO_BIN_EXE_sqlgate"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .current_dir(dir.path())
            .env("RUST_BACKTRACE", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn sqlgate binary");
        let pid = child.id();
        fs::write(dir.join("sqlgate.pid"), pid.to_string()).expect("sqlgate.pid");
        let watchdog = spawn_watchdog(
            dir.path(),
            &format!(
                "kill -TERM {pid} 2>/dev/null\n\
                 i=0; while alive {pid} && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\n\
                 kill -KILL {pid} 2>/dev/null"
            ),
        );
        let mut gate = Sqlgate {
            listen: listen_addrs(config_toml),
            config_path,
            log_path,
            child,
            exit: None,
            watchdog: Some(watchdog),
            dir,
        };
        gate.wait_ready();
        gate
    }

    /// Renders `config` and starts it.
    pub fn start_with(config: &SqlgateConfig) -> Sqlgate {
        Sqlgate::start(&config.render())
    }

    fn wait_ready(&mut self) {
        assert!(
            !self.listen.is_empty(),
            "no `listen = \"host:port\"` in the sqlgate config"
        );
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pending = self.listen.clone();
        while !pending.is_empty() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                panic!(
                    "sqlgate exited during startup ({status}); log:\n{}",
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "sqlgate did not accept on {pending:?} within {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            pending.retain(|addr| {
                TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_err()
            });
            if !pending.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Everything sqlgate wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The run directory (config, log, relative audit path).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks sqlgate to shut down gracefully.
    pub fn sigterm(&mut self) {
        if self.exit.is_none() {
            signal(self.child.id(), "TERM");
        }
    }

    /// Waits for sqlgate to exit.
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let status = self.child.wait().expect("wait for sqlgate");
        self.exit = Some(status);
        status
    }

    /// Waits up to `timeout` for sqlgate to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit {
                return Some(status);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sqlgate {
    fn drop(&mut self) {
        self.sigterm();
        if self.wait_timeout(STOP_GRACE).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if std::thread::panicking() {
            // Keep the run directory and show the log next to the failure.
            self.dir.keep();
            eprintln!(
                "--- sqlgate log ({}) ---\n{}",
                self.dir.path().display(),
                tail(&self.log_path, 16_000)
            );
        }
    }
}

/// Every `listen = "host:port"` value in the config, resolved.
fn listen_addrs(toml: &str) -> Vec<SocketAddr> {
    toml.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            if key.trim() != "listen" {
                return None;
            }
            let value = value.split('#').next()?.trim().trim_matches('"');
            value.to_socket_addrs().ok()?.next()
        })
        .collect()
}
