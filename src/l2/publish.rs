//! The control path, and one round trip per write. The bus sends its invalidations,
//! heartbeats, pings and acks through [`L2::send_batch`], guarded by the control breaker (so
//! slow data calls never hold back an invalidation); the command, `PUBLISH` or `SPUBLISH`, is
//! the topology's choice (in a Redis Cluster every bus channel shares one hash tag, so a
//! pipeline goes to one shard; see [`super::topology`]).
//!
//! A value write and the invalidation that announces it reach
//! Redis as one script (`SET … PX`, then `PUBLISH` of the sealed bus message), sent by the
//! bus's publisher in its ordered pipeline together with the node's other messages, so the
//! write, its sequence number and every other message of the node keep one order on one
//! connection. The writer prepares the write ([`L2::bundle_set`]), the bus numbers, seals and
//! sends it ([`L2::send_batch`]), and the writer settles the script's reply
//! ([`L2::settle_bundled`]: a late write, Sentinel's proof).
//!
//! Not bundled (two round trips, the write then the `PUBLISH`): Redis Cluster (the bus
//! channel and the data key sit in different slots), `l2_min_replicas > 0` (`WAIT` follows
//! the write), tagged writes, and a write made while no bus runs.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use redis::aio::ConnectionLike;

use super::{fence, not_late, tagged_value, L2Error, L2};

/// A value write prepared for [`L2::send_batch`] (the script's keys and arguments).
pub struct BundledSet {
    gen_key: String,
    prefix: String,
    key: String,
    payload: Vec<u8>,
    ms: u64,
    deadline_ms: u64,
}

/// What the writer keeps to settle a bundled write's reply ([`L2::settle_bundled`]).
pub struct BundleCheck {
    ticket: fence::Ticket,
    by_caller: bool,
}

/// One message of a pipelined batch: a `PUBLISH`, or a value write with the `PUBLISH` of
/// its invalidation.
pub struct Outbound<'a> {
    /// Full channel name.
    pub channel: &'a str,
    /// The (sealed) bus message.
    pub payload: &'a [u8],
    /// The value write to run with it, if any.
    pub write: Option<&'a BundledSet>,
}

/// What Redis did with one [`Outbound`].
#[derive(Debug)]
pub struct Delivered {
    /// How many subscribers received the message. One outcome for the batch: if Redis did
    /// not take every message, none counts as sent (so no change is acknowledged on an
    /// unsent invalidation).
    pub receivers: Result<u64, L2Error>,
    /// A bundled write's reply (`1` written, `-1` refused as late); `None` without a write.
    pub written: Option<Result<i64, L2Error>>,
}

impl L2 {
    /// Prepares an authoritative write of `value` for the bus to send with its invalidation,
    /// or `None` where writes are not bundled (see the module docs). The deadline is set now,
    /// as for [`L2::set`]: a write still queued when its writer gave up never lands.
    pub fn bundle_set(
        &self,
        category: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
        not_after: Option<SystemTime>,
    ) -> Option<(BundledSet, BundleCheck)> {
        if self.cluster.load(Ordering::Relaxed) || self.wait_for() > 0 || !self.connected() {
            return None;
        }
        let payload = tagged_value(value);
        let (deadline_ms, by_caller) = self.deadline_ms(not_after);
        let ticket = self.fence.ticket();
        let (gen_key, prefix) = self.key_names(category, key);
        let write = BundledSet {
            gen_key,
            prefix,
            key: key.to_string(),
            payload,
            ms: ttl.as_millis().max(1) as u64,
            deadline_ms,
        };
        Some((write, BundleCheck { ticket, by_caller }))
    }

