//! The writer thread: owns the file, the chain and the signing key.
//!
//! Only this thread assigns `seq`/`prev`, so the chain needs no lock: senders
//! hand over events, the writer serializes each one, seals it into the chain
//! and appends the line.
//!
//! Group commit: every [`GROUP_COMMIT`] the writer drains the queue, writes
//! everything, flushes once, and `fdatasync`s once if any record in the batch
//! was sent with [`super::AuditLog::record_durable`] (or always, under
//! `durability = "strict"`), then resolves those records' acks. One fsync
//! covers the whole batch.
//!
//! Checkpoints: after `checkpoint_every` records, when `checkpoint_interval`
//! has passed since the last one and records were written since, before a
//! rotation, and at close, so a cleanly closed log ends with a checkpoint.
//!
//! Rotation: once the file reaches `max_file_bytes` (when > 0), the writer
//! writes a checkpoint, fsyncs, renames `<path>` to `<path>.<seq of its first
//! record>`, and opens a fresh `<path>` whose first record is `log_opened`
//! (`reason: rotation`, `previous_file`: the renamed file's name). The chain
//! simply continues.

use super::anchor::{last_anchored, AnchorWriter};
use super::chain::Chain;
use super::event::Event;
use super::recover::{recover, RecoverError, Tail};
use super::sign::{checkpoint_body, rotation_body, KeyError, SigningKey};
use crate::config::{Audit, Durability};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How often the writer drains the queue. The writer sleeps between drains
/// instead of blocking on the channel: a blocked receiver must be woken by
/// every send (a futex wake-up and a context switch per statement, measured
/// at ~15% of the proxy's CPU under pgbench), whereas a sleeping one costs
/// the senders nothing. Records reach the file within this window.
pub(crate) const GROUP_COMMIT: Duration = Duration::from_millis(2);
/// How long a closing writer waits for an HTTP anchor to take its last
/// checkpoint (the POSTing thread's own retries take longer: bounded here
/// so a collector that is down delays a stop by this much at most).
const CLOSING_ANCHOR_WAIT: Duration = Duration::from_secs(10);

const BUFFER: usize = 256 * 1024;

