//! The primary proof of a Sentinel deployment (issue #23, item 2: split brain).
//!
//! In Sentinel mode the lease ping echoes through whichever server the node is attached to.
//! An old primary cut off from the sentinels (but not from this node), or paused past
//! `down-after-milliseconds` and resumed, keeps echoing while the sentinels promote a
//! replica and other nodes write there: the echo alone would keep renewing a lease on a
//! server nobody else uses any more. So, every `ping_interval`, the node asks every
//! configured sentinel `SENTINEL get-master-addr-by-name` (the I/O is the bus's) and hands
//! the answers, each reduced to [`SentinelAnswer`], to [`Coherence::primary_answered`].
//!
//! **The rule.** A query sent at `s` whose answers name our server in a majority of the
//! configured sentinels is a *proof at s*. Then:
//! 1. the L1 lease never runs past `s + B - margin` for the newest proof `s` (the echo rule
//!    still applies: the deadline is the earlier of the two);
//! 2. L2 is read only while such a proof holds at the read's start (else L2 counts as
//!    unavailable: 503, or the library's loader);
//! 3. an L2 write is acknowledged only after a proof *sent after the write's L2 call
//!    returned* ([`write_confirmed`]); none within the call timeout: the write fails as when
//!    Redis does not answer.
//!
//! **Why it holds.** Say node M's write W landed on server R and was acknowledged at `c`:
//! a majority Q_w named R at instants between W and `c`. Node N reads at `t` under a proof
//! sent at `s >= t - B`: a majority Q_n named N's server X at instants `>= s`. If `c < t - B`
//! then `c < s`, and a sentinel Z in both majorities (two majorities of the same list
//! intersect) named R before `c` and X after `s`. A sentinel changes the primary it names
//! only by a failover, so X = R (N reads where W is), or a failover from R to X happened
//! between, which copies R's data to X first except for what asynchronous replication lost
//! (`l2_min_replicas` covers that, as for any failover). Every node must list the same
//! sentinels (majorities of one list intersect).
//!
//! A majority naming another server means we are attached to a former primary: the lease and
//! the L2 proof end at once and the node reconnects through the sentinels (a reconnection
//! flushes L1 before a new lease). No majority either way (sentinels unreachable, or split
//! during a failover) proves nothing: lease and L2 lapse by the clock (fail closed).
//!
//! Single Redis and Redis Cluster need no proof: the machine is built without one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Action, Coherence, LinkState};

/// Queries remembered at most (older ones are forgotten: their answer is ignored).
const MAX_PENDING: usize = 16;

/// What one sentinel answered, as the bus reduced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentinelAnswer {
    /// It names the server our command connection and subscription use.
    Ours,
    /// It names another server (`host:port`).
    Other(String),
    /// No answer within the bound, an error, or no primary known.
    Silent,
}

/// What a round of answers proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A majority named our server.
    Proven,
    /// A majority named this other server: we are attached to a former primary.
    Moved(String),
    /// Neither.
    Unproven,
}

/// The verdict of `answers` from the `sentinels` configured ones (a majority is
/// `sentinels / 2 + 1`, whoever did not answer).
pub fn verdict(answers: &[SentinelAnswer], sentinels: usize) -> Verdict {
    let majority = sentinels / 2 + 1;
    let ours = answers
        .iter()
        .filter(|a| **a == SentinelAnswer::Ours)
        .count();
    if ours >= majority {
        return Verdict::Proven;
    }
    for a in answers {
        if let SentinelAnswer::Other(addr) = a {
            let same = answers
                .iter()
                .filter(|b| matches!(b, SentinelAnswer::Other(x) if x == addr))
                .count();
            if same >= majority {
                return Verdict::Moved(addr.clone());
            }
        }
    }
    Verdict::Unproven
}

/// Whether a write whose L2 call returned at `completed` may be acknowledged, given the send
/// time of the newest proof on the same connection (rule 3 of the module docs).
pub fn write_confirmed(proven: Option<Instant>, completed: Instant) -> bool {
    proven.is_some_and(|s| s > completed)
}

/// Whether L2 may be read at `now` under the proof deadline `until` (rule 2).
pub fn readable(until: Option<Instant>, now: Instant) -> bool {
    until.is_some_and(|u| now <= u)
}

