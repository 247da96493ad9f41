//! Self-test of the test harness (`hc-testkit`, re-exported by `tests/support/mod.rs`): a private
//! redis-server can be started, killed, restarted on the same port, and used
//! to inject raw pub/sub payloads.

mod support;

use std::time::Duration;
use support::{free_port, RedisServer, Resp, RespConn, FORBIDDEN_PORT};

#[test]
fn free_port_is_never_the_system_redis_port() {
    // (Bindability is not asserted: tests in this binary run in parallel and
    // may legitimately take the port between probe and check.)
    for _ in 0..20 {
        let p = free_port();
        assert_ne!(p, FORBIDDEN_PORT);
        assert_ne!(p, 0);
    }
}

#[test]
fn start_set_get_kill_restart() {
    let mut r = RedisServer::start();
    let port = r.port();
    assert_ne!(port, FORBIDDEN_PORT);
    assert_eq!(r.url(), format!("redis://127.0.0.1:{port}/0"));
    assert!(r.ping());
    assert!(r.is_running());

    assert_eq!(
        r.command(&[b"SET", b"k", b"v"]).unwrap(),
        Resp::Simple("OK".into())
    );
    assert_eq!(
        r.command(&[b"GET", b"k"]).unwrap(),
        Resp::Bulk(Some(b"v".to_vec()))
    );
    assert_eq!(r.keys("*"), vec!["k".to_string()]);

    // A connection open across the kill sees the server go away.
    let mut held = r.conn().unwrap();
    r.kill();
    assert!(!r.is_running());
    assert!(!r.ping(), "killed server must not answer");
    assert!(held.command(&[b"PING"]).is_err());
    r.kill(); // idempotent

    r.restart();
    assert_eq!(r.port(), port, "restart keeps the port");
    assert!(r.ping());
    // No persistence: the data is gone.
    assert_eq!(r.command(&[b"GET", b"k"]).unwrap(), Resp::Bulk(None));

    // restart() of a running server works too.
    r.restart();
    assert!(r.ping());
}

#[test]
fn two_servers_get_distinct_ports() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    assert!(a.ping() && b.ping());
}

#[test]
fn drop_kills_the_child() {
    let r = RedisServer::start();
    let port = r.port();
    drop(r);
    assert!(RespConn::connect(port, None, Duration::from_millis(500))
        .and_then(|mut c| c.command(&[b"PING"]))
        .is_err());
}

#[test]
fn password_is_required_and_in_url() {
    let r = RedisServer::start_with_password("s3cret");
    assert_eq!(r.url(), format!("redis://:s3cret@127.0.0.1:{}/0", r.port()));
    assert!(r.ping(), "harness authenticates itself");
    let mut anon = RespConn::connect(r.port(), None, Duration::from_secs(2)).unwrap();
    match anon.command(&[b"GET", b"x"]).unwrap() {
        Resp::Error(e) => assert!(e.starts_with("NOAUTH"), "{e}"),
        other => panic!("expected NOAUTH, got {other:?}"),
    }
}

#[test]
fn publish_raw_delivers_arbitrary_bytes() {
    let r = RedisServer::start();
    let mut sub = r.conn().unwrap();
    sub.send(&[b"SUBSCRIBE", b"hc:test"]).unwrap();
    match sub.read().unwrap() {
        Resp::Array(Some(items)) => assert_eq!(items[0], Resp::Bulk(Some(b"subscribe".to_vec()))),
        other => panic!("unexpected subscribe reply {other:?}"),
    }
    assert!(support::wait_until(Duration::from_secs(5), || r
        .subscribers("hc:test")
        == 1));

    let garbage: Vec<u8> = vec![0xff, 0x00, b'\r', b'\n', 0x7f, 0x80, 0x01];
    assert_eq!(r.publish_raw("hc:test", &garbage), 1);
    match sub.read().unwrap() {
        Resp::Array(Some(items)) => {
            assert_eq!(items[0], Resp::Bulk(Some(b"message".to_vec())));
            assert_eq!(items[1], Resp::Bulk(Some(b"hc:test".to_vec())));
            assert_eq!(items[2], Resp::Bulk(Some(garbage)));
        }
        other => panic!("unexpected message {other:?}"),
    }
    assert_eq!(r.publish_raw("hc:nobody", b"x"), 0);
}

#[test]
fn pause_and_resume() {
    let r = RedisServer::start();
    r.pause();
    let mut c = RespConn::connect(r.port(), None, Duration::from_millis(300)).unwrap();
    assert!(c.command(&[b"PING"]).is_err(), "paused server times out");
    r.resume();
    assert!(support::wait_until(Duration::from_secs(5), || r.ping()));
}
