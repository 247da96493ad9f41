//! The invalidation bus: Redis pub/sub (and QUIC peers as a second path) driving the
//! sans-IO [`Coherence`] machine, and the freshness [`Lease`](crate::coherence::Lease) it grants.
//!
//! The actor only moves bytes and time; every decision is the machine's:
//! - a **connection task** keeps one subscriber connection with two channels on it: the
//!   shared invalidation channel and this node's own ping channel (same connection, so a
//!   ping's echo arrives after every invalidation Redis processed before it); it reconnects
//!   with exponential backoff (backon);
//! - a **publisher task** sends our messages in the order they were numbered (what
//!   queued up goes as one pipeline; a plain change is numbered and queued by its writer's
//!   own task through the [`outbox`], under the lock of the machine's counter; an
//!   authoritative write travels with its invalidation in one script, [`BundledWrite`]), on
//!   the command connection, through the control breaker of [`crate::l2`] (never the data
//!   breaker), so the actor itself never waits on Redis and keeps draining inbound
//!   invalidations while we publish. An invalidation Redis refused is
//!   also sent to the peers over QUIC, and its writer is told it failed;
//! - a **replay worker** (one at a time) writes the changes whose L2 outcome was unknown into
//!   L2 once Redis answers again, then announces them: the actor never runs an L2 call.
//!
//! The bus reaches the rest of the node only through [`NodePort`] (implemented by the cache
//! module), and the rest of the node reaches the bus through [`BusHandle`] and [`publish`].
//! Files: `handle` (the way in), `outbox` (the publisher's queue, where writers number and
//! queue plain changes), `handlers` (one method per message), `actions` (the machine's
//! actions), `publisher`, `connection`, `replay` (the tasks), `isolation`, `port`.
//!
//! Inbound payloads go through `wire::decode` into the machine; what cannot be decoded is
//! counted and flushes L1 (fail closed). With a cluster secret (`HC_CLUSTER_SECRET`), every
//! payload is sealed with an HMAC ([`crate::wire_auth`]); one that fails is dropped, counted
//! and handled like a gap (flush), and never reaches the sequence state, so whoever can
//! PUBLISH on Redis cannot forge an invalidation or poison an origin's sequence numbers.
//! [`Action::Renew`](crate::coherence::Action::Renew) is carried out only after a barrier
//! through every category actor, so the invalidations received before a ping echo are in
//! L1 before the lease covers them.
//!
//! # Bounded queues
//! The actor's mailbox and the publisher's queue are fronted by
//! [`MailboxGate`](crate::actors::mailbox::MailboxGate)s. The connection task *waits* for a
//! slot (it stops reading; Redis buffers, and past its pub/sub output limit drops the
//! subscription, which revokes the lease). A local writer of a strict change, or a peer,
//! that finds the mailbox full does not wait: [`BusMsg::Overflow`] then flushes L1 and
//! skips one of our sequence numbers, so every peer sees a gap and flushes too (the refused message may have been one
//! of our invalidations). A message the publisher's queue refuses is a failed publish. The
//! periodic [`BusMsg::Tick`] is coalesced (one in flight at most).

mod actions;
mod connection;
mod handle;
mod handlers;
mod isolation;
mod outbox;
mod port;
mod primary;
mod publisher;
mod replay;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::coherence::{Clock, Coherence, CoherenceConfig};
use crate::l2::L2Conn;
pub use crate::wire::{ChangeKind, Target};
use crate::wire_auth::ClusterKey;
pub use handle::{publish, BusHandle};
pub use port::NodePort;

/// Where an inbound payload came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The Redis pub/sub channel.
    Redis,
    /// A gossip peer, over QUIC.
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

/// Where the outcome of a publish goes.
type Done = tokio::sync::oneshot::Sender<Result<(), PublishError>>;

/// A value write the publisher sends together with its change's invalidation (one round
/// trip; see [`crate::l2::BundledSet`]), and where the script's reply goes. A write dropped
/// unsent (the bus or its queue refused the change) drops `reply`: its writer treats that as
/// a failed write.
pub struct BundledWrite {
    /// The prepared write.
    pub set: crate::l2::BundledSet,
    /// Gets Redis's reply to the write (`1` written, `-1` late) or why it failed.
    pub reply: tokio::sync::oneshot::Sender<Result<i64, crate::l2::L2Error>>,
}

