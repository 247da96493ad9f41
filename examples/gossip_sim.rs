//! Deterministic membership simulation at scale (virtual time, simulated network).
//!
//! `cargo run --release --example gossip_sim -- --nodes 1000,5000 [--loss 0.01] [--kills 10]
//! [--partition-secs 5] [--steady-secs 20] [--seed 1]` prints one Markdown table row per size.

use std::time::Duration;

use hybrid_cache::gossip::sim::{run, SimConfig};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "—".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = arg(&args, "--nodes")
        .unwrap_or_else(|| "1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let loss: f64 = arg(&args, "--loss")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.01);
    let kills: usize = arg(&args, "--kills")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let partition: u64 = arg(&args, "--partition-secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let steady: u64 = arg(&args, "--steady-secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = arg(&args, "--seed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    println!(
        "| nodes | loss | convergence ms | detection p50 / p99 / max ms (kills) | false dead / node-hour | steady B/s per node | heal after {partition} s partition ms | wall s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let mut cfg = SimConfig::new(n);
        cfg.loss = loss;
        cfg.kills = kills;
        cfg.partition = (partition > 0).then(|| Duration::from_secs(partition));
        cfg.seed = seed;
        cfg.steady = Duration::from_secs(steady.max(1));
        let wall = std::time::Instant::now();
        let r = run(cfg);
        let detected = r.detections.iter().flatten().count();
        let max = r.detections.iter().flatten().max().copied();
        let per_hour = if r.observed_node_secs > 0.0 {
            r.false_downs as f64 / (r.observed_node_secs / 3600.0)
        } else {
            0.0
        };
        println!(
            "| {n} | {:.1} % | {} | {} / {} / {} ({detected}/{}) | {per_hour:.3} ({} events) | {:.0} | {} | {:.1} |",
            loss * 100.0,
            ms(r.convergence),
            ms(r.detection_quantile(0.5)),
            ms(r.detection_quantile(0.99)),
            ms(max),
            r.detections.len(),
            r.false_downs,
            r.steady_bytes_per_node_sec,
            ms(r.partition_heal),
            wall.elapsed().as_secs_f64(),
        );
    }
}
