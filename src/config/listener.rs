//! `[[listener]]`: where agents connect, with which protocol, and the
//! database behind (`upstream`, a `postgres://` or `mysql://` URL).

use super::{ConfigError, Protocol};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTls {
    Disable,
    #[default]
    Prefer,
    Require,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) protocol: Protocol,
    pub(super) listen: SocketAddr,
    pub(super) upstream: String,
    pub(super) tls: Option<RawTls>,
    #[serde(default)]
    pub(super) upstream_tls: UpstreamTls,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
    #[serde(default)]
    pub(super) required: bool,
}

/// Where and how sqlgate logs in upstream.
#[derive(Clone)]
pub struct Upstream {
    /// Which server this is: the URL's scheme.
    pub protocol: Protocol,
    /// A host name or address, or (starting with `/`) the directory of the
    /// server's Unix-domain socket, as in libpq.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
}

impl Upstream {
    /// The Unix-domain socket to connect to, when `host` is a path: for
    /// PostgreSQL the socket's directory (libpq's convention:
    /// `<dir>/.s.PGSQL.<port>`), for MySQL the socket file itself (as the
    /// mysql client's `--socket`).
    pub fn socket_path(&self) -> Option<PathBuf> {
        if !self.host.starts_with('/') {
            return None;
        }
        Some(match self.protocol {
            Protocol::Postgres => Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port)),
            Protocol::Mysql => PathBuf::from(&self.host),
        })
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the upstream password.
        write!(
            f,
            "{}://{}@{}:{}/{}",
            self.protocol.as_str(),
            self.user,
            self.host,
            self.port,
            self.database
        )
    }
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub protocol: Protocol,
    pub listen: SocketAddr,
    pub upstream: Upstream,
    pub tls: Option<Tls>,
    pub upstream_tls: UpstreamTls,
}

/// The validated `[[listener]]`s; relative paths resolve with `abs`.
pub(super) fn build(
    raw: Vec<RawListener>,
    abs: &dyn Fn(&Path) -> PathBuf,
) -> Result<Vec<Listener>, ConfigError> {
    let invalid =
        |l: &RawListener, m: String| ConfigError::Invalid(format!("listener `{}`: {m}", l.listen));
    if raw.is_empty() {
        return Err(ConfigError::Invalid(
            "at least one `[[listener]]` is required".into(),
        ));
    }
    let mut listeners = Vec::new();
    for l in raw {
        if l.protocol == Protocol::Mysql {
            return Err(invalid(&l, "protocol `mysql` is not available yet".into()));
        }
        let upstream =
            parse_upstream(&l.upstream).map_err(|m| invalid(&l, format!("upstream: {m}")))?;
        if upstream.protocol != l.protocol {
            return Err(invalid(
                &l,
                format!(
                    "a `{}` listener needs a `{}://` upstream",
                    l.protocol.as_str(),
                    l.protocol.as_str()
                ),
            ));
        }
        if upstream.socket_path().is_some() && l.upstream_tls == UpstreamTls::Require {
            return Err(invalid(
                &l,
                "`upstream_tls = \"require\"` with a Unix-socket upstream: \
                 TLS is not used over Unix sockets (as in libpq)"
                    .into(),
            ));
        }
        listeners.push(Listener {
            protocol: l.protocol,
            listen: l.listen,
            upstream,
            tls: l.tls.map(|t| Tls {
                cert: abs(&t.cert),
                key: abs(&t.key),
                required: t.required,
            }),
            upstream_tls: l.upstream_tls,
        });
    }
    Ok(listeners)
}

/// Parses `postgres://user:password@host:port/database` (port 5432 unless
/// given) or `mysql://…` (port 3306). A host that percent-decodes to an
/// absolute path names the server's Unix-domain socket: for PostgreSQL its
/// directory (`%2Fvar%2Frun%2Fpostgresql`), as in libpq; for MySQL the
/// socket file (`%2Frun%2Fmysqld%2Fmysqld.sock`).
///
/// Hand-written rather than with the `url` crate: we need only these five
/// parts (plus percent-decoding), and `url` pulls in IDNA/ICU tables.
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let (protocol, rest) = if let Some(rest) = s
        .strip_prefix("postgres://")
        .or_else(|| s.strip_prefix("postgresql://"))
    {
        (Protocol::Postgres, rest)
    } else if let Some(rest) = s.strip_prefix("mysql://") {
        (Protocol::Mysql, rest)
    } else {
        return Err("must start with `postgres://` or `mysql://`".into());
    };
    if rest.contains('?') {
        return Err("query parameters are not supported; use `upstream_tls`".into());
    }
    let (auth, hostpart) = rest
        .rsplit_once('@')
        .ok_or("must name a user (`user@host`)")?;
    let (user, password) = match auth.split_once(':') {
        Some((u, p)) => (pct(u, "user")?, Some(pct(p, "password")?)),
        None => (pct(auth, "user")?, None),
    };
    let (hostport, database) = hostpart
        .split_once('/')
        .ok_or("must name a database (`host/database`)")?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            p.parse::<u16>().map_err(|_| format!("bad port `{p}`"))?,
        ),
        _ => (
            hostport.to_owned(),
            match protocol {
                Protocol::Postgres => 5432,
                Protocol::Mysql => 3306,
            },
        ),
    };
    // A bracketed IPv6 address is taken as written (its zone id may hold a
    // `%`); anything else is percent-decoded, which is how a socket
    // directory is given.
    let host = if hostport.starts_with('[') {
        host
    } else {
        pct(&host, "host")?
    };
    if user.is_empty() || host.is_empty() || database.is_empty() {
        return Err("user, host and database must not be empty".into());
    }
    let up = Upstream {
        protocol,
        host,
        port,
        user,
        password,
        database: pct(database, "database")?,
    };
    // Linux's sun_path holds 107 bytes and a NUL.
    if up.socket_path().is_some_and(|p| p.as_os_str().len() > 107) {
        return Err(format!(
            "the socket directory `{}` is too long for a Unix socket path",
            up.host
        ));
    }
    Ok(up)
}

/// Percent-decodes one part of the URL. Errors name the part, never its
/// text: the part may be the password.
fn pct(s: &str, part: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-escape in the {part}"))?;
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the {part} is not UTF-8 once decoded"))
}
