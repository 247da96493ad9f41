//! The verdict of `cargo xtask soak node`: from the samples (samples.csv: one row per node
//! process every 10 s), the least-squares slope of RSS, open fds and L2 backlog of each
//! process after its warm-up; fails when one grows faster than its limit. Also
//! `cargo xtask soak node --analyze FILE` on saved samples.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

/// Growth limits per minute (SOAK_MAX_RSS_MIB_PER_MIN 1.0, SOAK_MAX_FDS_PER_MIN 2,
/// SOAK_MAX_BACKLOG_PER_MIN 5).
pub struct Limits {
    pub rss_mib: f64,
    pub fds: f64,
    pub backlog: f64,
}

impl Limits {
    /// From the environment, with the defaults above.
    pub fn from_env() -> Result<Self> {
        let var = |name: &str, default: f64| -> Result<f64> {
            match std::env::var(name) {
                Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
                Err(_) => Ok(default),
            }
        };
        Ok(Limits {
            rss_mib: var("SOAK_MAX_RSS_MIB_PER_MIN", 1.0)?,
            fds: var("SOAK_MAX_FDS_PER_MIN", 2.0)?,
            backlog: var("SOAK_MAX_BACKLOG_PER_MIN", 5.0)?,
        })
    }
}

/// One sample of one process.
struct Row {
    t_min: f64,
    rss_mib: f64,
    fds: i64,
    backlog: i64,
    mailboxes: i64,
}

/// The post-warm-up rows of each (node, pid), in file order. The warm-up counts per
/// process: a node restarted by a fault refills its caches too.
fn read_series(path: &Path, warmup: f64) -> Result<BTreeMap<(String, String), Vec<Row>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(t), Some(node), Some(pid), Some(rss), Some(fds), Some(bl)) = (
        col("t"),
        col("node"),
        col("pid"),
        col("rss_kib"),
        col("fds"),
        col("l2_backlog"),
    ) else {
        anyhow::bail!("{}: not a samples file (header {header:?})", path.display());
    };
    let mb = col("mailboxes");
    let mut first_seen: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut series: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let get = |k: usize| f.get(k).copied().unwrap_or("");
        let num = |k: usize| -> Result<f64> {
            get(k)
                .parse()
                .with_context(|| format!("{} line {}: `{}`", path.display(), i + 2, get(k)))
        };
        let opt = |k: Option<usize>| {
            k.map(get).filter(|v| !v.is_empty()).map_or(Ok(0.0), |v| {
                v.parse::<f64>()
                    .with_context(|| format!("{} line {}: `{v}`", path.display(), i + 2))
            })
        };
        let key = (get(node).to_string(), get(pid).to_string());
        let secs = num(t)?;
        let first = *first_seen.entry(key.clone()).or_insert(secs);
        if secs < first + warmup {
            continue;
        }
        series.entry(key).or_default().push(Row {
            t_min: secs / 60.0,
            rss_mib: num(rss)? / 1024.0,
            fds: num(fds)? as i64,
            backlog: opt(Some(bl))? as i64,
            mailboxes: opt(mb)? as i64,
        });
    }
    Ok(series)
}

/// Least-squares slope of ys over xs (0 when the xs do not vary).
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let d: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if d == 0.0 {
        return 0.0;
    }
    xs.iter()
        .zip(ys)
        .map(|(x, y)| (x - mx) * (y - my))
        .sum::<f64>()
        / d
}

/// Print the table and the verdict; 0 = pass, 1 = something grows past its limit.
pub fn analyze(path: &Path, warmup: f64, lim: &Limits) -> Result<i32> {
    let series = read_series(path, warmup)?;
    let mut fail = Vec::new();
    println!("\n| node (pid) | samples | RSS MiB first→last | RSS slope MiB/min | fds first→last | fd slope /min | L2 backlog max | backlog slope /min | mailbox depth max |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for ((node, pid), rows) in &series {
        if rows.len() < 6 {
            // A restarted process's short tail: too few points for a slope.
            println!(
                "| {node} ({pid}) | {} | (too short for a slope) | | | | | | |",
                rows.len()
            );
            continue;
        }
        let t: Vec<f64> = rows.iter().map(|r| r.t_min).collect();
        let col = |f: fn(&Row) -> f64| -> Vec<f64> { rows.iter().map(f).collect() };
        let s_rss = slope(&t, &col(|r| r.rss_mib));
        let s_fds = slope(&t, &col(|r| r.fds as f64));
        let s_bl = slope(&t, &col(|r| r.backlog as f64));
        let (first, last) = (&rows[0], &rows[rows.len() - 1]);
        let max_bl = rows.iter().map(|r| r.backlog).max().unwrap_or(0);
        let max_mb = rows.iter().map(|r| r.mailboxes).max().unwrap_or(0);
        println!(
            "| {node} ({pid}) | {} | {:.1}→{:.1} | {s_rss:+.2} | {}→{} | {s_fds:+.2} | {max_bl} | {s_bl:+.2} | {max_mb} |",
            rows.len(), first.rss_mib, last.rss_mib, first.fds, last.fds
        );
        if s_rss > lim.rss_mib {
            fail.push(format!(
                "{node} RSS slope {s_rss:.2} MiB/min > {:?}",
                lim.rss_mib
            ));
        }
        if s_fds > lim.fds {
            fail.push(format!("{node} fd slope {s_fds:.2}/min > {:?}", lim.fds));
        }
        if s_bl > lim.backlog {
            fail.push(format!(
                "{node} backlog slope {s_bl:.2}/min > {:?}",
                lim.backlog
            ));
        }
    }
    println!(
        "\nlimits: RSS {:?} MiB/min, fds {:?}/min, backlog {:?}/min after {warmup:.0} s warm-up",
        lim.rss_mib, lim.fds, lim.backlog
    );
    if !fail.is_empty() {
        println!("FAIL: {}", fail.join("; "));
        return Ok(1);
    }
    println!("PASS: nothing grows past its slope");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn slope_of_a_line_and_of_a_constant() {
        assert!((slope(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]) - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[1.0, 1.0], &[3.0, 4.0]), 0.0);
    }
}
