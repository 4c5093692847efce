//! Logging in to the real database with the listener's own credentials.
//! The agent never sees these credentials nor the upstream's auth errors.

use crate::config::{Upstream, UpstreamTls};
use crate::proxy::stream::Stream;
use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use sqlgate_postgres::{backend, frame};
use std::sync::Arc;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("cannot reach the database at {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("the database does not offer TLS and `upstream_tls = \"require\"`")]
    TlsRefused,
    #[error("TLS with the database failed: {0}")]
    Tls(std::io::Error),
    #[error("the database refused sqlgate's login ({code}): {message}")]
    Refused { code: String, message: String },
    #[error("the database asked for an authentication method sqlgate does not support (code {0})")]
    UnsupportedAuth(i32),
    #[error("the database asked for a password but the upstream URL has none")]
    NoPassword,
    #[error("refusing the upstream session: {0}")]
    UnsafeSetting(String),
    #[error("protocol error from the database: {0}")]
    Protocol(String),
    #[error("the database did not complete the login within {0:?}")]
    TimedOut(std::time::Duration),
    #[error("i/o error with the database: {0}")]
    Io(#[from] std::io::Error),
}

/// A logged-in upstream session, ready for queries.
pub struct Connected {
    pub stream: Stream,
    /// ParameterStatus (and any NoticeResponse) frames to pass on to the agent.
    pub greeting: BytesMut,
    pub pid: i32,
    pub key: i32,
    pub status: u8,
    /// The client encoding the server reported.
    pub encoding: &'static crate::encoding::Encoding,
}

pub async fn connect(
    up: &Upstream,
    tls: UpstreamTls,
    tls_config: &Arc<rustls::ClientConfig>,
    params: &[(String, String)],
) -> Result<Connected, UpstreamError> {
    let stream = open(up).await.map_err(|e| {
        let at = match up.socket_path() {
            Some(path) => path.display().to_string(),
            None => format!("{}:{}", up.host, up.port),
        };
        UpstreamError::Connect(at, e)
    })?;
    let mut stream = start_tls(stream, up, tls, tls_config).await?;

    let mut out = BytesMut::new();
    startup_message(up, params, &mut out)?;
    stream.write_all(&out).await?;

    let mut encoding = crate::encoding::utf8();
    let mut server_encoding = Vec::new();

    let mut buf = BytesMut::with_capacity(8192);
    let mut scram: Option<ScramSha256> = None;
    let mut greeting = BytesMut::new();
    let (mut pid, mut key) = (0, 0);
    loop {
        let (tag, msg) = read_frame(&mut stream, &mut buf).await?;
        match tag {
            backend::AUTHENTICATION => {
                let (code, data) = backend::authentication(&msg)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                out.clear();
                if authenticate(up, code, data, &mut scram, &mut out).await? {
                    stream.write_all(&out).await?;
                }
            }
            backend::ERROR_RESPONSE => {
                let f = backend::error_fields(&msg).unwrap_or_default();
                return Err(UpstreamError::Refused {
                    code: String::from_utf8_lossy(f.code).into_owned(),
                    message: String::from_utf8_lossy(f.message).into_owned(),
                });
            }
            backend::PARAMETER_STATUS => {
                let (name, value) = backend::parameter_status(&msg)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                if let Some(why) = super::unsafe_setting(name, value) {
                    return Err(UpstreamError::UnsafeSetting(why));
                }
                if name == b"client_encoding" {
                    encoding = super::reported_encoding(value);
                }
                if name == b"server_encoding" {
                    server_encoding = value.to_vec();
                }
                greeting.extend_from_slice(&msg);
            }
            backend::NOTICE_RESPONSE => greeting.extend_from_slice(&msg),
            backend::BACKEND_KEY_DATA => {
                (pid, key) = backend::backend_key_data(&msg)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            }
            backend::READY_FOR_QUERY => {
                let status = backend::ready_status(&msg)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                if server_encoding != b"UTF8" {
                    return Err(UpstreamError::UnsafeSetting(format!(
                        "the database's encoding is {}: {}",
                        String::from_utf8_lossy(&server_encoding),
                        crate::encoding::DATABASE_WHY
                    )));
                }
                return Ok(Connected {
                    stream,
                    greeting,
                    pid,
                    key,
                    status,
                    encoding,
                });
            }
            b'v' => {} // NegotiateProtocolVersion: we asked for 3.0, nothing to do.
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected message `{}` during login",
                    other as char
                )))
            }
        }
    }
}

