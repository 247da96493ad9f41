//! `test`, `lint` and `ci`: the suite, the static checks, and everything CI runs in order.

use anyhow::{bail, Result};

use crate::util::{cargo, cmd, ensure_apt, have, run, target_dir, testkit_binary};
use crate::{arch, checks, ops};

/// cargo test arguments that select targets themselves: with one of them, `--all-targets`
/// (which would run everything) and the extra steps are left out.
const SELECTING: &[&str] = &[
    "--test",
    "--lib",
    "--bin",
    "--bins",
    "--bench",
    "--benches",
    "--example",
    "--examples",
    "--tests",
    "--doc",
];

fn selects_targets(args: &[String]) -> bool {
    for a in args {
        if a == "--" {
            return false;
        }
        let flag = a.split('=').next().unwrap_or(a);
        if SELECTING.contains(&flag) {
            return true;
        }
    }
    false
}

/// `cargo xtask test [ARGS]`.
pub fn test(args: &[String]) -> Result<()> {
    ensure_apt(
        "test",
        &[
            ("redis-server", "redis-server"),
            ("redis-cli", "redis-tools"),
            ("redis-sentinel", "redis-sentinel"),
            ("python3", "python3"),
        ],
    )?;
    // The Debian package may try to start a system service; tests never use it.
    run(cmd("redis-server").arg("--version"))?;
    let testkit = testkit_binary()?;

    // Self-test of the fault checker (the offline history checker on hand-made histories,
    // and the fault proxy); stdlib Python only, a few seconds.
    eprintln!("[test] python3 -m unittest discover tests/fault");
    run(cmd("python3")
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "tests/fault",
            "-t",
            "tests/fault",
        ])
        .env("HC_TESTKIT", &testkit))?;

    if selects_targets(args) {
        return run(cargo().arg("test").args(args));
    }
    run(cargo().args(["test", "--all-targets"]).args(args))?;
    // The project tool and the shared harness have tests of their own (the gossip
    // simulation's table check, the arch parser, the port policy).
    run(cargo().args(["test", "-q", "-p", "xtask", "-p", "hc-testkit"]))?;
    // --all-targets leaves out doctests (the runnable examples of the rustdoc): run them too.
    run(cargo().args(["test", "--doc"]).args(args))?;

    // The RESP front end through redis-py, against the debug binary the tests above built.
    let have_redis_py = cmd("python3")
        .args(["-c", "import redis"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_redis_py {
        eprintln!("[test] installing redis-py (pip)");
        let plain = run(cmd("python3").args(["-m", "pip", "install", "--quiet", "redis"]));
        if plain.is_err() {
            run(cmd("python3").args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--break-system-packages",
                "redis",
            ]))?;
        }
    }
    run(cmd("python3")
        .arg("tests/python/test_resp_redis_py.py")
        .env("HC_BIN", target_dir().join("debug").join("hybrid-cache"))
        .env("HC_TESTKIT", &testkit))
}

