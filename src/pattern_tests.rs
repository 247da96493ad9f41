//! Unit tests of the glob grammar (one per rule and per error) and of its translations.

use super::*;
use proptest::prelude::*;

fn g(text: &str) -> Pattern {
    Pattern::glob(text).unwrap()
}

fn err(text: &str) -> GlobError {
    Pattern::try_glob(text).unwrap_err()
}

fn redis(text: &str) -> String {
    match g(text) {
        Pattern::Glob(glob) => glob.redis_match().to_string(),
        other => panic!("{text:?} is not a glob: {other:?}"),
    }
}

#[test]
fn star_alone_is_all_and_exact_is_never_parsed() {
    assert_eq!(g("*"), Pattern::All);
    assert_eq!(g("***"), Pattern::All);
    assert_eq!(g("*").kind(), PatternKind::All);
    let p = Pattern::exact("get_roles:[1, 2]");
    assert_eq!(p.kind(), PatternKind::Exact);
    assert!(p.matches("get_roles:[1, 2]"));
    assert!(!p.matches("get_roles:1"));
    assert!(Pattern::exact("*").matches("*"));
    assert!(!Pattern::exact("*").matches("a"));
    assert!(Pattern::exact("x[1").matches("x[1"));
}

#[test]
fn glob_without_wildcards_is_the_exact_key_it_spells() {
    assert_eq!(
        g("get_user_permissions:123"),
        Pattern::exact("get_user_permissions:123")
    );
    assert_eq!(g(r"get_roles:\[1, 2\]"), Pattern::exact("get_roles:[1, 2]"));
    assert_eq!(g(r"a\*b"), Pattern::exact("a*b"));
    assert_eq!(g("{a,b}"), Pattern::exact("{a,b}"));
}

#[test]
fn star_matches_any_run_including_empty_and_separators() {
    let p = g("get_user_menu:*");
    assert_eq!(p.kind(), PatternKind::Glob);
    assert!(p.matches("get_user_menu:"));
    assert!(p.matches("get_user_menu:1"));
    assert!(p.matches("get_user_menu:1:admin/x"));
    assert!(!p.matches("get_user_roles:1"));
    assert!(g("a*b").matches("ab\nxb"));
}

#[test]
fn question_mark_is_exactly_one_char_not_one_byte() {
    let p = g("k:?");
    assert!(p.matches("k:1"));
    assert!(p.matches("k:é"));
    assert!(p.matches("k:日"));
    assert!(p.matches("k:\n"));
    assert!(!p.matches("k:"));
    assert!(!p.matches("k:12"));
    assert!(!g("k:??").matches("k:é"));
}

#[test]
fn sets_ranges_and_negation() {
    let p = g("k[abc]");
    assert!(p.matches("kb") && !p.matches("kd") && !p.matches("k"));
    let p = g("k[a-c9]");
    assert!(p.matches("kb") && p.matches("k9") && !p.matches("kd"));
    let p = g("k[!abc]");
    assert!(p.matches("kd") && p.matches("ké") && !p.matches("ka") && !p.matches("k"));
    let p = g("k[é日]");
    assert!(p.matches("ké") && p.matches("k日") && !p.matches("ke"));
    let p = g("k[à-ü]");
    assert!(p.matches("ké") && !p.matches("ka"));
}

#[test]
fn caret_is_a_literal_even_inside_a_set() {
    let p = g("k[^a]");
    assert!(p.matches("k^") && p.matches("ka") && !p.matches("kb"));
    assert!(g("^*").matches("^x") && !g("^*").matches("x"));
}

#[test]
fn dash_is_literal_at_the_edges_of_a_set_and_escapes_work_inside() {
    let p = g("k[-a]");
    assert!(p.matches("k-") && p.matches("ka") && !p.matches("kb"));
    let p = g("k[a-]");
    assert!(p.matches("k-") && p.matches("ka"));
    let p = g(r"k[\]\\\-\!]");
    for k in ["k]", "k\\", "k-", "k!"] {
        assert!(p.matches(k), "{k}");
    }
    assert!(!p.matches("ka"));
    let p = g("k[[]");
    assert!(p.matches("k["));
    let p = g("k[a-b-d]");
    assert!(p.matches("ka") && p.matches("k-") && p.matches("kd") && !p.matches("kc"));
}

