//! `cargo xtask arch`: the module map of `src/` and the architecture limits of issue #24.
//!
//! Edges: every `crate::` path (also inside `use crate::{a, b::{c, d}}` groups) outside
//! comments, string literals and `#[cfg(test)]` modules, and outside the files such a
//! module declares (`#[cfg(test)] mod tests;`), counted from the module of the file to the
//! module it names, both cut to `--depth` path segments (`super::` and `self::` resolved).
//! A reference between a module and its own parent or child is not an edge (a module
//! contains its submodules). A strongly connected component (Tarjan) of more than one
//! module is an import cycle: exit 1. `--depth 0` checks every depth from 1 to the deepest.
//!
//! Sizes: a non-test file over 500 lines or a function over 80 lines (test files:
//! `tests.rs`, `*_tests.rs`, under a `tests/` folder) is reported; it fails only with
//! `--strict`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use regex::Regex;

use crate::rust_source::{
    cfg_test_mod, match_brace, rust_files, strip, test_module_files, without_test_mods,
};
use crate::util::root;

/// Options of `cargo xtask arch`.
#[derive(clap::Args)]
pub struct Args {
    /// Fail (exit 1) on a file or a function over its limit too, not only on a cycle.
    #[arg(long)]
    pub strict: bool,
    /// Module path segments that name a module (1: `cache`, 2: `coherence::lease`);
    /// 0: every depth from 1 to the deepest module.
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// Source folder (default: src/ of the repository).
    #[arg(long)]
    pub src: Option<PathBuf>,
    /// Line limit of a non-test file.
    #[arg(long, default_value_t = 500)]
    pub max_file_lines: usize,
    /// Line limit of a function.
    #[arg(long, default_value_t = 80)]
    pub max_fn_lines: usize,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            strict: false,
            depth: 1,
            src: None,
            max_file_lines: 500,
            max_fn_lines: 80,
        }
    }
}

/// Runs the check; Ok(1) on a cycle (or, with --strict, a size over its limit).
pub fn run(args: &Args) -> Result<i32> {
    let src = args.src.clone().unwrap_or_else(|| root().join("src"));
    let files = rust_files(&src)?;
    let mut sources = Vec::new();
    for p in &files {
        let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        sources.push((p.clone(), text));
    }
    let test_files = test_module_files(&sources);
    let depths = match args.depth {
        0 => {
            1..=files
                .iter()
                .map(|p| module_of(&src, p).len())
                .max()
                .unwrap_or(1)
        }
        d => d..=d,
    };
    let mut found = Vec::new();
    for depth in depths {
        let edges = module_edges(&src, &sources, &test_files, depth);
        println!("-- depth {depth}");
        for (from, to) in &edges {
            let to: Vec<&str> = to.iter().map(String::as_str).collect();
            println!("{from} -> {}", to.join(" "));
        }
        found.extend(cycles(&edges));
    }
    let cycles = found;
    println!("CYCLES: {cycles:?}");

    let (big_files, big_fns) = sizes(&src, &sources, args.max_file_lines, args.max_fn_lines);
    for (n, p) in &big_files {
        println!("FILE {n:5} {p}");
    }
    for (n, p, name) in &big_fns {
        println!("FN   {n:5} {p}::{name}");
    }
    println!(
        "{} files > {} non-test lines, {} fns > {} lines{}",
        big_files.len(),
        args.max_file_lines,
        big_fns.len(),
        args.max_fn_lines,
        if args.strict {
            ""
        } else {
            " (reported; --strict fails on them)"
        }
    );
    let oversize = !big_files.is_empty() || !big_fns.is_empty();
    Ok(i32::from(!cycles.is_empty() || (args.strict && oversize)))
}

/// The module of a file: its path under `src` without `.rs`, `mod` dropped.
fn module_of(src: &Path, path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src).unwrap_or(path).with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Module path segments of `path` (`a::b::Item` → a, b): lowercase segments, up to `self`.
fn module_segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .take_while(|s| {
            s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && *s != "self"
        })
        .map(|s| s.trim_start_matches("r#").to_string())
        .collect()
}

