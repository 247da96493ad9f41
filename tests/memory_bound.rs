//! L1 is bounded by bytes (issue #13): a node process filled with far more large values than
//! its `HC_L1_MAX_BYTES` keeps its resident memory under the cap plus a stated margin.
//!
//! The node runs as a child process so its RSS (`/proc/<pid>/status` `VmRSS`) is its own.
//! Margin: RSS after the fill ≤ RSS at start + cap + [`MARGIN`], where the margin covers
//! allocator slack (freed large values are not always returned to the OS at once) and the
//! request bodies in flight.

mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{free_port, hybrid_cache_command, wait_until};

const CAP: u64 = 64 * 1024 * 1024;
const MARGIN: u64 = 32 * 1024 * 1024;
const VALUE: usize = 1024 * 1024;
/// Eight times the cap in total.
const WRITES: usize = 512;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filling_a_node_with_large_values_keeps_rss_under_the_cap() {
    let port = free_port();
    let child = hybrid_cache_command()
        .args(["node", "--http", &format!("127.0.0.1:{port}")])
        .env("HC_L1_MAX_BYTES", CAP.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn node");
    let node = Proc(child);
    let pid = node.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let start_rss = rss_bytes(pid);
    let categories = ["permissions", "menus", "roles", "prompts", "general"];
    let mut peak = 0;
    for batch in 0..WRITES / 4 {
        let puts = (0..4).map(|j| {
            let i = batch * 4 + j;
            // Distinct content per value, so nothing can be shared.
            let body = vec![(i % 251) as u8; VALUE];
            c.put(format!(
                "{base}/v1/cache/{}/k{i}",
                categories[i % categories.len()]
            ))
            .body(body)
            .send()
        });
        for r in futures::future::join_all(puts).await {
            assert_eq!(r.unwrap().status(), 204);
        }
        peak = peak.max(rss_bytes(pid));
    }
    let stats: Value = c
        .get(format!("{base}/v1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut held = 0;
    let mut budget = 0;
    for (name, cat) in stats["l1_caches"].as_object().unwrap() {
        let bytes = cat["bytes"].as_u64().unwrap();
        let max = cat["max_bytes"].as_u64().unwrap();
        assert!(bytes <= max, "{name}: {bytes} > {max}");
        held += bytes;
        budget += max;
    }
    assert!(budget <= CAP, "budgets {budget} exceed the node cap {CAP}");
    assert!(held > CAP / 2, "L1 is in use ({held} bytes)");
    let end_rss = rss_bytes(pid);
    eprintln!(
        "RSS: start {} MiB, peak {} MiB, end {} MiB; L1 holds {} MiB of a {} MiB cap after {} MiB written",
        start_rss >> 20,
        peak >> 20,
        end_rss >> 20,
        held >> 20,
        CAP >> 20,
        (WRITES * VALUE) >> 20
    );
    assert!(
        peak <= start_rss + CAP + MARGIN,
        "peak RSS {} MiB exceeds start {} MiB + cap {} MiB + margin {} MiB",
        peak >> 20,
        start_rss >> 20,
        CAP >> 20,
        MARGIN >> 20
    );
}
