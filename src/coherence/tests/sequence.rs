//! Sequences, gaps, epochs, first contact and own messages.

use super::*;

#[test]
fn defaults_and_initial_state() {
    let c = CoherenceConfig::default();
    assert_eq!(c.heartbeat_interval, Duration::from_millis(200));
    assert_eq!(c.echo_timeout, Duration::from_secs(1));
    let n = node("n1", 7, Instant::now());
    assert_eq!(n.link(), LinkState::Down);
    assert_eq!(n.counters(), CoherenceCounters::default());
    assert_eq!(n.node_id(), "n1");
    assert_eq!(n.epoch(), 7);
    assert_eq!(n.last_sent_seq(), 0);
    assert_eq!(n.last_self_echo(), None);
}

#[test]
fn outgoing_numbers_from_one() {
    let t = Instant::now();
    let mut n = node("n1", 9, t);
    for expected in 1..=3 {
        match n.outgoing(
            Some("roles"),
            Target::Key(String::from("k")),
            ChangeKind::Delete,
            t,
        ) {
            BusMessage::Invalidation(i) => {
                assert_eq!(i.seq, expected);
                assert_eq!(i.origin, "n1");
                assert_eq!(i.origin_epoch, 9);
                assert_eq!(i.category.as_deref(), Some("roles"));
                assert_eq!(i.target, Target::Key("k".into()));
                assert_eq!(i.kind, ChangeKind::Delete);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(n.last_sent_seq(), 3);
}

#[test]
fn in_order_messages_are_applied() {
    let t = Instant::now();
    let (mut n, base) = ready(&[("n2", 2)], t);
    for seq in 1..=5 {
        let p = format!("k{seq}");
        assert_eq!(n.handle_message(inv("n2", 2, seq, &p), t), apply(&p));
    }
    let d = delta(&n, base);
    assert_eq!((d.received, d.applied, d.flushes), (5, 5, 0));
    assert_eq!((d.gaps, d.duplicates, d.epoch_changes), (0, 0, 0));
}

#[test]
fn duplicate_is_applied_again_and_counted() {
    let t = Instant::now();
    let (mut n, base) = ready(&[("n2", 2)], t);
    assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
    assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
    // Removal is idempotent: a duplicate is applied again, never a flush.
    assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
    assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
    let d = delta(&n, base);
    assert_eq!(
        (d.received, d.applied, d.duplicates, d.flushes),
        (4, 2, 2, 0)
    );
}

#[test]
fn same_message_via_two_paths_numbered_once() {
    let t = Instant::now();
    let mut sender = node("n2", 2, t);
    let (mut n, base) = ready(&[("n2", 2)], t);
    let m1 = sender.outgoing(
        Some("permissions"),
        Target::Key(String::from("a")),
        ChangeKind::Set,
        t,
    );
    let m2 = sender.outgoing(
        Some("permissions"),
        Target::Key(String::from("b")),
        ChangeKind::Set,
        t,
    );
    // Redis delivers m1, QUIC delivers m1, QUIC delivers m2, Redis delivers m2.
    assert_eq!(n.handle_message(m1.clone(), t), apply("a"));
    assert_eq!(n.handle_message(m1, t), apply("a"));
    assert_eq!(n.handle_message(m2.clone(), t), apply("b"));
    assert_eq!(n.handle_message(m2, t), apply("b"));
    let d = delta(&n, base);
    assert_eq!((d.applied, d.duplicates, d.gaps, d.flushes), (2, 2, 0, 0));
}

#[test]
fn gap_flushes_and_counts() {
    let t = Instant::now();
    let (mut n, base) = ready(&[("n2", 2)], t);
    assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
    // 2 and 3 lost.
    assert_flush(n.handle_message(inv("n2", 2, 4, "d"), t));
    let d = delta(&n, base);
    assert_eq!((d.gaps, d.flushes, d.applied), (1, 1, 1));
    // Back in order after the gap.
    assert_eq!(n.handle_message(inv("n2", 2, 5, "e"), t), apply("e"));
    // Late arrival of a lost one: a duplicate for the numbering, applied all the same.
    assert_eq!(n.handle_message(inv("n2", 2, 3, "c"), t), apply("c"));
    assert_eq!(delta(&n, base).duplicates, 1);
}

#[test]
fn first_contact_baselines_and_flushes() {
    let t = Instant::now();
    let mut n = node("n1", 1, t);
    assert_flush(n.link_up(t));
    // Even seq 1: an earlier, never-seen epoch of n2 may have sent something we lost.
    assert_flush(n.handle_message(inv("n2", 2, 1, "a"), t));
    assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
    // First contact at seq 10, then in order.
    assert_flush(n.handle_message(inv("n3", 3, 10, "x"), t));
    assert_eq!(n.handle_message(inv("n3", 3, 11, "y"), t), apply("y"));
    assert_eq!(n.handle_message(inv("n3", 3, 9, "w"), t), apply("w"));
    // First contact by heartbeat: baseline at last_seq.
    assert_flush(n.handle_message(hb("n4", 4, 3), t));
    assert_eq!(n.handle_message(inv("n4", 4, 4, "z"), t), apply("z"));
    let c = n.counters();
    assert_eq!((c.gaps, c.epoch_changes, c.flushes), (0, 0, 4));
    assert_eq!((c.received, c.applied, c.duplicates), (6, 3, 1));
}

#[test]
fn origin_that_died_unseen_is_covered() {
    let t = Instant::now();
    let (mut n, base) = ready(&[], t);
    // n2 (epoch 5) starts after us, sends seq 1 and 2, all lost, and dies before we
    // ever hear from it. Its next life (epoch 6) looks brand new: seq 1.
    let mut old = node("n2", 5, t);
    let _lost1 = old.outgoing(
        Some("permissions"),
        Target::Key(String::from("lost1")),
        ChangeKind::Set,
        t,
    );
    let _lost2 = old.outgoing(
        Some("permissions"),
        Target::Key(String::from("lost2")),
        ChangeKind::Set,
        t,
    );
    let mut new = node("n2", 6, t + MS);
    let m = new.outgoing(
        Some("permissions"),
        Target::Key(String::from("k")),
        ChangeKind::Set,
        t + MS,
    );
    // Applying only "k" would leave lost1/lost2 stale forever: flush instead.
    assert_flush(n.handle_message(m, t + 2 * MS));
    assert_eq!(delta(&n, base).flushes, 1);
}

#[test]
fn heartbeat_reveals_lost_tail() {
    let t = Instant::now();
    let (mut n, base) = ready(&[("n2", 2)], t);
    assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
    // In sync: nothing.
    assert!(n.handle_message(hb("n2", 2, 1), t).is_empty());
    // Seq 2 and 3 lost, then the origin went quiet: its heartbeat tells.
    assert_flush(n.handle_message(hb("n2", 2, 3), t));
    assert_eq!(delta(&n, base).gaps, 1);
    // Only once.
    assert!(n.handle_message(hb("n2", 2, 3), t).is_empty());
    // A stale (reordered) heartbeat is harmless.
    assert!(n.handle_message(hb("n2", 2, 1), t).is_empty());
    assert_eq!(n.handle_message(inv("n2", 2, 4, "d"), t), apply("d"));
    let d = delta(&n, base);
    assert_eq!((d.flushes, d.gaps, d.received), (1, 1, 2));
}

/// A refused outgoing message (full queue) makes the sender skip a number: every
/// receiver flushes at its next message, whether an invalidation or a heartbeat.
#[test]
fn a_skipped_seq_makes_receivers_flush() {
    let t = Instant::now();
    let mut sender = node("n2", 2, t);
    let (mut n, base) = ready(&[("n2", 2)], t);
    let BusMessage::Invalidation(first) = sender.outgoing(
        Some("permissions"),
        Target::Key("a".into()),
        ChangeKind::Set,
        t,
    ) else {
        panic!("outgoing builds an invalidation");
    };
    assert_eq!(first.seq, 1);
    assert_eq!(
        n.handle_message(BusMessage::Invalidation(first), t),
        apply("a")
    );
    sender.skip_seq();
    assert_eq!(sender.last_sent_seq(), 2);
    assert_flush(n.handle_message(hb("n2", 2, sender.last_sent_seq()), t));
    let next = sender.outgoing(
        Some("permissions"),
        Target::Key("b".into()),
        ChangeKind::Set,
        t,
    );
    let BusMessage::Invalidation(next) = next else {
        panic!("outgoing builds an invalidation");
    };
    assert_eq!(next.seq, 3);
    assert_eq!(delta(&n, base).gaps, 1);
}

#[test]
fn origin_restart_flushes() {
    let t = Instant::now();
    let (mut n, base) = ready(&[("n2", 2)], t);
    assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
    assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
    // n2 restarted with epoch 22: its seq starts over.
    assert_flush(n.handle_message(inv("n2", 22, 1, "a2"), t));
    assert_eq!(n.handle_message(inv("n2", 22, 2, "b2"), t), apply("b2"));
    // Another restart, revealed by a heartbeat.
    assert_flush(n.handle_message(hb("n2", 23, 0), t));
    assert_eq!(n.handle_message(inv("n2", 23, 1, "a3"), t), apply("a3"));
    let d = delta(&n, base);
    assert_eq!((d.epoch_changes, d.flushes, d.gaps), (2, 2, 0));
}

#[test]
fn late_message_from_previous_epoch_is_a_duplicate() {
    let t = Instant::now();
    let (mut n, base) = ready(&[("n2", 2)], t);
    assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
    assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
    assert_flush(n.handle_message(inv("n2", 3, 1, "new1"), t));
    // The QUIC copy of an old message arrives after the restart: already seen (applied
    // again, no flush).
    assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
    assert!(n.handle_message(hb("n2", 2, 2), t).is_empty());
    assert_eq!(n.handle_message(inv("n2", 3, 2, "new2"), t), apply("new2"));
    // An old-epoch message we never saw still counts as a gap in that epoch.
    assert_flush(n.handle_message(inv("n2", 2, 4, "d"), t));
    let d = delta(&n, base);
    assert_eq!(
        (d.epoch_changes, d.duplicates, d.gaps, d.flushes),
        (1, 1, 1, 2)
    );
}

#[test]
fn forgotten_epoch_is_treated_as_new() {
    let t = Instant::now();
    let (mut n, base) = ready(&[("n2", 0)], t);
    for epoch in 1..=EPOCHS_PER_ORIGIN as u64 {
        assert_flush(n.handle_message(hb("n2", epoch, 0), t));
    }
    // Epoch 0 was the least recently used and has been evicted: flush again (safe).
    assert_flush(n.handle_message(inv("n2", 0, 1, "x"), t));
    // The most recent ones are still known.
    let last = EPOCHS_PER_ORIGIN as u64;
    assert_eq!(n.handle_message(inv("n2", last, 1, "y"), t), apply("y"));
    let d = delta(&n, base);
    assert_eq!(d.epoch_changes, EPOCHS_PER_ORIGIN as u64 + 1);
    assert_eq!(
        n.seqs.by_origin.get("n2").map(Vec::len),
        Some(EPOCHS_PER_ORIGIN)
    );
}

#[test]
fn self_messages_never_applied() {
    let t = Instant::now();
    let (mut n, base) = ready(&[], t);
    let m = n.outgoing(
        Some("permissions"),
        Target::Key(String::from("k")),
        ChangeKind::Set,
        t,
    );
    assert!(n.handle_message(m.clone(), t + MS).is_empty());
    assert!(n.handle_message(m, t + 2 * MS).is_empty());
    assert!(n.handle_message(hb("n1", 1, 1), t + 3 * MS).is_empty());
    assert_eq!(n.last_self_echo(), Some(t + 3 * MS));
    assert_eq!(delta(&n, base), CoherenceCounters::default());
}

#[test]
fn own_id_with_other_epoch_is_a_previous_incarnation() {
    let t = Instant::now();
    let (mut n, _) = ready(&[], t);
    // A late message from our previous life: handled like any origin (always safe).
    assert_flush(n.handle_message(inv("n1", 99, 5, "old"), t));
    assert_eq!(n.handle_message(inv("n1", 99, 6, "old2"), t), apply("old2"));
    assert_eq!(n.last_self_echo(), None);
}

/// Issue #23, item 5: a change sent only over QUIC (its L2 write failed) arrives after a
/// later number of its origin. The later number flushes (gap) and L1 may refill from the
/// old L2 value; the late QUIC copy is a duplicate for the numbering, but its target must
/// still be removed, and a strict origin is acked only after that removal.
#[test]
fn quic_only_change_after_a_later_number_is_still_applied() {
    let t = Instant::now();
    for later_by_heartbeat in [true, false] {
        let (mut n, base) = ready(&[("n2", 2)], t);
        assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
        // Change 2 of n2 goes over QUIC only; a later number arrives first over Redis.
        let later = if later_by_heartbeat {
            hb("n2", 2, 2)
        } else {
            inv("n2", 2, 3, "c")
        };
        assert_flush(n.handle_message(later, t + MS));
        // ... L1 refills "k" from L2 (still old) ...
        let mut late = inv("n2", 2, 2, "k");
        if let BusMessage::Invalidation(i) = &mut late {
            i.ack_to = Some("n2-inst".into());
        }
        let got = n.handle_message(late, t + 2 * MS);
        let ack = Action::SendAck {
            to: "n2-inst".into(),
            origin: "n2".into(),
            ack: BusMessage::Ack {
                from: "n1".into(),
                from_epoch: 1,
                origin_epoch: 2,
                seq: 2,
            },
        };
        assert_eq!(got, [apply("k"), vec![ack]].concat(), "apply, then ack");
        let d = delta(&n, base);
        assert_eq!((d.duplicates, d.gaps, d.flushes), (1, 1, 1));
    }
}

/// The heartbeats among `actions`, as their last seq.
fn heartbeats(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(BusMessage::Heartbeat { last_seq, .. }) => Some(*last_seq),
            _ => None,
        })
        .collect()
}

/// Writers number plain changes through the machine's stamp, the machine numbers its
/// strict changes and heartbeats: one sequence. A receiver fed everything in queue order
/// applies every change and never flushes; the same traffic with one writer's change lost
/// is caught by the next heartbeat (which would not happen if the heartbeat read a counter
/// of its own, behind the writers').
#[test]
fn writers_and_the_machine_number_in_one_sequence() {
    let t = Instant::now();
    let run = |lose: Option<u64>| {
        let mut writer = node("n2", 2, t);
        writer.link_up(t);
        let stamp = writer.stamp().clone();
        let (mut receiver, base) = ready(&[("n2", 2)], t);
        let mut queue = Vec::new();
        let mut at = t;
        for round in 0..4u64 {
            for _ in 0..3 {
                let mut numbered = stamp.lock();
                let key = Target::Key(format!("k{round}"));
                queue.push(stamp.invalidation(
                    &mut numbered,
                    Some("general"),
                    key,
                    ChangeKind::Set,
                ));
            }
            let mut numbered = stamp.lock();
            queue.push(writer.outgoing_strict(
                &mut numbered,
                Some("permissions"),
                Target::Key("p".into()),
                ChangeKind::Set,
                at,
            ));
            drop(numbered);
            at += Duration::from_millis(250);
            let beats = writer.tick(at);
            assert_eq!(heartbeats(&beats), vec![4 * (round + 1)]);
            queue.extend(beats.into_iter().filter_map(|a| match a {
                Action::Publish(m) => Some(m),
                _ => None,
            }));
        }
        assert_eq!(writer.last_sent_seq(), 16);
        let mut flushed = 0;
        for msg in queue {
            if let BusMessage::Invalidation(i) = &msg {
                if Some(i.seq) == lose {
                    continue;
                }
            }
            let actions = receiver.handle_message(msg, at);
            flushed += actions
                .iter()
                .filter(|a| matches!(a, Action::FlushAll(_)))
                .count();
        }
        (flushed, delta(&receiver, base))
    };
    let (flushed, d) = run(None);
    assert_eq!((flushed, d.gaps, d.received), (0, 0, 16));
    // Lose round 1's strict change (seq 8), the last number before a heartbeat: only the
    // heartbeat reveals it.
    let (flushed, d) = run(Some(8));
    assert_eq!((flushed, d.gaps), (1, 1));
}
