//! # hybrid-cache
//!
//! A two-level cache for hot, slow-to-compute data (permissions, menus, roles, prompt
//! templates…): a bounded per-process **L1** (moka, TTL per category) in front of an optional
//! shared **L2** (Redis), in front of your database.
//!
//! The story of the crate, in module order:
//! - [`config`]: categories, Redis and cluster settings (flags > env > `cluster.toml` > defaults);
//! - [`l1`]: one moka cache per category; readers hit it directly, lock-free;
//! - [`l2`]: Redis, namespaced, with per-category generations and tombstones;
//! - [`cache`]: [`HybridCache`], the facade: `get`/`set`/`delete`/`invalidate`/`get_or_load`;
//! - [`actors`]: the ractor tree that owns every L1 (one writer each) and restarts what crashes;
//! - [`wire`] + [`coherence`] + [`bus`]: every change is broadcast over Redis pub/sub with
//!   per-origin sequence numbers; the sans-IO [`coherence::Coherence`] machine turns gaps,
//!   restarts and outages into L1 flushes, so a lost message never leaves a stale entry;
//! - [`server`] (HTTP, the Redis protocol, node wiring) and [`cli`]: the cache node server
//!   and its command line.
//!
//! Without Redis everything works from L1 alone; when Redis comes back, nodes recover by
//! themselves.
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

pub mod actors;
pub mod bus;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod coherence;
pub mod config;
pub mod error;
pub mod gossip;
pub mod key;
pub mod l1;
pub mod l2;
pub mod node_metrics;
pub mod pattern;
pub mod server;
pub mod stats;
pub mod telemetry;
pub mod wire;
pub mod wire_auth;

pub use cache::{HybridCache, HybridCacheBuilder, Source};
pub use config::Config;
pub use error::CacheError;
pub use stats::{Health, Stats, Status};
