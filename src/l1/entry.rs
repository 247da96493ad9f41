//! What L1 stores per key, kept to 48 bytes.
//!
//! Why the size matters: moka keeps each value in an allocation of its own, and the memory
//! per entry of a category is the goal of issue #25 (≤ 1.0× a raw moka cache holding the same
//! `Bytes`). A value handle (32 B) plus when it was cached (8 B) plus one optional handle to
//! what few entries need (8 B) costs what a bare `Bytes` does once the allocator rounds up;
//! the 88-byte entry that carried every field inline cost 47 B more per entry. What is rare
//! lives behind that handle: an own deadline (a per-call TTL shorter than the category's, or
//! a jittered lifetime), a cached "not found", the hit counter of warm-up, the tags.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{EntryTags, Heat};

/// A point on the process's monotonic clock, in whole milliseconds since the first stamp
/// was taken (8 bytes; an `Instant` takes 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    fn origin() -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now)
    }

    /// Now.
    pub fn now() -> Stamp {
        Stamp(Self::origin().elapsed().as_millis() as u64)
    }

    /// `d` from now, rounded up to the next millisecond (a deadline never comes early).
    pub fn after(d: Duration) -> Stamp {
        let at = Self::origin().elapsed() + d;
        Stamp(at.as_millis() as u64 + u64::from(at.subsec_nanos() % 1_000_000 != 0))
    }

    /// Time since this stamp (zero for one in the future).
    pub fn elapsed(self) -> Duration {
        Duration::from_millis(Self::now().0.saturating_sub(self.0))
    }

    /// Whether this point in time has come.
    pub fn passed(self) -> bool {
        Self::now() >= self
    }
}

/// What only some entries carry.
#[derive(Debug, Default)]
struct Extra {
    expires_at: Option<Stamp>,
    negative: bool,
    heat: Option<Heat>,
    tags: Option<Arc<EntryTags>>,
}

impl Extra {
    /// The handle an entry keeps: none when there is nothing in it.
    fn shared(self) -> Option<Arc<Extra>> {
        let needed = self.expires_at.is_some()
            || self.negative
            || self.heat.is_some()
            || self.tags.is_some();
        needed.then(|| Arc::new(self))
    }
}

/// A cached value. Entries live at most the category TTL (moka's `time_to_live`); an entry
/// written with a shorter per-call TTL also carries its own deadline, checked on read.
/// Keeping the common case free of a per-entry expiry policy keeps the hit path as cheap as
/// a plain moka get. Cloning one (moka hands out clones) costs an atomic increment or two.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The value (empty for a cached "not found").
    pub value: Bytes,
    cached_at: Stamp,
    extra: Option<Arc<Extra>>,
}

impl Entry {
    /// An entry for `value`, cached now, with its own deadline if any, a hit counter if the
    /// category ranks hot keys, and `tags`.
    pub fn new(
        value: Bytes,
        expires_at: Option<Stamp>,
        heat: Option<Heat>,
        tags: Option<Arc<EntryTags>>,
    ) -> Entry {
        let extra = Extra {
            expires_at,
            negative: false,
            heat,
            tags,
        };
        Entry::with(value, extra)
    }

    /// A cached "not found" with its own deadline if any.
    pub fn negative(expires_at: Option<Stamp>) -> Entry {
        let extra = Extra {
            expires_at,
            negative: true,
            ..Extra::default()
        };
        Entry::with(Bytes::new(), extra)
    }

    fn with(value: Bytes, extra: Extra) -> Entry {
        Entry {
            value,
            cached_at: Stamp::now(),
            extra: extra.shared(),
        }
    }

    /// The same entry carrying `tags` instead.
    pub fn with_tags(self, tags: Option<Arc<EntryTags>>) -> Entry {
        let extra = match &self.extra {
            Some(e) => Extra {
                expires_at: e.expires_at,
                negative: e.negative,
                heat: e.heat.clone(),
                tags,
            },
            None => Extra {
                tags,
                ..Extra::default()
            },
        };
        Entry {
            extra: extra.shared(),
            ..self
        }
    }

    /// Its own deadline, when shorter than the category TTL.
    pub fn expires_at(&self) -> Option<Stamp> {
        self.extra.as_ref().and_then(|e| e.expires_at)
    }

    /// Whether its own deadline has passed.
    pub fn expired(&self) -> bool {
        self.expires_at().is_some_and(Stamp::passed)
    }

    /// A cached "not found" (negative caching): `value` is empty and means nothing.
    pub fn is_negative(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.negative)
    }

    /// How long ago this node cached it (a load, a fill from L2, a write): its age for
    /// refresh-ahead.
    pub fn age(&self) -> Duration {
        self.cached_at.elapsed()
    }

    /// Hits since the hot-key sampler last looked (only with `warm_up_keys`; see [`Heat`]).
    pub fn heat(&self) -> Option<&Heat> {
        self.extra.as_ref().and_then(|e| e.heat.as_ref())
    }

    /// The tags the entry carries (see [`crate::tag`]), kept in the category's `TagIndex`.
    pub fn tags(&self) -> Option<&Arc<EntryTags>> {
        self.extra.as_ref().and_then(|e| e.tags.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 48);
    }

    #[test]
    fn plain_entries_carry_nothing_extra_and_rare_fields_survive() {
        let plain = Entry::new(Bytes::from_static(b"v"), None, None, None);
        assert!(plain.extra.is_none());
        assert!(!plain.is_negative() && !plain.expired() && plain.tags().is_none());
        let soon = Entry::new(Bytes::new(), Some(Stamp::now()), None, None);
        assert!(soon.expired());
        let later = Entry::new(
            Bytes::new(),
            Some(Stamp::after(Duration::from_secs(60))),
            Some(Heat::default()),
            None,
        );
        assert!(!later.expired() && later.heat().is_some());
        let tagged = later.with_tags(EntryTags::new(&["t".to_string()]));
        assert!(tagged.tags().is_some() && tagged.heat().is_some());
        assert!(tagged.expires_at().is_some());
        let n = Entry::negative(None);
        assert!(n.is_negative() && n.value.is_empty());
    }

    #[test]
    fn stamps_round_deadlines_up_and_never_run_backwards() {
        let a = Stamp::now();
        let d = Stamp::after(Duration::from_micros(1));
        assert!(d > a, "a deadline 1 µs away is in a later millisecond");
        assert!(Stamp::now() >= a);
        assert_eq!(
            Stamp::after(Duration::from_secs(3600)).elapsed(),
            Duration::ZERO
        );
    }
}
