//! `cargo xtask cluster up|down`: the local 3-node cluster of cluster.toml on loopback,
//! with its own redis-server (127.0.0.1:6390, started the way hc-testkit starts every
//! Redis) and HAProxy in front (127.0.0.1:${HC_LB_PORT:-8080}, round-robin, health-checked
//! on /health). Pid and log files live in .cluster/ (HC_CLUSTER_STATE); `down` stops
//! exactly the recorded pids. `cluster chaos` (chaos.rs) runs faults against it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::procs::{self, Registry};
use crate::util::{cargo, cmd, ensure_apt, have, root, run, target_dir};

/// The port of the cluster's Redis (cluster.toml's `[redis] url`).
const REDIS_PORT: u16 = 6390;

/// Variables that would redirect a node away from cluster.toml: removed from its
/// environment (HC_CLUSTER_SECRET and RUST_LOG pass through).
const NODE_ENV_REMOVED: &[&str] = &[
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "REDIS_SSL",
    "HC_CONFIG",
    "HC_NODE_ID",
    "HC_HTTP",
    "HC_HTTP_ADVERTISE",
    "HC_GOSSIP",
    "HC_GOSSIP_ADVERTISE",
    "HC_PEERS",
    "HC_NAMESPACE",
    "HC_API_TOKEN",
    "HC_TLS_CA",
    "HC_TLS_CERT",
    "HC_TLS_KEY",
    "HC_ISOLATION_GRACE_MS",
];

/// One `[[nodes]]` entry of cluster.toml.
pub struct Node {
    pub id: String,
    pub http: String,
    pub gossip: String,
}

/// The local cluster: its state directory, config, binary, balancer and Redis ports, nodes.
pub struct Local {
    pub reg: Registry,
    pub config: PathBuf,
    pub bin: PathBuf,
    pub lb_port: u16,
    pub redis_port: u16,
    pub nodes: Vec<Node>,
}

impl Local {
    /// From the environment: HC_CLUSTER_STATE (.cluster), HC_CLUSTER_CONFIG (cluster.toml),
    /// HC_BIN (target/release/hybrid-cache), HC_LB_PORT (8080).
    pub fn from_env() -> Result<Self> {
        let path_var =
            |name: &str, default: PathBuf| std::env::var_os(name).map_or(default, PathBuf::from);
        let config = path_var("HC_CLUSTER_CONFIG", root().join("cluster.toml"));
        let lb_port = match std::env::var("HC_LB_PORT") {
            Ok(p) => p.parse().with_context(|| format!("HC_LB_PORT={p}"))?,
            Err(_) => 8080,
        };
        Ok(Local {
            reg: Registry::new(
                path_var("HC_CLUSTER_STATE", root().join(".cluster")),
                "cluster",
            ),
            nodes: read_nodes(&config)?,
            bin: path_var("HC_BIN", target_dir().join("release").join("hybrid-cache")),
            config,
            lb_port,
            redis_port: REDIS_PORT,
        })
    }

    /// `127.0.0.1:<balancer port>`.
    pub fn lb(&self) -> String {
        format!("127.0.0.1:{}", self.lb_port)
    }

    /// The node `id` of cluster.toml.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Start redis-server on 127.0.0.1:<redis port> (data in <state>/redis-data) unless it runs;
    /// wait up to 10 s for PING.
    pub fn start_redis(&self) -> Result<()> {
        if self.reg.is_running("redis", "redis-server") {
            self.reg.log("redis already running");
            return Ok(());
        }
        let data = self.reg.path("redis-data");
        std::fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
        let mut c = cmd(hc_testkit::redis_server_binary());
        c.args(hc_testkit::redis_server_args(self.redis_port, &data));
        self.reg.spawn("redis", &mut c)?;
        let port = self.redis_port;
        if !procs::wait_until(Duration::from_secs(10), || procs::redis_ping(port)) {
            bail!(
                "redis-server on 127.0.0.1:{port} did not answer PING (see {})",
                self.reg.path("redis.log").display()
            );
        }
        Ok(())
    }

    /// Start node `id` (`hybrid-cache node --config cluster.toml --node-id id`) unless it
    /// runs.
    pub fn start_node(&self, id: &str) -> Result<()> {
        if self.reg.is_running(id, "hybrid-cache") {
            self.reg.log(format!("{id} already running"));
            return Ok(());
        }
        let mut c = cmd(&self.bin);
        for name in NODE_ENV_REMOVED {
            c.env_remove(name);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            c.env("RUST_LOG", "info");
        }
        c.arg("node")
            .arg("--config")
            .arg(&self.config)
            .args(["--node-id", id]);
        self.reg.spawn(id, &mut c).map(|_| ())
    }

