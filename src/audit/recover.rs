//! Where a log stands when the writer starts, and whether sqlgate wrote it.
//!
//! A crash (kill -9, power loss) can leave the last line half written. The
//! writer cuts everything after the last `\n`, notes how many bytes it cut
//! (`truncated_bytes` in the next `log_opened`), and continues the chain from
//! the last complete record. Nothing before that point is rewritten.
//!
//! The records after the last checkpoint are signed by nobody yet; the
//! checkpoint the new run writes right away will sign them. So before that,
//! recovery reads back from the end of the log to the last checkpoint and
//! checks that every record on the way carries a valid MAC (see
//! [`super::chain`]) and links to the next one, and that the checkpoint's
//! signature verifies under a key sqlgate holds. A record appended by anyone
//! without the key, or a made-up checkpoint, stops the start with an error
//! naming its seq: sqlgate never signs what it did not write.
//!
//! The current file is `<path>`; rotated files are `<path>.<first seq>`. When
//! `<path>` is missing or empty (a crash between rotating and writing the new
//! file's first line), the chain continues from the newest rotated file; the
//! read back goes on into rotated files while no checkpoint is found.

use super::chain::{hash_line, hashes_equal, hex, parse_hash, Chain, Hash, GENESIS};
use super::sign::{checkpoint_message, SigningKey};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("cannot recover the audit log `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot continue the audit log `{path}`: {why}; move the file aside to start a new log"
    )]
    Corrupt { path: PathBuf, why: String },
    #[error(
        "refusing to continue the audit log `{path}`: record {seq} {why}. Someone without the signing key wrote to the log: keep the file as evidence (`sqlgate audit verify` names the unsigned records), move it aside, and start a new log"
    )]
    NotOurs {
        path: PathBuf,
        seq: u64,
        why: String,
    },
}

/// The state of the log on disk.
#[derive(Debug, Clone)]
pub struct Tail {
    /// Where the next record goes.
    pub chain: Chain,
    /// `kind` of the last complete record.
    pub last_kind: String,
    /// Whether the last record is the checkpoint a writer closing the log
    /// writes (`closing: true`): the run before ended cleanly.
    pub closed: bool,
    /// The key that signed last: the last checkpoint's `key_id` or a later
    /// `key_rotation`'s `new_key_id`. `None` if the log has neither.
    pub key_id: Option<String>,
    /// The last checkpoint's seq and line hash, if the log has one.
    pub checkpoint: Option<(u64, Hash)>,
    /// Bytes of a partial last line cut off.
    pub truncated_bytes: u64,
    /// The seq of the first record in `<path>`, if it holds any.
    pub file_first_seq: Option<u64>,
}

