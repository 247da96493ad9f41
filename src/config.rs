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

/// TTL and capacity of one L1 category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryConfig {
    /// Upper bound of an entry's L1 lifetime, seconds.
    pub ttl_secs: u64,
    /// Maximum number of L1 entries.
    pub max_entries: u64,
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
            },
        )
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
    /// Gossip forgets a node dead for longer than this (`dead_forget_secs`).
    pub gossip_dead_forget: Duration,
    /// Shared secret authenticating gossip (and bus) messages; required for gossip without TLS.
    pub cluster_secret: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: "n1".to_string(),
            namespace: "hc".to_string(),
            env: "development".to_string(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
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
            gossip_probe_period: Duration::from_millis(300),
            gossip_suspect_timeout: Duration::from_millis(600),
            gossip_dead_forget: Duration::from_secs(60),
            cluster_secret: None,
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
    pub gossip: Option<String>,
    pub peers: Option<Vec<String>>,
    pub api_token: Option<String>,
    pub max_key_bytes: Option<usize>,
    pub max_value_bytes: Option<usize>,
    pub isolation_grace_ms: Option<u64>,
    pub redis_timeout_ms: Option<u64>,
    pub gossip_probe_period_ms: Option<u64>,
    pub gossip_suspect_timeout_ms: Option<u64>,
    pub dead_forget_secs: Option<u64>,
    pub cluster_secret: Option<String>,
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
    pub url: String,
}

/// Values given on the command line (all optional).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub node_id: Option<String>,
    pub http: Option<String>,
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
        if let Some(v) = file.redis_timeout_ms {
            c.redis_timeout = Duration::from_millis(v);
        }
        if let Some(v) = file.gossip_probe_period_ms {
            c.gossip_probe_period = Duration::from_millis(v);
        }
        if let Some(v) = file.gossip_suspect_timeout_ms {
            c.gossip_suspect_timeout = Duration::from_millis(v);
        }
        if let Some(v) = file.dead_forget_secs {
            c.gossip_dead_forget = Duration::from_secs(v);
        }
        c.cluster_secret = file.cluster_secret.filter(|s| !s.is_empty());
        let mut redis = file.redis.map(|r| RedisTarget::Url {
            url: r.url,
            password: None,
        });
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
        if let Some(v) = env_parse::<u64>(env, "HC_REDIS_TIMEOUT_MS")? {
            c.redis_timeout = Duration::from_millis(v);
        }
        if let Some(v) = env_parse::<u64>(env, "HC_DEAD_FORGET_SECS")? {
            c.gossip_dead_forget = Duration::from_secs(v);
        }
        if let Some(v) = env("HC_CLUSTER_SECRET").filter(|v| !v.is_empty()) {
            c.cluster_secret = Some(v);
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
        } else if let (Some(RedisTarget::Url { password: p, .. }), Some(pw)) =
            (redis.as_mut(), password.clone())
        {
            *p = Some(pw);
        }

        // Flags layer.
        if let Some(v) = &flags.http {
            http = Some(v.clone());
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
        if self.redis_timeout.is_zero() {
            return Err(invalid("redis_timeout_ms", "must be greater than zero"));
        }
        if let Some(RedisTarget::Url { url, .. }) = &self.redis {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid(
                    "redis.url",
                    format!("`{url}` must start with redis:// or rediss://"),
                ));
            }
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
            cluster_secret = "s"
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
    fn gossip_without_tls_needs_a_cluster_secret() {
        let gossip = [("HC_GOSSIP", "127.0.0.1:7400")];
        let e = Config::resolve(&Flags::default(), &env_of(&gossip), FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster_secret"), "{e}");
        let c = Config::resolve(
            &Flags::default(),
            &env_of(&[gossip[0], ("HC_CLUSTER_SECRET", "from-env")]),
            file("cluster_secret = \"from-file\"\ndead_forget_secs = 5\n"),
        )
        .unwrap();
        assert_eq!(c.cluster_secret.as_deref(), Some("from-env"));
        assert_eq!(c.gossip_dead_forget, Duration::from_secs(5));
        let c = Config::resolve(
            &Flags::default(),
            &env_of(&gossip),
            file("cluster_secret = \"from-file\"\n"),
        )
        .unwrap();
        assert_eq!(c.cluster_secret.as_deref(), Some("from-file"));
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
        let unknown = toml::from_str::<FileConfig>("bogus = 1\n").unwrap_err();
        assert!(unknown.to_string().contains("bogus"));
    }
}
