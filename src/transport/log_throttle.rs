//! Warnings a peer can cause at will, at most once a minute per peer and
//! kind: a failed handshake, a malformed node-port request, a call of an
//! unknown function, a refusal by a limit. Without it, any client (even
//! one that never authenticates) could fill the disk with log lines.
//!
//! The first warning of a kind for a peer is logged; those that follow
//! within [`WARN_INTERVAL`] are counted, not logged (they go to `debug`),
//! and the next one logged after the interval says how many were left out.
//! At most [`MAX_KEYS`] (peer, kind) pairs are remembered; beyond them
//! (more peers than that warned within the interval) the rest share one
//! entry, peer `other`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often one kind of warning for one peer is logged at most.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// How many (peer, kind) pairs are remembered.
pub(crate) const MAX_KEYS: usize = 4096;

/// When each peer's warnings of each kind were last logged, and how many
/// were left out since.
#[derive(Default)]
pub(crate) struct LogThrottle {
    last: Mutex<HashMap<(Box<str>, &'static str), Entry>>,
}

#[derive(Clone, Copy)]
struct Entry {
    logged: Instant,
    left_out: u64,
}

impl LogThrottle {
    /// Whether a warning of `kind` for `peer` is to be logged now: `Some`
    /// with how many of them were left out since the last one logged, or
    /// `None` (counted) if one was logged less than [`WARN_INTERVAL`] ago.
    pub(crate) fn due(&self, peer: &str, kind: &'static str) -> Option<u64> {
        self.due_at(peer, kind, Instant::now())
    }

    fn due_at(&self, peer: &str, kind: &'static str, now: Instant) -> Option<u64> {
        let mut last = self.last.lock();
        let mut key = (Box::<str>::from(peer), kind);
        if !last.contains_key(&key) && last.len() >= MAX_KEYS {
            last.retain(|_, e| now.duration_since(e.logged) < WARN_INTERVAL);
            if last.len() >= MAX_KEYS {
                key = (Box::from("other"), kind);
            }
        }
        match last.get_mut(&key) {
            Some(e) if now.duration_since(e.logged) < WARN_INTERVAL => {
                e.left_out += 1;
                None
            }
            Some(e) => {
                let left_out = std::mem::take(&mut e.left_out);
                e.logged = now;
                Some(left_out)
            }
            None => {
                last.insert(
                    key,
                    Entry {
                        logged: now,
                        left_out: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// Forgets `peer` (its node went down): its next warnings are logged.
    pub(crate) fn forget(&self, peer: &str) {
        self.last.lock().retain(|(p, _), _| &**p != peer);
    }
}

/// `tracing::warn!` of a warning a peer can cause, throttled by
/// [`LogThrottle::due`]: `peer_warn!(throttle, peer, fields…, "message")`
/// logs the message as a warning (with `left_out`, how many were left out
/// before it, if any) at most once a minute per peer and message, and at `debug`
/// otherwise.
macro_rules! peer_warn {
    ($throttle:expr, $peer:expr, $($field:tt)*) => {
        crate::transport::log_throttle::peer_warn!(@split $throttle, $peer, [] $($field)*)
    };
    (@split $throttle:expr, $peer:expr, [$($fields:tt)*] $message:literal) => {
        match $throttle.due($peer, $message) {
            Some(0) => tracing::warn!($($fields)* $message),
            Some(left_out) => tracing::warn!(left_out, $($fields)* $message),
            None => tracing::debug!($($fields)* $message),
        }
    };
    (@split $throttle:expr, $peer:expr, [$($fields:tt)*] $next:tt $($rest:tt)*) => {
        crate::transport::log_throttle::peer_warn!(@split $throttle, $peer, [$($fields)* $next] $($rest)*)
    };
}
pub(crate) use peer_warn;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_interval_per_peer_and_kind() {
        let t = LogThrottle::default();
        let t0 = Instant::now();
        assert_eq!(t.due_at("a", "x", t0), Some(0));
        assert_eq!(t.due_at("a", "x", t0), None);
        assert_eq!(t.due_at("a", "x", t0 + Duration::from_secs(59)), None);
        assert_eq!(t.due_at("a", "y", t0), Some(0));
        assert_eq!(t.due_at("b", "x", t0), Some(0));
        assert_eq!(t.due_at("a", "x", t0 + WARN_INTERVAL), Some(2));
        assert_eq!(t.due_at("a", "x", t0 + WARN_INTERVAL), None);
        t.forget("a");
        assert_eq!(t.due_at("a", "x", t0 + WARN_INTERVAL), Some(0));
        assert_eq!(t.due_at("b", "x", t0 + WARN_INTERVAL), Some(0));
    }

    #[test]
    fn the_table_is_bounded() {
        let t = LogThrottle::default();
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            assert_eq!(t.due_at(&format!("p{i}"), "x", t0), Some(0));
        }
        // the rest share `other`
        assert_eq!(t.due_at("q1", "x", t0), Some(0));
        assert_eq!(t.due_at("q2", "x", t0), None);
        assert_eq!(t.last.lock().len(), MAX_KEYS + 1);
        // once the old ones are stale, new peers get entries again
        let later = t0 + WARN_INTERVAL;
        assert_eq!(t.due_at("q3", "x", later), Some(0));
        assert_eq!(t.due_at("q3", "x", later), None);
        assert!(t.last.lock().len() <= 2);
    }
}
