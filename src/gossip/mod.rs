//! Cluster gossip: SWIM membership (foca), on-demand cluster stats over QUIC
//! (quinn), best-effort broadcast, and the cluster certificates.
//!
//! Only membership travels all the time, piggybacked on SWIM probes: traffic
//! per node does not grow with the cluster. Stats are asked for when someone
//! reads `/v1/cluster/stats` ([`Gossip::gather_stats`]).
//!
//! * `membership`: sans-IO foca wrapper driven by explicit `Instant`s.
//! * `udp`: SWIM packets on a plain UDP socket, sealed with the cluster secret.
//! * `transport`: quinn endpoint, per-peer ordered senders, readers.
//! * `query`: on-demand stats over QUIC bidi streams.
//! * `auth`: HMAC sealing of packets and frames with the cluster secret.
//! * `tls`: rcgen certificates and rustls configurations (mutual TLS
//!   against the cluster CA, or loopback-only mode that needs the secret).
//! * `frame`: versioned, size-limited bincode framing (same as `wire`).
//! * [`sim`]: deterministic simulation of thousands of nodes (virtual time).
//!
//! Joining: a node sends a `Hello` (its identity) to each configured peer
//! address until it has at least one active member; the peer answers with
//! its own `Hello` and both sides announce to each other through foca.
//!
//! Call [`Gossip::shutdown`] (or [`Gossip::kill`]) to stop the background
//! tasks; dropping every handle does not stop them.

mod auth;
mod driver;
mod frame;
mod identity;
mod membership;
mod query;
mod receive;
pub mod sim;
mod tls;
mod transport;
mod udp;

#[cfg(test)]
mod auth_golden_tests;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard,
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use query::{Decode, Gathered};
pub use tls::generate_certs;

use auth::ClusterKey;
use driver::DriverInput;
use frame::Frame;
use identity::NodeIdentity;
use membership::{Membership, PeerEntry, SwimParams};
use transport::{Mode, PeerHandle};

/// Paths of the PEM files for mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Gossip settings of one node.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    pub node_id: String,
    /// UDP bind of the quinn endpoint.
    pub bind: SocketAddr,
    /// `host:port` other nodes should use (default: the bound address).
    pub advertise: Option<String>,
    /// Advertised in membership, shown in cluster stats.
    pub http_addr: String,
    /// `host:port` gossip addresses to join through (retried until one answers).
    pub peers: Vec<String>,
    /// Mutual TLS against the cluster CA; `None` is allowed on loopback only.
    pub tls: Option<TlsPaths>,
    /// SWIM probe period (direct-ack deadline is 2/5 of it).
    pub probe_period: Duration,
    /// How long a suspect node has to refute before it is declared dead.
    pub suspect_to_dead: Duration,
    /// A node dead for this long is forgotten.
    pub dead_forget: Duration,
    /// Largest stats payload sent; larger ones are counted and sent empty.
    pub max_stats_bytes: usize,
    /// Shared secret authenticating every SWIM packet and QUIC frame (HMAC-SHA256).
    /// Required without TLS; with it SWIM rides plain UDP instead of QUIC datagrams.
    pub cluster_secret: Option<Vec<u8>>,
}

impl GossipConfig {
    /// Defaults: probe every 200 ms (ack deadline 80 ms), suspect → dead
    /// after 600 ms, dead forgotten after 60 s, 16 KiB stats bound, no secret.
    pub fn new(node_id: impl Into<String>, bind: SocketAddr, http_addr: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            bind,
            advertise: None,
            http_addr: http_addr.into(),
            peers: Vec::new(),
            tls: None,
            probe_period: Duration::from_millis(200),
            suspect_to_dead: Duration::from_millis(600),
            dead_forget: Duration::from_secs(60),
            max_stats_bytes: 16 * 1024,
            cluster_secret: None,
        }
    }
}

/// How this node sees another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Alive,
    Suspect,
    Dead,
}

/// Another node as known by this one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub node_id: String,
    pub gossip_addr: String,
    pub http_addr: String,
    pub state: MemberState,
    /// Milliseconds since we last heard from it (SWIM packet).
    pub last_seen_ms: u64,
}

/// Transport counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GossipCounters {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub frames_sent: u64,
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

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("gossip without [tls] is only allowed on a loopback address (bind {0})")]
    InsecureNonLoopback(SocketAddr),
    #[error("gossip without [tls] needs a cluster secret (HC_CLUSTER_SECRET / cluster_secret)")]
    MissingSecret,
    #[error("cannot bind gossip endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("gossip TLS: {0}")]
    Tls(String),
    #[error("certificate generation failed: {0}")]
    CertGen(String),
    #[error("invalid node id {0:?} (1-63 chars of A-Z a-z 0-9 - _ .)")]
    InvalidNodeId(String),
    #[error("cannot resolve gossip address {addr}: {reason}")]
    Resolve { addr: String, reason: String },
    #[error("invalid gossip config: {0}")]
    Config(String),
}

