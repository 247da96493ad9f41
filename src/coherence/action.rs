//! The outputs of the coherence machine: the [`Action`]s its driver carries out, in order,
//! and the [`FlushReason`] of each flush. The machine never performs an effect itself (it is
//! sans-IO); everything it wants done is one of these values.

use std::time::Instant;

use serde::Serialize;

use crate::wire::{BusMessage, Target};

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
    /// Sentinel: ask the sentinels which server is the primary (query `id`), and answer with
    /// [`crate::coherence::Coherence::primary_answered`].
    QueryPrimary {
        /// The query's id.
        id: u64,
    },
    /// Sentinel: a majority of the sentinels named our server in a query sent at `sent`:
    /// L2 may be read until `until`, and L2 writes that returned before `sent` may be
    /// acknowledged.
    PrimaryProven {
        /// When the query was sent.
        sent: Instant,
        /// End of the proof (`sent + B - margin`).
        until: Instant,
    },
    /// Sentinel: nothing proves our server is the primary any more (a new connection, or
    /// the sentinels named another): L2 is not read, and L2 writes are not acknowledged,
    /// until the next [`Action::PrimaryProven`].
    PrimaryLost,
    /// Our strict change `seq` may now be acknowledged to its writer.
    Acknowledged {
        /// Its sequence number.
        seq: u64,
        /// True when it was released by the bound B rather than by the acks.
        by_timeout: bool,
    },
}
