//! Caps on pending handshakes: accepted connections that have not
//! finished their handshake (or failed it) yet.
//!
//! Each listener takes at most `max_pending_handshakes` of them at a time,
//! and all listeners together at most `max_pending_handshakes_per_addr`
//! from one source address (an IPv6 address counts by its /64 prefix, the
//! block one host usually has). A connection over either cap is closed
//! at once, before our greeting, logged (a `warn` line with the address,
//! at most one a second; the refusals in between are counted in the next
//! one) and counted as a [`Limit::PendingHandshakes`] hit of
//! `addr:<ip>`. The reference has no such cap.
//!
//! The per-address cap is lower than the per-listener one by default, so
//! that handshakes held open from one address cannot lock everyone else
//! out — in particular the real node behind a node id that squatters name
//! (see [`crate::wire::slot`]): it gets in from any other address.
//! Connections we dial are not counted.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;

use super::limits::{Limit, LimitHits};

/// Shortest pause between two log lines about refused handshakes.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// The node's pending handshakes per source address, and its caps.
pub(crate) struct PendingTable {
    per_addr: DashMap<IpAddr, usize, ahash::RandomState>,
    max_per_listener: usize,
    max_per_addr: usize,
    /// When the last refusal was logged.
    last_warn: Mutex<Option<Instant>>,
    /// Refusals since then.
    unlogged: AtomicU64,
}

/// The pending handshakes of one listener.
#[derive(Default)]
pub(crate) struct ListenerPending(Arc<AtomicUsize>);

/// A pending handshake, counted until dropped (when its handshake ends).
pub(crate) struct PendingGuard {
    table: Arc<PendingTable>,
    listener: Arc<AtomicUsize>,
    key: IpAddr,
}

/// Which cap refused a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    /// The listener's.
    Listener(usize),
    /// The source address's.
    Address(usize),
}

/// The address a source counts under: IPv4 (also IPv4-mapped IPv6) as it
/// is, IPv6 by its /64 prefix.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl PendingTable {
    pub(crate) fn new(max_per_listener: usize, max_per_addr: usize) -> PendingTable {
        PendingTable {
            per_addr: DashMap::with_hasher(ahash::RandomState::new()),
            max_per_listener,
            max_per_addr,
            last_warn: Mutex::new(None),
            unlogged: AtomicU64::new(0),
        }
    }

    /// Counts a handshake from `peer` on `listener`, or says which cap
    /// refuses it.
    pub(crate) fn admit(
        self: &Arc<Self>,
        listener: &ListenerPending,
        peer: SocketAddr,
    ) -> Result<PendingGuard, Cap> {
        let on_listener = listener.0.fetch_add(1, Ordering::AcqRel);
        if on_listener >= self.max_per_listener {
            listener.0.fetch_sub(1, Ordering::AcqRel);
            return Err(Cap::Listener(self.max_per_listener));
        }
        let key = key(peer.ip());
        {
            let mut n = self.per_addr.entry(key).or_insert(0);
            if *n >= self.max_per_addr {
                drop(n);
                listener.0.fetch_sub(1, Ordering::AcqRel);
                return Err(Cap::Address(self.max_per_addr));
            }
            *n += 1;
        }
        Ok(PendingGuard {
            table: self.clone(),
            listener: listener.0.clone(),
            key,
        })
    }

    /// Logs (rate-limited) and counts a refusal of `peer` by `cap`.
    pub(crate) fn refused(&self, local: &str, peer: SocketAddr, cap: Cap, hits: &LimitHits) {
        // counted as the cap counts: an IPv6 source by its /64, so one
        // network cannot add a row per address
        let counted = addr_peer(peer.ip());
        hits.hit(&counted, Limit::PendingHandshakes);
        let now = Instant::now();
        let mut last = self.last_warn.lock();
        if last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            drop(last);
            tracing::debug!(node = local, %peer, ?cap, "pending handshake cap: connection refused");
            return;
        }
        *last = Some(now);
        drop(last);
        let before = self.unlogged.swap(0, Ordering::Relaxed);
        let (which, limit) = match cap {
            Cap::Listener(n) => ("max_pending_handshakes", n),
            Cap::Address(n) => ("max_pending_handshakes_per_addr", n),
        };
        tracing::warn!(
            node = local, %peer, cap = which, limit, refused_before = before,
            "too many pending handshakes: connection refused"
        );
    }

    /// Pending handshakes from `ip` (by its key), for tests.
    #[cfg(test)]
    fn count_of(&self, ip: IpAddr) -> usize {
        self.per_addr.get(&key(ip)).map_or(0, |n| *n)
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.listener.fetch_sub(1, Ordering::AcqRel);
        if let dashmap::mapref::entry::Entry::Occupied(mut e) = self.table.per_addr.entry(self.key)
        {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// How a peer that has not authenticated is named in the limit counters
/// and the log throttle: `addr:<ip>`, an IPv6 source by its /64
/// (`addr:<prefix>/64`), so one network cannot add a row per address.
pub(crate) fn addr_peer(ip: IpAddr) -> String {
    match key(ip) {
        IpAddr::V6(prefix) => format!("addr:{prefix}/64"),
        v4 => format!("addr:{v4}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 1234)
    }

    #[test]
    fn caps_per_listener_and_per_address() {
        let table = Arc::new(PendingTable::new(3, 2));
        let (l1, l2) = (ListenerPending::default(), ListenerPending::default());
        let a = table.admit(&l1, at("10.0.0.1")).unwrap();
        let _b = table.admit(&l1, at("10.0.0.1")).unwrap();
        // the address is full, on every listener
        assert_eq!(
            table.admit(&l1, at("10.0.0.1")).err(),
            Some(Cap::Address(2))
        );
        assert_eq!(
            table.admit(&l2, at("10.0.0.1")).err(),
            Some(Cap::Address(2))
        );
        // another address still gets in, until the listener is full
        let _c = table.admit(&l1, at("10.0.0.2")).unwrap();
        assert_eq!(
            table.admit(&l1, at("10.0.0.3")).err(),
            Some(Cap::Listener(3))
        );
        let _d = table.admit(&l2, at("10.0.0.3")).unwrap();
        // a finished handshake frees its places
        drop(a);
        assert_eq!(table.count_of("10.0.0.1".parse().unwrap()), 1);
        let _e = table.admit(&l1, at("10.0.0.1")).unwrap();
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix() {
        let table = Arc::new(PendingTable::new(10, 1));
        let l = ListenerPending::default();
        let _a = table.admit(&l, at("2001:db8:1:2::1")).unwrap();
        assert!(table.admit(&l, at("2001:db8:1:2::ffff")).is_err());
        let _b = table.admit(&l, at("2001:db8:1:3::1")).unwrap();
        // IPv4-mapped: as the IPv4 address
        let _c = table.admit(&l, at("::ffff:10.0.0.9")).unwrap();
        assert!(table.admit(&l, at("10.0.0.9")).is_err());
    }
}
