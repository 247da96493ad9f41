//! Multi-node behaviour with real node processes on loopback: gossip membership and
//! cluster stats, failure detection after SIGKILL, rejoin, invalidations over QUIC while
//! Redis is down, and the isolation rule.

mod support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::RedisServer;

fn free_udp_port() -> u16 {
    loop {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        drop(s);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && port != support::FORBIDDEN_PORT
        {
            return port;
        }
    }
}

struct Spec {
    id: String,
    http: u16,
    gossip: u16,
}

struct Proc {
    spec: Spec,
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Proc {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.http)
    }
    fn spawn(&mut self) {
        let mut cmd = support::hybrid_cache_command();
        let log = std::fs::File::create(std::env::temp_dir().join(format!(
            "hc-cluster-test-{}-{}.log",
            self.spec.id, self.spec.http
        )))
        .unwrap();
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn node"));
    }
    fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.sigkill();
    }
}

fn cluster(n: usize, redis: Option<&str>, extra: &[&str]) -> Vec<Proc> {
    cluster_env(n, redis, extra, &[])
}

fn cluster_env(n: usize, redis: Option<&str>, extra: &[&str], env: &[(&str, &str)]) -> Vec<Proc> {
    cluster_toml(n, redis, extra, env, "")
}

/// Like [`cluster_env`], with `extra_toml` appended to the nodes' shared config file.
fn cluster_toml(
    n: usize,
    redis: Option<&str>,
    extra: &[&str],
    env: &[(&str, &str)],
    extra_toml: &str,
) -> Vec<Proc> {
    let specs: Vec<Spec> = (1..=n)
        .map(|i| Spec {
            id: format!("n{i}"),
            http: support::free_port(),
            gossip: free_udp_port(),
        })
        .collect();
    let gossip_addrs: Vec<String> = specs
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.gossip))
        .collect();
    let ns = format!("t{}", rand_suffix());
    // Written once, before any node starts: rewriting it per node would let a starting node
    // read a truncated file (and silently use the default namespace).
    let config_path = write_ns_config(&ns, extra_toml);
    specs
        .into_iter()
        .map(|spec| {
            let peers: Vec<String> = gossip_addrs
                .iter()
                .filter(|a| **a != format!("127.0.0.1:{}", spec.gossip))
                .cloned()
                .collect();
            let mut args = vec![
                "node".to_string(),
                "--node-id".into(),
                spec.id.clone(),
                "--http".into(),
                format!("127.0.0.1:{}", spec.http),
                "--gossip".into(),
                format!("127.0.0.1:{}", spec.gossip),
                "--peers".into(),
                peers.join(","),
            ];
            if let Some(url) = redis {
                args.push("--redis-url".into());
                args.push(url.to_string());
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            let mut p = Proc {
                spec,
                child: None,
                args,
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            p.args.push("--config".into());
            p.args.push(config_path.clone());
            p.spawn();
            p
        })
        .collect()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

fn write_ns_config(ns: &str, extra_toml: &str) -> String {
    let path = std::env::temp_dir().join(format!("hc-cluster-{ns}.toml"));
    std::fs::write(
        &path,
        // Gossip without TLS needs the cluster secret (it authenticates every packet).
        format!(
            "namespace = \"{ns}\"\nisolation_grace_ms = 1000\ncluster_secret = \"cluster-test-{ns}\"\n{extra_toml}"
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn json(url: String) -> Option<Value> {
    client().get(url).send().await.ok()?.json().await.ok()
}

async fn states(node: &Proc) -> Option<Vec<(String, String)>> {
    let v = json(format!("{}/v1/cluster/stats", node.url())).await?;
    Some(
        v["nodes"]
            .as_array()?
            .iter()
            .map(|n| {
                (
                    n["node_id"].as_str().unwrap_or_default().to_string(),
                    n["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    )
}

async fn wait_for(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Whether `node`'s `/health` answers `status` (`ok`, `degraded`, `isolated`).
async fn health_is(node: &Proc, status: &str) -> bool {
    json(format!("{}/health", node.url()))
        .await
        .is_some_and(|h| h["status"] == status)
}

/// `node`'s `/metrics` text.
async fn metrics_of(node: &Proc) -> String {
    client()
        .get(format!("{}/metrics", node.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn sees(node: &Proc, id: &str, state: &str) -> bool {
    states(node)
        .await
        .is_some_and(|s| s.iter().any(|(n, st)| n == id && st == state))
}

/// Waits until every node is alive to every other, healthy, and has heard from every other
/// one (first contact flushes L1 once: one flush for the link, one per peer), so later
/// flushes mean real events.
async fn settle(nodes: &[Proc]) {
    let want = nodes.len() as u64;
    let healthy = wait_for(Duration::from_secs(10), async || {
        if !all_alive(nodes).await {
            return false;
        }
        for n in nodes {
            match json(format!("{}/health", n.url())).await {
                Some(h) if h["status"] == "ok" => {}
                _ => return false,
            }
            match json(format!("{}/v1/stats", n.url())).await {
                Some(s) if s["counters"]["coherence_flushes"].as_u64() >= Some(want) => {}
                _ => return false,
            }
        }
        true
    })
    .await;
    assert!(healthy.is_some(), "cluster healthy");
}

async fn all_alive(nodes: &[Proc]) -> bool {
    for n in nodes {
        if n.child.is_none() {
            continue;
        }
        match states(n).await {
            Some(s) if s.len() == nodes.len() && s.iter().all(|(_, st)| st == "alive") => {}
            _ => return false,
        }
    }
    true
}

#[tokio::test]
async fn membership_stats_failure_detection_and_rejoin() {
    let mut nodes = cluster(3, None, &[]);
    let t = wait_for(Duration::from_secs(10), async || all_alive(&nodes).await).await;
    let t = t.expect("all nodes alive everywhere within 10 s");
    eprintln!("converged in {t:?}");

    // Some traffic, then totals must equal the sum of per-node stats.
    let c = client();
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..=i {
            c.put(format!("{}/v1/cache/general/k{k}", n.url()))
                .body("v")
                .send()
                .await
                .unwrap();
            c.get(format!("{}/v1/cache/general/k{k}", n.url()))
                .send()
                .await
                .unwrap();
        }
        c.get(format!("{}/v1/cache/general/missing", n.url()))
            .send()
            .await
            .unwrap();
    }
    let ok = wait_for(Duration::from_secs(5), async || {
        let Some(cs) = json(format!("{}/v1/cluster/stats", nodes[0].url())).await else {
            return false;
        };
        let mut sum = (0, 0, 0);
        for n in &nodes {
            let Some(s) = json(format!("{}/v1/stats", n.url())).await else {
                return false;
            };
            let size: u64 = s["l1_caches"]
                .as_object()
                .unwrap()
                .values()
                .map(|c| c["size"].as_u64().unwrap())
                .sum();
            sum.0 += size;
            sum.1 += s["counters"]["hits_l1"].as_u64().unwrap();
            sum.2 += s["counters"]["misses"].as_u64().unwrap();
        }
        let t = &cs["totals"];
        t["nodes_alive"] == 3
            && t["l1_entries"].as_u64() == Some(sum.0)
            && t["hits_l1"].as_u64() == Some(sum.1)
            && t["misses"].as_u64() == Some(sum.2)
            && cs["missing"].as_array().is_some_and(|m| m.is_empty())
            && cs["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["stats"]["node_id"] == n["node_id"])
    })
    .await;
    assert!(
        ok.is_some(),
        "cluster totals equal the sum of per-node stats"
    );

    // SIGKILL n3: dead on both survivors within the bound (2 s default + polling slack).
    nodes[2].sigkill();
    let killed = Instant::now();
    let detect = wait_for(Duration::from_secs(4), async || {
        sees(&nodes[0], "n3", "dead").await && sees(&nodes[1], "n3", "dead").await
    })
    .await;
    let detect = detect.expect("n3 dead on both survivors");
    eprintln!(
        "SIGKILL detected as dead on both survivors after {:?}",
        killed.elapsed()
    );
    assert!(
        detect <= Duration::from_millis(2500),
        "detection took {detect:?}"
    );
    let cs = json(format!("{}/v1/cluster/stats", nodes[0].url()))
        .await
        .unwrap();
    assert_eq!(cs["totals"]["nodes_alive"], 2);
    let m = metrics_of(&nodes[0]).await;
    assert!(m.contains("hc_cluster_nodes{state=\"dead\"} 1"), "{m}");
    assert!(m.contains("hc_cluster_nodes{state=\"alive\"} 2"), "{m}");
    assert!(m.contains("hc_cluster_members{state=\"dead\"} 1"), "{m}");
    assert!(m.contains("hc_cluster_members{state=\"alive\"} 2"), "{m}");
    let sent = m
        .lines()
        .find_map(|l| l.strip_prefix("hc_gossip_bytes_sent_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(sent.is_some_and(|b| b > 0), "{m}");
    assert!(m.contains("hc_gossip_bytes_received_total "), "{m}");

    // Restart with the same id: alive again everywhere.
    nodes[2].spawn();
    let back = wait_for(Duration::from_secs(10), async || all_alive(&nodes).await).await;
    if back.is_none() {
        for n in &nodes {
            eprintln!("{} sees {:?}", n.spec.id, states(n).await);
        }
    }
    assert!(back.is_some(), "restarted node rejoins as alive");
}

#[tokio::test]
async fn opt_in_invalidations_travel_over_quic_while_redis_is_down() {
    let mut redis = RedisServer::start();
    // The original module's behaviour (serve L1, accept local writes during an outage) is
    // an explicit opt-in; without it the nodes fail closed (see coherence_redis.rs).
    let nodes = cluster_env(
        3,
        Some(&redis.url()),
        &[],
        &[("HC_SERVE_STALE_ON_OUTAGE", "1")],
    );
    settle(&nodes).await;
    let c = client();
    let (a, b) = (&nodes[0], &nodes[1]);
    let key = |n: &Proc| format!("{}/v1/cache/roles/get_user_roles:1", n.url());
    // B caches the old value in L1. (Retried: under load a publish can time out, and then
    // peers repair L2 conservatively, which reads as a miss.)
    let cached = wait_for(Duration::from_secs(5), async || {
        c.put(key(a)).body("old").send().await.unwrap();
        let r = c.get(key(b)).send().await.unwrap();
        r.text().await.unwrap() == "old"
    })
    .await;
    assert!(cached.is_some(), "B read A's value");
    // B's read may have filled L1 just before A's own invalidation of that write reached B
    // (the propagation window); wait until B really serves it from L1.
    let in_l1 = wait_for(Duration::from_secs(5), async || {
        let r = c.get(key(b)).send().await.unwrap();
        let from_l1 = r.headers().get("x-cache").is_some_and(|v| v == "L1");
        from_l1 && r.text().await.unwrap() == "old"
    })
    .await;
    assert!(in_l1.is_some(), "B caches A's value in L1");

    redis.kill();
    let degraded = wait_for(Duration::from_secs(5), async || {
        health_is(a, "degraded").await
    })
    .await;
    assert!(degraded.is_some(), "A notices the outage");
    // Still answers from L1 while degraded.
    let r = c.get(key(b)).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Update on A: B's L1 copy must go, via QUIC.
    assert_eq!(
        c.put(key(a)).body("new").send().await.unwrap().status(),
        204
    );
    let gone = wait_for(Duration::from_secs(2), async || {
        let r = c.get(key(b)).send().await.unwrap();
        r.status() == 404
    })
    .await;
    assert!(
        gone.is_some(),
        "B dropped its stale copy through the QUIC fallback"
    );
    eprintln!("QUIC invalidation applied after {gone:?}");
    let r = c.get(key(a)).send().await.unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "new",
        "A applied its write locally"
    );
}

#[tokio::test]
async fn isolated_node_answers_503_and_recovers() {
    let mut redis = RedisServer::start();
    let mut nodes = cluster(2, Some(&redis.url()), &[]);
    let ready = wait_for(Duration::from_secs(10), async || {
        all_alive(&nodes).await && health_is(&nodes[0], "ok").await
    })
    .await;
    assert!(ready.is_some());
    let c = client();
    let url = format!("{}/v1/cache/menus/m", nodes[0].url());
    c.put(&url).body("before").send().await.unwrap();

    // Cut n1 off from everything: Redis down and its only peer dead.
    redis.kill();
    nodes[1].sigkill();
    let isolated = wait_for(Duration::from_secs(6), async || {
        let r = c
            .get(format!("{}/health", nodes[0].url()))
            .send()
            .await
            .unwrap();
        r.status() == 503
            && r.json::<Value>()
                .await
                .is_ok_and(|h| h["status"] == "isolated")
    })
    .await;
    assert!(isolated.is_some(), "n1 reports isolated with HTTP 503");
    // It cannot hear about changes any more, so it does not serve its L1, and it cannot
    // vouch for a miss either.
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(
        r.status(),
        503,
        "an isolated node answers 503 rather than risk a stale read"
    );

    // Redis back: healthy again, and the L1 was flushed (it cannot know what changed).
    redis.restart();
    let ok = wait_for(Duration::from_secs(5), async || {
        health_is(&nodes[0], "ok").await
    })
    .await;
    assert!(ok.is_some(), "n1 recovers by itself");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 404, "no pre-isolation value served from L1");
}

#[tokio::test]
async fn single_node_without_redis_or_peers_is_never_isolated() {
    let port = support::free_port();
    let mut child = support::hybrid_cache_command()
        .args(["node", "--http", &format!("127.0.0.1:{port}")])
        .env("HC_ISOLATION_GRACE_MS", "100")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    let up = wait_for(Duration::from_secs(10), async || {
        json(url.clone()).await.is_some()
    })
    .await;
    assert!(up.is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let h = json(url).await.unwrap();
    assert_eq!(h["status"], "ok");
    let _ = child.kill();
    let _ = child.wait();
}

/// Redis stops answering for every node while the nodes still reach each other: the lease
/// is kept over QUIC (peer pings and grants), so L1 is still served; a delete is
/// acknowledged only once every peer acked it, and when Redis comes back with the old value
/// still in it, no node reads that value from L2 (each replays the delete first). With a
/// peer dead, deletes are refused (it might be alive behind a partition), reads go on.
#[tokio::test]
async fn without_redis_the_lease_rides_on_quic_and_deletes_need_every_peer() {
    let redis = RedisServer::start();
    // A false `dead` (a suspicion timing out on a loaded machine) would flush L1 and leave
    // nothing to serve from it: a longer suspicion than the default 600 ms.
    let mut nodes = cluster_toml(
        3,
        Some(&redis.url()),
        &[],
        &[],
        "gossip_suspect_timeout_ms = 2000\n",
    );
    settle(&nodes).await;
    let c = client();
    let key = |n: &Proc, k: &str| format!("{}/v1/cache/roles/{k}", n.url());
    for k in ["k1", "k2"] {
        assert_eq!(
            c.put(key(&nodes[0], k))
                .body("old")
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
    }
    // Every node serves both keys from L1.
    let cached = wait_for(Duration::from_secs(5), async || {
        for n in &nodes {
            for k in ["k1", "k2"] {
                let r = c.get(key(n, k)).send().await.unwrap();
                let l1 = r.headers().get("x-cache").is_some_and(|v| v == "L1");
                if !l1 || r.text().await.unwrap() != "old" {
                    return false;
                }
            }
        }
        true
    })
    .await;
    assert!(cached.is_some(), "every node caches the keys in L1");

    // Redis stops answering (SIGSTOP: its data, the old values, stays).
    redis.pause();
    let served = wait_for(Duration::from_secs(10), async || {
        let mut all = true;
        for n in &nodes {
            let degraded = health_is(n, "degraded").await;
            let r = c.get(key(n, "k1")).send().await.unwrap();
            let l1 = r.headers().get("x-cache").is_some_and(|v| v == "L1");
            all &= degraded && l1;
        }
        all
    })
    .await;
    if served.is_none() {
        for n in &nodes {
            let stats = json(format!("{}/v1/stats", n.url())).await;
            let metrics = metrics_of(n).await;
            let flushes: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("hc_coherence_flushes_total"))
                .collect();
            eprintln!(
                "{}: coherence {:?} flushes {flushes:?}",
                n.url(),
                stats.map(|s| s["coherence"].clone())
            );
        }
    }
    assert!(
        served.is_some(),
        "with Redis down, every node serves L1 under the peer lease"
    );

    // A delete on n1 is acknowledged once n2 and n3 acked it over QUIC...
    let r = c.delete(key(&nodes[0], "k1")).send().await.unwrap();
    assert_eq!(r.status(), 204, "delete while redis is down");
    // ...so no node serves the old value afterwards.
    for n in &nodes {
        let r = c.get(key(n, "k1")).send().await.unwrap();
        let status = r.status().as_u16();
        assert_ne!(
            (status, r.text().await.unwrap()),
            (200, "old".to_string()),
            "{} served the deleted value",
            n.url()
        );
    }

    // Redis comes back with k1 = old still stored: nobody may read it from there.
    redis.resume();
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let mut seen_ok = false;
    while std::time::Instant::now() < deadline {
        for n in &nodes {
            let r = c.get(key(n, "k1")).send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert_ne!(
                (status, body.as_str()),
                (200, "old"),
                "{} read the deleted value back from L2",
                n.url()
            );
            seen_ok |= status == 404;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen_ok, "after Redis returned, k1 reads as a miss");

    // Redis down again, and n3 dead: n1 and n2 keep their lease (after a flush), but a
    // delete cannot be acknowledged (n3 stays in the set that must ack).
    let back = wait_for(Duration::from_secs(10), async || {
        health_is(&nodes[0], "ok").await
    })
    .await;
    assert!(back.is_some(), "n1 healthy again");
    redis.pause();
    let peer_mode = wait_for(Duration::from_secs(10), async || {
        health_is(&nodes[0], "degraded").await
    })
    .await;
    assert!(peer_mode.is_some(), "n1 notices the second outage");
    nodes[2].sigkill();
    let dead = wait_for(Duration::from_secs(10), async || {
        sees(&nodes[0], "n3", "dead").await
    })
    .await;
    assert!(dead.is_some(), "n1 declares n3 dead");
    let r = c.delete(key(&nodes[0], "k2")).send().await.unwrap();
    assert_eq!(r.status(), 503, "a delete n3 cannot ack is refused");
    redis.resume();
}

/// Sends `signal` (`STOP`, `CONT`) to a node's process.
fn signal(node: &Proc, signal: &str) {
    let pid = node.child.as_ref().expect("node running").id();
    let ok = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{signal} {pid}");
}

/// The `hc_l2_backlog` gauge of `node` (None if it does not answer).
async fn backlog_of(node: &Proc) -> Option<u64> {
    let r = client()
        .get(format!("{}/metrics", node.url()))
        .send()
        .await
        .ok()?;
    let text = r.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("hc_l2_backlog "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Issue #23, item 3. A delete acknowledged over QUIC while Redis is down waits for L2 in
/// the peers' replay backlogs; a node restarted meanwhile has none of it. When Redis comes
/// back (with the deleted value still stored), the restarted node must not read that value
/// from L2 before the peers replayed the delete: the replay hold makes it ask every live
/// peer for its backlog first, and holds L2 (503) until they answered.
///
/// The peers are paused across n3's restart and Redis's return (slow peers: a GC-like
/// stall, a loaded host), so n3 cannot hear of them before Redis is back: a restarted node
/// that meets its peers while Redis is still down is already covered by the first-contact
/// flush, which, without Redis, marks every category for invalidation in L2. Without the
/// hold, n3 reads "old" from L2 as soon as its link is up.
#[tokio::test]
async fn a_node_restarted_while_redis_is_down_never_reads_a_delete_waiting_in_peer_backlogs() {
    let redis = RedisServer::start();
    let mut nodes = cluster_toml(
        3,
        Some(&redis.url()),
        &[],
        &[],
        // The hold lasts at least the gossip probe period plus this after n3's start (the
        // time gossip needs to hear of a peer or declare it dead): longer than the pause.
        "gossip_suspect_timeout_ms = 8000
",
    );
    settle(&nodes).await;
    let c = client();
    let key = |n: &Proc| format!("{}/v1/cache/roles/k", n.url());
    let r = c.put(key(&nodes[0])).body("old").send().await.unwrap();
    assert_eq!(r.status(), 204);

    // Redis stops answering (SIGSTOP: its data, "old", stays), every node notices.
    redis.pause();
    let degraded = wait_for(Duration::from_secs(10), async || {
        for n in &nodes {
            if !health_is(n, "degraded").await {
                return false;
            }
        }
        true
    })
    .await;
    assert!(degraded.is_some(), "every node notices the outage");
    // The delete is acknowledged over QUIC: n2 and n3 keep it for replay into L2.
    let r = c.delete(key(&nodes[0])).send().await.unwrap();
    assert_eq!(r.status(), 204, "delete acked by every peer over QUIC");
    assert!(backlog_of(&nodes[1]).await.unwrap_or(0) >= 1, "n2 keeps it");

    // The peers stall; n3 restarts, with an empty backlog, while Redis is still down.
    signal(&nodes[0], "STOP");
    signal(&nodes[1], "STOP");
    nodes[2].sigkill();
    let restarted = Instant::now();
    nodes[2].spawn();
    let up = wait_for(Duration::from_secs(10), async || {
        json(format!("{}/health", nodes[2].url())).await.is_some()
    })
    .await;
    assert!(up.is_some(), "the restarted n3 answers HTTP");

    // Redis comes back with "old" stored; the peers resume 3 s after n3's start.
    redis.resume();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    while restarted.elapsed() < Duration::from_secs(3) {
        let r = c.get(key(&nodes[2])).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        *statuses.entry(status).or_default() += 1;
        if (status, body.as_str()) == (200, "old") {
            signal(&nodes[0], "CONT");
            signal(&nodes[1], "CONT");
            panic!("the restarted n3 read the deleted value from L2 before the peers replayed ({statuses:?})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&nodes[0], "CONT");
    signal(&nodes[1], "CONT");
    // Until every backlog is replayed, and a while after, n3 never answers "old".
    let replayed = wait_for(Duration::from_secs(20), async || {
        let r = c.get(key(&nodes[2])).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        *statuses.entry(status).or_default() += 1;
        assert_ne!(
            (status, body.as_str()),
            (200, "old"),
            "n3 read the deleted value"
        );
        let mut empty = true;
        for n in &nodes {
            empty &= backlog_of(n).await == Some(0);
        }
        empty && status == 404
    })
    .await;
    assert!(
        replayed.is_some(),
        "every backlog replayed and k reads as a miss on n3 (statuses {statuses:?})"
    );
    eprintln!("n3's answers since Redis returned: {statuses:?}");
    for n in &nodes {
        let r = c.get(key(n)).send().await.unwrap();
        let status = r.status().as_u16();
        assert_ne!((status, r.text().await.unwrap()), (200, "old".to_string()));
    }
}
