//! The truncation anchor: every checkpoint line (and key rotation), copied
//! outside the log.
//!
//! A hash chain with signed checkpoints shows any edit inside the log, but
//! not a cut at a checkpoint: what is left is a shorter, valid log. So the
//! writer also hands each checkpoint line, byte for byte, to an anchor kept
//! where whoever can cut the log cannot (`[audit] anchor`): a file on another
//! volume, syslog for a collector that ships it elsewhere, or an HTTP(S)
//! endpoint (each line POSTed as the body, retried in the background). The line goes
//! to the anchor only after the log holding it is fsynced, so an anchor is
//! never ahead of the log on disk, even after a crash.
//!
//! - At start-up, a file anchor's last line must be in the log: a log that
//!   ends before it, or holds another line at its seq, is refused.
//! - `sqlgate audit verify --anchor <file>` checks every anchored line
//!   against the log and reports a log that ends before the latest one
//!   (when that one is signed by a key trusted: a key rotation is anchored
//!   too, so a cut back to before a key change is still shown as a cut).
//!   For syslog, extract sqlgate's lines into a file first (the JSON starts
//!   at the first `{` of each message).

use super::chain::{hash_line, hashes_equal, Hash};
use crate::config::Anchor;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// syslog priority: facility 13 (log audit) × 8 + severity 6 (info).
const SYSLOG_PRI: &str = "<110>";

/// An open anchor.
pub(crate) enum AnchorWriter {
    File(File),
    Syslog(UnixDatagram, PathBuf),
    /// Lines (and waiters) for the POSTing thread.
    Http(std::sync::mpsc::Sender<HttpMsg>),
}

/// What the POSTing thread takes, in order.
pub(crate) enum HttpMsg {
    Line(Vec<u8>),
    /// Resolved once every line sent before it was delivered or given up,
    /// with whether the last of them was delivered: an approved statement
    /// runs only once the checkpoint over its approval is anchored.
    Delivered(tokio::sync::oneshot::Sender<bool>),
}

/// How often a POST of a checkpoint is tried before it is given up (and
/// logged): the anchor is evidence for later, so the log never waits on it.
const HTTP_ATTEMPTS: u32 = 4;
const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The thread that POSTs checkpoint lines to `url`, in order, each retried
/// with backoff. Its own small runtime: the writer thread is not async.
fn http_thread(url: String) -> std::io::Result<std::sync::mpsc::Sender<HttpMsg>> {
    let (tx, rx) = std::sync::mpsc::channel::<HttpMsg>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .map_err(std::io::Error::other)?;
    std::thread::Builder::new()
        .name("sqlgate-anchor".into())
        .spawn(move || {
            // The last line is the one a waiter needs: a checkpoint covers
            // every record before it.
            let mut last_delivered = true;
            while let Ok(msg) = rx.recv() {
                match msg {
                    HttpMsg::Line(line) => {
                        last_delivered = runtime.block_on(post(&client, &url, line));
                    }
                    HttpMsg::Delivered(ack) => {
                        let _ = ack.send(last_delivered);
                    }
                }
            }
        })?;
    Ok(tx)
}

