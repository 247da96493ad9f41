//! `cargo xtask redis ...`: local Redis Sentinel and Redis Cluster topologies for
//! development, on loopback (never 6379). Every server is a foreground `redis-server` /
//! `redis-sentinel` started the way hc-testkit starts a Redis, its pid recorded in the state
//! directory; `*-down` stops exactly those pids, `*-failover` SIGKILLs only a primary whose
//! pid is one of them.
//!
//! Sentinel: a primary, two replicas and three sentinels (ports from
//! ${HC_SENTINEL_BASE:-16400}: primary +0, replicas +1 +2, sentinels +10 +11 +12), master
//! ${HC_SENTINEL_MASTER:-hcmaster}, state in .sentinel/ (HC_SENTINEL_STATE).
//! Cluster: 3 primaries + 3 replicas (ports ${HC_RCLUSTER_BASE:-17000}..+5) created with
//! `redis-cli --cluster create`, state in .redis-cluster/ (HC_RCLUSTER_STATE).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hc_testkit::{Resp, FORBIDDEN_PORT};

use crate::procs::{self, Registry};
use crate::util::{cmd, have, root};

/// A topology: its registry and first port.
struct Topo {
    reg: Registry,
    base: u16,
}

impl Topo {
    fn from_env(
        state_var: &str,
        dir: &str,
        base_var: &str,
        base: u16,
        tag: &'static str,
    ) -> Result<Self> {
        let state = std::env::var_os(state_var).map_or_else(|| root().join(dir), PathBuf::from);
        let base = match std::env::var(base_var) {
            Ok(b) => b.parse().with_context(|| format!("{base_var}={b}"))?,
            Err(_) => base,
        };
        Ok(Topo {
            reg: Registry::new(state, tag),
            base,
        })
    }

    /// `base + i`, refusing 6379 and overflow.
    fn port(&self, i: u16) -> Result<u16> {
        match self.base.checked_add(i) {
            Some(p) if p != FORBIDDEN_PORT => Ok(p),
            _ => bail!(
                "port {} + {i} is not allowed (never {FORBIDDEN_PORT})",
                self.base
            ),
        }
    }

    /// Fails when a recorded pid still runs (`down` first).
    fn refuse_running(&self, down: &str) -> Result<()> {
        for name in self.reg.names() {
            if self.reg.is_running(&name, "redis") {
                bail!("already running ({name}); 'cargo xtask redis {down}' first");
            }
        }
        Ok(())
    }

