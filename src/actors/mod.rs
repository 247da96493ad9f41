//! The node's state-owning actors (ractor), below the facade.
//!
//! ```text
//! NodeSupervisor (in the facade's module: the actor tree)
//!   ├── CategoryActor "permissions"   owns writes / invalidations / lifecycle of one L1
//!   ├── CategoryActor "menus" …
//!   ├── BusActor (the bus module)     Redis pub/sub + the coherence state machine (when Redis is configured)
//!   └── GossipActor                   QUIC membership and stats (when a gossip address is configured)
//! ```
//!
//! Actors serialise *writes* and own *lifecycle*; they are never on the read path. A crashed
//! child is restarted by the supervisor; a restarted category actor flushes its L1 first,
//! because whatever state the crash left behind cannot be trusted. This module holds the
//! leaf actors and the bounded-mailbox gate every actor of the node uses; it imports neither
//! the facade nor the bus (the gossip actor reaches them through [`gossip::GossipPort`]).

pub mod category;
pub mod gossip;
pub mod mailbox;

pub use category::CategoryMsg;
