//! The answering side of an on-demand stats request (see `query`): a peer opened a bidi
//! stream, sent `StatsRequest`, and gets this node's stats summary back.
//!
//! Why its own file: the receiver serves bidi streams with it, while the asking side needs
//! the sending transport; apart, the receiver and the transport do not import each other.

use std::{sync::atomic::Ordering, sync::Arc, time::Duration};

use tokio::time::timeout;

use super::{
    frame::{decode_frame, encode_frame, Frame},
    Inner,
};

/// How long a node waits for a request on a stream it accepted.
const REQUEST_READ: Duration = Duration::from_secs(2);

/// Serves one stats request on a stream a peer opened.
pub(super) async fn answer(
    inner: Arc<Inner>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let c = &inner.counters;
    let request = match timeout(REQUEST_READ, recv.read_to_end(64)).await {
        Ok(Ok(b)) => b,
        _ => {
            c.invalid_frames.fetch_add(1, Ordering::Relaxed);
            let _ = recv.stop(quinn::VarInt::from_u32(2));
            return;
        }
    };
    c.bytes_received
        .fetch_add(request.len() as u64, Ordering::Relaxed);
    match decode_frame(&inner, &request) {
        Some(Ok(Frame::StatsRequest)) => {}
        None => {
            c.unauthenticated.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Some(_) => {
            c.invalid_frames.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    c.frames_received.fetch_add(1, Ordering::Relaxed);
    let mut stats = (inner.stats)().await;
    if stats.len() > inner.max_stats_bytes {
        c.oversized_dropped.fetch_add(1, Ordering::Relaxed);
        stats.clear();
    }
    let node_id = inner.own_node_id();
    let Ok(bytes) = encode_frame(&inner, &Frame::Stats { node_id, stats }) else {
        c.oversized_dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if send.write_all(&bytes).await.is_ok() && send.finish().is_ok() {
        c.count_sent(bytes.len());
    }
}
