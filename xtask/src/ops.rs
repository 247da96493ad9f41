//! Local environments: the 3-node cluster of cluster.toml, Redis Sentinel / Cluster
//! topologies, docker-compose. The local cluster is cluster.rs and chaos.rs, the Redis
//! topologies redis_topo.rs; the compose programs stay shell programs under `xtask/sh/`
//! (CI runs them).

use anyhow::Result;
use clap::Subcommand;

use crate::util::{cmd, exit_code, have, root, sh};

#[derive(Subcommand)]
pub enum Cluster {
    /// Start redis-server on 127.0.0.1:6390, nodes n1..n3 (release binary) and haproxy on
    /// 127.0.0.1:${HC_LB_PORT:-8080}; logs and pid files in .cluster/. HC_NO_CARGO=1 skips
    /// the release build.
    Up,
    /// Stop exactly the pids recorded in .cluster/*.pid (each only if it still runs the
    /// recorded program).
    Down,
    /// Bounded load with a staleness checker while a node is SIGKILLed and restarted and
    /// Redis is SIGKILLed and restarted; fails on any stale read. Starts the cluster when it
    /// is not running. CHAOS_DURATION, CHAOS_MAX_REQUESTS, CHAOS_GRACE_MS, CHAOS_VICTIM,
    /// CHAOS_DETECT_TIMEOUT.
    Chaos,
}

#[derive(Subcommand)]
pub enum Redis {
    /// A primary, two replicas and three sentinels on loopback (ports from
    /// ${HC_SENTINEL_BASE:-16400}), master ${HC_SENTINEL_MASTER:-hcmaster}, state in
    /// .sentinel/; prints the environment a node needs.
    SentinelUp,
    /// Stop exactly the pids sentinel-up started.
    SentinelDown,
    /// SIGKILL the current primary; print how long until the sentinels name a new one.
    SentinelFailover,
    /// 3 primaries + 3 replicas on loopback (ports ${HC_RCLUSTER_BASE:-17000}..+5), state in
    /// .redis-cluster/; prints the environment a node needs.
    ClusterUp,
    /// Stop exactly the pids cluster-up started (and forget the cluster).
    ClusterDown,
    /// SIGKILL the primary of the bus slot {${HC_NAMESPACE:-hc}}; print how long until a
    /// replica serves it.
    ClusterFailover,
}

#[derive(Subcommand)]
pub enum Compose {
    /// The container cluster test (docker-compose.yml, profile prometheus): health, load with
    /// a staleness check, a node and Redis killed. Needs a Docker engine.
    Test,
    /// Container test of a Redis topology profile: the primary container killed under load;
    /// fails on a stale read or when writes do not resume within 60 s.
    Topology {
        /// `sentinel` or `redis-cluster`.
        profile: String,
    },
    /// Self-test of the compose v2/v1 choice with stub commands (no Docker needed).
    Lib,
    /// Build the images docker-compose.yml uses, offline (the last line is an `export`).
    Images,
    /// `docker compose` (v2) or `docker-compose` (v1), whichever answers (HC_COMPOSE
    /// overrides), on docker-compose.yml: `cargo xtask compose run up -d`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `cargo xtask cluster ...`.
pub fn cluster(c: Cluster) -> Result<i32> {
    match c {
        Cluster::Up => crate::cluster::up(),
        Cluster::Down => crate::cluster::down(),
        Cluster::Chaos => crate::chaos::chaos(),
    }
}

/// `cargo xtask redis ...`.
pub fn redis(r: Redis) -> Result<i32> {
    use crate::redis_topo as t;
    match r {
        Redis::SentinelUp => t::sentinel_up(),
        Redis::SentinelDown => t::sentinel_down(),
        Redis::SentinelFailover => t::sentinel_failover(),
        Redis::ClusterUp => t::cluster_up(),
        Redis::ClusterDown => t::cluster_down(),
        Redis::ClusterFailover => t::cluster_failover(),
    }
}

/// `cargo xtask compose ...`.
pub fn compose(c: Compose) -> Result<i32> {
    match c {
        Compose::Test => sh("compose-test.sh", &[]),
        Compose::Topology { profile } => sh("compose-topology-test.sh", &[profile]),
        Compose::Lib => sh("test-compose-lib.sh", &[]),
        Compose::Images => sh("docker-images.sh", &[]),
        Compose::Run { args } => {
            let Some(mut c) = compose_command() else {
                eprintln!(
                    "neither 'docker compose' (v2) nor 'docker-compose' (v1) found: install one"
                );
                return Ok(127);
            };
            c.arg("-f")
                .arg(root().join("docker-compose.yml"))
                .args(args);
            exit_code(&mut c)
        }
    }
}

/// `docker compose` when the v2 plugin answers, else `docker-compose`, else None;
/// HC_COMPOSE (e.g. "docker-compose") overrides. The same choice as xtask/sh/compose-lib.sh.
fn compose_command() -> Option<std::process::Command> {
    if let Ok(words) = std::env::var("HC_COMPOSE") {
        let mut parts = words.split_whitespace();
        let mut c = cmd(parts.next()?);
        c.args(parts);
        return Some(c);
    }
    let v2 = cmd("docker")
        .args(["compose", "version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if v2 {
        let mut c = cmd("docker");
        c.arg("compose");
        Some(c)
    } else if have("docker-compose") {
        Some(cmd("docker-compose"))
    } else {
        None
    }
}
