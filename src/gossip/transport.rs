//! QUIC transport (quinn): one endpoint used as client and server, one
//! cached connection per peer (whichever side opened it; both directions
//! carry frames), opened only when there is something to say: a join
//! (`Hello`), an on-demand stats request, or an invalidation while Redis is
//! down. No keep-alives: an idle connection closes after 30 s, so a quiet
//! 100-node cluster holds no per-pair state.
//!
//! Frames (all through [`super::frame`], versioned, 64 KiB max, sealed with
//! the cluster secret when one is set): Hello goes as a QUIC datagram when it
//! fits (falling back to a uni stream); broadcast payloads always go on uni
//! streams, opened in order by the peer's sender task and read one at a time
//! in accept order by the receiver, so a peer's broadcasts arrive reliably
//! and in order while the connection lives. Stats requests use a bidi stream
//! (see `query`). SWIM packets go on the plain UDP socket of `udp` when a
//! cluster secret authenticates them, else as QUIC datagrams.
//!
//! Every frame that names a node (Hello, Stats, Broadcast, and the sender in a
//! SWIM packet's header) is checked against the peer certificate under mTLS.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::{
    sync::mpsc,
    time::{timeout, Instant},
};

use super::{
    auth::{self, Context},
    frame::{self, FrameError, MAX_FRAME},
    identity::NodeIdentity,
    lock,
    membership::{self, Membership},
    Inner,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RECONNECT_BACKOFF: Duration = Duration::from_millis(300);
const STREAM_TIMEOUT: Duration = Duration::from_secs(5);
const PEER_IDLE_EXIT: Duration = Duration::from_secs(60);
const PEER_QUEUE: usize = 1024;
const MAX_PEERS: usize = 4096;
const MAX_INCOMING_CONNECTIONS: usize = 1024;

/// Everything that travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// One foca packet.
    Swim(Vec<u8>),
    /// "This is who I am" (joining through a `host:port`); `reply` asks
    /// for a Hello back. Both sides then announce to each other. A reply
    /// carries `known_bump`, the incarnation of an older process with the
    /// asker's node id that the cluster still remembers, so that a restarted
    /// node renews above it instead of being ignored.
    Hello {
        identity: NodeIdentity,
        reply: bool,
        known_bump: Option<u64>,
    },
    /// "Send me your stats" (first frame of a bidi stream).
    StatsRequest,
    /// A node's stats summary (opaque JSON bytes), the answer to `StatsRequest`.
    Stats { node_id: String, stats: Vec<u8> },
    /// An opaque payload from `Gossip::broadcast`, sent by `node_id`.
    Broadcast { node_id: String, payload: Vec<u8> },
    /// One membership digest-sync packet (`membership::SyncMsg`), when SWIM rides QUIC.
    Sync(Vec<u8>),
}

/// Encodes and seals (with the cluster secret, if any) one frame.
pub(crate) fn encode_frame(inner: &Inner, frame: &Frame) -> Result<Bytes, FrameError> {
    let raw = frame::encode(frame)?;
    Ok(Bytes::from(auth::seal(
        inner.key.as_ref(),
        Context::Frame,
        raw,
    )))
}

/// Opens and decodes one frame; `None` when its tag does not verify.
pub(crate) fn decode_frame(inner: &Inner, bytes: &[u8]) -> Option<Result<Frame, FrameError>> {
    let data = auth::open(inner.key.as_ref(), Context::Frame, bytes)?;
    Some(frame::decode::<Frame>(data))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Datagram when it fits, else a uni stream.
    Datagram,
    /// Always a uni stream (reliable, ordered per peer).
    Stream,
}

pub(crate) struct Outgoing {
    bytes: Bytes,
    mode: Mode,
}

pub(crate) struct PeerHandle {
    tx: mpsc::Sender<Outgoing>,
    abort: tokio::task::AbortHandle,
}

impl PeerHandle {
    pub(crate) fn abort(&self) {
        self.abort.abort();
    }

