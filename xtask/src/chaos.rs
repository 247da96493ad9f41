//! `cargo xtask cluster chaos`: bounded load through the local cluster's balancer with a
//! staleness checker (xtask/py/loadcheck.py), while
//!   1. one node is SIGKILLed  -> time until a survivor reports it dead,
//!   2. it is restarted        -> time until it is alive again,
//!   3. Redis is SIGKILLed and restarted (nodes degrade, then recover).
//!
//! Prints requests, errors, stale reads and timings; exits non-zero on any stale read (or
//! when a step fails). Starts the cluster when it is not running, and stops it again then.
//! CHAOS_DURATION (s, default 45), CHAOS_MAX_REQUESTS (200000), CHAOS_GRACE_MS (500: the
//! coherence bound under full load on 2 cores; reads of an older value within it count as
//! "lagged", later ones as stale; 0 = strict), CHAOS_VICTIM (n2), CHAOS_DETECT_TIMEOUT
//! (s, 30).

use std::fs::File;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::{self, Local};
use crate::procs;
use crate::util::cmd;

/// The settings of one run (environment variables, kept as given: loadcheck parses them).
struct Settings {
    duration: String,
    max_requests: String,
    grace_ms: String,
    victim: String,
    detect_timeout: String,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            duration: env_or("CHAOS_DURATION", "45"),
            max_requests: env_or("CHAOS_MAX_REQUESTS", "200000"),
            grace_ms: env_or("CHAOS_GRACE_MS", "500"),
            victim: env_or("CHAOS_VICTIM", "n2"),
            detect_timeout: env_or("CHAOS_DETECT_TIMEOUT", "30"),
        }
    }
}

/// The load checker running in the background; terminated when dropped still running.
struct Load(Child);

impl Drop for Load {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            procs::signal(self.0.id(), "TERM");
            let _ = self.0.wait();
        }
    }
}

/// `python3 xtask/py/loadcheck.py ARGS`: its trimmed stdout (a number of seconds, or
/// "timeout") and whether it succeeded.
fn loadcheck(args: &[&str]) -> (String, bool) {
    match cmd("python3")
        .arg("xtask/py/loadcheck.py")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(out) => (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            out.status.success(),
        ),
        Err(e) => (format!("(loadcheck: {e})"), false),
    }
}

/// `cargo xtask cluster chaos`.
pub fn chaos() -> Result<i32> {
    let c = Local::from_env()?;
    c.reg.create()?;
    let started_here = procs::http_get(&c.lb(), "/health", Duration::from_secs(2)).is_none();
    if started_here {
        c.reg.log("cluster not running: starting it");
        let rc = cluster::up()?;
        if rc != 0 {
            return Ok(rc);
        }
    }
    let result = run(&c, &Settings::from_env());
    if started_here {
        c.stop_all();
    }
    result
}

/// Timings of the fault steps and the names of the steps that failed.
#[derive(Default)]
struct Steps {
    detect: String,
    rejoin: String,
    healthy_again: String,
    failed: Vec<&'static str>,
}

fn run(c: &Local, s: &Settings) -> Result<i32> {
    if !c.reg.is_running(&s.victim, "hybrid-cache") {
        bail!(
            "{} is not a node this tool's cluster started (no live pid in {})",
            s.victim,
            c.reg.dir().display()
        );
    }
    if !c.reg.is_running("redis", "redis-server") {
        bail!(
            "redis (pid in {}) is not running",
            c.reg.path("redis.pid").display()
        );
    }
    let Some(observer) = c.nodes.iter().find(|n| n.id != s.victim) else {
        bail!("no node besides {} in {}", s.victim, c.config.display());
    };
    let lb = format!("http://{}", c.lb());
    c.reg.log(format!(
        "load: {}s / {} requests max through {lb}",
        s.duration, s.max_requests
    ));
    let summary_path = c.reg.path("chaos-summary.json");
    let summary_file = File::create(&summary_path)
        .with_context(|| format!("create {}", summary_path.display()))?;
    let child = cmd("python3")
        .arg("xtask/py/loadcheck.py")
        .args(["load", "--url", &lb, "--duration", &s.duration])
        .args(["--max-requests", &s.max_requests, "--label", "chaos"])
        .args(["--grace-ms", &s.grace_ms])
        .stdout(summary_file)
        .spawn()
        .context("start xtask/py/loadcheck.py load")?;
    let mut load = Load(child);
    sleep(Duration::from_secs(3));
    let steps = faults(c, s, &observer.id, &observer.http)?;
    c.reg.log("waiting for the load to finish");
    let load_rc = wait_load(&mut load, s)?;
    Ok(report(c, &steps, load_rc))
}

