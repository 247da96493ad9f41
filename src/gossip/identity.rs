//! The foca identity of a node.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Who a cluster member is, as gossiped by foca.
///
/// `node_id` is the foca `Addr` (the cluster-unique key). `bump` tells two processes with the
/// same `node_id` apart: it starts as 64 random bits (not the clock: a clock stepped back, or
/// two nodes started in the same millisecond, would make a restart lose or tie), and
/// [`foca::Identity::renew`] adds one. A restarted node whose random start does not beat its
/// previous incarnation is told so by the peer it joins through (`Hello::known_bump`) and
/// renews above it before announcing (see `transport::driver`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct NodeIdentity {
    pub(crate) node_id: String,
    /// QUIC address: joins, on-demand stats, the invalidation fallback.
    pub(crate) gossip_addr: SocketAddr,
    /// Where SWIM packets go: a plain UDP socket when a cluster secret authenticates them,
    /// else the QUIC address (SWIM then rides QUIC datagrams).
    pub(crate) swim_addr: SocketAddr,
    pub(crate) http_addr: String,
    pub(crate) bump: u64,
}

impl NodeIdentity {
    pub(crate) fn new(
        node_id: String,
        gossip_addr: SocketAddr,
        swim_addr: SocketAddr,
        http_addr: String,
    ) -> Self {
        Self {
            node_id,
            gossip_addr,
            swim_addr,
            http_addr,
            // Top bit clear: a few renewals never wrap around.
            bump: rand::random::<u64>() >> 1,
        }
    }

    /// The same node, renewed so that it wins over an incarnation the cluster remembers.
    pub(crate) fn above(&self, known: u64) -> Self {
        Self {
            bump: known.saturating_add(1),
            ..self.clone()
        }
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.node_id.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_are_random_not_clock_derived() {
        let a: SocketAddr = ([127, 0, 0, 1], 1).into();
        let ids: Vec<u64> = (0..64)
            .map(|_| NodeIdentity::new("n1".into(), a, a, String::new()).bump)
            .collect();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "64 starts, 64 different incarnations"
        );
        // A clock-derived value would sit within a minute of now.
        assert!(ids.iter().all(|b| b.abs_diff(now_ms) > 60_000));
        // Spread over the whole range (high bits used), not a counter.
        assert!(ids.iter().any(|b| *b > u64::MAX / 4));
    }

    #[test]
    fn renewed_above_a_known_incarnation_wins() {
        use foca::Identity;
        let a: SocketAddr = ([127, 0, 0, 1], 1).into();
        let old = NodeIdentity::new("n1".into(), a, a, String::new());
        let new = NodeIdentity::new("n1".into(), a, a, String::new()).above(old.bump);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }
}
