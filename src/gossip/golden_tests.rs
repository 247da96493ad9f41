//! Golden bytes of the gossip formats: every QUIC [`Frame`] kind, the digest-sync
//! [`SyncMsg`] packets, one SWIM header as the foca codec writes it, and the cluster-secret
//! seal of each [`Context`], compared byte for byte with constants captured from the code as
//! it was before the architecture refactor (issue #24).
//!
//! Why here and not under `tests/`: these types are private to `src/gossip`. Why at all: a
//! refactor must not change one byte of what nodes send each other. If a test here fails, the
//! format changed; revert it, or change the format on purpose and re-capture the constants.
//! The bus (Redis) frames have their golden test in `tests/golden_wire.rs`.

use std::net::SocketAddr;

use foca::{Codec, Header, Member, Message, State};

use super::{
    auth::{ClusterKey, Context},
    frame::{self, Frame},
    identity::NodeIdentity,
    membership::SyncMsg,
};

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a lower-case hex string (test constants only).
fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex constant"))
        .collect()
}

/// A fixed identity (`NodeIdentity::new` draws a random bump; it is overwritten).
fn identity(node_id: &str, bump: u64) -> NodeIdentity {
    let gossip: SocketAddr = "10.0.0.1:7946".parse().expect("addr");
    let swim: SocketAddr = "[fd00::2]:7947".parse().expect("addr");
    let mut id = NodeIdentity::new(node_id.into(), gossip, swim, "10.0.0.1:8080".into());
    id.bump = bump;
    id
}

/// `f` encodes to exactly `golden`, and `golden` decodes back to the same frame.
fn assert_frame(name: &str, f: &Frame, golden: &str) {
    let bytes = frame::encode(f).expect("encodes");
    assert_eq!(hex(&bytes), golden, "{name}: encoded bytes changed");
    let back: Frame = frame::decode(&unhex(golden)).expect("golden decodes");
    assert_eq!(
        format!("{back:?}"),
        format!("{f:?}"),
        "{name}: golden bytes decode to another frame"
    );
}

#[test]
fn frame_swim() {
    assert_frame(
        "swim",
        &Frame::Swim(vec![0xde, 0xad, 0xbe, 0xef]),
        "020004deadbeef",
    );
}

#[test]
fn frame_hello() {
    assert_frame(
        "hello",
        &Frame::Hello {
            identity: identity("node-a", 0x0123_4567_89AB_CDEF),
            reply: true,
            known_bump: Some(42),
        },
        "0201066e6f64652d61000a000001fb0a1f01fd000000000000000000000000000002fb0b1f0d31302e302e302e313a38303830fdefcdab896745230101012a",
    );
    assert_frame(
        "hello without known bump",
        &Frame::Hello {
            identity: identity("node-b", 1),
            reply: false,
            known_bump: None,
        },
        "0201066e6f64652d62000a000001fb0a1f01fd000000000000000000000000000002fb0b1f0d31302e302e302e313a38303830010000",
    );
}

#[test]
fn frame_stats_request() {
    assert_frame("stats request", &Frame::StatsRequest, "0202");
}

#[test]
fn frame_stats() {
    assert_frame(
        "stats",
        &Frame::Stats {
            node_id: "node-a".into(),
            stats: br#"{"node_id":"node-a"}"#.to_vec(),
        },
        "0203066e6f64652d61147b226e6f64655f6964223a226e6f64652d61227d",
    );
}

#[test]
fn frame_broadcast() {
    assert_frame(
        "broadcast",
        &Frame::Broadcast {
            node_id: "node-a".into(),
            payload: vec![2, 0, 1, 2, 3],
        },
        "0204066e6f64652d61050200010203",
    );
}

#[test]
fn frame_sync() {
    assert_frame("sync", &Frame::Sync(vec![0, 1, 0xff]), "0205030001ff");
}

/// The digest-sync packets are plain bincode (standard, limit 4096), no version byte.
fn sync_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<4096>()
}

fn assert_sync(name: &str, msg: &SyncMsg, golden: &str) {
    let bytes = bincode::serde::encode_to_vec(msg, sync_config()).expect("encodes");
    assert_eq!(hex(&bytes), golden, "{name}: encoded bytes changed");
    let (back, used): (SyncMsg, usize) =
        bincode::serde::decode_from_slice(&unhex(golden), sync_config()).expect("decodes");
    assert_eq!(used, golden.len() / 2);
    assert_eq!(
        format!("{back:?}"),
        format!("{msg:?}"),
        "{name}: decodes differently"
    );
}

#[test]
fn sync_digest() {
    assert_sync(
        "digest",
        &SyncMsg::Digest {
            from: identity("node-a", 5),
            salt: 0xFEED_FACE_CAFE_BEEF,
            hashes: 7,
            bits: vec![0b1010_0101, 0, 0xff],
        },
        "00066e6f64652d61000a000001fb0a1f01fd000000000000000000000000000002fb0b1f0d31302e302e302e313a3830383005fdefbefecacefaedfe0703a500ff",
    );
}

#[test]
fn sync_members() {
    assert_sync(
        "members",
        &SyncMsg::Members(vec![
            Member::new(identity("node-b", 2), 3, State::Alive),
            Member::new(identity("node-c", 4), 0, State::Suspect),
            Member::new(identity("node-d", 6), 1, State::Down),
        ]),
        "0103066e6f64652d62000a000001fb0a1f01fd000000000000000000000000000002fb0b1f0d31302e302e302e313a38303830020300066e6f64652d63000a000001fb0a1f01fd000000000000000000000000000002fb0b1f0d31302e302e302e313a38303830040001066e6f64652d64000a000001fb0a1f01fd000000000000000000000000000002fb0b1f0d31302e302e302e313a38303830060102",
    );
}

#[test]
fn swim_header() {
    // The SWIM packet body is foca's; the header encoding is the codec this crate picks
    // (bincode standard, limit 4096, see `membership::codec`).
    let mut codec = foca::BincodeCodec(bincode::config::standard().with_limit::<4096>());
    let header = Header {
        src: identity("node-a", 10),
        src_incarnation: 2,
        dst: identity("node-b", 11),
        message: Message::Ping(77),
    };
    let mut buf = Vec::new();
    codec.encode_header(&header, &mut buf).expect("encodes");
    let golden = "066e6f64652d61000a000001fb0a1f01fd000000000000000000000000000002fb0b1f0d31302e302e302e313a383038300a02066e6f64652d62000a000001fb0a1f01fd000000000000000000000000000002fb0b1f0d31302e302e302e313a383038300b004d";
    assert_eq!(hex(&buf), golden, "swim header bytes changed");
    let golden = unhex(golden);
    let back = codec.decode_header(&golden[..]).expect("decodes");
    assert_eq!(back, header);
}

#[test]
fn seal_of_each_context() {
    let key = ClusterKey::new(b"golden-gossip-secret").expect("key");
    for (ctx, golden) in [
        (
            Context::Swim,
            "7061796c6f61641db59c9417a2964e53a0b304f78338e6",
        ),
        (
            Context::Sync,
            "7061796c6f6164fcd793ed399bc9073f8f5e3b254b8a84",
        ),
        (
            Context::Frame,
            "7061796c6f61648f41253150496192ad2f3b0b40f79297",
        ),
    ] {
        let sealed = key.seal(ctx, b"payload");
        assert_eq!(hex(&sealed), golden, "{ctx:?}: sealed bytes changed");
        assert_eq!(key.open(ctx, &unhex(golden)), Some(&b"payload"[..]));
    }
}