pub(crate) enum Msg {
    Record(Event),
    /// Resolve the sender once the record is fsynced.
    Durable(Event, oneshot::Sender<()>),
    /// Resolve the sender once everything queued before it is fsynced.
    Barrier(oneshot::Sender<()>),
    /// Sign a checkpoint over everything queued before it (and hand it to
    /// the anchor), then resolve the sender.
    Checkpoint(oneshot::Sender<bool>),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Recover(#[from] RecoverError),
    /// The log and its anchor disagree, or the key changed unannounced.
    #[error("refusing to continue the audit log `{path}`: {why}")]
    Refused { path: PathBuf, why: String },
    #[error("cannot write the audit log `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<OpenError> for std::io::Error {
    fn from(e: OpenError) -> std::io::Error {
        let kind = match &e {
            OpenError::Key(KeyError::Permissions { .. }) => std::io::ErrorKind::PermissionDenied,
            OpenError::Io { source, .. } => source.kind(),
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

pub(crate) struct Writer {
    path: PathBuf,
    key: SigningKey,
    anchor: Option<AnchorWriter>,
    /// A key rotation's line, for the anchor with the next checkpoint.
    rotation_line: Option<Vec<u8>>,
    every: u64,
    interval: Duration,
    max_file_bytes: u64,
    strict: bool,
    chain: Chain,
    out: BufWriter<File>,
    file_bytes: u64,
    file_first_seq: u64,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    body: Vec<u8>,
    line: Vec<u8>,
    acks: Vec<oneshot::Sender<()>>,
    unflushed: bool,
    unsynced: bool,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Audit files hold literals and parameters: created 0600 (owner only),
/// and an older one readable by others is made so.
fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    if f.metadata()?.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

impl Writer {
    /// Recovers the log, then writes `log_opened`, the `preamble`, a
    /// `key_rotation` when the key changed, and a checkpoint, and fsyncs.
    pub(crate) fn start(cfg: &Audit, preamble: Vec<Event>) -> Result<Writer, OpenError> {
        let io = |source| OpenError::Io {
            path: cfg.path.clone(),
            source,
        };
        let key = SigningKey::load_or_create(&cfg.key)?;
        let previous = cfg
            .previous_key
            .as_deref()
            .map(SigningKey::load)
            .transpose()?;
        if let Some(dir) = cfg.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // The previous key only vouches for a log it signed last (the key
        // change itself): once the new key has taken over, records made
        // with the retired key are not ours.
        let tail: Option<Tail> = match recover(&cfg.path, &[&key]) {
            Err(e) if previous.is_some() => {
                let keys: Vec<&SigningKey> =
                    std::iter::once(&key).chain(previous.as_ref()).collect();
                let t = recover(&cfg.path, &keys)?;
                let old = previous.as_ref().map(|p| p.public().key_id());
                let taken_over =
                    super::recover::announces(&cfg.path, &key.public().key_id()).map_err(io)?;
                if taken_over || t.as_ref().and_then(|t| t.key_id.clone()) != old {
                    return Err(e.into());
                }
                t
            }
            other => other?,
        };
        let refused = |why: String| OpenError::Refused {
            path: cfg.path.clone(),
            why,
        };
        let old_id = tail.as_ref().and_then(|t| t.key_id.clone());
        let new_id = key.public().key_id();
        if let Some(old) = old_id.as_deref().filter(|old| *old != new_id) {
            if previous.as_ref().map(|p| p.public().key_id()).as_deref() != Some(old) {
                return Err(refused(format!(
                    "it was last signed by key `{old}`, not by `[audit] key` (`{new_id}`): to change keys, set `[audit] previous_key` to the old key file, so the change is signed by both"
                )));
            }
        }
        if let Some(crate::config::Anchor::File(anchor)) = &cfg.anchor {
            // A log with checkpoints and no anchor file: the anchor was
            // removed (to hide a cut), or anchoring was just switched on,
            // which the operator says by creating the file (empty).
            if !anchor.exists() && tail.as_ref().is_some_and(|t| t.checkpoint.is_some()) {
                return Err(refused(format!(
                    "its anchor `{}` is missing. Restore it; to start anchoring this log, create it empty",
                    anchor.display()
                )));
            }
            if let Some((seq, hash)) = last_anchored(anchor).map_err(&refused)? {
                let checkpoint = tail.as_ref().and_then(|t| t.checkpoint);
                let last = tail.as_ref().and_then(|t| t.chain.head_seq());
                let held = match checkpoint {
                    Some((s, h)) if s == seq => Some(h),
                    // The anchor's line is not the log's last checkpoint (a
                    // crash between the log's fsync and the anchor's write,
                    // or a key rotation): the log's record at its seq must
                    // still be that line.
                    _ if last.is_some_and(|l| l >= seq) => {
                        super::recover::line_hash_at(&cfg.path, seq)?
                    }
                    _ => {
                        return Err(refused(format!(
                            "the anchor `{}` holds record {seq}, but the log ends {}: records were cut. Restore the log from a copy; to start a new log, move both the log and the anchor aside",
                            anchor.display(),
                            last.map_or("before its first record".to_owned(), |l| format!("at record {l}"))
                        )))
                    }
                };
                if !held.is_some_and(|h| super::chain::hashes_equal(&h, &hash)) {
                    return Err(refused(format!(
                        "its record {seq} is not the one in the anchor `{}`: the log was replaced",
                        anchor.display()
                    )));
                }
            }
        }
        let anchor = match &cfg.anchor {
            Some(a) => Some(
                AnchorWriter::open(a)
                    .map_err(|e| refused(format!("cannot open the anchor: {e}")))?,
            ),
            None => None,
        };
        let file = open_append(&cfg.path).map_err(io)?;
        let file_bytes = file.metadata().map_err(io)?.len();
        let chain = tail.as_ref().map_or_else(Chain::new, |t| t.chain.clone());
        let mut w = Writer {
            path: cfg.path.clone(),
            key,
            anchor,
            every: cfg.checkpoint_every.max(1),
            interval: cfg.checkpoint_interval,
            max_file_bytes: cfg.max_file_bytes,
            strict: cfg.durability == Durability::Strict,
            file_first_seq: tail
                .as_ref()
                .and_then(|t| t.file_first_seq)
                .unwrap_or(chain.next_seq()),
            chain,
            out: BufWriter::with_capacity(BUFFER, file),
            file_bytes,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            body: Vec::new(),
            line: Vec::new(),
            acks: Vec::new(),
            rotation_line: None,
            unflushed: false,
            unsynced: false,
        };
        let mut opened = serde_json::json!({
            "kind": "log_opened",
            "file": file_name(&w.path),
            "version": env!("CARGO_PKG_VERSION"),
        });
        // The run before did not close the log (a crash, a kill): what it
        // wrote after its last anchored checkpoint is in no anchor.
        let recovery = tail
            .as_ref()
            .is_some_and(|t| t.truncated_bytes > 0 || !t.closed);
        opened["reason"] = if recovery { "recovery" } else { "start" }.into();
        if recovery {
            opened["truncated_bytes"] = tail.as_ref().map_or(0, |t| t.truncated_bytes).into();
        }
        w.append(Event::Json(opened)).map_err(io)?;
        for e in preamble {
            w.append(e).map_err(io)?;
        }
        if old_id.as_deref() != Some(new_id.as_str()) {
            let head_seq = w.chain.head_seq().unwrap_or(0);
            let body = rotation_body(
                &w.key,
                old_id.as_deref(),
                previous.as_ref(),
                head_seq,
                &w.chain.head(),
            );
            w.append(Event::Json(body)).map_err(io)?;
        }
        w.checkpoint().map_err(io)?;
        w.sync().map_err(io)?;
        Ok(w)
    }

    /// The loop: drain, write, flush, fsync when asked, checkpoint, sleep.
    pub(crate) fn run(
        mut self,
        rx: mpsc::Receiver<Msg>,
        alive: &std::sync::atomic::AtomicBool,
    ) -> std::io::Result<()> {
        let result = self.run_inner(&rx);
        // Before the waiting acks are dropped (with `self` and `rx`): whoever learns
        // the writer is gone from an ack also finds it so here.
        alive.store(false, std::sync::atomic::Ordering::Release);
        if let Err(e) = &result {
            tracing::error!(path = %self.path.display(), "audit writer stopped: {e}");
        }
        result
    }

    fn run_inner(&mut self, rx: &mpsc::Receiver<Msg>) -> std::io::Result<()> {
        loop {
            let closed = loop {
                match rx.try_recv() {
                    Ok(Msg::Record(e)) => self.append(e)?,
                    Ok(Msg::Durable(e, ack)) => {
                        self.append(e)?;
                        self.acks.push(ack);
                    }
                    Ok(Msg::Barrier(ack)) => self.acks.push(ack),
                    Ok(Msg::Checkpoint(ack)) => {
                        if self.since_checkpoint > 0 {
                            self.checkpoint()?;
                        }
                        // On disk first, then (with an anchor) in the anchor.
                        self.sync()?;
                        match &self.anchor {
                            Some(a) => a.after_delivery(ack),
                            None => {
                                let _ = ack.send(true);
                            }
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => break false,
                    Err(mpsc::TryRecvError::Disconnected) => break true,
                }
                if self.since_checkpoint >= self.every {
                    self.checkpoint()?;
                }
                if self.max_file_bytes > 0 && self.file_bytes >= self.max_file_bytes {
                    self.rotate()?;
                }
            };
            if closed {
                // Always, so the next start can tell a log closed from one
                // a crash left.
                self.checkpoint_marked(true)?;
                self.sync()?;
                if let Some(a) = &self.anchor {
                    if !a.wait_delivered(CLOSING_ANCHOR_WAIT) {
                        tracing::error!(
                            "audit anchor: the closing checkpoint was not delivered; the anchor does not show where this log ended"
                        );
                    }
                }
                return Ok(());
            }
            if self.since_checkpoint > 0 && self.last_checkpoint.elapsed() >= self.interval {
                self.checkpoint()?;
            }
            if !self.acks.is_empty() || (self.strict && self.unsynced) {
                self.sync()?;
            } else if self.unflushed {
                self.out.flush()?;
                self.unflushed = false;
            }
            std::thread::sleep(GROUP_COMMIT);
        }
    }

    /// Seals one event into the chain and buffers its line.
    fn append(&mut self, e: Event) -> std::io::Result<()> {
        let time = e.time();
        let is_checkpoint = matches!(&e, Event::Json(v) if v["kind"] == "checkpoint");
        let is_rotation = matches!(&e, Event::Json(v) if v["kind"] == "key_rotation");
        if let Err(err) = e.write_body(&mut self.body) {
            // Unreachable for the events sqlgate builds; never stop the log for one.
            tracing::error!("audit record not serializable, skipped: {err}");
            return Ok(());
        }
        self.chain
            .seal_mac(time, &self.body, &mut self.line, self.key.record_mac());
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.file_bytes += self.line.len() as u64;
        self.unflushed = true;
        self.unsynced = true;
        if is_rotation && self.anchor.is_some() {
            // To the anchor with the checkpoint right after it.
            self.rotation_line = Some(self.line[..self.line.len() - 1].to_vec());
        }
        if is_checkpoint {
            self.since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
        } else {
            self.since_checkpoint += 1;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> std::io::Result<()> {
        self.checkpoint_marked(false)
    }

    /// A checkpoint; `closing` marks the last one a closing writer writes.
    fn checkpoint_marked(&mut self, closing: bool) -> std::io::Result<()> {
        let Some(head_seq) = self.chain.head_seq() else {
            return Ok(());
        };
        let body = checkpoint_body(&self.key, head_seq, &self.chain.head(), closing);
        self.append(Event::Json(body))?;
        if self.anchor.is_some() {
            // The log first: the anchor must never be ahead of the disk.
            self.sync()?;
            let line = &self.line[..self.line.len() - 1];
            if let Some(a) = &mut self.anchor {
                if let Some(rotation) = self.rotation_line.take() {
                    a.write(&rotation)?;
                }
                a.write(line)?;
            }
        }
        Ok(())
    }

    /// Flush, `fdatasync`, then resolve the waiting acks.
    fn sync(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        self.unflushed = false;
        self.unsynced = false;
        for ack in self.acks.drain(..) {
            let _ = ack.send(());
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.since_checkpoint > 0 {
            self.checkpoint()?;
        }
        self.sync()?;
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(format!(".{}", self.file_first_seq));
        let rotated = PathBuf::from(rotated);
        std::fs::rename(&self.path, &rotated)?;
        let file = open_append(&self.path)?;
        // Make the rename and the new file durable before writing on.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        self.out = BufWriter::with_capacity(BUFFER, file);
        self.file_bytes = 0;
        self.file_first_seq = self.chain.next_seq();
        let opened = serde_json::json!({
            "kind": "log_opened",
            "reason": "rotation",
            "file": file_name(&self.path),
            "previous_file": file_name(&rotated),
            "version": env!("CARGO_PKG_VERSION"),
        });
        self.append(Event::Json(opened))
    }
}
