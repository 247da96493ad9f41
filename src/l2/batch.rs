//! Fast reads of concurrent misses, sent to Redis as one pipeline (issue #25, item 1).
//!
//! Why: a fast read ([`L2::get_at`]) is three small commands. Sent on its own, every miss
//! costs a write to Redis and a read of its reply, in the node and in Redis, and on
//! loopback the kernel's work for a small write (which delivers it to the receiver too) is
//! most of a miss's cost. The multiplexed connection only joins requests that are queued
//! when its task runs, and tokio runs a task just woken next, so misses went out one by
//! one.
//!
//! How: the first read of a batch queues itself and spawns the task that sends the batch;
//! later reads only queue themselves. The task yields once first, so the tasks ready to
//! run (HTTP connections whose requests arrived in the same turn of the event loop) add
//! their reads, then takes the whole queue and sends one pipeline. Each read's three
//! commands stay contiguous and in order, so it sees what its own pipeline would have seen
//! (Redis never promised that another client's commands do not run between a pipeline's).
//! A server error in one read's replies fails that read only.
//!
//! The batch is one call: it goes through the data breaker and the call timeout once, so a
//! reader waits at most one call timeout (plus the yield) for its answer. Single Redis and
//! Sentinel only (in a Redis Cluster the keys of a batch span slots).

use std::sync::{Arc, Mutex, PoisonError};

use redis::aio::ConnectionLike;
use tokio::sync::oneshot;

use super::{L2Error, L2};

/// Most reads in one pipeline (3 commands each); a larger batch goes out as several
/// pipelines at once, so one reply never grows without bound.
const MAX_READS: usize = 256;

/// The three replies of one fast read: the category generation, the key's `PTTL`, its value.
pub(super) type FastReplies = [redis::Value; 3];

/// Fast reads waiting for the batch being gathered.
#[derive(Default)]
pub(super) struct ReadBatch {
    queue: Mutex<Vec<Queued>>,
}

struct Queued {
    gen_key: String,
    data_key: String,
    reply: oneshot::Sender<Result<FastReplies, L2Error>>,
}

impl L2 {
    /// `GET gen_key`, `PTTL data_key`, `GET data_key`, sent with the other fast reads queued
    /// now (see the module docs).
    pub(super) async fn batched_read(
        self: &Arc<Self>,
        gen_key: String,
        data_key: String,
    ) -> Result<FastReplies, L2Error> {
        let (reply, answer) = oneshot::channel();
        let first = {
            let mut queue = self
                .reads
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queue.push(Queued {
                gen_key,
                data_key,
                reply,
            });
            queue.len() == 1
        };
        if first {
            let l2 = Arc::clone(self);
            tokio::spawn(async move {
                // Let the tasks ready to run queue their reads into this batch.
                tokio::task::yield_now().await;
                l2.send_read_batch().await;
            });
        }
        // No timer of its own: the batch answers every read within one call timeout (its
        // Redis call is bounded by it), or drops the read's sender (an error) if it dies.
        match answer.await {
            Ok(replies) => replies,
            Err(_) => Err(L2Error::Protocol("the read batch was dropped".into())),
        }
    }

    /// Takes the queued reads and sends them, [`MAX_READS`] per pipeline (the pipelines
    /// concurrently); answers each.
    async fn send_read_batch(&self) {
        let mut batch = std::mem::take(
            &mut *self
                .reads
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut pipelines = Vec::with_capacity(batch.len().div_ceil(MAX_READS));
        while batch.len() > MAX_READS {
            let rest = batch.split_off(MAX_READS);
            pipelines.push(self.send_reads(std::mem::replace(&mut batch, rest)));
        }
        if !batch.is_empty() {
            pipelines.push(self.send_reads(batch));
        }
        futures::future::join_all(pipelines).await;
    }

    /// Sends `reads` as one pipeline; answers each.
    async fn send_reads(&self, reads: Vec<Queued>) {
        let mut pipe = redis::Pipeline::with_capacity(3 * reads.len());
        for q in &reads {
            fast_read_commands(&mut pipe, &q.gen_key, &q.data_key);
        }
        let n = pipe.len();
        let replies = self
            .call(|mut c| async move { c.req_packed_commands(&pipe, 0, n).await })
            .await;
        match replies {
            Ok(replies) if replies.len() == n => {
                let mut replies = replies.into_iter();
                for q in reads {
                    let mut next = || replies.next().unwrap_or(redis::Value::Nil);
                    let _ = q.reply.send(one_read([next(), next(), next()]));
                }
            }
            Ok(replies) => {
                let e = format!("{} replies to {n} pipelined commands", replies.len());
                for q in reads {
                    let _ = q.reply.send(Err(L2Error::Protocol(e.clone())));
                }
            }
            Err(e) => {
                for q in reads {
                    let _ = q.reply.send(Err(shared_error(&e)));
                }
            }
        }
    }
}

/// Appends one fast read's commands to `pipe`: the generation first (see [`L2::get_at`]).
pub(super) fn fast_read_commands(pipe: &mut redis::Pipeline, gen_key: &str, data_key: &str) {
    pipe.cmd("GET")
        .arg(gen_key)
        .cmd("PTTL")
        .arg(data_key)
        .cmd("GET")
        .arg(data_key);
}

/// One read's replies, or the server error among them.
fn one_read(replies: FastReplies) -> Result<FastReplies, L2Error> {
    let [generation, pttl, value] = replies;
    Ok([
        generation.extract_error()?,
        pttl.extract_error()?,
        value.extract_error()?,
    ])
}

/// The batch's failure, for each of its readers (the error itself is not `Clone`).
fn shared_error(e: &L2Error) -> L2Error {
    match e {
        L2Error::NotConnected => L2Error::NotConnected,
        L2Error::CircuitOpen => L2Error::CircuitOpen,
        L2Error::Timeout(d) => L2Error::Timeout(*d),
        L2Error::Unproven => L2Error::Unproven,
        L2Error::Redis(r) => L2Error::Redis(redis::RedisError::from((
            r.kind(),
            "batched read failed",
            r.to_string(),
        ))),
        other => L2Error::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(resp: &[u8]) -> redis::Value {
        let v = redis::parse_redis_value(resp).expect("a RESP error reply");
        assert!(matches!(v, redis::Value::ServerError(_)), "{v:?}");
        v
    }

    #[test]
    fn a_server_error_fails_its_own_read_only() {
        let ok = one_read([
            redis::Value::Int(3),
            redis::Value::Int(-2),
            redis::Value::Nil,
        ]);
        assert!(ok.is_ok());
        let wrong = one_read([
            redis::Value::Int(3),
            redis::Value::Int(1000),
            server_error(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        ]);
        assert!(
            matches!(wrong, Err(L2Error::Redis(ref e)) if e.to_string().contains("WRONGTYPE")),
            "{wrong:?}"
        );
    }

    #[test]
    fn a_batch_failure_reaches_every_reader_with_its_kind() {
        let t = shared_error(&L2Error::Timeout(std::time::Duration::from_millis(5)));
        assert!(matches!(t, L2Error::Timeout(d) if d.as_millis() == 5));
        assert!(matches!(
            shared_error(&L2Error::CircuitOpen),
            L2Error::CircuitOpen
        ));
        let io = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let shared = shared_error(&L2Error::Redis(io));
        assert!(
            matches!(shared, L2Error::Redis(ref e) if e.kind() == redis::ErrorKind::IoError),
            "{shared:?}"
        );
    }
}
