//! The shared state of a running gossip node ([`Inner`]): the QUIC endpoint, the SWIM socket,
//! the per-peer senders and connections, the counters, and the view of the membership that
//! the driver publishes for readers. Every task of the node holds it through an `Arc`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard,
    },
};

use tokio::sync::mpsc;

use super::{
    auth::ClusterKey,
    identity::NodeIdentity,
    input::DriverInput,
    membership::PeerEntry,
    peer_queue::PeerHandle,
    types::{Inbound, MemberState, StatsFn},
};

#[derive(Default)]
pub(super) struct Counters {
    pub(super) bytes_sent: AtomicU64,
    pub(super) bytes_received: AtomicU64,
    pub(super) frames_sent: AtomicU64,
    pub(super) frames_received: AtomicU64,
    pub(super) invalid_frames: AtomicU64,
    pub(super) oversized_dropped: AtomicU64,
    pub(super) connect_failures: AtomicU64,
    pub(super) send_dropped: AtomicU64,
    pub(super) identity_mismatches: AtomicU64,
    pub(super) unauthenticated: AtomicU64,
}

impl Counters {
    /// One frame of `n` bytes went out.
    pub(super) fn count_sent(&self, n: usize) {
        self.frames_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    }
}

pub(super) struct View {
    pub(super) me: NodeIdentity,
    pub(super) active: usize,
    pub(super) peers: Vec<PeerEntry>,
    /// The membership table version `peers` was copied from (see
    /// `Membership::peers_version`).
    pub(super) version: u64,
}

pub(super) struct Inner {
    pub(super) endpoint: quinn::Endpoint,
    pub(super) local_addr: SocketAddr,
    pub(super) advertise: SocketAddr,
    pub(super) max_stats_bytes: usize,
    pub(super) stats: StatsFn,
    pub(super) key: Option<ClusterKey>,
    /// SWIM socket (present when a cluster secret is set).
    pub(super) udp: Option<Arc<tokio::net::UdpSocket>>,
    pub(super) counters: Counters,
    pub(super) view: RwLock<View>,
    pub(super) peers: Mutex<HashMap<SocketAddr, PeerHandle>>,
    pub(super) conns: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    pub(super) tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    pub(super) driver_tx: mpsc::Sender<DriverInput>,
    pub(super) inbound: mpsc::UnboundedSender<Inbound>,
    pub(super) stopped: AtomicBool,
    pub(super) incoming_conns: AtomicUsize,
    /// Mutual TLS is on: a peer may only speak for the node id its certificate names.
    pub(super) mtls: bool,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// What gossip knows now (membership, this node's identity), for reading.
    pub(super) fn view(&self) -> RwLockReadGuard<'_, View> {
        self.view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This node's id as gossip announces it.
    pub(super) fn own_node_id(&self) -> String {
        self.view().me.node_id.clone()
    }

    pub(super) fn track(&self, h: tokio::task::AbortHandle) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(h);
    }

    /// The active (alive or suspect) peers: node id and QUIC address.
    pub(super) fn active_peers(&self) -> Vec<(String, SocketAddr)> {
        let view = self.view();
        view.peers
            .iter()
            .filter(|p| p.state != MemberState::Dead)
            .map(|p| (p.identity.node_id.clone(), p.identity.gossip_addr))
            .collect()
    }

    pub(super) fn stop_tasks(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        for (_, p) in lock(&self.peers).drain() {
            p.abort();
        }
    }
}
