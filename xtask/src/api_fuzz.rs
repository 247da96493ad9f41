//! `cargo xtask api-fuzz`: schemathesis against a fresh node's `/openapi.json`, with and
//! without an API token. Every schema-valid request must be accepted, every invalid one
//! refused, no answer may be a 5xx and the node must survive.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::checks::utc_stamp;
use crate::util::{
    cargo, clean_node_env, cmd, have, root, run, stop, target_dir, tempdir, wait_health,
};

/// `cargo xtask api-fuzz`.
pub fn api_fuzz() -> Result<()> {
    if !have("schemathesis") {
        eprintln!("[api-fuzz] installing schemathesis (pip)");
        run(cmd("python3").args(["-m", "pip", "install", "-q", "schemathesis"]))?;
    }
    let bin = match std::env::var_os("HC_BIN") {
        Some(b) => b.into(),
        None => {
            run(cargo().args(["build", "-q", "--bin", "hybrid-cache"]))?;
            target_dir().join("debug").join("hybrid-cache")
        }
    };
    let examples = std::env::var("HC_FUZZ_EXAMPLES").unwrap_or_else(|_| "40".into());
    let tmp = tempdir("hc-api-fuzz-")?;
    let token = format!("fuzz-{}{}", std::process::id(), utc_stamp());
    let open = fuzz_one(&bin, tmp.path(), "open", None, &examples);
    let closed = fuzz_one(&bin, tmp.path(), "token", Some(&token), &examples);
    let mut failed = false;
    for (label, r) in [("open", open), ("token", closed)] {
        if let Err(e) = r {
            eprintln!("[api-fuzz] {label}: {e:#}");
            failed = true;
        }
    }
    if failed {
        bail!("[api-fuzz] FAIL");
    }
    eprintln!(
        "[api-fuzz] PASS: no 5xx, every response matches the schema (with and without a token)"
    );
    Ok(())
}

/// One schemathesis run against a fresh node (without or with an API token).
fn fuzz_one(
    bin: &std::path::Path,
    tmp: &std::path::Path,
    label: &str,
    token: Option<&str>,
    examples: &str,
) -> Result<()> {
    let port = hc_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let url = format!("http://{addr}");
    let log_path = tmp.join(format!("{label}.log"));
    let log = File::create(&log_path).context("create the node log")?;
    let mut c = Command::new(bin);
    // Only what this run sets: no developer REDIS_URL or HC_* leaks in.
    clean_node_env(&mut c);
    if let Some(t) = token {
        c.env("HC_API_TOKEN", t);
    }
    let mut node = c
        .args([
            "node",
            "--http",
            &addr,
            "--node-id",
            &format!("fuzz-{label}"),
        ])
        .stdout(Stdio::from(log.try_clone().context("node log")?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let res = schemathesis(&mut node, tmp, label, token, examples, &addr, &url);
    let alive = matches!(node.try_wait(), Ok(None));
    stop(&mut node);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    res.with_context(|| format!("{label}: node log:\n{}", tail(&log, 40)))?;
    // The node must have survived everything.
    if !alive {
        bail!("{label}: node died during the run:\n{}", tail(&log, 40));
    }
    if log.contains("panicked") {
        bail!("{label}: node panicked:\n{}", tail(&log, 40));
    }
    Ok(())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn schemathesis(
    node: &mut Child,
    tmp: &std::path::Path,
    label: &str,
    token: Option<&str>,
    examples: &str,
    addr: &str,
    url: &str,
) -> Result<()> {
    wait_health(addr, node, Duration::from_secs(10))?;
    eprintln!(
        "[api-fuzz] {label}: schemathesis against {url} (max {examples} examples per operation)"
    );
    let config = root().join("xtask/data/schemathesis.toml");
    let mut phases: Vec<&str> = Vec::new();
    for attempt in 1..=2 {
        let mut c = cmd("timeout");
        c.current_dir(tmp)
            .arg("300")
            .arg("schemathesis")
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(format!("{url}/openapi.json"))
            .args([
                "--max-examples",
                examples,
                "--workers",
                "2",
                "--request-timeout",
                "10",
            ]);
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        c.args(&phases);
        let out = c.output().context("run schemathesis")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{text}");
        if out.status.success() {
            return Ok(());
        }
        // CPython 3.11.7's `ast.parse` can fail inside hypothesis while schemathesis's
        // coverage phase describes a filter lambda ("AST constructor recursion depth
        // mismatch", a CPython bug): the tool fails, not the API. Such a run is repeated once
        // without the coverage phase; a run with any API failure is never repeated.
        if attempt == 1
            && text.contains("AST constructor recursion depth mismatch")
            && !text.contains("= FAILURES =")
        {
            eprintln!("[api-fuzz] {label}: schemathesis hit the CPython 3.11 AST bug in its coverage phase; again without it");
            phases = vec!["--phases", "examples,fuzzing"];
            continue;
        }
        bail!("{label}: schemathesis failed ({})", out.status);
    }
    bail!("{label}: schemathesis failed")
}
