//! What the layers decide before it can be parsed into a [`Config`] ([`Pending`]).
//!
//! Why its own file: the file, environment and flag layers all fill it in and `resolve.rs`
//! finishes it, so it sits below all of them.

use super::error::ConfigError;
use super::settings::{Config, RedisTarget};
use super::validate::{check_host_port, parse_addr};

/// What the layers decide before it can be parsed into a [`Config`]: listen addresses as
/// text, the peers, the Redis target, and `REDIS_PASSWORD` (which `--redis-url` inherits).
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) http: Option<String>,
    pub(super) resp: Option<String>,
    pub(super) gossip: Option<String>,
    pub(super) peers: Vec<String>,
    pub(super) redis: Option<RedisTarget>,
    pub(super) password: Option<String>,
}

impl Pending {
    /// Parses the addresses and stores them, the peers and the Redis target in `c`.
    pub(super) fn finish(self, c: &mut Config) -> Result<(), ConfigError> {
        if let Some(h) = self.http {
            c.http_addr = parse_addr("http", &h)?;
        }
        if let Some(r) = self.resp {
            c.resp_addr = Some(parse_addr("resp", &r)?);
        }
        if let Some(g) = self.gossip {
            c.gossip_addr = Some(parse_addr("gossip", &g)?);
        }
        for p in &self.peers {
            check_host_port("peers", p)?;
        }
        c.peers = self.peers;
        c.redis = self.redis;
        Ok(())
    }
}
