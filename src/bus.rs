//! The invalidation bus: Redis pub/sub (and, while Redis is down, QUIC peers) driving the
//! sans-IO [`Coherence`] machine.
//!
//! The actor does the I/O the state machine asks for: it publishes our changes in sequence
//! order (one publish at a time, so sequence numbers reach the channel in order), feeds
//! every received payload through `wire::decode` (bad payloads are dropped and counted) into
//! the machine, and applies the resulting actions to the L1s. A connection task keeps one
//! subscription and one command connection alive, with exponential backoff (backon) between
//! attempts; when they come back, the machine orders an L1 flush before anything is served
//! from L1 again under the "ok" status.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use redis::aio::ConnectionManager;

use crate::actors::CategoryMsg;
use crate::cache::Shared;
use crate::coherence::{Action, Coherence, CoherenceConfig, LinkState};
use crate::l2::L2;
use crate::pattern::Pattern;
use crate::stats::NodeCounters;
pub use crate::wire::ChangeKind;
use crate::wire::{self, BusMessage};

/// Where an inbound payload came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Redis,
    Quic,
}

/// Messages of the bus actor.
pub enum BusMsg {
    /// Publish a local change; `done` fires once the publish was attempted.
    Publish {
        category: String,
        pattern: String,
        kind: ChangeKind,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
    /// A payload from the channel or a peer.
    Inbound(Vec<u8>, Via),
    /// The connection task (re)connected.
    LinkUp(ConnectionManager, u64),
    /// The connection task lost the subscription.
    LinkDown(String, u64),
    /// Periodic timer.
    Tick,
}

/// Sends a local change to the bus actor, if the node has one, and waits (bounded) until it
/// has been handed to Redis (or to the peers while Redis is down).
///
/// Waiting is what lets a write answer "done" only once every other node is being told: a
/// node that stops right after a write (no later heartbeat would reveal the lost message)
/// must not leave the other L1s stale, and a client that reads another node after a write
/// must not find an invalidation of its own write still queued at the origin.
pub async fn publish(shared: &Arc<Shared>, category: &str, pattern: &str, kind: ChangeKind) {
    let Some(bus) = shared.bus() else {
        return;
    };
    let (done, sent) = tokio::sync::oneshot::channel();
    let queued = bus.cast(BusMsg::Publish {
        category: category.to_string(),
        pattern: pattern.to_string(),
        kind,
        done: Some(done),
    });
    if queued.is_ok() {
        // Each publish is bounded by the Redis timeout; allow for a few queued ahead of us.
        let bound = shared.config.redis_timeout.max(Duration::from_millis(100)) * 4;
        let _ = tokio::time::timeout(bound, sent).await;
    }
}

/// The `{ns}:invalidations` channel.
pub fn channel(namespace: &str) -> String {
    format!("{namespace}:invalidations")
}

pub struct BusActor;

pub struct BusState {
    shared: Arc<Shared>,
    machine: Coherence,
    channel: String,
    conn_task: Option<tokio::task::JoinHandle<()>>,
    /// Generation of the connection task; stale LinkUp/LinkDown of a replaced task are ignored.
    conn_gen: u64,
    tick_task: Option<tokio::task::JoinHandle<()>>,
    unreachable_since: Option<Instant>,
    /// Outgoing messages, in sequence order, to the publisher task.
    outgoing: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    publisher: tokio::task::JoinHandle<()>,
}

/// A message for the publisher task.
struct Outgoing {
    bytes: Vec<u8>,
    /// Try Redis (our link is up); otherwise, or if that fails, peers over QUIC.
    redis: bool,
    /// Only invalidations go to peers (heartbeats are about the Redis path).
    invalidation: bool,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Publishes one message at a time, in the order the actor numbered them, so the actor itself
/// never waits on Redis and keeps applying inbound invalidations while we publish.
fn spawn_publisher(
    shared: Arc<Shared>,
    channel: String,
) -> (
    tokio::sync::mpsc::UnboundedSender<Outgoing>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
    let task = tokio::spawn(async move {
        while let Some(o) = rx.recv().await {
            let mut sent = false;
            if o.redis {
                if let Some(l2) = &shared.l2 {
                    match l2.publish(&channel, o.bytes.clone()).await {
                        Ok(()) => sent = true,
                        // Receivers detect the gap with our next heartbeat and flush.
                        Err(e) => tracing::debug!(error = %e, "publish failed"),
                    }
                }
            }
            if !sent && o.invalidation {
                if let Some(g) = shared.gossip() {
                    g.broadcast(o.bytes);
                    NodeCounters::incr(&shared.counters.peer_messages_sent);
                }
            }
            if let Some(done) = o.done {
                let _ = done.send(());
            }
        }
    });
    (tx, task)
}

fn spawn_connection(
    myself: ActorRef<BusMsg>,
    shared: Arc<Shared>,
    channel: String,
    gen: u64,
) -> Option<tokio::task::JoinHandle<()>> {
    let target = shared.config.redis.clone()?;
    let timeout = shared.config.redis_timeout;
    Some(tokio::spawn(async move {
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_millis(250))
            .without_max_times()
            .build();
        loop {
            match subscribe(&target, &channel, timeout).await {
                Ok((mut pubsub, cm)) => {
                    backoff = backon::ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(50))
                        .with_max_delay(Duration::from_millis(250))
                        .without_max_times()
                        .build();
                    if myself.cast(BusMsg::LinkUp(cm, gen)).is_err() {
                        return;
                    }
                    let mut stream = pubsub.on_message();
                    while let Some(msg) = stream.next().await {
                        let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
                        if myself.cast(BusMsg::Inbound(payload, Via::Redis)).is_err() {
                            return;
                        }
                    }
                    if myself
                        .cast(BusMsg::LinkDown("subscription closed".into(), gen))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "redis connect failed; retrying");
                    if myself.cast(BusMsg::LinkDown(e.to_string(), gen)).is_err() {
                        return;
                    }
                }
            }
            let delay = backoff.next().unwrap_or(Duration::from_millis(250));
            tokio::time::sleep(delay).await;
        }
    }))
}

