//! The foca identity of a node.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Who a cluster member is, as gossiped by foca.
///
/// `node_id` is the cluster-unique key (foca's `Addr` is its hash, [`IdKey`]). `bump` tells two processes with the
/// same `node_id` apart: it starts as 64 random bits (not the clock: a clock stepped back, or
/// two nodes started in the same millisecond, would make a restart lose or tie), and
/// [`foca::Identity::renew`] adds one. A restarted node whose random start does not beat its
/// previous incarnation is told so by the peer it joins through (`Hello::known_bump`) and
/// renews above it before announcing (see `driver`).
#[derive(Clone, Debug, Eq, Deserialize)]
#[serde(from = "WireIdentity")]
pub(crate) struct NodeIdentity {
    pub(crate) node_id: String,
    /// 128-bit keyed hash of `node_id` (this process's keys, never sent): foca looks members
    /// up by `Addr` with a linear scan, once per update received, so `addr()` must be a copy
    /// and a compare, not a `String` clone (at 1,000 simulated nodes the clones were most of
    /// the run time).
    key: IdKey,
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
            key: IdKey::of(&node_id),
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

/// Field by field, cheapest first: foca compares identities in linear scans over every member,
/// and two different nodes almost always differ in `key` already.
impl PartialEq for NodeIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.bump == other.bump
            && self.swim_addr == other.swim_addr
            && self.gossip_addr == other.gossip_addr
            && self.node_id == other.node_id
            && self.http_addr == other.http_addr
    }
}

/// Over the same fields as `eq`.
impl std::hash::Hash for NodeIdentity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
        self.bump.hash(state);
        self.swim_addr.hash(state);
        self.gossip_addr.hash(state);
        self.node_id.hash(state);
        self.http_addr.hash(state);
    }
}

/// The foca `Addr` of a node: a 128-bit hash of its node id under two SipHash keys drawn
/// once per process. Two node ids that differ collide with probability 2^-128 per pair, and
/// an attacker cannot aim for a collision without the process's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct IdKey(u64, u64);

impl IdKey {
    fn of(node_id: &str) -> Self {
        use std::hash::BuildHasher;
        static KEYS: std::sync::OnceLock<[std::collections::hash_map::RandomState; 2]> =
            std::sync::OnceLock::new();
        let [a, b] = KEYS.get_or_init(Default::default);
        IdKey(a.hash_one(node_id), b.hash_one(node_id))
    }
}

/// What goes on the wire (the key is recomputed on arrival).
#[derive(Serialize, Deserialize)]
struct WireIdentity {
    node_id: String,
    gossip_addr: SocketAddr,
    swim_addr: SocketAddr,
    http_addr: String,
    bump: u64,
}

impl From<WireIdentity> for NodeIdentity {
    fn from(w: WireIdentity) -> Self {
        Self {
            key: IdKey::of(&w.node_id),
            node_id: w.node_id,
            gossip_addr: w.gossip_addr,
            swim_addr: w.swim_addr,
            http_addr: w.http_addr,
            bump: w.bump,
        }
    }
}

/// The same fields, borrowed (serializing needs no clone).
#[derive(Serialize)]
#[serde(rename = "WireIdentity")]
struct WireIdentityRef<'a> {
    node_id: &'a str,
    gossip_addr: &'a SocketAddr,
    swim_addr: &'a SocketAddr,
    http_addr: &'a str,
    bump: u64,
}

impl Serialize for NodeIdentity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireIdentityRef {
            node_id: &self.node_id,
            gossip_addr: &self.gossip_addr,
            swim_addr: &self.swim_addr,
            http_addr: &self.http_addr,
            bump: self.bump,
        }
        .serialize(s)
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = IdKey;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> IdKey {
        self.key
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
