//! The state of our bus subscription and how its silent death is noticed: our own messages
//! (heartbeats, pings, invalidations) come back through the subscription, so a heartbeat
//! that has not echoed within `echo_timeout` means the link is dead (see the module docs of
//! [`super`], "Self-echo"). This file holds the link state and the self-echo bookkeeping;
//! the machine decides what to do about them.

use std::time::{Duration, Instant};

use serde::Serialize;

/// State of our bus subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LinkState {
    /// Subscribed and (as far as we know) receiving.
    Up,
    /// Not subscribed, or the subscription was found dead.
    Down,
}

/// Heartbeat schedule and self-echo tracking of one node.
#[derive(Debug)]
pub(super) struct SelfEcho {
    /// When one of our own messages last came back through the subscription.
    pub(super) last_echo: Option<Instant>,
    /// Send time of the oldest heartbeat not yet followed by a self-echo.
    unechoed_since: Option<Instant>,
    /// When the next heartbeat is due (meaningful while Up).
    next_heartbeat: Instant,
}

impl SelfEcho {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            last_echo: None,
            unechoed_since: None,
            next_heartbeat: now,
        }
    }

    /// One of our own messages came back: the subscription is alive.
    pub(super) fn echoed(&mut self, now: Instant) {
        self.last_echo = Some(now);
        self.unechoed_since = None;
    }

    /// Nothing is awaited any more (the link changed state).
    pub(super) fn forget_unechoed(&mut self) {
        self.unechoed_since = None;
    }

    /// The link came up: nothing awaited, the first heartbeat is due at once.
    pub(super) fn restart(&mut self, now: Instant) {
        self.unechoed_since = None;
        self.next_heartbeat = now;
    }

    /// Whether our oldest unechoed message is older than `timeout`.
    pub(super) fn lost(&self, now: Instant, timeout: Duration) -> bool {
        self.unechoed_since
            .is_some_and(|sent| now.saturating_duration_since(sent) > timeout)
    }

    /// We sent a message that should echo: start waiting for it unless already waiting.
    pub(super) fn sent(&mut self, now: Instant) {
        if self.unechoed_since.is_none() {
            self.unechoed_since = Some(now);
        }
    }

    /// Whether a heartbeat is due at `now`; if so, the next one is scheduled `interval` on.
    pub(super) fn heartbeat_due(&mut self, now: Instant, interval: Duration) -> bool {
        if now < self.next_heartbeat {
            return false;
        }
        self.next_heartbeat = now.checked_add(interval).unwrap_or(now);
        true
    }
}