    /// Start a foreground redis-server on `port` (data in <state>/<name>) with `extra`
    /// arguments after hc-testkit's.
    fn server(&self, name: &str, port: u16, extra: &[&str]) -> Result<()> {
        let dir = self.reg.path(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut c = cmd(hc_testkit::redis_server_binary());
        c.args(hc_testkit::redis_server_args(port, &dir))
            .args(["--repl-diskless-sync-delay", "0"])
            .args(extra);
        self.reg.spawn(name, &mut c).map(|_| ())
    }

    /// Stop every recorded pid that still runs a Redis; remove the pid files.
    fn down(&self) {
        for name in self.reg.names() {
            if let Some(pid) = self.reg.stop(&name, "redis", false) {
                self.reg.log(format!("stopped {name} ({pid})"));
            }
        }
    }

    /// SIGKILL the Redis on `port` if its pid is one this topology recorded.
    fn kill_primary(&self, port: u16) -> Result<u32> {
        let Some(pid) = redis_pid(port) else {
            bail!("no primary answers on {port}");
        };
        let ours = self
            .reg
            .names()
            .iter()
            .any(|n| self.reg.pid_of(n) == Some(pid));
        if !ours {
            bail!("the primary on {port} (pid {pid}) is not a server this tool started");
        }
        procs::signal(pid, "KILL");
        Ok(pid)
    }
}

/// The `process_id` of the Redis on `port` (INFO server).
fn redis_pid(port: u16) -> Option<u32> {
    let info = procs::redis(port, &["INFO", "server"])?.as_text()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
}

/// Poll `next` every 50 ms for 15 s until it names a port other than `old`; the new port
/// and the milliseconds since `start`.
fn wait_new(
    old: u16,
    start: Instant,
    mut next: impl FnMut() -> Option<u16>,
) -> Option<(u16, u128)> {
    let mut found = None;
    procs::wait_until(Duration::from_secs(15), || {
        found = next().filter(|&p| p != old);
        found.is_some()
    });
    found.map(|p| (p, start.elapsed().as_millis()))
}

/// Fails with the script's message when a program is missing.
fn require(programs: &[&str], hint: &str) -> Result<()> {
    for p in programs {
        if !have(p) {
            bail!("missing {p}{hint}");
        }
    }
    Ok(())
}

fn sentinel() -> Result<(Topo, String)> {
    let t = Topo::from_env(
        "HC_SENTINEL_STATE",
        ".sentinel",
        "HC_SENTINEL_BASE",
        16400,
        "redis-sentinel",
    )?;
    let master = std::env::var("HC_SENTINEL_MASTER").unwrap_or_else(|_| "hcmaster".into());
    Ok((t, master))
}

/// The primary's port as the first sentinel names it.
fn sentinel_primary(t: &Topo, master: &str) -> Option<u16> {
    let reply = procs::redis(
        t.port(10).ok()?,
        &["SENTINEL", "get-master-addr-by-name", master],
    )?;
    match reply {
        Resp::Array(Some(items)) => items.get(1)?.as_text()?.parse().ok(),
        _ => None,
    }
}

/// `cargo xtask redis sentinel-up`.
pub fn sentinel_up() -> Result<i32> {
    let (t, master) = sentinel()?;
    require(
        &["redis-server", "redis-sentinel"],
        " (apt-get install redis-server redis-sentinel redis-tools)",
    )?;
    t.reg.create()?;
    t.refuse_running("sentinel-down")?;
    let base = t.port(0)?.to_string();
    t.server("primary", t.port(0)?, &[])?;
    t.server("replica1", t.port(1)?, &["--replicaof", "127.0.0.1", &base])?;
    t.server("replica2", t.port(2)?, &["--replicaof", "127.0.0.1", &base])?;
    // Sentinels learn the replicas from the primary's INFO, every 10 s: start them once
    // both replicas are online, so that the first INFO lists both.
    let primary = t.port(0)?;
    procs::wait_until(Duration::from_secs(10), || {
        procs::redis(primary, &["INFO", "replication"])
            .and_then(|r| r.as_text())
            .is_some_and(|s| s.matches("state=online").count() == 2)
    });
    let mut sentinels = Vec::new();
    for i in 0..3u16 {
        let port = t.port(10 + i)?;
        let conf = t.reg.path(&format!("sentinel{i}.conf"));
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
             sentinel resolve-hostnames no\nsentinel monitor {master} 127.0.0.1 {base} 2\n\
             sentinel down-after-milliseconds {master} 1000\n\
             sentinel failover-timeout {master} 5000\nsentinel parallel-syncs {master} 1\n",
            dir = t.reg.dir().display()
        );
        std::fs::write(&conf, text).with_context(|| format!("write {}", conf.display()))?;
        let mut c = cmd("redis-sentinel");
        c.arg(&conf);
        t.reg.spawn(&format!("sentinel{i}"), &mut c)?;
        sentinels.push(format!("127.0.0.1:{port}"));
    }
    let first = t.port(10)?;
    let ready = procs::wait_until(Duration::from_secs(10), || {
        procs::redis(first, &["INFO", "sentinel"])
            .and_then(|r| r.as_text())
            .is_some_and(|s| s.contains("slaves=2,sentinels=3"))
    });
    if !ready {
        t.reg.log(format!(
            "sentinels did not see 2 replicas and 3 sentinels within 10 s (see {}/*.log)",
            t.reg.dir().display()
        ));
        return Ok(1);
    }
    t.reg.log("ready");
    println!(
        "export REDIS_SENTINELS={} REDIS_SENTINEL_MASTER={master}",
        sentinels.join(",")
    );
    Ok(0)
}

/// `cargo xtask redis sentinel-down`.
pub fn sentinel_down() -> Result<i32> {
    sentinel()?.0.down();
    Ok(0)
}

/// `cargo xtask redis sentinel-failover`.
pub fn sentinel_failover() -> Result<i32> {
    let (t, master) = sentinel()?;
    let Some(old) = sentinel_primary(&t, &master) else {
        bail!("no sentinel names a primary for {master}");
    };
    let start = Instant::now();
    let pid = t.kill_primary(old)?;
    t.reg
        .log(format!("killed primary 127.0.0.1:{old} (pid {pid})"));
    match wait_new(old, start, || sentinel_primary(&t, &master)) {
        Some((new, ms)) => {
            t.reg
                .log(format!("sentinels name 127.0.0.1:{new} after {ms} ms"));
            Ok(0)
        }
        None => {
            t.reg.log("no new primary within 15 s");
            Ok(1)
        }
    }
}

