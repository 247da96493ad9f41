//! The command-line layer: the values `hybrid-cache node` takes as flags (the clap parser in
//! the `cli` module fills a [`Flags`]), the highest layer of the configuration.

use super::env::split_list;
use super::pending::Pending;
use super::settings::RedisTarget;

/// Values given on the command line (all optional).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--config`: the `cluster.toml` to read (else `HC_CONFIG`, else none).
    pub config: Option<std::path::PathBuf>,
    /// `--node-id`: this node's id; selects the file's `[[nodes]]` entry.
    pub node_id: Option<String>,
    /// `--http`: HTTP listen address (`ip:port`).
    pub http: Option<String>,
    /// `--resp`: RESP listen address (`ip:port`).
    pub resp: Option<String>,
    /// `--gossip`: gossip listen address (`ip:port`).
    pub gossip: Option<String>,
    /// `--peers`: gossip addresses to join through (each may be a comma-separated list).
    pub peers: Vec<String>,
    /// `--redis-url`: one Redis; `REDIS_PASSWORD` applies when the URL has none.
    pub redis_url: Option<String>,
}

/// The flags layer: every flag given replaces what the lower layers decided.
pub(super) fn apply(p: &mut Pending, flags: &Flags) {
    if let Some(v) = &flags.http {
        p.http = Some(v.clone());
    }
    if let Some(v) = &flags.resp {
        p.resp = Some(v.clone());
    }
    if let Some(v) = &flags.gossip {
        p.gossip = Some(v.clone());
    }
    if !flags.peers.is_empty() {
        p.peers = flags.peers.iter().flat_map(|p| split_list(p)).collect();
    }
    if let Some(url) = &flags.redis_url {
        p.redis = Some(RedisTarget::Url {
            url: url.clone(),
            password: p.password.clone(),
        });
    }
}