/// Messages of the bus actor.
pub enum BusMsg {
    /// Publish a local change; `done` gets the outcome: for a `strict` change, once every
    /// lease holder applied it (or B passed), else once Redis took the PUBLISH. A change
    /// whose L2 write failed (`l2_pending`) goes to the peers over QUIC and succeeds only
    /// once every peer acked it (each keeps it for replay into L2).
    Publish {
        /// The category changed; `None` = every category.
        category: Option<String>,
        /// What changed.
        target: Target,
        /// How it changed.
        kind: ChangeKind,
        /// Wait for every lease holder's ack.
        strict: bool,
        /// L2 did not take the change: go to the peers over QUIC.
        l2_pending: bool,
        /// Gets the outcome.
        done: Option<Done>,
        /// The value write to send with the invalidation (authoritative `set`s).
        write: Option<BundledWrite>,
    },
    /// The publisher's outcome for strict change `seq` (receivers counted by Redis).
    Published {
        /// The change's sequence number.
        seq: u64,
        /// The receiver count, or why the PUBLISH failed.
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
    /// Sentinel: what each sentinel named as the primary for query `id` (`None`: no
    /// answer). Ungated (one query in flight at most).
    PrimaryAnswer {
        /// The query's id.
        id: u64,
        /// Per configured sentinel, `host:port` or nothing.
        answers: Vec<Option<String>>,
    },
    /// Test hook: the actor does nothing else until the sender fires or is dropped (a
    /// stalled bus). Ungated.
    Hold(tokio::sync::oneshot::Receiver<()>),
}

impl BusMsg {
    /// Whether this message holds a slot of the mailbox gate.
    fn gated(&self) -> bool {
        !matches!(
            self,
            BusMsg::Tick | BusMsg::Overflow | BusMsg::Hold(_) | BusMsg::PrimaryAnswer { .. }
        )
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

/// The bus actor: the only owner of the node's Redis pub/sub link.
pub struct BusActor;

/// What the bus actor starts from: the node it serves and its handle (whose gates it
/// releases as it handles messages).
pub struct BusArgs {
    /// The node.
    pub node: Arc<dyn NodePort>,
    /// The handle the rest of the node reaches this actor through.
    pub handle: Arc<BusHandle>,
}

/// The bus actor's state.
pub struct BusState {
    node: Arc<dyn NodePort>,
    handle: Arc<BusHandle>,
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
    /// Outgoing messages, in sequence order, to the publisher task (shared with the
    /// writers through the handle).
    outbox: Arc<outbox::Outbox>,
    publisher: tokio::task::JoinHandle<()>,
    /// A replay worker is running.
    replaying: Arc<AtomicBool>,
    /// Writers of our strict changes, by sequence number, until [`crate::coherence::Action::Acknowledged`].
    strict_waiters: std::collections::HashMap<u64, Done>,
    /// HMAC key of the cluster secret, when one is configured.
    key: Option<Arc<ClusterKey>>,
    /// A Tick is in the mailbox.
    tick_pending: Arc<AtomicBool>,
    /// The path of the inbound message whose actions are running (acks go back on it).
    via: Via,
    /// The gossip peers' version last handed to the machine, and when (see
    /// [`PEERS_REFRESH`]).
    peers_seen: Option<(u64, Instant)>,
    /// Sentinel: the task asking the sentinels for the primary proof.
    prober: Option<primary::Prober>,
}

/// The tick re-reads the gossip peers when their version moved, in peer mode, and at least
/// this often (a replaced gossip link restarts its versions).
const PEERS_REFRESH: Duration = Duration::from_secs(1);

/// The coherence machine of a (re)started bus.
fn new_machine(node: &dyn NodePort) -> (Coherence, CoherenceConfig) {
    let cfg = node.config();
    let config = CoherenceConfig::with_bound(cfg.staleness_bound);
    let now = Clock::system().now();
    let machine = Coherence::new(cfg.node_id.clone(), rand::random::<u64>(), config, now)
        .with_categories(node.category_names())
        .with_ack_channel(node.instance().to_string());
    // Sentinel: the lease and L2 also need the sentinels to name our server.
    let machine = match primary::sentinel_count(cfg.redis.as_ref()) {
        Some(n) => machine.with_primary_proof(n, now),
        None => machine,
    };
    // With Redis and gossip peers, the lease survives a Redis outage over QUIC.
    // ...and L2 is read only once every live peer told us what waits in its replay
    // backlog (after the start, at least the time gossip needs to hear of the peers).
    let machine = if cfg.redis.is_some() && cfg.gossip_addr.is_some() {
        let join_grace = cfg.gossip_probe_period + cfg.gossip_suspect_timeout;
        machine
            .with_peer_lease()
            .with_replay_hold(Clock::system().now(), join_grace)
    } else {
        machine
    };
    (machine, config)
}

/// The periodic tick: a stalled actor gets one Tick, not one per period.
fn spawn_ticker(
    myself: ActorRef<BusMsg>,
    pending: Arc<AtomicBool>,
    tick: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if !pending.swap(true, Ordering::AcqRel) && myself.cast(BusMsg::Tick).is_err() {
                return;
            }
        }
    })
}

