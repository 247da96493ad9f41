//! Node and library configuration.
//!
//! One [`Config`] is assembled from four layers, highest first: command-line flags,
//! environment (`REDIS_*` of the original Python module, `APP_ENV`, `HC_*`), a TOML file
//! (`cluster.toml`) and built-in defaults. Everything is validated before anything starts,
//! and every error names the offending field, so a bad deployment fails at once (exit code 2)
//! instead of half-starting.
//!
//! The layers live in their own files: [`Config`] and its defaults in `settings.rs`, the
//! file in `file.rs` ([`FileConfig`]), the environment in `env.rs`, the flags in `flags.rs`
//! ([`Flags`]), the order in `resolve.rs` ([`Config::resolve`]) and the checks in
//! `validate.rs` ([`Config::validate`]). What the file, environment and flag layers decide
//! before it can be parsed is in `pending.rs`, the one error type ([`ConfigError`]) in
//! `error.rs`. Categories and the L1 byte budgets are in `category.rs`, plain limit settings
//! other modules enforce in `limits.rs`. This file only declares and re-exports, so the
//! files below it depend one way (resolve → layers → pending → validate → settings →
//! category, limits, error). `config` is a leaf: it imports no other module of the crate.

mod category;
mod env;
mod error;
mod file;
mod flags;
mod limits;
mod pending;
mod resolve;
mod settings;
mod validate;

#[cfg(test)]
mod tests;

pub use category::{
    default_categories, l1_byte_budgets, CategoryConfig, Consistency, DEFAULT_L1_MAX_BYTES,
    DEFAULT_WARM_UP_SAMPLE_MS, MAX_WARM_UP_KEYS,
};
pub use error::ConfigError;
pub use file::{FileConfig, FileRedis, NodeEntry};
pub use flags::Flags;
pub use limits::{HttpLimits, DEFAULT_MAILBOX_CAPACITY, MIN_SECRET_LEN};
pub use settings::{Config, RedisTarget, TlsFiles};
