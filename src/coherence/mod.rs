//! The L1 coherence protocol as a sans-IO state machine.
//!
//! Like `quinn-proto` or `foca`, this module owns no socket, no task and no clock: the
//! bus actor feeds it inputs (received [`BusMessage`]s, link up/down events, timer ticks)
//! together with the current [`Instant`], and carries out the [`Action`]s it returns
//! (drop keys from L1, flush L1, publish a message, reconnect the subscription). That makes
//! every rule below testable deterministically, with simulated time.
//!
//! # Why
//! Redis pub/sub is *at-most-once*: a message published while a subscriber is
//! disconnected, slow or silently cut off is simply gone. A lost invalidation would leave a
//! stale value in some node's L1 until its TTL expires (up to an hour for `prompts`), which
//! is exactly the bug a coherent cache must not have. We cannot make delivery reliable, but
//! we can always *notice* a loss and fall back to the one safe answer, flushing L1 (the
//! data is still in L2, so a flush costs only refills):
//!
//! - **Sequence numbers.** Every node numbers its invalidations 1, 2, 3… within its
//!   `epoch`. A receiver that sees `seq > last + 1` knows messages were lost and, since it
//!   cannot know which categories or keys they named, flushes everything. `seq <= last` is a
//!   duplicate (the same message may arrive over Redis *and* over the QUIC fallback path) and
//!   is ignored, so each message is applied once.
//! - **Epochs.** A node picks a random epoch at start. When an origin shows a new epoch it has
//!   restarted; whatever it sent before dying may have been lost, so receivers flush.
//!   Sequence state is kept per (origin, epoch) for the last few epochs of each origin, so a
//!   late message of the previous life (delivered by the slower path after the restart) is a
//!   plain duplicate rather than another "epoch change".
//! - **Heartbeats.** A gap is only visible when a *later* message arrives. Periodic
//!   heartbeats carry the sender's last sequence number, so a lost *tail* (the last messages
//!   before a quiet period) is detected within one heartbeat interval.
//! - **Link state.** While our subscription is down we hear nothing; when it comes back,
//!   anything may have changed, so [`Coherence::link_up`] flushes. The node keeps serving
//!   from L1 while the link is down (degraded, not broken).
//! - **Self-echo.** A subscription can die silently (half-open TCP, a proxy that stopped
//!   forwarding). Our own messages come back to us through the subscription; if our own
//!   heartbeat has not echoed back within `echo_timeout`, the subscription is declared dead:
//!   the link goes [`LinkState::Down`] and [`Action::Reconnect`] asks the bus actor to
//!   resubscribe (which then calls [`Coherence::link_up`], which flushes).
//!
//! # First contact with an origin
//! The first message we ever see from an origin (or from a new epoch of it) sets the
//! baseline for its sequence, and flushes. Even a seq-1 message proves nothing: the
//! origin may have had an earlier epoch that sent invalidations we lost and died before we
//! ever heard from it, and messages sent after our own subscription started may have been
//! lost; there is no way to tell. The cost is one flush when a peer appears (the same as when
//! one restarts), and, right after our own start, one per running peer while L1 is nearly
//! empty. A first-contact invalidation is covered by that flush, so it is not applied
//! separately.
//!
//! # The freshness lease (staleness bound B)
//! Detecting a loss *eventually* is not enough for a bound: a node whose link is silently
//! cut, or which was paused, would keep serving L1 until it notices. So L1 is served only
//! under a **lease** that this machine grants and the read path checks against a monotonic
//! clock:
//!
//! - Every `ping_interval` (B/4) the node publishes a [`BusMessage::Ping`] on a channel that
//!   only it subscribes to, over the same subscriber connection as the invalidations.
//!   Redis delivers a connection's messages in the order it processed the PUBLISHes, so when
//!   the echo of a ping sent at local time `s` arrives, every invalidation that Redis
//!   processed before that ping has already been received, and (the driver runs a barrier
//!   through the category actors before it renews, see [`Action::Renew`]) applied to L1. An
//!   invalidation acknowledged by any node before `s` was processed by Redis before `s`,
//!   hence before the ping.
//! - The lease runs until `s + B` for the newest echoed `s` (the ping's *send* time, taken
//!   before the publish, so a slow publish only shortens the lease). A read that starts at
//!   `t` is served from L1 only if `t <= s + B`, i.e. `s >= t - B`: every write
//!   acknowledged before `t - B` is already out of L1.
//! - Losing the subscription, a reconnect or a missing echo revokes the lease at once
//!   ([`Action::Revoke`]); after a reconnect the flush comes first, and the lease is only
//!   granted again by the echo of a ping sent after it.
//! - A paused process (SIGSTOP, a long GC-like stall) needs no special case: the check is
//!   `Instant::now() <= deadline`, so after the pause the lease has lapsed and reads go to
//!   L2 until a fresh echo, which arrives only after the invalidations queued before it.
//!
//! # Strict categories: acknowledge only what every lease holder applied
//! For a `strict` category a write must not be acknowledged while any node could still
//! serve the old value (the lease rule of Gray & Cheriton, SOSP 1989). The invalidation
//! carries `ack_to` (our own channel); every receiver, once the change is in its L1 (the
//! driver runs a barrier first), sends back [`BusMessage::Ack`] "applied up to seq S", over
//! Redis. Acks ride on pub/sub rather than on heartbeats so that a write costs one round
//! trip, not a heartbeat interval. The write is acknowledged ([`Action::Acknowledged`]) when
//! - every node heard from within `liveness` has acked, and at least as many nodes as Redis
//!   said received the PUBLISH (its reply counts subscribers: that covers a node that just
//!   joined and was not heard from yet; our own echo counts for us); or
//! - `B` has passed since the PUBLISH returned: a node that has not applied the change by
//!   then has no lease (its newest echoed ping was processed by Redis before our
//!   invalidation, hence sent before it, hence its lease ended by then).
//!
//! A slow, paused or partitioned node therefore costs a strict writer at most `B`, never
//! correctness. A peer that gossip declares dead leaves the named set, but not the count
//! Redis gave: if it is in fact still subscribed, the write waits for its ack or for `B`.
//!
//! # Redis down for everyone: the peer lease
//! With gossip peers ([`Coherence::with_peer_lease`]), the lease survives an outage of
//! Redis over QUIC, on the lease rule of Gray & Cheriton:
//!
//! - While our link is down, every `ping_interval` we send a [`BusMessage::PeerPing`] to
//!   every live peer ([`Coherence::set_live_peers`], from gossip). A peer **whose own link is
//!   down too** answers with a [`BusMessage::PeerGrant`] carrying `upto`, its last assigned
//!   sequence number. (A peer that still has Redis acknowledges its changes by PUBLISH
//!   alone, so it does not grant: a node cut off from Redis while the others reach it gets
//!   no lease, and `/health` drains it.)
//! - A grant counts once everything its sender numbered up to `upto` is in our L1: if our
//!   tracking of that origin is behind (a gap, or first contact), L1 is flushed first.
//! - The lease is renewed to `s + B` (s = the ping's send time) once every peer that was
//!   live when the ping went out granted it. Why that suffices: a change a peer acknowledged
//!   before `s` was numbered before the peer answered our ping, so its number is at most the
//!   grant's `upto`, and it is in our L1 (or flushed) before the renewal.
//! - A change made while Redis is down (its L2 write failed: deletes and invalidations;
//!   a `set` needs L2 and fails) is sent to every peer over QUIC
//!   ([`Coherence::outgoing_peer`]) and acknowledged only once **every peer of the
//!   session** acked it: the live peers when the link went down, plus every peer that
//!   pinged us or became live since. The set never shrinks while the link is down: a peer
//!   gossip declares dead may be alive behind a partition and still holding a lease that
//!   does not depend on us, so our changes are refused ([`Action::NotAcknowledged`] after
//!   B) rather than acknowledged past it. Each receiver keeps the change for replay into L2
//!   (the driver does), so when Redis returns no node reads L2 before the change is there.
//! - A peer declared dead while our link is down flushes L1 (whatever it changed since its
//!   last grant is unknown here) and stops holding our renewals back.
//! - When the link comes back, the peer session ends: [`Coherence::link_up`] revokes the
//!   lease and flushes as always; the Redis lease takes over.
//!
//! Known limit: the set of peers comes from gossip. Two nodes that have never heard of
//! each other (a join still spreading while Redis is down) do not wait for each other.
//!
//! Whatever the machine cannot apply exactly it applies wider: an undecodable message, an
//! unknown category or an unparsable glob flush L1 ([`Coherence::undecodable`]).
//!
//! Own messages are recognised by node id *and* epoch: a message carrying our node id but
//! another epoch comes from a previous incarnation of this node (or from a misconfigured
//! node sharing our id) and is handled like any other origin's, which is always safe.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::wire::{BusMessage, ChangeKind, Invalidation, Target};

/// Timing of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoherenceConfig {
    /// How often a heartbeat is published while the link is up (default 200 ms).
    pub heartbeat_interval: Duration,
    /// How long our own heartbeat may take to come back through the subscription before
    /// the subscription is declared dead (default 1 s).
    pub echo_timeout: Duration,
    /// The staleness bound B: how long after the send time of its newest echoed ping the
    /// lease lets L1 be served (default 100 ms).
    pub staleness_bound: Duration,
    /// How often a lease ping is published (default B/4; zero = no pings, hence never a
    /// lease: only for tests of the heartbeat logic alone).
    pub ping_interval: Duration,
    /// A node heard from within this window must ack a strict change (default 2 s: ten
    /// heartbeat intervals).
    pub liveness: Duration,
}

impl Default for CoherenceConfig {
    fn default() -> Self {
        Self::with_bound(Duration::from_millis(100))
    }
}

impl CoherenceConfig {
    /// The default timing for a staleness bound `b`: pings every `b/4` (at least 1 ms).
    pub fn with_bound(b: Duration) -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(200),
            echo_timeout: Duration::from_secs(1).max(b * 4),
            staleness_bound: b,
            ping_interval: (b / 4).max(Duration::from_millis(1)),
            liveness: Duration::from_secs(2),
        }
    }
}

/// Outstanding pings remembered at most (older ones are forgotten: their echo is ignored,
/// which only delays a renewal).
const MAX_PENDING_PINGS: usize = 256;

/// State of our bus subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LinkState {
    /// Subscribed and (as far as we know) receiving.
    Up,
    /// Not subscribed, or the subscription was found dead.
    Down,
}

/// Why L1 is flushed (the `reason` label of `hc_coherence_flushes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum FlushReason {
    /// A sequence gap (lost messages) or a lost tail revealed by a heartbeat.
    Gap,
    /// First contact with an origin, or a new epoch of it (restart).
    NewOrigin,
    /// The subscription came (back) up: anything may have changed meanwhile.
    Reconnect,
    /// A message we could not apply exactly (undecodable, unknown category, bad glob,
    /// failed authentication, a full queue).
    Undecodable,
    /// Without Redis, a peer our lease depended on was declared dead: whatever it changed
    /// since its last grant is unknown here.
    PeerDead,
}

impl FlushReason {
    /// Label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            FlushReason::Gap => "gap",
            FlushReason::NewOrigin => "new_origin",
            FlushReason::Reconnect => "reconnect",
            FlushReason::Undecodable => "undecodable",
            FlushReason::PeerDead => "peer_dead",
        }
    }
}

/// What the driver of the state machine must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove `target` in `category` (`None` = every category) from L1.
    Apply {
        /// Category name; `None` = every category.
        category: Option<String>,
        /// What to remove.
        target: Target,
    },
    /// Flush every L1 category: something may have been missed.
    FlushAll(FlushReason),
    /// Publish this message (a [`BusMessage::Ping`] on our own channel, anything else on
    /// the shared channel).
    Publish(BusMessage),
    /// The subscription is silently dead: tear it down and subscribe again.
    Reconnect,
    /// Extend the L1 lease to `until`, *after* every earlier [`Action::Apply`] has been
    /// applied to L1 (the driver runs a barrier through the L1 writers first).
    Renew {
        /// New lease deadline (never earlier than the current one).
        until: Instant,
    },
    /// End the lease now: L1 must not be served until the next [`Action::Renew`].
    Revoke,
    /// After every earlier [`Action::Apply`] is in L1 (barrier), send `ack` to the origin:
    /// on its own channel `to` when the change came over Redis, to node `origin` over QUIC
    /// when it came from a peer.
    SendAck {
        /// The origin's channel suffix (its `ack_to`).
        to: String,
        /// The origin's node id.
        origin: String,
        /// The [`BusMessage::Ack`] to send.
        ack: BusMessage,
    },
    /// Send this message to every live peer over QUIC (peer lease pings, changes made while
    /// Redis is down).
    PeerBroadcast(BusMessage),
    /// Send this message to one peer over QUIC.
    SendPeer {
        /// The peer's node id.
        to: String,
        /// The message.
        msg: BusMessage,
    },
    /// Our change `seq`, made while Redis was down, was not acked by every peer within B:
    /// its writer gets an error.
    NotAcknowledged {
        /// Its sequence number.
        seq: u64,
    },
    /// Our strict change `seq` may now be acknowledged to its writer.
    Acknowledged {
        /// Its sequence number.
        seq: u64,
        /// True when it was released by the bound B rather than by the acks.
        by_timeout: bool,
    },
}

