//! The counters of one category's L1, bumped by its reads, fills, loads and near-cache
//! features and read by stats (`/v1/stats`) and metrics (`/metrics`).

use std::sync::atomic::AtomicU64;

/// Per-category counters, read by stats and metrics.
#[derive(Default, Debug)]
pub struct CategoryCounters {
    pub hits: crate::stats::ShardedCounter,
    pub hits_l2: AtomicU64,
    pub misses: AtomicU64,
    pub loads: AtomicU64,
    pub evictions: AtomicU64,
    pub expirations: AtomicU64,
    pub stale_fills_rejected: AtomicU64,
    /// Reads answered by a cached "not found" (L1 or L2).
    pub negative_hits: AtomicU64,
    /// `get_or_load` calls answered by a fail-safe copy (the loader failed or was slow).
    pub fail_safe_hits: AtomicU64,
    /// Refresh-ahead: background reloads started on this node (one per key at a time).
    pub refreshes_started: AtomicU64,
    /// Refreshes whose node took the cluster's refresh lock (or had no Redis) and ran the loader.
    pub refreshes_won: AtomicU64,
    /// Refreshes not run because another node held the key's refresh lock.
    pub refreshes_lost: AtomicU64,
    /// Refreshes that failed: loader error or timeout, or an L2 error.
    pub refreshes_failed: AtomicU64,
    /// Refreshes whose result was dropped because a write or invalidation of the key raced them.
    pub refreshes_discarded: AtomicU64,
    /// Keys preloaded from L2 by warm-up.
    pub warmed: AtomicU64,
    /// Bytes held (key + value + overhead of live entries), kept by inserts and removals.
    /// Signed: a removal's notification may be processed before its insert is counted.
    pub bytes: std::sync::atomic::AtomicI64,
}
