//! The RESP front end of a real node, driven by redis-cli (Debian's redis-tools) and by raw
//! sockets: commands, errors, AUTH, RESP3, pipelining, and garbage that must get an error and
//! a disconnect, never a crash. The same key is visible over HTTP: both front ends call the
//! same facade.
#![allow(clippy::field_reassign_with_default)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use hybrid_cache::config::Config;
use hybrid_cache::server::node::Node;
use support::{encode_command, read_reply, Resp, RespConn};

async fn start(token: Option<&str>, max_value_bytes: usize) -> (Node, SocketAddr, String) {
    let mut config = Config::default();
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.resp_addr = Some("127.0.0.1:0".parse().unwrap());
    config.api_token = token.map(str::to_string);
    config.max_value_bytes = max_value_bytes;
    let node = Node::start(config).await.expect("node starts");
    let resp = node.resp_addr().expect("RESP is on");
    let base = format!("http://{}", node.http_addr());
    (node, resp, base)
}

/// Runs redis-cli against the node (human-readable replies: `(nil)`, `(integer) 1`, ...).
fn cli(addr: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "--no-raw",
        ])
        .args(args)
        .output()
        .expect("redis-cli runs (apt-get install redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn conn(addr: SocketAddr) -> RespConn {
    RespConn::connect(addr.port(), None, Duration::from_secs(10)).expect("connect")
}

fn bulk(s: &str) -> Resp {
    Resp::Bulk(Some(s.as_bytes().to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_commands_share_the_cache_with_http() {
    let (node, addr, base) = start(None, 8 * 1024 * 1024).await;
    let http = reqwest::Client::new();
    tokio::task::block_in_place(|| {
        assert_eq!(cli(addr, &["PING"]), "PONG");
        assert_eq!(cli(addr, &["SET", "permissions/u:1", "[\"read\"]"]), "OK");
        assert_eq!(cli(addr, &["GET", "permissions/u:1"]), "\"[\\\"read\\\"]\"");
        assert_eq!(cli(addr, &["SET", "roles/r", "admin", "EX", "60"]), "OK");
        assert_eq!(
            cli(addr, &["MGET", "roles/r", "roles/none", "permissions/u:1"]),
            "1) \"admin\"\n2) (nil)\n3) \"[\\\"read\\\"]\""
        );
        assert_eq!(
            cli(addr, &["EXISTS", "roles/r", "roles/none", "roles/r"]),
            "(integer) 2"
        );
        assert_eq!(cli(addr, &["DEL", "roles/r", "roles/none"]), "(integer) 1");
        assert_eq!(cli(addr, &["GET", "roles/r"]), "(nil)");
    });
    // What RESP wrote, HTTP reads from L1, and the other way round.
    let r = http
        .get(format!("{base}/v1/cache/permissions/u:1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache"], "L1");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"[\"read\"]");
    let r = http
        .put(format!("{base}/v1/cache/menus/m"))
        .body("from-http")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    tokio::task::block_in_place(|| {
        assert_eq!(cli(addr, &["GET", "menus/m"]), "\"from-http\"");
        // Errors: the facade's, with HTTP's messages.
        assert_eq!(
            cli(addr, &["GET", "nope/k"]),
            "(error) ERR unknown category `nope`"
        );
        assert!(cli(addr, &["GET", "no-slash"]).starts_with("(error) ERR invalid key"));
        assert!(cli(addr, &["SET", "menus/k", "v", "EX", "0"]).contains("invalid expire time"));
        assert!(cli(addr, &["SET", "menus/k", "v", "NX"]).contains("syntax error"));
        assert!(cli(addr, &["GET"]).contains("wrong number of arguments for 'get'"));
        assert!(cli(addr, &["FLUSHALL"]).starts_with("(error) ERR unknown command 'flushall'"));
        let long_key = format!("menus/{}", "k".repeat(600));
        assert!(cli(addr, &["SET", &long_key, "v"]).contains("exceeds the limit"));
        // RESP3: HELLO 3 answers a map, nil is RESP3's null.
        let hello = cli(addr, &["-3", "HELLO", "3"]);
        assert!(hello.contains("\"proto\" => (integer) 3"), "{hello}");
        assert_eq!(cli(addr, &["-3", "GET", "menus/none"]), "(nil)");
        assert_eq!(cli(addr, &["-3", "GET", "menus/m"]), "\"from-http\"");
        // What clients ask around the key commands.
        assert!(cli(addr, &["INFO"]).contains("redis_version:"));
        assert!(cli(addr, &["COMMAND", "COUNT"]).starts_with("(integer) "));
        assert_eq!(cli(addr, &["CLIENT", "SETNAME", "me"]), "OK");
        assert_eq!(
            cli(addr, &["CLIENT", "SETINFO", "LIB-NAME", "redis-cli"]),
            "OK"
        );
    });
    // HELLO 3 switches the connection's encoding; HELLO 2 switches back.
    tokio::task::block_in_place(|| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&encode_command(&[b"HELLO", b"3"])).unwrap();
        s.write_all(&encode_command(&[b"GET", b"menus/none"]))
            .unwrap();
        s.write_all(&encode_command(&[b"HELLO", b"2"])).unwrap();
        s.write_all(&encode_command(&[b"GET", b"menus/none"]))
            .unwrap();
        s.write_all(&encode_command(&[b"HELLO", b"4"])).unwrap();
        s.write_all(&encode_command(&[b"QUIT"])).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("%7\r\n"), "RESP3 map: {text}");
        assert!(
            text.contains("_\r\n*14\r\n"),
            "RESP3 null then RESP2 array: {text}"
        );
        assert!(
            text.ends_with("$-1\r\n-NOPROTO unsupported protocol version\r\n+OK\r\n"),
            "{text}"
        );
    });
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_api_token() {
    let (node, addr, _) = start(Some("s3cret"), 8 * 1024 * 1024).await;
    tokio::task::block_in_place(|| {
        let mut c = conn(addr);
        assert_eq!(
            c.command(&[b"SET", b"roles/a", b"1"]).unwrap(),
            Resp::Error("NOAUTH Authentication required.".into())
        );
        assert_eq!(
            c.command(&[b"DEL", b"roles/a"]).unwrap(),
            Resp::Error("NOAUTH Authentication required.".into())
        );
        // Reads are open, as on HTTP.
        assert_eq!(c.command(&[b"GET", b"roles/a"]).unwrap(), Resp::Bulk(None));
        assert!(matches!(
            c.command(&[b"AUTH", b"wrong"]).unwrap(),
            Resp::Error(e) if e.starts_with("WRONGPASS")
        ));
        assert!(matches!(
            c.command(&[b"AUTH", b"someone", b"s3cret"]).unwrap(),
            Resp::Error(e) if e.starts_with("WRONGPASS")
        ));
        assert_eq!(
            c.command(&[b"AUTH", b"s3cret"]).unwrap(),
            Resp::Simple("OK".into())
        );
        assert_eq!(
            c.command(&[b"SET", b"roles/a", b"1"]).unwrap(),
            Resp::Simple("OK".into())
        );
        // HELLO with AUTH authenticates and switches to RESP3 in one go.
        let mut c = conn(addr);
        assert!(matches!(
            c.command(&[b"HELLO", b"3", b"AUTH", b"default", b"nope"]).unwrap(),
            Resp::Error(e) if e.starts_with("WRONGPASS")
        ));
        let mut req = encode_command(&[b"HELLO", b"3", b"AUTH", b"default", b"s3cret"]);
        req.extend(encode_command(&[b"DEL", b"roles/a"]));
        req.extend(encode_command(&[b"QUIT"]));
        let raw = send_garbage(addr, &req);
        assert!(raw.starts_with("%7\r\n"), "{raw}");
        assert!(raw.ends_with(":1\r\n+OK\r\n"), "{raw}");
        // redis-cli's own `-a`.
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &addr.port().to_string(),
                "-a",
                "s3cret",
                "--no-auth-warning",
            ])
            .args(["SET", "roles/b", "2"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    });
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_answer_in_order() {
    let (node, addr, _) = start(None, 8 * 1024 * 1024).await;
    tokio::task::block_in_place(|| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut batch = Vec::new();
        for i in 0..200 {
            let key = format!("general/p{i}");
            let val = format!("v{i}");
            batch.extend(encode_command(&[b"SET", key.as_bytes(), val.as_bytes()]));
            batch.extend(encode_command(&[b"GET", key.as_bytes()]));
        }
        s.write_all(&batch).unwrap();
        let mut r = std::io::BufReader::new(s);
        for i in 0..200 {
            assert_eq!(read_reply(&mut r).unwrap(), Resp::Simple("OK".into()));
            assert_eq!(read_reply(&mut r).unwrap(), bulk(&format!("v{i}")));
        }
    });
    node.shutdown().await;
}

