//! Shared helpers for integration tests (`mod support;` in a `tests/*.rs` file).
//!
//! `RedisServer` runs a private `redis-server` child process on a free loopback
//! port (never 6379), so tests never depend on, or disturb, a system Redis.
//! It talks to the server with raw RESP over `std::net::TcpStream`: no extra
//! crates, and it can send arbitrary bytes (garbage-injection tests).
//!
//! `scripts/test.sh` installs `redis-server` when it is missing. The binary can
//! be overridden with `HC_TEST_REDIS_SERVER=/path/to/redis-server`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long to wait for a fresh `redis-server` to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts at finding a port nobody else grabs between probe and bind.
const START_ATTEMPTS: usize = 8;
/// The system Redis port: never used by tests.
pub const FORBIDDEN_PORT: u16 = 6379;

/// A free TCP port on 127.0.0.1 (bind to port 0, read it, release it).
/// Never returns 6379. Another process may still grab it before the caller
/// binds; callers that spawn servers should retry on collision.
pub fn free_port() -> u16 {
    loop {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 for a free port");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if port != FORBIDDEN_PORT {
            return port;
        }
    }
}

/// A free loopback socket address (`127.0.0.1:<free port>`).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// A decoded RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The reply as UTF-8 text, for simple strings and bulk strings.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Encode one command as a RESP array of bulk strings.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Read one RESP reply from a buffered stream.
pub fn read_reply<R: BufRead>(r: &mut R) -> std::io::Result<Resp> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("short RESP line: {:?}", String::from_utf8_lossy(&line)),
        ));
    }
    let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    match line[0] {
        b'+' => Ok(Resp::Simple(body)),
        b'-' => Ok(Resp::Error(body)),
        b':' => body.parse().map(Resp::Int).map_err(|_| bad("bad integer")),
        b'$' => {
            let n: i64 = body.parse().map_err(|_| bad("bad bulk length"))?;
            if n < 0 {
                return Ok(Resp::Bulk(None));
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n as usize);
            Ok(Resp::Bulk(Some(buf)))
        }
        b'*' => {
            let n: i64 = body.parse().map_err(|_| bad("bad array length"))?;
            if n < 0 {
                return Ok(Resp::Array(None));
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_reply(r)?);
            }
            Ok(Resp::Array(Some(items)))
        }
        _ => Err(bad("unknown RESP type byte")),
    }
}

/// A raw RESP connection (already authenticated if the server has a password).
pub struct RespConn {
    reader: BufReader<TcpStream>,
}

impl RespConn {
    pub fn connect(port: u16, password: Option<&str>, timeout: Duration) -> std::io::Result<Self> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut conn = RespConn {
            reader: BufReader::new(stream),
        };
        if let Some(pw) = password {
            match conn.command(&[b"AUTH", pw.as_bytes()])? {
                Resp::Simple(_) => {}
                other => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!("AUTH failed: {other:?}"),
                    ))
                }
            }
        }
        Ok(conn)
    }

    /// Send a command and read its reply.
    pub fn command(&mut self, args: &[&[u8]]) -> std::io::Result<Resp> {
        self.send(args)?;
        self.read()
    }

    /// Send a command without reading a reply (e.g. SUBSCRIBE, then `read`).
    pub fn send(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        let s = self.reader.get_mut();
        s.write_all(&encode_command(args))?;
        s.flush()
    }

    /// Read the next reply (or pushed pub/sub message).
    pub fn read(&mut self) -> std::io::Result<Resp> {
        read_reply(&mut self.reader)
    }

    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> std::io::Result<()> {
        self.reader.get_ref().set_read_timeout(t)
    }
}

/// A private `redis-server` child process on a free loopback port.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start a server without a password.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Start a server that requires `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_inner(Some(password.to_string()))
    }

    fn start_inner(password: Option<String>) -> Self {
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut server = RedisServer {
                port: free_port(),
                password: password.clone(),
                child: None,
                dir: tempfile::Builder::new()
                    .prefix("hc-test-redis-")
                    .tempdir()
                    .expect("tempdir"),
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                // Most likely somebody took the port between probe and bind.
                Err(e) => last_err = e,
            }
        }
        panic!("could not start redis-server after {START_ATTEMPTS} attempts: {last_err}");
    }

    fn binary() -> String {
        std::env::var("HC_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
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
        let mut cmd = Command::new(Self::binary());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        if let Some(pw) = &self.password {
            cmd.arg("--requirepass").arg(pw);
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "spawn `{}`: {e} (install redis-server, e.g. via scripts/test.sh)",
                Self::binary()
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

/// Poll `f` until it returns true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `hybrid-cache` binary with every configuration variable of the environment removed,
/// so a developer's `REDIS_URL` or `HC_*` never leaks into a test.
pub fn hybrid_cache_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hybrid-cache"));
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("REDIS_") || n.starts_with("HC_") || n == "APP_ENV" {
            cmd.env_remove(&name);
        }
    }
    cmd
}
