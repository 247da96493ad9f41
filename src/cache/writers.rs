//! The L1 writers: one category actor per category, reached through the bounded gate of its
//! mailbox. A request that finds the mailbox full is not waited for: the category is flushed
//! behind everything already queued (fail closed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};

use super::remote::RemoteMarks;
use crate::actors::mailbox::MailboxGate;
use crate::actors::CategoryMsg;
use crate::error::CacheError;

/// The running category actors, and the gates of their mailboxes (kept across restarts).
pub(super) struct Writers {
    actors: RwLock<HashMap<String, ActorRef<CategoryMsg>>>,
    gates: HashMap<String, Arc<MailboxGate>>,
    /// Test hook: holds the next registration of a (re)started actor.
    hold: Mutex<Option<RegistrationHold>>,
}

/// Test hook: the next (re)started actor waits, started (its L1 flushed) but not yet
/// registered, until `release` fires; `reached` fires when it waits, `done` once it is
/// registered.
pub(super) struct RegistrationHold {
    pub(super) reached: tokio::sync::oneshot::Sender<()>,
    pub(super) release: tokio::sync::oneshot::Receiver<()>,
    pub(super) done: tokio::sync::oneshot::Sender<()>,
}

impl Writers {
    /// One gate of `capacity` per category; no actor yet.
    pub(super) fn new<'a>(names: impl Iterator<Item = &'a String>, capacity: usize) -> Self {
        let gates = names
            .map(|name| {
                let gate = MailboxGate::new(format!("category:{name}"), capacity);
                (name.clone(), Arc::new(gate))
            })
            .collect();
        Writers {
            actors: RwLock::new(HashMap::new()),
            gates,
            hold: Mutex::new(None),
        }
    }

    /// Installs the running actor of `category`.
    fn set(&self, category: &str, actor: ActorRef<CategoryMsg>) {
        if let Ok(mut w) = self.actors.write() {
            w.insert(category.to_string(), actor);
        }
    }

    /// Test hook: see [`RegistrationHold`].
    pub(super) fn hold_next_registration(&self, hold: RegistrationHold) {
        if let Ok(mut h) = self.hold.lock() {
            *h = Some(hold);
        }
    }

    fn take_hold(&self) -> Option<RegistrationHold> {
        self.hold.lock().ok()?.take()
    }

    /// Installs a (re)started actor of `category`, whose startup flush has run. A change
    /// that could not be handed to a writer meanwhile (its predecessor was dead, or none was
    /// registered yet) left a flush request on the gate: the new actor runs it, after the
    /// registration, so no change is lost between its startup flush and now.
    pub(super) async fn register(&self, category: &str, actor: ActorRef<CategoryMsg>) {
        let mut done = None;
        if let Some(h) = self.take_hold() {
            let _ = h.reached.send(());
            let _ = h.release.await;
            done = Some(h.done);
        }
        self.set(category, actor.clone());
        if let Some(gate) = self.gate(category) {
            if gate.flush_pending() && actor.cast(CategoryMsg::OverflowFlush).is_err() {
                // Died again already: its successor flushes on start and comes back here.
                tracing::warn!(category, "restarted L1 writer gone before its flush");
            }
        }
        if let Some(d) = done {
            let _ = d.send(());
        }
    }

    /// The running actor of `category`.
    pub(super) fn get(&self, category: &str) -> Option<ActorRef<CategoryMsg>> {
        self.actors.read().ok()?.get(category).cloned()
    }

    /// The gate of `category`'s mailbox.
    pub(super) fn gate(&self, category: &str) -> Option<&Arc<MailboxGate>> {
        self.gates.get(category)
    }

    /// Every category's gate.
    pub(super) fn gates(&self) -> impl Iterator<Item = &Arc<MailboxGate>> {
        self.gates.values()
    }
}

