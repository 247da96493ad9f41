//! The gossip actor: owns the gossip endpoint's lifecycle, answers peers' stats requests
//! with our `/v1/stats`, and forwards bus payloads that peers send while Redis is down
//! (only those whose origin is the authenticated sender). It reaches the rest of the node
//! through [`GossipPort`], which the cache module implements.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::cluster::{ClusterMember, Gathered, Membership, PeerLink};
use crate::config::Config;
use crate::gossip::{Gossip, GossipConfig, MemberState, TlsPaths};
use crate::stats::NodeCounters;
use crate::wire::{self, BusMessage};

/// What the gossip actor needs from the node.
pub trait GossipPort: Send + Sync + 'static {
    /// The node's validated configuration.
    fn config(&self) -> &Config;
    /// The node's event counters.
    fn counters(&self) -> &NodeCounters;
    /// Our `/v1/stats`, serialized (the answer to a peer's stats request).
    fn stats_json(&self) -> BoxFuture<'_, Vec<u8>>;
    /// Installs (or, with `None`, removes) the running link as the node's peers and
    /// membership.
    fn attach(&self, link: Option<Arc<GossipLink>>);
    /// Hands a payload an authenticated peer sent to the bus (never waits).
    fn peer_payload(&self, payload: Vec<u8>);
}

/// Adapter from the gossip handle to the seams the bus and HTTP layers use.
pub struct GossipLink(pub Gossip);

impl PeerLink for GossipLink {
    fn alive_peers(&self) -> usize {
        self.0.alive_peers()
    }
    fn broadcast(&self, payload: Vec<u8>) {
        self.0.broadcast(payload);
    }
    fn live_peer_ids(&self) -> Vec<String> {
        self.0.active_peer_ids()
    }
    fn peers_version(&self) -> u64 {
        self.0.peers_version()
    }
    fn send_to(&self, node_id: &str, payload: Vec<u8>) {
        self.0.send_to(node_id, payload);
    }
}

impl Membership for GossipLink {
    fn members(&self) -> Vec<ClusterMember> {
        self.0
            .members()
            .into_iter()
            .map(|m| ClusterMember {
                node_id: m.node_id,
                gossip_addr: m.gossip_addr,
                http_addr: m.http_addr,
                state: match m.state {
                    MemberState::Alive => "alive",
                    MemberState::Suspect => "suspect",
                    MemberState::Dead => "dead",
                }
                .to_string(),
                last_seen_ms: m.last_seen_ms,
                stats: None,
            })
            .collect()
    }

    fn gather_stats(&self, deadline: Duration) -> futures::future::BoxFuture<'_, Gathered> {
        async move {
            let json = Arc::new(|b: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&b).ok());
            let g = self.0.gather_stats_as(deadline, json).await;
            Gathered {
                stats: g.stats,
                missing: g.missing,
            }
        }
        .boxed()
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let c = self.0.counters();
        vec![
            ("gossip_bytes_sent", "Gossip bytes sent", c.bytes_sent),
            (
                "gossip_bytes_received",
                "Gossip bytes received",
                c.bytes_received,
            ),
            (
                "gossip_invalid_frames",
                "Malformed gossip frames dropped",
                c.invalid_frames,
            ),
            (
                "gossip_oversized_dropped",
                "Oversized gossip messages dropped",
                c.oversized_dropped,
            ),
            (
                "gossip_connect_failures",
                "Failed QUIC connection attempts",
                c.connect_failures,
            ),
            (
                "gossip_identity_mismatches",
                "Gossip frames claiming a node id the peer's certificate does not name",
                c.identity_mismatches,
            ),
            (
                "gossip_unauthenticated",
                "Gossip packets or frames whose cluster-secret tag did not verify",
                c.unauthenticated,
            ),
        ]
    }
}

/// No messages: the actor exists for its lifecycle (start, supervised restart, shutdown).
pub enum GossipMsg {}

/// The gossip actor.
pub struct GossipActor;

/// What the gossip actor owns: the link and the task forwarding peers' bus payloads.
pub struct GossipState {
    node: Arc<dyn GossipPort>,
    link: Arc<GossipLink>,
    forward: tokio::task::JoinHandle<()>,
}

/// The origin a bus payload claims, if it decodes (a payload sealed with the cluster secret
/// is looked into without checking its tag: the bus checks it).
fn claimed_origin(payload: &[u8]) -> Option<String> {
    let frame = if crate::wire_auth::is_sealed(payload) {
        payload.get(
            crate::wire_auth::MAGIC.len()..payload.len().checked_sub(crate::wire_auth::TAG_LEN)?,
        )?
    } else {
        payload
    };
    match wire::decode::<BusMessage>(frame).ok()? {
        BusMessage::Invalidation(inv) => Some(inv.origin),
        BusMessage::Heartbeat { origin, .. } | BusMessage::Ping { origin, .. } => Some(origin),
        BusMessage::Ack { from, .. } | BusMessage::PeerGrant { from, .. } => Some(from),
        BusMessage::PeerPing { origin, .. } | BusMessage::BacklogQuery { origin, .. } => {
            Some(origin)
        }
        BusMessage::BacklogAnswer { from, .. } => Some(from),
    }
}

impl Actor for GossipActor {
    type Msg = GossipMsg;
    type State = GossipState;
    type Arguments = Arc<dyn GossipPort>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        node: Arc<dyn GossipPort>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cfg = node.config();
        let bind = cfg
            .gossip_addr
            .ok_or("gossip actor started without a gossip address")?;
        let mut gc = GossipConfig::new(cfg.node_id.clone(), bind, cfg.http_advertised());
        gc.advertise = cfg.gossip_advertise.clone();
        gc.peers = cfg.peers.clone();
        gc.probe_period = cfg.gossip_probe_period;
        gc.suspect_to_dead = cfg.gossip_suspect_timeout;
        gc.dead_forget = cfg.gossip_dead_forget;
        gc.cluster_secret = cfg.cluster_secret.as_ref().map(|s| s.as_bytes().to_vec());
        gc.tls = cfg.tls.as_ref().map(|t| TlsPaths {
            ca: t.ca.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
        });
        let stats_node = node.clone();
        let stats_fn: crate::gossip::StatsFn = Arc::new(move || {
            let n = stats_node.clone();
            async move { n.stats_json().await }.boxed()
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let gossip = Gossip::start(gc, stats_fn, tx).await?;
        let link = Arc::new(GossipLink(gossip));
        node.attach(Some(link.clone()));
        let fwd_node = node.clone();
        let forward = tokio::spawn(async move {
            while let Some((sender, payload)) = rx.recv().await {
                // The gossip layer authenticated `sender` (certificate or cluster secret); a
                // payload speaking for another origin is dropped like a malformed one.
                if claimed_origin(&payload).is_some_and(|o| o != sender) {
                    tracing::warn!(%sender, "QUIC bus payload for another origin dropped");
                    NodeCounters::incr(&fwd_node.counters().invalid_messages);
                    continue;
                }
                // Never waits: a full bus mailbox flushes instead, so this channel is
                // drained as fast as it fills.
                fwd_node.peer_payload(payload);
            }
        });
        Ok(GossipState {
            node,
            link,
            forward,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.forward.abort();
        state.node.attach(None);
        state.link.0.shutdown().await;
        Ok(())
    }
}
