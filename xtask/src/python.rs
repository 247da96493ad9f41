//! `cargo xtask python`: the Python package (python/) as a user gets it. A venv under
//! target/, `pip install ./python` (maturin builds the abi3 extension, release), then its
//! pytest suite and one run of its benchmark (printed; nothing timed is asserted).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::util::{cmd, ensure_apt, run, target_dir, testkit_binary};

/// The venv's interpreter, creating the venv when missing.
fn venv_python() -> Result<PathBuf> {
    let venv = target_dir().join("python-venv");
    let python = venv.join("bin").join("python");
    if !python.exists() {
        eprintln!("[python] python3 -m venv {}", venv.display());
        run(cmd("python3").args(["-m", "venv"]).arg(&venv))
            .context("python3 -m venv (on Debian: apt-get install python3-venv)")?;
    }
    Ok(python)
}

/// `cargo xtask python`.
pub fn python() -> Result<()> {
    ensure_apt(
        "python",
        &[("redis-server", "redis-server"), ("python3", "python3")],
    )?;
    let py = venv_python()?;
    eprintln!("[python] pip install maturin pytest redis cachetools");
    run(cmd(&py).args([
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
    run(cmd(&py).args([
        "-m",
        "pip",
        "install",
        "--force-reinstall",
        "--no-deps",
        "./python",
    ]))?;
    let testkit = testkit_binary()?;
    eprintln!("[python] pytest python/tests");
    // Bounded: a deadlock (the GIL held while waiting) must fail, not hang CI.
    run(cmd("timeout")
        .arg("900")
        .arg(&py)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "python/tests",
        ])
        .env("HC_TESTKIT", &testkit))?;
    eprintln!("[python] python/bench.py (printed, not asserted)");
    run(cmd("timeout")
        .arg("600")
        .arg(&py)
        .args(["python/bench.py", "--reps", "9"])
        .env("HC_TESTKIT", &testkit))
}
