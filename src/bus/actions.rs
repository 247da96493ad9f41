//! Carrying out the coherence machine's [`Action`]s: apply an invalidation to the L1
//! writers, flush, publish, renew or revoke the lease (a renewal and an ack only after a
//! barrier through every category actor), answer the writers of strict changes.

use std::time::Instant;

use ractor::ActorRef;

use super::{ping_channel, BusMsg, BusState, PublishError, Target, Via};
use crate::coherence::{Action, Clock, LinkState};
use crate::stats::NodeCounters;

impl BusState {
    /// Carries out `actions` in order.
    pub(super) async fn run(&mut self, actions: Vec<Action>) {
        for action in actions {
            self.run_one(action).await;
        }
    }

    async fn run_one(&mut self, action: Action) {
        match action {
            Action::Apply { category, target } => self.apply(category.as_deref(), &target),
            Action::FlushAll(reason) => {
                if self.machine.link() == LinkState::Down {
                    // Without Redis we cannot know which changes the flush stands for:
                    // some may be waiting to reach L2 in a peer's backlog. L2 is read
                    // again only after every category was invalidated there.
                    self.node.l2_missed_everything();
                }
                self.node.flush_all(reason.as_str()).await
            }
            Action::Publish(msg) => self.send(&msg, None),
            Action::Reconnect => {
                // The machine emitted Revoke before this when a lease was held.
                tracing::warn!("no echo of our own pings, or another primary: resubscribing");
                self.node.set_link_up(false);
                self.restart_connection_later();
            }
            Action::Renew { until } => {
                if self.node.barrier().await {
                    self.node.renew_lease(until);
                }
            }
            Action::Revoke => {
                self.node.revoke_lease();
                self.node.record_lease_lapse();
            }
            Action::SendAck { to, origin, ack } => {
                // Only once the change is in our L1 does the writer hear "applied"; by
                // the path the change came on.
                if self.node.barrier().await {
                    if self.via == Via::Quic {
                        self.send_peer(Some(&origin), &ack);
                    } else {
                        let channel = ping_channel(&self.bus_ns, &to);
                        self.outbox.queue(&ack, channel, None, None, None);
                    }
                }
            }
            Action::QueryPrimary { .. } | Action::PrimaryProven { .. } | Action::PrimaryLost => {
                self.run_primary(action)
            }
            Action::PeerBroadcast(msg) => self.send_peer(None, &msg),
            Action::SendPeer { to, msg } => self.send_peer(Some(&to), &msg),
            Action::SendBacklog { to, id } => {
                let answer =
                    self.machine
                        .backlog_answer(to.clone(), id, self.node.backlog_snapshot());
                self.send_peer(Some(&to), &answer);
            }
            Action::RecordBacklog { changes } => {
                // Read from L2 only after our own replay wrote them there.
                for (category, target) in changes {
                    self.node.l2_missed_any(Some(&category), &target);
                }
            }
            Action::NotAcknowledged { seq } => {
                if let Some(done) = self.strict_waiters.remove(&seq) {
                    let _ = done.send(Err(PublishError::NotAcknowledged));
                }
            }
            Action::Acknowledged { seq, by_timeout } => {
                if by_timeout {
                    tracing::debug!(seq, "strict change released by the bound, not by acks");
                }
                if let Some(done) = self.strict_waiters.remove(&seq) {
                    let _ = done.send(Ok(()));
                }
            }
        }
    }

    /// Sentinel's primary proof: query the sentinels, or open / close L2 to reads and acks.
    fn run_primary(&self, action: Action) {
        match action {
            Action::QueryPrimary { id } => {
                if let Some(p) = &self.prober {
                    p.query(id);
                }
            }
            Action::PrimaryProven { sent, until } => {
                if let Some(l2) = self.node.l2() {
                    l2.primary_proven(sent, until);
                }
            }
            Action::PrimaryLost => {
                if let Some(l2) = self.node.l2() {
                    l2.primary_lost();
                }
            }
            _ => {}
        }
    }

    /// Hands a peer's change to the L1 writers of the categories it touches.
    fn apply(&self, category: Option<&str>, target: &Target) {
        let node = &self.node;
        NodeCounters::incr(&node.counters().invalidations_received);
        let Ok(parsed) = target.to_pattern() else {
            // The machine checked it; unreachable in practice, and flushing is its job.
            NodeCounters::incr(&node.counters().invalid_messages);
            return;
        };
        // Before the L1 writers see it: a local `set` racing this change checks the mark.
        match (target, category) {
            (Target::Key(k), Some(c)) => node.mark_remote_key(c, k),
            _ => node.mark_remote_all(),
        }
        let names: Vec<String> = match category {
            None => node.category_names(),
            Some(c) if node.has_category(c) => vec![c.to_string()],
            Some(_) => return, // the machine flushed for an unknown category
        };
        for name in names {
            // A full mailbox or a restarting actor flushes the category instead.
            node.invalidate_l1(&name, parsed.clone());
        }
    }

    /// A [`BusMsg::Tick`] at `at` (a strict or peer change's deadline), coalesced with the
    /// periodic one: the machine decides at the deadline, not up to a tick period later.
    pub(super) fn wake_at(&self, myself: ActorRef<BusMsg>, at: Instant) {
        let pending = self.tick_pending.clone();
        // `at` is on the lease's clock (it counts through a suspend); a timer needs a delay.
        let delay = Clock::system().until(at);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if !pending.swap(true, std::sync::atomic::Ordering::AcqRel) {
                let _ = myself.cast(BusMsg::Tick);
            }
        });
    }

    /// Records a protocol counter delta into the node counters.
    pub(super) fn count_duplicates(&self, before: u64) {
        let dups = self.machine.counters().duplicates - before;
        self.node
            .counters()
            .duplicate_messages
            .fetch_add(dups, std::sync::atomic::Ordering::Relaxed);
    }
}
