//! The sending side of a live connection, shared by its senders on any
//! thread and its connection actor.
//!
//! Senders encode their packet straight into the outbox buffer (no
//! per-message allocation, no mailbox hop) and wake the connection's writer
//! only when the buffer goes from empty to non-empty. The writer swaps the
//! whole buffer out and writes it with as few syscalls as the socket
//! allows, so a burst of sends leaves in one `write`.
//!
//! The byte count of the buffer plus what the writer holds is the
//! backpressure signal: the fire-and-forget `snd` fails the connection when
//! it passes the hard limit (and the outbox refuses everything after, so no
//! message is silently skipped), and the async send waits while it is
//! above the high-water mark.

use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Waker;

use atomic_waker::AtomicWaker;
use bytes::BytesMut;
use tokio::sync::Notify;

use crate::wire::Framing;

/// Why the outbox refuses bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The connection is closing or closed.
    Closed,
    /// This push would pass the limit; the connection is now failing.
    Overflow,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    /// Unique id of the connection within this process.
    pub(crate) conn_id: u64,
    /// The framing we send on this connection.
    pub(crate) framing: Framing,
    buf: Mutex<BytesMut>,
    /// Bytes in `buf` plus bytes the writer holds and has not written.
    bytes: AtomicUsize,
    limit: usize,
    high_water: usize,
    /// No more bytes are taken.
    closed: AtomicBool,
    /// The limit was passed: the writer must fail the connection.
    overflowed: AtomicBool,
    /// Close after writing what is queued.
    close_requested: AtomicBool,
    writer: AtomicWaker,
    room: Notify,
}

impl Outbox {
    pub(crate) fn new(conn_id: u64, framing: Framing, limit: usize) -> Outbox {
        Outbox {
            conn_id,
            framing,
            buf: Mutex::new(BytesMut::with_capacity(64 * 1024)),
            bytes: AtomicUsize::new(0),
            limit,
            high_water: (limit / 16).clamp(64 * 1024, 4 * 1024 * 1024).min(limit),
            closed: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
            close_requested: AtomicBool::new(false),
            writer: AtomicWaker::new(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BytesMut> {
        self.buf.lock()
    }

    /// Appends what `encode` writes (the encoding of one packet) and wakes
    /// the writer if it was idle. `encode` must append only; if it fails,
    /// nothing is sent and its error is returned.
    pub(crate) fn push<E>(
        &self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<Result<(), E>, Refused> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let mut buf = self.lock();
        let before = buf.len();
        if let Err(e) = encode(&mut buf) {
            buf.truncate(before);
            return Ok(Err(e));
        }
        let n = buf.len() - before;
        if self.bytes.fetch_add(n, Ordering::Relaxed) + n > self.limit {
            buf.truncate(before);
            self.bytes.fetch_sub(n, Ordering::Relaxed);
            drop(buf);
            self.overflowed.store(true, Ordering::Release);
            self.close();
            return Err(Refused::Overflow);
        }
        drop(buf);
        if before == 0 {
            self.writer.wake();
        }
        Ok(Ok(()))
    }

    /// Writer side: swaps the pending bytes into `out` (which must be
    /// empty; its capacity is handed back for reuse).
    pub(crate) fn take(&self, out: &mut BytesMut) {
        debug_assert!(out.is_empty());
        std::mem::swap(&mut *self.lock(), out);
    }

    /// Writer side: registers the writer's waker, then reports whether
    /// bytes arrived meanwhile (if so, take them now: a wake may have gone
    /// to the old waker).
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        self.writer.register(waker);
        !self.lock().is_empty()
    }

    /// Writer side: `n` bytes have left through the socket.
    pub(crate) fn written(&self, n: usize) {
        let before = self.bytes.fetch_sub(n, Ordering::Relaxed);
        if before > self.high_water && before - n <= self.high_water {
            self.room.notify_waiters();
        }
    }

    /// Whether a push passed the limit.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Asks the writer to close once everything queued is written.
    pub(crate) fn request_close(&self) {
        self.close_requested.store(true, Ordering::Release);
        self.closed.store(true, Ordering::Release);
        self.writer.wake();
    }

    /// Whether a close was requested.
    pub(crate) fn close_requested(&self) -> bool {
        self.close_requested.load(Ordering::Acquire)
    }

    /// Refuses all further bytes and releases every waiting sender.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
        self.writer.wake();
    }

    /// Whether more than the high-water mark is queued.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) > self.high_water && !self.closed.load(Ordering::Acquire)
    }

    /// Waits until the queue is at or below the high-water mark, or the
    /// connection is gone.
    pub(crate) async fn room(&self) {
        loop {
            if !self.is_full() {
                return;
            }
            // registered before the re-check, so no wakeup is missed
            let notified = self.room.notified();
            if !self.is_full() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn push(o: &Outbox, n: usize) -> Result<(), Refused> {
        o.push(|buf| {
            buf.extend_from_slice(&vec![b'x'; n]);
            Ok::<(), ()>(())
        })
        .map(|_| ())
    }

    #[test]
    fn limits_and_closing() {
        let o = Outbox::new(1, Framing::Json, 1 << 20);
        assert_eq!(o.high_water, 64 * 1024);
        push(&o, 1 << 20).unwrap();
        assert_eq!(push(&o, 1), Err(Refused::Overflow));
        assert!(o.overflowed());
        // closed for good, even after draining: nothing overtakes the refused bytes
        let mut out = BytesMut::new();
        o.take(&mut out);
        o.written(out.len());
        assert_eq!(push(&o, 1), Err(Refused::Closed));
    }

    #[test]
    fn a_failed_encoding_leaves_nothing() {
        let o = Outbox::new(1, Framing::Json, 1 << 20);
        push(&o, 3).unwrap();
        let r = o.push(|b| {
            b.extend_from_slice(b"partial");
            Err("nope")
        });
        assert_eq!(r, Ok(Err("nope")));
        let mut out = BytesMut::new();
        o.take(&mut out);
        assert_eq!(&out[..], b"xxx");
    }

    #[tokio::test]
    async fn room_wakes_when_drained() {
        let o = Arc::new(Outbox::new(1, Framing::Json, 1 << 20));
        push(&o, 200_000).unwrap();
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        o.written(150_000);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
