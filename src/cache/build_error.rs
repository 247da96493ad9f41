//! [`BuildError`]: why a cache did not start.
//!
//! Why its own file: both [`HybridCache::start`](super::HybridCache::start) and the builder
//! return it, so it sits below both and the facade does not import the builder.

use crate::config::ConfigError;

/// Errors starting a cache.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The L2 Redis answered and has persistence on (or would not say): refused unless
    /// `allow_persistent_redis` is set.
    #[error("{0}")]
    PersistentRedis(String),
    /// An actor of the tree failed to start.
    #[error("failed to start the actor tree: {0}")]
    Actors(String),
}