/// How much earlier than `s + B` a proof at `s` ends: room for the clock rates of nodes to
/// differ (B/20).
pub fn margin(bound: Duration) -> Duration {
    bound / 20
}

/// The machine's side of the proof: queries in flight and the newest proof.
#[derive(Debug)]
pub(super) struct PrimaryProof {
    /// Sentinels configured (a majority is half of them plus one).
    sentinels: usize,
    /// Id of the last query.
    last_id: u64,
    /// Queries sent since the last link change and not answered: (id, send time).
    pending: VecDeque<(u64, Instant)>,
    /// When the next query is due.
    next: Instant,
    /// Send time of the newest proof since the last link change.
    proven: Option<Instant>,
}

impl PrimaryProof {
    pub(super) fn new(sentinels: usize, now: Instant) -> Self {
        Self {
            sentinels: sentinels.max(1),
            last_id: 0,
            pending: VecDeque::new(),
            next: now,
            proven: None,
        }
    }

    /// The link changed: nothing proven before says anything about the new connection; the
    /// next query is due at once.
    pub(super) fn reset(&mut self, now: Instant) {
        self.pending.clear();
        self.proven = None;
        self.next = now;
    }

    /// The end of the newest proof (`s + B - margin`).
    pub(super) fn until(&self, bound: Duration) -> Option<Instant> {
        let s = self.proven?;
        s.checked_add(bound.saturating_sub(margin(bound)))
    }

    /// A query id when one is due at `now`.
    fn due(&mut self, now: Instant, interval: Duration) -> Option<u64> {
        if now < self.next {
            return None;
        }
        self.next = now.checked_add(interval.max(Duration::from_millis(1)))?;
        self.last_id += 1;
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back((self.last_id, now));
        Some(self.last_id)
    }

    /// The send time of query `id` (forgetting it and every older one); `None` if unknown.
    fn take(&mut self, id: u64) -> Option<Instant> {
        let pos = self.pending.iter().position(|(q, _)| *q == id)?;
        let sent = self.pending[pos].1;
        self.pending.drain(..=pos);
        Some(sent)
    }
}

impl Coherence {
    /// Turns the primary proof on (Sentinel): the lease and L2 then also need a majority of
    /// the `sentinels` configured ones to name our server (see [`crate::coherence::primary`]).
    pub fn with_primary_proof(mut self, sentinels: usize, now: Instant) -> Self {
        self.primary = Some(PrimaryProof::new(sentinels, now));
        self.lease.require_proof();
        self
    }

    /// A query of the sentinels when one is due (link up, every `ping_interval`).
    pub(super) fn primary_tick(&mut self, now: Instant) -> Option<Action> {
        if self.link != LinkState::Up {
            return None;
        }
        let interval = self.config.ping_interval;
        let id = self.primary.as_mut()?.due(now, interval)?;
        Some(Action::QueryPrimary { id })
    }

    /// The link came up or went down: proofs start over (see [`PrimaryProof::reset`]).
    pub(super) fn primary_reset(&mut self, now: Instant) -> Vec<Action> {
        let Some(p) = self.primary.as_mut() else {
            return Vec::new();
        };
        p.reset(now);
        let _ = self.lease.cap(None, self.config.staleness_bound);
        vec![Action::PrimaryLost]
    }

    /// The sentinels' answers to query `id` (see the module docs).
    pub fn primary_answered(
        &mut self,
        id: u64,
        answers: &[SentinelAnswer],
        now: Instant,
    ) -> Vec<Action> {
        let bound = self.config.staleness_bound;
        let Some(p) = self.primary.as_mut() else {
            return Vec::new();
        };
        let Some(sent) = p.take(id) else {
            return Vec::new();
        };
        if self.link != LinkState::Up {
            return Vec::new();
        }
        match verdict(answers, p.sentinels) {
            Verdict::Proven => {
                if p.proven.is_some_and(|s| s >= sent) {
                    return Vec::new();
                }
                p.proven = Some(sent);
                let Some(until) = p.until(bound) else {
                    return Vec::new();
                };
                let mut actions = vec![Action::PrimaryProven { sent, until }];
                actions.extend(self.lease.cap(Some(until), bound));
                actions
            }
            Verdict::Moved(_) => {
                self.counters.primary_moves += 1;
                let mut actions = self.drop_link(now);
                actions.push(Action::Reconnect);
                actions
            }
            Verdict::Unproven => Vec::new(),
        }
    }
}
