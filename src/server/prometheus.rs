//! `/metrics`: Prometheus text format (prometheus-client), rendered from a snapshot of the
//! cache's own atomics at scrape time, so the hot path never touches a metrics registry.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::stats::{Stats, Status};
use crate::HybridCache;

#[derive(Debug)]
struct CategorySnapshot {
    name: String,
    entries: u64,
    max_entries: u64,
    hits: u64,
    hits_l2: u64,
    misses: u64,
    loads: u64,
    evictions: u64,
    expirations: u64,
    warmed: u64,
}

#[derive(Debug)]
struct Snapshot {
    categories: Vec<CategorySnapshot>,
    stats: Stats,
    status: Status,
    redis_configured: bool,
    extra: Vec<(&'static str, &'static str, u64)>,
    l2_backlog: u64,
    /// Known nodes by gossip state (self counted alive).
    cluster_nodes: Vec<(&'static str, u64)>,
    flushes_by_reason: std::collections::BTreeMap<String, u64>,
    /// Per mailbox: name, depth, capacity, refused messages.
    mailboxes: Vec<(String, u64, u64, u64)>,
}

type PerCategory = (
    &'static str,
    &'static str,
    MetricType,
    fn(&CategorySnapshot) -> u64,
);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_categories(&mut encoder)?;
        self.encode_node_counters(&mut encoder)?;
        self.encode_status_gauges(&mut encoder)?;
        self.encode_flushes(&mut encoder)?;
        self.encode_mailboxes(&mut encoder)?;
        self.encode_cluster_nodes(&mut encoder)
    }
}

impl Snapshot {
    /// Per-category hit, miss, load, eviction and size families (label `category`).
    fn encode_categories(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let per_category: [PerCategory; 9] = [
            ("l1_hits", "L1 hits", MetricType::Counter, |c| c.hits),
            ("l2_hits", "L2 (Redis) hits", MetricType::Counter, |c| {
                c.hits_l2
            }),
            (
                "misses",
                "Misses (neither level had the key)",
                MetricType::Counter,
                |c| c.misses,
            ),
            ("loads", "Loader runs", MetricType::Counter, |c| c.loads),
            (
                "l1_evictions",
                "L1 entries evicted by the capacity bound",
                MetricType::Counter,
                |c| c.evictions,
            ),
            (
                "l1_expirations",
                "L1 entries expired by TTL",
                MetricType::Counter,
                |c| c.expirations,
            ),
            (
                "warmup_keys",
                "Keys preloaded from L2 by warm-up (warm_up_keys)",
                MetricType::Counter,
                |c| c.warmed,
            ),
            ("l1_entries", "Live L1 entries", MetricType::Gauge, |c| {
                c.entries
            }),
            ("l1_max_entries", "L1 capacity", MetricType::Gauge, |c| {
                c.max_entries
            }),
        ];
        for (name, help, ty, get) in per_category {
            let full = format!("hc_{name}");
            let mut me = encoder.encode_descriptor(&full, help, None, ty)?;
            for c in &self.categories {
                let labels = vec![("category".to_string(), c.name.clone())];
                let fe = me.encode_family(&labels)?;
                match ty {
                    MetricType::Counter => ConstCounter::new(get(c)).encode(fe)?,
                    _ => ConstGauge::new(get(c) as i64).encode(fe)?,
                }
            }
        }
        Ok(())
    }

