//! Offline verification of an audit log: `sqlgate audit verify`.
//!
//! The algorithm, for a reimplementation:
//!
//! 1. Order the files by the `seq` of their first line (rotated files are
//!    `<path>.<first seq>`; the live file is `<path>`). Read lines in order;
//!    a line is the bytes up to `\n`. A last line without `\n` → `truncated`.
//! 2. Each line must be a JSON object with `v` = 1, `seq` (u64), `prev`
//!    (64 lowercase hex), `time` (string) and `kind` (string).
//! 3. The first record must be seq 0 with `prev` = 64 zeros. After that each
//!    `seq` must be the previous + 1: a lower or repeated seq → `inserted`; a
//!    higher one → `reordered` if the expected seq turns up within the next
//!    [`LOOKAHEAD`] lines, else `missing`.
//! 4. `prev` must equal SHA-256 of the previous line's bytes (compared in
//!    constant time), else the previous record was `modified`.
//! 5. `key_rotation`: `new_key_id` must be the id of `new_public_key`, and
//!    `sig_new` must verify under it over
//!    `sqlgate-key-rotation-v1:{old_key_id or ""}:{new_key_id}:{seq-1}:{prev}`;
//!    a present `sig_old` must verify under the (trusted) old key.
//! 6. `checkpoint`: `head_seq` = seq − 1 and `head` = `prev`; `key_id` must
//!    name a trusted key, and `sig` must verify over
//!    `sqlgate-checkpoint-v1:{head_seq}:{head}` (with `"closing": true`,
//!    the only value it may have: `sqlgate-closing-checkpoint-v1:…`), else
//!    `forged signature`.
//! 7. Trusted keys are the `--public-key`s given, plus a new key whose
//!    rotation record carries a valid `sig_old` by a key already trusted;
//!    a rotation retires the key it replaces for every later record.
//!    With no `--public-key`, every key announced in a `key_rotation` is
//!    trusted and the summary warns that no trust anchor was given: that
//!    detects corruption and careless edits, not a forger who re-signs.
//! 8. Records after the last checkpoint are an `unsigned tail`, an error
//!    unless the log is known to be open (`--allow-open`, which also skips a
//!    partial last line of the last file: the writer may be mid-write).
//!
//! 9. With an anchor (`--anchor`, see [`super::anchor`]): the record at each
//!    anchored checkpoint's (or key rotation's) seq must be byte-identical to the anchor's line,
//!    else `anchor mismatch` (the log's record is checked as any other, so
//!    an anchor line needs no signature check of its own); a log whose last
//!    record is before the anchor's latest checkpoint was `cut` when that
//!    line is signed by a key trusted at the log's end (or vouched for by
//!    an anchored key rotation after it), else the anchor is `not ours`.
//! 10. Each record's `mac` is not checked here: its key is secret. sqlgate
//!     checks it at start-up for the records no checkpoint covers yet, the
//!     only ones a forger could add undetected by the signatures.
//!
//! Known limit: a checkpoint's own line (its `time`) is covered only by the
//! next checkpoint, so the final checkpoint's `time` is not signed; it must
//! be an RFC 3339 time, and a checkpoint may hold no field but `v`, `seq`,
//! `prev`, `time`, `kind`, `key_id`, `head_seq`, `head`, `sig`, `closing`
//! and `mac` (else `malformed`).

use super::chain::{hash_line, hashes_equal, parse_hash, Hash, GENESIS};
use super::sign::{checkpoint_message, rotation_message, PublicKey};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// How far ahead to look for a record whose seq was skipped, to tell a
/// reorder from a deletion.
pub const LOOKAHEAD: usize = 1024;

