//! The registry of live QUIC connections, one per peer address whichever side opened it,
//! and the QUIC timeouts both directions share.
//!
//! Why its own file: the sending side (`transport`) and the receiving side (`receive`) both
//! register connections; with the registry below both, neither imports the other for it.

use std::{net::SocketAddr, time::Duration};

use super::{lock, Inner};

/// Longest an outgoing QUIC handshake may take (incoming ones get five times as long).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a stream write or read of one frame may take.
pub(super) const STREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Most peers with a sender task, and most registered connections.
pub(super) const MAX_PEERS: usize = 4096;

/// A live connection with `addr` in either direction: the endpoint is
/// both client and server on one socket, so a peer's outgoing connection
/// comes from its gossip address and can carry our frames too (one
/// handshake per pair instead of two).
pub(super) fn registered(inner: &Inner, addr: SocketAddr) -> Option<quinn::Connection> {
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
pub(super) fn register(inner: &Inner, conn: quinn::Connection, incoming: bool) {
    let mut conns = lock(&inner.conns);
    let addr = conn.remote_address();
    let live = conns.get(&addr).is_some_and(|c| c.close_reason().is_none());
    if (incoming || !live) && (conns.contains_key(&addr) || conns.len() < MAX_PEERS) {
        conns.insert(addr, conn);
    }
}
