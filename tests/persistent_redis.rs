//! Issue #23, item 4: an L2 Redis with persistence on (RDB `save`, AOF) brings back deleted
//! values when it restarts, so it is refused unless `allow_persistent_redis` is set: at
//! build (a `BuildError`, exit 2 for a node) and, when it is reached only later, by the bus
//! (no lease). Each test runs a private `redis-server` on a free loopback port; persistence
//! is switched on with `CONFIG SET`, the same state as starting it with `--save "900 1"` or
//! `--appendonly yes`.

mod support;

use std::time::Duration;

use hybrid_cache::{BuildError, HybridCache};
use support::RedisServer;

/// `CONFIG SET name value` on the server.
fn config_set(redis: &RedisServer, name: &str, value: &str) {
    let reply = redis
        .command(&[b"CONFIG", b"SET", name.as_bytes(), value.as_bytes()])
        .expect("CONFIG SET");
    assert!(
        matches!(reply, support::Resp::Simple(ref s) if s == "OK"),
        "{reply:?}"
    );
}

async fn build(redis: &RedisServer, allow: bool) -> Result<HybridCache, BuildError> {
    HybridCache::builder()
        .redis_url(&redis.url())
        .namespace("persist")
        .allow_persistent_redis(allow)
        .build()
        .await
}

/// Polls `f` every 20 ms, at most `tries` times.
async fn eventually(tries: u32, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

fn refusal(result: Result<HybridCache, BuildError>) -> String {
    match result {
        Err(e @ BuildError::PersistentRedis(_)) => e.to_string(),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a persistent Redis was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdb_redis_is_refused_at_build() {
    let redis = RedisServer::start();
    config_set(&redis, "save", "900 1");
    let e = refusal(build(&redis, false).await);
    assert!(e.contains(&format!("127.0.0.1:{}", redis.port())), "{e}");
    assert!(e.contains("has persistence on (save \"900 1\")"), "{e}");
    assert!(e.contains("save \"\" and appendonly no"), "{e}");
    assert!(e.contains("HC_ALLOW_PERSISTENT_REDIS=true"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aof_redis_is_refused_at_build() {
    let redis = RedisServer::start();
    config_set(&redis, "appendonly", "yes");
    let e = refusal(build(&redis, false).await);
    assert!(e.contains("has persistence on (appendonly yes)"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_in_accepts_a_persistent_redis() {
    let redis = RedisServer::start();
    config_set(&redis, "save", "900 1");
    let cache = build(&redis, true).await.expect("accepted with the opt-in");
    assert!(eventually(500, || cache.lease_held()).await, "no lease");
    assert_eq!(cache.persistent_redis_refusals(), 0);
    cache.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_persistent_redis_starts_as_before() {
    let redis = RedisServer::start();
    let cache = build(&redis, false).await.expect("the usual Redis starts");
    assert!(eventually(500, || cache.lease_held()).await, "no lease");
    cache.set("roles", "k", b"v".to_vec(), None).await.unwrap();
    assert_eq!(cache.persistent_redis_refusals(), 0);
    cache.shutdown().await;
}

/// A Redis that turns persistent behind a running node (as after a Sentinel failover to a
/// differently configured replica) is not taken back after the reconnection: no lease
/// until persistence is off again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_redis_reached_on_reconnect_grants_no_lease() {
    let redis = RedisServer::start();
    let cache = build(&redis, false).await.expect("the usual Redis starts");
    assert!(eventually(500, || cache.lease_held()).await, "no lease");
    config_set(&redis, "save", "900 1");
    redis
        .command(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"])
        .expect("CLIENT KILL");
    let refused = eventually(500, || cache.persistent_redis_refusals() > 0).await;
    assert!(refused, "the reconnection was not refused");
    assert!(!cache.lease_held(), "a persistent Redis granted the lease");
    let before = cache.persistent_redis_refusals();
    assert!(eventually(500, || cache.persistent_redis_refusals() > before).await);
    assert!(!cache.lease_held(), "a persistent Redis granted the lease");
    config_set(&redis, "save", "");
    assert!(
        eventually(500, || cache.lease_held()).await,
        "no lease once off"
    );
    cache.shutdown().await;
}

#[test]
fn node_exits_2_on_a_persistent_redis() {
    let redis = RedisServer::start();
    config_set(&redis, "save", "900 1");
    let port = support::free_port();
    let mut child = support::hybrid_cache_command()
        .args(["node", "--http", &format!("127.0.0.1:{port}")])
        .args(["--redis-url", &redis.url()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the node");
    // Bounded: a node that accepted the Redis keeps running; stop it and fail.
    let mut status = None;
    for _ in 0..1500 {
        status = child.try_wait().expect("wait for the node");
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the node started on a persistent Redis");
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{err}");
    assert!(err.contains("has persistence on"), "{err}");
}
