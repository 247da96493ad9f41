//! Sans-IO SWIM membership: foca plus a timer queue and a member table,
//! driven only by explicit `Instant`s. No sockets, no clocks, no tasks:
//! the transport (or a simulated network in tests) feeds packets in with
//! [`Membership::handle_packet`], fires timers with
//! [`Membership::poll_timers`] and ships [`Membership::drain_outbox`].
//!
//! * `swim`: the SWIM settings and packet codec foca runs with.
//! * `table`: the member table readers see.
//! * `sync`: digest sync, the catch-up outside foca's protocol.

mod swim;
mod sync;
mod table;

use std::{cmp::Reverse, collections::BinaryHeap, time::Instant};

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, State, Timer};

use super::identity::NodeIdentity;

pub(crate) use swim::{
    packet_header, PacketError, SwimParams, SwimRng, GOSSIP_EVERY, GOSSIP_FANOUT, JOIN_RETRY,
    MAX_PACKET,
};
pub(crate) use sync::sync_sender;
#[cfg(test)]
pub(crate) use sync::SyncMsg;
pub(crate) use table::PeerEntry;

use swim::{codec, SwimCodec};
use sync::CATCH_UP_EVERY;
use table::MemberTable;

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    at: Instant,
    timer: Timer<NodeIdentity>,
    seq: u64,
}

/// A membership change this node observed (recorded only when asked, for simulations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MemberEvent {
    Up(String),
    Down(String),
}

/// One node's SWIM membership: foca, its timers, its outboxes and its member table.
pub(crate) struct Membership {
    foca: Foca<NodeIdentity, SwimCodec, SwimRng, NoCustomBroadcast>,
    runtime: AccumulatingRuntime<NodeIdentity>,
    timers: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// What readers see, rebuilt from foca lazily.
    table: MemberTable,
    outbox: Vec<(NodeIdentity, Bytes)>,
    /// Digest-sync packets (see `sync::SyncMsg`), sent like SWIM packets but told apart by the
    /// transport (their own seal context, or `Frame::Sync` over QUIC).
    sync_outbox: Vec<(NodeIdentity, Bytes)>,
    events: Option<Vec<MemberEvent>>,
    /// Last membership change seen (member up, down, renamed).
    last_change: Option<Instant>,
    /// Next digest sync while membership is changing (see [`CATCH_UP_EVERY`]).
    next_catch_up: Option<Instant>,
    rng: u64,
}

impl Membership {
    pub(crate) fn new(identity: NodeIdentity, params: &SwimParams, seed: u64) -> Self {
        Self {
            foca: Foca::new(
                identity,
                params.foca_config(),
                <SwimRng as rand09::SeedableRng>::seed_from_u64(seed),
                codec(),
            ),
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            table: MemberTable::default(),
            outbox: Vec::new(),
            sync_outbox: Vec::new(),
            events: None,
            last_change: None,
            next_catch_up: None,
            rng: seed | 1,
        }
    }

    /// Record up/down notifications for [`Membership::drain_events`] (simulations).
    pub(crate) fn record_events(&mut self) {
        self.events = Some(Vec::new());
    }

    pub(crate) fn drain_events(&mut self) -> Vec<MemberEvent> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The incarnation of another process with our node id that the cluster remembers
    /// (a previous run of a restarted node), if it is not ours.
    pub(crate) fn known_bump(&self, node_id: &str) -> Option<u64> {
        self.foca
            .iter_membership_state()
            .find(|m| m.id().node_id == node_id)
            .map(|m| m.id().bump)
    }

    /// Renew our identity so that it wins over incarnation `known` (before announcing).
    pub(crate) fn renew_above(&mut self, known: u64, now: Instant) {
        if self.identity().bump > known {
            return;
        }
        let new = self.identity().above(known);
        if let Err(e) = self.foca.change_identity(new, &mut self.runtime) {
            tracing::debug!(error = %e, "foca change_identity failed");
        }
        self.after_step(now);
    }

    pub(crate) fn identity(&self) -> &NodeIdentity {
        self.foca.identity()
    }

