//! Invalidation propagation benchmark (run by `cargo xtask bench coherence`).
//!
//! Two caches (nodes `a` and `b`) in this process share one Redis. For each sample, `b` holds
//! the key in its L1; the clock starts right before `a.set(..)` (library call: L2 write, L1
//! put, publish) and stops when the entry is gone from `b`'s L1 (polled tightly). Interleaved
//! with it, with the same redis client and on the same Redis:
//! - `raw pub/sub`: PUBLISH on one connection → received by a subscriber;
//! - `raw SET+PUBLISH`: a SET then a PUBLISH (what any "write L2, then notify" design costs:
//!   two round trips) → received.
//!
//! Usage: `bench_coherence <redis-url> [samples] [max-seconds]`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hybrid_cache::HybridCache;

const KEYS: usize = 100;
const WARMUP: usize = 500;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Summary {
    p50: Duration,
    p99: Duration,
    max: Duration,
    n: usize,
}

fn summary(mut v: Vec<Duration>) -> Summary {
    v.sort();
    Summary {
        p50: pct(&v, 0.50),
        p99: pct(&v, 0.99),
        max: v.last().copied().unwrap_or_default(),
        n: v.len(),
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn node(url: &str, id: &str, ns: &str) -> HybridCache {
    HybridCache::builder()
        .redis_url(url)
        .node_id(id)
        .namespace(ns)
        .build()
        .await
        .expect("cache starts")
}

async fn settled(nodes: &[&HybridCache], deadline: Instant) {
    loop {
        let mut ok = true;
        for n in nodes {
            ok &=
                n.l2_enabled() && n.stats().await.counters.coherence_flushes >= nodes.len() as u64;
        }
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "nodes did not connect/settle");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6390/0".into());
    let samples: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let max_time = Duration::from_secs(args.get(3).and_then(|s| s.parse().ok()).unwrap_or(120));
    let ns = format!("bench{:08x}", rand::random::<u32>());

    let a = node(&url, "a", &ns).await;
    let b = node(&url, "b", &ns).await;
    settled(&[&a, &b], Instant::now() + Duration::from_secs(10)).await;
    let b_l1 = b
        .l1_categories()
        .get("general")
        .expect("general category")
        .clone();

    // Raw pub/sub with the same client library.
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut cmd = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut sub = client.get_async_pubsub().await.expect("pubsub");
    let raw_channel = format!("{ns}:raw");
    sub.subscribe(&raw_channel).await.expect("subscribe");
    let mut stream = sub.into_on_message();
    // Same size as an encoded invalidation of `k42`.
    let payload = hybrid_cache::wire::encode(&hybrid_cache::wire::BusMessage::Invalidation(
        hybrid_cache::wire::Invalidation {
            origin: "a".into(),
            origin_epoch: u64::MAX / 3,
            seq: 12_345,
            category: Some("general".into()),
            target: hybrid_cache::wire::Target::Key("k42".into()),
            kind: hybrid_cache::wire::ChangeKind::Set,
            sent_at_ms: 1_700_000_000_000,
            ack_to: None,
        },
    ))
    .unwrap();

    let (mut prop, mut raw, mut raw2) = (Vec::new(), Vec::new(), Vec::new());
    let mut set_only = Vec::new();
    let mut applied = Vec::new();
    let mut pub_prop = Vec::new();
    let started = Instant::now();
    let mut timed_out = false;
    for i in 0..samples + WARMUP {
        if started.elapsed() > max_time {
            timed_out = true;
            break;
        }
        let record = i >= WARMUP;
        let key = format!("k{}", i % KEYS);

        // Propagation: b holds the key in L1; a writes it.
        let applied_before = b
            .counters()
            .invalidations_received
            .load(std::sync::atomic::Ordering::Relaxed);
        b_l1.put(
            &key,
            bytes::Bytes::from_static(b"old"),
            Duration::from_secs(300),
        )
        .await;
        let t0 = Instant::now();
        a.set("general", &key, format!("v{i}"), None)
            .await
            .expect("set");
        if record {
            set_only.push(t0.elapsed());
        }
        let bound = t0 + Duration::from_secs(2);
        let mut seen_apply = None;
        while b_l1.peek(&key).await.is_some() {
            if seen_apply.is_none()
                && b.counters()
                    .invalidations_received
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > applied_before
            {
                seen_apply = Some(t0.elapsed());
            }
            assert!(
                Instant::now() < bound,
                "invalidation of {key} never reached b"
            );
            // Tight, but light on moka's read buffer (every get is a recorded read).
            for _ in 0..200 {
                std::hint::spin_loop();
            }
            tokio::task::yield_now().await;
        }
        if record {
            prop.push(t0.elapsed());
            if let Some(x) = seen_apply {
                applied.push(x);
            }
        }

        // Publish on A → applied in B's L1 (the invalidation alone, no L2 write first).
        b_l1.put(
            &key,
            bytes::Bytes::from_static(b"old"),
            Duration::from_secs(300),
        )
        .await;
        let t0 = Instant::now();
        hybrid_cache::internals::publish(
            a.bus(),
            Some("general"),
            hybrid_cache::wire::Target::Key(key.clone()),
            hybrid_cache::wire::ChangeKind::Invalidate,
            false,
            false,
            None,
        )
        .await
        .expect("published");
        let bound = t0 + Duration::from_secs(2);
        while b_l1.peek(&key).await.is_some() {
            assert!(Instant::now() < bound, "invalidation never reached b");
            for _ in 0..200 {
                std::hint::spin_loop();
            }
            tokio::task::yield_now().await;
        }
        if record {
            pub_prop.push(t0.elapsed());
        }

        // Raw PUBLISH → received.
        let t0 = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&raw_channel)
            .arg(&payload)
            .query_async(&mut cmd)
            .await
            .expect("publish");
        tokio::time::timeout(Duration::from_secs(2), stream.next())
            .await
            .expect("raw message received")
            .expect("stream open");
        if record {
            raw.push(t0.elapsed());
        }

        // Raw SET, then PUBLISH → received.
        let t0 = Instant::now();
        let _: () = redis::cmd("SET")
            .arg(format!("{ns}:rawkey"))
            .arg(&payload)
            .arg("PX")
            .arg(60_000)
            .query_async(&mut cmd)
            .await
            .expect("set");
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&raw_channel)
            .arg(&payload)
            .query_async(&mut cmd)
            .await
            .expect("publish");
        tokio::time::timeout(Duration::from_secs(2), stream.next())
            .await
            .expect("raw message received")
            .expect("stream open");
        if record {
            raw2.push(t0.elapsed());
        }
    }
    let stats = b.stats().await.counters;
    let (p, r, r2) = (summary(prop), summary(raw), summary(raw2));
    let so = summary(set_only);
    let ap = summary(applied);
    let pp = summary(pub_prop);
    println!(
        "hybrid-cache coherence benchmark ({ns}, {} samples each{})",
        p.n,
        if timed_out {
            ", stopped by the time bound"
        } else {
            ""
        }
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "", "p50 (us)", "p99 (us)", "max (us)"
    );
    for (name, s) in [
        ("raw pub/sub (PUBLISH -> recv)", &r),
        ("raw SET+PUBLISH -> recv", &r2),
        ("a.set returns (L2 write+publish)", &so),
        ("b's bus applied (when still present)", &ap),
        ("propagation (a.set -> gone in b)", &p),
        ("publish on a -> applied in b's L1", &pp),
    ] {
        println!(
            "{name:<34} {:>10.1} {:>10.1} {:>10.1}",
            us(s.p50),
            us(s.p99),
            us(s.max)
        );
    }
    println!(
        "ratio publish->applied / raw pub/sub: p50 {:.2}x  p99 {:.2}x  (target p99 <= 1.5x)",
        us(pp.p50) / us(r.p50),
        us(pp.p99) / us(r.p99)
    );
    println!(
        "ratio propagation/raw pub/sub:      p50 {:.2}x  p99 {:.2}x",
        us(p.p50) / us(r.p50),
        us(p.p99) / us(r.p99)
    );
    println!(
        "ratio propagation/raw SET+PUBLISH:  p50 {:.2}x  p99 {:.2}x",
        us(p.p50) / us(r2.p50),
        us(p.p99) / us(r2.p99)
    );
    println!(
        "b: invalidations_received={} coherence_flushes={} stale_fills_rejected={}",
        stats.invalidations_received, stats.coherence_flushes, stats.stale_fills_rejected
    );
    a.shutdown().await;
    b.shutdown().await;
}
