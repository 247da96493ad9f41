//! Redis Sentinel (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`): ask the sentinels for the
//! current primary, then connect to it without automatic reconnection (the same address
//! may be a replica by then; the bus reconnects through the sentinels instead), and
//! [`SentinelProbe`]: the queries of the primary proof.

use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};

use super::{addr_of, L2Conn};
use crate::l2::L2Error;

/// Asks the sentinels for the current primary and returns a client for it.
pub(super) async fn sentinel_primary(
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

/// A connection to the sentinel-named primary that does not reconnect by itself.
pub(super) async fn fixed(client: redis::Client, timeout: Duration) -> Result<L2Conn, L2Error> {
    let bound = timeout.max(Duration::from_millis(500));
    // As the sentinel named it (the primary proof compares the sentinels' answers with it).
    let addr = match &client.get_connection_info().addr {
        ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        other => return Err(L2Error::Config(format!("sentinel named {other:?}"))),
    };
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(bound)
        .set_response_timeout(timeout);
    match tokio::time::timeout(
        bound,
        client.get_multiplexed_async_connection_with_config(&cfg),
    )
    .await
    {
        Ok(r) => Ok(L2Conn::Fixed(r?, addr.into())),
        Err(_) => Err(L2Error::Timeout(bound)),
    }
}

/// Direct connections to every configured sentinel for the primary proof (see
/// [`crate::coherence::primary`]): one `SENTINEL get-master-addr-by-name` to each per query,
/// concurrently, each bounded; a connection that fails is opened again at the next query.
pub struct SentinelProbe {
    sentinels: Vec<(String, u16)>,
    master: String,
    conns: Vec<Option<redis::aio::MultiplexedConnection>>,
    bound: Duration,
}

impl SentinelProbe {
    /// A probe of `sentinels` (`host:port`) for `master`; every answer within `bound`.
    pub fn new(sentinels: &[String], master: &str, bound: Duration) -> Result<Self, L2Error> {
        let sentinels = sentinels
            .iter()
            .map(|s| addr_of(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SentinelProbe {
            conns: sentinels.iter().map(|_| None).collect(),
            sentinels,
            master: master.to_string(),
            bound,
        })
    }

    /// What each sentinel names as the primary now (`host:port`), `None` for no answer.
    pub async fn ask(&mut self) -> Vec<Option<String>> {
        let (master, bound) = (self.master.as_str(), self.bound);
        let asks = self
            .conns
            .iter_mut()
            .zip(&self.sentinels)
            .map(|(conn, addr)| ask_one(conn, addr, master, bound));
        futures::future::join_all(asks).await
    }
}

/// One sentinel's answer (opening its connection if needed); the connection is dropped on
/// any failure.
async fn ask_one(
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    (host, port): &(String, u16),
    master: &str,
    bound: Duration,
) -> Option<String> {
    let query = async {
        if conn.is_none() {
            let client = redis::Client::open(ConnectionInfo {
                addr: ConnectionAddr::Tcp(host.clone(), *port),
                redis: RedisConnectionInfo::default(),
            })?;
            let cfg = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(bound)
                .set_response_timeout(bound);
            *conn = Some(
                client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await?,
            );
        }
        let Some(c) = conn.as_mut() else {
            return Ok::<_, redis::RedisError>(None);
        };
        let named: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async(c)
            .await?;
        Ok(named.map(|(h, p)| format!("{h}:{p}")))
    };
    match tokio::time::timeout(bound, query).await {
        Ok(Ok(named)) => named,
        _ => {
            *conn = None;
            None
        }
    }
}
