//! Strict vs bounded write latency (run by `cargo xtask bench strict`).
//!
//! Three caches (`a`, `b`, `c`) in this process share one Redis, like three nodes on
//! loopback; `permissions` is strict, `general` bounded. Every L1 holds the key before each
//! write, so a strict write really waits for the other two nodes' acks. Interleaved, per
//! sample: a bounded `set` on `a`, a strict `set` on `a`, and a raw `SET` + `PUBLISH` with the
//! same client library (the floor of any "write L2, then notify" design). Several
//! repetitions; each prints p50/p99 per kind, then the min/median/max over repetitions of the
//! p99 ratios strict/bounded and strict/raw.
//!
//! With `blackhole` as the fourth argument, node `c` reaches Redis through an in-process TCP
//! proxy that, after the warm-up, stops forwarding (TCP stays open, nothing flows: one
//! node's Redis link blackholed). Then only strict and bounded writes on `a` are timed, and
//! the strict p99 is compared with B + 20 ms (a write must not wait for the cut-off node
//! longer than its lease can last).
//!
//! Usage: `bench_strict <redis-url> [samples-per-rep] [reps] [blackhole]`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use hybrid_cache::HybridCache;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn node(url: &str, id: &str, ns: &str) -> HybridCache {
    HybridCache::builder()
        .redis_url(url)
        .node_id(id)
        .namespace(ns)
        .strict("permissions")
        .build()
        .await
        .expect("cache starts")
}

/// A TCP proxy to `upstream` on a free loopback port; while `hole` is set it forwards
/// nothing (connections stay open). Returns its address.
async fn blackhole_proxy(upstream: std::net::SocketAddr, hole: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy binds");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            for (mut r, mut w) in [
                (
                    Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                ),
                (Box::new(sr), Box::new(cw)),
            ] {
                let hole = hole.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        while hole.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if w.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    format!("redis://{addr}/0")
}

