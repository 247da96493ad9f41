//! The freshness lease: pings, echoes, renewals and revocations; what cannot be applied exactly.

use super::*;

#[test]
fn no_lease_until_a_ping_echoes_then_it_runs_b_from_the_send_time() {
    let t = Instant::now();
    let mut n = leased(t);
    assert!(!n.lease_held(t));
    let sent = pings(&n.tick(t));
    assert_eq!(sent, vec![1]);
    // Echo 30 ms later: the lease runs until send time + B, not echo time + B.
    assert_eq!(
        n.handle_message(echo(1), t + 30 * MS),
        vec![Action::Renew { until: t + B }]
    );
    assert!(n.lease_held(t + 30 * MS));
    assert!(n.lease_held(t + B));
    assert!(!n.lease_held(t + B + MS));
}

#[test]
fn invalidations_before_the_echo_are_applied_before_the_renewal() {
    let t = Instant::now();
    let mut n = leased(t);
    assert_flush(n.handle_message(hb("n2", 2, 0), t)); // first contact
    n.tick(t);
    // Redis order: n2's invalidation, then our ping.
    assert_eq!(n.handle_message(inv("n2", 2, 1, "k"), t + MS), apply("k"));
    assert_eq!(
        n.handle_message(echo(1), t + 2 * MS),
        vec![Action::Renew { until: t + B }]
    );
}

#[test]
fn pings_go_out_every_quarter_bound_and_older_echoes_never_shorten() {
    let t = Instant::now();
    let mut n = leased(t);
    let mut ids = Vec::new();
    for step in 0..=4u32 {
        ids.extend(pings(&n.tick(t + step * (B / 4))));
    }
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    // Echo of ping 3 (sent at 2B/4), then the late echo of ping 2: ignored.
    let until3 = t + 2 * (B / 4) + B;
    assert_eq!(
        n.handle_message(echo(3), t + 60 * MS),
        vec![Action::Renew { until: until3 }]
    );
    assert!(n.handle_message(echo(2), t + 61 * MS).is_empty());
    assert_eq!(n.lease_until(), Some(until3));
}

#[test]
fn link_down_revokes_and_old_pings_do_not_renew_after_reconnect() {
    let t = Instant::now();
    let mut n = leased(t);
    n.tick(t);
    n.handle_message(echo(1), t + MS);
    assert!(n.lease_held(t + MS));
    n.tick(t + 25 * MS); // ping 2 in flight
    assert_eq!(n.link_down(t + 26 * MS), vec![Action::Revoke]);
    assert!(!n.lease_held(t + 26 * MS));
    assert_eq!(n.counters().lease_lapses, 1);
    // Reconnect: flush first; the echo of a ping sent before it proves nothing.
    assert_flush(n.link_up(t + 40 * MS));
    assert!(n.handle_message(echo(2), t + 41 * MS).is_empty());
    assert!(!n.lease_held(t + 41 * MS));
    let fresh = pings(&n.tick(t + 42 * MS));
    assert_eq!(fresh.len(), 1);
    assert_eq!(
        n.handle_message(echo(fresh[0]), t + 43 * MS),
        vec![Action::Renew {
            until: t + 42 * MS + B
        }]
    );
}

#[test]
fn a_pause_lapses_the_lease_by_the_clock_alone() {
    let t = Instant::now();
    let mut n = leased(t);
    n.tick(t);
    n.handle_message(echo(1), t + MS);
    // The process is stopped for 3 s: no tick ran, yet the lease is over.
    let after = t + 3000 * MS;
    assert!(!n.lease_held(after));
    let actions = n.tick(after);
    assert_eq!(actions.first(), Some(&Action::Revoke));
    assert_eq!(n.counters().lease_lapses, 1);
    // Messages queued during the pause are applied before any renewal: the echo of
    // the ping sent now comes after them.
    let p = pings(&actions);
    assert_eq!(p.len(), 1);
    assert_eq!(
        n.handle_message(echo(p[0]), after + MS),
        vec![Action::Renew { until: after + B }]
    );
}

#[test]
fn silent_subscription_revokes_and_reconnects() {
    let t = Instant::now();
    let mut n = leased(t);
    n.tick(t);
    n.handle_message(echo(1), t + MS);
    let mut now = t;
    let mut saw = Vec::new();
    while now < t + 2000 * MS {
        now += 10 * MS;
        saw.extend(n.tick(now));
        if saw.contains(&Action::Reconnect) {
            break;
        }
    }
    let revoke = saw.iter().position(|a| *a == Action::Revoke);
    let reconnect = saw.iter().position(|a| *a == Action::Reconnect);
    assert!(revoke.is_some() && reconnect.is_some(), "{saw:?}");
    assert!(!n.lease_held(now));
    assert_eq!(n.link(), LinkState::Down);
}

#[test]
fn what_cannot_be_applied_exactly_is_applied_wider() {
    let t = Instant::now();
    let mut n = leased(t);
    assert_flush(n.handle_message(hb("n2", 2, 0), t));
    let base = n.counters();
    // Undecodable payload.
    assert_eq!(
        n.undecodable(t),
        vec![Action::FlushAll(FlushReason::Undecodable)]
    );
    // Unknown category, in order.
    let mut m = match inv("n2", 2, 1, "k") {
        BusMessage::Invalidation(i) => i,
        _ => unreachable!(),
    };
    m.category = Some("nope".into());
    assert_eq!(
        n.handle_message(BusMessage::Invalidation(m.clone()), t),
        vec![Action::FlushAll(FlushReason::Undecodable)]
    );
    // A glob that does not parse.
    m.seq = 2;
    m.category = Some("roles".into());
    m.target = Target::Glob("a[".into());
    assert_eq!(
        n.handle_message(BusMessage::Invalidation(m.clone()), t),
        vec![Action::FlushAll(FlushReason::Undecodable)]
    );
    // Sequence state still advanced: the next one applies exactly.
    m.seq = 3;
    m.target = Target::Key("get_roles:[1, 2]".into());
    assert_eq!(
        n.handle_message(BusMessage::Invalidation(m), t),
        vec![Action::Apply {
            category: Some("roles".into()),
            target: Target::Key("get_roles:[1, 2]".into()),
        }]
    );
    let d = delta(&n, base);
    assert_eq!((d.undecodable, d.flushes, d.gaps), (3, 3, 0));
}

#[test]
fn typed_targets_pass_through_unchanged() {
    let t = Instant::now();
    let mut sender = node("n2", 2, t);
    let mut n = leased(t);
    assert_flush(n.handle_message(hb("n2", 2, 0), t));
    for (cat, target) in [
        (Some("roles"), Target::Key("x[1".into())),
        (Some("roles"), Target::Glob("get_roles:*".into())),
        (Some("permissions"), Target::Everything),
        (None, Target::Everything),
    ] {
        let m = sender.outgoing(cat, target.clone(), ChangeKind::Invalidate, t);
        assert_eq!(
            n.handle_message(m, t),
            vec![Action::Apply {
                category: cat.map(String::from),
                target
            }]
        );
    }
}
