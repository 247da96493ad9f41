//! Invalidation patterns: one exact key, a glob, everything (`*`), or a tag ([`crate::tag`]).
//!
//! An exact key ([`Pattern::exact`]) is never parsed: `get_roles:[1, 2]` is a key like any
//! other and is compared as bytes. A glob ([`Pattern::glob`]) follows one grammar, the same
//! for the L1 matcher and for the L2 (Redis) selection:
//!
//! | syntax    | matches                                                        |
//! |-----------|----------------------------------------------------------------|
//! | `*`       | any run of characters, including the empty one                 |
//! | `?`       | exactly one character                                          |
//! | `[abc]`   | one character of the set                                       |
//! | `[a-z]`   | one character in the (inclusive) range; ranges and members mix |
//! | `[!abc]`  | one character *not* in the set                                 |
//! | `\c`      | the character `c` itself, whatever it is (also inside a set)   |
//! | anything else | itself: `{`, `}`, `,`, `^`, `!`, `-`, `]`, spaces...       |
//!
//! "Character" means a Unicode scalar value (a Rust `char`), not a byte: `?` matches `é`.
//! Inside a set, `^` is an ordinary member (`[^a]` is the set of `^` and `a`, *not* a
//! negation: only `!` negates), `[` is an ordinary member, a `-` is a range only between two
//! members (first or last it is literal), and `]` or `-` or `!` are written `\]`, `\-`, `\!`.
//! Errors, never panics: an empty pattern, a glob with wildcards longer than
//! [`MAX_PATTERN_BYTES`] (without wildcards it is an exact key: [`MAX_LITERAL_GLOB_BYTES`]),
//! an unclosed `[`, a trailing `\`, an empty set `[]` / `[!]`, a reversed range `[z-a]`.
//!
//! A glob made only of `*` is [`Pattern::All`]; a glob without any wildcard (`a\*b`) is the
//! [`Pattern::Exact`] key it spells (`a*b`), so both forms invalidate alike everywhere.
//!
//! Why a parser and `regex`: the grammar is parsed once into tokens, and the tokens are
//! emitted three ways: a `regex` for L1 (every member written as `\x{..}`, so no character of
//! the key can ever be read as regex syntax; `regex` matches in linear time, so a hostile
//! `*a*a*a*…` cannot stall a node, and its `.` and classes work on chars), a canonical glob
//! text ([`Pattern::to_glob_text`]) for the wire, and a Redis `SCAN MATCH` prefilter
//! ([`Glob::redis_match`]). globset was used before but has its own grammar (`{a,b}`,
//! `[^a]` negation, no escapes inside sets) that we would have to escape around; a
//! hand-written matcher would be one more thing to get right.
//!
//! Redis globs work on bytes (`?` is one byte, `[é]` is a set of two bytes), so the MATCH
//! pattern is only a *superset* filter: literals and ASCII-only sets are kept exact, while
//! `?`, negated sets and sets with non-ASCII members become "at least one byte" (`?*`).
//! L2 then decides every key it scanned with [`Pattern::matches`], the L1 matcher: L1 and L2
//! select exactly the same keys (property-tested against a real redis-server in
//! `tests/pattern_redis.rs`).

use std::fmt::Write as _;

use regex::Regex;

use crate::error::CacheError;

/// Longest glob with wildcards accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// Longest glob *without* wildcards (an escaped exact key, see [`escape`]) accepted: keys are
/// bounded by `max_key_bytes`, and their escaped form can be twice as long.
pub const MAX_LITERAL_GLOB_BYTES: usize = 64 * 1024;

/// Redis MATCH prefilters with more `*` than this become a plain `*` (Redis's matcher
/// recurses per `*`; the Rust matcher still decides every key).
const MAX_REDIS_STARS: usize = 32;

/// What a pattern names (what goes on the wire as the invalidation's type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatternKind {
    /// Every key of the category.
    All,
    /// One key, compared as bytes.
    Exact,
    /// Keys matching a glob.
    Glob,
    /// Keys whose entry carries a tag (see [`crate::tag`]).
    Tag,
}

