//! The freshness lease as the read path sees it: one atomic deadline.
//!
//! The sans-IO [`crate::coherence::Coherence`] machine decides when the lease is renewed or
//! revoked; the bus actor copies those decisions here. Readers only ask [`Lease::held`]: one
//! atomic load and one monotonic clock read, no lock, no mailbox. The check compares
//! `Instant::now()` with the deadline at the moment of the read, never a "fresh" flag that a
//! timer would have to clear: a paused process or a starved task finds its lease lapsed by
//! the clock alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Deadline value meaning "no lease".
const NONE: u64 = 0;
/// Deadline value meaning "always held" (no Redis configured: everything is local).
const ALWAYS: u64 = u64::MAX;

/// An L1 freshness lease: L1 may be served while `now <= deadline`.
#[derive(Debug)]
pub struct Lease {
    base: Instant,
    /// Deadline in nanoseconds since `base` (+1, so that 0 can mean "none").
    until: AtomicU64,
    /// The staleness bound the deadlines were computed with (for stats).
    bound: Duration,
}

impl Lease {
    /// A lease that is never held until renewed (a node with Redis).
    pub fn new(bound: Duration) -> Lease {
        Lease {
            base: Instant::now(),
            until: AtomicU64::new(NONE),
            bound,
        }
    }

    /// A lease that is always held (no Redis: a single process is its own truth).
    pub fn always() -> Lease {
        Lease {
            base: Instant::now(),
            until: AtomicU64::new(ALWAYS),
            bound: Duration::ZERO,
        }
    }

    fn encode(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos).unwrap_or(ALWAYS - 1).saturating_add(1)
    }

    /// Whether L1 may be served now. The hot-path check.
    #[inline]
    pub fn held(&self) -> bool {
        match self.until.load(Ordering::Acquire) {
            NONE => false,
            ALWAYS => true,
            until => self.encode(Instant::now()) <= until,
        }
    }

    /// Extends the deadline to `until` (never shortens it).
    pub fn extend_to(&self, until: Instant) {
        let v = self.encode(until);
        if self.until.load(Ordering::Acquire) != ALWAYS {
            self.until.fetch_max(v, Ordering::AcqRel);
        }
    }

    /// Ends the lease now.
    pub fn revoke(&self) {
        let _ = self
            .until
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u != ALWAYS).then_some(NONE)
            });
    }

    /// The staleness bound B.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// How old the newest echoed ping is (`now - (deadline - B)`), while a lease exists.
    pub fn age(&self) -> Option<Duration> {
        match self.until.load(Ordering::Acquire) {
            NONE | ALWAYS => None,
            until => {
                let granted_at = Duration::from_nanos(until - 1).checked_sub(self.bound)?;
                Some(self.base.elapsed().saturating_sub(granted_at))
            }
        }
    }

    /// Whether this lease is the always-held one of a node without Redis.
    pub fn is_always(&self) -> bool {
        self.until.load(Ordering::Acquire) == ALWAYS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_lease_is_not_held_until_extended() {
        let l = Lease::new(Duration::from_millis(100));
        assert!(!l.held());
        l.extend_to(Instant::now() + Duration::from_secs(60));
        assert!(l.held());
        l.revoke();
        assert!(!l.held());
    }

    #[test]
    fn past_deadline_is_not_held_and_never_shortened() {
        let l = Lease::new(Duration::from_millis(100));
        let now = Instant::now();
        l.extend_to(now + Duration::from_secs(60));
        l.extend_to(now); // older renewal arriving late: ignored
        assert!(l.held());
        l.revoke();
        l.extend_to(now.checked_sub(Duration::from_millis(1)).unwrap_or(now));
        std::thread::sleep(Duration::from_millis(2));
        assert!(!l.held(), "a deadline in the past is no lease");
    }

    #[test]
    fn always_lease_ignores_revoke() {
        let l = Lease::always();
        assert!(l.held() && l.is_always());
        l.revoke();
        l.extend_to(Instant::now());
        assert!(l.held());
        assert_eq!(l.age(), None);
    }

    #[test]
    fn age_counts_from_the_ping_send_time() {
        let b = Duration::from_millis(100);
        let l = Lease::new(b);
        let sent = Instant::now();
        l.extend_to(sent + b);
        let age = l.age().expect("lease exists");
        assert!(age < Duration::from_secs(5), "{age:?}");
    }
}
