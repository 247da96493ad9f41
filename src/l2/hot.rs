//! Warm-up's shared ranking of hot keys: one Redis sorted set per category, fed by every
//! node's sampler and read by a node that starts or re-subscribes.
//!
//! The set holds key names and scores only, never values: a warm-up reads each value through
//! the normal L2 read ([`L2::get`]), so a key changed or invalidated after it was ranked is
//! warmed with its current value or not at all. Scores decay by half once per
//! [`HOT_HALF_LIFE`] (cluster-wide, whichever node samples first), the set keeps a bounded
//! number of members and expires [`HOT_LIFETIME`] after its last update.

use std::time::Duration;

use super::{L2Error, L2};

/// Scores of the hot-key ranking halve once per this period.
pub const HOT_HALF_LIFE: Duration = Duration::from_secs(600);

/// A ranking nobody updated for this long is dropped by Redis.
pub const HOT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

impl L2 {
    /// Adds `hits` (key, hits since the last sample) to `category`'s ranking, keeping its
    /// `keep` best members; returns the ranking's size.
    pub async fn record_hot(
        &self,
        category: &str,
        hits: &[(String, u32)],
        keep: usize,
    ) -> Result<u64, L2Error> {
        let (set, marker) = self.layout().hot_keys(&self.ns, category);
        let mut invocation = self.scripts.hot.key(set);
        invocation
            .key(marker)
            .arg(HOT_HALF_LIFE.as_millis() as u64)
            .arg(keep.max(1))
            .arg(HOT_LIFETIME.as_millis() as u64);
        for (key, n) in hits {
            invocation.arg(*n).arg(key.as_str());
        }
        let invocation = &invocation;
        self.call(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
    }

    /// The `n` best-ranked keys of `category`, best first (empty when nothing was recorded).
    pub async fn hottest(&self, category: &str, n: usize) -> Result<Vec<String>, L2Error> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let (set, _) = self.layout().hot_keys(&self.ns, category);
        let mut cmd = redis::cmd("ZREVRANGE");
        cmd.arg(set).arg(0).arg(n - 1);
        let cmd = &cmd;
        let keys: Vec<Vec<u8>> = self
            .call(|mut c| async move { cmd.query_async(&mut c).await })
            .await?;
        // Only this crate writes the set, and its keys are strings; skip anything else.
        Ok(keys
            .into_iter()
            .filter_map(|k| String::from_utf8(k).ok())
            .collect())
    }
}
