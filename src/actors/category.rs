//! One actor per category: it applies the removals of that category's L1 (invalidations,
//! flushes) in the order they arrive, and the local writes of tagged values among them.
//! Untagged local writes and fills insert into moka directly, guarded by fill tickets and
//! remote marks (see `HybridCache::put_local`).
//!
//! Its mailbox is fronted by a [`MailboxGate`]: every message but [`CategoryMsg::OverflowFlush`]
//! and the test hooks holds a slot, given back when it is handled.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::actors::mailbox::MailboxGate;
use crate::l1::L1Category;
use crate::pattern::Pattern;

/// Messages a category actor handles.
pub enum CategoryMsg {
    /// Write a tagged value into L1 (voids in-flight fills of the key), `tags` checked
    /// already. Ordered with the tag invalidations (an untagged value is put directly).
    Put {
        key: String,
        value: Bytes,
        ttl: Duration,
        tags: Vec<String>,
        reply: RpcReplyPort<()>,
    },
    /// Remove entries matching a pattern; replies with the number removed.
    Invalidate {
        pattern: Pattern,
        reply: Option<RpcReplyPort<u64>>,
    },
    /// Replies once every message sent before it has been handled: the bus renews the
    /// freshness lease only after the invalidations received before a ping echo are applied.
    Barrier(RpcReplyPort<()>),
    /// A message could not be admitted (full mailbox): flush, which covers whatever it would
    /// have removed. Not gated; at most one is in flight (see [`crate::actors::mailbox`]).
    OverflowFlush,
    /// Test hook: make the actor fail as a bug would.
    Crash,
    /// Test hook: keep the actor busy for a while (a stalled writer), so its mailbox fills.
    Stall(Duration),
}

/// The category actor.
pub struct CategoryActor;

/// What a category actor owns: its L1 and the gate of its mailbox.
pub struct CategoryState {
    l1: Arc<L1Category>,
    gate: Arc<MailboxGate>,
}

impl Actor for CategoryActor {
    type Msg = CategoryMsg;
    type State = CategoryState;
    type Arguments = (Arc<L1Category>, Arc<MailboxGate>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (l1, gate): (Arc<L1Category>, Arc<MailboxGate>),
    ) -> Result<Self::State, ActorProcessingErr> {
        // The predecessor's mailbox died with it: its slots are free again.
        gate.reset();
        // A (re)started actor cannot know what its predecessor left half-done.
        let dropped = l1.flush().await;
        if dropped > 0 {
            tracing::warn!(
                category = l1.name(),
                dropped,
                "category actor restarted; L1 flushed"
            );
        }
        Ok(CategoryState { l1, gate })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let l1 = &state.l1;
        if !matches!(
            msg,
            CategoryMsg::OverflowFlush | CategoryMsg::Crash | CategoryMsg::Stall(_)
        ) {
            state.gate.release();
        }
        match msg {
            CategoryMsg::Put {
                key,
                value,
                ttl,
                tags,
                reply,
            } => {
                l1.put_tagged(&key, value, ttl, &tags).await;
                let _ = reply.send(());
            }
            CategoryMsg::Invalidate { pattern, reply } => {
                let n = l1.invalidate(&pattern).await;
                if let Some(r) = reply {
                    let _ = r.send(n);
                }
            }
            CategoryMsg::Barrier(reply) => {
                let _ = reply.send(());
            }
            CategoryMsg::OverflowFlush => {
                // Cleared first: an overflow after this point asks for another flush.
                state.gate.overflow_handled();
                let dropped = l1.flush().await;
                tracing::warn!(
                    category = l1.name(),
                    dropped,
                    "category mailbox overflowed; L1 flushed"
                );
            }
            CategoryMsg::Stall(d) => tokio::time::sleep(d).await,
            CategoryMsg::Crash => {
                panic!("category actor `{}` crashed on request", l1.name());
            }
        }
        Ok(())
    }
}
