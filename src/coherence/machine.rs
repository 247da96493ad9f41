//! The machine that ties the sub-protocols together: [`Coherence`], its state, how it is
//! built and observed, and how it numbers the changes this node sends (plain, strict, or
//! over QUIC while Redis is down). What it does with received messages, link events and
//! time is in `input.rs`.

use std::collections::BTreeSet;
use std::time::Instant;

use super::hold::{bounded_changes, ReplayHold};
use super::lease::LeaseState;
use super::link::SelfEcho;
use super::numbering::{Numbered, Numbering, Stamp};
use super::peer::PeerLease;
use super::primary::PrimaryProof;
use super::sequence::Sequences;
use super::strict::StrictAcks;
use super::{Action, CoherenceConfig, CoherenceCounters, FlushReason, LinkState};
use crate::wire::{BusMessage, ChangeKind, Target};

/// The sans-IO coherence state machine of one node.
#[derive(Debug)]
pub struct Coherence {
    pub(super) node_id: String,
    pub(super) epoch: u64,
    pub(super) config: CoherenceConfig,
    /// Our id, epoch and sequence counter, shared with the writers that number plain
    /// changes themselves (see `numbering.rs`).
    pub(super) stamp: Stamp,
    pub(super) link: LinkState,
    /// What we know of every other origin's numbering.
    pub(super) seqs: Sequences,
    /// Heartbeat schedule and self-echo tracking.
    pub(super) echo: SelfEcho,
    /// Id of the last ping sent (lease pings and peer pings share the numbering).
    pub(super) last_ping_id: u64,
    /// The lease this machine granted and its outstanding pings.
    pub(super) lease: LeaseState,
    /// Categories this node has; `None` = accept any (tests, tools).
    pub(super) categories: Option<BTreeSet<String>>,
    /// Our own channel suffix, sent as `ack_to` in strict changes.
    pub(super) ack_to: Option<String>,
    /// Our strict changes waiting for acks, and who was heard from recently.
    pub(super) strict: StrictAcks,
    /// The peer lease (Redis down).
    pub(super) peers: PeerLease,
    /// The primary proof (Sentinel only).
    pub(super) primary: Option<PrimaryProof>,
    /// No L2 read before every live peer told us its replay backlog.
    pub(super) hold: ReplayHold,
    pub(super) counters: CoherenceCounters,
}

impl Coherence {
    /// A node `node_id` with its random start `epoch`. The link starts [`LinkState::Down`].
    pub fn new(
        node_id: impl Into<String>,
        epoch: u64,
        config: CoherenceConfig,
        now: Instant,
    ) -> Self {
        let node_id = node_id.into();
        Self {
            stamp: Stamp::new(&node_id, epoch, Numbering::default()),
            node_id,
            epoch,
            config,
            link: LinkState::Down,
            seqs: Sequences::default(),
            echo: SelfEcho::new(now),
            last_ping_id: 0,
            lease: LeaseState::new(now),
            categories: None,
            ack_to: None,
            strict: StrictAcks::default(),
            peers: PeerLease::new(now),
            primary: None,
            hold: ReplayHold::new(now),
            counters: CoherenceCounters::default(),
        }
    }

    /// Turns the peer lease on (a node with Redis and gossip peers): while the Redis link is
    /// down, the lease is kept with [`BusMessage::PeerPing`]s and [`BusMessage::PeerGrant`]s
    /// over QUIC, and changes are acknowledged only once every peer acked them.
    pub fn with_peer_lease(mut self) -> Self {
        self.peers.enabled = true;
        self
    }

    /// Turns the replay hold on (a node with Redis and gossip peers), for a node started at
    /// `now`: L2 is not read before a round of backlog questions sent after the link came
    /// up was answered by every live peer, nor before `now + join_grace` (the gossip probe
    /// period plus its suspicion timeout: time to hear of the peers). See `hold.rs`.
    pub fn with_replay_hold(mut self, now: Instant, join_grace: std::time::Duration) -> Self {
        self.hold.enable(now, join_grace);
        self
    }

    /// Whether L2 must not be read at all right now (the replay hold).
    pub fn l2_held(&self) -> bool {
        self.hold.held()
    }

