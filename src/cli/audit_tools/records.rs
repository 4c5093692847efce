//! Reading an audit log (one or more files) one record at a time.
//!
//! Logs can be far larger than memory, so records are streamed: one reused
//! line buffer, and fields borrowed from it wherever the JSON has no escapes.
//! Evidence tools must not silently skip what they cannot read, so a line that
//! is not a JSON record is an error naming `file:line`, never a warning.

use serde::Deserialize;
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// What can go wrong reading a log.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("name at least one audit log file")]
    NoFiles,
    #[error("cannot read `{file}`: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("`{file}:{line}` is not a JSON audit record: {why}")]
    NotRecord {
        file: String,
        line: u64,
        why: String,
    },
}

/// The fields the tools look at; anything else in a record is ignored (and
/// still kept byte for byte in `raw`). `Cow` borrows from the line buffer
/// unless the string has escapes.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Record<'a> {
    pub seq: Option<u64>,
    #[serde(borrow)]
    pub time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub session: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub client: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub database: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub command: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub fingerprint: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub classes: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    pub tables: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    pub rule: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub action: Option<Cow<'a, str>>,
    /// A string on statements (`ok`, `denied`, …); an object on
    /// `approval_decision` (`{"outcome": "approved", "by": […]}`).
    pub outcome: Option<serde_json::Value>,
    #[serde(borrow)]
    pub sqlstate: Option<Cow<'a, str>>,
    pub rows: Option<u64>,
    pub duration_us: Option<u64>,
    pub approval: Option<StatementApproval>,
    pub request: Option<String>,
    pub approver: Option<String>,
    pub vote: Option<String>,
    pub reason: Option<String>,
    pub why: Option<String>,
    pub channel: Option<String>,
    pub statements: Option<Statements>,
    pub votes: Option<Vec<CastVote>>,
    pub state: Option<String>,
    pub created: Option<String>,
    pub decided: Option<String>,
    pub wait_ms: Option<u64>,
    pub granted_by: Option<String>,
    pub file: Option<String>,
    pub key_id: Option<String>,
    pub head_seq: Option<u64>,
    pub old_key_id: Option<String>,
    pub new_key_id: Option<String>,
    pub rules: Option<u64>,
}

/// `statements` is a count on `session_end` and the held statements on
/// approval records.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Statements {
    Count(u64),
    Held(Vec<HeldStatement>),
}

/// One held statement inside an approval record.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HeldStatement {
    pub command: String,
    /// The statement as approvers saw it (the fingerprint unless the rule shows literals).
    pub text: String,
    pub fingerprint: Option<String>,
    pub classes: Vec<String>,
    pub tables: Vec<String>,
}

/// A vote as listed inside `approval_decision`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CastVote {
    pub approver: String,
    pub approve: bool,
    pub reason: Option<String>,
    pub channel: String,
    pub at: Option<String>,
}

/// The `approval` note on a statement record.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StatementApproval {
    pub request: Option<String>,
    pub outcome: Option<String>,
    pub by: Vec<String>,
}

impl Record<'_> {
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("")
    }

    pub fn is_statement(&self) -> bool {
        self.kind() == "statement"
    }

    /// The statement outcome (`ok`, `denied`, …), when `outcome` is a string.
    pub fn outcome_str(&self) -> Option<&str> {
        self.outcome.as_ref().and_then(|o| o.as_str())
    }

    pub fn held(&self) -> &[HeldStatement] {
        match &self.statements {
            Some(Statements::Held(h)) => h,
            _ => &[],
        }
    }
}

/// Calls `each(file, line_no, raw_line, record)` for every record of `files`,
/// in log order (see [`order`]). `raw_line` is the line exactly as stored,
/// including its `\n` when it had one.
pub fn for_each<F>(files: &[PathBuf], mut each: F) -> anyhow::Result<()>
where
    F: FnMut(&Path, u64, &[u8], &Record<'_>) -> anyhow::Result<()>,
{
    let mut buf = Vec::with_capacity(4096);
    for path in order(files)? {
        let mut r = open(&path)?;
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = r.read_until(b'\n', &mut buf).map_err(|e| io(&path, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let rec = parse(&path, line_no, &buf)?;
            each(&path, line_no, &buf, &rec)?;
        }
    }
    Ok(())
}

fn parse<'a>(path: &Path, line: u64, raw: &'a [u8]) -> Result<Record<'a>, ReadError> {
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    let bad = |why: String| ReadError::NotRecord {
        file: path.display().to_string(),
        line,
        why,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("the line is empty".into()));
    }
    // INVARIANT: a record is a JSON object; anything else (an array, a bare
    // string) would deserialize into an all-default `Record` and pass unseen.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(bad("expected a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|e| bad(e.to_string()))
}

/// The order to read `files` in: rotated files of one log are sorted by the
/// `seq` of their first record (so `audit.log.2 audit.log.1 audit.log` reads
/// right whatever the shell's glob order); otherwise — some file has no
/// `seq`, or two start at the same one (different logs) — as given.
pub fn order(files: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    if files.is_empty() {
        return Err(ReadError::NoFiles.into());
    }
    let mut firsts = Vec::with_capacity(files.len());
    for f in files {
        let mut line = Vec::new();
        open(f)?
            .read_until(b'\n', &mut line)
            .map_err(|e| io(f, e))?;
        let seq = if line.is_empty() {
            None
        } else {
            parse(f, 1, &line)?.seq
        };
        firsts.push(seq);
    }
    let mut keyed: Vec<(u64, &PathBuf)> = Vec::with_capacity(files.len());
    for (seq, f) in firsts.iter().zip(files) {
        match seq {
            Some(s) => keyed.push((*s, f)),
            None => return Ok(files.to_vec()),
        }
    }
    keyed.sort_by_key(|(s, _)| *s);
    if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
        return Ok(files.to_vec());
    }
    Ok(keyed.into_iter().map(|(_, f)| f.clone()).collect())
}

fn open(path: &Path) -> Result<BufReader<File>, ReadError> {
    let f = File::open(path).map_err(|e| io(path, e))?;
    Ok(BufReader::with_capacity(256 * 1024, f))
}

fn io(path: &Path, source: std::io::Error) -> ReadError {
    ReadError::Io {
        file: path.display().to_string(),
        source,
    }
}
