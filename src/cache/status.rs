//! What the node reports about itself: `/v1/stats`, `/health`, the status and whether a
//! balancer should send it traffic.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::state::Shared;
use super::HybridCache;
use crate::stats::{CategoryStats, Counters, Health, HealthCache, L1Size, Stats, Status};

impl Shared {
    /// The node's stats (`GET /v1/stats`).
    pub(super) async fn stats(&self) -> Stats {
        let mut l1_caches = BTreeMap::new();
        let mut c = Counters::default();
        for (name, l1) in &self.categories {
            // Maintenance first, so eviction notifications are counted.
            let size = l1.size().await;
            let k = &l1.counters;
            let hits = k.hits.get();
            let misses = k.misses.load(Ordering::Relaxed);
            c.hits_l1 += hits;
            c.hits_l2 += k.hits_l2.load(Ordering::Relaxed);
            c.misses += misses;
            c.loads += k.loads.load(Ordering::Relaxed);
            c.evictions += k.evictions.load(Ordering::Relaxed);
            c.expirations += k.expirations.load(Ordering::Relaxed);
            c.stale_fills_rejected += k.stale_fills_rejected.load(Ordering::Relaxed);
            c.negative_hits += k.negative_hits.load(Ordering::Relaxed);
            c.fail_safe_hits += k.fail_safe_hits.load(Ordering::Relaxed);
            c.refreshes_started += k.refreshes_started.load(Ordering::Relaxed);
            c.refreshes_won += k.refreshes_won.load(Ordering::Relaxed);
            c.refreshes_lost += k.refreshes_lost.load(Ordering::Relaxed);
            c.refreshes_failed += k.refreshes_failed.load(Ordering::Relaxed);
            c.refreshes_discarded += k.refreshes_discarded.load(Ordering::Relaxed);
            let warmed = k.warmed.load(Ordering::Relaxed);
            c.warmed += warmed;
            let cfg = l1.config();
            l1_caches.insert(
                name.clone(),
                CategoryStats {
                    size,
                    maxsize: cfg.max_entries,
                    ttl: cfg.ttl_secs,
                    hits,
                    misses,
                    consistency: cfg.consistency.as_str().to_string(),
                    bytes: l1.bytes().await,
                    max_bytes: l1.max_bytes(),
                    warmed,
                },
            );
        }
        let n = &self.counters;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        c.invalidations_sent = ld(&n.invalidations_sent);
        c.invalidations_received = ld(&n.invalidations_received);
        c.coherence_flushes = ld(&n.coherence_flushes);
        c.invalid_messages = ld(&n.invalid_messages);
        c.duplicate_messages = ld(&n.duplicate_messages);
        c.actor_restarts = ld(&n.actor_restarts);
        c.l2_errors = ld(&n.l2_errors);
        c.redis_reconnects = ld(&n.redis_reconnects);
        c.http_bad_requests = ld(&n.http_bad_requests);
        Stats {
            node_id: self.config.node_id.clone(),
            l1_caches,
            l2_enabled: self.l2_enabled(),
            counters: c,
            coherence: Some(self.coherence_stats()),
        }
    }

    /// The `coherence` object of the stats.
    pub(super) fn coherence_stats(&self) -> crate::stats::CoherenceStats {
        let link = match (&self.l2, self.link_up.load(Ordering::Relaxed)) {
            (None, _) => "none",
            (Some(_), true) => "up",
            (Some(_), false) => "down",
        };
        let held = self.lease.held();
        let lease_via = match (link, held) {
            ("none", _) => "always",
            (_, false) => "none",
            ("up", true) => "redis",
            _ => "peers",
        };
        crate::stats::CoherenceStats {
            link: link.to_string(),
            lease_held: held,
            lease_via: lease_via.to_string(),
            lease_age_ms: self.lease.age().map(|a| a.as_millis() as u64),
            staleness_bound_ms: self.config.staleness_bound.as_millis() as u64,
            serve_stale_on_outage: self.config.serve_stale_on_outage,
        }
    }
}

impl HybridCache {
    /// The node's stats (`GET /v1/stats`).
    pub async fn stats(&self) -> Stats {
        self.shared.stats().await
    }

    /// Whether Redis is configured and currently serving as L2.
    pub fn l2_enabled(&self) -> bool {
        self.shared.l2_enabled()
    }

    /// Current status: ok / degraded / isolated. `degraded` while Redis is configured but
    /// unreachable, and also while it answers again but L2 is not yet usable for every key:
    /// its circuit breaker still open, the replay hold on (after a start or a link loss,
    /// until every live peer told us its backlog), or changes made during an outage still
    /// waiting to be replayed into L2. Until then some reads answer 503, so `ok` means that
    /// every read this node gets can be answered.
    pub fn status(&self) -> Status {
        if self.shared.isolated.load(Ordering::Relaxed) {
            Status::Isolated
        } else if self.shared.config.redis.is_some()
            && (!self.l2_enabled() || self.l2_catching_up())
        {
            Status::Degraded
        } else {
            Status::Ok
        }
    }

    /// Whether a connected L2 is not usable for every key yet (see [`HybridCache::status`]).
    fn l2_catching_up(&self) -> bool {
        self.shared.l2.as_ref().is_some_and(|l2| !l2.available())
            || self.shared.l2_hold.load(Ordering::Acquire)
            || !self.shared.l2_backlog_is_empty()
    }

    /// Whether this node can answer reads within its guarantee right now: a balancer should
    /// drain it otherwise (`/health` answers 503). True when status is `ok`, while the lease
    /// is held, or with the `serve_stale_on_outage` opt-in (unless isolated). A node whose
    /// subscription is down but whose L2 still answers is drained too: it serves reads from
    /// L2 and accepts writes, but only until it resubscribes would a balancer need it.
    pub fn serving(&self) -> bool {
        match self.status() {
            Status::Ok => true,
            Status::Isolated => false,
            // Catching up (replay, hold, breaker) with the link up: still served, as before.
            Status::Degraded if self.l2_enabled() => true,
            // Not "L2 answers": a circuit breaker half-opening would make /health flap.
            Status::Degraded => self.l1_trusted(),
        }
    }

    /// `GET /health`.
    pub async fn health(&self) -> Health {
        let mut l1_stats = BTreeMap::new();
        for (name, l1) in &self.shared.categories {
            let cfg = l1.config();
            l1_stats.insert(
                name.clone(),
                L1Size {
                    size: l1.size().await,
                    maxsize: cfg.max_entries,
                    ttl: cfg.ttl_secs,
                    consistency: cfg.consistency.as_str().to_string(),
                },
            );
        }
        Health {
            status: self.status(),
            env: self.shared.config.env.clone(),
            node_id: self.shared.config.node_id.clone(),
            cache: HealthCache {
                l1_enabled: true,
                l2_redis_enabled: self.l2_enabled(),
                l1_stats,
            },
        }
    }
}
