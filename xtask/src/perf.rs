//! Benchmarks and soak runs (not tests): release builds, private servers on free loopback
//! ports, every process stopped by its pid.

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::util::{cargo, cmd, ensure_apt, exit_code, have, run, target_dir, testkit_binary};

#[derive(Subcommand)]
pub enum Bench {
    /// Node vs redis-server, interleaved, several repetitions: memory per entry, L1-hit GET
    /// over HTTP (wrk) vs redis-benchmark GET, PUT vs SET, L2 hit vs GET, redis-benchmark
    /// against the RESP port vs redis-server. Prints min/median/max of each ratio.
    /// Environment: REPS (3), ENTRIES (100000), SECS (4), CONNS (64), PARTS (all of
    /// `mem,get,put,l2,resp`; e.g. `PARTS=put` runs only PUT vs SET), HC_BIN_BEFORE (another
    /// build's binary: it runs in every repetition too, right before this build, and gets its
    /// own table: before/after of a change in one run). Installs redis-server, redis-tools
    /// and wrk when missing.
    Node,
    /// Real node processes joining through one seed: convergence, detection p50/p99/max,
    /// gossip bytes/s, /v1/cluster/stats latency, idle RSS, false `dead` per size.
    Gossip {
        /// Cluster sizes, comma-separated.
        #[arg(long, default_value = "10,50,100")]
        nodes: String,
        /// Nodes SIGKILLed one at a time.
        #[arg(long, default_value_t = 10)]
        kills: u32,
        /// Seconds of steady state measured.
        #[arg(long, default_value_t = 10)]
        steady: u32,
        /// Cold start: each process starts once the previous one answers /health (instead
        /// of all at once), each knowing only the seed.
        #[arg(long)]
        cold_start: bool,
        /// Repetitions per size (min / median / max printed when more than one).
        #[arg(long, default_value_t = 1)]
        reps: u32,
    },
    /// Invalidation propagation (examples/bench_coherence.rs) against a private redis-server.
    Coherence {
        #[arg(default_value_t = 10000)]
        samples: u64,
        /// Bound of the run in seconds.
        #[arg(default_value_t = 120)]
        max_secs: u64,
    },
    /// Strict vs bounded write latency (examples/bench_strict.rs) against a private
    /// redis-server; `blackhole` cuts one of the 3 nodes' Redis link.
    Strict {
        #[arg(default_value_t = 1000)]
        samples_per_rep: u64,
        #[arg(default_value_t = 5)]
        reps: u64,
        /// `blackhole` to cut one node's Redis link.
        mode: Option<String>,
    },
    /// Runs the Sentinel and the Cluster failover tests (tests/redis_topologies.rs) N times,
    /// interleaved, and prints min/median/max of "new primary" and "writes again".
    Failover {
        #[arg(default_value_t = 5)]
        runs: u32,
    },
}

#[derive(Subcommand)]
pub enum Soak {
    /// 3 nodes + redis + haproxy on free loopback ports (state in .soak/) under mixed load
    /// with periodic faults; fails when RSS, fds or backlog grow past their slope
    /// (SOAK_MAX_RSS_MIB_PER_MIN, SOAK_MAX_FDS_PER_MIN, SOAK_MAX_BACKLOG_PER_MIN). Uses
    /// HC_BIN or target/release/hybrid-cache (built if missing).
    Node(crate::soak::Args),
    /// N real nodes under HTTP load (wrk) for --secs, nothing killed: counts false failure
    /// detections and renewed identities; fails on any.
    Gossip {
        #[arg(long, default_value_t = 100)]
        nodes: u32,
        #[arg(long, default_value_t = 600)]
        secs: u32,
        /// wrk processes (2 connections, 1 thread each).
        #[arg(long, default_value_t = 4)]
        wrk: u32,
    },
}

fn release_binary() -> Result<std::path::PathBuf> {
    run(cargo().args(["build", "--release", "--bin", "hybrid-cache"]))?;
    Ok(target_dir().join("release").join("hybrid-cache"))
}

