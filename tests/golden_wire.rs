//! Golden bytes of the bus wire format (CONTRACT §10): one fixed instance of every
//! [`BusMessage`] variant, every [`ChangeKind`] and every [`Target`] kind, and one payload
//! sealed with a fixed cluster secret, compared byte for byte with constants captured from
//! the code as it was before the architecture refactor (issue #24).
//!
//! Why: a refactor that moves the wire types must not change one byte of what nodes send each
//! other (a mixed-version cluster during a rolling upgrade would misread it). If a test here
//! fails, the format changed: either revert the change or bump `WIRE_VERSION` and re-capture
//! the constants on purpose. The gossip (QUIC/UDP) frames are private to `src/gossip`; their
//! golden bytes live in `src/gossip/golden_tests.rs`.

use hybrid_cache::wire::{
    decode, encode, BusMessage, ChangeKind, Invalidation, Target, WIRE_VERSION,
};
use hybrid_cache::wire_auth::{open, seal, ClusterKey};

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

/// `msg` encodes to exactly `golden`, and `golden` decodes back to `msg`.
fn assert_golden(name: &str, msg: &BusMessage, golden: &str) {
    let frame = encode(msg).expect("encodes");
    assert_eq!(hex(&frame), golden, "{name}: encoded bytes changed");
    let back: BusMessage = decode(&unhex(golden)).expect("golden decodes");
    assert_eq!(&back, msg, "{name}: golden bytes decode to another value");
}

fn invalidation(
    category: Option<&str>,
    target: Target,
    kind: ChangeKind,
    ack_to: Option<&str>,
) -> BusMessage {
    BusMessage::Invalidation(Invalidation {
        origin: "node-a".into(),
        origin_epoch: 0x0123_4567_89AB_CDEF,
        seq: 300,
        category: category.map(str::to_string),
        target,
        kind,
        sent_at_ms: 1_700_000_000_123,
        ack_to: ack_to.map(str::to_string),
    })
}

#[test]
fn version_byte_is_2() {
    assert_eq!(WIRE_VERSION, 2);
}

#[test]
fn invalidation_set_of_one_key() {
    assert_golden(
        "invalidation set key",
        &invalidation(
            Some("permissions"),
            Target::Key("get_roles:[1, 2]".into()),
            ChangeKind::Set,
            None,
        ),
        "0200066e6f64652d61fdefcdab8967452301fb2c01010b7065726d697373696f6e7300106765745f726f6c65733a5b312c20325d00fd7b68e5cf8b01000000",
    );
}

#[test]
fn invalidation_delete_of_a_glob_strict() {
    assert_golden(
        "invalidation delete glob",
        &invalidation(
            Some("users"),
            Target::Glob("user:*".into()),
            ChangeKind::Delete,
            Some("node-a"),
        ),
        "0200066e6f64652d61fdefcdab8967452301fb2c01010575736572730106757365723a2a01fd7b68e5cf8b01000001066e6f64652d61",
    );
}

#[test]
fn invalidation_of_everything_in_every_category() {
    assert_golden(
        "invalidation everything",
        &invalidation(None, Target::Everything, ChangeKind::Invalidate, None),
        "0200066e6f64652d61fdefcdab8967452301fb2c01000202fd7b68e5cf8b01000000",
    );
}

/// `Target::Tag` was appended (issue #26): variant 3, after the three above, whose bytes are
/// unchanged.
#[test]
fn invalidation_of_a_tag_in_every_category() {
    assert_golden(
        "invalidation tag",
        &invalidation(
            None,
            Target::Tag("user:123".into()),
            ChangeKind::Invalidate,
            None,
        ),
        "0200066e6f64652d61fdefcdab8967452301fb2c01000308757365723a31323302fd7b68e5cf8b01000000",
    );
}

