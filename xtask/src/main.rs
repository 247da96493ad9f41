//! `cargo xtask`: the one project tool of hybrid-cache (rust-analyzer's xtask pattern).
//!
//! Every former `scripts/*.sh` is a subcommand here; `cargo xtask --help` lists them and
//! `cargo xtask <command> --help` says what each one does. Plain sequencing is Rust; the
//! larger programs stay where they are best written: Python under `xtask/py/` (benchmarks,
//! load checker, UI test) and `tests/` (the fault checker), a few shell programs under
//! `xtask/sh/` (the container tests CI runs), all started from here.

mod api_fuzz;
mod arch;
mod chaos;
mod checks;
mod cluster;
mod ops;
mod perf;
mod procs;
mod python;
mod redis_topo;
mod rust_source;
mod soak;
mod soak_analyze;
mod testing;
mod util;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "hybrid-cache project tool: tests, CI, checks, benchmarks, local clusters", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The test suite (the README's test command): installs missing apt packages
    /// (redis-server, redis-tools, redis-sentinel, python3), runs the fault checker's Python
    /// self-test, `cargo test --all-targets ARGS`, the tests of xtask and testkit, the doc
    /// tests and the redis-py test of the
    /// RESP front end. ARGS that select targets themselves (--test X, --lib, --doc, ...) run
    /// only `cargo test ARGS`, e.g. `cargo xtask test --test library`.
    Test {
        /// Passed to `cargo test` (e.g. `--test library -- some_name`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Everything CI runs, in order: fmt, clippy -D warnings, doc, test, arch (cycles fail),
    /// sim-gossip, alerts, api-fuzz, ui-test, install-check, python (pytest suite and benchmark,
    /// bounded to 45 min), compose lib, fault-check (180 s, B = 50 ms,
    /// roles strict; then 60 s of `--workload nearcache` and 90 s of `--topology sentinel`), fuzz (HC_CI_FUZZ_SECONDS, default 30 s per target, no sanitizer) and,
    /// when a Docker engine answers, the container tests.
    Ci {
        /// Only what follows the tests (arch onwards): `.ci/run` runs `cargo xtask lint` and
        /// `cargo xtask test` itself first.
        #[arg(long)]
        after_test: bool,
    },
    /// Format check, clippy with warnings as errors (the whole workspace: the package, xtask,
    /// testkit), rustdoc of the package with warnings as errors.
    Lint,
    /// Module map of src/: prints the `crate::` edges between modules (outside comments and
    /// #[cfg(test)] modules) and fails on an import cycle (Tarjan SCC); reports files over
    /// 500 non-test lines and functions over 80 lines (fails on them only with --strict).
    Arch(arch::Args),
    /// The randomized fault checker (tests/fault/): 3 real nodes, a private redis-server, one
    /// TCP proxy per node, concurrent clients, a nemesis; the history is checked offline.
    /// Exit 0 = pass, 1 = stale beyond the bound or corruption, 2 = the run itself failed.
    /// ARGS: [--duration SECS] [--bound-ms B] [--seed N] [--strict CATS] [--faults LIST]
    /// [--clients N] [--out DIR] [--workload http|library|nearcache|mixed]
    /// [--topology single|sentinel|cluster] [--redis-persistence [aof|rdb]]
    /// (docs/testing.md "Fault checker"). Re-check a history:
    /// python3 tests/fault/checker.py DIR/history.jsonl [--bound-ms B].
    FaultCheck {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every cargo-fuzz target in fuzz/ for SECS seconds each (default 30), or only
    /// TARGETS. Installs cargo-fuzz when missing; nightly when installed, else stable with
    /// RUSTC_BOOTSTRAP=1. FUZZ_SANITIZER=none skips ASan; FUZZ_TARGET_DIR overrides
    /// fuzz/target. Crashes land in fuzz/artifacts/<target> and fail the run.
    Fuzz {
        /// Seconds per target.
        #[arg(default_value_t = 30)]
        secs: u64,
        /// Targets (default: all five).
        targets: Vec<String>,
    },
    /// The deterministic gossip simulation (examples/gossip_sim.rs, release build) with its
    /// assertions: every size converged, spread its fresh joins (--preconverged), detected
    /// every kill and saw no false `dead`. Without ARGS, the CI run (1,000 nodes
    /// pre-converged, 10 fresh joins, 3 kills, 5 s steady; < 1 min). ARGS go to the example,
    /// e.g. `--nodes 1000,5000 --loss 0.01 --kills 10 --partition-secs 5`.
    SimGossip {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Schemathesis against /openapi.json of a node (L1 only, free loopback port), without
    /// and with an API token: no 5xx, no response outside the schema. HC_FUZZ_EXAMPLES
    /// (default 40) examples per operation; HC_BIN overrides the binary. Installs
    /// schemathesis (pip) when missing.
    ApiFuzz,
    /// GET /ui in headless Chromium against a 3-node loopback cluster, with a real Prometheus
    /// scrape (xtask/py/ui_test.py). Installs chromium and prometheus when missing. The
    /// screenshot goes to a temporary file unless HC_UI_SCREENSHOT is set.
    UiTest,
    /// Prometheus alert rules: promtool check rules, test rules (alerts_test.yml), check
    /// config of both scrape configs. Installs prometheus (promtool) when missing.
    Alerts,
    /// `cargo install --path .` (debug, into a temporary root) gives a `hybrid-cache` on
    /// PATH that prints --version and runs a node answering /health.
    InstallCheck,
    /// The Python package (python/): a venv under target/python-venv, `pip install ./python`
    /// (maturin, release build of the abi3 extension), its pytest suite (python/tests, with
    /// private redis-servers on free loopback ports) and one run of python/benches/bench.py (printed).
    /// Bounded (45 min for the stage, 180 s per test): a hang dumps every Python thread's
    /// stack and fails. Also run by `cargo xtask ci`.
    Python,
    /// Benchmarks (not tests; release builds, private servers on free loopback ports).
    #[command(subcommand)]
    Bench(perf::Bench),
    /// Soak runs (not tests): long bounded runs that count leaks and false detections.
    #[command(subcommand)]
    Soak(perf::Soak),
    /// The local 3-node cluster of cluster.toml (redis on 6390, haproxy on HC_LB_PORT or
    /// 8080; state in .cluster/).
    #[command(subcommand)]
    Cluster(ops::Cluster),
    /// Local Redis Sentinel / Redis Cluster topologies for development.
    #[command(subcommand)]
    Redis(ops::Redis),
    /// docker-compose.yml: container tests, images, the compose v1/v2 choice.
    #[command(subcommand)]
    Compose(ops::Compose),
}

/// The subcommand of `argv`. `test` keeps its arguments exactly as given (clap would drop a
/// leading `--`, which `cargo test` needs: `cargo xtask test -- --nocapture`).
fn parse(argv: Vec<String>) -> Cmd {
    match Cli::parse_from(&argv).cmd {
        Cmd::Test { .. } => Cmd::Test {
            args: argv.iter().skip(2).cloned().collect(),
        },
        other => other,
    }
}

fn main() -> ExitCode {
    match dispatch(parse(std::env::args().collect())) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand; Ok(exit code) for the commands whose code carries meaning.
fn dispatch(cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Test { args } => testing::test(&args).map(|()| 0),
        Cmd::Ci { after_test } => testing::ci(after_test).map(|()| 0),
        Cmd::Lint => testing::lint().map(|()| 0),
        Cmd::Arch(args) => arch::run(&args),
        Cmd::FaultCheck { args } => checks::fault_check(&args),
        Cmd::Fuzz { secs, targets } => checks::fuzz(secs, &targets),
        Cmd::SimGossip { args } => checks::sim_gossip(&args).map(|()| 0),
        Cmd::ApiFuzz => api_fuzz::api_fuzz().map(|()| 0),
        Cmd::UiTest => checks::ui_test(),
        Cmd::Alerts => checks::alerts().map(|()| 0),
        Cmd::InstallCheck => checks::install_check().map(|()| 0),
        Cmd::Python => python::python().map(|()| 0),
        Cmd::Bench(b) => perf::bench(b),
        Cmd::Soak(s) => perf::soak(s),
        Cmd::Cluster(c) => ops::cluster(c),
        Cmd::Redis(r) => ops::redis(r),
        Cmd::Compose(c) => ops::compose(c),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, Cmd};

    fn test_args(argv: &[&str]) -> Vec<String> {
        match parse(argv.iter().map(|s| s.to_string()).collect()) {
            Cmd::Test { args } => args,
            _ => panic!("not parsed as test: {argv:?}"),
        }
    }

    #[test]
    fn test_arguments_reach_cargo_test_unchanged() {
        assert_eq!(
            test_args(&["xtask", "test", "--test", "library"]),
            ["--test", "library"]
        );
        assert_eq!(
            test_args(&["xtask", "test", "--lib", "--", "--nocapture"]),
            ["--lib", "--", "--nocapture"]
        );
        assert_eq!(
            test_args(&["xtask", "test", "--", "--nocapture"]),
            ["--", "--nocapture"]
        );
    }
}
