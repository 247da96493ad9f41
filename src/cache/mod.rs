//! The library facade: [`HybridCache`].
//!
//! Reads go straight to the shared moka handles (L1) while the freshness
//! [`Lease`](crate::lease::Lease) is held, then to Redis (L2), then to the caller's loader.
//! Writes and invalidations go to L2 first (so a peer that drops its L1 entry reads the new
//! value), then through the category actor (one writer per L1), then onto the invalidation
//! bus so every other node drops its copy; writes of one key on one node are serialized
//! (L2 and L1 change in the same order).
//!
//! **Fail closed.** With Redis configured, a read that cannot be served within the
//! staleness bound (lease lapsed and L2 unreachable) is an error ([`CacheError::Unavailable`],
//! HTTP 503), never an old value; `get_or_load` calls the loader instead (the source of
//! truth) and caches nothing. A write is acknowledged only once L2 has it and its
//! invalidation was published; otherwise it fails, and its key is remembered for replay into
//! L2. The `serve_stale_on_outage` opt-in restores the original module's behaviour (serve L1
//! and accept writes locally while Redis is unreachable), outside the guarantee.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use ractor::{Actor, ActorRef, RpcReplyPort};
use serde::{de::DeserializeOwned, Serialize};

use crate::actors::mailbox::MailboxGate;
use crate::actors::{CategoryMsg, NodeSupervisor, SupervisorMsg};
use crate::config::{CategoryConfig, Config, ConfigError, Flags, RedisTarget};
use crate::error::CacheError;
use crate::l1::{CategoryMap, L1Category};
use crate::l2::L2;
use crate::pattern::Pattern;
use crate::stats::{
    CategoryStats, Counters, Health, HealthCache, L1Size, NodeCounters, Stats, Status,
};
use crate::wire::Target;

/// Where a value was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    L1,
    L2,
    Loader,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::L1 => "L1",
            Source::L2 => "L2",
            Source::Loader => "LOAD",
        }
    }
}

/// State shared by the facade and the actors.
pub struct Shared {
    pub config: Arc<Config>,
    /// Unique per instance, so several nodes can live in one process (tests).
    pub instance: String,
    pub categories: CategoryMap,
    writers: RwLock<HashMap<String, ActorRef<CategoryMsg>>>,
    /// The gate of each category actor's mailbox (kept across actor restarts).
    pub(crate) category_gates: HashMap<String, Arc<MailboxGate>>,
    /// The gate of the bus actor's mailbox.
    pub(crate) bus_gate: Arc<MailboxGate>,
    /// The gate of the bus publisher's queue.
    pub(crate) publisher_gate: Arc<MailboxGate>,
    pub l2: Option<Arc<L2>>,
    pub counters: NodeCounters,
    /// Redis pub/sub subscription is live (coherence link up).
    pub link_up: AtomicBool,
    /// Neither Redis nor any peer reachable for longer than the isolation grace.
    pub isolated: AtomicBool,
    bus: RwLock<Option<ActorRef<crate::bus::BusMsg>>>,
    /// Peers' changes seen by the bus, for [`HybridCache::set`]'s race check.
    pub(crate) remote: RemoteMarks,
    peers: RwLock<Option<Arc<dyn PeerLink>>>,
    membership: RwLock<Option<Arc<dyn crate::cluster::Membership>>>,
    /// Changes whose L2 outcome is unknown (or, with the opt-in, missing), replayed when
    /// Redis answers again.
    pub l2_backlog: std::sync::Mutex<crate::l2::Backlog>,
    /// Latency histograms and event counters (`/metrics`); see [`crate::node_metrics`].
    pub metrics: Arc<crate::node_metrics::NodeMetrics>,
    /// The L1 freshness lease (always held without Redis).
    pub lease: crate::lease::Lease,
    /// Serializes writes of one key on this node.
    key_locks: KeyLocks,
}

/// Striped async locks: writes of one `(category, key)` on one node take effect in L2, L1 and
/// on the bus in one order. Striped, so a collision only serializes two unrelated writes.
struct KeyLocks {
    stripes: Box<[tokio::sync::Mutex<()>]>,
}

impl KeyLocks {
    const STRIPES: usize = 1024;

