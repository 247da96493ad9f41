//! Striped async locks: writes of one `(category, key)` on one node take effect in L2, L1
//! and on the bus in one order. Striped, so a collision only serializes two unrelated
//! writes.

/// The key locks of one node.
pub(super) struct KeyLocks {
    stripes: Box<[tokio::sync::Mutex<()>]>,
}

impl KeyLocks {
    const STRIPES: usize = 1024;

    pub(super) fn new() -> Self {
        KeyLocks {
            stripes: (0..Self::STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// Waits for the lock of `key` in `category`.
    pub(super) async fn lock(&self, category: &str, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (category, key).hash(&mut h);
        self.stripes[(h.finish() as usize) % Self::STRIPES]
            .lock()
            .await
    }
}
