//! Strict categories: a write is acknowledged when every lease holder acked it, or after B.

use super::*;

// ---- strict categories: the ack rule --------------------------------------------------

/// The liveness window of `CoherenceConfig::with_bound(B)`.
const LIVENESS: Duration = Duration::from_secs(2);

/// `t - d` (the monotonic clock of a test machine has run for more than a few seconds).
fn before(t: Instant, d: Duration) -> Instant {
    t.checked_sub(d)
        .expect("monotonic clock younger than the test window")
}

/// A strict writer `n1`, subscribed since a whole liveness window before `t`, that has
/// heard from `peers` (heartbeats) at `t`.
fn strict_writer(peers: &[&str], t: Instant) -> Coherence {
    let mut n = leased(before(t, LIVENESS)).with_ack_channel("n1-inst");
    for p in peers {
        assert_flush(n.handle_message(hb(p, 2, 0), t));
    }
    n
}

fn strict_change(n: &mut Coherence, t: Instant) -> (u64, BusMessage) {
    let stamp = n.stamp().clone();
    let mut numbered = stamp.lock();
    let m = n.outgoing_strict(
        &mut numbered,
        Some("roles"),
        Target::Key("r".into()),
        ChangeKind::Set,
        t,
    );
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

/// Whether `actions` release any strict change.
fn released(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Acknowledged { .. }))
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
fn a_node_whose_subscription_died_is_waited_for_until_b() {
    let t = Instant::now();
    let mut n = strict_writer(&["n2", "n3"], t);
    // n3's subscription died just now (Redis counts 2) but its lease may still be valid:
    // heard within the window, it must ack, or B must pass. Gossip declaring it dead
    // changes nothing (it may be cut off from its peers only).
    let (seq, echo) = strict_change(&mut n, t);
    n.published(seq, 2, t + MS);
    n.handle_message(echo, t + MS);
    assert!(n.handle_message(ack_from("n2", seq), t + 2 * MS).is_empty());
    assert!(!released(&n.tick(t + MS + B - MS)));
    assert!(n.tick(t + MS + B).contains(&Action::Acknowledged {
        seq,
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

// ---- issue #23, item 6: right after a (re)subscription ---------------------------------

/// A writer that has not been subscribed for a whole liveness window cannot know every
/// lease holder (one whose subscription died within B is neither heard nor counted by
/// Redis): its strict writes wait B, whatever the acks and the count say.
#[test]
fn strict_write_right_after_subscribing_waits_b() {
    let t = Instant::now();
    // Just started: subscribed at t, hears n2 at once.
    let mut n = leased(t).with_ack_channel("n1-inst");
    assert_flush(n.handle_message(hb("n2", 2, 0), t));
    let (seq, echo) = strict_change(&mut n, t);
    assert!(n.published(seq, 2, t + MS).is_empty());
    n.handle_message(echo, t + MS);
    // Every named node acked and the count is met: still not before B.
    assert!(n.handle_message(ack_from("n2", seq), t + 2 * MS).is_empty());
    assert!(!released(&n.tick(t + MS + B - MS)));
    assert!(n.tick(t + MS + B).contains(&Action::Acknowledged {
        seq,
        by_timeout: true
    }));

    // A whole window later, acks release a write at once.
    let later = t + LIVENESS;
    assert_flush(n.handle_message(hb("n2", 2, 1), later));
    let (s2, e2) = strict_change(&mut n, later);
    n.published(s2, 2, later);
    n.handle_message(e2, later);
    assert_eq!(n.handle_message(ack_from("n2", s2), later + MS), acked(s2));

    // A resubscription starts a new window: B again.
    let mut resub = strict_writer(&["n2"], t);
    resub.link_down(t);
    assert_flush(resub.link_up(t + MS));
    let (s3, e3) = strict_change(&mut resub, t + 2 * MS);
    resub.published(s3, 2, t + 2 * MS);
    resub.handle_message(e3, t + 2 * MS);
    assert!(resub
        .handle_message(ack_from("n2", s3), t + 3 * MS)
        .is_empty());
    assert!(resub.tick(t + 2 * MS + B).contains(&Action::Acknowledged {
        seq: s3,
        by_timeout: true
    }));
}

/// The window is long enough for any bound: a lease holder heartbeats at least every
/// heartbeat interval, and its lease rests on a ping sent within B.
#[test]
fn liveness_window_covers_b_and_a_heartbeat() {
    for ms in [4u64, 100, 1_000, 5_000, 60_000] {
        let c = CoherenceConfig::with_bound(Duration::from_millis(ms));
        assert!(
            c.liveness >= c.staleness_bound + 2 * c.heartbeat_interval,
            "{c:?}"
        );
        assert!(c.liveness >= LIVENESS);
    }
    assert_eq!(CoherenceConfig::with_bound(B).liveness, LIVENESS);
}
