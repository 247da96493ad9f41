//! The inputs of the machine: a received message (one function per [`BusMessage`] kind),
//! the link coming up or going down, and the passing of time ([`Coherence::tick`]). Each
//! returns the [`Action`]s its driver must carry out, in order.

use std::time::Instant;

use super::sequence::Verdict;
use super::{Action, Coherence, FlushReason, LinkState};
use crate::wire::{BusMessage, Invalidation, Target};

impl Coherence {
    /// Handles one message received from the bus (any path: Redis or QUIC), in any link state.
    pub fn handle_message(&mut self, msg: BusMessage, now: Instant) -> Vec<Action> {
        match msg {
            BusMessage::Invalidation(inv) => self.handle_invalidation(inv, now),
            BusMessage::Heartbeat {
                origin,
                origin_epoch,
                last_seq,
            } => self.handle_heartbeat(origin, origin_epoch, last_seq, now),
            BusMessage::Ping {
                origin,
                origin_epoch,
                id,
            } => self.handle_ping(&origin, origin_epoch, id, now),
            BusMessage::Ack {
                from,
                from_epoch,
                origin_epoch,
                seq,
            } => self.handle_ack(from, from_epoch, origin_epoch, seq, now),
            BusMessage::PeerPing {
                origin,
                origin_epoch,
                id,
            } => self.handle_peer_ping(origin, origin_epoch, id, now),
            BusMessage::PeerGrant {
                from,
                from_epoch,
                to,
                id,
                upto,
            } => self.handle_peer_grant(from, from_epoch, &to, id, upto, now),
            BusMessage::BacklogQuery {
                origin,
                origin_epoch,
                id,
            } => {
                if self.is_self(&origin, origin_epoch) {
                    return Vec::new();
                }
                vec![Action::SendBacklog { to: origin, id }]
            }
            BusMessage::BacklogAnswer {
                from,
                from_epoch,
                to,
                id,
                changes,
            } => self.handle_backlog_answer(&from, from_epoch, &to, id, changes, now),
        }
    }

    /// A payload arrived that could not be decoded or authenticated: we cannot know what it
    /// said, so everything is flushed (fail closed). Sequence state is not touched.
    pub fn undecodable(&mut self, now: Instant) -> Vec<Action> {
        let _ = now;
        self.counters.undecodable += 1;
        self.flush(FlushReason::Undecodable)
    }

    /// Whether (`origin`, `epoch`) is this node. If so, the message is our own echo: the
    /// subscription is alive (recorded), and the message is never applied.
    fn own_echo(&mut self, origin: &str, epoch: u64, now: Instant) -> bool {
        if origin != self.node_id || epoch != self.epoch {
            return false;
        }
        self.echo.echoed(now);
        true
    }

    /// Whether (`node`, `epoch`) is this very node (not a previous incarnation).
    fn is_self(&self, node: &str, epoch: u64) -> bool {
        node == self.node_id && epoch == self.epoch
    }

    /// An invalidation: its target is applied whatever its number says (in order, or a
    /// duplicate: removal is idempotent), or L1 is flushed (a gap, first contact, or not
    /// applicable exactly here); a strict origin gets our ack after it. Sequence numbers
    /// only detect gaps.
    fn handle_invalidation(&mut self, inv: Invalidation, now: Instant) -> Vec<Action> {
        if self.own_echo(&inv.origin, inv.origin_epoch, now) {
            if self.strict.self_seen(inv.seq) {
                return self.settle_strict(now);
            }
            return Vec::new();
        }
        self.strict.heard_from(&inv.origin, now);
        self.counters.received += 1;
        let exact = self.applicable(&inv);
        // A strict origin waits for our ack: whatever we do below (apply or flush) leaves
        // it out of L1 first.
        let ack = inv.ack_to.clone().map(|to| Action::SendAck {
            to,
            origin: inv.origin.clone(),
            ack: BusMessage::Ack {
                from: self.node_id.clone(),
                from_epoch: self.epoch,
                origin_epoch: inv.origin_epoch,
                seq: inv.seq,
            },
        });
        let verdict = self.seqs.observe(
            inv.origin,
            inv.origin_epoch,
            inv.seq,
            true,
            &mut self.counters,
        );
        let mut actions = match verdict {
            Verdict::Apply if exact => {
                self.counters.applied += 1;
                vec![Action::Apply {
                    category: inv.category,
                    target: inv.target,
                }]
            }
            Verdict::Duplicate if exact => {
                // Counted, and applied all the same (removal is idempotent): a change sent
                // only over QUIC (its L2 write failed) may arrive after a later number of
                // its origin, whose gap flush let L1 refill from the old L2 value.
                self.counters.duplicates += 1;
                vec![Action::Apply {
                    category: inv.category,
                    target: inv.target,
                }]
            }
            Verdict::Apply | Verdict::Duplicate => {
                // Not applicable exactly here: apply wider.
                if matches!(verdict, Verdict::Duplicate) {
                    self.counters.duplicates += 1;
                }
                self.counters.undecodable += 1;
                self.flush(FlushReason::Undecodable)
            }
            Verdict::Flush(reason) => self.flush(reason),
        };
        // The ack goes after the apply (or the flush): the driver sends it only once
        // every earlier action is in L1 (barrier).
        actions.extend(ack);
        actions
    }

