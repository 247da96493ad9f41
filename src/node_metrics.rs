//! Latency distributions and event counters that cannot be derived from the cache's own
//! atomics at scrape time: HTTP request latency per route template, Redis call latency,
//! invalidation propagation (publish on one node → applied on another), lease lapses and
//! flushes by reason.
//!
//! One [`NodeMetrics`] per node, handed to the parts that record into it (the bus, the
//! coherence layer, the HTTP middleware). Histograms take a short lock, so they are only
//! fed from places that already cost a network round trip or an HTTP request; the
//! library's L1-hit read path never touches them.
//!
//! A leaf: this module imports no other module of the crate. The Redis call latency
//! histogram is created here ([`l2_histogram`]) and owned by the L2 layer, which records
//! every call into it with a [`Timer`]; [`NodeMetrics::register`] takes it back as a plain
//! value at scrape time.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `hc_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route template (`/v1/cache/{category}/{key}`), `unmatched` otherwise: a
    /// raw path would let clients create unbounded series.
    pub route: Cow<'static, str>,
    /// The HTTP method (`GET`, `PUT`...).
    pub method: Cow<'static, str>,
    /// The response status code.
    pub status: u16,
}

/// Route templates of the node (a route missing here is still recorded, just with a copy of
/// its name).
const ROUTES: &[&str] = &[
    "/v1/cache/{category}/{key}",
    "/v1/load/{category}/{key}",
    "/v1/invalidate",
    "/v1/stats",
    "/v1/cluster/stats",
    "/health",
    "/metrics",
    "/openapi.json",
    "/ui",
    "unmatched",
];

/// Methods of the node's routes and of common requests.
const METHODS: &[&str] = &["GET", "PUT", "DELETE", "POST", "HEAD", "OPTIONS", "PATCH"];

/// `text` as one of the static `known` strings, or a copy.
fn static_or_owned(text: &str, known: &[&'static str]) -> Cow<'static, str> {
    match known.iter().find(|k| **k == text) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(text.to_string()),
    }
}

/// The labels of one HTTP series (static strings for the node's routes and common methods).
fn http_labels(route: &str, method: &str, status: u16) -> HttpLabels {
    HttpLabels {
        route: static_or_owned(route, ROUTES),
        method: static_or_owned(method, METHODS),
        status,
    }
}

/// Buckets for request and Redis call latency: 100 µs … ~3.3 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16)
}

/// Buckets for propagation, with the default staleness bound (0.1 s) as an edge so
/// `histogram_quantile` against the bound is exact there.
const PROPAGATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A fresh Redis call latency histogram (the L2 layer owns one and records into it).
pub fn l2_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

fn http_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The node's histograms and event counters (cheap to clone: every metric is shared).
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    http: Family<HttpLabels, Histogram, fn() -> Histogram>,
    propagation: Histogram,
    lease_lapses: Counter,
    /// Flushes by reason; encoded by `metrics.rs` together with the node's flush total.
    flushes: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics {
            http: Family::new_with_constructor(http_histogram),
            propagation: Histogram::new(PROPAGATION_BUCKETS),
            lease_lapses: Counter::default(),
            flushes: Arc::default(),
        }
    }
}

