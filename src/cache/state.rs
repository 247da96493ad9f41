//! The node's state, private to the cache module: [`Shared`], behind the facade.
//!
//! The facade, the supervisor and the ports ([`crate::bus::NodePort`],
//! [`crate::actors::gossip::GossipPort`]) read it; nothing outside the cache module names it.
//! Its fields are set once at start, except the gossip link and the running actors, which
//! the supervisor installs (and removes) as it (re)starts them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ractor::RpcReplyPort;

use super::key_locks::KeyLocks;
use super::known_gen::KnownGens;
use super::remote::RemoteMarks;
use super::warm_signal::WarmUp;
use super::writers::Writers;
use crate::actors::mailbox::MailboxGate;
use crate::actors::CategoryMsg;
use crate::bus::BusHandle;
use crate::cluster::{Membership, PeerLink};
use crate::coherence::Lease;
use crate::config::{CategoryConfig, Config};
use crate::error::CacheError;
use crate::l1::{CategoryMap, L1Category};
use crate::l2::{Backlog, L2};
use crate::node_metrics::NodeMetrics;
use crate::stats::NodeCounters;
use crate::wire::Target;

/// State shared by the facade and the actors.
pub(super) struct Shared {
    pub(super) config: Arc<Config>,
    /// Unique per instance, so several nodes can live in one process (tests).
    pub(super) instance: String,
    pub(super) categories: CategoryMap,
    /// The category actors (the L1 writers) and the gates of their mailboxes.
    pub(super) writers: Writers,
    /// The bus actor and the gates of its queues.
    pub(super) bus: Arc<BusHandle>,
    pub(super) l2: Option<Arc<L2>>,
    pub(super) counters: NodeCounters,
    /// Redis pub/sub subscription is live (coherence link up).
    pub(super) link_up: AtomicBool,
    /// Neither Redis nor any peer reachable for longer than the isolation grace.
    pub(super) isolated: AtomicBool,
    /// The replay hold: L2 is not read at all (set by the bus from the coherence machine;
    /// on from the start of a node with Redis and gossip until every live peer told it
    /// what waits in its replay backlog).
    pub(super) l2_hold: AtomicBool,
    /// Peers' changes seen by the bus, for [`super::HybridCache::set`]'s race check.
    pub(super) remote: RemoteMarks,
    peers: RwLock<Option<Arc<dyn PeerLink>>>,
    membership: RwLock<Option<Arc<dyn Membership>>>,
    /// Changes whose L2 outcome is unknown (or, with the opt-in, missing), replayed when
    /// Redis answers again.
    pub(super) l2_backlog: Mutex<Backlog>,
    /// Latency histograms and event counters (`/metrics`); see [`crate::node_metrics`].
    pub(super) metrics: Arc<NodeMetrics>,
    /// The L1 freshness lease (always held without Redis).
    pub(super) lease: Lease,
    /// Serializes writes of one key on this node.
    pub(super) key_locks: KeyLocks,
    /// Warm-up's re-subscription signal and tasks (see [`super::warm_up`]).
    pub(super) warm_up: WarmUp,
    /// The category generations known to this node (L2 hits without the read script).
    pub(super) known_gens: KnownGens,
}

impl Shared {
    /// The state of a node with a validated `config`; no actor runs yet.
    pub(super) fn new(config: Config) -> Shared {
        let budgets = crate::config::l1_byte_budgets(&config.categories, config.l1_max_bytes);
        let categories = CategoryMap::new(config.categories.iter().map(|(name, cat)| {
            let cat = CategoryConfig {
                max_bytes: budgets.get(name).copied(),
                ..*cat
            };
            (name.clone(), Arc::new(L1Category::new(name, cat)))
        }));
        let l2 = config.redis.as_ref().map(|target| {
            let l2 = L2::new(&config.namespace, config.redis_timeout)
                .with_min_replicas(config.l2_min_replicas);
            // Sentinel: L2 reads and write acknowledgements need a primary proof.
            Arc::new(match target {
                crate::config::RedisTarget::Sentinel { .. } => l2.with_primary_fence(),
                _ => l2,
            })
        });
        let instance = format!("{}-{:016x}", config.node_id, rand::random::<u64>());
        let cap = config.mailbox_capacity;
        let bus = BusHandle::new(cap, config.redis_timeout, config.staleness_bound);
        let lease = if config.redis.is_some() {
            Lease::new(config.staleness_bound)
        } else {
            Lease::always()
        };
        let held = config.redis.is_some() && config.gossip_addr.is_some();
        let known_gens = KnownGens::new(config.categories.keys());
        Shared {
            writers: Writers::new(config.categories.keys(), cap),
            bus: Arc::new(bus),
            config: Arc::new(config),
            instance,
            categories,
            l2,
            counters: NodeCounters::default(),
            link_up: AtomicBool::new(false),
            isolated: AtomicBool::new(false),
            l2_hold: AtomicBool::new(held),
            remote: RemoteMarks::new(),
            peers: RwLock::new(None),
            l2_backlog: Mutex::new(Backlog::default()),
            membership: RwLock::new(None),
            metrics: Arc::default(),
            lease,
            key_locks: KeyLocks::new(),
            warm_up: WarmUp::new(),
            known_gens,
        }
    }

    /// Installs (or removes) the gossip link: the peers the bus reaches, the membership
    /// HTTP shows.
    pub(super) fn set_gossip(
        &self,
        peers: Option<Arc<dyn PeerLink>>,
        membership: Option<Arc<dyn Membership>>,
    ) {
        if let Ok(mut p) = self.peers.write() {
            *p = peers;
        }
        if let Ok(mut g) = self.membership.write() {
            *g = membership;
        }
    }

