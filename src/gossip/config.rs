//! What a gossip node is configured with ([`GossipConfig`], [`TlsPaths`]) and what can go
//! wrong starting one ([`GossipError`]). Plain data, checked by `start`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Paths of the PEM files for mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// This node's certificate (issued by the CA for its node id).
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// Gossip settings of one node.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// Cluster-unique id of this node (1-255 bytes).
    pub node_id: String,
    /// UDP bind of the quinn endpoint.
    pub bind: SocketAddr,
    /// `host:port` other nodes should use (default: the bound address).
    pub advertise: Option<String>,
    /// Advertised in membership, shown in cluster stats.
    pub http_addr: String,
    /// `host:port` gossip addresses to join through (retried until one answers).
    pub peers: Vec<String>,
    /// Mutual TLS against the cluster CA; `None` is allowed on loopback only.
    pub tls: Option<TlsPaths>,
    /// SWIM probe period (direct-ack deadline is 2/5 of it).
    pub probe_period: Duration,
    /// How long a suspect node has to refute before it is declared dead.
    pub suspect_to_dead: Duration,
    /// A node dead for this long is forgotten.
    pub dead_forget: Duration,
    /// Largest stats payload sent; larger ones are counted and sent empty.
    pub max_stats_bytes: usize,
    /// Shared secret authenticating every SWIM packet and QUIC frame (HMAC-SHA256).
    /// Required without TLS; with it SWIM rides plain UDP instead of QUIC datagrams.
    pub cluster_secret: Option<Vec<u8>>,
}

impl GossipConfig {
    /// Defaults: probe every 200 ms (ack deadline 80 ms), suspect → dead
    /// after 600 ms, dead forgotten after 60 s, 16 KiB stats bound, no secret.
    pub fn new(node_id: impl Into<String>, bind: SocketAddr, http_addr: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            bind,
            advertise: None,
            http_addr: http_addr.into(),
            peers: Vec::new(),
            tls: None,
            probe_period: Duration::from_millis(200),
            suspect_to_dead: Duration::from_millis(600),
            dead_forget: Duration::from_secs(60),
            max_stats_bytes: 16 * 1024,
            cluster_secret: None,
        }
    }
}

/// Why a gossip node could not start.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// No TLS configured and the bind address is not loopback.
    #[error("gossip without [tls] is only allowed on a loopback address (bind {0})")]
    InsecureNonLoopback(SocketAddr),
    /// No TLS configured and no cluster secret.
    #[error("gossip without [tls] needs a cluster secret (HC_CLUSTER_SECRET / cluster_secret)")]
    MissingSecret,
    /// The QUIC endpoint or the SWIM socket could not be bound.
    #[error("cannot bind gossip endpoint on {addr}: {source}")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS configuration was refused.
    #[error("gossip TLS: {0}")]
    Tls(String),
    /// Certificates could not be generated.
    #[error("certificate generation failed: {0}")]
    CertGen(String),
    /// The node id is not usable.
    #[error("invalid node id {0:?} (1-63 chars of A-Z a-z 0-9 - _ .)")]
    InvalidNodeId(String),
    /// An advertised or peer address does not resolve.
    #[error("cannot resolve gossip address {addr}: {reason}")]
    Resolve {
        /// The address as configured.
        addr: String,
        /// Why it did not resolve.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid gossip config: {0}")]
    Config(String),
}
