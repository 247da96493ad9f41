//! Sentinel's primary proof, the I/O half (the rules are in [`crate::coherence::primary`]):
//! a **probe task** asks every configured sentinel which server is the primary when the
//! machine says a query is due ([`Action::QueryPrimary`](crate::coherence::Action::QueryPrimary)),
//! one query in flight at most, and hands the answers back as [`BusMsg::PrimaryAnswer`];
//! the actor reduces each answer to "our server / another / none" against the address of
//! the installed connection and feeds them to the machine. Not started for single Redis
//! and Cluster.

use std::time::{Duration, Instant};

use ractor::ActorRef;

use super::{BusMsg, BusState};
use crate::coherence::SentinelAnswer;
use crate::config::RedisTarget;
use crate::l2::topology::SentinelProbe;

/// The probe task's handle: query ids go in (a full slot: the query is skipped, its
/// answer never comes, and the proof lapses by the clock if that goes on).
pub(super) struct Prober {
    queries: tokio::sync::mpsc::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    /// Asks for query `id` (skipped while the previous one runs).
    pub(super) fn query(&self, id: u64) {
        let _ = self.queries.try_send(id);
    }

    /// Stops the task.
    pub(super) fn stop(&self) {
        self.task.abort();
    }
}

/// How many sentinels a Sentinel target lists (`None` for other targets).
pub(super) fn sentinel_count(target: Option<&RedisTarget>) -> Option<usize> {
    match target {
        Some(RedisTarget::Sentinel { sentinels, .. }) => Some(sentinels.len()),
        _ => None,
    }
}

/// Starts the probe task of a Sentinel target (each answer bounded by `timeout`).
pub(super) fn spawn_prober(
    target: Option<&RedisTarget>,
    timeout: Duration,
    bus: ActorRef<BusMsg>,
) -> Option<Prober> {
    let Some(RedisTarget::Sentinel {
        sentinels, master, ..
    }) = target
    else {
        return None;
    };
    let mut probe = match SentinelProbe::new(sentinels, master, timeout) {
        Ok(p) => p,
        Err(e) => {
            // Validated at start; without a probe no proof ever holds (fail closed).
            tracing::error!(error = %e, "sentinel probe not started: no lease");
            return None;
        }
    };
    let (queries, mut rx) = tokio::sync::mpsc::channel::<u64>(1);
    let task = tokio::spawn(async move {
        while let Some(id) = rx.recv().await {
            let answers = probe.ask().await;
            if bus.cast(BusMsg::PrimaryAnswer { id, answers }).is_err() {
                return;
            }
        }
    });
    Some(Prober { queries, task })
}

impl BusState {
    /// [`BusMsg::PrimaryAnswer`]: what the sentinels named for query `id`.
    pub(super) async fn on_primary_answer(
        &mut self,
        id: u64,
        answers: Vec<Option<String>>,
        now: Instant,
    ) {
        let ours = self.node.l2().and_then(|l2| l2.primary_addr());
        let answers: Vec<SentinelAnswer> = answers
            .into_iter()
            .map(|a| match a {
                None => SentinelAnswer::Silent,
                Some(a) if Some(&a) == ours.as_ref() => SentinelAnswer::Ours,
                Some(a) => SentinelAnswer::Other(a),
            })
            .collect();
        let moves = self.machine.counters().primary_moves;
        let actions = self.machine.primary_answered(id, &answers, now);
        if self.machine.counters().primary_moves > moves {
            tracing::warn!(
                ours = ?ours,
                ?answers,
                "a majority of the sentinels name another primary: lease revoked, reconnecting"
            );
        }
        self.run(actions).await;
    }
}
