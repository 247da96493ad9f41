//! Checks that run real programs and assert: the fault checker, fuzzing, the gossip
//! simulation, the UI test, the alert rules, the install check (the API fuzzer: `api_fuzz`).

use std::fs::File;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::util::{
    cargo, cmd, ensure_apt, exit_code, have, output, root, run, stop, target_dir, tempdir,
    testkit_binary, wait_health,
};

/// `cargo xtask fault-check [ARGS]`: exit code of tests/fault/run.py (0 pass, 1 stale or
/// corrupt, 2 the run failed).
pub fn fault_check(args: &[String]) -> Result<i32> {
    ensure_apt("fault-check", &[("redis-server", "redis-server")])?;
    let topology = |name: &str| {
        args.windows(2)
            .any(|w| w[0] == "--topology" && w[1] == name)
            || args
                .iter()
                .any(|a| a.strip_prefix("--topology=") == Some(name))
    };
    if topology("sentinel") {
        ensure_apt("fault-check", &[("redis-sentinel", "redis-sentinel")])?;
    }
    if topology("cluster") {
        // `redis-cli --cluster create` joins the servers.
        ensure_apt("fault-check", &[("redis-cli", "redis-tools")])?;
    }
    run(cargo().args(["build", "--quiet", "--bin", "hybrid-cache"]))?;
    let testkit = testkit_binary()?;
    let mut out = None;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--out" {
            out = Some(args.get(i + 1).context("--out needs a directory")?.clone());
            i += 2;
        } else if let Some(dir) = args[i].strip_prefix("--out=") {
            out = Some(dir.to_string());
            i += 1;
        } else {
            rest.push(args[i].clone());
            i += 1;
        }
    }
    let out = match out {
        Some(o) => o,
        None => target_dir()
            .join("fault-check")
            .join(format!("run-{}-{}", utc_stamp(), std::process::id()))
            .to_string_lossy()
            .into_owned(),
    };
    exit_code(
        cmd("python3")
            .arg("tests/fault/run.py")
            .arg("--binary")
            .arg(target_dir().join("debug").join("hybrid-cache"))
            .arg("--out")
            .arg(out)
            .args(rest)
            .env("HC_TESTKIT", testkit),
    )
}

/// `YYYYMMDDTHHMMSSZ` of now (UTC), for run directory names.
pub(crate) fn utc_stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The cargo-fuzz targets of fuzz/.
const FUZZ_TARGETS: &[&str] = &[
    "wire_decode",
    "gossip_frame",
    "pattern_parse",
    "config_toml",
    "http_key_ttl",
    "http_invalidate",
];

/// `cargo xtask fuzz [SECS] [TARGETS]`: 0 when no target crashed.
pub fn fuzz(secs: u64, targets: &[String]) -> Result<i32> {
    let targets: Vec<String> = if targets.is_empty() {
        FUZZ_TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        targets.to_vec()
    };
    if !have("cargo-fuzz") {
        eprintln!("[fuzz] installing cargo-fuzz");
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let nightly = cmd("rustup")
        .args(["toolchain", "list"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("nightly"))
        });
    if !nightly {
        eprintln!("[fuzz] no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1");
    }
    // Separate target dir: sanitizer builds must not invalidate the normal build's artefacts.
    let fuzz_target = std::env::var_os("FUZZ_TARGET_DIR")
        .unwrap_or_else(|| root().join("fuzz/target").into_os_string());
    // FUZZ_SANITIZER=none (CI) skips the AddressSanitizer build: a panic is still a failure,
    // and the crate has no unsafe code of its own; the default keeps ASan for long runs.
    let sanitizer = std::env::var("FUZZ_SANITIZER").unwrap_or_else(|_| "address".into());
    let mut status = 0;
    for t in &targets {
        let corpus = format!("fuzz/corpus/{t}");
        std::fs::create_dir_all(root().join(&corpus)).with_context(|| format!("mkdir {corpus}"))?;
        eprintln!("== fuzz {t} for {secs}s");
        let log_path = root().join(format!("fuzz/{t}.log"));
        let log =
            File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let mut c = if nightly {
            let mut c = cmd("cargo");
            c.arg("+nightly");
            c
        } else {
            let mut c = cargo();
            c.env("RUSTC_BOOTSTRAP", "1");
            c
        };
        c.env("CARGO_TARGET_DIR", &fuzz_target)
            .args(["fuzz", "run", "--sanitizer", &sanitizer, t, &corpus, "--"])
            .arg(format!("-max_total_time={secs}"))
            .args([
                "-max_len=4096",
                "-rss_limit_mb=2048",
                "-print_final_stats=1",
            ])
            .stderr(Stdio::from(log));
        let ok = c
            .status()
            .with_context(|| format!("run cargo fuzz {t}"))?
            .success();
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if ok {
            for l in text.lines().filter(|l| {
                l.contains("stat::number_of_executed_units") || l.contains("stat::peak_rss_mb")
            }) {
                eprintln!("[{t}] {l}");
            }
        } else {
            eprintln!("[fuzz] {t} FAILED; see fuzz/{t}.log and fuzz/artifacts/{t}/");
            let lines: Vec<&str> = text.lines().collect();
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
            status = 1;
        }
    }
    Ok(status)
}

