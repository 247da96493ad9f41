//! The cluster view: what this node knows of the others (from gossip), and the
//! `/v1/cluster/stats` document (CONTRACT §7). Membership comes from SWIM; the stats of
//! the other nodes are asked for on demand, with a deadline ([`STATS_DEADLINE`]), and
//! the nodes that did not answer in time are listed in `missing`.
//!
//! It also holds the two seams the gossip layer offers the rest of the node: [`Membership`]
//! (who is there, their stats) and [`PeerLink`] (who is alive, and a way to reach them).

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::stats::Stats;

/// One other node as gossip knows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ClusterMember {
    pub node_id: String,
    pub gossip_addr: String,
    pub http_addr: String,
    /// `alive`, `suspect` or `dead`.
    pub state: String,
    pub last_seen_ms: u64,
    /// The node's `/v1/stats`, as it answered just now (`None` if it did not in time).
    pub stats: Option<serde_json::Value>,
}

/// How long `/v1/cluster/stats` waits for the other nodes' stats (the p99 target of the whole
/// request at 100 nodes is 100 ms; what has not answered by then is listed in `missing`).
/// 60 ms, not 80: with 100 processes on 2 cores a gather saturates both cores for 20–30 ms
/// (the asker sends 99 requests over ~15 ms, and the late-asked nodes wait in the run queue
/// behind the early ones), and building and sending the ~120 KB answer took another 15–20 ms
/// at the asker; with 80 ms the request p99 was 93–115 ms with nothing missing.
pub const STATS_DEADLINE: Duration = Duration::from_millis(60);

/// Stats gathered from the other nodes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gathered {
    /// Node id → its `/v1/stats`.
    pub stats: BTreeMap<String, serde_json::Value>,
    /// Live nodes asked that did not answer before the deadline.
    pub missing: Vec<String>,
}

/// A source of membership (the gossip layer).
pub trait Membership: Send + Sync {
    /// Every other node known, without stats.
    fn members(&self) -> Vec<ClusterMember>;
    /// Asks the live nodes for their stats, in parallel, for at most `deadline`.
    fn gather_stats(&self, deadline: Duration) -> futures::future::BoxFuture<'_, Gathered>;
    /// Extra counters for `/metrics`: (name, help, value).
    fn counters(&self) -> Vec<(&'static str, &'static str, u64)>;
}

/// The seam between the bus and the gossip layer: who is alive, and a way to reach them.
pub trait PeerLink: Send + Sync {
    /// Number of peers currently alive.
    fn alive_peers(&self) -> usize;
    /// Best-effort delivery of a bus payload to every alive peer.
    fn broadcast(&self, payload: Vec<u8>);
    /// Node ids of the peers currently alive or suspect.
    fn live_peer_ids(&self) -> Vec<String>;
    /// Changes whenever [`PeerLink::live_peer_ids`] may have (periodic readers skip the
    /// copy while it stays the same).
    fn peers_version(&self) -> u64;
    /// Best-effort delivery of a bus payload to one peer.
    fn send_to(&self, node_id: &str, payload: Vec<u8>);
}

/// `totals` of `/v1/cluster/stats`: sums over the nodes that are alive (self included).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Totals {
    pub nodes_alive: u64,
    pub l1_entries: u64,
    pub hits_l1: u64,
    pub hits_l2: u64,
    pub misses: u64,
}

/// `GET /v1/cluster/stats`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ClusterStats {
    #[serde(rename = "self")]
    pub self_id: String,
    pub nodes: Vec<ClusterMember>,
    pub totals: Totals,
    /// Live nodes whose stats did not arrive before the deadline (their `stats` is null).
    #[serde(default)]
    pub missing: Vec<String>,
}

/// `GET /v1/cluster/stats`: the members gossip knows, with the stats they answer within
/// [`STATS_DEADLINE`].
pub async fn gather_cluster_stats(
    own: &Stats,
    gossip_addr: String,
    http_addr: String,
    membership: Option<&dyn Membership>,
) -> ClusterStats {
    let Some(m) = membership else {
        return cluster_stats(own, gossip_addr, http_addr, Vec::new());
    };
    let mut others = m.members();
    let mut gathered = m.gather_stats(STATS_DEADLINE).await;
    for o in &mut others {
        o.stats = gathered.stats.remove(&o.node_id);
    }
    let mut doc = cluster_stats(own, gossip_addr, http_addr, others);
    doc.missing = gathered.missing;
    doc
}

/// Builds the document from our own stats and the members gossip knows.
pub fn cluster_stats(
    own: &Stats,
    gossip_addr: String,
    http_addr: String,
    others: Vec<ClusterMember>,
) -> ClusterStats {
    let own_json = serde_json::to_value(own).ok();
    let mut nodes = vec![ClusterMember {
        node_id: own.node_id.clone(),
        gossip_addr,
        http_addr,
        state: "alive".into(),
        last_seen_ms: 0,
        stats: own_json,
    }];
    nodes.extend(others.into_iter().filter(|m| m.node_id != own.node_id));
    let mut totals = Totals::default();
    for n in &nodes {
        if n.state != "alive" {
            continue;
        }
        totals.nodes_alive += 1;
        let Some(stats) = n.stats.as_ref().and_then(|s| Stats::deserialize(s).ok()) else {
            continue;
        };
        totals.l1_entries += stats.l1_caches.values().map(|c| c.size).sum::<u64>();
        totals.hits_l1 += stats.counters.hits_l1;
        totals.hits_l2 += stats.counters.hits_l2;
        totals.misses += stats.counters.misses;
    }
    ClusterStats {
        self_id: own.node_id.clone(),
        nodes,
        totals,
        missing: Vec::new(),
    }
}
