//! Where a log stands when the writer starts.
//!
//! A crash (kill -9, power loss) can leave the last line half written. The
//! writer cuts everything after the last `\n`, notes how many bytes it cut
//! (`truncated_bytes` in the next `log_opened`), and continues the chain from
//! the last complete record. Nothing before that point is rewritten: the
//! records the crashed run left on disk without a checkpoint are covered by
//! the checkpoint the new run writes right away, so that checkpoint attests
//! "this is what was on disk at restart", not "this is what the crashed run
//! meant to write".
//!
//! The current file is `<path>`; rotated files are `<path>.<first seq>`. When
//! `<path>` is missing or empty (a crash between rotating and writing the new
//! file's first line), the chain continues from the newest rotated file.

use super::chain::{hash_line, Chain};
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
}

/// The state of the log on disk.
#[derive(Debug, Clone)]
pub struct Tail {
    /// Where the next record goes.
    pub chain: Chain,
    /// `kind` of the last complete record.
    pub last_kind: String,
    /// The key that signed last: the last checkpoint's `key_id` or the last
    /// `key_rotation`'s `new_key_id`, whichever is later. `None` if neither
    /// was found in the last file.
    pub key_id: Option<String>,
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

/// Recovers the log at `path`: cuts a partial last line and finds the chain
/// head. `None` when there is no log yet.
pub fn recover(path: &Path) -> Result<Option<Tail>, RecoverError> {
    let io = |source| RecoverError::Io {
        path: path.to_owned(),
        source,
    };
    let mut truncated_bytes = 0;
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
            let mut tail = scan_tail(&mut f, cut, path)?;
            tail.truncated_bytes = truncated_bytes;
            tail.file_first_seq = Some(first_seq(&mut f, path)?);
            return Ok(Some(tail));
        }
    }
    // `<path>` is missing or was only a partial line: continue the newest rotated file.
    let rotated = rotated_files(path).map_err(io)?;
    let Some((_, last)) = rotated.last() else {
        return Ok((truncated_bytes > 0).then(|| Tail {
            chain: Chain::new(),
            last_kind: String::new(),
            key_id: None,
            truncated_bytes,
            file_first_seq: None,
        }));
    };
    let mut f = File::open(last).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if complete_len(&mut f, len).map_err(io)? != len {
        return Err(RecoverError::Corrupt {
            path: last.clone(),
            why: "the rotated file ends in a partial line".into(),
        });
    }
    let mut tail = scan_tail(&mut f, len, last)?;
    tail.truncated_bytes = truncated_bytes;
    Ok(Some(tail))
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

/// Reads backwards from `end` (just after a `\n`) until it has the last
/// record and the last signing key, or the start of the file. The window
/// grows 4× per round; checkpoints come at least every `checkpoint_every`
/// records, so one or two rounds usually do.
fn scan_tail(f: &mut File, end: u64, path: &Path) -> Result<Tail, RecoverError> {
    let io = |source| RecoverError::Io {
        path: path.to_owned(),
        source,
    };
    let corrupt = |why: String| RecoverError::Corrupt {
        path: path.to_owned(),
        why,
    };
    let mut window: u64 = 256 * 1024;
    loop {
        let start = end.saturating_sub(window);
        let mut buf = vec![0u8; (end - start) as usize];
        f.seek(SeekFrom::Start(start)).map_err(io)?;
        f.read_exact(&mut buf).map_err(io)?;
        let body = &buf[..buf.len() - 1]; // drop the final `\n`
        let mut lines = body.rsplit(|&b| b == b'\n');
        // The first piece (in file order) may be a fragment unless we reached the start.
        let total = body.split(|&b| b == b'\n').count();
        if start > 0 && total < 2 {
            // Not even the last line fits the window yet.
            window = window.saturating_mul(4);
            continue;
        }
        let whole = if start == 0 { total } else { total - 1 };
        let last = lines.next().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(last)
            .map_err(|e| corrupt(format!("the last line is not JSON ({e})")))?;
        let seq = v["seq"]
            .as_u64()
            .ok_or_else(|| corrupt("the last record has no `seq`".into()))?;
        let mut tail = Tail {
            chain: Chain::resume(seq, hash_line(last)),
            last_kind: v["kind"].as_str().unwrap_or_default().to_owned(),
            key_id: signer(&v),
            truncated_bytes: 0,
            file_first_seq: None,
        };
        for line in std::iter::once(last).chain(lines).take(whole).skip(1) {
            if tail.key_id.is_some() {
                break;
            }
            // Only lines naming a key matter; skip parsing the rest.
            if memchr(line, b"\"key_id\"") || memchr(line, b"\"new_key_id\"") {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
                    tail.key_id = signer(&v);
                }
            }
        }
        if tail.key_id.is_some() || start == 0 {
            return Ok(tail);
        }
        window = window.saturating_mul(4);
    }
}

fn signer(v: &serde_json::Value) -> Option<String> {
    let field = match v["kind"].as_str()? {
        "checkpoint" => "key_id",
        "key_rotation" => "new_key_id",
        _ => return None,
    };
    v[field].as_str().map(str::to_owned)
}

fn memchr(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
