//! Gossip/QUIC frames: `gossip::frame` is the crate's wire decoder (`wire::decode`) applied
//! to the transport's `Frame` enum. That enum is private to `src/gossip`, so this target
//! decodes a structural copy of it (same serde shape, so the same bincode paths: nested
//! enums, strings, byte vectors, socket addresses). Keep `MirrorFrame` in step with
//! `src/gossip/transport.rs`'s `Frame`.
#![no_main]

use std::net::SocketAddr;

use hybrid_cache::wire::{decode, encode};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct MirrorIdentity {
    node_id: String,
    gossip_addr: SocketAddr,
    http_addr: String,
    bump: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum MirrorFrame {
    Swim(Vec<u8>),
    Hello {
        identity: MirrorIdentity,
        reply: bool,
    },
    Stats {
        node_id: String,
        stats: Vec<u8>,
    },
    Broadcast(Vec<u8>),
}

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode::<MirrorFrame>(data) {
        let again = encode(&frame).expect("a decoded frame encodes");
        assert_eq!(decode::<MirrorFrame>(&again).expect("re-decodes"), frame);
    }
});
