//! The library facade: [`HybridCache`].
//!
//! Reads go straight to the shared moka handles (L1) while the freshness
//! [`Lease`](crate::coherence::Lease) is held, then to Redis (L2), then to the caller's loader.
//! Writes and invalidations go to L2 first (so a peer that drops its L1 entry reads the new
//! value), then into L1 (removals and tagged values through the category actor, which orders
//! them), then onto the invalidation bus so every other node drops its copy; writes of one
//! key on one node are serialized (L2 and L1 change in the same order).
//!
//! **Fail closed.** With Redis configured, a read that cannot be served within the
//! staleness bound (lease lapsed and L2 unreachable) is an error ([`CacheError::Unavailable`],
//! HTTP 503), never an old value; `get_or_load` calls the loader instead (the source of
//! truth) and caches nothing. A write is acknowledged only once L2 has it and its
//! invalidation was published; otherwise it fails, and its key is remembered for replay into
//! L2. The `serve_stale_on_outage` opt-in restores the original module's behaviour (serve L1
//! and accept writes locally while Redis is unreachable), outside the guarantee.
//!
//! Files: `builder` (configuration in code, [`HybridCache::builder`], [`HybridCache::from_env`]),
//! `build_error` (why a cache did not start), `read`, `write`, `invalidate`, `load`, `fail_safe`,
//! `refresh` (the facade's operations), `status` (stats and health), `state` (the node state, private to
//! this module), `writers` (the L1 writers), `key_locks`, `remote` (ordering of one key's
//! writes), `ports` (the node as the bus and the gossip actor see it), `supervisor` (the
//! actor tree), `warm_up` (preloading the hottest keys after a start, a re-subscription or a
//! coherence flush) and `warm_signal` (its flush signal, held by the node state).

mod build_error;
mod builder;
mod bundled_write;
mod fail_safe;
mod invalidate;
mod key_locks;
mod known_gen;
mod load;
mod ports;
mod read;
#[cfg(test)]
mod read_tests;
mod refresh;
mod remote;
#[cfg(test)]
mod restart_tests;
mod state;
mod status;
mod supervisor;
mod warm_signal;
mod warm_up;
mod write;
#[cfg(test)]
mod write_tests;
mod writers;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};

use crate::actors::CategoryMsg;
use crate::bus::BusHandle;
use crate::config::Config;
use crate::error::CacheError;
use crate::l1::CategoryMap;
use crate::node_metrics::NodeMetrics;
use crate::stats::NodeCounters;
pub use build_error::BuildError;
pub use builder::HybridCacheBuilder;
pub use fail_safe::{LoadTimedOut, Loaded};
pub use refresh::LoadOptions;
use state::Shared;
use supervisor::{NodeSupervisor, SupervisorMsg};

/// Where a value was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This node's L1.
    L1,
    /// Redis.
    L2,
    /// The caller's loader.
    Loader,
}

impl Source {
    /// The name used in headers and logs (`L1`, `L2`, `LOAD`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::L1 => "L1",
            Source::L2 => "L2",
            Source::Loader => "LOAD",
        }
    }
}

/// See [`HybridCache::hold_next_writer_registration`].
#[doc(hidden)]
pub type WriterRegistrationHold = (
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
);

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

impl HybridCache {
    /// Starts the actor tree for a validated configuration.
    pub async fn start(config: Config) -> Result<HybridCache, BuildError> {
        if let (Some(target), false) = (&config.redis, config.allow_persistent_redis) {
            crate::l2::L2::refuse_persistent(target, config.redis_timeout)
                .await
                .map_err(|e| BuildError::PersistentRedis(e.to_string()))?;
        }
        let shared = Arc::new(Shared::new(config));
        // Before the bus can come up: the warm-up must see the first re-subscription.
        warm_up::spawn(&shared);
        let spawned = Actor::spawn(
            Some(format!("{}/supervisor", shared.instance)),
            NodeSupervisor,
            shared.clone(),
        )
        .await;
        let (supervisor, _) = spawned.map_err(|e| {
            shared.warm_up.stop();
            BuildError::Actors(e.to_string())
        })?;
        Ok(HybridCache { shared, supervisor })
    }

    /// Stops the actor tree. Idempotent.
    pub async fn shutdown(&self) {
        self.shared.warm_up.stop();
        let _ = self.supervisor.cast(SupervisorMsg::Stopping);
        // Let the Stopping message land before children stop.
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.supervisor
            .stop_children_and_wait(None, Some(Duration::from_secs(5)))
            .await;
        self.supervisor.stop(None);
    }