impl NodeMetrics {
    /// One HTTP request answered. The labels of the node's own routes and the common
    /// methods are static strings: recording a request allocates nothing.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http
            .get_or_create(&http_labels(route, method, status))
            .observe(elapsed.as_secs_f64());
    }

    /// The series of `observe_http(route, method, status, _)`, to record into directly (a
    /// clone shares the series): a caller on a hot path looks it up once.
    pub fn http_series(&self, route: &str, method: &str, status: u16) -> Histogram {
        self.http
            .get_or_create(&http_labels(route, method, status))
            .clone()
    }

    /// One invalidation applied here, `elapsed` after its origin published it.
    pub fn observe_propagation(&self, elapsed: Duration) {
        self.propagation.observe(elapsed.as_secs_f64());
    }

    /// Like [`NodeMetrics::observe_propagation`], from the origin's `sent_at_ms` (wall clock,
    /// ms since the Unix epoch). A timestamp from the future (clock skew) counts as 0.
    pub fn observe_propagation_since(&self, sent_at_ms: u64) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.observe_propagation(Duration::from_millis(now_ms.saturating_sub(sent_at_ms)));
    }

    /// The freshness lease ran out before it was renewed.
    pub fn record_lease_lapse(&self) {
        self.lease_lapses.inc();
    }

    /// L1 flushed for `reason` (`gap`, `restart`, `reconnect`, `lease`...).
    pub fn record_flush(&self, reason: &str) {
        if let Ok(mut f) = self.flushes.lock() {
            *f.entry(reason.to_string()).or_insert(0) += 1;
        }
    }

    /// Flushes recorded so far, by reason.
    pub fn flush_counts(&self) -> BTreeMap<String, u64> {
        self.flushes.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Registers every metric (shared, not copied) into a scrape's registry, with
    /// `l2` the Redis call latency histogram when Redis is configured.
    pub fn register(&self, registry: &mut Registry, l2: Option<Histogram>) {
        registry.register(
            "hc_http_request_duration_seconds",
            "HTTP request latency by matched route, method and status",
            self.http.clone(),
        );
        registry.register(
            "hc_l2_request_duration_seconds",
            "Latency of Redis (L2) calls, failures and timeouts included",
            l2.unwrap_or_else(l2_histogram),
        );
        registry.register(
            "hc_invalidation_propagation_seconds",
            "Time from an invalidation's publication on its origin to its application here",
            self.propagation.clone(),
        );
        registry.register(
            "hc_lease_lapses",
            "Times the freshness lease ran out before it was renewed",
            self.lease_lapses.clone(),
        );
    }
}

/// Observes the time from [`Timer::start`] to its drop into a histogram, so every exit of
/// the timed scope (success, error, timeout, cancellation) is counted.
pub struct Timer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl<'a> Timer<'a> {
    /// Starts timing; the elapsed time is observed into `histogram` when the timer drops.
    pub fn start(histogram: &'a Histogram) -> Timer<'a> {
        Timer {
            histogram,
            start: Instant::now(),
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(m: &NodeMetrics) -> String {
        let mut r = Registry::default();
        m.register(&mut r, None);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in\n{text}"))
    }

    #[test]
    fn propagation_lands_in_the_right_buckets() {
        let m = NodeMetrics::default();
        m.observe_propagation(Duration::from_millis(3));
        m.observe_propagation(Duration::from_millis(80));
        m.observe_propagation(Duration::from_millis(400));
        let t = encode(&m);
        let b = |le: &str| {
            line(
                &t,
                &format!("hc_invalidation_propagation_seconds_bucket{{le=\"{le}\"}}"),
            )
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
        };
        assert_eq!(b("0.0025"), "0");
        assert_eq!(b("0.005"), "1");
        assert_eq!(b("0.1"), "2");
        assert_eq!(b("0.5"), "3");
        assert!(line(&t, "hc_invalidation_propagation_seconds_count").ends_with(" 3"));
        let sum: f64 = line(&t, "hc_invalidation_propagation_seconds_sum")
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 0.483).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn propagation_from_a_future_timestamp_counts_as_zero() {
        let m = NodeMetrics::default();
        let future = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 60_000;
        m.observe_propagation_since(future);
        let t = encode(&m);
        assert!(line(
            &t,
            "hc_invalidation_propagation_seconds_bucket{le=\"0.001\"}"
        )
        .ends_with(" 1"));
    }

    #[test]
    fn flushes_by_reason_and_lease_lapses_are_counted() {
        let m = NodeMetrics::default();
        m.record_flush("gap");
        m.record_flush("gap");
        m.record_flush("reconnect");
        m.record_lease_lapse();
        let f = m.flush_counts();
        assert_eq!(f.get("gap"), Some(&2));
        assert_eq!(f.get("reconnect"), Some(&1));
        let t = encode(&m);
        assert!(line(&t, "hc_lease_lapses_total").ends_with(" 1"));
    }
}