/// Counters of the protocol (monotonic).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CoherenceCounters {
    /// Invalidations received from other nodes (duplicates included, heartbeats and own
    /// messages excluded).
    pub received: u64,
    /// [`Action::Apply`] emitted.
    pub applied: u64,
    /// Invalidations ignored because already seen (`seq <= last`).
    pub duplicates: u64,
    /// Sequence gaps detected (by an invalidation or a heartbeat).
    pub gaps: u64,
    /// [`Action::FlushAll`] emitted, whatever the reason.
    pub flushes: u64,
    /// Origins seen with a new epoch (restarted).
    pub epoch_changes: u64,
    /// [`Action::Reconnect`] emitted (missing self-echo).
    pub reconnects: u64,
    /// The lease was lost while held (link down, reconnect, or it ran out before a renewal).
    pub lease_lapses: u64,
    /// Messages that could not be applied exactly and were applied wider (flush).
    pub undecodable: u64,
    /// Strict changes acknowledged because every lease holder acked.
    pub strict_acked: u64,
    /// Strict changes acknowledged because B passed without every ack.
    pub strict_timeouts: u64,
    /// Renewals of the lease by peer grants (Redis down).
    pub peer_renewals: u64,
    /// Changes made while Redis was down and acked by every peer.
    pub peer_acked: u64,
    /// Changes made while Redis was down that some peer did not ack in time (refused).
    pub peer_refused: u64,
}

/// How many epochs of one origin are tracked at once. More than one so that a late message
/// from an origin's previous life (e.g. delivered by the other path after its restart) is
/// recognised as a duplicate instead of flip-flopping the baseline; a message from an epoch
/// that fell out of this window is treated as a new epoch (flush), which is always safe.
const EPOCHS_PER_ORIGIN: usize = 4;

/// How many origins are tracked at once. Past it the least recently heard origin is
/// forgotten — safe, since hearing from it again counts as first contact (flush) — so
/// publishers with ever-new ids cannot grow this state without bound.
pub const MAX_ORIGINS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct EpochState {
    epoch: u64,
    last_seq: u64,
    /// Value of `Coherence::use_clock` when this epoch was last seen (for LRU eviction).
    last_used: u64,
}

/// How a sequence number relates to what we know of its origin.
enum Verdict {
    /// Next in order: apply.
    Apply,
    /// Already seen, nothing new.
    Duplicate,
    /// Something may have been missed: flush.
    Flush(FlushReason),
}

/// The sans-IO coherence state machine of one node.
#[derive(Debug)]
pub struct Coherence {
    node_id: String,
    epoch: u64,
    config: CoherenceConfig,
    /// Last sequence number we assigned (0 = none yet).
    last_sent_seq: u64,
    link: LinkState,
    /// Per origin, the sequence state of its most recently seen epochs.
    origins: HashMap<String, Vec<EpochState>>,
    /// Monotonic counter ordering epoch uses.
    use_clock: u64,
    /// When one of our own messages last came back through the subscription.
    last_self_echo: Option<Instant>,
    /// Send time of the oldest heartbeat not yet followed by a self-echo.
    unechoed_since: Option<Instant>,
    /// When the next heartbeat is due (meaningful while Up).
    next_heartbeat: Instant,
    /// Lease pings sent since the link came up and not yet echoed: (id, send time).
    pings: VecDeque<(u64, Instant)>,
    /// Id of the last ping sent.
    last_ping_id: u64,
    /// When the next ping is due (meaningful while Up).
    next_ping: Instant,
    /// Current lease deadline (`None` = no lease).
    lease_until: Option<Instant>,
    /// Categories this node has; `None` = accept any (tests, tools).
    categories: Option<BTreeSet<String>>,
    /// When each other node was last heard from (any message), for the strict ack set.
    heard: HashMap<String, Instant>,
    /// Our own channel suffix, sent as `ack_to` in strict changes.
    ack_to: Option<String>,
    /// Our strict changes waiting for acks, by sequence number.
    strict: std::collections::BTreeMap<u64, StrictWrite>,
    /// The peer lease (Redis down): on when the node has Redis *and* gossip peers.
    peer_lease: bool,
    /// Peers gossip says are alive or suspect (the bus updates it every tick).
    live_peers: BTreeSet<String>,
    /// Our peer pings not yet granted by every peer they need: (id, send time, needed,
    /// granted).
    peer_pings: VecDeque<PeerPing>,
    /// When the next peer ping is due (meaningful while the link is down).
    next_peer_ping: Instant,
    /// Peers that must ack our changes while Redis is down: the live peers when the link
    /// went down, every peer that pinged us since, every peer that became live since. Never
    /// shrinks while the link is down (see the module docs); reset when it comes up.
    session_peers: BTreeSet<String>,
    /// Our changes made while Redis is down, waiting for every peer's ack.
    peer_writes: std::collections::BTreeMap<u64, PeerWrite>,
    counters: CoherenceCounters,
}

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

/// One strict change of ours on its way to every lease holder.
#[derive(Debug, Default)]
struct StrictWrite {
    /// When the PUBLISH returned (`None` until then: nothing is decided before).
    published_at: Option<Instant>,
    /// How many subscribers Redis said received it (ourselves included).
    receivers: u64,
    /// Nodes heard from within `liveness` when it was published: each must ack.
    expected: BTreeSet<String>,
    /// Nodes that acked it.
    acked: BTreeSet<String>,
    /// Our own subscription delivered it back to us.
    self_seen: bool,
}

impl Coherence {
    /// A node `node_id` with its random start `epoch`. The link starts [`LinkState::Down`].
    pub fn new(
        node_id: impl Into<String>,
        epoch: u64,
        config: CoherenceConfig,
        now: Instant,
    ) -> Self {
        Self {
            node_id: node_id.into(),
            epoch,
            config,
            last_sent_seq: 0,
            link: LinkState::Down,
            origins: HashMap::new(),
            use_clock: 0,
            last_self_echo: None,
            unechoed_since: None,
            next_heartbeat: now,
            pings: VecDeque::new(),
            last_ping_id: 0,
            next_ping: now,
            lease_until: None,
            categories: None,
            heard: HashMap::new(),
            ack_to: None,
            strict: std::collections::BTreeMap::new(),
            peer_lease: false,
            live_peers: BTreeSet::new(),
            peer_pings: VecDeque::new(),
            next_peer_ping: now,
            session_peers: BTreeSet::new(),
            peer_writes: std::collections::BTreeMap::new(),
            counters: CoherenceCounters::default(),
        }
    }

    /// Turns the peer lease on (a node with Redis and gossip peers): while the Redis link is
    /// down, the lease is kept with [`BusMessage::PeerPing`]s and [`BusMessage::PeerGrant`]s
    /// over QUIC, and changes are acknowledged only once every peer acked them.
    pub fn with_peer_lease(mut self) -> Self {
        self.peer_lease = true;
        self
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
        let gone: Vec<String> = self.live_peers.difference(&peers).cloned().collect();
        let mut actions = Vec::new();
        let peer_mode = self.peer_mode();
        if peer_mode {
            self.session_peers.extend(peers.iter().cloned());
            if !gone.is_empty() {
                actions.extend(self.flush(FlushReason::PeerDead));
            }
        }
        for p in &mut self.peer_pings {
            for g in &gone {
                p.needed.remove(g);
            }
        }
        self.live_peers = peers;
        if peer_mode {
            actions.extend(self.settle_peer_pings(now));
        }
        actions
    }

    /// Builds a change made while Redis is down (its L2 write failed): like
    /// [`Self::outgoing`], plus `ack_to`; it is acknowledged ([`Action::Acknowledged`]) only
    /// when every peer in the session acked it within B, else refused
    /// ([`Action::NotAcknowledged`]). The driver sends it over QUIC.
    pub fn outgoing_peer(
        &mut self,
        category: Option<&str>,
        target: Target,
        kind: ChangeKind,
        now: Instant,
    ) -> (BusMessage, Vec<Action>) {
        let mut msg = self.outgoing(category, target, kind, now);
        let BusMessage::Invalidation(inv) = &mut msg else {
            return (msg, Vec::new());
        };
        inv.ack_to = self.ack_to.clone();
        let seq = inv.seq;
        let mut needed = self.session_peers.clone();
        needed.extend(self.live_peers.iter().cloned());
        self.peer_writes.insert(
            seq,
            PeerWrite {
                published_at: now,
                needed,
                acked: BTreeSet::new(),
            },
        );
        let actions = self.settle_peer_writes(now);
        (msg, actions)
    }

    /// Whether peers stand in for Redis right now (peer leases while the link is down):
    /// [`Self::set_live_peers`] then also settles pending peer pings.
    pub fn peer_mode(&self) -> bool {
        self.peer_lease && self.link == LinkState::Down
    }

    /// Changes made while Redis is down still waiting.
    pub fn peer_writes_pending(&self) -> usize {
        self.peer_writes.len()
    }