    /// Write <state>/haproxy.cfg from xtask/sh/haproxy-local.cfg.in, check it, start
    /// haproxy unless it runs.
    pub fn start_haproxy(&self) -> Result<()> {
        if self.reg.is_running("haproxy", "haproxy") {
            self.reg.log("haproxy already running");
            return Ok(());
        }
        let template = root().join("xtask/sh/haproxy-local.cfg.in");
        let text = std::fs::read_to_string(&template)
            .with_context(|| format!("read {}", template.display()))?;
        let servers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("    server {} {} check", n.id, n.http))
            .collect();
        let cfg_text = text
            .replace("@LB_PORT@", &self.lb_port.to_string())
            .replace("@SERVERS@", &servers.join("\n"));
        let cfg = self.reg.path("haproxy.cfg");
        std::fs::write(&cfg, cfg_text).with_context(|| format!("write {}", cfg.display()))?;
        run(cmd(haproxy_bin()).arg("-c").arg("-q").arg("-f").arg(&cfg))
            .with_context(|| format!("invalid {}", cfg.display()))?;
        let mut c = cmd(haproxy_bin());
        c.arg("-db").arg("-f").arg(&cfg);
        self.reg.spawn("haproxy", &mut c).map(|_| ())
    }

    /// Refuse ports someone else holds (our own running pieces are fine).
    fn check_ports(&self) -> Result<()> {
        let busy = |running: bool, addr: &str, udp: bool| -> Result<bool> {
            let sock: SocketAddr = addr.parse().with_context(|| format!("address {addr}"))?;
            Ok(!running
                && if udp {
                    procs::udp_busy(sock)
                } else {
                    procs::tcp_busy(sock)
                })
        };
        let redis = format!("127.0.0.1:{}", self.redis_port);
        if busy(self.reg.is_running("redis", "redis-server"), &redis, false)? {
            bail!("{redis} in use");
        }
        if busy(self.reg.is_running("haproxy", "haproxy"), &self.lb(), false)? {
            bail!("{} in use", self.lb());
        }
        for n in &self.nodes {
            let running = self.reg.is_running(&n.id, "hybrid-cache");
            if busy(running, &n.http, false)? {
                bail!("{}: {} in use", n.id, n.http);
            }
            if busy(running, &n.gossip, true)? {
                bail!("{}: {} (udp) in use", n.id, n.gossip);
            }
        }
        Ok(())
    }

    /// Start redis, the nodes and haproxy; wait for every node's /health (60 s each,
    /// failing early when one exits) and the balancer's (30 s).
    fn start_all(&self) -> Result<()> {
        self.reg
            .log(format!("redis-server 127.0.0.1:{}", self.redis_port));
        self.start_redis()?;
        for n in &self.nodes {
            self.reg
                .log(format!("node {} http={} gossip={}", n.id, n.http, n.gossip));
            self.start_node(&n.id)?;
        }
        self.reg.log(format!("haproxy {}", self.lb()));
        self.start_haproxy()?;
        for n in &self.nodes {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !procs::wait_http_ok(&n.http, "/health", Duration::from_secs(1)) {
                if !self.reg.is_running(&n.id, "hybrid-cache") {
                    bail!(
                        "{} exited (see {})",
                        n.id,
                        self.reg.path(&format!("{}.log", n.id)).display()
                    );
                }
                if Instant::now() >= deadline {
                    bail!("{} /health not 200 after 60 s", n.id);
                }
            }
        }
        if !procs::wait_http_ok(&self.lb(), "/health", Duration::from_secs(30)) {
            bail!("balancer /health not 200");
        }
        Ok(())
    }

    /// Stop haproxy, the nodes, redis: exactly the recorded pids.
    pub fn stop_all(&self) {
        if !self.reg.dir().is_dir() {
            self.reg.log(format!(
                "nothing to stop ({} missing)",
                self.reg.dir().display()
            ));
            return;
        }
        self.reg.stop("haproxy", "haproxy", false);
        for name in self.reg.names() {
            if name.starts_with('n') {
                self.reg.stop(&name, "hybrid-cache", false);
            }
        }
        self.reg.stop("redis", "redis-server", false);
        self.reg.log(format!(
            "cluster down (logs kept in {})",
            self.reg.dir().display()
        ));
    }
}

/// The `[[nodes]]` of a cluster.toml: id, http and gossip address of each.
fn read_nodes(config: &std::path::Path) -> Result<Vec<Node>> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("read {}", config.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parse {}", config.display()))?;
    let Some(nodes) = table.get("nodes").and_then(|n| n.as_array()) else {
        return Ok(Vec::new());
    };
    nodes
        .iter()
        .map(|n| {
            let field = |k: &str| {
                n.get(k)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .with_context(|| {
                        format!("{}: a [[nodes]] entry without `{k}`", config.display())
                    })
            };
            Ok(Node {
                id: field("id")?,
                http: field("http")?,
                gossip: field("gossip")?,
            })
        })
        .collect()
}

/// `haproxy` on PATH, else /usr/sbin/haproxy.
fn haproxy_bin() -> &'static str {
    if have("haproxy") {
        "haproxy"
    } else {
        "/usr/sbin/haproxy"
    }
}

/// apt-get install redis-server and haproxy when missing.
pub fn ensure_servers() -> Result<()> {
    ensure_apt("cluster", &[("redis-server", "redis-server")])?;
    if !std::path::Path::new("/usr/sbin/haproxy").exists() {
        ensure_apt("cluster", &[("haproxy", "haproxy")])?;
    }
    Ok(())
}

/// `cargo xtask cluster up`: installs redis-server and haproxy when missing, builds the
/// release binary (unless HC_NO_CARGO=1), refuses busy ports, starts everything and waits
/// for health; on failure shows the logs and stops what it started.
pub fn up() -> Result<i32> {
    let c = Local::from_env()?;
    c.reg.create()?;
    ensure_servers()?;
    if std::env::var("HC_NO_CARGO").as_deref() != Ok("1") {
        c.reg.log("cargo build --release");
        run(cargo().args(["build", "--release", "--locked", "--bin", "hybrid-cache"]))?;
    }
    if !c.bin.is_file() {
        bail!("missing {}", c.bin.display());
    }
    c.check_ports()?;
    if let Err(e) = c.start_all() {
        c.reg.log(format!("startup failed: {e:#}"));
        c.reg.tail_logs(20);
        c.stop_all();
        return Ok(1);
    }
    let nodes: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.http))
        .collect();
    c.reg.log(format!(
        "cluster up: http://{} (nodes: {} )",
        c.lb(),
        nodes.join(" ")
    ));
    Ok(0)
}

/// `cargo xtask cluster down`.
pub fn down() -> Result<i32> {
    Local::from_env()?.stop_all();
    Ok(0)
}
