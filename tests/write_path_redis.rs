//! The write path against a private `redis-server` (free port, never 6379), as a user sees
//! it: what an acknowledged PUT guarantees on the writer and on a peer, and what a PUT costs
//! Redis (`INFO commandstats` deltas). Every wait is a bounded poll.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use hybrid_cache::config::{Config, Consistency};
use hybrid_cache::server::node::Node;
use hybrid_cache::Source;
use support::RedisServer;

/// Upper bound of every "eventually" in this file.
const BOUND: Duration = Duration::from_secs(5);

fn start_config(id: &str, ns: &str, redis: &RedisServer) -> Config {
    let mut config = support::node_config(id, ns, redis);
    if let Some(c) = config.categories.get_mut("permissions") {
        c.consistency = Consistency::Strict;
    }
    config
}

async fn start(id: &str, ns: &str, redis: &RedisServer) -> Node {
    Node::start(start_config(id, ns, redis))
        .await
        .expect("node starts")
}

/// Polls `f` (every 2 ms) until it yields true or `timeout` passes.
async fn poll<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until every node has its Redis link, holds its lease and has met the others.
async fn settle(nodes: &[&Node]) {
    let ok = poll(BOUND, || async {
        nodes
            .iter()
            .all(|n| n.cache().l2_enabled() && n.cache().lease_held())
    })
    .await;
    assert!(ok, "nodes did not settle within {BOUND:?}");
    let caches: Vec<_> = nodes.iter().map(|n| n.cache()).collect();
    support::start_up_flushes_done(&caches).await;
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// `INFO commandstats` as command → calls.
fn command_calls(redis: &RedisServer) -> HashMap<String, u64> {
    let info = redis
        .command(&[b"INFO", b"commandstats"])
        .expect("INFO")
        .as_text()
        .expect("INFO text");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// An acknowledged PUT is in the writer's own L1 (the ack waits for the L1 update, which
/// runs alongside the announcement), and in a strict category no peer returns the older
/// value afterwards; in a bounded one the peer drops it within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_put_is_read_back_on_the_writer_and_invalidated_on_the_peer() {
    let redis = blocking(RedisServer::start);
    let ns = format!("wp{:08x}", rand::random::<u32>());
    let a = start("a", &ns, &redis).await;
    let b = start("b", &ns, &redis).await;
    settle(&[&a, &b]).await;
    for (category, strict) in [("permissions", true), ("general", false)] {
        for round in 0..20u32 {
            let key = format!("k{}", round % 4);
            let old = format!("old{round}");
            let new = format!("new{round}");
            a.cache()
                .set(category, &key, old.clone(), None)
                .await
                .unwrap();
            // B holds the old value in its L1.
            let warm = poll(BOUND, || async {
                let got = b.cache().get_with_source(category, &key).await.unwrap();
                matches!(got, Some((v, Source::L1)) if v == old.as_bytes())
            })
            .await;
            assert!(warm, "{category}/{key}: B never held {old} in L1");
            a.cache()
                .set(category, &key, new.clone(), None)
                .await
                .unwrap();
            let mine = a.cache().get_with_source(category, &key).await.unwrap();
            assert_eq!(
                mine,
                Some((new.clone().into(), Source::L1)),
                "{category}/{key}: the writer's L1 right after its ack"
            );
            if strict {
                let theirs = b.cache().get(category, &key).await.unwrap();
                assert_eq!(theirs.as_deref(), Some(new.as_bytes()), "strict {key}");
            } else {
                let seen = poll(BOUND, || async {
                    let v = b.cache().get(category, &key).await.unwrap();
                    v.as_deref() != Some(old.as_bytes())
                })
                .await;
                assert!(seen, "{category}/{key}: B kept {old}");
            }
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// What one PUT costs Redis: exactly one write script (`EVALSHA`, no second data command),
/// and one `PUBLISH` of its invalidation (heartbeats publish too, so at least one per PUT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_costs_one_write_script_and_its_publish() {
    let redis = blocking(RedisServer::start);
    let ns = format!("wc{:08x}", rand::random::<u32>());
    let a = start("a", &ns, &redis).await;
    settle(&[&a]).await;
    // Loads the script once (a first EVALSHA may answer NOSCRIPT and be followed by a load).
    a.cache().set("general", "warm", "x", None).await.unwrap();
    let before = blocking(|| command_calls(&redis));
    const PUTS: u64 = 100;
    for i in 0..PUTS {
        let key = format!("k{}", i % 10);
        a.cache()
            .set("general", &key, format!("v{i}"), None)
            .await
            .unwrap();
    }
    let after = blocking(|| command_calls(&redis));
    let delta = |c: &str| after.get(c).unwrap_or(&0) - before.get(c).unwrap_or(&0);
    assert_eq!(
        delta("evalsha"),
        PUTS,
        "one write script per PUT: {after:?}"
    );
    // Redis 7 also counts the commands a script runs: the write script's `TIME` (deadline),
    // `GET` (generation) and its one `SET`.
    assert_eq!(delta("set"), PUTS, "one SET per PUT: {after:?}");
    // Besides those: control traffic of the bus and the harness, no data command.
    let control = [
        "evalsha",
        "time",
        "get",
        "set",
        "publish",
        "spublish",
        "ping",
        "info",
        "subscribe",
        "ssubscribe",
        "client",
        "hello",
        "role",
    ];
    let data: u64 = after
        .keys()
        .filter(|c| !control.contains(&c.as_str()))
        .map(|c| delta(c))
        .sum();
    assert_eq!(
        data, 0,
        "a PUT sent more than its script: {before:?} → {after:?}"
    );
    assert!(
        delta("publish") + delta("spublish") >= PUTS,
        "every PUT is announced: {after:?}"
    );
    a.shutdown().await;
}