/// Whether the line was delivered.
async fn post(client: &reqwest::Client, url: &str, line: Vec<u8>) -> bool {
    let mut wait = std::time::Duration::from_millis(500);
    for attempt in 1..=HTTP_ATTEMPTS {
        let sent = client
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-Sqlgate-Event", "audit.checkpoint")
            .body(line.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => {
                tracing::warn!(%url, attempt, status = %r.status(), "audit anchor refused a checkpoint")
            }
            Err(e) => tracing::warn!(%url, attempt, "audit anchor unreachable: {e}"),
        }
        if attempt < HTTP_ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    tracing::error!(%url, "audit anchor: a checkpoint was not delivered; the anchor misses it");
    false
}

impl AnchorWriter {
    pub(crate) fn open(anchor: &Anchor) -> std::io::Result<AnchorWriter> {
        Ok(match anchor {
            Anchor::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .read(true)
                    .append(true)
                    .open(path)?;
                // A write torn by a crash: cut it, so the next checkpoint
                // starts a line of its own.
                let len = f.metadata()?.len();
                if len > 0 {
                    let mut last = [0u8; 1];
                    f.seek(SeekFrom::Start(len - 1))?;
                    f.read_exact(&mut last)?;
                    if last[0] != b'\n' {
                        let mut buf = Vec::new();
                        f.seek(SeekFrom::Start(0))?;
                        f.read_to_end(&mut buf)?;
                        let keep = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                        f.set_len(keep as u64)?;
                        f.sync_all()?;
                    }
                }
                AnchorWriter::File(f)
            }
            Anchor::Syslog(socket) => {
                let s = UnixDatagram::unbound()?;
                s.connect(socket)?;
                AnchorWriter::Syslog(s, socket.clone())
            }
            Anchor::Http(url) => AnchorWriter::Http(http_thread(url.clone())?),
        })
    }

    /// Appends one checkpoint line (without its `\n`) and makes it durable.
    pub(crate) fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            AnchorWriter::File(f) => {
                let mut buf = Vec::with_capacity(line.len() + 1);
                buf.extend_from_slice(line);
                buf.push(b'\n');
                f.write_all(&buf)?;
                f.sync_data()
            }
            AnchorWriter::Syslog(s, socket) => {
                let mut msg = Vec::with_capacity(line.len() + 32);
                msg.extend_from_slice(SYSLOG_PRI.as_bytes());
                msg.extend_from_slice(b"sqlgate-audit: ");
                msg.extend_from_slice(line);
                s.send(&msg).map(|_| ()).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("syslog `{}`: {e}", socket.display()))
                })
            }
            AnchorWriter::Http(tx) => tx
                .send(HttpMsg::Line(line.to_vec()))
                .map_err(|_| std::io::Error::other("the audit anchor's thread stopped")),
        }
    }

    /// Answers `ack` with whether the anchor holds every line written so
    /// far: at once for a file or syslog (their writes are synchronous),
    /// for HTTP once the lines before it were POSTed or given up.
    pub(crate) fn after_delivery(&self, ack: tokio::sync::oneshot::Sender<bool>) {
        match self {
            AnchorWriter::Http(tx) => {
                if let Err(std::sync::mpsc::SendError(HttpMsg::Delivered(ack))) =
                    tx.send(HttpMsg::Delivered(ack))
                {
                    // The thread is gone: nothing more is delivered.
                    let _ = ack.send(false);
                }
            }
            _ => {
                let _ = ack.send(true);
            }
        }
    }
}