    /// Whether an invalidation can be applied exactly on this node.
    fn applicable(&self, inv: &Invalidation) -> bool {
        let known = match (&inv.category, &self.categories) {
            (Some(c), Some(set)) => set.contains(c),
            _ => true,
        };
        let parses = match &inv.target {
            Target::Glob(g) => crate::pattern::Pattern::glob(g).is_ok(),
            Target::Key(_) | Target::Everything | Target::Tag(_) => true,
        };
        known && parses
    }

    /// A heartbeat: its `last_seq` reveals a lost tail (flush).
    fn handle_heartbeat(
        &mut self,
        origin: String,
        origin_epoch: u64,
        last_seq: u64,
        now: Instant,
    ) -> Vec<Action> {
        if self.own_echo(&origin, origin_epoch, now) {
            return Vec::new();
        }
        self.strict.heard_from(&origin, now);
        let verdict = self
            .seqs
            .observe(origin, origin_epoch, last_seq, false, &mut self.counters);
        self.flush_if_needed(verdict)
    }

    /// A lease ping: ours renews the lease; another node's (a misrouted channel) carries
    /// nothing for us but proves it is alive.
    fn handle_ping(
        &mut self,
        origin: &str,
        origin_epoch: u64,
        id: u64,
        now: Instant,
    ) -> Vec<Action> {
        if self.own_echo(origin, origin_epoch, now) {
            return self.ping_echo(id, now);
        }
        self.strict.heard_from(origin, now);
        Vec::new()
    }

    /// The echo of our ping `id` came back: every message Redis processed before it has
    /// been handed to us (and the driver applies them before renewing).
    fn ping_echo(&mut self, id: u64, now: Instant) -> Vec<Action> {
        let _ = now;
        let Some(sent) = self.lease.take_echo(id) else {
            // Sent before the last link change, or forgotten: proves nothing now.
            return Vec::new();
        };
        if self.link != LinkState::Up {
            return Vec::new();
        }
        self.lease
            .renew_echo(sent, self.config.staleness_bound)
            .into_iter()
            .collect()
    }

    /// An ack from `from` of our strict (or Redis-down) changes up to `seq`.
    fn handle_ack(
        &mut self,
        from: String,
        from_epoch: u64,
        origin_epoch: u64,
        seq: u64,
        now: Instant,
    ) -> Vec<Action> {
        if self.is_self(&from, from_epoch) {
            return Vec::new();
        }
        self.strict.heard_ack_from(&from, now);
        if origin_epoch != self.epoch {
            return Vec::new();
        }
        self.strict.acked_upto(&from, seq);
        self.peers.acked_upto(&from, seq);
        let mut actions = self.settle_strict(now);
        actions.extend(self.settle_peer_writes(now));
        actions
    }

    /// A peer pinged us over QUIC. Granted only while our own Redis link is down: a node
    /// with Redis acknowledges its changes by PUBLISH alone and cannot promise to wait.
    fn handle_peer_ping(
        &mut self,
        origin: String,
        origin_epoch: u64,
        id: u64,
        now: Instant,
    ) -> Vec<Action> {
        let _ = now;
        if self.is_self(&origin, origin_epoch)
            || !self.peers.enabled
            || self.link != LinkState::Down
        {
            return Vec::new();
        }
        // From now on our changes wait for this peer's ack.
        self.peers.pinged_by(&origin);
        vec![Action::SendPeer {
            to: origin.clone(),
            msg: BusMessage::PeerGrant {
                from: self.node_id.clone(),
                from_epoch: self.epoch,
                to: origin,
                id,
                upto: self.last_sent_seq(),
            },
        }]
    }

    /// A peer granted our ping `id`; its changes end at `upto`.
    fn handle_peer_grant(
        &mut self,
        from: String,
        from_epoch: u64,
        to: &str,
        id: u64,
        upto: u64,
        now: Instant,
    ) -> Vec<Action> {
        if to != self.node_id
            || self.is_self(&from, from_epoch)
            || !self.peers.enabled
            || self.link != LinkState::Down
        {
            return Vec::new();
        }
        // Everything it changed up to `upto` must be in our L1 before its grant counts: a
        // gap (or a first contact) flushes first, and the flush precedes the renewal.
        let verdict = self
            .seqs
            .observe(from.clone(), from_epoch, upto, false, &mut self.counters);
        let mut actions = self.flush_if_needed(verdict);
        self.peers.granted(id, from);
        actions.extend(self.settle_peer_pings(now));
        actions
    }