/// The default (CI) arguments of the gossip simulation.
const SIM_CI_ARGS: &[&str] = &[
    "--nodes",
    "1000",
    "--preconverged",
    "--fresh-joins",
    "10",
    "--kills",
    "3",
    "--partition-secs",
    "0",
    "--steady-secs",
    "5",
];

/// `cargo xtask sim-gossip [ARGS]`: runs the example, prints its table, asserts on it.
pub fn sim_gossip(args: &[String]) -> Result<()> {
    let args: Vec<String> = if args.is_empty() {
        SIM_CI_ARGS.iter().map(|s| s.to_string()).collect()
    } else {
        args.to_vec()
    };
    let pre = args.iter().any(|a| a == "--preconverged");
    let cold = args.iter().any(|a| a == "--cold-start");
    let out = output(
        cargo()
            .args([
                "run",
                "--quiet",
                "--release",
                "--example",
                "gossip_sim",
                "--",
            ])
            .args(&args),
    )?;
    print!("{out}");
    check_sim_table(&out, pre)?;
    if cold {
        check_cold_start_goals(&out)?;
    }
    Ok(())
}

/// Issue #25's cold-start goals on a `--cold-start` table: convergence at most 3 s after the
/// last start, every detection (the max column) at most 2 s.
pub fn check_cold_start_goals(out: &str) -> Result<()> {
    for row in out.lines().skip(3) {
        let cols: Vec<&str> = row.split('|').collect();
        let col = |i: usize| cols.get(i).copied().unwrap_or("").trim();
        let ms = |text: &str| text.trim().parse::<f64>().ok();
        let max = col(5)
            .split('(')
            .next()
            .and_then(|d| d.split('/').nth(2))
            .and_then(ms);
        match (ms(col(3)), max) {
            (Some(conv), Some(det)) if conv <= 3000.0 && det <= 2000.0 => {}
            _ => bail!(
                "{} nodes: cold start over 3 s or a detection over 2 s: {row}",
                col(1)
            ),
        }
    }
    Ok(())
}

/// The assertions on the simulation's Markdown table (three header lines, then one row per
/// size): convergence reached, fresh joins known (pre-converged runs), every kill detected,
/// no false `dead`.
pub fn check_sim_table(out: &str, preconverged: bool) -> Result<()> {
    let rows: Vec<&str> = out.lines().skip(3).collect();
    if rows.is_empty() {
        bail!("gossip simulation printed no result row");
    }
    for row in rows {
        let cols: Vec<&str> = row.split('|').collect();
        let col = |i: usize| cols.get(i).copied().unwrap_or("");
        let (nodes, conv, joins, det, false_dead) = (col(1), col(3), col(4), col(5), col(6));
        if conv.contains('—') {
            bail!("{nodes} nodes: did not converge: {row}");
        }
        if preconverged && joins.contains('—') {
            bail!("{nodes} nodes: fresh joins not known everywhere: {row}");
        }
        if !false_dead.starts_with(" 0.000 ") {
            bail!("{nodes} nodes: false `dead`: {row}");
        }
        let counts = det
            .rsplit_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .and_then(|(inner, _)| inner.split_once('/'));
        match counts {
            Some((found, kills)) if found == kills => {}
            _ => bail!("{nodes} nodes: a kill was not detected: {row}"),
        }
    }
    Ok(())
}

/// `cargo xtask alerts`.
pub fn alerts() -> Result<()> {
    ensure_apt("alerts", &[("promtool", "prometheus")])?;
    let dir = root().join("deploy/prometheus");
    let promtool = |args: &[&str]| run(cmd("promtool").current_dir(&dir).args(args));
    promtool(&["check", "rules", "alerts.yml"])?;
    promtool(&["test", "rules", "alerts_test.yml"])?;
    promtool(&["check", "config", "prometheus.yml"])?;
    promtool(&["check", "config", "compose.yml"])
}

