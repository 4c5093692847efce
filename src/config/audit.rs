//! `[audit]`: where the attested log goes, how it is signed, checkpointed
//! and anchored.

use super::{duration, ConfigError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) path: PathBuf,
    pub(super) key: Option<PathBuf>,
    pub(super) durability: Option<Durability>,
    pub(super) checkpoint_every: Option<u64>,
    pub(super) checkpoint_interval: Option<String>,
    pub(super) max_file_bytes: Option<u64>,
    pub(super) previous_key: Option<PathBuf>,
    pub(super) anchor: Option<String>,
    pub(super) anchor_required: Option<bool>,
}

/// When statement records reach the disk (see the README's audit section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Allowed statements are group-committed within a short window; held,
    /// approved and denied ones are always on disk before they go on.
    #[default]
    Batch,
    /// Every statement's record is on disk before its result is released.
    Strict,
}

/// The audit log's settings.
#[derive(Debug, Clone)]
pub struct Audit {
    pub path: PathBuf,
    /// Ed25519 signing key; created (mode 0600) on first start if missing.
    pub key: PathBuf,
    pub durability: Durability,
    /// A signed checkpoint after this many records…
    pub checkpoint_every: u64,
    /// …or this long after the last one, whichever comes first (and at shutdown).
    pub checkpoint_interval: Duration,
    /// Rotate to a new file (chain continues) past this size; 0 = never.
    pub max_file_bytes: u64,
    /// The key that signed the log before `key` (a key change): recovery
    /// checks the old tail with it and the rotation record carries its
    /// signature.
    pub previous_key: Option<PathBuf>,
    /// Where every checkpoint also goes, outside the log's own files.
    pub anchor: Option<Anchor>,
    /// Serve only once the anchor took a checkpoint over this run's start:
    /// a run the anchor never saw (its collector down throughout) can't
    /// then be cut from the log unseen.
    pub anchor_required: bool,
}

impl Audit {
    /// A log at `path` signed with `key`, every other setting the default.
    pub fn new(path: PathBuf, key: PathBuf) -> Audit {
        Audit {
            path,
            key,
            durability: Durability::Batch,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            max_file_bytes: 0,
            previous_key: None,
            anchor: None,
            anchor_required: false,
        }
    }
}

/// A copy of every checkpoint kept where whoever can cut the log cannot
/// (`[audit] anchor`): a log that ends before its anchor's last checkpoint
/// was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// An append-only file, meant for another volume or host mount; read back
    /// at start-up, so a cut log is refused.
    File(PathBuf),
    /// The local syslog socket (`/dev/log`), facility `log audit`: for a
    /// collector that ships it elsewhere. Not read back at start-up.
    Syslog(PathBuf),
    /// An HTTP(S) endpoint each checkpoint line is POSTed to (retried, in
    /// the background). Not read back at start-up.
    Http(String),
}

impl Anchor {
    /// `syslog`, `syslog:<socket path>`, an http(s) URL or a file path.
    fn parse(text: &str, abs: impl Fn(&Path) -> PathBuf) -> Result<Anchor, String> {
        let text = text.trim();
        if text == "syslog" {
            return Ok(Anchor::Syslog(PathBuf::from("/dev/log")));
        }
        if let Some(socket) = text.strip_prefix("syslog:") {
            return Ok(Anchor::Syslog(abs(Path::new(socket))));
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return Ok(Anchor::Http(text.to_owned()));
        }
        if text.is_empty() || text.contains("://") {
            return Err(format!(
                "`audit.anchor` = {text:?}: expected a file path, `syslog`, `syslog:<socket>` or an http(s) URL"
            ));
        }
        Ok(Anchor::File(abs(Path::new(text))))
    }
}

/// The validated `[audit]`; relative paths resolve with `abs`.
pub(super) fn build(raw: &RawAudit, abs: &dyn Fn(&Path) -> PathBuf) -> Result<Audit, ConfigError> {
    let invalid = ConfigError::Invalid;
    Ok(Audit {
        path: abs(&raw.path),
        // Default: `signing.key` beside the log.
        key: match &raw.key {
            Some(k) => abs(k),
            None => abs(&raw.path.with_file_name("signing.key")),
        },
        durability: raw.durability.unwrap_or_default(),
        checkpoint_every: raw.checkpoint_every.unwrap_or(1000).max(1),
        checkpoint_interval: duration(
            "audit.checkpoint_interval",
            raw.checkpoint_interval.clone(),
            Duration::from_secs(10),
        )?,
        max_file_bytes: raw.max_file_bytes.unwrap_or(0),
        previous_key: raw.previous_key.as_deref().map(abs),
        anchor: match &raw.anchor {
            Some(a) => Some(Anchor::parse(a, abs).map_err(invalid)?),
            None => None,
        },
        anchor_required: match raw.anchor_required {
            Some(true) if raw.anchor.is_none() => {
                return Err(invalid(
                    "`audit.anchor_required = true` needs `audit.anchor`".to_owned(),
                ))
            }
            r => r.unwrap_or(false),
        },
    })
}
