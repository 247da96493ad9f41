//! The resolved configuration of one node ([`Config`]), its Redis target and TLS files, and
//! the built-in defaults (the lowest layer).
//!
//! Why its own file: every layer writes into these types, so they sit below the layers and
//! import only the leaf settings (categories, limits).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::category::{default_categories, CategoryConfig, DEFAULT_L1_MAX_BYTES};
use super::limits::{HttpLimits, DEFAULT_MAILBOX_CAPACITY};

/// Where Redis is. `None` in [`Config::redis`] means L1 only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// A `redis://` or `rediss://` URL; `password` (from `REDIS_PASSWORD`) applies when the
    /// URL has none.
    Url {
        /// The URL.
        url: String,
        /// `REDIS_PASSWORD`, used when the URL carries none.
        password: Option<String>,
    },
    /// The original `REDIS_HOST/PORT/PASSWORD/DB/SSL` variables.
    Parts {
        /// `REDIS_HOST`.
        host: String,
        /// `REDIS_PORT` (6379).
        port: u16,
        /// `REDIS_PASSWORD`.
        password: Option<String>,
        /// `REDIS_DB` (0).
        db: i64,
        /// `REDIS_SSL`.
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
        /// Password of the data nodes.
        password: Option<String>,
        /// Database of the data nodes.
        db: i64,
    },
    /// Redis Cluster (`REDIS_CLUSTER_NODES`; `[redis] cluster_nodes`): `host:port` of some
    /// of its nodes (the rest are discovered). `password` from `REDIS_PASSWORD`.
    Cluster {
        /// `host:port` of some cluster nodes.
        nodes: Vec<String>,
        /// `REDIS_PASSWORD`.
        password: Option<String>,
    },
}

/// Certificates for mutual-TLS gossip.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster's CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM), signed by the CA.
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

/// Fully resolved configuration of one node (or one embedded cache).
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id (`node_id`, `HC_NODE_ID`, `--node-id`): letters, digits, `-_.`.
    pub node_id: String,
    /// Prefix of every Redis key and channel (`namespace`, `HC_NAMESPACE`).
    pub namespace: String,
    /// `APP_ENV`, reported by `/health`.
    pub env: String,
    /// Listen address of the HTTP API.
    pub http_addr: SocketAddr,
    /// Listen address of the RESP (Redis protocol) front end; `None` = off.
    pub resp_addr: Option<SocketAddr>,
    /// Address other nodes and clients use for our HTTP API (defaults to `http_addr`).
    pub http_advertise: Option<String>,
    /// Listen address of gossip (QUIC); `None` = no gossip.
    pub gossip_addr: Option<SocketAddr>,
    /// Address other nodes use for our gossip (defaults to `gossip_addr`).
    pub gossip_advertise: Option<String>,
    /// Gossip addresses (`host:port`) to join through.
    pub peers: Vec<String>,
    /// Where Redis is; `None` = L1 only.
    pub redis: Option<RedisTarget>,
    /// The categories, by name.
    pub categories: BTreeMap<String, CategoryConfig>,
    /// Bearer token required on mutating HTTP routes when set.
    pub api_token: Option<String>,
    /// Longest key accepted, in UTF-8 bytes.
    pub max_key_bytes: usize,
    /// Largest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// How long Redis and all peers may be unreachable before `/health` says `isolated`.
    pub isolation_grace: Duration,
    /// Upper bound of any single Redis call.
    pub redis_timeout: Duration,
    /// Certificates of mutual-TLS gossip; `None` = gossip authenticated by the cluster secret.
    pub tls: Option<TlsFiles>,
    /// SWIM probe period and suspicion timeout of the gossip layer.
    pub gossip_probe_period: Duration,
    /// How long a suspected node has to refute before it is declared dead.
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
    /// `HC_TEST_HOOKS=1`: mounts the test-only routes the fault checker uses
    /// (`POST /v1/test/crash/{category}` crashes a category actor, `GET
    /// /v1/test/load/{category}/{key}` loads through `get_or_load` from
    /// `HC_TEST_LOADER_URL`). Off by default; never documented in `/openapi.json`.
    pub test_hooks: bool,
    /// `HC_ORIGIN_URL`: base URL of the origin that `GET /v1/load/{category}/{key}` reads
    /// through (`GET {origin_url}/{category}/{key}`). `None` (default): the route answers
    /// 404 `no_origin`.
    pub origin_url: Option<String>,
    /// `HC_ORIGIN_TIMEOUT_MS`: hard timeout of one origin request (default 2000 ms).
    pub origin_timeout: Duration,
    /// Opt-in (`[redis] allow_persistent_redis`, `HC_ALLOW_PERSISTENT_REDIS`): accept an L2
    /// Redis with persistence on (RDB `save`, AOF) or whose `CONFIG` is disabled. Off by
    /// default: such a Redis is refused, because its restart brings deleted values back.
    pub allow_persistent_redis: bool,
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
            test_hooks: false,
            origin_url: None,
            origin_timeout: Duration::from_millis(2000),
            allow_persistent_redis: false,
        }
    }
}

impl Config {
    /// The HTTP address other nodes and users should use.
    pub fn http_advertised(&self) -> String {
        self.http_advertise
            .clone()
            .unwrap_or_else(|| self.http_addr.to_string())
    }
}
