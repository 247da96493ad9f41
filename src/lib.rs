//! # hybrid-cache
//!
//! A two-level cache for hot, slow-to-compute data (permissions, menus, roles, prompt
//! templates…): a bounded per-process **L1** (moka, TTL per category) in front of an optional
//! shared **L2** (Redis), in front of your database.
//!
//! The story of the crate, from the bottom up (dependencies point down only; see
//! `docs/ARCHITECTURE.md` for the map):
//! - leaf types with no I/O: `config` (categories, Redis and cluster settings: flags > env >
//!   `cluster.toml` > defaults), [`pattern`] (the glob grammar shared by L1 and L2), [`key`],
//!   [`wire`] (every message between nodes, versioned bincode) and [`wire_auth`] (the cluster
//!   key that signs them), `stats`, `error`;
//! - **decisions, sans-IO**: `coherence` turns inputs (bus messages, link events, time) into
//!   actions (flush, renew the freshness lease, acknowledge a strict write). It never does I/O,
//!   so its tests run on virtual time with loss, reordering and pauses;
//! - **state owners**: `l1` (one moka cache per category; a hit touches only the moka handle
//!   and the lease deadline), `l2` (Redis: single, Sentinel or Cluster behind one handle),
//!   `actors` (the category actors order each L1's removals), `bus` (the Redis pub/sub link driving the
//!   coherence machine, through a `NodePort` the facade provides), `gossip` (QUIC membership);
//! - **the facade**: [`HybridCache`], the library API: `get`/`set`/`delete`/`invalidate`/
//!   `get_or_load`, stats and health. It starts the actor tree and owns the node's state;
//! - **front ends**: [`server`] (HTTP, the Redis protocol, Prometheus, the `/ui` page, node
//!   wiring) and [`cli`] (the `hybrid-cache` command).
//!
//! Without Redis everything works from L1 alone; when Redis comes back, nodes recover by
//! themselves. The [`guide`] walks through the library with runnable examples.
//!
//! ```
//! use std::time::Duration;
//! use hybrid_cache::{cache_key, HybridCache};
//!
//! # #[derive(Debug)] struct DbError; impl std::fmt::Display for DbError { fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result { write!(f, "db") } } impl std::error::Error for DbError {}
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = HybridCache::builder().build().await?;          // L1 only: no Redis configured
//!
//! // Like the original `@cached("permissions", ttl=600)` on get_user_permissions(123):
//! let key = cache_key!("get_user_permissions", 123);
//! let perms: Vec<String> = cache
//!     .get_or_load_json("permissions", &key, Some(Duration::from_secs(600)), || async {
//!         Ok::<_, DbError>(vec!["read".to_string(), "write".to_string()]) // the slow query
//!     })
//!     .await?;
//! assert_eq!(perms, ["read", "write"]);
//!
//! // Like `invalidate_cache("get_user_permissions:*", "permissions")`:
//! assert_eq!(cache.invalidate("get_user_permissions:*", "permissions").await?, 1);
//! assert_eq!(cache.get("permissions", &key).await?, None);
//!
//! // Unknown categories are errors, never silent new caches.
//! assert!(cache.get("nope", "k").await.is_err());
//! cache.shutdown().await;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

#![warn(missing_docs)]

mod actors;
mod bus;
mod cache;
mod cluster;
mod coherence;
mod error;
mod gossip;
mod l1;
mod l2;
mod node_metrics;
mod stats;

pub mod cli;
pub mod config;
pub mod guide;
pub mod key;
pub mod pattern;
pub mod server;
pub mod tag;
pub mod telemetry;
pub mod wire;
pub mod wire_auth;

pub use cache::{
    BuildError, HybridCache, HybridCacheBuilder, LoadOptions, LoadTimedOut, Loaded, Source,
};
pub use config::Config;
pub use error::CacheError;
pub use gossip::{generate_certs, GossipError};
pub use stats::{
    CategoryStats, CoherenceStats, Counters, Health, HealthCache, L1Size, Stats, Status,
};

/// Internals reachable from the repository's own tests, benches, examples and fuzz targets.
/// Not part of the API: no stability promise, hidden from the documentation.
#[doc(hidden)]
pub mod internals {
    pub use crate::bus::{channel, publish};
    pub use crate::gossip::sim;
    pub use crate::l1::L1Category;
    pub use crate::l2::topology::CLUSTER_BUCKETS;
    pub use crate::l2::{L2, LATE_WRITE_ALLOWANCE, TAG_VALUE};
}
