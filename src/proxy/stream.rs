//! One byte-stream type for plain TCP, Unix sockets and TLS in either role,
//! so the relay code is written once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// `AsyncRead` for an enum of streams, each variant passing the call to
/// the stream it holds (written once for `Stream` and `ReadPart`).
macro_rules! read_by_variant {
    ($ty:ident: $($v:ident),+) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$v(s) => Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }
    };
}

/// `AsyncWrite` likewise (for `Stream` and `WritePart`).
macro_rules! write_by_variant {
    ($ty:ident: $($v:ident),+) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$v(s) => Pin::new(s).poll_write(cx, buf),)+
                }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$v(s) => Pin::new(s).poll_flush(cx),)+
                }
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$v(s) => Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}

pub enum Stream {
    Plain(TcpStream),
    /// To a database on this host, through its Unix-domain socket.
    Unix(UnixStream),
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_) | Stream::Unix(_))
    }
}

impl Stream {
    /// Splits the stream for the relay's two directions. Plain TCP and Unix
    /// sockets split into the owned halves tokio offers (reads and writes
    /// go straight to the socket); TLS, whose reads and writes share one
    /// session state, splits through `tokio::io::split`'s lock. The lock
    /// showed in the relay's profile (~2% of its CPU) on every read,
    /// write and flush.
    pub fn split(self) -> (ReadPart, WritePart) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadPart::Tcp(r), WritePart::Tcp(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadPart::Unix(r), WritePart::Unix(w))
            }
            tls => {
                let (r, w) = tokio::io::split(tls);
                (ReadPart::Tls(r), WritePart::Tls(w))
            }
        }
    }
}

/// The reading half of a [`Stream`].
pub enum ReadPart {
    Tcp(tokio::net::tcp::OwnedReadHalf),
    Unix(tokio::net::unix::OwnedReadHalf),
    Tls(tokio::io::ReadHalf<Stream>),
}

/// The writing half of a [`Stream`].
pub enum WritePart {
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    Unix(tokio::net::unix::OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<Stream>),
}

read_by_variant!(Stream: Plain, Unix, ServerTls, ClientTls);
write_by_variant!(Stream: Plain, Unix, ServerTls, ClientTls);
read_by_variant!(ReadPart: Tcp, Unix, Tls);
write_by_variant!(WritePart: Tcp, Unix, Tls);
