//! The environment layer: the `REDIS_*` variables of the original Python module, `APP_ENV`
//! and the node's `HC_*` variables, over the file and under the flags.
//!
//! Why its own file: the environment is flat text, so this layer owns the parsing rules of
//! text values (numbers, booleans, comma-separated lists) and names the variable in every
//! error. The environment is passed in as a function, so tests need no process state.

use std::time::Duration;

use super::category::Consistency;
use super::error::{invalid, ConfigError};
use super::limits::HttpLimits;
use super::pending::Pending;
use super::settings::{Config, RedisTarget, TlsFiles};

/// A source of environment variables (`std::env::var` in a process, a map in tests).
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Splits a comma-separated list, trimming items and dropping empty ones.
pub(super) fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The value of `name` parsed as `T`; unset or blank = `None`.
fn env_parse<T: std::str::FromStr>(env: Env, name: &str) -> Result<Option<T>, ConfigError>
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

/// A non-empty variable.
fn non_empty(env: Env, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// The environment layer over the file layer, in this order (the first bad variable is the
/// one reported): addresses, settings, HTTP limits, cluster, TLS, Redis.
pub(super) fn apply(c: &mut Config, p: &mut Pending, env: Env) -> Result<(), ConfigError> {
    apply_addresses(c, p, env);
    apply_settings(c, env)?;
    apply_limits(&mut c.http_limits, env)?;
    apply_cluster(c, env)?;
    apply_tls(c, env)?;
    apply_redis(p, env)
}

/// Environment name, namespace, listen and advertised addresses, peers, API token.
fn apply_addresses(c: &mut Config, p: &mut Pending, env: Env) {
    if let Some(v) = non_empty(env, "APP_ENV") {
        c.env = v;
    }
    if let Some(v) = non_empty(env, "HC_NAMESPACE") {
        c.namespace = v;
    }
    if let Some(v) = non_empty(env, "HC_HTTP") {
        p.http = Some(v);
    }
    if let Some(v) = non_empty(env, "HC_RESP") {
        p.resp = Some(v);
    }
    if let Some(v) = non_empty(env, "HC_GOSSIP") {
        p.gossip = Some(v);
    }
    if let Some(v) = env("HC_PEERS") {
        p.peers = split_list(&v);
    }
    if let Some(v) = non_empty(env, "HC_HTTP_ADVERTISE") {
        c.http_advertise = Some(v);
    }
    if let Some(v) = non_empty(env, "HC_GOSSIP_ADVERTISE") {
        c.gossip_advertise = Some(v);
    }
    if let Some(v) = non_empty(env, "HC_API_TOKEN") {
        c.api_token = Some(v);
    }
}

/// Sizes, timings, strict categories, outage behaviour, L1 and mailbox bounds.
fn apply_settings(c: &mut Config, env: Env) -> Result<(), ConfigError> {
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
        apply_strict_categories(c, &v)?;
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
    if let Some(v) = non_empty(env, "HC_ORIGIN_URL") {
        c.origin_url = Some(v);
    }
    if let Some(v) = env_parse::<u64>(env, "HC_ORIGIN_TIMEOUT_MS")? {
        c.origin_timeout = Duration::from_millis(v);
    }
    if let Some(v) = env_parse::<usize>(env, "HC_MAILBOX_CAPACITY")? {
        c.mailbox_capacity = v;
    }
    if let Some(v) = env("HC_TEST_HOOKS") {
        c.test_hooks = parse_bool("HC_TEST_HOOKS", &v)?;
    }
    Ok(())
}

/// `HC_STRICT_CATEGORIES`: makes each listed (configured) category strict.
fn apply_strict_categories(c: &mut Config, list: &str) -> Result<(), ConfigError> {
    for name in split_list(list) {
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
    Ok(())
}

/// `HC_MAX_CONNECTIONS`, the read timeouts, the request deadline, `HC_MAX_IN_FLIGHT`.
fn apply_limits(lim: &mut HttpLimits, env: Env) -> Result<(), ConfigError> {
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
    Ok(())
}

/// Gossip's forget delay, the cluster secret, the L2 replica count and persistence opt-in.
fn apply_cluster(c: &mut Config, env: Env) -> Result<(), ConfigError> {
    if let Some(v) = env_parse::<u64>(env, "HC_DEAD_FORGET_SECS")? {
        c.gossip_dead_forget = Duration::from_secs(v);
    }
    if let Some(v) = non_empty(env, "HC_CLUSTER_SECRET") {
        c.cluster_secret = Some(v);
    }
    if let Some(v) = env_parse::<u32>(env, "HC_L2_MIN_REPLICAS")? {
        c.l2_min_replicas = v;
    }
    if let Some(v) = env("HC_ALLOW_PERSISTENT_REDIS") {
        c.allow_persistent_redis = parse_bool("HC_ALLOW_PERSISTENT_REDIS", &v)?;
    }
    Ok(())
}

/// `HC_TLS_CA`, `HC_TLS_CERT`, `HC_TLS_KEY`: all three or none.
fn apply_tls(c: &mut Config, env: Env) -> Result<(), ConfigError> {
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
    Ok(())
}

/// The Redis target: `REDIS_URL`, else `REDIS_HOST` (+ `PORT`/`DB`/`SSL`), else
/// `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`, else `REDIS_CLUSTER_NODES`, else the file's
/// target with `REDIS_PASSWORD` (and `REDIS_DB` for Sentinel) applied to it.
fn apply_redis(p: &mut Pending, env: Env) -> Result<(), ConfigError> {
    let password = non_empty(env, "REDIS_PASSWORD");
    p.password = password.clone();
    if let Some(url) = non_empty(env, "REDIS_URL") {
        p.redis = Some(RedisTarget::Url { url, password });
    } else if let Some(host) = non_empty(env, "REDIS_HOST") {
        let port = env_parse::<u16>(env, "REDIS_PORT")?.unwrap_or(6379);
        let db = env_parse::<i64>(env, "REDIS_DB")?.unwrap_or(0);
        let tls = match env("REDIS_SSL") {
            Some(v) => parse_bool("REDIS_SSL", &v)?,
            None => false,
        };
        p.redis = Some(RedisTarget::Parts {
            host,
            port,
            password,
            db,
            tls,
        });
    } else if let Some(sentinels) = non_empty(env, "REDIS_SENTINELS") {
        let master = non_empty(env, "REDIS_SENTINEL_MASTER")
            .ok_or_else(|| invalid("REDIS_SENTINEL_MASTER", "required with REDIS_SENTINELS"))?;
        p.redis = Some(RedisTarget::Sentinel {
            sentinels: split_list(&sentinels),
            master,
            password,
            db: env_parse::<i64>(env, "REDIS_DB")?.unwrap_or(0),
        });
    } else if let Some(nodes) = non_empty(env, "REDIS_CLUSTER_NODES") {
        p.redis = Some(RedisTarget::Cluster {
            nodes: split_list(&nodes),
            password,
        });
    } else {
        override_file_target(p.redis.as_mut(), password, env)?;
    }
    Ok(())
}

/// `REDIS_PASSWORD` (and, for Sentinel, `REDIS_DB`) over the file's `[redis]` target.
fn override_file_target(
    redis: Option<&mut RedisTarget>,
    password: Option<String>,
    env: Env,
) -> Result<(), ConfigError> {
    let Some(redis) = redis else {
        return Ok(());
    };
    match redis {
        RedisTarget::Url { password: p, .. }
        | RedisTarget::Sentinel { password: p, .. }
        | RedisTarget::Cluster { password: p, .. }
            if password.is_some() =>
        {
            *p = password;
        }
        _ => {}
    }
    if let RedisTarget::Sentinel { db, .. } = redis {
        if let Some(v) = env_parse::<i64>(env, "REDIS_DB")? {
            *db = v;
        }
    }
    Ok(())
}