fn rcluster() -> Result<(Topo, String)> {
    let t = Topo::from_env(
        "HC_RCLUSTER_STATE",
        ".redis-cluster",
        "HC_RCLUSTER_BASE",
        17000,
        "redis-cluster",
    )?;
    let ns = std::env::var("HC_NAMESPACE").unwrap_or_else(|_| "hc".into());
    Ok((t, format!("{{{ns}}}")))
}

/// The port of the primary owning the slot of `key`, asked on the first node that answers.
fn slot_owner(t: &Topo, key: &str) -> Option<u16> {
    (0..6).find_map(|i| {
        let port = t.port(i).ok()?;
        let Resp::Int(slot) = procs::redis(port, &["CLUSTER", "KEYSLOT", key])? else {
            return None;
        };
        let Resp::Array(Some(ranges)) = procs::redis(port, &["CLUSTER", "SLOTS"])? else {
            return None;
        };
        ranges.iter().find_map(|r| match r {
            Resp::Array(Some(f)) => match (f.first(), f.get(1), f.get(2)) {
                (Some(Resp::Int(s)), Some(Resp::Int(e)), Some(Resp::Array(Some(primary))))
                    if (*s..=*e).contains(&slot) =>
                {
                    match primary.get(1) {
                        Some(Resp::Int(p)) => u16::try_from(*p).ok(),
                        _ => None,
                    }
                }
                _ => None,
            },
            _ => None,
        })
    })
}

/// `cargo xtask redis cluster-up`.
pub fn cluster_up() -> Result<i32> {
    let (t, _) = rcluster()?;
    require(&["redis-server", "redis-cli"], "")?;
    t.reg.create()?;
    t.refuse_running("cluster-down")?;
    let mut addrs = Vec::new();
    for i in 0..6u16 {
        let port = t.port(i)?;
        let cluster_args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
        ];
        t.server(&format!("node{i}"), port, &cluster_args)?;
        addrs.push(format!("127.0.0.1:{port}"));
    }
    for i in 0..6u16 {
        let port = t.port(i)?;
        procs::wait_until(Duration::from_secs(5), || procs::redis_ping(port));
    }
    let log_path = t.reg.path("create.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("create {}", log_path.display()))?;
    let created = cmd("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdout(log.try_clone().context("duplicate create.log")?)
        .stderr(Stdio::from(log))
        .status()
        .context("run redis-cli --cluster create")?;
    if !created.success() {
        t.reg.log(format!(
            "cluster create failed (see {})",
            log_path.display()
        ));
        return Ok(1);
    }
    let base = t.port(0)?;
    let ok = procs::wait_until(Duration::from_secs(10), || {
        procs::redis(base, &["CLUSTER", "INFO"])
            .and_then(|r| r.as_text())
            .is_some_and(|s| s.contains("cluster_state:ok"))
    });
    if !ok {
        t.reg.log("cluster_state not ok within 10 s");
        return Ok(1);
    }
    t.reg.log("ready");
    println!("export REDIS_CLUSTER_NODES={}", addrs.join(","));
    Ok(0)
}

/// `cargo xtask redis cluster-down` (and forget the cluster: node*/nodes.conf removed).
pub fn cluster_down() -> Result<i32> {
    let (t, _) = rcluster()?;
    t.down();
    for i in 0..6 {
        let _ = std::fs::remove_file(t.reg.path(&format!("node{i}")).join("nodes.conf"));
    }
    Ok(0)
}

/// `cargo xtask redis cluster-failover`.
pub fn cluster_failover() -> Result<i32> {
    let (t, tag) = rcluster()?;
    let Some(old) = slot_owner(&t, &tag) else {
        bail!("no node of the cluster names the owner of {tag}");
    };
    let start = Instant::now();
    let pid = t.kill_primary(old)?;
    t.reg.log(format!(
        "killed primary 127.0.0.1:{old} (pid {pid}), owner of {tag}"
    ));
    match wait_new(old, start, || slot_owner(&t, &tag)) {
        Some((new, ms)) => {
            t.reg
                .log(format!("127.0.0.1:{new} serves {tag} after {ms} ms"));
            Ok(0)
        }
        None => {
            t.reg.log("no failover within 15 s");
            Ok(1)
        }
    }
}
