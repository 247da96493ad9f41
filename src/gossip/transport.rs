//! QUIC transport (quinn), sending side: one endpoint used as client and server, one
//! cached connection per peer (whichever side opened it; both directions carry frames),
//! opened only when there is something to say: a join (`Hello`), an on-demand stats request,
//! or an invalidation while Redis is down. No keep-alives: an idle connection closes after
//! 30 s, so a quiet 100-node cluster holds no per-pair state.
//!
//! Each peer has an ordered sender task fed by a bounded queue ([`send_bytes`]). Hello goes
//! as a QUIC datagram when it fits (falling back to a uni stream); broadcast payloads always
//! go on uni streams, opened in order by the peer's sender task and read one at a time in
//! accept order by the receiver (`receive`), so a peer's broadcasts arrive reliably and in
//! order while the connection lives. Stats requests use a bidi stream (see `query`). SWIM
//! packets go on the plain UDP socket of `udp` when a cluster secret authenticates them,
//! else as QUIC datagrams (see `driver`).

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    sync::mpsc,
    time::{timeout, Instant},
};

use super::{
    connections::{register, registered, CONNECT_TIMEOUT, MAX_PEERS, STREAM_TIMEOUT},
    frame::{encode_frame, Frame},
    lock,
    peer_queue::{Mode, Outgoing, PeerHandle},
    receive, Inner,
};

const RECONNECT_BACKOFF: Duration = Duration::from_millis(300);
const PEER_IDLE_EXIT: Duration = Duration::from_secs(60);
const PEER_QUEUE: usize = 1024;

/// QUIC settings of every gossip connection: 30 s idle timeout, no keep-alives, small
/// stream limits, a 1 MiB datagram receive buffer.
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

/// Encodes, seals and queues `frame` for `addr`; one too large is counted and dropped.
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
    let task = tokio::spawn(async move { receive::serve_connection(&inner2, c2).await });
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
