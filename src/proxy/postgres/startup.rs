//! The agent's side of connection start-up: TLS negotiation, CancelRequest
//! routing, startup-parameter vetting and SCRAM-SHA-256 authentication.

use super::Listener;
use crate::audit::Event;
use crate::auth::scram::{self, Exchange, Verifier};
use crate::proxy::stream::Stream;
use bytes::BytesMut;
use sqlgate_postgres::backend::{self, Report, Severity};
use sqlgate_postgres::frame;
use sqlgate_postgres::frontend::{self, StartupPacket};
use sqlgate_postgres::sqlstate;
use std::io;
use std::net::SocketAddr;
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Startup parameters passed on to the database. Anything else is dropped;
/// `options` and `replication` are refused outright because they can change
/// what the server lets the session do (`-c` settings, replication commands).
const FORWARDED_PARAMS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "extra_float_digits",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "bytea_output",
    "client_min_messages",
];

pub struct Accepted {
    pub stream: Stream,
    pub agent: std::sync::Arc<str>,
    pub identity: crate::policy::Identity,
    pub database: String,
    pub params: Vec<(String, String)>,
}

/// How a connection's handshake ended.
pub enum Handshake {
    Session(Box<Accepted>),
    /// The connection was a cancel request, or was refused (the agent was told why).
    Done,
}

pub async fn handshake(tcp: TcpStream, peer: SocketAddr, l: &Listener) -> io::Result<Handshake> {
    let Some((mut stream, minor, params)) = startup_packet(Stream::Plain(tcp), l).await? else {
        return Ok(Handshake::Done);
    };

    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let user = get("user").unwrap_or("").to_owned();
    let database = get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();
    let refuse = |reason: &str| {
        metrics::counter!("sqlgate_login_failures_total").increment(1);
        Event::LoginFailure {
            time: SystemTime::now(),
            client: peer.to_string(),
            user: user.clone(),
            database: database.clone(),
            reason: reason.to_owned(),
        }
    };

    if l.tls.as_ref().is_some() && l.tls_required && !stream.is_tls() {
        l.engine
            .audit
            .record(refuse("plaintext connection refused: TLS is required"));
        fatal(
            &mut stream,
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "sqlgate requires TLS on this listener (use sslmode=require)",
        )
        .await;
        return Ok(Handshake::Done);
    }
    if user.is_empty() {
        fatal(
            &mut stream,
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "no user name specified in startup packet",
        )
        .await;
        return Ok(Handshake::Done);
    }
    if let Some(why) = refused_param(&params) {
        l.engine.audit.record(refuse(&why));
        fatal(&mut stream, sqlstate::INSUFFICIENT_PRIVILEGE, &why).await;
        return Ok(Handshake::Done);
    }
    if minor > 0 {
        let unsupported = params
            .iter()
            .filter(|(k, _)| k.starts_with("_pq_."))
            .map(|(k, _)| k.clone())
            .collect();
        stream
            .write_all(&backend::negotiate_protocol_version(unsupported))
            .await?;
    }

    // SCRAM-SHA-256 against the configured agents; unknown names run a decoy
    // exchange so that they fail exactly like a wrong password.
    let agent = l.engine.agents.get(&user);
    let verifier = agent
        .map(|a| a.secrets.scram.clone())
        .unwrap_or_else(|| l.engine.agents.scram_decoy(&user));
    let outcome = sasl_exchange(&mut stream, verifier).await?;
    let (Some(agent), Ok(server_final)) = (agent, outcome.as_ref()) else {
        let why = match outcome {
            Err(e) if e != scram::ScramError::BadProof => e.to_string(),
            _ => "password authentication failed".to_owned(),
        };
        l.engine.audit.record(refuse(&why));
        let msg = format!("password authentication failed for user \"{user}\"");
        fatal(&mut stream, sqlstate::INVALID_PASSWORD, &msg).await;
        return Ok(Handshake::Done);
    };
    stream
        .write_all(&backend::auth_sasl_final(server_final.as_bytes()))
        .await?;
    stream.write_all(&backend::auth_ok()).await?;

    if database != l.config.upstream.database {
        let msg = format!(
            "database \"{database}\" is not served by this sqlgate listener (it serves \"{}\")",
            l.config.upstream.database
        );
        l.engine.audit.record(refuse(&msg));
        fatal(&mut stream, sqlstate::INVALID_CATALOG_NAME, &msg).await;
        return Ok(Handshake::Done);
    }

    let forwarded = params
        .into_iter()
        .filter(|(k, _)| FORWARDED_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k)))
        .collect();
    Ok(Handshake::Session(Box::new(Accepted {
        stream,
        agent: agent.name.clone(),
        identity: agent.identity.clone(),
        database,
        params: forwarded,
    })))
}

