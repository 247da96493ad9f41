//! Cluster gossip: SWIM membership (foca), on-demand cluster stats over QUIC
//! (quinn), best-effort broadcast, and the cluster certificates.
//!
//! Only membership travels all the time, piggybacked on SWIM probes: traffic
//! per node does not grow with the cluster. Stats are asked for when someone
//! reads `/v1/cluster/stats` ([`Gossip::gather_stats`]).
//!
//! * `config`: [`GossipConfig`], [`TlsPaths`], [`GossipError`].
//! * `start`: checks the configuration, binds, spawns the node's tasks.
//! * `state`: the shared state of a running node (endpoint, peers, counters, view).
//! * `membership`: sans-IO foca wrapper driven by explicit `Instant`s.
//! * `driver`: the task that owns the membership machine and ships its packets.
//! * `input`: what the driver is fed (by the readers, the UDP socket and the handle).
//! * `udp`: SWIM packets on a plain UDP socket, sealed with the cluster secret.
//! * `transport`: quinn endpoint, outgoing connections, per-peer ordered senders.
//! * `peer_queue`: what a per-peer sender is fed, and its handle.
//! * `connections`: the registry of live QUIC connections (one per peer address) and the
//!   QUIC timeouts both directions share.
//! * `receive`: accepting connections, reading and dispatching frames.
//! * `claim`: under mTLS, whether a peer's certificate backs the node id it claims.
//! * `frame`: what travels over QUIC, versioned, size-limited bincode (same as `wire`).
//! * `query`: on-demand stats over QUIC bidi streams (the asking side).
//! * `answer`: the answering side of a stats request.
//! * `auth`: HMAC sealing of packets and frames with the cluster key
//!   ([`crate::wire_auth::ClusterKey`], shared with the bus).
//! * `identity`: the foca identity of a node.
//! * `types`: the plain types the API hands out and takes ([`MemberState`], [`MemberInfo`],
//!   [`GossipCounters`], [`StatsFn`], [`Inbound`]).
//! * `tls`: rcgen certificates and rustls configurations (mutual TLS
//!   against the cluster CA, or loopback-only mode that needs the secret).
//! * [`sim`]: deterministic simulation of thousands of nodes (virtual time).
//!
//! Joining: a node sends a `Hello` (its identity) to each configured peer
//! address until it has at least one active member; the peer answers with
//! its own `Hello` and both sides announce to each other through foca.
//!
//! Call [`Gossip::shutdown`] (or [`Gossip::kill`]) to stop the background
//! tasks; dropping every handle does not stop them.

mod answer;
mod auth;
mod claim;
mod config;
mod connections;
mod driver;
mod frame;
mod identity;
mod input;
mod membership;
mod peer_queue;
mod query;
mod receive;
pub mod sim;
mod start;
mod state;
mod tls;
mod transport;
mod types;
mod udp;

#[cfg(test)]
mod auth_golden_tests;
#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod tests;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::mpsc;

pub use config::{GossipConfig, GossipError, TlsPaths};
pub use query::Gathered;
pub use tls::generate_certs;
pub use types::{GossipCounters, Inbound, MemberInfo, MemberState, StatsFn};

use input::DriverInput;
use peer_queue::Mode;
use state::{lock, Counters, Inner, View};

/// Handle to a running gossip node (cheap to clone).
#[derive(Clone)]
pub struct Gossip {
    inner: Arc<Inner>,
}

impl Gossip {
    /// Binds, starts background tasks, announces to peers.
    pub async fn start(
        cfg: GossipConfig,
        stats: StatsFn,
        inbound: mpsc::UnboundedSender<Inbound>,
    ) -> Result<Gossip, GossipError> {
        let inner = start::start(cfg, stats, inbound).await?;
        Ok(Gossip { inner })
    }

