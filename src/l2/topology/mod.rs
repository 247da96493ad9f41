//! Where L2 lives: one Redis, a primary with replicas behind Redis Sentinel, or Redis
//! Cluster. The rest of the crate talks to an [`L2Conn`] and a [`Subscription`] and does not
//! care which.
//!
//! - **Single** (`REDIS_URL` or `REDIS_HOST`/…): a [`ConnectionManager`] for commands and a
//!   classic pub/sub connection (`SUBSCRIBE`/`PUBLISH`), both to that one server.
//! - **Sentinel** (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`): each (re)connection asks the
//!   sentinels for the current primary (redis-rs [`SentinelClient`], which also checks `ROLE`
//!   on the answer), then opens the command connection and the subscription to that same
//!   server, exactly as for a single Redis. When the primary dies or is demoted, the
//!   subscription drops (or its ping echoes stop), the bus revokes the freshness lease and
//!   reconnects, which asks the sentinels again and so finds the promoted replica. L1 is
//!   flushed before the lease is granted again, so a failover never lets L1 serve past B.
//! - **Cluster** (`REDIS_CLUSTER_NODES`): a redis-rs cluster-async connection for commands
//!   (it follows `MOVED`/`ASK` and refreshes its slot map after a failover). Keys of one
//!   category share a hash tag, `{ns:category}` (see [`KeyLayout`]), because every L2 script
//!   reads the category generation and the data key together and Redis only runs a script
//!   on keys of one slot: categories spread over the shards, a category lives on one.
//!   Glob invalidations still `SCAN` every primary (a slot being migrated is on two).
//!
//! **Pub/sub ordering in Cluster.** The freshness lease relies on one ordered stream per
//! subscriber: a node's ping echo must arrive after every invalidation Redis accepted before
//! the ping. Classic `PUBLISH` in a cluster is forwarded over the cluster bus to every node,
//! so a subscriber attached to another shard could see its own ping echo (published to its
//! own node) before an invalidation that went through a different node first. The bus
//! therefore uses sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`) on channels that all carry the
//! same hash tag, `{ns}` (see [`bus_namespace`]): every invalidation, heartbeat, ping and ack
//! is published to, and delivered by, the one primary that owns that slot, in the order it
//! executed them. If that primary fails over, Redis drops the sharded subscription (or the
//! connection dies), the lease lapses, and the bus resubscribes on the new owner.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisConnectionInfo,
    RedisFuture, Value,
};

use super::{connection_info, L2Error};
use crate::config::RedisTarget;

/// The command connection of L2, whatever the topology.
#[derive(Clone)]
pub enum L2Conn {
    /// One server, reconnecting by itself (single Redis).
    Single(ConnectionManager),
    /// The primary Sentinel named. It never reconnects by itself: the same address may be
    /// a replica by then. When it breaks, calls fail until the bus reconnects through the
    /// sentinels (its subscription to that server breaks too, or its pings stop echoing).
    Fixed(MultiplexedConnection),
    /// Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for L2Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            L2Conn::Single(c) => c.req_packed_command(cmd),
            L2Conn::Fixed(c) => c.req_packed_command(cmd),
            L2Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            L2Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            L2Conn::Fixed(c) => c.req_packed_commands(cmd, offset, count),
            L2Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            L2Conn::Single(c) => c.get_db(),
            L2Conn::Fixed(c) => c.get_db(),
            L2Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl L2Conn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, L2Conn::Cluster(_))
    }

    /// `host:port` of every primary (one entry for a single server).
    pub async fn primaries(&mut self) -> redis::RedisResult<Vec<(String, u16)>> {
        match self {
            L2Conn::Single(_) | L2Conn::Fixed(_) => Ok(Vec::new()),
            L2Conn::Cluster(c) => {
                let slots: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(c).await?;
                let mut out: Vec<(String, u16)> = parse_slots(&slots)?
                    .into_iter()
                    .map(|s| s.primary)
                    .collect();
                out.sort();
                out.dedup();
                Ok(out)
            }
        }
    }

    /// Runs `cmd` on one primary given by address (cluster) or on the one server.
    pub async fn on_node(
        &mut self,
        node: Option<&(String, u16)>,
        cmd: &Cmd,
    ) -> redis::RedisResult<Value> {
        match (self, node) {
            (L2Conn::Cluster(c), Some((host, port))) => {
                c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    }),
                )
                .await
            }
            (c, _) => cmd.query_async(c).await,
        }
    }
}

