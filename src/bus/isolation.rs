//! Isolation: a node with Redis and gossip peers configured that reaches neither for longer
//! than the isolation grace marks itself isolated (`/health` drains it, and the
//! `serve_stale_on_outage` opt-in no longer serves its L1); when either comes back it flushes
//! L1 before the flag clears.

use std::time::Instant;

use super::BusState;
use crate::coherence::LinkState;

impl BusState {
    /// Checked at every tick.
    pub(super) async fn check_isolation(&mut self, now: Instant) {
        let cfg = self.node.config();
        if cfg.redis.is_none() || cfg.peers.is_empty() {
            return;
        }
        let grace = cfg.isolation_grace;
        let peers = self.node.peers().map(|g| g.alive_peers()).unwrap_or(0);
        let reachable = self.machine.link() == LinkState::Up || peers > 0;
        if reachable {
            self.unreachable_since = None;
            if self.node.is_isolated() {
                tracing::warn!("isolation ended; flushing L1 before serving");
                // The flag clears only after the flush: nothing stale is served meanwhile.
                self.node.flush_all("isolation_ended").await;
                self.node.set_isolated(false);
            }
        } else {
            let since = *self.unreachable_since.get_or_insert(now);
            if now.duration_since(since) > grace && !self.node.set_isolated(true) {
                tracing::error!("neither redis nor any peer reachable: isolated");
            }
        }
    }
}