    /// The node's validated configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The cluster membership view, when this node gossips.
    pub fn membership(&self) -> Option<Arc<dyn crate::cluster::Membership>> {
        self.shared.membership()
    }

    /// Whether this node holds its L1 freshness lease now (always, without Redis).
    #[doc(hidden)]
    pub fn lease_held(&self) -> bool {
        self.shared.lease.held()
    }

    /// Changes waiting to be replayed into L2 (their L2 outcome unknown).
    #[doc(hidden)]
    pub fn l2_backlog_len(&self) -> usize {
        self.shared.l2_backlog_len()
    }

    /// Whether Redis is configured and its client answers now (connected, breaker closed).
    #[doc(hidden)]
    pub fn l2_available(&self) -> bool {
        self.shared.l2.as_ref().is_some_and(|l| l.available())
    }

    /// The node's event counters (`/v1/stats`).
    #[doc(hidden)]
    pub fn counters(&self) -> &NodeCounters {
        &self.shared.counters
    }

    /// Every category's L1.
    #[doc(hidden)]
    pub fn l1_categories(&self) -> &CategoryMap {
        &self.shared.categories
    }

    /// The handle on this node's bus actor (for [`crate::bus::publish`]).
    #[doc(hidden)]
    pub fn bus(&self) -> &BusHandle {
        &self.shared.bus
    }

    /// Latency histograms and event counters for `/metrics`.
    pub(crate) fn node_metrics(&self) -> &Arc<NodeMetrics> {
        &self.shared.metrics
    }

    /// The L2 round-trip histogram, when Redis is configured.
    pub(crate) fn l2_latency_histogram(
        &self,
    ) -> Option<prometheus_client::metrics::histogram::Histogram> {
        self.shared.l2.as_ref().map(|l2| l2.latency_histogram())
    }

    /// Every mailbox gate of the node: (name, depth, capacity, refused).
    pub(crate) fn mailboxes(&self) -> Vec<(String, u64, u64, u64)> {
        self.shared
            .mailbox_gates()
            .iter()
            .map(|g| {
                (
                    g.name().to_string(),
                    g.depth() as u64,
                    g.capacity() as u64,
                    g.overflows(),
                )
            })
            .collect()
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

    /// Test hook: the next (re)started category actor waits after its startup flush, before
    /// it is registered as its category's writer. Returns (`reached`: it waits, `release`:
    /// let it go on, `done`: it is registered).
    #[doc(hidden)]
    pub fn hold_next_writer_registration(&self) -> WriterRegistrationHold {
        use tokio::sync::oneshot;
        let (reached_tx, reached) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        self.shared
            .writers
            .hold_next_registration(writers::RegistrationHold {
                reached: reached_tx,
                release: release_rx,
                done: done_tx,
            });
        (reached, release, done)
    }

    /// Subscriptions this node dropped because its bus did not keep up with them.
    #[doc(hidden)]
    pub fn subscription_overflows(&self) -> u64 {
        self.shared.bus.subscription_overflows()
    }

    /// Connections to an L2 Redis refused because it has persistence on (or would not say).
    #[doc(hidden)]
    pub fn persistent_redis_refusals(&self) -> u64 {
        self.shared.bus.persistent_redis_refusals()
    }

    /// Test hook: stalls the bus actor until the returned sender fires or is dropped.
    #[doc(hidden)]
    pub fn hold_bus(&self) -> Option<tokio::sync::oneshot::Sender<()>> {
        self.shared.bus.hold()
    }

    /// Test hook: stalls the bus's publisher (the queue of this node's outgoing bus
    /// messages) until the returned sender fires or is dropped.
    #[doc(hidden)]
    pub fn hold_bus_publisher(&self) -> Option<tokio::sync::oneshot::Sender<()>> {
        self.shared.bus.hold_publisher()
    }

    /// Sends a test hook's message to `category`'s actor.
    fn cast_to_actor(&self, category: &str, msg: CategoryMsg) -> Result<(), CacheError> {
        self.category(category)?;
        let actor = self
            .shared
            .writers
            .get(category)
            .ok_or_else(|| CacheError::Unavailable(category.into()))?;
        actor
            .cast(msg)
            .map_err(|e| CacheError::Unavailable(e.to_string()))
    }
}
