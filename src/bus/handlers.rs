//! One method per [`BusMsg`]: what the bus actor does with each message, in terms of the
//! coherence machine's inputs and the actions it answers with.

use std::sync::atomic::Ordering;
use std::time::Instant;

use ractor::ActorRef;

use super::{
    BundledWrite, BusMsg, BusState, ChangeKind, Done, PublishError, Target, Via, PEERS_REFRESH,
};
use crate::coherence::{Clock, LinkState};
use crate::l2::L2Conn;
use crate::stats::NodeCounters;
use crate::wire::{self, BusMessage};

/// A local change to announce.
pub(super) struct Change {
    pub(super) category: Option<String>,
    pub(super) target: Target,
    pub(super) kind: ChangeKind,
    /// A value write to send with the invalidation.
    pub(super) write: Option<BundledWrite>,
}

impl BusState {
    /// [`BusMsg::Overflow`]: a message was refused; flush here and make every peer flush.
    pub(super) async fn on_overflow(&mut self) {
        // Cleared first: an overflow after this point asks for another flush.
        self.handle.gate().overflow_handled();
        // The refused message may have been one of our invalidations: a skipped
        // sequence number makes every peer flush at our next message or heartbeat.
        self.machine.skip_seq();
        self.node.flush_all("overflow").await;
    }

    /// [`BusMsg::Publish`]: numbers a local change and sends it on its path. A number is
    /// taken under the counter's lock, and its message sent before the lock is released
    /// (see `bus::outbox`): writers number plain changes concurrently.
    pub(super) async fn on_publish(
        &mut self,
        myself: &ActorRef<BusMsg>,
        change: Change,
        strict: bool,
        l2_pending: bool,
        done: Option<Done>,
        now: Instant,
    ) {
        let Change {
            category,
            target,
            kind,
            write,
        } = change;
        let category = category.as_deref();
        let outbox = self.outbox.clone();
        if l2_pending {
            NodeCounters::incr(&self.node.counters().invalidations_sent);
            // Never bundled (L2 did not take the change); dropping it fails it.
            drop(write);
            // L2 did not take it: every peer must ack it over QUIC (and keep it for replay
            // into L2) before it is acknowledged.
            let actions = {
                let mut numbered = outbox.stamp().lock();
                let (msg, actions) =
                    self.machine
                        .outgoing_peer(&mut numbered, category, target, kind, now);
                if let BusMessage::Invalidation(inv) = &msg {
                    if let Some(d) = done {
                        self.strict_waiters.insert(inv.seq, d);
                    }
                }
                self.send_peer(None, &msg);
                actions
            };
            self.run(actions).await;
            self.wake_at(myself.clone(), now + self.node.config().staleness_bound);
        } else if strict && self.node.l2().is_some() {
            NodeCounters::incr(&self.node.counters().invalidations_sent);
            let mut numbered = outbox.stamp().lock();
            let msg = self
                .machine
                .outgoing_strict(&mut numbered, category, target, kind, now);
            let BusMessage::Invalidation(inv) = &msg else {
                return;
            };
            let seq = inv.seq;
            if let Some(d) = done {
                self.strict_waiters.insert(seq, d);
            }
            let channel = self.channel.clone();
            let queued = outbox.queue(&msg, channel, None, Some(seq), write);
            drop(numbered);
            if !queued {
                self.machine.publish_failed(seq);
                if let Some(done) = self.strict_waiters.remove(&seq) {
                    let _ = done.send(Err(PublishError::Overloaded));
                }
            }
        } else {
            // A strict change without L2 (nothing to wait for), or a plain one that came
            // this way: numbered and queued as a writer does it.
            outbox.send_plain(category, target, kind, done, write);
        }
    }

    /// [`BusMsg::Published`]: Redis's outcome for one of our strict changes.
    pub(super) async fn on_published(
        &mut self,
        myself: &ActorRef<BusMsg>,
        seq: u64,
        result: Result<u64, PublishError>,
        now: Instant,
    ) {
        match result {
            Ok(receivers) => {
                let actions = self.machine.published(seq, receivers, now);
                self.run(actions).await;
                // Released by the bound at the latest: on time, not at the next tick.
                self.wake_at(myself.clone(), now + self.node.config().staleness_bound);
            }
            Err(e) => {
                self.machine.publish_failed(seq);
                if let Some(done) = self.strict_waiters.remove(&seq) {
                    let _ = done.send(Err(e));
                }
            }
        }
    }

