//! The node as the bus sees it.
//!
//! [`NodePort`] lists exactly what the bus actor and its tasks need from the rest of the
//! node: settings, counters, the L1 writers (invalidate, barrier, flush), the lease, the L2
//! link and its replay backlog, the gossip peers. The cache module implements it for its
//! private node state, so the bus never names the facade and the facade can own the bus
//! without an import cycle.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;

use crate::cluster::PeerLink;
use crate::config::Config;
use crate::l2::L2;
use crate::pattern::Pattern;
use crate::stats::NodeCounters;
use crate::wire::Target;

/// What the bus needs from the node it serves.
pub trait NodePort: Send + Sync + 'static {
    /// The node's validated configuration.
    fn config(&self) -> &Config;
    /// Unique id of this node instance (its ping channel, its actor names).
    fn instance(&self) -> &str;
    /// Names of the configured categories.
    fn category_names(&self) -> Vec<String>;
    /// Whether `category` is configured.
    fn has_category(&self, category: &str) -> bool;
    /// The node's event counters.
    fn counters(&self) -> &NodeCounters;
    /// The L2 client, when Redis is configured.
    fn l2(&self) -> Option<&Arc<L2>>;
    /// The gossip peers, when this node gossips and the gossip actor runs.
    fn peers(&self) -> Option<Arc<dyn PeerLink>>;

    /// A peer changed `key` of `category` (bumped before the L1 writers see the change).
    fn mark_remote_key(&self, category: &str, key: &str);
    /// A peer changed many keys, or a flush is coming.
    fn mark_remote_all(&self);
    /// Hands an invalidation to `category`'s L1 writer without waiting (a full mailbox or a
    /// restarting actor flushes the category instead).
    fn invalidate_l1(&self, category: &str, pattern: Pattern);
    /// Waits until every category actor has handled what was sent to it before; false if
    /// one could not answer.
    fn barrier(&self) -> BoxFuture<'_, bool>;
    /// Flushes every category's L1; `reason` is the metrics label.
    fn flush_all<'a>(&'a self, reason: &'a str) -> BoxFuture<'a, ()>;

    /// Extends the freshness lease to `until`.
    fn renew_lease(&self, until: Instant);
    /// Revokes the freshness lease.
    fn revoke_lease(&self);
    /// Counts a lease lapse (metrics).
    fn record_lease_lapse(&self);
    /// Records the propagation delay of an applied invalidation sent at `sent_at_ms`.
    fn observe_propagation_since(&self, sent_at_ms: u64);
    /// Whether the Redis subscription is live.
    fn set_link_up(&self, up: bool);
    /// Whether neither Redis nor any peer has been reachable past the isolation grace.
    fn is_isolated(&self) -> bool;
    /// Sets the isolation flag; returns its previous value.
    fn set_isolated(&self, isolated: bool) -> bool;

    /// Remembers a change a peer sent over QUIC for replay into L2 (`None` = every
    /// category).
    fn l2_missed_any(&self, category: Option<&str>, target: &Target);
    /// Remembers that every category must be invalidated in L2 before it is read again.
    fn l2_missed_everything(&self);
    /// Whether nothing waits to be replayed into L2.
    fn backlog_is_empty(&self) -> bool;
    /// Takes every change waiting for L2 (L2 stays unreadable for them until
    /// [`NodePort::backlog_replay_done`]).
    fn backlog_take(&self) -> Vec<(String, Target)>;
    /// Puts changes the replay could not write back into the backlog, in order.
    fn backlog_requeue(&self, changes: Vec<(String, Target)>);
    /// The replay finished: L2 may be read again for what it wrote.
    fn backlog_replay_done(&self);
    /// Every change waiting for L2, pending or being replayed (a peer's backlog question).
    fn backlog_snapshot(&self) -> Vec<(String, Target)>;
    /// Holds (or frees) every L2 read: the replay hold of the coherence machine.
    fn set_l2_hold(&self, held: bool);
}
