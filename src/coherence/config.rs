//! The timing of the coherence protocol: heartbeat and ping intervals, the echo timeout,
//! the staleness bound B and the liveness window of strict acks. Kept apart so that the
//! driver (which builds it from the node configuration) needs nothing else from here.

use std::time::Duration;

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
    /// heartbeat intervals; at least B plus two heartbeat intervals, so that every node
    /// that may still hold a lease was heard from within it). Acks release a strict change
    /// before B only once our subscription has been up for this whole window.
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
        let heartbeat_interval = Duration::from_millis(200);
        Self {
            heartbeat_interval,
            echo_timeout: Duration::from_secs(1).max(b * 4),
            staleness_bound: b,
            ping_interval: (b / 4).max(Duration::from_millis(1)),
            // A lease holder's lease rests on a ping sent within the last B, and its link
            // publishes a heartbeat at least every heartbeat interval while up.
            liveness: Duration::from_secs(2).max(b.saturating_add(heartbeat_interval * 2)),
        }
    }
}
