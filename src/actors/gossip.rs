//! The gossip actor: owns the QUIC gossip endpoint's lifecycle, publishes our stats summary
//! to it, and forwards bus payloads that peers send while Redis is down.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::bus::{BusMsg, Via};
use crate::cache::{PeerLink, Shared};
use crate::cluster::{ClusterMember, Membership};
use crate::gossip::{Gossip, GossipConfig, MemberState, TlsPaths};

/// Adapter from the gossip handle to the seams the bus and HTTP layers use.
pub struct GossipLink(pub Gossip);

impl PeerLink for GossipLink {
    fn alive_peers(&self) -> usize {
        self.0.alive_peers()
    }
    fn broadcast(&self, payload: Vec<u8>) {
        self.0.broadcast(payload);
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
                stats: m
                    .stats
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()),
            })
            .collect()
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
        ]
    }
}

pub enum GossipMsg {
    /// Refresh the stats summary peers receive.
    RefreshStats,
}

pub struct GossipActor;

pub struct GossipState {
    shared: Arc<Shared>,
    link: Arc<GossipLink>,
    snapshot: Arc<RwLock<Vec<u8>>>,
    forward: tokio::task::JoinHandle<()>,
    timer: tokio::task::JoinHandle<()>,
}

impl Actor for GossipActor {
    type Msg = GossipMsg;
    type State = GossipState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cfg = &shared.config;
        let bind = cfg
            .gossip_addr
            .ok_or("gossip actor started without a gossip address")?;
        let mut gc = GossipConfig::new(cfg.node_id.clone(), bind, cfg.http_advertised());
        gc.advertise = cfg.gossip_advertise.clone();
        gc.peers = cfg.peers.clone();
        gc.probe_period = cfg.gossip_probe_period;
        gc.suspect_to_dead = cfg.gossip_suspect_timeout;
        gc.tls = cfg.tls.as_ref().map(|t| TlsPaths {
            ca: t.ca.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
        });
        let snapshot = Arc::new(RwLock::new(
            serde_json::to_vec(&shared.stats().await).unwrap_or_default(),
        ));
        let reader = snapshot.clone();
        let stats_fn = Arc::new(move || reader.read().map(|g| g.clone()).unwrap_or_default());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let gossip = Gossip::start(gc, stats_fn, tx).await?;
        let link = Arc::new(GossipLink(gossip));
        shared.set_gossip(Some(link.clone()));
        shared.set_membership(Some(link.clone()));
        let fwd_shared = shared.clone();
        let forward = tokio::spawn(async move {
            while let Some(payload) = rx.recv().await {
                if let Some(bus) = fwd_shared.bus() {
                    let _ = bus.cast(BusMsg::Inbound(payload, Via::Quic));
                }
            }
        });
        let timer = myself.send_interval(Duration::from_millis(250), || GossipMsg::RefreshStats);
        Ok(GossipState {
            shared,
            link,
            snapshot,
            forward,
            timer,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.timer.abort();
        state.forward.abort();
        state.shared.set_gossip(None);
        state.link.0.shutdown().await;
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GossipMsg::RefreshStats => {
                let json = serde_json::to_vec(&state.shared.stats().await)?;
                if let Ok(mut g) = state.snapshot.write() {
                    *g = json;
                }
            }
        }
        Ok(())
    }
}

impl GossipState {
    /// The gossip handle (tests use it to simulate a crash).
    pub fn gossip(&self) -> &Gossip {
        &self.link.0
    }
}
