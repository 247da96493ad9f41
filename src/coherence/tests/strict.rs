//! Strict categories: a write is acknowledged when every lease holder acked it, or after B.

use super::*;

// ---- strict categories: the ack rule --------------------------------------------------

/// A strict writer `n1` that has heard from `peers` (heartbeats) at `t`.
fn strict_writer(peers: &[&str], t: Instant) -> Coherence {
    let mut n = leased(t).with_ack_channel("n1-inst");
    for p in peers {
        assert_flush(n.handle_message(hb(p, 2, 0), t));
    }
    n
}

fn strict_change(n: &mut Coherence, t: Instant) -> (u64, BusMessage) {
    let m = n.outgoing_strict(Some("roles"), Target::Key("r".into()), ChangeKind::Set, t);
    match &m {
        BusMessage::Invalidation(i) => {
            assert_eq!(i.ack_to.as_deref(), Some("n1-inst"));
            (i.seq, m.clone())
        }
        _ => unreachable!(),
    }
}

fn ack_from(from: &str, seq: u64) -> BusMessage {
    BusMessage::Ack {
        from: from.into(),
        from_epoch: 2,
        origin_epoch: 1,
        seq,
    }
}

fn acked(seq: u64) -> Vec<Action> {
    vec![Action::Acknowledged {
        seq,
        by_timeout: false,
    }]
}

#[test]
fn strict_write_is_released_when_every_lease_holder_acked() {
    let t = Instant::now();
    let mut n = strict_writer(&["n2", "n3"], t);
    let (seq, echo) = strict_change(&mut n, t);
    // Nothing is decided before the PUBLISH returned (3 subscribers: n1, n2, n3).
    assert!(n.handle_message(ack_from("n2", seq), t + MS).is_empty());
    assert!(n.published(seq, 3, t + MS).is_empty());
    assert!(n.handle_message(echo, t + 2 * MS).is_empty()); // our own copy
    assert_eq!(
        n.handle_message(ack_from("n3", seq), t + 3 * MS),
        acked(seq)
    );
    assert_eq!(n.strict_pending(), 0);
    assert_eq!(n.counters().strict_acked, 1);
    // A later duplicate ack changes nothing.
    assert!(n.handle_message(ack_from("n3", seq), t + 4 * MS).is_empty());
}

#[test]
fn one_missing_ack_costs_exactly_the_bound() {
    let t = Instant::now();
    let mut n = strict_writer(&["n2", "n3"], t);
    let (seq, echo) = strict_change(&mut n, t);
    n.published(seq, 3, t + MS);
    n.handle_message(echo, t + MS);
    n.handle_message(ack_from("n2", seq), t + 2 * MS);
    // n3 is paused: its lease ends at most B after our publish returned.
    assert!(!n
        .tick(t + MS + B - MS)
        .iter()
        .any(|a| matches!(a, Action::Acknowledged { .. })));
    let at_b = n.tick(t + MS + B);
    assert!(at_b.contains(&Action::Acknowledged {
        seq,
        by_timeout: true
    }));
    assert_eq!(n.counters().strict_timeouts, 1);
}

#[test]
fn a_node_that_joined_mid_write_is_counted_by_redis() {
    let t = Instant::now();
    let mut n = strict_writer(&["n2"], t);
    let (seq, echo) = strict_change(&mut n, t);
    // n4 subscribed just before the PUBLISH: Redis counts 3, we only knew n2.
    n.published(seq, 3, t + MS);
    n.handle_message(echo, t + MS);
    assert!(n.handle_message(ack_from("n2", seq), t + 2 * MS).is_empty());
    assert_eq!(
        n.handle_message(ack_from("n4", seq), t + 3 * MS),
        acked(seq)
    );
}

#[test]
fn a_node_declared_dead_mid_write_leaves_the_named_set_not_the_count() {
    let t = Instant::now();
    let mut n = strict_writer(&["n2", "n3"], t);
    // Killed n3: Redis dropped its subscription, so the PUBLISH reached 2.
    let (seq, echo) = strict_change(&mut n, t);
    n.published(seq, 2, t + MS);
    n.handle_message(echo, t + MS);
    assert!(n.handle_message(ack_from("n2", seq), t + 2 * MS).is_empty());
    assert_eq!(n.peer_dead("n3", t + 3 * MS), acked(seq));
    // Declared dead but still subscribed (counted 3): its ack or B, never less.
    let (seq2, echo2) = strict_change(&mut n, t + 10 * MS);
    n.published(seq2, 3, t + 10 * MS);
    n.handle_message(echo2, t + 10 * MS);
    n.handle_message(ack_from("n2", seq2), t + 11 * MS);
    assert!(n.peer_dead("n3", t + 12 * MS).is_empty());
    assert!(n.tick(t + 10 * MS + B).contains(&Action::Acknowledged {
        seq: seq2,
        by_timeout: true
    }));
}

#[test]
fn an_ack_covers_every_earlier_change_and_a_failed_publish_waits_for_nothing() {
    let t = Instant::now();
    let mut n = strict_writer(&["n2"], t);
    let (s1, e1) = strict_change(&mut n, t);
    let (s2, e2) = strict_change(&mut n, t);
    let (s3, _) = strict_change(&mut n, t);
    n.publish_failed(s3);
    for (s, e) in [(s1, e1), (s2, e2)] {
        n.published(s, 2, t + MS);
        n.handle_message(e, t + MS);
    }
    let got = n.handle_message(ack_from("n2", s2), t + 2 * MS);
    assert_eq!(got, [acked(s1), acked(s2)].concat());
    assert_eq!(n.strict_pending(), 0);
    // Acks for another epoch of ours (a previous life) are ignored.
    let (s4, e4) = strict_change(&mut n, t + 3 * MS);
    n.published(s4, 2, t + 3 * MS);
    n.handle_message(e4, t + 3 * MS);
    let stale = BusMessage::Ack {
        from: "n2".into(),
        from_epoch: 2,
        origin_epoch: 999,
        seq: s4,
    };
    assert!(n.handle_message(stale, t + 4 * MS).is_empty());
}

#[test]
fn receivers_ack_strict_changes_after_applying_them() {
    let t = Instant::now();
    let mut writer = strict_writer(&[], t);
    let (seq, m) = strict_change(&mut writer, t);
    let mut r = Coherence::new("n9", 9, CoherenceConfig::with_bound(B), t);
    assert_flush(r.link_up(t));
    // First contact (flush) still acks: the flush covers the change.
    let first = r.handle_message(m, t);
    assert!(matches!(first[0], Action::FlushAll(_)));
    assert_eq!(
        first[1],
        Action::SendAck {
            to: "n1-inst".into(),
            origin: "n1".into(),
            ack: BusMessage::Ack {
                from: "n9".into(),
                from_epoch: 9,
                origin_epoch: 1,
                seq,
            }
        }
    );
    // In order: apply, then ack.
    let (_, m2) = strict_change(&mut writer, t);
    let second = r.handle_message(m2, t);
    assert!(matches!(second[0], Action::Apply { .. }));
    assert!(matches!(second[1], Action::SendAck { .. }));
}
