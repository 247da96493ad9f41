//! Versioned, size-limited bincode 2 framing shared by every node-to-node message
//! (Redis pub/sub payloads and QUIC frames), see CONTRACT §10.
//!
//! A frame is `[WIRE_VERSION] ++ bincode(serde(msg))` using bincode's standard
//! configuration (little endian, varint) with a decode limit ([`MAX_DECODE_BYTES`]).
//! Frames larger than [`MAX_FRAME_BYTES`] are neither produced nor accepted.
//!
//! Why it looks like this:
//! - the leading version byte lets a cluster run mixed versions during a rolling upgrade:
//!   a node that cannot understand a frame drops it (and counts it) instead of misreading it;
//! - every frame comes from the network, so [`decode`] must never panic and never allocate
//!   more than the frame could legitimately describe: the length is checked before
//!   decoding, and bincode's limit rejects a length prefix that claims a huge string or
//!   sequence before anything is allocated;
//! - bincode's limit counts the *in-memory* size of what it decodes (a one-byte varint
//!   `u64` counts 8, an enum tag 4), not wire bytes, so a frame of exactly
//!   [`MAX_FRAME_BYTES`] can claim somewhat more than that. The decode limit is therefore a
//!   separate, larger constant: the frame cap bounds the wire size, the decode limit bounds
//!   the memory one frame can make us allocate, and every frame [`encode`] accepts decodes;
//! - trailing bytes are rejected, so a frame has exactly one meaning.

use serde::{Deserialize, Serialize};

/// Format version carried in the first byte of every frame.
/// Version 2: typed invalidation targets, `sent_at_ms`, lease pings.
pub const WIRE_VERSION: u8 = 2;

/// Largest frame (version byte included) that [`encode`] produces and [`decode`] accepts.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// bincode decode limit: the most memory (as bincode counts it, see the module docs) that
/// decoding one frame may claim.
pub const MAX_DECODE_BYTES: usize = 4 * MAX_FRAME_BYTES;

/// Why a frame could not be encoded or decoded.
#[derive(thiserror::Error, Debug)]
pub enum WireError {
    /// The frame has no bytes at all.
    #[error("empty frame")]
    Empty,
    /// The frame (or the encoded message) is larger than allowed.
    #[error("frame too large: {len} bytes (max {max})")]
    TooLarge {
        /// Size of the offending frame in bytes.
        len: usize,
        /// The maximum allowed size ([`MAX_FRAME_BYTES`]).
        max: usize,
    },
    /// The version byte is not [`WIRE_VERSION`].
    #[error("unsupported wire version {0} (expected {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// The payload is malformed (truncated, invalid tag, invalid UTF-8, over the limit...).
    #[error("malformed frame: {0}")]
    Decode(String),
    /// The message could not be serialized.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The payload decoded but was followed by this many unexpected bytes.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

/// Encodes `msg` as one frame: the version byte followed by the bincode payload.
///
/// Fails with [`WireError::TooLarge`] if the frame would exceed [`MAX_FRAME_BYTES`].
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let payload = bincode::serde::encode_to_vec(msg, config())
        .map_err(|e| WireError::Encode(e.to_string()))?;
    let len = payload.len().saturating_add(1);
    if len > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    let mut frame = Vec::with_capacity(len);
    frame.push(WIRE_VERSION);
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Decodes one frame produced by [`encode`]. Never panics, whatever `bytes` holds.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let Some((&version, payload)) = bytes.split_first() else {
        return Err(WireError::Empty);
    };
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let (msg, used) = bincode::serde::decode_from_slice::<T, _>(payload, config())
        .map_err(|e| WireError::Decode(e.to_string()))?;
    let trailing = payload.len().saturating_sub(used);
    if trailing > 0 {
        return Err(WireError::TrailingBytes(trailing));
    }
    Ok(msg)
}

/// What changed at the origin; receivers treat all kinds the same way (drop from L1),
/// the kind is informative (logs, metrics).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// A key was written.
    Set,
    /// A key was deleted.
    Delete,
    /// An explicit invalidation (exact key, `*`, glob or tag).
    Invalidate,
}

/// What an invalidation removes inside its category (or every category).
///
/// Typed, so that an exact key is compared as bytes on every node and never read as a
/// pattern, whatever characters it holds (`get_roles:[1, 2]` is a key, not a glob).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// One key, compared as bytes.
    Key(String),
    /// Keys matching a glob in the grammar of [`crate::pattern`].
    Glob(String),
    /// Every key.
    Everything,
    /// Every entry carrying this tag (see [`crate::tag`]). Appended: the bytes of the
    /// variants above are unchanged.
    Tag(String),
}

