//! What the node state holds for warm-up ([`super::warm_up`]): the count of full L1
//! flushes the warm-up task waits on, and the handles of the warm-up tasks.
//!
//! Why its own file: the node state holds it and the warm-up code reads the node state;
//! kept apart, neither file imports the other both ways.

use std::sync::Mutex;

use tokio::sync::watch;
use tokio::task::AbortHandle;

/// The node's warm-up state: the flush signal and the running tasks.
pub(super) struct WarmUp {
    /// Counts full L1 flushes.
    flushes: watch::Sender<u64>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl WarmUp {
    pub(super) fn new() -> WarmUp {
        WarmUp {
            flushes: watch::Sender::new(0),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// L1 was flushed (re-subscription, coherence): warm up once L2 may be read.
    pub(super) fn flushed(&self) {
        self.flushes.send_modify(|n| *n += 1);
    }

    /// A receiver of the flush count (the warm-up task's).
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.flushes.subscribe()
    }

    /// Keeps the handles of the running tasks, for [`Self::stop`].
    pub(super) fn keep(&self, tasks: Vec<AbortHandle>) {
        if let Ok(mut t) = self.tasks.lock() {
            t.extend(tasks);
        }
    }

    /// Stops the tasks (shutdown). Idempotent.
    pub(super) fn stop(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}
