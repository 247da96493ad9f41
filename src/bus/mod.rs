//! The invalidation bus: Redis pub/sub (and QUIC peers as a second path) driving the
//! sans-IO [`Coherence`] machine, and the freshness [`Lease`](crate::lease::Lease) it grants.
//!
//! The actor only moves bytes and time; every decision is the machine's:
//! - a **connection task** keeps one subscriber connection with two channels on it: the
//!   shared invalidation channel and this node's own ping channel (same connection, so a
//!   ping's echo arrives after every invalidation Redis processed before it); it reconnects
//!   with exponential backoff (backon);
//! - a **publisher task** sends our messages one at a time in the order the machine
//!   numbered them, on the command connection, through the control breaker of
//!   [`crate::l2`] (never the data breaker), so the actor itself never waits on Redis and
//!   keeps draining inbound invalidations while we publish. An invalidation Redis refused is
//!   also sent to the peers over QUIC, and its writer is told it failed;
//! - a **replay worker** (one at a time) writes the changes whose L2 outcome was unknown into
//!   L2 once Redis answers again, then announces them: the actor never runs an L2 call.
//!
//! Inbound payloads go through `wire::decode` into the machine; what cannot be decoded is
//! counted and flushes L1 (fail closed). With a cluster secret (`HC_CLUSTER_SECRET`), every
//! payload is sealed with an HMAC ([`crate::wire_auth`]); one that fails is dropped, counted
//! and handled like a gap (flush), and never reaches the sequence state, so whoever can
//! PUBLISH on Redis cannot forge an invalidation or poison an origin's sequence numbers.
//! [`Action::Renew`] is carried out only after a barrier through every category actor, so
//! the invalidations received before a ping echo are in L1 before the lease covers them.
//!
//! # Bounded queues
//! The actor's mailbox and the publisher's queue are fronted by
//! [`MailboxGate`](crate::actors::mailbox::MailboxGate)s. The connection task *waits* for a
//! slot (it stops reading; Redis buffers, and past its pub/sub output limit drops the
//! subscription, which revokes the lease). A local writer or a peer that finds the mailbox
//! full does not wait: [`BusMsg::Overflow`] then flushes L1 and skips one of our sequence
//! numbers, so every peer sees a gap and flushes too (the refused message may have been one
//! of our invalidations). A message the publisher's queue refuses is a failed publish. The
//! periodic [`BusMsg::Tick`] is coalesced (one in flight at most).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::actors::CategoryMsg;
use crate::cache::Shared;
use crate::coherence::{Action, Coherence, CoherenceConfig, LinkState};
use crate::l2::L2Conn;
use crate::stats::NodeCounters;
use crate::wire::{self, BusMessage};
pub use crate::wire::{ChangeKind, Target};

/// Where an inbound payload came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Redis,
    Quic,
}

/// Why a change could not be announced.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// Redis did not take the PUBLISH (down, unreachable, breaker open).
    #[error("redis did not accept the invalidation: {0}")]
    Refused(String),
    /// No answer within the bound.
    #[error("the invalidation was not published within {0:?}")]
    Timeout(Duration),
    /// The bus actor is gone (node stopping).
    #[error("the bus is stopped")]
    Stopped,
    /// The bus's queue is full; L1 is flushed everywhere instead (fail closed).
    #[error("the invalidation bus is overloaded")]
    Overloaded,
    /// Redis is down and not every peer acked the change within the bound.
    #[error("not every peer acknowledged the change while redis is down")]
    NotAcknowledged,
}

type Done = tokio::sync::oneshot::Sender<Result<(), PublishError>>;

/// Messages of the bus actor.
pub enum BusMsg {
    /// Publish a local change; `done` gets the outcome: for a `strict` change, once every
    /// lease holder applied it (or B passed), else once Redis took the PUBLISH. A change
    /// whose L2 write failed (`l2_pending`) goes to the peers over QUIC and succeeds only
    /// once every peer acked it (each keeps it for replay into L2).
    Publish {
        category: Option<String>,
        target: Target,
        kind: ChangeKind,
        strict: bool,
        l2_pending: bool,
        done: Option<Done>,
    },
    /// The publisher's outcome for strict change `seq` (receivers counted by Redis).
    Published {
        seq: u64,
        result: Result<u64, PublishError>,
    },
    /// A payload from the channel or a peer.
    Inbound(Vec<u8>, Via),
    /// The connection task (re)connected.
    LinkUp(L2Conn, u64),
    /// The connection task lost the subscription.
    LinkDown(String, u64),
    /// Periodic timer (coalesced: at most one in the mailbox).
    Tick,
    /// A message could not be admitted to the full mailbox: flush, everywhere (ungated; at
    /// most one in flight).
    Overflow,
}