/// The StartupMessage: sqlgate's own user and database, and the agent's
/// parameters.
fn startup_message(
    up: &Upstream,
    params: &[(String, String)],
    out: &mut BytesMut,
) -> std::io::Result<()> {
    // The agent's client_encoding when it gave one (checked at its
    // startup, and again in the server's report below), else UTF-8.
    let encoding = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("client_encoding"))
        .map_or("UTF8", |(_, v)| v.as_str());
    let mut startup: Vec<(&str, &str)> = vec![
        ("user", up.user.as_str()),
        ("database", up.database.as_str()),
        ("client_encoding", encoding),
    ];
    for (k, v) in params {
        if !k.eq_ignore_ascii_case("client_encoding") {
            startup.push((k.as_str(), v.as_str()));
        }
    }
    frontend::startup_message(startup.iter().copied(), out)
}

/// Answers one Authentication request of the database's into `out`:
/// whether there is an answer to send (`AuthenticationOk` and SASL's
/// final message need none).
async fn authenticate(
    up: &Upstream,
    code: i32,
    data: &[u8],
    scram: &mut Option<ScramSha256>,
    out: &mut BytesMut,
) -> Result<bool, UpstreamError> {
    match code {
        0 => return Ok(false),
        3 => {
            let pw = up.password.as_deref().ok_or(UpstreamError::NoPassword)?;
            frontend::password_message(pw.as_bytes(), out)?;
        }
        5 => {
            let pw = up.password.as_deref().ok_or(UpstreamError::NoPassword)?;
            let salt: [u8; 4] = data
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| UpstreamError::Protocol("short md5 salt".into()))?;
            let h = postgres_protocol::authentication::md5_hash(
                up.user.as_bytes(),
                pw.as_bytes(),
                salt,
            );
            frontend::password_message(h.as_bytes(), out)?;
        }
        10 => {
            let offers_scram = data.split(|&b| b == 0).any(|m| m == b"SCRAM-SHA-256");
            if !offers_scram {
                return Err(UpstreamError::UnsupportedAuth(code));
            }
            let pw = up.password.as_deref().ok_or(UpstreamError::NoPassword)?;
            let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
            frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), out)?;
            *scram = Some(s);
        }
        11 => {
            let mut s = scram
                .take()
                .ok_or_else(|| UpstreamError::Protocol("SASL continue without start".into()))?;
            let iterations = scram_iterations(data)
                .ok_or_else(|| UpstreamError::Protocol("SCRAM: no iteration count".into()))?;
            if iterations > MAX_SCRAM_ITERATIONS {
                return Err(UpstreamError::Protocol(format!(
                    "SCRAM: the database asks for {iterations} iterations \
                         (sqlgate computes at most {MAX_SCRAM_ITERATIONS})"
                )));
            }
            // The key derivation (PBKDF2, 4096 rounds by default) takes
            // about a millisecond: it runs off the session thread, which
            // serves other sessions meanwhile.
            let data = data.to_vec();
            let s = tokio::task::spawn_blocking(move || s.update(&data).map(|()| s))
                .await
                .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?
                .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?;
            frontend::sasl_response(s.message(), out)?;
            *scram = Some(s);
        }
        12 => {
            let s = scram
                .as_mut()
                .ok_or_else(|| UpstreamError::Protocol("SASL final without start".into()))?;
            // Verifies the server's signature: a server that does
            // not know the password cannot impersonate the database.
            s.finish(data)
                .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?;
            return Ok(false);
        }
        other => return Err(UpstreamError::UnsupportedAuth(other)),
    }
    Ok(true)
}

