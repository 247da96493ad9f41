//! The persistence check (issue #23, item 4): a Redis that saves its data (RDB `save`, AOF
//! `appendonly yes`) brings back deleted values and rolls the per-category generations back
//! when it restarts, which no node can detect. Such a Redis is refused as L2 unless the
//! operator opts in (`allow_persistent_redis`, outside the guarantee): at start
//! ([`crate::HybridCache::start`]) and on every (re)connection of the bus, before the lease
//! is granted. A Redis that does not answer `CONFIG GET` (disabled or renamed) is refused
//! too: its persistence cannot be proved off.

use redis::Value;

use super::L2Conn;
use crate::config::RedisTarget;
use crate::l2::L2Error;

/// What the check found on one server.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// `save ""` and `appendonly no`.
    Off,
    /// The setting that is on, as `save "…"` or `appendonly yes`.
    On(String),
}

/// The value of `CONFIG GET <name>` (a two-element array or a RESP3 map).
fn config_value(reply: &Value, name: &str) -> Result<String, String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let pair = match reply {
        Value::Array(items) if items.len() == 2 => Some((&items[0], &items[1])),
        Value::Map(items) if items.len() == 1 => Some((&items[0].0, &items[0].1)),
        _ => None,
    };
    match pair.and_then(|(k, v)| Some((text(k)?, text(v)?))) {
        Some((k, v)) if k.eq_ignore_ascii_case(name) => Ok(v),
        _ => Err(format!("CONFIG GET {name} answered {reply:?}")),
    }
}

/// Whether `save` / `appendonly` values mean persistence.
fn verdict(save: &str, appendonly: &str) -> Verdict {
    if !save.trim().is_empty() {
        Verdict::On(format!("save \"{save}\""))
    } else if !appendonly.trim().eq_ignore_ascii_case("no") {
        Verdict::On(format!("appendonly {appendonly}"))
    } else {
        Verdict::Off
    }
}

/// An error of the connection rather than a reply of the server: the check did not run.
fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// The refusal, naming the server, the setting and the fix.
fn refusal(server: &str, why: &str) -> L2Error {
    L2Error::Persistent(format!(
        "L2 Redis at {server} {why}: a restart would bring back deleted values; run it with \
         save \"\" and appendonly no, or set HC_ALLOW_PERSISTENT_REDIS=true to accept that \
         (outside the guarantee)"
    ))
}

/// Checks one server (`node` in a cluster, else the connection's server).
async fn check_one(
    conn: &mut L2Conn,
    node: Option<&(String, u16)>,
    server: &str,
) -> Result<(), L2Error> {
    let mut values = Vec::with_capacity(2);
    for name in ["save", "appendonly"] {
        let cmd = redis::cmd("CONFIG").arg("GET").arg(name).clone();
        let reply = match conn.on_node(node, &cmd).await {
            Ok(v) => v,
            // An error reply: CONFIG is disabled or renamed, persistence cannot be proved off.
            Err(e) if !transient(&e) => {
                return Err(refusal(
                    server,
                    &format!("does not answer CONFIG GET {name} ({e}), so its persistence cannot be checked"),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        values.push(config_value(&reply, name).map_err(|e| refusal(server, &e))?);
    }
    match verdict(&values[0], &values[1]) {
        Verdict::Off => Ok(()),
        Verdict::On(setting) => Err(refusal(server, &format!("has persistence on ({setting})"))),
    }
}

/// Checks every server of `conn`: the one server (single, Sentinel-named primary) or every
/// primary of a cluster. `L2Error::Persistent` when one has persistence on or does not
/// answer `CONFIG GET`; another error when the check could not run (connection, timeout).
pub async fn check(conn: &mut L2Conn, target: &RedisTarget) -> Result<(), L2Error> {
    if !conn.is_cluster() {
        return check_one(conn, None, &describe(target)).await;
    }
    let primaries = conn.primaries().await?;
    if primaries.is_empty() {
        return Err(L2Error::Protocol("CLUSTER SLOTS named no primary".into()));
    }
    for p in &primaries {
        check_one(conn, Some(p), &format!("{}:{}", p.0, p.1)).await?;
    }
    Ok(())
}

/// The server a target names, for the error (no password).
fn describe(target: &RedisTarget) -> String {
    match target {
        RedisTarget::Url { .. } | RedisTarget::Parts { .. } => super::connection_info(target)
            .map(|i| i.addr.to_string())
            .unwrap_or_else(|_| "?".into()),
        RedisTarget::Sentinel { master, .. } => format!("the primary of `{master}` (Sentinel)"),
        RedisTarget::Cluster { nodes, .. } => nodes.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_or_aof_is_persistence_and_empty_save_with_aof_off_is_not() {
        assert_eq!(verdict("", "no"), Verdict::Off);
        assert_eq!(verdict("900 1", "no"), Verdict::On("save \"900 1\"".into()));
        assert_eq!(verdict("", "yes"), Verdict::On("appendonly yes".into()));
        let pair = Value::Array(vec![
            Value::BulkString(b"save".to_vec()),
            Value::BulkString(b"3600 1 300 100".to_vec()),
        ]);
        assert_eq!(config_value(&pair, "save").unwrap(), "3600 1 300 100");
        // A renamed or filtered CONFIG answers nothing useful: not a proof.
        assert!(config_value(&Value::Array(vec![]), "save").is_err());
        let e = refusal("127.0.0.1:1", "has persistence on (save \"900 1\")").to_string();
        assert!(
            e.contains("save \"\" and appendonly no") && e.contains("HC_ALLOW_PERSISTENT_REDIS"),
            "{e}"
        );
    }
}
