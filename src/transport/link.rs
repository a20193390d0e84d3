//! The sending side of a live connection, as senders on any thread see it.
//!
//! A [`Link`] hands encoded frames to its connection actor's mailbox and
//! counts the bytes not yet written to the socket. That count is the
//! backpressure signal: the fire-and-forget `snd` fails the connection when
//! it passes the hard limit (so no message is silently skipped), and the
//! async send waits while it is above the high-water mark.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use actix::Addr;
use bytes::Bytes;
use tokio::sync::Notify;

use super::connection::{Connection, Outgoing, Overflow};
use crate::wire::Framing;

/// Byte accounting shared by a connection and its senders.
#[derive(Debug)]
pub(crate) struct SendQueue {
    /// Bytes handed to the connection and not yet written to the socket.
    bytes: AtomicUsize,
    /// Above this, `snd` fails the connection.
    limit: usize,
    /// Above this, async senders wait.
    high_water: usize,
    /// Set when the connection is gone; waiters must look again.
    closed: AtomicBool,
    room: Notify,
}

impl SendQueue {
    pub(crate) fn new(limit: usize) -> SendQueue {
        SendQueue {
            bytes: AtomicUsize::new(0),
            limit,
            high_water: (limit / 16).clamp(64 * 1024, 4 * 1024 * 1024).min(limit),
            closed: AtomicBool::new(false),
            room: Notify::new(),
        }
    }

    /// Counts `n` more queued bytes; false (and nothing counted) if the
    /// connection is gone or that passes the hard limit. Once the limit is
    /// passed the queue stays closed, so no later frame can overtake the
    /// refused one.
    pub(crate) fn add(&self, n: usize) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        if self.bytes.fetch_add(n, Ordering::Relaxed) + n <= self.limit {
            return true;
        }
        self.bytes.fetch_sub(n, Ordering::Relaxed);
        self.close();
        false
    }

    /// Counts `n` bytes the connection queued itself (not through `add`).
    pub(crate) fn count(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes have left through the socket.
    pub(crate) fn written(&self, n: usize) {
        let before = self.bytes.fetch_sub(n, Ordering::Relaxed);
        if before > self.high_water && before - n <= self.high_water {
            self.room.notify_waiters();
        }
    }

    /// The connection is gone: wake every waiter.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
    }

    /// Waits until the queue is at or below the high-water mark, or the
    /// connection is gone.
    pub(crate) async fn room(&self) {
        loop {
            if self.bytes.load(Ordering::Relaxed) <= self.high_water
                || self.closed.load(Ordering::Acquire)
            {
                return;
            }
            // registered before the re-check, so no wakeup is missed
            let notified = self.room.notified();
            if self.bytes.load(Ordering::Relaxed) <= self.high_water
                || self.closed.load(Ordering::Acquire)
            {
                return;
            }
            notified.await;
        }
    }
}

/// A handle on a connection that completed its handshake.
#[derive(Clone)]
pub(crate) struct Link {
    /// Unique id of the connection within this process.
    pub(crate) conn_id: u64,
    pub(crate) addr: Addr<Connection>,
    /// The framing we send on this connection.
    pub(crate) framing: Framing,
    pub(crate) queue: Arc<SendQueue>,
}

impl Link {
    /// Hands one JSON frame to the connection. When the queue passes its
    /// limit the connection is failed (its monitors fire) and neither this
    /// frame nor any later one is sent on it.
    pub(crate) fn send(&self, frame: Bytes) -> Result<(), Closed> {
        if self.queue.add(frame.len()) {
            self.addr.do_send(Outgoing(frame));
            Ok(())
        } else {
            self.addr.do_send(Overflow);
            Err(Closed)
        }
    }
}

/// The connection refuses frames: its send queue overflowed or it is
/// closing.
#[derive(Debug)]
pub(crate) struct Closed;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits() {
        let q = SendQueue::new(1 << 20);
        assert_eq!(q.high_water, 64 * 1024);
        assert!(q.add(1 << 20));
        assert!(!q.add(1));
        // closed for good, even after draining
        q.written(1 << 20);
        assert!(!q.add(1));
    }

    #[tokio::test]
    async fn room_wakes_when_drained() {
        let q = Arc::new(SendQueue::new(1 << 20));
        assert!(q.add(200_000));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        q.written(150_000);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