/// Reads startup packets until the StartupMessage, answering SSLRequest
/// (TLS then starts on `stream`), GSSENCRequest and CancelRequest on the
/// way; `None` when the connection has nothing more to do here.
async fn startup_packet(
    mut stream: Stream,
    l: &Listener,
) -> io::Result<Option<(Stream, u16, Vec<(String, String)>)>> {
    loop {
        let packet = read_startup(&mut stream).await?;
        let decoded = match frontend::decode_startup(&packet) {
            Ok(p) => p,
            Err(e) => {
                fatal(
                    &mut stream,
                    sqlstate::PROTOCOL_VIOLATION,
                    &format!("invalid startup packet: {e}"),
                )
                .await;
                return Ok(None);
            }
        };
        match decoded {
            StartupPacket::SslRequest => match (&l.tls, &stream) {
                (Some(cfg), Stream::Plain(_)) => {
                    stream.write_all(b"S").await?;
                    let Stream::Plain(tcp) = stream else {
                        unreachable!()
                    };
                    // INVARIANT: nothing may be buffered between the SSLRequest
                    // and the handshake (CVE-2021-23214): read_startup reads
                    // exactly one packet, so no plaintext is carried over.
                    let tls = tokio_rustls::TlsAcceptor::from(cfg.clone())
                        .accept(tcp)
                        .await?;
                    stream = Stream::ServerTls(Box::new(tls));
                }
                _ => stream.write_all(b"N").await?,
            },
            StartupPacket::GssEncRequest => stream.write_all(b"N").await?,
            StartupPacket::Cancel { pid, key } => {
                if let Some(t) = l.cancels.lookup(pid, key) {
                    // A held statement is not running upstream: withdraw it,
                    // and send nothing upstream (see `HoldSignal`).
                    if !t.held.cancel() {
                        if let Err(e) =
                            super::upstream::cancel(&t.upstream, t.upstream_pid, t.upstream_key)
                                .await
                        {
                            tracing::warn!("forwarding a cancel request failed: {e}");
                        }
                    }
                }
                return Ok(None);
            }
            StartupPacket::Startup { minor, params } => return Ok(Some((stream, minor, params))),
        }
    }
}

/// The SASL exchange (SCRAM-SHA-256) against `verifier`: the server's
/// final message, or why the agent failed.
async fn sasl_exchange(
    stream: &mut Stream,
    verifier: Verifier,
) -> io::Result<Result<String, scram::ScramError>> {
    stream
        .write_all(&backend::auth_sasl(&[scram::MECHANISM]))
        .await?;
    let mut buf = BytesMut::with_capacity(1024);
    let first = read_password_message(stream, &mut buf).await?;
    let result = async {
        let (mech, data) =
            frontend::sasl_initial(&first).map_err(|_| scram::ScramError::Malformed)?;
        if mech != scram::MECHANISM.as_bytes() {
            return Err(scram::ScramError::Malformed);
        }
        let (ex, server_first) = Exchange::start(verifier, data)?;
        Ok((ex, server_first))
    }
    .await;
    Ok(match result {
        Ok((ex, server_first)) => {
            stream
                .write_all(&backend::auth_sasl_continue(server_first.as_bytes()))
                .await?;
            let fin = read_password_message(stream, &mut buf).await?;
            ex.finish(fin.get(5..).unwrap_or_default())
        }
        Err(e) => Err(e),
    })
}

/// Why a startup parameter set is refused, if it is.
fn refused_param(params: &[(String, String)]) -> Option<String> {
    // A name twice: sqlgate and PostgreSQL could each take another one
    // (PostgreSQL the last); no client sends it.
    let mut seen = std::collections::HashSet::new();
    for (k, _) in params {
        if !seen.insert(k.to_ascii_lowercase()) {
            return Some(format!("the startup parameter `{k}` is given twice"));
        }
    }
    for (k, v) in params {
        // PostgreSQL matches parameter names case-insensitively; so must we.
        match k.to_ascii_lowercase().as_str() {
            "replication" if !matches!(v.to_ascii_lowercase().as_str(), "false" | "off" | "no" | "0") => {
                return Some("replication connections are not allowed through sqlgate".into())
            }
            "options" if !v.trim().is_empty() => {
                return Some("the startup parameter `options` is not allowed through sqlgate; set parameters with SET after connecting".into())
            }
            "search_path" if crate::classify::search_path_shadows_builtins(v) => {
                return Some("a startup search_path that puts pg_catalog after another schema is not allowed: functions there would shadow the built-ins sqlgate decides by name".into())
            }
            "client_encoding" => {
                if let Some(why) = crate::encoding::refusal(v) {
                    return Some(why);
                }
            }
            _ => {}
        }
    }
    None
}

/// Reads one startup packet; exactly its bytes, nothing after it.
async fn read_startup(stream: &mut Stream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let n = match frontend::startup_len(&len) {
        Ok(Some(n)) => n,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "invalid startup packet length",
            ))
        }
    };
    let mut p = vec![0u8; n];
    p[..4].copy_from_slice(&len);
    stream.read_exact(&mut p[4..]).await?;
    Ok(p)
}

/// Reads one `p` message during authentication.
async fn read_password_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> io::Result<bytes::Bytes> {
    loop {
        match frame::next(buf, 8192, usize::MAX, |_| false) {
            Ok(frame::Next::Whole { tag: b'p', len }) => return Ok(buf.split_to(len).freeze()),
            Ok(frame::Next::Whole { .. }) | Err(_) => {
                fatal(
                    stream,
                    sqlstate::PROTOCOL_VIOLATION,
                    "expected a SASL response message",
                )
                .await;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad auth message",
                ));
            }
            _ => {}
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

pub async fn fatal(stream: &mut Stream, code: &str, message: &str) {
    let b = Report::new(Severity::Fatal, code, message).encode();
    let _ = stream.write_all(&b).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}