/// How L2 keys are named. Single and Sentinel keep the original layout; Cluster puts every
/// key of a category in one slot with the hash tag `{ns:category}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLayout {
    /// `ns:category:generation:key`, generation in `ns:gen:category`.
    Plain,
    /// `{ns:category}:generation:key`, generation in `{ns:category}:gen`.
    HashTagged,
}

impl KeyLayout {
    /// The prefix of a category's data keys (the generation and the key follow).
    pub fn prefix(self, ns: &str, category: &str) -> String {
        match self {
            KeyLayout::Plain => format!("{ns}:{category}"),
            KeyLayout::HashTagged => format!("{{{ns}:{category}}}"),
        }
    }

    /// The key holding a category's generation.
    pub fn gen_key(self, ns: &str, category: &str) -> String {
        match self {
            KeyLayout::Plain => format!("{ns}:gen:{category}"),
            KeyLayout::HashTagged => format!("{{{ns}:{category}}}:gen"),
        }
    }
}

/// The namespace part of the bus channel names: `ns`, or `{ns}` in a cluster so every
/// channel (`{ns}:invalidations`, `{ns}:ping:<instance>`) hashes to the same slot.
pub fn bus_namespace(target: Option<&RedisTarget>, ns: &str) -> String {
    match target {
        Some(RedisTarget::Cluster { .. }) => format!("{{{ns}}}"),
        _ => ns.to_string(),
    }
}

/// The publish command of the topology: `SPUBLISH` in a cluster, else `PUBLISH`.
pub fn publish_command(conn: &L2Conn) -> &'static str {
    if conn.is_cluster() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    }
}

fn addr_of(host_port: &str) -> Result<(String, u16), L2Error> {
    host_port
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| L2Error::Config(format!("`{host_port}` is not host:port")))
}

/// Asks the sentinels for the current primary and returns a client for it.
async fn sentinel_primary(
    sentinels: &[String],
    master: &str,
    password: &Option<String>,
    db: i64,
    bound: Duration,
) -> Result<redis::Client, L2Error> {
    let nodes = sentinels
        .iter()
        .map(|s| {
            let (host, port) = addr_of(s)?;
            Ok(ConnectionInfo {
                addr: ConnectionAddr::Tcp(host, port),
                redis: RedisConnectionInfo::default(),
            })
        })
        .collect::<Result<Vec<_>, L2Error>>()?;
    let node_info = SentinelNodeConnectionInfo {
        tls_mode: None,
        redis_connection_info: Some(RedisConnectionInfo {
            db,
            password: password.clone(),
            ..Default::default()
        }),
    };
    let mut client = SentinelClient::build(
        nodes,
        master.to_string(),
        Some(node_info),
        SentinelServerType::Master,
    )?;
    match tokio::time::timeout(bound, client.async_get_client()).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(L2Error::Timeout(bound)),
    }
}

async fn manager(client: redis::Client, timeout: Duration) -> Result<L2Conn, L2Error> {
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout.max(Duration::from_millis(200)))
        .set_response_timeout(timeout)
        .set_number_of_retries(1)
        .set_max_delay(200);
    let fut = ConnectionManager::new_with_config(client, cfg);
    match tokio::time::timeout(timeout.max(Duration::from_millis(500)), fut).await {
        Ok(r) => Ok(L2Conn::Single(r?)),
        Err(_) => Err(L2Error::Timeout(timeout)),
    }
}

/// A connection to the sentinel-named primary that does not reconnect by itself.
async fn fixed(client: redis::Client, timeout: Duration) -> Result<L2Conn, L2Error> {
    let bound = timeout.max(Duration::from_millis(500));
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(bound)
        .set_response_timeout(timeout);
    match tokio::time::timeout(
        bound,
        client.get_multiplexed_async_connection_with_config(&cfg),
    )
    .await
    {
        Ok(r) => Ok(L2Conn::Fixed(r?)),
        Err(_) => Err(L2Error::Timeout(bound)),
    }
}