/// A typed invalidation pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Every key of the category.
    All,
    /// One key, compared as bytes; never parsed.
    Exact(String),
    /// Keys matching a glob (built only by [`Pattern::glob`]).
    Glob(Glob),
    /// Keys whose entry carries this tag (see [`crate::tag`]); decided by the entry, not
    /// by the key.
    Tag(String),
}

/// Why a glob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The pattern is empty.
    #[error("empty pattern")]
    Empty,
    /// The pattern is longer than the limit (its length, the limit).
    #[error("pattern too long ({0} bytes, at most {1})")]
    TooLong(usize, usize),
    /// A `[` is never closed (its byte offset).
    #[error("`[` at byte {0} is never closed by `]` (write `\\[` for a literal `[`)")]
    UnclosedSet(usize),
    /// A `[]` set is empty (its byte offset).
    #[error("empty set at byte {0} (write `\\]` for a literal `]`)")]
    EmptySet(usize),
    /// A final `\` escapes nothing.
    #[error("trailing `\\` escapes nothing (write `\\\\` for a literal `\\`)")]
    TrailingBackslash,
    /// A range runs backwards (`z-a`).
    #[error("range `{0}-{1}` is reversed")]
    ReversedRange(char, char),
    /// The pattern has too many wildcards to match in bounded time.
    #[error("pattern too complex: {0}")]
    TooComplex(String),
}

/// One parsed element of a glob.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `[...]` / `[!...]`: inclusive char ranges (a single member is `(c, c)`).
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled glob: its canonical text, the L1 matcher and the Redis prefilter.
#[derive(Clone, Debug)]
pub struct Glob {
    text: String,
    regex: Regex,
    redis: String,
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.text == other.text
    }
}

impl Eq for Glob {}

impl Glob {
    /// The canonical glob text (parses back to this glob).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `key` matches (the L1 matcher; L2 decides with it too).
    pub fn is_match(&self, key: &str) -> bool {
        self.regex.is_match(key)
    }

    /// A Redis `SCAN MATCH` pattern (to append to an escaped key prefix, see
    /// [`redis_escape`]) that selects at least every key this glob matches. Keys it returns
    /// must still be decided with [`Glob::is_match`].
    pub fn redis_match(&self) -> &str {
        &self.redis
    }
}

impl Pattern {
    /// One exact key. Never parsed: any characters are part of the key.
    pub fn exact(key: impl Into<String>) -> Pattern {
        Pattern::Exact(key.into())
    }

    /// The entries carrying `tag` (checked with [`crate::tag::check`]).
    pub fn tag(tag: &str) -> Result<Pattern, CacheError> {
        crate::tag::check(tag)?;
        Ok(Pattern::Tag(tag.to_string()))
    }

    /// Parses a glob in the module's grammar. `*` (or any run of only `*`) is
    /// [`Pattern::All`]; a glob without wildcards is the [`Pattern::Exact`] key it spells.
    pub fn glob(text: &str) -> Result<Pattern, CacheError> {
        Self::try_glob(text).map_err(|e| CacheError::InvalidPattern {
            pattern: text.chars().take(64).collect(),
            reason: e.to_string(),
        })
    }

