//! Node logs as an operator collects them: redirected to a file (not a terminal) they carry
//! no ANSI escapes, and `--log-format json` / `HC_LOG_FORMAT=json` gives one JSON object per line.

mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a node with stderr in a file until it logged its start line, stops it with SIGTERM
/// (so the shutdown line is logged too) and returns the whole log.
fn node_log(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.log");
    let port = support::free_port();
    let mut cmd = support::hybrid_cache_command();
    cmd.args(["node", "--http", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&path).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Killed(cmd.spawn().expect("spawn node"));
    let started = support::wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&path)
            .map(|s| s.contains("hybrid-cache node started"))
            .unwrap_or(false)
    });
    assert!(
        started,
        "no start line: {:?}",
        std::fs::read_to_string(&path)
    );
    let pid = child.0.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let exited = support::wait_until(Duration::from_secs(20), || {
        matches!(child.0.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "node did not exit on SIGTERM");
    std::fs::read_to_string(&path).unwrap()
}

#[test]
fn text_logs_to_a_file_have_no_ansi_escapes() {
    let log = node_log(&[], &[]);
    assert!(log.contains("hybrid-cache node started"), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape in a non-terminal log:\n{log:?}"
    );
}

fn assert_json_lines(log: &str) {
    let mut messages = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line:?}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        if let Some(m) = v["fields"]["message"].as_str() {
            messages.push(m.to_string());
        }
    }
    assert!(!log.contains('\u{1b}'));
    assert!(
        messages.iter().any(|m| m == "hybrid-cache node started"),
        "{messages:?}"
    );
    // Structured fields stay fields, not text inside the message.
    let start = log
        .lines()
        .find(|l| l.contains("hybrid-cache node started"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(start).unwrap();
    assert_eq!(v["fields"]["node_id"], "logjson");
}

#[test]
fn log_format_json_flag_prints_one_object_per_line() {
    let log = node_log(&["--log-format", "json", "--node-id", "logjson"], &[]);
    assert_json_lines(&log);
}

#[test]
fn hc_log_format_env_selects_json() {
    let log = node_log(&["--node-id", "logjson"], &[("HC_LOG_FORMAT", "json")]);
    assert_json_lines(&log);
}
