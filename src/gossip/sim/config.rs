//! [`SimConfig`]: what to simulate, with the production SWIM settings by default.
//!
//! Why its own file: the run (`mod.rs`) and the simulated network (`net`) both read it, so
//! it sits below both.

use std::time::Duration;

use super::super::membership::{GOSSIP_EVERY, GOSSIP_FANOUT};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Cluster size (at least 2).
    pub nodes: usize,
    /// SWIM probe period.
    pub probe_period: Duration,
    /// How long a suspect has to refute before it is declared dead.
    pub suspect_to_dead: Duration,
    /// Periodic gossip of pending updates: interval and fanout (production by default).
    pub gossip_every: Duration,
    /// See `gossip_every`.
    pub gossip_fanout: usize,
    /// Nodes join through node 0, evenly spread over this time.
    pub join_spread: Duration,
    /// Start from a converged cluster instead: all but `fresh_joins` nodes begin with every
    /// other one of them in their member table (seeded in bulk, nothing gossiped), then the
    /// `fresh_joins` nodes announce at the same instant, each to a random member.
    /// Convergence then measures how those joins spread, not a cluster built from scratch.
    pub preconverged: bool,
    /// See `preconverged`.
    pub fresh_joins: usize,
    /// Cold start (instead of `join_spread`): nodes start one after another, `start_gap`
    /// apart, each knowing only the seed (node 0), and join as the transport makes them: a
    /// Hello to the seed, answered by a Hello, each side announcing to the other unless it
    /// knows it already, the Hello repeated every second while the node is alone. No member
    /// is pre-seeded. Convergence is measured from the last start.
    pub cold_start: bool,
    /// See `cold_start`.
    pub start_gap: Duration,
    /// Independent loss probability of each packet (0.0–1.0).
    pub loss: f64,
    /// One-way delay, uniform in `[delay_min, delay_max]`.
    pub delay_min: Duration,
    /// See `delay_min`.
    pub delay_max: Duration,
    /// Quiet time after convergence over which traffic and false positives are measured.
    pub steady: Duration,
    /// Nodes killed one after another (`kill_every` apart) to measure detection.
    pub kills: usize,
    /// See `kills`.
    pub kill_every: Duration,
    /// Cut the cluster in two halves for this long, then heal (after the kills).
    pub partition: Option<Duration>,
    /// Give up waiting for (re)convergence after this long.
    pub max_wait: Duration,
    /// Seed of every random draw (same seed, same report).
    pub seed: u64,
}

impl SimConfig {
    /// Production SWIM settings (200 ms probes, 600 ms suspicion), 1 % loss, 1–5 ms delay.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            probe_period: Duration::from_millis(200),
            suspect_to_dead: Duration::from_millis(600),
            gossip_every: GOSSIP_EVERY,
            gossip_fanout: GOSSIP_FANOUT,
            join_spread: Duration::from_secs(3),
            preconverged: false,
            fresh_joins: 10,
            cold_start: false,
            start_gap: Duration::from_millis(100),
            loss: 0.01,
            delay_min: Duration::from_millis(1),
            delay_max: Duration::from_millis(5),
            steady: Duration::from_secs(20),
            kills: 10,
            kill_every: Duration::from_secs(5),
            partition: Some(Duration::from_secs(5)),
            max_wait: Duration::from_secs(120),
            seed: 1,
        }
    }
}
