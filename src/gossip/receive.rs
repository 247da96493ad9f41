//! QUIC transport, receiving side: accepting connections, reading datagrams and uni streams,
//! and dispatching each authenticated frame (SWIM and sync packets and Hellos to the
//! membership driver, broadcasts to the caller's inbound channel). Bidi streams are stats
//! requests, answered by `answer`.
//!
//! Every frame that names a node (Hello, Stats, Broadcast, and the sender in a SWIM or
//! digest packet) is checked against the peer certificate under mTLS.

use std::sync::{atomic::Ordering, Arc};

use rustls::pki_types::CertificateDer;
use tokio::time::timeout;

use super::{
    answer,
    claim::{claim_allowed, peer_certificate},
    connections::{register, CONNECT_TIMEOUT, STREAM_TIMEOUT},
    frame::{decode_frame, Frame, FrameError, MAX_FRAME},
    input::DriverInput,
    lock, membership, Inner,
};

const MAX_INCOMING_CONNECTIONS: usize = 1024;

/// Accept incoming connections until the endpoint closes.
pub(crate) async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        if inner.incoming_conns.load(Ordering::Relaxed) >= MAX_INCOMING_CONNECTIONS {
            incoming.refuse();
            continue;
        }
        let inner2 = inner.clone();
        let task = tokio::spawn(async move {
            let conn = match incoming.accept() {
                Ok(connecting) => match timeout(CONNECT_TIMEOUT * 5, connecting).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "incoming gossip handshake failed");
                        inner2
                            .counters
                            .connect_failures
                            .fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {
                        inner2
                            .counters
                            .connect_failures
                            .fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "incoming gossip connection rejected");
                    return;
                }
            };
            inner2.incoming_conns.fetch_add(1, Ordering::Relaxed);
            register(&inner2, conn.clone(), true);
            serve_connection(&inner2, conn).await;
            inner2.incoming_conns.fetch_sub(1, Ordering::Relaxed);
        });
        inner.track(task.abort_handle());
    }
}

pub(super) async fn serve_connection(inner: &Arc<Inner>, conn: quinn::Connection) {
    let cert = peer_certificate(&conn);
    let cert = cert.as_ref();
    let requests = async {
        while let Ok((send, recv)) = conn.accept_bi().await {
            let inner = inner.clone();
            let task = tokio::spawn(answer::answer(inner.clone(), send, recv));
            inner.track(task.abort_handle());
        }
    };
    let datagrams = async {
        while let Ok(d) = conn.read_datagram().await {
            handle_frame(inner, &d, cert);
        }
    };
    let streams = async {
        while let Ok(mut recv) = conn.accept_uni().await {
            match timeout(STREAM_TIMEOUT, recv.read_to_end(MAX_FRAME)).await {
                Ok(Ok(buf)) => handle_frame(inner, &buf, cert),
                Ok(Err(quinn::ReadToEndError::TooLong)) => {
                    inner
                        .counters
                        .oversized_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = recv.stop(quinn::VarInt::from_u32(1));
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "gossip stream read failed");
                    inner
                        .counters
                        .invalid_frames
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    inner
                        .counters
                        .invalid_frames
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = recv.stop(quinn::VarInt::from_u32(2));
                }
            }
        }
    };
    tokio::join!(datagrams, streams, requests);
    let mut conns = lock(&inner.conns);
    let addr = conn.remote_address();
    if conns
        .get(&addr)
        .is_some_and(|c| c.stable_id() == conn.stable_id())
    {
        conns.remove(&addr);
    }
}

/// Counts a claim that the peer certificate does not back; `true` when the claim is fine.
fn check_claim(
    inner: &Inner,
    cert: Option<&CertificateDer<'static>>,
    node_id: &str,
    what: &str,
) -> bool {
    if claim_allowed(inner, cert, node_id) {
        return true;
    }
    tracing::warn!(
        claimed = node_id,
        what,
        "gossip frame for a node id the peer's certificate does not name; dropped"
    );
    inner
        .counters
        .identity_mismatches
        .fetch_add(1, Ordering::Relaxed);
    false
}

/// One frame read from a datagram or a uni stream: counted, opened, and handed on.
fn handle_frame(inner: &Arc<Inner>, bytes: &[u8], cert: Option<&CertificateDer<'static>>) {
    inner
        .counters
        .bytes_received
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    let Some(frame) = open_frame(inner, bytes) else {
        return;
    };
    inner
        .counters
        .frames_received
        .fetch_add(1, Ordering::Relaxed);
    dispatch(inner, frame, cert);
}

/// The frame in `bytes`, or `None` (counted) when its tag does not verify, it is too large
/// or it does not decode.
fn open_frame(inner: &Inner, bytes: &[u8]) -> Option<Frame> {
    let c = &inner.counters;
    match decode_frame(inner, bytes) {
        None => {
            c.unauthenticated.fetch_add(1, Ordering::Relaxed);
            None
        }
        Some(Ok(f)) => Some(f),
        Some(Err(FrameError::TooLarge { .. })) => {
            c.oversized_dropped.fetch_add(1, Ordering::Relaxed);
            None
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "invalid gossip frame dropped");
            c.invalid_frames.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Hands an opened frame to whoever handles its kind, after the identity check.
fn dispatch(inner: &Inner, frame: Frame, cert: Option<&CertificateDer<'static>>) {
    let c = &inner.counters;
    match frame {
        Frame::Swim(p) => swim_packet(inner, p, cert),
        Frame::Hello {
            identity,
            reply,
            known_bump,
        } => {
            if !check_claim(inner, cert, &identity.node_id, "hello") {
                return;
            }
            let _ = inner.driver_tx.try_send(DriverInput::Hello {
                identity,
                reply,
                known_bump,
            });
        }
        Frame::Sync(p) => sync_packet(inner, p, cert),
        // Only valid as the answer on a stream we opened (see `query`).
        Frame::Stats { .. } | Frame::StatsRequest => {
            c.invalid_frames.fetch_add(1, Ordering::Relaxed);
        }
        Frame::Broadcast { node_id, payload } => {
            if !check_claim(inner, cert, &node_id, "broadcast") {
                return;
            }
            // A dropped receiver just means nobody listens any more.
            let _ = inner.inbound.send((node_id, payload));
        }
    }
}

/// A SWIM packet over QUIC: under mTLS its sender must be the certificate's node.
fn swim_packet(inner: &Inner, p: Vec<u8>, cert: Option<&CertificateDer<'static>>) {
    let c = &inner.counters;
    if inner.mtls {
        let Ok(h) = membership::packet_header(&p) else {
            c.invalid_frames.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !check_claim(inner, cert, &h.src.node_id, "swim") {
            return;
        }
    }
    if inner.driver_tx.try_send(DriverInput::Packet(p)).is_err() {
        c.send_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// A digest-sync packet over QUIC: under mTLS a digest's sender must be the certificate's
/// node (a list of members names no sender).
fn sync_packet(inner: &Inner, p: Vec<u8>, cert: Option<&CertificateDer<'static>>) {
    let c = &inner.counters;
    if inner.mtls {
        match membership::sync_sender(&p) {
            Err(_) => {
                c.invalid_frames.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Some(from)) if !check_claim(inner, cert, &from, "sync") => return,
            Ok(_) => {}
        }
    }
    if inner.driver_tx.try_send(DriverInput::Sync(p)).is_err() {
        c.send_dropped.fetch_add(1, Ordering::Relaxed);
    }
}
