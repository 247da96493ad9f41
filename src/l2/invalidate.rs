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
            Pattern::All => self.bump_generation(category).await.map(|_| ()),
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
    /// keys invalidated.
    pub async fn invalidate_glob(&self, category: &str, glob: &Glob) -> Result<u64, L2Error> {
        let (gk, globs) = (self.gen_key(category), self.globs_key(category));
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
        let key_prefix = format!("{}:{generation}:", self.prefix(category));
        let match_pattern = format!("{}{}", redis_escape(&key_prefix), glob.redis_match());
        // In a cluster, every primary is scanned (a category's keys share one slot, but a
        // slot being migrated is on two nodes); one server otherwise.
        let nodes: Vec<Option<(String, u16)>> = if self.cluster.load(Ordering::Relaxed) {
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
            total += self
                .scan_node(node, &match_pattern, &key_prefix, glob)
                .await?;
        }
        if self.wait_for() > 0 {
            // Even a glob that matched nothing is acknowledged only once replicas have this
            // primary's state: a primary without replicas (one about to be superseded in a
            // failover) may simply lack keys the surviving one has.
            let mut pipe = redis::pipe();
            pipe.cmd("INCRBY")
                .arg(self.gen_key(category))
                .arg(0)
                .ignore();
            self.with_wait(pipe).await?;
        }
        Ok(total)
    }

    /// One node's part of [`L2::invalidate_glob`].
    async fn scan_node(
        &self,
        node: Option<(String, u16)>,
        match_pattern: &str,
        key_prefix: &str,
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
            // Keys that are not UTF-8 after our prefix were not written by us.
            let keys: Vec<Vec<u8>> = scanned
                .into_iter()
                .filter(|k| {
                    k.strip_prefix(key_prefix.as_bytes())
                        .and_then(|rest| std::str::from_utf8(rest).ok())
                        .is_some_and(|key| glob.is_match(key))
                })
                .collect();
            if !keys.is_empty() {
                total += keys.len() as u64;
                let ms = TOMBSTONE_TTL.as_millis() as u64;
                let mut pipe = redis::pipe();
                let tomb = new_tombstone();
                for k in &keys {
                    pipe.cmd("SET").arg(k).arg(&tomb).arg("PX").arg(ms).ignore();
                }
                if self.wait_for() > 0 {
                    self.with_wait(pipe).await?;
                } else {
                    self.call(|mut c| async move { pipe.query_async::<()>(&mut c).await })
                        .await?;
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(total)
    }
}