    /// Puts `members` into the member table as alive without gossiping them, as if this node
    /// had long been part of a converged cluster (simulations: a pre-converged start at sizes
    /// where thousands of joins through one seed cost too much). foca inserts each one after
    /// a linear scan, so seeding N members costs about N²/2 identity compares.
    pub(crate) fn seed_members(
        &mut self,
        members: impl Iterator<Item = NodeIdentity>,
        now: Instant,
    ) {
        let me = self.identity().node_id.clone();
        let updates = members.filter(|m| m.node_id != me).map(foca::Member::alive);
        if let Err(e) = self.foca.apply_many(updates, false, &mut self.runtime) {
            tracing::debug!(error = %e, "seeded members not applied");
        }
        self.after_step(now);
        // Nothing changed from the cluster's point of view: no catch-up digests.
        self.last_change = None;
        self.next_catch_up = None;
        // The runtime is drained; its queues would keep room for one notification per member
        // (thousands of simulated nodes cannot afford that).
        self.runtime = AccumulatingRuntime::new();
        self.outbox.shrink_to_fit();
    }

    /// Ask `peer` (whose identity we learned from a Hello) to let us in.
    pub(crate) fn announce(&mut self, peer: NodeIdentity, now: Instant) {
        if peer.node_id == self.identity().node_id {
            return;
        }
        if let Err(e) = self.foca.announce(peer, &mut self.runtime) {
            tracing::debug!(error = %e, "foca announce failed");
        }
        self.after_step(now);
    }

    /// Feed one SWIM packet received from the network.
    pub(crate) fn handle_packet(&mut self, data: &[u8], now: Instant) -> Result<(), PacketError> {
        let header = packet_header(data)?;
        if header.message == foca::Message::TurnUndead && header.dst == *self.identity() {
            tracing::warn!(from = %header.src.node_id, "a peer says it holds us down");
        }
        let result = self.foca.handle_data(data, &mut self.runtime);
        self.after_step(now);
        match result {
            Ok(()) => {
                self.table.touch(&header.src, now);
                Ok(())
            }
            Err(foca::Error::Decode(e)) => Err(PacketError::Decode(e.to_string())),
            Err(foca::Error::MalformedPacket) => Err(PacketError::Decode("malformed".into())),
            Err(e) => {
                tracing::trace!(error = %e, "foca rejected packet");
                Ok(())
            }
        }
    }

    /// Earliest pending timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let foca = self.timers.peek().map(|Reverse(s)| s.at);
        match (foca, self.next_catch_up) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fire every timer due at `now`, in (deadline, kind) order.
    pub(crate) fn poll_timers(&mut self, now: Instant) {
        self.catch_up(now);
        let mut fired = false;
        while self.timers.peek().is_some_and(|Reverse(s)| s.at <= now) {
            let Some(Reverse(s)) = self.timers.pop() else {
                break;
            };
            // Only this timer sends the spurious `TurnUndead` (see `is_spurious_turn_undead`);
            // the packets of every other step go out unexamined.
            let suspicion_ends = matches!(s.timer, Timer::ChangeSuspectToDown { .. });
            if let Err(e) = self.foca.handle_timer(s.timer, &mut self.runtime) {
                tracing::trace!(error = %e, "foca timer");
            }
            // Drain after every event so newly scheduled timers get the
            // right absolute deadline and ordering.
            self.drain_runtime_checked(now, suspicion_ends);
            fired = true;
        }
        if fired {
            self.table.mark_dirty();
        }
    }