    /// The cluster membership view, when the gossip actor runs.
    pub(super) fn membership(&self) -> Option<Arc<dyn Membership>> {
        self.membership.read().ok()?.clone()
    }

    /// The gossip peers, when the gossip actor runs.
    pub(super) fn gossip(&self) -> Option<Arc<dyn PeerLink>> {
        self.peers.read().ok()?.clone()
    }

    /// Remembers a change whose L2 outcome is unknown (Redis configured but not answering).
    pub(super) fn l2_missed(&self, category: &str, target: &Target) {
        if self.l2.is_some() {
            if let Ok(mut b) = self.l2_backlog.lock() {
                b.record(category, target);
            }
        }
    }

    /// Remembers a change a peer sent over QUIC (its L2 outcome unknown here) for replay
    /// into L2; `None` = every category.
    pub(super) fn l2_missed_any(&self, category: Option<&str>, target: &Target) {
        match category {
            Some(c) if self.categories.contains_key(c) => self.l2_missed(c, target),
            Some(_) => {}
            None => {
                for c in self.categories.keys() {
                    self.l2_missed(c, target);
                }
            }
        }
    }

    /// Remembers that every category must be invalidated in L2 before it is read again.
    pub(super) fn l2_missed_everything(&self) {
        for c in self.categories.keys() {
            self.l2_missed(c, &Target::Everything);
        }
    }

    /// Whether `category` is `strict`.
    pub(super) fn is_strict(&self, category: &str) -> bool {
        self.categories
            .get(category)
            .is_some_and(|l1| l1.config().consistency == crate::config::Consistency::Strict)
    }

    /// Whether nothing waits to be replayed into L2.
    pub(super) fn l2_backlog_is_empty(&self) -> bool {
        self.l2_backlog
            .lock()
            .map(|b| b.is_empty())
            .unwrap_or(false)
    }

    /// Changes waiting to be replayed into L2.
    pub(super) fn l2_backlog_len(&self) -> usize {
        self.l2_backlog.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// Whether L2 may be read for `key` of `category` right now: connected, its breaker
    /// closed, not under the replay hold (after a start or a link loss, until every live
    /// peer told us its replay backlog), and no change waiting to be replayed into L2
    /// touches that key (a change acknowledged while Redis was down, or one a peer sent
    /// over QUIC, must reach L2 before L2 is read for that key again; see
    /// [`crate::l2::Backlog::touches`]). Reads of other keys do not wait for the replay.
    pub(super) fn l2_usable_for(&self, category: &str, key: &str) -> Option<&Arc<L2>> {
        self.l2.as_ref().filter(|l2| {
            !self.l2_hold.load(Ordering::Acquire)
                && l2.available()
                && self
                    .l2_backlog
                    .lock()
                    .map(|b| !b.touches(category, key))
                    .unwrap_or(false)
        })
    }

    /// Whether a change may be written to L2 now. Pending replays do not hold writes back
    /// (a replay can only remove a newer value: a miss, never an old value), except under
    /// the `serve_stale_on_outage` opt-in, whose replayed changes are *values*, which must
    /// not land after newer ones.
    pub(super) fn l2_writable(&self) -> Option<&Arc<L2>> {
        self.l2.as_ref().filter(|l2| {
            l2.available() && (!self.config.serve_stale_on_outage || self.l2_backlog_is_empty())
        })
    }

    /// Whether the opt-in lets this node serve L1 and accept local writes now (Redis
    /// configured but unreachable, not isolated).
    pub(super) fn serving_stale(&self) -> bool {
        self.config.serve_stale_on_outage
            && self.l2.is_some()
            && !self.isolated.load(Ordering::Relaxed)
    }

    /// Whether Redis is configured, connected, and the bus is subscribed.
    pub(super) fn l2_enabled(&self) -> bool {
        self.l2.as_ref().is_some_and(|l2| l2.connected()) && self.link_up.load(Ordering::Relaxed)
    }

    /// Flushes every category's L1 (coherence gap, reconnect, isolation end); `reason` is
    /// the metrics label.
    pub(super) async fn flush_all(&self, reason: &str) {
        self.remote.mark_all();
        self.known_gens.doubt();
        let mut total = 0;
        for l1 in self.categories.values() {
            total += l1.flush().await;
        }
        NodeCounters::incr(&self.counters.coherence_flushes);
        self.metrics.record_flush(reason);
        tracing::warn!(reason, dropped = total, "L1 flushed");
        self.warm_up.flushed();
    }
}

/// The L1 writers, reached through [`Writers`] with this node's [`RemoteMarks`].
impl Shared {
    /// See [`Writers::ask`].
    pub(super) async fn ask<T: Send + 'static>(
        &self,
        category: &str,
        make: impl Fn(RpcReplyPort<T>) -> CategoryMsg,
    ) -> Result<T, CacheError> {
        self.writers.ask(category, make, &self.remote).await
    }

    /// See [`Writers::tell`].
    pub(super) fn tell_writer(&self, category: &str, msg: CategoryMsg) -> bool {
        self.writers.tell(category, msg, &self.remote)
    }

    /// See [`Writers::flush_behind`].
    pub(super) fn flush_behind(&self, category: &str) {
        self.writers.flush_behind(category, &self.remote)
    }

    /// Waits until every category actor has handled what was sent to it before (see
    /// [`Writers::barrier`]).
    pub(super) async fn barrier(&self) -> bool {
        self.writers.barrier(self.categories.keys()).await
    }

    /// Every mailbox gate of the node (metrics and stats).
    pub(super) fn mailbox_gates(&self) -> Vec<Arc<MailboxGate>> {
        let mut v = vec![self.bus.gate().clone(), self.bus.publisher_gate().clone()];
        v.extend(self.writers.gates().cloned());
        v
    }
}
