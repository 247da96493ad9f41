//! Tags: names a write may carry ([`crate::HybridCache::set_with_tags`],
//! `PUT /v1/cache/{category}/{key}?tags=a,b`) so that one invalidation
//! ([`crate::HybridCache::invalidate_tag`], `POST /v1/invalidate {"tag":"a"}`) removes every
//! entry carrying it, in every category, on every node and in L2, within the same bound as
//! a key invalidation.
//!
//! A tag is 1 to [`MAX_TAG_BYTES`] bytes of `[A-Za-z0-9_.:-]` (so `user:123`, `tenant.7`);
//! a write carries at most [`MAX_TAGS`] of them. The charset keeps tags out of the separators
//! they travel between: the comma of the HTTP query and of the tag header that L2 values
//! carry (`,a,b,`, see [`header`]), which Redis's tag invalidation script searches.

use crate::error::CacheError;

/// Longest tag accepted, in bytes.
pub const MAX_TAG_BYTES: usize = 128;

/// Most tags one write may carry.
pub const MAX_TAGS: usize = 16;

/// Checks one tag: 1 to [`MAX_TAG_BYTES`] bytes of `[A-Za-z0-9_.:-]`.
pub fn check(tag: &str) -> Result<(), CacheError> {
    if tag.is_empty() {
        return Err(CacheError::InvalidTag("empty tag".into()));
    }
    if tag.len() > MAX_TAG_BYTES {
        return Err(CacheError::InvalidTag(format!(
            "tag of {} bytes exceeds the limit of {MAX_TAG_BYTES} bytes",
            tag.len()
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if let Some(bad) = tag.chars().find(|c| !allowed(*c)) {
        return Err(CacheError::InvalidTag(format!(
            "`{}` holds {bad:?}; tags are made of [A-Za-z0-9_.:-]",
            tag.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// Checks the tags of one write: each with [`check`], at most [`MAX_TAGS`]. Returns them
/// sorted, without duplicates.
pub fn check_all<S: AsRef<str>>(tags: &[S]) -> Result<Vec<String>, CacheError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        check(t.as_ref())?;
        out.push(t.as_ref().to_string());
    }
    out.sort();
    out.dedup();
    if out.len() > MAX_TAGS {
        return Err(CacheError::InvalidTag(format!(
            "{} tags; a write carries at most {MAX_TAGS}",
            out.len()
        )));
    }
    Ok(out)
}

/// The tag header an L2 value carries: `,a,b,` (every tag between commas, so a search for
/// `,tag,` finds exactly that tag).
pub fn header<S: AsRef<str>>(tags: &[S]) -> String {
    let mut h = String::from(",");
    for t in tags {
        h.push_str(t.as_ref());
        h.push(',');
    }
    h
}

/// The tags of a header made by [`header`] (`None` if it is not one).
pub fn parse_header(h: &str) -> Option<Vec<String>> {
    if h == "," {
        return Some(Vec::new());
    }
    let inner = h.strip_prefix(',')?.strip_suffix(',')?;
    let tags: Vec<String> = inner.split(',').map(str::to_string).collect();
    tags.iter().all(|t| check(t).is_ok()).then_some(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked_sorted_and_deduplicated() {
        assert!(check("user:123").is_ok());
        assert!(check("tenant.7_a-b").is_ok());
        for bad in ["", "a,b", "a b", "é", "a*", "{x}", "a\n"] {
            assert_eq!(check(bad).unwrap_err().code(), "invalid_tag", "{bad:?}");
        }
        assert!(check(&"t".repeat(MAX_TAG_BYTES)).is_ok());
        assert!(check(&"t".repeat(MAX_TAG_BYTES + 1)).is_err());
        assert_eq!(check_all(&["b", "a", "b"]).unwrap(), vec!["a", "b"]);
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert!(check_all(&many).is_err());
        assert!(check_all(&many[..MAX_TAGS]).is_ok());
    }

    #[test]
    fn headers_round_trip() {
        let h = header(&["a", "user:1"]);
        assert_eq!(h, ",a,user:1,");
        assert_eq!(parse_header(&h).unwrap(), vec!["a", "user:1"]);
        assert_eq!(parse_header(","), Some(vec![]));
        assert!(parse_header("a,b").is_none());
        assert!(parse_header(",a b,").is_none());
    }
}
