//! How L2 keys are named, and why a Redis Cluster holds a category on every primary.
//!
//! Every L2 script reads a generation and a data key together, and Redis runs a script only
//! on keys of one slot. Single Redis and Sentinel keep the original names
//! (`ns:category:generation:key`, generation in `ns:gen:category`). A cluster cannot put a
//! whole category in one slot (it would live on one primary: the cluster would add
//! failover, but neither memory nor throughput), so a category is split into
//! [`CLUSTER_BUCKETS`] buckets, each with a hash tag of its own and a generation of its own:
//! `{tag}:generation:key`, generation in `{tag}:gen`.
//!
//! A key's bucket follows the key's own slot (`CLUSTER KEYSLOT key` scaled to the bucket
//! count), and each bucket's tag is chosen so that its slot falls in the same range of
//! `16384 / CLUSTER_BUCKETS` slots: the buckets' slots are evenly spaced over the slot space,
//! so each primary holds buckets (and keys) in proportion to the slots it serves. The tag is
//! `ns:category:bucket:n` for the smallest `n` that lands in the range, so every node of
//! every version with the same bucket count finds the same one.
//!
//! A category-wide change touches every bucket: `invalidate("*")` bumps each bucket's
//! generation, a glob counts itself in each bucket's glob count and scans every primary, a
//! tag runs its script in each bucket. Each is acknowledged only once every bucket took it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redis_protocol::redis_keyslot;

/// Buckets per category in a cluster: enough that three primaries with equal slot ranges
/// hold equal shares within one bucket (1/64 of a category), few enough that a
/// category-wide invalidation (one command per bucket, concurrently) stays cheap.
pub const CLUSTER_BUCKETS: usize = 64;

/// Slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// How L2 keys are named: the original layout, or buckets spread over a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLayout {
    /// `ns:category:generation:key`, generation in `ns:gen:category`.
    Plain,
    /// `{tag}:generation:key`, generation in `{tag}:gen`, one tag per bucket of a category.
    Spread,
}

impl KeyLayout {
    /// Buckets per category: 1, or [`CLUSTER_BUCKETS`].
    pub fn buckets(self) -> usize {
        match self {
            KeyLayout::Plain => 1,
            KeyLayout::Spread => CLUSTER_BUCKETS,
        }
    }

    /// The bucket of `key`: 0, or its slot scaled to the bucket count.
    pub fn bucket(self, key: &str) -> usize {
        match self {
            KeyLayout::Plain => 0,
            KeyLayout::Spread => {
                usize::from(redis_keyslot(key.as_bytes())) * CLUSTER_BUCKETS / SLOTS
            }
        }
    }

    /// The sorted set ranking a category's hot keys (warm-up), and the marker of its last
    /// decay: `ns:hot:category` and `ns:hot:category:decay`, in a cluster
    /// `{ns:category}:hot` and `{ns:category}:hot:decay` (one slot per category).
    pub fn hot_keys(self, ns: &str, category: &str) -> (String, String) {
        let hot = match self {
            KeyLayout::Plain => format!("{ns}:hot:{category}"),
            KeyLayout::Spread => format!("{{{ns}:{category}}}:hot"),
        };
        let decay = format!("{hot}:decay");
        (hot, decay)
    }
}

/// The hash tag of `bucket` of `category`: `ns:category:bucket:n` for the smallest `n` whose
/// slot lies in the bucket's range.
pub fn bucket_tag(ns: &str, category: &str, bucket: usize) -> String {
    let width = SLOTS / CLUSTER_BUCKETS;
    let range = bucket * width..(bucket + 1) * width;
    let mut n = 0u64;
    loop {
        let tag = format!("{ns}:{category}:{bucket}:{n}");
        if range.contains(&usize::from(redis_keyslot(tag.as_bytes()))) {
            return tag;
        }
        n += 1;
    }
}

/// A cluster bucket's generation key, next to its data keys.
fn spread_gen_key(prefix: &str) -> String {
    format!("{prefix}:gen")
}

/// Key prefixes of one namespace, per category and bucket, computed once per category (the
/// tags take a search; a read must not).
#[derive(Debug)]
pub struct Prefixes {
    ns: String,
    spread: RwLock<HashMap<String, Arc<[String]>>>,
}

impl Prefixes {
    /// No category computed yet.
    pub fn new(ns: &str) -> Prefixes {
        Prefixes {
            ns: ns.to_string(),
            spread: RwLock::new(HashMap::new()),
        }
    }

