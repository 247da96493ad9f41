//! The peer lease (Redis down for everyone): pings, grants, and changes acked by every session peer.

use super::*;

// ---- The peer lease (Redis down for everyone) ----

/// A node with the peer lease whose Redis link went down, knowing `peers` as live.
fn peer_node(id: &str, peers: &[&str], t: Instant) -> Coherence {
    let mut n = Coherence::new(id, 1, CoherenceConfig::with_bound(B), t)
        .with_categories(["permissions", "roles"])
        .with_ack_channel(format!("{id}-chan"))
        .with_peer_lease();
    assert_flush(n.link_up(t));
    assert!(n
        .set_live_peers(peers.iter().map(|p| p.to_string()), t)
        .is_empty());
    n.link_down(t);
    n
}

fn grant(from: &str, to: &str, id: u64, upto: u64) -> BusMessage {
    BusMessage::PeerGrant {
        from: from.into(),
        from_epoch: 2,
        to: to.into(),
        id,
        upto,
    }
}

/// The id of the peer ping among `actions`.
fn peer_ping_id(actions: &[Action]) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        Action::PeerBroadcast(BusMessage::PeerPing { id, .. }) => Some(*id),
        _ => None,
    })
}

fn renewals(actions: &[Action]) -> Vec<Instant> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Renew { until } => Some(*until),
            _ => None,
        })
        .collect()
}

#[test]
fn the_peer_lease_needs_a_grant_from_every_live_peer() {
    let t = Instant::now();
    let mut n = peer_node("n1", &["n2", "n3"], t);
    assert!(!n.lease_held(t));
    let id = peer_ping_id(&n.tick(t)).expect("a peer ping while the link is down");
    // A grant meant for another node counts for nothing.
    assert!(n.handle_message(grant("n2", "n9", id, 0), t).is_empty());
    // n2 grants: first contact flushes, but n3 is still missing.
    let a = n.handle_message(grant("n2", "n1", id, 0), t + MS);
    assert!(renewals(&a).is_empty(), "{a:?}");
    assert!(!n.lease_held(t + MS));
    // n3 grants: renewed until the ping's send time + B.
    let a = n.handle_message(grant("n3", "n1", id, 0), t + 2 * MS);
    assert_eq!(renewals(&a), vec![t + B]);
    assert!(n.lease_held(t + 2 * MS));
    assert!(!n.lease_held(t + B + MS));
    assert_eq!(n.counters().peer_renewals, 1);
}

#[test]
fn a_node_with_redis_does_not_grant_and_one_without_grants_its_last_seq() {
    let t = Instant::now();
    let ping = BusMessage::PeerPing {
        origin: "n1".into(),
        origin_epoch: 1,
        id: 5,
    };
    let mut up = Coherence::new("n2", 2, CoherenceConfig::with_bound(B), t).with_peer_lease();
    assert_flush(up.link_up(t));
    assert!(up.handle_message(ping.clone(), t).is_empty());
    let mut down = peer_node("n2", &["n1"], t);
    let _ = down.outgoing(Some("roles"), Target::Key("k".into()), ChangeKind::Set, t);
    let a = down.handle_message(ping, t);
    assert_eq!(
        a,
        vec![Action::SendPeer {
            to: "n1".into(),
            msg: BusMessage::PeerGrant {
                from: "n2".into(),
                from_epoch: 1,
                to: "n1".into(),
                id: 5,
                upto: 1,
            },
        }]
    );
}

#[test]
fn a_grant_ahead_of_what_we_applied_flushes_before_renewing() {
    let t = Instant::now();
    let mut n = peer_node("n1", &["n2"], t);
    // n2's changes 1 arrived (first contact flushes, then in order).
    assert_flush(n.handle_message(hb("n2", 2, 0), t));
    assert_eq!(n.handle_message(inv("n2", 2, 1, "a"), t), apply("a"));
    let id = peer_ping_id(&n.tick(t)).expect("peer ping");
    // Its grant says it assigned up to 3: 2 and 3 never reached us.
    let a = n.handle_message(grant("n2", "n1", id, 3), t + MS);
    assert!(
        matches!(
            a.as_slice(),
            [Action::FlushAll(FlushReason::Gap), Action::Renew { .. }]
        ),
        "flush must come before the renewal: {a:?}"
    );
    // A grant that says nothing new renews without a flush.
    let id = peer_ping_id(&n.tick(t + B / 4)).expect("peer ping");
    let a = n.handle_message(grant("n2", "n1", id, 3), t + B / 4 + MS);
    assert_eq!(renewals(&a), vec![t + B / 4 + B]);
    assert_eq!(a.len(), 1);
}

