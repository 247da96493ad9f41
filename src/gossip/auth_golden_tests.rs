//! Golden bytes of everything the cluster key authenticates: a bus payload sealed by
//! [`crate::wire_auth`], and SWIM packets, digest-sync packets and QUIC frames sealed by
//! gossip's [`super::auth`]. The constants were captured from the code before bus and gossip
//! shared one `ClusterKey` type; a change of any tag or derivation is a wire-format change
//! and fails here. The tags were checked independently with Python's `hmac`
//! (`hmac.new(secret, MAGIC + frame, sha256)` for the bus; the context label + data, the first
//! 16 bytes, for gossip).

use std::net::SocketAddr;

use super::{
    auth::{self, ClusterKey, Context},
    frame::{self, Frame},
    identity::NodeIdentity,
};

/// One secret for bus and gossip, as a node configures it (`cluster_secret`).
const SECRET: &[u8] = b"golden-cluster-secret-0123";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn bus_seal_is_unchanged() {
    let key = crate::wire_auth::ClusterKey::new(SECRET).expect("key");
    let sealed = crate::wire_auth::seal(&key, b"\x02invalidate user:*");
    assert_eq!(hex(&sealed), "a50102696e76616c696461746520757365723a2a0ef54279d746c32cea0a0bce946fde4de9a13ad2b0cdc056252bda30803b8a43");
    assert_eq!(
        crate::wire_auth::open(&key, &sealed),
        Ok(&b"\x02invalidate user:*"[..])
    );
}

#[test]
fn gossip_seals_are_unchanged() {
    let key = ClusterKey::new(SECRET).expect("key");
    let cases = [
        (
            Context::Swim,
            "666978656420676f73736970207061636b6574873f5c5c8b406315dc67636a8c9921ed",
        ),
        (
            Context::Sync,
            "666978656420676f73736970207061636b6574b3d059b8c52fcb9bf3933c2658b9a4ca",
        ),
        (
            Context::Frame,
            "666978656420676f73736970207061636b6574c45accb45e034a7731e63dad26cf18a5",
        ),
    ];
    for (ctx, want) in cases {
        let sealed = auth::seal(Some(&key), ctx, b"fixed gossip packet".to_vec());
        assert_eq!(hex(&sealed), want, "{ctx:?}");
        assert_eq!(
            auth::open(Some(&key), ctx, &sealed),
            Some(&b"fixed gossip packet"[..])
        );
    }
}

#[test]
fn gossip_frames_are_unchanged() {
    let key = ClusterKey::new(SECRET).expect("key");
    let addr = SocketAddr::from(([127, 0, 0, 1], 7400));
    let mut identity = NodeIdentity::new("n1".into(), addr, addr, "127.0.0.1:8080".into());
    identity.bump = 7;
    let frames = [
        (
            Frame::Hello {
                identity,
                reply: true,
                known_bump: Some(3),
            },
            "0201026e31007f000001fbe81c007f000001fbe81c0e3132372e302e302e313a3830383007010103f7d409e2bcb2430a23eb0664e683a495",
        ),
        (
            Frame::Broadcast {
                node_id: "n1".into(),
                payload: b"invalidate *".to_vec(),
            },
            "0204026e310c696e76616c6964617465202a2a9aa878820bde1cd527033ac499f273",
        ),
    ];
    for (f, want) in frames {
        let raw = frame::encode(&f).expect("encode");
        let sealed = auth::seal(Some(&key), Context::Frame, raw);
        assert_eq!(hex(&sealed), want);
    }
}