/// The fault steps: kill and restart the victim, kill and restart Redis.
fn faults(c: &Local, s: &Settings, observer: &str, obs_http: &str) -> Result<Steps> {
    let mut st = Steps::default();
    let obs_url = format!("http://{obs_http}");
    let victim = c
        .node(&s.victim)
        .with_context(|| format!("{} is not in {}", s.victim, c.config.display()))?;
    let wait_state = |state: &str| {
        loadcheck(&[
            "wait-state",
            "--url",
            &obs_url,
            "--target",
            &s.victim,
            "--state",
            state,
            "--timeout",
            &s.detect_timeout,
        ])
    };
    c.reg.log(format!("SIGKILL {}", s.victim));
    c.reg.stop(&s.victim, "hybrid-cache", true);
    let (detect, ok) = wait_state("dead");
    st.failed.extend((!ok).then_some("detect-dead"));
    c.reg.log(format!(
        "{observer} reports {} dead after {detect}s",
        s.victim
    ));
    st.detect = detect;
    sleep(Duration::from_secs(1));

    c.reg.log(format!("restart {}", s.victim));
    c.start_node(&s.victim)?;
    if !procs::wait_http_ok(&victim.http, "/health", Duration::from_secs(30)) {
        st.failed.push("restart-health");
    }
    let (rejoin, ok) = wait_state("alive");
    st.failed.extend((!ok).then_some("rejoin"));
    c.reg.log(format!(
        "{observer} reports {} alive after {rejoin}s",
        s.victim
    ));
    st.rejoin = rejoin;
    sleep(Duration::from_secs(2));

    c.reg.log("SIGKILL redis");
    c.reg.stop("redis", "redis-server", true);
    sleep(Duration::from_secs(1));
    let degraded = procs::http_get(obs_http, "/health", Duration::from_secs(2))
        .map(|(_, body)| body)
        .unwrap_or_default();
    c.reg
        .log(format!("{observer} /health without redis: {degraded}"));
    sleep(Duration::from_secs(2));
    c.reg.log("restart redis");
    c.start_redis()?;
    sleep(Duration::from_secs(3));
    let (healthy, ok) = loadcheck(&["wait-health", "--url", &obs_url, "--timeout", "30"]);
    st.failed.extend((!ok).then_some("redis-recovery"));
    st.healthy_again = healthy;
    Ok(st)
}

/// Wait for the load checker (its duration plus two minutes at most, then it is killed);
/// its exit code.
fn wait_load(load: &mut Load, s: &Settings) -> Result<i32> {
    let secs: u64 = s.duration.parse().unwrap_or(45);
    let deadline = Instant::now() + Duration::from_secs(secs + 120);
    loop {
        if let Some(status) = load.0.try_wait().context("poll the load checker")? {
            return Ok(status.code().unwrap_or(2));
        }
        if Instant::now() >= deadline {
            eprintln!("[cluster] load checker still running after {secs} s + 120 s: killed");
            return Ok(2);
        }
        sleep(Duration::from_millis(200));
    }
}

/// Print the summary; the exit code of the run.
fn report(c: &Local, st: &Steps, load_rc: i32) -> i32 {
    let text = std::fs::read_to_string(c.reg.path("chaos-summary.json")).unwrap_or_default();
    let summary: Option<serde_json::Value> = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok());
    println!("== chaos summary");
    match summary {
        Some(s) => {
            println!(
                "requests={} errors={} stale_reads={} hits={} misses={} rps={}",
                s["requests"], s["errors"], s["stale_reads"], s["hits"], s["misses"], s["rps"]
            );
            println!("error kinds: {}", s["error_kinds"]);
        }
        None => println!("(no summary from the load checker)"),
    }
    let or_q = |v: &str| {
        if v.is_empty() {
            "?".to_string()
        } else {
            v.to_string()
        }
    };
    println!(
        "detect_dead_s={} rejoin_alive_s={} health_after_redis_restart_s={}",
        or_q(&st.detect),
        or_q(&st.rejoin),
        or_q(&st.healthy_again)
    );
    if !st.failed.is_empty() {
        println!("FAILED steps: {}", st.failed.join(" "));
        return 1;
    }
    match load_rc {
        0 => {
            println!("PASS: no stale reads");
            0
        }
        1 => {
            println!("FAIL: stale reads");
            1
        }
        rc => {
            println!("FAIL: load checker exit {rc}");
            1
        }
    }
}
