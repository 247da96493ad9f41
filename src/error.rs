//! Errors of the library facade.
//!
//! Every layer has its own `thiserror` enum (`ConfigError`, `L2Error`, `WireError`,
//! `GossipError`); `CacheError` is what a user of [`crate::HybridCache`] sees. HTTP maps each
//! variant to a status code and a stable `error` code (see [`CacheError::code`]).

use std::sync::Arc;

/// What went wrong in a cache call.
#[derive(Debug, thiserror::Error, Clone)]
pub enum CacheError {
    /// The category is not configured. Unknown categories never create a new cache.
    #[error("unknown category `{0}`")]
    UnknownCategory(String),
    /// The key is empty or longer than `max_key_bytes`.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The key is longer than `max_key_bytes`.
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// The key's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is larger than `max_value_bytes`.
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The invalidation pattern is not a valid glob.
    #[error("invalid pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tag is empty, too long, holds a character outside `[A-Za-z0-9_.:-]`, or a write
    /// carries too many tags (see [`crate::tag`]).
    #[error("invalid tag: {0}")]
    InvalidTag(String),
    /// The ttl is zero or out of range.
    #[error("invalid ttl: {0}")]
    InvalidTtl(String),
    /// The loader passed to `get_or_load` failed; nothing was cached.
    #[error("loader failed: {0}")]
    Loader(Arc<dyn std::error::Error + Send + Sync>),
    /// A value could not be (de)serialized by the typed helpers.
    #[error("serialization failed: {0}")]
    Serde(String),
    /// The node is shutting down or an actor is restarting; retry.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The caller's deadline ([`crate::HybridCache::set_before`]) passed before the write
    /// was applied anywhere: it was not applied, and never will be.
    #[error("deadline exceeded: the write was not applied")]
    DeadlineExceeded,
}

impl CacheError {
    /// Stable machine-readable code used in HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            CacheError::UnknownCategory(_) => "unknown_category",
            CacheError::InvalidKey(_) => "invalid_key",
            CacheError::ValueTooLarge { .. } => "value_too_large",
            CacheError::KeyTooLarge { .. } => "key_too_large",
            CacheError::InvalidPattern { .. } => "invalid_pattern",
            CacheError::InvalidTtl(_) => "invalid_ttl",
            CacheError::InvalidTag(_) => "invalid_tag",
            CacheError::Loader(_) => "loader_failed",
            CacheError::Serde(_) => "serialization",
            CacheError::Unavailable(_) => "unavailable",
            CacheError::DeadlineExceeded => "deadline_exceeded",
        }
    }
}
