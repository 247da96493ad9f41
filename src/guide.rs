//! # User guide
//!
//! A tour of the library, one runnable example per topic. Every example here runs as a
//! doctest without Redis (L1 only); with Redis configured the same calls go through L2 and
//! keep every process's L1 coherent.
//!
//! ## 1. Build a cache
//!
//! [`HybridCache::builder`](crate::HybridCache::builder) starts from the default
//! categories (`permissions` 600 s / 500 entries, `menus` 900 s / 500, `roles` 1800 s / 200,
//! `prompts` 3600 s / 1000, `general` 300 s / 1000) and lets you add or override any.
//! [`HybridCache::from_env`](crate::HybridCache::from_env) reads the same environment as
//! the original Python module (`REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD`, `REDIS_DB`,
//! `REDIS_SSL`, `REDIS_URL`) plus the `HC_*` settings; no Redis configured means L1 only.
//!
//! ```
//! use std::time::Duration;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = hybrid_cache::HybridCache::builder()
//!     .category("sessions", Duration::from_secs(60), 10_000) // a category of your own
//!     .build()
//!     .await?;
//! assert!(!cache.l2_enabled()); // no Redis configured: L1 only
//! cache.shutdown().await;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## 2. Read, write, delete
//!
//! Values are bytes at the core. `ttl` is the L2 (Redis) TTL; the L1 lifetime of the entry is
//! `min(ttl, category TTL)`. A write drops the key from every other process's L1.
//! An unknown category is an error, never a silent new cache.
//!
//! ```
//! use std::time::Duration;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = hybrid_cache::HybridCache::builder().build().await?;
//! cache.set("general", "greeting", "hello", Some(Duration::from_secs(30))).await?;
//! assert_eq!(cache.get("general", "greeting").await?.as_deref(), Some(&b"hello"[..]));
//!
//! cache.delete("general", "greeting").await?;
//! assert_eq!(cache.get("general", "greeting").await?, None);
//!
//! let err = cache.get("no-such-category", "k").await.unwrap_err();
//! assert_eq!(err.code(), "unknown_category");
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## 3. Cache a function's result: `get_or_load`
//!
//! The Rust form of the original `@cached(category, ttl)`. The key follows the original
//! format `"{function}:{arg1}:{arg2}..."` ([`cache_key!`](crate::cache_key)). Concurrent
//! misses of one key run the loader once per process; a loader error is returned to every
//! waiting caller and nothing is cached.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use hybrid_cache::cache_key;
//! # #[derive(Debug)] struct DbError; impl std::fmt::Display for DbError { fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result { write!(f, "db") } } impl std::error::Error for DbError {}
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = hybrid_cache::HybridCache::builder().build().await?;
//! let queries = AtomicUsize::new(0);
//! let key = cache_key!("get_user_roles", 42);
//! assert_eq!(key, "get_user_roles:42");
//!
//! for _ in 0..3 {
//!     let roles: Vec<String> = cache
//!         .get_or_load_json("roles", &key, None, || async {
//!             queries.fetch_add(1, Ordering::Relaxed); // the slow query
//!             Ok::<_, DbError>(vec!["admin".to_string()])
//!         })
//!         .await?;
//!     assert_eq!(roles, ["admin"]);
//! }
//! assert_eq!(queries.load(Ordering::Relaxed), 1); // loaded once, then served from L1
//!
//! // A failing loader caches nothing.
//! let failed = cache
//!     .get_or_load("roles", "get_user_roles:7", None, || async { Err::<bytes::Bytes, _>(DbError) })
//!     .await;
//! assert_eq!(failed.unwrap_err().code(), "loader_failed");
//! assert_eq!(cache.get("roles", "get_user_roles:7").await?, None);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! Per category, all off by default (`docs/near-cache.md`): `ttl_jitter` spreads expiries,
//! `refresh_after_secs` answers a hit past it at once and reloads the key in the background,
//! once in the cluster ([`get_or_load_with`](crate::HybridCache::get_or_load_with), whose
//! [`LoadOptions`](crate::LoadOptions) can set it per call), `negative_ttl_secs` caches a loader's "not found"
//! ([`get_or_load_opt`](crate::HybridCache::get_or_load_opt)), `fail_safe_max_age_secs`
//! answers the last value, marked stale, when the loader fails or is slow
//! ([`get_or_load_marked`](crate::HybridCache::get_or_load_marked)); `load_timeout_ms`
//! bounds every loader call.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use hybrid_cache::config::{CategoryConfig, Config};
//! let mut config = Config::default();
//! config.categories.insert("users".into(), CategoryConfig {
//!     ttl_secs: 600, max_entries: 1000,
//!     ttl_jitter: 0.1,                    // expiries over [540 s, 600 s]
//!     negative_ttl_secs: Some(30),        // "no such user" cached 30 s
//!     fail_safe_max_age_secs: Some(3600), // the last value may answer a failing loader for 1 h
//!     ..CategoryConfig::default()
//! });
//! let cache = hybrid_cache::HybridCache::builder().config(config).build().await?;
//! let missing = cache
//!     .get_or_load_opt("users", "user:404", None, || async { Ok::<_, std::io::Error>(None) })
//!     .await?;
//! assert_eq!(missing, None);
//! assert_eq!(cache.stats().await.counters.negative_hits, 0);
//! assert_eq!(cache.get("users", "user:404").await?, None); // the cached "not found"
//! assert_eq!(cache.stats().await.counters.negative_hits, 1);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## 4. Invalidate
//!
//! [`invalidate`](crate::HybridCache::invalidate) takes a glob (`*` any run, `?` one
//! character, `[abc]`, `[a-z]`, `[!abc]`, `\` escapes) or `"*"` for the whole category;
//! [`invalidate_key`](crate::HybridCache::invalidate_key) takes one exact key, compared as
//! bytes and never read as a pattern. Both return how many local L1 entries they removed,
//! and remove the entries from L2 and from the L1 of every live process.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = hybrid_cache::HybridCache::builder().build().await?;
//! for user in 1..=3 {
//!     cache.set("menus", &format!("get_user_menu:{user}"), "[]", None).await?;
//! }
//! cache.set("menus", "get_roles:[1, 2]", "[]", None).await?;
//!
//! assert_eq!(cache.invalidate("get_user_menu:[12]", "menus").await?, 2);
//! assert_eq!(cache.invalidate_key("menus", "get_roles:[1, 2]").await?, 1); // a key, not a glob
//! assert_eq!(cache.invalidate("*", "menus").await?, 1); // what is left: get_user_menu:3
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## 5. Stats and health
//!
//! [`stats`](crate::HybridCache::stats) and [`health`](crate::HybridCache::health) return the
//! original module's `cache_stats()` and `/health` documents (serde-serializable), extended
//! with counters.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = hybrid_cache::HybridCache::builder().build().await?;
//! cache.set("permissions", "get_user_permissions:1", "[]", None).await?;
//! let stats = cache.stats().await;
//! assert_eq!(stats.l1_caches["permissions"].size, 1);
//! assert!(!stats.l2_enabled);
//!
//! let health = cache.health().await;
//! assert_eq!(health.status, hybrid_cache::Status::Ok);
//! println!("{}", serde_json::to_string(&health)?);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## 6. Redis, coherence and the guarantee
//!
//! With Redis configured ([`redis_url`](crate::HybridCacheBuilder::redis_url), or the
//! environment), every write and invalidation is written to L2 and announced on a Redis
//! pub/sub channel; every process applies it to its L1. A process serves L1 hits only while
//! it holds a freshness lease, renewed by an echo through Redis, so a read never returns a
//! value older than the staleness bound B
//! ([`staleness_bound`](crate::HybridCacheBuilder::staleness_bound), default 100 ms), even
//! when messages are lost, Redis is down or a process is paused. A
//! [`strict`](crate::HybridCacheBuilder::strict) category goes further: a read that starts
//! after a write was acknowledged never returns the older value. What cannot be served within
//! the guarantee is an [`Unavailable`](crate::CacheError::Unavailable) error (HTTP 503), or,
//! for `get_or_load`, a call to the loader (the source of truth). Serving possibly-stale L1
//! during an outage (the original module's behaviour) is an explicit opt-in,
//! [`serve_stale_on_outage`](crate::HybridCacheBuilder::serve_stale_on_outage), off by
//! default. `docs/guarantee.md` in the repository states exactly which faults and Redis
//! deployments the guarantee covers.
//!
//! ```no_run
//! use std::time::Duration;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = hybrid_cache::HybridCache::builder()
//!     .redis_url("redis://127.0.0.1:6400/0")
//!     .namespace("myapp")                       // prefix of every Redis key and channel
//!     .staleness_bound(Duration::from_millis(50))
//!     .strict("permissions")
//!     .build()
//!     .await?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## 7. Running a cache node
//!
//! The same library runs as a server: `hybrid-cache node` serves the HTTP API (and the Redis
//! protocol), joins a cluster over QUIC gossip and exposes `/metrics`, `/openapi.json` and a
//! `/ui` page. See the repository's README and `docs/operations.md`.
//!
//! ```text
//! hybrid-cache node                                   # one node, L1 only, 127.0.0.1:8080
//! hybrid-cache node --config cluster.toml --node-id n1 # node n1 of the local 3-node cluster
//! hybrid-cache set permissions k v && hybrid-cache get permissions k
//! ```
