//! The monotonic counters of the coherence protocol, exported as metrics and in `/stats`.

use serde::Serialize;

/// Counters of the protocol (monotonic).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CoherenceCounters {
    /// Invalidations received from other nodes (duplicates included, heartbeats and own
    /// messages excluded).
    pub received: u64,
    /// [`Action::Apply`](super::Action::Apply) emitted.
    pub applied: u64,
    /// Invalidations ignored because already seen (`seq <= last`).
    pub duplicates: u64,
    /// Sequence gaps detected (by an invalidation or a heartbeat).
    pub gaps: u64,
    /// [`Action::FlushAll`](super::Action::FlushAll) emitted, whatever the reason.
    pub flushes: u64,
    /// Origins seen with a new epoch (restarted).
    pub epoch_changes: u64,
    /// [`Action::Reconnect`](super::Action::Reconnect) emitted (missing self-echo).
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
    /// Sentinel: a majority of the sentinels named another primary than ours (lease
    /// revoked, reconnect).
    pub primary_moves: u64,
}
