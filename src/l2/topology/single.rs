//! One Redis server (`REDIS_URL` or `REDIS_HOST`/…): its connection info, the
//! self-reconnecting command connection and classic pub/sub. Sentinel reuses the last two
//! once the sentinels named the primary.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use super::{L2Conn, Subscription};
use crate::config::RedisTarget;
use crate::l2::L2Error;

/// Builds the redis crate's connection info of a single-server target (`Url`, `Parts`).
pub fn connection_info(target: &RedisTarget) -> Result<ConnectionInfo, L2Error> {
    match target {
        RedisTarget::Url { url, password } => {
            let mut info = url
                .as_str()
                .into_connection_info()
                .map_err(|e| L2Error::Config(format!("REDIS_URL: {e}")))?;
            if info.redis.password.is_none() {
                info.redis.password = password.clone();
            }
            Ok(info)
        }
        RedisTarget::Parts {
            host,
            port,
            password,
            db,
            tls,
        } => Ok(ConnectionInfo {
            addr: if *tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            },
            redis: RedisConnectionInfo {
                db: *db,
                password: password.clone(),
                ..Default::default()
            },
        }),
        RedisTarget::Sentinel { .. } | RedisTarget::Cluster { .. } => Err(L2Error::Config(
            "sentinel and cluster targets have no single address".into(),
        )),
    }
}

/// A command connection that reconnects by itself (bounded by the timeout).
pub(super) async fn manager(client: redis::Client, timeout: Duration) -> Result<L2Conn, L2Error> {
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

/// Opens a classic pub/sub connection and subscribes to `channels`; returns the client too,
/// so the command connection can go to the same server.
pub(super) async fn subscribe_classic(
    client: redis::Client,
    channels: &[String],
    bound: Duration,
) -> Result<(Subscription, redis::Client), L2Error> {
    let mut pubsub = tokio::time::timeout(bound, client.get_async_pubsub())
        .await
        .map_err(|_| L2Error::Timeout(bound))??;
    tokio::time::timeout(bound, pubsub.subscribe(channels))
        .await
        .map_err(|_| L2Error::Timeout(bound))??;
    Ok((Subscription::Classic(pubsub), client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_build_tls_and_password() {
        let info = connection_info(&RedisTarget::Parts {
            host: "h".into(),
            port: 1,
            password: Some("p".into()),
            db: 3,
            tls: true,
        })
        .unwrap();
        assert!(matches!(info.addr, ConnectionAddr::TcpTls { .. }));
        assert_eq!(info.redis.db, 3);
        assert_eq!(info.redis.password.as_deref(), Some("p"));
        let info = connection_info(&RedisTarget::Url {
            url: "redis://127.0.0.1:9/1".into(),
            password: Some("q".into()),
        })
        .unwrap();
        assert_eq!(info.redis.password.as_deref(), Some("q"));
    }
}
