//! Server-side messages: reading the few fields sqlgate needs from upstream
//! messages, and encoding the messages sqlgate originates (with pgwire).

use crate::frontend::{DecodeError, Reader};
use bytes::{Bytes, BytesMut};
use pgwire::messages::response::{ErrorResponse, NoticeResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};
use pgwire::messages::Message;

pub const ERROR_RESPONSE: u8 = b'E';
pub const CLOSE_COMPLETE: u8 = b'3';
pub const COPY_IN_RESPONSE: u8 = b'G';
pub const NOTICE_RESPONSE: u8 = b'N';
pub const READY_FOR_QUERY: u8 = b'Z';
pub const COMMAND_COMPLETE: u8 = b'C';
pub const DATA_ROW: u8 = b'D';
pub const EMPTY_QUERY: u8 = b'I';
pub const PORTAL_SUSPENDED: u8 = b's';
pub const COPY_DATA: u8 = b'd';
pub const PARAMETER_STATUS: u8 = b'S';
pub const BACKEND_KEY_DATA: u8 = b'K';
pub const AUTHENTICATION: u8 = b'R';
pub const PARSE_COMPLETE: u8 = b'1';
pub const BIND_COMPLETE: u8 = b'2';
pub const PARAMETER_DESCRIPTION: u8 = b't';
pub const ROW_DESCRIPTION: u8 = b'T';
pub const NO_DATA: u8 = b'n';
pub const FUNCTION_CALL_RESPONSE: u8 = b'V';

/// The fields of an ErrorResponse or NoticeResponse that sqlgate looks at.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    pub severity: &'a [u8],
    pub code: &'a [u8],
    pub message: &'a [u8],
}

/// Reads `S`/`V`, `C` and `M` from an ErrorResponse/NoticeResponse frame.
pub fn error_fields(frame: &[u8]) -> Result<ErrorFields<'_>, DecodeError> {
    let mut r = Reader::new(frame.get(5..).ok_or(DecodeError::Truncated)?);
    let mut f = ErrorFields::default();
    loop {
        let kind = r.u8()?;
        if kind == 0 {
            return Ok(f);
        }
        let v = r.cstr()?;
        match kind {
            b'V' => f.severity = v,
            b'S' if f.severity.is_empty() => f.severity = v,
            b'C' => f.code = v,
            b'M' => f.message = v,
            _ => {}
        }
    }
}

/// The tag of a CommandComplete frame (`SELECT 5`, `INSERT 0 1`, …).
pub fn command_tag(frame: &[u8]) -> Result<&[u8], DecodeError> {
    Reader::new(frame.get(5..).ok_or(DecodeError::Truncated)?).cstr()
}

/// The row count a CommandComplete tag reports, for the commands that report one.
pub fn rows_from_tag(tag: &[u8]) -> Option<u64> {
    let counted = [
        &b"SELECT"[..],
        b"INSERT",
        b"UPDATE",
        b"DELETE",
        b"MERGE",
        b"COPY",
        b"FETCH",
        b"MOVE",
    ];
    if !counted.iter().any(|c| tag.starts_with(c)) {
        return None;
    }
    let last = tag.rsplit(|&b| b == b' ').next()?;
    std::str::from_utf8(last).ok()?.parse().ok()
}

/// `DataRow`: the first column's value (`None` for NULL).
pub fn first_column(frame: &[u8]) -> Result<Option<&[u8]>, DecodeError> {
    let body = frame.get(5..).ok_or(DecodeError::Truncated)?;
    let n = i16::from_be_bytes(
        body.get(..2)
            .ok_or(DecodeError::Truncated)?
            .try_into()
            .unwrap_or_default(),
    );
    if n < 1 {
        return Err(DecodeError::Truncated);
    }
    let len = i32::from_be_bytes(
        body.get(2..6)
            .ok_or(DecodeError::Truncated)?
            .try_into()
            .unwrap_or_default(),
    );
    if len < 0 {
        return Ok(None);
    }
    body.get(6..6 + len as usize)
        .map(Some)
        .ok_or(DecodeError::Truncated)
}

