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
//! message is silently skipped), the `try_` send is refused without harm
//! while the queue is above its high-water mark or the packet would pass
//! the limit, and the waiting send waits for room.
//!
//! **Closing.** Whether the outbox takes bytes (`closed`) is checked and
//! set under the buffer's lock, and the writer decides to close (buffer
//! empty and a close requested) under that lock too, in
//! [`Outbox::next`]: a push that returned `Ok` is always in the buffer the
//! writer takes before it closes, and nothing is taken after an overflow.

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
    /// A `try_` push found the queue full; nothing changed.
    Full,
    /// A `try_` push of a packet larger than the whole bound: it never
    /// fits; nothing changed.
    TooBig,
}

/// What the writer does next (see [`Outbox::next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Bytes were taken: write them.
    Write,
    /// Nothing queued; the writer's waker is registered.
    Idle,
    /// Nothing queued and a close was requested: close now.
    Close,
    /// A push passed the limit: fail the connection.
    Overflowed,
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
    /// nothing is sent and its error is returned. A push that would pass
    /// the limit fails the connection ([`Refused::Overflow`]).
    #[inline]
    pub(crate) fn push<E>(
        &self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<Result<(), E>, Refused> {
        self.push_inner(encode, false)
    }

    /// Like [`Outbox::push`], but a full queue (above the high-water mark,
    /// or this packet would pass the limit) refuses the packet with
    /// [`Refused::Full`] and leaves the connection alone.
    pub(crate) fn try_push<E>(
        &self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<Result<(), E>, Refused> {
        self.push_inner(encode, true)
    }

    #[inline]
    fn push_inner<E>(
        &self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
        polite: bool,
    ) -> Result<Result<(), E>, Refused> {
        let mut buf = self.lock();
        // under the lock: see the module docs
        if self.closed.load(Ordering::Relaxed) {
            return Err(Refused::Closed);
        }
        if polite && self.bytes.load(Ordering::Relaxed) > self.high_water {
            return Err(Refused::Full);
        }
        let before = buf.len();
        if let Err(e) = encode(&mut buf) {
            buf.truncate(before);
            return Ok(Err(e));
        }
        let n = buf.len() - before;
        if self.bytes.fetch_add(n, Ordering::Relaxed) + n > self.limit {
            buf.truncate(before);
            self.bytes.fetch_sub(n, Ordering::Relaxed);
            if polite {
                return Err(if n > self.limit {
                    Refused::TooBig
                } else {
                    Refused::Full
                });
            }
            self.overflowed.store(true, Ordering::Release);
            self.closed.store(true, Ordering::Relaxed);
            drop(buf);
            self.close();
            return Err(Refused::Overflow);
        }
        drop(buf);
        if before == 0 {
            self.writer.wake();
        }
        Ok(Ok(()))
    }

    /// Writer side: what to do next. If `out` (which must be empty; its
    /// capacity is handed back for reuse) gets the pending bytes, write
    /// them; if nothing is pending the writer's waker is registered, or,
    /// when a close was requested, the writer closes — decided under the
    /// buffer's lock, so no push that returned `Ok` is left behind.
    pub(crate) fn next(&self, out: &mut BytesMut, waker: &Waker) -> Next {
        debug_assert!(out.is_empty());
        if self.overflowed() {
            return Next::Overflowed;
        }
        // the second round runs after registering the waker: bytes that
        // arrived meanwhile sent their wake to the old one
        for registered in [false, true] {
            let mut buf = self.lock();
            if !buf.is_empty() {
                std::mem::swap(&mut *buf, out);
                return Next::Write;
            }
            if self.close_requested.load(Ordering::Relaxed) {
                // `closed` is set too: no push gets in after this
                return Next::Close;
            }
            drop(buf);
            if !registered {
                self.writer.register(waker);
            }
        }
        Next::Idle
    }

    /// Writer side, while the socket is full: registers the writer's
    /// waker, so that an overflow wakes it (a full socket must not hide
    /// it: a peer that reads nothing keeps it full); true if one happened
    /// already.
    pub(crate) fn watch(&self, waker: &Waker) -> bool {
        self.writer.register(waker);
        self.overflowed()
    }

    /// Writer side: `n` bytes have left through the socket.
    pub(crate) fn written(&self, n: usize) {
        let before = self.bytes.fetch_sub(n, Ordering::Relaxed);
        let after = before - n;
        // waiting senders are woken when the queue drops to the high-water
        // mark, and when it is empty (a packet larger than the room left
        // under the mark waits for that)
        if (before > self.high_water && after <= self.high_water) || (after == 0 && before > 0) {
            self.room.notify_waiters();
        }
    }

    /// Whether a push passed the limit.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Asks the writer to close once everything queued is written.
    pub(crate) fn request_close(&self) {
        {
            let _buf = self.lock();
            self.close_requested.store(true, Ordering::Relaxed);
            self.closed.store(true, Ordering::Relaxed);
        }
        self.room.notify_waiters();
        self.writer.wake();
    }

    /// Refuses all further bytes and releases every waiting sender.
    pub(crate) fn close(&self) {
        {
            let _buf = self.lock();
            self.closed.store(true, Ordering::Relaxed);
        }
        self.room.notify_waiters();
        self.writer.wake();
    }

    /// Whether the outbox refuses bytes (closing, closed or overflowed).
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Bytes queued and not yet written.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The most bytes the queue holds.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// A future that completes at the next wake of waiting senders (room
    /// made, or the outbox closed); create it before checking, so no wake
    /// is missed.
    pub(crate) fn room_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.room.notified()
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
        assert_eq!(o.next(&mut out, Waker::noop()), Next::Overflowed);
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
        assert_eq!(o.next(&mut out, Waker::noop()), Next::Write);
        assert_eq!(&out[..], b"xxx");
    }

    #[tokio::test]
    async fn room_wakes_when_drained() {
        let o = Arc::new(Outbox::new(1, Framing::Json, 1 << 20));
        push(&o, 200_000).unwrap();
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.room_changed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        o.written(100_000); // still above the high-water mark
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        o.written(50_000);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn try_push_refuses_without_failing() {
        let o = Outbox::new(1, Framing::Json, 1 << 20);
        // a packet that would pass the limit
        let big = o.try_push(|b| {
            b.extend_from_slice(&vec![b'x'; (1 << 20) + 1]);
            Ok::<(), ()>(())
        });
        assert_eq!(big, Err(Refused::TooBig));
        assert!(!o.overflowed() && !o.is_closed());
        assert_eq!(o.queued(), 0);
        // above the high-water mark: full until drained
        push(&o, 64 * 1024 + 1).unwrap();
        let small = |o: &Outbox| {
            o.try_push(|b| {
                b.extend_from_slice(b"y");
                Ok::<(), ()>(())
            })
        };
        assert_eq!(small(&o), Err(Refused::Full));
        let mut out = BytesMut::new();
        assert_eq!(o.next(&mut out, Waker::noop()), Next::Write);
        o.written(out.len());
        assert_eq!(small(&o), Ok(Ok(())));
    }

    #[test]
    fn close_after_what_is_queued() {
        let o = Outbox::new(1, Framing::Json, 1 << 20);
        push(&o, 3).unwrap();
        o.request_close();
        assert_eq!(push(&o, 1), Err(Refused::Closed));
        let mut out = BytesMut::new();
        assert_eq!(o.next(&mut out, Waker::noop()), Next::Write);
        assert_eq!(&out[..], b"xxx");
        out.clear();
        assert_eq!(o.next(&mut out, Waker::noop()), Next::Close);
    }

    /// Issue 13, race 2: a push racing the writer's last drain and its
    /// close check must either be refused or be in what the writer takes
    /// before it closes. The interleaving cannot be forced from outside, so
    /// this runs the three parties (a pusher, the writer, the closer) on
    /// their own threads many times; with the checks outside the buffer's
    /// lock (before this fix) it failed 5 runs of 5, losing 2 to 14
    /// acknowledged pushes in 2000 rounds.
    #[test]
    fn no_acknowledged_push_is_lost_at_close() {
        use std::sync::atomic::AtomicU64;
        let lost = AtomicU64::new(0);
        for round in 0..2000u32 {
            let o = Outbox::new(1, Framing::Json, 1 << 30);
            let (acked, taken) = std::thread::scope(|s| {
                let pusher = s.spawn(|| {
                    let mut acked = 0usize;
                    while push(&o, 1).is_ok() {
                        acked += 1;
                    }
                    acked
                });
                let writer = s.spawn(|| {
                    let mut taken = 0usize;
                    let mut out = BytesMut::new();
                    loop {
                        match o.next(&mut out, Waker::noop()) {
                            Next::Write => {
                                taken += out.len();
                                o.written(out.len());
                                out.clear();
                            }
                            Next::Idle => std::hint::spin_loop(),
                            Next::Close | Next::Overflowed => return taken,
                        }
                    }
                });
                for _ in 0..(round % 97) * 10 {
                    std::hint::spin_loop();
                }
                o.request_close();
                (pusher.join().unwrap(), writer.join().unwrap())
            });
            if acked != taken {
                lost.fetch_add((acked - taken) as u64, Ordering::Relaxed);
            }
        }
        assert_eq!(
            lost.load(Ordering::Relaxed),
            0,
            "acknowledged bytes never taken"
        );
    }
}