impl BusMsg {
    /// Whether this message holds a slot of the mailbox gate.
    fn gated(&self) -> bool {
        !matches!(self, BusMsg::Tick | BusMsg::Overflow)
    }
}

/// Sends `msg` to the bus if its mailbox has room; otherwise the bus is told to flush
/// ([`BusMsg::Overflow`]) and `false` is returned.
pub(crate) fn tell(shared: &Shared, bus: &ActorRef<BusMsg>, msg: BusMsg) -> bool {
    let gate = &shared.bus_gate;
    if !gate.try_reserve() {
        gate.note_refused();
        if gate.request_flush() {
            tracing::warn!("bus mailbox full: flushing L1 on every node");
            if bus.cast(BusMsg::Overflow).is_err() {
                gate.overflow_handled();
            }
        }
        return false;
    }
    if bus.cast(msg).is_err() {
        gate.release();
        return false;
    }
    true
}

/// Sends `msg` to the bus, waiting for room in its mailbox. False if the bus is gone.
async fn tell_waiting(shared: &Shared, bus: &ActorRef<BusMsg>, msg: BusMsg) -> bool {
    shared.bus_gate.reserve().await;
    if bus.cast(msg).is_err() {
        shared.bus_gate.release();
        return false;
    }
    true
}

/// Announces a local change to every other node and waits (bounded) for the outcome.
///
/// `Ok` means Redis accepted the PUBLISH: every node that renews its lease after this point
/// has applied the change first. Without a bus (no Redis, no peers) there is nobody to tell.
pub async fn publish(
    shared: &Arc<Shared>,
    category: Option<&str>,
    target: Target,
    kind: ChangeKind,
    strict: bool,
    l2_pending: bool,
) -> Result<(), PublishError> {
    let Some(bus) = shared.bus() else {
        return Ok(());
    };
    let (done, outcome) = tokio::sync::oneshot::channel();
    let msg = BusMsg::Publish {
        category: category.map(str::to_owned),
        target,
        kind,
        strict,
        l2_pending,
        done: Some(done),
    };
    if !tell(shared, &bus, msg) {
        return Err(PublishError::Overloaded);
    }
    // Each publish is bounded by the Redis timeout; allow for a few queued ahead of us, and
    // for a strict change the acks (at most B).
    let mut bound = shared.config.redis_timeout.max(Duration::from_millis(100)) * 4;
    if strict || l2_pending {
        bound += shared.config.staleness_bound;
    }
    match tokio::time::timeout(bound, outcome).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(PublishError::Stopped),
        Err(_) => Err(PublishError::Timeout(bound)),
    }
}

/// The shared `{ns}:invalidations` channel.
pub fn channel(namespace: &str) -> String {
    format!("{namespace}:invalidations")
}

/// This node instance's own lease-ping channel (nobody else subscribes to it).
pub fn ping_channel(namespace: &str, instance: &str) -> String {
    format!("{namespace}:ping:{instance}")
}

pub struct BusActor;

pub struct BusState {
    shared: Arc<Shared>,
    machine: Coherence,
    channel: String,
    ping_channel: String,
    /// Namespace part of channel names (`{ns}` in a cluster: one slot for all channels).
    bus_ns: String,
    conn_task: Option<tokio::task::JoinHandle<()>>,
    /// Generation of the connection task; stale LinkUp/LinkDown of a replaced task are ignored.
    conn_gen: u64,
    tick_task: Option<tokio::task::JoinHandle<()>>,
    unreachable_since: Option<Instant>,
    /// Outgoing messages, in sequence order, to the publisher task.
    outgoing: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    publisher: tokio::task::JoinHandle<()>,
    /// A replay worker is running.
    replaying: Arc<AtomicBool>,
    /// Writers of our strict changes, by sequence number, until [`Action::Acknowledged`].
    strict_waiters: std::collections::HashMap<u64, Done>,
    /// HMAC key of the cluster secret, when one is configured.
    key: Option<Arc<crate::wire_auth::ClusterKey>>,
    /// A Tick is in the mailbox.
    tick_pending: Arc<AtomicBool>,
    /// The path of the inbound message whose actions are running (acks go back on it).
    via: Via,
    /// The gossip peers' version last handed to the machine, and when (see
    /// [`PEERS_REFRESH`]).
    peers_seen: Option<(u64, Instant)>,
}

