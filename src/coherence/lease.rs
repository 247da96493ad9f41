//! The freshness lease (see the module docs of [`super`], "The freshness lease"): the
//! machine's side (outstanding pings, the deadline it granted) and the read path's side,
//! [`Lease`], one atomic deadline.
//!
//! The sans-IO [`super::Coherence`] machine decides when the lease is renewed or revoked
//! (its `LeaseState`); the bus actor copies those decisions into a [`Lease`]. Readers only
//! ask [`Lease::held`]: one atomic load and one clock read, no lock, no mailbox. The check
//! compares the clock with the deadline at the moment of the read, never a "fresh" flag
//! that a timer would have to clear: a paused process or a starved task finds its lease
//! lapsed by the clock alone. The clock is CLOCK_BOOTTIME ([`Clock`]), which keeps counting
//! while the machine is suspended: a resumed VM finds its lease lapsed too.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Action, Clock, CoherenceCounters};

/// Deadline value meaning "no lease".
const NONE: u64 = 0;
/// Deadline value meaning "always held" (no Redis configured: everything is local).
const ALWAYS: u64 = u64::MAX;

/// An L1 freshness lease: L1 may be served while `now <= deadline`, on a clock that keeps
/// counting through a suspend.
#[derive(Debug)]
pub struct Lease {
    clock: Clock,
    /// Deadline as a reading of `clock`, in nanoseconds (+1, so that 0 can mean "none").
    until: AtomicU64,
    /// The staleness bound the deadlines were computed with (for stats).
    bound: Duration,
}

impl Lease {
    /// A lease that is never held until renewed (a node with Redis).
    pub fn new(bound: Duration) -> Lease {
        Lease::with_clock(bound, Clock::system())
    }

    /// Like [`Lease::new`], on `clock`; deadlines are `Instant`s of [`Clock::now`].
    pub fn with_clock(bound: Duration, clock: Clock) -> Lease {
        Lease {
            clock,
            until: AtomicU64::new(NONE),
            bound,
        }
    }

    /// A lease that is always held (no Redis: a single process is its own truth).
    pub fn always() -> Lease {
        Lease {
            clock: Clock::system(),
            until: AtomicU64::new(ALWAYS),
            bound: Duration::ZERO,
        }
    }

    fn encode(reading: Duration) -> u64 {
        u64::try_from(reading.as_nanos())
            .unwrap_or(ALWAYS - 1)
            .saturating_add(1)
    }

    /// Whether L1 may be served now. The hot-path check.
    #[inline]
    pub fn held(&self) -> bool {
        match self.until.load(Ordering::Acquire) {
            NONE => false,
            ALWAYS => true,
            until => Self::encode(self.clock.reading()) <= until,
        }
    }