    /// [`Pattern::glob`] with the precise reason.
    pub fn try_glob(text: &str) -> Result<Pattern, GlobError> {
        if text.len() > MAX_LITERAL_GLOB_BYTES {
            return Err(GlobError::TooLong(text.len(), MAX_LITERAL_GLOB_BYTES));
        }
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err(GlobError::Empty);
        }
        if tokens.iter().all(|t| matches!(t, Token::Literal(_))) {
            // An exact key: the key limits apply to it, not the glob limit.
            let key = tokens
                .iter()
                .filter_map(|t| match t {
                    Token::Literal(c) => Some(*c),
                    _ => None,
                })
                .collect();
            return Ok(Pattern::Exact(key));
        }
        if text.len() > MAX_PATTERN_BYTES {
            return Err(GlobError::TooLong(text.len(), MAX_PATTERN_BYTES));
        }
        if tokens.iter().all(|t| *t == Token::Star) {
            return Ok(Pattern::All);
        }
        let regex =
            Regex::new(&to_regex(&tokens)).map_err(|e| GlobError::TooComplex(e.to_string()))?;
        Ok(Pattern::Glob(Glob {
            text: to_text(&tokens),
            regex,
            redis: to_redis(&tokens),
        }))
    }

    /// What this pattern names.
    pub fn kind(&self) -> PatternKind {
        match self {
            Pattern::All => PatternKind::All,
            Pattern::Exact(_) => PatternKind::Exact,
            Pattern::Glob(_) => PatternKind::Glob,
            Pattern::Tag(_) => PatternKind::Tag,
        }
    }

    /// Whether `key` is covered by this pattern. A tag is carried by an entry, not named by
    /// its key: every key *may* carry it, so [`Pattern::Tag`] covers every key here (the
    /// callers that decide by key alone, such as the L2 replay backlog, fail closed).
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Pattern::All | Pattern::Tag(_) => true,
            Pattern::Exact(k) => k == key,
            Pattern::Glob(g) => g.is_match(key),
        }
    }

    /// Glob text that [`Pattern::glob`] parses back to this pattern: `*`, the key with
    /// every metacharacter escaped, or the canonical glob. (The empty key, which the cache
    /// refuses anyway, has no glob form: `""` is an error; a tag has none either, and gives
    /// `*`, the glob of every key it may cover.)
    pub fn to_glob_text(&self) -> String {
        match self {
            Pattern::All | Pattern::Tag(_) => "*".to_string(),
            Pattern::Exact(k) => escape(k),
            Pattern::Glob(g) => g.text.clone(),
        }
    }
}

/// Escapes a literal for the glob grammar: `escape(k)` as a glob matches exactly `k`.
pub fn escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes a literal (such as a Redis key prefix) for a Redis `MATCH` pattern.
pub fn redis_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        push_redis_literal(&mut out, c);
    }
    out
}

fn push_redis_literal(out: &mut String, c: char) {
    // Redis's special bytes; multi-byte UTF-8 sequences never contain an ASCII byte.
    if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
        out.push('\\');
    }
    out.push(c);
}

