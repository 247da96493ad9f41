//! The handlers' shared state ([`AppState`]).
//!
//! Why its own file: the routes, the limits middleware and the router assembly all take it,
//! so it sits below all of them.

use std::sync::Arc;

use crate::cluster::Membership;
use crate::HybridCache;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The cache the routes serve.
    pub cache: HybridCache,
    /// Gossip membership, for `/v1/cluster/stats` and `/metrics`; `None` without gossip.
    pub membership: Option<Arc<dyn Membership>>,
}
