//! The node supervisor: spawns the children, restarts the ones that crash.
//!
//! It lives with the facade because it wires the node state into each child: the category
//! actors (their L1 and mailbox gate), the bus (through [`NodePort`]) and the gossip actor
//! (through [`GossipPort`]). The children's modules never import the facade.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::state::Shared;
use crate::actors::category::CategoryActor;
use crate::actors::gossip::{GossipActor, GossipPort};
use crate::bus::{BusActor, BusArgs, NodePort};

/// Which child an actor id is.
#[derive(Clone, Debug)]
enum Child {
    Category(String),
    Bus,
    Gossip,
}

/// Messages to the supervisor.
pub(super) enum SupervisorMsg {
    /// Stop restarting children (the node is shutting down).
    Stopping,
}

/// The root of the node's actor tree.
pub(super) struct NodeSupervisor;

/// The children the supervisor watches.
pub(super) struct SupervisorState {
    shared: Arc<Shared>,
    children: HashMap<ActorId, Child>,
    stopping: bool,
}

async fn spawn_category(
    shared: &Arc<Shared>,
    name: &str,
    sup: ActorCell,
) -> Result<ActorId, ActorProcessingErr> {
    let l1 = shared
        .categories
        .get(name)
        .cloned()
        .ok_or_else(|| format!("no L1 for category {name}"))?;
    let gate = shared
        .writers
        .gate(name)
        .cloned()
        .ok_or_else(|| format!("no mailbox gate for category {name}"))?;
    let actor_name = format!("{}/cat/{name}", shared.instance);
    let (actor, _) = Actor::spawn_linked(Some(actor_name), CategoryActor, (l1, gate), sup).await?;
    let id = actor.get_id();
    shared.writers.register(name, actor).await;
    Ok(id)
}

/// A node needs the bus when it has anyone to be coherent with: Redis or gossip peers.
fn wants_bus(shared: &Shared) -> bool {
    shared.config.redis.is_some() || shared.config.gossip_addr.is_some()
}

async fn spawn_bus(shared: &Arc<Shared>, sup: ActorCell) -> Result<ActorId, ActorProcessingErr> {
    let name = format!("{}/bus", shared.instance);
    let args = BusArgs {
        node: shared.clone() as Arc<dyn NodePort>,
        handle: shared.bus.clone(),
    };
    let (actor, _) = Actor::spawn_linked(Some(name), BusActor, args, sup).await?;
    let id = actor.get_id();
    shared.bus.attach(Some(actor));
    Ok(id)
}

async fn spawn_gossip(shared: &Arc<Shared>, sup: ActorCell) -> Result<ActorId, ActorProcessingErr> {
    let name = format!("{}/gossip", shared.instance);
    let node = shared.clone() as Arc<dyn GossipPort>;
    let (actor, _) = Actor::spawn_linked(Some(name), GossipActor, node, sup).await?;
    Ok(actor.get_id())
}

impl Actor for NodeSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut children = HashMap::new();
        let names: Vec<String> = shared.categories.keys().cloned().collect();
        for name in names {
            let id = spawn_category(&shared, &name, myself.get_cell()).await?;
            children.insert(id, Child::Category(name));
        }
        if shared.config.gossip_addr.is_some() {
            let id = spawn_gossip(&shared, myself.get_cell()).await?;
            children.insert(id, Child::Gossip);
        }
        if wants_bus(&shared) {
            let id = spawn_bus(&shared, myself.get_cell()).await?;
            children.insert(id, Child::Bus);
        }
        Ok(SupervisorState {
            shared,
            children,
            stopping: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Stopping => state.stopping = true,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "terminated".into()))
            }
            _ => return Ok(()),
        };
        let Some(child) = state.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        if state.stopping {
            return Ok(());
        }
        crate::stats::NodeCounters::incr(&state.shared.counters.actor_restarts);
        match child {
            Child::Category(name) => {
                tracing::error!(category = %name, %reason, "category actor died; restarting it");
                let id = spawn_category(&state.shared, &name, myself.get_cell()).await?;
                state.children.insert(id, Child::Category(name));
            }
            Child::Gossip => {
                tracing::error!(%reason, "gossip actor died; restarting it");
                // Give the old endpoint a moment to release its UDP port.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let id = spawn_gossip(&state.shared, myself.get_cell()).await?;
                state.children.insert(id, Child::Gossip);
            }
            Child::Bus => {
                tracing::error!(%reason, "bus actor died; restarting it (L1 will be flushed on reconnect)");
                state.shared.bus.attach(None);
                let id = spawn_bus(&state.shared, myself.get_cell()).await?;
                state.children.insert(id, Child::Bus);
            }
        }
        Ok(())
    }
}
