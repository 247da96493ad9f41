//! The `hybrid-cache` binary as a user runs it: a node process, the client commands against
//! it, configuration errors, and graceful shutdown on SIGTERM.

mod support;

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A node child process; killed on drop.
struct NodeProcess {
    child: Child,
    url: String,
    /// Where its stderr goes (removed on drop).
    log: std::path::PathBuf,
}

impl NodeProcess {
    /// Whether the node still runs, and the end of its log: said when a request fails.
    fn report(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(None) => "still running".to_string(),
            Ok(Some(status)) => format!("exited: {status}"),
            Err(e) => format!("unknown: {e}"),
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        format!(
            "node {state}; its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn clean_command() -> Command {
    support::hybrid_cache_command()
}

fn start_node(extra: &[&str]) -> NodeProcess {
    for _ in 0..5 {
        let port = support::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("hc-cli-node-{port}.log"));
        let child = clean_command()
            .args([
                "node",
                "--http",
                &format!("127.0.0.1:{port}"),
                "--node-id",
                "cli1",
            ])
            .args(extra)
            .env("APP_ENV", "test")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("node log file"))
            .spawn()
            .expect("spawn node");
        let mut node = NodeProcess { child, url, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = node.child.try_wait() {
                break; // port collision: try another
            }
            if serves_as(port, "cli1") {
                return node;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = node.child.kill();
    }
    panic!("node did not start");
}

/// Whether the HTTP server on `port` is the node `node_id` (its `/health` says so): a bare
/// TCP connect could reach another process that held the port a moment ago.
fn serves_as(port: u16, node_id: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 ") && answer.contains(&format!("\"node_id\":\"{node_id}\""))
}

fn cli(node: &NodeProcess, args: &[&str]) -> Output {
    let mut full: Vec<&str> = vec![args[0], "--node", &node.url];
    full.extend_from_slice(&args[1..]);
    clean_command().args(&full).output().expect("run cli")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim_end().to_string()
}

#[test]
fn client_commands_against_a_running_node() {
    let mut node = start_node(&[]);
    let o = cli(
        &node,
        &[
            "set",
            "--ttl",
            "60",
            "permissions",
            "get_user_permissions:1",
            "[\"read\"]",
        ],
    );
    assert!(o.status.success(), "{o:?}\n{}", node.report());
    let o = cli(&node, &["get", "permissions", "get_user_permissions:1"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "[\"read\"]");

    // Values from stdin with `-`.
    let mut child = clean_command()
        .args(["set", "--node", &node.url, "menus", "m:1", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(stdout(&cli(&node, &["get", "menus", "m:1"])), "from stdin");

    let o = cli(&node, &["invalidate", "menus", "m:*"]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["invalidated"], 1);

    let o = cli(&node, &["del", "permissions", "get_user_permissions:1"]);
    assert!(o.status.success(), "{o:?}");
    let o = cli(&node, &["get", "permissions", "get_user_permissions:1"]);
    assert_eq!(o.status.code(), Some(1), "a miss is a non-zero exit");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not_found"),
        "{o:?}"
    );

    let o = cli(&node, &["get", "nope", "k"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown_category"));

    let o = cli(&node, &["stats"]);
    assert!(o.status.success());
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["node_id"], "cli1");
    assert!(s["l1_caches"]["permissions"].is_object());

    let o = cli(&node, &["cluster-stats"]);
    assert!(o.status.success());
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["self"], "cli1");
    assert_eq!(s["totals"]["nodes_alive"], 1);
}

#[test]
fn client_reports_an_unreachable_node() {
    let port = support::free_port();
    let o = clean_command()
        .args(["stats", "--node", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot reach"),
        "{o:?}"
    );
}

#[test]
fn token_from_environment_authorizes_cli_writes() {
    let port = support::free_port();
    let mut child = clean_command()
        .args(["node", "--http", &format!("127.0.0.1:{port}")])
        .env("HC_API_TOKEN", "tok")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "node did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
    let denied = clean_command()
        .args(["set", "--node", &url, "roles", "k", "v"])
        .output()
        .unwrap();
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("401"));
    let ok = clean_command()
        .args(["set", "--node", &url, "roles", "k", "v"])
        .env("HC_API_TOKEN", "tok")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let _ = child.kill();
    let _ = child.wait();
}

fn config_error(args: &[&str], file: Option<&str>) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = clean_command();
    cmd.arg("node");
    if let Some(text) = file {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(&path);
    }
    let port = support::free_port();
    let o = cmd
        .args(["--http", &format!("127.0.0.1:{port}")])
        .args(args)
        .output()
        .unwrap();
    // No half-started node: nothing listens on the port.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn invalid_configuration_exits_2_naming_the_field() {
    let (code, err) = config_error(
        &[],
        Some("[categories.roles]\nttl_secs = 60\nmax_entries = 0\n"),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("categories.roles.max_entries"), "{err}");

    let (code, err) = config_error(&[], Some("namespace = \"hc\"\nbogus_key = 1\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bogus_key"), "{err}");

    let (code, err) = config_error(&["--gossip", "not-an-address"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`gossip`"), "{err}");

    let (code, err) = config_error(&["--redis-url", "http://wrong"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("redis.url"), "{err}");

    let (code, err) = config_error(
        &[],
        Some("[[nodes]]\nid = \"n1\"\nhttp = \"127.0.0.1:1\"\ngossip = \"127.0.0.1:2\"\n"),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("node_id"), "{err}");
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_down_gracefully() {
    let node = start_node(&[]);
    let pid = node.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let mut node = node;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            assert!(status.success(), "graceful exit code 0, got {status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "node did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn certs_command_writes_a_ca_and_node_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let o = clean_command()
        .args(["certs", "--out"])
        .arg(dir.path())
        .args(["--nodes", "n1,n2,n3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    for f in ["ca.pem", "ca.key", "n1.pem", "n1.key", "n2.pem", "n3.key"] {
        let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert!(text.contains("-----BEGIN"), "{f} is PEM");
    }
}
