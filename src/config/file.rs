//! The file layer: `cluster.toml` ([`FileConfig`]), how it is read, and what it sets.
//!
//! Why its own file: the file is the one layer with structure (tables, `[[nodes]]`
//! entries, a `[redis]` topology), and serde's `deny_unknown_fields` makes a misspelt key an
//! error instead of a silently ignored setting.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::category::CategoryConfig;
use super::error::{invalid, ConfigError};
use super::limits::HttpLimits;
use super::pending::Pending;
use super::settings::{Config, RedisTarget, TlsFiles};

/// One `[[nodes]]` entry of `cluster.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// The node's id.
    pub id: String,
    /// Its HTTP listen address (`ip:port`).
    pub http: String,
    /// Its gossip address (`host:port`), also what the other entries join through.
    pub gossip: String,
}

/// The `cluster.toml` file. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// This node's id ([`Config::node_id`]); with `[[nodes]]`, selects the entry.
    pub node_id: Option<String>,
    /// [`Config::namespace`].
    pub namespace: Option<String>,
    /// HTTP listen address (`ip:port`).
    pub http: Option<String>,
    /// RESP listen address (`ip:port`); absent = RESP off.
    pub resp: Option<String>,
    /// Gossip listen address (`ip:port`).
    pub gossip: Option<String>,
    /// Gossip addresses to join through; absent with `[[nodes]]` = the other entries.
    pub peers: Option<Vec<String>>,
    /// [`Config::api_token`].
    pub api_token: Option<String>,
    /// [`Config::max_key_bytes`].
    pub max_key_bytes: Option<usize>,
    /// [`Config::max_value_bytes`].
    pub max_value_bytes: Option<usize>,
    /// [`Config::isolation_grace`], milliseconds.
    pub isolation_grace_ms: Option<u64>,
    /// [`Config::redis_timeout`], milliseconds.
    pub redis_timeout_ms: Option<u64>,
    /// [`Config::gossip_probe_period`], milliseconds.
    pub gossip_probe_period_ms: Option<u64>,
    /// [`Config::gossip_suspect_timeout`], milliseconds.
    pub gossip_suspect_timeout_ms: Option<u64>,
    /// [`Config::staleness_bound`] (B), milliseconds.
    pub staleness_bound_ms: Option<u64>,
    /// [`Config::serve_stale_on_outage`].
    pub serve_stale_on_outage: Option<bool>,
    /// [`Config::l1_max_bytes`].
    pub l1_max_bytes: Option<u64>,
    /// [`Config::mailbox_capacity`].
    pub mailbox_capacity: Option<usize>,
    /// [`HttpLimits::max_connections`](super::HttpLimits::max_connections).
    pub max_connections: Option<usize>,
    /// [`HttpLimits::header_read_timeout`](super::HttpLimits::header_read_timeout), milliseconds.
    pub header_read_timeout_ms: Option<u64>,
    /// [`HttpLimits::body_read_timeout`](super::HttpLimits::body_read_timeout), milliseconds.
    pub body_read_timeout_ms: Option<u64>,
    /// [`HttpLimits::request_timeout`](super::HttpLimits::request_timeout), milliseconds.
    pub request_timeout_ms: Option<u64>,
    /// [`HttpLimits::max_in_flight`](super::HttpLimits::max_in_flight).
    pub max_in_flight: Option<usize>,
    /// [`Config::gossip_dead_forget`], seconds.
    pub dead_forget_secs: Option<u64>,
    /// [`Config::cluster_secret`] (an empty string = none).
    pub cluster_secret: Option<String>,
    /// [`Config::l2_min_replicas`].
    pub l2_min_replicas: Option<u32>,
    /// The `[redis]` table: one topology.
    pub redis: Option<FileRedis>,
    /// The `[tls]` table: certificates of mutual-TLS gossip.
    pub tls: Option<TlsFiles>,
    /// `[categories.<name>]` tables; they add to or replace the seed categories.
    #[serde(default)]
    pub categories: BTreeMap<String, CategoryConfig>,
    /// `[[nodes]]` entries: every node of a cluster, one of them this node.
    #[serde(default)]
    pub nodes: Vec<NodeEntry>,
}

/// The `[redis]` table: exactly one of `url`, `sentinels` (with `master_name`),
/// `cluster_nodes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRedis {
    /// One Redis (`redis://` or `rediss://`).
    pub url: Option<String>,
    /// Sentinels (`host:port`) of a primary named `master_name`.
    pub sentinels: Option<Vec<String>>,
    /// The name the sentinels monitor the primary under (only with `sentinels`).
    pub master_name: Option<String>,
    /// Some nodes (`host:port`) of a Redis Cluster.
    pub cluster_nodes: Option<Vec<String>>,
    /// [`Config::allow_persistent_redis`].
    pub allow_persistent_redis: Option<bool>,
}

impl FileRedis {
    /// Whether the table names a topology (it may hold only `allow_persistent_redis`, with
    /// the topology from the environment).
    fn names_target(&self) -> bool {
        self.url.is_some()
            || self.sentinels.is_some()
            || self.master_name.is_some()
            || self.cluster_nodes.is_some()
    }

