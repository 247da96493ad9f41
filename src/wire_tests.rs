//! Tests of the wire framing: round trips of every message shape, and every way a hostile
//! or damaged frame must be refused without a panic. The exact bytes are pinned by
//! `tests/golden_wire.rs`.

use super::*;

/// Seeded, deterministic randomness for fuzz-style tests.
struct Rng(rand::rngs::StdRng);
impl Rng {
    fn seeded(seed: u64) -> Rng {
        Rng(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
            seed,
        ))
    }
    fn next(&mut self) -> u64 {
        rand::Rng::gen(&mut self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        rand::Rng::gen_range(&mut self.0, 0..n)
    }
}

fn sample_invalidation() -> BusMessage {
    BusMessage::Invalidation(Invalidation {
        origin: "node-1".into(),
        origin_epoch: 0xDEAD_BEEF_1234_5678,
        seq: 42,
        category: Some("permissions".into()),
        target: Target::Glob("get_user_permissions:*".into()),
        kind: ChangeKind::Invalidate,
        sent_at_ms: 1_700_000_000_000,
        ack_to: None,
    })
}

fn sample_heartbeat() -> BusMessage {
    BusMessage::Heartbeat {
        origin: "node-2".into(),
        origin_epoch: u64::MAX,
        last_seq: 7,
    }
}

#[test]
fn roundtrip_all_message_shapes() {
    let mut msgs = vec![
        sample_invalidation(),
        sample_heartbeat(),
        BusMessage::Ping {
            origin: "n".into(),
            origin_epoch: 3,
            id: u64::MAX,
        },
        BusMessage::Ack {
            from: "n2".into(),
            from_epoch: 9,
            origin_epoch: 3,
            seq: 17,
        },
        BusMessage::PeerPing {
            origin: "n".into(),
            origin_epoch: 3,
            id: 4,
        },
        BusMessage::PeerGrant {
            from: "n2".into(),
            from_epoch: 9,
            to: "n".into(),
            id: 4,
            upto: u64::MAX,
        },
        BusMessage::BacklogQuery {
            origin: "n".into(),
            origin_epoch: 3,
            id: 1,
        },
        BusMessage::BacklogAnswer {
            from: "n2".into(),
            from_epoch: 9,
            to: "n".into(),
            id: 1,
            changes: vec![
                ("roles".into(), Target::Key("get_roles:[1, 2]".into())),
                ("menus".into(), Target::Everything),
            ],
        },
    ];
    let targets = [
        Target::Key("get_roles:[1, 2]".into()),
        Target::Glob("a*".into()),
        Target::Everything,
    ];
    for (kind, target) in [ChangeKind::Set, ChangeKind::Delete, ChangeKind::Invalidate]
        .into_iter()
        .zip(targets)
    {
        msgs.push(BusMessage::Invalidation(Invalidation {
            origin: "ü-node".into(),
            origin_epoch: 0,
            seq: u64::MAX,
            category: None,
            target,
            kind,
            sent_at_ms: 0,
            ack_to: Some("n-1".into()),
        }));
    }
    for msg in msgs {
        let frame = encode(&msg).unwrap();
        assert_eq!(frame[0], WIRE_VERSION);
        assert!(frame.len() <= MAX_FRAME_BYTES);
        let back: BusMessage = decode(&frame).unwrap();
        assert_eq!(back, msg);
    }
}

#[test]
fn empty_frame_rejected() {
    assert!(matches!(decode::<BusMessage>(&[]), Err(WireError::Empty)));
}

#[test]
fn wrong_version_rejected() {
    let mut frame = encode(&sample_invalidation()).unwrap();
    for v in [0u8, 1, 0xFF] {
        frame[0] = v;
        match decode::<BusMessage>(&frame) {
            Err(WireError::UnsupportedVersion(got)) => assert_eq!(got, v),
            other => panic!("expected UnsupportedVersion({v}), got {other:?}"),
        }
    }
}

#[test]
fn every_truncated_prefix_is_an_error() {
    for msg in [sample_invalidation(), sample_heartbeat()] {
        let frame = encode(&msg).unwrap();
        for len in 0..frame.len() {
            assert!(
                decode::<BusMessage>(&frame[..len]).is_err(),
                "prefix of {len}/{} bytes decoded",
                frame.len()
            );
        }
    }
}