#[test]
fn heartbeat() {
    assert_golden(
        "heartbeat",
        &BusMessage::Heartbeat {
            origin: "node-b".into(),
            origin_epoch: u64::MAX,
            last_seq: 251,
        },
        "0201066e6f64652d62fdfffffffffffffffffbfb00",
    );
}

#[test]
fn ack() {
    assert_golden(
        "ack",
        &BusMessage::Ack {
            from: "node-c".into(),
            from_epoch: 7,
            origin_epoch: 0x0123_4567_89AB_CDEF,
            seq: 65_536,
        },
        "0202066e6f64652d6307fdefcdab8967452301fc00000100",
    );
}

#[test]
fn ping() {
    assert_golden(
        "ping",
        &BusMessage::Ping {
            origin: "node-a".into(),
            origin_epoch: 0x0123_4567_89AB_CDEF,
            id: 1,
        },
        "0203066e6f64652d61fdefcdab896745230101",
    );
}

#[test]
fn peer_ping() {
    assert_golden(
        "peer ping",
        &BusMessage::PeerPing {
            origin: "node-a".into(),
            origin_epoch: 0x0123_4567_89AB_CDEF,
            id: 4_294_967_296,
        },
        "0204066e6f64652d61fdefcdab8967452301fd0000000001000000",
    );
}

#[test]
fn peer_grant() {
    assert_golden(
        "peer grant",
        &BusMessage::PeerGrant {
            from: "node-b".into(),
            from_epoch: 9,
            to: "node-a".into(),
            id: 4_294_967_296,
            upto: 0,
        },
        "0205066e6f64652d6209066e6f64652d61fd000000000100000000",
    );
}

#[test]
fn backlog_query() {
    // Added for the replay hold (issue #23 item 3): a new variant, the older bytes unchanged.
    assert_golden(
        "backlog query",
        &BusMessage::BacklogQuery {
            origin: "node-a".into(),
            origin_epoch: 0x0123_4567_89AB_CDEF,
            id: 1,
        },
        "0206066e6f64652d61fdefcdab896745230101",
    );
}

#[test]
fn backlog_answer() {
    assert_golden(
        "backlog answer",
        &BusMessage::BacklogAnswer {
            from: "node-b".into(),
            from_epoch: 9,
            to: "node-a".into(),
            id: 1,
            changes: vec![("roles".into(), Target::Key("k".into()))],
        },
        "0207066e6f64652d6209066e6f64652d61010105726f6c657300016b",
    );
}

#[test]
fn invalidation_struct_alone() {
    // `Invalidation` is also decoded on its own (fuzz target, replay); pin its shape too.
    let BusMessage::Invalidation(inv) = invalidation(
        Some("general"),
        Target::Key("k".into()),
        ChangeKind::Set,
        None,
    ) else {
        unreachable!()
    };
    let frame = encode(&inv).expect("encodes");
    let golden =
        "02066e6f64652d61fdefcdab8967452301fb2c01010767656e6572616c00016b00fd7b68e5cf8b01000000";
    assert_eq!(hex(&frame), golden);
    assert_eq!(
        decode::<Invalidation>(&unhex(golden)).expect("decodes"),
        inv
    );
}

#[test]
fn sealed_payload_with_a_fixed_secret() {
    let key = ClusterKey::new(b"golden-cluster-secret-0123456789").expect("key");
    let msg = BusMessage::Heartbeat {
        origin: "node-b".into(),
        origin_epoch: 3,
        last_seq: 4,
    };
    let frame = encode(&msg).expect("encodes");
    let sealed = seal(&key, &frame);
    let golden = "a5010201066e6f64652d620304ba2f7944e4275d8faaf00e53d5be0e554371e4bd2cb3e0224c547efe58c53449";
    assert_eq!(hex(&sealed), golden, "sealed payload bytes changed");
    let golden = unhex(golden);
    let opened = open(&key, &golden).expect("golden opens");
    assert_eq!(opened, &frame[..]);
    assert_eq!(decode::<BusMessage>(opened).expect("decodes"), msg);
}
