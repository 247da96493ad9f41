//! Node and library configuration.
//!
//! One [`Config`] is assembled from four layers, highest first: command-line flags,
//! environment (`REDIS_*` of the original Python module, `APP_ENV`, `HC_*`), a TOML file
//! (`cluster.toml`) and built-in defaults. Everything is validated before anything starts,
//! and every error names the offending field, so a bad deployment fails at once (exit code 2)
//! instead of half-starting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod limits;

pub use limits::{HttpLimits, DEFAULT_MAILBOX_CAPACITY, MIN_SECRET_LEN};

/// Configuration errors; each names the field it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

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

/// TTL, capacity and consistency of one L1 category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
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
}

impl Default for CategoryConfig {
    /// The `general` category's settings.
    fn default() -> Self {
        CategoryConfig {
            ttl_secs: 300,
            max_entries: 1000,
            consistency: Consistency::Bounded,
            max_bytes: None,
        }
    }
}

impl CategoryConfig {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
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
                consistency: Consistency::Bounded,
                max_bytes: None,
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

/// Where Redis is. `None` in [`Config::redis`] means L1 only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// A `redis://` or `rediss://` URL; `password` (from `REDIS_PASSWORD`) applies when the
    /// URL has none.
    Url {
        url: String,
        password: Option<String>,
    },
    /// The original `REDIS_HOST/PORT/PASSWORD/DB/SSL` variables.
    Parts {
        host: String,
        port: u16,
        password: Option<String>,
        db: i64,
        tls: bool,
    },
    /// A primary with replicas behind Redis Sentinel (`REDIS_SENTINELS`,
    /// `REDIS_SENTINEL_MASTER`; `[redis] sentinels`, `master_name`). `password` and `db`
    /// (`REDIS_PASSWORD`, `REDIS_DB`) apply to the data nodes, not to the sentinels.
    Sentinel {
        /// `host:port` of each sentinel.
        sentinels: Vec<String>,
        /// The name the sentinels monitor the primary under.
        master: String,
        password: Option<String>,
        db: i64,
    },
    /// Redis Cluster (`REDIS_CLUSTER_NODES`; `[redis] cluster_nodes`): `host:port` of some
    /// of its nodes (the rest are discovered). `password` from `REDIS_PASSWORD`.
    Cluster {
        nodes: Vec<String>,
        password: Option<String>,
    },
}

/// Certificates for mutual-TLS gossip.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One `[[nodes]]` entry of `cluster.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub id: String,
    pub http: String,
    pub gossip: String,
}

/// Fully resolved configuration of one node (or one embedded cache).
#[derive(Clone, Debug)]
pub struct Config {
    pub node_id: String,
    pub namespace: String,
    /// `APP_ENV`, reported by `/health`.
    pub env: String,
    pub http_addr: SocketAddr,
    /// Listen address of the RESP (Redis protocol) front end; `None` = off.
    pub resp_addr: Option<SocketAddr>,
    /// Address other nodes and clients use for our HTTP API (defaults to `http_addr`).
    pub http_advertise: Option<String>,
    pub gossip_addr: Option<SocketAddr>,
    pub gossip_advertise: Option<String>,
    /// Gossip addresses (`host:port`) to join through.
    pub peers: Vec<String>,
    pub redis: Option<RedisTarget>,
    pub categories: BTreeMap<String, CategoryConfig>,
    /// Bearer token required on mutating HTTP routes when set.
    pub api_token: Option<String>,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// How long Redis and all peers may be unreachable before `/health` says `isolated`.
    pub isolation_grace: Duration,
    /// Upper bound of any single Redis call.
    pub redis_timeout: Duration,
    pub tls: Option<TlsFiles>,
    /// SWIM probe period and suspicion timeout of the gossip layer.
    pub gossip_probe_period: Duration,
    pub gossip_suspect_timeout: Duration,
    /// The staleness bound B (`staleness_bound_ms`, `HC_STALENESS_BOUND_MS`): with Redis, no
    /// read returns a value replaced by a write acknowledged more than B before it started.
    pub staleness_bound: Duration,
    /// Opt-in (`serve_stale_on_outage`, `HC_SERVE_STALE_ON_OUTAGE`): while Redis cannot be
    /// reached, keep serving L1 and accept writes locally (the original module's behaviour).
    /// Off by default: reads may then be older than the staleness bound.
    pub serve_stale_on_outage: bool,
    /// Node-wide L1 cap in bytes; bounds the sum of the categories' `max_bytes`.
    pub l1_max_bytes: u64,
    /// Messages each actor mailbox (and the bus publisher's queue) admits at once
    /// (`mailbox_capacity`, `HC_MAILBOX_CAPACITY`); past it the node flushes instead of
    /// queueing (see the `actors::mailbox` module).
    pub mailbox_capacity: usize,
    /// Connection, timeout and in-flight limits of the HTTP server.
    pub http_limits: HttpLimits,
    /// Gossip forgets a node dead for longer than this (`dead_forget_secs`).
    pub gossip_dead_forget: Duration,
    /// Shared secret authenticating gossip (and bus) messages; required for gossip without TLS.
    pub cluster_secret: Option<String>,
    /// `l2_min_replicas` (`HC_L2_MIN_REPLICAS`): L2 writes wait (`WAIT`) until this many
    /// replicas have them, and fail otherwise. 0 (default): no waiting.
    pub l2_min_replicas: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: "n1".to_string(),
            namespace: "hc".to_string(),
            env: "development".to_string(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            resp_addr: None,
            http_advertise: None,
            gossip_addr: None,
            gossip_advertise: None,
            peers: Vec::new(),
            redis: None,
            categories: default_categories(),
            api_token: None,
            max_key_bytes: 512,
            max_value_bytes: 8 * 1024 * 1024,
            isolation_grace: Duration::from_secs(1),
            redis_timeout: Duration::from_millis(150),
            tls: None,
            gossip_probe_period: Duration::from_millis(200),
            gossip_suspect_timeout: Duration::from_millis(600),
            staleness_bound: Duration::from_millis(100),
            serve_stale_on_outage: false,
            l1_max_bytes: DEFAULT_L1_MAX_BYTES,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            http_limits: Default::default(),
            gossip_dead_forget: Duration::from_secs(60),
            cluster_secret: None,
            l2_min_replicas: 0,
        }
    }
}

