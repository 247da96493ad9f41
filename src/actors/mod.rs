//! The node's actor tree (ractor).
//!
//! ```text
//! NodeSupervisor
//!   ├── CategoryActor "permissions"   owns writes / invalidations / lifecycle of one L1
//!   ├── CategoryActor "menus" …
//!   ├── BusActor                      Redis pub/sub + the coherence state machine (when Redis is configured)
//!   └── GossipActor                   QUIC membership and stats (when a gossip address is configured)
//! ```
//!
//! Actors serialise *writes* and own *lifecycle*; they are never on the read path. A crashed
//! child is restarted by the supervisor; a restarted category actor flushes its L1 first,
//! because whatever state the crash left behind cannot be trusted.

pub mod category;
pub mod gossip;
pub mod mailbox;
pub mod supervisor;

pub use category::{CategoryActor, CategoryMsg};
pub use supervisor::{NodeSupervisor, SupervisorMsg};
