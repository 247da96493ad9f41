//! Cluster gossip: SWIM membership (foca) over QUIC (quinn), stats
//! dissemination, best-effort broadcast, and the cluster certificates.
//!
//! * `membership`: sans-IO foca wrapper driven by explicit `Instant`s.
//! * `transport`: quinn endpoint, per-peer ordered senders, readers.
//! * `tls`: rcgen certificates and rustls configurations (mutual TLS
//!   against the cluster CA, or loopback-only unauthenticated mode).
//! * `frame`: versioned, size-limited bincode framing (same as `wire`).
//!
//! Joining: a node sends a `Hello` (its identity) to each configured peer
//! address until it has at least one active member; the peer answers with
//! its own `Hello` and both sides announce to each other through foca.
//!
//! Call [`Gossip::shutdown`] (or [`Gossip::kill`]) to stop the background
//! tasks; dropping every handle does not stop them.

mod frame;
mod identity;
mod membership;
mod tls;
mod transport;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, RwLock,
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use tls::generate_certs;

use identity::NodeIdentity;
use membership::{Membership, PeerEntry, SwimParams};
use transport::{DriverInput, Frame, Mode, PeerHandle};

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
    /// How often our stats summary is sent to peers.
    pub stats_interval: Duration,
    /// Largest stats payload sent or accepted; larger ones are counted and dropped.
    pub max_stats_bytes: usize,
}

impl GossipConfig {
    /// Defaults: probe every 300 ms (ack deadline 120 ms), suspect → dead
    /// after 600 ms, stats every 500 ms, 16 KiB stats bound. On loopback a
    /// killed node is dead on every survivor in about 1–1.6 s; a probe
    /// only fails if no direct or indirect ack arrives within 300 ms.
    pub fn new(node_id: impl Into<String>, bind: SocketAddr, http_addr: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            bind,
            advertise: None,
            http_addr: http_addr.into(),
            peers: Vec::new(),
            tls: None,
            probe_period: Duration::from_millis(300),
            suspect_to_dead: Duration::from_millis(600),
            stats_interval: Duration::from_millis(500),
            max_stats_bytes: 16 * 1024,
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
    /// Milliseconds since we last heard from it (SWIM packet or stats).
    pub last_seen_ms: u64,
    /// Its stats summary (opaque JSON bytes) as last received.
    pub stats: Option<Vec<u8>>,
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
    /// Hello/stats frames claiming a node id the peer's certificate does not name (mTLS).
    pub identity_mismatches: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("gossip without [tls] is only allowed on a loopback address (bind {0})")]
    InsecureNonLoopback(SocketAddr),
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
}

struct View {
    me: NodeIdentity,
    active: usize,
    peers: Vec<PeerEntry>,
}

type StatsFn = Arc<dyn Fn() -> Vec<u8> + Send + Sync>;

