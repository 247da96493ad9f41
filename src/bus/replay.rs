//! The replay worker: writes the changes whose L2 outcome was unknown (Redis down, or a
//! peer sent them over QUIC) into L2 once Redis answers again, then announces them. One
//! runs at a time, outside the actor: the actor never runs an L2 call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ractor::ActorRef;

use super::handle::{tell, BusHandle};
use super::port::NodePort;
use super::{BusMsg, BusState, ChangeKind, Target};
use crate::l2::L2;

impl BusState {
    /// Starts the replay worker when something waits for L2 and Redis answers.
    pub(super) fn start_replay(&self, myself: &ActorRef<BusMsg>) {
        let Some(l2) = self.node.l2().cloned().filter(|l2| l2.available()) else {
            return;
        };
        if self.node.backlog_is_empty() || self.replaying.swap(true, Ordering::AcqRel) {
            return;
        }
        let worker = Replay {
            node: self.node.clone(),
            handle: self.handle.clone(),
            myself: myself.clone(),
            replaying: self.replaying.clone(),
        };
        tokio::spawn(worker.run(l2));
    }
}

/// One replay run.
struct Replay {
    node: Arc<dyn NodePort>,
    handle: Arc<BusHandle>,
    myself: ActorRef<BusMsg>,
    /// Cleared when the run ends.
    replaying: Arc<AtomicBool>,
}

impl Replay {
    async fn run(self, l2: Arc<L2>) {
        let pending = self.node.backlog_take();
        let total = pending.len();
        let mut done = 0;
        let mut iter = pending.into_iter();
        while let Some((category, target)) = iter.next() {
            let pattern = target.to_pattern().unwrap_or(crate::pattern::Pattern::All);
            if let Err(e) = l2.invalidate_pattern(&category, &pattern).await {
                tracing::debug!(error = %e, "backlog replay interrupted");
                let rest = std::iter::once((category, target)).chain(iter).collect();
                self.node.backlog_requeue(rest);
                break;
            }
            // L2 now says "invalidated"; this node's L1 must agree. With the
            // `serve_stale_on_outage` opt-in it may hold the very value whose L2 write failed
            // (accepted locally), which no other node can read: keeping it would leave this
            // node answering it, alone, until its TTL.
            self.node.invalidate_l1(&category, pattern);
            self.announce(category, target);
            done += 1;
        }
        // Only now may L2 be read again (what failed was recorded again above).
        self.node.backlog_replay_done();
        tracing::info!(replayed = done, total, "uncertain changes replayed into L2");
        self.replaying.store(false, Ordering::Release);
    }

    /// Peers may have refilled the old L2 value meanwhile: tell them (a full mailbox
    /// flushes everywhere instead, which covers it).
    fn announce(&self, category: String, target: Target) {
        let announce = BusMsg::Publish {
            category: Some(category),
            target,
            kind: ChangeKind::Invalidate,
            strict: false,
            l2_pending: false,
            done: None,
            write: None,
        };
        tell(self.handle.gate(), &self.myself, announce);
    }
}