    fn new() -> Self {
        KeyLocks {
            stripes: (0..Self::STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    async fn lock(&self, category: &str, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (category, key).hash(&mut h);
        self.stripes[(h.finish() as usize) % Self::STRIPES]
            .lock()
            .await
    }
}

/// Marks of peers' changes, bumped by the bus *before* it hands an invalidation (or a flush)
/// to the L1 writers. A local `set` reads the mark of its key around its L2 write and L1 put:
/// if it moved, a peer changed the key (or something was lost) meanwhile, and that peer's L2
/// write may be the later one, while its invalidation may have reached our L1 *before* our
/// own put. Keeping our value would then leave it in our L1 while L2 holds the peer's (for the
/// whole L1 TTL), so the writer drops its copy and the next read goes to L2.
///
/// Striped by `(category, key)`: a false positive only costs the writer one L2 read.
pub(crate) struct RemoteMarks {
    stripes: Box<[AtomicU64]>,
    wide: AtomicU64,
}

const REMOTE_STRIPES: usize = 256;

impl RemoteMarks {
    fn new() -> Self {
        RemoteMarks {
            stripes: (0..REMOTE_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            wide: AtomicU64::new(0),
        }
    }

    fn stripe(category: &str, key: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (category, key).hash(&mut h);
        (h.finish() as usize) % REMOTE_STRIPES
    }

    /// A peer changed `key` in `category`.
    pub(crate) fn mark_key(&self, category: &str, key: &str) {
        self.stripes[Self::stripe(category, key)].fetch_add(1, Ordering::SeqCst);
    }

    /// A peer changed many keys (glob, `*`, category `*`), or a flush is coming.
    pub(crate) fn mark_all(&self) {
        self.wide.fetch_add(1, Ordering::SeqCst);
    }

    fn snapshot(&self, category: &str, key: &str) -> (u64, u64) {
        (
            self.stripes[Self::stripe(category, key)].load(Ordering::SeqCst),
            self.wide.load(Ordering::SeqCst),
        )
    }
}

/// The seam between the bus and the gossip layer: who is alive, and a way to reach them.
pub trait PeerLink: Send + Sync {
    /// Number of peers currently alive.
    fn alive_peers(&self) -> usize;
    /// Best-effort delivery of a bus payload to every alive peer.
    fn broadcast(&self, payload: Vec<u8>);
    /// Node ids of the peers currently alive or suspect.
    fn live_peer_ids(&self) -> Vec<String>;
    /// Changes whenever [`PeerLink::live_peer_ids`] may have (periodic readers skip the
    /// copy while it stays the same).
    fn peers_version(&self) -> u64;
    /// Best-effort delivery of a bus payload to one peer.
    fn send_to(&self, node_id: &str, payload: Vec<u8>);
}

impl Shared {
    pub(crate) fn set_writer(&self, category: &str, actor: ActorRef<CategoryMsg>) {
        if let Ok(mut w) = self.writers.write() {
            w.insert(category.to_string(), actor);
        }
    }

    pub(crate) fn writer(&self, category: &str) -> Option<ActorRef<CategoryMsg>> {
        self.writers.read().ok()?.get(category).cloned()
    }

    pub(crate) fn set_bus(&self, bus: Option<ActorRef<crate::bus::BusMsg>>) {
        if let Ok(mut b) = self.bus.write() {
            *b = bus;
        }
    }

    pub(crate) fn bus(&self) -> Option<ActorRef<crate::bus::BusMsg>> {
        self.bus.read().ok()?.clone()
    }

    pub(crate) fn set_gossip(&self, link: Option<Arc<dyn PeerLink>>) {
        if let Ok(mut p) = self.peers.write() {
            *p = link;
        }
    }

    pub(crate) fn set_membership(&self, m: Option<Arc<dyn crate::cluster::Membership>>) {
        if let Ok(mut g) = self.membership.write() {
            *g = m;
        }
    }

    pub(crate) fn membership(&self) -> Option<Arc<dyn crate::cluster::Membership>> {
        self.membership.read().ok()?.clone()
    }

    pub(crate) fn gossip(&self) -> Option<Arc<dyn PeerLink>> {
        self.peers.read().ok()?.clone()
    }

    /// Sends a request to a category actor, retrying briefly while it restarts. A full
    /// mailbox is not waited for: the category is flushed (see [`Shared::flush_behind`])
    /// and the caller gets [`CacheError::Unavailable`].
    pub(crate) async fn ask<T: Send + 'static>(
        &self,
        category: &str,
        make: impl Fn(RpcReplyPort<T>) -> CategoryMsg,
    ) -> Result<T, CacheError> {
        let Some(gate) = self.category_gates.get(category) else {
            return Err(CacheError::Unavailable(format!(
                "no L1 writer for category `{category}`"
            )));
        };
        let mut last = String::new();
        for attempt in 0..50u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let Some(actor) = self.writer(category) else {
                last = "no actor".into();
                continue;
            };
            if !gate.try_reserve() {
                gate.note_refused();
                self.flush_behind(category);
                return Err(CacheError::Unavailable(format!(
                    "category actor `{category}`: mailbox full (L1 flushed)"
                )));
            }
            match actor.call(&make, Some(Duration::from_secs(5))).await {
                Ok(ractor::rpc::CallResult::Success(v)) => return Ok(v),
                Ok(ractor::rpc::CallResult::Timeout) => last = "timeout".into(),
                Ok(ractor::rpc::CallResult::SenderError) => last = "actor stopped".into(),
                Err(e) => {
                    // Never enqueued: the slot is ours to give back.
                    gate.release();
                    last = e.to_string();
                }
            }
        }
        Err(CacheError::Unavailable(format!(
            "category actor `{category}`: {last}"
        )))
    }

    /// Hands `msg` to the category's L1 writer without waiting. When its mailbox is full,
    /// the message is not sent and the category is flushed instead (fail closed). Returns
    /// whether the message itself was sent.
    pub(crate) fn tell_writer(&self, category: &str, msg: CategoryMsg) -> bool {
        let (Some(gate), Some(actor)) = (self.category_gates.get(category), self.writer(category))
        else {
            return false;
        };
        if !gate.try_reserve() {
            gate.note_refused();
            self.flush_behind(category);
            return false;
        }
        if actor.cast(msg).is_err() {
            // The actor is restarting; a restarted actor flushes anyway.
            gate.release();
            return false;
        }
        true
    }

    /// A change for `category`'s L1 could not be handed to its writer (full mailbox,
    /// timeout): whatever it would have removed is removed by a flush the actor runs after
    /// everything already in its mailbox (one such flush in flight at most).
    pub(crate) fn flush_behind(&self, category: &str) {
        // A local write racing the flush drops its own copy (see `RemoteMarks`).
        self.remote.mark_all();
        let Some(gate) = self.category_gates.get(category) else {
            return;
        };
        if gate.request_flush() {
            tracing::warn!(
                category,
                "L1 change not handed to the writer: flushing the category"
            );
            let sent = self
                .writer(category)
                .map(|a| a.cast(CategoryMsg::OverflowFlush).is_ok())
                .unwrap_or(false);
            if !sent {
                // No actor to flush for us (restarting: it flushes on start anyway).
                gate.overflow_handled();
            }
        }
    }

    /// Every mailbox gate of the node (metrics and stats).
    pub(crate) fn mailbox_gates(&self) -> Vec<Arc<MailboxGate>> {
        let mut v = vec![self.bus_gate.clone(), self.publisher_gate.clone()];
        v.extend(self.category_gates.values().cloned());
        v
    }

    /// Remembers a change whose L2 outcome is unknown (Redis configured but not answering).
    pub(crate) fn l2_missed(&self, category: &str, target: &crate::wire::Target) {
        if self.l2.is_some() {
            if let Ok(mut b) = self.l2_backlog.lock() {
                b.record(category, target);
            }
        }
    }

    /// Remembers a change a peer sent over QUIC (its L2 outcome unknown here) for replay
    /// into L2; `None` = every category.
    pub(crate) fn l2_missed_any(&self, category: Option<&str>, target: &crate::wire::Target) {
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
    pub(crate) fn l2_missed_everything(&self) {
        for c in self.categories.keys() {
            self.l2_missed(c, &crate::wire::Target::Everything);
        }
    }

    /// Whether `category` is `strict`.
    pub(crate) fn is_strict(&self, category: &str) -> bool {
        self.categories
            .get(category)
            .is_some_and(|l1| l1.config().consistency == crate::config::Consistency::Strict)
    }

    /// Whether nothing waits to be replayed into L2.
    pub(crate) fn l2_backlog_is_empty(&self) -> bool {
        self.l2_backlog
            .lock()
            .map(|b| b.is_empty())
            .unwrap_or(false)
    }

    /// Whether L2 may be read for `key` of `category` right now: connected, its breaker
    /// closed, and no change waiting to be replayed into L2 touches that key (a change
    /// acknowledged while Redis was down, or one a peer sent over QUIC, must reach L2
    /// before L2 is read for that key again; see [`crate::l2::Backlog::touches`]). Reads
    /// of other keys do not wait for the replay.
    pub fn l2_usable_for(&self, category: &str, key: &str) -> Option<&Arc<L2>> {
        self.l2.as_ref().filter(|l2| {
            l2.available()
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
    pub(crate) fn l2_writable(&self) -> Option<&Arc<L2>> {
        self.l2.as_ref().filter(|l2| {
            l2.available() && (!self.config.serve_stale_on_outage || self.l2_backlog_is_empty())
        })
    }

    /// Whether the opt-in lets this node serve L1 and accept local writes now (Redis
    /// configured but unreachable, not isolated).
    fn serving_stale(&self) -> bool {
        self.config.serve_stale_on_outage
            && self.l2.is_some()
            && !self.isolated.load(Ordering::Relaxed)
    }

    /// The node's stats (`GET /v1/stats`).
    pub async fn stats(&self) -> Stats {
        let mut l1_caches = BTreeMap::new();
        let mut c = Counters::default();
        for (name, l1) in &self.categories {
            // Maintenance first, so eviction notifications are counted.
            let size = l1.size().await;
            let k = &l1.counters;
            let hits = k.hits.get();
            let misses = k.misses.load(Ordering::Relaxed);
            c.hits_l1 += hits;
            c.hits_l2 += k.hits_l2.load(Ordering::Relaxed);
            c.misses += misses;
            c.loads += k.loads.load(Ordering::Relaxed);
            c.evictions += k.evictions.load(Ordering::Relaxed);
            c.expirations += k.expirations.load(Ordering::Relaxed);
            c.stale_fills_rejected += k.stale_fills_rejected.load(Ordering::Relaxed);
            let cfg = l1.config();
            l1_caches.insert(
                name.clone(),
                CategoryStats {
                    size,
                    maxsize: cfg.max_entries,
                    ttl: cfg.ttl_secs,
                    hits,
                    misses,
                    consistency: cfg.consistency.as_str().to_string(),
                    bytes: l1.bytes().await,
                    max_bytes: l1.max_bytes(),
                },
            );
        }
        let n = &self.counters;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        c.invalidations_sent = ld(&n.invalidations_sent);
        c.invalidations_received = ld(&n.invalidations_received);
        c.coherence_flushes = ld(&n.coherence_flushes);
        c.invalid_messages = ld(&n.invalid_messages);
        c.duplicate_messages = ld(&n.duplicate_messages);
        c.actor_restarts = ld(&n.actor_restarts);
        c.l2_errors = ld(&n.l2_errors);
        c.redis_reconnects = ld(&n.redis_reconnects);
        c.http_bad_requests = ld(&n.http_bad_requests);
        Stats {
            node_id: self.config.node_id.clone(),
            l1_caches,
            l2_enabled: self.l2_enabled(),
            counters: c,
            coherence: Some(self.coherence_stats()),
        }
    }

    /// The `coherence` object of the stats.
    pub fn coherence_stats(&self) -> crate::stats::CoherenceStats {
        let link = match (&self.l2, self.link_up.load(Ordering::Relaxed)) {
            (None, _) => "none",
            (Some(_), true) => "up",
            (Some(_), false) => "down",
        };
        let held = self.lease.held();
        let lease_via = match (link, held) {
            ("none", _) => "always",
            (_, false) => "none",
            ("up", true) => "redis",
            _ => "peers",
        };
        crate::stats::CoherenceStats {
            link: link.to_string(),
            lease_held: held,
            lease_via: lease_via.to_string(),
            lease_age_ms: self.lease.age().map(|a| a.as_millis() as u64),
            staleness_bound_ms: self.config.staleness_bound.as_millis() as u64,
            serve_stale_on_outage: self.config.serve_stale_on_outage,
        }
    }

    /// Whether Redis is configured, connected, and the bus is subscribed.
    pub fn l2_enabled(&self) -> bool {
        self.l2.as_ref().is_some_and(|l2| l2.connected()) && self.link_up.load(Ordering::Relaxed)
    }

    /// Flushes every category's L1 (coherence gap, reconnect, isolation end); `reason` is
    /// the metrics label.
    pub async fn flush_all(&self, reason: &str) {
        self.remote.mark_all();
        let mut total = 0;
        for l1 in self.categories.values() {
            total += l1.flush().await;
        }
        NodeCounters::incr(&self.counters.coherence_flushes);
        self.metrics.record_flush(reason);
        tracing::warn!(reason, dropped = total, "L1 flushed");
    }
}

/// Builder for [`HybridCache`].
#[derive(Debug, Default)]
pub struct HybridCacheBuilder {
    config: Option<Config>,
    categories: Vec<(String, CategoryConfig)>,
    redis_url: Option<String>,
    node_id: Option<String>,
    namespace: Option<String>,
    staleness_bound: Option<Duration>,
    serve_stale_on_outage: Option<bool>,
    strict: Vec<String>,
}

impl HybridCacheBuilder {
    /// Starts from a complete configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }
    /// Adds or overrides a category.
    pub fn category(mut self, name: &str, ttl: Duration, max_entries: u64) -> Self {
        self.categories.push((
            name.to_string(),
            CategoryConfig {
                ttl_secs: ttl.as_secs().max(1),
                max_entries,
                ..CategoryConfig::default()
            },
        ));
        self
    }
    /// Uses Redis as L2.
    pub fn redis_url(mut self, url: &str) -> Self {
        self.redis_url = Some(url.to_string());
        self
    }
    pub fn node_id(mut self, id: &str) -> Self {
        self.node_id = Some(id.to_string());
        self
    }
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_string());
        self
    }
    /// The staleness bound B (default 100 ms): with Redis, no read returns a value replaced
    /// by a write acknowledged more than B before the read started.
    pub fn staleness_bound(mut self, bound: Duration) -> Self {
        self.staleness_bound = Some(bound);
        self
    }
    /// Makes `category` strict: once a write, delete or invalidation of it is acknowledged,
    /// no node returns the older value (writes wait for every lease holder, at most B).
    pub fn strict(mut self, category: &str) -> Self {
        self.strict.push(category.to_string());
        self
    }
    /// Opt-in: while Redis is unreachable, keep serving L1 and accept writes locally (the
    /// original module's behaviour). Reads may then be older than the staleness bound.
    pub fn serve_stale_on_outage(mut self, on: bool) -> Self {
        self.serve_stale_on_outage = Some(on);
        self
    }

    /// Validates the configuration and starts the actor tree.
    pub async fn build(self) -> Result<HybridCache, BuildError> {
        let mut config = self.config.unwrap_or_default();
        for (name, cat) in self.categories {
            config.categories.insert(name, cat);
        }
        if let Some(url) = self.redis_url {
            config.redis = Some(RedisTarget::Url {
                url,
                password: None,
            });
        }
        if let Some(id) = self.node_id {
            config.node_id = id;
        }
        if let Some(ns) = self.namespace {
            config.namespace = ns;
        }
        if let Some(b) = self.staleness_bound {
            config.staleness_bound = b;
        }
        if let Some(on) = self.serve_stale_on_outage {
            config.serve_stale_on_outage = on;
        }
        for name in &self.strict {
            match config.categories.get_mut(name) {
                Some(c) => c.consistency = crate::config::Consistency::Strict,
                None => {
                    return Err(BuildError::Config(ConfigError::Invalid {
                        field: "strict".into(),
                        reason: format!("`{name}` is not a configured category"),
                    }))
                }
            }
        }
        config.validate()?;
        HybridCache::start(config).await
    }
}

/// Errors starting a cache.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("failed to start the actor tree: {0}")]
    Actors(String),
}

/// A two-level cache. Cheap to clone; all clones share one actor tree.
#[derive(Clone)]
pub struct HybridCache {
    shared: Arc<Shared>,
    supervisor: ActorRef<SupervisorMsg>,
}

impl std::fmt::Debug for HybridCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridCache")
            .field("node_id", &self.shared.config.node_id)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
enum LoadFail<E: std::error::Error + 'static> {
    #[error(transparent)]
    Loader(E),
    /// The value was loaded, but an invalidation raced with the load: return it to this
    /// caller, never cache it.
    #[error("loaded value raced an invalidation")]
    Stale(Bytes),
}

impl HybridCache {
    /// A builder with the default categories and no Redis.
    pub fn builder() -> HybridCacheBuilder {
        HybridCacheBuilder::default()
    }

    /// Configuration from the environment (`REDIS_*`, `APP_ENV`, `HC_*`), like the original.
    pub async fn from_env() -> Result<HybridCache, BuildError> {
        let config = Config::load(&Flags::default())?;
        HybridCache::start(config).await
    }

    /// Starts the actor tree for a validated configuration.
    pub async fn start(config: Config) -> Result<HybridCache, BuildError> {
        let budgets = crate::config::l1_byte_budgets(&config.categories, config.l1_max_bytes);
        let categories = CategoryMap::new(config.categories.iter().map(|(name, cat)| {
            let cat = CategoryConfig {
                max_bytes: budgets.get(name).copied(),
                ..*cat
            };
            (name.clone(), Arc::new(L1Category::new(name, cat)))
        }));
        let l2 = config.redis.as_ref().map(|_| {
            Arc::new(
                L2::new(&config.namespace, config.redis_timeout)
                    .with_min_replicas(config.l2_min_replicas),
            )
        });
        let instance = format!("{}-{:016x}", config.node_id, rand::random::<u64>());
        let has_redis = config.redis.is_some();
        let staleness_bound = config.staleness_bound;
        let cap = config.mailbox_capacity;
        let category_gates = config
            .categories
            .keys()
            .map(|name| {
                let gate = MailboxGate::new(format!("category:{name}"), cap);
                (name.clone(), Arc::new(gate))
            })
            .collect();
        let shared = Arc::new(Shared {
            category_gates,
            bus_gate: Arc::new(MailboxGate::new("bus", cap)),
            publisher_gate: Arc::new(MailboxGate::new("publisher", cap)),
            config: Arc::new(config),
            instance: instance.clone(),
            categories,
            writers: RwLock::new(HashMap::new()),
            l2,
            counters: NodeCounters::default(),
            link_up: AtomicBool::new(false),
            isolated: AtomicBool::new(false),
            bus: RwLock::new(None),
            remote: RemoteMarks::new(),
            peers: RwLock::new(None),
            l2_backlog: std::sync::Mutex::new(crate::l2::Backlog::default()),
            membership: RwLock::new(None),
            metrics: Arc::default(),
            lease: if has_redis {
                crate::lease::Lease::new(staleness_bound)
            } else {
                crate::lease::Lease::always()
            },
            key_locks: KeyLocks::new(),
        });
        let (supervisor, _) = Actor::spawn(
            Some(format!("{instance}/supervisor")),
            NodeSupervisor,
            shared.clone(),
        )
        .await
        .map_err(|e| BuildError::Actors(e.to_string()))?;
        Ok(HybridCache { shared, supervisor })
    }

    /// Stops the actor tree. Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.supervisor.cast(SupervisorMsg::Stopping);
        // Let the Stopping message land before children stop.
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.supervisor
            .stop_children_and_wait(None, Some(Duration::from_secs(5)))
            .await;
        self.supervisor.stop(None);
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The cluster membership view, when this node gossips.
    pub fn membership(&self) -> Option<Arc<dyn crate::cluster::Membership>> {
        self.shared.membership()
    }

    #[doc(hidden)]
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// L1 is served only under the freshness lease (see [`crate::coherence`]); without Redis
    /// the lease is always held. The opt-in `serve_stale_on_outage` also serves it while
    /// Redis is unreachable (but never while isolated).
    #[inline]
    fn l1_trusted(&self) -> bool {
        self.shared.lease.held() || self.shared.serving_stale()
    }

    /// Whether a change may be acknowledged without L2 (no Redis, or the opt-in).
    fn local_writes_ok(&self) -> bool {
        self.shared.l2.is_none() || self.shared.serving_stale()
    }

    fn unavailable(what: &str) -> CacheError {
        CacheError::Unavailable(format!(
            "{what}: redis (L2) is unreachable and this node's L1 lease has lapsed, so it \
             cannot answer within the staleness bound"
        ))
    }

    fn category(&self, category: &str) -> Result<&Arc<L1Category>, CacheError> {
        self.shared
            .categories
            .get(category)
            .ok_or_else(|| CacheError::UnknownCategory(category.chars().take(64).collect()))
    }

    fn check_key(&self, key: &str) -> Result<(), CacheError> {
        if key.is_empty() {
            return Err(CacheError::InvalidKey("empty key".into()));
        }
        if key.len() > self.shared.config.max_key_bytes {
            return Err(CacheError::KeyTooLarge {
                len: key.len(),
                max: self.shared.config.max_key_bytes,
            });
        }
        Ok(())
    }

    fn check_ttl(ttl: Option<Duration>) -> Result<(), CacheError> {
        match ttl {
            Some(t) if t.is_zero() => Err(CacheError::InvalidTtl("ttl must be > 0".into())),
            Some(t) if t > Duration::from_secs(10 * 365 * 24 * 3600) => {
                Err(CacheError::InvalidTtl("ttl too large".into()))
            }
            _ => Ok(()),
        }
    }

    /// Reads a value: L1, then L2 (filling L1). `None` on a miss.
    pub async fn get(&self, category: &str, key: &str) -> Result<Option<Bytes>, CacheError> {
        let l1 = self.category(category)?;
        if self.l1_trusted() {
            if let Some(v) = l1.get(key).await {
                return Ok(Some(v));
            }
        }
        Ok(Box::pin(self.get_miss(l1, category, key))
            .await?
            .map(|(v, _)| v))
    }

    /// Like [`HybridCache::get`], also telling which level answered.
    pub async fn get_with_source(
        &self,
        category: &str,
        key: &str,
    ) -> Result<Option<(Bytes, Source)>, CacheError> {
        let l1 = self.category(category)?;
        if self.l1_trusted() {
            if let Some(v) = l1.get(key).await {
                return Ok(Some((v, Source::L1)));
            }
        }
        // Kept out of this future's state so the hit path stays small.
        Box::pin(self.get_miss(l1, category, key)).await
    }

    async fn get_miss(
        &self,
        l1: &Arc<L1Category>,
        category: &str,
        key: &str,
    ) -> Result<Option<(Bytes, Source)>, CacheError> {
        self.check_key(key)?;
        let mut l2_failed = self.shared.l2.is_some();
        if let Some(l2) = self.shared.l2_usable_for(category, key) {
            let ticket = l1.ticket(key);
            match l2.get(category, key).await {
                Ok(found) => {
                    l2_failed = false;
                    if let Some(v) = found.value {
                        l1.counters.hits_l2.fetch_add(1, Ordering::Relaxed);
                        l1.fill(key, v.clone(), l1.entry_ttl(found.ttl), &ticket)
                            .await;
                        return Ok(Some((v, Source::L2)));
                    }
                }
                Err(e) => self.l2_error("get", &e),
            }
        }
        if l2_failed && !self.shared.serving_stale() {
            // Not a miss we can vouch for: L2 (the truth) did not answer.
            return Err(Self::unavailable("read"));
        }
        l1.counters.misses.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }

    fn l2_error(&self, op: &str, e: &crate::l2::L2Error) {
        NodeCounters::incr(&self.shared.counters.l2_errors);
        tracing::debug!(op, error = %e, "L2 call failed; continuing with L1");
    }

    /// Writes a value. `ttl` is the L2 TTL; the L1 lifetime is `min(ttl, category ttl)`.
    /// Every other node drops its L1 copy of the key.
    pub async fn set(
        &self,
        category: &str,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        self.set_inner(category, key, value.into(), ttl, None).await
    }

    /// [`HybridCache::set`] that takes effect no later than `deadline` (wall clock) or not at
    /// all ([`CacheError::DeadlineExceeded`]): a caller that gives up at its deadline knows
    /// the write cannot land afterwards and overwrite a newer value. Without it, a write
    /// held up inside a paused process (waiting for the key's lock, say) applies when the
    /// process resumes, whenever that is. Redis checks the deadline on its own clock, so
    /// clients, nodes and Redis need NTP-synchronised clocks. HTTP: `x-hc-deadline-ms`.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::{Duration, SystemTime};
    /// let cache = hybrid_cache::HybridCache::builder().build().await.unwrap();
    /// let soon = SystemTime::now() + Duration::from_secs(2);
    /// cache.set_before("roles", "admin", "rw", None, soon).await.unwrap();
    /// let past = SystemTime::now() - Duration::from_secs(1);
    /// assert!(cache.set_before("roles", "admin", "ro", None, past).await.is_err());
    /// assert_eq!(cache.get("roles", "admin").await.unwrap().as_deref(), Some(&b"rw"[..]));
    /// # });
    /// ```
    pub async fn set_before(
        &self,
        category: &str,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
        deadline: std::time::SystemTime,
    ) -> Result<(), CacheError> {
        self.set_inner(category, key, value.into(), ttl, Some(deadline))
            .await
    }

    async fn set_inner(
        &self,
        category: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        deadline: Option<std::time::SystemTime>,
    ) -> Result<(), CacheError> {
        let l1 = self.category(category)?.clone();
        self.check_key(key)?;
        Self::check_ttl(ttl)?;
        if value.len() > self.shared.config.max_value_bytes {
            return Err(CacheError::ValueTooLarge {
                len: value.len(),
                max: self.shared.config.max_value_bytes,
            });
        }
        let l2_ttl = ttl.unwrap_or(l1.config().ttl());
        let _order = self.shared.key_locks.lock(category, key).await;
        if deadline.is_some_and(|d| std::time::SystemTime::now() >= d) {
            // Nothing changed yet, anywhere: refuse rather than apply it after the caller
            // gave up.
            return Err(CacheError::DeadlineExceeded);
        }
        let mark = self.shared.remote.snapshot(category, key);
        let bytes = &value;
        let target = Target::Key(key.to_string());
        let in_l2 = self
            .l2_change("set", category, &target, |l2| async move {
                l2.set(category, key, bytes, l2_ttl, deadline).await
            })
            .await;
        if !in_l2 && !self.local_writes_ok() {
            // L2 may or may not have it (a timeout): our L1 must not keep an older copy,
            // and the replay will announce the key once Redis answers.
            self.drop_local(category, &Pattern::Exact(key.to_string()))
                .await?;
            return Err(Self::unavailable("write"));
        }
        let l1_ttl = l1.entry_ttl(ttl);
        let k = key.to_string();
        let put = self
            .shared
            .ask(category, |reply| CategoryMsg::Put {
                key: k.clone(),
                value: value.clone(),
                ttl: l1_ttl,
                reply,
            })
            .await;
        if put.is_err() {
            // Our L1 may still hold the older value: flush it (fail closed). The change is
            // in L2, so it is announced all the same; the writer gets the error.
            self.shared.flush_behind(category);
        } else if in_l2 && self.shared.remote.snapshot(category, key) != mark {
            // A peer's change of this key raced ours (see `RemoteMarks`): L2 decides. A
            // failure queues a flush instead (inside `drop_local`).
            let _ = self
                .drop_local(category, &Pattern::Exact(key.to_string()))
                .await;
        }
        let announced = self
            .announce(Some(category), target, crate::bus::ChangeKind::Set)
            .await;
        put?;
        announced
    }

    /// Applies one change to L2 when it is usable. A change L2 did not get is remembered for
    /// replay when Redis returns. Returns whether L2 applied it.
    async fn l2_change<F, Fut>(&self, op: &str, category: &str, target: &Target, change: F) -> bool
    where
        F: FnOnce(Arc<L2>) -> Fut,
        Fut: std::future::Future<Output = Result<(), crate::l2::L2Error>>,
    {
        let applied = match self.shared.l2_writable() {
            Some(l2) => match change(l2.clone()).await {
                Ok(()) => true,
                Err(e) => {
                    self.l2_error(op, &e);
                    false
                }
            },
            None => false,
        };
        if !applied {
            self.shared.l2_missed(category, target);
        }
        applied
    }

    /// Removes entries matching `pattern` from this node's L1 (through the category's actor);
    /// returns how many were removed. When the actor cannot take it, a flush of the category
    /// is queued instead (fail closed) and the error returned.
    async fn drop_local(&self, category: &str, pattern: &Pattern) -> Result<u64, CacheError> {
        let removed = self
            .shared
            .ask(category, |reply| CategoryMsg::Invalidate {
                pattern: pattern.clone(),
                reply: Some(reply),
            })
            .await;
        if removed.is_err() {
            self.shared.flush_behind(category);
        }
        removed
    }

    /// Deletes a key from L2 and from every node's L1. Absent keys are fine.
    pub async fn delete(&self, category: &str, key: &str) -> Result<(), CacheError> {
        self.category(category)?;
        self.check_key(key)?;
        let _order = self.shared.key_locks.lock(category, key).await;
        let target = Target::Key(key.to_string());
        let in_l2 = self
            .l2_change("delete", category, &target, |l2| async move {
                l2.delete(category, key).await
            })
            .await;
        // Even when this fails (a flush is queued then), L2 changed: announce it.
        let dropped = self
            .drop_local(category, &Pattern::Exact(key.to_string()))
            .await;
        if !in_l2 && !self.local_writes_ok() {
            // Redis is down: acknowledged only if every peer acks it (each keeps it for
            // replay into L2, and reads L2 only after that).
            self.announce_to_peers(Some(category), target, crate::bus::ChangeKind::Delete)
                .await
                .map_err(|_| Self::unavailable("delete"))?;
            return dropped.map(|_| ());
        }
        self.announce(Some(category), target, crate::bus::ChangeKind::Delete)
            .await?;
        dropped.map(|_| ())
    }

    /// Invalidates `pattern` (exact key, `*` or glob) in `category` (`*` = every category),
    /// in L2 and in every node's L1. Returns the number of local L1 entries removed.
    ///
    /// `pattern` is a glob in the grammar of [`crate::pattern`] (`"*"` = the whole category);
    /// to invalidate one key whatever characters it holds, use
    /// [`HybridCache::invalidate_key`].
    pub async fn invalidate(&self, pattern: &str, category: &str) -> Result<u64, CacheError> {
        let target = match Pattern::glob(pattern)? {
            Pattern::All => Target::Everything,
            // A glob without wildcards spells one key (`get_roles:\[1, 2\]`).
            Pattern::Exact(k) => Target::Key(k),
            Pattern::Glob(g) => Target::Glob(g.as_str().to_string()),
        };
        self.invalidate_target(category, target).await
    }

    /// Invalidates exactly `key` (compared as bytes, never read as a pattern) in `category`
    /// (`*` = every category), in L2 and in every node's L1. Returns the number of local L1
    /// entries removed.
    pub async fn invalidate_key(&self, category: &str, key: &str) -> Result<u64, CacheError> {
        self.check_key(key)?;
        self.invalidate_target(category, Target::Key(key.to_string()))
            .await
    }

    async fn invalidate_target(&self, category: &str, target: Target) -> Result<u64, CacheError> {
        let parsed = target.to_pattern()?;
        let names: Vec<String> = if category == "*" {
            self.shared.categories.keys().cloned().collect()
        } else {
            self.category(category)?;
            vec![category.to_string()]
        };
        let mut removed = 0;
        let mut all_in_l2 = true;
        let mut local_error = None;
        for name in &names {
            let parsed = &parsed;
            all_in_l2 &= self
                .l2_change("invalidate", name, &target, |l2| async move {
                    l2.invalidate_pattern(name, parsed).await
                })
                .await;
            // A failure queues a flush of the category; the change is announced all the same.
            match self.drop_local(name, parsed).await {
                Ok(n) => removed += n,
                Err(e) => local_error = Some(e),
            }
        }
        let scope = (category != "*").then_some(category);
        if !all_in_l2 && !self.local_writes_ok() {
            // Redis is down: acknowledged only if every peer acks it (see `delete`).
            self.announce_to_peers(scope, target, crate::bus::ChangeKind::Invalidate)
                .await
                .map_err(|_| Self::unavailable("invalidation"))?;
        } else {
            self.announce(scope, target, crate::bus::ChangeKind::Invalidate)
                .await?;
        }
        match local_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Returns the cached value or runs `loader` once per node for concurrent misses of the
    /// key (moka coalesces them), caching its result in L1 and L2.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        category: &str,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Bytes, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let l1 = self.category(category)?.clone();
        if !self.l1_trusted() {
            // No lease: L1 may be stale. Read the truth (L2, else the loader) and cache
            // nothing in L1 (moka's coalescing would hand out the L1 entry).
            self.check_key(key)?;
            if let Some(l2) = self.shared.l2_usable_for(category, key) {
                match l2.get(category, key).await {
                    Ok(found) => {
                        if let Some(v) = found.value {
                            l1.counters.hits_l2.fetch_add(1, Ordering::Relaxed);
                            return Ok(v);
                        }
                    }
                    Err(e) => self.l2_error("get", &e),
                }
            }
            l1.counters.misses.fetch_add(1, Ordering::Relaxed);
            l1.counters.loads.fetch_add(1, Ordering::Relaxed);
            return loader().await.map_err(|e| CacheError::Loader(Arc::new(e)));
        }
        if let Some(v) = l1.get(key).await {
            return Ok(v);
        }
        self.check_key(key)?;
        Self::check_ttl(ttl)?;
        l1.counters.misses.fetch_add(1, Ordering::Relaxed);
        let ticket_cell = OnceLock::new();
        let l1_ttl = l1.entry_ttl(ttl);
        let l2_ttl = ttl.unwrap_or(l1.config().ttl());
        let init = async {
            let ticket = *ticket_cell.get_or_init(|| l1.ticket(key));
            let mut generation = None;
            if let Some(l2) = self.shared.l2_usable_for(category, key) {
                match l2.get(category, key).await {
                    Ok(found) => {
                        generation = Some(found.generation);
                        if let Some(v) = found.value {
                            l1.counters.hits_l2.fetch_add(1, Ordering::Relaxed);
                            if !l1.ticket_valid(&ticket) {
                                return Err(LoadFail::Stale(v));
                            }
                            return Ok(l1.entry(v, l1.entry_ttl(found.ttl)));
                        }
                    }
                    Err(e) => self.l2_error("get", &e),
                }
            }
            l1.counters.loads.fetch_add(1, Ordering::Relaxed);
            let value = loader().await.map_err(LoadFail::Loader)?;
            if let (Some(l2), Some(g)) = (self.shared.l2_usable_for(category, key), generation) {
                if l1.ticket_valid(&ticket) {
                    match l2.fill(category, key, &value, l2_ttl, g).await {
                        Ok(true) => {}
                        // L2 refused: since the load started, another node wrote the key
                        // (a value or a tombstone) or invalidated the category. Its
                        // invalidation may still be on its way to us; the loaded value is
                        // older than what L2 holds, so it must not enter our L1 either.
                        Ok(false) => return Err(LoadFail::Stale(value)),
                        Err(e) => self.l2_error("fill", &e),
                    }
                }
            }
            if !l1.ticket_valid(&ticket) {
                return Err(LoadFail::Stale(value));
            }
            Ok(l1.entry(value, l1_ttl))
        };
        match l1.try_get_with(key, init).await {
            Ok(v) => {
                // An invalidation may have landed between the last check and moka's insert.
                if let Some(t) = ticket_cell.get() {
                    if !l1.ticket_valid(t) {
                        l1.remove_raw(key).await;
                    }
                }
                Ok(v)
            }
            Err(e) => match &*e {
                LoadFail::Stale(v) => {
                    l1.counters
                        .stale_fills_rejected
                        .fetch_add(1, Ordering::Relaxed);
                    Ok(v.clone())
                }
                // Shared by every caller whose miss the failed load coalesced.
                LoadFail::Loader(_) => Err(CacheError::Loader(e)),
            },
        }
    }

    /// Typed read (JSON).
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        category: &str,
        key: &str,
    ) -> Result<Option<T>, CacheError> {
        match self.get(category, key).await? {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| CacheError::Serde(e.to_string())),
            None => Ok(None),
        }
    }

