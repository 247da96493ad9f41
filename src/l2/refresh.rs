//! Refresh-ahead in L2: the cluster-wide lock that picks the one node reloading a key, and
//! the conditional write of the reloaded value.
//!
//! Why its own file: neither is a write of the user's (no `WAIT`, no primary proof: losing
//! either costs one refresh, never freshness); both exist only for refresh-ahead.

use std::time::Duration;

use super::{tagged_value, L2Error, L2};

impl L2 {
    /// The lock key of `key`'s refresh: `{prefix}:refresh:{key}`, outside every generation's
    /// keys (a glob or category invalidation never touches it; it expires by itself).
    fn refresh_lock_key(&self, category: &str, key: &str) -> String {
        format!("{}:refresh:{key}", self.prefix(category, self.bucket(key)))
    }

    /// Takes the cluster-wide lock of `key`'s refresh for `hold` (`SET … NX PX`): `true` for
    /// the one node that should reload it now, `false` while another node holds it. Released
    /// ([`Self::refresh_unlock`]) once the reloaded value is in; after a failure it expires
    /// after `hold`, so a failing loader is retried at most once per `hold` in the cluster.
    pub async fn refresh_lock(
        &self,
        category: &str,
        key: &str,
        token: &str,
        hold: Duration,
    ) -> Result<bool, L2Error> {
        let lock = self.refresh_lock_key(category, key);
        let ms = hold.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        let reply: Option<String> = self
            .call(|mut c| async move {
                redis::cmd("SET")
                    .arg(lock)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(reply.is_some())
    }

    /// Releases the lock of `key`'s refresh if it still holds `token` (it may have expired
    /// and been taken by another node since). Returns whether it was released.
    pub async fn refresh_unlock(
        &self,
        category: &str,
        key: &str,
        token: &str,
    ) -> Result<bool, L2Error> {
        let lock = self.refresh_lock_key(category, key);
        let script = &self.scripts.unlock;
        let n: i64 = self
            .call(|mut c| async move { script.key(lock).arg(token).invoke_async(&mut c).await })
            .await?;
        Ok(n == 1)
    }

    /// Refresh-ahead's write: `value` replaces the key only if the category generation is
    /// still `generation` and the key still holds `expected` (`None`: holds nothing, not even
    /// a tombstone), i.e. nobody wrote, deleted or invalidated it since the refresh read it.
    /// Returns whether written.
    pub async fn replace(
        &self,
        category: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
        generation: i64,
        expected: Option<&[u8]>,
    ) -> Result<bool, L2Error> {
        let conditions = vec![
            generation.to_string().into_bytes(),
            expected.map(tagged_value).unwrap_or_default(),
        ];
        let script = &self.scripts.replace;
        self.conditional_write(script, category, key, tagged_value(value), ttl, conditions)
            .await
    }
}
