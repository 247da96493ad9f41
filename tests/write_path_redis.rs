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

/// A private redis-server and nodes `ids` on it in a fresh namespace (`tag` + random),
/// settled.
async fn cluster(tag: &str, ids: &[&str]) -> (RedisServer, Vec<Node>) {
    let redis = blocking(RedisServer::start);
    let ns = format!("{tag}{:08x}", rand::random::<u32>());
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(start(id, &ns, &redis).await);
    }
    settle(&nodes.iter().collect::<Vec<_>>()).await;
    (redis, nodes)
}

/// Waits until `node` answers `value` for `category/key` from its L1.
async fn until_in_l1(node: &Node, category: &str, key: &str, value: &str) {
    let warm = poll(BOUND, || async {
        let got = node.cache().get_with_source(category, key).await.unwrap();
        matches!(got, Some((v, Source::L1)) if v == value.as_bytes())
    })
    .await;
    assert!(warm, "{category}/{key}: never held {value} in L1");
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
    let (_redis, nodes) = cluster("wp", &["a", "b"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
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
            until_in_l1(b, category, &key, &old).await;
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
    for n in nodes {
        n.shutdown().await;
    }
}

/// What one PUT costs Redis: exactly one write script (`EVALSHA`, no second data command),
/// and one `PUBLISH` of its invalidation (heartbeats publish too, so at least one per PUT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_costs_one_write_script_and_its_publish() {
    let (redis, nodes) = cluster("wc", &["a"]).await;
    let a = &nodes[0];
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
    for n in nodes {
        n.shutdown().await;
    }
}

/// One `MONITOR` line: who sent it (`"lua"` for a command a script ran) and the command.
fn monitor_line(line: &str) -> Option<(String, String)> {
    let (_, rest) = line.split_once(" [")?;
    let (source, command) = rest.split_once("] ")?;
    let client = source.split_once(' ')?.1.to_string();
    let name = command.split('"').nth(1)?.to_ascii_lowercase();
    Some((client, name))
}

/// Everything the server runs while `during` runs, from `MONITOR` on the test's own server.
async fn monitored<F: Future<Output = ()>>(
    redis: &RedisServer,
    during: F,
) -> Vec<(String, String)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let mut conn = blocking(|| redis.conn()).expect("monitor connection");
    let ok = blocking(|| conn.command(&[b"MONITOR"])).expect("MONITOR");
    assert_eq!(ok.as_text().as_deref(), Some("OK"));
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let flag = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(reply) = conn.read() {
                lines.extend(reply.as_text());
            }
            if flag.load(Ordering::SeqCst) {
                break;
            }
        }
        lines
    });
    // MONITOR answers +OK before it streams; a short pause lets the stream start.
    tokio::time::sleep(Duration::from_millis(50)).await;
    during.await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let lines = blocking(|| reader.join()).expect("monitor thread");
    lines.iter().filter_map(|l| monitor_line(l)).collect()
}

/// One round trip per PUT: the node sends the write script alone, and the script itself
/// runs the write's `SET` and the invalidation's `PUBLISH`; no `PUBLISH` of a write leaves
/// the node as a command of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_is_one_command_that_writes_and_publishes() {
    let (redis, nodes) = cluster("wr", &["a"]).await;
    let a = &nodes[0];
    a.cache().set("general", "warm", "x", None).await.unwrap();
    const PUTS: usize = 20;
    let seen = monitored(&redis, async {
        for i in 0..PUTS {
            a.cache()
                .set("general", &format!("k{i}"), format!("v{i}"), None)
                .await
                .unwrap();
        }
    })
    .await;
    let count = |lua: bool, name: &str| {
        seen.iter()
            .filter(|(client, c)| (client == "lua") == lua && c == name)
            .count()
    };
    assert_eq!(count(false, "evalsha"), PUTS, "{seen:?}");
    assert_eq!(count(true, "set"), PUTS, "the script writes: {seen:?}");
    assert_eq!(
        count(true, "publish"),
        PUTS,
        "the script publishes: {seen:?}"
    );
    for name in ["set", "get", "time"] {
        assert_eq!(count(false, name), 0, "a client {name}: {seen:?}");
    }
    // The bus publishes heartbeats on its own; none carries a write, so far fewer than PUTS.
    let heartbeats = count(false, "publish");
    assert!(heartbeats < PUTS / 2, "{heartbeats} publishes: {seen:?}");
    for n in nodes {
        n.shutdown().await;
    }
}

/// A Redis that lost its scripts (`SCRIPT FLUSH`, a restart, a failover to a replica that
/// never loaded them) answers the write `NOSCRIPT`: the node loads the script, sends the
/// write again, acknowledges it, and a peer holding the old value drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_after_script_flush_reloads_the_script_and_reaches_the_peer() {
    let (redis, nodes) = cluster("wf", &["a", "b"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    for round in 0..3u32 {
        let old = format!("old{round}");
        let new = format!("new{round}");
        a.cache()
            .set("general", "k", old.clone(), None)
            .await
            .unwrap();
        until_in_l1(b, "general", "k", &old).await;
        let flushed = blocking(|| redis.command(&[b"SCRIPT", b"FLUSH"])).expect("SCRIPT FLUSH");
        assert_eq!(flushed.as_text().as_deref(), Some("OK"));
        a.cache()
            .set("general", "k", new.clone(), None)
            .await
            .unwrap();
        let stored = blocking(|| redis.keys("*"));
        assert!(!stored.is_empty(), "nothing in the test's Redis");
        let seen = poll(BOUND, || async {
            let v = b.cache().get("general", "k").await.unwrap();
            v.as_deref() == Some(new.as_bytes())
        })
        .await;
        assert!(seen, "round {round}: B never read {new}");
    }
    for n in nodes {
        n.shutdown().await;
    }
}