/// The transaction status byte of a ReadyForQuery frame (`I`, `T` or `E`).
pub fn ready_status(frame: &[u8]) -> Result<u8, DecodeError> {
    Reader::new(frame.get(5..).ok_or(DecodeError::Truncated)?).u8()
}

/// The request code of an Authentication frame and the data after it.
pub fn authentication(frame: &[u8]) -> Result<(i32, &[u8]), DecodeError> {
    let mut r = Reader::new(frame.get(5..).ok_or(DecodeError::Truncated)?);
    let code = r.i32()?;
    Ok((code, r.rest()))
}

/// `name` and `value` of a ParameterStatus frame.
pub fn parameter_status(frame: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut r = Reader::new(frame.get(5..).ok_or(DecodeError::Truncated)?);
    Ok((r.cstr()?, r.cstr()?))
}

/// A RowDescription frame with each field's format code set as a Bind's
/// result-format codes set them (none: all text; one: all; else one per
/// field, as PostgreSQL checks). A Describe of a statement answers with
/// format 0 everywhere; the same Describe of a portal answers with its
/// Bind's formats.
pub fn row_description_with_formats(frame: &[u8], formats: &[i16]) -> Result<Vec<u8>, DecodeError> {
    let mut out = frame.to_vec();
    let mut r = Reader::new(frame.get(5..).ok_or(DecodeError::Truncated)?);
    let n = r.i16()?.max(0) as usize;
    if formats.len() > 1 && formats.len() != n {
        return Err(DecodeError::Truncated);
    }
    for i in 0..n {
        r.cstr()?;
        // Table OID (4), column number (2), type OID (4), size (2), modifier (4).
        r.take(16)?;
        let at = frame.len() - r.rest().len();
        r.i16()?;
        let f = match formats.len() {
            0 => 0,
            1 => formats[0],
            _ => formats[i],
        };
        out[at..at + 2].copy_from_slice(&f.to_be_bytes());
    }
    Ok(out)
}

/// pid and secret key of a BackendKeyData frame (protocol 3.0: 4-byte key).
pub fn backend_key_data(frame: &[u8]) -> Result<(i32, i32), DecodeError> {
    let mut r = Reader::new(frame.get(5..).ok_or(DecodeError::Truncated)?);
    Ok((r.i32()?, r.i32()?))
}

/// Severity of an error sqlgate reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Notice,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Notice => "NOTICE",
        }
    }
}

/// An error or notice that sqlgate itself reports to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<'a> {
    pub severity: Severity,
    pub code: &'a str,
    pub message: &'a str,
    pub detail: Option<&'a str>,
    pub hint: Option<&'a str>,
}

impl<'a> Report<'a> {
    pub fn new(severity: Severity, code: &'a str, message: &'a str) -> Self {
        Report {
            severity,
            code,
            message,
            detail: None,
            hint: None,
        }
    }
    pub fn detail(mut self, d: &'a str) -> Self {
        self.detail = Some(d);
        self
    }
    pub fn hint(mut self, h: &'a str) -> Self {
        self.hint = Some(h);
        self
    }

    /// Encodes the report as an ErrorResponse (or NoticeResponse for notices).
    pub fn encode(&self) -> Bytes {
        // PostgreSQL's own messages carry NUL-free text; ours must too, or the
        // C string would end early on the client's side.
        let clean = |s: &str| s.replace('\0', " ");
        let sev = self.severity.as_str().to_owned();
        let mut fields = vec![
            (b'S', sev.clone()),
            (b'V', sev),
            (b'C', clean(self.code)),
            (b'M', clean(self.message)),
        ];
        if let Some(d) = self.detail {
            fields.push((b'D', clean(d)));
        }
        if let Some(h) = self.hint {
            fields.push((b'H', clean(h)));
        }
        let mut buf = BytesMut::new();
        let r = if self.severity == Severity::Notice {
            NoticeResponse::new(fields).encode(&mut buf)
        } else {
            ErrorResponse::new(fields).encode(&mut buf)
        };
        // INVARIANT: encoding our own small, NUL-free fields cannot fail.
        debug_assert!(r.is_ok());
        buf.freeze()
    }
}

