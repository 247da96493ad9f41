//! Counters and the JSON shapes of `/v1/stats` and `/health` (the original Python formats,
//! extended, never renamed).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Node-wide counters that are not per category.
#[derive(Debug, Default)]
pub struct NodeCounters {
    pub invalidations_sent: AtomicU64,
    pub invalidations_received: AtomicU64,
    pub coherence_flushes: AtomicU64,
    pub invalid_messages: AtomicU64,
    pub duplicate_messages: AtomicU64,
    pub actor_restarts: AtomicU64,
    pub l2_errors: AtomicU64,
    /// L2 reads answered at a known generation, without the read script.
    pub l2_fast_reads: AtomicU64,
    pub redis_reconnects: AtomicU64,
    pub http_bad_requests: AtomicU64,
    pub peer_messages_sent: AtomicU64,
}

impl NodeCounters {
    pub fn incr(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// `l1_caches.<category>` of `/v1/stats`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CategoryStats {
    /// Live L1 entries.
    pub size: u64,
    /// The category's L1 entry bound.
    pub maxsize: u64,
    /// The category's L1 TTL, in seconds.
    pub ttl: u64,
    /// L1 hits since start.
    pub hits: u64,
    /// L1 misses since start.
    pub misses: u64,
    /// `bounded` or `strict`.
    #[serde(default)]
    pub consistency: String,
    /// L1 bytes held: key + value + per-entry overhead of live entries.
    #[serde(default)]
    pub bytes: u64,
    /// The category's L1 byte budget (its share of `l1_max_bytes`).
    #[serde(default)]
    pub max_bytes: u64,
    /// Keys preloaded from L2 by warm-up (`warm_up_keys`) since start.
    #[serde(default)]
    pub warmed: u64,
}

/// `counters` of `/v1/stats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Counters {
    /// Reads answered from L1.
    pub hits_l1: u64,
    /// Reads answered from L2 (Redis).
    pub hits_l2: u64,
    /// Reads that found the key nowhere.
    pub misses: u64,
    /// Loader calls of `get_or_load`.
    pub loads: u64,
    /// L1 entries evicted for size.
    pub evictions: u64,
    /// Changes this node announced on the bus.
    pub invalidations_sent: u64,
    /// Changes from other nodes applied to L1.
    pub invalidations_received: u64,
    /// Whole-L1 flushes ordered by the coherence machine (gaps, restarts, outages).
    pub coherence_flushes: u64,
    /// Bus or gossip payloads dropped as malformed or unauthenticated.
    pub invalid_messages: u64,
    /// Bus payloads received twice (Redis and QUIC) and applied once.
    pub duplicate_messages: u64,
    /// L1 entries that reached their TTL.
    pub expirations: u64,
    /// L1 fills refused because an invalidation overtook the read that fetched them.
    pub stale_fills_rejected: u64,
    /// Reads answered by a cached "not found" (negative caching), L1 or L2.
    #[serde(default)]
    pub negative_hits: u64,
    /// `get_or_load` calls answered by a fail-safe (stale) value.
    #[serde(default)]
    pub fail_safe_hits: u64,
    /// Refresh-ahead: background reloads started (one per key at a time on a node).
    #[serde(default)]
    pub refreshes_started: u64,
    /// Refreshes this node ran the loader for (it took the key's cluster lock, or has no Redis).
    #[serde(default)]
    pub refreshes_won: u64,
    /// Refreshes left to another node (it held the key's refresh lock).
    #[serde(default)]
    pub refreshes_lost: u64,
    /// Refreshes that failed (loader error or timeout, Redis error).
    #[serde(default)]
    pub refreshes_failed: u64,
    /// Refreshes whose value was dropped because a write or invalidation of the key raced them.
    #[serde(default)]
    pub refreshes_discarded: u64,
    /// Keys preloaded from L2 by warm-up, every category.
    #[serde(default)]
    pub warmed: u64,
    /// Category actors restarted by the supervisor.
    pub actor_restarts: u64,
    /// Failed L2 calls.
    pub l2_errors: u64,
    /// Re-established Redis subscriptions.
    pub redis_reconnects: u64,
    /// HTTP requests refused as malformed.
    pub http_bad_requests: u64,
}