#[derive(Default)]
struct Counters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    frames_sent: AtomicU64,
    frames_received: AtomicU64,
    invalid_frames: AtomicU64,
    oversized_dropped: AtomicU64,
    connect_failures: AtomicU64,
    send_dropped: AtomicU64,
    identity_mismatches: AtomicU64,
    unauthenticated: AtomicU64,
}

struct View {
    me: NodeIdentity,
    active: usize,
    peers: Vec<PeerEntry>,
    /// The membership table version `peers` was copied from (see
    /// `Membership::peers_version`).
    version: u64,
}

/// Produces this node's stats summary (JSON bytes) when a peer asks for it.
pub type StatsFn = Arc<dyn Fn() -> futures::future::BoxFuture<'static, Vec<u8>> + Send + Sync>;

/// A broadcast payload from a peer: (sender node id, as authenticated, payload).
pub type Inbound = (String, Vec<u8>);

struct Inner {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    advertise: SocketAddr,
    max_stats_bytes: usize,
    stats: StatsFn,
    key: Option<ClusterKey>,
    /// SWIM socket (present when a cluster secret is set).
    udp: Option<Arc<tokio::net::UdpSocket>>,
    counters: Counters,
    view: RwLock<View>,
    peers: Mutex<HashMap<SocketAddr, PeerHandle>>,
    conns: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    driver_tx: mpsc::Sender<DriverInput>,
    inbound: mpsc::UnboundedSender<Inbound>,
    stopped: AtomicBool,
    incoming_conns: AtomicUsize,
    /// Mutual TLS is on: a peer may only speak for the node id its certificate names.
    mtls: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// What gossip knows now (membership, this node's identity), for reading.
    fn view(&self) -> RwLockReadGuard<'_, View> {
        self.view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This node's id as gossip announces it.
    fn own_node_id(&self) -> String {
        self.view().me.node_id.clone()
    }

    fn track(&self, h: tokio::task::AbortHandle) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(h);
    }

    /// The active (alive or suspect) peers: node id and QUIC address.
    fn active_peers(&self) -> Vec<(String, SocketAddr)> {
        let view = self.view();
        view.peers
            .iter()
            .filter(|p| p.state != MemberState::Dead)
            .map(|p| (p.identity.node_id.clone(), p.identity.gossip_addr))
            .collect()
    }

    /// `payload` framed as our bus broadcast; `None` (counted in `oversized_dropped`) when
    /// it is too large.
    fn broadcast_frame(&self, payload: Vec<u8>) -> Option<bytes::Bytes> {
        let node_id = self.own_node_id();
        match frame::encode_frame(self, &Frame::Broadcast { node_id, payload }) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                self.counters
                    .oversized_dropped
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn stop_tasks(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        for (_, p) in lock(&self.peers).drain() {
            p.abort();
        }
    }
}

/// Handle to a running gossip node (cheap to clone).
#[derive(Clone)]
pub struct Gossip {
    inner: Arc<Inner>,
}

async fn resolve(addr: &str) -> Result<SocketAddr, GossipError> {
    let err = |reason: String| GossipError::Resolve {
        addr: addr.to_string(),
        reason,
    };
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))
}

const JOIN_RETRY: Duration = Duration::from_secs(1);
const DRIVER_QUEUE: usize = 8192;

