//! The audit log: attestations an auditor can verify without trusting us.
//!
//! Every session, statement, login failure and approval event becomes one
//! JSON line. Each line carries its `seq` and the SHA-256 of the previous
//! line ([`chain`]), so an edit, deletion, insertion or reorder breaks the
//! chain; signed checkpoints ([`sign`]) over `(seq, head hash)` make the chain
//! unforgeable by anyone without the key. [`verify`] checks a log offline
//! with only the public key; the format is in `chain` and `sign` (and
//! `docs`/README), precise enough to reimplement.
//!
//! Records are handed to a dedicated writer thread over a channel, so the
//! proxy's hot path pays for building a small struct and a channel send, not
//! for serialization, hashing or I/O ([`writer`] explains the group commit).
//!
//! Durability: [`AuditLog::record`] is group-committed (on disk within a few
//! milliseconds, fsynced at the next checkpoint, rotation or close);
//! [`AuditLog::record_durable`] returns a [`DurableAck`] that resolves once the
//! record is written and `fdatasync`ed, so the caller can hold back a result
//! until its record is safe. [`AuditLog::strict`] tells the proxy whether
//! every statement must wait for that (`[audit] durability = "strict"`).
//!
//! On start the writer recovers the existing log ([`recover`]) and writes
//! `log_opened`, then a checkpoint right away: after a crash that checkpoint
//! attests what was on disk at restart (the crashed run's unsigned tail).

pub mod anchor;
pub mod chain;
mod event;
pub mod recover;
pub mod sign;
pub mod verify;
mod writer;

pub use event::{
    ApprovalNote, ApprovalOutcome, Event, Outcome, ServerError, SessionInfo, StatementEvent,
};
pub use writer::OpenError;

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use tokio::sync::oneshot;
use writer::{Msg, Writer};

/// The sending side, cheap to clone into every session.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    strict: bool,
    /// Cleared when the writer thread stops (an I/O error, a full disk):
    /// from then on nothing can be recorded, so sessions refuse statements
    /// (fail closed) instead of running them unrecorded.
    alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Owns the writer thread; dropping every `AuditLog` and then calling
/// [`AuditWriter::close`] writes the final checkpoint and fsyncs.
pub struct AuditWriter {
    handle: JoinHandle<std::io::Result<()>>,
}

/// The writer stopped (I/O error, shutdown) before the record was on disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit writer stopped before the record was on disk")]
pub struct WriterGone;

/// Resolves once a record is written and fsynced, or with [`WriterGone`] if
/// that can no longer happen. Never hangs: a writer that dies drops the
/// sending half, which resolves the ack.
#[must_use = "the record is only known to be on disk once the ack resolves"]
pub struct DurableAck {
    rx: oneshot::Receiver<()>,
}

impl Future for DurableAck {
    type Output = Result<(), WriterGone>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.map_err(|_| WriterGone))
    }
}

/// How [`AuditLog::checkpoint_sync`] ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the audit writer stopped before the checkpoint was on disk")]
    WriterGone,
    /// On disk and signed, but the anchor did not take it (an HTTP
    /// collector down): a cut of the log back past it would go unseen.
    #[error("the audit anchor did not take the checkpoint")]
    NotAnchored,
}

/// Resolves once a checkpoint over everything queued before is on disk and
/// (with an anchor) anchored.
#[must_use = "the checkpoint is only known to be anchored once the ack resolves"]
pub struct CheckpointAck {
    rx: oneshot::Receiver<bool>,
}

impl Future for CheckpointAck {
    type Output = Result<(), CheckpointError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| match r {
            Ok(true) => Ok(()),
            Ok(false) => Err(CheckpointError::NotAnchored),
            Err(_) => Err(CheckpointError::WriterGone),
        })
    }
}

impl DurableAck {
    /// Waits on the current thread (not inside an async runtime).
    pub fn wait(self) -> Result<(), WriterGone> {
        self.rx.blocking_recv().map_err(|_| WriterGone)
    }
}

impl AuditLog {
    /// Opens (or recovers) the log and starts the writer thread. Creates the
    /// signing key (mode 0600) if it is missing; refuses a key file that
    /// group or others can read.
    pub fn open(cfg: &crate::config::Audit) -> std::io::Result<(AuditLog, AuditWriter)> {
        AuditLog::open_with(cfg, Vec::new())
    }

    /// [`AuditLog::open`], writing `preamble` right after `log_opened` and
    /// before the opening checkpoint (sqlgate passes `config_loaded`, so the
    /// configuration a run starts with is signed before its first statement).
    pub fn open_with(
        cfg: &crate::config::Audit,
        preamble: Vec<Event>,
    ) -> std::io::Result<(AuditLog, AuditWriter)> {
        let writer = Writer::start(cfg, preamble)?;
        let (tx, rx) = mpsc::channel();
        let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = alive.clone();
        let handle = std::thread::Builder::new()
            .name("sqlgate-audit".into())
            .spawn(move || writer.run(rx, &flag))?;
        let strict = cfg.durability == crate::config::Durability::Strict;
        Ok((AuditLog { tx, strict, alive }, AuditWriter { handle }))
    }

    /// False once the writer has stopped: nothing more reaches the log.
    pub fn alive(&self) -> bool {
        self.alive.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Queues a record (group commit; see the module docs).
    pub fn record(&self, e: Event) {
        if self.tx.send(Msg::Record(e)).is_err() {
            tracing::error!("audit writer is gone; record lost");
        }
    }

    /// Queues a record and returns an ack that resolves once it is fsynced.
    pub fn record_durable(&self, e: Event) -> DurableAck {
        let (ack, rx) = oneshot::channel();
        if self.tx.send(Msg::Durable(e, ack)).is_err() {
            // The message (and with it `ack`) was dropped: `rx` resolves to an error.
            tracing::error!("audit writer is gone; durable record lost");
        }
        DurableAck { rx }
    }

    /// Resolves once every record queued before this call is fsynced.
    pub fn sync(&self) -> DurableAck {
        let (ack, rx) = oneshot::channel();
        if self.tx.send(Msg::Barrier(ack)).is_err() {
            tracing::error!("audit writer is gone");
        }
        DurableAck { rx }
    }

    /// Like [`AuditLog::sync`], after a signed checkpoint over everything
    /// queued before (anchored, with an anchor): what a human decided is
    /// then covered by a signature outside the log before it acts, not in
    /// an unsigned tail a crash leaves open to a cut.
    pub fn checkpoint_sync(&self) -> CheckpointAck {
        let (ack, rx) = oneshot::channel();
        if self.tx.send(Msg::Checkpoint(ack)).is_err() {
            tracing::error!("audit writer is gone");
        }
        CheckpointAck { rx }
    }

    /// True under `durability = "strict"`: the proxy awaits
    /// [`AuditLog::record_durable`] for every statement, not just the held,
    /// approved and denied ones.
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// The `config_loaded` record: digests of the configuration file's bytes
    /// and of the policy, and how many rules it has.
    pub fn config_loaded(config_bytes: &[u8], rules_sha256: &str, rules: usize) -> Event {
        use sha2::Digest;
        Event::Json(serde_json::json!({
            "kind": "config_loaded",
            "config_sha256": chain::hex(&sha2::Sha256::digest(config_bytes)),
            "rules_sha256": rules_sha256,
            "rules": rules,
        }))
    }
}

impl AuditWriter {
    /// Waits for the writer to drain, checkpoint and fsync. Call after every
    /// [`AuditLog`] clone is dropped.
    pub fn close(self) -> std::io::Result<()> {
        self.handle
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("audit writer panicked")))
    }
}
