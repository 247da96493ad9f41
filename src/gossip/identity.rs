//! The foca identity of a node.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Who a cluster member is, as gossiped by foca.
///
/// `node_id` is the foca `Addr` (the cluster-unique key). `bump` makes a
/// restarted node (same `node_id`, new process) win over its previous
/// incarnation: it starts at the wall clock in milliseconds and
/// [`foca::Identity::renew`] adds one, so a node declared down (falsely,
/// or before a restart) rejoins at once with an identity that wins.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct NodeIdentity {
    pub(crate) node_id: String,
    pub(crate) gossip_addr: SocketAddr,
    pub(crate) http_addr: String,
    pub(crate) bump: u64,
}

impl NodeIdentity {
    pub(crate) fn new(node_id: String, gossip_addr: SocketAddr, http_addr: String) -> Self {
        let bump = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2))
            .unwrap_or(0);
        Self {
            node_id,
            gossip_addr,
            http_addr,
            bump,
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
