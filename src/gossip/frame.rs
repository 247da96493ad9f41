//! What travels between gossip nodes over QUIC ([`Frame`]), and its encoding: the crate's one
//! wire format ([`crate::wire`]: version byte + bincode 2, size-limited both ways), sealed
//! with the cluster secret when one is set (`auth`, context `Frame`). Every QUIC path (the
//! per-peer senders, the readers, the stats queries) encodes and decodes through here.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub(crate) use crate::wire::{
    decode, encode, WireError as FrameError, MAX_FRAME_BYTES as MAX_FRAME,
};

use super::{
    auth::{self, Context},
    identity::NodeIdentity,
    Inner,
};

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
    let raw = encode(frame)?;
    Ok(Bytes::from(auth::seal(
        inner.key.as_ref(),
        Context::Frame,
        raw,
    )))
}

/// Opens and decodes one frame; `None` when its tag does not verify.
pub(crate) fn decode_frame(inner: &Inner, bytes: &[u8]) -> Option<Result<Frame, FrameError>> {
    let data = auth::open(inner.key.as_ref(), Context::Frame, bytes)?;
    Some(decode::<Frame>(data))
}

/// `payload` framed as our bus broadcast; `None` (counted in `oversized_dropped`) when
/// it is too large.
pub(super) fn broadcast_frame(inner: &Inner, payload: Vec<u8>) -> Option<Bytes> {
    let node_id = inner.own_node_id();
    match encode_frame(inner, &Frame::Broadcast { node_id, payload }) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            inner
                .counters
                .oversized_dropped
                .fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