    /// Node-wide counters, then the extra ones of other layers (gossip).
    fn encode_node_counters(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let k = &self.stats.counters;
        let node: [(&str, &str, u64); 11] = [
            (
                "http_bad_requests",
                "Rejected HTTP requests (bad input)",
                k.http_bad_requests,
            ),
            (
                "invalidations_sent",
                "Invalidations this node broadcast",
                k.invalidations_sent,
            ),
            (
                "invalidations_received",
                "Invalidations applied from other nodes",
                k.invalidations_received,
            ),
            (
                "invalid_messages",
                "Malformed bus payloads dropped",
                k.invalid_messages,
            ),
            (
                "duplicate_messages",
                "Bus messages received twice and applied once",
                k.duplicate_messages,
            ),
            (
                "stale_fills_rejected",
                "Fills kept out of L1 because an invalidation raced them",
                k.stale_fills_rejected,
            ),
            (
                "negative_hits",
                "Reads answered by a cached \"not found\" (negative caching)",
                k.negative_hits,
            ),
            (
                "fail_safe_hits",
                "get_or_load calls answered by a fail-safe (stale) value",
                k.fail_safe_hits,
            ),
            (
                "actor_restarts",
                "Actors restarted by the supervisor",
                k.actor_restarts,
            ),
            ("l2_errors", "Failed or skipped Redis calls", k.l2_errors),
            (
                "redis_connects",
                "Redis (re)connections",
                k.redis_reconnects,
            ),
        ];
        let refresh = refresh_counters(k);
        let all = node.into_iter().chain(refresh);
        for (name, help, v) in all.chain(self.extra.iter().copied()) {
            let full = format!("hc_{name}");
            let me = encoder.encode_descriptor(&full, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(me)?;
        }
        Ok(())
    }

    /// Redis and isolation status gauges, and the L2 backlog.
    fn encode_status_gauges(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "redis_up",
                "1 while Redis serves as L2 and the bus is subscribed",
                u64::from(self.stats.l2_enabled),
            ),
            (
                "redis_configured",
                "1 if Redis is configured",
                u64::from(self.redis_configured),
            ),
            (
                "degraded",
                "1 while Redis is configured but unreachable, or not yet usable for every key (replay pending)",
                u64::from(self.status == Status::Degraded),
            ),
            (
                "isolated",
                "1 while neither Redis nor any peer is reachable",
                u64::from(self.status == Status::Isolated),
            ),
            (
                "l2_backlog",
                "Changes made while Redis was unreachable, waiting to be replayed into L2",
                self.l2_backlog,
            ),
        ];
        for (name, help, v) in gauges {
            let full = format!("hc_{name}");
            let me = encoder.encode_descriptor(&full, help, None, MetricType::Gauge)?;
            ConstGauge::new(v as i64).encode(me)?;
        }
        Ok(())
    }

    /// Full L1 flushes by reason.
    fn encode_flushes(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Flushes by reason; flushes counted before a reason was recorded for them are `other`,
        // so the sum over reasons stays the node's flush total.
        let mut me = encoder.encode_descriptor(
            "hc_coherence_flushes",
            "Full L1 flushes by reason (gap, restart, reconnect, lease...)",
            None,
            MetricType::Counter,
        )?;
        let k = &self.stats.counters;
        let labelled: u64 = self.flushes_by_reason.values().sum();
        let other = k.coherence_flushes.saturating_sub(labelled);
        let reasons = self
            .flushes_by_reason
            .iter()
            .map(|(r, n)| (r.as_str(), *n))
            .chain(std::iter::once(("other", other)));
        for (reason, n) in reasons {
            let labels = vec![("reason".to_string(), reason.to_string())];
            ConstCounter::new(n).encode(me.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// Depth, capacity and overflows of each mailbox (label `mailbox`).
    fn encode_mailboxes(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type MailboxField = fn(&(String, u64, u64, u64)) -> u64;
        let per_mailbox: [(&str, &str, MetricType, MailboxField); 3] = [
            (
                "hc_mailbox_depth",
                "Messages admitted to an actor mailbox (or the bus publisher queue) and not yet handled",
                MetricType::Gauge,
                |m| m.1,
            ),
            (
                "hc_mailbox_capacity",
                "Messages a mailbox admits at once (mailbox_capacity)",
                MetricType::Gauge,
                |m| m.2,
            ),
            (
                "hc_mailbox_overflows",
                "Messages a full mailbox refused (the node flushed instead)",
                MetricType::Counter,
                |m| m.3,
            ),
        ];
        for (name, help, ty, get) in per_mailbox {
            let mut me = encoder.encode_descriptor(name, help, None, ty)?;
            for m in &self.mailboxes {
                let labels = vec![("mailbox".to_string(), m.0.clone())];
                let fe = me.encode_family(&labels)?;
                match ty {
                    MetricType::Counter => ConstCounter::new(get(m)).encode(fe)?,
                    _ => ConstGauge::new(get(m) as i64).encode(fe)?,
                }
            }
        }
        Ok(())
    }

    /// Known nodes by gossip state (label `state`).
    fn encode_cluster_nodes(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The same per-state counts under the older name and the one of CONTRACT §12.
        for (name, help) in [
            (
                "hc_cluster_nodes",
                "Nodes this node knows, by gossip state (itself counted alive)",
            ),
            (
                "hc_cluster_members",
                "Cluster members this node knows, by SWIM state (itself counted alive)",
            ),
        ] {
            let mut me = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (state, n) in &self.cluster_nodes {
                let labels = vec![("state".to_string(), state.to_string())];
                ConstGauge::new(*n as i64).encode(me.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Renders the node's metrics in Prometheus text format. `extra` adds node-level counters
/// from other layers (gossip).
pub async fn render(
    cache: &HybridCache,
    extra: Vec<(&'static str, &'static str, u64)>,
    members: &[crate::cluster::ClusterMember],
) -> Result<String, std::fmt::Error> {
    let count = |state: &str| members.iter().filter(|m| m.state == state).count() as u64;
    let cluster_nodes = vec![
        ("alive", 1 + count("alive")),
        ("suspect", count("suspect")),
        ("dead", count("dead")),
    ];
    let stats = cache.stats().await;
    let mut categories = Vec::new();
    for (name, l1) in cache.l1_categories() {
        let c = &l1.counters;
        categories.push(CategorySnapshot {
            name: name.clone(),
            entries: stats.l1_caches.get(name).map(|s| s.size).unwrap_or(0),
            max_entries: l1.config().max_entries,
            hits: c.hits.get(),
            hits_l2: c.hits_l2.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            loads: c.loads.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            expirations: c.expirations.load(Ordering::Relaxed),
            warmed: c.warmed.load(Ordering::Relaxed),
        });
    }
    let metrics = cache.node_metrics();
    let mut registry = Registry::default();
    metrics.register(&mut registry, cache.l2_latency_histogram());
    let mailboxes = cache.mailboxes();
    registry.register_collector(Box::new(Snapshot {
        mailboxes,
        flushes_by_reason: metrics.flush_counts(),
        categories,
        status: cache.status(),
        redis_configured: cache.config().redis.is_some(),
        l2_backlog: cache.l2_backlog_len() as u64,
        stats,
        extra,
        cluster_nodes,
    }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Refresh-ahead's counters (`docs/near-cache.md`).
fn refresh_counters(k: &crate::stats::Counters) -> [(&'static str, &'static str, u64); 5] {
    [
        (
            "refreshes_started",
            "Refresh-ahead reloads started",
            k.refreshes_started,
        ),
        (
            "refreshes_won",
            "Refresh-ahead reloads this node ran (it took the key's refresh lock)",
            k.refreshes_won,
        ),
        (
            "refreshes_lost",
            "Refresh-ahead reloads left to another node (it held the lock)",
            k.refreshes_lost,
        ),
        (
            "refreshes_failed",
            "Refresh-ahead reloads that failed (loader or Redis)",
            k.refreshes_failed,
        ),
        (
            "refreshes_discarded",
            "Refresh-ahead values dropped because a write or invalidation raced them",
            k.refreshes_discarded,
        ),
    ]
}
