//! Marks of peers' changes: how a local `set` learns that a peer changed its key while it
//! was writing (see [`RemoteMarks`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Marks of peers' changes, bumped by the bus *before* it hands an invalidation (or a flush)
/// to the L1 writers. A local `set` reads the mark of its key around its L2 write and L1 put:
/// if it moved, a peer changed the key (or something was lost) meanwhile, and that peer's L2
/// write may be the later one, while its invalidation may have reached our L1 *before* our
/// own put. Keeping our value would then leave it in our L1 while L2 holds the peer's (for the
/// whole L1 TTL), so the writer drops its copy and the next read goes to L2.
///
/// Striped by `(category, key)`: a false positive only costs the writer one L2 read.
pub(super) struct RemoteMarks {
    stripes: Box<[AtomicU64]>,
    wide: AtomicU64,
}

const REMOTE_STRIPES: usize = 256;

impl RemoteMarks {
    pub(super) fn new() -> Self {
        RemoteMarks {
            stripes: (0..REMOTE_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            wide: AtomicU64::new(0),
        }
    }

    fn stripe(category: &str, key: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (category, key).hash(&mut h);
        (h.finish() as usize) % REMOTE_STRIPES
    }

    /// A peer changed `key` in `category`.
    pub(super) fn mark_key(&self, category: &str, key: &str) {
        self.stripes[Self::stripe(category, key)].fetch_add(1, Ordering::SeqCst);
    }

    /// A peer changed many keys (glob, `*`, category `*`), or a flush is coming.
    pub(super) fn mark_all(&self) {
        self.wide.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn snapshot(&self, category: &str, key: &str) -> (u64, u64) {
        (
            self.stripes[Self::stripe(category, key)].load(Ordering::SeqCst),
            self.wide.load(Ordering::SeqCst),
        )
    }
}