    /// Nothing queued (a frame may still be in flight).
    pub(crate) fn queue_empty(&self) -> bool {
        self.tx.capacity() == self.tx.max_capacity()
    }
}

pub(crate) fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(30_000).into()));
    t.keep_alive_interval(None);
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(16));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(256));
    t.datagram_receive_buffer_size(Some(1 << 20));
    t
}

/// Queue an encoded frame for `addr`. Never blocks.
pub(crate) fn send_bytes(inner: &Arc<Inner>, addr: SocketAddr, bytes: Bytes, mode: Mode) {
    if inner.stopped.load(Ordering::Relaxed) || addr == inner.advertise {
        return;
    }
    let msg = Outgoing { bytes, mode };
    let mut peers = lock(&inner.peers);
    let msg = match peers.get(&addr) {
        Some(p) => match p.tx.try_send(msg) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => {
                inner.counters.send_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(mpsc::error::TrySendError::Closed(m)) => m,
        },
        None => msg,
    };
    if peers.len() >= MAX_PEERS {
        inner.counters.send_dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let (tx, rx) = mpsc::channel(PEER_QUEUE);
    // Cannot fail: fresh channel with capacity.
    let _ = tx.try_send(msg);
    let task = tokio::spawn(peer_task(inner.clone(), addr, rx));
    peers.insert(
        addr,
        PeerHandle {
            tx,
            abort: task.abort_handle(),
        },
    );
}

pub(crate) fn send_frame(inner: &Arc<Inner>, addr: SocketAddr, frame: &Frame, mode: Mode) {
    match encode_frame(inner, frame) {
        Ok(b) => send_bytes(inner, addr, b, mode),
        Err(_) => {
            inner
                .counters
                .oversized_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn connect(inner: &Inner, addr: SocketAddr) -> Option<quinn::Connection> {
    let connecting = match inner.endpoint.connect(addr, super::tls::SERVER_NAME) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%addr, error = %e, "gossip connect refused locally");
            inner
                .counters
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    match timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "gossip connect failed");
            inner
                .counters
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(_) => {
            tracing::debug!(%addr, "gossip connect timed out");
            inner
                .counters
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// A live connection to `addr`: the registered one, or a new one (registered and served).
pub(crate) async fn connection(inner: &Arc<Inner>, addr: SocketAddr) -> Option<quinn::Connection> {
    if let Some(c) = registered(inner, addr) {
        return Some(c);
    }
    let c = connect(inner, addr).await?;
    register(inner, c.clone(), false);
    let (inner2, c2) = (inner.clone(), c.clone());
    let task = tokio::spawn(async move { serve_connection(&inner2, c2).await });
    inner.track(task.abort_handle());
    Some(c)
}

async fn send_on(conn: &quinn::Connection, msg: &Outgoing) -> Result<(), String> {
    let fits = conn
        .max_datagram_size()
        .is_some_and(|max| msg.bytes.len() <= max);
    if msg.mode == Mode::Datagram && fits {
        return conn
            .send_datagram(msg.bytes.clone())
            .map_err(|e| e.to_string());
    }
    let write = async {
        let mut s = conn.open_uni().await.map_err(|e| e.to_string())?;
        s.write_all(&msg.bytes).await.map_err(|e| e.to_string())?;
        s.finish().map_err(|e| e.to_string())
    };
    timeout(STREAM_TIMEOUT, write)
        .await
        .map_err(|_| "stream write timed out".to_string())?
}

async fn peer_task(inner: Arc<Inner>, addr: SocketAddr, mut rx: mpsc::Receiver<Outgoing>) {
    let mut conn: Option<quinn::Connection> = None;
    let mut retry_at: Option<Instant> = None;
    loop {
        let msg = match timeout(PEER_IDLE_EXIT, rx.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(_) => {
                let mut peers = lock(&inner.peers);
                if rx.is_empty() {
                    peers.remove(&addr);
                    return;
                }
                continue;
            }
        };
        if conn.as_ref().is_some_and(|c| c.close_reason().is_some()) {
            conn = None;
        }
        // Follow the registry: a peer that reconnected to us replaced the old connection.
        if let Some(current) = registered(&inner, addr) {
            conn = Some(current);
        }
        let mut delivered = false;
        for _attempt in 0..2 {
            if conn.is_none() {
                conn = registered(&inner, addr);
            }
            if conn.is_none() {
                if retry_at.is_some_and(|t| Instant::now() < t) {
                    break;
                }
                conn = connection(&inner, addr).await;
                if conn.is_none() {
                    retry_at = Some(Instant::now() + RECONNECT_BACKOFF);
                    break;
                }
                retry_at = None;
            }
            let Some(c) = conn.as_ref() else { break };
            match send_on(c, &msg).await {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "gossip send failed; reconnecting");
                    conn = None;
                }
            }
        }
        if delivered {
            inner.counters.frames_sent.fetch_add(1, Ordering::Relaxed);
            inner
                .counters
                .bytes_sent
                .fetch_add(msg.bytes.len() as u64, Ordering::Relaxed);
        } else {
            inner.counters.send_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Accept incoming connections until the endpoint closes.
pub(crate) async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        if inner.incoming_conns.load(Ordering::Relaxed) >= MAX_INCOMING_CONNECTIONS {
            incoming.refuse();
            continue;
        }
        let inner2 = inner.clone();
        let task = tokio::spawn(async move {
            let conn = match incoming.accept() {
                Ok(connecting) => match timeout(CONNECT_TIMEOUT * 5, connecting).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "incoming gossip handshake failed");
                        inner2
                            .counters
                            .connect_failures
                            .fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {
                        inner2
                            .counters
                            .connect_failures
                            .fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "incoming gossip connection rejected");
                    return;
                }
            };
            inner2.incoming_conns.fetch_add(1, Ordering::Relaxed);
            register(&inner2, conn.clone(), true);
            serve_connection(&inner2, conn).await;
            inner2.incoming_conns.fetch_sub(1, Ordering::Relaxed);
        });
        inner.track(task.abort_handle());
    }
}

/// The peer's end-entity certificate (mutual TLS only).
pub(crate) fn peer_certificate(
    conn: &quinn::Connection,
) -> Option<rustls::pki_types::CertificateDer<'static>> {
    let any = conn.peer_identity()?;
    let certs = any
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certs.first().cloned()
}

