//! Tests of the configuration layers, precedence and validation messages.

use super::*;
use std::collections::HashMap;
use std::time::Duration;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn file(text: &str) -> FileConfig {
    toml::from_str(text).unwrap()
}

#[test]
fn defaults_are_the_seed_categories_on_8080_without_redis() {
    let c = Config::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
    assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
    assert!(c.redis.is_none());
    assert_eq!(c.categories.len(), 5);
    assert_eq!(c.categories["permissions"].ttl_secs, 600);
    assert_eq!(c.categories["roles"].max_entries, 200);
    assert_eq!(c.categories["prompts"].ttl_secs, 3600);
    assert_eq!(c.env, "development");
}

#[test]
fn node_entry_selects_addresses_and_peers() {
    let f = file(
        r#"
        namespace = "t"
        cluster_secret = "sixteen-byte-secret"
        [[nodes]]
        id = "n1"
        http = "127.0.0.1:8081"
        gossip = "127.0.0.1:7401"
        [[nodes]]
        id = "n2"
        http = "127.0.0.1:8082"
        gossip = "127.0.0.1:7402"
        "#,
    );
    let flags = Flags {
        node_id: Some("n2".into()),
        ..Flags::default()
    };
    let c = Config::resolve(&flags, &env_of(&[]), f).unwrap();
    assert_eq!(c.http_addr.to_string(), "127.0.0.1:8082");
    assert_eq!(c.gossip_addr.unwrap().to_string(), "127.0.0.1:7402");
    assert_eq!(c.peers, vec!["127.0.0.1:7401".to_string()]);
    assert_eq!(c.namespace, "t");
}

#[test]
fn precedence_flags_over_env_over_file() {
    let f = file("http = \"127.0.0.1:1000\"\nnamespace = \"file\"\n");
    let env = env_of(&[("HC_HTTP", "127.0.0.1:2000"), ("HC_NAMESPACE", "env")]);
    let c = Config::resolve(&Flags::default(), &env, f).unwrap();
    assert_eq!(c.http_addr.port(), 2000);
    assert_eq!(c.namespace, "env");
    let f = file("http = \"127.0.0.1:1000\"\n");
    let flags = Flags {
        http: Some("127.0.0.1:3000".into()),
        ..Flags::default()
    };
    let c = Config::resolve(&flags, &env, f).unwrap();
    assert_eq!(c.http_addr.port(), 3000);
}

#[test]
fn resp_address_from_file_env_or_flag() {
    let c = Config::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
    assert_eq!(c.resp_addr, None, "RESP is off unless asked for");
    let f = || file("resp = \"127.0.0.1:6400\"\n");
    let c = Config::resolve(&Flags::default(), &env_of(&[]), f()).unwrap();
    assert_eq!(c.resp_addr.unwrap().port(), 6400);
    let env = env_of(&[("HC_RESP", "127.0.0.1:6401")]);
    let c = Config::resolve(&Flags::default(), &env, f()).unwrap();
    assert_eq!(c.resp_addr.unwrap().port(), 6401);
    let flags = Flags {
        resp: Some("127.0.0.1:6402".into()),
        ..Flags::default()
    };
    let c = Config::resolve(&flags, &env, f()).unwrap();
    assert_eq!(c.resp_addr.unwrap().port(), 6402);
    let env = env_of(&[("HC_RESP", "nope")]);
    assert!(Config::resolve(&Flags::default(), &env, f()).is_err());
}

#[test]
fn original_redis_variables_are_honoured() {
    let env = env_of(&[
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_PORT", "6380"),
        ("REDIS_PASSWORD", "s3cret"),
        ("REDIS_DB", "2"),
        ("REDIS_SSL", "true"),
    ]);
    let c = Config::resolve(&Flags::default(), &env, FileConfig::default()).unwrap();
    assert_eq!(
        c.redis,
        Some(RedisTarget::Parts {
            host: "cache.internal".into(),
            port: 6380,
            password: Some("s3cret".into()),
            db: 2,
            tls: true
        })
    );
    let env = env_of(&[("REDIS_URL", "redis://127.0.0.1:1/0"), ("REDIS_HOST", "x")]);
    let c = Config::resolve(&Flags::default(), &env, FileConfig::default()).unwrap();
    assert!(matches!(c.redis, Some(RedisTarget::Url { .. })));
}