/// The tick re-reads the gossip peers when their version moved, in peer mode, and at least
/// this often (a replaced gossip link restarts its versions).
const PEERS_REFRESH: Duration = Duration::from_secs(1);

/// A message for the publisher task.
struct Outgoing {
    bytes: Vec<u8>,
    /// Full channel name.
    channel: String,
    /// Invalidations also go to peers over QUIC when Redis refuses them (or without Redis).
    invalidation: bool,
    done: Option<Done>,
    /// Report the outcome of this strict change back to the actor.
    strict_seq: Option<u64>,
}

/// Most invalidations sent in one pipelined round trip.
const PUBLISH_BATCH: usize = 256;

/// Publishes the messages in the order the actor numbered them: whatever queued up while
/// the previous round trip was in flight goes out as one pipeline (one round trip for many
/// concurrent writes), and each message's own outcome (its receiver count) goes to its writer.
fn spawn_publisher(
    shared: Arc<Shared>,
    myself: ActorRef<BusMsg>,
    key: Option<Arc<crate::wire_auth::ClusterKey>>,
) -> (
    tokio::sync::mpsc::UnboundedSender<Outgoing>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
    let task = tokio::spawn(async move {
        let mut batch: Vec<Outgoing> = Vec::with_capacity(PUBLISH_BATCH);
        while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
            // The queue is bounded by `publisher_gate` (see `BusState::send_to`).
            for _ in 0..batch.len() {
                shared.publisher_gate.release();
            }
            if let Some(k) = &key {
                for o in &mut batch {
                    o.bytes = crate::wire_auth::seal(k, &o.bytes);
                }
            }
            let results: Vec<Result<u64, PublishError>> = match &shared.l2 {
                Some(l2) => {
                    let msgs: Vec<(&str, &[u8])> = batch
                        .iter()
                        .map(|o| (o.channel.as_str(), &o.bytes[..]))
                        .collect();
                    match l2.publish_batch(&msgs).await {
                        Ok(counts) => counts.into_iter().map(Ok).collect(),
                        Err(e) => {
                            // Receivers see the gap at our next heartbeat and flush; the
                            // writers are told.
                            tracing::debug!(error = %e, n = batch.len(), "publish failed");
                            let e = PublishError::Refused(e.to_string());
                            vec![Err(e); batch.len()]
                        }
                    }
                }
                None => vec![Ok(0); batch.len()],
            };
            for (o, result) in batch.drain(..).zip(results) {
                if o.invalidation && (result.is_err() || shared.l2.is_none()) {
                    if let Some(g) = shared.gossip() {
                        g.broadcast(o.bytes);
                        NodeCounters::incr(&shared.counters.peer_messages_sent);
                    }
                }
                if let Some(seq) = o.strict_seq {
                    let published = BusMsg::Published {
                        seq,
                        result: result.clone(),
                    };
                    if !tell_waiting(&shared, &myself, published).await {
                        return;
                    }
                }
                if let Some(done) = o.done {
                    let _ = done.send(result.map(|_| ()));
                }
            }
        }
    });
    (tx, task)
}

fn backoff() -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(250))
        .without_max_times()
        .build()
}

