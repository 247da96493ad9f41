//! The simulated network of [`super::run`]: every node's real membership machine, one event
//! queue in virtual time (packets with a random delay, independent loss, an optional
//! partition; timers), and the bookkeeping of what the run measures (bytes, detections,
//! false positives, fresh joins becoming known).

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use super::{
    super::{
        auth::TAG_LEN,
        identity::NodeIdentity,
        membership::{MemberEvent, Membership, SwimParams},
        types::MemberState,
    },
    config::SimConfig,
};

/// Something due at a node.
enum Event {
    Packet {
        to: usize,
        from: usize,
        data: Vec<u8>,
        /// A digest-sync packet rather than a foca one.
        sync: bool,
    },
    Timer(usize),
    /// The transport's Hello (cold start): `from` introduces itself to `to`, which answers
    /// with its own when `reply` is set.
    Hello {
        to: usize,
        from: usize,
        reply: bool,
    },
}

/// The cluster under simulation.
pub(super) struct Net {
    pub(super) nodes: Vec<Membership>,
    pub(super) up: Vec<bool>,
    /// Side of the partition each node is on, while one is active.
    pub(super) side: Option<Vec<bool>>,
    index: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    events: HashMap<u64, Event>,
    scheduled: Vec<Option<Instant>>,
    seq: u64,
    rng: u64,
    pub(super) now: Instant,
    pub(super) cfg: SimConfig,
    pub(super) bytes: u64,
    pub(super) sent: u64,
    pub(super) lost: u64,
    /// Per victim: survivors that have not yet seen it dead.
    pub(super) pending_dead: HashMap<usize, usize>,
    pub(super) detected_at: HashMap<usize, Instant>,
    pub(super) false_downs: u64,
    /// False positives are counted until the partition phase (which causes true ones).
    pub(super) count_false: bool,
    /// Fresh joins (pre-converged start): (observer, newcomer) pairs not yet reported up.
    pub(super) pending_up: std::collections::HashSet<(usize, usize)>,
    pub(super) joins_known_at: Option<Instant>,
}

/// The transport's join retry.
pub(super) use super::super::membership::JOIN_RETRY;

fn addr(i: usize) -> SocketAddr {
    let i = u32::try_from(i).unwrap_or(u32::MAX);
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | i), 7400))
}

fn index_of(id: &str) -> Option<usize> {
    id.strip_prefix('n')?.parse().ok()
}

impl Net {
    /// `cfg.nodes` nodes, none joined yet, at virtual time `start`.
    pub(super) fn new(cfg: SimConfig, start: Instant) -> Self {
        let params = SwimParams {
            gossip_every: cfg.gossip_every,
            gossip_fanout: cfg.gossip_fanout,
            ..SwimParams::new(
                cfg.probe_period,
                cfg.suspect_to_dead,
                Duration::from_secs(3600),
            )
        };
        let mut nodes = Vec::with_capacity(cfg.nodes);
        let mut index = HashMap::new();
        for i in 0..cfg.nodes {
            let a = addr(i);
            let mut id = NodeIdentity::new(format!("n{i}"), a, a, String::new());
            id.bump = 1;
            index.insert(a, i);
            let mut m = Membership::new(id, &params, cfg.seed.wrapping_mul(7919) ^ i as u64);
            m.record_events();
            nodes.push(m);
        }
        Self {
            up: vec![true; cfg.nodes],
            side: None,
            scheduled: vec![None; cfg.nodes],
            nodes,
            index,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            rng: cfg.seed | 1,
            now: start,
            cfg,
            bytes: 0,
            sent: 0,
            lost: 0,
            pending_dead: HashMap::new(),
            detected_at: HashMap::new(),
            false_downs: 0,
            count_false: true,
            pending_up: std::collections::HashSet::new(),
            joins_known_at: None,
        }
    }

