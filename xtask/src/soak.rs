//! `cargo xtask soak node`: 3 nodes + their own redis-server behind haproxy, all on free
//! loopback ports from hc-testkit (state in .soak/, never the ports of cluster.toml), under
//! mixed bounded load with periodic faults, sampling every node's RSS, open file
//! descriptors, L2 backlog (`hc_l2_backlog` of /metrics) and mailbox depths (sum of
//! `hc_mailbox_depth`, bounded by construction: reported, not fitted) every 10 s into
//! .soak/samples.csv; soak_analyze.rs judges the samples.
//!
//! Load: two loadcheck.py workers (PUT/GET/DELETE/invalidate, a new connection per
//! request, bounded keys, bounded request count) on two categories, plus 64 KiB values on
//! a third. Faults, one per minute in turn: SIGKILL redis + restart; SIGSTOP a node for 5 s;
//! SIGKILL node n3 + restart (a restarted process starts a new series).

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::{ensure_servers, Local, Node};
use crate::procs::{self, Registry};
use crate::soak_analyze::{analyze, Limits};
use crate::util::{cargo, cmd, root, run, target_dir};

/// `cargo xtask soak node` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds of load.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Seconds after each process's first sample that do not count for its slopes.
    #[arg(long, default_value_t = 120)]
    warmup: u64,
    /// Judge saved samples (a samples.csv) instead of running.
    #[arg(long)]
    analyze: Option<PathBuf>,
}

/// `cargo xtask soak node`: the exit code (0 pass, 1 growth past a limit, 2 bad usage).
pub fn node(a: &Args) -> Result<i32> {
    let limits = Limits::from_env()?;
    if let Some(path) = &a.analyze {
        return analyze(path, a.warmup as f64, &limits);
    }
    if a.warmup >= a.duration {
        eprintln!("warm-up must be shorter than the duration");
        return Ok(2);
    }
    let c = local()?;
    ensure_servers()?;
    if !c.bin.is_file() {
        c.reg.log("building the release binary");
        run(cargo().args(["build", "--release", "--bin", "hybrid-cache"]))?;
    }
    let mut r = Running {
        c,
        children: Vec::new(),
        threads: Vec::new(),
    };
    r.start()?;
    r.load(a.duration, a.warmup)?;
    r.faults(a.duration);
    r.finish();
    println!("== load");
    for f in ["load-general.json", "load-perm.json"] {
        let text = std::fs::read_to_string(r.c.reg.path(f)).unwrap_or_default();
        println!("{}", text.lines().last().unwrap_or(""));
    }
    let large = std::fs::read_to_string(r.c.reg.path("load-large.log")).unwrap_or_default();
    print!("{large}");
    analyze(&r.c.reg.path("samples.csv"), a.warmup as f64, &limits)
}

/// The soak cluster: 8 free ports (balancer, redis, http and gossip of n1..n3), its
/// config written to .soak/soak.toml.
fn local() -> Result<Local> {
    let ports = hc_testkit::free_ports(8);
    let reg = Registry::new(root().join(".soak"), "cluster");
    reg.create()?;
    let config = reg.path("soak.toml");
    let nodes: Vec<Node> = (0..3)
        .map(|i| Node {
            id: format!("n{}", i + 1),
            http: format!("127.0.0.1:{}", ports[2 + 2 * i]),
            gossip: format!("127.0.0.1:{}", ports[3 + 2 * i]),
        })
        .collect();
    let mut text = format!(
        "namespace = \"soak\"\nisolation_grace_ms = 1000\n\
         cluster_secret = \"soak-cluster-secret-local\"\n[redis]\n\
         url = \"redis://127.0.0.1:{}/0\"\n",
        ports[1]
    );
    for n in &nodes {
        text += &format!(
            "[[nodes]]\nid = \"{}\"\nhttp = \"{}\"\ngossip = \"{}\"\n",
            n.id, n.http, n.gossip
        );
    }
    std::fs::write(&config, text).with_context(|| format!("write {}", config.display()))?;
    let bin = std::env::var_os("HC_BIN")
        .map_or_else(|| target_dir().join("release/hybrid-cache"), PathBuf::from);
    Ok(Local {
        reg,
        config,
        bin,
        lb_port: ports[0],
        redis_port: ports[1],
        nodes,
    })
}