fn spawn_connection(
    myself: ActorRef<BusMsg>,
    shared: Arc<Shared>,
    channels: [String; 2],
    gen: u64,
) -> Option<tokio::task::JoinHandle<()>> {
    let target = shared.config.redis.clone()?;
    let timeout = shared.config.redis_timeout;
    Some(tokio::spawn(async move {
        let mut delays = backoff();
        loop {
            match subscribe(&target, &channels, timeout).await {
                Ok((mut sub, cm)) => {
                    delays = backoff();
                    if !tell_waiting(&shared, &myself, BusMsg::LinkUp(cm, gen)).await {
                        return;
                    }
                    while let Some(payload) = sub.next().await {
                        // Waits while the mailbox is full: we stop reading, Redis buffers.
                        let inbound = BusMsg::Inbound(payload, Via::Redis);
                        if !tell_waiting(&shared, &myself, inbound).await {
                            return;
                        }
                    }
                    let down = BusMsg::LinkDown("subscription closed".into(), gen);
                    if !tell_waiting(&shared, &myself, down).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "redis connect failed; retrying");
                    let down = BusMsg::LinkDown(e.to_string(), gen);
                    if !tell_waiting(&shared, &myself, down).await {
                        return;
                    }
                }
            }
            let delay = delays.next().unwrap_or(Duration::from_millis(250));
            tokio::time::sleep(delay).await;
        }
    }))
}

/// Subscribes on the configured topology (see [`crate::l2::topology`]: classic pub/sub on
/// one server or the Sentinel-named primary, sharded pub/sub on the owner of the channels'
/// slot in a cluster) and opens the matching command connection.
async fn subscribe(
    target: &crate::config::RedisTarget,
    channels: &[String; 2],
    timeout: Duration,
) -> Result<(crate::l2::topology::Subscription, L2Conn), crate::l2::L2Error> {
    crate::l2::topology::subscribe(target, channels.as_slice(), timeout).await
}