    /// Advances the replay hold: ends it when its round is complete, else sends the
    /// questions that are due ([`BusMessage::BacklogQuery`] to each peer yet to answer).
    pub fn hold_tick(&mut self, now: Instant) -> Vec<Action> {
        let Some((id, peers)) = self.hold.tick(now) else {
            return Vec::new();
        };
        peers
            .into_iter()
            .map(|to| Action::SendPeer {
                to,
                msg: BusMessage::BacklogQuery {
                    origin: self.node_id.clone(),
                    origin_epoch: self.epoch,
                    id,
                },
            })
            .collect()
    }

    /// Our answer to `to`'s backlog question `id`: the `changes` waiting in our L2 replay
    /// backlog, as whole categories if they are too many for one frame.
    pub fn backlog_answer(
        &self,
        to: String,
        id: u64,
        changes: Vec<(String, Target)>,
    ) -> BusMessage {
        BusMessage::BacklogAnswer {
            from: self.node_id.clone(),
            from_epoch: self.epoch,
            to,
            id,
            changes: bounded_changes(changes),
        }
    }

    /// Our own channel suffix, where receivers send acks of our strict changes.
    pub fn with_ack_channel(mut self, suffix: impl Into<String>) -> Self {
        self.ack_to = Some(suffix.into());
        self
    }

    /// Declares this node's categories: an invalidation naming any other category cannot be
    /// applied exactly and flushes instead.
    pub fn with_categories<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.categories = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The lease deadline: L1 may be served while `now <= lease_until`.
    #[cfg(test)]
    pub fn lease_until(&self) -> Option<Instant> {
        self.lease.until
    }

    /// Whether L1 may be served at `now`.
    #[cfg(test)]
    pub fn lease_held(&self, now: Instant) -> bool {
        self.lease.held(now)
    }

    /// Our node id.
    #[cfg(test)]
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Our epoch.
    #[cfg(test)]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Current state of the subscription.
    pub fn link(&self) -> LinkState {
        self.link
    }

    /// The last sequence number we assigned (0 = none yet). Every message up to it is
    /// already queued for sending (see `numbering.rs`).
    pub fn last_sent_seq(&self) -> u64 {
        self.stamp.lock().last()
    }

    /// What a writer needs to number and build a plain change of ours itself, in this
    /// machine's sequence (see [`Stamp`]).
    pub fn stamp(&self) -> &Stamp {
        &self.stamp
    }

