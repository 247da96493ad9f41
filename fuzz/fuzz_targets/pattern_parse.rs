//! The invalidation glob parser (`Pattern::glob`) and matcher: any string a client sends
//! to `POST /v1/invalidate`. Must never panic.
#![no_main]

use hybrid_cache::pattern::Pattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // First line: the pattern; the rest: a key to match it against.
    let (pattern, key) = text.split_once('\n').unwrap_or((text, text));
    if let Ok(p) = Pattern::glob(pattern) {
        let _ = p.matches(key);
        let _ = p.matches(pattern);
    }
});