/// Strict and bounded writes on `a` while `c`'s Redis link is blackholed.
async fn blackhole_run(url: &str, samples: usize, reps: usize) {
    let ns = format!("bstricthole{:08x}", rand::random::<u32>());
    let upstream: std::net::SocketAddr = url
        .trim_start_matches("redis://")
        .trim_end_matches("/0")
        .parse()
        .expect("redis url of the form redis://host:port/0");
    let hole = Arc::new(AtomicBool::new(false));
    let c_url = blackhole_proxy(upstream, hole.clone()).await;
    let nodes = three_nodes([url, url, &c_url], &ns).await;
    let bound = nodes[0].config().staleness_bound;
    println!(
        "{:>4} {:>13} {:>13}   (ms, p50/p99, {samples} samples each from the moment node c's link is cut; B = {} ms)",
        "rep",
        "bounded",
        "strict",
        bound.as_millis()
    );
    let mut p99s = Vec::new();
    for rep in 0..reps {
        // c reconnected and holds its lease again, then its link is cut: the writes below
        // start while Redis still counts c as a subscriber (until c gives the link up).
        hole.store(false, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes[2].lease_held() {
            assert!(Instant::now() < deadline, "c did not get its lease back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        hole.store(true, Ordering::Relaxed);
        let (mut bounded, mut strict) = (Vec::new(), Vec::new());
        let (mut waited, cut) = (0usize, Instant::now());
        for i in 0..samples {
            let key = format!("k{}", i % 50);
            let (b, took) = bounded_then_strict(&nodes[..2], &key).await;
            bounded.push(b);
            if took >= bound / 2 {
                waited += 1;
            }
            strict.push(took);
        }
        let span = cut.elapsed();
        bounded.sort();
        strict.sort();
        println!(
            "{rep:>4} {:>6.2}/{:<6.2} {:>6.2}/{:<6.2}   max {:.2}; {waited} strict writes waited >= B/2 (run {:.1} s)",
            ms(pct(&bounded, 0.5)),
            ms(pct(&bounded, 0.99)),
            ms(pct(&strict, 0.5)),
            ms(pct(&strict, 0.99)),
            ms(strict.last().copied().unwrap_or_default()),
            span.as_secs_f64(),
        );
        p99s.push(ms(pct(&strict, 0.99)));
    }
    let target = ms(bound) + 20.0;
    let (lo, med, hi) = min_med_max(p99s);
    println!(
        "strict p99 with c blackholed: min {lo:.2}  median {med:.2}  max {hi:.2} ms   (target <= B + 20 = {target:.0} ms; median/target {:.2})",
        med / target
    );
    hole.store(false, Ordering::Relaxed);
    for n in &nodes {
        n.shutdown().await;
    }
}

/// Three caches `a`, `b`, `c` on `urls`, once each holds its lease (plus time for the
/// first-contact flushes).
async fn three_nodes(urls: [&str; 3], ns: &str) -> [HybridCache; 3] {
    let nodes = [
        node(urls[0], "a", ns).await,
        node(urls[1], "b", ns).await,
        node(urls[2], "c", ns).await,
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|n| n.lease_held()) {
        assert!(Instant::now() < deadline, "nodes did not get their lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes
}

/// One sample: every cache in `holders` reads `key` into its L1, then the first one writes
/// it bounded and strict. Returns both write latencies.
async fn bounded_then_strict(holders: &[HybridCache], key: &str) -> (Duration, Duration) {
    for n in holders {
        let _ = n.get("general", key).await;
        let _ = n.get("permissions", key).await;
    }
    let a = &holders[0];
    let t = Instant::now();
    a.set("general", key, "v", None).await.expect("bounded set");
    let bounded = t.elapsed();
    let t = Instant::now();
    a.set("permissions", key, "v", None)
        .await
        .expect("strict set");
    (bounded, t.elapsed())
}

fn min_med_max(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(url) = args.get(1).cloned() else {
        eprintln!("usage: bench_strict <redis-url> [samples-per-rep] [reps]");
        std::process::exit(2);
    };
    let samples: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    if args.get(4).map(String::as_str) == Some("blackhole") {
        blackhole_run(&url, samples, reps).await;
        return;
    }
    let ns = format!("bstrict{:08x}", rand::random::<u32>());
    let nodes = three_nodes([&url, &url, &url], &ns).await;
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let (mut r_sb, mut r_sr) = (Vec::new(), Vec::new());
    println!(
        "{:>4} {:>13} {:>13} {:>13}   (ms, p50/p99, {samples} samples each)",
        "rep", "bounded", "strict", "raw SET+PUB"
    );
    for rep in 0..reps {
        let (mut bounded, mut strict, mut rawv) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..samples {
            let key = format!("k{}", i % 50);
            let (b, st) = bounded_then_strict(&nodes, &key).await;
            bounded.push(b);
            strict.push(st);
            let t = Instant::now();
            let _: () = redis::cmd("SET")
                .arg(format!("{ns}:raw:{key}"))
                .arg("v")
                .query_async(&mut raw)
                .await
                .expect("SET");
            let _: i64 = redis::cmd("PUBLISH")
                .arg(format!("{ns}:rawch"))
                .arg("v")
                .query_async(&mut raw)
                .await
                .expect("PUBLISH");
            rawv.push(t.elapsed());
        }
        for v in [&mut bounded, &mut strict, &mut rawv] {
            v.sort();
        }
        println!(
            "{rep:>4} {:>6.2}/{:<6.2} {:>6.2}/{:<6.2} {:>6.2}/{:<6.2}",
            ms(pct(&bounded, 0.5)),
            ms(pct(&bounded, 0.99)),
            ms(pct(&strict, 0.5)),
            ms(pct(&strict, 0.99)),
            ms(pct(&rawv, 0.5)),
            ms(pct(&rawv, 0.99)),
        );
        r_sb.push(ms(pct(&strict, 0.99)) / ms(pct(&bounded, 0.99)));
        r_sr.push(ms(pct(&strict, 0.99)) / ms(pct(&rawv, 0.99)));
    }
    let (a1, b1, c1) = min_med_max(r_sb);
    let (a2, b2, c2) = min_med_max(r_sr);
    println!("p99 strict/bounded     min {a1:.2}  median {b1:.2}  max {c1:.2}   (target <= 3)");
    println!("p99 strict/raw SET+PUB min {a2:.2}  median {b2:.2}  max {c2:.2}");
    for n in &nodes {
        n.shutdown().await;
    }
}
