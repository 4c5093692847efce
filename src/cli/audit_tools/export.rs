//! `audit export --format csv`: one row per record, a fixed column set, RFC 4180.
//!
//! The columns are fixed (not "whatever fields the log has") so a spreadsheet
//! or SIEM mapping written once keeps working as records gain fields. Values
//! are written as stored — no spreadsheet-formula neutralising — because an
//! export is evidence and must not differ from the log.

use super::records::Record;
use std::io::Write;

/// The CSV header, in column order.
pub const COLUMNS: [&str; 22] = [
    "seq",
    "time",
    "kind",
    "session",
    "agent",
    "client",
    "database",
    "command",
    "fingerprint",
    "classes",
    "tables",
    "rule",
    "action",
    "outcome",
    "sqlstate",
    "rows",
    "duration_us",
    "request",
    "approver",
    "approval_outcome",
    "reason",
    "channel",
];

pub fn write_header(out: &mut dyn Write) -> std::io::Result<()> {
    out.write_all(COLUMNS.join(",").as_bytes())?;
    out.write_all(b"\r\n")
}

/// Writes `rec` as one CSV row. Lists are joined with `;`. On approval
/// records, `command`/`fingerprint`/`classes`/`tables` come from the held
/// statements; `approver` is the voter, the deciders or the granter;
/// `approval_outcome` is the statement's approval outcome, the decision's
/// state or the vote (`approve`/`deny`); `reason` is the record's `reason`
/// (or `why` for a refused vote).
pub fn write_row(out: &mut dyn Write, rec: &Record<'_>) -> std::io::Result<()> {
    let held = rec.held();
    let from_held = |f: fn(&super::records::HeldStatement) -> String| {
        held.iter().map(f).collect::<Vec<_>>().join(";")
    };
    let opt = |s: &Option<std::borrow::Cow<'_, str>>| s.as_deref().unwrap_or("").to_owned();
    let list = |l: &Option<Vec<std::borrow::Cow<'_, str>>>| {
        l.as_deref().map(|v| v.join(";")).unwrap_or_default()
    };
    let num = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let cells: [String; 22] = [
        num(rec.seq),
        opt(&rec.time),
        opt(&rec.kind),
        opt(&rec.session),
        opt(&rec.agent),
        opt(&rec.client),
        opt(&rec.database),
        rec.command
            .as_deref()
            .map_or_else(|| from_held(|h| h.command.clone()), str::to_owned),
        rec.fingerprint.as_deref().map_or_else(
            || from_held(|h| h.fingerprint.clone().unwrap_or_else(|| h.text.clone())),
            str::to_owned,
        ),
        rec.classes.as_ref().map_or_else(
            || from_held(|h| h.classes.join(";")),
            |_| list(&rec.classes),
        ),
        rec.tables
            .as_ref()
            .map_or_else(|| from_held(|h| h.tables.join(";")), |_| list(&rec.tables)),
        opt(&rec.rule),
        opt(&rec.action),
        rec.outcome_str().unwrap_or("").to_owned(),
        opt(&rec.sqlstate),
        num(rec.rows),
        num(rec.duration_us),
        rec.request
            .clone()
            .or_else(|| rec.approval.as_ref().and_then(|a| a.request.clone()))
            .unwrap_or_default(),
        approvers(rec),
        rec.approval
            .as_ref()
            .and_then(|a| a.outcome.clone())
            .or_else(|| rec.state.clone())
            .or_else(|| rec.vote.clone())
            .unwrap_or_default(),
        rec.reason
            .clone()
            .or_else(|| rec.why.clone())
            .unwrap_or_default(),
        rec.channel.clone().unwrap_or_default(),
    ];
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write_field(out, c)?;
    }
    out.write_all(b"\r\n")
}

/// Who approved or decided, as one `;`-joined cell.
pub fn approvers(rec: &Record<'_>) -> String {
    if let Some(a) = &rec.approver {
        return a.clone();
    }
    if let Some(a) = &rec.approval {
        return a.by.join(";");
    }
    if let Some(g) = &rec.granted_by {
        return g.clone();
    }
    // A decision: `outcome.by` is a list when approved, a name when denied.
    match rec.outcome.as_ref().and_then(|o| o.get("by")) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(";"),
        _ => String::new(),
    }
}

/// RFC 4180: a field holding a comma, quote, CR or LF is quoted, with quotes
/// doubled. A field a spreadsheet would run as a formula (`=`, `+`, `-`, `@`,
/// tab or CR first: a login name an attacker chose, say) gets a leading `'`,
/// as OWASP advises for CSV injection.
pub fn write_field(out: &mut dyn Write, s: &str) -> std::io::Result<()> {
    let guarded;
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{s}");
        guarded.as_str()
    } else {
        s
    };
    if !s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        return out.write_all(s.as_bytes());
    }
    out.write_all(b"\"")?;
    for (i, part) in s.split('"').enumerate() {
        if i > 0 {
            out.write_all(b"\"\"")?;
        }
        out.write_all(part.as_bytes())?;
    }
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        let f = |s: &str| {
            let mut v = Vec::new();
            super::write_field(&mut v, s).unwrap();
            String::from_utf8(v).unwrap()
        };
        assert_eq!(f("plain"), "plain");
        assert_eq!(f("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(f("@cmd"), "'@cmd");
        assert_eq!(f("a,b"), "\"a,b\"");
        assert_eq!(f("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(f("two\nlines"), "\"two\nlines\"");
    }
}
