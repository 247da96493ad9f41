//! Baseline for the memory-per-entry figure of `cargo xtask bench node` (issue #17): a raw
//! moka cache, configured like a node's category (capacity bound + time to live), filled with
//! the same keys (`String`) and values (exact-size `Bytes`) a node stores, without HTTP,
//! actors or anything else. Prints the RSS growth per entry.
//!
//! `cargo run --release --example moka_baseline -- [ENTRIES] [VALUE_BYTES]`

use std::time::Duration;

use bytes::Bytes;

fn rss_bytes() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let entries: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let value_bytes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let cache: moka::future::Cache<String, Bytes> = moka::future::Cache::builder()
        .max_capacity(entries * 2)
        .time_to_live(Duration::from_secs(3600))
        .build();
    let value = vec![b'v'; value_bytes];
    // Warm-up, like the node's measurement: allocator arenas and moka's first segments.
    let warmup = entries / 10;
    for i in 0..warmup {
        cache
            .insert(format!("w{i:09}"), Bytes::copy_from_slice(&value))
            .await;
    }
    cache.run_pending_tasks().await;
    let before = rss_bytes()?;
    for i in 0..entries {
        cache
            .insert(format!("{i:010}"), Bytes::copy_from_slice(&value))
            .await;
    }
    cache.run_pending_tasks().await;
    let after = rss_bytes()?;
    println!(
        "entries={} rss_before={before} rss_after={after} bytes_per_entry={}",
        cache.entry_count(),
        after.saturating_sub(before) / entries
    );
    Ok(())
}
