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

// RowDescription and DataRow are read here rather than with pgwire's
// decoders: those copy each frame into owned buffers, and these run on
// every result row while a rewrite plan is active; these borrow the frame.

/// One column of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column<'a> {
    pub name: &'a [u8],
    /// The table's OID and the column's attribute number when the column
    /// is a plain table column, else 0 and 0.
    pub table: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub type_len: i16,
    pub type_mod: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// The columns of a RowDescription frame (tag and length first).
pub fn row_description(frame: &[u8]) -> Result<Vec<Column<'_>>, DecodeError> {
    let mut r = Reader::new(frame.get(5..).ok_or(DecodeError::Truncated)?);
    let n = r.i16()?.max(0) as usize;
    // Each column takes at least 19 bytes: no allocation beyond the frame's.
    let mut cols = Vec::with_capacity(n.min(r.rest().len() / 19));
    for _ in 0..n {
        cols.push(Column {
            name: r.cstr()?,
            table: r.i32()? as u32,
            attnum: r.i16()?,
            type_oid: r.i32()? as u32,
            type_len: r.i16()?,
            type_mod: r.i32()?,
            format: r.i16()?,
        });
    }
    Ok(cols)
}

/// The fields of a DataRow frame (tag and length first), in order: `None`
/// for SQL NULL.
pub fn data_row_fields(frame: &[u8]) -> Result<DataRowFields<'_>, DecodeError> {
    let mut r = Reader::new(frame.get(5..).ok_or(DecodeError::Truncated)?);
    let n = r.i16()?;
    if n < 0 {
        return Err(DecodeError::Truncated);
    }
    Ok(DataRowFields {
        left: n as usize,
        r,
    })
}

/// See [`data_row_fields`]. Yields an error (then nothing) if the frame is
/// shorter than its counts say.
pub struct DataRowFields<'a> {
    left: usize,
    r: Reader<'a>,
}

impl<'a> DataRowFields<'a> {
    /// How many fields are still to come.
    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl<'a> Iterator for DataRowFields<'a> {
    type Item = Result<Option<&'a [u8]>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let field = self.r.i32().and_then(|len| match len {
            -1 => Ok(None),
            l if l < 0 => Err(DecodeError::Truncated),
            l => self.r.take(l as usize).map(Some),
        });
        if field.is_err() {
            self.left = 0;
        }
        Some(field)
    }
}

/// Appends a DataRow of `fields` to `out`. The row must hold at most
/// 32,767 fields and fit a frame (what a server's own row does).
pub fn data_row<'f>(
    fields: impl IntoIterator<Item = Option<&'f [u8]>>,
    out: &mut BytesMut,
) -> Result<(), DecodeError> {
    use bytes::BufMut;
    let start = out.len();
    out.put_u8(DATA_ROW);
    out.put_i32(0);
    out.put_i16(0);
    let mut n: usize = 0;
    for f in fields {
        match f {
            None => out.put_i32(-1),
            Some(v) => {
                out.put_i32(i32::try_from(v.len()).map_err(|_| DecodeError::Truncated)?);
                out.extend_from_slice(v);
            }
        }
        n += 1;
    }
    let len = i32::try_from(out.len() - start - 1).map_err(|_| DecodeError::Truncated)?;
    let n = i16::try_from(n).map_err(|_| DecodeError::Truncated)?;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    out[start + 5..start + 7].copy_from_slice(&n.to_be_bytes());
    Ok(())
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
    fn row_description_reads_every_column_field() {
        let mut body = 1i16.to_be_bytes().to_vec();
        body.extend_from_slice(b"email\0");
        body.extend_from_slice(&16384u32.to_be_bytes());
        body.extend_from_slice(&3i16.to_be_bytes());
        body.extend_from_slice(&25u32.to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        let mut frame = vec![b'T'];
        frame.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        frame.extend_from_slice(&body);
        let cols = row_description(&frame).unwrap();
        assert_eq!(
            cols,
            [Column {
                name: b"email",
                table: 16384,
                attnum: 3,
                type_oid: 25,
                type_len: -1,
                type_mod: -1,
                format: 1
            }]
        );
        assert!(row_description(&frame[..frame.len() - 1]).is_err());
        // A count larger than the frame holds is an error, not a large allocation.
        let mut lying = frame.clone();
        lying[5..7].copy_from_slice(&i16::MAX.to_be_bytes());
        assert!(row_description(&lying).is_err());
    }

    #[test]
    fn data_row_fields_round_trip() {
        let fields: [Option<&[u8]>; 4] = [Some(b"1"), None, Some(b""), Some(&[0xff; 300])];
        let mut out = BytesMut::new();
        data_row(fields, &mut out).unwrap();
        assert_eq!(out[0], DATA_ROW);
        assert_eq!(
            i32::from_be_bytes(out[1..5].try_into().unwrap()) as usize,
            out.len() - 1
        );
        let read: Vec<_> = data_row_fields(&out).unwrap().map(Result::unwrap).collect();
        assert_eq!(read, fields);
        // Truncated: the error comes once, then nothing.
        let mut it = data_row_fields(&out[..out.len() - 1]).unwrap();
        assert_eq!(it.len(), 4);
        let rest: Vec<_> = it.by_ref().collect();
        assert_eq!(rest.len(), 4);
        assert!(rest[3].is_err());
        assert!(it.next().is_none());
        // A negative length other than -1 is malformed.
        let mut bad = out.to_vec();
        bad[7..11].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(data_row_fields(&bad).unwrap().next().unwrap().is_err());
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
