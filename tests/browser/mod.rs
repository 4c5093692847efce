//! A headless Chromium driven over the DevTools protocol, for tests that must
//! see a page the way a person's browser does (CSP enforced, scripts run).
//!
//! No websocket client is needed: Chromium's `--remote-debugging-pipe` speaks
//! the protocol on file descriptors 3 (commands in) and 4 (replies out),
//! messages separated by NUL bytes. `sh` maps our stdin/stdout pipes onto
//! those descriptors, so this stays std-only and free of `unsafe`.
//!
//! The browser runs in its own process group, killed on drop; a watchdog
//! (see `support::process`) kills it too if the test process dies first.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::support::TestDir;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The browser to use: `$SQLGATE_CHROMIUM`, or the first of the usual names on PATH.
pub fn find() -> Option<String> {
    if let Ok(p) = std::env::var("SQLGATE_CHROMIUM") {
        return Some(p);
    }
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .into_iter()
    .find(|name| {
        Command::new("sh")
            .args(["-c", "command -v \"$1\" >/dev/null", "sh", name])
            .status()
            .is_ok_and(|s| s.success())
    })
    .map(str::to_owned)
}

pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<Value>,
    next_id: u64,
    /// Protocol events seen so far (method + params), in order.
    pub events: Vec<Value>,
    watchdog: Option<Child>,
    dir: TestDir,
}

/// One tab, attached in flat mode.
pub struct Tab {
    session: String,
}

impl Browser {
    pub fn launch(program: &str) -> Browser {
        let dir = TestDir::new("chromium");
        let log = std::fs::File::create(dir.join("chromium.log")).expect("chromium.log");
        let mut child = Command::new("sh")
            .arg("-c")
            // fd 3 = our stdin pipe (commands), fd 4 = our stdout pipe (replies).
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 </dev/null >&2")
            .arg(program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg("about:blank")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let pgid = child.id();
        let watchdog = watchdog(pgid);
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while r.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
                buf.clear();
            }
        });
        Browser {
            child,
            stdin,
            replies,
            next_id: 0,
            events: Vec::new(),
            watchdog: Some(watchdog),
            dir,
        }
    }

    /// Sends a command and waits for its reply; panics on a protocol error.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        // CDP_DEBUG=1 traces every command (what a hung test was doing).
        if std::env::var_os("CDP_DEBUG").is_some() {
            eprintln!("cdp> {method} {params}");
        }
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.stdin
            .write_all(&bytes)
            .and_then(|_| self.stdin.flush())
            .unwrap_or_else(|e| panic!("chromium went away: {e}\n{}", self.log()));
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(v) if v["id"] == id => {
                    if !v["error"].is_null() {
                        panic!("{method}: {}", v["error"]);
                    }
                    return v["result"].clone();
                }
                Ok(v) => self.events.push(v),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{method}: no reply in {CALL_TIMEOUT:?}\n{}", self.log())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{method}: chromium closed the pipe\n{}", self.log())
                }
            }
        }
    }

    /// Opens `url` in a new tab and attaches to it.
    pub fn open(&mut self, url: &str) -> Tab {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        let tab = Tab {
            session: attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_owned(),
        };
        // Page events (dialogs: an `alert` from injected script would show here).
        self.call(Some(&tab.session), "Page.enable", json!({}));
        self.navigate(&tab, url);
        tab
    }

    pub fn navigate(&mut self, tab: &Tab, url: &str) {
        self.call(Some(&tab.session), "Page.navigate", json!({ "url": url }));
    }

    /// Evaluates `js` in the tab (promises awaited) and returns its value.
    pub fn eval(&mut self, tab: &Tab, js: &str) -> Value {
        let r = self.call(
            Some(&tab.session),
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        );
        if !r["exceptionDetails"].is_null() {
            panic!("`{js}` threw: {}", r["exceptionDetails"]);
        }
        r["result"]["value"].clone()
    }

    /// Polls `js` until it yields something other than false/null/""; returns it.
    pub fn wait_for(&mut self, tab: &Tab, js: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        // A navigation may destroy the context mid-call: errors count as "not yet".
        let guarded =
            format!("(() => {{ try {{ return ({js}); }} catch (e) {{ return null; }} }})()");
        loop {
            let v = self.eval(tab, &guarded);
            if !(v.is_null() || v == false || v == "") {
                return v;
            }
            if Instant::now() >= deadline {
                let body = self.eval(tab, "document.body ? document.body.innerText : ''");
                panic!("timed out waiting for `{js}`; page text:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether any event of this method was seen (e.g. `Page.javascriptDialogOpening`).
    pub fn saw(&self, method: &str) -> bool {
        self.events.iter().any(|e| e["method"] == method)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chromium.log")).unwrap_or_default()
    }
}

/// Kills the browser's process group once this test process is gone (even
/// after SIGKILL). Zombies count as gone: in a container whose pid 1 does not
/// reap, a dead test process stays a zombie.
fn watchdog(pgid: u32) -> Child {
    let script = "trap '' INT HUP\n\
        alive() { s=$(sed 's/.*) //' \"/proc/$1/stat\" 2>/dev/null) || return 1; case $s in Z*|X*|'') return 1;; esac; }\n\
        while alive \"$0\"; do sleep 0.5; done\n\
        kill -9 -\"$1\" 2>/dev/null\n";
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(std::process::id().to_string())
        .arg(pgid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watchdog sh")
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: the browser forks renderer, GPU and utility processes.
        // (dash's `kill` takes `-9 -PGID` but not `--`.)
        let pgid = self.child.id();
        let _ = Command::new("sh")
            .args(["-c", "kill -9 -\"$1\" 2>/dev/null", "sh", &pgid.to_string()])
            .status();
        let _ = self.child.wait();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}