/// The `cluster.toml` file. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node_id: Option<String>,
    pub namespace: Option<String>,
    pub http: Option<String>,
    pub resp: Option<String>,
    pub gossip: Option<String>,
    pub peers: Option<Vec<String>>,
    pub api_token: Option<String>,
    pub max_key_bytes: Option<usize>,
    pub max_value_bytes: Option<usize>,
    pub isolation_grace_ms: Option<u64>,
    pub redis_timeout_ms: Option<u64>,
    pub gossip_probe_period_ms: Option<u64>,
    pub gossip_suspect_timeout_ms: Option<u64>,
    pub staleness_bound_ms: Option<u64>,
    pub serve_stale_on_outage: Option<bool>,
    pub l1_max_bytes: Option<u64>,
    pub mailbox_capacity: Option<usize>,
    pub max_connections: Option<usize>,
    pub header_read_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub max_in_flight: Option<usize>,
    pub dead_forget_secs: Option<u64>,
    pub cluster_secret: Option<String>,
    pub l2_min_replicas: Option<u32>,
    pub redis: Option<FileRedis>,
    pub tls: Option<TlsFiles>,
    #[serde(default)]
    pub categories: BTreeMap<String, CategoryConfig>,
    #[serde(default)]
    pub nodes: Vec<NodeEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRedis {
    /// One Redis (`redis://` or `rediss://`).
    pub url: Option<String>,
    /// Sentinels (`host:port`) of a primary named `master_name`.
    pub sentinels: Option<Vec<String>>,
    pub master_name: Option<String>,
    /// Some nodes (`host:port`) of a Redis Cluster.
    pub cluster_nodes: Option<Vec<String>>,
}

impl FileRedis {
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

/// Values given on the command line (all optional).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub node_id: Option<String>,
    pub http: Option<String>,
    pub resp: Option<String>,
    pub gossip: Option<String>,
    pub peers: Vec<String>,
    pub redis_url: Option<String>,
}

fn parse_addr(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse::<SocketAddr>()
        .map_err(|e| invalid(field, format!("`{value}` is not an ip:port address ({e})")))
}

fn check_host_port(field: &str, value: &str) -> Result<(), ConfigError> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(invalid(
            field,
            format!("`{value}` is not a host:port address"),
        )),
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn env_parse<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env(name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|e| invalid(name, format!("`{v}`: {e}"))),
    }
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(invalid(name, format!("`{other}` is not a boolean"))),
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

