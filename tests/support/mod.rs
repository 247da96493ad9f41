//! Shared helpers for integration tests (`mod support;` in a `tests/*.rs` file).
//!
//! The harness itself (free ports, private `redis-server` processes, a raw RESP client,
//! `wait_until`) lives in the `hc-testkit` workspace crate (`testkit/`), shared with
//! `cargo xtask` and the Python checkers; this module re-exports it and adds what needs
//! this package's binary.
//!
//! `cargo xtask test` installs `redis-server` when it is missing. The binary can be
//! overridden with `HC_TEST_REDIS_SERVER=/path/to/redis-server`.
#![allow(dead_code, unused_imports)]

pub use hc_testkit::{
    encode_command, free_addr, free_port, read_reply, wait_until, RedisServer, Resp, RespConn,
    FORBIDDEN_PORT,
};

use std::process::Command;

/// The `hybrid-cache` binary with every configuration variable of the environment removed,
/// so a developer's `REDIS_URL` or `HC_*` never leaks into a test.
pub fn hybrid_cache_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hybrid-cache"));
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("REDIS_") || n.starts_with("HC_") || n == "APP_ENV" {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Waits (up to 10 s) until each of `nodes` has heard from every other one. A node flushes
/// its L1 when its link comes up and when it first hears from another node (a new origin on
/// the bus, at the latest with that node's first heartbeat), so `n` nodes sharing one Redis
/// each flush `n` times at start; a flush after a test filled L1 would drop what it checks.
pub async fn start_up_flushes_done(nodes: &[&hybrid_cache::HybridCache]) {
    let flushes = nodes.len() as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for n in nodes {
        while n.stats().await.counters.coherence_flushes < flushes {
            assert!(
                std::time::Instant::now() < deadline,
                "a node did not hear from every other node within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// The configuration of a test node `id` in namespace `ns` on `redis`: defaults otherwise,
/// HTTP on a free loopback port.
pub fn node_config(id: &str, ns: &str, redis: &RedisServer) -> hybrid_cache::config::Config {
    hybrid_cache::config::Config {
        node_id: id.to_string(),
        namespace: ns.to_string(),
        http_addr: "127.0.0.1:0".parse().expect("loopback address"),
        redis: Some(hybrid_cache::config::RedisTarget::Url {
            url: redis.url(),
            password: None,
        }),
        ..hybrid_cache::config::Config::default()
    }
}

/// Serves `app` on a free loopback port for the rest of the test (an origin or a database
/// a node's loader reads); returns its base URL, `http://127.0.0.1:PORT/`.
pub async fn serve_origin(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

/// Waits (up to `bound`) until every cache has its Redis link up, holds its freshness lease
/// and has met every other node: one coherence flush for the link, one per first contact
/// with another origin (it cannot know what that origin sent before). From then on, flushes
/// only come from real events, and L1 is served. Panics past `bound`.
pub async fn settle(caches: &[&hybrid_cache::HybridCache], bound: std::time::Duration) {
    let want = caches.len() as u64;
    let deadline = tokio::time::Instant::now() + bound;
    'poll: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes did not settle within {bound:?}"
        );
        for c in caches {
            if !c.l2_enabled()
                || !c.lease_held()
                || c.stats().await.counters.coherence_flushes < want
            {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                continue 'poll;
            }
        }
        return;
    }
}
