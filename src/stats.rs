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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CategoryStats {
    pub size: u64,
    pub maxsize: u64,
    pub ttl: u64,
    pub hits: u64,
    pub misses: u64,
}

/// `counters` of `/v1/stats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub hits_l1: u64,
    pub hits_l2: u64,
    pub misses: u64,
    pub loads: u64,
    pub evictions: u64,
    pub invalidations_sent: u64,
    pub invalidations_received: u64,
    pub coherence_flushes: u64,
    pub invalid_messages: u64,
    pub duplicate_messages: u64,
    pub expirations: u64,
    pub stale_fills_rejected: u64,
    pub actor_restarts: u64,
    pub l2_errors: u64,
    pub redis_reconnects: u64,
    pub http_bad_requests: u64,
}

/// `GET /v1/stats`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub node_id: String,
    pub l1_caches: BTreeMap<String, CategoryStats>,
    pub l2_enabled: bool,
    pub counters: Counters,
}

/// `cache.l1_stats.<category>` of `/health`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct L1Size {
    pub size: u64,
    pub maxsize: u64,
    pub ttl: u64,
}

/// `cache` of `/health`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthCache {
    pub l1_enabled: bool,
    pub l2_redis_enabled: bool,
    pub l1_stats: BTreeMap<String, L1Size>,
}

/// Node status reported by `/health`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub status: Status,
    pub env: String,
    pub node_id: String,
    pub cache: HealthCache,
}