/// Sends `bytes` on a fresh connection, then closes its sending side; returns everything
/// the node answered before the connection ended.
fn send_garbage(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The node may close mid-write once it has seen enough garbage.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset after the node closed with our garbage unread.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading from the node: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_input_get_an_error_and_a_disconnect() {
    let max_value = 1024;
    let (node, addr, _) = start(None, max_value).await;
    tokio::task::block_in_place(|| {
        // Huge declared lengths are refused before anything is buffered.
        assert_eq!(
            send_garbage(addr, b"*1\r\n$99999999999\r\n"),
            "-ERR Protocol error: invalid bulk length\r\n"
        );
        assert_eq!(
            send_garbage(addr, b"*99999999999\r\n"),
            "-ERR Protocol error: invalid multibulk length\r\n"
        );
        // Not a command: nested arrays, integers, binary noise.
        assert!(send_garbage(addr, b"*1\r\n*1\r\n$1\r\nx\r\n").starts_with("-ERR Protocol error"));
        assert!(send_garbage(addr, b"*2\r\n:1\r\n:2\r\n").starts_with("-ERR Protocol error"));
        assert!(send_garbage(addr, b"*1\r\n$3\r\nabcdefgh").starts_with("-ERR Protocol error"));
        let noise: Vec<u8> = (0..70_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert!(send_garbage(addr, &noise).contains("-ERR"));
        // Replies before the garbage are still delivered, in order.
        let mut pipelined = encode_command(&[b"PING"]);
        pipelined.extend_from_slice(b"*1\r\n$-7\r\n");
        assert_eq!(
            send_garbage(addr, &pipelined),
            "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
        );
        // A value a little over the limit gets the facade's error and the connection lives.
        let mut c = conn(addr);
        let big = vec![b'x'; max_value + 1];
        assert!(matches!(
            c.command(&[b"SET", b"general/big", &big]).unwrap(),
            Resp::Error(e) if e.contains("exceeds the limit of 1024 bytes")
        ));
        assert_eq!(c.command(&[b"PING"]).unwrap(), Resp::Simple("PONG".into()));
        // Far over the limit: refused by the framing, disconnected.
        let huge = vec![b'x'; max_value + 128 * 1024];
        let reply = send_garbage(addr, &encode_command(&[b"SET", b"general/big", &huge]));
        assert!(reply.starts_with("-ERR Protocol error"), "{reply}");
        // The node still serves everyone else.
        assert_eq!(
            conn(addr).command(&[b"PING"]).unwrap(),
            Resp::Simple("PONG".into())
        );
    });
    node.shutdown().await;
}