/// `cargo xtask install-check`.
pub fn install_check() -> Result<()> {
    let tmp = tempdir("hc-install-")?;
    run(cargo()
        .args(["install", "-q", "--locked", "--debug", "--path"])
        .arg(root())
        .arg("--root")
        .arg(tmp.path())
        .env("CARGO_TARGET_DIR", target_dir()))?;
    let bin_dir = tmp.path().join("bin");
    let path = std::env::join_paths(
        std::iter::once(bin_dir.clone()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .context("PATH with the install root")?;
    // Resolved through PATH, as a user would.
    let found = output(
        cmd("sh")
            .args(["-c", "command -v hybrid-cache"])
            .env("PATH", &path),
    )?;
    if found.trim() != bin_dir.join("hybrid-cache").to_string_lossy() {
        bail!("hybrid-cache not on PATH (found {:?})", found.trim());
    }
    run(cmd("hybrid-cache").arg("--version").env("PATH", &path))?;
    let port = hc_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = File::create(tmp.path().join("node.log")).context("create node.log")?;
    let mut node = cmd("hybrid-cache")
        .env("PATH", &path)
        .env_remove("HC_CONFIG")
        .env_remove("REDIS_URL")
        .args(["node", "--http", &addr])
        .stdout(Stdio::from(log.try_clone().context("node log")?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("start the installed hybrid-cache")?;
    let res = wait_health(&addr, &mut node, Duration::from_secs(10));
    stop(&mut node);
    if let Err(e) = res {
        let log = std::fs::read_to_string(tmp.path().join("node.log")).unwrap_or_default();
        eprintln!("{log}");
        bail!("[install-check] FAIL: installed node did not answer /health: {e}");
    }
    eprintln!("[install-check] ok: installed hybrid-cache runs a node (/health 200)");
    Ok(())
}

/// `cargo xtask ui-test`: the exit code of xtask/py/ui_test.py.
pub fn ui_test() -> Result<i32> {
    ensure_apt(
        "ui-test",
        &[("chromium", "chromium"), ("prometheus", "prometheus")],
    )?;
    let testkit = testkit_binary()?;
    let tmp = tempdir("hc-ui-")?;
    let shot = std::env::var_os("HC_UI_SCREENSHOT")
        .unwrap_or_else(|| tmp.path().join("ui.png").into_os_string());
    exit_code(
        cmd("python3")
            .arg("xtask/py/ui_test.py")
            .arg("--screenshot")
            .arg(shot)
            .env("HC_TESTKIT", testkit),
    )
}

#[cfg(test)]
mod tests {
    use super::{check_cold_start_goals, check_sim_table};

    const HEAD: &str = "mode: x\n| nodes | loss | conv |\n|---|---|---|\n";

    fn row(conv: &str, joins: &str, det: &str, dead: &str) -> String {
        format!("{HEAD}| 1000 | 0.0 % | {conv} | {joins} | {det} | {dead} | 120 | — | 1.0 | 30.0 (29.0) |\n")
    }

    #[test]
    fn a_good_run_passes() {
        let out = row("812", "950", "400 / 600 / 700 (3/3)", "0.000 (0 events)");
        assert!(check_sim_table(&out, true).is_ok());
    }

    #[test]
    fn every_failure_is_caught() {
        let bad = [
            row("—", "950", "400 / 600 / 700 (3/3)", "0.000 (0 events)"),
            row("812", "—", "400 / 600 / 700 (3/3)", "0.000 (0 events)"),
            row("812", "950", "400 / 600 / 700 (2/3)", "0.000 (0 events)"),
            row("812", "950", "400 / 600 / 700 (3/3)", "0.120 (1 events)"),
        ];
        for out in bad {
            assert!(check_sim_table(&out, true).is_err(), "{out}");
        }
        assert!(check_sim_table(HEAD, true).is_err(), "no rows");
        // Without --preconverged, unknown fresh joins are not a failure.
        let out = row("812", "—", "400 / 600 / 700 (3/3)", "0.000 (0 events)");
        assert!(check_sim_table(&out, false).is_ok());
    }

    #[test]
    fn cold_start_goals_are_checked() {
        let good = row("2990", "—", "1100 / 1900 / 2000 (3/3)", "0.000 (0 events)");
        assert!(check_cold_start_goals(&good).is_ok());
        for out in [
            row("3010", "—", "1100 / 1900 / 1950 (3/3)", "0.000 (0 events)"),
            row("300", "—", "1100 / 1900 / 2010 (3/3)", "0.000 (0 events)"),
            row("—", "—", "1100 / 1900 / 1950 (3/3)", "0.000 (0 events)"),
            row("300", "—", "— / — / — (0/3)", "0.000 (0 events)"),
        ] {
            assert!(check_cold_start_goals(&out).is_err(), "{out}");
        }
    }
}
