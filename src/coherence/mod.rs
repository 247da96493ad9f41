//! The L1 coherence protocol as a sans-IO state machine.
//!
//! Like `quinn-proto` or `foca`, this module owns no socket, no task and no clock: the
//! bus actor feeds it inputs (received [`BusMessage`](crate::wire::BusMessage)s, link up/down events, timer ticks)
//! together with the current [`Instant`](std::time::Instant), and carries out the [`Action`]s it returns
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
//!   duplicate (the same message may arrive over Redis *and* over the QUIC fallback path):
//!   counted, and its target is applied again all the same. Removal is idempotent, and the
//!   copy may be the only one: a change sent over QUIC alone (its L2 write failed) can arrive
//!   after a later number of its origin (a heartbeat, or its next change over Redis), whose
//!   gap flush let L1 refill from the old L2 value. Sequence numbers detect gaps; they never
//!   suppress an apply.
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
//! - Every `ping_interval` (B/4) the node publishes a [`BusMessage::Ping`](crate::wire::BusMessage::Ping) on a channel that
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
//!   `now <= deadline`, so after the pause the lease has lapsed and reads go to L2 until a
//!   fresh echo, which arrives only after the invalidations queued before it. A suspended
//!   VM or host neither: "now" is CLOCK_BOOTTIME ([`Clock`]), which keeps counting through
//!   a suspend (CLOCK_MONOTONIC, behind `Instant`, stops), and the driver feeds this
//!   machine `Instant`s of [`Clock::now`], so ping send times are on that clock too.
//!
//! # Strict categories: acknowledge only what every lease holder applied
//! For a `strict` category a write must not be acknowledged while any node could still
//! serve the old value (the lease rule of Gray & Cheriton, SOSP 1989). The invalidation
//! carries `ack_to` (our own channel); every receiver, once the change is in its L1 (the
//! driver runs a barrier first), sends back [`BusMessage::Ack`](crate::wire::BusMessage::Ack) "applied up to seq S", over
//! Redis. Acks ride on pub/sub rather than on heartbeats so that a write costs one round
//! trip, not a heartbeat interval. The write is acknowledged ([`Action::Acknowledged`]) when
//! - our subscription has been up for a whole `liveness` window, every node heard from
//!   within it has acked, and at least as many nodes as Redis said received the PUBLISH
//!   (its reply counts subscribers: that covers a node that just joined and was not heard
//!   from yet; our own echo counts for us); or
//! - `B` has passed since the PUBLISH returned: a node that has not applied the change by
//!   then has no lease (its newest echoed ping was processed by Redis before our
//!   invalidation, hence sent before it, hence its lease ended by then).
//!
//! Why the window: a node whose subscription died within the last B may still hold a
//! lease, and Redis no longer counts it. Only the named set covers it: its link published
//! a heartbeat within B plus a heartbeat interval (`liveness` is at least that), which we
//! heard if our own subscription was up all along. Right after our start or a
//! resubscription the named set is incomplete, so a strict write waits B.
//!
//! A slow, paused or partitioned node therefore costs a strict writer at most `B`, never
//! correctness. Gossip's "dead" does not shorten the wait: a node cut off from its peers
//! over QUIC (or falsely suspected) may still be subscribed, or have lost its subscription
//! within B with its lease still valid; only its ack, B, or its silence for a whole
//! `liveness` window take it out of the named set.
//!
//! # Redis down for everyone: the peer lease
//! With gossip peers ([`Coherence::with_peer_lease`]), the lease survives an outage of
//! Redis over QUIC, on the lease rule of Gray & Cheriton:
//!
//! - While our link is down, every `ping_interval` we send a [`BusMessage::PeerPing`](crate::wire::BusMessage::PeerPing) to
//!   every live peer ([`Coherence::set_live_peers`], from gossip). A peer **whose own link is
//!   down too** answers with a [`BusMessage::PeerGrant`](crate::wire::BusMessage::PeerGrant) carrying `upto`, its last assigned
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
//! # The replay hold: no L2 read before the peers' backlogs are known
//! A change acknowledged while Redis was down waits for L2 in the replay backlogs of the
//! nodes that acked it. A node (re)started meanwhile, or cut off from the others when it
//! was made, does not have it, and when Redis returns it could read the removed value from
//! L2 before the others replayed. So (with the peer lease on) L2 is not read at all from
//! the start, and from every loss of the link, until a round of
//! [`BusMessage::BacklogQuery`](crate::wire::BusMessage::BacklogQuery) sent after the link
//! came (back) up was answered by every live peer with its backlog
//! ([`Action::RecordBacklog`]: the driver adds it to ours, whose keys are read from L2 only
//! after our own replay). A silent peer keeps the hold until gossip declares it dead; after
//! the start the hold also lasts the gossip join grace. See `hold.rs`.
//!
//! Whatever the machine cannot apply exactly it applies wider: an undecodable message, an
//! unknown category or an unparsable glob flush L1 ([`Coherence::undecodable`]).
//!
//! Own messages are recognised by node id *and* epoch: a message carrying our node id but
//! another epoch comes from a previous incarnation of this node (or from a misconfigured
//! node sharing our id) and is handled like any other origin's, which is always safe.
//!
//! # Layout
//! - `machine.rs`: [`Coherence`], its state, construction, accessors and outgoing changes;
//! - `input.rs`: what it does with each received message kind, link events and time;
//! - `sequence.rs`: per-origin sequence numbers, gaps and epochs;
//! - `link.rs`: the subscription state ([`LinkState`]) and self-echo / heartbeats;
//! - `lease.rs`: the freshness lease, both the machine's side and the read path's [`Lease`];
//! - `clock.rs`: the lease's clock ([`Clock`], CLOCK_BOOTTIME: it counts through a suspend);
//! - `strict.rs`: when a strict write may be acknowledged;
//! - `peer.rs`: the peer lease over QUIC while Redis is down;
//! - `primary.rs`: Sentinel's primary proof (a majority of the sentinels name our server);
//! - `hold.rs`: the replay hold (no L2 read after a start or a link loss before every live
//!   peer told us what waits in its replay backlog);
//! - `action.rs`, `config.rs`, `counters.rs`: outputs, timing, counters.

mod action;
mod clock;
mod config;
mod counters;
mod hold;
mod input;
pub mod lease;
mod link;
mod machine;
pub mod numbering;
mod peer;
pub mod primary;
mod sequence;
mod strict;

pub use action::{Action, FlushReason};
pub use clock::Clock;
pub use config::CoherenceConfig;
pub use counters::CoherenceCounters;
pub use lease::Lease;
pub use link::LinkState;
pub use machine::Coherence;
pub use numbering::Stamp;
pub use primary::SentinelAnswer;
pub use sequence::MAX_ORIGINS;

#[cfg(test)]
mod tests;
