//! Tests of the coherence machine, one file per sub-protocol, all in virtual time (no
//! sockets, no sleeps): sequences and gaps, the link and self-echo, robustness (hostile
//! input, bounded state, a randomized loss property), the freshness lease, strict acks and
//! the peer lease. This file holds the helpers they share.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::sequence::EPOCHS_PER_ORIGIN;
use super::*;
use crate::wire::{BusMessage, ChangeKind, Invalidation, Target};

mod lease;
mod lease_handle;
mod link;
mod peer;
mod primary;
mod robustness;
mod sequence;
mod strict;

const MS: Duration = Duration::from_millis(1);

/// A node without lease pings (these tests are about sequencing and heartbeats; the
/// lease has its own tests below).
fn node(id: &str, epoch: u64, t0: Instant) -> Coherence {
    let config = CoherenceConfig {
        ping_interval: Duration::ZERO,
        ..CoherenceConfig::default()
    };
    Coherence::new(id, epoch, config, t0)
}

#[track_caller]
fn assert_flush(actions: Vec<Action>) {
    assert!(
        matches!(actions.as_slice(), [Action::FlushAll(_)]),
        "expected one flush, got {actions:?}"
    );
}

/// A node whose link is up and which already knows `peers` (at seq 0), so that the
/// first-contact flushes are behind it. Returns the node and its counters at that point.
fn ready(peers: &[(&str, u64)], t: Instant) -> (Coherence, CoherenceCounters) {
    let mut c = node("n1", 1, t);
    assert_flush(c.link_up(t));
    for (id, epoch) in peers {
        assert_flush(c.handle_message(hb(id, *epoch, 0), t));
    }
    let base = c.counters();
    (c, base)
}

/// Counters gained since `base`.
fn delta(c: &Coherence, base: CoherenceCounters) -> CoherenceCounters {
    let n = c.counters();
    CoherenceCounters {
        received: n.received - base.received,
        applied: n.applied - base.applied,
        duplicates: n.duplicates - base.duplicates,
        gaps: n.gaps - base.gaps,
        flushes: n.flushes - base.flushes,
        epoch_changes: n.epoch_changes - base.epoch_changes,
        reconnects: n.reconnects - base.reconnects,
        lease_lapses: n.lease_lapses - base.lease_lapses,
        undecodable: n.undecodable - base.undecodable,
        strict_acked: n.strict_acked - base.strict_acked,
        strict_timeouts: n.strict_timeouts - base.strict_timeouts,
        peer_renewals: n.peer_renewals - base.peer_renewals,
        peer_acked: n.peer_acked - base.peer_acked,
        peer_refused: n.peer_refused - base.peer_refused,
        primary_moves: n.primary_moves - base.primary_moves,
    }
}

fn inv(origin: &str, epoch: u64, seq: u64, pattern: &str) -> BusMessage {
    BusMessage::Invalidation(Invalidation {
        origin: origin.into(),
        origin_epoch: epoch,
        seq,
        category: Some("permissions".into()),
        target: Target::Key(pattern.into()),
        kind: ChangeKind::Set,
        sent_at_ms: 0,
        ack_to: None,
    })
}

fn hb(origin: &str, epoch: u64, last_seq: u64) -> BusMessage {
    BusMessage::Heartbeat {
        origin: origin.into(),
        origin_epoch: epoch,
        last_seq,
    }
}

fn apply(pattern: &str) -> Vec<Action> {
    vec![Action::Apply {
        category: Some("permissions".into()),
        target: Target::Key(pattern.into()),
    }]
}

const B: Duration = Duration::from_millis(100);

/// A node with lease pings, link up, first-contact flush behind it.
fn leased(t: Instant) -> Coherence {
    let mut n = Coherence::new("n1", 1, CoherenceConfig::with_bound(B), t)
        .with_categories(["permissions", "roles"]);
    assert_flush(n.link_up(t));
    n
}

/// The pings among `actions`, as (id) — published on our own channel.
fn pings(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(BusMessage::Ping { id, .. }) => Some(*id),
            _ => None,
        })
        .collect()
}

fn echo(id: u64) -> BusMessage {
    BusMessage::Ping {
        origin: "n1".into(),
        origin_epoch: 1,
        id,
    }
}