/// A soak run in progress: everything it started is stopped when it is dropped.
struct Running {
    c: Local,
    children: Vec<Child>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for ch in &mut self.children {
            if matches!(ch.try_wait(), Ok(None)) {
                procs::signal(ch.id(), "TERM");
                let _ = ch.wait();
            }
        }
        for n in &self.c.nodes {
            if let Some(pid) = self.c.reg.pid_of(&n.id) {
                if self.c.reg.is_running(&n.id, "hybrid-cache") {
                    procs::signal(pid, "CONT");
                }
            }
            self.c.reg.stop(&n.id, "hybrid-cache", false);
        }
        self.c.reg.stop("haproxy", "haproxy", false);
        self.c.reg.stop("redis", "redis-server", false);
    }
}

impl Running {
    fn lb(&self) -> String {
        format!("http://{}", self.c.lb())
    }

    /// Redis, the nodes (each /health 200 within 30 s), haproxy (the same).
    fn start(&mut self) -> Result<()> {
        self.c.start_redis()?;
        for n in &self.c.nodes {
            self.c.start_node(&n.id)?;
        }
        for n in &self.c.nodes {
            if !procs::wait_http_ok(&n.http, "/health", Duration::from_secs(30)) {
                bail!("{} did not start", n.id);
            }
        }
        self.c.start_haproxy()?;
        if !procs::wait_http_ok(&self.c.lb(), "/health", Duration::from_secs(30)) {
            bail!("haproxy did not start");
        }
        Ok(())
    }