/// The paths of a `use` group body (`a::{b, c}, d` → a::b, a::c, d).
fn expand_group(prefix: &str, body: &str, out: &mut Vec<String>) {
    let bytes = body.as_bytes();
    let (mut depth, mut start) = (0usize, 0usize);
    let mut items = Vec::new();
    for (i, c) in bytes.iter().enumerate() {
        match c {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                items.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&body[start..]);
    for item in items.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
        match item.find('{') {
            Some(open) => {
                let close = item.rfind('}').unwrap_or(item.len());
                let head = item[..open].trim_end_matches("::").trim();
                let inner = &item[open + 1..close.max(open + 1)];
                expand_group(&join(prefix, head), inner, out);
            }
            None => out.push(join(
                prefix,
                item.split(" as ").next().unwrap_or(item).trim(),
            )),
        }
    }
}

fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}::{rest}"),
    }
}

/// `super::` and `self::` rewritten as the `crate::` paths they name in the module
/// `me` (`super::super::` first), so that edges between sibling modules count too.
fn absolute_paths(code: &str, me: &[String]) -> String {
    let prefix = |parts: &[String]| {
        if parts.is_empty() {
            "crate::".to_string()
        } else {
            format!("crate::{}::", parts.join("::"))
        }
    };
    let up = |n: usize| prefix(&me[..me.len().saturating_sub(n)]);
    let code = Regex::new(r"\bsuper::super::")
        .expect("a valid regex")
        .replace_all(code, up(2).as_str())
        .into_owned();
    let code = Regex::new(r"\bsuper::")
        .expect("a valid regex")
        .replace_all(&code, up(1).as_str())
        .into_owned();
    Regex::new(r"\bself::")
        .expect("a valid regex")
        .replace_all(&code, prefix(me).as_str())
        .into_owned()
}