    /// Releases our Redis-down changes: acknowledged once every needed peer acked,
    /// refused once B passed without.
    fn settle_peer_writes(&mut self, now: Instant) -> Vec<Action> {
        let bound = self.config.staleness_bound;
        let mut done = Vec::new();
        for (seq, w) in &self.peer_writes {
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
                self.peer_writes.remove(&seq);
                if ok {
                    self.counters.peer_acked += 1;
                    Action::Acknowledged {
                        seq,
                        by_timeout: false,
                    }
                } else {
                    self.counters.peer_refused += 1;
                    Action::NotAcknowledged { seq }
                }
            })
            .collect()
    }

    /// Renews the lease with the newest peer ping every needed peer granted.
    fn settle_peer_pings(&mut self, now: Instant) -> Vec<Action> {
        let _ = now;
        let Some(pos) = self
            .peer_pings
            .iter()
            .rposition(|p| !p.needed.is_empty() && p.needed.is_subset(&p.granted))
        else {
            return Vec::new();
        };
        let sent = self.peer_pings[pos].sent;
        self.peer_pings.drain(..=pos);
        let Some(until) = sent.checked_add(self.config.staleness_bound) else {
            return Vec::new();
        };
        if self.lease_until.is_some_and(|u| u >= until) {
            return Vec::new();
        }
        self.lease_until = Some(until);
        self.counters.peer_renewals += 1;
        vec![Action::Renew { until }]
    }

    /// A peer pinged us over QUIC. Granted only while our own Redis link is down: a node
    /// with Redis acknowledges its changes by PUBLISH alone and cannot promise to wait.
    fn peer_ping(&mut self, origin: String, id: u64, now: Instant) -> Vec<Action> {
        let _ = now;
        if !self.peer_lease || self.link != LinkState::Down {
            return Vec::new();
        }
        // From now on our changes wait for this peer's ack.
        self.session_peers.insert(origin.clone());
        vec![Action::SendPeer {
            to: origin.clone(),
            msg: BusMessage::PeerGrant {
                from: self.node_id.clone(),
                from_epoch: self.epoch,
                to: origin,
                id,
                upto: self.last_sent_seq,
            },
        }]
    }

    /// A peer granted our ping `id`; its changes end at `upto`.
    fn peer_grant(
        &mut self,
        from: String,
        from_epoch: u64,
        id: u64,
        upto: u64,
        now: Instant,
    ) -> Vec<Action> {
        if !self.peer_lease || self.link != LinkState::Down {
            return Vec::new();
        }
        // Everything it changed up to `upto` must be in our L1 before its grant counts: a
        // gap (or a first contact) flushes first, and the flush precedes the renewal.
        let mut actions = match self.observe(from.clone(), from_epoch, upto, false) {
            Verdict::Apply | Verdict::Duplicate => Vec::new(),
            Verdict::Flush(reason) => self.flush(reason),
        };
        if let Some(p) = self.peer_pings.iter_mut().find(|p| p.id == id) {
            p.granted.insert(from);
        }
        actions.extend(self.settle_peer_pings(now));
        actions
    }

    /// Our own channel suffix, where receivers send acks of our strict changes.
    pub fn with_ack_channel(mut self, suffix: impl Into<String>) -> Self {
        self.ack_to = Some(suffix.into());
        self
    }

    /// Builds the next invalidation of a **strict** category: like [`Self::outgoing`],
    /// plus `ack_to`, and the change is tracked until [`Action::Acknowledged`]. Call
    /// [`Self::published`] when the PUBLISH returned (or [`Self::publish_failed`]).
    pub fn outgoing_strict(
        &mut self,
        category: Option<&str>,
        target: Target,
        kind: ChangeKind,
        now: Instant,
    ) -> BusMessage {
        let mut msg = self.outgoing(category, target, kind, now);
        if let BusMessage::Invalidation(inv) = &mut msg {
            inv.ack_to = self.ack_to.clone();
            self.strict.insert(inv.seq, StrictWrite::default());
        }
        msg
    }

    /// Redis took the PUBLISH of our strict change `seq`, which reached `receivers`
    /// subscribers. The wait for acks (or for B) starts now.
    pub fn published(&mut self, seq: u64, receivers: u64, now: Instant) -> Vec<Action> {
        let liveness = self.config.liveness;
        let expected: BTreeSet<String> = self
            .heard
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) <= liveness)
            .map(|(id, _)| id.clone())
            .collect();
        let Some(w) = self.strict.get_mut(&seq) else {
            return Vec::new();
        };
        w.published_at = Some(now);
        w.receivers = receivers;
        w.expected = expected;
        self.settle_strict(now)
    }

    /// The PUBLISH of strict change `seq` failed: its writer gets the error, nothing waits.
    pub fn publish_failed(&mut self, seq: u64) {
        self.strict.remove(&seq);
    }

    /// Gossip declared `node_id` dead: it leaves the named ack sets (not the count Redis
    /// gave, see the module docs).
    pub fn peer_dead(&mut self, node_id: &str, now: Instant) -> Vec<Action> {
        self.heard.remove(node_id);
        for w in self.strict.values_mut() {
            w.expected.remove(node_id);
        }
        self.settle_strict(now)
    }

    /// Strict changes of ours still waiting.
    pub fn strict_pending(&self) -> usize {
        self.strict.len()
    }

    /// Releases every strict change whose acks are complete or whose B has passed.
    fn settle_strict(&mut self, now: Instant) -> Vec<Action> {
        let bound = self.config.staleness_bound;
        let mut done = Vec::new();
        for (seq, w) in &self.strict {
            let Some(at) = w.published_at else { continue };
            let count = w.acked.len() as u64 + u64::from(w.self_seen);
            if w.expected.is_subset(&w.acked) && count >= w.receivers {
                done.push((*seq, false));
            } else if now.saturating_duration_since(at) >= bound {
                done.push((*seq, true));
            }
        }
        done.into_iter()
            .map(|(seq, by_timeout)| {
                self.strict.remove(&seq);
                if by_timeout {
                    self.counters.strict_timeouts += 1;
                } else {
                    self.counters.strict_acked += 1;
                }
                Action::Acknowledged { seq, by_timeout }
            })
            .collect()
    }

    /// An ack of our strict changes up to `seq` from `from`.
    fn ack(&mut self, from: String, origin_epoch: u64, seq: u64, now: Instant) -> Vec<Action> {
        self.heard.insert(from.clone(), now);
        if origin_epoch != self.epoch {
            return Vec::new();
        }
        for (_, w) in self.strict.range_mut(..=seq) {
            w.acked.insert(from.clone());
        }
        for (_, w) in self.peer_writes.range_mut(..=seq) {
            w.acked.insert(from.clone());
        }
        let mut actions = self.settle_strict(now);
        actions.extend(self.settle_peer_writes(now));
        actions
    }

    /// Declares this node's categories: an invalidation naming any other category cannot be
    /// applied exactly and flushes instead.
    pub fn with_categories<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.categories = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The lease deadline: L1 may be served while `now <= lease_until`.
    pub fn lease_until(&self) -> Option<Instant> {
        self.lease_until
    }

    /// Whether L1 may be served at `now`.
    pub fn lease_held(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|u| now <= u)
    }

    /// Our node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Our epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The configuration in use.
    pub fn config(&self) -> &CoherenceConfig {
        &self.config
    }

    /// Current state of the subscription.
    pub fn link(&self) -> LinkState {
        self.link
    }

    /// The last sequence number we assigned (0 = none yet).
    pub fn last_sent_seq(&self) -> u64 {
        self.last_sent_seq
    }

    /// When one of our own messages last came back through the subscription.
    pub fn last_self_echo(&self) -> Option<Instant> {
        self.last_self_echo
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> CoherenceCounters {
        self.counters
    }

    /// Builds the next invalidation to publish, with the next sequence number.
    ///
    /// The caller publishes it (Redis, and/or QUIC while Redis is down) and applies the
    /// change to its own L1 itself; the echo is never applied.
    pub fn outgoing(
        &mut self,
        category: Option<&str>,
        target: Target,
        kind: ChangeKind,
        now: Instant,
    ) -> BusMessage {
        // `now` is part of the uniform sans-IO signature; sending needs no timer today.
        let _ = now;
        self.last_sent_seq = self.last_sent_seq.saturating_add(1);
        BusMessage::Invalidation(Invalidation {
            origin: self.node_id.clone(),
            origin_epoch: self.epoch,
            seq: self.last_sent_seq,
            category: category.map(str::to_owned),
            target,
            kind,
            sent_at_ms: crate::wire::unix_ms(),
            ack_to: None,
        })
    }

    /// One of our own messages may have been lost before it was numbered (a full queue):
    /// skip a sequence number, so every receiver sees a gap at our next invalidation or
    /// heartbeat and flushes (fail closed).
    pub fn skip_seq(&mut self) {
        self.last_sent_seq = self.last_sent_seq.saturating_add(1);
    }

    /// A payload arrived that could not be decoded or authenticated: we cannot know what it
    /// said, so everything is flushed (fail closed). Sequence state is not touched.
    pub fn undecodable(&mut self, now: Instant) -> Vec<Action> {
        let _ = now;
        self.counters.undecodable += 1;
        self.flush(FlushReason::Undecodable)
    }

    /// Whether an invalidation can be applied exactly on this node.
    fn applicable(&self, inv: &Invalidation) -> bool {
        let known = match (&inv.category, &self.categories) {
            (Some(c), Some(set)) => set.contains(c),
            _ => true,
        };
        let parses = match &inv.target {
            Target::Glob(g) => crate::pattern::Pattern::glob(g).is_ok(),
            Target::Key(_) | Target::Everything => true,
        };
        known && parses
    }

    /// Handles one message received from the bus (any path: Redis or QUIC), in any link state.
    pub fn handle_message(&mut self, msg: BusMessage, now: Instant) -> Vec<Action> {
        let msg = match msg {
            BusMessage::Ack {
                from,
                from_epoch,
                origin_epoch,
                seq,
            } => {
                if from == self.node_id && from_epoch == self.epoch {
                    return Vec::new();
                }
                return self.ack(from, origin_epoch, seq, now);
            }
            BusMessage::PeerPing {
                origin,
                origin_epoch,
                id,
            } => {
                if origin == self.node_id && origin_epoch == self.epoch {
                    return Vec::new();
                }
                return self.peer_ping(origin, id, now);
            }
            BusMessage::PeerGrant {
                from,
                from_epoch,
                to,
                id,
                upto,
            } => {
                if to != self.node_id || (from == self.node_id && from_epoch == self.epoch) {
                    return Vec::new();
                }
                return self.peer_grant(from, from_epoch, id, upto, now);
            }
            other => other,
        };
        let (origin, origin_epoch) = match &msg {
            BusMessage::Invalidation(inv) => (&inv.origin, inv.origin_epoch),
            BusMessage::Heartbeat {
                origin,
                origin_epoch,
                ..
            }
            | BusMessage::Ping {
                origin,
                origin_epoch,
                ..
            } => (origin, *origin_epoch),
            // Handled above.
            BusMessage::Ack { .. } | BusMessage::PeerPing { .. } | BusMessage::PeerGrant { .. } => {
                return Vec::new()
            }
        };
        if *origin == self.node_id && origin_epoch == self.epoch {
            // Our own message came back: the subscription is alive. Never applied.
            self.last_self_echo = Some(now);
            self.unechoed_since = None;
            match msg {
                BusMessage::Ping { id, .. } => return self.ping_echo(id, now),
                BusMessage::Invalidation(inv) => {
                    if let Some(w) = self.strict.get_mut(&inv.seq) {
                        w.self_seen = true;
                        return self.settle_strict(now);
                    }
                    return Vec::new();
                }
                _ => return Vec::new(),
            }
        }
        if self.heard.len() < MAX_ORIGINS || self.heard.contains_key(origin) {
            self.heard.insert(origin.clone(), now);
        }
        match msg {
            BusMessage::Invalidation(inv) => {
                self.counters.received += 1;
                let exact = self.applicable(&inv);
                // A strict origin waits for our ack: whatever we do below (apply, flush, or
                // nothing for a duplicate already applied) leaves it out of L1 first.
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
                let mut actions = match self.observe(inv.origin, inv.origin_epoch, inv.seq, true) {
                    Verdict::Apply if exact => {
                        self.counters.applied += 1;
                        vec![Action::Apply {
                            category: inv.category,
                            target: inv.target,
                        }]
                    }
                    Verdict::Apply => {
                        // In order, but not applicable exactly here: apply wider.
                        self.counters.undecodable += 1;
                        self.flush(FlushReason::Undecodable)
                    }
                    Verdict::Duplicate => {
                        self.counters.duplicates += 1;
                        Vec::new()
                    }
                    Verdict::Flush(reason) => self.flush(reason),
                };
                actions.extend(ack);
                actions
            }
            BusMessage::Heartbeat {
                origin,
                origin_epoch,
                last_seq,
            } => match self.observe(origin, origin_epoch, last_seq, false) {
                Verdict::Apply | Verdict::Duplicate => Vec::new(),
                Verdict::Flush(reason) => self.flush(reason),
            },
            // Another node's ping (a misrouted channel): carries nothing for us.
            BusMessage::Ping { .. }
            | BusMessage::Ack { .. }
            | BusMessage::PeerPing { .. }
            | BusMessage::PeerGrant { .. } => Vec::new(),
        }
    }

    /// The echo of our ping `id` came back: every message Redis processed before it has
    /// been handed to us (and the driver applies them before renewing).
    fn ping_echo(&mut self, id: u64, now: Instant) -> Vec<Action> {
        let _ = now;
        let Some(pos) = self.pings.iter().position(|(p, _)| *p == id) else {
            // Sent before the last link change, or forgotten: proves nothing now.
            return Vec::new();
        };
        let sent = self.pings[pos].1;
        // Older pings are covered by this one (same connection, in order).
        self.pings.drain(..=pos);
        if self.link != LinkState::Up {
            return Vec::new();
        }
        let Some(until) = sent.checked_add(self.config.staleness_bound) else {
            return Vec::new();
        };
        if self.lease_until.is_some_and(|u| u >= until) {
            return Vec::new();
        }
        self.lease_until = Some(until);
        vec![Action::Renew { until }]
    }

    /// Updates the tracking of `origin` with `seq` (an invalidation's own seq when
    /// `is_invalidation`, else a heartbeat's `last_seq`) and says what to do.
    fn observe(&mut self, origin: String, epoch: u64, seq: u64, is_invalidation: bool) -> Verdict {
        self.use_clock += 1;
        let now_used = self.use_clock;
        let fresh = EpochState {
            epoch,
            last_seq: seq,
            last_used: now_used,
        };
        if !self.origins.contains_key(&origin) && self.origins.len() >= MAX_ORIGINS {
            let lru = self
                .origins
                .iter()
                .map(|(o, es)| (es.iter().map(|e| e.last_used).max().unwrap_or(0), o))
                .min()
                .map(|(_, o)| o.clone());
            if let Some(o) = lru {
                self.origins.remove(&o);
            }
        }
        let epochs = self.origins.entry(origin).or_default();
        let Some(state) = epochs.iter_mut().find(|e| e.epoch == epoch) else {
            // First contact with this origin, or a new epoch of it (restart): whatever it
            // sent before may have been lost. Baseline here and flush (see the module docs).
            if !epochs.is_empty() {
                self.counters.epoch_changes += 1;
            }
            if epochs.len() >= EPOCHS_PER_ORIGIN {
                if let Some(lru) = epochs
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(i, _)| i)
                {
                    epochs.swap_remove(lru);
                }
            }
            epochs.push(fresh);
            return Verdict::Flush(FlushReason::NewOrigin);
        };
        state.last_used = now_used;
        if seq <= state.last_seq {
            // Already seen (invalidation), or nothing new (heartbeat).
            return Verdict::Duplicate;
        }
        let expected_next = is_invalidation && seq - state.last_seq == 1;
        state.last_seq = seq;
        if expected_next {
            Verdict::Apply
        } else {
            // An invalidation skipped some seqs, or a heartbeat announces seqs we never
            // received (a lost tail).
            self.counters.gaps += 1;
            Verdict::Flush(FlushReason::Gap)
        }
    }

    fn flush(&mut self, reason: FlushReason) -> Vec<Action> {
        self.counters.flushes += 1;
        vec![Action::FlushAll(reason)]
    }

    /// Ends the lease (if any) and forgets outstanding pings; returns the actions.
    fn revoke(&mut self, now: Instant) -> Option<Action> {
        self.pings.clear();
        let held = self.lease_held(now);
        if held {
            self.counters.lease_lapses += 1;
        }
        self.lease_until.take().map(|_| Action::Revoke)
    }

    /// The subscription is (re)established. Anything may have changed while we were not
    /// listening, so L1 is flushed. Per-origin tracking is kept: a gap across the outage
    /// flushes again, which is redundant for messages sent before this flush but required
    /// for those lost after it, and the two cannot be told apart.
    pub fn link_up(&mut self, now: Instant) -> Vec<Action> {
        // Nothing heard before this point proves freshness any more.
        let mut actions: Vec<Action> = self.revoke(now).into_iter().collect();
        self.link = LinkState::Up;
        // The peer session ends: Redis orders changes again. Our changes still waiting for
        // peers keep waiting (their L2 write failed; the acks decide).
        self.peer_pings.clear();
        self.session_peers.clear();
        self.unechoed_since = None;
        self.next_heartbeat = now;
        self.next_ping = now;
        actions.extend(self.flush(FlushReason::Reconnect));
        actions
    }

    /// The subscription is lost: the lease ends at once (we can no longer hear about
    /// changes), and [`Coherence::link_up`] flushes when it comes back.
    pub fn link_down(&mut self, now: Instant) -> Vec<Action> {
        self.start_peer_session(now);
        self.link = LinkState::Down;
        self.unechoed_since = None;
        self.revoke(now).into_iter().collect()
    }

    /// The link went down: our changes from now on wait for every live peer.
    fn start_peer_session(&mut self, now: Instant) {
        if self.link == LinkState::Up {
            self.session_peers = self.live_peers.clone();
            self.peer_pings.clear();
            self.next_peer_ping = now;
        }
    }

    /// Advances time. While the link is up: declares the subscription dead if our oldest
    /// unechoed heartbeat is older than `echo_timeout` ([`Action::Reconnect`], link Down),
    /// otherwise publishes a heartbeat when one is due (at most once per
    /// `heartbeat_interval`, the first one right after [`Coherence::link_up`]).
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = self.settle_strict(now);
        actions.extend(self.settle_peer_writes(now));
        let forget = self.config.liveness.saturating_mul(4);
        self.heard
            .retain(|_, t| now.saturating_duration_since(*t) <= forget);
        if self.lease_until.is_some_and(|u| now > u) {
            // Ran out before a renewal (slow link, pause): count it; the read path already
            // stopped trusting L1 at the deadline.
            self.counters.lease_lapses += 1;
            self.lease_until = None;
            actions.push(Action::Revoke);
        }
        if self.link == LinkState::Down {
            actions.extend(self.peer_tick(now));
            return actions;
        }
        if let Some(sent) = self.unechoed_since {
            if now.saturating_duration_since(sent) > self.config.echo_timeout {
                self.start_peer_session(now);
                self.link = LinkState::Down;
                self.unechoed_since = None;
                self.counters.reconnects += 1;
                actions.extend(self.revoke(now));
                actions.push(Action::Reconnect);
                return actions;
            }
        }
        if !self.config.ping_interval.is_zero() && now >= self.next_ping {
            self.next_ping = now.checked_add(self.config.ping_interval).unwrap_or(now);
            self.last_ping_id += 1;
            if self.pings.len() >= MAX_PENDING_PINGS {
                self.pings.pop_front();
            }
            self.pings.push_back((self.last_ping_id, now));
            if self.unechoed_since.is_none() {
                self.unechoed_since = Some(now);
            }
            actions.push(Action::Publish(BusMessage::Ping {
                origin: self.node_id.clone(),
                origin_epoch: self.epoch,
                id: self.last_ping_id,
            }));
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now
                .checked_add(self.config.heartbeat_interval)
                .unwrap_or(now);
            if self.unechoed_since.is_none() {
                self.unechoed_since = Some(now);
            }
            actions.push(Action::Publish(BusMessage::Heartbeat {
                origin: self.node_id.clone(),
                origin_epoch: self.epoch,
                last_seq: self.last_sent_seq,
            }));
        }
        actions
    }

    /// While the link is down: a peer ping to every live peer every `ping_interval`.
    fn peer_tick(&mut self, now: Instant) -> Vec<Action> {
        if !self.peer_lease
            || self.config.ping_interval.is_zero()
            || self.live_peers.is_empty()
            || now < self.next_peer_ping
        {
            return Vec::new();
        }
        self.next_peer_ping = now.checked_add(self.config.ping_interval).unwrap_or(now);
        self.last_ping_id += 1;
        if self.peer_pings.len() >= MAX_PENDING_PINGS {
            self.peer_pings.pop_front();
        }
        self.peer_pings.push_back(PeerPing {
            id: self.last_ping_id,
            sent: now,
            needed: self.live_peers.clone(),
            granted: BTreeSet::new(),
        });
        vec![Action::PeerBroadcast(BusMessage::PeerPing {
            origin: self.node_id.clone(),
            origin_epoch: self.epoch,
            id: self.last_ping_id,
        })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashSet, VecDeque};

    const MS: Duration = Duration::from_millis(1);

    /// A node without lease pings (these tests are about sequencing and heartbeats; the
    /// lease has its own tests below).
    fn node(id: &str, epoch: u64, t0: Instant) -> Coherence {
        let config = CoherenceConfig {
            ping_interval: Duration::ZERO,
            ..CoherenceConfig::default()
        };
        Coherence::new(id, epoch, config, t0)
    }

    #[track_caller]
    fn assert_flush(actions: Vec<Action>) {
        assert!(
            matches!(actions.as_slice(), [Action::FlushAll(_)]),
            "expected one flush, got {actions:?}"
        );
    }

    /// A node whose link is up and which already knows `peers` (at seq 0), so that the
    /// first-contact flushes are behind it. Returns the node and its counters at that point.
    fn ready(peers: &[(&str, u64)], t: Instant) -> (Coherence, CoherenceCounters) {
        let mut c = node("n1", 1, t);
        assert_flush(c.link_up(t));
        for (id, epoch) in peers {
            assert_flush(c.handle_message(hb(id, *epoch, 0), t));
        }
        let base = c.counters();
        (c, base)
    }

    /// Counters gained since `base`.
    fn delta(c: &Coherence, base: CoherenceCounters) -> CoherenceCounters {
        let n = c.counters();
        CoherenceCounters {
            received: n.received - base.received,
            applied: n.applied - base.applied,
            duplicates: n.duplicates - base.duplicates,
            gaps: n.gaps - base.gaps,
            flushes: n.flushes - base.flushes,
            epoch_changes: n.epoch_changes - base.epoch_changes,
            reconnects: n.reconnects - base.reconnects,
            lease_lapses: n.lease_lapses - base.lease_lapses,
            undecodable: n.undecodable - base.undecodable,
            strict_acked: n.strict_acked - base.strict_acked,
            strict_timeouts: n.strict_timeouts - base.strict_timeouts,
            peer_renewals: n.peer_renewals - base.peer_renewals,
            peer_acked: n.peer_acked - base.peer_acked,
            peer_refused: n.peer_refused - base.peer_refused,
        }
    }

    fn inv(origin: &str, epoch: u64, seq: u64, pattern: &str) -> BusMessage {
        BusMessage::Invalidation(Invalidation {
            origin: origin.into(),
            origin_epoch: epoch,
            seq,
            category: Some("permissions".into()),
            target: Target::Key(pattern.into()),
            kind: ChangeKind::Set,
            sent_at_ms: 0,
            ack_to: None,
        })
    }

    fn hb(origin: &str, epoch: u64, last_seq: u64) -> BusMessage {
        BusMessage::Heartbeat {
            origin: origin.into(),
            origin_epoch: epoch,
            last_seq,
        }
    }

    fn apply(pattern: &str) -> Vec<Action> {
        vec![Action::Apply {
            category: Some("permissions".into()),
            target: Target::Key(pattern.into()),
        }]
    }

    #[test]
    fn defaults_and_initial_state() {
        let c = CoherenceConfig::default();
        assert_eq!(c.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(c.echo_timeout, Duration::from_secs(1));
        let n = node("n1", 7, Instant::now());
        assert_eq!(n.link(), LinkState::Down);
        assert_eq!(n.counters(), CoherenceCounters::default());
        assert_eq!(n.node_id(), "n1");
        assert_eq!(n.epoch(), 7);
        assert_eq!(n.last_sent_seq(), 0);
        assert_eq!(n.last_self_echo(), None);
    }

    #[test]
    fn outgoing_numbers_from_one() {
        let t = Instant::now();
        let mut n = node("n1", 9, t);
        for expected in 1..=3 {
            match n.outgoing(
                Some("roles"),
                Target::Key(String::from("k")),
                ChangeKind::Delete,
                t,
            ) {
                BusMessage::Invalidation(i) => {
                    assert_eq!(i.seq, expected);
                    assert_eq!(i.origin, "n1");
                    assert_eq!(i.origin_epoch, 9);
                    assert_eq!(i.category.as_deref(), Some("roles"));
                    assert_eq!(i.target, Target::Key("k".into()));
                    assert_eq!(i.kind, ChangeKind::Delete);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(n.last_sent_seq(), 3);
    }

    #[test]
    fn in_order_messages_are_applied() {
        let t = Instant::now();
        let (mut n, base) = ready(&[("n2", 2)], t);
        for seq in 1..=5 {
            let p = format!("k{seq}");
            assert_eq!(n.handle_message(inv("n2", 2, seq, &p), t), apply(&p));
        }
        let d = delta(&n, base);
        assert_eq!((d.received, d.applied, d.flushes), (5, 5, 0));
        assert_eq!((d.gaps, d.duplicates, d.epoch_changes), (0, 0, 0));
    }

    #[test]
    fn duplicate_is_ignored_and_counted() {
        let t = Instant::now();
        let (mut n, base) = ready(&[("n2", 2)], t);
        assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
        assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
        assert!(n.handle_message(inv("n2", 2, 2, "b"), t).is_empty());
        assert!(n.handle_message(inv("n2", 2, 1, "a"), t).is_empty());
        let d = delta(&n, base);
        assert_eq!(
            (d.received, d.applied, d.duplicates, d.flushes),
            (4, 2, 2, 0)
        );
    }

    #[test]
    fn same_message_via_two_paths_applied_once() {
        let t = Instant::now();
        let mut sender = node("n2", 2, t);
        let (mut n, base) = ready(&[("n2", 2)], t);
        let m1 = sender.outgoing(
            Some("permissions"),
            Target::Key(String::from("a")),
            ChangeKind::Set,
            t,
        );
        let m2 = sender.outgoing(
            Some("permissions"),
            Target::Key(String::from("b")),
            ChangeKind::Set,
            t,
        );
        // Redis delivers m1, QUIC delivers m1, QUIC delivers m2, Redis delivers m2.
        assert_eq!(n.handle_message(m1.clone(), t), apply("a"));
        assert!(n.handle_message(m1, t).is_empty());
        assert_eq!(n.handle_message(m2.clone(), t), apply("b"));
        assert!(n.handle_message(m2, t).is_empty());
        let d = delta(&n, base);
        assert_eq!((d.applied, d.duplicates, d.gaps, d.flushes), (2, 2, 0, 0));
    }

    #[test]
    fn gap_flushes_and_counts() {
        let t = Instant::now();
        let (mut n, base) = ready(&[("n2", 2)], t);
        assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
        // 2 and 3 lost.
        assert_flush(n.handle_message(inv("n2", 2, 4, "d"), t));
        let d = delta(&n, base);
        assert_eq!((d.gaps, d.flushes, d.applied), (1, 1, 1));
        // Back in order after the gap.
        assert_eq!(n.handle_message(inv("n2", 2, 5, "e"), t), apply("e"));
        // Late arrival of a lost one: duplicate (the flush covered it).
        assert!(n.handle_message(inv("n2", 2, 3, "c"), t).is_empty());
        assert_eq!(delta(&n, base).duplicates, 1);
    }

    #[test]
    fn first_contact_baselines_and_flushes() {
        let t = Instant::now();
        let mut n = node("n1", 1, t);
        assert_flush(n.link_up(t));
        // Even seq 1: an earlier, never-seen epoch of n2 may have sent something we lost.
        assert_flush(n.handle_message(inv("n2", 2, 1, "a"), t));
        assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
        // First contact at seq 10, then in order.
        assert_flush(n.handle_message(inv("n3", 3, 10, "x"), t));
        assert_eq!(n.handle_message(inv("n3", 3, 11, "y"), t), apply("y"));
        assert!(n.handle_message(inv("n3", 3, 9, "w"), t).is_empty());
        // First contact by heartbeat: baseline at last_seq.
        assert_flush(n.handle_message(hb("n4", 4, 3), t));
        assert_eq!(n.handle_message(inv("n4", 4, 4, "z"), t), apply("z"));
        let c = n.counters();
        assert_eq!((c.gaps, c.epoch_changes, c.flushes), (0, 0, 4));
        assert_eq!((c.received, c.applied, c.duplicates), (6, 3, 1));
    }

    #[test]
    fn origin_that_died_unseen_is_covered() {
        let t = Instant::now();
        let (mut n, base) = ready(&[], t);
        // n2 (epoch 5) starts after us, sends seq 1 and 2, all lost, and dies before we
        // ever hear from it. Its next life (epoch 6) looks brand new: seq 1.
        let mut old = node("n2", 5, t);
        let _lost1 = old.outgoing(
            Some("permissions"),
            Target::Key(String::from("lost1")),
            ChangeKind::Set,
            t,
        );
        let _lost2 = old.outgoing(
            Some("permissions"),
            Target::Key(String::from("lost2")),
            ChangeKind::Set,
            t,
        );
        let mut new = node("n2", 6, t + MS);
        let m = new.outgoing(
            Some("permissions"),
            Target::Key(String::from("k")),
            ChangeKind::Set,
            t + MS,
        );
        // Applying only "k" would leave lost1/lost2 stale forever: flush instead.
        assert_flush(n.handle_message(m, t + 2 * MS));
        assert_eq!(delta(&n, base).flushes, 1);
    }

    #[test]
    fn heartbeat_reveals_lost_tail() {
        let t = Instant::now();
        let (mut n, base) = ready(&[("n2", 2)], t);
        assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
        // In sync: nothing.
        assert!(n.handle_message(hb("n2", 2, 1), t).is_empty());
        // Seq 2 and 3 lost, then the origin went quiet: its heartbeat tells.
        assert_flush(n.handle_message(hb("n2", 2, 3), t));
        assert_eq!(delta(&n, base).gaps, 1);
        // Only once.
        assert!(n.handle_message(hb("n2", 2, 3), t).is_empty());
        // A stale (reordered) heartbeat is harmless.
        assert!(n.handle_message(hb("n2", 2, 1), t).is_empty());
        assert_eq!(n.handle_message(inv("n2", 2, 4, "d"), t), apply("d"));
        let d = delta(&n, base);
        assert_eq!((d.flushes, d.gaps, d.received), (1, 1, 2));
    }

    /// A refused outgoing message (full queue) makes the sender skip a number: every
    /// receiver flushes at its next message, whether an invalidation or a heartbeat.
    #[test]
    fn a_skipped_seq_makes_receivers_flush() {
        let t = Instant::now();
        let mut sender = node("n2", 2, t);
        let (mut n, base) = ready(&[("n2", 2)], t);
        let BusMessage::Invalidation(first) = sender.outgoing(
            Some("permissions"),
            Target::Key("a".into()),
            ChangeKind::Set,
            t,
        ) else {
            panic!("outgoing builds an invalidation");
        };
        assert_eq!(first.seq, 1);
        assert_eq!(
            n.handle_message(BusMessage::Invalidation(first), t),
            apply("a")
        );
        sender.skip_seq();
        assert_eq!(sender.last_sent_seq(), 2);
        assert_flush(n.handle_message(hb("n2", 2, sender.last_sent_seq()), t));
        let next = sender.outgoing(
            Some("permissions"),
            Target::Key("b".into()),
            ChangeKind::Set,
            t,
        );
        let BusMessage::Invalidation(next) = next else {
            panic!("outgoing builds an invalidation");
        };
        assert_eq!(next.seq, 3);
        assert_eq!(delta(&n, base).gaps, 1);
    }

    #[test]
    fn origin_restart_flushes() {
        let t = Instant::now();
        let (mut n, base) = ready(&[("n2", 2)], t);
        assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
        assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
        // n2 restarted with epoch 22: its seq starts over.
        assert_flush(n.handle_message(inv("n2", 22, 1, "a2"), t));
        assert_eq!(n.handle_message(inv("n2", 22, 2, "b2"), t), apply("b2"));
        // Another restart, revealed by a heartbeat.
        assert_flush(n.handle_message(hb("n2", 23, 0), t));
        assert_eq!(n.handle_message(inv("n2", 23, 1, "a3"), t), apply("a3"));
        let d = delta(&n, base);
        assert_eq!((d.epoch_changes, d.flushes, d.gaps), (2, 2, 0));
    }

    #[test]
    fn late_message_from_previous_epoch_is_a_duplicate() {
        let t = Instant::now();
        let (mut n, base) = ready(&[("n2", 2)], t);
        assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
        assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
        assert_flush(n.handle_message(inv("n2", 3, 1, "new1"), t));
        // The QUIC copy of an old message arrives after the restart: already seen.
        assert!(n.handle_message(inv("n2", 2, 2, "b"), t).is_empty());
        assert!(n.handle_message(hb("n2", 2, 2), t).is_empty());
        assert_eq!(n.handle_message(inv("n2", 3, 2, "new2"), t), apply("new2"));
        // An old-epoch message we never saw still counts as a gap in that epoch.
        assert_flush(n.handle_message(inv("n2", 2, 4, "d"), t));
        let d = delta(&n, base);
        assert_eq!(
            (d.epoch_changes, d.duplicates, d.gaps, d.flushes),
            (1, 1, 1, 2)
        );
    }

    #[test]
    fn forgotten_epoch_is_treated_as_new() {
        let t = Instant::now();
        let (mut n, base) = ready(&[("n2", 0)], t);
        for epoch in 1..=EPOCHS_PER_ORIGIN as u64 {
            assert_flush(n.handle_message(hb("n2", epoch, 0), t));
        }
        // Epoch 0 was the least recently used and has been evicted: flush again (safe).
        assert_flush(n.handle_message(inv("n2", 0, 1, "x"), t));
        // The most recent ones are still known.
        let last = EPOCHS_PER_ORIGIN as u64;
        assert_eq!(n.handle_message(inv("n2", last, 1, "y"), t), apply("y"));
        let d = delta(&n, base);
        assert_eq!(d.epoch_changes, EPOCHS_PER_ORIGIN as u64 + 1);
        assert_eq!(n.origins.get("n2").map(Vec::len), Some(EPOCHS_PER_ORIGIN));
    }

    #[test]
    fn self_messages_never_applied() {
        let t = Instant::now();
        let (mut n, base) = ready(&[], t);
        let m = n.outgoing(
            Some("permissions"),
            Target::Key(String::from("k")),
            ChangeKind::Set,
            t,
        );
        assert!(n.handle_message(m.clone(), t + MS).is_empty());
        assert!(n.handle_message(m, t + 2 * MS).is_empty());
        assert!(n.handle_message(hb("n1", 1, 1), t + 3 * MS).is_empty());
        assert_eq!(n.last_self_echo(), Some(t + 3 * MS));
        assert_eq!(delta(&n, base), CoherenceCounters::default());
    }

    #[test]
    fn own_id_with_other_epoch_is_a_previous_incarnation() {
        let t = Instant::now();
        let (mut n, _) = ready(&[], t);
        // A late message from our previous life: handled like any origin (always safe).
        assert_flush(n.handle_message(inv("n1", 99, 5, "old"), t));
        assert_eq!(n.handle_message(inv("n1", 99, 6, "old2"), t), apply("old2"));
        assert_eq!(n.last_self_echo(), None);
    }

    #[test]
    fn link_up_flushes_and_link_state_follows() {
        let t = Instant::now();
        let mut n = node("n1", 1, t);
        assert_eq!(n.link(), LinkState::Down);
        assert_flush(n.link_up(t));
        assert_eq!(n.link(), LinkState::Up);
        assert!(n.link_down(t + MS).is_empty());
        assert_eq!(n.link(), LinkState::Down);
        assert_eq!(n.counters().flushes, 1);
        assert_flush(n.link_up(t + 2 * MS));
        assert_eq!(n.link(), LinkState::Up);
        assert_eq!(n.counters().flushes, 2);
    }

    #[test]
    fn tracking_survives_an_outage() {
        let t = Instant::now();
        let (mut n, base) = ready(&[("n2", 2)], t);
        assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
        n.link_down(t);
        // Nothing lost meanwhile: no second flush after the link-up one.
        assert_flush(n.link_up(t + MS));
        assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
        // Lost during the next outage: a gap, flushed again (it may have been lost after
        // the link-up flush, the two cases look the same).
        n.link_down(t);
        assert_flush(n.link_up(t + 2 * MS));
        assert_flush(n.handle_message(inv("n2", 2, 4, "d"), t));
        let d = delta(&n, base);
        assert_eq!((d.flushes, d.gaps, d.applied), (3, 1, 2));
    }

    #[test]
    fn messages_are_handled_while_link_down() {
        // The QUIC fallback path still delivers while Redis is down.
        let t = Instant::now();
        let (mut n, _) = ready(&[("n2", 2)], t);
        assert!(n.link_down(t).is_empty());
        assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
        assert_flush(n.handle_message(inv("n2", 2, 3, "c"), t));
        assert_eq!(n.link(), LinkState::Down);
    }

    #[test]
    fn tick_emits_heartbeats_at_the_interval_only() {
        let t0 = Instant::now();
        let mut n = node("n1", 5, t0);
        // Down: no heartbeats.
        assert!(n.tick(t0 + 500 * MS).is_empty());
        let t = t0 + 1000 * MS;
        n.link_up(t);
        n.outgoing(
            Some("general"),
            Target::Key(String::from("k")),
            ChangeKind::Set,
            t,
        );
        let beat = vec![Action::Publish(hb("n1", 5, 1))];
        let mut beats = Vec::new();
        // Tick every 10 ms for 1 s, echoing every heartbeat immediately.
        for i in 0..=100u32 {
            let now = t + i * 10 * MS;
            let actions = n.tick(now);
            if !actions.is_empty() {
                assert_eq!(actions, beat);
                beats.push(i * 10);
                n.handle_message(hb("n1", 5, 1), now);
            }
        }
        assert_eq!(beats, vec![0, 200, 400, 600, 800, 1000]);
        assert_eq!(n.link(), LinkState::Up);
        // Sparse ticks never produce bursts.
        let later = t + 5000 * MS;
        assert_eq!(n.tick(later).len(), 1);
        assert!(n.tick(later).is_empty());
        assert!(n.tick(later + 199 * MS).is_empty());
        assert_eq!(n.tick(later + 200 * MS).len(), 1);
        // Heartbeats carry the last seq we sent.
        n.outgoing(
            Some("general"),
            Target::Key(String::from("k2")),
            ChangeKind::Set,
            later,
        );
        assert_eq!(
            n.tick(later + 400 * MS),
            vec![Action::Publish(hb("n1", 5, 2))]
        );
    }

    #[test]
    fn missing_self_echo_reconnects() {
        let t = Instant::now();
        let (mut n, _) = ready(&[], t);
        // Silence is only checked once a heartbeat has been published.
        assert!(n.link_down(t).is_empty());
        assert_flush(n.link_up(t));
        assert_eq!(n.tick(t), vec![Action::Publish(hb("n1", 1, 0))]);
        let mut reconnect_at = None;
        for i in 1..=150u32 {
            let now = t + i * 10 * MS;
            let actions = n.tick(now);
            if actions.contains(&Action::Reconnect) {
                assert_eq!(actions, vec![Action::Reconnect]);
                reconnect_at = Some(i * 10);
                break;
            }
        }
        // First heartbeat at 0 ms; "longer than 1 s" => the first tick after 1000 ms.
        assert_eq!(reconnect_at, Some(1010));
        assert_eq!(n.link(), LinkState::Down);
        assert_eq!(n.counters().reconnects, 1);
        // Down: no more heartbeats, no more reconnects.
        assert!(n.tick(t + 5000 * MS).is_empty());
        // Resubscribed: flush, and the cycle starts over.
        assert_flush(n.link_up(t + 6000 * MS));
        assert_eq!(n.tick(t + 6000 * MS).len(), 1);
        assert!(!n.tick(t + 6900 * MS).contains(&Action::Reconnect));
        assert_eq!(n.link(), LinkState::Up);
    }

    #[test]
    fn no_heartbeat_no_echo_check() {
        // Without a tick, no heartbeat has been published: however long the wait, no
        // reconnect is decided; the first tick publishes instead.
        let t = Instant::now();
        let (mut n, _) = ready(&[], t);
        let later = t + 60_000 * MS;
        assert_eq!(n.tick(later), vec![Action::Publish(hb("n1", 1, 0))]);
        assert_eq!(n.link(), LinkState::Up);
    }

    #[test]
    fn slow_but_present_echo_keeps_link_up() {
        let t = Instant::now();
        let (mut n, _) = ready(&[], t);
        // Every heartbeat echoes 700 ms after it was sent (slow, within the 1 s timeout).
        let mut pending: Vec<Instant> = Vec::new();
        for i in 0..=500u32 {
            let now = t + i * 10 * MS;
            while pending.first().is_some_and(|sent| now >= *sent + 700 * MS) {
                pending.remove(0);
                n.handle_message(hb("n1", 1, 0), now);
            }
            for action in n.tick(now) {
                assert_ne!(action, Action::Reconnect, "at {} ms", i * 10);
                pending.push(now);
            }
        }
        assert_eq!(n.link(), LinkState::Up);
        assert_eq!(n.counters().reconnects, 0);
    }

    #[test]
    fn own_invalidation_echo_counts_as_echo() {
        let t = Instant::now();
        let (mut n, _) = ready(&[], t);
        assert_eq!(n.tick(t).len(), 1);
        let m = n.outgoing(
            Some("general"),
            Target::Key(String::from("k")),
            ChangeKind::Set,
            t + 900 * MS,
        );
        assert!(n.handle_message(m, t + 950 * MS).is_empty());
        assert_eq!(n.last_self_echo(), Some(t + 950 * MS));
        // The heartbeat sent at 0 would have timed out after 1000 ms; the echo cleared it.
        assert!(!n.tick(t + 1100 * MS).contains(&Action::Reconnect));
        assert_eq!(n.link(), LinkState::Up);
    }

    #[test]
    fn origins_are_bounded_and_a_forgotten_origin_flushes() {
        let t = Instant::now();
        let mut n = Coherence::new("me", 1, CoherenceConfig::default(), t);
        let hb = |o: &str| BusMessage::Heartbeat {
            origin: o.to_string(),
            origin_epoch: 7,
            last_seq: 0,
        };
        n.handle_message(hb("first"), t);
        for i in 0..MAX_ORIGINS + 10 {
            n.handle_message(hb(&format!("o{i}")), t);
        }
        assert!(n.origins.len() <= MAX_ORIGINS);
        assert!(
            !n.origins.contains_key("first"),
            "least recently heard is forgotten"
        );
        // Hearing from it again is first contact: flush.
        assert_flush(n.handle_message(hb("first"), t));
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let t = Instant::now();
        let (mut n, _) = ready(&[("n2", 2)], t);
        assert_flush(n.handle_message(inv("n2", 2, u64::MAX, "a"), t));
        assert!(n.handle_message(inv("n2", 2, u64::MAX, "a"), t).is_empty());
        assert!(n.handle_message(inv("n2", 2, 0, "a"), t).is_empty());
        assert!(n.handle_message(hb("n2", 2, u64::MAX), t).is_empty());
        n.handle_message(inv("n3", 3, 0, "z"), t);
        assert_eq!(n.handle_message(inv("n3", 3, 1, "y"), t), apply("y"));
        n.handle_message(inv("", 0, 0, ""), t);
        // Time going backwards is tolerated.
        n.tick(t + 10 * MS);
        n.tick(t);
        // A huge interval cannot overflow the timer arithmetic.
        let cfg = CoherenceConfig {
            heartbeat_interval: Duration::MAX,
            echo_timeout: Duration::MAX,
            staleness_bound: Duration::MAX,
            ping_interval: Duration::MAX,
            liveness: Duration::MAX,
        };
        let mut m = Coherence::new("x", 1, cfg, t);
        m.link_up(t);
        let first = m.tick(t);
        assert_eq!(first.len(), 2, "one ping, one heartbeat: {first:?}");
        // An echo whose deadline would overflow grants nothing (fail closed).
        for id in pings(&first) {
            m.handle_message(
                BusMessage::Ping {
                    origin: "x".into(),
                    origin_epoch: 1,
                    id,
                },
                t,
            );
        }
        m.tick(t + MS);
    }

    /// Seeded, deterministic randomness for fuzz-style tests.
    struct Rng(rand::rngs::StdRng);
    impl Rng {
        fn seeded(seed: u64) -> Rng {
            Rng(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
                seed,
            ))
        }
        fn below(&mut self, n: u64) -> u64 {
            rand::Rng::gen_range(&mut self.0, 0..n)
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// What the receiver did, on a logical clock that orders sends and receiver events.
    struct Log {
        seed: u64,
        clock: u64,
        flushes: Vec<u64>,
        applied: HashSet<String>,
    }

    impl Log {
        /// Advances the logical clock.
        fn tick(&mut self) -> u64 {
            self.clock += 1;
            self.clock
        }

        fn record(&mut self, actions: Vec<Action>) {
            let at = self.tick();
            for a in actions {
                match a {
                    Action::FlushAll(_) => self.flushes.push(at),
                    Action::Apply {
                        target: Target::Key(pattern),
                        ..
                    } => {
                        let seed = self.seed;
                        assert!(self.applied.insert(pattern), "seed {seed}: applied twice");
                    }
                    other => panic!("seed {}: unexpected {other:?}", self.seed),
                }
            }
        }
    }

    /// Random streams from several origins (joins, restarts) through a lossy network with two
    /// paths (Redis and a QUIC copy of some messages), with receiver outages. Once the link is back and a heartbeat from
    /// every origin has arrived, every invalidation ever sent must be either applied by the
    /// receiver or covered by a FlushAll that happened after it was sent.
    #[test]
    fn property_no_lost_invalidation_goes_unnoticed() {
        for seed in 0..500u64 {
            run_property(seed);
        }
    }

    fn run_property(seed: u64) {
        let mut rng = Rng::seeded(seed.wrapping_mul(0x1234_5678_9ABC_DEF1) ^ 0x00C0_FFEE);
        let t0 = Instant::now();
        // The scenario varies with the seed, so that some runs have few flushes (a lost
        // invalidation is then not hidden by an unrelated flush).
        let origins = 1 + seed % 3;
        let loss = [2, 10, 30, 60][(seed / 3 % 4) as usize];
        let outages = seed % 5 == 0;
        let restarts = seed % 2 == 0;
        let mut next_epoch = 100u64;
        let mut senders: Vec<Coherence> = (0..origins)
            .map(|i| {
                next_epoch += 1;
                node(&format!("o{i}"), next_epoch, t0)
            })
            .collect();
        let mut receiver = node("r", 1, t0);
        let mut log = Log {
            seed,
            clock: 0,
            flushes: Vec::new(),
            applied: HashSet::new(),
        };
        // (pattern, logical time sent) of every invalidation.
        let mut sent: Vec<(String, u64)> = Vec::new();
        // Messages in flight, delivered in random order.
        // Two paths, each FIFO (Redis pub/sub keeps publish order; so does one QUIC
        // stream): messages are reordered only across paths.
        let mut redis: VecDeque<BusMessage> = VecDeque::new();
        let mut quic: VecDeque<BusMessage> = VecDeque::new();
        let mut link_up = true;
        log.record(receiver.link_up(t0));

        let steps = 300u64;
        for step in 1..=steps {
            let now = t0 + Duration::from_millis(step);
            match rng.below(100) {
                // An origin sends an invalidation: Redis path (lost while the receiver is
                // down, else lost at the seed's rate), and sometimes a QUIC copy too.
                0..=59 => {
                    let i = rng.below(senders.len() as u64) as usize;
                    let s = &mut senders[i];
                    let pattern = format!("{}-{}-{}", s.node_id(), s.epoch(), step);
                    let m = s.outgoing(
                        Some("general"),
                        Target::Key(String::from(&pattern)),
                        ChangeKind::Set,
                        now,
                    );
                    sent.push((pattern, log.tick()));
                    if link_up && !rng.chance(loss) {
                        redis.push_back(m.clone());
                    }
                    if rng.chance(15) {
                        quic.push_back(m);
                    }
                }
                // An origin's heartbeat (Redis only).
                60..=74 => {
                    let i = rng.below(senders.len() as u64) as usize;
                    let s = &senders[i];
                    if link_up && !rng.chance(loss) {
                        redis.push_back(hb(s.node_id(), s.epoch(), s.last_sent_seq()));
                    }
                }
                // An origin restarts with a new epoch.
                75..=79 if restarts => {
                    let i = rng.below(senders.len() as u64) as usize;
                    next_epoch += 1;
                    senders[i] = node(senders[i].node_id(), next_epoch, now);
                }
                // A new origin joins (it may die and restart before we ever hear from it).
                80..=81 => {
                    next_epoch += 1;
                    senders.push(node(&format!("n{next_epoch}"), next_epoch, now));
                }
                // Receiver outage (what Redis had in flight for it is lost) / recovery.
                82..=89 if outages => {
                    if link_up {
                        assert!(receiver.link_down(now).is_empty());
                        redis.clear();
                    } else {
                        log.record(receiver.link_up(now));
                    }
                    link_up = !link_up;
                }
                _ => {}
            }
            // Deliveries: each path is FIFO; the slower QUIC path reorders against Redis.
            if rng.chance(80) {
                if let Some(m) = redis.pop_front() {
                    log.record(receiver.handle_message(m, now));
                }
            }
            if rng.chance(30) {
                if let Some(m) = quic.pop_front() {
                    log.record(receiver.handle_message(m, now));
                }
            }
        }
        // Eventually the link is back, what is still in flight may or may not arrive, and a
        // heartbeat from every origin arrives.
        let end = steps + 1;
        let now = t0 + Duration::from_millis(end);
        if !link_up {
            log.record(receiver.link_up(now));
        }
        for m in redis.drain(..).chain(quic.drain(..)) {
            if rng.chance(50) {
                log.record(receiver.handle_message(m, now));
            }
        }
        for s in &senders {
            let beat = hb(s.node_id(), s.epoch(), s.last_sent_seq());
            log.record(receiver.handle_message(beat, now));
        }

        for (pattern, sent_at) in &sent {
            let covered = log.applied.contains(pattern) || log.flushes.iter().any(|f| f > sent_at);
            assert!(
                covered,
                "seed {seed}: invalidation {pattern} sent at {sent_at} was lost unnoticed"
            );
        }
        let c = receiver.counters();
        assert_eq!(c.applied as usize, log.applied.len());
        assert_eq!(c.flushes as usize, log.flushes.len());
    }

    /// Without loss, reordering or restarts nothing is flushed beyond the link-up flush and
    /// one first-contact flush per origin: the protocol raises no false alarms.
    #[test]
    fn lossless_stream_raises_no_false_alarm() {
        let t0 = Instant::now();
        let mut rng = Rng::seeded(42);
        let mut senders: Vec<Coherence> = (0..3).map(|i| node(&format!("s{i}"), i, t0)).collect();
        let mut r = node("r", 99, t0);
        r.link_up(t0);
        for s in &senders {
            r.handle_message(hb(s.node_id(), s.epoch(), 0), t0);
        }
        let base = r.counters();
        for step in 1..2000u64 {
            let now = t0 + Duration::from_millis(step);
            let i = rng.below(3) as usize;
            let m = if rng.chance(80) {
                senders[i].outgoing(
                    Some("general"),
                    Target::Key(String::from(&format!("k{step}"))),
                    ChangeKind::Set,
                    now,
                )
            } else {
                let s = &senders[i];
                hb(s.node_id(), s.epoch(), s.last_sent_seq())
            };
            for a in r.handle_message(m, now) {
                assert!(matches!(a, Action::Apply { .. }), "unexpected {a:?}");
            }
        }
        assert_eq!(base.flushes, 4);
        let d = delta(&r, base);
        assert_eq!((d.flushes, d.gaps, d.duplicates), (0, 0, 0));
        assert_eq!(d.applied, d.received);
        assert!(d.applied > 1000);
    }

    // ---- the freshness lease -------------------------------------------------------------

    const B: Duration = Duration::from_millis(100);

    /// A node with lease pings, link up, first-contact flush behind it.
    fn leased(t: Instant) -> Coherence {
        let mut n = Coherence::new("n1", 1, CoherenceConfig::with_bound(B), t)
            .with_categories(["permissions", "roles"]);
        assert_flush(n.link_up(t));
        n
    }

    /// The pings among `actions`, as (id) — published on our own channel.
    fn pings(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Publish(BusMessage::Ping { id, .. }) => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn echo(id: u64) -> BusMessage {
        BusMessage::Ping {
            origin: "n1".into(),
            origin_epoch: 1,
            id,
        }
    }

    #[test]
    fn no_lease_until_a_ping_echoes_then_it_runs_b_from_the_send_time() {
        let t = Instant::now();
        let mut n = leased(t);
        assert!(!n.lease_held(t));
        let sent = pings(&n.tick(t));
        assert_eq!(sent, vec![1]);
        // Echo 30 ms later: the lease runs until send time + B, not echo time + B.
        assert_eq!(
            n.handle_message(echo(1), t + 30 * MS),
            vec![Action::Renew { until: t + B }]
        );
        assert!(n.lease_held(t + 30 * MS));
        assert!(n.lease_held(t + B));
        assert!(!n.lease_held(t + B + MS));
    }

    #[test]
    fn invalidations_before_the_echo_are_applied_before_the_renewal() {
        let t = Instant::now();
        let mut n = leased(t);
        assert_flush(n.handle_message(hb("n2", 2, 0), t)); // first contact
        n.tick(t);
        // Redis order: n2's invalidation, then our ping.
        assert_eq!(n.handle_message(inv("n2", 2, 1, "k"), t + MS), apply("k"));
        assert_eq!(
            n.handle_message(echo(1), t + 2 * MS),
            vec![Action::Renew { until: t + B }]
        );
    }

    #[test]
    fn pings_go_out_every_quarter_bound_and_older_echoes_never_shorten() {
        let t = Instant::now();
        let mut n = leased(t);
        let mut ids = Vec::new();
        for step in 0..=4u32 {
            ids.extend(pings(&n.tick(t + step * (B / 4))));
        }
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        // Echo of ping 3 (sent at 2B/4), then the late echo of ping 2: ignored.
        let until3 = t + 2 * (B / 4) + B;
        assert_eq!(
            n.handle_message(echo(3), t + 60 * MS),
            vec![Action::Renew { until: until3 }]
        );
        assert!(n.handle_message(echo(2), t + 61 * MS).is_empty());
        assert_eq!(n.lease_until(), Some(until3));
    }

    #[test]
    fn link_down_revokes_and_old_pings_do_not_renew_after_reconnect() {
        let t = Instant::now();
        let mut n = leased(t);
        n.tick(t);
        n.handle_message(echo(1), t + MS);
        assert!(n.lease_held(t + MS));
        n.tick(t + 25 * MS); // ping 2 in flight
        assert_eq!(n.link_down(t + 26 * MS), vec![Action::Revoke]);
        assert!(!n.lease_held(t + 26 * MS));
        assert_eq!(n.counters().lease_lapses, 1);
        // Reconnect: flush first; the echo of a ping sent before it proves nothing.
        assert_flush(n.link_up(t + 40 * MS));
        assert!(n.handle_message(echo(2), t + 41 * MS).is_empty());
        assert!(!n.lease_held(t + 41 * MS));
        let fresh = pings(&n.tick(t + 42 * MS));
        assert_eq!(fresh.len(), 1);
        assert_eq!(
            n.handle_message(echo(fresh[0]), t + 43 * MS),
            vec![Action::Renew {
                until: t + 42 * MS + B
            }]
        );
    }

    #[test]
    fn a_pause_lapses_the_lease_by_the_clock_alone() {
        let t = Instant::now();
        let mut n = leased(t);
        n.tick(t);
        n.handle_message(echo(1), t + MS);
        // The process is stopped for 3 s: no tick ran, yet the lease is over.
        let after = t + 3000 * MS;
        assert!(!n.lease_held(after));
        let actions = n.tick(after);
        assert_eq!(actions.first(), Some(&Action::Revoke));
        assert_eq!(n.counters().lease_lapses, 1);
        // Messages queued during the pause are applied before any renewal: the echo of
        // the ping sent now comes after them.
        let p = pings(&actions);
        assert_eq!(p.len(), 1);
        assert_eq!(
            n.handle_message(echo(p[0]), after + MS),
            vec![Action::Renew { until: after + B }]
        );
    }

    #[test]
    fn silent_subscription_revokes_and_reconnects() {
        let t = Instant::now();
        let mut n = leased(t);
        n.tick(t);
        n.handle_message(echo(1), t + MS);
        let mut now = t;
        let mut saw = Vec::new();
        while now < t + 2000 * MS {
            now += 10 * MS;
            saw.extend(n.tick(now));
            if saw.contains(&Action::Reconnect) {
                break;
            }
        }
        let revoke = saw.iter().position(|a| *a == Action::Revoke);
        let reconnect = saw.iter().position(|a| *a == Action::Reconnect);
        assert!(revoke.is_some() && reconnect.is_some(), "{saw:?}");
        assert!(!n.lease_held(now));
        assert_eq!(n.link(), LinkState::Down);
    }

    #[test]
    fn what_cannot_be_applied_exactly_is_applied_wider() {
        let t = Instant::now();
        let mut n = leased(t);
        assert_flush(n.handle_message(hb("n2", 2, 0), t));
        let base = n.counters();
        // Undecodable payload.
        assert_eq!(
            n.undecodable(t),
            vec![Action::FlushAll(FlushReason::Undecodable)]
        );
        // Unknown category, in order.
        let mut m = match inv("n2", 2, 1, "k") {
            BusMessage::Invalidation(i) => i,
            _ => unreachable!(),
        };
        m.category = Some("nope".into());
        assert_eq!(
            n.handle_message(BusMessage::Invalidation(m.clone()), t),
            vec![Action::FlushAll(FlushReason::Undecodable)]
        );
        // A glob that does not parse.
        m.seq = 2;
        m.category = Some("roles".into());
        m.target = Target::Glob("a[".into());
        assert_eq!(
            n.handle_message(BusMessage::Invalidation(m.clone()), t),
            vec![Action::FlushAll(FlushReason::Undecodable)]
        );
        // Sequence state still advanced: the next one applies exactly.
        m.seq = 3;
        m.target = Target::Key("get_roles:[1, 2]".into());
        assert_eq!(
            n.handle_message(BusMessage::Invalidation(m), t),
            vec![Action::Apply {
                category: Some("roles".into()),
                target: Target::Key("get_roles:[1, 2]".into()),
            }]
        );
        let d = delta(&n, base);
        assert_eq!((d.undecodable, d.flushes, d.gaps), (3, 3, 0));
    }

    #[test]
    fn typed_targets_pass_through_unchanged() {
        let t = Instant::now();
        let mut sender = node("n2", 2, t);
        let mut n = leased(t);
        assert_flush(n.handle_message(hb("n2", 2, 0), t));
        for (cat, target) in [
            (Some("roles"), Target::Key("x[1".into())),
            (Some("roles"), Target::Glob("get_roles:*".into())),
            (Some("permissions"), Target::Everything),
            (None, Target::Everything),
        ] {
            let m = sender.outgoing(cat, target.clone(), ChangeKind::Invalidate, t);
            assert_eq!(
                n.handle_message(m, t),
                vec![Action::Apply {
                    category: cat.map(String::from),
                    target
                }]
            );
        }
    }

    // ---- strict categories: the ack rule --------------------------------------------------

    /// A strict writer `n1` that has heard from `peers` (heartbeats) at `t`.
    fn strict_writer(peers: &[&str], t: Instant) -> Coherence {
        let mut n = leased(t).with_ack_channel("n1-inst");
        for p in peers {
            assert_flush(n.handle_message(hb(p, 2, 0), t));
        }
        n
    }

    fn strict_change(n: &mut Coherence, t: Instant) -> (u64, BusMessage) {
        let m = n.outgoing_strict(Some("roles"), Target::Key("r".into()), ChangeKind::Set, t);
        match &m {
            BusMessage::Invalidation(i) => {
                assert_eq!(i.ack_to.as_deref(), Some("n1-inst"));
                (i.seq, m.clone())
            }
            _ => unreachable!(),
        }
    }

    fn ack_from(from: &str, seq: u64) -> BusMessage {
        BusMessage::Ack {
            from: from.into(),
            from_epoch: 2,
            origin_epoch: 1,
            seq,
        }
    }

    fn acked(seq: u64) -> Vec<Action> {
        vec![Action::Acknowledged {
            seq,
            by_timeout: false,
        }]
    }

    #[test]
    fn strict_write_is_released_when_every_lease_holder_acked() {
        let t = Instant::now();
        let mut n = strict_writer(&["n2", "n3"], t);
        let (seq, echo) = strict_change(&mut n, t);
        // Nothing is decided before the PUBLISH returned (3 subscribers: n1, n2, n3).
        assert!(n.handle_message(ack_from("n2", seq), t + MS).is_empty());
        assert!(n.published(seq, 3, t + MS).is_empty());
        assert!(n.handle_message(echo, t + 2 * MS).is_empty()); // our own copy
        assert_eq!(
            n.handle_message(ack_from("n3", seq), t + 3 * MS),
            acked(seq)
        );
        assert_eq!(n.strict_pending(), 0);
        assert_eq!(n.counters().strict_acked, 1);
        // A later duplicate ack changes nothing.
        assert!(n.handle_message(ack_from("n3", seq), t + 4 * MS).is_empty());
    }

    #[test]
    fn one_missing_ack_costs_exactly_the_bound() {
        let t = Instant::now();
        let mut n = strict_writer(&["n2", "n3"], t);
        let (seq, echo) = strict_change(&mut n, t);
        n.published(seq, 3, t + MS);
        n.handle_message(echo, t + MS);
        n.handle_message(ack_from("n2", seq), t + 2 * MS);
        // n3 is paused: its lease ends at most B after our publish returned.
        assert!(!n
            .tick(t + MS + B - MS)
            .iter()
            .any(|a| matches!(a, Action::Acknowledged { .. })));
        let at_b = n.tick(t + MS + B);
        assert!(at_b.contains(&Action::Acknowledged {
            seq,
            by_timeout: true
        }));
        assert_eq!(n.counters().strict_timeouts, 1);
    }

    #[test]
    fn a_node_that_joined_mid_write_is_counted_by_redis() {
        let t = Instant::now();
        let mut n = strict_writer(&["n2"], t);
        let (seq, echo) = strict_change(&mut n, t);
        // n4 subscribed just before the PUBLISH: Redis counts 3, we only knew n2.
        n.published(seq, 3, t + MS);
        n.handle_message(echo, t + MS);
        assert!(n.handle_message(ack_from("n2", seq), t + 2 * MS).is_empty());
        assert_eq!(
            n.handle_message(ack_from("n4", seq), t + 3 * MS),
            acked(seq)
        );
    }

    #[test]
    fn a_node_declared_dead_mid_write_leaves_the_named_set_not_the_count() {
        let t = Instant::now();
        let mut n = strict_writer(&["n2", "n3"], t);
        // Killed n3: Redis dropped its subscription, so the PUBLISH reached 2.
        let (seq, echo) = strict_change(&mut n, t);
        n.published(seq, 2, t + MS);
        n.handle_message(echo, t + MS);
        assert!(n.handle_message(ack_from("n2", seq), t + 2 * MS).is_empty());
        assert_eq!(n.peer_dead("n3", t + 3 * MS), acked(seq));
        // Declared dead but still subscribed (counted 3): its ack or B, never less.
        let (seq2, echo2) = strict_change(&mut n, t + 10 * MS);
        n.published(seq2, 3, t + 10 * MS);
        n.handle_message(echo2, t + 10 * MS);
        n.handle_message(ack_from("n2", seq2), t + 11 * MS);
        assert!(n.peer_dead("n3", t + 12 * MS).is_empty());
        assert!(n.tick(t + 10 * MS + B).contains(&Action::Acknowledged {
            seq: seq2,
            by_timeout: true
        }));
    }

    #[test]
    fn an_ack_covers_every_earlier_change_and_a_failed_publish_waits_for_nothing() {
        let t = Instant::now();
        let mut n = strict_writer(&["n2"], t);
        let (s1, e1) = strict_change(&mut n, t);
        let (s2, e2) = strict_change(&mut n, t);
        let (s3, _) = strict_change(&mut n, t);
        n.publish_failed(s3);
        for (s, e) in [(s1, e1), (s2, e2)] {
            n.published(s, 2, t + MS);
            n.handle_message(e, t + MS);
        }
        let got = n.handle_message(ack_from("n2", s2), t + 2 * MS);
        assert_eq!(got, [acked(s1), acked(s2)].concat());
        assert_eq!(n.strict_pending(), 0);
        // Acks for another epoch of ours (a previous life) are ignored.
        let (s4, e4) = strict_change(&mut n, t + 3 * MS);
        n.published(s4, 2, t + 3 * MS);
        n.handle_message(e4, t + 3 * MS);
        let stale = BusMessage::Ack {
            from: "n2".into(),
            from_epoch: 2,
            origin_epoch: 999,
            seq: s4,
        };
        assert!(n.handle_message(stale, t + 4 * MS).is_empty());
    }

    #[test]
    fn receivers_ack_strict_changes_after_applying_them() {
        let t = Instant::now();
        let mut writer = strict_writer(&[], t);
        let (seq, m) = strict_change(&mut writer, t);
        let mut r = Coherence::new("n9", 9, CoherenceConfig::with_bound(B), t);
        assert_flush(r.link_up(t));
        // First contact (flush) still acks: the flush covers the change.
        let first = r.handle_message(m, t);
        assert!(matches!(first[0], Action::FlushAll(_)));
        assert_eq!(
            first[1],
            Action::SendAck {
                to: "n1-inst".into(),
                origin: "n1".into(),
                ack: BusMessage::Ack {
                    from: "n9".into(),
                    from_epoch: 9,
                    origin_epoch: 1,
                    seq,
                }
            }
        );
        // In order: apply, then ack.
        let (_, m2) = strict_change(&mut writer, t);
        let second = r.handle_message(m2, t);
        assert!(matches!(second[0], Action::Apply { .. }));
        assert!(matches!(second[1], Action::SendAck { .. }));
    }

    // ---- The peer lease (Redis down for everyone) ----

    /// A node with the peer lease whose Redis link went down, knowing `peers` as live.
    fn peer_node(id: &str, peers: &[&str], t: Instant) -> Coherence {
        let mut n = Coherence::new(id, 1, CoherenceConfig::with_bound(B), t)
            .with_categories(["permissions", "roles"])
            .with_ack_channel(format!("{id}-chan"))
            .with_peer_lease();
        assert_flush(n.link_up(t));
        assert!(n
            .set_live_peers(peers.iter().map(|p| p.to_string()), t)
            .is_empty());
        n.link_down(t);
        n
    }

    fn grant(from: &str, to: &str, id: u64, upto: u64) -> BusMessage {
        BusMessage::PeerGrant {
            from: from.into(),
            from_epoch: 2,
            to: to.into(),
            id,
            upto,
        }
    }

    /// The id of the peer ping among `actions`.
    fn peer_ping_id(actions: &[Action]) -> Option<u64> {
        actions.iter().find_map(|a| match a {
            Action::PeerBroadcast(BusMessage::PeerPing { id, .. }) => Some(*id),
            _ => None,
        })
    }

    fn renewals(actions: &[Action]) -> Vec<Instant> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Renew { until } => Some(*until),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_peer_lease_needs_a_grant_from_every_live_peer() {
        let t = Instant::now();
        let mut n = peer_node("n1", &["n2", "n3"], t);
        assert!(!n.lease_held(t));
        let id = peer_ping_id(&n.tick(t)).expect("a peer ping while the link is down");
        // A grant meant for another node counts for nothing.
        assert!(n.handle_message(grant("n2", "n9", id, 0), t).is_empty());
        // n2 grants: first contact flushes, but n3 is still missing.
        let a = n.handle_message(grant("n2", "n1", id, 0), t + MS);
        assert!(renewals(&a).is_empty(), "{a:?}");
        assert!(!n.lease_held(t + MS));
        // n3 grants: renewed until the ping's send time + B.
        let a = n.handle_message(grant("n3", "n1", id, 0), t + 2 * MS);
        assert_eq!(renewals(&a), vec![t + B]);
        assert!(n.lease_held(t + 2 * MS));
        assert!(!n.lease_held(t + B + MS));
        assert_eq!(n.counters().peer_renewals, 1);
    }

    #[test]
    fn a_node_with_redis_does_not_grant_and_one_without_grants_its_last_seq() {
        let t = Instant::now();
        let ping = BusMessage::PeerPing {
            origin: "n1".into(),
            origin_epoch: 1,
            id: 5,
        };
        let mut up = Coherence::new("n2", 2, CoherenceConfig::with_bound(B), t).with_peer_lease();
        assert_flush(up.link_up(t));
        assert!(up.handle_message(ping.clone(), t).is_empty());
        let mut down = peer_node("n2", &["n1"], t);
        let _ = down.outgoing(Some("roles"), Target::Key("k".into()), ChangeKind::Set, t);
        let a = down.handle_message(ping, t);
        assert_eq!(
            a,
            vec![Action::SendPeer {
                to: "n1".into(),
                msg: BusMessage::PeerGrant {
                    from: "n2".into(),
                    from_epoch: 1,
                    to: "n1".into(),
                    id: 5,
                    upto: 1,
                },
            }]
        );
    }

    #[test]
    fn a_grant_ahead_of_what_we_applied_flushes_before_renewing() {
        let t = Instant::now();
        let mut n = peer_node("n1", &["n2"], t);
        // n2's changes 1 arrived (first contact flushes, then in order).
        assert_flush(n.handle_message(hb("n2", 2, 0), t));
        assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
        let id = peer_ping_id(&n.tick(t)).expect("peer ping");
        // Its grant says it assigned up to 3: 2 and 3 never reached us.
        let a = n.handle_message(grant("n2", "n1", id, 3), t + MS);
        assert!(
            matches!(
                a.as_slice(),
                [Action::FlushAll(FlushReason::Gap), Action::Renew { .. }]
            ),
            "flush must come before the renewal: {a:?}"
        );
        // A grant that says nothing new renews without a flush.
        let id = peer_ping_id(&n.tick(t + B / 4)).expect("peer ping");
        let a = n.handle_message(grant("n2", "n1", id, 3), t + B / 4 + MS);
        assert_eq!(renewals(&a), vec![t + B / 4 + B]);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn a_pause_before_the_grants_leaves_no_lease() {
        let t = Instant::now();
        let mut n = peer_node("n1", &["n2"], t);
        let id = peer_ping_id(&n.tick(t)).expect("peer ping");
        // We were stopped for 3 B; the grant was waiting in the socket.
        let later = t + 3 * B;
        let _ = n.handle_message(grant("n2", "n1", id, 0), later);
        assert!(!n.lease_held(later), "a lease from a ping sent 3 B ago");
    }

    #[test]
    fn a_peer_declared_dead_flushes_and_no_longer_holds_the_lease_back() {
        let t = Instant::now();
        let mut n = peer_node("n1", &["n2", "n3"], t);
        let id = peer_ping_id(&n.tick(t)).expect("peer ping");
        let _ = n.handle_message(grant("n2", "n1", id, 0), t + MS);
        let a = n.set_live_peers(["n2".to_string()], t + 2 * MS);
        assert!(
            matches!(
                a.as_slice(),
                [
                    Action::FlushAll(FlushReason::PeerDead),
                    Action::Renew { .. }
                ]
            ),
            "{a:?}"
        );
    }

    #[test]
    fn changes_without_redis_wait_for_every_session_peer() {
        let t = Instant::now();
        let mut n = peer_node("n1", &["n2", "n3"], t);
        let (msg, a) = n.outgoing_peer(
            Some("roles"),
            Target::Key("k".into()),
            ChangeKind::Delete,
            t,
        );
        assert!(a.is_empty());
        let BusMessage::Invalidation(inv) = msg else {
            panic!("an invalidation");
        };
        assert_eq!(inv.ack_to.as_deref(), Some("n1-chan"));
        let ack = |from: &str, seq| BusMessage::Ack {
            from: from.into(),
            from_epoch: 2,
            origin_epoch: 1,
            seq,
        };
        assert!(n.handle_message(ack("n2", inv.seq), t + MS).is_empty());
        assert_eq!(
            n.handle_message(ack("n3", inv.seq), t + 2 * MS),
            vec![Action::Acknowledged {
                seq: inv.seq,
                by_timeout: false
            }]
        );
        // A peer declared dead still has to ack (it may be alive behind a partition).
        let _ = n.set_live_peers(["n2".to_string()], t + 3 * MS);
        let (msg, _) = n.outgoing_peer(
            Some("roles"),
            Target::Key("k".into()),
            ChangeKind::Delete,
            t,
        );
        let BusMessage::Invalidation(second) = msg else {
            panic!("an invalidation");
        };
        assert!(n
            .handle_message(ack("n2", second.seq), t + 4 * MS)
            .is_empty());
        assert!(n
            .tick(t + B - MS)
            .iter()
            .all(|a| !matches!(a, Action::NotAcknowledged { .. })));
        let a = n.tick(t + B);
        assert!(
            a.contains(&Action::NotAcknowledged { seq: second.seq }),
            "{a:?}"
        );
        assert_eq!((n.counters().peer_acked, n.counters().peer_refused), (1, 1));
    }

    #[test]
    fn alone_without_redis_nothing_is_acknowledged_and_no_lease() {
        let t = Instant::now();
        let mut n = peer_node("n1", &[], t);
        assert_eq!(peer_ping_id(&n.tick(t)), None);
        let (msg, a) = n.outgoing_peer(None, Target::Everything, ChangeKind::Invalidate, t);
        let BusMessage::Invalidation(inv) = msg else {
            panic!("an invalidation");
        };
        assert_eq!(a, vec![Action::NotAcknowledged { seq: inv.seq }]);
    }

    #[test]
    fn redis_back_ends_the_peer_lease_until_an_echo() {
        let t = Instant::now();
        let mut n = peer_node("n1", &["n2"], t);
        let id = peer_ping_id(&n.tick(t)).expect("peer ping");
        let _ = n.handle_message(grant("n2", "n1", id, 0), t + MS);
        assert!(n.lease_held(t + 2 * MS));
        let a = n.link_up(t + 3 * MS);
        assert!(a.contains(&Action::Revoke), "{a:?}");
        assert!(!n.lease_held(t + 3 * MS));
        // No more peer pings; a late grant counts for nothing.
        assert_eq!(peer_ping_id(&n.tick(t + B)), None);
        assert!(renewals(&n.handle_message(grant("n2", "n1", id, 0), t + B)).is_empty());
    }
}