impl Writers {
    /// Sends a request to a category actor, retrying briefly while it restarts. A full
    /// mailbox is not waited for: the category is flushed (see [`Writers::flush_behind`])
    /// and the caller gets [`CacheError::Unavailable`].
    pub(super) async fn ask<T: Send + 'static>(
        &self,
        category: &str,
        make: impl Fn(RpcReplyPort<T>) -> CategoryMsg,
        remote: &RemoteMarks,
    ) -> Result<T, CacheError> {
        let Some(gate) = self.gate(category) else {
            return Err(CacheError::Unavailable(format!(
                "no L1 writer for category `{category}`"
            )));
        };
        let mut last = String::new();
        for attempt in 0..50u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let Some(actor) = self.get(category) else {
                last = "no actor".into();
                continue;
            };
            if !gate.try_reserve() {
                gate.note_refused();
                self.flush_behind(category, remote);
                return Err(CacheError::Unavailable(format!(
                    "category actor `{category}`: mailbox full (L1 flushed)"
                )));
            }
            match actor.call(&make, Some(Duration::from_secs(5))).await {
                Ok(ractor::rpc::CallResult::Success(v)) => return Ok(v),
                Ok(ractor::rpc::CallResult::Timeout) => last = "timeout".into(),
                Ok(ractor::rpc::CallResult::SenderError) => last = "actor stopped".into(),
                Err(e) => {
                    // Never enqueued: the slot is ours to give back.
                    gate.release();
                    last = e.to_string();
                }
            }
        }
        Err(CacheError::Unavailable(format!(
            "category actor `{category}`: {last}"
        )))
    }

    /// Hands `msg` to the category's L1 writer without waiting. When its mailbox is full,
    /// or the writer is dead or not registered yet, the message is not sent and the category
    /// is flushed instead (fail closed). Returns whether the message itself was sent.
    pub(super) fn tell(&self, category: &str, msg: CategoryMsg, remote: &RemoteMarks) -> bool {
        let Some(gate) = self.gate(category) else {
            return false;
        };
        let Some(actor) = self.get(category) else {
            self.flush_behind(category, remote);
            return false;
        };
        if !gate.try_reserve() {
            gate.note_refused();
            self.flush_behind(category, remote);
            return false;
        }
        if actor.cast(msg).is_err() {
            // The actor died: its successor may have run its startup flush already (it is
            // not registered yet). Leave a flush for it (see `register`).
            gate.release();
            self.flush_behind(category, remote);
            return false;
        }
        true
    }

    /// A change for `category`'s L1 could not be handed to its writer (full mailbox,
    /// timeout): whatever it would have removed is removed by a flush the actor runs after
    /// everything already in its mailbox (one such flush in flight at most). `remote` is
    /// marked first, so a local write racing the flush drops its own copy.
    pub(super) fn flush_behind(&self, category: &str, remote: &RemoteMarks) {
        // A local write racing the flush drops its own copy (see `RemoteMarks`).
        remote.mark_all();
        let Some(gate) = self.gate(category) else {
            return;
        };
        if gate.request_flush() {
            tracing::warn!(
                category,
                "L1 change not handed to the writer: flushing the category"
            );
            let sent = self
                .get(category)
                .map(|a| a.cast(CategoryMsg::OverflowFlush).is_ok())
                .unwrap_or(false);
            if !sent {
                // No live actor to flush for us: the request stays pending. A restarting
                // actor either flushes on start (after this) or runs it once registered.
                tracing::warn!(category, "L1 writer restarting: flush left pending");
            }
        }
    }

    /// Waits until the actor of every category in `names` has handled what was sent to it
    /// before. False if one could not answer (restarting: it flushes anyway, but the lease
    /// is not renewed).
    pub(super) async fn barrier<'a>(&self, names: impl Iterator<Item = &'a String>) -> bool {
        let calls = names.map(|name| {
            let writer = self.get(name);
            let gate = self.gate(name).cloned();
            async move {
                let (Some(w), Some(gate)) = (writer, gate) else {
                    return false;
                };
                // A full mailbox: no renewal now (the lease lapses; fail closed).
                if !gate.try_reserve() {
                    gate.note_refused();
                    return false;
                }
                match w
                    .call(CategoryMsg::Barrier, Some(Duration::from_secs(1)))
                    .await
                {
                    Ok(ractor::rpc::CallResult::Success(())) => true,
                    Ok(_) => false,
                    Err(_) => {
                        gate.release();
                        false
                    }
                }
            }
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .all(|ok| ok)
    }
}
