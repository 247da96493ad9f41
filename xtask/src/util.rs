//! Process plumbing shared by the subcommands: the repository root, the target directory,
//! running a command with its failure as an error, apt-get installs, polling an HTTP URL.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The repository root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// `$CARGO_TARGET_DIR`, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// A command run from the repository root, without the package variables `cargo run`
/// gave xtask (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...): build scripts such as ring's rerun
/// when they change, so a nested cargo would otherwise rebuild half the tree each time
/// `cargo xtask` and plain `cargo` alternate.
pub fn cmd(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    c.current_dir(root());
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        let from_cargo_run = n.starts_with("CARGO_PKG_")
            || matches!(
                n.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if from_cargo_run {
            c.env_remove(&name);
        }
    }
    c
}

/// `cargo` (the one running xtask, when known) run from the repository root.
pub fn cargo() -> Command {
    cmd(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Text of a command line for messages.
pub fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run to completion; a non-zero exit is an error naming the command.
pub fn run(c: &mut Command) -> Result<()> {
    let status = c
        .status()
        .with_context(|| format!("could not start `{}`", describe(c)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(c));
    }
    Ok(())
}

/// Run to completion and return its stdout (stderr passes through); non-zero exit is an error.
pub fn output(c: &mut Command) -> Result<String> {
    let out = c
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{}`", describe(c)))?;
    if !out.status.success() {
        bail!("`{}` failed ({})", describe(c), out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", describe(c)))
}

/// Run and return the exit code (a signal counts as 128 + signal number, like a shell).
pub fn exit_code(c: &mut Command) -> Result<i32> {
    let status = c
        .status()
        .with_context(|| format!("could not start `{}`", describe(c)))?;
    Ok(status.code().unwrap_or_else(|| {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }
        #[cfg(not(unix))]
        1
    }))
}

/// A bash program under `xtask/sh/`, run from the repository root with `args`.
pub fn sh(script: &str, args: &[String]) -> Result<i32> {
    let mut c = cmd("bash");
    c.arg(root().join("xtask/sh").join(script)).args(args);
    exit_code(&mut c)
}

/// True when `program` is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// apt-get install the packages of the `(program, package)` pairs whose program is missing
/// (with sudo when not root), as the scripts did; `who` prefixes the message.
pub fn ensure_apt(who: &str, needs: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(prog, _)| !have(prog))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("[{who}] installing {} (apt-get)", missing.join(" "));
    let sudo = !is_root();
    let apt = |args: &[&str]| -> Command {
        let mut c = if sudo { cmd("sudo") } else { cmd("env") };
        if sudo {
            c.arg("env");
        }
        c.arg("DEBIAN_FRONTEND=noninteractive")
            .arg("apt-get")
            .args(args)
            .stdout(Stdio::null());
        c
    };
    run(&mut apt(&["update", "-qq"]))?;
    run(apt(&["install", "-y", "-qq"]).args(&missing))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The HTTP status of `GET http://addr{path}` (HTTP/1.0, no body read), or None when the
/// server does not answer within `timeout`.
pub fn http_status(addr: &str, path: &str, timeout: Duration) -> Option<u16> {
    let sock = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Poll `GET http://addr/health` until it answers 200, failing early when `child` exits.
pub fn wait_health(addr: &str, child: &mut Child, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if http_status(addr, "/health", Duration::from_secs(1)) == Some(200) {
            return Ok(());
        }
        if let Some(status) = child.try_wait().context("poll the node")? {
            bail!("node exited ({status}) before /health answered");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("node on {addr} did not answer /health 200 within {timeout:?}")
}

/// SIGTERM a child by its pid and reap it (SIGKILL after 10 s).
pub fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Remove every `HC_*` and `REDIS_*` variable (and APP_ENV, HC_CONFIG) from a node's
/// environment, so that only what the caller sets reaches it.
pub fn clean_node_env(c: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("HC_") || n.starts_with("REDIS_") {
            c.env_remove(&name);
        }
    }
    c
}

/// A fresh temporary directory, removed on drop.
pub fn tempdir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("create a temporary directory")
}

/// Builds the `hc-testkit` binary and returns its path: the Python programs take their
/// free ports and redis-server command line from it (`HC_TESTKIT`).
pub fn testkit_binary() -> Result<PathBuf> {
    run(cargo().args(["build", "-q", "-p", "hc-testkit"]))?;
    Ok(target_dir().join("debug").join("hc-testkit"))
}
