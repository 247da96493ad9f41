//! The command line (clap): `node`, `certs`, and client commands against a running node.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Flags;
use crate::telemetry::LogFormat;

// clap turns doc comments into `--help` text: these stay undocumented so the help is unchanged.
#[allow(missing_docs)]
#[derive(Debug, Parser)]
#[command(
    name = "hybrid-cache",
    version,
    about = "Two-level cache node and client"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// clap turns doc comments into `--help` text: these stay undocumented so the help is unchanged.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a cache node (defaults: 127.0.0.1:8080, L1 only).
    Node(NodeArgs),
    /// Make a cluster CA and one certificate per node for mutual-TLS gossip.
    Certs {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Node ids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
    },
    /// Read a value (printed raw to stdout).
    Get {
        #[command(flatten)]
        client: ClientArgs,
        category: String,
        key: String,
    },
    /// Write a value (`-` reads it from stdin).
    Set {
        #[command(flatten)]
        client: ClientArgs,
        /// L2 TTL in seconds (L1 keeps it at most the category TTL).
        #[arg(long)]
        ttl: Option<u64>,
        category: String,
        key: String,
        value: String,
    },
    /// Delete a key everywhere.
    Del {
        #[command(flatten)]
        client: ClientArgs,
        category: String,
        key: String,
    },
    /// Invalidate a pattern (key, `*` or glob) in a category (`*` = all).
    Invalidate {
        #[command(flatten)]
        client: ClientArgs,
        category: String,
        pattern: String,
    },
    /// This node's stats (JSON).
    Stats {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every node this node knows (JSON).
    ClusterStats {
        #[command(flatten)]
        client: ClientArgs,
    },
}

// clap turns doc comments into `--help` text: these stay undocumented so the help is unchanged.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// TOML config file (e.g. cluster.toml).
    #[arg(long, env = "HC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Node id (selects the `[[nodes]]` entry of the config file).
    #[arg(long)]
    pub node_id: Option<String>,
    /// HTTP listen address.
    #[arg(long)]
    pub http: Option<String>,
    /// RESP (Redis protocol) listen address, e.g. 127.0.0.1:6380 (env `HC_RESP`); off when unset.
    #[arg(long)]
    pub resp: Option<String>,
    /// Gossip (QUIC/UDP) listen address.
    #[arg(long)]
    pub gossip: Option<String>,
    /// Gossip addresses of nodes to join through (repeatable or comma-separated).
    #[arg(long)]
    pub peers: Vec<String>,
    /// Redis URL (L2 and the invalidation bus).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Log format on stderr: `text` (coloured only on a terminal) or `json` (one object a line).
    #[arg(long, env = "HC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Tokio worker threads (default: one per CPU). One is plenty for an idle or lightly
    /// loaded node; many nodes on one machine should use 1 each.
    #[arg(long, env = "HC_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
}

impl NodeArgs {
    /// The configuration flags these arguments carry.
    pub fn flags(&self) -> Flags {
        Flags {
            config: self.config.clone(),
            node_id: self.node_id.clone(),
            http: self.http.clone(),
            resp: self.resp.clone(),
            gossip: self.gossip.clone(),
            peers: self.peers.clone(),
            redis_url: self.redis_url.clone(),
        }
    }
}

// clap turns doc comments into `--help` text: these stay undocumented so the help is unchanged.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Base URL of the node.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub node: String,
    /// Bearer token for mutating calls.
    #[arg(long, env = "HC_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Errors of the client commands.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error("cannot reach {url}: {source}")]
    Connect {
        /// The URL called.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The node answered with an error status.
    #[error("{status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The answer's body (the node's JSON error).
        body: String,
    },
    /// Reading the value from stdin (`set … -`) failed.
    #[error("cannot read stdin: {0}")]
    Stdin(std::io::Error),
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

fn value_url(base: &str, category: &str, key: &str) -> String {
    url(base, &format!("/v1/cache/{}/{}", enc(category), enc(key)))
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn send(req: reqwest::RequestBuilder, target: &str) -> Result<Vec<u8>, ClientError> {
    let resp = req.send().await.map_err(|source| ClientError::Connect {
        url: target.to_string(),
        source,
    })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|source| ClientError::Connect {
        url: target.to_string(),
        source,
    })?;
    if status.is_success() {
        Ok(body.to_vec())
    } else {
        Err(ClientError::Status {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

fn with_token(req: reqwest::RequestBuilder, args: &ClientArgs) -> reqwest::RequestBuilder {
    match &args.token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

/// Runs a client command; returns what to print on stdout.
pub async fn run_client(cmd: Command) -> Result<Vec<u8>, ClientError> {
    let c = client();
    match cmd {
        Command::Get {
            client: a,
            category,
            key,
        } => {
            let u = value_url(&a.node, &category, &key);
            send(c.get(&u), &u).await
        }
        Command::Set {
            client: a,
            ttl,
            category,
            key,
            value,
        } => {
            let body = if value == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                    .map_err(ClientError::Stdin)?;
                buf
            } else {
                value.into_bytes()
            };
            let mut u = value_url(&a.node, &category, &key);
            if let Some(t) = ttl {
                u.push_str(&format!("?ttl={t}"));
            }
            send(with_token(c.put(&u), &a).body(body), &u).await
        }
        Command::Del {
            client: a,
            category,
            key,
        } => {
            let u = value_url(&a.node, &category, &key);
            send(with_token(c.delete(&u), &a), &u).await
        }
        Command::Invalidate {
            client: a,
            category,
            pattern,
        } => {
            let u = url(&a.node, "/v1/invalidate");
            let body = serde_json::json!({"category": category, "pattern": pattern});
            send(with_token(c.post(&u), &a).json(&body), &u).await
        }
        Command::Stats { client: a } => {
            let u = url(&a.node, "/v1/stats");
            send(c.get(&u), &u).await
        }
        Command::ClusterStats { client: a } => {
            let u = url(&a.node, "/v1/cluster/stats");
            send(c.get(&u), &u).await
        }
        Command::Node(_) | Command::Certs { .. } => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses_the_contract_forms() {
        let cli = Cli::try_parse_from([
            "hybrid-cache",
            "node",
            "--config",
            "cluster.toml",
            "--node-id",
            "n2",
            "--peers",
            "127.0.0.1:1,127.0.0.1:2",
            "--peers",
            "127.0.0.1:3",
        ])
        .unwrap();
        let Command::Node(n) = cli.command else {
            panic!("not node")
        };
        assert_eq!(n.node_id.as_deref(), Some("n2"));
        assert_eq!(n.peers.len(), 2);
        assert_eq!(n.worker_threads, None);
        let cli = Cli::try_parse_from(["hybrid-cache", "node", "--worker-threads", "1"]).unwrap();
        let Command::Node(n) = cli.command else {
            panic!("not node")
        };
        assert_eq!(n.worker_threads, Some(1));
        assert!(Cli::try_parse_from(["hybrid-cache", "node", "--worker-threads", "0"]).is_err());
        let cli =
            Cli::try_parse_from(["hybrid-cache", "certs", "--out", "d", "--nodes", "n1,n2,n3"])
                .unwrap();
        let Command::Certs { nodes, .. } = cli.command else {
            panic!("not certs")
        };
        assert_eq!(nodes, ["n1", "n2", "n3"]);
        let cli = Cli::try_parse_from(["hybrid-cache", "get", "--node", "http://x", "roles", "k"])
            .unwrap();
        assert!(matches!(cli.command, Command::Get { .. }));
    }

    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(enc("get_user:1/2 x"), "get_user:1%2F2%20x");
    }
}