    pub(super) fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn push(&mut self, at: Instant, target: usize, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, target)));
        self.events.insert(self.seq, ev);
    }

    /// Ships node `i`'s outbox, schedules its next timer, and books its notifications.
    pub(super) fn after(&mut self, i: usize) {
        let swim = self.nodes[i].drain_outbox().into_iter().map(|p| (p, false));
        let sync = self.nodes[i]
            .drain_sync_outbox()
            .into_iter()
            .map(|p| (p, true));
        let out: Vec<_> = swim.chain(sync).collect();
        for ((dst, data), sync) in out {
            let Some(&to) = self.index.get(&dst.swim_addr) else {
                continue;
            };
            self.bytes += (data.len() + TAG_LEN) as u64;
            let ev = Event::Packet {
                to,
                from: i,
                data: data.to_vec(),
                sync,
            };
            self.transmit(to, ev);
        }
        if let Some(t) = self.nodes[i].next_deadline() {
            if self.scheduled[i].map_or(true, |s| t < s) {
                self.scheduled[i] = Some(t);
                self.push(t, i, Event::Timer(i));
            }
        }
        for ev in self.nodes[i].drain_events() {
            let id = match ev {
                MemberEvent::Down(id) => id,
                MemberEvent::Up(id) => {
                    let Some(v) = index_of(&id) else { continue };
                    if self.pending_up.remove(&(i, v)) && self.pending_up.is_empty() {
                        self.joins_known_at = Some(self.now);
                    }
                    continue;
                }
            };
            let Some(v) = index_of(&id) else { continue };
            if self.up[v] && self.count_false {
                self.false_downs += 1;
            }
            if let Some(left) = self.pending_dead.get_mut(&v) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.pending_dead.remove(&v);
                    self.detected_at.insert(v, self.now);
                }
            }
        }
    }

    /// Sends `ev` to node `to` over the simulated network: counted, maybe lost, delayed.
    fn transmit(&mut self, to: usize, ev: Event) {
        self.sent += 1;
        let roll = (self.rand() % 1_000_000) as f64 / 1_000_000.0;
        if roll < self.cfg.loss {
            self.lost += 1;
            return;
        }
        let span = self
            .cfg
            .delay_max
            .saturating_sub(self.cfg.delay_min)
            .as_micros() as u64;
        let delay = self.cfg.delay_min + Duration::from_micros(self.rand() % (span + 1));
        let at = self.now + delay;
        self.push(at, to, ev);
    }

    /// Node `from` says Hello to node `to` (the transport's join handshake).
    pub(super) fn hello(&mut self, from: usize, to: usize, reply: bool) {
        self.transmit(to, Event::Hello { to, from, reply });
    }

    /// What the driver does with a Hello: answer it when asked, and announce to the sender
    /// unless it is known alive as it is.
    fn on_hello(&mut self, to: usize, from: usize, reply: bool) {
        if reply {
            self.hello(to, from, false);
        }
        let now = self.now;
        let id = self.nodes[from].identity().clone();
        let known = self.nodes[to]
            .peer(&id.node_id, now)
            .is_some_and(|e| e.identity == id && e.state != MemberState::Dead);
        if !known {
            self.nodes[to].announce(id, now);
        }
        self.after(to);
    }

    fn reachable(&self, from: usize, to: usize) -> bool {
        self.side.as_ref().map_or(true, |s| s[from] == s[to])
    }

    pub(super) fn run_until(&mut self, until: Instant) {
        while let Some(Reverse((at, seq, _))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = self.now.max(at);
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            match ev {
                Event::Packet {
                    to,
                    from,
                    data,
                    sync,
                } => {
                    if self.up[to] && self.reachable(from, to) {
                        let _ = if sync {
                            self.nodes[to].handle_sync(&data, self.now)
                        } else {
                            self.nodes[to].handle_packet(&data, self.now)
                        };
                        self.after(to);
                    }
                }
                Event::Hello { to, from, reply } => {
                    if self.up[to] && self.reachable(from, to) {
                        self.on_hello(to, from, reply);
                    }
                }
                Event::Timer(i) => {
                    if self.scheduled[i] == Some(at) {
                        self.scheduled[i] = None;
                    }
                    if self.up[i] {
                        self.nodes[i].poll_timers(self.now);
                        self.after(i);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    pub(super) fn live(&self) -> usize {
        self.up.iter().filter(|u| **u).count()
    }

    fn converged(&self) -> bool {
        let want = self.live() - 1;
        (0..self.nodes.len()).all(|i| !self.up[i] || self.nodes[i].active_count() == want)
    }

    /// Like the transport's join loop: a node without any active member announces to the
    /// seed again (its first announce or the answer may have been lost); in a cold start it
    /// says Hello again, as the transport does.
    pub(super) fn retry_joins(&mut self, seed: &NodeIdentity) {
        for i in 1..self.nodes.len() {
            if self.up[i] && self.nodes[i].active_count() == 0 {
                if self.cfg.cold_start {
                    self.hello(i, 0, true);
                } else {
                    self.nodes[i].announce(seed.clone(), self.now);
                    self.after(i);
                }
            }
        }
    }

    /// Steps in `step` increments until converged; returns the time it took.
    pub(super) fn wait_converged(
        &mut self,
        step: Duration,
        seed: &NodeIdentity,
    ) -> Option<Duration> {
        let start = self.now;
        let mut retry_at = self.now + JOIN_RETRY;
        while !self.converged() {
            if self.now - start > self.cfg.max_wait {
                return None;
            }
            if self.now >= retry_at {
                self.retry_joins(seed);
                retry_at = self.now + JOIN_RETRY;
            }
            let until = self.now + step;
            self.run_until(until);
        }
        Some(self.now - start)
    }
}