async fn cluster(
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

/// Connects the command connection (bounded by the timeout).
pub async fn connect(target: &RedisTarget, timeout: Duration) -> Result<L2Conn, L2Error> {
    let bound = timeout.max(Duration::from_millis(500));
    match target {
        RedisTarget::Url { .. } | RedisTarget::Parts { .. } => {
            manager(redis::Client::open(connection_info(target)?)?, timeout).await
        }
        RedisTarget::Sentinel {
            sentinels,
            master,
            password,
            db,
        } => {
            manager(
                sentinel_primary(sentinels, master, password, *db, bound).await?,
                timeout,
            )
            .await
        }
        RedisTarget::Cluster { nodes, password } => cluster(nodes, password, timeout).await,
    }
}

/// An open subscription to the bus channels.
pub enum Subscription {
    /// Classic pub/sub on one server.
    Classic(redis::aio::PubSub),
    /// Sharded pub/sub (RESP3 pushes) on the primary owning the channels' slot.
    Sharded {
        pushes: tokio::sync::mpsc::UnboundedReceiver<PushInfo>,
        /// Keeps the connection open.
        _conn: MultiplexedConnection,
    },
}

impl Subscription {
    /// The next message payload; `None` once the subscription is gone (connection closed,
    /// or, in a cluster, the slot moved away from the node and Redis unsubscribed us).
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Subscription::Classic(p) => {
                use futures::StreamExt;
                p.on_message()
                    .next()
                    .await
                    .map(|m| m.get_payload_bytes().to_vec())
            }
            Subscription::Sharded { pushes, .. } => loop {
                let push = pushes.recv().await?;
                match push.kind {
                    PushKind::SMessage => match push.data.get(1) {
                        Some(Value::BulkString(b)) => return Some(b.clone()),
                        // Not something we published: let the machine flush on it.
                        _ => return Some(Vec::new()),
                    },
                    PushKind::SSubscribe => continue,
                    PushKind::Disconnection | PushKind::SUnsubscribe => return None,
                    _ => continue,
                }
            },
        }
    }
}

/// Subscribes to `channels` and opens the command connection, both on the same server
/// (single, Sentinel) or on the same cluster; bounded by the timeout.
pub async fn subscribe(
    target: &RedisTarget,
    channels: &[String],
    timeout: Duration,
) -> Result<(Subscription, L2Conn), L2Error> {
    let bound = timeout.max(Duration::from_millis(500));
    let classic = |client: redis::Client| async move {
        let mut pubsub = tokio::time::timeout(bound, client.get_async_pubsub())
            .await
            .map_err(|_| L2Error::Timeout(bound))??;
        tokio::time::timeout(bound, pubsub.subscribe(channels))
            .await
            .map_err(|_| L2Error::Timeout(bound))??;
        Ok::<_, L2Error>((Subscription::Classic(pubsub), client))
    };
    match target {
        RedisTarget::Url { .. } | RedisTarget::Parts { .. } => {
            let (sub, _) = classic(redis::Client::open(connection_info(target)?)?).await?;
            Ok((sub, connect(target, timeout).await?))
        }
        RedisTarget::Sentinel {
            sentinels,
            master,
            password,
            db,
        } => {
            // One answer from the sentinels for both connections: same server.
            let primary = sentinel_primary(sentinels, master, password, *db, bound).await?;
            let (sub, client) = classic(primary).await?;
            Ok((sub, fixed(client, timeout).await?))
        }
        RedisTarget::Cluster { nodes, password } => {
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
    }
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
    fn layouts_keep_single_keys_and_tag_cluster_keys_per_category() {
        assert_eq!(KeyLayout::Plain.prefix("hc", "roles"), "hc:roles");
        assert_eq!(KeyLayout::Plain.gen_key("hc", "roles"), "hc:gen:roles");
        assert_eq!(KeyLayout::HashTagged.prefix("hc", "roles"), "{hc:roles}");
        assert_eq!(
            KeyLayout::HashTagged.gen_key("hc", "roles"),
            "{hc:roles}:gen"
        );
        let cluster = RedisTarget::Cluster {
            nodes: vec!["127.0.0.1:1".into()],
            password: None,
        };
        assert_eq!(bus_namespace(Some(&cluster), "hc"), "{hc}");
        assert_eq!(bus_namespace(None, "hc"), "hc");
    }

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
