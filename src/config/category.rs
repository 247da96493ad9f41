//! Categories: the named L1 caches a node serves, their TTL, capacity and consistency, and
//! how the node-wide L1 byte cap is shared between them.
//!
//! Why its own file: a category is the unit every other layer speaks in (routes, metrics,
//! the actors, coherence); its settings and the byte-budget rule live in one place.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// How fresh a category's reads are (CONTRACT §11).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// No read returns a value replaced more than B (`staleness_bound_ms`) before it
    /// started. Writes are acknowledged once Redis took the invalidation.
    #[default]
    Bounded,
    /// No read that starts after a write was acknowledged returns the older value, on any
    /// node. Writes wait until every lease holder applied the invalidation, or B.
    Strict,
}

impl Consistency {
    /// `"bounded"` or `"strict"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Consistency::Bounded => "bounded",
            Consistency::Strict => "strict",
        }
    }
}

/// TTL, capacity, consistency and near-cache settings of one category.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryConfig {
    /// Upper bound of an entry's L1 lifetime, seconds.
    pub ttl_secs: u64,
    /// Maximum number of L1 entries.
    pub max_entries: u64,
    /// Maximum L1 bytes (key + value + a fixed per-entry overhead, `l1::ENTRY_OVERHEAD`). `None`: an
    /// equal share of the node-wide `l1_max_bytes`; see [`l1_byte_budgets`].
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// `bounded` (default) or `strict`.
    #[serde(default)]
    pub consistency: Consistency,
    /// Spread of expiries, a fraction 0–1 of the TTL: each write's L1 lifetime and L2 TTL
    /// are the configured ones times a random factor in `[1 − ttl_jitter, 1]`, so keys
    /// written together do not expire together. Never longer than configured. 0 = off.
    #[serde(default)]
    pub ttl_jitter: f64,
    /// Negative caching: how long a loader's "not found" (`get_or_load_opt` returning
    /// `None`) is cached, in L1 and L2, seconds. `None` (default): "not found" is not cached.
    #[serde(default)]
    pub negative_ttl_secs: Option<u64>,
    /// Refresh-ahead: a `get_or_load_with` hit on an entry at least this many seconds old
    /// answers the cached value at once and starts one background reload of the key in the
    /// cluster (a short Redis lock picks the node), whose result replaces the value
    /// everywhere. Must be below `ttl_secs`. `None` (default): off.
    #[serde(default)]
    pub refresh_after_secs: Option<u64>,
    /// Fail-safe: when a loader fails, times out (hard) or exceeds `load_soft_timeout_ms`,
    /// `get_or_load` answers the last value this node held for the key (marked stale) if it
    /// was cached at most this many seconds ago and no write or invalidation removed it
    /// since. `None` (default): the loader's error is returned.
    #[serde(default)]
    pub fail_safe_max_age_secs: Option<u64>,
    /// Fail-safe only: a load still running after this many milliseconds is abandoned for
    /// the fail-safe value, when there is one. `None` (default): wait up to the hard timeout.
    #[serde(default)]
    pub load_soft_timeout_ms: Option<u64>,
    /// Hard timeout of every loader call of `get_or_load`, milliseconds (default 30000):
    /// past it the load fails (and the fail-safe value, if any, answers).
    #[serde(default = "default_load_timeout_ms")]
    pub load_timeout_ms: u64,
    /// Warm-up: how many of the category's hottest keys a node preloads from L2 when it
    /// starts, after each re-subscription to Redis and after each coherence flush of its L1
    /// (at most [`MAX_WARM_UP_KEYS`], and never more than fit in the category's L1). It also
    /// makes the node record its own hottest keys in Redis, where every node finds them.
    /// 0 (default): off.
    #[serde(default)]
    pub warm_up_keys: u32,
    /// Warm-up only: how often the node adds its hottest keys since the last sample to the
    /// category's shared hot-key ranking in Redis, milliseconds (default 10000).
    #[serde(default = "default_warm_up_sample_ms")]
    pub warm_up_sample_ms: u64,
}

/// [`CategoryConfig::load_timeout_ms`] by default: 30 s.
pub const DEFAULT_LOAD_TIMEOUT_MS: u64 = 30_000;

fn default_load_timeout_ms() -> u64 {
    DEFAULT_LOAD_TIMEOUT_MS
}

