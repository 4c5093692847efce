//! Processes, directories and ports for the harness, and the rule that
//! nothing we start outlives the test binary.
//!
//! Every server gets a directory `/tmp/sqlgate-test-<test pid>-<n>-<kind>`
//! holding `owner.pid` (the test process) and the server's pid file, and a
//! *watchdog*: a tiny `sh` loop, detached from our stdio, that waits for the
//! test process to disappear and then stops the server and removes the
//! directory. A `static` server (never dropped) and a test binary killed
//! with SIGKILL are both cleaned up this way. `scripts/test.sh` sweeps the
//! same directories after `cargo test` as a second line of defence.

use std::collections::HashSet;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Prefix of every harness directory; `scripts/test.sh` sweeps `<prefix>*`.
pub const DIR_PREFIX: &str = "sqlgate-test-";

/// A free TCP port on 127.0.0.1: bind port 0, note the port, close.
///
/// Someone else may grab the port before we use it; the race is small and
/// [`super::PgServer::start`] retries on "address in use". Within one test
/// process a port is never handed out twice.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port found on 127.0.0.1 after 100 tries");
}

/// A directory under the system temp dir, removed on drop (unless
/// [`TestDir::keep`] was called). Records the owning test pid for sweeps.
pub struct TestDir {
    path: PathBuf,
    keep: bool,
}

impl TestDir {
    /// Creates `/tmp/sqlgate-test-<pid>-<n>-<kind>` (mode 0755).
    pub fn new(kind: &str) -> TestDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{n}-{kind}", std::process::id()));
        let _ = fs::remove_dir_all(&path); // leftover from a recycled pid
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod test dir");
        fs::write(path.join("owner.pid"), std::process::id().to_string()).expect("owner.pid");
        TestDir { path, keep: false }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Leaves the directory in place on drop (to look at logs after a
    /// failure); the `KEEP` marker tells `scripts/test.sh` not to sweep it.
    pub fn keep(&mut self) {
        self.keep = true;
        let _ = fs::write(self.path.join("KEEP"), "");
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// True when this process runs as root (PostgreSQL then needs another user).
pub fn is_root() -> bool {
    // INVARIANT: /proc/self is owned by the effective uid of the process.
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Numeric uid and gid of a local user, via `id` (std has no getpwnam).
pub fn user_ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// Recursively hands `path` to `uid:gid`.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    if path.is_dir() {
        for entry in fs::read_dir(path).expect("read_dir") {
            chown_tree(&entry.expect("dir entry").path(), uid, gid);
        }
    }
}

/// A command for `program`, run as `user` through `runuser` when given.
pub fn command_as(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Sends `sig` (e.g. "TERM", "QUIT", "KILL", "0") to `pid` through the
/// shell's `kill` builtin (we forbid unsafe, so no libc::kill). True if
/// delivered.
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            "kill -s \"$1\" \"$2\" 2>/dev/null",
            "sh",
            sig,
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether a process with this pid is running. Zombies count as gone: in a
/// container whose pid 1 does not reap, a dead daemon stays a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X') | None
        ),
        Err(_) => false,
    }
}

/// Polls until `pid` is gone or `timeout` passes; true if gone.
pub fn wait_pid_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// `alive PID`: the shell twin of [`pid_alive`] (`kill -0` succeeds on
/// zombies, which never go away when pid 1 does not reap). Cleanup scripts
/// passed to [`spawn_watchdog`] can use it.
pub const ALIVE_SH: &str =
    "alive() { s=$(sed 's/.*) //' \"/proc/$1/stat\" 2>/dev/null) || return 1; case $s in Z*|X*|'') return 1;; esac; }";

/// Starts a watchdog that runs `cleanup` (an `sh` script; `$1` is the dir)
/// once this test process has exited. Kill the returned child to disarm it.
///
/// The watchdog ignores SIGINT/SIGHUP so that Ctrl-C on `cargo test` still
/// leaves it alive to clean up, and has no stdio so that nobody waiting for
/// the test's output pipes waits for it.
pub fn spawn_watchdog(dir: &Path, cleanup: &str) -> Child {
    let script = format!(
        "trap '' INT HUP\n\
         {ALIVE_SH}\n\
         while alive \"$0\"; do sleep 0.5; done\n\
         {cleanup}\n\
         rm -rf \"$1\"\n"
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watchdog sh")
}

/// Last `max` bytes of a log file, for panic messages.
pub fn tail(path: &Path, max: usize) -> String {
    let text = fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    String::from_utf8_lossy(&text[start..]).into_owned()
}
