//! Strict views of what a client sends.
//!
//! Names (statement and portal names) are kept as raw bytes: comparing them
//! exactly is what the server does. SQL text must be valid UTF-8, because the
//! classifier must read precisely what the server will execute.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;
/// Startup packets are small; PostgreSQL itself caps them at 10000 bytes.
pub const MAX_STARTUP_PACKET: usize = 10_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message is truncated")]
    Truncated,
    #[error("string is not NUL-terminated")]
    Unterminated,
    #[error("SQL text is not valid UTF-8")]
    NotUtf8,
    #[error("invalid startup packet length {0}")]
    BadStartupLength(i32),
    #[error("unsupported protocol version {0}.{1}")]
    UnsupportedVersion(u16, u16),
}

/// The first packet of a connection (it has no tag byte).
#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        key: i32,
    },
    /// Protocol 3.x; `minor` may be above 0 (the caller negotiates down).
    Startup {
        minor: u16,
        params: Vec<(String, String)>,
    },
}

/// How long the startup packet at the front of `buf` is, once 4 bytes are in.
pub fn startup_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_PACKET as i32).contains(&len) {
        return Err(DecodeError::BadStartupLength(len));
    }
    Ok(Some(len as usize))
}

/// Decodes a whole startup packet (length prefix included).
pub fn decode_startup(packet: &[u8]) -> Result<StartupPacket, DecodeError> {
    let mut r = Reader::new(packet.get(4..).ok_or(DecodeError::Truncated)?);
    let code = r.i32()?;
    match code {
        SSL_REQUEST_CODE => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            let pid = r.i32()?;
            let key = r.i32()?;
            Ok(StartupPacket::Cancel { pid, key })
        }
        _ => {
            let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
            if major != 3 {
                return Err(DecodeError::UnsupportedVersion(major, minor));
            }
            let mut params = Vec::new();
            loop {
                let k = r.cstr()?;
                if k.is_empty() {
                    break;
                }
                let v = r.cstr()?;
                // Parameter names and values are compared and forwarded as
                // text: invalid UTF-8 here is refused, not repaired.
                let k = std::str::from_utf8(k).map_err(|_| DecodeError::NotUtf8)?;
                let v = std::str::from_utf8(v).map_err(|_| DecodeError::NotUtf8)?;
                params.push((k.to_owned(), v.to_owned()));
            }
            Ok(StartupPacket::Startup { minor, params })
        }
    }
}

/// `Query`: the SQL text.
pub fn query_text(frame: &[u8]) -> Result<&str, DecodeError> {
    sql(query_bytes(frame)?)
}

/// `Query`: the SQL text's bytes, in the session's client encoding.
pub fn query_bytes(frame: &[u8]) -> Result<&[u8], DecodeError> {
    Reader::new(body(frame)?).cstr()
}

/// `Parse`: statement name and the SQL text's bytes, in the session's
/// client encoding.
pub fn parse_message_bytes(frame: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut r = Reader::new(body(frame)?);
    let name = r.cstr()?;
    Ok((name, r.cstr()?))
}

/// `Parse`: statement name and SQL text (parameter types are not needed).
pub fn parse_message(frame: &[u8]) -> Result<(&[u8], &str), DecodeError> {
    let (name, text) = parse_message_bytes(frame)?;
    Ok((name, sql(text)?))
}

/// `Parse`: the parameter type OIDs it gives (0: unspecified).
pub fn parse_param_types(frame: &[u8]) -> Result<Vec<u32>, DecodeError> {
    let mut r = Reader::new(body(frame)?);
    r.cstr()?;
    r.cstr()?;
    let n = r.i16()?.max(0);
    (0..n).map(|_| r.i32().map(|o| o as u32)).collect()
}

/// `Bind`: portal name and statement name.
pub fn bind_names(frame: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut r = Reader::new(body(frame)?);
    let portal = r.cstr()?;
    let stmt = r.cstr()?;
    Ok((portal, stmt))
}

