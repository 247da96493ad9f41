//! Redis Sentinel (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`): ask the sentinels for the
//! current primary, then connect to it without automatic reconnection (the same address
//! may be a replica by then; the bus reconnects through the sentinels instead).

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
