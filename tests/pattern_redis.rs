//! L1 and L2 select exactly the same keys for every pattern (CONTRACT §3), checked against a
//! private `redis-server` (free loopback port, never 6379): random keys and random globs over
//! an alphabet of glob metacharacters, braces, commas, spaces and non-ASCII are written through
//! `L2::set`, invalidated through `L2::invalidate_pattern` (Redis `SCAN MATCH` prefilter + the
//! Rust matcher) and through `L1Category::invalidate`, and the keys each level lost are compared.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hybrid_cache::config::{CategoryConfig, RedisTarget};
use hybrid_cache::internals::L1Category;
use hybrid_cache::internals::L2;
use hybrid_cache::pattern::{Pattern, PatternKind};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::RedisServer;

/// Glob metacharacters, other punctuation, a space and multi-byte characters.
const ALPHABET: &[char] = &[
    'a', 'b', '*', '?', '[', ']', '{', '}', '\\', '!', '^', '-', ',', ' ', 'é', '日',
];
/// Bounded so the whole property runs in a few seconds.
const CASES: u32 = 256;
/// Glob characters in the namespace and category: the key prefix must be escaped too.
const NAMESPACE: &str = "pt[1]?\\";

fn any_char() -> impl Strategy<Value = char> {
    proptest::sample::select(ALPHABET)
}

fn key() -> impl Strategy<Value = String> {
    vec(any_char(), 1..5).prop_map(String::from_iter)
}

/// A set member as written inside `[...]`.
fn member(c: char) -> String {
    if matches!(c, '\\' | ']' | '-' | '!') {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// One piece of a (mostly) well-formed glob.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any_char().prop_map(|c| hybrid_cache::pattern::escape(&c.to_string())),
        2 => Just("*".to_string()),
        2 => Just("?".to_string()),
        1 => any_char().prop_map(|c| format!("\\{c}")),
        2 => (any::<bool>(), vec((any_char(), any_char(), any::<bool>()), 1..4)).prop_map(
            |(negated, items)| {
                let mut s = String::from(if negated { "[!" } else { "[" });
                for (a, b, range) in items {
                    let (lo, hi) = (a.min(b), a.max(b));
                    s.push_str(&member(lo));
                    if range {
                        s.push('-');
                        s.push_str(&member(hi));
                    }
                }
                s.push(']');
                s
            }
        ),
    ]
}

/// Well-formed globs, plus raw strings over the alphabet (often malformed: those must be
/// refused, never panic).
fn pattern_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => vec(piece(), 1..6).prop_map(|p| p.concat()),
        1 => vec(any_char(), 1..8).prop_map(String::from_iter),
    ]
}

fn l1() -> L1Category {
    L1Category::new(
        "prop",
        CategoryConfig {
            ttl_secs: 600,
            max_entries: 10_000,
            ..CategoryConfig::default()
        },
    )
}

/// Counts of what the cases exercised, so the property cannot pass vacuously.
#[derive(Default)]
struct Seen {
    cases: AtomicU64,
    globs: AtomicU64,
    refused: AtomicU64,
    partial: AtomicU64,
}

#[test]
fn l1_and_l2_select_the_same_keys_for_random_keys_and_globs() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let timeout = Duration::from_secs(5);
    let l2 = L2::new(NAMESPACE, timeout);
    let target = RedisTarget::Url {
        url: redis.url(),
        password: None,
    };
    l2.install(Some(rt.block_on(L2::connect(&target, timeout)).unwrap()));
    let seen = Seen::default();

    let mut runner = TestRunner::new(Config {
        cases: CASES,
        max_shrink_iters: 500,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (vec(key(), 1..24), pattern_text());
    let result = runner.run(&strategy, |(keys, text)| {
        let n = seen.cases.fetch_add(1, Ordering::Relaxed);
        let pattern = match Pattern::try_glob(&text) {
            Ok(p) => p,
            Err(_) => {
                seen.refused.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        };
        if pattern.kind() == PatternKind::Glob {
            seen.globs.fetch_add(1, Ordering::Relaxed);
        }
        let keys: BTreeSet<String> = keys.into_iter().collect();
        // `*` in the category name: unescaped, the MATCH would also select the decoy's keys.
        let (category, decoy) = (format!("c*{n}"), format!("cz{n}"));
        let (l2_lost, l1_lost, decoy_lost) = rt.block_on(async {
            let cache = l1();
            for k in &keys {
                for c in [&category, &decoy] {
                    l2.set(c, k, b"v", Duration::from_secs(60), None)
                        .await
                        .unwrap();
                }
                cache
                    .put(k, Bytes::from_static(b"v"), Duration::from_secs(60))
                    .await;
            }
            l2.invalidate_pattern(&category, &pattern).await.unwrap();
            cache.invalidate(&pattern).await;
            let (mut l2_lost, mut l1_lost, mut decoy_lost) = (vec![], vec![], vec![]);
            for k in &keys {
                if l2.get(&category, k).await.unwrap().value.is_none() {
                    l2_lost.push(k.clone());
                }
                if cache.get(k).await.is_none() {
                    l1_lost.push(k.clone());
                }
                if l2.get(&decoy, k).await.unwrap().value.is_none() {
                    decoy_lost.push(k.clone());
                }
            }
            (l2_lost, l1_lost, decoy_lost)
        });
        prop_assert_eq!(&l2_lost, &l1_lost, "pattern {:?} = {:?}", text, pattern);
        prop_assert!(
            decoy_lost.is_empty(),
            "other category touched: {:?}",
            decoy_lost
        );
        if !l1_lost.is_empty() && l1_lost.len() < keys.len() {
            seen.partial.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<(), TestCaseError>(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (globs, refused, partial) = (
        seen.globs.load(Ordering::Relaxed),
        seen.refused.load(Ordering::Relaxed),
        seen.partial.load(Ordering::Relaxed),
    );
    eprintln!("{CASES} cases: {globs} globs, {refused} refused, {partial} partial selections");
    assert!(globs > u64::from(CASES) / 3, "too few real globs: {globs}");
    assert!(
        partial > u64::from(CASES) / 16,
        "too few partial selections: {partial}"
    );
    assert!(refused > 0, "malformed globs were never generated");
}