    /// Leave the cluster (gossips our own `Down`).
    pub(crate) fn leave(&mut self, now: Instant) {
        if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::debug!(error = %e, "foca leave failed");
        }
        self.after_step(now);
    }

    pub(crate) fn drain_outbox(&mut self) -> Vec<(NodeIdentity, Bytes)> {
        std::mem::take(&mut self.outbox)
    }

    /// Digest-sync packets to send ([`Membership::handle_sync`] on the other side).
    pub(crate) fn drain_sync_outbox(&mut self) -> Vec<(NodeIdentity, Bytes)> {
        std::mem::take(&mut self.sync_outbox)
    }

    /// Every other node known, in any state (dead ones until `dead_forget`).
    pub(crate) fn peers(&mut self, now: Instant) -> impl Iterator<Item = &PeerEntry> {
        self.refresh_table(now);
        self.table.entries()
    }

    /// Changes whenever [`Membership::peers`] would list other members, identities or
    /// states (`last_seen` aside).
    pub(crate) fn peers_version(&mut self, now: Instant) -> u64 {
        self.refresh_table(now);
        self.table.version()
    }

    pub(crate) fn peer(&mut self, node_id: &str, now: Instant) -> Option<&PeerEntry> {
        self.refresh_table(now);
        self.table.get(node_id)
    }

    /// Members foca considers active (alive or suspect).
    pub(crate) fn active_count(&self) -> usize {
        self.foca.num_members()
    }

    fn after_step(&mut self, now: Instant) {
        self.drain_runtime(now);
        self.table.mark_dirty();
    }

    fn drain_runtime(&mut self, now: Instant) {
        self.drain_runtime_checked(now, false);
    }

    /// Drains the runtime; with `check_turn_undead`, drops spurious `TurnUndead` packets.
    fn drain_runtime_checked(&mut self, now: Instant, check_turn_undead: bool) {
        while let Some((dst, data)) = self.runtime.to_send() {
            if check_turn_undead && self.is_spurious_turn_undead(&dst, &data) {
                tracing::debug!(node = %dst.node_id, "TurnUndead to a member that refuted its suspicion not sent");
                continue;
            }
            self.outbox.push((dst, data));
        }
        while let Some((delay, timer)) = self.runtime.to_schedule() {
            self.seq = self.seq.wrapping_add(1);
            self.timers.push(Reverse(Scheduled {
                at: now + delay,
                timer,
                seq: self.seq,
            }));
        }
        while let Some(n) = self.runtime.to_notify() {
            if matches!(
                n,
                OwnedNotification::MemberUp(_)
                    | OwnedNotification::MemberDown(_)
                    | OwnedNotification::Rename(..)
            ) {
                self.last_change = Some(now);
                if self.next_catch_up.is_none() {
                    self.next_catch_up = Some(now + CATCH_UP_EVERY);
                }
            }
            let me = &self.foca.identity().node_id;
            match n {
                OwnedNotification::MemberUp(id) => {
                    tracing::info!(node = %me, peer = %id.node_id, addr = %id.gossip_addr, "member up");
                    if let Some(ev) = self.events.as_mut() {
                        ev.push(MemberEvent::Up(id.node_id));
                    }
                }
                OwnedNotification::MemberDown(id) => {
                    tracing::info!(node = %me, peer = %id.node_id, "member down");
                    if let Some(ev) = self.events.as_mut() {
                        ev.push(MemberEvent::Down(id.node_id));
                    }
                }
                OwnedNotification::Rename(old, new) => tracing::info!(
                    node = %me, peer = %new.node_id, old_bump = old.bump, new_bump = new.bump,
                    "member restarted or renewed its identity"
                ),
                OwnedNotification::Rejoin(id) => {
                    tracing::warn!(node = %me, bump = id.bump, "declared down by the cluster; rejoined with a renewed identity")
                }
                OwnedNotification::Defunct => {
                    tracing::warn!(node = %me, "declared down by the cluster")
                }
                OwnedNotification::Idle => tracing::debug!(node = %me, "no active peers"),
                OwnedNotification::Active => {
                    tracing::debug!(node = %me, "joined the cluster");
                    // Ask for the members we lack at once (see `CATCH_UP_EVERY`).
                    self.last_change = Some(now);
                    self.next_catch_up = Some(now);
                }
            }
        }
    }

    /// A `TurnUndead` ("we hold you down") to a member we still hold active. foca 1.0 sends
    /// one whenever a suspicion timer fires, also when the member refuted the suspicion in
    /// time and is not declared down (`Timer::ChangeSuspectToDown` checks only that
    /// `apply_existing_if` found the member, not that it applied). The member would take it
    /// as its death, renew its identity and rejoin: under load (100 nodes on 2 cores) that
    /// was 1–2 live nodes a minute. Such a message is dropped; one to a member we hold down
    /// (or do not know) goes out as before.
    fn is_spurious_turn_undead(&self, dst: &NodeIdentity, data: &[u8]) -> bool {
        let Ok(header) = packet_header(data) else {
            return false;
        };
        header.message == foca::Message::TurnUndead
            && self
                .foca
                .iter_membership_state()
                .any(|m| m.id() == dst && m.state() != State::Down)
    }

    /// Brings the member table in line with foca (when something moved since the last time).
    fn refresh_table(&mut self, now: Instant) {
        let me = &self.foca.identity().node_id;
        self.table
            .refresh(me, self.foca.iter_membership_state(), now);
    }
}
