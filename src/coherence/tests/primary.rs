//! Sentinel's primary proof: no lease and no L2 without a majority of the sentinels naming
//! our server within B; another primary named by a majority revokes and reconnects; a write
//! is acknowledged only after a proof sent after it.

use super::*;
use crate::coherence::primary::{margin, readable, verdict, write_confirmed, Verdict};
use crate::coherence::SentinelAnswer::{Other, Ours, Silent};

/// A Sentinel node (3 sentinels), link up, first flush behind it.
fn sentinel_node(t: Instant) -> Coherence {
    let mut n = Coherence::new("n1", 1, CoherenceConfig::with_bound(B), t)
        .with_categories(["permissions", "roles"])
        .with_primary_proof(3, t);
    let actions = n.link_up(t);
    assert!(actions.contains(&Action::PrimaryLost), "{actions:?}");
    assert!(matches!(actions.last(), Some(Action::FlushAll(_))));
    n
}

/// The sentinel queries among `actions`.
fn queries(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::QueryPrimary { id } => Some(*id),
            _ => None,
        })
        .collect()
}

fn proof_end(s: Instant) -> Instant {
    s + B - margin(B)
}

#[test]
fn an_echo_alone_grants_no_lease_a_majority_naming_us_does() {
    let t = Instant::now();
    let mut n = sentinel_node(t);
    let first = n.tick(t);
    assert_eq!((pings(&first), queries(&first)), (vec![1], vec![1]));
    assert!(n.handle_message(echo(1), t + MS).is_empty(), "no proof yet");
    assert!(!n.lease_held(t + MS));
    // Two of three name our server (the third is silent): a proof at the send time.
    assert_eq!(
        n.primary_answered(1, &[Ours, Silent, Ours], t + 2 * MS),
        vec![
            Action::PrimaryProven {
                sent: t,
                until: proof_end(t)
            },
            Action::Renew {
                until: proof_end(t)
            },
        ]
    );
    assert!(n.lease_held(proof_end(t)));
    assert!(!n.lease_held(proof_end(t) + MS));
}

#[test]
fn a_proof_older_than_b_gives_no_lease_whatever_the_echoes() {
    let t = Instant::now();
    let mut n = sentinel_node(t);
    n.tick(t);
    n.handle_message(echo(1), t + MS);
    n.primary_answered(1, &[Ours, Ours, Ours], t + MS);
    // Echoes keep coming, the sentinels stop answering (or disagree without a majority).
    let mut step = 1u32;
    while step * (B / 4) <= 2 * B {
        let now = t + step * (B / 4);
        let actions = n.tick(now);
        for id in pings(&actions) {
            n.handle_message(echo(id), now + MS);
        }
        for id in queries(&actions) {
            let answers = if step % 2 == 0 {
                vec![Silent, Silent, Silent]
            } else {
                vec![Ours, Other("127.0.0.1:2".into()), Silent]
            };
            assert!(n.primary_answered(id, &answers, now + MS).is_empty());
        }
        step += 1;
    }
    assert_eq!(n.lease_until(), Some(proof_end(t)));
    assert!(!n.lease_held(t + B));
}

#[test]
fn a_majority_naming_another_primary_revokes_and_reconnects() {
    let t = Instant::now();
    let mut n = sentinel_node(t);
    n.tick(t);
    n.handle_message(echo(1), t + MS);
    n.primary_answered(1, &[Ours, Ours, Ours], t + MS);
    assert!(n.lease_held(t + 2 * MS));
    let q = queries(&n.tick(t + B / 4));
    let other = Other("127.0.0.1:7001".into());
    assert_eq!(
        n.primary_answered(q[0], &[other.clone(), Ours, other], t + B / 4 + MS),
        vec![Action::Revoke, Action::PrimaryLost, Action::Reconnect]
    );
    assert!(!n.lease_held(t + B / 4 + MS));
    assert_eq!(n.link(), LinkState::Down);
    assert_eq!(n.counters().primary_moves, 1);
    // No more queries until the link is back, and the reconnection starts over.
    assert!(queries(&n.tick(t + B / 2)).is_empty());
    let again = n.link_up(t + B / 2);
    assert!(again.contains(&Action::PrimaryLost));
    assert_eq!(queries(&n.tick(t + B / 2)), vec![3]);
}

#[test]
fn answers_to_queries_sent_before_a_link_change_prove_nothing() {
    let t = Instant::now();
    let mut n = sentinel_node(t);
    n.tick(t);
    n.link_down(t + MS);
    n.link_up(t + 2 * MS);
    assert!(n
        .primary_answered(1, &[Ours, Ours, Ours], t + 3 * MS)
        .is_empty());
    let actions = n.tick(t + 3 * MS);
    let (p, q) = (pings(&actions), queries(&actions));
    n.handle_message(echo(p[0]), t + 4 * MS);
    let proven = n.primary_answered(q[0], &[Ours, Ours, Silent], t + 5 * MS);
    assert!(proven.contains(&Action::Renew {
        until: proof_end(t + 3 * MS)
    }));
}

#[test]
fn the_verdict_needs_a_majority_of_the_configured_sentinels() {
    let x = || Other("10.0.0.9:6379".into());
    assert_eq!(verdict(&[Ours, Ours, Silent], 3), Verdict::Proven);
    assert_eq!(verdict(&[Ours, x(), Silent], 3), Verdict::Unproven);
    assert_eq!(verdict(&[Ours, Silent, Silent], 3), Verdict::Unproven);
    assert_eq!(
        verdict(&[x(), x(), Ours], 3),
        Verdict::Moved("10.0.0.9:6379".into())
    );
    assert_eq!(
        verdict(&[x(), Other("10.0.0.8:6379".into()), Silent], 3),
        Verdict::Unproven
    );
    // Five sentinels, two answered: no majority even if both name us.
    assert_eq!(verdict(&[Ours, Ours], 5), Verdict::Unproven);
    assert_eq!(verdict(&[Ours, Ours, Ours], 5), Verdict::Proven);
}

#[test]
fn a_write_is_confirmed_only_by_a_proof_sent_after_it_returned() {
    let t = Instant::now();
    assert!(!write_confirmed(None, t));
    assert!(!write_confirmed(Some(t - MS), t));
    assert!(!write_confirmed(Some(t), t));
    assert!(write_confirmed(Some(t + MS), t));
    assert!(readable(Some(t + MS), t));
    assert!(readable(Some(t), t));
    assert!(!readable(Some(t), t + MS));
    assert!(!readable(None, t));
}

#[test]
fn without_sentinel_no_query_and_the_echo_alone_renews() {
    let t = Instant::now();
    let mut n = leased(t);
    let actions = n.tick(t);
    assert!(queries(&actions).is_empty());
    assert!(!actions.contains(&Action::PrimaryLost));
    assert_eq!(
        n.handle_message(echo(1), t + MS),
        vec![Action::Renew { until: t + B }]
    );
}