    /// The sampler thread, the two loadcheck workers and the large-value thread.
    fn load(&mut self, duration: u64, warmup: u64) -> Result<()> {
        let lb = self.lb();
        self.c.reg.log(format!(
            "cluster up: lb {lb}, redis {}; soak {duration}s (warm-up {warmup}s)",
            self.c.redis_port
        ));
        let samples = File::create(self.c.reg.path("samples.csv")).context("create samples.csv")?;
        let nodes: Vec<(String, String)> = self
            .c
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.http.clone()))
            .collect();
        let dir = self.c.reg.dir().to_path_buf();
        self.threads.push(std::thread::spawn(move || {
            sampler(samples, &Registry::new(dir, "soak"), &nodes, duration)
        }));
        let workers: [(&str, &[&str]); 2] = [
            (
                "load-general.json",
                &[
                    "--keys",
                    "256",
                    "--concurrency",
                    "4",
                    "--category",
                    "general",
                    "--label",
                    "soak-general",
                    "--run",
                    "s1",
                ],
            ),
            (
                "load-perm.json",
                &[
                    "--keys",
                    "512",
                    "--concurrency",
                    "2",
                    "--category",
                    "permissions",
                    "--write-ratio",
                    "0.5",
                    "--label",
                    "soak-perm",
                    "--run",
                    "s2",
                ],
            ),
        ];
        for (out, args) in workers {
            let f = File::create(self.c.reg.path(out)).with_context(|| format!("create {out}"))?;
            let err = f.try_clone().context("duplicate a log file")?;
            let child = cmd("python3")
                .arg("xtask/py/loadcheck.py")
                .args(["load", "--url", &lb, "--duration", &duration.to_string()])
                .args(["--grace-ms", "500", "--max-requests", "3000000"])
                .args(args)
                .stdout(f)
                .stderr(err)
                .spawn()
                .context("start xtask/py/loadcheck.py load")?;
            self.children.push(child);
        }
        let log =
            File::create(self.c.reg.path("load-large.log")).context("create load-large.log")?;
        let addr = self.c.lb();
        self.threads.push(std::thread::spawn(move || {
            large_values(&addr, duration, log)
        }));
        Ok(())
    }

    /// One fault a minute, in turn, while at least 30 s of the run remain.
    fn faults(&self, duration: u64) {
        let start = Instant::now();
        let left = |d: u64| start.elapsed() < Duration::from_secs(d.saturating_sub(30));
        let c = &self.c;
        let mut cycle = 0;
        while left(duration) {
            sleep(Duration::from_secs(60));
            if !left(duration) {
                break;
            }
            match cycle % 3 {
                0 => {
                    c.reg.log("fault: SIGKILL redis, restart after 3 s");
                    c.reg.stop("redis", "redis-server", true);
                    sleep(Duration::from_secs(3));
                    if let Err(e) = c.start_redis() {
                        c.reg.log(format!("redis restart failed: {e:#}"));
                    }
                }
                1 => {
                    c.reg.log("fault: SIGSTOP n2 for 5 s");
                    if let Some(pid) = c
                        .reg
                        .pid_of("n2")
                        .filter(|_| c.reg.is_running("n2", "hybrid-cache"))
                    {
                        procs::signal(pid, "STOP");
                        sleep(Duration::from_secs(5));
                        procs::signal(pid, "CONT");
                    }
                }
                _ => self.restart_n3(),
            }
            cycle += 1;
        }
    }

    fn restart_n3(&self) {
        let c = &self.c;
        c.reg.log("fault: SIGKILL n3, restart");
        c.reg.stop("n3", "hybrid-cache", true);
        sleep(Duration::from_secs(1));
        let back = c.start_node("n3").is_ok()
            && c.node("n3")
                .is_some_and(|n| procs::wait_http_ok(&n.http, "/health", Duration::from_secs(30)));
        if !back {
            c.reg.log("n3 did not come back within 30 s");
        }
    }

    /// Wait for the workers (120 s at most after the faults, which end 30 s before the
    /// duration; then they are terminated by drop) and the threads (bounded by the duration themselves).
    fn finish(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        for ch in &mut self.children {
            while matches!(ch.try_wait(), Ok(None)) && Instant::now() < deadline {
                sleep(Duration::from_millis(200));
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Every 10 s for `duration`, one CSV row per node process: t, node, pid, VmRSS (KiB),
/// open fds, hc_l2_backlog, the sum of hc_mailbox_depth.
fn sampler(mut out: File, reg: &Registry, nodes: &[(String, String)], duration: u64) {
    let _ = writeln!(out, "t,node,pid,rss_kib,fds,l2_backlog,mailboxes");
    let t0 = Instant::now();
    while t0.elapsed() <= Duration::from_secs(duration) {
        let t = t0.elapsed().as_secs_f64().round();
        for (id, http) in nodes {
            let Some(pid) = reg.pid_of(id) else { continue };
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let Some(rss) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
            else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()) else {
                continue;
            };
            let (backlog, mailboxes) = metrics(http);
            let _ = writeln!(out, "{t},{id},{pid},{rss},{fds},{backlog},{mailboxes}");
        }
        let into_period = t0.elapsed().as_secs_f64() % 10.0;
        sleep(Duration::from_secs_f64(10.0 - into_period));
    }
}

/// hc_l2_backlog and the sum of hc_mailbox_depth from a node's /metrics ("" when absent).
fn metrics(http: &str) -> (String, String) {
    let Some((_, text)) = procs::http_get(http, "/metrics", Duration::from_secs(2)) else {
        return (String::new(), String::new());
    };
    let value = |l: &str| l.split_whitespace().last().unwrap_or("").to_string();
    let backlog = text
        .lines()
        .find(|l| l.starts_with("hc_l2_backlog "))
        .map(value)
        .unwrap_or_default();
    let mailboxes: i64 = text
        .lines()
        .filter(|l| l.starts_with("hc_mailbox_depth{"))
        .filter_map(|l| value(l).parse::<f64>().ok())
        .map(|v| v as i64)
        .sum();
    (backlog, mailboxes.to_string())
}

/// 64 KiB PUT/GET over 200 keys in `prompts` through the balancer (a new connection per
/// request), bounded by `duration` and 2,000,000 requests; writes its count to `log`.
fn large_values(addr: &str, duration: u64, mut log: File) {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
        | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let body: Vec<u8> = (0..65536).map(|_| next() as u8).collect();
    let end = Instant::now() + Duration::from_secs(duration);
    let (mut n, mut errors) = (0u64, 0u64);
    while Instant::now() < end && n < 2_000_000 {
        let k = next() % 200;
        let path = format!("/v1/cache/prompts/big{k}");
        let put = n % 3 == 0;
        if request(addr, &path, put.then_some(&body[..])).is_err() {
            errors += 1;
        }
        n += 1;
    }
    let _ = writeln!(log, "large-value requests={n} errors={errors}");
}

/// One HTTP/1.0 request (PUT with `body`, else GET), the response read to its end.
fn request(addr: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<()> {
    let sock = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    match body {
        Some(b) => {
            write!(
                s,
                "PUT {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
                b.len()
            )?;
            s.write_all(b)?;
        }
        None => write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?,
    }
    let mut sink = Vec::new();
    s.read_to_end(&mut sink).map(|_| ())
}
