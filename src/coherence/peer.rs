//! The peer lease: while Redis is down, the lease is kept over QUIC with peer pings and
//! grants, and our changes are acknowledged only once every peer of the session acked them.
//! See the module docs of [`super`], "Redis down for everyone: the peer lease". This file
//! holds the state of that session; the machine decides when it starts and ends.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::lease::MAX_PENDING_PINGS;
use super::{Action, CoherenceCounters};

/// One of our peer pings.
#[derive(Debug)]
struct PeerPing {
    id: u64,
    sent: Instant,
    needed: BTreeSet<String>,
    granted: BTreeSet<String>,
}

/// One of our changes made while Redis is down.
#[derive(Debug)]
struct PeerWrite {
    published_at: Instant,
    needed: BTreeSet<String>,
    acked: BTreeSet<String>,
}

/// The peer lease of one node.
#[derive(Debug)]
pub(super) struct PeerLease {
    /// On when the node has Redis *and* gossip peers.
    pub(super) enabled: bool,
    /// Peers gossip says are alive or suspect (the bus updates it every tick).
    live: BTreeSet<String>,
    /// Our peer pings not yet granted by every peer they need.
    pings: VecDeque<PeerPing>,
    /// When the next peer ping is due (meaningful while the link is down).
    next_ping: Instant,
    /// Peers that must ack our changes while Redis is down: the live peers when the link
    /// went down, every peer that pinged us since, every peer that became live since. Never
    /// shrinks while the link is down (see the module docs); reset when it comes up.
    session: BTreeSet<String>,
    /// Our changes made while Redis is down, waiting for every peer's ack.
    writes: BTreeMap<u64, PeerWrite>,
}

impl PeerLease {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            enabled: false,
            live: BTreeSet::new(),
            pings: VecDeque::new(),
            next_ping: now,
            session: BTreeSet::new(),
            writes: BTreeMap::new(),
        }
    }

    /// Replaces the live peers; returns whether one of them is gone. In peer mode the new
    /// ones join the session (which never shrinks). A gone peer no longer holds our pings
    /// back.
    pub(super) fn set_live(&mut self, peers: BTreeSet<String>, peer_mode: bool) -> bool {
        let gone: Vec<String> = self.live.difference(&peers).cloned().collect();
        if peer_mode {
            self.session.extend(peers.iter().cloned());
        }
        for p in &mut self.pings {
            for g in &gone {
                p.needed.remove(g);
            }
        }
        self.live = peers;
        !gone.is_empty()
    }

    /// The link went down: our changes from now on wait for every live peer.
    pub(super) fn start_session(&mut self, now: Instant) {
        self.session = self.live.clone();
        self.pings.clear();
        self.next_ping = now;
    }

    /// The link came back: Redis orders changes again. Our changes still waiting for peers
    /// keep waiting (their L2 write failed; the acks decide).
    pub(super) fn end_session(&mut self) {
        self.pings.clear();
        self.session.clear();
    }

    /// `origin` pinged us: from now on our changes wait for its ack.
    pub(super) fn pinged_by(&mut self, origin: &str) {
        self.session.insert(origin.to_string());
    }

    /// `from` granted our ping `id`.
    pub(super) fn granted(&mut self, id: u64, from: String) {
        if let Some(p) = self.pings.iter_mut().find(|p| p.id == id) {
            p.granted.insert(from);
        }
    }

    /// The send time of the newest ping every needed peer granted (forgetting it and every
    /// older one), if any.
    pub(super) fn take_granted(&mut self) -> Option<Instant> {
        let pos = self
            .pings
            .iter()
            .rposition(|p| !p.needed.is_empty() && p.needed.is_subset(&p.granted))?;
        let sent = self.pings[pos].sent;
        self.pings.drain(..=pos);
        Some(sent)
    }

    /// If a peer ping is due at `now` (peer lease on, pings on, someone live), numbers it
    /// with the next id from `last_ping_id`, remembers it and returns its id.
    pub(super) fn ping_due(
        &mut self,
        now: Instant,
        interval: Duration,
        last_ping_id: &mut u64,
    ) -> Option<u64> {
        if !self.enabled || interval.is_zero() || self.live.is_empty() || now < self.next_ping {
            return None;
        }
        self.next_ping = now.checked_add(interval).unwrap_or(now);
        *last_ping_id += 1;
        if self.pings.len() >= MAX_PENDING_PINGS {
            self.pings.pop_front();
        }
        self.pings.push_back(PeerPing {
            id: *last_ping_id,
            sent: now,
            needed: self.live.clone(),
            granted: BTreeSet::new(),
        });
        Some(*last_ping_id)
    }

    /// Tracks our change `seq`, made while Redis is down: every peer of the session and
    /// every live peer must ack it.
    pub(super) fn track_write(&mut self, seq: u64, now: Instant) {
        let mut needed = self.session.clone();
        needed.extend(self.live.iter().cloned());
        self.writes.insert(
            seq,
            PeerWrite {
                published_at: now,
                needed,
                acked: BTreeSet::new(),
            },
        );
    }

    /// `from` applied every change of ours up to `seq`.
    pub(super) fn acked_upto(&mut self, from: &str, seq: u64) {
        for (_, w) in self.writes.range_mut(..=seq) {
            w.acked.insert(from.to_string());
        }
    }

    /// Releases our Redis-down changes: acknowledged once every needed peer acked,
    /// refused once `bound` passed without.
    pub(super) fn settle_writes(
        &mut self,
        now: Instant,
        bound: Duration,
        counters: &mut CoherenceCounters,
    ) -> Vec<Action> {
        let mut done = Vec::new();
        for (seq, w) in &self.writes {
            if !w.needed.is_empty() && w.needed.is_subset(&w.acked) {
                done.push((*seq, true));
            } else if w.needed.is_empty() || now.saturating_duration_since(w.published_at) >= bound
            {
                // Nobody to vouch for it (alone), or someone did not answer in time.
                done.push((*seq, false));
            }
        }
        done.into_iter()
            .map(|(seq, ok)| {
                self.writes.remove(&seq);
                if ok {
                    counters.peer_acked += 1;
                    Action::Acknowledged {
                        seq,
                        by_timeout: false,
                    }
                } else {
                    counters.peer_refused += 1;
                    Action::NotAcknowledged { seq }
                }
            })
            .collect()
    }
}