/// What is wrong, naming the first bad sequence number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("modified: record {seq} does not hash to the `prev` of record {next}")]
    Modified { seq: u64, next: u64 },
    #[error("modified: record {seq} is not a valid record ({why})")]
    Malformed { seq: u64, why: String },
    #[error("missing: record {seq} is not in the log (the record after {} is {found})", seq.wrapping_sub(1))]
    Missing { seq: u64, found: u64 },
    #[error("missing: the log starts at record {found}, not 0 (give every file of the log)")]
    MissingStart { found: u64 },
    #[error("reordered: record {seq} comes after record {after}")]
    Reordered { seq: u64, after: u64 },
    #[error("inserted: record {seq} appears again after record {after}")]
    Inserted { seq: u64, after: u64 },
    #[error("inserted: records {seq}..{last} end this file and also start the next one: records were added to one of the two")]
    Overlap { seq: u64, last: u64 },
    #[error("forged signature: the {what} at record {seq} {why}")]
    ForgedSignature {
        seq: u64,
        what: &'static str,
        why: String,
    },
    #[error("truncated: record {seq} is cut off ({bytes} bytes without a newline)")]
    Truncated { seq: u64, bytes: usize },
    #[error("truncated: the log holds no record")]
    Empty,
    #[error("unsigned tail: records {from}..{to} are after the last checkpoint (a log that is still being written needs --allow-open)")]
    UnsignedTail { from: u64, to: u64 },
    #[error("cut: the log ends at record {last} but its anchor holds a checkpoint at record {anchored}: records were removed from the end")]
    CutBeforeAnchor { last: u64, anchored: u64 },
    #[error("anchor mismatch: record {seq} is not the checkpoint the anchor holds for that seq")]
    AnchorMismatch { seq: u64 },
    #[error("anchor not ours: the anchor's checkpoint at record {seq}, past the log's end, is not signed by a key the log trusts")]
    AnchorUnsigned { seq: u64 },
    #[error("cannot read: {0}")]
    Io(String),
}

impl Problem {
    /// The first bad sequence number, when there is one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Problem::Modified { seq, .. }
            | Problem::Malformed { seq, .. }
            | Problem::Missing { seq, .. }
            | Problem::Reordered { seq, .. }
            | Problem::Inserted { seq, .. }
            | Problem::Overlap { seq, .. }
            | Problem::ForgedSignature { seq, .. }
            | Problem::Truncated { seq, .. }
            | Problem::AnchorMismatch { seq }
            | Problem::AnchorUnsigned { seq } => Some(*seq),
            Problem::CutBeforeAnchor { last, .. } => Some(last.saturating_add(1)),
            Problem::MissingStart { .. } => Some(0),
            Problem::UnsignedTail { from, .. } => Some(*from),
            Problem::Empty | Problem::Io(_) => None,
        }
    }
}

/// A failed verification: what, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub problem: Problem,
    pub file: PathBuf,
    /// 1-based line number in `file` (0 when not about one line).
    pub line: u64,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (`{}`", self.problem, self.file.display())?;
        if self.line > 0 {
            write!(f, " line {}", self.line)?;
        }
        write!(f, ")")
    }
}

impl std::error::Error for Failure {}

/// What to trust.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The trust anchors (`--public-key`); empty = trust keys the log announces.
    pub keys: Vec<PublicKey>,
    /// Accept an unsigned tail (a live log).
    pub allow_open: bool,
    /// Checkpoints kept outside the log (`--anchor`).
    pub anchor: BTreeMap<u64, super::anchor::Anchored>,
}

/// What a successful verification saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_time: String,
    pub last_time: String,
    pub checkpoints: u64,
    /// key_id → how many checkpoints it signed.
    pub signers: BTreeMap<String, u64>,
    /// Starts after a clean close, or of a new log (`log_opened` with
    /// reason `start`).
    pub starts: u64,
    /// Restarts after a crash (`log_opened` with reason `recovery`).
    pub recoveries: u64,
    /// Bytes of partial lines cut off by those recoveries.
    pub truncated_bytes: u64,
    /// Records after the last checkpoint (only with `allow_open`).
    pub open_tail: Option<(u64, u64)>,
    pub warnings: Vec<String>,
}

struct Line {
    file: usize,
    no: u64,
    bytes: Vec<u8>,
    complete: bool,
}

