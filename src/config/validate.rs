//! The checks a resolved [`Config`] must pass before anything starts.
//!
//! Why its own file: validation is the contract of the configuration (every error names its
//! field, the first fault found is the one reported), and it reads best as one short
//! function per concern, run in a fixed order.

use std::net::SocketAddr;
use std::time::Duration;

use super::category::CategoryConfig;
use super::error::{invalid, ConfigError};
use super::limits::MIN_SECRET_LEN;
use super::settings::{Config, RedisTarget};

/// Parses an `ip:port` address; the error names `field`.
pub(super) fn parse_addr(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse::<SocketAddr>()
        .map_err(|e| invalid(field, format!("`{value}` is not an ip:port address ({e})")))
}

/// Checks a `host:port` address (a host name is allowed); the error names `field`.
pub(super) fn check_host_port(field: &str, value: &str) -> Result<(), ConfigError> {
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

impl Config {
    /// Checks invariants; every error names its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_identity()?;
        self.validate_staleness_bound()?;
        self.validate_categories()?;
        self.validate_sizes()?;
        self.validate_http_limits()?;
        self.validate_redis()?;
        self.validate_gossip()
    }

    /// Node id, namespace, and that there is something to serve.
    fn validate_identity(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The staleness bound B: the lease is renewed every B/4.
    fn validate_staleness_bound(&self) -> Result<(), ConfigError> {
        let b = self.staleness_bound;
        if b < Duration::from_millis(4) || b > Duration::from_secs(60) {
            return Err(invalid(
                "staleness_bound_ms",
                "must be between 4 and 60000 (the lease is renewed every B/4)",
            ));
        }
        Ok(())
    }

    /// Category names and their TTL and capacity.
    fn validate_categories(&self) -> Result<(), ConfigError> {
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
            Self::validate_near_cache(name, cat)?;
        }
        Ok(())
    }

    /// A category's near-cache settings (all off by default).
    fn validate_near_cache(name: &str, cat: &CategoryConfig) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&cat.ttl_jitter) {
            return Err(invalid(
                &format!("categories.{name}.ttl_jitter"),
                format!(
                    "`{}` is not a fraction of the TTL between 0 and 1",
                    cat.ttl_jitter
                ),
            ));
        }
        if cat.negative_ttl_secs == Some(0) {
            return Err(invalid(
                &format!("categories.{name}.negative_ttl_secs"),
                "must be greater than zero (leave it out to not cache \"not found\")",
            ));
        }
        if let Some(r) = cat.refresh_after_secs {
            if r == 0 || r >= cat.ttl_secs {
                return Err(invalid(
                    &format!("categories.{name}.refresh_after_secs"),
                    format!(
                        "must be above zero and below ttl_secs ({}) (leave it out to turn \
                         refresh-ahead off)",
                        cat.ttl_secs
                    ),
                ));
            }
        }
        if cat.fail_safe_max_age_secs == Some(0) {
            return Err(invalid(
                &format!("categories.{name}.fail_safe_max_age_secs"),
                "must be greater than zero (leave it out to turn fail-safe off)",
            ));
        }
        if cat.load_timeout_ms == 0 {
            return Err(invalid(
                &format!("categories.{name}.load_timeout_ms"),
                "must be greater than zero",
            ));
        }
        if let Some(soft) = cat.load_soft_timeout_ms {
            if soft == 0 || soft >= cat.load_timeout_ms || cat.fail_safe_max_age_secs.is_none() {
                return Err(invalid(
                    &format!("categories.{name}.load_soft_timeout_ms"),
                    "must be above zero, below load_timeout_ms, and needs fail_safe_max_age_secs",
                ));
            }
        }
        Self::validate_warm_up(name, cat)
    }

    /// A category's warm-up settings.
    fn validate_warm_up(name: &str, cat: &CategoryConfig) -> Result<(), ConfigError> {
        if cat.warm_up_keys > crate::config::MAX_WARM_UP_KEYS {
            return Err(invalid(
                &format!("categories.{name}.warm_up_keys"),
                format!(
                    "{} is more than {} (0 turns warm-up off)",
                    cat.warm_up_keys,
                    crate::config::MAX_WARM_UP_KEYS
                ),
            ));
        }
        if !(100..=3_600_000).contains(&cat.warm_up_sample_ms) {
            return Err(invalid(
                &format!("categories.{name}.warm_up_sample_ms"),
                "must be between 100 and 3600000 (one hour)",
            ));
        }
        Ok(())
    }

    /// Key and value sizes, mailbox capacity, the node-wide L1 cap.
    fn validate_sizes(&self) -> Result<(), ConfigError> {
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
        if self.origin_timeout.is_zero() {
            return Err(invalid("origin_timeout_ms", "must be greater than zero"));
        }
        if let Some(url) = &self.origin_url {
            let ok = url.starts_with("http://") || url.starts_with("https://");
            if !ok {
                return Err(invalid("origin_url", "must be an http:// or https:// URL"));
            }
        }
        Ok(())
    }

    /// Every HTTP limit is positive.
    fn validate_http_limits(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The Redis timeout, the target's addresses, the replica count.
    fn validate_redis(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// Gossip timing, the cluster secret, TLS off loopback, peers.
    fn validate_gossip(&self) -> Result<(), ConfigError> {
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
}