/// One Bind parameter: its format (0 text, 1 binary) and value (`None` is NULL).
pub type Parameter<'a> = (i16, Option<&'a [u8]>);

/// `Bind`: the parameter values, with each one's format.
pub fn bind_parameters(frame: &[u8]) -> Result<Vec<Parameter<'_>>, DecodeError> {
    let mut r = Reader::new(body(frame)?);
    r.cstr()?;
    r.cstr()?;
    Ok(formatted_values(&mut r)?.1)
}

/// Format codes, then values, each with its format: the shape Bind and
/// FunctionCall share. One format code applies to all; none means text.
/// Also how many format codes there were.
fn formatted_values<'a>(r: &mut Reader<'a>) -> Result<(usize, Vec<Parameter<'a>>), DecodeError> {
    let nformats = r.i16()?.max(0) as usize;
    let mut formats = Vec::with_capacity(nformats.min(64));
    for _ in 0..nformats {
        formats.push(r.i16()?);
    }
    let n = r.i16()?.max(0) as usize;
    let mut out = Vec::with_capacity(n.min(64));
    for i in 0..n {
        let format = match formats.len() {
            0 => 0,
            1 => formats[0],
            _ => *formats.get(i).ok_or(DecodeError::Truncated)?,
        };
        let len = r.i32()?;
        let value = if len < 0 {
            None
        } else {
            Some(r.take(len as usize)?)
        };
        out.push((format, value));
    }
    Ok((formats.len(), out))
}

/// `Bind`: the result-column format codes.
pub fn bind_result_formats(frame: &[u8]) -> Result<Vec<i16>, DecodeError> {
    Ok(bind_result_format_codes(frame)?
        .chunks_exact(2)
        .map(|c| i16::from_be_bytes([c[0], c[1]]))
        .collect())
}

/// A Bind's result-format codes as they are on the wire (two bytes each,
/// big-endian): no allocation, for the per-Bind path.
pub fn bind_result_format_codes(frame: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = Reader::new(body(frame)?);
    r.cstr()?;
    r.cstr()?;
    let nformats = r.i16()?.max(0) as usize;
    r.take(2 * nformats)?;
    let nparams = r.i16()?.max(0);
    for _ in 0..nparams {
        let len = r.i32()?;
        if len > 0 {
            r.take(len as usize)?;
        }
    }
    let n = r.i16()?.max(0) as usize;
    r.take(2 * n)
}

/// `FunctionCall` (the fast path): the function's OID and its arguments,
/// each with its format (0 text, 1 binary; `None` is NULL). Exactly the
/// message's bytes are read; anything after the result format, or format
/// codes that fit neither one-for-all nor one-per-argument, is refused, as
/// the server refuses it.
pub fn function_call(frame: &[u8]) -> Result<(u32, Vec<Parameter<'_>>), DecodeError> {
    let mut r = Reader::new(body(frame)?);
    let oid = r.i32()? as u32;
    let (nformats, args) = formatted_values(&mut r)?;
    if !(nformats <= 1 || nformats == args.len()) {
        return Err(DecodeError::Truncated);
    }
    r.i16()?;
    if !r.rest().is_empty() {
        return Err(DecodeError::Truncated);
    }
    Ok((oid, args))
}

/// `Execute`: portal name and row limit (0 = all).
pub fn execute_message(frame: &[u8]) -> Result<(&[u8], i32), DecodeError> {
    let mut r = Reader::new(body(frame)?);
    let portal = r.cstr()?;
    Ok((portal, r.i32()?))
}

/// `Describe` and `Close`: the kind (`S` statement / `P` portal) and name.
pub fn target(frame: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    let mut r = Reader::new(body(frame)?);
    let kind = r.u8()?;
    Ok((kind, r.cstr()?))
}

/// `SASLInitialResponse` (a `p` message answering AuthenticationSASL): the
/// mechanism name and the client's first message. The data length is an
/// i32 that must match exactly what follows (`-1`, "no data", is refused:
/// SCRAM always sends a client-first message).
pub fn sasl_initial(frame: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut r = Reader::new(body(frame)?);
    let mech = r.cstr()?;
    let len = r.i32()?;
    let data = r.rest();
    if len < 0 || data.len() != len as usize {
        return Err(DecodeError::Truncated);
    }
    Ok((mech, data))
}

