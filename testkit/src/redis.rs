//! Private `redis-server` processes on free loopback ports (never 6379): the one way tests,
//! benchmarks and the fault checker start a Redis.
//!
//! The binary is `redis-server` on PATH (`cargo xtask test` installs it when missing), or
//! `HC_TEST_REDIS_SERVER=/path/to/redis-server`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::{free_port, FORBIDDEN_PORT};
use crate::resp::{Resp, RespConn};

/// How long to wait for a fresh `redis-server` to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts at finding a port nobody else grabs between probe and bind.
const START_ATTEMPTS: usize = 8;

/// The `redis-server` program: `HC_TEST_REDIS_SERVER` or `redis-server` on PATH.
pub fn redis_server_binary() -> String {
    std::env::var("HC_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

/// The arguments of a private, non-persistent, loopback-only server on `port` with its
/// working directory `dir`, in the foreground (so it is stopped by its pid).
pub fn redis_server_args(port: u16, dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--dir",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(dir.as_os_str().to_owned());
    args
}

/// A private `redis-server` child process on a free loopback port.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start a server without a password. Panics when no server starts (tests).
    pub fn start() -> Self {
        Self::try_start(None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start a server that requires `password` (`--requirepass`). Panics when no server
    /// starts (tests).
    pub fn start_with_password(password: &str) -> Self {
        Self::try_start(Some(password.to_string())).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start a server (with `--requirepass` when `password` is set) on a free port,
    /// trying a few ports; the error says why the last attempt failed.
    pub fn try_start(password: Option<String>) -> Result<Self, String> {
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("hc-test-redis-")
                .tempdir()
                .map_err(|e| format!("tempdir for redis-server: {e}"))?;
            let mut server = RedisServer {
                port: free_port(),
                password: password.clone(),
                child: None,
                dir,
            };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                // Most likely somebody took the port between probe and bind.
                Err(e) => last_err = e,
            }
        }
        Err(format!(
            "could not start redis-server after {START_ATTEMPTS} attempts: {last_err}"
        ))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        assert_ne!(self.port, FORBIDDEN_PORT, "tests never use port 6379");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("open redis log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(redis_server_binary());
        cmd.args(redis_server_args(self.port, self.dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        if let Some(pw) = &self.password {
            cmd.arg("--requirepass").arg(pw);
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "spawn `{}`: {e} (install redis-server, e.g. via `cargo xtask test`)",
                redis_server_binary()
            )
        })?;
        self.child = Some(child);
        match self.wait_ready(READY_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.kill();
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                Err(format!("{e}; redis log:\n{log}"))
            }
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("redis-server exited early: {status}"));
                }
            }
            if self.ping() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {} not ready in {timeout:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// True when the server answers PING right now.
    pub fn ping(&self) -> bool {
        match self.conn() {
            Ok(mut c) => matches!(c.command(&[b"PING"]), Ok(Resp::Simple(ref s)) if s == "PONG"),
            Err(_) => false,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// `redis://[:password@]127.0.0.1:<port>/0`
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// The child's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL the server (no shutdown handshake) and reap it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port (killing a running instance first) and
    /// wait until it answers PING. Data is gone (no persistence).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("redis-server restart on port {} failed: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// SIGSTOP the server: connections stay open but nothing is answered
    /// (a hung Redis, as opposed to a dead one). Undo with `resume`.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT a paused server.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let status = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -{sig} {pid} failed");
        }
    }

    /// A new raw RESP connection (authenticated when a password is set).
    pub fn conn(&self) -> std::io::Result<RespConn> {
        RespConn::connect(self.port, self.password.as_deref(), Duration::from_secs(5))
    }

    /// Run one command on a fresh connection.
    pub fn command(&self, args: &[&[u8]]) -> std::io::Result<Resp> {
        self.conn()?.command(args)
    }

    /// PUBLISH arbitrary bytes (e.g. garbage, truncated or oversized frames)
    /// on `channel`; returns how many subscribers received it.
    pub fn publish_raw(&self, channel: &str, payload: &[u8]) -> i64 {
        match self
            .command(&[b"PUBLISH", channel.as_bytes(), payload])
            .expect("PUBLISH")
        {
            Resp::Int(n) => n,
            other => panic!("PUBLISH answered {other:?}"),
        }
    }

    /// Number of subscribers on `channel` (PUBSUB NUMSUB); handy to wait until
    /// a node has subscribed before injecting messages.
    pub fn subscribers(&self, channel: &str) -> i64 {
        match self.command(&[b"PUBSUB", b"NUMSUB", channel.as_bytes()]) {
            Ok(Resp::Array(Some(items))) => match items.get(1) {
                Some(Resp::Int(n)) => *n,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// Keys matching `pattern` (KEYS; fine for small test data sets).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        match self.command(&[b"KEYS", pattern.as_bytes()]) {
            Ok(Resp::Array(Some(items))) => items.iter().filter_map(Resp::as_text).collect(),
            other => panic!("KEYS answered {other:?}"),
        }
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