/// Rotated files of `path` (`<path>.<first seq>`), ordered by first seq.
pub fn rotated_files(path: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let n = entry.file_name();
        let n = n.to_string_lossy();
        if let Some(seq) = n.strip_prefix(&prefix).and_then(|s| s.parse::<u64>().ok()) {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Recovers the log at `path`: cuts a partial last line, finds the chain
/// head, and checks that everything after the last checkpoint was written
/// by one of `keys` (the current signing key and `[audit] previous_key`).
/// `None` when there is no log yet.
pub fn recover(path: &Path, keys: &[&SigningKey]) -> Result<Option<Tail>, RecoverError> {
    let io = |source| RecoverError::Io {
        path: path.to_owned(),
        source,
    };
    let mut truncated_bytes = 0;
    // Newest first: the live file (when it holds a record), then rotated ones.
    let mut files: Vec<(PathBuf, u64)> = Vec::new();
    let mut file_first_seq = None;
    if path.exists() {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let cut = complete_len(&mut f, len).map_err(io)?;
        if cut < len {
            f.set_len(cut).map_err(io)?;
            f.sync_all().map_err(io)?;
            truncated_bytes = len - cut;
        }
        if cut > 0 {
            file_first_seq = Some(first_seq(&mut f, path)?);
            files.push((path.to_owned(), cut));
        }
    }
    for (_, rotated) in rotated_files(path).map_err(io)?.into_iter().rev() {
        let mut f = File::open(&rotated).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        if complete_len(&mut f, len).map_err(io)? != len {
            return Err(RecoverError::Corrupt {
                path: rotated,
                why: "the rotated file ends in a partial line".into(),
            });
        }
        files.push((rotated, len));
    }
    if files.is_empty() {
        return Ok((truncated_bytes > 0).then(|| Tail {
            chain: Chain::new(),
            last_kind: String::new(),
            closed: false,
            key_id: None,
            checkpoint: None,
            truncated_bytes,
            file_first_seq: None,
        }));
    }
    let mut tail = read_back(&files, keys)?;
    tail.truncated_bytes = truncated_bytes;
    tail.file_first_seq = file_first_seq;
    Ok(Some(tail))
}

/// Reads lines from the newest backwards to the last checkpoint, checking
/// each record's MAC and link, then the checkpoint's signature.
fn read_back(files: &[(PathBuf, u64)], keys: &[&SigningKey]) -> Result<Tail, RecoverError> {
    let mut tail: Option<Tail> = None;
    // The `prev` and seq of the record after the one being read.
    let mut next: Option<(Hash, u64)> = None;
    let mut first_bad: Option<RecoverError> = None;
    'files: for (path, end) in files {
        let not_ours = |seq: u64, why: String| RecoverError::NotOurs {
            path: path.clone(),
            seq,
            why,
        };
        let mut f = File::open(path).map_err(|source| RecoverError::Io {
            path: path.clone(),
            source,
        })?;
        let mut lines = Backwards::new(&mut f, *end);
        while let Some(line) = lines.next().map_err(|source| RecoverError::Io {
            path: path.clone(),
            source,
        })? {
            let v: serde_json::Value =
                serde_json::from_slice(&line).map_err(|e| RecoverError::Corrupt {
                    path: path.clone(),
                    why: format!("a line near the end is not JSON ({e})"),
                })?;
            let (Some(seq), Some(prev)) =
                (v["seq"].as_u64(), v["prev"].as_str().and_then(parse_hash))
            else {
                return Err(RecoverError::Corrupt {
                    path: path.clone(),
                    why: "a record near the end has no `seq` or `prev`".into(),
                });
            };
            let hash = hash_line(&line);
            if let Some((next_prev, next_seq)) = next {
                if next_seq != seq + 1 || !hashes_equal(&next_prev, &hash) {
                    return Err(not_ours(
                        next_seq,
                        format!("does not follow record {seq} in the chain"),
                    ));
                }
            }
            if tail.as_ref().is_some_and(|t| t.checkpoint.is_some()) {
                // The record the checkpoint signs last links to it: a copy
                // of an old checkpoint appended at the end does not.
                break 'files;
            }
            next = Some((prev, seq));
            let kind = v["kind"].as_str().unwrap_or_default();
            let t = tail.get_or_insert_with(|| Tail {
                chain: Chain::resume(seq, hash),
                last_kind: kind.to_owned(),
                closed: kind == "checkpoint" && v["closing"] == true,
                key_id: None,
                checkpoint: None,
                truncated_bytes: 0,
                file_first_seq: None,
            });
            if kind == "checkpoint" {
                let key_id = v["key_id"].as_str().unwrap_or_default();
                let Some(key) = keys.iter().find(|k| k.public().key_id() == key_id) else {
                    return Err(not_ours(
                        seq,
                        format!(
                            "is a checkpoint signed by key `{key_id}`, which is neither `[audit] key` ({}) nor a configured `previous_key` (to change keys, set `previous_key` to the old key file)",
                            keys.first().map(|k| k.public().key_id()).unwrap_or_default()
                        ),
                    ));
                };
                let head_ok = v["head_seq"].as_u64() == seq.checked_sub(1)
                    && v["head"]
                        .as_str()
                        .and_then(parse_hash)
                        .is_some_and(|h| hashes_equal(&h, &prev));
                let closing = v["closing"] == true;
                let msg = checkpoint_message(seq.saturating_sub(1), &prev, closing);
                if !head_ok
                    || !key
                        .public()
                        .verify_b64(msg.as_bytes(), v["sig"].as_str().unwrap_or_default())
                {
                    return Err(not_ours(
                        seq,
                        format!(
                            "is a checkpoint whose signature does not verify with key `{key_id}`"
                        ),
                    ));
                }
                // The signature covers the head (and `closing`), not the
                // line: its MAC covers the rest.
                if !key.record_mac().check(&line) {
                    return Err(not_ours(
                        seq,
                        "is a checkpoint line without a valid MAC (edited after it was written)"
                            .into(),
                    ));
                }
                t.key_id.get_or_insert_with(|| key_id.to_owned());
                t.checkpoint = Some((seq, hash));
                // Read one more line: the link check above, then stop.
                continue;
            }
            if !keys.iter().any(|k| k.record_mac().check(&line)) {
                // Read on: the error names the first such record, not the last.
                first_bad = Some(not_ours(
                    seq,
                    "has no valid MAC (it was not written by this sqlgate, or by an older version before a crash)".into(),
                ));
            }
            if kind == "key_rotation" && t.key_id.is_none() {
                t.key_id = v["new_key_id"].as_str().map(str::to_owned);
            }
        }
    }
    if let Some(e) = first_bad {
        return Err(e);
    }
    // No checkpoint anywhere: the whole log is one run that never got to its
    // first checkpoint, so it must start at the beginning.
    match next {
        _ if tail.as_ref().is_some_and(|t| t.checkpoint.is_some()) => {}
        Some((prev, 0)) if hashes_equal(&prev, &GENESIS) => {}
        Some((prev, seq)) => {
            return Err(RecoverError::NotOurs {
                path: files.last().map(|f| f.0.clone()).unwrap_or_default(),
                seq,
                why: format!(
                    "is the first record found, yet is not record 0 (prev {})",
                    hex(&prev)
                ),
            })
        }
        None => {}
    }
    tail.ok_or_else(|| RecoverError::Corrupt {
        path: files[0].0.clone(),
        why: "no record found".into(),
    })
}

/// Whether the log at `path` (its live and rotated files) holds a
/// `key_rotation` to `key_id`: once a key has taken over, the key before it
/// vouches for nothing more. A plain byte search: `"new_key_id":"…"` with
/// unescaped quotes occurs only as that field, never inside a string value.
pub fn announces(path: &Path, key_id: &str) -> std::io::Result<bool> {
    use std::io::BufRead;
    let needle = format!("\"new_key_id\":\"{key_id}\"");
    let mut files: Vec<PathBuf> = rotated_files(path)?.into_iter().map(|(_, p)| p).collect();
    files.push(path.to_owned());
    for f in files {
        let file = match File::open(&f) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut r = std::io::BufReader::with_capacity(256 * 1024, file);
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if line.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The line hash of record `seq` of the log at `path` (its live and rotated
/// files), `None` when no file holds it. Records are one per line in seq
/// order from each file's first, so it counts lines, reading forward from
/// the file that holds `seq`: only at start-up, when an anchor's last
/// checkpoint is older than the log's.
pub fn line_hash_at(path: &Path, seq: u64) -> Result<Option<Hash>, RecoverError> {
    use std::io::BufRead;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RecoverError::Io { path, source }
    };
    let mut files = rotated_files(path).map_err(io(path))?;
    if path.exists() {
        let mut f = File::open(path).map_err(io(path))?;
        if f.metadata().map_err(io(path))?.len() > 0 {
            files.push((first_seq(&mut f, path)?, path.to_owned()));
        }
    }
    let Some((first, file)) = files.into_iter().rev().find(|(first, _)| *first <= seq) else {
        return Ok(None);
    };
    let f = File::open(&file).map_err(io(&file))?;
    let mut r = std::io::BufReader::with_capacity(256 * 1024, f);
    let mut line = Vec::new();
    for _ in first..=seq {
        line.clear();
        if r.read_until(b'\n', &mut line).map_err(io(&file))? == 0 || line.last() != Some(&b'\n') {
            return Ok(None);
        }
    }
    line.pop();
    let at = serde_json::from_slice::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v["seq"].as_u64());
    Ok((at == Some(seq)).then(|| hash_line(&line)))
}

/// The length up to and including the last `\n`.
fn complete_len(f: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn first_seq(f: &mut File, path: &Path) -> Result<u64, RecoverError> {
    use std::io::BufRead;
    f.seek(SeekFrom::Start(0))
        .map_err(|source| RecoverError::Io {
            path: path.to_owned(),
            source,
        })?;
    let mut line = Vec::new();
    std::io::BufReader::new(&mut *f)
        .read_until(b'\n', &mut line)
        .map_err(|source| RecoverError::Io {
            path: path.to_owned(),
            source,
        })?;
    let v: serde_json::Value =
        serde_json::from_slice(&line).map_err(|e| RecoverError::Corrupt {
            path: path.to_owned(),
            why: format!("the first line is not JSON ({e})"),
        })?;
    v["seq"].as_u64().ok_or_else(|| RecoverError::Corrupt {
        path: path.to_owned(),
        why: "the first record has no `seq`".into(),
    })
}

/// A file's lines from the end backwards, read in chunks: the part of a
/// log after its last checkpoint is bounded by `checkpoint_every`, but one
/// appended by someone else is not, so it is never read whole.
struct Backwards<'f> {
    f: &'f mut File,
    /// Where `buf` starts in the file.
    pos: u64,
    /// Bytes not yet returned (no trailing `\n`).
    buf: Vec<u8>,
    done: bool,
}

impl<'f> Backwards<'f> {
    const CHUNK: u64 = 256 * 1024;

    /// `end` is just after a `\n` (or 0).
    fn new(f: &'f mut File, end: u64) -> Backwards<'f> {
        Backwards {
            f,
            pos: end.saturating_sub(1),
            buf: Vec::new(),
            done: end == 0,
        }
    }

    fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(i) = self.buf.iter().rposition(|&b| b == b'\n') {
                let line = self.buf.split_off(i + 1);
                self.buf.pop();
                return Ok(Some(line));
            }
            if self.pos == 0 {
                self.done = true;
                return Ok(Some(std::mem::take(&mut self.buf)));
            }
            let start = self.pos.saturating_sub(Self::CHUNK);
            let mut chunk = vec![0u8; (self.pos - start) as usize];
            self.f.seek(SeekFrom::Start(start))?;
            self.f.read_exact(&mut chunk)?;
            chunk.extend_from_slice(&self.buf);
            self.buf = chunk;
            self.pos = start;
        }
    }
}