/// The same message with its leading name fields replaced: `skip` bytes after
/// the header stay as they are (the kind byte of Describe/Close), then the
/// next `names.len()` C strings become `names`; everything after them (SQL
/// text, parameters, formats) is copied byte for byte.
pub fn with_names(frame: &[u8], skip: usize, names: &[&[u8]]) -> Result<Vec<u8>, DecodeError> {
    let mut out = BytesMut::new();
    write_with_names(frame, skip, names, &mut out)?;
    Ok(out.into())
}

/// [`with_names`], appended to `out` (no allocation beyond `out` growing).
/// On error nothing is written.
pub fn write_with_names(
    frame: &[u8],
    skip: usize,
    names: &[&[u8]],
    out: &mut BytesMut,
) -> Result<(), DecodeError> {
    let body = body(frame)?;
    let head = body.get(..skip).ok_or(DecodeError::Truncated)?;
    let mut r = Reader::new(&body[skip..]);
    for _ in names {
        r.cstr()?;
    }
    let rest = r.rest();
    let len = 4 + skip + names.iter().map(|n| n.len() + 1).sum::<usize>() + rest.len();
    out.reserve(len + 1);
    out.put_u8(frame[0]);
    out.put_i32(len as i32);
    out.extend_from_slice(head);
    for n in names {
        debug_assert!(!n.contains(&0));
        out.extend_from_slice(n);
        out.put_u8(0);
    }
    out.extend_from_slice(rest);
    Ok(())
}

/// `Parse` of `sql` as statement `name`, with no parameter types, appended
/// to `out`.
pub fn write_parse(name: &[u8], sql: &[u8], out: &mut BytesMut) {
    debug_assert!(!name.contains(&0) && !sql.contains(&0));
    out.put_u8(b'P');
    out.put_i32((4 + name.len() + 1 + sql.len() + 1 + 2) as i32);
    out.extend_from_slice(name);
    out.put_u8(0);
    out.extend_from_slice(sql);
    out.put_u8(0);
    out.put_i16(0);
}

/// `Bind` of portal `portal` to statement `stmt` with no parameters and
/// text results, appended to `out`.
pub fn write_empty_bind(portal: &[u8], stmt: &[u8], out: &mut BytesMut) {
    debug_assert!(!portal.contains(&0) && !stmt.contains(&0));
    out.put_u8(b'B');
    out.put_i32((4 + portal.len() + 1 + stmt.len() + 1 + 6) as i32);
    out.extend_from_slice(portal);
    out.put_u8(0);
    out.extend_from_slice(stmt);
    out.put_u8(0);
    out.put_i16(0);
    out.put_i16(0);
    out.put_i16(0);
}

/// `Describe` of a statement (`S`) or portal (`P`), appended to `out`.
pub fn write_describe(kind: u8, name: &[u8], out: &mut BytesMut) {
    debug_assert!(!name.contains(&0));
    out.put_u8(b'D');
    out.put_i32((4 + 1 + name.len() + 1) as i32);
    out.put_u8(kind);
    out.extend_from_slice(name);
    out.put_u8(0);
}

/// `Close` of a statement (`S`) or portal (`P`), appended to `out`.
pub fn write_close(kind: u8, name: &[u8], out: &mut BytesMut) {
    debug_assert!(!name.contains(&0));
    out.put_u8(b'C');
    out.put_i32((4 + 1 + name.len() + 1) as i32);
    out.put_u8(kind);
    out.extend_from_slice(name);
    out.put_u8(0);
}

fn body(frame: &[u8]) -> Result<&[u8], DecodeError> {
    frame.get(5..).ok_or(DecodeError::Truncated)
}

fn sql(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)
}

