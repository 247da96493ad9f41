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
        }
    }
}

impl CategoryConfig {
    /// The L1 lifetime bound as a [`Duration`].
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
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