    /// The outcome of a bundled write from the script's reply: [`L2Error::Late`] past its
    /// deadline; with Sentinel, once a primary proof sent after the write confirmed the
    /// server (as for [`L2::set`]).
    pub async fn settle_bundled(
        &self,
        check: BundleCheck,
        reply: Result<i64, L2Error>,
    ) -> Result<(), L2Error> {
        let written = reply.and_then(|r| not_late(r, check.by_caller)).map(|_| ());
        self.confirmed(check.ticket, written).await
    }

    /// Sends `items` in order as one pipeline on the control path; one [`Delivered`] per
    /// item. A write Redis could not run because it lost its script cache (a restart, a
    /// failover: `NOSCRIPT`) neither wrote nor published: the script is loaded and those
    /// items are sent again, after the rest (receivers see a gap and flush once).
    pub async fn send_batch(&self, items: &[Outbound<'_>]) -> Result<Vec<Delivered>, L2Error> {
        let mut replies = self.pipeline(items.iter()).await?;
        let lost: Vec<usize> = (0..replies.len())
            .filter(|&i| is_noscript(&replies[i]))
            .collect();
        if !lost.is_empty() {
            tracing::info!(n = lost.len(), "redis lost the write script: loading it");
            self.load_set_publish().await?;
            let again = self.pipeline(lost.iter().map(|&i| &items[i])).await?;
            for (i, reply) in lost.into_iter().zip(again) {
                replies[i] = reply;
            }
        }
        Ok(deliveries(items, replies))
    }

    /// One pipelined round trip of `items`; the raw reply of each (errors included).
    async fn pipeline<'a>(
        &self,
        items: impl Iterator<Item = &'a Outbound<'a>>,
    ) -> Result<Vec<redis::Value>, L2Error> {
        let mut pipe = redis::pipe();
        let cluster = self.cluster.load(Ordering::Relaxed);
        let publish = if cluster { "SPUBLISH" } else { "PUBLISH" };
        for o in items {
            match o.write {
                // `bundle_set` refuses a cluster; a write never goes out as a bare PUBLISH.
                Some(_) if cluster => {
                    return Err(L2Error::Config("bundled write in a cluster".into()))
                }
                Some(w) => {
                    pipe.cmd("EVALSHA")
                        .arg(self.scripts.set_publish.get_hash())
                        .arg(1)
                        .arg(&w.gen_key)
                        .arg(&w.prefix)
                        .arg(&w.key)
                        .arg(&w.payload)
                        .arg(w.ms)
                        .arg(w.deadline_ms)
                        .arg(o.channel)
                        .arg(o.payload);
                }
                None => {
                    pipe.cmd(publish).arg(o.channel).arg(o.payload);
                }
            }
        }
        let n = pipe.len();
        let replies = self
            .call_with(&self.control, |mut c| async move {
                c.req_packed_commands(&pipe, 0, n).await
            })
            .await?;
        if replies.len() != n {
            return Err(L2Error::Protocol(format!(
                "{} replies to {n} pipelined commands",
                replies.len()
            )));
        }
        Ok(replies)
    }