/// `cargo xtask lint`.
pub fn lint() -> Result<()> {
    eprintln!("== cargo fmt --all --check");
    run(cargo().args(["fmt", "--all", "--check"]))?;
    eprintln!("== cargo clippy --workspace --all-targets -- -D warnings");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("== cargo doc (warnings are errors)");
    run(cargo()
        .args(["doc", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))
}

/// `cargo xtask ci`: the steps of the former `.ci/run`, same order, same arguments; the
/// module-cycle check right after the tests. `after_test`: only the steps after the tests.
pub fn ci(after_test: bool) -> Result<()> {
    if !after_test {
        lint()?;
        eprintln!("== cargo xtask test");
        test(&[])?;
    }
    eprintln!("== cargo xtask arch --strict --depth 0 (no import cycle at any depth; files <= 500 lines, functions <= 80)");
    let mut code = 0;
    for dir in ["src", "xtask/src", "testkit/src", "python/src"] {
        code |= arch::run(&arch::Args {
            strict: true,
            depth: 0,
            src: Some(crate::util::root().join(dir)),
            ..arch::Args::default()
        })?;
    }
    if code != 0 {
        bail!("cargo xtask arch: an import cycle between modules, or a file or function over its limit");
    }
    eprintln!("== cargo xtask sim-gossip (1,000-node gossip simulation, release build; < 1 min)");
    checks::sim_gossip(&[])?;
    eprintln!("== cargo xtask alerts (promtool: rules valid and proven to fire)");
    checks::alerts()?;
    eprintln!(
        "== cargo xtask api-fuzz (schemathesis against /openapi.json, with and without a token)"
    );
    crate::api_fuzz::api_fuzz()?;
    eprintln!("== cargo xtask ui-test (GET /ui in headless Chromium against a 3-node cluster; real Prometheus scrape)");
    expect_zero("ui-test", checks::ui_test()?)?;
    eprintln!("== cargo xtask install-check (cargo install --path . gives hybrid-cache on PATH)");
    checks::install_check()?;
    eprintln!("== cargo xtask python (the Python package: pytest suite and benchmark; bounded, a hang dumps stacks and fails)");
    crate::python::python()?;
    eprintln!("== cargo xtask compose lib (docker compose v2 or docker-compose v1)");
    expect_zero("compose lib", ops::compose(ops::Compose::Lib)?)?;
    fault_checks()?;
    let secs = std::env::var("HC_CI_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    eprintln!("== cargo xtask fuzz ({secs} s per target)");
    std::env::set_var("FUZZ_SANITIZER", "none");
    expect_zero("fuzz", checks::fuzz(secs, &[])?)?;
    if docker_answers() {
        eprintln!("== cargo xtask compose test");
        expect_zero("compose test", ops::compose(ops::Compose::Test)?)?;
        eprintln!("== cargo xtask compose topology (Sentinel and Redis Cluster profiles; the primary container killed)");
        for profile in ["sentinel", "redis-cluster"] {
            let c = ops::Compose::Topology {
                profile: profile.into(),
            };
            expect_zero("compose topology", ops::compose(c)?)?;
        }
    } else {
        eprintln!("SKIP compose-test: no Docker engine");
    }
    Ok(())
}

/// CI's fault-checker runs: every fault of one Redis (3 min), the near-cache workload (60 s)
/// and the Sentinel topology (90 s); B = 50 ms.
fn fault_checks() -> Result<()> {
    let runs: [(&str, &str, &[&str]); 4] = [
        (
            "fault-check",
            "150 s, B = 50 ms, every fault, roles strict",
            &["--duration", "150", "--bound-ms", "50", "--strict", "roles"],
        ),
        (
            "fault-check nearcache",
            "60 s, B = 50 ms, every fault; refresh-ahead, fail-safe and negative caching must trigger",
            &["--duration", "60", "--bound-ms", "50", "--workload", "nearcache"],
        ),
        (
            "fault-check sentinel",
            "90 s, B = 50 ms, roles strict; primary killed, paused and cut off from the sentinels",
            &[
                "--duration",
                "90",
                "--bound-ms",
                "50",
                "--strict",
                "roles",
                "--topology",
                "sentinel",
            ],
        ),
        (
            "fault-check cluster",
            "60 s, B = 50 ms, roles strict; a primary of 3 killed or paused, categories on every primary",
            &[
                "--duration",
                "60",
                "--bound-ms",
                "50",
                "--strict",
                "roles",
                "--topology",
                "cluster",
            ],
        ),
    ];
    for (name, what, args) in runs {
        eprintln!("== cargo xtask {name} ({what}): {}", args.join(" "));
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        expect_zero(name, checks::fault_check(&args)?)?;
    }
    Ok(())
}

fn expect_zero(step: &str, code: i32) -> Result<()> {
    if code != 0 {
        bail!("{step} failed (exit {code})");
    }
    Ok(())
}

fn docker_answers() -> bool {
    have("docker")
        && cmd("docker")
            .arg("info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::selects_targets;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn target_selection_is_recognised_before_the_separator_only() {
        assert!(selects_targets(&v(&["--test", "library"])));
        assert!(selects_targets(&v(&["--test=library"])));
        assert!(selects_targets(&v(&["--lib", "coherence"])));
        assert!(!selects_targets(&v(&["coherence"])));
        assert!(!selects_targets(&v(&["--", "--test"])));
    }
}
