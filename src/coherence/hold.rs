//! The replay hold: before a node reads L2 after its start, or after its Redis link was
//! down, it asks every live peer for the changes waiting in that peer's L2 replay backlog.
//!
//! Why: while Redis is down for everyone, a delete or invalidation is acknowledged once
//! every peer of the writer's session acked it over QUIC, and its L2 write waits in the
//! peers' replay backlogs. A node (re)started meanwhile, or one that was cut off from the
//! others when the change was made, has none of it in its own backlog: when Redis returns
//! it would read from L2 the value the change removed, before the peers replayed it. So
//! until every live peer answered with its backlog (the driver adds the answers to this
//! node's own backlog, whose keys are read from L2 only after this node replayed them), L2
//! is not read at all: held reads are the existing fail-closed path (503 over HTTP, the
//! loader in the library).
//!
//! The rules, all here so that they are tested without sockets:
//! - the hold is on from the start, and again from every loss of the link; a round of
//!   questions starts when the link comes (back) up;
//! - a round needs an answer from every peer gossip calls live (alive or suspect) at its
//!   start or while it runs; a peer that does not answer is asked again every
//!   [`ASK_EVERY`], and keeps the hold (fail closed) until it answers or gossip declares it
//!   dead (then it leaves the live set);
//! - after the start, the hold also lasts at least `join_grace` (the gossip probe period
//!   plus its suspicion timeout): the time gossip needs to learn of a live member, or to
//!   declare a silent one dead, so that a node that has not heard of its peers yet does
//!   not take "nobody to ask" for "nothing to replay";
//! - an answer counts only for the round it names, from the node it is addressed from.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::wire::Target;

/// How often a peer that has not answered is asked again.
pub(super) const ASK_EVERY: Duration = Duration::from_millis(200);

/// Where the hold stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// L2 may be read (subject to this node's own backlog).
    Free,
    /// Held, waiting for the link to come (back) up before asking.
    Armed,
    /// Held, a round of questions running.
    Asking {
        /// The round's id (in every question and answer).
        round: u64,
        /// Peers that must answer.
        needed: BTreeSet<String>,
        /// Peers that answered this round.
        answered: BTreeSet<String>,
        /// Peers asked at least once this round (a new one is asked at the next tick).
        asked: BTreeSet<String>,
        /// When the next questions go out.
        next_ask: Instant,
    },
}

/// The replay hold of one node.
#[derive(Debug)]
pub(super) struct ReplayHold {
    /// On for a node with Redis and gossip peers.
    enabled: bool,
    phase: Phase,
    /// The hold lasts at least until then (start + join grace).
    not_before: Instant,
    /// Peers gossip calls alive or suspect.
    live: BTreeSet<String>,
    /// The id of the last round.
    last_round: u64,
}

impl ReplayHold {
    /// A hold that never holds (until [`ReplayHold::enable`]).
    pub(super) fn new(now: Instant) -> Self {
        Self {
            enabled: false,
            phase: Phase::Free,
            not_before: now,
            live: BTreeSet::new(),
            last_round: 0,
        }
    }

    /// Turns the hold on at the node's start `now`: held until a round after the first
    /// link-up is answered, and at least until `now + join_grace`.
    pub(super) fn enable(&mut self, now: Instant, join_grace: Duration) {
        self.enabled = true;
        self.phase = Phase::Armed;
        self.not_before = now.checked_add(join_grace).unwrap_or(now);
    }

    /// Whether L2 must not be read at all right now.
    pub(super) fn held(&self) -> bool {
        self.phase != Phase::Free
    }

    /// The link went down: whatever peers acknowledge from now on without us must be
    /// asked for before L2 is read again.
    pub(super) fn link_down(&mut self) {
        if self.enabled {
            self.phase = Phase::Armed;
        }
    }

    /// The link came (back) up: a round of questions starts (sent by [`ReplayHold::tick`]).
    pub(super) fn link_up(&mut self, now: Instant) {
        if self.phase != Phase::Armed {
            return;
        }
        self.last_round += 1;
        self.phase = Phase::Asking {
            round: self.last_round,
            needed: self.live.clone(),
            answered: BTreeSet::new(),
            asked: BTreeSet::new(),
            next_ask: now,
        };
    }

    /// The peers gossip calls live (alive or suspect). During a round, a peer that joins
    /// must answer too; one that left (declared dead) no longer holds it.
    pub(super) fn set_live(&mut self, peers: &BTreeSet<String>) {
        self.live.clone_from(peers);
        if let Phase::Asking { needed, .. } = &mut self.phase {
            needed.clone_from(peers);
        }
    }

    /// `from` answered round `round`; true if the answer counts (its changes must be added
    /// to our backlog). An answer to an older round, or from a peer not asked, does not.
    pub(super) fn answered(&mut self, from: &str, round: u64) -> bool {
        match &mut self.phase {
            Phase::Asking {
                round: r,
                needed,
                answered,
                ..
            } if *r == round && needed.contains(from) => {
                answered.insert(from.to_string());
                true
            }
            _ => false,
        }
    }

    /// Advances time: ends the hold when the round is complete (and the join grace is
    /// over); otherwise returns the round id and the peers to ask now: a peer not asked yet
    /// this round at once, every peer yet to answer every [`ASK_EVERY`].
    pub(super) fn tick(&mut self, now: Instant) -> Option<(u64, Vec<String>)> {
        let Phase::Asking {
            round,
            needed,
            answered,
            asked,
            next_ask,
        } = &mut self.phase
        else {
            return None;
        };
        if needed.is_subset(answered) && now >= self.not_before {
            self.phase = Phase::Free;
            return None;
        }
        let again = now >= *next_ask;
        let ask: Vec<String> = needed
            .difference(answered)
            .filter(|p| again || !asked.contains(*p))
            .cloned()
            .collect();
        if again {
            *next_ask = now.checked_add(ASK_EVERY).unwrap_or(now);
        }
        asked.extend(ask.iter().cloned());
        (!ask.is_empty()).then_some((*round, ask))
    }
}

/// Bytes of keys an answer carries before it is sent as whole categories (a frame is at
/// most [`crate::wire::MAX_FRAME_BYTES`], sealed and wrapped for QUIC).
pub(super) const MAX_ANSWER_KEY_BYTES: usize = 32 * 1024;

/// The changes of a backlog answer: as they are, or, past [`MAX_ANSWER_KEY_BYTES`], every
/// category they touch as a whole ([`Target::Everything`]: wider, never less).
pub(super) fn bounded_changes(changes: Vec<(String, Target)>) -> Vec<(String, Target)> {
    let size: usize = changes
        .iter()
        .map(|(c, t)| {
            c.len()
                + 8
                + match t {
                    Target::Key(k) | Target::Glob(k) | Target::Tag(k) => k.len(),
                    Target::Everything => 0,
                }
        })
        .sum();
    if size <= MAX_ANSWER_KEY_BYTES {
        return changes;
    }
    let whole: BTreeSet<String> = changes.into_iter().map(|(c, _)| c).collect();
    whole.into_iter().map(|c| (c, Target::Everything)).collect()
}
