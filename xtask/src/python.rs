//! `cargo xtask python`: the Python package (python/) as a user gets it. A venv under
//! target/, `pip install ./python` (maturin builds the abi3 extension, release), then its
//! pytest suite and one run of its benchmark (printed; nothing timed is asserted).
//!
//! Part of `cargo xtask ci`. The whole stage is bounded ([`STAGE_LIMIT`]): every command
//! runs under `timeout` with what is left of it, so a hang fails CI instead of using up its
//! limit. A hung pytest or benchmark gets SIGABRT first, which runs Python's faulthandler
//! (every thread's stack on stderr), then SIGKILL; pytest itself dumps and exits when one
//! test runs past [`TEST_LIMIT_SECS`].

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util::{cmd, ensure_apt, run, target_dir, testkit_binary};

/// The whole stage: a cold release build of the extension, the suite (about a minute) and
/// the benchmark (about a minute), with room for a loaded machine.
const STAGE_LIMIT: Duration = Duration::from_secs(45 * 60);

/// One pytest test: past it, pytest dumps every thread's stack and exits.
const TEST_LIMIT_SECS: u64 = 180;

/// The stage's deadline: `timeout` commands with the time that is left of it.
struct Deadline(Instant);

impl Deadline {
    /// `program ARGS` under `timeout -s ABRT -k 10 <left>`, at most `cap` seconds.
    fn bounded(&self, cap: u64, program: impl AsRef<OsStr>) -> Result<Command> {
        let left = self.0.saturating_duration_since(Instant::now()).as_secs();
        if left < 30 {
            bail!("cargo xtask python: the stage's {STAGE_LIMIT:?} are used up");
        }
        let mut c = cmd("timeout");
        c.args(["-s", "ABRT", "-k", "10"])
            .arg(format!("{}s", left.min(cap)))
            .arg(program);
        Ok(c)
    }
}

/// The venv's interpreter, creating the venv when missing.
fn venv_python(d: &Deadline) -> Result<PathBuf> {
    let venv = target_dir().join("python-venv");
    let python = venv.join("bin").join("python");
    if !python.exists() {
        eprintln!("[python] python3 -m venv {}", venv.display());
        run(d.bounded(300, "python3")?.args(["-m", "venv"]).arg(&venv))
            .context("python3 -m venv (on Debian: apt-get install python3-venv)")?;
    }
    Ok(python)
}

/// `cargo xtask python`.
pub fn python() -> Result<()> {
    let d = Deadline(Instant::now() + STAGE_LIMIT);
    ensure_apt(
        "python",
        &[("redis-server", "redis-server"), ("python3", "python3")],
    )?;
    let py = venv_python(&d)?;
    eprintln!("[python] pip install maturin pytest redis cachetools");
    run(d.bounded(900, &py)?.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "maturin>=1.5,<2",
        "pytest",
        "redis",
        "cachetools",
    ]))?;
    // What a user runs: pip builds the wheel with maturin (PEP 517) and installs it.
    eprintln!("[python] pip install ./python (maturin, release build)");
    run(d.bounded(2400, &py)?.args([
        "-m",
        "pip",
        "install",
        "--force-reinstall",
        "--no-deps",
        "./python",
    ]))?;
    let testkit = testkit_binary()?;
    eprintln!("[python] pytest python/tests");
    let per_test = format!("faulthandler_timeout={TEST_LIMIT_SECS}");
    run(d
        .bounded(1200, &py)?
        .args([
            "-X",
            "faulthandler",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        // The dump is followed by an exit, not by more waiting (an ini option of recent
        // pytest; an older one warns and only dumps, and `timeout` ends the run).
        .args(["-o", &per_test, "-o", "faulthandler_exit_on_timeout=true"])
        .arg("python/tests")
        .env("HC_TESTKIT", &testkit))?;
    eprintln!("[python] python/benches/bench.py (printed, not asserted)");
    run(d
        .bounded(900, &py)?
        .args([
            "-X",
            "faulthandler",
            "python/benches/bench.py",
            "--reps",
            "9",
        ])
        .env("HC_TESTKIT", &testkit))
}
