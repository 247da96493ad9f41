//! Deterministic simulation of the gossip membership at thousands of nodes.
//!
//! The real membership code (the sans-IO foca wrapper with the production SWIM settings)
//! runs for every simulated node; only the network and the clock are simulated: one event
//! queue in virtual time, per-packet delay drawn uniformly from a range, independent packet
//! loss, and an optional partition that cuts the cluster in two and heals. No sockets, no
//! sleeps, no threads: a run with the same [`SimConfig`] gives the same [`SimReport`].
//!
//! Run it with `cargo run --release --example gossip_sim -- --nodes 1000`
//! (see `cargo xtask sim-gossip`).

mod config;
mod net;

use std::time::{Duration, Instant};

use super::identity::NodeIdentity;
use net::{Net, JOIN_RETRY};

pub use config::SimConfig;

/// What a run measured (all times virtual).
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Cluster size simulated.
    pub nodes: usize,
    /// From the last join until every node lists every other one as active (pre-converged
    /// start: from the fresh joins, so it includes each newcomer learning the whole cluster).
    pub convergence: Option<Duration>,
    /// Pre-converged start only: from the fresh joins until every other node has reported
    /// each newcomer up.
    pub joins_known: Option<Duration>,
    /// Pre-converged start only: wall time (not virtual, so not deterministic) spent seeding
    /// the member tables.
    pub seed_wall: Option<std::time::Duration>,
    /// Per kill: until the victim is `dead` on every survivor (`None`: not within `max_wait`).
    pub detections: Vec<Option<Duration>>,
    /// `dead` notifications about nodes that were up and reachable (no partition).
    pub false_downs: u64,
    /// Node-seconds of observation for `false_downs`.
    pub observed_node_secs: f64,
    /// Packet bytes (payload + tag) sent per node per second in the steady phase.
    pub steady_bytes_per_node_sec: f64,
    /// After the partition heals: until every survivor lists every other survivor again.
    pub partition_heal: Option<Duration>,
    /// Packets sent over the whole run.
    pub packets_sent: u64,
    /// Of those, lost to the simulated loss.
    pub packets_lost: u64,
}

impl SimReport {
    /// Detection time quantile `q` (0–1) over the kills that were detected.
    pub fn detection_quantile(&self, q: f64) -> Option<Duration> {
        let mut d: Vec<Duration> = self.detections.iter().flatten().copied().collect();
        if d.is_empty() {
            return None;
        }
        d.sort();
        let i = ((d.len() as f64 - 1.0) * q).round() as usize;
        d.get(i.min(d.len() - 1)).copied()
    }
}

/// Every node joins through node 0, spread over `join_spread`; waits for convergence.
fn join_from_scratch(net: &mut Net, report: &mut SimReport) {
    let (n, t0) = (net.nodes.len(), net.now);
    let seed_id = net.nodes[0].identity().clone();
    net.after(0);
    let gap = net.cfg.join_spread / u32::try_from(n).unwrap_or(u32::MAX);
    let mut retry_at = t0 + JOIN_RETRY;
    for i in 1..n {
        let at = t0 + gap * u32::try_from(i).unwrap_or(u32::MAX);
        net.run_until(at);
        if net.now >= retry_at {
            net.retry_joins(&seed_id);
            retry_at = net.now + JOIN_RETRY;
        }
        net.nodes[i].announce(seed_id.clone(), net.now);
        net.after(i);
    }
    report.convergence = net.wait_converged(Duration::from_millis(50), &seed_id);
}

/// Cold start: node 0 (the seed) starts alone, then every other node starts `start_gap`
/// after the previous one, knowing nothing but the seed, and says Hello to it (again every
/// [`JOIN_RETRY`] while alone); waits for convergence from the last start.
fn cold_start(net: &mut Net, report: &mut SimReport) {
    let (n, t0) = (net.nodes.len(), net.now);
    let seed_id = net.nodes[0].identity().clone();
    for up in &mut net.up[1..] {
        *up = false;
    }
    net.after(0);
    let mut retry_at = t0 + JOIN_RETRY;
    for i in 1..n {
        let at = t0 + net.cfg.start_gap * u32::try_from(i).unwrap_or(u32::MAX);
        while retry_at <= at {
            net.run_until(retry_at);
            net.retry_joins(&seed_id);
            retry_at += JOIN_RETRY;
        }
        net.run_until(at);
        net.up[i] = true;
        net.hello(i, 0, true);
        net.after(i);
    }
    report.convergence = net.wait_converged(Duration::from_millis(10), &seed_id);
}

