//! The byte stream a data connection hands to both ends.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use crate::transport::dataconn::RawStream;

/// Buffer of each direction of a local data connection (both ends on
/// this node).
pub(crate) const LOCAL_BUFFER: usize = 256 * 1024;

/// One end of a data connection: a raw, authenticated byte stream to
/// another node (plain TCP or TLS, as the node's settings chose), or an
/// in-memory pipe when both ends are on the same node. Nothing is framed,
/// limited or timed out; dropping it (or shutting it down) closes it.
///
/// As on node connections, a TLS peer that closes without `close_notify`
/// (Perl's does) ends the stream like a plain end of file. After an error
/// every later call fails the same way without touching the stream again.
///
/// ```
/// # actix_rt::System::new().block_on(async {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// let node = aemp::Node::builder().node_id("a").secret("s").start().await.unwrap();
/// node.register_dataconn_init("My::sink", |_node, _initdata, mut stream| {
///     actix_rt::spawn(async move {
///         let mut line = String::new();
///         stream.read_to_string(&mut line).await.unwrap();
///         assert_eq!(line, "hello");
///     });
///     Ok(())
/// })
/// .unwrap();
/// // a local target: the two ends are a pipe
/// let timeout = std::time::Duration::from_secs(5);
/// let mut s = aemp::dataconn::connect_to(&node, "a", timeout, "My::sink", vec![])
///     .await
///     .unwrap();
/// assert_eq!(s.peer_node(), "a");
/// s.write_all(b"hello").await.unwrap();
/// s.shutdown().await.unwrap();
/// # node.shutdown();
/// # });
/// ```
pub struct DataStream {
    inner: Inner,
    peer: String,
    id: String,
    /// The first error, repeated by every later call.
    failed: Option<(io::ErrorKind, String)>,
}

enum Inner {
    Net(Box<RawStream>),
    Local(DuplexStream),
}

impl std::fmt::Debug for DataStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStream")
            .field("peer", &self.peer)
            .field("id", &self.id)
            .field("local", &matches!(self.inner, Inner::Local(_)))
            .finish()
    }
}

impl DataStream {
    pub(crate) fn net(stream: RawStream, peer: String, id: String) -> DataStream {
        DataStream {
            inner: Inner::Net(Box::new(stream)),
            peer,
            id,
            failed: None,
        }
    }

    /// Both ends of a local data connection.
    pub(crate) fn local_pair(node: &str, id: &str) -> (DataStream, DataStream) {
        let (a, b) = tokio::io::duplex(LOCAL_BUFFER);
        let end = |s| DataStream {
            inner: Inner::Local(s),
            peer: node.to_owned(),
            id: id.to_owned(),
            failed: None,
        };
        (end(a), end(b))
    }

    /// The node at the other end.
    pub fn peer_node(&self) -> &str {
        &self.peer
    }

    /// The data connection's id (`<counter>@<requesting node>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the other end is on this node (an in-memory pipe).
    pub fn is_local(&self) -> bool {
        matches!(self.inner, Inner::Local(_))
    }
}

impl DataStream {
    /// Runs `op` unless an earlier call failed; remembers its error.
    fn guarded<T>(
        &mut self,
        op: impl FnOnce(&mut Inner) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Some((kind, text)) = &self.failed {
            return Poll::Ready(Err(io::Error::new(*kind, text.clone())));
        }
        let result = op(&mut self.inner);
        if let Poll::Ready(Err(e)) = &result {
            self.failed = Some((e.kind(), e.to_string()));
        }
        result
    }
}

impl AsyncRead for DataStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().guarded(|inner| match inner {
            Inner::Net(s) => match Pin::new(s.as_mut()).poll_read(cx, buf) {
                // a TLS peer that closes without close_notify (as Perl's
                // does) has ended its stream like a plain one
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
            Inner::Local(s) => Pin::new(s).poll_read(cx, buf),
        })
    }
}

impl AsyncWrite for DataStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().guarded(|inner| match inner {
            Inner::Net(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Inner::Local(s) => Pin::new(s).poll_write(cx, buf),
        })
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guarded(|inner| match inner {
            Inner::Net(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Inner::Local(s) => Pin::new(s).poll_flush(cx),
        })
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guarded(|inner| match inner {
            Inner::Net(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Inner::Local(s) => Pin::new(s).poll_shutdown(cx),
        })
    }
}