    /// When one of our own messages last came back through the subscription.
    #[cfg(test)]
    pub fn last_self_echo(&self) -> Option<Instant> {
        self.echo.last_echo
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> CoherenceCounters {
        self.counters
    }

    /// Whether peers stand in for Redis right now (peer leases while the link is down):
    /// [`Self::set_live_peers`] then also settles pending peer pings.
    pub fn peer_mode(&self) -> bool {
        self.peers.enabled && self.link == LinkState::Down
    }

    /// Strict changes of ours still waiting.
    #[cfg(test)]
    pub fn strict_pending(&self) -> usize {
        self.strict.pending()
    }

    /// Builds the next invalidation to publish, with the next sequence number.
    ///
    /// The caller publishes it (Redis, and/or QUIC while Redis is down) and applies the
    /// change to its own L1 itself; the echo is never applied. A caller that queues it for
    /// the Redis pipeline numbers it with [`Stamp::invalidation`] instead, under the lock
    /// it queues under (see `numbering.rs`); the tests number with this.
    #[cfg(test)]
    pub fn outgoing(
        &mut self,
        category: Option<&str>,
        target: Target,
        kind: ChangeKind,
        now: Instant,
    ) -> BusMessage {
        // `now` is part of the uniform sans-IO signature; sending needs no timer today.
        let _ = now;
        let stamp = &self.stamp;
        stamp.invalidation(&mut stamp.lock(), category, target, kind)
    }

    /// Builds the next invalidation of a **strict** category, numbered through `numbered`
    /// (this machine's counter, locked: the caller queues the message before it unlocks):
    /// like [`Self::outgoing`], plus `ack_to`, and the change is tracked until
    /// [`Action::Acknowledged`]. Call [`Self::published`] when the PUBLISH returned (or
    /// [`Self::publish_failed`]).
    pub fn outgoing_strict(
        &mut self,
        numbered: &mut Numbered<'_>,
        category: Option<&str>,
        target: Target,
        kind: ChangeKind,
        now: Instant,
    ) -> BusMessage {
        let _ = now;
        let mut msg = self.stamp.invalidation(numbered, category, target, kind);
        if let BusMessage::Invalidation(inv) = &mut msg {
            inv.ack_to = self.ack_to.clone();
            self.strict.track(inv.seq);
        }
        msg
    }

    /// Builds a change made while Redis is down (its L2 write failed), numbered through
    /// `numbered` (locked; the caller sends it before it unlocks): like
    /// [`Self::outgoing`], plus `ack_to`; it is acknowledged ([`Action::Acknowledged`]) only
    /// when every peer in the session acked it within B, else refused
    /// ([`Action::NotAcknowledged`]). The driver sends it over QUIC.
    pub fn outgoing_peer(
        &mut self,
        numbered: &mut Numbered<'_>,
        category: Option<&str>,
        target: Target,
        kind: ChangeKind,
        now: Instant,
    ) -> (BusMessage, Vec<Action>) {
        let mut msg = self.stamp.invalidation(numbered, category, target, kind);
        let BusMessage::Invalidation(inv) = &mut msg else {
            return (msg, Vec::new());
        };
        inv.ack_to = self.ack_to.clone();
        self.peers.track_write(inv.seq, now);
        let actions = self.settle_peer_writes(now);
        (msg, actions)
    }

    /// One of our own messages may have been lost before it was numbered (a full queue):
    /// skip a sequence number, so every receiver sees a gap at our next invalidation or
    /// heartbeat and flushes (fail closed).
    pub fn skip_seq(&mut self) {
        self.stamp.lock().take();
    }

    /// Redis took the PUBLISH of our strict change `seq`, which reached `receivers`
    /// subscribers. The wait for acks (or for B) starts now.
    pub fn published(&mut self, seq: u64, receivers: u64, now: Instant) -> Vec<Action> {
        if !self
            .strict
            .published(seq, receivers, now, self.config.liveness)
        {
            return Vec::new();
        }
        self.settle_strict(now)
    }

    /// The PUBLISH of strict change `seq` failed: its writer gets the error, nothing waits.
    pub fn publish_failed(&mut self, seq: u64) {
        self.strict.forget(seq);
    }

    /// The peers gossip currently says are alive or suspect. A peer that leaves the set
    /// while the link is down (declared dead) flushes L1: whatever it changed since it last
    /// granted us is unknown here. It stays in the set of peers our changes wait for.
    pub fn set_live_peers<I: IntoIterator<Item = String>>(
        &mut self,
        peers: I,
        now: Instant,
    ) -> Vec<Action> {
        let peers: BTreeSet<String> = peers.into_iter().filter(|p| *p != self.node_id).collect();
        let peer_mode = self.peer_mode();
        self.hold.set_live(&peers);
        let someone_gone = self.peers.set_live(peers, peer_mode);
        let mut actions = Vec::new();
        if peer_mode {
            if someone_gone {
                actions.extend(self.flush(FlushReason::PeerDead));
            }
            actions.extend(self.settle_peer_pings(now));
        }
        actions
    }

    /// Releases every strict change whose acks are complete or whose B has passed.
    pub(super) fn settle_strict(&mut self, now: Instant) -> Vec<Action> {
        let bound = self.config.staleness_bound;
        self.strict.settle(now, bound, &mut self.counters)
    }

    /// Releases our Redis-down changes: acknowledged once every needed peer acked,
    /// refused once B passed without.
    pub(super) fn settle_peer_writes(&mut self, now: Instant) -> Vec<Action> {
        let bound = self.config.staleness_bound;
        self.peers.settle_writes(now, bound, &mut self.counters)
    }

    /// Renews the lease with the newest peer ping every needed peer granted.
    pub(super) fn settle_peer_pings(&mut self, now: Instant) -> Vec<Action> {
        let _ = now;
        let Some(sent) = self.peers.take_granted() else {
            return Vec::new();
        };
        let Some(renew) = self.lease.renew(sent, self.config.staleness_bound) else {
            return Vec::new();
        };
        self.counters.peer_renewals += 1;
        vec![renew]
    }

    /// Flushes L1 (counted).
    pub(super) fn flush(&mut self, reason: FlushReason) -> Vec<Action> {
        self.counters.flushes += 1;
        vec![Action::FlushAll(reason)]
    }
}
