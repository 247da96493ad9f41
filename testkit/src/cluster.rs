//! A private Redis Cluster: primaries (no replicas) on free loopback ports, joined with
//! `redis-cli --cluster create` (equal slot ranges), stopped by pid on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ports::free_port;
use crate::redis::{redis_server_args, redis_server_binary};
use crate::resp::{Resp, RespConn};
use crate::wait_until;

/// How long to wait for the servers and the cluster to get ready.
const READY: Duration = Duration::from_secs(20);

/// The servers of a private Redis Cluster, each its own primary.
pub struct RedisCluster {
    servers: Vec<(Child, u16)>,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// `n` primaries joined into one cluster; returns once every server reports
    /// `cluster_state:ok`. Panics when the cluster does not come up (tests).
    pub fn start(n: usize) -> RedisCluster {
        // Built first, so the servers started so far are stopped if one fails.
        let mut cluster = RedisCluster {
            servers: Vec::new(),
            dir: tempfile::tempdir().expect("cluster dir"),
        };
        for _ in 0..n {
            let port = free_port();
            let data = cluster.dir.path().join(format!("r{port}"));
            std::fs::create_dir_all(&data).expect("server dir");
            let child = Command::new(redis_server_binary())
                .args(redis_server_args(port, &data))
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            cluster.servers.push((child, port));
            assert!(
                wait_until(READY, || command(port, &["PING"]).is_some()),
                "redis-server on {port} did not start"
            );
        }
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(cluster.addrs())
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(created.success(), "redis-cli --cluster create failed");
        let ok = |port| {
            matches!(command(port, &["CLUSTER", "INFO"]), Some(Resp::Bulk(Some(b)))
                if String::from_utf8_lossy(&b).contains("cluster_state:ok"))
        };
        assert!(
            wait_until(READY, || cluster.ports().iter().all(|&p| ok(p))),
            "cluster did not become ready"
        );
        cluster
    }

    /// The servers' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.servers.iter().map(|(_, p)| *p).collect()
    }

    /// `127.0.0.1:port` of every server.
    pub fn addrs(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (child, _) in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One command to one server; `None` when it cannot be reached.
pub fn command(port: u16, args: &[&str]) -> Option<Resp> {
    let mut c = RespConn::connect(port, None, Duration::from_secs(2)).ok()?;
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.command(&args).ok()
}