/// Under mutual TLS a peer may only claim the node id its certificate is valid for (the CA
/// issues one certificate per node id); without TLS (loopback only) any claim is accepted.
pub(crate) fn claim_allowed(
    inner: &Inner,
    cert: Option<&rustls::pki_types::CertificateDer<'static>>,
    node_id: &str,
) -> bool {
    if !inner.mtls {
        return true;
    }
    let Some(cert) = cert else {
        return false;
    };
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(node_id) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

async fn serve_connection(inner: &Arc<Inner>, conn: quinn::Connection) {
    let cert = peer_certificate(&conn);
    let cert = cert.as_ref();
    let requests = async {
        while let Ok((send, recv)) = conn.accept_bi().await {
            let inner = inner.clone();
            let task = tokio::spawn(super::query::answer(inner.clone(), send, recv));
            inner.track(task.abort_handle());
        }
    };
    let datagrams = async {
        while let Ok(d) = conn.read_datagram().await {
            handle_frame(inner, &d, cert);
        }
    };
    let streams = async {
        while let Ok(mut recv) = conn.accept_uni().await {
            match timeout(STREAM_TIMEOUT, recv.read_to_end(MAX_FRAME)).await {
                Ok(Ok(buf)) => handle_frame(inner, &buf, cert),
                Ok(Err(quinn::ReadToEndError::TooLong)) => {
                    inner
                        .counters
                        .oversized_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = recv.stop(quinn::VarInt::from_u32(1));
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "gossip stream read failed");
                    inner
                        .counters
                        .invalid_frames
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    inner
                        .counters
                        .invalid_frames
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = recv.stop(quinn::VarInt::from_u32(2));
                }
            }
        }
    };
    tokio::join!(datagrams, streams, requests);
    let mut conns = lock(&inner.conns);
    let addr = conn.remote_address();
    if conns
        .get(&addr)
        .is_some_and(|c| c.stable_id() == conn.stable_id())
    {
        conns.remove(&addr);
    }
}

