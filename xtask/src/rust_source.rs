//! Rust source read as text for `cargo xtask arch`: the `.rs` files of a tree, their code
//! with comments and literals blanked (so that braces and `crate::` are only code), and the
//! `#[cfg(test)]` modules left out, inline or in files of their own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use regex::Regex;

/// Every `.rs` file under `dir`, sorted.
pub fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
            let path = entry
                .with_context(|| format!("read {}", d.display()))?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `src` with comments, string literals and char literals blanked (newlines kept), so that
/// braces and `crate::` are only code.
pub fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let n = b.len();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(n)] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < n {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let j = src[i..].find('\n').map_or(n, |k| i + k);
            blank(&mut out, i, j);
            i = j;
        } else if rest.starts_with(b"/*") {
            let j = src[i + 2..].find("*/").map_or(n, |k| i + 2 + k + 2);
            blank(&mut out, i, j);
            i = j;
        } else if let Some(len) = raw_string_len(rest) {
            blank(&mut out, i, i + len);
            i += len;
        } else if rest[0] == b'"' || rest.starts_with(b"b\"") {
            let mut j = i + if rest[0] == b'b' { 2 } else { 1 };
            while j < n && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if rest[0] == b'\'' {
            let len = char_literal_len(&src[i..]);
            blank(&mut out, i, i + len.max(1));
            i += len.max(1);
            if len == 0 {
                // A lifetime or label: keep the quote.
                out[i - 1] = b'\'';
            }
        } else {
            i += 1;
        }
    }
    // Only ASCII bytes were replaced, and only whole literals/comments: still UTF-8.
    String::from_utf8_lossy(&out).into_owned()
}

/// Length of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) starting at `rest`.
fn raw_string_len(rest: &[u8]) -> Option<usize> {
    let mut k = usize::from(rest.first() == Some(&b'b'));
    if rest.get(k) != Some(&b'r') {
        return None;
    }
    k += 1;
    let hashes = rest[k..].iter().take_while(|c| **c == b'#').count();
    k += hashes;
    if rest.get(k) != Some(&b'"') {
        return None;
    }
    let mut end = vec![b'"'];
    end.extend(std::iter::repeat(b'#').take(hashes));
    let body = &rest[k + 1..];
    let close = body.windows(end.len()).position(|w| w == end.as_slice());
    Some(close.map_or(rest.len(), |p| k + 1 + p + end.len()))
}

/// Length of a char literal at the start of `s` (`'a'`, `'\n'`, `'\u{1F600}'`), 0 when the
/// quote starts a lifetime or a label.
fn char_literal_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.get(1) == Some(&b'\\') {
        return b
            .iter()
            .take(12)
            .skip(2)
            .position(|c| *c == b'\'')
            .map_or(0, |p| p + 3);
    }
    match s[1..].chars().next() {
        Some(c) if c != '\'' && s[1 + c.len_utf8()..].starts_with('\'') => 2 + c.len_utf8(),
        _ => 0,
    }
}

/// Byte index of the `}` matching the `{` at `open`.
pub fn match_brace(s: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, c) in s.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    s.len().saturating_sub(1)
}

pub fn cfg_test_mod() -> Regex {
    Regex::new(r"#\[cfg\(test\)\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+(\w+)\s*([{;])")
        .expect("a valid regex")
}

/// `stripped` with every inline `#[cfg(test)] mod x { ... }` blanked.
pub fn without_test_mods(stripped: &str) -> String {
    let re = cfg_test_mod();
    let mut keep = stripped.as_bytes().to_vec();
    for m in re.captures_iter(stripped) {
        let (whole, kind) = (m.get(0).expect("match"), &m[2]);
        if kind == "{" {
            let end = match_brace(stripped.as_bytes(), whole.end() - 1);
            for c in &mut keep[whole.start()..=end] {
                if *c != b'\n' {
                    *c = b' ';
                }
            }
        }
    }
    String::from_utf8_lossy(&keep).into_owned()
}

/// Files declared by `#[cfg(test)] mod x;` (x.rs or x/mod.rs next to the declaring module).
pub fn test_module_files(sources: &[(PathBuf, String)]) -> HashSet<PathBuf> {
    let re = cfg_test_mod();
    let mut out = HashSet::new();
    for (path, text) in sources {
        let Some(dir) = path.parent() else { continue };
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let base = if matches!(stem, "mod" | "lib" | "main") {
            dir.to_path_buf()
        } else {
            dir.join(stem)
        };
        for m in re.captures_iter(&strip(text)) {
            if &m[2] == ";" {
                out.insert(base.join(format!("{}.rs", &m[1])));
                out.insert(base.join(&m[1]).join("mod.rs"));
            }
        }
    }
    out
}