/// TLS with the database as `tls` asks, by SSLRequest.
async fn start_tls(
    mut stream: Stream,
    up: &Upstream,
    tls: UpstreamTls,
    tls_config: &Arc<rustls::ClientConfig>,
) -> Result<Stream, UpstreamError> {
    // As libpq: TLS is not used over a Unix socket (the config refuses
    // `require` for one).
    if tls != UpstreamTls::Disable && !matches!(stream, Stream::Unix(_)) {
        let mut req = BytesMut::new();
        frontend::ssl_request(&mut req);
        stream.write_all(&req).await?;
        let answer = stream.read_u8().await?;
        match (answer, tls) {
            (b'S', _) => {
                let Stream::Plain(tcp) = stream else {
                    unreachable!()
                };
                let name = rustls::pki_types::ServerName::try_from(up.host.clone())
                    .map_err(|e| UpstreamError::Tls(std::io::Error::other(e)))?;
                let s = tokio_rustls::TlsConnector::from(tls_config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(UpstreamError::Tls)?;
                stream = Stream::ClientTls(Box::new(s));
            }
            (b'N', UpstreamTls::Require) => return Err(UpstreamError::TlsRefused),
            (b'N', _) => {}
            (other, _) => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected answer `{}` to SSLRequest",
                    other as char
                )))
            }
        }
    }
    Ok(stream)
}

/// A plain connection to the database: its Unix socket when the host is a
/// directory, TCP otherwise.
async fn open(up: &Upstream) -> std::io::Result<Stream> {
    Ok(match up.socket_path() {
        Some(path) => Stream::Unix(UnixStream::connect(path).await?),
        None => {
            let tcp = TcpStream::connect((up.host.as_str(), up.port)).await?;
            tcp.set_nodelay(true)?;
            Stream::Plain(tcp)
        }
    })
}

/// More PBKDF2 rounds than this from the database are refused rather than
/// computed (PostgreSQL's default is 4096; a million take about a second).
const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;

/// The `i=` attribute of a SCRAM server-first message (RFC 5802).
fn scram_iterations(server_first: &[u8]) -> Option<u32> {
    std::str::from_utf8(server_first)
        .ok()?
        .split(',')
        .find_map(|a| a.strip_prefix("i="))?
        .parse()
        .ok()
}

/// Reads one whole frame during login (small messages only).
async fn read_frame(stream: &mut Stream, buf: &mut BytesMut) -> Result<(u8, Bytes), UpstreamError> {
    loop {
        match frame::next(buf, 1 << 20, usize::MAX, |_| false) {
            Ok(frame::Next::Whole { tag, len }) => {
                let f = buf.split_to(len).freeze();
                return Ok((tag, f));
            }
            Ok(_) => {}
            Err(e) => return Err(UpstreamError::Protocol(e.to_string())),
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(UpstreamError::Protocol(
                "the database closed the connection during login".into(),
            ));
        }
    }
}

/// Sends a CancelRequest for an upstream session (over a fresh plain connection,
/// as libpq does).
pub async fn cancel(up: &Upstream, pid: i32, key: i32) -> std::io::Result<()> {
    let mut s = open(up).await?;
    let mut out = BytesMut::new();
    frontend::cancel_request(pid, key, &mut out);
    s.write_all(&out).await?;
    // The server closes the connection once it has read the request.
    let mut sink = [0u8; 1];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut sink)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn scram_iteration_count() {
        assert_eq!(
            super::scram_iterations(b"r=abc,s=c2FsdA==,i=4096"),
            Some(4096)
        );
        assert_eq!(super::scram_iterations(b"r=abc,s=c2FsdA=="), None);
        assert_eq!(super::scram_iterations(b"r=abc,s=x,i=-1"), None);
    }
}
