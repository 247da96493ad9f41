//! Shared helpers for integration tests (`mod support;` in a `tests/*.rs` file).
//!
//! The harness itself (free ports, private `redis-server` processes, a raw RESP client,
//! `wait_until`) lives in the `hc-testkit` workspace crate (`testkit/`), shared with
//! `cargo xtask` and the Python checkers; this module re-exports it and adds what needs
//! this package's binary.
//!
//! `cargo xtask test` installs `redis-server` when it is missing. The binary can be
//! overridden with `HC_TEST_REDIS_SERVER=/path/to/redis-server`.
#![allow(dead_code, unused_imports)]

pub use hc_testkit::{
    encode_command, free_addr, free_port, read_reply, wait_until, RedisServer, Resp, RespConn,
    FORBIDDEN_PORT,
};

use std::process::Command;

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
