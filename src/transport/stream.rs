//! The byte stream of a connection: plain TCP, or TLS after the greeting
//! lines. A TLS stream reads first the bytes that arrived with the
//! greeting (the peer's first TLS records), then the socket.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tokio_util::either::Either;

use crate::wire::TlsConfigs;

/// A stream that yields `prefix` before what `inner` reads.
pub(crate) struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: BytesMut, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection's stream.
pub(crate) enum Stream<S> {
    /// Plain text.
    Plain(S),
    /// TLS after the greeting lines.
    Tls(Box<TlsStream<Prefixed<S>>>),
    /// Between the two, only while switching.
    Switching,
}

fn switching() -> io::Error {
    io::Error::other("stream used while switching to TLS")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }
}

/// The TLS step, for any sub-protocol that shares the handshake: runs the
/// TLS handshake on `io` (with `prefix` read first) as the client or the
/// server. As the client, `peer` names the peer in its hello; an IP
/// address sends no SNI, as no host name is checked.
pub(crate) async fn start_tls<S>(
    configs: &TlsConfigs,
    io: S,
    prefix: BytesMut,
    client: bool,
    peer: IpAddr,
) -> io::Result<TlsStream<Prefixed<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = Prefixed::new(prefix, io);
    if client {
        let connector = TlsConnector::from(configs.client.clone());
        let name = ServerName::IpAddress(peer.into());
        Ok(TlsStream::Client(connector.connect(name, io).await?))
    } else {
        let acceptor = TlsAcceptor::from(configs.server.clone());
        Ok(TlsStream::Server(acceptor.accept(io).await?))
    }
}

/// The TLS stream of a connection.
type Tls = TlsStream<Prefixed<tokio::net::TcpStream>>;

/// The reading half of a connection's stream (a plain socket's without a
/// lock between the halves).
pub(crate) type ReadSide = Either<tokio::net::tcp::OwnedReadHalf, tokio::io::ReadHalf<Tls>>;

/// The writing half of a connection's stream.
pub(crate) type WriteSide = Either<tokio::net::tcp::OwnedWriteHalf, tokio::io::WriteHalf<Tls>>;

impl<S> Stream<S> {
    /// The subject of the peer's certificate, on a TLS stream.
    pub(crate) fn peer_subject(&self) -> Option<String> {
        let Stream::Tls(tls) = self else {
            return None;
        };
        let certs = match tls.as_ref() {
            TlsStream::Client(c) => c.get_ref().1.peer_certificates(),
            TlsStream::Server(s) => s.get_ref().1.peer_certificates(),
        };
        crate::wire::cert_subject(certs?.first()?)
    }
}

impl Stream<tokio::net::TcpStream> {
    /// The socket under the stream (TLS or not), for what only the system
    /// can tell about it (see [`super::unacked_bytes`]).
    pub(crate) fn socket(&self) -> Option<super::SocketFd> {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::Tls(tls) => match tls.as_ref() {
                TlsStream::Client(c) => &c.get_ref().0.inner,
                TlsStream::Server(s) => &s.get_ref().0.inner,
            },
            Stream::Switching => return None,
        };
        super::SocketFd::of(tcp)
    }

    /// Splits the stream for the connection's read and write loops.
    pub(crate) fn into_split(self) -> io::Result<(ReadSide, WriteSide)> {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.into_split();
                Ok((Either::Left(r), Either::Left(w)))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                Ok((Either::Right(r), Either::Right(w)))
            }
            Stream::Switching => Err(switching()),
        }
    }
}