/// A live connection with `addr` in either direction: the endpoint is
/// both client and server on one socket, so a peer's outgoing connection
/// comes from its gossip address and can carry our frames too (one
/// handshake per pair instead of two).
fn registered(inner: &Inner, addr: SocketAddr) -> Option<quinn::Connection> {
    let mut conns = lock(&inner.conns);
    match conns.get(&addr) {
        Some(c) if c.close_reason().is_none() => Some(c.clone()),
        Some(_) => {
            conns.remove(&addr);
            None
        }
        None => None,
    }
}

/// Registers a connection for its remote address. A new *incoming* connection replaces the
/// registered one: a peer that dials us again has lost the old connection (typically it
/// restarted on the same address), and the old one would otherwise swallow our frames until
/// its idle timeout.
fn register(inner: &Inner, conn: quinn::Connection, incoming: bool) {
    let mut conns = lock(&inner.conns);
    let addr = conn.remote_address();
    let live = conns.get(&addr).is_some_and(|c| c.close_reason().is_none());
    if (incoming || !live) && (conns.contains_key(&addr) || conns.len() < MAX_PEERS) {
        conns.insert(addr, conn);
    }
}

/// Counts a claim that the peer certificate does not back; `true` when the claim is fine.
fn check_claim(
    inner: &Inner,
    cert: Option<&rustls::pki_types::CertificateDer<'static>>,
    node_id: &str,
    what: &str,
) -> bool {
    if claim_allowed(inner, cert, node_id) {
        return true;
    }
    tracing::warn!(
        claimed = node_id,
        what,
        "gossip frame for a node id the peer's certificate does not name; dropped"
    );
    inner
        .counters
        .identity_mismatches
        .fetch_add(1, Ordering::Relaxed);
    false
}

