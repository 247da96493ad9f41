//! The handlers' shared state ([`AppState`]).
//!
//! Why its own file: the routes, the limits middleware, the value read in front of the
//! router (`hit_first`) and the router assembly all take it, so it sits below all of them.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::cluster::Membership;
use crate::HybridCache;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The cache the routes serve.
    pub cache: HybridCache,
    /// Gossip membership, for `/v1/cluster/stats` and `/metrics`; `None` without gossip.
    pub membership: Option<Arc<dyn Membership>>,
    /// The API's requests in flight (`max_in_flight` permits): one semaphore shared by the
    /// router's load shedding and the value read in front of it (`hit_first`), so both count
    /// against one limit.
    pub in_flight: Arc<Semaphore>,
}

impl AppState {
    /// The state of a node serving `cache`, with the in-flight limit of its config.
    pub fn new(cache: HybridCache, membership: Option<Arc<dyn Membership>>) -> AppState {
        let in_flight = Arc::new(Semaphore::new(cache.config().http_limits.max_in_flight));
        AppState {
            cache,
            membership,
            in_flight,
        }
    }
}
