//! The node state as the actors below the facade see it: [`NodePort`] for the bus,
//! [`GossipPort`] for the gossip actor. Each method is a thin view of [`Shared`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::state::Shared;
use crate::actors::gossip::{GossipLink, GossipPort};
use crate::actors::CategoryMsg;
use crate::bus::NodePort;
use crate::cluster::PeerLink;
use crate::config::Config;
use crate::l2::L2;
use crate::pattern::Pattern;
use crate::stats::NodeCounters;
use crate::wire::Target;

impl NodePort for Shared {
    fn config(&self) -> &Config {
        &self.config
    }
    fn instance(&self) -> &str {
        &self.instance
    }
    fn category_names(&self) -> Vec<String> {
        self.categories.keys().cloned().collect()
    }
    fn has_category(&self, category: &str) -> bool {
        self.categories.contains_key(category)
    }
    fn counters(&self) -> &NodeCounters {
        &self.counters
    }
    fn l2(&self) -> Option<&Arc<L2>> {
        self.l2.as_ref()
    }
    fn peers(&self) -> Option<Arc<dyn PeerLink>> {
        self.gossip()
    }

    fn mark_remote_key(&self, category: &str, key: &str) {
        self.remote.mark_key(category, key);
    }
    fn mark_remote_all(&self) {
        self.remote.mark_all();
        // A category-wide change may have bumped a generation: forget them before L1 does.
        self.known_gens.doubt();
    }
    fn invalidate_l1(&self, category: &str, pattern: Pattern) {
        let msg = CategoryMsg::Invalidate {
            pattern,
            reply: None,
        };
        self.tell_writer(category, msg);
    }
    fn barrier(&self) -> BoxFuture<'_, bool> {
        Shared::barrier(self).boxed()
    }
    fn flush_all<'a>(&'a self, reason: &'a str) -> BoxFuture<'a, ()> {
        Shared::flush_all(self, reason).boxed()
    }

    fn renew_lease(&self, until: Instant) {
        self.lease.extend_to(until);
    }
    fn revoke_lease(&self) {
        self.lease.revoke();
        self.known_gens.doubt();
    }
    fn record_lease_lapse(&self) {
        self.metrics.record_lease_lapse();
    }
    fn observe_propagation_since(&self, sent_at_ms: u64) {
        self.metrics.observe_propagation_since(sent_at_ms);
    }
    fn set_link_up(&self, up: bool) {
        self.known_gens.doubt();
        self.link_up.store(up, Ordering::Relaxed);
    }
    fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::Relaxed)
    }
    fn set_isolated(&self, isolated: bool) -> bool {
        self.isolated.swap(isolated, Ordering::Relaxed)
    }

    fn l2_missed_any(&self, category: Option<&str>, target: &Target) {
        Shared::l2_missed_any(self, category, target);
    }
    fn l2_missed_everything(&self) {
        Shared::l2_missed_everything(self);
    }
    fn backlog_is_empty(&self) -> bool {
        self.l2_backlog_is_empty()
    }
    fn backlog_take(&self) -> Vec<(String, Target)> {
        match self.l2_backlog.lock() {
            Ok(mut b) => b.take(),
            Err(_) => Vec::new(),
        }
    }
    fn backlog_requeue(&self, changes: Vec<(String, Target)>) {
        if let Ok(mut b) = self.l2_backlog.lock() {
            for (c, t) in changes {
                b.record(&c, &t);
            }
        }
    }
    fn backlog_replay_done(&self) {
        // The replay may have bumped generations: forget them before L2 is read again.
        self.known_gens.doubt();
        if let Ok(mut b) = self.l2_backlog.lock() {
            b.replay_done();
        }
    }
    fn backlog_snapshot(&self) -> Vec<(String, Target)> {
        match self.l2_backlog.lock() {
            Ok(b) => b.snapshot(),
            // Unknown contents: every category (wider, never less).
            Err(_) => self
                .categories
                .keys()
                .map(|c| (c.clone(), Target::Everything))
                .collect(),
        }
    }
    fn set_l2_hold(&self, held: bool) {
        self.l2_hold.store(held, Ordering::Release);
    }
}

impl GossipPort for Shared {
    fn config(&self) -> &Config {
        &self.config
    }
    fn counters(&self) -> &NodeCounters {
        &self.counters
    }
    fn stats_json(&self) -> BoxFuture<'_, Vec<u8>> {
        async move { serde_json::to_vec(&self.stats().await).unwrap_or_default() }.boxed()
    }
    fn attach(&self, link: Option<Arc<GossipLink>>) {
        let peers = link.clone().map(|l| l as Arc<dyn PeerLink>);
        let membership = link.map(|l| l as Arc<dyn crate::cluster::Membership>);
        self.set_gossip(peers, membership);
    }
    fn peer_payload(&self, payload: Vec<u8>) {
        self.bus.inbound_from_peer(payload);
    }
}