/// Lines of several files in order, with lookahead.
struct Lines {
    files: Vec<PathBuf>,
    readers: Vec<Option<BufReader<File>>>,
    current: usize,
    line_no: u64,
    ahead: VecDeque<Line>,
}

impl Lines {
    fn read(&mut self) -> Result<Option<Line>, Failure> {
        while self.current < self.readers.len() {
            if self.readers[self.current].is_none() {
                let f = File::open(&self.files[self.current])
                    .map_err(|e| io_failure(&self.files[self.current], e))?;
                self.readers[self.current] = Some(BufReader::with_capacity(256 * 1024, f));
                self.line_no = 0;
            }
            let mut bytes = Vec::new();
            let reader = self.readers[self.current].as_mut().into_iter().next();
            let n = match reader {
                Some(r) => r
                    .read_until(b'\n', &mut bytes)
                    .map_err(|e| io_failure(&self.files[self.current], e))?,
                None => 0,
            };
            if n == 0 {
                self.readers[self.current] = None;
                self.current += 1;
                continue;
            }
            self.line_no += 1;
            let complete = bytes.last() == Some(&b'\n');
            if complete {
                bytes.pop();
            }
            return Ok(Some(Line {
                file: self.current,
                no: self.line_no,
                bytes,
                complete,
            }));
        }
        Ok(None)
    }

    fn next(&mut self) -> Result<Option<Line>, Failure> {
        match self.ahead.pop_front() {
            Some(l) => Ok(Some(l)),
            None => self.read(),
        }
    }

    /// Is a line with this seq among the next [`LOOKAHEAD`] lines?
    fn seq_ahead(&mut self, seq: u64) -> Result<bool, Problem> {
        while self.ahead.len() < LOOKAHEAD {
            match self.read().map_err(|f| f.problem)? {
                Some(l) => self.ahead.push_back(l),
                None => break,
            }
        }
        Ok(self.ahead.iter().any(|l| {
            serde_json::from_slice::<serde_json::Value>(&l.bytes)
                .ok()
                .and_then(|v| v["seq"].as_u64())
                == Some(seq)
        }))
    }
}

fn io_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure {
        problem: Problem::Io(e.to_string()),
        file: path.to_owned(),
        line: 0,
    }
}

/// The seq of a file's first line, for ordering.
fn first_seq(path: &Path) -> Result<Option<u64>, Failure> {
    let f = File::open(path).map_err(|e| io_failure(path, e))?;
    let mut line = Vec::new();
    BufReader::new(f)
        .read_until(b'\n', &mut line)
        .map_err(|e| io_failure(path, e))?;
    Ok(serde_json::from_slice::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v["seq"].as_u64()))
}

/// A record's common fields.
struct Common {
    seq: u64,
    prev: Hash,
    time: String,
    kind: String,
    value: serde_json::Value,
}

fn parse_common(bytes: &[u8]) -> Result<Common, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    if value["v"].as_u64() != Some(1) {
        return Err("`v` is not 1".into());
    }
    let seq = value["seq"].as_u64().ok_or("no `seq`")?;
    let prev = value["prev"]
        .as_str()
        .and_then(parse_hash)
        .ok_or("`prev` is not 64 lowercase hex digits")?;
    let time = value["time"].as_str().ok_or("no `time`")?.to_owned();
    let kind = value["kind"].as_str().ok_or("no `kind`")?.to_owned();
    Ok(Common {
        seq,
        prev,
        time,
        kind,
        value,
    })
}

/// Verifies one log made of `files` (in any order).
pub fn verify_files(files: &[PathBuf], opts: &Options) -> Result<Summary, Failure> {
    let mut ordered = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        ordered.push((first_seq(f)?.unwrap_or(u64::MAX), i, f.clone()));
    }
    ordered.sort();
    let files: Vec<PathBuf> = ordered.into_iter().map(|(_, _, f)| f).collect();
    let mut lines = Lines {
        readers: files.iter().map(|_| None).collect(),
        files,
        current: 0,
        line_no: 0,
        ahead: VecDeque::new(),
    };
    Verifier::new(opts).run(&mut lines)
}

