//! `sqlgate audit search|export|report`: reading the audit log as evidence.
//!
//! These tools only read. They stream — a log is often far larger than memory
//! — and they never skip what they cannot read: a line that is not a record is
//! an error naming `file:line`, because an auditor must be able to trust that
//! what a search or report leaves out was not in the log. Each command has a
//! testable core (`search_to`, `export_to`, `report_to`) that writes to any
//! `Write`; the public commands call it with stdout or `--out`.
//!
//! Record format: `notes/format.md` (v1). Fields the tools don't know are
//! ignored, so newer records still read.

mod export;
mod filter;
mod records;
mod report;
mod show;

use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

/// `sqlgate audit search FILE…`: the records that match every filter given.
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// Log files; rotated files of one log are read in `seq` order.
    pub files: Vec<PathBuf>,
    /// Only this agent (exact name).
    #[arg(long)]
    pub agent: Option<String>,
    /// From this time: RFC 3339, a date (`2026-11-21`) or an age (`2h`).
    #[arg(long)]
    pub since: Option<String>,
    /// Up to this time (inclusive; a date means the end of that day).
    #[arg(long)]
    pub until: Option<String>,
    /// Statements of this class (read, write, ddl, …).
    #[arg(long)]
    pub class: Option<String>,
    /// Statements with this action: allow, deny or require_approval.
    #[arg(long)]
    pub action: Option<String>,
    /// Statements with this outcome: ok, denied, error, not_executed or a SQLSTATE.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Print the matching records exactly as stored (JSON lines).
    #[arg(long)]
    pub json: bool,
}

/// `sqlgate audit export --format jsonl|csv FILE…`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Log files; rotated files of one log are read in `seq` order.
    pub files: Vec<PathBuf>,
    /// `jsonl` (the records byte for byte) or `csv` (a fixed column set).
    #[arg(long, default_value = "jsonl")]
    pub format: String,
}

/// `sqlgate audit report --since --until [--out FILE]`: an HTML evidence report.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Log files; rotated files of one log are read in `seq` order.
    pub files: Vec<PathBuf>,
    /// Start of the period (RFC 3339, a date or an age); default: the log's start.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the period (inclusive); default: the log's end.
    #[arg(long)]
    pub until: Option<String>,
    /// Write the report here instead of stdout.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Public key(s) to verify checkpoints with (`ed25519:…`).
    #[arg(long = "public-key")]
    pub public_key: Vec<String>,
    /// The log's anchor file (`[audit] anchor`), as for `audit verify`: a
    /// log cut back to an earlier checkpoint fails against it.
    #[arg(long)]
    pub anchor: Option<PathBuf>,
}

/// A bad command-line value.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("`{0}` is not an export format: use jsonl or csv")]
    Format(String),
}

pub fn search(a: SearchArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    search_to(&a, &mut out)?;
    out.flush().context("writing the results")
}

/// Writes the records matching `a`'s filters to `out`, one line each.
pub fn search_to(a: &SearchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let period = filter::Period::parse(a.since.as_deref(), a.until.as_deref(), SystemTime::now())?;
    let f = filter::Filter::new(
        a.agent.as_deref(),
        period,
        a.class.as_deref(),
        a.action.as_deref(),
        a.outcome.as_deref(),
    )?;
    records::for_each(&a.files, |path, line, raw, rec| {
        if !f.matches(&path.display().to_string(), line, rec)? {
            return Ok(());
        }
        if a.json {
            write_raw(out, raw)?;
        } else {
            out.write_all(show::line(rec).as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })
}

pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    export_to(&a, &mut out)?;
    out.flush().context("writing the export")
}

/// Writes every record of `a.files` to `out` in `a.format`.
pub fn export_to(a: &ExportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match a.format.as_str() {
        "jsonl" => records::for_each(&a.files, |_, _, raw, _| Ok(write_raw(out, raw)?)),
        "csv" => {
            export::write_header(out)?;
            records::for_each(&a.files, |_, _, _, rec| Ok(export::write_row(out, rec)?))
        }
        other => Err(ToolError::Format(other.to_owned()).into()),
    }
}

/// A record exactly as stored. A last line without its `\n` gets one, or the
/// next file's first record would run into it.
fn write_raw(out: &mut dyn Write, raw: &[u8]) -> std::io::Result<()> {
    out.write_all(raw)?;
    if !raw.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub fn report(a: ReportArgs) -> anyhow::Result<()> {
    match &a.out {
        Some(path) => {
            // Written beside and renamed into place, so a failed run never
            // leaves a half report that looks complete.
            let mut tmp = path.clone().into_os_string();
            tmp.push(".partial");
            let tmp = PathBuf::from(tmp);
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&tmp)
                    .with_context(|| format!("cannot create `{}`", tmp.display()))?,
            );
            report_to(&a, &mut f)?;
            f.flush()
                .with_context(|| format!("cannot write `{}`", tmp.display()))?;
            drop(f);
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot write `{}`", path.display()))
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            report_to(&a, &mut out)?;
            out.flush().context("writing the report")
        }
    }
}

/// Writes the HTML evidence report for `a` to `out`.
pub fn report_to(a: &ReportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let now = SystemTime::now();
    let period = filter::Period::parse(a.since.as_deref(), a.until.as_deref(), now)?;
    let ev = report::Evidence::gather(&a.files, &period)?;
    let end = |t: Option<SystemTime>, open: &str| {
        t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|| open.to_owned())
    };
    let verification = verification_summary(&a.files, &a.public_key, a.anchor.as_deref());
    let html = report::render(
        &ev,
        &report::Header {
            period: format!(
                "{} – {}",
                end(period.since, "start of log"),
                end(period.until, "end of log")
            ),
            generated: humantime::format_rfc3339_seconds(now).to_string(),
            files: &a.files,
            verification: &verification,
        },
    );
    out.write_all(html.as_bytes())?;
    Ok(())
}

/// The verification result the report shows: `audit verify` with the
/// given keys and anchor, in one line.
pub fn verification_summary(
    files: &[PathBuf],
    keys: &[String],
    anchor: Option<&std::path::Path>,
) -> String {
    use crate::audit::sign::PublicKey;
    use crate::audit::verify::{verify_files, Options};
    let keys: Result<Vec<_>, _> = keys.iter().map(|k| PublicKey::parse(k)).collect();
    let keys = match keys {
        Ok(k) => k,
        Err(e) => return format!("verification: not run: bad public key: {e}"),
    };
    let anchor = match anchor.map(crate::audit::anchor::load).transpose() {
        Ok(a) => a,
        Err(e) => return format!("verification: FAILED: {e}"),
    };
    let trusted = !keys.is_empty();
    let anchored = anchor.is_some();
    match verify_files(
        files,
        &Options {
            keys,
            anchor: anchor.unwrap_or_default(),
            ..Options::default()
        },
    ) {
        Ok(s) => {
            let mut out = format!(
                "verification: passed — {} records in {} file(s), seq {}..{}, {} signed checkpoint(s)",
                s.records, s.files, s.first_seq, s.last_seq, s.checkpoints
            );
            if !trusted {
                out.push_str(" (no --public-key given: signatures were checked against the keys the log announces, not against a trusted key)");
            }
            if anchored {
                out.push_str("; the log reaches its anchor's latest checkpoint");
            } else {
                out.push_str(" (no --anchor given: a log cut back to an earlier checkpoint cannot be told from a whole one)");
            }
            out
        }
        Err(f) => match f.problem.seq() {
            Some(seq) => format!("verification: FAILED at seq {seq}: {f}"),
            None => format!("verification: FAILED: {f}"),
        },
    }
}
