//! [`HybridCacheBuilder`]: a configuration assembled in code (categories, Redis, node id,
//! staleness bound, strict categories), validated, then started.

use std::time::Duration;

use super::build_error::BuildError;
use super::HybridCache;
use crate::config::{CategoryConfig, Config, ConfigError, Flags, RedisTarget};

/// The two ways to build a [`HybridCache`] besides [`HybridCache::start`] with a [`Config`].
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
    allow_persistent_redis: Option<bool>,
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
    /// This node's id (in stats, headers and every invalidation it sends).
    pub fn node_id(mut self, id: &str) -> Self {
        self.node_id = Some(id.to_string());
        self
    }
    /// Prefix of every Redis key and channel (nodes of one cluster share it).
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
    /// Opt-in: accept an L2 Redis with persistence on (RDB `save` or AOF), which is refused
    /// by default. Outside the guarantee: a restart of that Redis brings back deleted values.
    pub fn allow_persistent_redis(mut self, on: bool) -> Self {
        self.allow_persistent_redis = Some(on);
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
        if let Some(on) = self.allow_persistent_redis {
            config.allow_persistent_redis = on;
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
