//! The L2 backlog: changes that may not have reached L2 (a failed or timed-out write, or a
//! change accepted during an outage), replayed as invalidations once Redis is back.

/// Changes whose effect on L2 is unknown or missing: a write whose L2 call failed or timed
/// out (it may have landed before its deadline), or, with the `serve_stale_on_outage`
/// opt-in, a change accepted locally while Redis was unreachable. Replayed as invalidations
/// into L2 (and on the bus) as soon as Redis is reachable again.
///
/// Bounded, failing closed: past [`Backlog::MAX`] entries or [`Backlog::MAX_BYTES`] bytes of
/// keys, every category with pending entries is collapsed to "the whole category" (its L2
/// generation is bumped on replay, which invalidates more than needed but forgets nothing).
/// The backlog then holds at most one marker per category.
#[derive(Debug, Default)]
pub struct Backlog {
    entries: Vec<(String, crate::wire::Target)>,
    bytes: usize,
    whole: std::collections::BTreeSet<String>,
    collapses: u64,
    /// Changes handed to a replay ([`Backlog::take`]) and not yet confirmed in L2
    /// ([`Backlog::replay_done`]): the backlog is not empty while a replay runs, so L2 is
    /// not read before the replayed changes are in it.
    in_flight: Vec<(String, crate::wire::Target)>,
}

fn target_len(t: &crate::wire::Target) -> usize {
    match t {
        crate::wire::Target::Key(k)
        | crate::wire::Target::Glob(k)
        | crate::wire::Target::Tag(k) => k.len(),
        crate::wire::Target::Everything => 0,
    }
}

impl Backlog {
    /// Pending entries kept before the backlog collapses to whole categories.
    pub const MAX: usize = 10_000;
    /// Bytes of pending keys kept before the backlog collapses to whole categories.
    pub const MAX_BYTES: usize = 4 * 1024 * 1024;

    /// Records a change of `target` in `category` that did not (surely) reach L2.
    pub fn record(&mut self, category: &str, target: &crate::wire::Target) {
        if self.whole.contains(category) {
            return;
        }
        if *target == crate::wire::Target::Everything {
            self.whole.insert(category.to_string());
            self.entries.retain(|(c, _)| c != category);
            self.bytes = self
                .entries
                .iter()
                .map(|(c, t)| c.len() + target_len(t))
                .sum();
            return;
        }
        let size = category.len() + target_len(target);
        if self.entries.len() >= Self::MAX || self.bytes + size > Self::MAX_BYTES {
            self.collapse();
            self.whole.insert(category.to_string());
            return;
        }
        self.bytes += size;
        self.entries.push((category.to_string(), target.clone()));
    }

    /// Overflow: every pending key becomes its whole category.
    fn collapse(&mut self) {
        self.collapses += 1;
        for (c, _) in std::mem::take(&mut self.entries) {
            self.whole.insert(c);
        }
        self.bytes = 0;
        tracing::warn!(
            categories = self.whole.len(),
            "L2 backlog full: pending keys collapsed to whole-category invalidations"
        );
    }

