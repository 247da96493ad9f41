//! Key commands: `GET`, `SET [EX s]`, `DEL`, `MGET`, `EXISTS`.
//!
//! A Redis key is `category/key` (split at the first `/`). Each command makes the same
//! facade call as the HTTP route ([`crate::HybridCache::get`], [`crate::HybridCache::set`],
//! [`crate::HybridCache::delete`]), so coherence, limits and errors are the same; a write needs
//! `AUTH` when the node has an API token, like HTTP's mutating routes.

use std::time::Duration;

use bytes::Bytes;

use super::reply::Reply;
use super::session::Ctx;

/// Longest part of a rejected key echoed back in an error.
const ECHO: usize = 64;

/// Splits `category/key`.
fn split(arg: &Bytes) -> Result<(&str, &str), Reply> {
    let s = std::str::from_utf8(arg).map_err(|_| Reply::err("invalid key: not UTF-8"))?;
    s.split_once('/').ok_or_else(|| {
        Reply::err(format!(
            "invalid key `{}`: expected `category/key`",
            s.chars().take(ECHO).collect::<String>()
        ))
    })
}

fn noauth() -> Reply {
    Reply::Error("NOAUTH Authentication required.".to_string())
}

async fn get_one(ctx: &Ctx<'_>, arg: &Bytes) -> Result<Option<Bytes>, Reply> {
    let (category, key) = split(arg)?;
    Ok(ctx.cache.get(category, key).await?)
}

/// `GET category/key` → the value or nil.
pub(crate) async fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len() != 2 {
        return Reply::arity("get");
    }
    match get_one(ctx, &args[1]).await {
        Ok(Some(v)) => Reply::Bulk(v),
        Ok(None) => Reply::Null,
        Err(r) => r,
    }
}

/// `SET category/key value [EX seconds]` → `OK`. Other options of Redis's SET (NX, XX,
/// GET, KEEPTTL, PX…) are refused rather than ignored.
pub(crate) async fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len() < 3 {
        return Reply::arity("set");
    }
    if ctx.needs_auth() {
        return noauth();
    }
    let ttl = match &args[3..] {
        [] => None,
        [opt, secs] if opt.eq_ignore_ascii_case(b"EX") => {
            match std::str::from_utf8(secs)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(s) if s > 0 => Some(Duration::from_secs(s)),
                _ => return Reply::err("invalid expire time in 'set' command"),
            }
        }
        _ => return Reply::err("syntax error"),
    };
    let (category, key) = match split(&args[1]) {
        Ok(ck) => ck,
        Err(r) => return r,
    };
    match ctx.cache.set(category, key, args[2].clone(), ttl).await {
        Ok(()) => Reply::OK,
        Err(e) => e.into(),
    }
}

/// `DEL key [key ...]` → how many of the keys existed (looked up, L1 then L2, right before
/// the delete; the delete itself reaches L2 and every node's L1 whether or not they did).
pub(crate) async fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len() < 2 {
        return Reply::arity("del");
    }
    if ctx.needs_auth() {
        return noauth();
    }
    let mut removed = 0;
    for arg in &args[1..] {
        let (category, key) = match split(arg) {
            Ok(ck) => ck,
            Err(r) => return r,
        };
        match ctx.cache.get(category, key).await {
            Ok(Some(_)) => removed += 1,
            Ok(None) => {}
            Err(e) => return e.into(),
        }
        if let Err(e) = ctx.cache.delete(category, key).await {
            return e.into();
        }
    }
    Reply::Int(removed)
}

/// `MGET key [key ...]` → one value or nil per key. A malformed key or unknown category
/// fails the whole command (as HTTP would refuse it).
pub(crate) async fn mget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len() < 2 {
        return Reply::arity("mget");
    }
    let mut out = Vec::with_capacity(args.len() - 1);
    for arg in &args[1..] {
        match get_one(ctx, arg).await {
            Ok(Some(v)) => out.push(Reply::Bulk(v)),
            Ok(None) => out.push(Reply::Null),
            Err(r) => return r,
        }
    }
    Reply::Array(out)
}

/// `EXISTS key [key ...]` → how many of the keys have a value (a key named twice counts
/// twice, as in Redis).
pub(crate) async fn exists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len() < 2 {
        return Reply::arity("exists");
    }
    let mut n = 0;
    for arg in &args[1..] {
        match get_one(ctx, arg).await {
            Ok(Some(_)) => n += 1,
            Ok(None) => {}
            Err(r) => return r,
        }
    }
    Reply::Int(n)
}
