//! The link state, heartbeats and the self-echo that detects a silent subscription.

use super::*;

#[test]
fn link_up_flushes_and_link_state_follows() {
    let t = Instant::now();
    let mut n = node("n1", 1, t);
    assert_eq!(n.link(), LinkState::Down);
    assert_flush(n.link_up(t));
    assert_eq!(n.link(), LinkState::Up);
    assert!(n.link_down(t + MS).is_empty());
    assert_eq!(n.link(), LinkState::Down);
    assert_eq!(n.counters().flushes, 1);
    assert_flush(n.link_up(t + 2 * MS));
    assert_eq!(n.link(), LinkState::Up);
    assert_eq!(n.counters().flushes, 2);
}

#[test]
fn tracking_survives_an_outage() {
    let t = Instant::now();
    let (mut n, base) = ready(&[("n2", 2)], t);
    assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
    n.link_down(t);
    // Nothing lost meanwhile: no second flush after the link-up one.
    assert_flush(n.link_up(t + MS));
    assert_eq!(n.handle_message(inv("n2", 2, 2, "b"), t), apply("b"));
    // Lost during the next outage: a gap, flushed again (it may have been lost after
    // the link-up flush, the two cases look the same).
    n.link_down(t);
    assert_flush(n.link_up(t + 2 * MS));
    assert_flush(n.handle_message(inv("n2", 2, 4, "d"), t));
    let d = delta(&n, base);
    assert_eq!((d.flushes, d.gaps, d.applied), (3, 1, 2));
}

#[test]
fn messages_are_handled_while_link_down() {
    // The QUIC fallback path still delivers while Redis is down.
    let t = Instant::now();
    let (mut n, _) = ready(&[("n2", 2)], t);
    assert!(n.link_down(t).is_empty());
    assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
    assert_flush(n.handle_message(inv("n2", 2, 3, "c"), t));
    assert_eq!(n.link(), LinkState::Down);
}

#[test]
fn tick_emits_heartbeats_at_the_interval_only() {
    let t0 = Instant::now();
    let mut n = node("n1", 5, t0);
    // Down: no heartbeats.
    assert!(n.tick(t0 + 500 * MS).is_empty());
    let t = t0 + 1000 * MS;
    n.link_up(t);
    n.outgoing(
        Some("general"),
        Target::Key(String::from("k")),
        ChangeKind::Set,
        t,
    );
    let beat = vec![Action::Publish(hb("n1", 5, 1))];
    let mut beats = Vec::new();
    // Tick every 10 ms for 1 s, echoing every heartbeat immediately.
    for i in 0..=100u32 {
        let now = t + i * 10 * MS;
        let actions = n.tick(now);
        if !actions.is_empty() {
            assert_eq!(actions, beat);
            beats.push(i * 10);
            n.handle_message(hb("n1", 5, 1), now);
        }
    }
    assert_eq!(beats, vec![0, 200, 400, 600, 800, 1000]);
    assert_eq!(n.link(), LinkState::Up);
    // Sparse ticks never produce bursts.
    let later = t + 5000 * MS;
    assert_eq!(n.tick(later).len(), 1);
    assert!(n.tick(later).is_empty());
    assert!(n.tick(later + 199 * MS).is_empty());
    assert_eq!(n.tick(later + 200 * MS).len(), 1);
    // Heartbeats carry the last seq we sent.
    n.outgoing(
        Some("general"),
        Target::Key(String::from("k2")),
        ChangeKind::Set,
        later,
    );
    assert_eq!(
        n.tick(later + 400 * MS),
        vec![Action::Publish(hb("n1", 5, 2))]
    );
}

#[test]
fn missing_self_echo_reconnects() {
    let t = Instant::now();
    let (mut n, _) = ready(&[], t);
    // Silence is only checked once a heartbeat has been published.
    assert!(n.link_down(t).is_empty());
    assert_flush(n.link_up(t));
    assert_eq!(n.tick(t), vec![Action::Publish(hb("n1", 1, 0))]);
    let mut reconnect_at = None;
    for i in 1..=150u32 {
        let now = t + i * 10 * MS;
        let actions = n.tick(now);
        if actions.contains(&Action::Reconnect) {
            assert_eq!(actions, vec![Action::Reconnect]);
            reconnect_at = Some(i * 10);
            break;
        }
    }
    // First heartbeat at 0 ms; "longer than 1 s" => the first tick after 1000 ms.
    assert_eq!(reconnect_at, Some(1010));
    assert_eq!(n.link(), LinkState::Down);
    assert_eq!(n.counters().reconnects, 1);
    // Down: no more heartbeats, no more reconnects.
    assert!(n.tick(t + 5000 * MS).is_empty());
    // Resubscribed: flush, and the cycle starts over.
    assert_flush(n.link_up(t + 6000 * MS));
    assert_eq!(n.tick(t + 6000 * MS).len(), 1);
    assert!(!n.tick(t + 6900 * MS).contains(&Action::Reconnect));
    assert_eq!(n.link(), LinkState::Up);
}

#[test]
fn no_heartbeat_no_echo_check() {
    // Without a tick, no heartbeat has been published: however long the wait, no
    // reconnect is decided; the first tick publishes instead.
    let t = Instant::now();
    let (mut n, _) = ready(&[], t);
    let later = t + 60_000 * MS;
    assert_eq!(n.tick(later), vec![Action::Publish(hb("n1", 1, 0))]);
    assert_eq!(n.link(), LinkState::Up);
}

#[test]
fn slow_but_present_echo_keeps_link_up() {
    let t = Instant::now();
    let (mut n, _) = ready(&[], t);
    // Every heartbeat echoes 700 ms after it was sent (slow, within the 1 s timeout).
    let mut pending: Vec<Instant> = Vec::new();
    for i in 0..=500u32 {
        let now = t + i * 10 * MS;
        while pending.first().is_some_and(|sent| now >= *sent + 700 * MS) {
            pending.remove(0);
            n.handle_message(hb("n1", 1, 0), now);
        }
        for action in n.tick(now) {
            assert_ne!(action, Action::Reconnect, "at {} ms", i * 10);
            pending.push(now);
        }
    }
    assert_eq!(n.link(), LinkState::Up);
    assert_eq!(n.counters().reconnects, 0);
}

#[test]
fn own_invalidation_echo_counts_as_echo() {
    let t = Instant::now();
    let (mut n, _) = ready(&[], t);
    assert_eq!(n.tick(t).len(), 1);
    let m = n.outgoing(
        Some("general"),
        Target::Key(String::from("k")),
        ChangeKind::Set,
        t + 900 * MS,
    );
    assert!(n.handle_message(m, t + 950 * MS).is_empty());
    assert_eq!(n.last_self_echo(), Some(t + 950 * MS));
    // The heartbeat sent at 0 would have timed out after 1000 ms; the echo cleared it.
    assert!(!n.tick(t + 1100 * MS).contains(&Action::Reconnect));
    assert_eq!(n.link(), LinkState::Up);
}