/// Module → the modules it names through `crate::` (and `super::` / `self::`).
fn module_edges(
    src: &Path,
    sources: &[(PathBuf, String)],
    test_files: &HashSet<PathBuf>,
    depth: usize,
) -> BTreeMap<String, BTreeSet<String>> {
    let group = Regex::new(r"crate::((?:[A-Za-z_][A-Za-z0-9_]*::)*)\{").expect("a valid regex");
    let path = Regex::new(r"crate::((?:[A-Za-z_][A-Za-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)")
        .expect("a valid regex");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (p, text) in sources {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if matches!(name, "lib.rs" | "main.rs") || test_files.contains(p) {
            continue;
        }
        let me_parts = module_of(src, p);
        let code = absolute_paths(&without_test_mods(&strip(text)), &me_parts);
        let me = me_parts[..depth.min(me_parts.len())].join("::");
        let mut targets = Vec::new();
        for c in group.captures_iter(&code) {
            let (Some(m), Some(head)) = (c.get(0), c.get(1)) else {
                continue;
            };
            let open = m.end() - 1;
            let close = match_brace(code.as_bytes(), open);
            let prefix = head.as_str().trim_end_matches("::");
            expand_group(prefix, &code[open + 1..close], &mut targets);
        }
        for c in path.captures_iter(&code) {
            targets.push(c[1].to_string());
        }
        for t in targets {
            let segs = module_segments(&t);
            if segs.is_empty() {
                continue;
            }
            let to = segs[..depth.min(segs.len())].join("::");
            if !nested(&to, &me) {
                edges.entry(me.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// Whether one module is the other or contains it. A module contains its submodules (its
/// `mod.rs` declares them and re-exports their items), so a reference between a module and
/// its own parent or child is not an edge; edges between siblings and across branches are.
fn nested(a: &str, b: &str) -> bool {
    let within = |inner: &str, outer: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|r| r.starts_with("::"))
    };
    within(a, b) || within(b, a)
}

/// Strongly connected components of more than one module (Tarjan), each sorted.
pub fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: HashSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(ws) = s.edges.get(v) {
            for w in ws {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: HashSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

type FileSizes = Vec<(usize, String)>;
type FnSizes = Vec<(usize, String, String)>;

/// Non-test files over `max_file` lines and functions over `max_fn` lines, largest first.
fn sizes(
    src: &Path,
    sources: &[(PathBuf, String)],
    max_file: usize,
    max_fn: usize,
) -> (FileSizes, FnSizes) {
    let test_mod = cfg_test_mod();
    let func = Regex::new(r"\bfn\s+(\w+)[^;{]*\{").expect("a valid regex");
    let (mut files, mut fns) = (Vec::new(), Vec::new());
    for (p, raw) in sources {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let rel = p.strip_prefix(src).unwrap_or(p);
        let under_tests = rel.components().any(|c| c.as_os_str() == "tests");
        if name == "tests.rs" || name.ends_with("_tests.rs") || under_tests {
            continue;
        }
        let shown = p.strip_prefix(root()).unwrap_or(p).display().to_string();
        let s = strip(raw);
        let mut test_lines = 0;
        for m in test_mod.captures_iter(&s) {
            let whole = m.get(0).expect("match");
            let end = if &m[2] == "{" {
                match_brace(s.as_bytes(), whole.end() - 1)
            } else {
                whole.end()
            };
            test_lines += s[whole.start()..end.min(s.len())].matches('\n').count() + 1;
        }
        let lines = raw.matches('\n').count() + 1 - test_lines.min(raw.matches('\n').count() + 1);
        if lines > max_file {
            files.push((lines, shown.clone()));
        }
        let s2 = without_test_mods(&s);
        for m in func.captures_iter(&s2) {
            let whole = m.get(0).expect("match");
            let end = match_brace(s2.as_bytes(), whole.end() - 1);
            let n = s2[whole.start()..=end.min(s2.len() - 1)]
                .matches('\n')
                .count()
                + 1;
            if n > max_fn {
                fns.push((n, shown.clone(), m[1].to_string()));
            }
        }
    }
    files.sort_by(|a, b| b.cmp(a));
    fns.sort_by(|a, b| b.cmp(a));
    (files, fns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_strings_and_test_modules_are_not_edges() {
        let code = "// crate::a\n/* crate::b */ let s = \"crate::c\"; let r = r#\"crate::d\"#;\n\
                    let c = '{'; fn f<'a>(x: &'a u8) {}\n\
                    #[cfg(test)]\nmod tests { use crate::e; }\nuse crate::f::G;\n";
        let code = without_test_mods(&strip(code));
        assert!(!code.contains("crate::a") && !code.contains("crate::b"));
        assert!(!code.contains("crate::c") && !code.contains("crate::d"));
        assert!(!code.contains("crate::e"));
        assert!(code.contains("crate::f::G") && code.contains("&'a u8"));
    }

    #[test]
    fn parents_and_children_are_nested_siblings_are_not() {
        assert!(nested("a::b", "a"));
        assert!(nested("a", "a::b::c"));
        assert!(!nested("a::b", "a::c"));
        assert!(!nested("a::bc", "a::b"));
    }

    #[test]
    fn groups_under_a_path_expand() {
        let mut out = Vec::new();
        expand_group("a", "b::{c, d}, e", &mut out);
        assert_eq!(out, ["a::b::c", "a::b::d", "a::e"]);
    }

    #[test]
    fn super_and_self_name_siblings() {
        let me = ["a".to_string(), "b".to_string()];
        assert_eq!(
            absolute_paths("use super::c::X; self::d::f(); super::super::e::g();", &me),
            "use crate::a::c::X; crate::a::b::d::f(); crate::e::g();"
        );
    }

    #[test]
    fn use_groups_expand() {
        let mut out = Vec::new();
        expand_group("", "a::{b, c::D}, E, f as g, self", &mut out);
        assert_eq!(out, ["a::b", "a::c::D", "E", "f", "self"]);
        assert_eq!(module_segments("a::c::D"), ["a", "c"]);
        assert!(module_segments("E").is_empty());
        assert!(module_segments("self").is_empty());
    }

    #[test]
    fn tarjan_finds_cycles_only() {
        let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut add = |a: &str, b: &str| {
            e.entry(a.into()).or_default().insert(b.into());
        };
        add("cache", "bus");
        add("bus", "actors");
        add("actors", "cache");
        add("http", "cache");
        add("wire", "key");
        assert_eq!(cycles(&e), vec![vec!["actors", "bus", "cache"]]);
        e.remove("actors");
        assert!(cycles(&e).is_empty());
    }
}
