//! Free loopback ports: one policy for every test, benchmark and checker.
//!
//! A port is chosen at random in [`RANGE`], below the Linux ephemeral range (32768..):
//! nodes bind their SWIM sockets and outgoing connections on ephemeral ports, which could
//! otherwise take a port chosen here before its server starts. It must be free for both TCP
//! and UDP (so it serves an HTTP, RESP, Redis or gossip address alike), is never 6379 (the
//! system Redis), and is never handed out twice in one process. Its Redis Cluster bus port
//! (port + 10000, in 30000..40000: never handed out itself) must be free for TCP too, so that
//! any port can serve a Redis Cluster node.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The system Redis port: never handed out.
pub const FORBIDDEN_PORT: u16 = 6379;

/// Where ports are chosen: below the ephemeral range, and low enough that a Redis Cluster
/// bus port (+10000) is never in it.
pub const RANGE: std::ops::Range<u16> = 20000..30000;

/// Offset of a Redis Cluster node's bus port.
const CLUSTER_BUS_OFFSET: u16 = 10000;

/// Ports handed out by this process so far.
fn taken() -> &'static Mutex<HashSet<u16>> {
    static TAKEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    TAKEN.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A random number (std only: a randomly keyed hasher over a counter).
fn random_u64() -> u64 {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = STATE.get_or_init(RandomState::new).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// True when `port` can be bound on 127.0.0.1 for TCP and for UDP right now, and its
/// Redis Cluster bus port for TCP.
pub fn is_free(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let bus = SocketAddr::from((Ipv4Addr::LOCALHOST, port + CLUSTER_BUS_OFFSET));
    TcpListener::bind(addr).is_ok()
        && UdpSocket::bind(addr).is_ok()
        && TcpListener::bind(bus).is_ok()
}

/// A free loopback port following the policy of this module, also avoiding `avoid`
/// (ports another process already handed out, e.g. the Python client's earlier ones).
///
/// Panics only when the whole range is taken (10,000 ports), which no test run reaches.
pub fn free_port_avoiding(avoid: &HashSet<u16>) -> u16 {
    let span = u64::from(RANGE.end - RANGE.start);
    for _ in 0..100_000 {
        let p = RANGE.start + (random_u64() % span) as u16;
        if p == FORBIDDEN_PORT || avoid.contains(&p) {
            continue;
        }
        let mut taken = taken().lock().unwrap_or_else(|e| e.into_inner());
        if taken.contains(&p) || !is_free(p) {
            continue;
        }
        taken.insert(p);
        return p;
    }
    panic!("no free loopback port in {RANGE:?}");
}

/// A free loopback port (see the module documentation for the policy).
/// Another process may still grab it before the caller binds; callers that spawn servers
/// retry on collision.
pub fn free_port() -> u16 {
    free_port_avoiding(&HashSet::new())
}

/// `n` distinct free loopback ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

/// A free loopback socket address (`127.0.0.1:<free port>`).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_policy() {
        let ports = free_ports(200);
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "never handed out twice");
        for p in ports {
            assert!(RANGE.contains(&p));
            assert_ne!(p, FORBIDDEN_PORT);
        }
    }
}