fn encode(m: impl Message) -> Bytes {
    let mut buf = BytesMut::new();
    // INVARIANT: these messages are built from our own values and are small.
    let r = m.encode(&mut buf);
    debug_assert!(r.is_ok());
    buf.freeze()
}

pub fn ready_for_query(status: u8) -> Bytes {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    encode(ReadyForQuery::new(status))
}

pub fn auth_ok() -> Bytes {
    encode(Authentication::Ok)
}

pub fn auth_sasl(mechanisms: &[&str]) -> Bytes {
    encode(Authentication::SASL(
        mechanisms.iter().map(|m| m.to_string()).collect(),
    ))
}

pub fn auth_sasl_continue(data: &[u8]) -> Bytes {
    encode(Authentication::SASLContinue(Bytes::copy_from_slice(data)))
}

pub fn auth_sasl_final(data: &[u8]) -> Bytes {
    encode(Authentication::SASLFinal(Bytes::copy_from_slice(data)))
}

pub fn parameter_status_message(name: &str, value: &str) -> Bytes {
    encode(ParameterStatus::new(name.to_owned(), value.to_owned()))
}

pub fn backend_key_data_message(pid: i32, key: i32) -> Bytes {
    encode(BackendKeyData::new(pid, SecretKey::I32(key)))
}

/// Tells a client asking for protocol 3.x (x > 0) that we speak 3.0, and which
/// `_pq_.` options we ignored.
pub fn negotiate_protocol_version(unsupported: Vec<String>) -> Bytes {
    encode(NegotiateProtocolVersion::new(0, unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trip() {
        let b = Report::new(Severity::Error, "42501", "denied by rule `x`")
            .hint("ask a dba")
            .encode();
        assert_eq!(b[0], b'E');
        let f = error_fields(&b).unwrap();
        assert_eq!(f.code, b"42501");
        assert_eq!(f.severity, b"ERROR");
        assert_eq!(f.message, b"denied by rule `x`");
        let n = Report::new(Severity::Notice, "01000", "held").encode();
        assert_eq!(n[0], b'N');
    }

    #[test]
    fn row_description_takes_the_bind_formats() {
        let mut body = 2i16.to_be_bytes().to_vec();
        for name in [&b"id"[..], b"name"] {
            body.extend_from_slice(name);
            body.push(0);
            body.extend_from_slice(&[0; 16]);
            body.extend_from_slice(&0i16.to_be_bytes());
        }
        let mut frame = vec![b'T'];
        frame.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        frame.extend_from_slice(&body);
        let formats = |f: &[u8]| {
            let at = [5 + 2 + 3 + 16, 5 + 2 + 3 + 18 + 5 + 16];
            at.map(|i| i16::from_be_bytes([f[i], f[i + 1]]))
        };
        assert_eq!(
            formats(&row_description_with_formats(&frame, &[1]).unwrap()),
            [1, 1]
        );
        assert_eq!(
            formats(&row_description_with_formats(&frame, &[0, 1]).unwrap()),
            [0, 1]
        );
        assert_eq!(
            formats(&row_description_with_formats(&frame, &[]).unwrap()),
            [0, 0]
        );
        assert!(row_description_with_formats(&frame, &[1, 1, 1]).is_err());
        assert!(row_description_with_formats(&frame[..frame.len() - 3], &[1]).is_err());
    }

    #[test]
    fn tags_and_status() {
        assert_eq!(rows_from_tag(b"SELECT 5"), Some(5));
        assert_eq!(rows_from_tag(b"INSERT 0 3"), Some(3));
        assert_eq!(rows_from_tag(b"CREATE TABLE"), None);
        let z = ready_for_query(b'T');
        assert_eq!(ready_status(&z), Ok(b'T'));
        assert_eq!(
            backend_key_data(&backend_key_data_message(5, 6)),
            Ok((5, 6))
        );
        assert!(error_fields(b"E\0\0\0\x05").is_err());
    }
}
