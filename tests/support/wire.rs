//! A raw PostgreSQL client for tests that need exact control of the messages
//! (pipelines with a denial in the middle, FunctionCall, unknown messages,
//! oversized messages): drivers never send these shapes on purpose.

#![allow(dead_code)]

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Wire {
    pub s: TcpStream,
    buf: BytesMut,
}

/// One backend message: its tag and body (without tag and length).
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: char,
    pub body: Vec<u8>,
}

impl Msg {
    /// The SQLSTATE of an ErrorResponse/NoticeResponse.
    pub fn code(&self) -> String {
        self.field(b'C')
    }
    pub fn message(&self) -> String {
        self.field(b'M')
    }
    pub fn field(&self, f: u8) -> String {
        let mut it = self.body.split(|&b| b == 0);
        for part in &mut it {
            if part.first() == Some(&f) {
                return String::from_utf8_lossy(&part[1..]).into_owned();
            }
        }
        String::new()
    }
}

impl Wire {
    /// Connects and logs in with SCRAM-SHA-256; panics on failure.
    pub fn login(addr: &str, user: &str, password: &str, db: &str) -> Wire {
        Wire::try_login(addr, user, password, db).unwrap_or_else(|m| panic!("login failed: {m:?}"))
    }

    /// Connects and logs in; on an ErrorResponse returns it.
    pub fn try_login(addr: &str, user: &str, password: &str, db: &str) -> Result<Wire, Msg> {
        Wire::try_login_with(addr, user, password, db, &[])
    }

    /// [`Wire::try_login`] with more startup parameters.
    pub fn try_login_with(
        addr: &str,
        user: &str,
        password: &str,
        db: &str,
        extra: &[(&str, &str)],
    ) -> Result<Wire, Msg> {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut w = Wire {
            s,
            buf: BytesMut::new(),
        };
        let mut out = BytesMut::new();
        let params = [("user", user), ("database", db)];
        frontend::startup_message(params.iter().chain(extra).copied(), &mut out).unwrap();
        w.send(&out);
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        loop {
            let m = w.recv();
            match m.tag {
                'R' => {
                    let code = i32::from_be_bytes(m.body[..4].try_into().unwrap());
                    let data = &m.body[4..];
                    out.clear();
                    match code {
                        0 => continue,
                        10 => frontend::sasl_initial_response(
                            "SCRAM-SHA-256",
                            scram.message(),
                            &mut out,
                        )
                        .unwrap(),
                        11 => {
                            scram.update(data).unwrap();
                            frontend::sasl_response(scram.message(), &mut out).unwrap();
                        }
                        12 => {
                            scram.finish(data).unwrap();
                            continue;
                        }
                        c => panic!("unexpected auth request {c}"),
                    }
                    w.send(&out);
                }
                'E' => return Err(m),
                'Z' => return Ok(w),
                _ => {}
            }
        }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("send");
    }

    /// Reads one message (panics on timeout or EOF).
    pub fn recv(&mut self) -> Msg {
        self.try_recv().expect("connection closed")
    }

    pub fn try_recv(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0] as char;
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).to_vec();
                    return Some(Msg { tag, body });
                }
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads messages up to and including ReadyForQuery.
    pub fn until_ready(&mut self) -> Vec<Msg> {
        let mut v = Vec::new();
        loop {
            let m = self.recv();
            let done = m.tag == 'Z';
            v.push(m);
            if done {
                return v;
            }
        }
    }

    /// Simple query; returns every message up to ReadyForQuery.
    pub fn query(&mut self, sql: &str) -> Vec<Msg> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).unwrap();
        self.send(&out);
        self.until_ready()
    }
}

/// Builders for extended-protocol messages.
pub fn parse(name: &str, sql: &str) -> BytesMut {
    let mut b = BytesMut::new();
    frontend::parse(name, sql, std::iter::empty(), &mut b).unwrap();
    b
}

/// A Parse giving parameter type OIDs.
pub fn parse_typed(name: &str, sql: &str, types: &[u32]) -> BytesMut {
    let mut b = BytesMut::new();
    frontend::parse(name, sql, types.iter().copied(), &mut b).unwrap();
    b
}

/// A Bind of text parameters.
pub fn bind_text(portal: &str, stmt: &str, params: &[&str]) -> BytesMut {
    let mut b = BytesMut::new();
    frontend::bind(
        portal,
        stmt,
        std::iter::empty::<i16>(),
        params.iter(),
        |p, buf| -> Result<postgres_protocol::IsNull, Box<dyn std::error::Error + Sync + Send>> {
            buf.extend_from_slice(p.as_bytes());
            Ok(postgres_protocol::IsNull::No)
        },
        std::iter::empty::<i16>(),
        &mut b,
    )
    .map_err(|_| ())
    .unwrap();
    b
}

pub fn bind(portal: &str, stmt: &str) -> BytesMut {
    bind_formats(portal, stmt, &[])
}

/// A Bind with no parameters and the given result-format codes.
pub fn bind_formats(portal: &str, stmt: &str, formats: &[i16]) -> BytesMut {
    let mut b = BytesMut::new();
    frontend::bind(
        portal,
        stmt,
        std::iter::empty::<i16>(),
        std::iter::empty::<()>(),
        |_, _| -> Result<postgres_protocol::IsNull, Box<dyn std::error::Error + Sync + Send>> {
            unreachable!()
        },
        formats.iter().copied(),
        &mut b,
    )
    .map_err(|_| ())
    .unwrap();
    b
}

/// Describe of a statement (`b'S'`) or portal (`b'P'`).
pub fn describe(kind: u8, name: &str) -> BytesMut {
    let mut b = BytesMut::new();
    frontend::describe(kind, name, &mut b).unwrap();
    b
}

/// The (name, type OID, format) of each field of a RowDescription.
pub fn fields(m: &Msg) -> Vec<(String, u32, i16)> {
    let b = &m.body;
    let n = i16::from_be_bytes([b[0], b[1]]) as usize;
    let mut at = 2;
    let mut out = Vec::new();
    for _ in 0..n {
        let end = at + b[at..].iter().position(|&c| c == 0).unwrap();
        let name = String::from_utf8_lossy(&b[at..end]).into_owned();
        at = end + 1;
        let ty = u32::from_be_bytes(b[at + 6..at + 10].try_into().unwrap());
        let format = i16::from_be_bytes([b[at + 16], b[at + 17]]);
        out.push((name, ty, format));
        at += 18;
    }
    out
}

/// An Execute returning at most `max_rows` rows (then PortalSuspended).
pub fn execute_max(portal: &str, max_rows: i32) -> BytesMut {
    let mut b = BytesMut::new();
    frontend::execute(portal, max_rows, &mut b).unwrap();
    b
}

pub fn execute(portal: &str) -> BytesMut {
    let mut b = BytesMut::new();
    frontend::execute(portal, 0, &mut b).unwrap();
    b
}

pub fn sync() -> BytesMut {
    let mut b = BytesMut::new();
    frontend::sync(&mut b);
    b
}

/// A message with any tag and body.
pub fn raw(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Tags of a message list, as a string (e.g. "1 2 C E Z").
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|m| m.tag.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}