impl Gossip {
    /// Binds, starts background tasks, announces to peers.
    pub async fn start(
        cfg: GossipConfig,
        stats: StatsFn,
        inbound: mpsc::UnboundedSender<Inbound>,
    ) -> Result<Gossip, GossipError> {
        if cfg.node_id.is_empty() || cfg.node_id.len() > 255 {
            return Err(GossipError::InvalidNodeId(cfg.node_id));
        }
        if cfg.probe_period.is_zero() || cfg.suspect_to_dead.is_zero() || cfg.dead_forget.is_zero()
        {
            return Err(GossipError::Config(
                "probe_period, suspect_to_dead and dead_forget must be > 0".into(),
            ));
        }
        let key = cfg
            .cluster_secret
            .as_deref()
            .and_then(ClusterKey::from_nonempty);
        if cfg.tls.is_none() {
            if !cfg.bind.ip().is_loopback() {
                return Err(GossipError::InsecureNonLoopback(cfg.bind));
            }
            if key.is_none() {
                return Err(GossipError::MissingSecret);
            }
            tracing::warn!(
                bind = %cfg.bind,
                "gossip runs without [tls]: authenticated by the cluster secret, loopback only (local development)"
            );
        }
        let (server, client) =
            tls::quinn_configs(cfg.tls.as_ref(), Arc::new(transport::transport_config()))?;
        let mut endpoint =
            quinn::Endpoint::server(server, cfg.bind).map_err(|source| GossipError::Bind {
                addr: cfg.bind,
                source,
            })?;
        endpoint.set_default_client_config(client);
        let local_addr = endpoint.local_addr().map_err(|source| GossipError::Bind {
            addr: cfg.bind,
            source,
        })?;
        let advertise = match &cfg.advertise {
            Some(a) => match resolve(a).await {
                Ok(a) => a,
                Err(e) => {
                    endpoint.close(quinn::VarInt::from_u32(0), b"config");
                    return Err(e);
                }
            },
            None => local_addr,
        };
        if advertise.ip().is_unspecified() {
            tracing::warn!(%advertise, "gossip advertises an unspecified address; set `advertise`");
        }
        let (udp, swim_addr) = match &key {
            Some(_) => {
                let bind = SocketAddr::new(cfg.bind.ip(), 0);
                let sock = match tokio::net::UdpSocket::bind(bind).await {
                    Ok(s) => s,
                    Err(source) => {
                        endpoint.close(quinn::VarInt::from_u32(0), b"config");
                        return Err(GossipError::Bind { addr: bind, source });
                    }
                };
                let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
                (Some(Arc::new(sock)), SocketAddr::new(advertise.ip(), port))
            }
            None => (None, advertise),
        };

        let me = NodeIdentity::new(
            cfg.node_id.clone(),
            advertise,
            swim_addr,
            cfg.http_addr.clone(),
        );
        let params = SwimParams::new(cfg.probe_period, cfg.suspect_to_dead, cfg.dead_forget);
        let membership = Membership::new(me.clone(), &params, rand::random());
        let (driver_tx, driver_rx) = mpsc::channel(DRIVER_QUEUE);
        let inner = Arc::new(Inner {
            endpoint,
            local_addr,
            advertise,
            max_stats_bytes: cfg.max_stats_bytes,
            stats,
            key,
            udp: udp.clone(),
            counters: Counters::default(),
            view: RwLock::new(View {
                me,
                active: 0,
                peers: Vec::new(),
                version: u64::MAX,
            }),
            peers: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            driver_tx,
            inbound,
            stopped: AtomicBool::new(false),
            incoming_conns: AtomicUsize::new(0),
            mtls: cfg.tls.is_some(),
        });

        let t = tokio::spawn(driver::driver(inner.clone(), membership, driver_rx));
        inner.track(t.abort_handle());
        let t = tokio::spawn(receive::accept_loop(inner.clone()));
        inner.track(t.abort_handle());
        if let Some(sock) = udp {
            let t = tokio::spawn(udp::recv_loop(inner.clone(), sock));
            inner.track(t.abort_handle());
        }
        if !cfg.peers.is_empty() {
            let t = tokio::spawn(join_loop(inner.clone(), cfg.peers.clone()));
            inner.track(t.abort_handle());
        }
        tracing::info!(node = %cfg.node_id, %local_addr, %advertise, %swim_addr, tls = cfg.tls.is_some(), "gossip started");
        Ok(Gossip { inner })
    }

    pub fn local_addr(&self) -> SocketAddr {
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
        let Some(bytes) = self.inner.broadcast_frame(payload) else {
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
        if let Some(bytes) = self.inner.broadcast_frame(payload) {
            transport::send_bytes(&self.inner, addr, bytes, Mode::Stream);
        }
    }

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
    pub fn kill(&self) {
        self.inner.stop_tasks();
        self.inner
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"killed");
    }
}

/// Sends Hello to the configured peers while we have no active member.
async fn join_loop(inner: Arc<Inner>, peers: Vec<String>) {
    loop {
        let (active, me) = {
            let v = inner.view();
            (v.active, v.me.clone())
        };
        if active == 0 {
            for peer in &peers {
                match resolve(peer).await {
                    Ok(addr) if addr == inner.advertise || addr == inner.local_addr => {}
                    Ok(addr) => transport::send_frame(
                        &inner,
                        addr,
                        &Frame::Hello {
                            identity: me.clone(),
                            reply: true,
                            known_bump: None,
                        },
                        Mode::Datagram,
                    ),
                    Err(e) => tracing::debug!(error = %e, "gossip peer not resolvable yet"),
                }
            }
        }
        tokio::time::sleep(JOIN_RETRY).await;
    }
}