struct Inner {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    advertise: SocketAddr,
    max_stats_bytes: usize,
    counters: Counters,
    view: RwLock<View>,
    stats_in: Mutex<HashMap<String, (Vec<u8>, tokio::time::Instant)>>,
    peers: Mutex<HashMap<SocketAddr, PeerHandle>>,
    conns: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    driver_tx: mpsc::Sender<DriverInput>,
    inbound: mpsc::UnboundedSender<Vec<u8>>,
    stopped: AtomicBool,
    incoming_conns: AtomicUsize,
    /// Mutual TLS is on: a peer may only speak for the node id its certificate names.
    mtls: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    fn track(&self, h: tokio::task::AbortHandle) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(h);
    }

    fn active_addrs(&self) -> Vec<SocketAddr> {
        let view = self
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        view.peers
            .iter()
            .filter(|p| p.state != MemberState::Dead)
            .map(|p| p.identity.gossip_addr)
            .collect()
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
        inbound: mpsc::UnboundedSender<Vec<u8>>,
    ) -> Result<Gossip, GossipError> {
        if cfg.node_id.is_empty() || cfg.node_id.len() > 255 {
            return Err(GossipError::InvalidNodeId(cfg.node_id));
        }
        if cfg.probe_period.is_zero()
            || cfg.suspect_to_dead.is_zero()
            || cfg.stats_interval.is_zero()
        {
            return Err(GossipError::Config(
                "probe_period, suspect_to_dead and stats_interval must be > 0".into(),
            ));
        }
        if cfg.tls.is_none() {
            if !cfg.bind.ip().is_loopback() {
                return Err(GossipError::InsecureNonLoopback(cfg.bind));
            }
            tracing::warn!(
                bind = %cfg.bind,
                "gossip runs without [tls]: encrypted but unauthenticated, loopback only (local development)"
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

        let me = NodeIdentity::new(cfg.node_id.clone(), advertise, cfg.http_addr.clone());
        let params = SwimParams {
            probe_period: cfg.probe_period,
            suspect_to_dead: cfg.suspect_to_dead,
        };
        let membership = Membership::new(me.clone(), &params, rand::random());
        let (driver_tx, driver_rx) = mpsc::channel(DRIVER_QUEUE);
        let inner = Arc::new(Inner {
            endpoint,
            local_addr,
            advertise,
            max_stats_bytes: cfg.max_stats_bytes,
            counters: Counters::default(),
            view: RwLock::new(View {
                me,
                active: 0,
                peers: Vec::new(),
            }),
            stats_in: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            driver_tx,
            inbound,
            stopped: AtomicBool::new(false),
            incoming_conns: AtomicUsize::new(0),
            mtls: cfg.tls.is_some(),
        });

        let t = tokio::spawn(transport::driver(inner.clone(), membership, driver_rx));
        inner.track(t.abort_handle());
        let t = tokio::spawn(transport::accept_loop(inner.clone()));
        inner.track(t.abort_handle());
        let t = tokio::spawn(stats_loop(inner.clone(), stats, cfg.stats_interval));
        inner.track(t.abort_handle());
        if !cfg.peers.is_empty() {
            let t = tokio::spawn(join_loop(inner.clone(), cfg.peers.clone()));
            inner.track(t.abort_handle());
        }
        tracing::info!(node = %cfg.node_id, %local_addr, %advertise, tls = cfg.tls.is_some(), "gossip started");
        Ok(Gossip { inner })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Every other node known (alive, suspect or dead), sorted by node id.
    pub fn members(&self) -> Vec<MemberInfo> {
        let now = tokio::time::Instant::now();
        let stats = lock(&self.inner.stats_in);
        let view = self
            .inner
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        view.peers
            .iter()
            .map(|p| {
                let id = &p.identity;
                let entry = stats.get(&id.node_id);
                let mut seen = tokio::time::Instant::from_std(p.last_seen);
                if let Some((_, at)) = entry {
                    seen = seen.max(*at);
                }
                MemberInfo {
                    node_id: id.node_id.clone(),
                    gossip_addr: id.gossip_addr.to_string(),
                    http_addr: id.http_addr.clone(),
                    state: p.state,
                    last_seen_ms: u64::try_from(now.saturating_duration_since(seen).as_millis())
                        .unwrap_or(u64::MAX),
                    stats: entry.map(|(s, _)| s.clone()),
                }
            })
            .collect()
    }

    /// Number of active (alive or suspect) other nodes.
    pub fn alive_peers(&self) -> usize {
        self.inner
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .active
    }

    /// Queue `payload` for every active peer (uni stream, ordered per
    /// peer). Never blocks; payloads over 64 KiB are counted in
    /// `oversized_dropped`, full queues in `send_dropped`.
    pub fn broadcast(&self, payload: Vec<u8>) {
        let bytes = match frame::encode(&Frame::Broadcast(payload)) {
            Ok(b) => bytes::Bytes::from(b),
            Err(_) => {
                self.inner
                    .counters
                    .oversized_dropped
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        for addr in self.inner.active_addrs() {
            transport::send_bytes(&self.inner, addr, bytes.clone(), Mode::Stream);
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

async fn stats_loop(inner: Arc<Inner>, stats: StatsFn, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let addrs = inner.active_addrs();
        if addrs.is_empty() {
            continue;
        }
        let payload = stats();
        if payload.len() > inner.max_stats_bytes {
            inner
                .counters
                .oversized_dropped
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let node_id = inner
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .me
            .node_id
            .clone();
        let frame = Frame::Stats {
            node_id,
            stats: payload,
        };
        let bytes = match frame::encode(&frame) {
            Ok(b) => bytes::Bytes::from(b),
            Err(_) => {
                inner
                    .counters
                    .oversized_dropped
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        for addr in addrs {
            transport::send_bytes(&inner, addr, bytes.clone(), Mode::Datagram);
        }
    }
}

/// Sends Hello to the configured peers while we have no active member.
async fn join_loop(inner: Arc<Inner>, peers: Vec<String>) {
    loop {
        let (active, me) = {
            let v = inner
                .view
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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