/// A bounds-checked cursor: every read returns an error instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(b)
    }
    pub(crate) fn i32(&mut self) -> Result<i32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(DecodeError::Truncated);
        }
        let (h, rest) = self.buf.split_at(4);
        self.buf = rest;
        Ok(i32::from_be_bytes([h[0], h[1], h[2], h[3]]))
    }
    pub(crate) fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (h, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(h)
    }
    pub(crate) fn cstr(&mut self) -> Result<&'a [u8], DecodeError> {
        let nul = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Unterminated)?;
        let s = &self.buf[..nul];
        self.buf = &self.buf[nul + 1..];
        Ok(s)
    }
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn function_call_reads_exactly_its_arguments() {
        // lo_open(4242, INV_READ): oid 952, one format for all (binary).
        let mut body = 952i32.to_be_bytes().to_vec();
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&4242i32.to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        let call = frame(b'F', &body);
        let (oid, args) = function_call(&call).unwrap();
        assert_eq!(oid, 952);
        assert_eq!(args, vec![(1, Some(&4242i32.to_be_bytes()[..])), (1, None)]);
        // Short, or with bytes after the result format: refused.
        assert!(function_call(&call[..call.len() - 1]).is_err());
        let mut long = body.clone();
        long.push(0);
        assert!(function_call(&frame(b'F', &long)).is_err());
        // Two format codes for three arguments: refused.
        let mut bad = 952i32.to_be_bytes().to_vec();
        bad.extend_from_slice(&2i16.to_be_bytes());
        bad.extend_from_slice(&[0, 0, 0, 0]);
        bad.extend_from_slice(&3i16.to_be_bytes());
        assert!(function_call(&frame(b'F', &bad)).is_err());
    }

    #[test]
    fn bind_result_formats_and_built_messages() {
        let mut body = b"p\0s\0".to_vec();
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&3i32.to_be_bytes());
        body.extend_from_slice(b"abc");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        let bind = frame(b'B', &body);
        assert_eq!(bind_result_formats(&bind), Ok(vec![1, 0]));
        assert!(bind_result_formats(&bind[..bind.len() - 1]).is_err());
        let mut out = BytesMut::new();
        write_empty_bind(b"p", b"s", &mut out);
        assert_eq!(bind_result_formats(&out), Ok(vec![]));
        assert_eq!(bind_names(&out), Ok((&b"p"[..], &b"s"[..])));
        let mut out = BytesMut::new();
        write_parse(b"s", b"", &mut out);
        assert_eq!(parse_message(&out), Ok((&b"s"[..], "")));
        let mut out = BytesMut::new();
        write_describe(b'P', b"p", &mut out);
        assert_eq!(target(&out), Ok((b'P', &b"p"[..])));
    }

    #[test]
    fn startup_packets() {
        let mut p = Vec::new();
        p.extend_from_slice(&0i32.to_be_bytes());
        p.extend_from_slice(&196608i32.to_be_bytes());
        p.extend_from_slice(b"user\0bot\0database\0app\0\0");
        let len = p.len() as i32;
        p[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(startup_len(&p), Ok(Some(p.len())));
        assert_eq!(
            decode_startup(&p),
            Ok(StartupPacket::Startup {
                minor: 0,
                params: vec![
                    ("user".into(), "bot".into()),
                    ("database".into(), "app".into())
                ]
            })
        );
        let mut c = Vec::new();
        c.extend_from_slice(&16i32.to_be_bytes());
        c.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
        c.extend_from_slice(&7i32.to_be_bytes());
        c.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            decode_startup(&c),
            Ok(StartupPacket::Cancel { pid: 7, key: 9 })
        );
        assert!(startup_len(&[0, 0, 0, 2]).is_err());
        assert!(startup_len(&[0, 1, 0, 0]).is_err());
        // Truncated parameter list.
        let mut t = p.clone();
        t.truncate(t.len() - 3);
        assert!(decode_startup(&t).is_err());
    }

    #[test]
    fn messages() {
        assert_eq!(query_text(&frame(b'Q', b"select 1\0")), Ok("select 1"));
        assert_eq!(
            query_text(&frame(b'Q', b"select 1")),
            Err(DecodeError::Unterminated)
        );
        assert_eq!(
            query_text(&frame(b'Q', b"select \xff\0")),
            Err(DecodeError::NotUtf8)
        );
        let p = frame(b'P', b"s1\0select $1\0\0\0");
        assert_eq!(parse_message(&p), Ok((&b"s1"[..], "select $1")));
        let b = frame(b'B', b"p\0s1\0\0\0\0\0\0\0");
        assert_eq!(bind_names(&b), Ok((&b"p"[..], &b"s1"[..])));
        assert_eq!(bind_parameters(&b), Ok(vec![]));
        let b = frame(
            b'B',
            b"\0s\0\0\x01\0\0\0\x02\0\0\0\x0242\xff\xff\xff\xff\0\0",
        );
        assert_eq!(
            bind_parameters(&b),
            Ok(vec![(0, Some(&b"42"[..])), (0, None)])
        );
        let short = frame(b'B', b"\0s\0\0\x01\0\0\0\x01\0\0\0\x09ab");
        assert_eq!(bind_parameters(&short), Err(DecodeError::Truncated));
        assert_eq!(
            execute_message(&frame(b'E', b"p\0\0\0\0\x05")),
            Ok((&b"p"[..], 5))
        );
        assert_eq!(
            execute_message(&frame(b'E', b"p\0\0")),
            Err(DecodeError::Truncated)
        );
        assert_eq!(target(&frame(b'D', b"Sname\0")), Ok((b'S', &b"name"[..])));
        assert_eq!(target(&frame(b'D', b"")), Err(DecodeError::Truncated));
        let sasl = frame(b'p', b"SCRAM-SHA-256\0\0\0\0\x03n,,");
        assert_eq!(
            sasl_initial(&sasl),
            Ok((&b"SCRAM-SHA-256"[..], &b"n,,"[..]))
        );
        let long = frame(b'p', b"SCRAM-SHA-256\0\0\0\0\x09n,,");
        assert_eq!(sasl_initial(&long), Err(DecodeError::Truncated));
        let none = frame(b'p', b"SCRAM-SHA-256\0\xff\xff\xff\xff");
        assert_eq!(sasl_initial(&none), Err(DecodeError::Truncated));
        assert_eq!(
            sasl_initial(&frame(b'p', b"X")),
            Err(DecodeError::Unterminated)
        );
        // Renaming keeps everything after the names byte for byte.
        let p = frame(b'P', b"s1\0select $1\0\0\x01\0\0\0\x17");
        let q = with_names(&p, 0, &[b"other"]).unwrap();
        assert_eq!(parse_message(&q), Ok((&b"other"[..], "select $1")));
        assert_eq!(&q[q.len() - 6..], &p[p.len() - 6..]);
        let b = frame(b'B', b"p\0s1\0\0\0\0\0\0\0");
        let c = with_names(&b, 0, &[b"P2", b"S2"]).unwrap();
        assert_eq!(bind_names(&c), Ok((&b"P2"[..], &b"S2"[..])));
        let d = with_names(&frame(b'D', b"Sname\0"), 1, &[b"x"]).unwrap();
        assert_eq!(target(&d), Ok((b'S', &b"x"[..])));
        assert_eq!(
            i32::from_be_bytes([d[1], d[2], d[3], d[4]]) as usize,
            d.len() - 1
        );
        assert!(with_names(&frame(b'D', b"Sname"), 1, &[b"x"]).is_err());
        let mut out = BytesMut::new();
        write_with_names(&b, 0, &[b"P2", b"S2"], &mut out).unwrap();
        assert_eq!(&out[..], &c[..]);
        assert!(write_with_names(&frame(b'D', b"Sname"), 1, &[b"x"], &mut out).is_err());
        assert_eq!(&out[..], &c[..], "nothing written on error");
        let mut close = BytesMut::new();
        write_close(b'P', b"p1", &mut close);
        assert_eq!(&close[..], &frame(b'C', b"Pp1\0")[..]);
        assert_eq!(target(&close), Ok((b'P', &b"p1"[..])));
    }
}
