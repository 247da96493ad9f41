//! Memory per L1 entry of a real node process (issue #17): entries written by HTTP PUT must
//! cost what they hold, not the request buffer they arrived in. RSS is read from /proc of a
//! child node, so allocator overhead and moka's own per-entry cost are counted too.
#![cfg(target_os = "linux")]

mod support;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::{free_addr, hybrid_cache_command, wait_until};

/// Entries measured (after a warm-up of `WARMUP`), 10-byte keys and 100-byte values.
const ENTRIES: usize = 20_000;
const WARMUP: usize = 2_000;
/// Stated ceiling, bytes of RSS per entry. The data is 110 B; moka's own bookkeeping, the
/// key `String`, the `Bytes` handle and allocator rounding make up the rest (~550 B measured;
/// a raw moka cache holding the same entries, `examples/moka_baseline.rs`: ~547 B).
/// Before the fix each entry pinned the HTTP read buffer it was sliced from: ~5,000 B.
const CEILING_BYTES_PER_ENTRY: usize = 700;

struct NodeProc(Child);

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_bytes(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

async fn put_range(base: &str, range: std::ops::Range<usize>) {
    let client = reqwest::Client::new();
    let value = vec![b'v'; 100];
    let mut tasks = Vec::new();
    const WORKERS: usize = 8;
    for w in 0..WORKERS {
        let client = client.clone();
        let value = value.clone();
        let base = base.to_string();
        let range = range.clone();
        tasks.push(tokio::spawn(async move {
            for i in range.skip(w).step_by(WORKERS) {
                let url = format!("{base}/v1/cache/mem/{i:010}");
                let r = client.put(&url).body(value.clone()).send().await.unwrap();
                assert_eq!(r.status(), 204, "PUT {url}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_entries_written_over_http_cost_what_they_hold() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    let mut f = std::fs::File::create(&cfg).unwrap();
    writeln!(
        f,
        "[categories.mem]\nttl_secs = 3600\nmax_entries = 1000000"
    )
    .unwrap();
    drop(f);
    let addr = free_addr();
    let child = hybrid_cache_command()
        .args(["node", "--config"])
        .arg(&cfg)
        .args(["--http", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let node = NodeProc(child);
    let pid = node.0.id();
    let base = format!("http://{addr}");
    let health = format!("{base}/health");
    let up = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(addr).is_ok()
        })
    })
    .await
    .unwrap();
    assert!(up, "node listens on {addr}");
    assert_eq!(reqwest::get(&health).await.unwrap().status(), 200);

    put_range(&base, 0..WARMUP).await;
    let before = rss_bytes(pid);
    put_range(&base, WARMUP..WARMUP + ENTRIES).await;
    let after = rss_bytes(pid);
    let per_entry = after.saturating_sub(before) / ENTRIES;
    // Every entry is really there.
    let stats: serde_json::Value = reqwest::get(format!("{base}/v1/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    eprintln!("RSS {before} -> {after} bytes: {per_entry} B per entry; stats {stats}");
    let r = reqwest::get(format!("{base}/v1/cache/mem/{:010}", WARMUP + ENTRIES - 1))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 100);
    assert!(
        per_entry <= CEILING_BYTES_PER_ENTRY,
        "{per_entry} B of RSS per 110-byte entry exceeds the ceiling of {CEILING_BYTES_PER_ENTRY} B"
    );
}
