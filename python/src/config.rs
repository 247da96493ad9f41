//! The configuration of a process's cache: the environment (`REDIS_*`, `HC_*`, `APP_ENV`),
//! a `cluster.toml` (`config_file=` or `HC_CONFIG`), then `configure()`'s overrides and its
//! `categories=`. Parsed and checked by the Rust library's own configuration code, so a bad
//! value raises `ConfigError` naming the setting (`categories.users.ttl_jitter`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hybrid_cache::config::{CategoryConfig, Config, FileConfig, Flags, RedisTarget};
use pyo3::prelude::*;

use crate::errors::ConfigError;

/// What `configure()` (or the environment alone) asks for.
#[derive(Default)]
pub struct Settings {
    pub node_id: String,
    pub redis_url: Option<String>,
    pub l1_only: bool,
    pub namespace: Option<String>,
    pub staleness_bound_ms: Option<u64>,
    /// `configure(categories=...)` as JSON: `{name: {setting: value}}`.
    pub categories_json: Option<String>,
    /// `configure(config_file=...)`; else `HC_CONFIG`.
    pub config_file: Option<PathBuf>,
}

fn cfg_err(e: hybrid_cache::config::ConfigError) -> PyErr {
    ConfigError::new_err(e.to_string())
}

fn invalid(field: String, reason: impl std::fmt::Display) -> PyErr {
    cfg_err(hybrid_cache::config::ConfigError::Invalid {
        field,
        reason: reason.to_string(),
    })
}

/// A ttl in seconds (the Python API's unit), checked: > 0 and finite.
pub fn ttl(secs: Option<f64>) -> PyResult<Option<Duration>> {
    match secs {
        None => Ok(None),
        Some(s) => Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .map(Some)
            .ok_or_else(|| {
                crate::errors::InvalidTtlError::new_err(format!("invalid ttl: {s} (seconds, > 0)"))
            }),
    }
}

/// The file, without what only a `hybrid-cache node` uses: a Python process listens on
/// nothing and reaches the other processes through Redis, so its listen addresses, peers
/// and `[[nodes]]` entries are ignored (each process has its own node id).
fn file_layer(s: &Settings) -> PyResult<FileConfig> {
    let path = s.config_file.clone().or_else(|| {
        std::env::var("HC_CONFIG")
            .ok()
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let mut file = FileConfig::load(&path).map_err(cfg_err)?;
    file.nodes.clear();
    file.node_id = None;
    file.http = None;
    file.resp = None;
    file.gossip = None;
    file.peers = None;
    Ok(file)
}

/// `categories=`: each entry adds a category or replaces one (the seed categories, the
/// file's), as a `[categories.<name>]` table of the file does, with the same fields.
fn apply_categories(c: &mut Config, json: &str) -> PyResult<()> {
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| invalid("categories".into(), e))?;
    for (name, table) in map {
        let cat: CategoryConfig =
            serde_json::from_value(table).map_err(|e| invalid(format!("categories.{name}"), e))?;
        c.categories.insert(name, cat);
    }
    Ok(())
}

/// The validated configuration.
pub fn config(s: &Settings) -> PyResult<Config> {
    let env = |name: &str| std::env::var(name).ok();
    let mut c = Config::resolve(&Flags::default(), &env, file_layer(s)?).map_err(cfg_err)?;
    if let Some(json) = &s.categories_json {
        apply_categories(&mut c, json)?;
    }
    if s.l1_only {
        c.redis = None;
    } else if let Some(url) = &s.redis_url {
        c.redis = Some(RedisTarget::Url {
            url: url.clone(),
            password: None,
        });
    }
    c.node_id = s.node_id.clone();
    if let Some(ns) = &s.namespace {
        c.namespace = ns.clone();
    }
    if let Some(ms) = s.staleness_bound_ms {
        c.staleness_bound = Duration::from_millis(ms);
    }
    c.validate().map_err(cfg_err)?;
    Ok(c)
}

/// Checks a configuration without starting anything: `configure()` raises `ConfigError`
/// at once rather than at the first call.
#[pyfunction]
#[pyo3(signature = (node_id, redis_url=None, l1_only=false, namespace=None, staleness_bound_ms=None, categories_json=None, config_file=None))]
pub fn check_config(
    node_id: String,
    redis_url: Option<String>,
    l1_only: bool,
    namespace: Option<String>,
    staleness_bound_ms: Option<u64>,
    categories_json: Option<String>,
    config_file: Option<PathBuf>,
) -> PyResult<()> {
    config(&Settings {
        node_id,
        redis_url,
        l1_only,
        namespace,
        staleness_bound_ms,
        categories_json,
        config_file,
    })
    .map(drop)
}
