//! Starting a gossip node: check the configuration, bind the QUIC endpoint (and the SWIM UDP
//! socket when a cluster secret authenticates SWIM), build the shared state, spawn the
//! driver, the acceptor, the UDP reader and the join loop.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize},
        Arc, Mutex, RwLock,
    },
};

use tokio::sync::mpsc;

use super::{
    auth::ClusterKey,
    driver,
    frame::Frame,
    identity::NodeIdentity,
    input::DriverInput,
    membership::{Membership, SwimParams, JOIN_RETRY},
    peer_queue::Mode,
    receive, tls, transport,
    types::{Inbound, StatsFn},
    udp, Counters, GossipConfig, GossipError, Inner, View,
};

/// Inputs waiting for the membership driver; a full queue drops (counted).
const DRIVER_QUEUE: usize = 8192;

/// Binds, starts the background tasks and announces to the configured peers.
pub(super) async fn start(
    cfg: GossipConfig,
    stats: StatsFn,
    inbound: mpsc::UnboundedSender<Inbound>,
) -> Result<Arc<Inner>, GossipError> {
    let key = check(&cfg)?;
    let (endpoint, local_addr) = bind_endpoint(&cfg)?;
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
    let (udp, swim_addr) = match swim_socket(&cfg, key.is_some(), advertise).await {
        Ok(s) => s,
        Err(e) => {
            endpoint.close(quinn::VarInt::from_u32(0), b"config");
            return Err(e);
        }
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
    spawn_tasks(&inner, membership, driver_rx, udp, &cfg.peers);
    tracing::info!(node = %cfg.node_id, %local_addr, %advertise, %swim_addr, tls = cfg.tls.is_some(), "gossip started");
    Ok(inner)
}

/// Refuses what cannot run (bad node id, zero durations, no TLS off loopback or without a
/// secret); the cluster key when a secret is set.
fn check(cfg: &GossipConfig) -> Result<Option<ClusterKey>, GossipError> {
    if cfg.node_id.is_empty() || cfg.node_id.len() > 255 {
        return Err(GossipError::InvalidNodeId(cfg.node_id.clone()));
    }
    if cfg.probe_period.is_zero() || cfg.suspect_to_dead.is_zero() || cfg.dead_forget.is_zero() {
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
    Ok(key)
}

/// The QUIC endpoint (server and client) and the address it is bound to.
fn bind_endpoint(cfg: &GossipConfig) -> Result<(quinn::Endpoint, SocketAddr), GossipError> {
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
    Ok((endpoint, local_addr))
}

/// The SWIM UDP socket (with a cluster secret) and the SWIM address to advertise; without a
/// secret SWIM rides QUIC datagrams on the advertised address.
async fn swim_socket(
    cfg: &GossipConfig,
    keyed: bool,
    advertise: SocketAddr,
) -> Result<(Option<Arc<tokio::net::UdpSocket>>, SocketAddr), GossipError> {
    if !keyed {
        return Ok((None, advertise));
    }
    let bind = SocketAddr::new(cfg.bind.ip(), 0);
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|source| GossipError::Bind { addr: bind, source })?;
    let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
    Ok((Some(Arc::new(sock)), SocketAddr::new(advertise.ip(), port)))
}

/// Spawns the node's tasks, each tracked so that `stop_tasks` aborts it.
fn spawn_tasks(
    inner: &Arc<Inner>,
    membership: Membership,
    driver_rx: mpsc::Receiver<DriverInput>,
    udp: Option<Arc<tokio::net::UdpSocket>>,
    peers: &[String],
) {
    let t = tokio::spawn(driver::driver(inner.clone(), membership, driver_rx));
    inner.track(t.abort_handle());
    let t = tokio::spawn(receive::accept_loop(inner.clone()));
    inner.track(t.abort_handle());
    if let Some(sock) = udp {
        let t = tokio::spawn(udp::recv_loop(inner.clone(), sock));
        inner.track(t.abort_handle());
    }
    if !peers.is_empty() {
        let t = tokio::spawn(join_loop(inner.clone(), peers.to_vec()));
        inner.track(t.abort_handle());
    }
}

/// The first address `addr` (`host:port`) resolves to.
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
