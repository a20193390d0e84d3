//! One connection per node: which handshake may send its auth line.
//!
//! A node's *slot* belongs to at most one handshake at a time, the one we
//! sent our auth line on (the *holder*). A peer completes a connection
//! when it checks our auth line, so sending it on one handshake per node
//! at most is what keeps two connections from completing (a Perl peer
//! that completed two would fire its "switched connections" monitors,
//! `AnyEvent::MP::Node` 94). Every other handshake with that node is
//! either refused — always before we send our auth line on it — or waits,
//! reading, until the slot is decided.
//!
//! The rules ([`decide`]), for a handshake whose peer sent both greeting
//! lines (the *contender*) while another one holds the slot:
//!
//! 1. The node is up, or the holder's peer has authenticated: refused.
//! 2. Both are connections we dialled: refused (we dial a node once).
//! 3. The contender's peer has not authenticated yet: it waits.
//! 4. It has: an authenticated handshake takes the slot from one that has
//!    not authenticated, so that a client which sends a greeting naming a
//!    node and never authenticates cannot keep the real node out
//!    (the reference only refuses when an *authenticated* connection
//!    exists, `AnyEvent::MP::Transport` 216):
//!    * both accepted: at once (a real node dials us once at a time);
//!    * one dialled by us, one by the peer, and the peer is an aemp node:
//!      the connection dialled by the smaller node id wins, at once — both
//!      sides decide the same way, so when two aemp nodes dial each other
//!      at the same moment exactly one connection completes;
//!    * otherwise (a Perl peer dialling us while we dial it): the holder's
//!      peer sends its auth line without waiting for ours, so it gets
//!      [`AUTH_GRACE`] to do so before the contender takes over.
//!
//! A handshake that loses the slot after we sent our auth line on it can
//! only be one whose peer did not authenticate in time, or one the peer
//! refuses itself by the same rules.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use aemp::wire::slot::{Contender, Decision, Holder, decide};
//! let now = Instant::now();
//! let squatter = Holder { conn: 1, outbound: false, since: now, verified: false };
//! let real = Contender { conn: 2, outbound: false, peer_verified: true, peer_is_aemp: false };
//! assert_eq!(decide(Some(&squatter), &real, "me", "x", now), Decision::TakeOver { loser: 1 });
//! ```

use std::time::{Duration, Instant};

/// How long the holder of a slot may take to authenticate before an
/// authenticated contender takes over (rule 4, last case).
pub const AUTH_GRACE: Duration = Duration::from_secs(1);

/// The handshake that holds a node's slot: we sent our auth line on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// Its connection.
    pub conn: u64,
    /// Whether we dialled it.
    pub outbound: bool,
    /// When it took the slot.
    pub since: Instant,
    /// Whether its peer's auth line checked out.
    pub verified: bool,
}

/// A handshake that asks for a node's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contender {
    /// Its connection.
    pub conn: u64,
    /// Whether we dialled it.
    pub outbound: bool,
    /// Whether its peer's auth line checked out already.
    pub peer_verified: bool,
    /// Whether the peer's greeting names an aemp node (`provider=aemp-…`),
    /// which follows these rules too.
    pub peer_is_aemp: bool,
}

/// What a contender is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The slot is the contender's: send the auth line.
    Granted,
    /// The contender loses: refuse it before sending the auth line.
    Refused,
    /// Ask again when the slot changes, when the contender's peer has
    /// authenticated, or at `until` if given.
    Wait {
        /// When the holder's grace ends.
        until: Option<Instant>,
    },
    /// The slot is the contender's; the holder `loser` must be refused.
    TakeOver {
        /// The holder's connection.
        loser: u64,
    },
}

