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
//! (see [`crate::wire::slot`]): it gets in from any other address. And a
//! full listener is not the end: a connection from a source holding
//! fewer there than the source holding the most, less one, takes the
//! place of that source's oldest pending handshake (closed at once,
//! counted as its address's hit), so a few addresses together cannot lock
//! anybody out either. Connections we dial are not counted.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

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

/// The pending handshakes of one listener, by source address (key),
/// oldest first, each with the token that closes it.
#[derive(Default)]
pub(crate) struct ListenerPending(Arc<Mutex<OnListener>>);

#[derive(Default)]
struct OnListener {
    by_addr: HashMap<IpAddr, VecDeque<(u64, CancellationToken)>>,
    total: usize,
    next: u64,
}

/// A pending handshake, counted until dropped (when its handshake ends).
pub(crate) struct PendingGuard {
    table: Arc<PendingTable>,
    listener: Arc<Mutex<OnListener>>,
    key: IpAddr,
    id: u64,
    evict: CancellationToken,
}

impl PendingGuard {
    /// Cancelled when a newcomer takes this handshake's place (see
    /// [`PendingTable::admit`]): the handshake is to end at once.
    pub(crate) fn evicted(&self) -> CancellationToken {
        self.evict.clone()
    }
}

/// An admitted handshake, and the address (key) of the one whose place it
/// took, if the listener was full.
pub(crate) type Admitted = (PendingGuard, Option<IpAddr>);

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
    /// refuses it. A full listener makes room for a source that holds
    /// fewer than the one holding the most there, less one: the oldest
    /// handshake of that one is closed (its [`PendingGuard::evicted`]),
    /// and its address is returned. So a few addresses filling the
    /// listener lock nobody out, and sources never evict each other below
    /// an even share.
    pub(crate) fn admit(
        self: &Arc<Self>,
        listener: &ListenerPending,
        peer: SocketAddr,
    ) -> Result<Admitted, Cap> {
        let key = key(peer.ip());
        {
            let mut n = self.per_addr.entry(key).or_insert(0);
            if *n >= self.max_per_addr {
                return Err(Cap::Address(self.max_per_addr));
            }
            *n += 1;
        }
        let mut on = listener.0.lock();
        let mut evicted = None;
        if on.total >= self.max_per_listener {
            let mine = on.by_addr.get(&key).map_or(0, VecDeque::len);
            let heaviest = on
                .by_addr
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(k, q)| (*k, q.len()));
            match heaviest {
                Some((victim, most)) if most > mine + 1 => {
                    if let Some(q) = on.by_addr.get_mut(&victim)
                        && let Some((_, token)) = q.pop_front()
                    {
                        token.cancel();
                        if q.is_empty() {
                            on.by_addr.remove(&victim);
                        }
                        on.total -= 1;
                        evicted = Some(victim);
                    }
                }
                _ => {
                    drop(on);
                    self.release_addr(key);
                    return Err(Cap::Listener(self.max_per_listener));
                }
            }
        }
        let id = on.next;
        on.next += 1;
        let evict = CancellationToken::new();
        on.by_addr
            .entry(key)
            .or_default()
            .push_back((id, evict.clone()));
        on.total += 1;
        drop(on);
        let guard = PendingGuard {
            table: self.clone(),
            listener: listener.0.clone(),
            key,
            id,
            evict,
        };
        Ok((guard, evicted))
    }

    /// One pending handshake from (key) `key` fewer.
    fn release_addr(&self, key: IpAddr) {
        if let dashmap::mapref::entry::Entry::Occupied(mut e) = self.per_addr.entry(key) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// Logs (at debug) and counts that a pending handshake from `victim`
    /// was closed to make room on a full listener.
    pub(crate) fn count_eviction(&self, local: &str, victim: IpAddr, hits: &LimitHits) {
        let counted = addr_peer(victim);
        hits.hit(&counted, Limit::PendingHandshakes);
        tracing::debug!(node = local, victim = %counted, "listener full: the oldest pending handshake of the source holding the most closed");
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
        {
            let mut on = self.listener.lock();
            if let Some(q) = on.by_addr.get_mut(&self.key)
                && let Some(i) = q.iter().position(|(id, _)| *id == self.id)
            {
                q.remove(i);
                if q.is_empty() {
                    on.by_addr.remove(&self.key);
                }
                on.total -= 1;
            }
        }
        self.table.release_addr(self.key);
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

    fn admit(t: &Arc<PendingTable>, l: &ListenerPending, ip: &str) -> Result<PendingGuard, Cap> {
        t.admit(l, at(ip)).map(|(g, evicted)| {
            assert_eq!(evicted, None, "{ip} evicted one");
            g
        })
    }

    #[test]
    fn caps_per_listener_and_per_address() {
        let table = Arc::new(PendingTable::new(3, 2));
        let (l1, l2) = (ListenerPending::default(), ListenerPending::default());
        let a = admit(&table, &l1, "10.0.0.1").unwrap();
        let _b = admit(&table, &l1, "10.0.0.2").unwrap();
        let _b2 = admit(&table, &l1, "10.0.0.2").unwrap();
        // the address is full, on every listener
        assert_eq!(admit(&table, &l1, "10.0.0.2").err(), Some(Cap::Address(2)));
        assert_eq!(admit(&table, &l2, "10.0.0.2").err(), Some(Cap::Address(2)));
        // the listener is full: 10.0.0.1 (one there) may not take a place
        // of 10.0.0.2 (two)
        assert_eq!(admit(&table, &l1, "10.0.0.1").err(), Some(Cap::Listener(3)));
        let _d = admit(&table, &l2, "10.0.0.3").unwrap();
        // a finished handshake frees its places
        drop(a);
        assert_eq!(table.count_of("10.0.0.1".parse().unwrap()), 0);
        let _e = admit(&table, &l1, "10.0.0.1").unwrap();
    }

    #[test]
    fn a_full_listener_makes_room_for_a_lighter_source() {
        let table = Arc::new(PendingTable::new(4, 4));
        let l = ListenerPending::default();
        let held: Vec<PendingGuard> = (0..4)
            .map(|_| admit(&table, &l, "10.0.0.1").unwrap())
            .collect();
        // a newcomer from elsewhere takes the place of 10.0.0.1's oldest
        let (new, evicted) = table.admit(&l, at("10.0.0.2")).unwrap();
        assert_eq!(evicted, Some("10.0.0.1".parse().unwrap()));
        assert!(held[0].evicted().is_cancelled());
        assert!(held[1..].iter().all(|g| !g.evicted().is_cancelled()));
        // 10.0.0.1: three left, 10.0.0.2: one; a second newcomer evicts too
        let (_new2, evicted) = table.admit(&l, at("10.0.0.2")).unwrap();
        assert_eq!(evicted, Some("10.0.0.1".parse().unwrap()));
        assert!(held[1].evicted().is_cancelled());
        // 2 and 2: 10.0.0.2 may not take more, a third source may
        assert_eq!(admit(&table, &l, "10.0.0.2").err(), Some(Cap::Listener(4)));
        let (_third, evicted) = table.admit(&l, at("10.0.0.3")).unwrap();
        assert!(evicted.is_some());
        let (_fourth, evicted) = table.admit(&l, at("10.0.0.4")).unwrap();
        assert!(evicted.is_some());
        // one each: even, nobody evicts
        assert_eq!(admit(&table, &l, "10.0.0.5").err(), Some(Cap::Listener(4)));
        assert_eq!(l.0.lock().total, 4);
        // the evicted ones' guards dropping change nothing on the listener
        let left_of_first = held.iter().filter(|g| !g.evicted().is_cancelled()).count();
        drop(held);
        assert_eq!(table.count_of("10.0.0.1".parse().unwrap()), 0);
        assert_eq!(l.0.lock().total, 4 - left_of_first);
        // (`new` itself may have made room for the third or fourth)
        let on_listener = usize::from(!new.evicted().is_cancelled());
        drop(new);
        assert_eq!(l.0.lock().total, 4 - left_of_first - on_listener);
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix() {
        let table = Arc::new(PendingTable::new(10, 1));
        let l = ListenerPending::default();
        let _a = admit(&table, &l, "2001:db8:1:2::1").unwrap();
        assert!(table.admit(&l, at("2001:db8:1:2::ffff")).is_err());
        let _b = admit(&table, &l, "2001:db8:1:3::1").unwrap();
        // IPv4-mapped: as the IPv4 address
        let _c = admit(&table, &l, "::ffff:10.0.0.9").unwrap();
        assert!(table.admit(&l, at("10.0.0.9")).is_err());
    }
}
