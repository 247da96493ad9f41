//! The plain types the gossip API hands out and takes: how a member is seen
//! ([`MemberState`], [`MemberInfo`]), the transport counters ([`GossipCounters`]), the stats
//! callback ([`StatsFn`]) and a received broadcast ([`Inbound`]).
//!
//! Why its own file: the node's tasks and the membership table use them too, so they sit
//! below everything else in `gossip` instead of in `mod.rs`, which imports those tasks.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How this node sees another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answers probes.
    Alive,
    /// Missed a probe; dead unless it refutes in time.
    Suspect,
    /// Declared dead (or left); forgotten after `dead_forget`.
    Dead,
}

/// Another node as known by this one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its cluster-unique node id.
    pub node_id: String,
    /// Its QUIC gossip address (`host:port`).
    pub gossip_addr: String,
    /// Its HTTP address, as it advertises it.
    pub http_addr: String,
    /// How this node sees it.
    pub state: MemberState,
    /// Milliseconds since we last heard from it (SWIM packet).
    pub last_seen_ms: u64,
}

/// Transport counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GossipCounters {
    /// Bytes sent (QUIC frames and SWIM packets).
    pub bytes_sent: u64,
    /// Bytes received (QUIC frames and SWIM packets).
    pub bytes_received: u64,
    /// Frames and SWIM packets sent.
    pub frames_sent: u64,
    /// Frames and SWIM packets received and authenticated.
    pub frames_received: u64,
    /// Frames (or SWIM packets inside them) that failed to decode.
    pub invalid_frames: u64,
    /// Frames, stats or broadcasts over their size bound.
    pub oversized_dropped: u64,
    /// Failed QUIC connects/handshakes, outgoing and incoming.
    pub connect_failures: u64,
    /// Frames not delivered: per-peer queue full, peer unreachable, or
    /// our own receive queue full.
    pub send_dropped: u64,
    /// Frames claiming a node id the peer's certificate does not name (mTLS).
    pub identity_mismatches: u64,
    /// Packets or frames whose cluster-secret tag did not verify.
    pub unauthenticated: u64,
}

/// Produces this node's stats summary (JSON bytes) when a peer asks for it.
pub type StatsFn = Arc<dyn Fn() -> futures::future::BoxFuture<'static, Vec<u8>> + Send + Sync>;

/// A broadcast payload from a peer: (sender node id, as authenticated, payload).
pub type Inbound = (String, Vec<u8>);