    /// Whether nothing is pending or in flight (L2 may be read for every key).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.whole.is_empty() && self.in_flight.is_empty()
    }

    /// Pending entries, whole-category markers and in-flight entries together.
    pub fn len(&self) -> usize {
        self.entries.len() + self.whole.len() + self.in_flight.len()
    }

    /// Whether a pending or in-flight change may cover `key` of `category`: L2 may still
    /// hold a value for it that a change removed, so L2 must not be read for it. Keys no
    /// pending change touches read L2 as usual while the backlog drains (a Redis that
    /// refuses writes for a while, e.g. `WAIT` short of replicas after a failover, then
    /// holds back only the keys written meanwhile, not every read of the node). A glob
    /// that does not parse covers everything (fails closed).
    pub fn touches(&self, category: &str, key: &str) -> bool {
        if self.whole.contains(category) {
            return true;
        }
        self.entries
            .iter()
            .chain(self.in_flight.iter())
            .filter(|(c, _)| c == category)
            .any(|(_, t)| match t {
                crate::wire::Target::Key(k) => k == key,
                crate::wire::Target::Everything => true,
                // Only globs need parsing (no allocation per pending key); a tag may be
                // carried by any key, so it covers them all (see `Pattern::matches`).
                glob => glob.to_pattern().map_or(true, |p| p.matches(key)),
            })
    }

    /// The replay of what [`Backlog::take`] returned is over (applied, or what was not
    /// applied was recorded again).
    pub fn replay_done(&mut self) {
        self.in_flight.clear();
    }

    /// How many times the backlog overflowed and collapsed to whole categories.
    #[cfg(test)]
    pub fn collapses(&self) -> u64 {
        self.collapses
    }

    /// Every pending and in-flight change, whole categories as
    /// [`crate::wire::Target::Everything`], without taking them (a peer asked).
    pub fn snapshot(&self) -> Vec<(String, crate::wire::Target)> {
        self.whole
            .iter()
            .map(|c| (c.clone(), crate::wire::Target::Everything))
            .chain(self.entries.iter().cloned())
            .chain(self.in_flight.iter().cloned())
            .collect()
    }

    /// Everything recorded; whole categories come as [`crate::wire::Target::Everything`].
    pub fn take(&mut self) -> Vec<(String, crate::wire::Target)> {
        let mut out: Vec<(String, crate::wire::Target)> = std::mem::take(&mut self.whole)
            .into_iter()
            .map(|c| (c, crate::wire::Target::Everything))
            .collect();
        out.extend(std::mem::take(&mut self.entries));
        self.bytes = 0;
        self.in_flight.clone_from(&out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Backlog;
    use crate::wire::Target;

    #[test]
    fn touches_only_the_keys_a_pending_change_covers() {
        let mut b = Backlog::default();
        b.record("roles", &Target::Key("r1".into()));
        b.record("menus", &Target::Glob("m:[ab]*".into()));
        b.record("general", &Target::Glob("[".into()));
        assert!(b.touches("roles", "r1"));
        assert!(!b.touches("roles", "r2"), "another key of the category");
        assert!(
            !b.touches("menus", "r1"),
            "the same key in another category"
        );
        assert!(b.touches("menus", "m:b1"));
        assert!(!b.touches("menus", "m:c1"));
        assert!(
            b.touches("general", "anything"),
            "a glob that does not parse"
        );
        // In flight (taken by a replay, not confirmed): still touched.
        let _ = b.take();
        assert!(b.touches("roles", "r1"));
        assert!(!b.touches("roles", "r2"));
        b.replay_done();
        assert!(!b.touches("roles", "r1"));
        b.record("roles", &Target::Everything);
        assert!(
            b.touches("roles", "r2"),
            "a whole category covers every key"
        );
        assert!(!b.touches("menus", "m:a"));
    }

    #[test]
    fn a_snapshot_shows_pending_whole_and_in_flight_changes_without_taking_them() {
        let mut b = Backlog::default();
        b.record("roles", &Target::Key("r1".into()));
        let _ = b.take(); // r1 in flight
        b.record("menus", &Target::Everything);
        b.record("general", &Target::Glob("g:*".into()));
        let mut got = b.snapshot();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("general".to_string(), Target::Glob("g:*".into())),
                ("menus".to_string(), Target::Everything),
                ("roles".to_string(), Target::Key("r1".into())),
            ]
        );
        assert_eq!(b.len(), 3, "nothing taken");
        b.replay_done();
        assert_eq!(b.snapshot().len(), 2);
    }

    #[test]
    fn records_keys_and_degrades_to_whole_categories() {
        let mut b = Backlog::default();
        assert!(b.is_empty());
        b.record("roles", &Target::Key("k1".into()));
        b.record("menus", &Target::Glob("m:*".into()));
        b.record("menus", &Target::Everything);
        b.record("menus", &Target::Key("m2".into()));
        let mut got = b.take();
        assert!(
            !b.is_empty(),
            "a replay in flight keeps the backlog non-empty"
        );
        b.replay_done();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("menus".to_string(), Target::Everything),
                ("roles".to_string(), Target::Key("k1".into()))
            ]
        );
        assert!(b.is_empty());
        for i in 0..Backlog::MAX + 5 {
            b.record("general", &Target::Key(format!("k{i}")));
        }
        assert!(b.len() <= Backlog::MAX + 1);
        assert!(b
            .take()
            .contains(&("general".to_string(), Target::Everything)));
    }

    #[test]
    fn overflow_collapses_every_pending_category_and_forgets_none() {
        let mut b = Backlog::default();
        b.record("roles", &Target::Key("r1".into()));
        b.record("menus", &Target::Key("m1".into()));
        // Spread over many categories: the bound holds whoever overflows it.
        for i in 0..3 * Backlog::MAX {
            b.record(&format!("c{}", i % 7), &Target::Key(format!("k{i}")));
            assert!(b.len() <= Backlog::MAX + 9, "len {}", b.len());
        }
        assert!(b.collapses() >= 1);
        let got = b.take();
        for c in ["roles", "menus", "c0", "c1", "c2", "c3", "c4", "c5", "c6"] {
            assert!(
                got.contains(&(c.to_string(), Target::Everything))
                    || got.iter().any(|(gc, _)| gc == c),
                "{c} was dropped"
            );
        }
        assert!(got.contains(&("roles".to_string(), Target::Everything)));
        // The byte bound: few huge keys collapse too.
        let mut b = Backlog::default();
        let huge = "x".repeat(1024 * 1024);
        for _ in 0..5 {
            b.record("general", &Target::Key(huge.clone()));
        }
        assert_eq!(b.take(), vec![("general".to_string(), Target::Everything)]);
    }
}
