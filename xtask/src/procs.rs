//! Processes that outlive `cargo xtask`: the local cluster and the Redis Sentinel / Redis
//! Cluster topologies start servers that keep running after the command returns. Each one
//! records its pid in `<state>/<name>.pid` and logs to `<state>/<name>.log`; a server is
//! only ever signalled through its recorded pid, and only while that pid still runs the
//! program it was recorded for.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
pub use hc_testkit::wait_until;
use hc_testkit::{Resp, RespConn, FORBIDDEN_PORT};

/// A state directory of pid and log files, and the tag its messages carry.
pub struct Registry {
    dir: PathBuf,
    tag: &'static str,
}

impl Registry {
    /// The registry in `dir` (not created yet); messages read `[tag] ...`.
    pub fn new(dir: PathBuf, tag: &'static str) -> Self {
        Registry { dir, tag }
    }

    /// Create the state directory.
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("create {}", self.dir.display()))
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<state>/<file>`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A progress message on stderr, `[tag] msg`.
    pub fn log(&self, msg: impl std::fmt::Display) {
        eprintln!("[{}] {msg}", self.tag);
    }

    /// The pid recorded for `name`, if any.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.path(&format!("{name}.pid"))).ok()?;
        text.trim().parse().ok()
    }

    /// The names with a pid file, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".pid").map(str::to_string)
            })
            .collect();
        names.sort();
        names
    }

    /// True when the recorded pid of `name` is alive (not a zombie) and its command line
    /// contains `program`.
    pub fn is_running(&self, name: &str, program: &str) -> bool {
        self.pid_of(name)
            .is_some_and(|pid| alive(pid) && cmdline(pid).contains(program))
    }

    /// Start `c` detached (its own process group, stdin closed, stdout and stderr appended
    /// to `<name>.log`) and record its pid in `<name>.pid`.
    pub fn spawn(&self, name: &str, c: &mut Command) -> Result<u32> {
        let log_path = self.path(&format!("{name}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let err = log.try_clone().context("duplicate the log file")?;
        let child = c
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {name} ({})", crate::util::describe(c)))?;
        let pid = child.id();
        let pid_path = self.path(&format!("{name}.pid"));
        std::fs::write(&pid_path, format!("{pid}\n"))
            .with_context(|| format!("write {}", pid_path.display()))?;
        Ok(pid)
    }

    /// Signal the recorded pid of `name` (TERM, then KILL after 5 s; `kill_now` sends KILL
    /// at once) if it still runs `program`, wait until it is gone, remove the pid file.
    /// Returns the pid that was signalled.
    pub fn stop(&self, name: &str, program: &str, kill_now: bool) -> Option<u32> {
        let pid = self.pid_of(name);
        let signalled = pid.filter(|_| self.is_running(name, program));
        if let Some(pid) = signalled {
            signal(pid, if kill_now { "KILL" } else { "TERM" });
            if !wait_until(Duration::from_secs(5), || !alive(pid)) {
                signal(pid, "KILL");
                wait_until(Duration::from_secs(5), || !alive(pid));
            }
        }
        let _ = std::fs::remove_file(self.path(&format!("{name}.pid")));
        signalled
    }

    /// The last `n` lines of every log file on stderr (after a failed start).
    pub fn tail_logs(&self, n: usize) {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for p in logs {
            eprintln!("--- tail {}", p.display());
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for l in &lines[lines.len().saturating_sub(n)..] {
                eprintln!("{l}");
            }
        }
    }
}

/// True when `pid` exists and is not a zombie (a killed child nobody reaped counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

/// The command line of `pid`, arguments joined by spaces ("" when gone).
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// `kill -SIG pid`; true when the signal was delivered.
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when somebody listens on the TCP address (TIME_WAIT leftovers do not count: std
/// binds with SO_REUSEADDR).
pub fn tcp_busy(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_err()
}

/// True when the UDP address is bound by somebody.
pub fn udp_busy(addr: SocketAddr) -> bool {
    UdpSocket::bind(addr).is_err()
}

/// One command to the loopback Redis on `port` (never 6379), on a fresh connection with a
/// 2 s timeout; None when it does not answer.
pub fn redis(port: u16, args: &[&str]) -> Option<Resp> {
    if port == FORBIDDEN_PORT {
        return None;
    }
    let mut c = RespConn::connect(port, None, Duration::from_secs(2)).ok()?;
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.command(&args).ok()
}

/// True when the loopback Redis on `port` answers PING.
pub fn redis_ping(port: u16) -> bool {
    matches!(redis(port, &["PING"]), Some(Resp::Simple(s)) if s == "PONG")
}

/// `GET http://addr{path}` (HTTP/1.0): the status and the body, or None when nothing
/// answers within `timeout`.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let sock: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Poll `GET http://addr{path}` until it answers 200 or `timeout` passes.
pub fn wait_http_ok(addr: &str, path: &str, timeout: Duration) -> bool {
    wait_until(timeout, || {
        matches!(http_get(addr, path, Duration::from_secs(2)), Some((200, _)))
    })
}