/// `GET /v1/stats`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Stats {
    /// This node's id.
    pub node_id: String,
    /// Per-category L1 figures.
    pub l1_caches: BTreeMap<String, CategoryStats>,
    /// Whether Redis is configured and answering.
    pub l2_enabled: bool,
    /// Node-wide counters.
    pub counters: Counters,
    /// The coherence link and freshness lease.
    #[serde(default)]
    pub coherence: Option<CoherenceStats>,
}

/// `coherence` of `GET /v1/stats`: may this node serve L1 right now, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CoherenceStats {
    /// `"up"` while subscribed to the invalidation channel, `"down"` otherwise, `"none"`
    /// without Redis.
    pub link: String,
    /// Whether L1 may be served now (always true without Redis).
    pub lease_held: bool,
    /// Age of the newest echoed lease ping, while a lease exists.
    pub lease_age_ms: Option<u64>,
    /// What holds the lease up: `"redis"` (echoed pings), `"peers"` (QUIC grants while
    /// Redis is down), `"none"` (no lease now), `"always"` (no Redis).
    #[serde(default)]
    pub lease_via: String,
    /// The staleness bound B.
    pub staleness_bound_ms: u64,
    /// Whether the `serve_stale_on_outage` opt-in is on.
    pub serve_stale_on_outage: bool,
}

/// `cache.l1_stats.<category>` of `/health`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct L1Size {
    /// Live L1 entries.
    pub size: u64,
    /// The category's L1 entry bound.
    pub maxsize: u64,
    /// The category's L1 TTL, in seconds.
    pub ttl: u64,
    /// `bounded` or `strict`.
    #[serde(default)]
    pub consistency: String,
}

/// `cache` of `/health`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct HealthCache {
    /// Always true: L1 is always on.
    pub l1_enabled: bool,
    /// Whether Redis is configured and answering.
    pub l2_redis_enabled: bool,
    /// Per-category L1 sizes.
    pub l1_stats: BTreeMap<String, L1Size>,
}

/// Node status reported by `/health`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Serving normally.
    Ok,
    /// Redis is configured but unreachable; serving from L1 (HTTP 200).
    Degraded,
    /// Neither Redis nor any peer reachable for longer than `isolation_grace` (HTTP 503).
    Isolated,
}

/// `GET /health`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `degraded` or `isolated`.
    pub status: Status,
    /// `APP_ENV` (default `development`).
    pub env: String,
    /// This node's id.
    pub node_id: String,
    /// The cache part (what the original module's `/health` returned).
    pub cache: HealthCache,
}

/// A hot-path counter: each thread increments its own shard with a plain load + store (no
/// locked read-modify-write, no cache-line ping-pong); readers sum the shards. Threads past
/// the exclusive shards share one shard updated with `fetch_add`, so no count is ever lost.
pub struct ShardedCounter {
    shards: Box<[PaddedU64]>,
    shared: AtomicU64,
}

#[repr(align(128))]
#[derive(Default)]
struct PaddedU64(AtomicU64);

const EXCLUSIVE_SHARDS: usize = 128;

fn thread_shard() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) as usize;
    }
    SHARD.with(|s| *s)
}

impl Default for ShardedCounter {
    fn default() -> Self {
        ShardedCounter {
            shards: (0..EXCLUSIVE_SHARDS)
                .map(|_| PaddedU64::default())
                .collect(),
            shared: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for ShardedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShardedCounter({})", self.get())
    }
}

impl ShardedCounter {
    #[inline]
    pub fn incr(&self) {
        match self.shards.get(thread_shard()) {
            // Only this thread ever writes this shard.
            Some(s) => {
                s.0.store(s.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed)
            }
            None => {
                self.shared.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.shared.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sharded_counter_loses_nothing_across_threads() {
        let c = Arc::new(ShardedCounter::default());
        // More threads than exclusive shards, to exercise the shared fallback too.
        let handles: Vec<_> = (0..EXCLUSIVE_SHARDS + 40)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.incr();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.get(), (EXCLUSIVE_SHARDS as u64 + 40) * 1000);
    }
}
