//! Where L2 lives: one Redis, a primary with replicas behind Redis Sentinel, or Redis
//! Cluster. The rest of the crate talks to an [`L2Conn`] and a [`Subscription`] and does not
//! care which.
//!
//! - **Single** (`REDIS_URL` or `REDIS_HOST`/…): a [`ConnectionManager`] for commands and a
//!   classic pub/sub connection (`SUBSCRIBE`/`PUBLISH`), both to that one server.
//! - **Sentinel** (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`): each (re)connection asks the
//!   sentinels for the current primary (redis-rs
//!   [`SentinelClient`](redis::sentinel::SentinelClient), which also checks `ROLE` on the
//!   answer), then opens the command connection and the subscription to that same
//!   server, exactly as for a single Redis. When the primary dies or is demoted, the
//!   subscription drops (or its ping echoes stop), the bus revokes the freshness lease and
//!   reconnects, which asks the sentinels again and so finds the promoted replica. L1 is
//!   flushed before the lease is granted again, so a failover never lets L1 serve past B.
//!   An old primary that stays reachable (cut off from the sentinels only, or paused past
//!   `down-after-milliseconds` and resumed) keeps the subscription alive, so the echo alone
//!   proves nothing: every ping period the bus also asks every sentinel for the primary
//!   ([`SentinelProbe`]) and the lease, L2 reads and L2 write acknowledgements need a
//!   majority naming the server the connection uses (`Fixed` carries its address; see
//!   [`crate::coherence::primary`]).
//! - **Cluster** (`REDIS_CLUSTER_NODES`): a redis-rs cluster-async connection for commands
//!   (it follows `MOVED`/`ASK` and refreshes its slot map after a failover). Every L2 script
//!   reads a generation and a data key together and Redis only runs a script on keys of
//!   one slot, so each category is split into buckets with a hash tag and a generation each,
//!   spread evenly over the slots (see [`KeyLayout`]): a category's keys, memory and load
//!   are on every primary. Glob invalidations `SCAN` every primary.
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
//!
//! This file holds the interface ([`L2Conn`], [`Subscription`], [`KeyLayout`], the channel
//! namespace) and dispatches on the target; the construction of
//! each topology lives in `single`, `sentinel` and `cluster`.

mod cluster;
mod layout;
pub mod persistence;
mod sentinel;
mod single;

pub use layout::{KeyLayout, Prefixes, CLUSTER_BUCKETS};
pub use sentinel::SentinelProbe;

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, PushInfo, PushKind, RedisFuture, Value};

pub use single::connection_info;

use super::L2Error;
use crate::config::RedisTarget;

/// The command connection of L2, whatever the topology.
#[derive(Clone)]
pub enum L2Conn {
    /// One server, reconnecting by itself (single Redis).
    Single(ConnectionManager),
    /// The primary Sentinel named. It never reconnects by itself: the same address may be
    /// a replica by then. When it breaks, calls fail until the bus reconnects through the
    /// sentinels (its subscription to that server breaks too, or its pings stop echoing).
    Fixed(MultiplexedConnection, std::sync::Arc<str>),
    /// Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for L2Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            L2Conn::Single(c) => c.req_packed_command(cmd),
            L2Conn::Fixed(c, _) => c.req_packed_command(cmd),
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
            L2Conn::Fixed(c, _) => c.req_packed_commands(cmd, offset, count),
            L2Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            L2Conn::Single(c) => c.get_db(),
            L2Conn::Fixed(c, _) => c.get_db(),
            L2Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl L2Conn {
    /// Whether this is a Redis Cluster connection (hash-tagged keys, `SPUBLISH`).
    pub fn is_cluster(&self) -> bool {
        matches!(self, L2Conn::Cluster(_))
    }

    /// `host:port` of the server Sentinel named, for the primary proof (`None` for single
    /// Redis and Cluster).
    pub fn primary_addr(&self) -> Option<&str> {
        match self {
            L2Conn::Fixed(_, addr) => Some(addr),
            _ => None,
        }
    }

    /// `host:port` of every primary (one entry for a single server).
    pub async fn primaries(&mut self) -> redis::RedisResult<Vec<(String, u16)>> {
        match self {
            L2Conn::Single(_) | L2Conn::Fixed(..) => Ok(Vec::new()),
            L2Conn::Cluster(c) => cluster::primaries(c).await,
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

/// The namespace part of the bus channel names: `ns`, or `{ns}` in a cluster so every
/// channel (`{ns}:invalidations`, `{ns}:ping:<instance>`) hashes to the same slot.
pub fn bus_namespace(target: Option<&RedisTarget>, ns: &str) -> String {
    match target {
        Some(RedisTarget::Cluster { .. }) => format!("{{{ns}}}"),
        _ => ns.to_string(),
    }
}

/// `host:port` parsed into an address (sentinels and cluster seed nodes).
fn addr_of(host_port: &str) -> Result<(String, u16), L2Error> {
    host_port
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| L2Error::Config(format!("`{host_port}` is not host:port")))
}

/// Connects the command connection (bounded by the timeout).
pub async fn connect(target: &RedisTarget, timeout: Duration) -> Result<L2Conn, L2Error> {
    let bound = timeout.max(Duration::from_millis(500));
    match target {
        RedisTarget::Url { .. } | RedisTarget::Parts { .. } => {
            single::manager(redis::Client::open(connection_info(target)?)?, timeout).await
        }
        RedisTarget::Sentinel {
            sentinels,
            master,
            password,
            db,
        } => {
            single::manager(
                sentinel::sentinel_primary(sentinels, master, password, *db, bound).await?,
                timeout,
            )
            .await
        }
        RedisTarget::Cluster { nodes, password } => {
            cluster::cluster(nodes, password, timeout).await
        }
    }
}

/// An open subscription to the bus channels.
pub enum Subscription {
    /// Classic pub/sub on one server.
    Classic(redis::aio::PubSub),
    /// Sharded pub/sub (RESP3 pushes) on the primary owning the channels' slot.
    Sharded {
        /// The RESP3 pushes of the connection (`smessage`, `ssubscribe`, disconnection).
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
    match target {
        RedisTarget::Url { .. } | RedisTarget::Parts { .. } => {
            let client = redis::Client::open(connection_info(target)?)?;
            let (sub, _) = single::subscribe_classic(client, channels, bound).await?;
            Ok((sub, connect(target, timeout).await?))
        }
        RedisTarget::Sentinel {
            sentinels,
            master,
            password,
            db,
        } => {
            // One answer from the sentinels for both connections: same server.
            let primary =
                sentinel::sentinel_primary(sentinels, master, password, *db, bound).await?;
            let (sub, client) = single::subscribe_classic(primary, channels, bound).await?;
            Ok((sub, sentinel::fixed(client, timeout).await?))
        }
        RedisTarget::Cluster { nodes, password } => {
            cluster::subscribe_sharded(nodes, password, channels, timeout).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_channels_share_one_hash_tag() {
        let cluster = RedisTarget::Cluster {
            nodes: vec!["127.0.0.1:1".into()],
            password: None,
        };
        assert_eq!(bus_namespace(Some(&cluster), "hc"), "{hc}");
        assert_eq!(bus_namespace(None, "hc"), "hc");
    }
}
