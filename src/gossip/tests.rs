//! Gossip tests: real QUIC nodes on 127.0.0.1 (port 0) and a simulated
//! 50-node cluster through the sans-IO membership wrapper.

use std::{
    collections::{BTreeMap, BinaryHeap, HashMap},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::*;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn stats_for(id: &str) -> Vec<u8> {
    format!("{{\"node_id\":\"{id}\",\"l2_enabled\":false}}").into_bytes()
}

fn config(id: &str, peers: &[&Gossip]) -> GossipConfig {
    let mut c = GossipConfig::new(id, loopback(), format!("127.0.0.1:80{}", id.len()));
    c.peers = peers.iter().map(|g| g.local_addr().to_string()).collect();
    c
}

async fn start(cfg: GossipConfig) -> (Gossip, mpsc::UnboundedReceiver<Vec<u8>>) {
    let id = cfg.node_id.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let g = Gossip::start(cfg, Arc::new(move || stats_for(&id)), tx)
        .await
        .expect("start gossip");
    (g, rx)
}

fn state_of(g: &Gossip, id: &str) -> Option<MemberState> {
    g.members()
        .into_iter()
        .find(|m| m.node_id == id)
        .map(|m| m.state)
}

/// Polls `f` every 10 ms until it holds; returns the elapsed time.
async fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    let r = tokio::time::timeout(limit, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "timed out after {limit:?} waiting for: {what}");
    start.elapsed()
}

fn all_alive(nodes: &[&Gossip], ids: &[&str]) -> bool {
    nodes.iter().zip(ids).all(|(g, me)| {
        ids.iter()
            .filter(|id| *id != me)
            .all(|id| state_of(g, id) == Some(MemberState::Alive))
    })
}