impl AnchorWriter {
    /// Waits, at most `max`, until every line written so far was delivered
    /// (or given up): a closing writer's last checkpoint must reach an HTTP
    /// anchor before the process exits, or no anchor holds where the log
    /// ended (review F). Returns whether it was delivered. For the writer
    /// thread, which is not async.
    pub(crate) fn wait_delivered(&self, max: std::time::Duration) -> bool {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.after_delivery(tx);
        let deadline = std::time::Instant::now() + max;
        loop {
            match rx.try_recv() {
                Ok(delivered) => return delivered,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return false,
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// The seq and line hash of a file anchor's highest record; `None` when it
/// holds none yet (or no file). Reads the whole file (one short line per
/// checkpoint: a year of 10-second checkpoints is about a gigabyte, read in
/// seconds): lines appended out of order — copies of older genuine lines,
/// after a cut — are a rewrite, and must not hide the highest.
pub(crate) fn last_anchored(path: &Path) -> Result<Option<(u64, Hash)>, String> {
    let mut high = None;
    match read_lines(path, |seq, hash, _| high = Some((seq, hash))) {
        Err(ReadError::Missing) => Ok(None),
        Err(ReadError::Bad(e)) => Err(e),
        Ok(()) => Ok(high),
    }
}

enum ReadError {
    Missing,
    Bad(String),
}

/// Every line of an anchor, in order, by the one rule start-up and verify
/// share:
/// - blank lines are skipped, and so is a last line without its `\n` (a
///   write a crash cut short: the writer cuts it before its next line);
/// - every other line is a checkpoint or key rotation record (from its
///   first `{`: a syslog export keeps the message's header before it);
/// - lines only ever come in seq order. A line repeated byte for byte (an
///   HTTP retry, a syslog duplicate) is harmless; another line for a seq
///   already anchored, or a seq going back, is a log rewritten after that
///   seq (a cut the writer then continued past).
fn read_lines(path: &Path, mut each: impl FnMut(u64, Hash, &[u8])) -> Result<(), ReadError> {
    use std::io::BufRead;
    let describe = |e: std::io::Error| {
        ReadError::Bad(format!(
            "cannot read the audit anchor `{}`: {e}",
            path.display()
        ))
    };
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(describe(e)),
    };
    let mut r = std::io::BufReader::with_capacity(256 * 1024, f);
    let mut line = Vec::new();
    let mut last: Option<(u64, Hash)> = None;
    let mut no = 0u64;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).map_err(describe)? == 0 {
            return Ok(());
        }
        no += 1;
        if line.pop() != Some(b'\n') {
            return Ok(());
        }
        let rec = json_part(&line);
        if rec.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |why: &str| {
            ReadError::Bad(format!(
                "the audit anchor `{}` line {no}: {why}",
                path.display()
            ))
        };
        let v: serde_json::Value =
            serde_json::from_slice(rec).map_err(|_| bad("not a JSON record"))?;
        let (Some(seq), Some("checkpoint" | "key_rotation")) =
            (v["seq"].as_u64(), v["kind"].as_str())
        else {
            return Err(bad("not a checkpoint or key rotation record"));
        };
        let hash = hash_line(rec);
        if let Some((high, high_hash)) = &last {
            if seq == *high && hashes_equal(high_hash, &hash) {
                continue;
            }
            if seq <= *high {
                return Err(bad(&format!(
                    "anchor conflict: a line for record {seq} after one for record {high}: the log was rewritten after record {seq} (a cut, continued). Keep both as evidence"
                )));
            }
        }
        each(seq, hash, rec);
        last = Some((seq, hash));
    }
}

/// The record in an anchor line: from its first `{` (a syslog export keeps
/// the message's header before it).
fn json_part(line: &[u8]) -> &[u8] {
    line.iter()
        .position(|&b| b == b'{')
        .map_or(line, |i| &line[i..])
}

/// One line of an anchor: a checkpoint, or a key rotation (which lets a
/// verifier that trusts the old key trust the checkpoints after it).
#[derive(Debug, Clone)]
pub struct Anchored {
    /// SHA-256 of the line: the log's record at its seq must hash the same.
    pub hash: Hash,
    /// The record, for checking its signature when the log does not hold it.
    pub line: Vec<u8>,
}

/// Every line of an anchor file, seq → line, for `verify --anchor`
/// ([`read_lines`]' rule). Signatures are checked by verify, once it knows
/// which keys the log makes trusted: one the log holds is the log's own
/// record.
pub fn load(path: &Path) -> Result<BTreeMap<u64, Anchored>, String> {
    let mut out = BTreeMap::new();
    let read = read_lines(path, |seq, hash, line| {
        out.insert(
            seq,
            Anchored {
                hash,
                line: line.to_vec(),
            },
        );
    });
    match read {
        Ok(()) => Ok(out),
        Err(ReadError::Missing) => Err(format!(
            "cannot read the anchor `{}`: it does not exist",
            path.display()
        )),
        Err(ReadError::Bad(e)) => Err(e),
    }
}