/// Seeds all but the last `fresh_joins` nodes with each other (their first probes spread
/// over one probe period), lets them run for a while, then has the newcomers announce at
/// once, each to a random member; waits until the newcomers are known and the cluster has
/// converged.
fn start_preconverged(net: &mut Net, report: &mut SimReport) {
    let (n, t0) = (net.nodes.len(), net.now);
    let fresh = net.cfg.fresh_joins.min(n.saturating_sub(2));
    let old = n - fresh;
    for up in &mut net.up[old..] {
        *up = false;
    }
    let ids: Vec<NodeIdentity> = net.nodes[..old]
        .iter()
        .map(|m| m.identity().clone())
        .collect();
    let wall = std::time::Instant::now();
    let gap = net.cfg.probe_period / u32::try_from(old).unwrap_or(u32::MAX);
    for i in 0..old {
        net.run_until(t0 + gap * u32::try_from(i).unwrap_or(u32::MAX));
        let now = net.now;
        net.nodes[i].seed_members(ids.iter().cloned(), now);
        net.after(i);
    }
    report.seed_wall = Some(wall.elapsed());
    // Let the probes and their traffic settle into their rhythm.
    let until = net.now + Duration::from_secs(2);
    net.run_until(until);

    for v in old..n {
        net.up[v] = true;
        for i in (0..n).filter(|&i| i != v) {
            net.pending_up.insert((i, v));
        }
    }
    let joined_at = net.now;
    for v in old..n {
        let to = net.rand() as usize % old;
        let target = ids[to].clone();
        net.nodes[v].announce(target, joined_at);
        net.after(v);
    }
    let seed_id = ids[0].clone();
    report.convergence = net.wait_converged(Duration::from_millis(50), &seed_id);
    report.joins_known = net.joins_known_at.map(|t| t - joined_at);
}

/// Runs one simulation: joins (from scratch, or fresh joins into a pre-converged cluster),
/// convergence, a steady phase, kills, a partition.
pub fn run(cfg: SimConfig) -> SimReport {
    let n = cfg.nodes.max(2);
    let t0 = Instant::now();
    let mut net = Net::new(SimConfig { nodes: n, ..cfg }, t0);
    let cfg = net.cfg.clone();
    let mut report = SimReport {
        nodes: n,
        ..SimReport::default()
    };
    let seed_id = net.nodes[0].identity().clone();
    if cfg.preconverged {
        start_preconverged(&mut net, &mut report);
    } else if cfg.cold_start {
        cold_start(&mut net, &mut report);
    } else {
        join_from_scratch(&mut net, &mut report);
    }

    // Steady phase (after the join churn settled): bytes per node per second, false positives.
    let settle = net.now + Duration::from_secs(12);
    net.run_until(settle);
    let (bytes0, t_steady) = (net.bytes, net.now);
    net.run_until(t_steady + cfg.steady);
    let secs = cfg.steady.as_secs_f64().max(1e-9);
    report.steady_bytes_per_node_sec = (net.bytes - bytes0) as f64 / n as f64 / secs;

    // Kills, one at a time, each measured until every survivor sees it dead.
    for _ in 0..cfg.kills.min(n.saturating_sub(2)) {
        let victim = 1 + (net.rand() as usize % (n - 1));
        if !net.up[victim] {
            continue;
        }
        net.up[victim] = false;
        let killed_at = net.now;
        net.pending_dead.insert(victim, net.live());
        let deadline = killed_at + cfg.max_wait;
        while net.pending_dead.contains_key(&victim) && net.now < deadline {
            let until = net.now + Duration::from_millis(10);
            net.run_until(until);
        }
        report
            .detections
            .push(net.detected_at.get(&victim).map(|t| *t - killed_at));
        let next = (killed_at + cfg.kill_every).max(net.now);
        net.run_until(next);
    }
    report.observed_node_secs = (net.now - t_steady).as_secs_f64() * n as f64;

    if let Some(cut) = cfg.partition {
        net.count_false = false;
        let sides: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
        net.side = Some(sides);
        let until = net.now + cut;
        net.run_until(until);
        net.side = None;
        report.partition_heal = net.wait_converged(Duration::from_millis(100), &seed_id);
    }
    report.packets_sent = net.sent;
    report.packets_lost = net.lost;
    report.false_downs = net.false_downs;
    report
}