    /// Typed write (JSON).
    pub async fn set_json<T: Serialize>(
        &self,
        category: &str,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(value).map_err(|e| CacheError::Serde(e.to_string()))?;
        self.set(category, key, bytes, ttl).await
    }

    /// Typed `get_or_load` (JSON), the Rust form of the original `@cached(category, ttl)`.
    pub async fn get_or_load_json<T, F, Fut, E>(
        &self,
        category: &str,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<T, CacheError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let bytes = self
            .get_or_load(category, key, ttl, || async move {
                let v = loader().await.map_err(JsonLoadError::Loader)?;
                serde_json::to_vec(&v)
                    .map(Bytes::from)
                    .map_err(|e| JsonLoadError::Serde(e.to_string()))
            })
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| CacheError::Serde(e.to_string()))
    }

    /// The node's stats (`GET /v1/stats`).
    pub async fn stats(&self) -> Stats {
        self.shared.stats().await
    }

    /// Whether Redis is configured and currently serving as L2.
    pub fn l2_enabled(&self) -> bool {
        self.shared.l2_enabled()
    }

    /// Current status: ok / degraded / isolated.
    pub fn status(&self) -> Status {
        if self.shared.isolated.load(Ordering::Relaxed) {
            Status::Isolated
        } else if self.shared.config.redis.is_some() && !self.l2_enabled() {
            Status::Degraded
        } else {
            Status::Ok
        }
    }

    /// Whether this node can answer reads within its guarantee right now: a balancer should
    /// drain it otherwise (`/health` answers 503). True when status is `ok`, while the lease
    /// is held, or with the `serve_stale_on_outage` opt-in (unless isolated). A node whose
    /// subscription is down but whose L2 still answers is drained too: it serves reads from
    /// L2 and accepts writes, but only until it resubscribes would a balancer need it.
    pub fn serving(&self) -> bool {
        match self.status() {
            Status::Ok => true,
            Status::Isolated => false,
            // Not "L2 answers": a circuit breaker half-opening would make /health flap.
            Status::Degraded => self.l1_trusted(),
        }
    }

    /// `GET /health`.
    pub async fn health(&self) -> Health {
        let mut l1_stats = BTreeMap::new();
        for (name, l1) in &self.shared.categories {
            let cfg = l1.config();
            l1_stats.insert(
                name.clone(),
                L1Size {
                    size: l1.size().await,
                    maxsize: cfg.max_entries,
                    ttl: cfg.ttl_secs,
                    consistency: cfg.consistency.as_str().to_string(),
                },
            );
        }
        Health {
            status: self.status(),
            env: self.shared.config.env.clone(),
            node_id: self.shared.config.node_id.clone(),
            cache: HealthCache {
                l1_enabled: true,
                l2_redis_enabled: self.l2_enabled(),
                l1_stats,
            },
        }
    }

    /// Test hook: make a category actor panic (the supervisor restarts it, flushing its L1).
    #[doc(hidden)]
    pub fn crash_category_actor(&self, category: &str) -> Result<(), CacheError> {
        self.cast_to_actor(category, CategoryMsg::Crash)
    }

    /// Test hook: keep a category actor busy for `pause` (a stalled L1 writer).
    #[doc(hidden)]
    pub fn stall_category_actor(&self, category: &str, pause: Duration) -> Result<(), CacheError> {
        self.cast_to_actor(category, CategoryMsg::Stall(pause))
    }

    /// Sends a test hook's message to `category`'s actor.
    fn cast_to_actor(&self, category: &str, msg: CategoryMsg) -> Result<(), CacheError> {
        self.category(category)?;
        let actor = self
            .shared
            .writer(category)
            .ok_or_else(|| CacheError::Unavailable(category.into()))?;
        actor
            .cast(msg)
            .map_err(|e| CacheError::Unavailable(e.to_string()))
    }

    /// Tells every other node. The change is acknowledged only if Redis took the publish
    /// (or there is no Redis, or the opt-in accepts local changes): otherwise the caller
    /// gets an error, and the receivers' gap detection and leases cover the lost message.
    async fn announce(
        &self,
        category: Option<&str>,
        target: Target,
        kind: crate::bus::ChangeKind,
    ) -> Result<(), CacheError> {
        let strict = self.touches_strict(category);
        match crate::bus::publish(&self.shared, category, target, kind, strict, false).await {
            Ok(()) => Ok(()),
            Err(_) if self.local_writes_ok() => Ok(()),
            Err(e) => Err(CacheError::Unavailable(format!(
                "the change reached L2 but its invalidation was not published: {e}"
            ))),
        }
    }

    /// A removal L2 did not take (Redis down): sent to every peer over QUIC; `Ok` once each
    /// of them acked it (see [`crate::coherence`], the peer lease). Without gossip peers
    /// there is nobody to vouch for it: an error.
    async fn announce_to_peers(
        &self,
        category: Option<&str>,
        target: Target,
        kind: crate::bus::ChangeKind,
    ) -> Result<(), crate::bus::PublishError> {
        if self.shared.gossip().is_none() {
            return Err(crate::bus::PublishError::NotAcknowledged);
        }
        let strict = self.touches_strict(category);
        crate::bus::publish(&self.shared, category, target, kind, strict, true).await
    }

    /// Whether a change of `category` (`None` = every category) is strict: a `*`-category
    /// change is strict if it touches a strict category.
    fn touches_strict(&self, category: Option<&str>) -> bool {
        match category {
            Some(c) => self.shared.is_strict(c),
            None => self
                .shared
                .categories
                .keys()
                .any(|c| self.shared.is_strict(c)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum JsonLoadError<E: std::error::Error> {
    #[error("{0}")]
    Loader(E),
    #[error("serialization failed: {0}")]
    Serde(String),
}