fn handle_frame(
    inner: &Arc<Inner>,
    bytes: &[u8],
    cert: Option<&rustls::pki_types::CertificateDer<'static>>,
) {
    let c = &inner.counters;
    c.bytes_received
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    let frame = match decode_frame(inner, bytes) {
        None => {
            c.unauthenticated.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Some(Ok(f)) => f,
        Some(Err(FrameError::TooLarge { .. })) => {
            c.oversized_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "invalid gossip frame dropped");
            c.invalid_frames.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    c.frames_received.fetch_add(1, Ordering::Relaxed);
    match frame {
        Frame::Swim(p) => {
            if inner.mtls {
                let Ok(h) = membership::packet_header(&p) else {
                    c.invalid_frames.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                if !check_claim(inner, cert, &h.src.node_id, "swim") {
                    return;
                }
            }
            if inner.driver_tx.try_send(DriverInput::Packet(p)).is_err() {
                c.send_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Frame::Hello {
            identity,
            reply,
            known_bump,
        } => {
            if !check_claim(inner, cert, &identity.node_id, "hello") {
                return;
            }
            let _ = inner.driver_tx.try_send(DriverInput::Hello {
                identity,
                reply,
                known_bump,
            });
        }
        Frame::Sync(p) => {
            if inner.mtls {
                match membership::sync_sender(&p) {
                    Err(_) => {
                        c.invalid_frames.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Ok(Some(from)) if !check_claim(inner, cert, &from, "sync") => return,
                    Ok(_) => {}
                }
            }
            if inner.driver_tx.try_send(DriverInput::Sync(p)).is_err() {
                c.send_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Only valid as the answer on a stream we opened (see `query`).
        Frame::Stats { .. } | Frame::StatsRequest => {
            c.invalid_frames.fetch_add(1, Ordering::Relaxed);
        }
        Frame::Broadcast { node_id, payload } => {
            if !check_claim(inner, cert, &node_id, "broadcast") {
                return;
            }
            // A dropped receiver just means nobody listens any more.
            let _ = inner.inbound.send((node_id, payload));
        }
    }
}

pub(crate) enum DriverInput {
    Packet(Vec<u8>),
    Sync(Vec<u8>),
    Hello {
        identity: NodeIdentity,
        reply: bool,
        known_bump: Option<u64>,
    },
    Leave(tokio::sync::oneshot::Sender<()>),
}

/// Owns the membership state machine; the only place it is mutated.
pub(crate) async fn driver(
    inner: Arc<Inner>,
    mut m: Membership,
    mut rx: mpsc::Receiver<DriverInput>,
) {
    publish(&inner, &mut m);
    loop {
        let deadline = m
            .next_deadline()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let input = tokio::select! {
            i = rx.recv() => match i {
                Some(i) => Some(i),
                None => return,
            },
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let now = Instant::now().into_std();
        let mut leave = None;
        match input {
            None => {}
            Some(DriverInput::Packet(p)) => {
                if let Err(e) = m.handle_packet(&p, now) {
                    tracing::debug!(error = %e, "invalid SWIM packet dropped");
                    inner
                        .counters
                        .invalid_frames
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(DriverInput::Sync(p)) => {
                if let Err(e) = m.handle_sync(&p, now) {
                    tracing::debug!(error = %e, "invalid sync packet dropped");
                    inner
                        .counters
                        .invalid_frames
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(DriverInput::Hello {
                identity,
                reply,
                known_bump,
            }) if identity.node_id != m.identity().node_id => {
                if let Some(k) = known_bump {
                    // The cluster remembers an earlier run of ours that would win: renew above.
                    m.renew_above(k, now);
                }
                if reply {
                    let known_bump = m
                        .known_bump(&identity.node_id)
                        .filter(|b| *b > identity.bump);
                    let hello = Frame::Hello {
                        identity: m.identity().clone(),
                        reply: false,
                        known_bump,
                    };
                    send_frame(&inner, identity.gossip_addr, &hello, Mode::Datagram);
                }
                let known = m
                    .peer(&identity.node_id, now)
                    .is_some_and(|e| e.identity == identity && e.state != super::MemberState::Dead);
                if !known {
                    m.announce(identity, now);
                }
            }
            Some(DriverInput::Hello { .. }) => {}
            Some(DriverInput::Leave(done)) => {
                m.leave(now);
                leave = Some(done);
            }
        }
        m.poll_timers(now);
        for (dst, data) in m.drain_outbox() {
            match &inner.udp {
                Some(sock) => super::udp::send(&inner, sock, Context::Swim, dst.swim_addr, &data),
                None => send_frame(
                    &inner,
                    dst.gossip_addr,
                    &Frame::Swim(data.to_vec()),
                    Mode::Datagram,
                ),
            }
        }
        for (dst, data) in m.drain_sync_outbox() {
            match &inner.udp {
                Some(sock) => super::udp::send(&inner, sock, Context::Sync, dst.swim_addr, &data),
                None => send_frame(
                    &inner,
                    dst.gossip_addr,
                    &Frame::Sync(data.to_vec()),
                    Mode::Datagram,
                ),
            }
        }
        publish(&inner, &mut m);
        if let Some(done) = leave {
            let _ = done.send(());
        }
    }
}

fn publish(inner: &Inner, m: &mut Membership) {
    let now = Instant::now().into_std();
    let version = m.peers_version(now);
    let active = m.active_count();
    let mut view = inner
        .view
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if view.me != *m.identity() {
        view.me = m.identity().clone();
    }
    view.active = active;
    if view.version == version {
        // Same members in the same order (both sorted by node id): only `last_seen` moved.
        for (v, p) in view.peers.iter_mut().zip(m.peers(now)) {
            v.last_seen = p.last_seen;
        }
    } else {
        view.peers.clear();
        view.peers.extend(m.peers(now).cloned());
        view.version = version;
    }
}