/// Splits a glob into tokens.
fn tokenize(text: &str) -> Result<Vec<Token>, GlobError> {
    let mut tokens = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some((at, c)) = it.next() {
        let token = match c {
            '*' => Token::Star,
            '?' => Token::One,
            '\\' => match it.next() {
                Some((_, e)) => Token::Literal(e),
                None => return Err(GlobError::TrailingBackslash),
            },
            '[' => {
                let negated = it.next_if(|&(_, c)| c == '!').is_some();
                // Members in order, each with "was written escaped".
                let mut members: Vec<(char, bool)> = Vec::new();
                loop {
                    match it.next() {
                        None => return Err(GlobError::UnclosedSet(at)),
                        Some((_, ']')) => break,
                        Some((_, '\\')) => match it.next() {
                            Some((_, e)) => members.push((e, true)),
                            None => return Err(GlobError::UnclosedSet(at)),
                        },
                        Some((_, m)) => members.push((m, false)),
                    }
                }
                if members.is_empty() {
                    return Err(GlobError::EmptySet(at));
                }
                Token::Set {
                    negated,
                    ranges: set_ranges(&members)?,
                }
            }
            other => Token::Literal(other),
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// Reads set members: an unescaped `-` between two members makes a range.
fn set_ranges(members: &[(char, bool)]) -> Result<Vec<(char, char)>, GlobError> {
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < members.len() {
        let lo = members[i].0;
        let dash = members.get(i + 1).is_some_and(|&m| m == ('-', false));
        match members.get(i + 2) {
            Some(&(hi, _)) if dash => {
                if hi < lo {
                    return Err(GlobError::ReversedRange(lo, hi));
                }
                ranges.push((lo, hi));
                i += 3;
            }
            _ => {
                ranges.push((lo, lo));
                i += 1;
            }
        }
    }
    Ok(ranges)
}

/// The canonical glob text of tokens.
fn to_text(tokens: &[Token]) -> String {
    let mut out = String::new();
    for t in tokens {
        match t {
            Token::Literal(c) => out.push_str(&escape(c.encode_utf8(&mut [0; 4]))),
            Token::One => out.push('?'),
            Token::Star => out.push('*'),
            Token::Set { negated, ranges } => {
                out.push('[');
                if *negated {
                    out.push('!');
                }
                let member = |out: &mut String, c: char| {
                    if matches!(c, '\\' | ']' | '-' | '!' | '[' | '^') {
                        out.push('\\');
                    }
                    out.push(c);
                };
                for &(lo, hi) in ranges {
                    member(&mut out, lo);
                    if hi != lo {
                        out.push('-');
                        member(&mut out, hi);
                    }
                }
                out.push(']');
            }
        }
    }
    out
}

/// The anchored L1 regex of tokens (`(?s)`: `?` and `*` also match newlines).
fn to_regex(tokens: &[Token]) -> String {
    let mut out = String::from(r"(?s)\A");
    for t in tokens {
        match t {
            Token::Literal(c) => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            Token::One => out.push('.'),
            Token::Star => out.push_str(".*"),
            Token::Set { negated, ranges } => {
                out.push('[');
                if *negated {
                    out.push('^');
                }
                for &(lo, hi) in ranges {
                    let _ = write!(out, r"\x{{{:X}}}", lo as u32);
                    if hi != lo {
                        let _ = write!(out, r"-\x{{{:X}}}", hi as u32);
                    }
                }
                out.push(']');
            }
        }
    }
    out.push_str(r"\z");
    out
}

/// The Redis MATCH prefilter of tokens (a superset of the keys the glob matches; see the
/// module docs). Runs of wildcards collapse to `?`×(minimum bytes) then `*`.
fn to_redis(tokens: &[Token]) -> String {
    let mut out = String::new();
    let (mut min_bytes, mut open, mut stars) = (0usize, false, 0usize);
    let mut flush = |out: &mut String, min_bytes: &mut usize, open: &mut bool| {
        out.push_str(&"?".repeat(*min_bytes));
        if *open {
            out.push('*');
            stars += 1;
        }
        (*min_bytes, *open) = (0, false);
    };
    for t in tokens {
        match t {
            Token::Star => open = true,
            // One char is 1 to 4 bytes.
            Token::One => (min_bytes, open) = (min_bytes + 1, true),
            Token::Set { negated, ranges }
                if *negated || ranges.iter().any(|&(_, hi)| !hi.is_ascii()) =>
            {
                (min_bytes, open) = (min_bytes + 1, true)
            }
            Token::Set { ranges, .. } => {
                flush(&mut out, &mut min_bytes, &mut open);
                out.push('[');
                for &(lo, hi) in ranges {
                    if lo.is_ascii_alphanumeric() && hi.is_ascii_alphanumeric() && hi > lo {
                        let _ = write!(out, "{lo}-{hi}");
                    } else {
                        for c in lo..=hi {
                            if !c.is_ascii_alphanumeric() {
                                out.push('\\');
                            }
                            out.push(c);
                        }
                    }
                }
                out.push(']');
            }
            Token::Literal(c) => {
                flush(&mut out, &mut min_bytes, &mut open);
                push_redis_literal(&mut out, *c);
            }
        }
    }
    flush(&mut out, &mut min_bytes, &mut open);
    if stars > MAX_REDIS_STARS {
        return "*".to_string();
    }
    out
}

#[cfg(test)]
#[path = "pattern_tests.rs"]
mod tests;
