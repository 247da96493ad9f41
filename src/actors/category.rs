//! One actor per category: the single writer of that category's L1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::l1::L1Category;
use crate::pattern::Pattern;

/// Messages a category actor handles.
pub enum CategoryMsg {
    /// Write a value into L1 (voids in-flight fills of the key).
    Put {
        key: String,
        value: Bytes,
        ttl: Duration,
        reply: RpcReplyPort<()>,
    },
    /// Remove entries matching a pattern; replies with the number removed.
    Invalidate {
        pattern: Pattern,
        reply: Option<RpcReplyPort<u64>>,
    },
    /// Drop everything (coherence gap, reconnect).
    Flush { reply: Option<RpcReplyPort<u64>> },
    /// Replies once every message sent before it has been handled: the bus renews the
    /// freshness lease only after the invalidations received before a ping echo are applied.
    Barrier(RpcReplyPort<()>),
    /// Test hook: make the actor fail as a bug would.
    Crash,
}

/// The category actor.
pub struct CategoryActor;

impl Actor for CategoryActor {
    type Msg = CategoryMsg;
    type State = Arc<L1Category>;
    type Arguments = Arc<L1Category>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        l1: Arc<L1Category>,
    ) -> Result<Self::State, ActorProcessingErr> {
        // A (re)started actor cannot know what its predecessor left half-done.
        let dropped = l1.flush().await;
        if dropped > 0 {
            tracing::warn!(
                category = l1.name(),
                dropped,
                "category actor restarted; L1 flushed"
            );
        }
        Ok(l1)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        l1: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CategoryMsg::Put {
                key,
                value,
                ttl,
                reply,
            } => {
                l1.put(&key, value, ttl).await;
                let _ = reply.send(());
            }
            CategoryMsg::Invalidate { pattern, reply } => {
                let n = l1.invalidate(&pattern).await;
                if let Some(r) = reply {
                    let _ = r.send(n);
                }
            }
            CategoryMsg::Flush { reply } => {
                let n = l1.flush().await;
                if let Some(r) = reply {
                    let _ = r.send(n);
                }
            }
            CategoryMsg::Barrier(reply) => {
                let _ = reply.send(());
            }
            CategoryMsg::Crash => {
                panic!("category actor `{}` crashed on request", l1.name());
            }
        }
        Ok(())
    }
}
