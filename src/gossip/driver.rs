//! The membership driver: the one task that owns the sans-IO [`Membership`] machine. It
//! feeds it packets, Hellos and timer ticks, ships what it wants sent (SWIM and digest-sync
//! packets on the UDP socket or as QUIC frames) and publishes the member table to the
//! node's shared view after every step.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use tokio::{sync::mpsc, time::Instant};

use super::{
    auth::Context, frame::Frame, identity::NodeIdentity, input::DriverInput,
    membership::Membership, peer_queue::Mode, transport::send_frame, Inner,
};

/// Owns the membership state machine; the only place it is mutated.
pub(crate) async fn driver(
    inner: Arc<Inner>,
    mut m: Membership,
    mut rx: mpsc::Receiver<DriverInput>,
) {
    publish(&inner, &mut m);
    loop {
        let deadline = m
            .next_deadline()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let input = tokio::select! {
            i = rx.recv() => match i {
                Some(i) => Some(i),
                None => return,
            },
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let now = Instant::now().into_std();
        let leave = match input {
            Some(input) => apply(&inner, &mut m, input, now),
            None => None,
        };
        m.poll_timers(now);
        ship_outboxes(&inner, &mut m);
        publish(&inner, &mut m);
        if let Some(done) = leave {
            let _ = done.send(());
        }
    }
}

/// Feeds one input to the machine; returns the sender to answer once a `Leave` went out.
fn apply(
    inner: &Arc<Inner>,
    m: &mut Membership,
    input: DriverInput,
    now: std::time::Instant,
) -> Option<tokio::sync::oneshot::Sender<()>> {
    match input {
        DriverInput::Packet(p) => {
            if let Err(e) = m.handle_packet(&p, now) {
                tracing::debug!(error = %e, "invalid SWIM packet dropped");
                inner
                    .counters
                    .invalid_frames
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        DriverInput::Sync(p) => {
            if let Err(e) = m.handle_sync(&p, now) {
                tracing::debug!(error = %e, "invalid sync packet dropped");
                inner
                    .counters
                    .invalid_frames
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        DriverInput::Hello {
            identity,
            reply,
            known_bump,
        } if identity.node_id != m.identity().node_id => {
            hello(inner, m, identity, reply, known_bump, now);
        }
        DriverInput::Hello { .. } => {}
        DriverInput::Leave(done) => {
            m.leave(now);
            return Some(done);
        }
    }
    None
}

/// A Hello from another node: renew above an earlier run of ours the cluster remembers,
/// answer when asked, and announce to the sender unless it is known alive as it is.
fn hello(
    inner: &Arc<Inner>,
    m: &mut Membership,
    identity: NodeIdentity,
    reply: bool,
    known_bump: Option<u64>,
    now: std::time::Instant,
) {
    if let Some(k) = known_bump {
        // The cluster remembers an earlier run of ours that would win: renew above.
        m.renew_above(k, now);
    }
    if reply {
        let known_bump = m
            .known_bump(&identity.node_id)
            .filter(|b| *b > identity.bump);
        let hello = Frame::Hello {
            identity: m.identity().clone(),
            reply: false,
            known_bump,
        };
        send_frame(inner, identity.gossip_addr, &hello, Mode::Datagram);
    }
    let known = m
        .peer(&identity.node_id, now)
        .is_some_and(|e| e.identity == identity && e.state != super::types::MemberState::Dead);
    if !known {
        m.announce(identity, now);
    }
}

/// Sends what the machine queued: SWIM and digest-sync packets, on the UDP socket when a
/// cluster secret authenticates them, else as QUIC frames.
fn ship_outboxes(inner: &Arc<Inner>, m: &mut Membership) {
    for (dst, data) in m.drain_outbox() {
        match &inner.udp {
            Some(sock) => super::udp::send(inner, sock, Context::Swim, dst.swim_addr, &data),
            None => send_frame(
                inner,
                dst.gossip_addr,
                &Frame::Swim(data.to_vec()),
                Mode::Datagram,
            ),
        }
    }
    for (dst, data) in m.drain_sync_outbox() {
        match &inner.udp {
            Some(sock) => super::udp::send(inner, sock, Context::Sync, dst.swim_addr, &data),
            None => send_frame(
                inner,
                dst.gossip_addr,
                &Frame::Sync(data.to_vec()),
                Mode::Datagram,
            ),
        }
    }
}

/// Copies the member table into the node's shared view (only what moved).
fn publish(inner: &Inner, m: &mut Membership) {
    let now = Instant::now().into_std();
    let version = m.peers_version(now);
    let active = m.active_count();
    let mut view = inner
        .view
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if view.me != *m.identity() {
        view.me = m.identity().clone();
    }
    view.active = active;
    if view.version == version {
        // Same members in the same order (both sorted by node id): only `last_seen` moved.
        for (v, p) in view.peers.iter_mut().zip(m.peers(now)) {
            v.last_seen = p.last_seen;
        }
    } else {
        view.peers.clear();
        view.peers.extend(m.peers(now).cloned());
        view.version = version;
    }
}
