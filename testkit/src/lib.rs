//! The one test harness of hybrid-cache: free loopback ports, private `redis-server`
//! processes and a raw RESP client.
//!
//! Used three ways, so that the port policy and the way a Redis is started exist once:
//! - by the root package's integration tests (a dev-dependency; `tests/support/mod.rs`
//!   re-exports it),
//! - by `cargo xtask` (benchmarks that need a private Redis),
//! - by the Python checkers (`tests/fault/`, `tests/python/`, `xtask/py/`) through the
//!   `hc-testkit` binary, which prints JSON (`hc-testkit free-port --count 2`).
//!
//! The policy ([`free_port`]): loopback only, below the ephemeral range, free for TCP and
//! UDP, never 6379, never handed out twice in one process; servers are stopped by pid.

pub mod cluster;
pub mod ports;
pub mod redis;
pub mod resp;

pub use cluster::RedisCluster;
pub use ports::{free_addr, free_port, free_ports, FORBIDDEN_PORT};
pub use redis::{redis_server_args, redis_server_binary, RedisServer};
pub use resp::{encode_command, read_reply, Resp, RespConn};

use std::time::{Duration, Instant};

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