/// Decides a contender's claim on a slot held by `holder` (none: the slot
/// is free) at `now`; `local` and `remote` are the two node ids. The
/// caller refuses contenders of a node that is up before asking.
pub fn decide(
    holder: Option<&Holder>,
    c: &Contender,
    local: &str,
    remote: &str,
    now: Instant,
) -> Decision {
    let Some(h) = holder else {
        return Decision::Granted;
    };
    if h.conn == c.conn {
        return Decision::Granted;
    }
    if h.verified || (h.outbound && c.outbound) {
        return Decision::Refused;
    }
    if !c.peer_verified {
        return Decision::Wait { until: None };
    }
    let take_over = Decision::TakeOver { loser: h.conn };
    if !h.outbound && !c.outbound {
        return take_over;
    }
    if c.peer_is_aemp {
        let dialler = |outbound: bool| if outbound { local } else { remote };
        return if dialler(c.outbound) < dialler(h.outbound) {
            take_over
        } else {
            Decision::Refused
        };
    }
    let grace_ends = h.since + AUTH_GRACE;
    if now >= grace_ends {
        take_over
    } else {
        Decision::Wait {
            until: Some(grace_ends),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(outbound: bool, verified: bool, since: Instant) -> Holder {
        Holder {
            conn: 1,
            outbound,
            since,
            verified,
        }
    }

    fn contender(outbound: bool, peer_verified: bool, peer_is_aemp: bool) -> Contender {
        Contender {
            conn: 2,
            outbound,
            peer_verified,
            peer_is_aemp,
        }
    }

    #[test]
    fn free_slot_and_own_slot_are_granted() {
        let now = Instant::now();
        let c = contender(false, false, false);
        assert_eq!(decide(None, &c, "a", "b", now), Decision::Granted);
        let own = Holder {
            conn: 2,
            ..holder(false, false, now)
        };
        assert_eq!(decide(Some(&own), &c, "a", "b", now), Decision::Granted);
    }

    #[test]
    fn an_authenticated_holder_always_wins() {
        let now = Instant::now();
        for (out, ver, aemp) in [
            (false, true, true),
            (true, true, false),
            (false, false, false),
        ] {
            let h = holder(!out, true, now);
            let c = contender(out, ver, aemp);
            assert_eq!(decide(Some(&h), &c, "a", "b", now), Decision::Refused);
        }
    }

    #[test]
    fn we_dial_a_node_once() {
        let now = Instant::now();
        let h = holder(true, false, now);
        let c = contender(true, true, true);
        assert_eq!(decide(Some(&h), &c, "a", "b", now), Decision::Refused);
    }

    #[test]
    fn unauthenticated_contenders_wait() {
        let now = Instant::now();
        for h_out in [false, true] {
            let h = holder(h_out, false, now);
            let c = contender(false, false, true);
            assert_eq!(
                decide(Some(&h), &c, "a", "b", now),
                Decision::Wait { until: None }
            );
        }
    }

    #[test]
    fn a_squatter_loses_to_the_real_node_at_once() {
        let now = Instant::now();
        let h = holder(false, false, now);
        for aemp in [false, true] {
            let c = contender(false, true, aemp);
            assert_eq!(
                decide(Some(&h), &c, "a", "b", now),
                Decision::TakeOver { loser: 1 }
            );
        }
    }

    #[test]
    fn aemp_crossed_dials_agree_on_the_smaller_diallers_connection() {
        let now = Instant::now();
        // connection 1 dialled by "a", connection 2 dialled by "b"; "a" < "b"
        // on a: holds its outbound 1, contender 2 is inbound
        let on_a = decide(
            Some(&holder(true, false, now)),
            &contender(false, true, true),
            "a",
            "b",
            now,
        );
        assert_eq!(on_a, Decision::Refused);
        // on b: holds its outbound 2, contender 1 is inbound
        let on_b = decide(
            Some(&Holder {
                conn: 2,
                ..holder(true, false, now)
            }),
            &Contender {
                conn: 1,
                ..contender(false, true, true)
            },
            "b",
            "a",
            now,
        );
        assert_eq!(on_b, Decision::TakeOver { loser: 2 });
        // and with the holders the other way round, the same connection wins
        let on_a = decide(
            Some(&Holder {
                conn: 2,
                ..holder(false, false, now)
            }),
            &Contender {
                conn: 1,
                ..contender(true, true, true)
            },
            "a",
            "b",
            now,
        );
        assert_eq!(on_a, Decision::TakeOver { loser: 2 });
        let on_b = decide(
            Some(&Holder {
                conn: 1,
                ..holder(false, false, now)
            }),
            &Contender {
                conn: 2,
                ..contender(true, true, true)
            },
            "b",
            "a",
            now,
        );
        assert_eq!(on_b, Decision::Refused);
    }

    #[test]
    fn a_perl_holder_gets_its_grace() {
        let now = Instant::now();
        let h = holder(true, false, now);
        let c = contender(false, true, false);
        assert_eq!(
            decide(Some(&h), &c, "a", "b", now),
            Decision::Wait {
                until: Some(now + AUTH_GRACE)
            }
        );
        assert_eq!(
            decide(Some(&h), &c, "a", "b", now + AUTH_GRACE),
            Decision::TakeOver { loser: 1 }
        );
    }
}
