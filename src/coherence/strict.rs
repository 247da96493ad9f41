//! Strict acks: when a change of a `strict` category may be acknowledged to its writer
//! (every node that may hold a lease applied it, or the bound B passed). See the module docs
//! of [`super`], "Strict categories". Also keeps who was heard from recently, which is the
//! set of nodes whose acks a strict change waits for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::{Action, CoherenceCounters, MAX_ORIGINS};

/// One strict change of ours on its way to every lease holder.
#[derive(Debug, Default)]
struct StrictWrite {
    /// When the PUBLISH returned (`None` until then: nothing is decided before).
    published_at: Option<Instant>,
    /// How many subscribers Redis said received it (ourselves included).
    receivers: u64,
    /// Nodes heard from within `liveness` when it was published: each must ack.
    expected: BTreeSet<String>,
    /// Whether acks may release it before B: our subscription had been up for a full
    /// liveness window when it was published, so `expected` names every lease holder that
    /// Redis may not have counted (one whose subscription died within the last B).
    window_full: bool,
    /// Nodes that acked it.
    acked: BTreeSet<String>,
    /// Our own subscription delivered it back to us.
    self_seen: bool,
}

/// Our strict changes waiting for acks, and when each other node was last heard from.
#[derive(Debug, Default)]
pub(super) struct StrictAcks {
    /// When each other node was last heard from (any message), for the strict ack set.
    heard: HashMap<String, Instant>,
    /// Since when our subscription has been up without a break (`None` while down).
    up_since: Option<Instant>,
    /// Our strict changes waiting for acks, by sequence number.
    writes: BTreeMap<u64, StrictWrite>,
}

impl StrictAcks {
    /// `origin` sent us a message at `now` (bounded: a new origin past [`MAX_ORIGINS`] is
    /// not remembered).
    pub(super) fn heard_from(&mut self, origin: &str, now: Instant) {
        if self.heard.len() < MAX_ORIGINS || self.heard.contains_key(origin) {
            self.heard.insert(origin.to_string(), now);
        }
    }

    /// Our subscription came up at `now`: what we heard before proves nothing about the
    /// window that starts here.
    pub(super) fn link_up(&mut self, now: Instant) {
        self.up_since = Some(now);
    }

    /// Our subscription is down (or found dead): we may miss heartbeats from now on.
    pub(super) fn link_down(&mut self) {
        self.up_since = None;
    }

    /// `from` sent us an ack at `now`.
    pub(super) fn heard_ack_from(&mut self, from: &str, now: Instant) {
        self.heard.insert(from.to_string(), now);
    }

    /// Forgets nodes not heard from for four liveness windows.
    pub(super) fn forget_silent(&mut self, now: Instant, liveness: Duration) {
        let forget = liveness.saturating_mul(4);
        self.heard
            .retain(|_, t| now.saturating_duration_since(*t) <= forget);
    }

    /// Starts tracking our strict change `seq` (nothing is decided before it is published).
    pub(super) fn track(&mut self, seq: u64) {
        self.writes.insert(seq, StrictWrite::default());
    }

    /// Redis took the PUBLISH of `seq`, which reached `receivers` subscribers: every node
    /// heard from within `liveness` must ack. Acks release it before B only if our
    /// subscription has been up for the whole `liveness` window (else a lease holder whose
    /// subscription just died may be neither heard nor counted). False when `seq` is not
    /// tracked.
    pub(super) fn published(
        &mut self,
        seq: u64,
        receivers: u64,
        now: Instant,
        liveness: Duration,
    ) -> bool {
        let expected: BTreeSet<String> = self
            .heard
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) <= liveness)
            .map(|(id, _)| id.clone())
            .collect();
        let window_full = self
            .up_since
            .is_some_and(|up| now.saturating_duration_since(up) >= liveness);
        let Some(w) = self.writes.get_mut(&seq) else {
            return false;
        };
        w.window_full = window_full;
        w.published_at = Some(now);
        w.receivers = receivers;
        w.expected = expected;
        true
    }

    /// The PUBLISH of `seq` failed: nothing waits for it.
    pub(super) fn forget(&mut self, seq: u64) {
        self.writes.remove(&seq);
    }

    /// Our own subscription delivered our change `seq` back; false when it is not tracked.
    pub(super) fn self_seen(&mut self, seq: u64) -> bool {
        let Some(w) = self.writes.get_mut(&seq) else {
            return false;
        };
        w.self_seen = true;
        true
    }

    /// `from` applied every change of ours up to `seq`.
    pub(super) fn acked_upto(&mut self, from: &str, seq: u64) {
        for (_, w) in self.writes.range_mut(..=seq) {
            w.acked.insert(from.to_string());
        }
    }

    /// Strict changes still waiting.
    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.writes.len()
    }

    /// Releases every strict change whose acks are complete or whose `bound` has passed.
    pub(super) fn settle(
        &mut self,
        now: Instant,
        bound: Duration,
        counters: &mut CoherenceCounters,
    ) -> Vec<Action> {
        let mut done = Vec::new();
        for (seq, w) in &self.writes {
            let Some(at) = w.published_at else { continue };
            let count = w.acked.len() as u64 + u64::from(w.self_seen);
            if w.window_full && w.expected.is_subset(&w.acked) && count >= w.receivers {
                done.push((*seq, false));
            } else if now.saturating_duration_since(at) >= bound {
                done.push((*seq, true));
            }
        }
        done.into_iter()
            .map(|(seq, by_timeout)| {
                self.writes.remove(&seq);
                if by_timeout {
                    counters.strict_timeouts += 1;
                } else {
                    counters.strict_acked += 1;
                }
                Action::Acknowledged { seq, by_timeout }
            })
            .collect()
    }
}
