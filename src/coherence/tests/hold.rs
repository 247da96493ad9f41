//! The replay hold (issue #23, item 3): a node does not read L2 after its start, or after
//! a loss of its link, before every live peer told it what waits in its replay backlog.

use super::*;
use crate::coherence::hold::{bounded_changes, ASK_EVERY, MAX_ANSWER_KEY_BYTES};

const GRACE: Duration = Duration::from_millis(800);

/// A node with the peer lease and the replay hold, started at `t`.
fn held_node(id: &str, t: Instant) -> Coherence {
    Coherence::new(id, 1, CoherenceConfig::with_bound(B), t)
        .with_categories(["permissions", "roles"])
        .with_peer_lease()
        .with_replay_hold(t, GRACE)
}

fn live(n: &mut Coherence, peers: &[&str], t: Instant) {
    let _ = n.set_live_peers(peers.iter().map(|p| p.to_string()), t);
}

/// The peers asked by `actions`, with the round, sorted.
fn asked(actions: &[Action]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::SendPeer {
                to,
                msg: BusMessage::BacklogQuery { origin, id, .. },
            } => {
                assert_eq!(origin, "n3");
                Some((to.clone(), *id))
            }
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn answer(from: &str, to: &str, id: u64, changes: Vec<(String, Target)>) -> BusMessage {
    BusMessage::BacklogAnswer {
        from: from.into(),
        from_epoch: 7,
        to: to.into(),
        id,
        changes,
    }
}

fn k1() -> Vec<(String, Target)> {
    vec![("roles".into(), Target::Key("k1".into()))]
}

#[test]
fn a_restarted_node_reads_l2_only_after_every_live_peer_sent_its_backlog() {
    let t = Instant::now();
    let mut n = held_node("n3", t);
    assert!(n.l2_held(), "held from the start");
    live(&mut n, &["n1", "n2"], t);
    // Redis down: nobody is asked yet, L2 stays held.
    assert!(asked(&n.hold_tick(t)).is_empty());
    assert!(n.l2_held());
    // Redis back: a round starts.
    let _ = n.link_up(t + MS);
    assert!(n.l2_held(), "the link alone does not free L2");
    let q = asked(&n.hold_tick(t + MS));
    assert_eq!(q, vec![("n1".into(), 1), ("n2".into(), 1)]);
    // n1 still has the delete of k1 waiting for L2: it joins our backlog.
    let a = n.handle_message(answer("n1", "n3", 1, k1()), t + 2 * MS);
    assert_eq!(a, vec![Action::RecordBacklog { changes: k1() }]);
    assert!(n.l2_held(), "n2 has not answered");
    // n2 answers with an empty backlog: every peer answered, but the join grace is on.
    assert!(n
        .handle_message(answer("n2", "n3", 1, Vec::new()), t + 3 * MS)
        .is_empty());
    assert!(n.l2_held(), "within the join grace");
    assert!(n.hold_tick(t + GRACE - MS).is_empty());
    assert!(n.l2_held());
    assert!(n.hold_tick(t + GRACE).is_empty());
    assert!(
        !n.l2_held(),
        "every live peer answered and the grace is over"
    );
}

#[test]
fn a_silent_peer_keeps_the_hold_until_gossip_declares_it_dead() {
    let t = Instant::now();
    let mut n = held_node("n3", t);
    live(&mut n, &["n1", "n2"], t);
    let _ = n.link_up(t);
    let _ = n.hold_tick(t);
    let _ = n.handle_message(answer("n1", "n3", 1, Vec::new()), t + MS);
    // n2 stays silent: asked again every ASK_EVERY, and L2 stays held long after the grace.
    assert!(asked(&n.hold_tick(t + ASK_EVERY - MS)).is_empty());
    assert_eq!(
        asked(&n.hold_tick(t + ASK_EVERY)),
        vec![("n2".into(), 1)],
        "only the silent peer is asked again"
    );
    let late = t + GRACE * 20;
    assert_eq!(asked(&n.hold_tick(late)), vec![("n2".into(), 1)]);
    assert!(n.l2_held(), "a suspect peer that does not answer holds L2");
    // Gossip declares n2 dead (it leaves the live set): the hold ends.
    live(&mut n, &["n1"], late);
    assert!(n.hold_tick(late).is_empty());
    assert!(!n.l2_held());
}

#[test]
fn a_peer_that_becomes_live_during_the_round_must_answer_too() {
    let t = Instant::now();
    let mut n = held_node("n3", t);
    // Right after the start gossip knows nobody yet: "nobody to ask" is not "free" before
    // the join grace is over.
    let _ = n.link_up(t);
    assert!(n.hold_tick(t).is_empty());
    assert!(n.l2_held(), "no peer known yet, but within the join grace");
    live(&mut n, &["n1"], t + 100 * MS);
    assert_eq!(asked(&n.hold_tick(t + 100 * MS)), vec![("n1".into(), 1)]);
    assert_eq!(asked(&n.hold_tick(t + GRACE)), vec![("n1".into(), 1)]);
    assert!(n.l2_held(), "n1 joined the round and has not answered");
    // Answers that do not count: another round, another addressee, a peer not asked, ours.
    for wrong in [
        answer("n1", "n3", 2, k1()),
        answer("n1", "n9", 1, k1()),
        answer("n8", "n3", 1, k1()),
        BusMessage::BacklogAnswer {
            from: "n3".into(),
            from_epoch: 1,
            to: "n3".into(),
            id: 1,
            changes: k1(),
        },
    ] {
        assert!(n.handle_message(wrong, t + GRACE).is_empty());
        assert!(n.l2_held());
    }
    let a = n.handle_message(answer("n1", "n3", 1, Vec::new()), t + GRACE + MS);
    assert!(a.is_empty(), "{a:?}");
    assert!(!n.l2_held());
}

#[test]
fn a_link_loss_holds_l2_again_and_starts_a_new_round() {
    let t = Instant::now();
    let mut n = held_node("n3", t);
    live(&mut n, &["n1"], t);
    let _ = n.link_up(t);
    let _ = n.hold_tick(t);
    let _ = n.handle_message(answer("n1", "n3", 1, Vec::new()), t + GRACE);
    assert!(!n.l2_held());
    // Redis lost: changes acknowledged without us from now on are unknown here.
    let _ = n.link_down(t + GRACE + MS);
    assert!(n.l2_held(), "held from the loss of the link");
    // A silently dead subscription (no echo) holds too.
    let _ = n.link_up(t + GRACE + 2 * MS);
    assert_eq!(
        asked(&n.hold_tick(t + GRACE + 2 * MS)),
        vec![("n1".into(), 2)]
    );
    // An answer to the previous round does not count.
    assert!(n
        .handle_message(answer("n1", "n3", 1, Vec::new()), t + GRACE + 3 * MS)
        .is_empty());
    assert!(n.l2_held());
    let _ = n.handle_message(answer("n1", "n3", 2, Vec::new()), t + GRACE + 4 * MS);
    assert!(!n.l2_held());
    let later = t + GRACE + 10 * MS;
    let _ = n.tick(later);
    assert!(!n.l2_held());
    let a = n.tick(later + Duration::from_secs(2));
    assert!(a.contains(&Action::Reconnect), "{a:?}");
    assert!(
        n.l2_held(),
        "a subscription declared dead (no echo) holds L2 again"
    );
}

#[test]
fn every_node_answers_a_backlog_question_except_its_own() {
    let t = Instant::now();
    let mut n = held_node("n1", t);
    let q = |origin: &str, epoch| BusMessage::BacklogQuery {
        origin: origin.into(),
        origin_epoch: epoch,
        id: 4,
    };
    assert_eq!(
        n.handle_message(q("n3", 9), t),
        vec![Action::SendBacklog {
            to: "n3".into(),
            id: 4
        }]
    );
    assert!(
        n.handle_message(q("n1", 1), t).is_empty(),
        "our own question"
    );
    // A node without the hold answers all the same (its peers may be holding).
    let mut plain = Coherence::new("n2", 1, CoherenceConfig::with_bound(B), t);
    assert!(!plain.l2_held());
    assert_eq!(plain.handle_message(q("n3", 9), t).len(), 1);
    // The answer carries the backlog, whole categories when it is too long for a frame.
    let small = vec![("roles".to_string(), Target::Glob("r:*".into()))];
    assert_eq!(
        n.backlog_answer("n3".into(), 4, small.clone()),
        BusMessage::BacklogAnswer {
            from: "n1".into(),
            from_epoch: 1,
            to: "n3".into(),
            id: 4,
            changes: small,
        }
    );
    let big: Vec<(String, Target)> = (0..MAX_ANSWER_KEY_BYTES / 8)
        .map(|i| {
            let c = if i % 2 == 0 { "roles" } else { "menus" };
            (c.to_string(), Target::Key(format!("key-{i}")))
        })
        .collect();
    assert_eq!(
        bounded_changes(big),
        vec![
            ("menus".to_string(), Target::Everything),
            ("roles".to_string(), Target::Everything)
        ]
    );
    let msg = n.backlog_answer(
        "n3".into(),
        4,
        vec![("roles".into(), Target::Key("x".repeat(512))); 60],
    );
    assert!(
        crate::wire::encode(&msg).is_ok(),
        "an answer always fits a frame"
    );
}

#[test]
fn without_the_hold_l2_is_never_held() {
    let t = Instant::now();
    let mut n = Coherence::new("n1", 1, CoherenceConfig::with_bound(B), t).with_peer_lease();
    assert!(!n.l2_held());
    let _ = n.link_up(t);
    let _ = n.link_down(t);
    assert!(!n.l2_held());
    assert!(n.hold_tick(t).is_empty());
}
