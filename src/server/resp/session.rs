//! What a command sees: the facade and its connection's state ([`Ctx`], [`Session`]).
//!
//! Why its own file: the connection loop (`conn`) builds it and every command group (`keys`,
//! `server`) takes it, so it sits below all of them and the commands do not import the loop.

use bytes::Bytes;

use crate::HybridCache;

/// Per-connection state.
#[derive(Debug)]
pub(crate) struct Session {
    pub id: u64,
    pub resp3: bool,
    pub authed: bool,
    pub name: Option<Bytes>,
}

/// What a command sees: the facade and its connection's state.
pub(crate) struct Ctx<'a> {
    pub cache: &'a HybridCache,
    pub session: &'a mut Session,
}

impl Ctx<'_> {
    /// Whether writes need `AUTH` first: a token is configured and not given yet.
    pub fn needs_auth(&self) -> bool {
        self.cache.config().api_token.is_some() && !self.session.authed
    }
}