    /// The address the QUIC endpoint is bound to.
    #[cfg(test)]
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.inner.local_addr
    }

    /// Every other node known (alive, suspect or dead, until forgotten), sorted by node id.
    pub fn members(&self) -> Vec<MemberInfo> {
        let now = tokio::time::Instant::now();
        let view = self.inner.view();
        view.peers
            .iter()
            .map(|p| {
                let id = &p.identity;
                let seen = tokio::time::Instant::from_std(p.last_seen);
                MemberInfo {
                    node_id: id.node_id.clone(),
                    gossip_addr: id.gossip_addr.to_string(),
                    http_addr: id.http_addr.clone(),
                    state: p.state,
                    last_seen_ms: u64::try_from(now.saturating_duration_since(seen).as_millis())
                        .unwrap_or(u64::MAX),
                }
            })
            .collect()
    }

    /// Asks every alive and suspect member for its stats, in parallel, waiting at most
    /// `deadline`; members that did not answer in time are listed in `missing`.
    #[cfg(test)]
    pub async fn gather_stats(&self, deadline: Duration) -> Gathered {
        self.gather_stats_as(deadline, Arc::new(Some)).await
    }

    /// [`Gossip::gather_stats`], each answer decoded by `decode` as it arrives.
    pub async fn gather_stats_as<T: Send + 'static>(
        &self,
        deadline: Duration,
        decode: query::Decode<T>,
    ) -> Gathered<T> {
        let targets = self.inner.active_peers();
        query::gather(&self.inner, targets, deadline, decode).await
    }

    /// Number of active (alive or suspect) other nodes.
    pub fn alive_peers(&self) -> usize {
        self.inner.view().active
    }

    /// Queue `payload` for every active peer (uni stream, ordered per
    /// peer). Never blocks; payloads over 64 KiB are counted in
    /// `oversized_dropped`, full queues in `send_dropped`.
    pub fn broadcast(&self, payload: Vec<u8>) {
        let Some(bytes) = frame::broadcast_frame(&self.inner, payload) else {
            return;
        };
        for (_, addr) in self.inner.active_peers() {
            transport::send_bytes(&self.inner, addr, bytes.clone(), Mode::Stream);
        }
    }

    /// Changes whenever the peers' set, identities or states change (not on traffic
    /// alone): a caller can skip re-reading [`Gossip::active_peer_ids`] while it is the same.
    pub fn peers_version(&self) -> u64 {
        self.inner.view().version
    }

    /// Node ids of the active (alive or suspect) peers.
    pub fn active_peer_ids(&self) -> Vec<String> {
        self.inner
            .active_peers()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// Queue `payload` for one active peer (same framing and stream as
    /// [`Gossip::broadcast`]); a peer not known as active gets nothing (counted in
    /// `send_dropped`).
    pub fn send_to(&self, peer: &str, payload: Vec<u8>) {
        let addr = self
            .inner
            .active_peers()
            .into_iter()
            .find_map(|(id, addr)| (id == peer).then_some(addr));
        let Some(addr) = addr else {
            self.inner
                .counters
                .send_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some(bytes) = frame::broadcast_frame(&self.inner, payload) {
            transport::send_bytes(&self.inner, addr, bytes, Mode::Stream);
        }
    }

    /// A snapshot of the transport counters.
    pub fn counters(&self) -> GossipCounters {
        let c = &self.inner.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GossipCounters {
            bytes_sent: g(&c.bytes_sent),
            bytes_received: g(&c.bytes_received),
            frames_sent: g(&c.frames_sent),
            frames_received: g(&c.frames_received),
            invalid_frames: g(&c.invalid_frames),
            oversized_dropped: g(&c.oversized_dropped),
            connect_failures: g(&c.connect_failures),
            send_dropped: g(&c.send_dropped),
            identity_mismatches: g(&c.identity_mismatches),
            unauthenticated: g(&c.unauthenticated),
        }
    }

    /// Leave the cluster gracefully (peers mark us dead at once), then
    /// close the endpoint. Idempotent.
    pub async fn shutdown(&self) {
        if self.inner.stopped.load(Ordering::Relaxed) {
            return;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self
            .inner
            .driver_tx
            .send(DriverInput::Leave(tx))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_millis(500), rx).await;
            // Let the per-peer senders flush the leave notices.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            while tokio::time::Instant::now() < deadline {
                let pending = lock(&self.inner.peers).values().any(|p| !p.queue_empty());
                if !pending {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.inner.stop_tasks();
        self.inner
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }

    /// Abort every task and close the endpoint without leaving the
    /// cluster (simulates SIGKILL; peers must detect the failure).
    #[cfg(test)]
    pub fn kill(&self) {
        self.inner.stop_tasks();
        self.inner
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"killed");
    }
}