impl BusState {
    async fn run(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Apply { category, target } => self.apply(category.as_deref(), &target),
                Action::FlushAll(reason) => {
                    if self.machine.link() == LinkState::Down {
                        // Without Redis we cannot know which changes the flush stands for:
                        // some may be waiting to reach L2 in a peer's backlog. L2 is read
                        // again only after every category was invalidated there.
                        self.shared.l2_missed_everything();
                    }
                    self.shared.flush_all(reason.as_str()).await
                }
                Action::Publish(msg) => self.send(&msg, None),
                Action::Reconnect => {
                    // The machine emitted Revoke before this when a lease was held.
                    tracing::warn!("no echo of our own pings: resubscribing");
                    self.shared.link_up.store(false, Ordering::Relaxed);
                    self.restart_connection_later();
                }
                Action::Renew { until } => {
                    if self.barrier().await {
                        self.shared.lease.extend_to(until);
                    }
                }
                Action::Revoke => {
                    self.shared.lease.revoke();
                    self.shared.metrics.record_lease_lapse();
                }
                Action::SendAck { to, origin, ack } => {
                    // Only once the change is in our L1 does the writer hear "applied"; by
                    // the path the change came on.
                    if self.barrier().await {
                        if self.via == Via::Quic {
                            self.send_peer(Some(&origin), &ack);
                        } else {
                            let channel = ping_channel(&self.bus_ns, &to);
                            self.send_to(&ack, channel, None, None);
                        }
                    }
                }
                Action::PeerBroadcast(msg) => self.send_peer(None, &msg),
                Action::SendPeer { to, msg } => self.send_peer(Some(&to), &msg),
                Action::NotAcknowledged { seq } => {
                    if let Some(done) = self.strict_waiters.remove(&seq) {
                        let _ = done.send(Err(PublishError::NotAcknowledged));
                    }
                }
                Action::Acknowledged { seq, by_timeout } => {
                    if by_timeout {
                        tracing::debug!(seq, "strict change released by the bound, not by acks");
                    }
                    if let Some(done) = self.strict_waiters.remove(&seq) {
                        let _ = done.send(Ok(()));
                    }
                }
            }
        }
    }

    /// Waits until every category actor has handled what was sent to it before. False if
    /// one could not answer (restarting: it flushes anyway, but the lease is not renewed).
    async fn barrier(&self) -> bool {
        let calls = self.shared.categories.keys().map(|name| {
            let writer = self.shared.writer(name);
            let gate = self.shared.category_gates.get(name).cloned();
            async move {
                let (Some(w), Some(gate)) = (writer, gate) else {
                    return false;
                };
                // A full mailbox: no renewal now (the lease lapses; fail closed).
                if !gate.try_reserve() {
                    gate.note_refused();
                    return false;
                }
                match w
                    .call(CategoryMsg::Barrier, Some(Duration::from_secs(1)))
                    .await
                {
                    Ok(ractor::rpc::CallResult::Success(())) => true,
                    Ok(_) => false,
                    Err(_) => {
                        gate.release();
                        false
                    }
                }
            }
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .all(|ok| ok)
    }

    /// Starts the replay worker when something waits for L2 and Redis answers.
    fn start_replay(&self, myself: &ActorRef<BusMsg>) {
        let Some(l2) = self.shared.l2.clone().filter(|l2| l2.available()) else {
            return;
        };
        if self.shared.l2_backlog_is_empty() || self.replaying.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = self.shared.clone();
        let replaying = self.replaying.clone();
        let myself = myself.clone();
        tokio::spawn(async move {
            let pending = match shared.l2_backlog.lock() {
                Ok(mut b) => b.take(),
                Err(_) => Vec::new(),
            };
            let total = pending.len();
            let mut done = 0;
            let mut iter = pending.into_iter();
            while let Some((category, target)) = iter.next() {
                let applied = match target.to_pattern() {
                    Ok(p) => l2.invalidate_pattern(&category, &p).await,
                    Err(_) => {
                        l2.invalidate_pattern(&category, &crate::pattern::Pattern::All)
                            .await
                    }
                };
                if let Err(e) = applied {
                    tracing::debug!(error = %e, "backlog replay interrupted");
                    if let Ok(mut b) = shared.l2_backlog.lock() {
                        b.record(&category, &target);
                        for (c, t) in iter {
                            b.record(&c, &t);
                        }
                    }
                    break;
                }
                // Peers may have refilled the old L2 value meanwhile: tell them (a full
                // mailbox flushes everywhere instead, which covers it).
                let announce = BusMsg::Publish {
                    category: Some(category),
                    target,
                    kind: ChangeKind::Invalidate,
                    strict: false,
                    l2_pending: false,
                    done: None,
                };
                tell(&shared, &myself, announce);
                done += 1;
            }
            // Only now may L2 be read again (what failed was recorded again above).
            if let Ok(mut b) = shared.l2_backlog.lock() {
                b.replay_done();
            }
            tracing::info!(replayed = done, total, "uncertain changes replayed into L2");
            replaying.store(false, Ordering::Release);
        });
    }

    fn apply(&self, category: Option<&str>, target: &Target) {
        NodeCounters::incr(&self.shared.counters.invalidations_received);
        let Ok(parsed) = target.to_pattern() else {
            // The machine checked it; unreachable in practice, and flushing is its job.
            NodeCounters::incr(&self.shared.counters.invalid_messages);
            return;
        };
        // Before the L1 writers see it: a local `set` racing this change checks the mark.
        match (target, category) {
            (Target::Key(k), Some(c)) => self.shared.remote.mark_key(c, k),
            _ => self.shared.remote.mark_all(),
        }
        let names: Vec<String> = match category {
            None => self.shared.categories.keys().cloned().collect(),
            Some(c) if self.shared.categories.contains_key(c) => vec![c.to_string()],
            Some(_) => return, // the machine flushed for an unknown category
        };
        for name in names {
            // A full mailbox or a restarting actor flushes the category instead.
            self.shared.tell_writer(
                &name,
                CategoryMsg::Invalidate {
                    pattern: parsed.clone(),
                    reply: None,
                },
            );
        }
    }

    /// A [`BusMsg::Tick`] at `at` (a strict or peer change's deadline), coalesced with the
    /// periodic one: the machine decides at the deadline, not up to a tick period later.
    fn wake_at(&self, myself: ActorRef<BusMsg>, at: Instant) {
        let pending = self.tick_pending.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            if !pending.swap(true, Ordering::AcqRel) {
                let _ = myself.cast(BusMsg::Tick);
            }
        });
    }

    /// Seals and sends `msg` over QUIC to one peer, or to every live peer.
    fn send_peer(&self, to: Option<&str>, msg: &BusMessage) {
        let Some(g) = self.shared.gossip() else {
            return;
        };
        let mut bytes = match wire::encode(msg) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode bus message");
                return;
            }
        };
        if let Some(k) = &self.key {
            bytes = crate::wire_auth::seal(k, &bytes);
        }
        NodeCounters::incr(&self.shared.counters.peer_messages_sent);
        match to {
            Some(peer) => g.send_to(peer, bytes),
            None => g.broadcast(bytes),
        }
    }

    fn send(&self, msg: &BusMessage, done: Option<Done>) {
        let channel = if matches!(msg, BusMessage::Ping { .. }) {
            self.ping_channel.clone()
        } else {
            self.channel.clone()
        };
        self.send_to(msg, channel, done, None);
    }

    /// Queues `msg` for the publisher. False when it was not queued (encoding failed, the
    /// queue is full, the publisher stopped): `done` has the error then. A refused
    /// invalidation already has its sequence number, so peers see the gap and flush; a
    /// refused ping or ack only delays a renewal or a strict release (at most B).
    fn send_to(
        &self,
        msg: &BusMessage,
        channel: String,
        done: Option<Done>,
        strict_seq: Option<u64>,
    ) -> bool {
        let fail = |done: Option<Done>, e: PublishError| {
            if let Some(d) = done {
                let _ = d.send(Err(e));
            }
            false
        };
        let bytes = match wire::encode(msg) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode bus message");
                return fail(done, PublishError::Refused(e.to_string()));
            }
        };
        let gate = &self.shared.publisher_gate;
        if !gate.try_reserve() {
            gate.note_refused();
            tracing::warn!("bus publisher queue full: message not sent");
            return fail(done, PublishError::Overloaded);
        }
        let queued = self.outgoing.send(Outgoing {
            bytes,
            channel,
            invalidation: matches!(msg, BusMessage::Invalidation(_)),
            done,
            strict_seq,
        });
        match queued {
            Ok(()) => true,
            Err(e) => {
                gate.release();
                tracing::error!("bus publisher stopped");
                fail(e.0.done, PublishError::Stopped)
            }
        }
    }

    async fn link_down(&mut self, reason: &str) {
        if self.machine.link() == LinkState::Up {
            tracing::warn!(reason, "redis subscription down: L1 lease revoked");
        }
        let actions = self.machine.link_down(Instant::now());
        self.shared.link_up.store(false, Ordering::Relaxed);
        Box::pin(self.run(actions)).await;
    }

    fn restart_connection_later(&mut self) {
        if let Some(t) = self.conn_task.take() {
            t.abort();
        }
        self.conn_gen += 1;
        self.conn_task = None;
    }

    async fn check_isolation(&mut self, now: Instant) {
        let cfg = &self.shared.config;
        if cfg.redis.is_none() || cfg.peers.is_empty() {
            return;
        }
        let peers = self.shared.gossip().map(|g| g.alive_peers()).unwrap_or(0);
        let reachable = self.machine.link() == LinkState::Up || peers > 0;
        if reachable {
            self.unreachable_since = None;
            if self.shared.isolated.load(Ordering::Relaxed) {
                tracing::warn!("isolation ended; flushing L1 before serving");
                // The flag clears only after the flush: nothing stale is served meanwhile.
                self.shared.flush_all("isolation_ended").await;
                self.shared.isolated.store(false, Ordering::Relaxed);
            }
        } else {
            let since = *self.unreachable_since.get_or_insert(now);
            if now.duration_since(since) > cfg.isolation_grace
                && !self.shared.isolated.swap(true, Ordering::Relaxed)
            {
                tracing::error!("neither redis nor any peer reachable: isolated");
            }
        }
    }

    /// Records a protocol counter delta into the node counters.
    fn count_duplicates(&self, before: u64) {
        let dups = self.machine.counters().duplicates - before;
        self.shared
            .counters
            .duplicate_messages
            .fetch_add(dups, Ordering::Relaxed);
    }
}