    /// [`BusMsg::Inbound`]: authenticates and decodes a payload, and feeds it to the machine.
    pub(super) async fn on_inbound(&mut self, bytes: Vec<u8>, via: Via, now: Instant) {
        let before = self.machine.counters().duplicates;
        let applied_before = self.machine.counters().applied;
        let mut sent_at_ms = None;
        let frame = match &self.key {
            Some(k) => crate::wire_auth::open(k, &bytes).map_err(|e| e.to_string()),
            None => Ok(&bytes[..]),
        };
        let decoded = frame.and_then(|f| wire::decode::<BusMessage>(f).map_err(|e| e.to_string()));
        let actions = match decoded {
            Ok(msg) => {
                if let BusMessage::Invalidation(inv) = &msg {
                    sent_at_ms = Some(inv.sent_at_ms);
                    if via == Via::Quic && inv.kind != ChangeKind::Set {
                        // Its L2 outcome is unknown here (a peer sends over QUIC when Redis
                        // failed it): keep it for replay into L2, and read L2 only after that.
                        self.node
                            .l2_missed_any(inv.category.as_deref(), &inv.target);
                    }
                }
                self.machine.handle_message(msg, now)
            }
            Err(e) => {
                NodeCounters::incr(&self.node.counters().invalid_messages);
                tracing::debug!(error = %e, ?via, "undecodable bus payload: flushing");
                self.machine.undecodable(now)
            }
        };
        self.count_duplicates(before);
        self.via = via;
        self.run(actions).await;
        self.via = Via::Redis;
        if let Some(ms) = sent_at_ms {
            if self.machine.counters().applied > applied_before {
                // Publish on the origin -> handed to our L1 writer.
                self.node.observe_propagation_since(ms);
            }
        }
    }

    /// [`BusMsg::LinkUp`]: the connection task of generation `gen` subscribed.
    pub(super) async fn on_link_up(
        &mut self,
        myself: &ActorRef<BusMsg>,
        conn: L2Conn,
        gen: u64,
        now: Instant,
    ) {
        if gen != self.conn_gen {
            return;
        }
        if let Some(l2) = self.node.l2() {
            l2.install(Some(conn));
        }
        // Revoke, then flush, before anything is trusted again.
        let actions = self.machine.link_up(now);
        self.run(actions).await;
        self.node.set_link_up(true);
        self.start_replay(myself);
        NodeCounters::incr(&self.node.counters().redis_reconnects);
        tracing::info!(channel = %self.channel, ping = %self.ping_channel, "redis link up");
    }

    /// [`BusMsg::LinkDown`] of the current connection task.
    pub(super) async fn link_down(&mut self, reason: &str) {
        if self.machine.link() == LinkState::Up {
            tracing::warn!(reason, "redis subscription down: L1 lease revoked");
        }
        let actions = self.machine.link_down(Clock::system().now());
        self.node.set_link_up(false);
        Box::pin(self.run(actions)).await;
    }

    /// [`BusMsg::Tick`]: reconnects, refreshes the peers, lets the machine's timers run,
    /// replays, checks isolation.
    pub(super) async fn on_tick(&mut self, myself: &ActorRef<BusMsg>, now: Instant) {
        self.tick_pending.store(false, Ordering::Release);
        if self.conn_task.is_none() && self.node.config().redis.is_some() {
            self.conn_task = self.connect(myself);
        }
        self.refresh_peers(now).await;
        let actions = self.machine.tick(now);
        self.run(actions).await;
        let actions = self.machine.hold_tick(now);
        self.run(actions).await;
        if self.machine.link() == LinkState::Up {
            self.start_replay(myself);
        }
        self.check_isolation(now).await;
    }

    /// Hands the gossip peers to the machine when they may have changed.
    async fn refresh_peers(&mut self, now: Instant) {
        let Some(g) = self.node.peers() else {
            return;
        };
        // Copying every peer's id 20 times a second costs an idle 100-node cluster a
        // quarter of its CPU; the copy is taken only when it can differ.
        let version = g.peers_version();
        let fresh = self.peers_seen.is_some_and(|(v, at)| {
            v == version && now.saturating_duration_since(at) < PEERS_REFRESH
        });
        if !fresh || self.machine.peer_mode() {
            self.peers_seen = Some((version, now));
            let actions = self.machine.set_live_peers(g.live_peer_ids(), now);
            self.run(actions).await;
        }
    }
}