/// The largest [`CategoryConfig::warm_up_keys`].
pub const MAX_WARM_UP_KEYS: u32 = 10_000;

/// [`CategoryConfig::warm_up_sample_ms`] by default: 10 s.
pub const DEFAULT_WARM_UP_SAMPLE_MS: u64 = 10_000;

fn default_warm_up_sample_ms() -> u64 {
    DEFAULT_WARM_UP_SAMPLE_MS
}

impl Default for CategoryConfig {
    /// The `general` category's settings.
    fn default() -> Self {
        CategoryConfig {
            ttl_secs: 300,
            max_entries: 1000,
            consistency: Consistency::Bounded,
            max_bytes: None,
            ttl_jitter: 0.0,
            negative_ttl_secs: None,
            refresh_after_secs: None,
            fail_safe_max_age_secs: None,
            load_soft_timeout_ms: None,
            load_timeout_ms: DEFAULT_LOAD_TIMEOUT_MS,
            warm_up_keys: 0,
            warm_up_sample_ms: DEFAULT_WARM_UP_SAMPLE_MS,
        }
    }
}

impl CategoryConfig {
    /// The L1 lifetime bound as a [`Duration`].
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }

    /// How long a fail-safe copy may be served after it was cached, when fail-safe is on.
    pub fn fail_safe_max_age(&self) -> Option<Duration> {
        self.fail_safe_max_age_secs.map(Duration::from_secs)
    }

    /// The hard timeout of a loader call.
    pub fn load_timeout(&self) -> Duration {
        Duration::from_millis(self.load_timeout_ms)
    }

    /// How long a load runs before the fail-safe value answers instead, when set.
    pub fn load_soft_timeout(&self) -> Option<Duration> {
        self.load_soft_timeout_ms.map(Duration::from_millis)
    }

    /// The age past which a hit starts a background reload (refresh-ahead), when set.
    pub fn refresh_after(&self) -> Option<Duration> {
        self.refresh_after_secs.map(Duration::from_secs)
    }

    /// Whether warm-up (and the recording of hot keys it needs) is on.
    pub fn warm_up(&self) -> bool {
        self.warm_up_keys > 0
    }

    /// How often the node records its hottest keys, when warm-up is on.
    pub fn warm_up_sample(&self) -> Duration {
        Duration::from_millis(self.warm_up_sample_ms)
    }

    /// How long a cached "not found" lives, when negative caching is on.
    pub fn negative_ttl(&self) -> Option<Duration> {
        self.negative_ttl_secs.map(Duration::from_secs)
    }
}

/// The seed categories of the original module (CONTRACT §2).
pub fn default_categories() -> BTreeMap<String, CategoryConfig> {
    [
        ("permissions", 600, 500),
        ("menus", 900, 500),
        ("roles", 1800, 200),
        ("prompts", 3600, 1000),
        ("general", 300, 1000),
    ]
    .into_iter()
    .map(|(name, ttl_secs, max_entries)| {
        (
            name.to_string(),
            CategoryConfig {
                ttl_secs,
                max_entries,
                ..CategoryConfig::default()
            },
        )
    })
    .collect()
}

/// Default node-wide L1 cap: 256 MiB.
pub const DEFAULT_L1_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The byte budget of each category's L1, so that their sum never exceeds `node_cap`.
///
/// Each category asks for its `max_bytes`, or for an equal share (`node_cap / n`) when it
/// sets none. When the asks add up to more than `node_cap`, every ask is scaled down by the
/// same factor (proportional split); otherwise each category gets what it asked for.
pub fn l1_byte_budgets(
    categories: &BTreeMap<String, CategoryConfig>,
    node_cap: u64,
) -> BTreeMap<String, u64> {
    let n = categories.len().max(1) as u64;
    let asks: Vec<(&String, u64)> = categories
        .iter()
        .map(|(name, c)| (name, c.max_bytes.unwrap_or(node_cap / n)))
        .collect();
    let total: u128 = asks.iter().map(|(_, a)| u128::from(*a)).sum();
    asks.into_iter()
        .map(|(name, ask)| {
            let budget = if total > u128::from(node_cap) {
                (u128::from(ask) * u128::from(node_cap) / total) as u64
            } else {
                ask
            };
            (name.clone(), budget.max(1))
        })
        .collect()
}
