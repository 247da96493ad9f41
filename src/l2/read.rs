//! Reads: one Lua script looks up the category generation and the data key together and
//! returns the generation, the tagged value and its remaining TTL; tombstones and anything
//! this crate did not write read as a miss. [`L2::get_at`] reads at a generation the caller
//! already knows (`GET` of the generation, `PTTL` + `GET` of the key, pipelined, no Lua),
//! decoded the same way.

use std::time::Duration;

use bytes::Bytes;

use super::{
    L2Error, L2Value, L2, TAG_NEGATIVE, TAG_TAGGED, TAG_TOMBSTONE, TAG_VALUE, TOMBSTONE_TOKEN_BYTES,
};

impl L2 {
    /// Reads a key. Tombstones read as `None`.
    /// Sentinel: only while a primary proof holds ([`L2Error::Unproven`] otherwise).
    pub async fn get(&self, category: &str, key: &str) -> Result<L2Value, L2Error> {
        self.fence.readable()?;
        let (gk, prefix) = self.key_names(category, key);
        let script = &self.scripts.get;
        let reply: Vec<redis::Value> = self
            .call(|mut c| async move {
                script
                    .key(gk)
                    .arg(prefix)
                    .arg(key)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        parse_get(reply)
    }
}

impl L2 {
    /// Reads a key at a category generation the caller knows (see the cache's known
    /// generations): `GET` of the generation, then `PTTL` and `GET` of the data key, in one
    /// pipeline (outside a Redis Cluster, together with the other fast reads queued at the
    /// time: see `batch`). `None` when the generation moved (the caller reads with
    /// [`L2::get`], which learns the new one) or the replies do not fit together (a value
    /// appeared after `PTTL` said the key was absent).
    ///
    /// The generation is read first and compared: a bump can be in Redis long before its
    /// invalidation reaches this node (the bumping node still works through the categories
    /// of an invalidation of all of them, or died in between), and a value written since at
    /// the new generation, acknowledged and announced, must not be answered by its
    /// predecessor at the old one. Once bumped, the old generation's keys never change again
    /// (every write resolves the generation in its script), so data read after a matching
    /// `GET` of the generation is what a read just before the bump would have returned.
    ///
    /// `PTTL` before `GET`: a value that expires between the two reads as a miss, and a
    /// value written between them is announced by its writer's invalidation (which removes
    /// what this read fills into L1).
    /// Sentinel: only while a primary proof holds ([`L2Error::Unproven`] otherwise).
    pub async fn get_at(
        self: &std::sync::Arc<Self>,
        category: &str,
        key: &str,
        generation: i64,
    ) -> Result<Option<L2Value>, L2Error> {
        self.fence.readable()?;
        let (gk, prefix) = self.key_names(category, key);
        let k = format!("{prefix}:{generation}:{key}");
        let [current, pttl, value] = if self.cluster.load(std::sync::atomic::Ordering::Relaxed) {
            // The batch's keys would span slots: this read's pipeline on its own.
            let mut pipe = redis::pipe();
            super::batch::fast_read_commands(&mut pipe, &gk, &k);
            let reply: Vec<redis::Value> = self
                .call(|mut c| async move { pipe.query_async(&mut c).await })
                .await?;
            <[redis::Value; 3]>::try_from(reply)
                .map_err(|r| L2Error::Protocol(format!("{} replies to 3 commands", r.len())))?
        } else {
            // With the other fast reads queued now, in one pipeline (see `batch`).
            self.batched_read(gk, k).await?
        };
        let current = match current {
            // The scripts read an absent generation as 0.
            redis::Value::Nil => 0,
            v => parse_generation(&v)?,
        };
        if current != generation {
            return Ok(None);
        }
        if matches!(value, redis::Value::Nil) {
            return parse_get(vec![redis::Value::Int(generation)]).map(Some);
        }
        if matches!(pttl, redis::Value::Int(-2)) {
            return Ok(None);
        }
        parse_get(vec![redis::Value::Int(generation), value, pttl]).map(Some)
    }
}

/// A generation or TTL reply: an integer, or the decimal text of one.
fn parse_generation(v: &redis::Value) -> Result<i64, L2Error> {
    match v {
        redis::Value::Int(i) => Ok(*i),
        redis::Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| L2Error::Protocol("non-numeric generation".into())),
        other => Err(L2Error::Protocol(format!("{other:?}"))),
    }
}

fn parse_get(reply: Vec<redis::Value>) -> Result<L2Value, L2Error> {
    let int = parse_generation;
    let generation = match reply.first() {
        Some(v) => int(v)?,
        None => return Err(L2Error::Protocol("empty reply".into())),
    };
    let mut tags = Vec::new();
    let mut tombstone = None;
    let (value, negative, ttl) = match (reply.get(1), reply.get(2)) {
        (Some(redis::Value::BulkString(b)), Some(t)) => {
            let pttl = int(t)?;
            let ttl = (pttl > 0).then(|| Duration::from_millis(pttl as u64));
            match b.split_first() {
                Some((&TAG_VALUE, rest)) => (Some(Bytes::copy_from_slice(rest)), false, ttl),
                Some((&TAG_NEGATIVE, [])) => (None, true, ttl),
                Some((&TAG_TAGGED, rest)) => match super::tags::decode(rest) {
                    Some((t, v)) => {
                        tags = t;
                        (Some(Bytes::copy_from_slice(v)), false, ttl)
                    }
                    None => (None, false, None),
                },
                Some((&TAG_TOMBSTONE, token)) if token.len() == TOMBSTONE_TOKEN_BYTES => {
                    tombstone = Some(Bytes::copy_from_slice(b));
                    (None, false, None)
                }
                // Tombstones and anything we did not write read as a miss.
                _ => (None, false, None),
            }
        }
        _ => (None, false, None),
    };
    Ok(L2Value {
        value,
        negative,
        ttl,
        generation,
        tags,
        tombstone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2::TAG_TOMBSTONE;

    #[test]
    fn parse_get_handles_values_tombstones_and_garbage() {
        use redis::Value::*;
        let v = parse_get(vec![
            BulkString(b"3".to_vec()),
            BulkString(vec![TAG_VALUE, b'x']),
            Int(5000),
        ])
        .unwrap();
        assert_eq!(v.generation, 3);
        assert_eq!(v.value.as_deref(), Some(&b"x"[..]));
        assert_eq!(v.ttl, Some(Duration::from_millis(5000)));
        let t = parse_get(vec![Int(0), BulkString(vec![TAG_TOMBSTONE]), Int(10)]).unwrap();
        assert!(t.value.is_none());
        assert!(
            t.tombstone.is_none(),
            "a token-less tombstone is never replaced"
        );
        let tokened = crate::l2::new_tombstone();
        let tt = parse_get(vec![Int(0), BulkString(tokened.clone()), Int(10)]).unwrap();
        assert!(tt.value.is_none() && !tt.negative);
        assert_eq!(tt.tombstone.as_deref(), Some(&tokened[..]));
        assert_ne!(
            crate::l2::new_tombstone(),
            tokened,
            "each tombstone is its own"
        );
        let e = parse_get(vec![Int(0), BulkString(vec![]), Int(10)]).unwrap();
        assert!(e.value.is_none());
        assert!(!t.negative && !v.negative);
        let n = parse_get(vec![Int(0), BulkString(vec![TAG_NEGATIVE]), Int(700)]).unwrap();
        assert!(n.negative && n.value.is_none());
        assert_eq!(n.ttl, Some(Duration::from_millis(700)));
        // A real value that happens to be empty is a value, never a "not found".
        let empty = parse_get(vec![Int(0), BulkString(vec![TAG_VALUE]), Int(9)]).unwrap();
        assert_eq!(empty.value.as_deref(), Some(&b""[..]));
        assert!(!empty.negative);
        assert!(parse_get(vec![]).is_err());
        assert!(parse_get(vec![Nil]).is_err());
    }
}
