//! Runs the sans-IO [`Handshake`] on a byte stream, with its absolute
//! deadline.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::wire::{Established, Handshake, HandshakeError, MAX_LINE};

/// A failed handshake and, if it got that far, the peer's node id.
#[derive(Debug)]
pub(crate) struct HandshakeFailure {
    pub(crate) error: HandshakeError,
    pub(crate) remote: Option<String>,
}

/// A completed handshake: the agreement, the stream, and the bytes the
/// peer sent after its auth line (the start of its packet stream).
pub(crate) type Handshaken<S> = (Established, S, BytesMut);

/// Writes our greeting at once, answers the peer's greeting with our auth
/// line as soon as both its lines are in, and checks its auth line — all
/// before the handshake's deadline, which trickling bytes cannot extend.
pub(crate) async fn drive<S>(
    mut io: S,
    mut hs: Handshake,
    connected: impl Fn(&str) -> bool,
) -> Result<Handshaken<S>, HandshakeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::from_std(hs.deadline());
    let result = tokio::time::timeout_at(deadline, exchange(&mut io, &mut hs, &connected)).await;
    let error = match result {
        Ok(Ok((est, rest))) => return Ok((est, io, rest)),
        Ok(Err(e)) => e,
        Err(_) => hs.timeout_error(),
    };
    // best effort: let the peer see a FIN rather than a reset
    let _ = tokio::time::timeout(std::time::Duration::from_millis(100), io.shutdown()).await;
    Err(HandshakeFailure {
        error,
        remote: hs.remote_node().map(str::to_owned),
    })
}

async fn exchange<S>(
    io: &mut S,
    hs: &mut Handshake,
    connected: &dyn Fn(&str) -> bool,
) -> Result<(Established, BytesMut), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(&hs.greeting()).await?;
    let mut buf = BytesMut::with_capacity(2 * MAX_LINE);
    let mut out = Vec::new();
    loop {
        let step = hs.advance(&mut buf, &mut out, connected);
        if !out.is_empty() {
            io.write_all(&out).await?;
            out.clear();
        }
        if let Some(est) = step? {
            return Ok((est, buf));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(HandshakeError::Eof);
        }
    }
}
