//! The admin port's accept side: a cap on open connections, overall and per
//! client network, and an idle limit on each. `axum::serve` has neither,
//! and review I (F2) held 20,000 half-sent requests open without a token:
//! every file descriptor sqlgate had, so approvers got no answer and the
//! agents' port stopped accepting. axum offers no such limit, and tower's
//! concurrency limit applies per request, after the connection is taken;
//! so this small wrapper, written here.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Open admin connections at most, all clients together: far below any
/// file limit, far above what approvers, the CLI and chat callbacks use.
pub const MAX_OPEN: usize = 512;
/// Open admin connections at most from one network (IPv4 /24, IPv6 /64,
/// all of loopback: [`crate::approval::network`]), so that filling
/// [`MAX_OPEN`] takes 16 networks. Behind a reverse proxy (or on the
/// sqlgate host) everyone shares one; see the README.
pub const MAX_OPEN_PER_NETWORK: usize = 32;
/// A connection that sends nothing for this long is closed: a half-sent
/// request does not hold its slot for ever.
pub const IDLE: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Open {
    total: usize,
    by_network: HashMap<IpAddr, usize>,
}

/// A [`TcpListener`] whose connections count against [`MAX_OPEN`] and
/// [`MAX_OPEN_PER_NETWORK`]; one over either is closed at once.
pub struct Capped {
    inner: TcpListener,
    open: Arc<Mutex<Open>>,
}

impl Capped {
    pub fn new(inner: TcpListener) -> Capped {
        Capped {
            inner,
            open: Arc::default(),
        }
    }

    fn admit(&self, ip: IpAddr) -> bool {
        let ip = crate::approval::network(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mine = open.by_network.get(&ip).copied().unwrap_or(0);
        if open.total >= MAX_OPEN || mine >= MAX_OPEN_PER_NETWORK {
            return false;
        }
        open.total += 1;
        open.by_network.insert(ip, mine + 1);
        true
    }
}

impl axum::serve::Listener for Capped {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if !self.admit(addr.ip()) {
                tracing::warn!(client = %addr.ip(), "admin connection refused: too many open");
                continue; // dropped: closed
            }
            let conn = Conn {
                stream,
                ip: crate::approval::network(addr.ip()),
                open: self.open.clone(),
                idle: Box::pin(tokio::time::sleep(IDLE)),
            };
            return (conn, addr);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An admitted connection: freed from the count when dropped, and failing
/// its read once the client has sent nothing for [`IDLE`].
pub struct Conn {
    stream: TcpStream,
    ip: IpAddr,
    open: Arc<Mutex<Open>>,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_network.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_network.remove(&self.ip);
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + IDLE;
                this.idle.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "admin connection idle",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