    /// The prefix of `category`'s data keys in `bucket` (the generation and the key follow):
    /// `ns:category`, or `{tag}`.
    pub fn prefix(&self, layout: KeyLayout, category: &str, bucket: usize) -> String {
        match layout {
            KeyLayout::Plain => format!("{}:{category}", self.ns),
            KeyLayout::Spread => self.spread_prefix(category, bucket),
        }
    }

    /// The key holding the generation of `category`'s `bucket`: `ns:gen:category`, or
    /// `{tag}:gen`.
    pub fn gen_key(&self, layout: KeyLayout, category: &str, bucket: usize) -> String {
        match layout {
            KeyLayout::Plain => format!("{}:gen:{category}", self.ns),
            KeyLayout::Spread => spread_gen_key(&self.spread_prefix(category, bucket)),
        }
    }

    /// [`Self::gen_key`] and [`Self::prefix`] of one bucket, with one tag lookup (the L2 read
    /// and write paths need both).
    pub fn names(&self, layout: KeyLayout, category: &str, bucket: usize) -> (String, String) {
        let prefix = self.prefix(layout, category, bucket);
        let gen_key = match layout {
            KeyLayout::Plain => self.gen_key(layout, category, bucket),
            KeyLayout::Spread => spread_gen_key(&prefix),
        };
        (gen_key, prefix)
    }

    fn spread_prefix(&self, category: &str, bucket: usize) -> String {
        let known = self
            .spread
            .read()
            .ok()
            .and_then(|m| m.get(category).cloned());
        let all = known.unwrap_or_else(|| {
            let all: Arc<[String]> = (0..CLUSTER_BUCKETS)
                .map(|b| format!("{{{}}}", bucket_tag(&self.ns, category, b)))
                .collect();
            if let Ok(mut m) = self.spread.write() {
                m.insert(category.to_string(), all.clone());
            }
            all
        });
        all[bucket % CLUSTER_BUCKETS].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_keys_keep_their_names() {
        let p = Prefixes::new("hc");
        assert_eq!(p.prefix(KeyLayout::Plain, "roles", 0), "hc:roles");
        assert_eq!(p.gen_key(KeyLayout::Plain, "roles", 0), "hc:gen:roles");
        assert_eq!(
            p.names(KeyLayout::Plain, "roles", 0),
            ("hc:gen:roles".to_string(), "hc:roles".to_string())
        );
        assert_eq!(KeyLayout::Plain.buckets(), 1);
        assert_eq!(KeyLayout::Plain.bucket("anything"), 0);
        assert_eq!(
            KeyLayout::Plain.hot_keys("hc", "roles"),
            ("hc:hot:roles".to_string(), "hc:hot:roles:decay".to_string())
        );
        assert_eq!(
            KeyLayout::Spread.hot_keys("hc", "roles").1,
            "{hc:roles}:hot:decay"
        );
    }

    #[test]
    fn cluster_buckets_sit_in_evenly_spaced_slot_ranges() {
        let p = Prefixes::new("hc");
        let width = SLOTS / CLUSTER_BUCKETS;
        let mut seen = std::collections::HashSet::new();
        for b in 0..CLUSTER_BUCKETS {
            let prefix = p.prefix(KeyLayout::Spread, "roles", b);
            let data = format!("{prefix}:0:some-key");
            let slot = usize::from(redis_keyslot(data.as_bytes()));
            assert_eq!(slot / width, b, "bucket {b} ({prefix}) is in slot {slot}");
            assert_eq!(
                usize::from(redis_keyslot(
                    p.gen_key(KeyLayout::Spread, "roles", b).as_bytes()
                )),
                slot,
                "the generation shares the bucket's slot"
            );
            assert_eq!(
                p.names(KeyLayout::Spread, "roles", b),
                (p.gen_key(KeyLayout::Spread, "roles", b), prefix.clone())
            );
            assert!(seen.insert(prefix));
        }
        // Pinned: nodes find the same tags (the names are part of the wire).
        assert_eq!(bucket_tag("hc", "roles", 0), "hc:roles:0:41");
    }

    #[test]
    fn a_key_goes_to_the_bucket_of_its_own_slot() {
        let width = SLOTS / CLUSTER_BUCKETS;
        for key in ["a", "user:1", "get_user_permissions:123", "{x}y"] {
            let slot = usize::from(redis_keyslot(key.as_bytes()));
            assert_eq!(KeyLayout::Spread.bucket(key), slot / width);
        }
        let mut per_bucket = vec![0usize; CLUSTER_BUCKETS];
        for i in 0..6400 {
            per_bucket[KeyLayout::Spread.bucket(&format!("k{i}"))] += 1;
        }
        assert!(
            per_bucket.iter().all(|&n| (50..=150).contains(&n)),
            "{per_bucket:?}"
        );
    }
}