#[test]
fn sentinel_and_cluster_targets_from_env_and_file() {
    let env = env_of(&[
        ("REDIS_SENTINELS", "127.0.0.1:26379, 127.0.0.1:26380"),
        ("REDIS_SENTINEL_MASTER", "mymaster"),
        ("REDIS_PASSWORD", "pw"),
        ("REDIS_DB", "2"),
        ("HC_L2_MIN_REPLICAS", "1"),
    ]);
    let c = Config::resolve(&Flags::default(), &env, FileConfig::default()).unwrap();
    assert_eq!(
        c.redis,
        Some(RedisTarget::Sentinel {
            sentinels: vec!["127.0.0.1:26379".into(), "127.0.0.1:26380".into()],
            master: "mymaster".into(),
            password: Some("pw".into()),
            db: 2,
        })
    );
    assert_eq!(c.l2_min_replicas, 1);
    let e = Config::resolve(
        &Flags::default(),
        &env_of(&[("REDIS_SENTINELS", "127.0.0.1:1")]),
        FileConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("REDIS_SENTINEL_MASTER"), "{e}");
    let env = env_of(&[("REDIS_CLUSTER_NODES", "127.0.0.1:7000,127.0.0.1:7001")]);
    let c = Config::resolve(&Flags::default(), &env, FileConfig::default()).unwrap();
    assert!(matches!(c.redis, Some(RedisTarget::Cluster { ref nodes, .. }) if nodes.len() == 2));
    let e = Config::resolve(
        &Flags::default(),
        &env_of(&[("REDIS_CLUSTER_NODES", "nohostport")]),
        FileConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("redis.cluster_nodes"), "{e}");

    let file: FileConfig = toml::from_str(
        "l2_min_replicas = 1\n[redis]\nsentinels = [\"10.0.0.1:26379\"]\nmaster_name = \"m\"\n",
    )
    .unwrap();
    let c = Config::resolve(&Flags::default(), &env_of(&[]), file).unwrap();
    assert!(matches!(c.redis, Some(RedisTarget::Sentinel { ref master, .. }) if master == "m"));
    assert_eq!(c.l2_min_replicas, 1);
    let file: FileConfig =
        toml::from_str("[redis]\ncluster_nodes = [\"10.0.0.1:7000\"]\n").unwrap();
    let c = Config::resolve(&Flags::default(), &env_of(&[]), file).unwrap();
    assert!(matches!(c.redis, Some(RedisTarget::Cluster { .. })));
    for bad in [
        "[redis]\nsentinels = [\"h:1\"]\n",
        "[redis]\nurl = \"redis://h:1\"\ncluster_nodes = [\"h:1\"]\n",
        "[redis]\nurl = \"redis://h:1\"\nmaster_name = \"m\"\n",
        "l2_min_replicas = 17\n[redis]\nurl = \"redis://h:1\"\n",
    ] {
        let file: FileConfig = toml::from_str(bad).unwrap();
        assert!(
            Config::resolve(&Flags::default(), &env_of(&[]), file).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn gossip_without_tls_needs_a_cluster_secret() {
    let gossip = [("HC_GOSSIP", "127.0.0.1:7400")];
    let e = Config::resolve(&Flags::default(), &env_of(&gossip), FileConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cluster_secret"), "{e}");
    let c = Config::resolve(
        &Flags::default(),
        &env_of(&[gossip[0], ("HC_CLUSTER_SECRET", "from-env-0123456789")]),
        file("cluster_secret = \"from-file-0123456789\"\ndead_forget_secs = 5\n"),
    )
    .unwrap();
    assert_eq!(c.cluster_secret.as_deref(), Some("from-env-0123456789"));
    assert_eq!(c.gossip_dead_forget, Duration::from_secs(5));
    let c = Config::resolve(
        &Flags::default(),
        &env_of(&gossip),
        file("cluster_secret = \"from-file-0123456789\"\n"),
    )
    .unwrap();
    assert_eq!(c.cluster_secret.as_deref(), Some("from-file-0123456789"));
    assert_eq!(c.gossip_dead_forget, Duration::from_secs(60));
    let e = Config::resolve(
        &Flags::default(),
        &env_of(&[("HC_DEAD_FORGET_SECS", "0")]),
        FileConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("dead_forget_secs"), "{e}");
}

#[test]
fn errors_name_the_field() {
    let err = |f: FileConfig, env: &[(&str, &str)]| {
        Config::resolve(&Flags::default(), &env_of(env), f)
            .unwrap_err()
            .to_string()
    };
    assert!(err(
        file("[categories.roles]\nttl_secs = 5\nmax_entries = 0\n"),
        &[]
    )
    .contains("categories.roles.max_entries"));
    assert!(err(file("http = \"nonsense\"\n"), &[]).contains("`http`"));
    assert!(err(
        FileConfig::default(),
        &[("REDIS_PORT", "x"), ("REDIS_HOST", "h")]
    )
    .contains("REDIS_PORT"));
    assert!(err(FileConfig::default(), &[("REDIS_URL", "http://x")]).contains("redis.url"));
    assert!(err(FileConfig::default(), &[("HC_GOSSIP", "0.0.0.0:7400")]).contains("[tls]"));
    assert!(err(FileConfig::default(), &[("HC_TLS_CA", "x")]).contains("HC_TLS_CA"));
    assert!(err(FileConfig::default(), &[("HC_L1_MAX_BYTES", "10")]).contains("l1_max_bytes"));
    assert!(err(FileConfig::default(), &[("HC_MAX_IN_FLIGHT", "0")]).contains("max_in_flight"));
    assert!(
        err(FileConfig::default(), &[("HC_MAILBOX_CAPACITY", "0")]).contains("mailbox_capacity")
    );
    assert!(err(
        file("[categories.roles]\nttl_secs = 5\nmax_entries = 9\nmax_bytes = 0\n"),
        &[]
    )
    .contains("categories.roles.max_bytes"));
    let unknown = toml::from_str::<FileConfig>("bogus = 1\n").unwrap_err();
    assert!(unknown.to_string().contains("bogus"));
}

#[test]
fn byte_budgets_never_exceed_the_node_cap() {
    let mib = 1024 * 1024;
    let c = Config::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
    assert_eq!(c.l1_max_bytes, 256 * mib);
    let b = l1_byte_budgets(&c.categories, c.l1_max_bytes);
    assert_eq!(b.len(), 5);
    assert!(b.values().all(|v| *v == 256 * mib / 5), "{b:?}");
    // Explicit asks within the cap are kept.
    let f = file("l1_max_bytes = 104857600\n[categories.roles]\nttl_secs = 5\nmax_entries = 9\nmax_bytes = 1048576\n");
    let c = Config::resolve(&Flags::default(), &env_of(&[]), f).unwrap();
    let b = l1_byte_budgets(&c.categories, c.l1_max_bytes);
    assert_eq!(b["roles"], mib);
    assert!(b.values().sum::<u64>() <= 100 * mib);
    // Asks over the cap are scaled down proportionally.
    let f = file("[categories.roles]\nttl_secs = 5\nmax_entries = 9\nmax_bytes = 1073741824\n");
    let env = env_of(&[("HC_L1_MAX_BYTES", "134217728")]);
    let c = Config::resolve(&Flags::default(), &env, f).unwrap();
    let b = l1_byte_budgets(&c.categories, c.l1_max_bytes);
    assert!(b.values().sum::<u64>() <= 128 * mib, "{b:?}");
    assert!(b["roles"] > 10 * b["menus"], "{b:?}");
}

#[test]
fn http_limits_from_file_and_env() {
    let f = file("max_connections = 100\nheader_read_timeout_ms = 250\nmax_in_flight = 7\n");
    let env = env_of(&[
        ("HC_BODY_READ_TIMEOUT_MS", "300"),
        ("HC_MAX_IN_FLIGHT", "9"),
    ]);
    let c = Config::resolve(&Flags::default(), &env, f).unwrap();
    let l = c.http_limits;
    assert_eq!(l.max_connections, 100);
    assert_eq!(l.header_read_timeout, Duration::from_millis(250));
    assert_eq!(l.body_read_timeout, Duration::from_millis(300));
    assert_eq!(l.max_in_flight, 9);
    assert_eq!(l.request_timeout, Duration::from_secs(15));
}

#[test]
fn gossip_timing_from_file_and_env() {
    let c = Config::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
    assert_eq!(c.gossip_probe_period, Duration::from_millis(200));
    assert_eq!(c.gossip_suspect_timeout, Duration::from_millis(600));
    let f = || file("gossip_probe_period_ms = 300\ngossip_suspect_timeout_ms = 900\n");
    let c = Config::resolve(&Flags::default(), &env_of(&[]), f()).unwrap();
    assert_eq!(c.gossip_probe_period, Duration::from_millis(300));
    assert_eq!(c.gossip_suspect_timeout, Duration::from_millis(900));
    let env = env_of(&[
        ("HC_GOSSIP_PROBE_PERIOD_MS", "150"),
        ("HC_GOSSIP_SUSPECT_TIMEOUT_MS", "500"),
    ]);
    let c = Config::resolve(&Flags::default(), &env, f()).unwrap();
    assert_eq!(c.gossip_probe_period, Duration::from_millis(150));
    assert_eq!(c.gossip_suspect_timeout, Duration::from_millis(500));
    let env = env_of(&[("HC_GOSSIP_PROBE_PERIOD_MS", "0")]);
    let e = Config::resolve(&Flags::default(), &env, FileConfig::default());
    assert!(e.is_err(), "{e:?}");
    let env = env_of(&[("HC_GOSSIP_SUSPECT_TIMEOUT_MS", "soon")]);
    let e = Config::resolve(&Flags::default(), &env, FileConfig::default());
    assert!(e.is_err(), "{e:?}");
}

#[test]
fn test_hooks_are_off_unless_hc_test_hooks_is_set() {
    let resolve = |pairs: &[(&str, &str)]| {
        Config::resolve(&Flags::default(), &env_of(pairs), FileConfig::default())
    };
    assert!(!resolve(&[]).unwrap().test_hooks);
    assert!(!resolve(&[("HC_TEST_HOOKS", "0")]).unwrap().test_hooks);
    assert!(resolve(&[("HC_TEST_HOOKS", "1")]).unwrap().test_hooks);
    let err = resolve(&[("HC_TEST_HOOKS", "maybe")]).unwrap_err();
    assert!(err.to_string().contains("HC_TEST_HOOKS"), "{err}");
}

#[test]
fn allow_persistent_redis_is_off_by_default_and_env_beats_file() {
    let c = Config::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
    assert!(!c.allow_persistent_redis);
    let text = "[redis]\nurl = \"redis://h:1\"\nallow_persistent_redis = true\n";
    let c = Config::resolve(&Flags::default(), &env_of(&[]), file(text)).unwrap();
    assert!(c.allow_persistent_redis);
    let env = env_of(&[("HC_ALLOW_PERSISTENT_REDIS", "false")]);
    let c = Config::resolve(&Flags::default(), &env, file(text)).unwrap();
    assert!(!c.allow_persistent_redis);
    let env = env_of(&[("HC_ALLOW_PERSISTENT_REDIS", "true")]);
    let c = Config::resolve(&Flags::default(), &env, FileConfig::default()).unwrap();
    assert!(c.allow_persistent_redis);
    // The table may hold only the opt-in, the topology coming from the environment.
    let env = env_of(&[("REDIS_URL", "redis://h:2")]);
    let c = Config::resolve(
        &Flags::default(),
        &env,
        file("[redis]\nallow_persistent_redis = true\n"),
    )
    .unwrap();
    assert!(c.allow_persistent_redis && matches!(c.redis, Some(RedisTarget::Url { .. })));
    let env = env_of(&[("HC_ALLOW_PERSISTENT_REDIS", "maybe")]);
    let e = Config::resolve(&Flags::default(), &env, FileConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("HC_ALLOW_PERSISTENT_REDIS"), "{e}");
}

#[test]
fn near_cache_settings_are_off_by_default_and_checked() {
    let c = Config::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
    for cat in c.categories.values() {
        assert_eq!(cat.ttl_jitter, 0.0);
        assert_eq!(cat.negative_ttl_secs, None);
    }
    let f = file("[categories.menus]\nttl_secs = 60\nmax_entries = 9\nttl_jitter = 0.25\n");
    let c = Config::resolve(&Flags::default(), &env_of(&[]), f).unwrap();
    assert_eq!(c.categories["menus"].ttl_jitter, 0.25);
    for bad in ["1.5", "-0.1"] {
        let f = file(&format!(
            "[categories.menus]\nttl_secs = 60\nmax_entries = 9\nttl_jitter = {bad}\n"
        ));
        let e = Config::resolve(&Flags::default(), &env_of(&[]), f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("categories.menus.ttl_jitter"), "{e}");
    }
    let f = file("[categories.menus]\nttl_secs = 60\nmax_entries = 9\nnegative_ttl_secs = 5\n");
    let c = Config::resolve(&Flags::default(), &env_of(&[]), f).unwrap();
    assert_eq!(
        c.categories["menus"].negative_ttl(),
        Some(Duration::from_secs(5))
    );
    let f = file("[categories.menus]\nttl_secs = 60\nmax_entries = 9\nnegative_ttl_secs = 0\n");
    let e = Config::resolve(&Flags::default(), &env_of(&[]), f)
        .unwrap_err()
        .to_string();
    assert!(e.contains("categories.menus.negative_ttl_secs"), "{e}");
    let base = "[categories.menus]\nttl_secs = 60\nmax_entries = 9\n";
    let c = Config::resolve(&Flags::default(), &env_of(&[]), file(base)).unwrap();
    assert_eq!(c.categories["menus"].fail_safe_max_age(), None);
    assert_eq!(
        c.categories["menus"].load_timeout(),
        Duration::from_secs(30)
    );
    assert_eq!(c.categories["menus"].refresh_after(), None);
    let ok = format!(
        "{base}fail_safe_max_age_secs = 3600\nload_soft_timeout_ms = 200\nrefresh_after_secs = 59\n"
    );
    let c = Config::resolve(&Flags::default(), &env_of(&[]), file(&ok)).unwrap();
    assert_eq!(
        c.categories["menus"].refresh_after(),
        Some(Duration::from_secs(59))
    );
    assert_eq!(
        c.categories["menus"].fail_safe_max_age(),
        Some(Duration::from_secs(3600))
    );
    for (bad, field) in [
        ("fail_safe_max_age_secs = 0\n", "fail_safe_max_age_secs"),
        ("refresh_after_secs = 0\n", "refresh_after_secs"),
        ("refresh_after_secs = 60\n", "refresh_after_secs"),
        ("refresh_after_secs = 61\n", "refresh_after_secs"),
        ("load_timeout_ms = 0\n", "load_timeout_ms"),
        ("load_soft_timeout_ms = 200\n", "load_soft_timeout_ms"),
        (
            "fail_safe_max_age_secs = 9\nload_soft_timeout_ms = 40000\n",
            "load_soft_timeout_ms",
        ),
    ] {
        let e = Config::resolve(
            &Flags::default(),
            &env_of(&[]),
            file(&format!("{base}{bad}")),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(&format!("categories.menus.{field}")), "{e}");
    }
}

#[test]
fn warm_up_is_off_by_default_and_checked() {
    let c = Config::resolve(&Flags::default(), &env_of(&[]), FileConfig::default()).unwrap();
    for cat in c.categories.values() {
        assert!(!cat.warm_up());
        assert_eq!(cat.warm_up_sample(), Duration::from_secs(10));
    }
    let base = "[categories.menus]\nttl_secs = 60\nmax_entries = 9\n";
    let ok = format!("{base}warm_up_keys = 200\nwarm_up_sample_ms = 500\n");
    let c = Config::resolve(&Flags::default(), &env_of(&[]), file(&ok)).unwrap();
    assert_eq!(c.categories["menus"].warm_up_keys, 200);
    assert_eq!(
        c.categories["menus"].warm_up_sample(),
        Duration::from_millis(500)
    );
    for (bad, field) in [
        ("warm_up_keys = 10001\n", "warm_up_keys"),
        ("warm_up_sample_ms = 99\n", "warm_up_sample_ms"),
    ] {
        let e = Config::resolve(
            &Flags::default(),
            &env_of(&[]),
            file(&format!("{base}{bad}")),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(&format!("categories.menus.{field}")), "{e}");
    }
}
