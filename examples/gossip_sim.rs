//! Deterministic membership simulation at scale (virtual time, simulated network).
//!
//! `cargo run --release --example gossip_sim -- --nodes 1000,5000 [--loss 0.01] [--kills 10]
//! [--partition-secs 5] [--steady-secs 20] [--seed 1] [--gossip-ms 50] [--gossip-fanout 3]
//! [--probe-ms 300]
//! [--preconverged [--fresh-joins 10]] [--cold-start [--start-gap-ms 100]]
//! [--print-detections]` prints one Markdown table row per size (and, with
//! `--print-detections`, every detection time on stderr, to pool runs).
//!
//! `--cold-start` starts the nodes one after another, `--start-gap-ms` apart, each knowing
//! only the seed and joining through the transport's Hello handshake (nothing pre-seeded);
//! convergence is then counted from the last start.
//!
//! `--preconverged` starts from a converged cluster (every node seeded in bulk with every
//! other one) and measures how `--fresh-joins` nodes joining at once spread, instead of
//! building the cluster by joins through one seed (the default; its cost grows with N³).

use std::time::Duration;

use hybrid_cache::internals::sim::{run, SimConfig};

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
    let preconverged = args.iter().any(|a| a == "--preconverged");
    let print_detections = args.iter().any(|a| a == "--print-detections");
    let fresh_joins: usize = arg(&args, "--fresh-joins")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let cold_start = args.iter().any(|a| a == "--cold-start");
    let defaults = SimConfig::new(0);
    let start_gap = arg(&args, "--start-gap-ms")
        .and_then(|v| v.parse().ok())
        .map_or(defaults.start_gap, Duration::from_millis);
    let probe_period = arg(&args, "--probe-ms")
        .and_then(|v| v.parse().ok())
        .map_or(defaults.probe_period, Duration::from_millis);
    let gossip_every = arg(&args, "--gossip-ms")
        .and_then(|v| v.parse().ok())
        .map_or(defaults.gossip_every, Duration::from_millis);
    let gossip_fanout: usize = arg(&args, "--gossip-fanout")
        .and_then(|v| v.parse().ok())
        .unwrap_or(defaults.gossip_fanout);
    let mode = if preconverged {
        format!("pre-converged, {fresh_joins} fresh joins")
    } else if cold_start {
        format!(
            "cold start, one node every {} ms, each knowing the seed",
            start_gap.as_millis()
        )
    } else {
        "joins through one seed".to_string()
    };
    println!(
        "mode: {mode}; probe every {} ms; periodic gossip every {} ms to {gossip_fanout}",
        probe_period.as_millis(),
        gossip_every.as_millis()
    );
    println!(
        "| nodes | loss | convergence ms | fresh joins known ms | detection p50 / p99 / max ms (kills) | false dead / node-hour | steady B/s per node | heal after {partition} s partition ms | seeding wall s | wall s (CPU s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let mut cfg = SimConfig::new(n);
        cfg.loss = loss;
        cfg.kills = kills;
        cfg.partition = (partition > 0).then(|| Duration::from_secs(partition));
        cfg.seed = seed;
        cfg.steady = Duration::from_secs(steady.max(1));
        cfg.preconverged = preconverged;
        cfg.fresh_joins = fresh_joins;
        cfg.cold_start = cold_start;
        cfg.start_gap = start_gap;
        cfg.gossip_every = gossip_every;
        cfg.gossip_fanout = gossip_fanout;
        cfg.probe_period = probe_period;
        let wall = std::time::Instant::now();
        let cpu0 = cpu_secs();
        let r = run(cfg);
        if print_detections {
            let all: Vec<String> = r.detections.iter().map(|d| ms(*d)).collect();
            eprintln!("detections ms, {n} nodes, seed {seed}: {}", all.join(" "));
        }
        let detected = r.detections.iter().flatten().count();
        let max = r.detections.iter().flatten().max().copied();
        let per_hour = if r.observed_node_secs > 0.0 {
            r.false_downs as f64 / (r.observed_node_secs / 3600.0)
        } else {
            0.0
        };
        println!(
            "| {n} | {:.1} % | {} | {} | {} / {} / {} ({detected}/{}) | {per_hour:.3} ({} events) | {:.0} | {} | {} | {:.1} ({}) |",
            loss * 100.0,
            ms(r.convergence),
            ms(r.joins_known),
            ms(r.detection_quantile(0.5)),
            ms(r.detection_quantile(0.99)),
            ms(max),
            r.detections.len(),
            r.false_downs,
            r.steady_bytes_per_node_sec,
            ms(r.partition_heal),
            r.seed_wall
                .map_or_else(|| "—".into(), |d| format!("{:.1}", d.as_secs_f64())),
            wall.elapsed().as_secs_f64(),
            match (cpu0, cpu_secs()) {
                (Some(a), Some(b)) => format!("{:.1}", b - a),
                _ => "—".into(),
            },
        );
    }
}

/// CPU time of this process so far (user + system, from /proc; `None` elsewhere).
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(ticks / 100.0)
}
