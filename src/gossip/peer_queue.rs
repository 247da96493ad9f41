//! What a peer's sender task is fed: a frame and how it should travel ([`Outgoing`],
//! [`Mode`]), and the handle of the task ([`PeerHandle`]) the node's state keeps per peer.
//!
//! Why its own file: the node's state holds the handles while `transport` runs the tasks,
//! so the types sit below both and the state does not import the transport.

use bytes::Bytes;
use tokio::sync::mpsc;

/// How a frame should travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Datagram when it fits, else a uni stream.
    Datagram,
    /// Always a uni stream (reliable, ordered per peer).
    Stream,
}

/// A frame queued for a peer's sender task.
pub(crate) struct Outgoing {
    pub(super) bytes: Bytes,
    pub(super) mode: Mode,
}

/// A peer's sender task: its queue and the handle to stop it.
pub(crate) struct PeerHandle {
    pub(super) tx: mpsc::Sender<Outgoing>,
    pub(super) abort: tokio::task::AbortHandle,
}

impl PeerHandle {
    /// Stops the sender task (queued frames are dropped).
    pub(crate) fn abort(&self) {
        self.abort.abort();
    }

    /// Nothing queued (a frame may still be in flight).
    pub(crate) fn queue_empty(&self) -> bool {
        self.tx.capacity() == self.tx.max_capacity()
    }
}
