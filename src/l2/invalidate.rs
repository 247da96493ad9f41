//! Invalidation by pattern: `*` bumps the category generation (no keyspace scan), an exact
//! key writes a tombstone, a tag runs the tag script (see `tags`), and a glob `SCAN`s the category's current generation on every
//! primary in bounded batches and replaces each match by a tombstone, after counting the glob
//! in the category's glob count (which voids every fill of a load that read the category
//! before).

use std::sync::atomic::Ordering;

use super::{new_tombstone, L2Error, L2, SCAN_BATCH, TOMBSTONE_TTL};
use crate::pattern::{redis_escape, Glob, Pattern};

impl L2 {
    /// Applies an invalidation (`*`, exact key, glob or tag) to one category's L2.
    pub async fn invalidate_pattern(
        &self,
        category: &str,
        pattern: &Pattern,
    ) -> Result<(), L2Error> {
        let ticket = self.fence.ticket();
        let written = match pattern {
            Pattern::All => self.bump_generation(category).await,
            Pattern::Exact(k) => self.tombstone(category, k).await,
            Pattern::Glob(g) => self.invalidate_glob(category, g).await.map(|_| ()),
            Pattern::Tag(t) => self.invalidate_tag(category, t).await.map(|_| ()),
        };
        // Sentinel: acknowledged only once a primary proof confirms the server.
        self.confirmed(ticket, written).await
    }

    /// Glob invalidation: SCAN the category's current generation in bounded batches with
    /// the glob's Redis prefilter (a superset, see [`crate::pattern`]), decide each scanned
    /// key with the L1 matcher, and replace the matches by tombstones. Returns the number of
    /// keys invalidated. In a cluster, every bucket counts the glob and every primary is
    /// scanned once for the keys of all buckets.
    pub async fn invalidate_glob(&self, category: &str, glob: &Glob) -> Result<u64, L2Error> {
        let buckets = self.buckets();
        let counted = (0..buckets).map(|b| self.count_glob(category, b));
        let generations = futures::future::try_join_all(counted).await?;
        // The prefix of each bucket's live keys, at the generation the glob counted itself in.
        let live: Vec<String> = generations
            .iter()
            .enumerate()
            .map(|(b, g)| format!("{}:{g}:", self.prefix(category, b)))
            .collect();
        let cluster = self.cluster.load(Ordering::Relaxed);
        let match_pattern = if cluster {
            // Every bucket's tag starts with `ns:category:` (see `topology::bucket_tag`).
            let tags = redis_escape(&format!("{{{}:{category}:", self.ns));
            format!("{tags}*{}", glob.redis_match())
        } else {
            format!("{}{}", redis_escape(&live[0]), glob.redis_match())
        };
        // In a cluster, every primary is scanned; one server otherwise.
        let nodes: Vec<Option<(String, u16)>> = if cluster {
            self.call(|mut c| async move { c.primaries().await })
                .await?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        let mut total = 0u64;
        for node in nodes {
            total += self.scan_node(node, &match_pattern, &live, glob).await?;
        }
        if self.wait_for() > 0 {
            // Even a glob that matched nothing is acknowledged only once replicas have this
            // primary's state: a primary without replicas (one about to be superseded in a
            // failover) may simply lack keys the surviving one has.
            let waits = (0..buckets).map(|b| {
                let mut pipe = redis::pipe();
                pipe.cmd("INCRBY")
                    .arg(self.gen_key(category, b))
                    .arg(0)
                    .ignore();
                self.with_wait(pipe)
            });
            futures::future::try_join_all(waits).await?;
        }
        Ok(total)
    }

    /// Counts a glob in one bucket's glob count; returns the bucket's generation.
    async fn count_glob(&self, category: &str, bucket: usize) -> Result<i64, L2Error> {
        let (gk, globs) = (
            self.gen_key(category, bucket),
            self.globs_key(category, bucket),
        );
        // `INCRBY gen 0`, not `GET`: a write, so a replica (a demoted primary mid-failover)
        // refuses it instead of acknowledging a glob it found nothing for. `INCR globs`
        // before the scan: a load that read the category before it cannot fill any key
        // afterwards (see the `fill` script), including one absent from the scan.
        let (generation, _): (i64, i64) = self
            .call(|mut c| async move {
                redis::pipe()
                    .cmd("INCRBY")
                    .arg(gk)
                    .arg(0)
                    .cmd("INCR")
                    .arg(globs)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(generation)
    }

    /// One node's part of [`L2::invalidate_glob`]: keys under one of the `live` prefixes
    /// (one per bucket) whose rest the glob matches become tombstones, one pipeline per
    /// bucket (a cluster pipeline stays in one slot).
    async fn scan_node(
        &self,
        node: Option<(String, u16)>,
        match_pattern: &str,
        live: &[String],
        glob: &Glob,
    ) -> Result<u64, L2Error> {
        let mut cursor: u64 = 0;
        let mut total = 0u64;
        // Bounded: at most this many SCAN round trips per invalidation.
        for _ in 0..100_000 {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(match_pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH);
            let node = node.clone();
            let reply: redis::Value = self
                .call(|mut c| async move { c.on_node(node.as_ref(), &scan).await })
                .await?;
            let (next, scanned): (u64, Vec<Vec<u8>>) = redis::from_redis_value(&reply)?;
            let mut per_bucket: Vec<Vec<Vec<u8>>> = vec![Vec::new(); live.len()];
            for k in scanned {
                if let Some(b) = live_match(&k, live, glob) {
                    per_bucket[b].push(k);
                }
            }
            for keys in per_bucket.into_iter().filter(|k| !k.is_empty()) {
                total += keys.len() as u64;
                self.tombstone_all(&keys).await?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// Replaces `keys` (of one bucket) by one fresh tombstone, in one pipeline.
    async fn tombstone_all(&self, keys: &[Vec<u8>]) -> Result<(), L2Error> {
        let ms = TOMBSTONE_TTL.as_millis() as u64;
        let mut pipe = redis::pipe();
        let tomb = new_tombstone();
        for k in keys {
            pipe.cmd("SET").arg(k).arg(&tomb).arg("PX").arg(ms).ignore();
        }
        if self.wait_for() > 0 {
            self.with_wait(pipe).await?;
        } else {
            self.call(|mut c| async move { pipe.query_async::<()>(&mut c).await })
                .await?;
        }
        Ok(())
    }
}

/// The bucket of a scanned key that is live (under one of the `live` prefixes) and whose
/// key the glob matches. Keys that are not UTF-8 after the prefix were not written by us.
fn live_match(scanned: &[u8], live: &[String], glob: &Glob) -> Option<usize> {
    live.iter().enumerate().find_map(|(b, prefix)| {
        let rest = scanned.strip_prefix(prefix.as_bytes())?;
        let key = std::str::from_utf8(rest).ok()?;
        glob.is_match(key).then_some(b)
    })
}
