//! Writes: authoritative sets, conditional fills after a load, delete tombstones and
//! generation bumps. Every value write is a Lua script that resolves the category
//! generation and carries a deadline checked on Redis's clock (see
//! [`LATE_WRITE_ALLOWANCE`]); with `l2_min_replicas > 0`, authoritative writes are followed
//! by `WAIT n` in the same pipeline.

use std::time::Duration;

use redis::Script;

use super::{
    new_tombstone, not_late, tagged_value, FillGuard, L2Error, L2Value, L2, LATE_WRITE_ALLOWANCE,
    TAG_NEGATIVE, TOMBSTONE_TTL,
};

impl L2 {
    /// Runs a write script (`SET … PX`, optionally conditional on the generation) on a tagged
    /// value; returns the script's reply.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        script: &Script,
        waited_src: Option<&str>,
        category: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
        generation: Option<i64>,
        not_after: Option<std::time::SystemTime>,
    ) -> Result<i64, L2Error> {
        let payload = tagged_value(value);
        self.write_payload(
            script, waited_src, category, key, payload, ttl, generation, not_after,
        )
        .await
    }

    /// [`Self::write`] of an already tagged payload.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_payload(
        &self,
        script: &Script,
        waited_src: Option<&str>,
        category: &str,
        key: &str,
        payload: Vec<u8>,
        ttl: Duration,
        generation: Option<i64>,
        not_after: Option<std::time::SystemTime>,
    ) -> Result<i64, L2Error> {
        let (gk, prefix) = self.key_names(category, key);
        let ms = ttl.as_millis().max(1) as u64;
        // The caller's deadline, when earlier, is the one Redis enforces.
        let (deadline_ms, by_caller) = self.deadline_ms(not_after);
        let reply: i64 = match waited_src {
            Some(src) if self.wait_for() > 0 => {
                let mut pipe = redis::pipe();
                pipe.cmd("EVAL")
                    .arg(src)
                    .arg(1)
                    .arg(gk)
                    .arg(prefix)
                    .arg(key)
                    .arg(payload)
                    .arg(ms);
                if let Some(g) = generation {
                    pipe.arg(g.to_string());
                }
                pipe.arg(deadline_ms);
                let replies = self.with_wait(pipe).await?;
                match replies.first() {
                    Some(v) => redis::from_redis_value(v)?,
                    None => return Err(L2Error::Protocol("empty pipeline reply".into())),
                }
            }
            _ => {
                self.call(|mut c| async move {
                    let mut inv = script.key(gk);
                    inv.arg(prefix).arg(key).arg(payload).arg(ms);
                    if let Some(g) = generation {
                        inv.arg(g.to_string());
                    }
                    inv.arg(deadline_ms).invoke_async(&mut c).await
                })
                .await?
            }
        };
        not_late(reply, by_caller)
    }

    /// Authoritative write (a user's `set`). With `not_after`, Redis applies it only up to
    /// that wall-clock time (its own clock), else [`L2Error::Late`]: a write whose caller
    /// gave up never lands afterwards.
    pub async fn set(
        &self,
        category: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
        not_after: Option<std::time::SystemTime>,
    ) -> Result<(), L2Error> {
        let src = Some(self.scripts.set_src.as_str());
        let ticket = self.fence.ticket();
        let written = self
            .write(
                &self.scripts.set,
                src,
                category,
                key,
                value,
                ttl,
                None,
                not_after,
            )
            .await
            .map(|_| ());
        self.confirmed(ticket, written).await
    }

    /// What a fill of `key` after a load is conditional on, given what the load's L2 read
    /// `found` (read before the loader runs; one `GET` of the glob count of the key's bucket).
    pub async fn fill_guard(
        &self,
        category: &str,
        key: &str,
        found: &L2Value,
    ) -> Result<FillGuard, L2Error> {
        let globs_key = self.globs_key(category, self.bucket(key));
        let globs: Option<i64> = self
            .call(|mut c| async move { redis::cmd("GET").arg(globs_key).query_async(&mut c).await })
            .await?;
        Ok(FillGuard {
            generation: found.generation,
            globs: globs.unwrap_or(0),
            over: found.tombstone.clone(),
        })
    }

    /// Conditional fill after a load: only if the category generation and glob count are
    /// still those of `guard` and the key is absent (no newer value, no tombstone) or holds
    /// exactly the tombstone the load's read found (no write or delete since: every delete
    /// writes a tombstone of its own). Returns whether written.
    pub async fn fill(
        &self,
        category: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
        guard: &FillGuard,
    ) -> Result<bool, L2Error> {
        let payload = tagged_value(value);
        self.fill_payload(category, key, payload, ttl, guard).await
    }

    /// Conditional fill of a cached "not found" ([`TAG_NEGATIVE`]) after a load, under the
    /// same conditions as [`Self::fill`]. Returns whether written.
    pub async fn fill_negative(
        &self,
        category: &str,
        key: &str,
        ttl: Duration,
        guard: &FillGuard,
    ) -> Result<bool, L2Error> {
        self.fill_payload(category, key, vec![TAG_NEGATIVE], ttl, guard)
            .await
    }

    /// [`Self::fill`] of a tagged payload.
    async fn fill_payload(
        &self,
        category: &str,
        key: &str,
        payload: Vec<u8>,
        ttl: Duration,
        guard: &FillGuard,
    ) -> Result<bool, L2Error> {
        let conditions = vec![
            guard.generation.to_string().into_bytes(),
            guard.globs.to_string().into_bytes(),
            guard.over.as_deref().unwrap_or_default().to_vec(),
        ];
        self.conditional_write(&self.scripts.fill, category, key, payload, ttl, conditions)
            .await
    }

    /// Runs a conditional write script (`fill`, `replace`): ARGV the prefix, the key, the
    /// tagged `payload`, the TTL in ms, the script's `conditions`, then this node's deadline.
    /// Returns whether it wrote; [`L2Error::Late`] when Redis saw the deadline pass.
    pub(super) async fn conditional_write(
        &self,
        script: &Script,
        category: &str,
        key: &str,
        payload: Vec<u8>,
        ttl: Duration,
        conditions: Vec<Vec<u8>>,
    ) -> Result<bool, L2Error> {
        let (gk, prefix) = self.key_names(category, key);
        let ms = ttl.as_millis().max(1) as u64;
        let deadline = std::time::SystemTime::now() + self.timeout + LATE_WRITE_ALLOWANCE;
        let deadline_ms = deadline
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let reply: i64 = self
            .call(|mut c| async move {
                let mut inv = script.key(gk);
                inv.arg(prefix).arg(key).arg(payload).arg(ms);
                for condition in conditions {
                    inv.arg(condition);
                }
                inv.arg(deadline_ms).invoke_async(&mut c).await
            })
            .await?;
        match reply {
            -1 => Err(L2Error::Late),
            n => Ok(n == 1),
        }
    }

    /// Deletes a key by writing a short tombstone (Sentinel: confirmed by a primary proof).
    pub async fn delete(&self, category: &str, key: &str) -> Result<(), L2Error> {
        let ticket = self.fence.ticket();
        let written = self.tombstone(category, key).await;
        self.confirmed(ticket, written).await
    }

    /// Writes a short tombstone.
    pub(super) async fn tombstone(&self, category: &str, key: &str) -> Result<(), L2Error> {
        let (gk, prefix) = self.key_names(category, key);
        let (script, tomb) = (&self.scripts.tomb, new_tombstone());
        let ms = TOMBSTONE_TTL.as_millis() as u64;
        if self.wait_for() > 0 {
            let mut pipe = redis::pipe();
            pipe.cmd("EVAL")
                .arg(&self.scripts.tomb_src)
                .arg(1)
                .arg(gk)
                .arg(prefix)
                .arg(key)
                .arg(&tomb)
                .arg(ms)
                .ignore();
            self.with_wait(pipe).await?;
            return Ok(());
        }
        let tomb = &tomb[..];
        let _: i64 = self
            .call(|mut c| async move {
                script
                    .key(gk)
                    .arg(prefix)
                    .arg(key)
                    .arg(tomb)
                    .arg(ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// `invalidate("*", category)`: bumps the generation (in a cluster, that of every bucket,
    /// concurrently; done only once all are); no keyspace scan.
    pub async fn bump_generation(&self, category: &str) -> Result<(), L2Error> {
        let bumps = (0..self.buckets()).map(|b| self.bump_bucket(self.gen_key(category, b)));
        futures::future::try_join_all(bumps).await?;
        Ok(())
    }

    /// `INCR` of one generation key (with `WAIT` when replicas are required).
    async fn bump_bucket(&self, gk: String) -> Result<i64, L2Error> {
        if self.wait_for() > 0 {
            let mut pipe = redis::pipe();
            pipe.cmd("INCR").arg(gk);
            let replies = self.with_wait(pipe).await?;
            return match replies.first() {
                Some(v) => Ok(redis::from_redis_value(v)?),
                None => Err(L2Error::Protocol("empty pipeline reply".into())),
            };
        }
        self.call(
            |mut c| async move { redis::cmd("INCR").arg(gk).query_async::<i64>(&mut c).await },
        )
        .await
    }
}