struct Verifier<'a> {
    opts: &'a Options,
    /// key_id → key, for signatures.
    trusted: BTreeMap<String, PublicKey>,
    summary: Summary,
    /// seq, hash and location of the previous record.
    last: Option<(u64, Hash, usize, u64)>,
    /// The seq of the last valid checkpoint.
    covered: Option<u64>,
}

impl<'a> Verifier<'a> {
    fn new(opts: &'a Options) -> Verifier<'a> {
        let trusted = opts.keys.iter().map(|k| (k.key_id(), k.clone())).collect();
        let mut summary = Summary::default();
        if opts.keys.is_empty() {
            summary.warnings.push(
                "no --public-key given: signatures were checked against the keys the log announces itself, which shows the log is intact but not who wrote it".into(),
            );
        }
        Verifier {
            opts,
            trusted,
            summary,
            last: None,
            covered: None,
        }
    }

    fn run(mut self, lines: &mut Lines) -> Result<Summary, Failure> {
        while let Some(line) = lines.next()? {
            if !line.complete && self.opts.allow_open && line.file + 1 == lines.files.len() {
                // A live log: the writer may be in the middle of this line.
                self.summary.warnings.push(format!(
                    "the last line is still being written ({} bytes); not checked (--allow-open)",
                    line.bytes.len()
                ));
                break;
            }
            if let Err(problem) = self.check_line(&line, lines) {
                // A modification shows at the next record; point at the changed one.
                let (problem, file, no) = match (problem, self.last) {
                    (p @ Problem::Modified { .. }, Some((_, _, file, no))) => (p, file, no),
                    // A file whose first records the file before already
                    // holds: records were added to the end of that one
                    // (a rotated file ends where the next begins). Point
                    // at the first of them there.
                    (Problem::Inserted { seq, after }, Some((_, _, file, no)))
                        if file != line.file && line.no == 1 =>
                    {
                        let first = no.saturating_sub(after - seq);
                        (Problem::Overlap { seq, last: after }, file, first)
                    }
                    (p, _) => (p, line.file, line.no),
                };
                return Err(Failure {
                    problem,
                    file: lines.files[file].clone(),
                    line: no,
                });
            }
        }
        let Some((last_seq, ..)) = self.last else {
            return Err(Failure {
                problem: Problem::Empty,
                file: lines.files.first().cloned().unwrap_or_default(),
                line: 0,
            });
        };
        self.summary.files = lines.files.len();
        self.summary.last_seq = last_seq;
        // Anchored lines past the log's end: the log was cut if they are
        // signed by a key the log trusts by its end (or a rotation among
        // them vouches for), else the anchor is not ours.
        if let Some((&anchored, _)) = self.opts.anchor.last_key_value() {
            if anchored > last_seq {
                let problem = match self.anchored_past(last_seq) {
                    Ok(()) => Problem::CutBeforeAnchor {
                        last: last_seq,
                        anchored,
                    },
                    Err(seq) => Problem::AnchorUnsigned { seq },
                };
                return Err(Failure {
                    problem,
                    file: lines.files.last().cloned().unwrap_or_default(),
                    line: 0,
                });
            }
        }
        let from = self.covered.map_or(0, |c| c + 1);
        if from <= last_seq {
            let problem = Problem::UnsignedTail { from, to: last_seq };
            if !self.opts.allow_open {
                return Err(Failure {
                    problem,
                    file: lines.files.last().cloned().unwrap_or_default(),
                    line: 0,
                });
            }
            self.summary.open_tail = Some((from, last_seq));
            self.summary.warnings.push(format!(
                "records {from}..{last_seq} are not covered by a checkpoint yet (--allow-open)"
            ));
        }
        Ok(self.summary)
    }

    fn check_line(&mut self, line: &Line, lines: &mut Lines) -> Result<(), Problem> {
        let expected = self.last.map_or(0, |(s, ..)| s + 1);
        if !line.complete {
            return Err(Problem::Truncated {
                seq: expected,
                bytes: line.bytes.len(),
            });
        }
        let rec =
            parse_common(&line.bytes).map_err(|why| Problem::Malformed { seq: expected, why })?;
        match self.last {
            None if rec.seq != 0 => return Err(Problem::MissingStart { found: rec.seq }),
            None if !hashes_equal(&rec.prev, &GENESIS) => {
                return Err(Problem::Malformed {
                    seq: 0,
                    why: "the first record's `prev` is not 64 zeros".into(),
                })
            }
            None => {}
            Some((last_seq, last_hash, ..)) => {
                if rec.seq <= last_seq {
                    return Err(Problem::Inserted {
                        seq: rec.seq,
                        after: last_seq,
                    });
                }
                if rec.seq > expected {
                    return Err(if lines.seq_ahead(expected)? {
                        Problem::Reordered {
                            seq: expected,
                            after: rec.seq,
                        }
                    } else {
                        Problem::Missing {
                            seq: expected,
                            found: rec.seq,
                        }
                    });
                }
                if !hashes_equal(&rec.prev, &last_hash) {
                    return Err(Problem::Modified {
                        seq: last_seq,
                        next: rec.seq,
                    });
                }
            }
        }
        match rec.kind.as_str() {
            "checkpoint" => self.checkpoint(&rec)?,
            "key_rotation" => self.key_rotation(&rec)?,
            "log_opened" if rec.value["reason"] == "start" => self.summary.starts += 1,
            "log_opened" if rec.value["reason"] == "recovery" => {
                self.summary.recoveries += 1;
                self.summary.truncated_bytes += rec.value["truncated_bytes"].as_u64().unwrap_or(0);
            }
            _ => {}
        }
        if self.last.is_none() {
            self.summary.first_seq = rec.seq;
            self.summary.first_time = rec.time.clone();
        }
        let hash = hash_line(&line.bytes);
        if let Some(anchored) = self.opts.anchor.get(&rec.seq) {
            if !hashes_equal(&anchored.hash, &hash) {
                return Err(Problem::AnchorMismatch { seq: rec.seq });
            }
        }
        self.summary.records += 1;
        self.summary.last_time = rec.time;
        self.last = Some((rec.seq, hash, line.file, line.no));
        Ok(())
    }

    /// Checks the signatures of the anchor's lines after `last_seq`, in
    /// order, as the log's own would be; `Err` names the first that fails.
    fn anchored_past(&mut self, last_seq: u64) -> Result<(), u64> {
        let opts = self.opts;
        for (&seq, a) in opts.anchor.range(last_seq + 1..) {
            let ok = match parse_common(&a.line) {
                Ok(rec) if rec.seq == seq && rec.kind == "checkpoint" => {
                    self.checkpoint(&rec).is_ok()
                }
                Ok(rec) if rec.seq == seq && rec.kind == "key_rotation" => {
                    self.key_rotation(&rec).is_ok()
                }
                _ => false,
            };
            if !ok {
                return Err(seq);
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, rec: &Common) -> Result<(), Problem> {
        let forged = |why: String| Problem::ForgedSignature {
            seq: rec.seq,
            what: "checkpoint",
            why,
        };
        let v = &rec.value;
        // The last checkpoint's own line is signed by nothing after it:
        // what it may hold besides what its signature covers is fixed, so
        // nothing can be added to it unnoticed (review H, H5).
        const FIELDS: &[&str] = &[
            "v", "seq", "prev", "time", "kind", "key_id", "head_seq", "head", "sig", "closing",
            "mac",
        ];
        let malformed = |why: String| Problem::Malformed { seq: rec.seq, why };
        if let Some(extra) = v
            .as_object()
            .and_then(|o| o.keys().find(|k| !FIELDS.contains(&k.as_str())))
        {
            return Err(malformed(format!(
                "the checkpoint has a field no writer writes: `{extra}`"
            )));
        }
        if humantime::parse_rfc3339(&rec.time).is_err() {
            return Err(malformed(
                "the checkpoint's `time` is not an RFC 3339 time".into(),
            ));
        }
        let head_seq = rec.seq.checked_sub(1);
        if v["head_seq"].as_u64() != head_seq {
            return Err(Problem::Malformed {
                seq: rec.seq,
                why: "the checkpoint's `head_seq` is not its seq - 1".into(),
            });
        }
        let head = v["head"].as_str().and_then(parse_hash);
        if !head.is_some_and(|h| hashes_equal(&h, &rec.prev)) {
            return Err(Problem::Malformed {
                seq: rec.seq,
                why: "the checkpoint's `head` is not its `prev`".into(),
            });
        }
        let key_id = v["key_id"].as_str().unwrap_or_default();
        let Some(key) = self.trusted.get(key_id) else {
            return Err(forged(format!(
                "is signed by key `{key_id}`, which is not a trusted key"
            )));
        };
        let closing = match v.get("closing") {
            None => false,
            Some(serde_json::Value::Bool(true)) => true,
            Some(_) => {
                return Err(Problem::Malformed {
                    seq: rec.seq,
                    why: "the checkpoint's `closing` is not `true`".into(),
                })
            }
        };
        let msg = checkpoint_message(head_seq.unwrap_or(0), &rec.prev, closing);
        if !key.verify_b64(msg.as_bytes(), v["sig"].as_str().unwrap_or_default()) {
            return Err(forged(format!(
                "has a signature that does not verify with key `{key_id}`"
            )));
        }
        // The checkpoint itself is not after the last checkpoint: only records
        // past it form an unsigned tail.
        self.covered = Some(rec.seq);
        self.summary.checkpoints += 1;
        *self.summary.signers.entry(key_id.to_owned()).or_default() += 1;
        Ok(())
    }

    fn key_rotation(&mut self, rec: &Common) -> Result<(), Problem> {
        let forged = |why: String| Problem::ForgedSignature {
            seq: rec.seq,
            what: "key rotation",
            why,
        };
        let v = &rec.value;
        let new = v["new_public_key"]
            .as_str()
            .and_then(|t| PublicKey::parse(t).ok())
            .ok_or_else(|| forged("has no valid `new_public_key`".into()))?;
        let new_id = new.key_id();
        if v["new_key_id"].as_str() != Some(new_id.as_str()) {
            return Err(forged(
                "names a `new_key_id` that is not its key's id".into(),
            ));
        }
        let old_id = v["old_key_id"].as_str().unwrap_or_default();
        let msg = rotation_message(old_id, &new_id, rec.seq.saturating_sub(1), &rec.prev);
        if !new.verify_b64(msg.as_bytes(), v["sig_new"].as_str().unwrap_or_default()) {
            return Err(forged("has a `sig_new` that does not verify".into()));
        }
        let mut vouched = self.opts.keys.is_empty();
        if let Some(sig_old) = v["sig_old"].as_str() {
            match self.trusted.get(old_id) {
                Some(old) if old.verify_b64(msg.as_bytes(), sig_old) => vouched = true,
                Some(_) => return Err(forged("has a `sig_old` that does not verify".into())),
                None => {}
            }
        }
        // The key it replaces vouches for nothing after this record (as at
        // start-up): records forged later with a retired, perhaps leaked,
        // key are not trusted.
        if !old_id.is_empty() && old_id != new_id {
            self.trusted.remove(old_id);
        }
        if vouched {
            self.trusted.entry(new_id).or_insert(new);
        } else if !self.trusted.contains_key(&new_id) {
            self.summary.warnings.push(format!(
                "record {}: key `{new_id}` ({}) is announced but not trusted: give it with --public-key if it is yours",
                rec.seq,
                new.to_text()
            ));
        }
        Ok(())
    }
}