#[test]
fn a_pause_before_the_grants_leaves_no_lease() {
    let t = Instant::now();
    let mut n = peer_node("n1", &["n2"], t);
    let id = peer_ping_id(&n.tick(t)).expect("peer ping");
    // We were stopped for 3 B; the grant was waiting in the socket.
    let later = t + 3 * B;
    let _ = n.handle_message(grant("n2", "n1", id, 0), later);
    assert!(!n.lease_held(later), "a lease from a ping sent 3 B ago");
}

#[test]
fn a_peer_declared_dead_flushes_and_no_longer_holds_the_lease_back() {
    let t = Instant::now();
    let mut n = peer_node("n1", &["n2", "n3"], t);
    let id = peer_ping_id(&n.tick(t)).expect("peer ping");
    let _ = n.handle_message(grant("n2", "n1", id, 0), t + MS);
    let a = n.set_live_peers(["n2".to_string()], t + 2 * MS);
    assert!(
        matches!(
            a.as_slice(),
            [
                Action::FlushAll(FlushReason::PeerDead),
                Action::Renew { .. }
            ]
        ),
        "{a:?}"
    );
}

#[test]
fn changes_without_redis_wait_for_every_session_peer() {
    let t = Instant::now();
    let mut n = peer_node("n1", &["n2", "n3"], t);
    let stamp = n.stamp().clone();
    let (msg, a) = n.outgoing_peer(
        &mut stamp.lock(),
        Some("roles"),
        Target::Key("k".into()),
        ChangeKind::Delete,
        t,
    );
    assert!(a.is_empty());
    let BusMessage::Invalidation(inv) = msg else {
        panic!("an invalidation");
    };
    assert_eq!(inv.ack_to.as_deref(), Some("n1-chan"));
    let ack = |from: &str, seq| BusMessage::Ack {
        from: from.into(),
        from_epoch: 2,
        origin_epoch: 1,
        seq,
    };
    assert!(n.handle_message(ack("n2", inv.seq), t + MS).is_empty());
    assert_eq!(
        n.handle_message(ack("n3", inv.seq), t + 2 * MS),
        vec![Action::Acknowledged {
            seq: inv.seq,
            by_timeout: false
        }]
    );
    // A peer declared dead still has to ack (it may be alive behind a partition).
    let _ = n.set_live_peers(["n2".to_string()], t + 3 * MS);
    let (msg, _) = n.outgoing_peer(
        &mut stamp.lock(),
        Some("roles"),
        Target::Key("k".into()),
        ChangeKind::Delete,
        t,
    );
    let BusMessage::Invalidation(second) = msg else {
        panic!("an invalidation");
    };
    assert!(n
        .handle_message(ack("n2", second.seq), t + 4 * MS)
        .is_empty());
    assert!(n
        .tick(t + B - MS)
        .iter()
        .all(|a| !matches!(a, Action::NotAcknowledged { .. })));
    let a = n.tick(t + B);
    assert!(
        a.contains(&Action::NotAcknowledged { seq: second.seq }),
        "{a:?}"
    );
    assert_eq!((n.counters().peer_acked, n.counters().peer_refused), (1, 1));
}

#[test]
fn alone_without_redis_nothing_is_acknowledged_and_no_lease() {
    let t = Instant::now();
    let mut n = peer_node("n1", &[], t);
    let stamp = n.stamp().clone();
    assert_eq!(peer_ping_id(&n.tick(t)), None);
    let (msg, a) = n.outgoing_peer(
        &mut stamp.lock(),
        None,
        Target::Everything,
        ChangeKind::Invalidate,
        t,
    );
    let BusMessage::Invalidation(inv) = msg else {
        panic!("an invalidation");
    };
    assert_eq!(a, vec![Action::NotAcknowledged { seq: inv.seq }]);
}

#[test]
fn redis_back_ends_the_peer_lease_until_an_echo() {
    let t = Instant::now();
    let mut n = peer_node("n1", &["n2"], t);
    let id = peer_ping_id(&n.tick(t)).expect("peer ping");
    let _ = n.handle_message(grant("n2", "n1", id, 0), t + MS);
    assert!(n.lease_held(t + 2 * MS));
    let a = n.link_up(t + 3 * MS);
    assert!(a.contains(&Action::Revoke), "{a:?}");
    assert!(!n.lease_held(t + 3 * MS));
    // No more peer pings; a late grant counts for nothing.
    assert_eq!(peer_ping_id(&n.tick(t + B)), None);
    assert!(renewals(&n.handle_message(grant("n2", "n1", id, 0), t + B)).is_empty());
}