    /// A peer told us what waits in its replay backlog. Counted for the hold only if it
    /// answers the current round, addressed to us; then its changes join our backlog.
    fn handle_backlog_answer(
        &mut self,
        from: &str,
        from_epoch: u64,
        to: &str,
        id: u64,
        changes: Vec<(String, Target)>,
        now: Instant,
    ) -> Vec<Action> {
        if to != self.node_id || self.is_self(from, from_epoch) || !self.hold.answered(from, id) {
            return Vec::new();
        }
        let mut actions = Vec::new();
        if !changes.is_empty() {
            actions.push(Action::RecordBacklog { changes });
        }
        // The hold may end with this answer (the driver records the changes first).
        actions.extend(self.hold_tick(now));
        actions
    }

    /// The flush a verdict on a heartbeat-like number asks for (none for in order or
    /// nothing new).
    fn flush_if_needed(&mut self, verdict: Verdict) -> Vec<Action> {
        match verdict {
            Verdict::Apply | Verdict::Duplicate => Vec::new(),
            Verdict::Flush(reason) => self.flush(reason),
        }
    }

    /// The subscription is (re)established. Anything may have changed while we were not
    /// listening, so L1 is flushed. Per-origin tracking is kept: a gap across the outage
    /// flushes again, which is redundant for messages sent before this flush but required
    /// for those lost after it, and the two cannot be told apart.
    pub fn link_up(&mut self, now: Instant) -> Vec<Action> {
        // Nothing heard before this point proves freshness any more.
        let mut actions: Vec<Action> = self
            .lease
            .revoke(now, &mut self.counters)
            .into_iter()
            .collect();
        self.link = LinkState::Up;
        self.hold.link_up(now);
        self.strict.link_up(now);
        // The peer session ends: Redis orders changes again.
        self.peers.end_session();
        self.echo.restart(now);
        self.lease.restart_pings(now);
        actions.extend(self.primary_reset(now));
        actions.extend(self.flush(FlushReason::Reconnect));
        actions
    }

    /// The subscription is lost: the lease ends at once (we can no longer hear about
    /// changes), and [`Coherence::link_up`] flushes when it comes back.
    pub fn link_down(&mut self, now: Instant) -> Vec<Action> {
        self.start_peer_session(now);
        self.link = LinkState::Down;
        self.hold.link_down();
        self.strict.link_down();
        self.echo.forget_unechoed();
        self.lease
            .revoke(now, &mut self.counters)
            .into_iter()
            .collect()
    }

    /// The link went down: our changes from now on wait for every live peer.
    fn start_peer_session(&mut self, now: Instant) {
        if self.link == LinkState::Up {
            self.peers.start_session(now);
        }
    }

    /// Advances time. While the link is up: declares the subscription dead if our oldest
    /// unechoed heartbeat is older than `echo_timeout` ([`Action::Reconnect`], link Down),
    /// otherwise publishes a heartbeat when one is due (at most once per
    /// `heartbeat_interval`, the first one right after [`Coherence::link_up`]).
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = self.settle_strict(now);
        actions.extend(self.settle_peer_writes(now));
        self.strict.forget_silent(now, self.config.liveness);
        actions.extend(self.lease.expire(now, &mut self.counters));
        if self.link == LinkState::Down {
            actions.extend(self.peer_tick(now));
            return actions;
        }
        if self.echo.lost(now, self.config.echo_timeout) {
            actions.extend(self.drop_link(now));
            actions.push(Action::Reconnect);
            return actions;
        }
        if let Some(id) =
            self.lease
                .ping_due(now, self.config.ping_interval, &mut self.last_ping_id)
        {
            self.echo.sent(now);
            actions.push(Action::Publish(BusMessage::Ping {
                origin: self.node_id.clone(),
                origin_epoch: self.epoch,
                id,
            }));
        }
        actions.extend(self.primary_tick(now));
        if self.echo.heartbeat_due(now, self.config.heartbeat_interval) {
            self.echo.sent(now);
            actions.push(Action::Publish(BusMessage::Heartbeat {
                origin: self.node_id.clone(),
                origin_epoch: self.epoch,
                last_seq: self.last_sent_seq(),
            }));
        }
        actions
    }

    /// The subscription is to be dropped (no self-echo, or the sentinels name another
    /// primary): link Down, lease revoked, no proof of the primary any more. The caller adds
    /// [`Action::Reconnect`].
    pub(super) fn drop_link(&mut self, now: Instant) -> Vec<Action> {
        self.start_peer_session(now);
        self.link = LinkState::Down;
        self.hold.link_down();
        self.strict.link_down();
        self.echo.forget_unechoed();
        self.counters.reconnects += 1;
        let mut actions: Vec<Action> = self
            .lease
            .revoke(now, &mut self.counters)
            .into_iter()
            .collect();
        actions.extend(self.primary_reset(now));
        actions
    }

    /// While the link is down: a peer ping to every live peer every `ping_interval`.
    fn peer_tick(&mut self, now: Instant) -> Vec<Action> {
        let Some(id) = self
            .peers
            .ping_due(now, self.config.ping_interval, &mut self.last_ping_id)
        else {
            return Vec::new();
        };
        vec![Action::PeerBroadcast(BusMessage::PeerPing {
            origin: self.node_id.clone(),
            origin_epoch: self.epoch,
            id,
        })]
    }
}