impl Config {
    /// Builds the configuration from flags, the process environment, the config file and
    /// defaults, in that order of precedence.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        Config::load_with(flags, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::load`], with an explicit environment (for tests).
    pub fn load_with(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let path = flags.config.clone().or_else(|| {
            env("HC_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let file = match &path {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        Config::resolve(flags, env, file)
    }

    /// Resolves layers given an already-parsed file.
    pub fn resolve(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
        file: FileConfig,
    ) -> Result<Config, ConfigError> {
        let mut c = Config::default();

        // Node identity first: it selects the `[[nodes]]` entry.
        let node_id = flags
            .node_id
            .clone()
            .or_else(|| env("HC_NODE_ID").filter(|v| !v.is_empty()))
            .or(file.node_id.clone());
        let entry = match &node_id {
            Some(id) if !file.nodes.is_empty() => Some(
                file.nodes
                    .iter()
                    .find(|n| &n.id == id)
                    .cloned()
                    .ok_or_else(|| {
                        invalid(
                            "node_id",
                            format!("`{id}` has no [[nodes]] entry in the file"),
                        )
                    })?,
            ),
            None if !file.nodes.is_empty() => {
                return Err(invalid(
                    "node_id",
                    "the file lists [[nodes]]; choose one with --node-id or HC_NODE_ID",
                ))
            }
            _ => None,
        };
        if let Some(id) = node_id {
            c.node_id = id;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, n) in file.nodes.iter().enumerate() {
            if !seen.insert(n.id.clone()) {
                return Err(invalid(
                    &format!("nodes[{i}].id"),
                    format!("duplicate id `{}`", n.id),
                ));
            }
            parse_addr(&format!("nodes[{i}].http"), &n.http)?;
            check_host_port(&format!("nodes[{i}].gossip"), &n.gossip)?;
        }

        // File layer.
        if let Some(ns) = file.namespace {
            c.namespace = ns;
        }
        let mut http = file.http.clone();
        let mut resp = file.resp.clone();
        let mut gossip = file.gossip.clone();
        let mut peers = file.peers.clone().unwrap_or_default();
        if let Some(e) = &entry {
            http = Some(e.http.clone());
            gossip = Some(e.gossip.clone());
            if file.peers.is_none() {
                peers = file
                    .nodes
                    .iter()
                    .filter(|n| n.id != e.id)
                    .map(|n| n.gossip.clone())
                    .collect();
            }
        }
        c.api_token = file.api_token;
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
        let lim = &mut c.http_limits;
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
        if let Some(v) = file.dead_forget_secs {
            c.gossip_dead_forget = Duration::from_secs(v);
        }
        c.cluster_secret = file.cluster_secret.filter(|s| !s.is_empty());
        if let Some(v) = file.l2_min_replicas {
            c.l2_min_replicas = v;
        }
        let mut redis = file.redis.map(FileRedis::target).transpose()?;
        c.tls = file.tls;
        for (name, cat) in file.categories {
            c.categories.insert(name, cat);
        }

        // Environment layer.
        if let Some(v) = env("APP_ENV").filter(|v| !v.is_empty()) {
            c.env = v;
        }
        if let Some(v) = env("HC_NAMESPACE").filter(|v| !v.is_empty()) {
            c.namespace = v;
        }
        if let Some(v) = env("HC_HTTP").filter(|v| !v.is_empty()) {
            http = Some(v);
        }
        if let Some(v) = env("HC_RESP").filter(|v| !v.is_empty()) {
            resp = Some(v);
        }
        if let Some(v) = env("HC_GOSSIP").filter(|v| !v.is_empty()) {
            gossip = Some(v);
        }
        if let Some(v) = env("HC_PEERS") {
            peers = split_list(&v);
        }
        if let Some(v) = env("HC_HTTP_ADVERTISE").filter(|v| !v.is_empty()) {
            c.http_advertise = Some(v);
        }
        if let Some(v) = env("HC_GOSSIP_ADVERTISE").filter(|v| !v.is_empty()) {
            c.gossip_advertise = Some(v);
        }
        if let Some(v) = env("HC_API_TOKEN").filter(|v| !v.is_empty()) {
            c.api_token = Some(v);
        }
        if let Some(v) = env_parse::<u64>(env, "HC_ISOLATION_GRACE_MS")? {
            c.isolation_grace = Duration::from_millis(v);
        }
        if let Some(v) = env_parse::<usize>(env, "HC_MAX_VALUE_BYTES")? {
            c.max_value_bytes = v;
        }
        if let Some(v) = env_parse::<usize>(env, "HC_MAX_KEY_BYTES")? {
            c.max_key_bytes = v;
        }
        if let Some(v) = env("HC_STRICT_CATEGORIES") {
            for name in split_list(&v) {
                match c.categories.get_mut(&name) {
                    Some(cat) => cat.consistency = Consistency::Strict,
                    None => {
                        return Err(invalid(
                            "HC_STRICT_CATEGORIES",
                            format!("`{name}` is not a configured category"),
                        ))
                    }
                }
            }
        }
        if let Some(v) = env_parse::<u64>(env, "HC_GOSSIP_PROBE_PERIOD_MS")? {
            c.gossip_probe_period = Duration::from_millis(v);
        }
        if let Some(v) = env_parse::<u64>(env, "HC_GOSSIP_SUSPECT_TIMEOUT_MS")? {
            c.gossip_suspect_timeout = Duration::from_millis(v);
        }
        if let Some(v) = env_parse::<u64>(env, "HC_STALENESS_BOUND_MS")? {
            c.staleness_bound = Duration::from_millis(v);
        }
        if let Some(v) = env("HC_SERVE_STALE_ON_OUTAGE") {
            c.serve_stale_on_outage = parse_bool("HC_SERVE_STALE_ON_OUTAGE", &v)?;
        }
        if let Some(v) = env_parse::<u64>(env, "HC_REDIS_TIMEOUT_MS")? {
            c.redis_timeout = Duration::from_millis(v);
        }
        if let Some(v) = env_parse::<u64>(env, "HC_L1_MAX_BYTES")? {
            c.l1_max_bytes = v;
        }
        if let Some(v) = env_parse::<usize>(env, "HC_MAILBOX_CAPACITY")? {
            c.mailbox_capacity = v;
        }
        let lim = &mut c.http_limits;
        if let Some(v) = env_parse::<usize>(env, "HC_MAX_CONNECTIONS")? {
            lim.max_connections = v;
        }
        if let Some(v) = env_parse::<u64>(env, "HC_HEADER_READ_TIMEOUT_MS")? {
            lim.header_read_timeout = Duration::from_millis(v);
        }
        if let Some(v) = env_parse::<u64>(env, "HC_BODY_READ_TIMEOUT_MS")? {
            lim.body_read_timeout = Duration::from_millis(v);
        }
        if let Some(v) = env_parse::<u64>(env, "HC_REQUEST_TIMEOUT_MS")? {
            lim.request_timeout = Duration::from_millis(v);
        }
        if let Some(v) = env_parse::<usize>(env, "HC_MAX_IN_FLIGHT")? {
            lim.max_in_flight = v;
        }
        if let Some(v) = env_parse::<u64>(env, "HC_DEAD_FORGET_SECS")? {
            c.gossip_dead_forget = Duration::from_secs(v);
        }
        if let Some(v) = env("HC_CLUSTER_SECRET").filter(|v| !v.is_empty()) {
            c.cluster_secret = Some(v);
        }
        if let Some(v) = env_parse::<u32>(env, "HC_L2_MIN_REPLICAS")? {
            c.l2_min_replicas = v;
        }
        match (env("HC_TLS_CA"), env("HC_TLS_CERT"), env("HC_TLS_KEY")) {
            (None, None, None) => {}
            (Some(ca), Some(cert), Some(key)) => {
                c.tls = Some(TlsFiles {
                    ca: ca.into(),
                    cert: cert.into(),
                    key: key.into(),
                })
            }
            _ => {
                return Err(invalid(
                    "HC_TLS_CA/HC_TLS_CERT/HC_TLS_KEY",
                    "set all three or none",
                ))
            }
        }
        let password = env("REDIS_PASSWORD").filter(|v| !v.is_empty());
        if let Some(url) = env("REDIS_URL").filter(|v| !v.is_empty()) {
            redis = Some(RedisTarget::Url {
                url,
                password: password.clone(),
            });
        } else if let Some(host) = env("REDIS_HOST").filter(|v| !v.is_empty()) {
            let port = env_parse::<u16>(env, "REDIS_PORT")?.unwrap_or(6379);
            let db = env_parse::<i64>(env, "REDIS_DB")?.unwrap_or(0);
            let tls = match env("REDIS_SSL") {
                Some(v) => parse_bool("REDIS_SSL", &v)?,
                None => false,
            };
            redis = Some(RedisTarget::Parts {
                host,
                port,
                password: password.clone(),
                db,
                tls,
            });
        } else if let Some(sentinels) = env("REDIS_SENTINELS").filter(|v| !v.is_empty()) {
            let master = env("REDIS_SENTINEL_MASTER")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| invalid("REDIS_SENTINEL_MASTER", "required with REDIS_SENTINELS"))?;
            redis = Some(RedisTarget::Sentinel {
                sentinels: split_list(&sentinels),
                master,
                password: password.clone(),
                db: env_parse::<i64>(env, "REDIS_DB")?.unwrap_or(0),
            });
        } else if let Some(nodes) = env("REDIS_CLUSTER_NODES").filter(|v| !v.is_empty()) {
            redis = Some(RedisTarget::Cluster {
                nodes: split_list(&nodes),
                password: password.clone(),
            });
        } else {
            match redis.as_mut() {
                Some(RedisTarget::Url { password: p, .. })
                | Some(RedisTarget::Sentinel { password: p, .. })
                | Some(RedisTarget::Cluster { password: p, .. })
                    if password.is_some() =>
                {
                    *p = password.clone();
                }
                _ => {}
            }
            if let Some(RedisTarget::Sentinel { db, .. }) = redis.as_mut() {
                if let Some(v) = env_parse::<i64>(env, "REDIS_DB")? {
                    *db = v;
                }
            }
        }

        // Flags layer.
        if let Some(v) = &flags.http {
            http = Some(v.clone());
        }
        if let Some(v) = &flags.resp {
            resp = Some(v.clone());
        }
        if let Some(v) = &flags.gossip {
            gossip = Some(v.clone());
        }
        if !flags.peers.is_empty() {
            peers = flags.peers.iter().flat_map(|p| split_list(p)).collect();
        }
        if let Some(url) = &flags.redis_url {
            redis = Some(RedisTarget::Url {
                url: url.clone(),
                password,
            });
        }

        // Resolve and validate.
        if let Some(h) = http {
            c.http_addr = parse_addr("http", &h)?;
        }
        if let Some(r) = resp {
            c.resp_addr = Some(parse_addr("resp", &r)?);
        }
        if let Some(g) = gossip {
            c.gossip_addr = Some(parse_addr("gossip", &g)?);
        }
        for p in &peers {
            check_host_port("peers", p)?;
        }
        c.peers = peers;
        c.redis = redis;
        c.validate()?;
        Ok(c)
    }

    /// Checks invariants; every error names its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id.is_empty() || self.node_id.len() > 64 {
            return Err(invalid("node_id", "must be 1..=64 characters"));
        }
        if !self
            .node_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid("node_id", "only letters, digits, `-`, `_`, `.`"));
        }
        if self.namespace.is_empty() || self.namespace.contains([' ', ':', '*']) {
            return Err(invalid(
                "namespace",
                "must be non-empty without spaces, `:` or `*`",
            ));
        }
        if self.categories.is_empty() {
            return Err(invalid("categories", "at least one category is required"));
        }
        let b = self.staleness_bound;
        if b < Duration::from_millis(4) || b > Duration::from_secs(60) {
            return Err(invalid(
                "staleness_bound_ms",
                "must be between 4 and 60000 (the lease is renewed every B/4)",
            ));
        }
        for (name, cat) in &self.categories {
            if name.is_empty()
                || name == "*"
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                return Err(invalid(
                    &format!("categories.{name}"),
                    "category names are letters, digits, `-`, `_`",
                ));
            }
            if cat.max_entries == 0 {
                return Err(invalid(
                    &format!("categories.{name}.max_entries"),
                    "must be greater than zero",
                ));
            }
            if cat.max_bytes == Some(0) {
                return Err(invalid(
                    &format!("categories.{name}.max_bytes"),
                    "must be greater than zero",
                ));
            }
            if cat.ttl_secs == 0 {
                return Err(invalid(
                    &format!("categories.{name}.ttl_secs"),
                    "must be greater than zero",
                ));
            }
        }
        if self.max_key_bytes == 0 {
            return Err(invalid("max_key_bytes", "must be greater than zero"));
        }
        if self.max_value_bytes == 0 {
            return Err(invalid("max_value_bytes", "must be greater than zero"));
        }
        if !(1..=1_000_000).contains(&self.mailbox_capacity) {
            return Err(invalid("mailbox_capacity", "must be between 1 and 1000000"));
        }
        if self.l1_max_bytes < 1024 * 1024 {
            return Err(invalid("l1_max_bytes", "must be at least 1048576 (1 MiB)"));
        }
        let lim = &self.http_limits;
        for (field, zero) in [
            ("max_connections", lim.max_connections == 0),
            ("max_in_flight", lim.max_in_flight == 0),
            ("header_read_timeout_ms", lim.header_read_timeout.is_zero()),
            ("body_read_timeout_ms", lim.body_read_timeout.is_zero()),
            ("request_timeout_ms", lim.request_timeout.is_zero()),
        ] {
            if zero {
                return Err(invalid(field, "must be greater than zero"));
            }
        }
        if self.redis_timeout.is_zero() {
            return Err(invalid("redis_timeout_ms", "must be greater than zero"));
        }
        match &self.redis {
            Some(RedisTarget::Url { url, .. }) => {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(invalid(
                        "redis.url",
                        format!("`{url}` must start with redis:// or rediss://"),
                    ));
                }
            }
            Some(RedisTarget::Sentinel {
                sentinels, master, ..
            }) => {
                if sentinels.is_empty() {
                    return Err(invalid("redis.sentinels", "at least one host:port"));
                }
                for s in sentinels {
                    check_host_port("redis.sentinels", s)?;
                }
                if master.is_empty() {
                    return Err(invalid("redis.master_name", "must not be empty"));
                }
            }
            Some(RedisTarget::Cluster { nodes, .. }) => {
                if nodes.is_empty() {
                    return Err(invalid("redis.cluster_nodes", "at least one host:port"));
                }
                for n in nodes {
                    check_host_port("redis.cluster_nodes", n)?;
                }
            }
            Some(RedisTarget::Parts { .. }) | None => {}
        }
        if self.l2_min_replicas > 16 {
            return Err(invalid("l2_min_replicas", "at most 16"));
        }
        if self.gossip_probe_period.is_zero() || self.gossip_suspect_timeout.is_zero() {
            return Err(invalid(
                "gossip_probe_period_ms",
                "must be greater than zero",
            ));
        }
        if self.gossip_dead_forget.is_zero() {
            return Err(invalid("dead_forget_secs", "must be greater than zero"));
        }
        if let Some(secret) = &self.cluster_secret {
            if secret.len() < MIN_SECRET_LEN {
                return Err(invalid(
                    "cluster_secret",
                    format!(
                        "must be at least {} bytes (it keys the HMAC of gossip and bus messages)",
                        MIN_SECRET_LEN
                    ),
                ));
            }
        }
        if let Some(g) = self.gossip_addr {
            if self.tls.is_none() && !g.ip().is_loopback() {
                return Err(invalid(
                    "gossip",
                    format!("{g} is not a loopback address: gossip off loopback needs [tls] (ca, cert, key; see `hybrid-cache certs`)"),
                ));
            }
            if self.tls.is_none() && self.cluster_secret.is_none() {
                return Err(invalid(
                    "cluster_secret",
                    "gossip without [tls] needs a shared cluster secret (HC_CLUSTER_SECRET or cluster_secret): without one any local process could speak for a node",
                ));
            }
        }
        if !self.peers.is_empty() && self.gossip_addr.is_none() {
            return Err(invalid("peers", "peers need a gossip address (--gossip)"));
        }
        Ok(())
    }

    /// The HTTP address other nodes and users should use.
    pub fn http_advertised(&self) -> String {
        self.http_advertise
            .clone()
            .unwrap_or_else(|| self.http_addr.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_are_the_seed_categories_on_8080_without_redis() {
        let c = Config::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert!(c.redis.is_none());
        assert_eq!(c.categories.len(), 5);
        assert_eq!(c.categories["permissions"].ttl_secs, 600);
        assert_eq!(c.categories["roles"].max_entries, 200);
        assert_eq!(c.categories["prompts"].ttl_secs, 3600);
        assert_eq!(c.env, "development");
    }

    #[test]
    fn node_entry_selects_addresses_and_peers() {
        let f = file(
            r#"
            namespace = "t"
            cluster_secret = "sixteen-byte-secret"
            [[nodes]]
            id = "n1"
            http = "127.0.0.1:8081"
            gossip = "127.0.0.1:7401"
            [[nodes]]
            id = "n2"
            http = "127.0.0.1:8082"
            gossip = "127.0.0.1:7402"
            "#,
        );
        let flags = Flags {
            node_id: Some("n2".into()),
            ..Flags::default()
        };
        let c = Config::resolve(&flags, &env_of(&[]), f).unwrap();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8082");
        assert_eq!(c.gossip_addr.unwrap().to_string(), "127.0.0.1:7402");
        assert_eq!(c.peers, vec!["127.0.0.1:7401".to_string()]);
        assert_eq!(c.namespace, "t");
    }

    #[test]
    fn precedence_flags_over_env_over_file() {
        let f = file("http = \"127.0.0.1:1000\"\nnamespace = \"file\"\n");
        let env = env_of(&[("HC_HTTP", "127.0.0.1:2000"), ("HC_NAMESPACE", "env")]);
        let c = Config::resolve(&Flags::default(), &env, f).unwrap();
        assert_eq!(c.http_addr.port(), 2000);
        assert_eq!(c.namespace, "env");
        let f = file("http = \"127.0.0.1:1000\"\n");
        let flags = Flags {
            http: Some("127.0.0.1:3000".into()),
            ..Flags::default()
        };
        let c = Config::resolve(&flags, &env, f).unwrap();
        assert_eq!(c.http_addr.port(), 3000);
    }

    #[test]
    fn resp_address_from_file_env_or_flag() {
        let c = Config::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.resp_addr, None, "RESP is off unless asked for");
        let f = || file("resp = \"127.0.0.1:6400\"\n");
        let c = Config::resolve(&Flags::default(), &env_of(&[]), f()).unwrap();
        assert_eq!(c.resp_addr.unwrap().port(), 6400);
        let env = env_of(&[("HC_RESP", "127.0.0.1:6401")]);
        let c = Config::resolve(&Flags::default(), &env, f()).unwrap();
        assert_eq!(c.resp_addr.unwrap().port(), 6401);
        let flags = Flags {
            resp: Some("127.0.0.1:6402".into()),
            ..Flags::default()
        };
        let c = Config::resolve(&flags, &env, f()).unwrap();
        assert_eq!(c.resp_addr.unwrap().port(), 6402);
        let env = env_of(&[("HC_RESP", "nope")]);
        assert!(Config::resolve(&Flags::default(), &env, f()).is_err());
    }

    #[test]
    fn original_redis_variables_are_honoured() {
        let env = env_of(&[
            ("REDIS_HOST", "cache.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_PASSWORD", "s3cret"),
            ("REDIS_DB", "2"),
            ("REDIS_SSL", "true"),
        ]);
        let c = Config::resolve(&Flags::default(), &env, FileConfig::default()).unwrap();
        assert_eq!(
            c.redis,
            Some(RedisTarget::Parts {
                host: "cache.internal".into(),
                port: 6380,
                password: Some("s3cret".into()),
                db: 2,
                tls: true
            })
        );
        let env = env_of(&[("REDIS_URL", "redis://127.0.0.1:1/0"), ("REDIS_HOST", "x")]);
        let c = Config::resolve(&Flags::default(), &env, FileConfig::default()).unwrap();
        assert!(matches!(c.redis, Some(RedisTarget::Url { .. })));
    }

    #[test]
    fn sentinel_and_cluster_targets_from_env_and_file() {
        let env = env_of(&[
            ("REDIS_SENTINELS", "127.0.0.1:26379, 127.0.0.1:26380"),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
            ("REDIS_PASSWORD", "pw"),
            ("REDIS_DB", "2"),
            ("HC_L2_MIN_REPLICAS", "1"),
        ]);
        let c = Config::resolve(&Flags::default(), &env, FileConfig::default()).unwrap();
        assert_eq!(
            c.redis,
            Some(RedisTarget::Sentinel {
                sentinels: vec!["127.0.0.1:26379".into(), "127.0.0.1:26380".into()],
                master: "mymaster".into(),
                password: Some("pw".into()),
                db: 2,
            })
        );
        assert_eq!(c.l2_min_replicas, 1);
        let e = Config::resolve(
            &Flags::default(),
            &env_of(&[("REDIS_SENTINELS", "127.0.0.1:1")]),
            FileConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("REDIS_SENTINEL_MASTER"), "{e}");
        let env = env_of(&[("REDIS_CLUSTER_NODES", "127.0.0.1:7000,127.0.0.1:7001")]);
        let c = Config::resolve(&Flags::default(), &env, FileConfig::default()).unwrap();
        assert!(
            matches!(c.redis, Some(RedisTarget::Cluster { ref nodes, .. }) if nodes.len() == 2)
        );
        let e = Config::resolve(
            &Flags::default(),
            &env_of(&[("REDIS_CLUSTER_NODES", "nohostport")]),
            FileConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("redis.cluster_nodes"), "{e}");

        let file: FileConfig = toml::from_str(
            "l2_min_replicas = 1\n[redis]\nsentinels = [\"10.0.0.1:26379\"]\nmaster_name = \"m\"\n",
        )
        .unwrap();
        let c = Config::resolve(&Flags::default(), &env_of(&[]), file).unwrap();
        assert!(matches!(c.redis, Some(RedisTarget::Sentinel { ref master, .. }) if master == "m"));
        assert_eq!(c.l2_min_replicas, 1);
        let file: FileConfig =
            toml::from_str("[redis]\ncluster_nodes = [\"10.0.0.1:7000\"]\n").unwrap();
        let c = Config::resolve(&Flags::default(), &env_of(&[]), file).unwrap();
        assert!(matches!(c.redis, Some(RedisTarget::Cluster { .. })));
        for bad in [
            "[redis]\nsentinels = [\"h:1\"]\n",
            "[redis]\nurl = \"redis://h:1\"\ncluster_nodes = [\"h:1\"]\n",
            "[redis]\nurl = \"redis://h:1\"\nmaster_name = \"m\"\n",
            "l2_min_replicas = 17\n[redis]\nurl = \"redis://h:1\"\n",
        ] {
            let file: FileConfig = toml::from_str(bad).unwrap();
            assert!(
                Config::resolve(&Flags::default(), &env_of(&[]), file).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn gossip_without_tls_needs_a_cluster_secret() {
        let gossip = [("HC_GOSSIP", "127.0.0.1:7400")];
        let e = Config::resolve(&Flags::default(), &env_of(&gossip), FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster_secret"), "{e}");
        let c = Config::resolve(
            &Flags::default(),
            &env_of(&[gossip[0], ("HC_CLUSTER_SECRET", "from-env-0123456789")]),
            file("cluster_secret = \"from-file-0123456789\"\ndead_forget_secs = 5\n"),
        )
        .unwrap();
        assert_eq!(c.cluster_secret.as_deref(), Some("from-env-0123456789"));
        assert_eq!(c.gossip_dead_forget, Duration::from_secs(5));
        let c = Config::resolve(
            &Flags::default(),
            &env_of(&gossip),
            file("cluster_secret = \"from-file-0123456789\"\n"),
        )
        .unwrap();
        assert_eq!(c.cluster_secret.as_deref(), Some("from-file-0123456789"));
        assert_eq!(c.gossip_dead_forget, Duration::from_secs(60));
        let e = Config::resolve(
            &Flags::default(),
            &env_of(&[("HC_DEAD_FORGET_SECS", "0")]),
            FileConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dead_forget_secs"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let err = |f: FileConfig, env: &[(&str, &str)]| {
            Config::resolve(&Flags::default(), &env_of(env), f)
                .unwrap_err()
                .to_string()
        };
        assert!(err(
            file("[categories.roles]\nttl_secs = 5\nmax_entries = 0\n"),
            &[]
        )
        .contains("categories.roles.max_entries"));
        assert!(err(file("http = \"nonsense\"\n"), &[]).contains("`http`"));
        assert!(err(
            FileConfig::default(),
            &[("REDIS_PORT", "x"), ("REDIS_HOST", "h")]
        )
        .contains("REDIS_PORT"));
        assert!(err(FileConfig::default(), &[("REDIS_URL", "http://x")]).contains("redis.url"));
        assert!(err(FileConfig::default(), &[("HC_GOSSIP", "0.0.0.0:7400")]).contains("[tls]"));
        assert!(err(FileConfig::default(), &[("HC_TLS_CA", "x")]).contains("HC_TLS_CA"));
        assert!(err(FileConfig::default(), &[("HC_L1_MAX_BYTES", "10")]).contains("l1_max_bytes"));
        assert!(err(FileConfig::default(), &[("HC_MAX_IN_FLIGHT", "0")]).contains("max_in_flight"));
        assert!(err(FileConfig::default(), &[("HC_MAILBOX_CAPACITY", "0")])
            .contains("mailbox_capacity"));
        assert!(err(
            file("[categories.roles]\nttl_secs = 5\nmax_entries = 9\nmax_bytes = 0\n"),
            &[]
        )
        .contains("categories.roles.max_bytes"));
        let unknown = toml::from_str::<FileConfig>("bogus = 1\n").unwrap_err();
        assert!(unknown.to_string().contains("bogus"));
    }

    #[test]
    fn byte_budgets_never_exceed_the_node_cap() {
        let mib = 1024 * 1024;
        let c = Config::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.l1_max_bytes, 256 * mib);
        let b = l1_byte_budgets(&c.categories, c.l1_max_bytes);
        assert_eq!(b.len(), 5);
        assert!(b.values().all(|v| *v == 256 * mib / 5), "{b:?}");
        // Explicit asks within the cap are kept.
        let f = file("l1_max_bytes = 104857600\n[categories.roles]\nttl_secs = 5\nmax_entries = 9\nmax_bytes = 1048576\n");
        let c = Config::resolve(&Flags::default(), &env_of(&[]), f).unwrap();
        let b = l1_byte_budgets(&c.categories, c.l1_max_bytes);
        assert_eq!(b["roles"], mib);
        assert!(b.values().sum::<u64>() <= 100 * mib);
        // Asks over the cap are scaled down proportionally.
        let f = file("[categories.roles]\nttl_secs = 5\nmax_entries = 9\nmax_bytes = 1073741824\n");
        let env = env_of(&[("HC_L1_MAX_BYTES", "134217728")]);
        let c = Config::resolve(&Flags::default(), &env, f).unwrap();
        let b = l1_byte_budgets(&c.categories, c.l1_max_bytes);
        assert!(b.values().sum::<u64>() <= 128 * mib, "{b:?}");
        assert!(b["roles"] > 10 * b["menus"], "{b:?}");
    }

    #[test]
    fn http_limits_from_file_and_env() {
        let f = file("max_connections = 100\nheader_read_timeout_ms = 250\nmax_in_flight = 7\n");
        let env = env_of(&[
            ("HC_BODY_READ_TIMEOUT_MS", "300"),
            ("HC_MAX_IN_FLIGHT", "9"),
        ]);
        let c = Config::resolve(&Flags::default(), &env, f).unwrap();
        let l = c.http_limits;
        assert_eq!(l.max_connections, 100);
        assert_eq!(l.header_read_timeout, Duration::from_millis(250));
        assert_eq!(l.body_read_timeout, Duration::from_millis(300));
        assert_eq!(l.max_in_flight, 9);
        assert_eq!(l.request_timeout, Duration::from_secs(15));
    }

    #[test]
    fn gossip_timing_from_file_and_env() {
        let c = Config::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.gossip_probe_period, Duration::from_millis(200));
        assert_eq!(c.gossip_suspect_timeout, Duration::from_millis(600));
        let f = || file("gossip_probe_period_ms = 300\ngossip_suspect_timeout_ms = 900\n");
        let c = Config::resolve(&Flags::default(), &env_of(&[]), f()).unwrap();
        assert_eq!(c.gossip_probe_period, Duration::from_millis(300));
        assert_eq!(c.gossip_suspect_timeout, Duration::from_millis(900));
        let env = env_of(&[
            ("HC_GOSSIP_PROBE_PERIOD_MS", "150"),
            ("HC_GOSSIP_SUSPECT_TIMEOUT_MS", "500"),
        ]);
        let c = Config::resolve(&Flags::default(), &env, f()).unwrap();
        assert_eq!(c.gossip_probe_period, Duration::from_millis(150));
        assert_eq!(c.gossip_suspect_timeout, Duration::from_millis(500));
        let env = env_of(&[("HC_GOSSIP_PROBE_PERIOD_MS", "0")]);
        let e = Config::resolve(&Flags::default(), &env, FileConfig::default());
        assert!(e.is_err(), "{e:?}");
        let env = env_of(&[("HC_GOSSIP_SUSPECT_TIMEOUT_MS", "soon")]);
        let e = Config::resolve(&Flags::default(), &env, FileConfig::default());
        assert!(e.is_err(), "{e:?}");
    }
}
