//! Tags in L2. A tagged value is stored as [`TAG_TAGGED`], a two-byte (big endian) header
//! length, the header `,a,b,` ([`crate::tag::header`]) and the value; the write script also
//! adds the key to one set per tag, `{prefix}:tag:{tag}` (next to the category's data keys,
//! so in the same Cluster slot: a set per bucket there), whose TTL it raises to the value's
//! when lower.
//!
//! A tag invalidation is one script per category (per bucket in a cluster): it reads the tag's set, replaces every
//! listed key of the current generation whose value still carries the tag by a tombstone
//! (a key rewritten since without the tag keeps its value), and deletes the set. The sets
//! may list keys that expired or were rewritten; they are checked, and the sets expire.

use super::{new_tombstone, L2Error, L2, TAG_TAGGED, TOMBSTONE_TTL};

/// The stored form of a value carrying `tags` (checked, at most [`crate::tag::MAX_TAGS`]
/// of at most [`crate::tag::MAX_TAG_BYTES`] bytes, so the header fits in two bytes).
pub(super) fn encode(value: &[u8], tags: &[String]) -> Vec<u8> {
    let header = crate::tag::header(tags);
    let len = u16::try_from(header.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(3 + header.len() + value.len());
    out.push(TAG_TAGGED);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&header.as_bytes()[..usize::from(len)]);
    out.extend_from_slice(value);
    out
}

/// The tags and the value of a stored tagged value (after its [`TAG_TAGGED`] byte); `None`
/// if it is malformed (read as a miss, like anything this crate did not write).
pub(super) fn decode(rest: &[u8]) -> Option<(Vec<String>, &[u8])> {
    let (len, rest) = rest.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return None;
    }
    let (header, value) = rest.split_at(len);
    let tags = crate::tag::parse_header(std::str::from_utf8(header).ok()?)?;
    Some((tags, value))
}

impl L2 {
    /// Authoritative write of a value carrying `tags` (see [`L2::set`]).
    pub async fn set_tagged(
        &self,
        category: &str,
        key: &str,
        value: &[u8],
        tags: &[String],
        ttl: std::time::Duration,
        not_after: Option<std::time::SystemTime>,
    ) -> Result<(), L2Error> {
        let src = Some(self.scripts.set_tagged_src.as_str());
        let ticket = self.fence.ticket();
        let written = self
            .write_payload(
                &self.scripts.set_tagged,
                src,
                category,
                key,
                encode(value, tags),
                ttl,
                None,
                not_after,
            )
            .await
            .map(|_| ());
        self.confirmed(ticket, written).await
    }

    /// Replaces every value of `category` carrying `tag` by a tombstone and deletes the
    /// tag's set. Returns the number of keys invalidated.
    /// In a cluster the tag's sets are per bucket (next to the bucket's keys): the script runs
    /// in every bucket, concurrently, and the invalidation is done once all are.
    pub(super) async fn invalidate_tag(&self, category: &str, tag: &str) -> Result<u64, L2Error> {
        let buckets = (0..self.buckets()).map(|b| self.invalidate_tag_in(category, b, tag));
        Ok(futures::future::try_join_all(buckets).await?.iter().sum())
    }

    /// [`Self::invalidate_tag`] in one bucket.
    async fn invalidate_tag_in(
        &self,
        category: &str,
        bucket: usize,
        tag: &str,
    ) -> Result<u64, L2Error> {
        let (gk, prefix) = (
            self.gen_key(category, bucket),
            self.prefix(category, bucket),
        );
        let ms = TOMBSTONE_TTL.as_millis() as u64;
        let tomb = new_tombstone();
        if self.wait_for() > 0 {
            let mut pipe = redis::pipe();
            pipe.cmd("EVAL")
                .arg(&self.scripts.inv_tag_src)
                .arg(1)
                .arg(gk)
                .arg(prefix)
                .arg(tag)
                .arg(&tomb)
                .arg(ms);
            let replies = self.with_wait(pipe).await?;
            return match replies.first() {
                Some(v) => Ok(redis::from_redis_value(v)?),
                None => Err(L2Error::Protocol("empty pipeline reply".into())),
            };
        }
        let (script, tomb) = (&self.scripts.inv_tag, &tomb[..]);
        self.call(|mut c| async move {
            script
                .key(gk)
                .arg(prefix)
                .arg(tag)
                .arg(tomb)
                .arg(ms)
                .invoke_async(&mut c)
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_values_round_trip_and_garbage_is_refused() {
        let tags = vec!["a".to_string(), "user:1".to_string()];
        let stored = encode(b"value", &tags);
        assert_eq!(stored[0], TAG_TAGGED);
        let (t, v) = decode(&stored[1..]).unwrap();
        assert_eq!((t, v), (tags, &b"value"[..]));
        let empty = encode(b"", &["x".to_string()]);
        let (t, v) = decode(&empty[1..]).unwrap();
        assert_eq!((t, v), (vec!["x".to_string()], &b""[..]));
        assert!(decode(&[]).is_none());
        assert!(decode(&[0]).is_none());
        assert!(decode(&[0, 9, b',']).is_none());
        assert!(decode(&[0, 3, b'a', b'b', b'c']).is_none());
    }
}