    /// The one topology the `[redis]` table names.
    fn target(self) -> Result<RedisTarget, ConfigError> {
        match (self.url, self.sentinels, self.cluster_nodes) {
            (Some(url), None, None) => {
                if self.master_name.is_some() {
                    return Err(invalid("redis.master_name", "only with redis.sentinels"));
                }
                Ok(RedisTarget::Url {
                    url,
                    password: None,
                })
            }
            (None, Some(sentinels), None) => Ok(RedisTarget::Sentinel {
                sentinels,
                master: self
                    .master_name
                    .ok_or_else(|| invalid("redis.master_name", "required with redis.sentinels"))?,
                password: None,
                db: 0,
            }),
            (None, None, Some(nodes)) => {
                if self.master_name.is_some() {
                    return Err(invalid("redis.master_name", "only with redis.sentinels"));
                }
                Ok(RedisTarget::Cluster {
                    nodes,
                    password: None,
                })
            }
            _ => Err(invalid(
                "redis",
                "set exactly one of url, sentinels (with master_name), cluster_nodes",
            )),
        }
    }
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// The file layer over the defaults in `c`. `entry` is this node's `[[nodes]]` entry: its
/// addresses replace `http` and `gossip`, and the other entries become the peers unless
/// `peers` is set. Returns what is parsed only once every layer had its say.
pub(super) fn apply(
    c: &mut Config,
    file: FileConfig,
    entry: Option<NodeEntry>,
) -> Result<Pending, ConfigError> {
    let mut p = addresses(&file, entry.as_ref());
    apply_settings(c, &file);
    apply_limits(&mut c.http_limits, &file);
    if let Some(v) = file.redis.as_ref().and_then(|r| r.allow_persistent_redis) {
        c.allow_persistent_redis = v;
    }
    p.redis = file
        .redis
        .filter(FileRedis::names_target)
        .map(FileRedis::target)
        .transpose()?;
    c.tls = file.tls;
    for (name, cat) in file.categories {
        c.categories.insert(name, cat);
    }
    Ok(p)
}

/// Listen addresses and peers from the file and this node's `[[nodes]]` entry.
fn addresses(file: &FileConfig, entry: Option<&NodeEntry>) -> Pending {
    let mut p = Pending {
        http: file.http.clone(),
        resp: file.resp.clone(),
        gossip: file.gossip.clone(),
        peers: file.peers.clone().unwrap_or_default(),
        ..Pending::default()
    };
    if let Some(e) = entry {
        p.http = Some(e.http.clone());
        p.gossip = Some(e.gossip.clone());
        if file.peers.is_none() {
            p.peers = file
                .nodes
                .iter()
                .filter(|n| n.id != e.id)
                .map(|n| n.gossip.clone())
                .collect();
        }
    }
    p
}

/// The file's scalar settings.
fn apply_settings(c: &mut Config, file: &FileConfig) {
    if let Some(ns) = &file.namespace {
        c.namespace = ns.clone();
    }
    c.api_token = file.api_token.clone();
    if let Some(v) = file.max_key_bytes {
        c.max_key_bytes = v;
    }
    if let Some(v) = file.max_value_bytes {
        c.max_value_bytes = v;
    }
    if let Some(v) = file.isolation_grace_ms {
        c.isolation_grace = Duration::from_millis(v);
    }
    if let Some(v) = file.staleness_bound_ms {
        c.staleness_bound = Duration::from_millis(v);
    }
    if let Some(v) = file.serve_stale_on_outage {
        c.serve_stale_on_outage = v;
    }
    if let Some(v) = file.redis_timeout_ms {
        c.redis_timeout = Duration::from_millis(v);
    }
    if let Some(v) = file.gossip_probe_period_ms {
        c.gossip_probe_period = Duration::from_millis(v);
    }
    if let Some(v) = file.gossip_suspect_timeout_ms {
        c.gossip_suspect_timeout = Duration::from_millis(v);
    }
    if let Some(v) = file.l1_max_bytes {
        c.l1_max_bytes = v;
    }
    if let Some(v) = file.mailbox_capacity {
        c.mailbox_capacity = v;
    }
    if let Some(v) = file.dead_forget_secs {
        c.gossip_dead_forget = Duration::from_secs(v);
    }
    c.cluster_secret = file.cluster_secret.clone().filter(|s| !s.is_empty());
    if let Some(v) = file.l2_min_replicas {
        c.l2_min_replicas = v;
    }
}

/// The file's HTTP limits.
fn apply_limits(lim: &mut HttpLimits, file: &FileConfig) {
    if let Some(v) = file.max_connections {
        lim.max_connections = v;
    }
    if let Some(v) = file.header_read_timeout_ms {
        lim.header_read_timeout = Duration::from_millis(v);
    }
    if let Some(v) = file.body_read_timeout_ms {
        lim.body_read_timeout = Duration::from_millis(v);
    }
    if let Some(v) = file.request_timeout_ms {
        lim.request_timeout = Duration::from_millis(v);
    }
    if let Some(v) = file.max_in_flight {
        lim.max_in_flight = v;
    }
}