#[test]
fn braces_commas_and_bangs_are_literals() {
    let p = g("{a,b}*");
    assert!(p.matches("{a,b}x"));
    assert!(!p.matches("a") && !p.matches("ax"));
    assert!(g("!*").matches("!x") && !g("!*").matches("x"));
}

#[test]
fn backslash_escapes_the_next_character() {
    let p = g(r"a\?*");
    assert!(p.matches("a?") && p.matches("a?b") && !p.matches("ab"));
    let p = g(r"a\\*");
    assert!(p.matches("a\\x") && !p.matches("ax"));
    let p = g(r"\a*");
    assert!(p.matches("ab"));
}

#[test]
fn every_malformed_glob_is_a_clear_error() {
    assert_eq!(err(""), GlobError::Empty);
    assert_eq!(
        err(&format!("*{}", "x".repeat(MAX_PATTERN_BYTES))),
        GlobError::TooLong(MAX_PATTERN_BYTES + 1, MAX_PATTERN_BYTES)
    );
    // Without wildcards it is a key: an escaped key of any allowed length round-trips.
    let key = "[".repeat(MAX_PATTERN_BYTES);
    assert_eq!(g(&escape(&key)), Pattern::exact(key));
    assert_eq!(
        err(&"x".repeat(MAX_LITERAL_GLOB_BYTES + 1)),
        GlobError::TooLong(MAX_LITERAL_GLOB_BYTES + 1, MAX_LITERAL_GLOB_BYTES)
    );
    assert_eq!(err("a["), GlobError::UnclosedSet(1));
    assert_eq!(err("x[1"), GlobError::UnclosedSet(1));
    assert_eq!(err(r"a[\]"), GlobError::UnclosedSet(1));
    assert_eq!(err(r"a[\"), GlobError::UnclosedSet(1));
    assert_eq!(err("ab\\"), GlobError::TrailingBackslash);
    assert_eq!(err("a[]"), GlobError::EmptySet(1));
    assert_eq!(err("a[!]"), GlobError::EmptySet(1));
    assert_eq!(err("[z-a]"), GlobError::ReversedRange('z', 'a'));
    match Pattern::glob("x[1").unwrap_err() {
        CacheError::InvalidPattern { pattern, reason } => {
            assert_eq!(pattern, "x[1");
            assert!(reason.contains("never closed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_set_of_nothing_never_matches_and_never_panics() {
    match Pattern::try_glob("k[!\u{0}-\u{10FFFF}]") {
        Ok(p) => assert!(!p.matches("ka") && !p.matches("k")),
        Err(e) => assert!(matches!(e, GlobError::TooComplex(_)), "{e}"),
    }
}

#[test]
fn redis_prefilter_escapes_literals_and_widens_char_wildcards() {
    assert_eq!(redis("a*"), "a*");
    assert_eq!(redis(r"\[1, 2\]*"), r"\[1, 2\]*");
    assert_eq!(redis("{a,b}^-*"), r"{a,b}\^\-*");
    assert_eq!(redis("é?"), "é?*");
    assert_eq!(redis("a??*b"), "a??*b");
    assert_eq!(redis("a[bc-e]"), "a[bc-e]");
    assert_eq!(redis("a[^!-]"), r"a[\^\!\-]");
    assert_eq!(redis("a[!b]"), "a?*");
    assert_eq!(redis("a[é]"), "a?*");
    assert_eq!(redis_escape("ns:c*t[1]:0:"), r"ns:c\*t\[1\]:0:");
    let many = "a*".repeat(MAX_REDIS_STARS + 1);
    assert_eq!(redis(&many), "*");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn canonical_text_parses_back_to_the_same_pattern(text in r"[a-c*?\[\]!^\\\-é{},]{1,12}") {
        if let Ok(p) = Pattern::try_glob(&text) {
            prop_assert_eq!(Pattern::glob(&p.to_glob_text()).unwrap(), p);
        }
    }

    #[test]
    fn an_escaped_key_matches_only_itself(key in r"[a*?\[\]!^\\\-é{}, ]{1,10}", other in r"[a*?\[\]\\é]{1,10}") {
        let p = Pattern::glob(&escape(&key)).unwrap();
        prop_assert_eq!(&p, &Pattern::exact(key.clone()));
        prop_assert_eq!(p.matches(&other), other == key);
    }
}
