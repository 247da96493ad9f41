//! Redis Cluster (`REDIS_CLUSTER_NODES`): the cluster-async command connection, the sharded
//! subscription (`SSUBSCRIBE`, RESP3 pushes) on the primary owning the channels' slot, and
//! the `CLUSTER SLOTS` parsing both need.

use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisConnectionInfo, Value};

use super::{addr_of, L2Conn, Subscription};
use crate::l2::L2Error;

/// The cluster-async command connection (follows `MOVED`/`ASK`), bounded by the timeout.
pub(super) async fn cluster(
    nodes: &[String],
    password: &Option<String>,
    timeout: Duration,
) -> Result<L2Conn, L2Error> {
    let urls = nodes
        .iter()
        .map(|n| {
            let (host, port) = addr_of(n)?;
            Ok(ConnectionInfo {
                addr: ConnectionAddr::Tcp(host, port),
                redis: RedisConnectionInfo::default(),
            })
        })
        .collect::<Result<Vec<_>, L2Error>>()?;
    let mut builder = redis::cluster::ClusterClientBuilder::new(urls)
        .connection_timeout(timeout.max(Duration::from_millis(200)))
        .response_timeout(timeout)
        .retries(2)
        .min_retry_wait(20)
        .max_retry_wait(100);
    if let Some(pw) = password {
        builder = builder.password(pw.clone());
    }
    let client = builder.build()?;
    let bound = timeout.max(Duration::from_millis(500));
    match tokio::time::timeout(bound, client.get_async_connection()).await {
        Ok(r) => Ok(L2Conn::Cluster(r?)),
        Err(_) => Err(L2Error::Timeout(bound)),
    }
}

/// Subscribes to `channels` with `SSUBSCRIBE` on the primary owning their slot (they all
/// share one hash tag) and opens the cluster command connection; bounded by the timeout.
pub(super) async fn subscribe_sharded(
    nodes: &[String],
    password: &Option<String>,
    channels: &[String],
    timeout: Duration,
) -> Result<(Subscription, L2Conn), L2Error> {
    let bound = timeout.max(Duration::from_millis(500));
    let mut conn = cluster(nodes, password, timeout).await?;
    let first = channels
        .first()
        .ok_or_else(|| L2Error::Config("no channel to subscribe to".into()))?;
    let (host, port) = tokio::time::timeout(bound, slot_owner(&mut conn, first))
        .await
        .map_err(|_| L2Error::Timeout(bound))??;
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp(host, port),
        redis: RedisConnectionInfo {
            password: password.clone(),
            protocol: ProtocolVersion::RESP3,
            ..Default::default()
        },
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(bound)
        .set_response_timeout(bound)
        .set_push_sender(tx);
    let client = redis::Client::open(info)?;
    let mut sub = tokio::time::timeout(
        bound,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| L2Error::Timeout(bound))??;
    tokio::time::timeout(
        bound,
        redis::cmd("SSUBSCRIBE").arg(channels).exec_async(&mut sub),
    )
    .await
    .map_err(|_| L2Error::Timeout(bound))??;
    Ok((
        Subscription::Sharded {
            pushes: rx,
            _conn: sub,
        },
        conn,
    ))
}

/// `host:port` of every primary of the cluster, from `CLUSTER SLOTS`, sorted, no repeats.
pub(super) async fn primaries(c: &mut ClusterConnection) -> redis::RedisResult<Vec<(String, u16)>> {
    let slots: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(c).await?;
    let mut out: Vec<(String, u16)> = parse_slots(&slots)?
        .into_iter()
        .map(|s| s.primary)
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The primary owning `key`'s slot, from `CLUSTER KEYSLOT` and `CLUSTER SLOTS`.
async fn slot_owner(conn: &mut L2Conn, key: &str) -> Result<(String, u16), L2Error> {
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(conn)
        .await?;
    let slots: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    parse_slots(&slots)?
        .into_iter()
        .find(|r| r.start <= slot && slot <= r.end)
        .map(|r| r.primary)
        .ok_or_else(|| L2Error::Protocol(format!("no primary serves slot {slot}")))
}

/// One row of `CLUSTER SLOTS`.
#[derive(Debug, PartialEq, Eq)]
struct SlotRange {
    start: i64,
    end: i64,
    primary: (String, u16),
}
/// The slot ranges of a `CLUSTER SLOTS` reply with their primaries.
fn parse_slots(v: &Value) -> redis::RedisResult<Vec<SlotRange>> {
    let bad = || {
        redis::RedisError::from((
            redis::ErrorKind::TypeError,
            "unexpected CLUSTER SLOTS reply",
        ))
    };
    let Value::Array(rows) = v else {
        return Err(bad());
    };
    rows.iter()
        .map(|row| {
            let Value::Array(items) = row else {
                return Err(bad());
            };
            match (items.first(), items.get(1), items.get(2)) {
                (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) => {
                    let host = match node.first() {
                        Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                        Some(Value::SimpleString(h)) => h.clone(),
                        _ => return Err(bad()),
                    };
                    let port = match node.get(1) {
                        Some(Value::Int(p)) => u16::try_from(*p).map_err(|_| bad())?,
                        _ => return Err(bad()),
                    };
                    Ok(SlotRange {
                        start: *start,
                        end: *end,
                        primary: (host, port),
                    })
                }
                _ => Err(bad()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_slots_reply_is_parsed_and_garbage_refused() {
        let row = |s, e, h: &str, p| {
            Value::Array(vec![
                Value::Int(s),
                Value::Int(e),
                Value::Array(vec![
                    Value::BulkString(h.as_bytes().to_vec()),
                    Value::Int(p),
                    Value::BulkString(b"id".to_vec()),
                ]),
                Value::Array(vec![
                    Value::BulkString(b"127.0.0.1".to_vec()),
                    Value::Int(9),
                ]),
            ])
        };
        let v = Value::Array(vec![
            row(0, 5460, "127.0.0.1", 7000),
            row(5461, 16383, "10.0.0.2", 7001),
        ]);
        let got = parse_slots(&v).unwrap();
        assert_eq!(got[1].primary, ("10.0.0.2".to_string(), 7001));
        assert_eq!((got[0].start, got[0].end), (0, 5460));
        assert!(parse_slots(&Value::Nil).is_err());
        assert!(parse_slots(&Value::Array(vec![Value::Int(1)])).is_err());
        assert!(parse_slots(&Value::Array(vec![row(0, 1, "h", 70000)])).is_err());
    }
}