#[test]
fn trailing_bytes_rejected() {
    let mut frame = encode(&sample_heartbeat()).unwrap();
    frame.extend_from_slice(&[0, 0, 0]);
    assert!(matches!(
        decode::<BusMessage>(&frame),
        Err(WireError::TrailingBytes(3))
    ));
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng::seeded(0x5EED_0001);
    let valid = encode(&sample_invalidation()).unwrap();
    for i in 0..5000 {
        let buf: Vec<u8> = if i % 2 == 0 {
            // Pure garbage, mostly with the right version byte so bincode sees it.
            let len = rng.below(200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if !b.is_empty() && rng.below(10) != 0 {
                b[0] = WIRE_VERSION;
            }
            b
        } else {
            // A valid frame with a few corrupted bytes.
            let mut b = valid.clone();
            for _ in 0..=rng.below(4) {
                let at = 1 + rng.below(b.len() as u64 - 1) as usize;
                b[at] = rng.next() as u8;
            }
            b
        };
        // Must return (Ok or Err), never panic.
        let _ = decode::<BusMessage>(&buf);
        let _ = decode::<Invalidation>(&buf);
    }
}

#[test]
fn oversized_input_rejected() {
    let mut frame = vec![0u8; MAX_FRAME_BYTES + 1];
    frame[0] = WIRE_VERSION;
    assert!(matches!(
        decode::<BusMessage>(&frame),
        Err(WireError::TooLarge { len, max }) if len == MAX_FRAME_BYTES + 1 && max == MAX_FRAME_BYTES
    ));
}

#[test]
fn oversized_message_not_encoded() {
    let msg = BusMessage::Invalidation(Invalidation {
        origin: "n1".into(),
        origin_epoch: 1,
        seq: 1,
        category: Some("general".into()),
        target: Target::Key("x".repeat(MAX_FRAME_BYTES)),
        kind: ChangeKind::Set,
        sent_at_ms: 0,
        ack_to: None,
    });
    assert!(matches!(
        encode(&msg),
        Err(WireError::TooLarge {
            max: MAX_FRAME_BYTES,
            ..
        })
    ));
}

#[test]
fn largest_allowed_message_roundtrips() {
    // Find the largest pattern that still fits and check it decodes.
    let make = |n: usize| {
        BusMessage::Invalidation(Invalidation {
            origin: "n1".into(),
            origin_epoch: 1,
            seq: 1,
            category: Some("general".into()),
            target: Target::Key("p".repeat(n)),
            kind: ChangeKind::Set,
            sent_at_ms: 0,
            ack_to: None,
        })
    };
    let overhead = encode(&make(0)).unwrap().len() + 2; // varint len grows by 2 bytes
    let msg = make(MAX_FRAME_BYTES - overhead);
    let frame = encode(&msg).unwrap();
    assert!(frame.len() <= MAX_FRAME_BYTES);
    assert_eq!(decode::<BusMessage>(&frame).unwrap(), msg);
}

#[test]
fn huge_inner_length_prefix_rejected_by_limit() {
    // Heartbeat variant (index 1), then the `origin` string's length prefix.
    // Varint encoding: 0xFD = a u64 follows (little endian).
    let frame_claiming = |claimed: u64| {
        let mut frame = vec![WIRE_VERSION, 1, 0xFD];
        frame.extend_from_slice(&claimed.to_le_bytes());
        frame.extend_from_slice(b"abc");
        frame
    };
    for claimed in [
        MAX_DECODE_BYTES as u64 + 1,
        u32::MAX as u64,
        u64::MAX / 2,
        u64::MAX,
    ] {
        match decode::<BusMessage>(&frame_claiming(claimed)) {
            Err(WireError::Decode(msg)) => assert!(
                msg.contains("LimitExceeded") || msg.contains("OutsideUsizeRange"),
                "claimed {claimed}: unexpected error {msg}"
            ),
            other => panic!("claimed {claimed}: expected a limit error, got {other:?}"),
        }
    }
    // Within the limit but more than the frame holds: truncated, still an error.
    assert!(matches!(
        decode::<BusMessage>(&frame_claiming(100_000)),
        Err(WireError::Decode(_))
    ));
}

#[test]
fn unknown_enum_variant_rejected() {
    let frame = [WIRE_VERSION, 9, 0, 0, 0];
    assert!(matches!(
        decode::<BusMessage>(&frame),
        Err(WireError::Decode(_))
    ));
}

#[test]
fn error_messages_are_clear() {
    assert_eq!(WireError::Empty.to_string(), "empty frame");
    assert_eq!(
        WireError::TooLarge {
            len: 70000,
            max: 65536
        }
        .to_string(),
        "frame too large: 70000 bytes (max 65536)"
    );
    assert_eq!(
        WireError::UnsupportedVersion(7).to_string(),
        "unsupported wire version 7 (expected 2)"
    );
    assert_eq!(
        WireError::TrailingBytes(2).to_string(),
        "2 trailing bytes after the message"
    );
}