/// One invalidation broadcast by `origin`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Invalidation {
    /// Node id of the sender.
    pub origin: String,
    /// Random number chosen by the sender at start; changes when it restarts.
    pub origin_epoch: u64,
    /// Per-(origin, epoch) sequence number, starting at 1, incremented by 1.
    pub seq: u64,
    /// Category name; `None` = every category.
    pub category: Option<String>,
    /// What to remove.
    pub target: Target,
    /// What happened at the origin.
    pub kind: ChangeKind,
    /// The origin's wall clock when it published (ms since the Unix epoch), for the
    /// publish→apply propagation histogram. Never used for a decision.
    pub sent_at_ms: u64,
    /// For a change of a `strict` category: the origin's own channel suffix, where every
    /// receiver sends a [`BusMessage::Ack`] once the change is applied to its L1.
    pub ack_to: Option<String>,
}

/// Everything sent between nodes about coherence.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    /// Drop matching entries from L1.
    Invalidation(Invalidation),
    /// Periodic liveness + "the last sequence number I sent", which reveals a lost tail.
    /// Sent on the shared channel.
    Heartbeat {
        /// Node id of the sender.
        origin: String,
        /// The sender's epoch.
        origin_epoch: u64,
        /// The last invalidation sequence number the sender has assigned (0 = none yet).
        last_seq: u64,
    },
    /// "I applied every invalidation of `origin` (epoch `origin_epoch`) up to `seq`":
    /// sent on the origin's own channel by each receiver of a strict change.
    Ack {
        /// Node id of the receiver that applied it.
        from: String,
        /// The receiver's epoch.
        from_epoch: u64,
        /// The epoch of the origin being acknowledged.
        origin_epoch: u64,
        /// Highest sequence number applied.
        seq: u64,
    },
    /// A lease ping: published by a node on its own channel, which only it subscribes to,
    /// over the same subscriber connection as the invalidations; its echo renews the
    /// node's freshness lease (decided by the coherence machine, which depends on this
    /// module and not the other way round).
    Ping {
        /// Node id of the sender.
        origin: String,
        /// The sender's epoch.
        origin_epoch: u64,
        /// Ping number, increasing.
        id: u64,
    },
    /// A lease ping over QUIC while Redis is down for the sender (the peer lease of the
    /// coherence machine): every live peer that is also without Redis answers with a
    /// [`BusMessage::PeerGrant`].
    PeerPing {
        /// Node id of the sender.
        origin: String,
        /// The sender's epoch.
        origin_epoch: u64,
        /// Ping number, increasing.
        id: u64,
    },
    /// The answer to a [`BusMessage::PeerPing`]: "I am without Redis, so every change I
    /// acknowledge from now on waits for your ack; my changes so far end at `upto`".
    PeerGrant {
        /// Node id of the granting peer.
        from: String,
        /// Its epoch.
        from_epoch: u64,
        /// Node id of the pinging node.
        to: String,
        /// The ping answered.
        id: u64,
        /// The granting peer's last assigned sequence number.
        upto: u64,
    },
    /// "Which changes wait in your L2 replay backlog?": sent over QUIC by a node before it
    /// reads L2 after its start or after its Redis link was down (the replay hold of the
    /// coherence machine). Every live peer answers with a [`BusMessage::BacklogAnswer`].
    BacklogQuery {
        /// Node id of the asking node.
        origin: String,
        /// Its epoch.
        origin_epoch: u64,
        /// The asking round (answers to an older round do not count).
        id: u64,
    },
    /// The answer to a [`BusMessage::BacklogQuery`]: every change waiting in the sender's
    /// L2 replay backlog (pending or being replayed), `(category, target)`; a long backlog
    /// is sent as whole categories ([`Target::Everything`]).
    BacklogAnswer {
        /// Node id of the answering peer.
        from: String,
        /// Its epoch.
        from_epoch: u64,
        /// Node id of the asking node.
        to: String,
        /// The round answered.
        id: u64,
        /// The changes the sender has yet to write into L2.
        changes: Vec<(String, Target)>,
    },
}

impl Target {
    /// The L1 matcher for this target. Fails only for a glob that does not parse (the
    /// receiver then flushes instead).
    pub fn to_pattern(&self) -> Result<crate::pattern::Pattern, crate::error::CacheError> {
        match self {
            Target::Key(k) => Ok(crate::pattern::Pattern::Exact(k.clone())),
            Target::Glob(g) => crate::pattern::Pattern::glob(g),
            Target::Everything => Ok(crate::pattern::Pattern::All),
            Target::Tag(t) => Ok(crate::pattern::Pattern::Tag(t.clone())),
        }
    }
}

/// Milliseconds since the Unix epoch on this machine's wall clock (0 if it is before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
