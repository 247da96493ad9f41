//! Invalidation patterns: an exact key, `*` (everything) or a glob such as `get_user_menu:*`.
//!
//! Keys built by [`crate::key`] contain `:` separators, never `/`, so globs are compiled with
//! `literal_separator(false)`: `*` matches any run of characters, as users of the original
//! Python `invalidate_cache("get_user_menu:*")` expect.

use globset::{GlobBuilder, GlobMatcher};

use crate::error::CacheError;

/// A parsed invalidation pattern.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// Every key of the category.
    All,
    /// One key.
    Exact(String),
    /// Keys matching a glob (`*`, `?`, `[...]`, `{a,b}`).
    Glob(GlobMatcher),
}

/// Longest pattern accepted.
pub const MAX_PATTERN_BYTES: usize = 1024;

impl Pattern {
    /// Parses `"*"`, a glob, or an exact key.
    pub fn parse(pattern: &str) -> Result<Pattern, CacheError> {
        let invalid = |reason: &str| CacheError::InvalidPattern {
            pattern: pattern.chars().take(64).collect(),
            reason: reason.to_string(),
        };
        if pattern.is_empty() {
            return Err(invalid("empty pattern"));
        }
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(invalid("pattern too long"));
        }
        if pattern == "*" {
            return Ok(Pattern::All);
        }
        if !pattern.contains(['*', '?', '[', '{']) {
            return Ok(Pattern::Exact(pattern.to_string()));
        }
        let glob = GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map_err(|e| invalid(&e.kind().to_string()))?;
        Ok(Pattern::Glob(glob.compile_matcher()))
    }

    /// Whether `key` is covered by this pattern.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Exact(k) => k == key,
            Pattern::Glob(g) => g.is_match(key),
        }
    }

    /// The original text form (used on the wire and in Redis `SCAN MATCH`).
    pub fn as_str(&self) -> String {
        match self {
            Pattern::All => "*".to_string(),
            Pattern::Exact(k) => k.clone(),
            Pattern::Glob(g) => g.glob().glob().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_is_all() {
        assert!(matches!(Pattern::parse("*").unwrap(), Pattern::All));
    }

    #[test]
    fn exact_matches_only_itself() {
        let p = Pattern::parse("get_user_permissions:123").unwrap();
        assert!(p.matches("get_user_permissions:123"));
        assert!(!p.matches("get_user_permissions:1234"));
    }

    #[test]
    fn glob_matches_prefix_across_separators() {
        let p = Pattern::parse("get_user_menu:*").unwrap();
        assert!(p.matches("get_user_menu:1"));
        assert!(p.matches("get_user_menu:1:admin"));
        assert!(!p.matches("get_user_roles:1"));
        assert_eq!(p.as_str(), "get_user_menu:*");
    }

    #[test]
    fn bad_globs_and_empty_are_errors() {
        assert!(matches!(
            Pattern::parse("a[").unwrap_err(),
            CacheError::InvalidPattern { .. }
        ));
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse(&"x".repeat(MAX_PATTERN_BYTES + 1)).is_err());
    }
}