    async fn load_set_publish(&self) -> Result<(), L2Error> {
        let src = self.scripts.set_publish_src;
        let _: String = self
            .call_with(&self.control, |mut c| async move {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(src)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }
}

fn is_noscript(v: &redis::Value) -> bool {
    matches!(v, redis::Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// Each item's outcome from its reply: a write's own reply, and the receiver counts, all of
/// them or (if any message failed) none.
fn deliveries(items: &[Outbound<'_>], replies: Vec<redis::Value>) -> Vec<Delivered> {
    let mut first_error: Option<String> = None;
    let mut parsed = Vec::with_capacity(items.len());
    for (o, reply) in items.iter().zip(replies) {
        let (receivers, written) = parse(o.write.is_some(), reply);
        if let (Err(e), None) = (&receivers, &first_error) {
            first_error = Some(e.to_string());
        }
        parsed.push((receivers, written));
    }
    parsed
        .into_iter()
        .map(|(receivers, written)| Delivered {
            receivers: match &first_error {
                Some(e) => Err(L2Error::Batch(e.clone())),
                None => receivers,
            },
            written,
        })
        .collect()
}

/// One reply: `PUBLISH`'s count, or the script's `{written, receivers}`.
fn parse(write: bool, reply: redis::Value) -> (Result<u64, L2Error>, Option<Result<i64, L2Error>>) {
    use redis::Value;
    let count = |n: i64| n.max(0) as u64;
    match (write, reply) {
        (false, Value::Int(n)) => (Ok(count(n)), None),
        (true, Value::Array(v)) => match v.as_slice() {
            [Value::Int(w), Value::Int(n)] => (Ok(count(*n)), Some(Ok(*w))),
            other => {
                let e = format!("write script replied {other:?}");
                (
                    Err(L2Error::Protocol(e.clone())),
                    Some(Err(L2Error::Protocol(e))),
                )
            }
        },
        (write, Value::ServerError(e)) => {
            let e: redis::RedisError = e.into();
            let msg = e.to_string();
            let written = write.then_some(Err(L2Error::Redis(e)));
            (Err(L2Error::Batch(msg)), written)
        }
        (write, other) => {
            let e = format!("unexpected reply {other:?}");
            (
                Err(L2Error::Protocol(e.clone())),
                write.then_some(Err(L2Error::Protocol(e))),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn item(write: Option<&BundledSet>) -> Outbound<'_> {
        Outbound {
            channel: "c",
            payload: b"m",
            write,
        }
    }

    fn server_error(resp: &[u8]) -> Value {
        let v = redis::parse_redis_value(resp).expect("a RESP error reply");
        assert!(matches!(v, Value::ServerError(_)), "{v:?}");
        v
    }

    fn a_write() -> BundledSet {
        BundledSet {
            gen_key: "g".into(),
            prefix: "p".into(),
            key: "k".into(),
            payload: vec![crate::l2::TAG_VALUE],
            ms: 1,
            deadline_ms: 1,
        }
    }

    #[test]
    fn each_write_keeps_its_own_reply_and_one_failed_message_fails_every_count() {
        let w = a_write();
        let items = [item(None), item(Some(&w)), item(Some(&w))];
        let ok = deliveries(
            &items,
            vec![
                Value::Int(2),
                Value::Array(vec![Value::Int(1), Value::Int(3)]),
                Value::Array(vec![Value::Int(-1), Value::Int(3)]),
            ],
        );
        assert_eq!(ok[0].receivers.as_ref().ok(), Some(&2));
        assert!(ok[0].written.is_none());
        assert_eq!(
            ok[1].written.as_ref().and_then(|w| w.as_ref().ok()),
            Some(&1)
        );
        assert_eq!(
            ok[2].written.as_ref().and_then(|w| w.as_ref().ok()),
            Some(&-1)
        );
        assert_eq!(ok[2].receivers.as_ref().ok(), Some(&3));

        let refused = server_error(b"-ERR nope\r\n");
        let bad = deliveries(
            &items,
            vec![
                Value::Int(2),
                Value::Array(vec![Value::Int(1), Value::Int(3)]),
                refused,
            ],
        );
        assert!(bad.iter().all(|d| d.receivers.is_err()), "{bad:?}");
        assert_eq!(
            bad[1].written.as_ref().and_then(|w| w.as_ref().ok()),
            Some(&1),
            "the write that ran is reported as written"
        );
        assert!(matches!(bad[2].written, Some(Err(_))));
        let garbage = deliveries(&items[..1], vec![Value::Nil]);
        assert!(garbage[0].receivers.is_err());
    }

    #[test]
    fn noscript_is_recognised() {
        assert!(is_noscript(&server_error(
            b"-NOSCRIPT No matching script.\r\n"
        )));
        assert!(!is_noscript(&server_error(b"-ERR nope\r\n")));
        assert!(!is_noscript(&Value::Int(1)));
    }
}
