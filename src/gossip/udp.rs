//! SWIM over a plain UDP socket, every packet sealed with the cluster secret.
//!
//! Why not QUIC for SWIM: a probe goes to a random member each period, so over a minute every
//! node talks to every other one. Over QUIC that is one handshake and one connection per pair
//! (about 10,000 at 100 nodes, kept alive or re-established), which costs more CPU and bytes
//! than the SWIM packets themselves and grows with N. A sealed UDP datagram costs the packet
//! plus a 16-byte tag and no state, so per-node traffic stays what SWIM needs.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
};

use tokio::net::UdpSocket;

use super::{
    auth::{Context, TAG_LEN},
    input::DriverInput,
    membership::MAX_PACKET,
    Inner,
};

/// Sends one SWIM packet (`Context::Swim`) or digest-sync packet (`Context::Sync`); never
/// blocks: a full socket buffer drops it, like the network would.
pub(crate) fn send(inner: &Inner, sock: &UdpSocket, ctx: Context, to: SocketAddr, packet: &[u8]) {
    if inner.stopped.load(Ordering::Relaxed) {
        return;
    }
    let Some(key) = inner.key.as_ref() else {
        return;
    };
    let sealed = key.seal(ctx, packet);
    let c = &inner.counters;
    match sock.try_send_to(&sealed, to) {
        Ok(n) => {
            c.frames_sent.fetch_add(1, Ordering::Relaxed);
            c.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::trace!(%to, error = %e, "SWIM packet not sent");
            c.send_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads SWIM packets until the socket fails; hands authenticated ones to the driver.
pub(crate) async fn recv_loop(inner: Arc<Inner>, sock: Arc<UdpSocket>) {
    let Some(key) = inner.key.clone() else {
        return;
    };
    let mut buf = vec![0u8; MAX_PACKET + TAG_LEN + 1];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP "port unreachable" from a dead peer surfaces here on some systems.
                tracing::trace!(error = %e, "SWIM socket receive error");
                continue;
            }
        };
        let c = &inner.counters;
        c.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
        if n > MAX_PACKET + TAG_LEN {
            c.oversized_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let input = if let Some(packet) = key.open(Context::Swim, &buf[..n]) {
            DriverInput::Packet(packet.to_vec())
        } else if let Some(packet) = key.open(Context::Sync, &buf[..n]) {
            DriverInput::Sync(packet.to_vec())
        } else {
            tracing::debug!(%from, "SWIM packet with a bad tag dropped");
            c.unauthenticated.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        c.frames_received.fetch_add(1, Ordering::Relaxed);
        if inner.driver_tx.try_send(input).is_err() {
            c.send_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