/// `cargo xtask bench ...`: the exit code of the benchmark.
pub fn bench(b: Bench) -> Result<i32> {
    match b {
        Bench::Node => {
            ensure_apt(
                "bench node",
                &[
                    ("redis-server", "redis-server"),
                    ("redis-benchmark", "redis-tools"),
                    ("wrk", "wrk"),
                ],
            )?;
            run(cargo().args([
                "build",
                "--release",
                "--bin",
                "hybrid-cache",
                "--example",
                "moka_baseline",
                "--example",
                "hyper_floor",
            ]))?;
            let release = target_dir().join("release");
            exit_code(
                cmd("python3")
                    .arg("xtask/py/bench_node.py")
                    .env("HC_BIN", release.join("hybrid-cache"))
                    .env("HC_MOKA", release.join("examples").join("moka_baseline"))
                    .env(
                        "HC_HYPER_FLOOR",
                        release.join("examples").join("hyper_floor"),
                    )
                    .env("HC_TESTKIT", testkit_binary()?),
            )
        }
        Bench::Gossip {
            nodes,
            kills,
            steady,
            cold_start,
            reps,
        } => {
            let bin = release_binary()?;
            let cold = if cold_start { "1" } else { "0" };
            exit_code(
                cmd("python3")
                    .arg("xtask/py/bench_gossip.py")
                    .arg(bin)
                    .args([nodes, kills.to_string(), steady.to_string()])
                    .args([cold.to_string(), reps.max(1).to_string()])
                    .env("HC_TESTKIT", testkit_binary()?),
            )
        }
        Bench::Coherence { samples, max_secs } => bench_example(
            "bench_coherence",
            &[samples.to_string(), max_secs.to_string()],
            max_secs,
        ),
        Bench::Strict {
            samples_per_rep,
            reps,
            mode,
        } => {
            let mut args = vec![samples_per_rep.to_string(), reps.to_string()];
            args.extend(mode);
            bench_example("bench_strict", &args, 600)
        }
        Bench::Failover { runs } => failover(runs).map(|()| 0),
    }
}

/// A release example against a private redis-server (hc-testkit), bounded by `max_secs`
/// (the example checks it between samples; the outer `timeout` is a safety net).
fn bench_example(example: &str, args: &[String], max_secs: u64) -> Result<i32> {
    let redis_bin = hc_testkit::redis_server_binary();
    if !have(&redis_bin) && !std::path::Path::new(&redis_bin).is_file() {
        anyhow::bail!("redis-server not found");
    }
    run(cargo().args(["build", "--release", "--example", example]))?;
    let redis = hc_testkit::RedisServer::try_start(None).map_err(anyhow::Error::msg)?;
    eprintln!(
        "redis-server pid {} on 127.0.0.1:{}",
        redis.pid().unwrap_or(0),
        redis.port()
    );
    exit_code(
        cmd("timeout")
            .arg((max_secs + 60).to_string())
            .arg(target_dir().join("release").join("examples").join(example))
            .arg(redis.url())
            .args(args),
    )
}

/// `cargo xtask bench failover N`.
fn failover(runs: u32) -> Result<()> {
    run(cargo().args(["test", "--test", "redis_topologies", "--no-run"]))?;
    let line = regex::Regex::new(r"after (\d+) ms; first acknowledged .*?write (\d+) ms")
        .context("failover regex")?;
    let mut figures: [(Vec<u64>, Vec<u64>); 2] = Default::default();
    for i in 1..=runs {
        for (k, t) in ["sentinel", "cluster"].iter().enumerate() {
            let out = cargo()
                .args([
                    "test",
                    "-q",
                    "--test",
                    "redis_topologies",
                    t,
                    "--",
                    "--nocapture",
                ])
                .stderr(std::process::Stdio::null())
                .output()
                .context("run cargo test")?;
            let text = String::from_utf8_lossy(&out.stdout);
            let prefix = format!("{t}: ");
            let mut found = false;
            for l in text.lines().filter(|l| l.starts_with(&prefix)) {
                found = true;
                if let Some(c) = line.captures(l) {
                    figures[k].0.push(c[1].parse().unwrap_or(0));
                    figures[k].1.push(c[2].parse().unwrap_or(0));
                }
            }
            if !found {
                eprintln!("run {i} of {t} failed");
            }
        }
    }
    for (t, (pro, wr)) in ["sentinel", "cluster"].iter().zip(figures.iter_mut()) {
        println!(
            "{t:8} runs={}  new primary: {}   writes again: {}",
            pro.len(),
            min_median_max(pro),
            min_median_max(wr)
        );
    }
    Ok(())
}

fn min_median_max(xs: &mut [u64]) -> String {
    if xs.is_empty() {
        return "no data".into();
    }
    xs.sort_unstable();
    let n = xs.len();
    let median = if n % 2 == 1 {
        xs[n / 2] as f64
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) as f64 / 2.0
    };
    format!("min {} / median {median:.0} / max {} ms", xs[0], xs[n - 1])
}

/// `cargo xtask soak ...`: the exit code of the soak run.
pub fn soak(s: Soak) -> Result<i32> {
    match s {
        Soak::Node(args) => crate::soak::node(&args),
        Soak::Gossip { nodes, secs, wrk } => {
            if !have("wrk") {
                eprintln!("needs wrk (apt-get install -y wrk)");
                return Ok(2);
            }
            let bin = release_binary()?;
            exit_code(
                cmd("python3")
                    .arg("xtask/py/soak_gossip.py")
                    .arg(bin)
                    .args([nodes.to_string(), secs.to_string(), wrk.to_string()])
                    .env("HC_TESTKIT", testkit_binary()?),
            )
        }
    }
}
