//! Cluster stats on demand: instead of every node pushing its stats to every other node
//! (traffic O(N) per node, all the time), the node asked for `/v1/cluster/stats` asks the
//! live members in parallel over QUIC bidi streams and waits at most a deadline. What did not
//! answer in time is reported as missing.

use std::{
    collections::BTreeMap, net::SocketAddr, sync::atomic::Ordering, sync::Arc, time::Duration,
};

use futures::{stream::FuturesUnordered, StreamExt};
use tokio::time::timeout;

use super::{
    claim::{claim_allowed, peer_certificate},
    frame::{decode_frame, encode_frame, Frame, MAX_FRAME},
    transport, Inner,
};

/// Largest stats answer accepted.
const MAX_ANSWER: usize = MAX_FRAME;
/// Longest a single ask (connect, request, answer) may run, deadline or not.
const ASK_LIMIT: Duration = Duration::from_secs(3);

/// What came back from a gather.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gathered<T = Vec<u8>> {
    /// Node id → its stats (the bytes it answered, or what the caller decoded them into).
    pub stats: BTreeMap<String, T>,
    /// Asked, but no valid answer before the deadline.
    pub missing: Vec<String>,
}

impl<T> Default for Gathered<T> {
    fn default() -> Self {
        Self {
            stats: BTreeMap::new(),
            missing: Vec::new(),
        }
    }
}

/// Turns an answer's bytes into the caller's form; `None` rejects it (counted as an invalid
/// frame, the node listed missing).
pub type Decode<T> = Arc<dyn Fn(Vec<u8>) -> Option<T> + Send + Sync>;

/// Asks every `(node_id, addr)` for its stats, in parallel, for at most `deadline`, and
/// decodes each answer as it arrives (so the work overlaps the wait for the slowest).
///
/// Each ask runs in its own task, bounded by [`ASK_LIMIT`], that outlives the deadline: a
/// QUIC handshake that did not finish in time still completes and leaves its connection
/// cached (idle connections close after 30 s), so the next gather finds it warm.
pub(crate) async fn gather<T: Send + 'static>(
    inner: &Arc<Inner>,
    targets: Vec<(String, SocketAddr)>,
    deadline: Duration,
    decode: Decode<T>,
) -> Gathered<T> {
    let mut pending: FuturesUnordered<_> = targets
        .into_iter()
        .map(|(id, addr)| {
            let inner2 = inner.clone();
            let id2 = id.clone();
            let decode = decode.clone();
            let task = tokio::spawn(async move {
                let bytes = timeout(ASK_LIMIT, ask(&inner2, &id2, addr))
                    .await
                    .ok()
                    .flatten()?;
                let got = decode(bytes);
                if got.is_none() {
                    inner2
                        .counters
                        .invalid_frames
                        .fetch_add(1, Ordering::Relaxed);
                }
                got
            });
            inner.track(task.abort_handle());
            async move {
                let got = timeout(deadline, task)
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .flatten();
                (id, got)
            }
        })
        .collect();
    let mut out = Gathered::default();
    while let Some((id, got)) = pending.next().await {
        match got {
            Some(s) => {
                out.stats.insert(id, s);
            }
            None => out.missing.push(id),
        }
    }
    out.missing.sort();
    out
}

async fn ask(inner: &Arc<Inner>, node_id: &str, addr: SocketAddr) -> Option<Vec<u8>> {
    let conn = transport::connection(inner, addr).await?;
    let request = encode_frame(inner, &Frame::StatsRequest).ok()?;
    let (mut send, mut recv) = conn.open_bi().await.ok()?;
    send.write_all(&request).await.ok()?;
    send.finish().ok()?;
    inner.counters.count_sent(request.len());
    let answer = recv.read_to_end(MAX_ANSWER).await.ok()?;
    inner
        .counters
        .bytes_received
        .fetch_add(answer.len() as u64, Ordering::Relaxed);
    let cert = peer_certificate(&conn);
    match decode_frame(inner, &answer) {
        Some(Ok(Frame::Stats {
            node_id: from,
            stats,
        })) if from == node_id && claim_allowed(inner, cert.as_ref(), &from) => {
            inner
                .counters
                .frames_received
                .fetch_add(1, Ordering::Relaxed);
            Some(stats)
        }
        Some(Ok(Frame::Stats { .. })) => {
            inner
                .counters
                .identity_mismatches
                .fetch_add(1, Ordering::Relaxed);
            None
        }
        None => {
            inner
                .counters
                .unauthenticated
                .fetch_add(1, Ordering::Relaxed);
            None
        }
        Some(_) => {
            inner
                .counters
                .invalid_frames
                .fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