async fn three_nodes() -> Vec<(Gossip, mpsc::UnboundedReceiver<Vec<u8>>)> {
    let a = start(config("n1", &[])).await;
    let b = start(config("n2", &[&a.0])).await;
    let c = start(config("n3", &[&a.0])).await;
    let v = vec![a, b, c];
    let t = {
        let gs: Vec<&Gossip> = v.iter().map(|(g, _)| g).collect();
        wait_for(Duration::from_secs(10), "3 nodes alive", || {
            all_alive(&gs, &["n1", "n2", "n3"])
        })
        .await
    };
    println!("3 nodes converged in {t:?}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_and_share_stats() {
    let nodes = three_nodes().await;
    let ids = ["n1", "n2", "n3"];
    wait_for(Duration::from_secs(5), "stats everywhere", || {
        nodes
            .iter()
            .all(|(g, _)| g.members().iter().all(|m| m.stats.is_some()))
    })
    .await;
    for ((g, _), me) in nodes.iter().zip(ids) {
        let members = g.members();
        assert_eq!(members.len(), 2, "{me} sees {members:?}");
        assert_eq!(g.alive_peers(), 2);
        for m in members {
            assert_ne!(m.node_id, me);
            assert_eq!(m.stats.as_deref(), Some(stats_for(&m.node_id).as_slice()));
            assert_eq!(m.state, MemberState::Alive);
            assert!(m.http_addr.starts_with("127.0.0.1:80"));
            assert!(m.last_seen_ms < 2_000, "{m:?}");
            let peer = nodes
                .iter()
                .find(|(p, _)| p.members().iter().all(|x| x.node_id != m.node_id))
                .map(|(p, _)| p.local_addr().to_string());
            assert_eq!(Some(m.gossip_addr.clone()), peer);
        }
        let c = g.counters();
        assert!(
            c.frames_sent > 0 && c.frames_received > 0 && c.bytes_sent > 0,
            "{c:?}"
        );
        assert_eq!(c.invalid_frames, 0);
    }
    // JSON names of the states.
    assert_eq!(
        serde_json::to_string(&[MemberState::Alive, MemberState::Suspect, MemberState::Dead])
            .ok()
            .as_deref(),
        Some(r#"["alive","suspect","dead"]"#)
    );
    for (g, _) in &nodes {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_is_dead_within_2s_and_restart_rejoins() {
    let nodes = three_nodes().await;
    let (a, b, c) = (&nodes[0].0, &nodes[1].0, &nodes[2].0);
    c.kill();
    let t = wait_for(Duration::from_secs(5), "n3 dead on n1 and n2", || {
        state_of(a, "n3") == Some(MemberState::Dead) && state_of(b, "n3") == Some(MemberState::Dead)
    })
    .await;
    println!("kill -> dead on both survivors: {t:?}");
    assert!(t < Duration::from_secs(2), "detection took {t:?}");
    assert_eq!(a.alive_peers(), 1);

    // Same node id, new process (new port, newer identity).
    let (c2, _rx) = start(config("n3", &[a])).await;
    let t = wait_for(Duration::from_secs(10), "n3 back alive", || {
        all_alive(&[a, b, &c2], &["n1", "n2", "n3"])
    })
    .await;
    println!("restart -> alive on both survivors: {t:?}");
    let addr = c2.local_addr().to_string();
    for g in [a, b] {
        let m = g.members();
        assert_eq!(m.len(), 2);
        assert!(m.iter().any(|m| m.node_id == "n3" && m.gossip_addr == addr));
    }
    for g in [a, b, &c2] {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_is_seen_as_dead_quickly() {
    let nodes = three_nodes().await;
    let (a, b, c) = (&nodes[0].0, &nodes[1].0, &nodes[2].0);
    let start = Instant::now();
    c.shutdown().await;
    wait_for(Duration::from_secs(3), "n3 dead after leave", || {
        state_of(a, "n3") == Some(MemberState::Dead) && state_of(b, "n3") == Some(MemberState::Dead)
    })
    .await;
    println!("shutdown -> dead on both survivors: {:?}", start.elapsed());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_under_cpu_hog_has_no_false_suspicion() {
    let nodes = three_nodes().await;
    let gs: Vec<&Gossip> = nodes.iter().map(|(g, _)| g).collect();
    let hog_for = Duration::from_secs(10);
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut x = 0u64;
                while start.elapsed() < hog_for {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                x
            })
        })
        .collect();
    let start = Instant::now();
    let mut samples = 0u32;
    while start.elapsed() < hog_for {
        for g in &gs {
            for m in g.members() {
                assert_eq!(
                    m.state,
                    MemberState::Alive,
                    "false suspicion after {:?}: {m:?}",
                    start.elapsed()
                );
            }
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for h in hogs {
        let _ = h.join();
    }
    println!("cpu hog: {samples} samples over {hog_for:?}, all alive");
    assert!(all_alive(&gs, &["n1", "n2", "n3"]));
    for g in gs {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_certificate_from_another_ca_cannot_join() {
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    generate_certs(dir_a.path(), &names(&["n1", "n2"])).expect("certs a");
    generate_certs(dir_b.path(), &names(&["n3"])).expect("certs b");
    for f in ["ca.pem", "ca.key", "n1.pem", "n1.key", "n2.pem", "n2.key"] {
        assert!(dir_a.path().join(f).is_file(), "{f}");
    }
    let tls = |dir: &std::path::Path, node: &str| TlsPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{node}.pem")),
        key: dir.join(format!("{node}.key")),
    };
    let mut c1 = config("n1", &[]);
    c1.tls = Some(tls(dir_a.path(), "n1"));
    let (n1, _r1) = start(c1).await;
    let mut c2 = config("n2", &[&n1]);
    c2.tls = Some(tls(dir_a.path(), "n2"));
    let (n2, _r2) = start(c2).await;
    wait_for(Duration::from_secs(10), "mTLS pair alive", || {
        all_alive(&[&n1, &n2], &["n1", "n2"])
    })
    .await;

    // Signed by another CA, but trusting cluster A's CA: still refused
    // (n1 rejects its client certificate).
    let mut c3 = config("n3", &[&n1, &n2]);
    c3.tls = Some(TlsPaths {
        ca: dir_a.path().join("ca.pem"),
        ..tls(dir_b.path(), "n3")
    });
    let (n3, _r3) = start(c3).await;
    // Fully foreign (its own CA).
    let mut c4 = config("n4", &[&n1]);
    c4.tls = Some(tls(dir_b.path(), "n3"));
    let (n4, _r4) = start(c4).await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    for g in [&n1, &n2] {
        let ids: Vec<String> = g.members().into_iter().map(|m| m.node_id).collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert!(!ids.iter().any(|i| i == "n3" || i == "n4"), "{ids:?}");
    }
    assert!(n3.members().is_empty());
    assert!(n4.members().is_empty());
    assert!(n3.counters().connect_failures > 0 || n1.counters().connect_failures > 0);
    assert!(n4.counters().connect_failures > 0);
    assert!(all_alive(&[&n1, &n2], &["n1", "n2"]));

    // A valid cluster certificate, but for another node id: it may not speak as "n5".
    let mut c5 = config("n5", &[&n1]);
    c5.tls = Some(tls(dir_a.path(), "n2"));
    let (n5, _r5) = start(c5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ids: Vec<String> = n1.members().into_iter().map(|m| m.node_id).collect();
    assert!(!ids.iter().any(|i| i == "n5"), "{ids:?}");
    assert!(n5.members().is_empty(), "{:?}", n5.members());
    assert!(n1.counters().identity_mismatches > 0);
    assert!(all_alive(&[&n1, &n2], &["n1", "n2"]));
    for g in [&n1, &n2, &n3, &n4, &n5] {
        g.shutdown().await;
    }
}

#[tokio::test]
async fn start_refuses_insecure_non_loopback_and_bad_tls_files() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let stats: StatsFn = Arc::new(Vec::new);
    let cfg = GossipConfig::new("x", SocketAddr::from(([0, 0, 0, 0], 0)), "h");
    let err = Gossip::start(cfg, stats.clone(), tx.clone()).await.err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.starts_with("gossip without [tls] is only allowed on a loopback address"),
        "{msg}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = GossipConfig::new("x", loopback(), "h");
    cfg.tls = Some(TlsPaths {
        ca: dir.path().join("missing.pem"),
        cert: dir.path().join("x.pem"),
        key: dir.path().join("x.key"),
    });
    assert!(matches!(
        Gossip::start(cfg.clone(), stats.clone(), tx.clone()).await,
        Err(GossipError::Io { .. })
    ));
    std::fs::write(dir.path().join("missing.pem"), b"not a pem").expect("write");
    assert!(matches!(
        Gossip::start(cfg, stats.clone(), tx.clone()).await,
        Err(GossipError::Tls(_))
    ));
    assert!(matches!(
        generate_certs(dir.path(), &["../evil".to_string()]),
        Err(GossipError::InvalidNodeId(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_dropped_and_counted() {
    let (a, _ra) = start(config("n1", &[])).await;
    let (b, _rb) = start(config("n2", &[&a])).await;
    wait_for(Duration::from_secs(10), "pair alive", || {
        all_alive(&[&a, &b], &["n1", "n2"])
    })
    .await;

    // Raw UDP noise at the QUIC port.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..300usize {
        let len = (next() % 1400) as usize + 1;
        let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 3 == 0 {
            buf[0] = 0xc3; // looks like a QUIC long header
        }
        let _ = sock.send_to(&buf, a.local_addr());
    }

    // Garbage over a valid QUIC connection.
    let (_server, client) =
        tls::quinn_configs(None, Arc::new(transport::transport_config())).expect("configs");
    let mut ep = quinn::Endpoint::client(loopback()).expect("client endpoint");
    ep.set_default_client_config(client);
    let conn = ep
        .connect(a.local_addr(), tls::SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");
    let before = a.counters();
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff, 1, 2, 3],       // unknown version
        vec![1, 0xff, 0xff, 0xff], // bad bincode
        frame::encode(&Frame::Swim(vec![0xde, 0xad, 0xbe, 0xef])).expect("enc"), // bad foca packet
        vec![],                    // empty
    ];
    for g in &garbage {
        conn.send_datagram(bytes::Bytes::from(g.clone()))
            .expect("datagram");
        let mut s = conn.open_uni().await.expect("uni");
        s.write_all(g).await.expect("write");
        s.finish().expect("finish");
    }
    let mut s = conn.open_uni().await.expect("uni");
    let _ = s.write_all(&vec![1u8; frame::MAX_FRAME + 100]).await;
    let _ = s.finish();
    // A stats frame over the bound.
    let big_stats = frame::encode(&Frame::Stats {
        node_id: "n2".into(),
        stats: vec![b'x'; 20 * 1024],
    })
    .expect("enc");
    let mut s = conn.open_uni().await.expect("uni");
    s.write_all(&big_stats).await.expect("write");
    s.finish().expect("finish");

    wait_for(Duration::from_secs(5), "garbage counted", || {
        let c = a.counters();
        c.invalid_frames >= before.invalid_frames + 7
            && c.oversized_dropped >= before.oversized_dropped + 2
    })
    .await;
    println!("after garbage: {:?}", a.counters());
    conn.close(quinn::VarInt::from_u32(0), b"bye");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(all_alive(&[&a, &b], &["n1", "n2"]));
    let s = a
        .members()
        .into_iter()
        .find(|m| m.node_id == "n2")
        .and_then(|m| m.stats);
    assert_eq!(
        s,
        Some(stats_for("n2")),
        "oversized stats must not replace good ones"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_peer_in_order() {
    let mut nodes = three_nodes().await;
    let n = 50u32;
    for i in 0..n {
        nodes[0].0.broadcast(format!("msg-{i}").into_bytes());
    }
    for (_, rx) in nodes.iter_mut().skip(1) {
        for i in 0..n {
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("broadcast arrives")
                .expect("channel open");
            assert_eq!(got, format!("msg-{i}").into_bytes());
        }
    }
    assert!(nodes[0].1.try_recv().is_err(), "no echo to the sender");
    // Oversized payloads are refused and counted.
    let before = nodes[0].0.counters().oversized_dropped;
    nodes[0].0.broadcast(vec![0u8; frame::MAX_FRAME]);
    assert_eq!(nodes[0].0.counters().oversized_dropped, before + 1);
    for (g, _) in &nodes {
        g.shutdown().await;
    }
}

// ---------------------------------------------------------------------
// Simulated time: 50 nodes, in-memory network, no sockets.

/// (deliver at, sequence, destination index, packet)
type InFlight = std::cmp::Reverse<(Instant, u64, usize, Vec<u8>)>;

struct SimNet {
    nodes: Vec<membership::Membership>,
    up: Vec<bool>,
    index: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    rng: u64,
    now: Instant,
}

impl SimNet {
    fn new(n: usize, params: &membership::SwimParams, start: Instant) -> Self {
        let mut nodes = Vec::new();
        let mut index = HashMap::new();
        for i in 0..n {
            let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 7400));
            let id = identity::NodeIdentity {
                node_id: format!("n{i}"),
                gossip_addr: addr,
                http_addr: format!("10.0.0.{}:8080", i + 1),
                bump: 1,
            };
            index.insert(addr, i);
            nodes.push(membership::Membership::new(id, params, 42 + i as u64));
        }
        Self {
            nodes,
            up: vec![true; n],
            index,
            queue: BinaryHeap::new(),
            seq: 0,
            rng: 7,
            now: start,
        }
    }

    fn flush(&mut self, from: usize) {
        for (dst, data) in self.nodes[from].drain_outbox() {
            let Some(&to) = self.index.get(&dst.gossip_addr) else {
                continue;
            };
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            // 0.5–2.5 ms one-way latency.
            let delay = Duration::from_micros(500 + self.rng % 2000);
            self.seq += 1;
            self.queue.push(std::cmp::Reverse((
                self.now + delay,
                self.seq,
                to,
                data.to_vec(),
            )));
        }
    }

    /// Runs until `until` (simulated), processing every event in order.
    fn run_until(&mut self, until: Instant) {
        loop {
            let next_msg = self.queue.peek().map(|std::cmp::Reverse((t, ..))| *t);
            let next_timer = (0..self.nodes.len())
                .filter(|&i| self.up[i])
                .filter_map(|i| self.nodes[i].next_deadline())
                .min();
            let next = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            while self
                .queue
                .peek()
                .is_some_and(|std::cmp::Reverse((t, ..))| *t <= self.now)
            {
                let Some(std::cmp::Reverse((_, _, to, data))) = self.queue.pop() else {
                    break;
                };
                if self.up[to] {
                    let _ = self.nodes[to].handle_packet(&data, self.now);
                    self.flush(to);
                }
            }
            for i in 0..self.nodes.len() {
                if self.up[i] && self.nodes[i].next_deadline().is_some_and(|t| t <= self.now) {
                    self.nodes[i].poll_timers(self.now);
                    self.flush(i);
                }
            }
        }
        self.now = self.now.max(until);
    }

    fn states(&self, i: usize) -> BTreeMap<String, MemberState> {
        self.nodes[i]
            .peers()
            .map(|p| (p.identity.node_id.clone(), p.state))
            .collect()
    }
}

#[test]
fn simulated_50_node_cluster_converges_and_detects_failure() {
    let n = 50;
    let params = membership::SwimParams {
        probe_period: Duration::from_millis(300),
        suspect_to_dead: Duration::from_millis(600),
    };
    let t0 = Instant::now();
    let mut sim = SimNet::new(n, &params, t0);
    let seed = sim.nodes[0].identity().clone();
    for i in 1..n {
        sim.nodes[i].announce(seed.clone(), t0);
        sim.flush(i);
    }
    let step = Duration::from_millis(50);
    let converged = |sim: &SimNet| {
        (0..n).all(|i| {
            let s = sim.states(i);
            s.len() == n - 1 && s.values().all(|st| *st == MemberState::Alive)
        })
    };
    while !converged(&sim) && sim.now - t0 < Duration::from_secs(60) {
        let until = sim.now + step;
        sim.run_until(until);
    }
    let convergence = sim.now - t0;
    println!("simulated 50 nodes: full membership everywhere after {convergence:?}");
    assert!(converged(&sim), "no convergence in 60 s simulated");
    assert!(convergence < Duration::from_secs(15), "{convergence:?}");

    // Steady state: no false suspicion over 30 simulated seconds.
    let steady_until = sim.now + Duration::from_secs(30);
    while sim.now < steady_until {
        let until = sim.now + step;
        sim.run_until(until);
        for i in 0..n {
            assert!(sim.states(i).values().all(|s| *s == MemberState::Alive));
        }
    }

    let victim = 17;
    sim.up[victim] = false;
    let failed_at = sim.now;
    let name = format!("n{victim}");
    let all_dead = |sim: &SimNet| {
        (0..n)
            .filter(|&i| i != victim)
            .all(|i| sim.states(i).get(&name) == Some(&MemberState::Dead))
    };
    let mut first_dead = None;
    while !all_dead(&sim) && sim.now - failed_at < Duration::from_secs(30) {
        let until = sim.now + Duration::from_millis(10);
        sim.run_until(until);
        if first_dead.is_none()
            && (0..n).any(|i| i != victim && sim.states(i).get(&name) == Some(&MemberState::Dead))
        {
            first_dead = Some(sim.now - failed_at);
        }
    }
    let detection = sim.now - failed_at;
    println!(
        "simulated 50 nodes: failed node dead on first survivor after {first_dead:?}, on all 49 after {detection:?}"
    );
    assert!(
        all_dead(&sim),
        "failure not detected by all in 30 s simulated"
    );
    assert!(detection < Duration::from_secs(5), "{detection:?}");
    for i in (0..n).filter(|&i| i != victim) {
        let s = sim.states(i);
        assert_eq!(
            s.values().filter(|s| **s == MemberState::Alive).count(),
            n - 2
        );
    }
}

// ---------------------------------------------------------------------
// Bench (ignored): `cargo test --lib gossip_bench -- --ignored --nocapture`

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench: prints bytes/s per node and detection time for 3, 10, 50 nodes"]
async fn gossip_bench_table() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let started = Instant::now();
    let mut rows = Vec::new();
    let sizes: Vec<usize> = std::env::var("GOSSIP_BENCH_NODES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![3, 10, 50]);
    for n in sizes {
        let mut nodes: Vec<Gossip> = Vec::new();
        let mut rxs = Vec::new();
        for i in 0..n {
            let seeds: Vec<&Gossip> = nodes.first().into_iter().collect();
            let (g, rx) = start(config(&format!("b{i}"), &seeds)).await;
            nodes.push(g);
            rxs.push(rx);
            if n > 25 {
                // Staggered starts (as in a rolling deploy): 50 simultaneous
                // joins in one debug-build process saturate 2 cores with
                // TLS handshakes.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let t_conv = Instant::now();
        let mut t_members = None;
        let conv = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if t_members.is_none()
                    && nodes.iter().all(|g| {
                        let m = g.members();
                        m.len() == n - 1 && m.iter().all(|m| m.state == MemberState::Alive)
                    })
                {
                    t_members = Some(t_conv.elapsed());
                }
                if nodes.iter().all(|g| {
                    let m = g.members();
                    m.len() == n - 1
                        && m.iter()
                            .all(|m| m.state == MemberState::Alive && m.stats.is_some())
                }) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        println!("n={n}: membership converged after {t_members:?}");
        if conv.is_err() {
            for g in &nodes {
                let m = g.members();
                let alive = m.iter().filter(|m| m.state == MemberState::Alive).count();
                let stats = m.iter().filter(|m| m.stats.is_some()).count();
                println!(
                    "  {:?}: known {} alive {} stats {} {:?}",
                    g.local_addr(),
                    m.len(),
                    alive,
                    stats,
                    g.counters()
                );
            }
        }
        let convergence = conv.ok().map(|_| t_conv.elapsed());
        let cpu0 = cpu_seconds();
        // Steady-state traffic over a 3 s window.
        let window = Duration::from_secs(3);
        let before: Vec<GossipCounters> = nodes.iter().map(Gossip::counters).collect();
        tokio::time::sleep(window).await;
        let after: Vec<GossipCounters> = nodes.iter().map(Gossip::counters).collect();
        let sent: u64 = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.bytes_sent - b.bytes_sent)
            .sum();
        let frames: u64 = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.frames_sent - b.frames_sent)
            .sum();
        let suspects: usize = nodes
            .iter()
            .map(|g| {
                g.members()
                    .iter()
                    .filter(|m| m.state != MemberState::Alive)
                    .count()
            })
            .sum();
        let cpu = (cpu_seconds() - cpu0) / window.as_secs_f64() * 100.0;
        let totals = after.iter().fold((0, 0, 0), |acc, c| {
            (
                acc.0 + c.send_dropped,
                acc.1 + c.connect_failures,
                acc.2 + c.invalid_frames,
            )
        });
        println!("n={n}: cpu {cpu:.0}% of one core, dropped/connect_failures/invalid = {totals:?}");
        let per_node = sent as f64 / n as f64 / window.as_secs_f64();
        let frames_per_node = frames as f64 / n as f64 / window.as_secs_f64();
        // Failure detection.
        let victim = nodes.pop().expect("nodes");
        let victim_id = format!("b{}", n - 1);
        victim.kill();
        let t_kill = Instant::now();
        let mut first = None;
        let det = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let dead = nodes
                    .iter()
                    .filter(|g| state_of(g, &victim_id) == Some(MemberState::Dead))
                    .count();
                if dead > 0 && first.is_none() {
                    first = Some(t_kill.elapsed());
                }
                if dead == nodes.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let detection = det.ok().map(|_| t_kill.elapsed());
        rows.push((
            n,
            convergence,
            per_node,
            frames_per_node,
            suspects,
            first,
            detection,
        ));
        for g in &nodes {
            g.kill();
        }
        drop(rxs);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!();
    println!("| nodes | converge | app bytes/s per node | frames/s per node | non-alive seen in steady state | dead on first survivor | dead on all survivors |");
    println!("|---|---|---|---|---|---|---|");
    for (n, conv, bps, fps, sus, first, all) in rows {
        println!("| {n} | {conv:?} | {bps:.0} | {fps:.1} | {sus} | {first:?} | {all:?} |");
    }
    println!("total bench time {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// User+system CPU time of this process (Linux), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the comm.
    (ticks(11) + ticks(12)) / 100.0
}