async fn subscribe(
    target: &crate::config::RedisTarget,
    channel: &str,
    timeout: Duration,
) -> Result<(redis::aio::PubSub, ConnectionManager), crate::l2::L2Error> {
    let bound = timeout.max(Duration::from_millis(500));
    let client = redis::Client::open(crate::l2::connection_info(target)?)?;
    let mut pubsub = tokio::time::timeout(bound, client.get_async_pubsub())
        .await
        .map_err(|_| crate::l2::L2Error::Timeout(bound))??;
    tokio::time::timeout(bound, pubsub.subscribe(channel))
        .await
        .map_err(|_| crate::l2::L2Error::Timeout(bound))??;
    let cm = L2::connect(target, timeout).await?;
    Ok((pubsub, cm))
}

impl BusState {
    async fn run(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Apply { category, pattern } => self.apply(&category, &pattern),
                Action::FlushAll => self.shared.flush_all("coherence").await,
                Action::Publish(msg) => self.send(&msg, None),
                Action::Reconnect => {
                    tracing::warn!("no echo of our own heartbeats: resubscribing");
                    self.link_down("subscription silent").await;
                    self.restart_connection_later();
                }
            }
        }
    }

    async fn repair_l2(&self, category: &str, pattern: &str) {
        let Some(l2) = self.shared.l2_usable() else {
            return;
        };
        let Ok(parsed) = Pattern::glob(pattern) else {
            return;
        };
        let names: Vec<String> = if category == "*" {
            self.shared.categories.keys().cloned().collect()
        } else {
            vec![category.to_string()]
        };
        for name in names {
            if let Err(e) = l2.invalidate_pattern(&name, &parsed).await {
                tracing::debug!(error = %e, "L2 repair for a peer's change failed");
                NodeCounters::incr(&self.shared.counters.l2_errors);
            }
        }
    }

    /// Replays changes made while Redis was unreachable into L2, then announces them on the
    /// bus so peers drop anything they refilled from the old L2 values meanwhile.
    async fn replay_backlog(&mut self) {
        if self.machine.link() != LinkState::Up {
            return;
        }
        let Some(l2) = self.shared.l2.clone().filter(|l2| l2.available()) else {
            return;
        };
        let pending = match self.shared.l2_backlog.lock() {
            Ok(mut b) if !b.is_empty() => b.take(),
            _ => return,
        };
        let total = pending.len();
        let mut iter = pending.into_iter();
        let mut done = 0;
        while let Some((category, pattern)) = iter.next() {
            let Ok(parsed) = Pattern::glob(&pattern) else {
                continue;
            };
            if let Err(e) = l2.invalidate_pattern(&category, &parsed).await {
                tracing::debug!(error = %e, "backlog replay interrupted");
                if let Ok(mut b) = self.shared.l2_backlog.lock() {
                    b.record(&category, &pattern);
                    for (c, p) in iter {
                        b.record(&c, &p);
                    }
                }
                return;
            }
            let msg =
                self.machine
                    .outgoing(&category, &pattern, ChangeKind::Invalidate, Instant::now());
            self.send(&msg, None);
            done += 1;
        }
        tracing::info!(
            replayed = done,
            total,
            "changes made during the outage replayed into L2"
        );
    }

    fn apply(&self, category: &str, pattern: &str) {
        NodeCounters::incr(&self.shared.counters.invalidations_received);
        let Ok(parsed) = Pattern::glob(pattern) else {
            NodeCounters::incr(&self.shared.counters.invalid_messages);
            return;
        };
        // Before the L1 writers see it: a local `set` racing this change checks the mark.
        match &parsed {
            Pattern::Exact(k) if category != "*" => self.shared.remote.mark_key(category, k),
            _ => self.shared.remote.mark_all(),
        }
        let names: Vec<String> = if category == "*" {
            self.shared.categories.keys().cloned().collect()
        } else if self.shared.categories.contains_key(category) {
            vec![category.to_string()]
        } else {
            // A peer with another category set: nothing of ours to drop.
            NodeCounters::incr(&self.shared.counters.invalid_messages);
            return;
        };
        for name in names {
            if let Some(w) = self.shared.writer(&name) {
                let sent = w.cast(CategoryMsg::Invalidate {
                    pattern: parsed.clone(),
                    reply: None,
                });
                if sent.is_err() {
                    // The actor is restarting, and a restarted actor flushes anyway.
                    tracing::debug!(category = %name, "invalidation during actor restart");
                }
            }
        }
    }

    fn send(&self, msg: &BusMessage, done: Option<tokio::sync::oneshot::Sender<()>>) {
        let bytes = match wire::encode(msg) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode bus message");
                return;
            }
        };
        let queued = self.outgoing.send(Outgoing {
            bytes,
            redis: self.machine.link() == LinkState::Up,
            invalidation: matches!(msg, BusMessage::Invalidation(_)),
            done,
        });
        if queued.is_err() {
            tracing::error!("bus publisher stopped");
        }
    }

    async fn link_down(&mut self, reason: &str) {
        if self.machine.link() == LinkState::Up {
            tracing::warn!(reason, "redis link down: degraded, serving L1");
        }
        let actions = self.machine.link_down(Instant::now());
        if let Some(l2) = &self.shared.l2 {
            l2.install(None);
        }
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
                self.shared.flush_all("isolation ended").await;
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
        let channel = channel(&shared.config.namespace);
        let machine = Coherence::new(
            shared.config.node_id.clone(),
            rand::random::<u64>(),
            CoherenceConfig::default(),
            Instant::now(),
        );
        // A restarted bus cannot know what it missed.
        shared.link_up.store(false, Ordering::Relaxed);
        let conn_task = spawn_connection(myself.clone(), shared.clone(), channel.clone(), 0);
        let tick_task = Some(myself.send_interval(Duration::from_millis(50), || BusMsg::Tick));
        let (outgoing, publisher) = spawn_publisher(shared.clone(), channel.clone());
        Ok(BusState {
            shared,
            machine,
            channel,
            conn_task,
            conn_gen: 0,
            tick_task,
            unreachable_since: None,
            outgoing,
            publisher,
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
        if let Some(l2) = &state.shared.l2 {
            l2.install(None);
        }
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
        match msg {
            BusMsg::Publish {
                category,
                pattern,
                kind,
                done,
            } => {
                let msg = state.machine.outgoing(&category, &pattern, kind, now);
                NodeCounters::incr(&state.shared.counters.invalidations_sent);
                // `done` fires once the publisher task has handed the message to Redis.
                state.send(&msg, done);
            }
            BusMsg::Inbound(bytes, via) => match wire::decode::<BusMessage>(&bytes) {
                Ok(msg) => {
                    if let (Via::Quic, BusMessage::Invalidation(inv)) = (via, &msg) {
                        // The origin reached us over QUIC because it could not reach Redis,
                        // so its change is not in L2: repair L2 (if we can) before our L1
                        // applies or flushes, so no read here refills the old L2 value.
                        state.repair_l2(&inv.category, &inv.pattern).await;
                    }
                    let before = state.machine.counters().duplicates;
                    let actions = state.machine.handle_message(msg, now);
                    let dups = state.machine.counters().duplicates - before;
                    state
                        .shared
                        .counters
                        .duplicate_messages
                        .fetch_add(dups, Ordering::Relaxed);
                    state.run(actions).await;
                }
                Err(e) => {
                    NodeCounters::incr(&state.shared.counters.invalid_messages);
                    tracing::debug!(error = %e, ?via, "dropped invalid bus payload");
                }
            },
            BusMsg::LinkUp(cm, gen) => {
                if gen != state.conn_gen {
                    return Ok(());
                }
                if let Some(l2) = &state.shared.l2 {
                    l2.install(Some(cm));
                }
                let actions = state.machine.link_up(now);
                // Flush (ordered by the machine) before the status turns ok.
                state.run(actions).await;
                state.replay_backlog().await;
                state.shared.link_up.store(true, Ordering::Relaxed);
                NodeCounters::incr(&state.shared.counters.redis_reconnects);
                tracing::info!(channel = %state.channel, "redis link up: L2 and coherence active");
            }
            BusMsg::LinkDown(reason, gen) => {
                if gen == state.conn_gen {
                    state.link_down(&reason).await;
                }
            }
            BusMsg::Tick => {
                if state.conn_task.is_none() && state.shared.config.redis.is_some() {
                    state.conn_task = spawn_connection(
                        myself.clone(),
                        state.shared.clone(),
                        state.channel.clone(),
                        state.conn_gen,
                    );
                }
                let actions = state.machine.tick(now);
                state.run(actions).await;
                state.replay_backlog().await;
                state.check_isolation(now).await;
            }
        }
        Ok(())
    }
}
