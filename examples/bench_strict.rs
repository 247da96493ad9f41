//! Strict vs bounded write latency (run by `scripts/bench-strict.sh`).
//!
//! Three caches (`a`, `b`, `c`) in this process share one Redis, like three nodes on
//! loopback; `permissions` is strict, `general` bounded. Every L1 holds the key before each
//! write, so a strict write really waits for the other two nodes' acks. Interleaved, per
//! sample: a bounded `set` on `a`, a strict `set` on `a`, and a raw `SET` + `PUBLISH` with the
//! same client library (the floor of any "write L2, then notify" design). Several
//! repetitions; each prints p50/p99 per kind, then the min/median/max over repetitions of the
//! p99 ratios strict/bounded and strict/raw.
//!
//! Usage: `bench_strict <redis-url> [samples-per-rep] [reps]`.

use std::time::{Duration, Instant};

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
    let ns = format!("bstrict{:08x}", rand::random::<u32>());
    let nodes = [
        node(&url, "a", &ns).await,
        node(&url, "b", &ns).await,
        node(&url, "c", &ns).await,
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|n| n.shared().lease.held()) {
        assert!(Instant::now() < deadline, "nodes did not get their lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let first-contact flushes pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let a = &nodes[0];
    let (mut r_sb, mut r_sr) = (Vec::new(), Vec::new());
    println!(
        "{:>4} {:>13} {:>13} {:>13}   (ms, p50/p99, {samples} samples each)",
        "rep", "bounded", "strict", "raw SET+PUB"
    );
    for rep in 0..reps {
        let (mut bounded, mut strict, mut rawv) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..samples {
            let key = format!("k{}", i % 50);
            for n in &nodes {
                let _ = n.get("general", &key).await;
                let _ = n.get("permissions", &key).await;
            }
            let t = Instant::now();
            a.set("general", &key, "v", None)
                .await
                .expect("bounded set");
            bounded.push(t.elapsed());
            let t = Instant::now();
            a.set("permissions", &key, "v", None)
                .await
                .expect("strict set");
            strict.push(t.elapsed());
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
