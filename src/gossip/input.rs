//! What the membership driver is fed ([`DriverInput`]).
//!
//! Why its own file: the UDP socket, the QUIC receiver and the handle all feed the driver
//! through its channel, so the message type sits below all of them and the driver.

use super::identity::NodeIdentity;

/// What the driver is fed (by the readers, the UDP socket and the handle).
pub(crate) enum DriverInput {
    /// A SWIM packet, authenticated.
    Packet(Vec<u8>),
    /// A digest-sync packet, authenticated.
    Sync(Vec<u8>),
    /// Another node introduced itself (see `Frame::Hello`).
    Hello {
        identity: NodeIdentity,
        reply: bool,
        known_bump: Option<u64>,
    },
    /// Leave the cluster; the sender is answered once the leave notices are queued.
    Leave(tokio::sync::oneshot::Sender<()>),
}
