//! One client connection: read, decode every complete command in the buffer, run them in
//! order, write all their replies in one write (pipelining), repeat.
//!
//! Buffers are bounded: the read buffer by the decoder's request limit, the write buffer by
//! flushing whenever it passes [`WRITE_FLUSH`] bytes. A protocol error is answered and the
//! connection closed; nothing a client sends can panic the task.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::codec::{FrameError, RequestDecoder};
use super::reply::Reply;
use super::session::{Ctx, Session};
use super::{keys, server};
use crate::HybridCache;

/// Replies are written out once this many bytes are pending, even mid-pipeline.
const WRITE_FLUSH: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// Whether the connection goes on after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    Continue,
    Close,
}

/// Runs one command.
async fn execute(ctx: &mut Ctx<'_>, args: &[Bytes]) -> (Reply, After) {
    let Some(name) = args.first() else {
        return (Reply::err("empty command"), After::Continue);
    };
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    let reply = if is("GET") {
        keys::get(ctx, args).await
    } else if is("SET") {
        keys::set(ctx, args).await
    } else if is("DEL") || is("UNLINK") {
        keys::del(ctx, args).await
    } else if is("MGET") {
        keys::mget(ctx, args).await
    } else if is("EXISTS") {
        keys::exists(ctx, args).await
    } else if is("QUIT") {
        return (Reply::OK, After::Close);
    } else {
        server::execute(ctx, args)
    };
    (reply, After::Continue)
}

/// Serves one client until it disconnects, misbehaves or the node stops.
pub(crate) async fn serve(
    mut stream: TcpStream,
    cache: HybridCache,
    id: u64,
    stop: CancellationToken,
) -> Result<(), FrameError> {
    // Made once: polled at every read, it touches only this connection's token.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let _ = stream.set_nodelay(true);
    let cfg = cache.config();
    // An argument a little over the value limit still reaches the facade, which answers
    // its `value too large` error and keeps the connection; far over it, the framing
    // refuses it before buffering. A whole command is a value plus keys and options.
    let mut decoder = RequestDecoder::new(
        cfg.max_value_bytes + 64 * 1024,
        cfg.max_value_bytes + 128 * 1024,
    );
    let mut session = Session {
        id,
        resp3: false,
        authed: cfg.api_token.is_none(),
        name: None,
    };
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        loop {
            let args = match decoder.decode(&mut rbuf) {
                Ok(Some(args)) => args,
                Ok(None) => break,
                Err(e) => {
                    Reply::err(&e).encode(session.resp3, &mut wbuf);
                    stream.write_all(&wbuf).await?;
                    return Err(e);
                }
            };
            if args.is_empty() {
                continue;
            }
            let mut ctx = Ctx {
                cache: &cache,
                session: &mut session,
            };
            let (reply, after) = execute(&mut ctx, &args).await;
            reply.encode(session.resp3, &mut wbuf);
            if after == After::Close {
                stream.write_all(&wbuf).await?;
                return Ok(());
            }
            if wbuf.len() >= WRITE_FLUSH {
                stream.write_all(&wbuf).await?;
                wbuf.clear();
            }
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
        if rbuf.capacity() - rbuf.len() < 512 {
            rbuf.reserve(READ_CHUNK);
        }
        tokio::select! {
            n = stream.read_buf(&mut rbuf) => {
                if n? == 0 {
                    return Ok(());
                }
            }
            () = &mut stopped => return Ok(()),
        }
    }
}
