//! `hc-testkit`: the test harness for programs that are not Rust (the Python fault checker,
//! the redis-py test, the benchmark and UI scripts under `xtask/py/`).
//!
//! ```text
//! hc-testkit free-port [--count N] [--avoid P,P,...]   {"ports":[21234,27011]}
//! hc-testkit redis-server --port P --dir DIR [-- EXTRA...]
//!     becomes (exec) a private redis-server on 127.0.0.1:P with the harness's arguments;
//!     the caller stops it by its pid (the same pid: exec keeps it)
//! ```
//! Ports follow the policy of `hc_testkit::ports` (loopback, below the ephemeral range, free
//! for TCP and UDP, never 6379); `--avoid` carries the ports the calling process already
//! holds, so that a process is never handed the same port twice.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use hc_testkit::ports::free_port_avoiding;
use hc_testkit::{redis_server_args, redis_server_binary, FORBIDDEN_PORT};

const USAGE: &str = "usage: hc-testkit free-port [--count N] [--avoid P,P,...]\n       \
                     hc-testkit redis-server --port P --dir DIR [-- EXTRA...]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("free-port") => free_port_cmd(&args[1..]),
        Some("redis-server") => redis_server_cmd(&args[1..]),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hc-testkit: {e}");
            ExitCode::from(2)
        }
    }
}

/// The value after a flag.
fn value<'a>(args: &'a [String], i: usize, flag: &str) -> Result<&'a str, String> {
    args.get(i + 1)
        .map(String::as_str)
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("not a port: {text:?}"))
}

fn free_port_cmd(args: &[String]) -> Result<(), String> {
    let mut count = 1usize;
    let mut avoid = HashSet::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--count" => {
                let v = value(args, i, "--count")?;
                count = v.parse().map_err(|_| format!("not a count: {v:?}"))?;
                i += 2;
            }
            "--avoid" => {
                for p in value(args, i, "--avoid")?
                    .split(',')
                    .filter(|p| !p.is_empty())
                {
                    avoid.insert(parse_port(p)?);
                }
                i += 2;
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let ports: Vec<String> = (0..count)
        .map(|_| free_port_avoiding(&avoid).to_string())
        .collect();
    println!("{{\"ports\":[{}]}}", ports.join(","));
    Ok(())
}

fn redis_server_cmd(args: &[String]) -> Result<(), String> {
    let mut port = None;
    let mut dir = None;
    let mut extra: &[String] = &[];
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--port" => {
                port = Some(parse_port(value(args, i, "--port")?)?);
                i += 2;
            }
            "--dir" => {
                dir = Some(PathBuf::from(value(args, i, "--dir")?));
                i += 2;
            }
            "--" => {
                extra = &args[i + 1..];
                break;
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let port = port.ok_or("redis-server needs --port")?;
    let dir = dir.ok_or("redis-server needs --dir")?;
    if port == FORBIDDEN_PORT {
        return Err("never port 6379 (the system Redis)".into());
    }
    let mut cmd = std::process::Command::new(redis_server_binary());
    cmd.args(redis_server_args(port, &dir)).args(extra);
    exec(cmd)
}

#[cfg(unix)]
fn exec(mut cmd: std::process::Command) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    // Only returns on failure.
    let err = cmd.exec();
    Err(format!("exec {:?}: {err}", cmd.get_program()))
}

#[cfg(not(unix))]
fn exec(mut cmd: std::process::Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("run {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("redis-server exited: {status}"))
    }
}