impl Actor for BusActor {
    type Msg = BusMsg;
    type State = BusState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let bus_ns = crate::l2::topology::bus_namespace(
            shared.config.redis.as_ref(),
            &shared.config.namespace,
        );
        let channel = channel(&bus_ns);
        let ping_channel = ping_channel(&bus_ns, &shared.instance);
        let config = CoherenceConfig::with_bound(shared.config.staleness_bound);
        let machine = Coherence::new(
            shared.config.node_id.clone(),
            rand::random::<u64>(),
            config,
            Instant::now(),
        )
        .with_categories(shared.categories.keys().cloned())
        .with_ack_channel(shared.instance.clone());
        // With Redis and gossip peers, the lease survives a Redis outage over QUIC.
        let machine = if shared.config.redis.is_some() && shared.config.gossip_addr.is_some() {
            machine.with_peer_lease()
        } else {
            machine
        };
        // A restarted bus cannot know what it missed; its old mailbox is gone.
        shared.bus_gate.reset();
        shared.link_up.store(false, Ordering::Relaxed);
        shared.lease.revoke();
        let conn_task = spawn_connection(
            myself.clone(),
            shared.clone(),
            [channel.clone(), ping_channel.clone()],
            0,
        );
        let tick = config.ping_interval.min(Duration::from_millis(50));
        let tick_pending = Arc::new(AtomicBool::new(false));
        let tick_task = Some({
            let (myself, pending) = (myself.clone(), tick_pending.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(tick);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    // A stalled actor gets one Tick, not one per period.
                    if !pending.swap(true, Ordering::AcqRel) && myself.cast(BusMsg::Tick).is_err() {
                        return;
                    }
                }
            })
        });
        let key = match &shared.config.cluster_secret {
            Some(secret) => Some(Arc::new(
                crate::wire_auth::ClusterKey::new(secret.as_bytes())
                    .map_err(|e| format!("cluster secret: {e}"))?,
            )),
            None => None,
        };
        let (outgoing, publisher) = spawn_publisher(shared.clone(), myself.clone(), key.clone());
        Ok(BusState {
            shared,
            machine,
            channel,
            ping_channel,
            bus_ns,
            conn_task,
            conn_gen: 0,
            tick_task,
            unreachable_since: None,
            outgoing,
            publisher,
            replaying: Arc::new(AtomicBool::new(false)),
            strict_waiters: std::collections::HashMap::new(),
            key,
            tick_pending,
            via: Via::Redis,
            peers_seen: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.conn_task.take() {
            t.abort();
        }
        state.publisher.abort();
        if let Some(t) = state.tick_task.take() {
            t.abort();
        }
        state.shared.lease.revoke();
        state.shared.link_up.store(false, Ordering::Relaxed);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        if msg.gated() {
            state.shared.bus_gate.release();
        }
        match msg {
            BusMsg::Overflow => {
                // Cleared first: an overflow after this point asks for another flush.
                state.shared.bus_gate.overflow_handled();
                // The refused message may have been one of our invalidations: a skipped
                // sequence number makes every peer flush at our next message or heartbeat.
                state.machine.skip_seq();
                state.shared.flush_all("overflow").await;
            }
            BusMsg::Publish {
                category,
                target,
                kind,
                strict,
                l2_pending,
                done,
            } => {
                NodeCounters::incr(&state.shared.counters.invalidations_sent);
                if l2_pending {
                    // L2 did not take it: every peer must ack it over QUIC (and keep it
                    // for replay into L2) before it is acknowledged.
                    let (msg, actions) =
                        state
                            .machine
                            .outgoing_peer(category.as_deref(), target, kind, now);
                    if let BusMessage::Invalidation(inv) = &msg {
                        if let Some(d) = done {
                            state.strict_waiters.insert(inv.seq, d);
                        }
                    }
                    state.send_peer(None, &msg);
                    state.run(actions).await;
                    state.wake_at(myself.clone(), now + state.shared.config.staleness_bound);
                } else if strict && state.shared.l2.is_some() {
                    let msg = state
                        .machine
                        .outgoing_strict(category.as_deref(), target, kind, now);
                    let BusMessage::Invalidation(inv) = &msg else {
                        return Ok(());
                    };
                    let seq = inv.seq;
                    if let Some(d) = done {
                        state.strict_waiters.insert(seq, d);
                    }
                    let channel = state.channel.clone();
                    if !state.send_to(&msg, channel, None, Some(seq)) {
                        state.machine.publish_failed(seq);
                        if let Some(done) = state.strict_waiters.remove(&seq) {
                            let _ = done.send(Err(PublishError::Overloaded));
                        }
                    }
                } else {
                    let msg = state
                        .machine
                        .outgoing(category.as_deref(), target, kind, now);
                    state.send(&msg, done);
                }
            }
            BusMsg::Published { seq, result } => match result {
                Ok(receivers) => {
                    let actions = state.machine.published(seq, receivers, now);
                    state.run(actions).await;
                    // Released by the bound at the latest: on time, not at the next tick.
                    state.wake_at(myself.clone(), now + state.shared.config.staleness_bound);
                }
                Err(e) => {
                    state.machine.publish_failed(seq);
                    if let Some(done) = state.strict_waiters.remove(&seq) {
                        let _ = done.send(Err(e));
                    }
                }
            },
            BusMsg::Inbound(bytes, via) => {
                let before = state.machine.counters().duplicates;
                let applied_before = state.machine.counters().applied;
                let mut sent_at_ms = None;
                let frame = match &state.key {
                    Some(k) => crate::wire_auth::open(k, &bytes).map_err(|e| e.to_string()),
                    None => Ok(&bytes[..]),
                };
                let decoded =
                    frame.and_then(|f| wire::decode::<BusMessage>(f).map_err(|e| e.to_string()));
                let actions = match decoded {
                    Ok(msg) => {
                        if let BusMessage::Invalidation(inv) = &msg {
                            sent_at_ms = Some(inv.sent_at_ms);
                            if via == Via::Quic && inv.kind != ChangeKind::Set {
                                // Its L2 outcome is unknown here (a peer sends over QUIC
                                // when Redis failed it): keep it for replay into L2, and
                                // read L2 only after that.
                                state
                                    .shared
                                    .l2_missed_any(inv.category.as_deref(), &inv.target);
                            }
                        }
                        state.machine.handle_message(msg, now)
                    }
                    Err(e) => {
                        NodeCounters::incr(&state.shared.counters.invalid_messages);
                        tracing::debug!(error = %e, ?via, "undecodable bus payload: flushing");
                        state.machine.undecodable(now)
                    }
                };
                state.count_duplicates(before);
                state.via = via;
                state.run(actions).await;
                state.via = Via::Redis;
                if let Some(ms) = sent_at_ms {
                    if state.machine.counters().applied > applied_before {
                        // Publish on the origin -> handed to our L1 writer.
                        state.shared.metrics.observe_propagation_since(ms);
                    }
                }
            }
            BusMsg::LinkUp(cm, gen) => {
                if gen != state.conn_gen {
                    return Ok(());
                }
                if let Some(l2) = &state.shared.l2 {
                    l2.install(Some(cm));
                }
                // Revoke, then flush, before anything is trusted again.
                let actions = state.machine.link_up(now);
                state.run(actions).await;
                state.shared.link_up.store(true, Ordering::Relaxed);
                state.start_replay(&myself);
                NodeCounters::incr(&state.shared.counters.redis_reconnects);
                tracing::info!(channel = %state.channel, ping = %state.ping_channel, "redis link up");
            }
            BusMsg::LinkDown(reason, gen) => {
                if gen == state.conn_gen {
                    state.link_down(&reason).await;
                }
            }
            BusMsg::Tick => {
                state.tick_pending.store(false, Ordering::Release);
                if state.conn_task.is_none() && state.shared.config.redis.is_some() {
                    state.conn_task = spawn_connection(
                        myself.clone(),
                        state.shared.clone(),
                        [state.channel.clone(), state.ping_channel.clone()],
                        state.conn_gen,
                    );
                }
                if let Some(g) = state.shared.gossip() {
                    // Copying every peer's id 20 times a second costs an idle 100-node
                    // cluster a quarter of its CPU; the copy is taken only when it can differ.
                    let version = g.peers_version();
                    let fresh = state.peers_seen.is_some_and(|(v, at)| {
                        v == version && now.saturating_duration_since(at) < PEERS_REFRESH
                    });
                    if !fresh || state.machine.peer_mode() {
                        state.peers_seen = Some((version, now));
                        let actions = state.machine.set_live_peers(g.live_peer_ids(), now);
                        state.run(actions).await;
                    }
                }
                let actions = state.machine.tick(now);
                state.run(actions).await;
                if state.machine.link() == LinkState::Up {
                    state.start_replay(&myself);
                }
                state.check_isolation(now).await;
            }
        }
        Ok(())
    }
}
