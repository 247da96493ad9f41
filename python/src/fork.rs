//! Fork detection without a system call per cache call: a `pthread_atfork` child handler
//! counts forks, and each `Core` remembers the count it was built under. It sees every
//! `fork()` of the process, also the C-level ones Python's `os.register_at_fork` misses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn in_child() {
    // Async-signal-safe: one atomic add, no allocation, no lock.
    FORKS.fetch_add(1, Ordering::SeqCst);
}

/// Registers the handler (once per process; it is inherited across fork).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `in_child` is an `extern "C" fn()` that only touches a static atomic,
        // which is valid in the child right after fork.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
}

/// How many forks this process is away from the first process that loaded the module.
pub fn generation() -> u64 {
    FORKS.load(Ordering::Relaxed)
}