    /// Extends the deadline to `until`, an `Instant` of the lease's [`Clock::now`] (never
    /// shortens it).
    pub fn extend_to(&self, until: Instant) {
        let v = Self::encode(self.clock.reading_of(until));
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

    /// How old the newest echoed ping is (`now - (deadline - B)`), while a lease exists.
    pub fn age(&self) -> Option<Duration> {
        match self.until.load(Ordering::Acquire) {
            NONE | ALWAYS => None,
            until => {
                let granted_at = Duration::from_nanos(until - 1).checked_sub(self.bound)?;
                Some(self.clock.reading().saturating_sub(granted_at))
            }
        }
    }

    /// Whether this lease is the always-held one of a node without Redis.
    #[cfg(test)]
    pub fn is_always(&self) -> bool {
        self.until.load(Ordering::Acquire) == ALWAYS
    }
}

/// Outstanding pings remembered at most (older ones are forgotten: their echo is ignored,
/// which only delays a renewal).
pub(super) const MAX_PENDING_PINGS: usize = 256;

/// The machine's view of the lease: the deadline it granted and the lease pings not yet
/// echoed. Renewed by a ping's echo (Redis) or by peer grants (the peer lease).
#[derive(Debug)]
pub(super) struct LeaseState {
    /// Current lease deadline (`None` = no lease).
    pub(super) until: Option<Instant>,
    /// Lease pings sent since the link came up and not yet echoed: (id, send time).
    pings: VecDeque<(u64, Instant)>,
    /// When the next ping is due (meaningful while Up).
    next_ping: Instant,
    /// Sentinel's primary proof: `None` when none is required (single Redis, Cluster),
    /// else the end of the newest proof, which no echo renewal passes (`Some(None)`: no
    /// proof yet, no lease). See [`super::primary`].
    proof: Option<Option<Instant>>,
    /// Send time of the newest echoed ping since the last link change.
    last_echo: Option<Instant>,
}

impl LeaseState {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            until: None,
            pings: VecDeque::new(),
            next_ping: now,
            proof: None,
            last_echo: None,
        }
    }

    /// From now on echo renewals also need a primary proof (Sentinel).
    pub(super) fn require_proof(&mut self) {
        self.proof = Some(None);
    }

    /// A new end of the primary proof (`None`: none holds). When it moves later, the newest
    /// echo renews the lease up to it (if that extends it).
    pub(super) fn cap(&mut self, until: Option<Instant>, bound: Duration) -> Option<Action> {
        self.proof.as_ref()?;
        self.proof = Some(until);
        until?;
        let sent = self.last_echo?;
        self.renew_echo(sent, bound)
    }

    /// The echo of a lease ping sent at `sent`: extends the lease to `sent + bound`, no
    /// further than the primary proof when one is required; `None` when that would not
    /// extend it.
    pub(super) fn renew_echo(&mut self, sent: Instant, bound: Duration) -> Option<Action> {
        if self.last_echo.map_or(true, |e| e < sent) {
            self.last_echo = Some(sent);
        }
        let mut until = sent.checked_add(bound)?;
        if let Some(proof) = self.proof {
            until = until.min(proof?);
        }
        if self.until.is_some_and(|u| u >= until) {
            return None;
        }
        self.until = Some(until);
        Some(Action::Renew { until })
    }

    /// Whether L1 may be served at `now`.
    pub(super) fn held(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now <= u)
    }

    /// The link came up: the first ping is due at once.
    pub(super) fn restart_pings(&mut self, now: Instant) {
        self.next_ping = now;
    }

    /// If a ping is due at `now` (and pings are on), numbers it with the next id from
    /// `last_ping_id`, remembers it and returns its id.
    pub(super) fn ping_due(
        &mut self,
        now: Instant,
        interval: Duration,
        last_ping_id: &mut u64,
    ) -> Option<u64> {
        if interval.is_zero() || now < self.next_ping {
            return None;
        }
        self.next_ping = now.checked_add(interval).unwrap_or(now);
        *last_ping_id += 1;
        if self.pings.len() >= MAX_PENDING_PINGS {
            self.pings.pop_front();
        }
        self.pings.push_back((*last_ping_id, now));
        Some(*last_ping_id)
    }

    /// The echo of ping `id` arrived: forgets it and every older ping (same connection, in
    /// order) and returns its send time; `None` for a ping sent before the last link change
    /// or forgotten, which proves nothing now.
    pub(super) fn take_echo(&mut self, id: u64) -> Option<Instant> {
        let pos = self.pings.iter().position(|(p, _)| *p == id)?;
        let sent = self.pings[pos].1;
        self.pings.drain(..=pos);
        Some(sent)
    }

    /// Extends the lease to `sent + bound` for a ping sent at `sent`; `None` when that would
    /// not extend it (never shortened).
    pub(super) fn renew(&mut self, sent: Instant, bound: Duration) -> Option<Action> {
        let until = sent.checked_add(bound)?;
        if self.until.is_some_and(|u| u >= until) {
            return None;
        }
        self.until = Some(until);
        Some(Action::Renew { until })
    }

    /// Ends the lease (if any) and forgets outstanding pings.
    pub(super) fn revoke(
        &mut self,
        now: Instant,
        counters: &mut CoherenceCounters,
    ) -> Option<Action> {
        self.pings.clear();
        self.last_echo = None;
        if self.held(now) {
            counters.lease_lapses += 1;
        }
        self.until.take().map(|_| Action::Revoke)
    }

    /// Ran out before a renewal (slow link, pause): counts it; the read path already stopped
    /// trusting L1 at the deadline.
    pub(super) fn expire(
        &mut self,
        now: Instant,
        counters: &mut CoherenceCounters,
    ) -> Option<Action> {
        if !self.until.is_some_and(|u| now > u) {
            return None;
        }
        counters.lease_lapses += 1;
        self.until = None;
        Some(Action::Revoke)
    }
}