impl Actor for BusActor {
    type Msg = BusMsg;
    type State = BusState;
    type Arguments = BusArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        BusArgs { node, handle }: BusArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cfg = node.config();
        let bus_ns = crate::l2::topology::bus_namespace(cfg.redis.as_ref(), &cfg.namespace);
        let channel = channel(&bus_ns);
        let ping_channel = ping_channel(&bus_ns, node.instance());
        let (machine, config) = new_machine(node.as_ref());
        // A restarted bus cannot know what it missed; its old mailbox is gone.
        handle.gate().reset();
        node.set_link_up(false);
        node.revoke_lease();
        node.set_l2_hold(machine.l2_held());
        let conn_task = connection::spawn_connection(
            myself.clone(),
            handle.clone(),
            cfg.redis.clone(),
            cfg.redis_timeout,
            [channel.clone(), ping_channel.clone()],
            0,
            cfg.allow_persistent_redis,
        );
        let tick = config.ping_interval.min(Duration::from_millis(50));
        let tick_pending = Arc::new(AtomicBool::new(false));
        let tick_task = Some(spawn_ticker(myself.clone(), tick_pending.clone(), tick));
        let key = match &cfg.cluster_secret {
            Some(secret) => Some(Arc::new(
                ClusterKey::new(secret.as_bytes()).map_err(|e| format!("cluster secret: {e}"))?,
            )),
            None => None,
        };
        let (queue, publisher) =
            publisher::spawn_publisher(node.clone(), handle.clone(), myself.clone(), key.clone());
        let outbox = Arc::new(outbox::Outbox::new(
            node.clone(),
            handle.publisher_gate().clone(),
            queue,
            machine.stamp().clone(),
            channel.clone(),
        ));
        // From here on, writers queue their plain changes in this machine's numbering.
        handle.set_outbox(Some(outbox.clone()));
        let prober = primary::spawn_prober(cfg.redis.as_ref(), cfg.redis_timeout, myself.clone());
        Ok(BusState {
            node,
            handle,
            machine,
            channel,
            ping_channel,
            bus_ns,
            conn_task,
            conn_gen: 0,
            tick_task,
            unreachable_since: None,
            outbox,
            publisher,
            replaying: Arc::new(AtomicBool::new(false)),
            strict_waiters: std::collections::HashMap::new(),
            key,
            tick_pending,
            via: Via::Redis,
            peers_seen: None,
            prober,
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
        state.handle.clear_outbox(&state.outbox);
        state.publisher.abort();
        if let Some(p) = state.prober.take() {
            p.stop();
        }
        if let Some(t) = state.tick_task.take() {
            t.abort();
        }
        state.node.revoke_lease();
        state.node.set_link_up(false);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // The lease's clock: it keeps counting through a suspend (see coherence::Clock).
        let now = Clock::system().now();
        if msg.gated() {
            state.handle.gate().release();
        }
        match msg {
            BusMsg::Overflow => state.on_overflow().await,
            BusMsg::Publish {
                category,
                target,
                kind,
                strict,
                l2_pending,
                done,
                write,
            } => {
                let change = handlers::Change {
                    category,
                    target,
                    kind,
                    write,
                };
                state
                    .on_publish(&myself, change, strict, l2_pending, done, now)
                    .await
            }
            BusMsg::Published { seq, result } => {
                state.on_published(&myself, seq, result, now).await
            }
            BusMsg::Inbound(bytes, via) => state.on_inbound(bytes, via, now).await,
            BusMsg::LinkUp(conn, gen) => state.on_link_up(&myself, conn, gen, now).await,
            BusMsg::LinkDown(reason, gen) => {
                if gen == state.conn_gen {
                    state.link_down(&reason).await;
                }
            }
            BusMsg::Tick => state.on_tick(&myself, now).await,
            BusMsg::PrimaryAnswer { id, answers } => {
                state.on_primary_answer(id, answers, now).await
            }
            BusMsg::Hold(release) => {
                let _ = release.await;
            }
        }
        // The replay hold, as the machine decided it (after the actions that recorded the
        // peers' backlogs).
        state.node.set_l2_hold(state.machine.l2_held());
        Ok(())
    }
}
