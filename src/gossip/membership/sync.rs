//! Digest sync (anti-entropy outside foca's own protocol): while membership is changing, a
//! node sends a salted Bloom filter of the members it knows to a random member, which
//! answers with the active members the filter lacks. See [`CATCH_UP_EVERY`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    super::identity::NodeIdentity,
    swim::{PacketError, MAX_PACKET},
    Membership,
};

/// While membership changed within [`CATCH_UP_WINDOW`], a node sends a digest of the members
/// it knows ([`SyncMsg::Digest`], a salted Bloom filter in one packet) to [`CATCH_UP_FANOUT`]
/// random members every [`CATCH_UP_EVERY`], and right after it joined; each answers with the
/// active members missing from the digest ([`SyncMsg::Members`], at most
/// [`SYNC_REPLY_PACKETS`] packets). Piggybacked updates alone leave a few (node, member) pairs
/// unlearnt when many nodes join at once (each update is sent a bounded number of times), and
/// foca's own answer to an announce (a feed of ~30 random members) fills such a gap only by
/// chance; the digest names the gaps. A quiet cluster sends none of these.
pub(super) const CATCH_UP_EVERY: Duration = Duration::from_millis(500);
const CATCH_UP_WINDOW: Duration = Duration::from_secs(10);
const CATCH_UP_FANOUT: usize = 1;
/// Most packets of members sent in answer to one digest (about 30 members each): enough for
/// a newcomer to learn a 1,000-node cluster from its first digest. With 4 (about 120
/// members), a node joining a 1,000-node cluster needed about 7 digest rounds, 500 ms apart,
/// to learn every member: the simulated cold start converged 2.5 s after the last start. An
/// answer holds only what the asker lacks, so a node that knows the cluster gets a few
/// members or none: the cost is one list of the cluster per join (about 45 bytes a member).
const SYNC_REPLY_PACKETS: usize = 40;
/// Bloom filter bits per known member (about 1 % false positives with 7 hashes), capped by
/// what fits one packet; past ~1,000 members the rate rises, but each digest has a fresh
/// salt, so a member hidden by a false positive once is named by the next digest.
const BLOOM_BITS_PER_MEMBER: usize = 10;
const BLOOM_MAX_BYTES: usize = 1200;

/// Anti-entropy messages (bincode), outside foca's own protocol.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SyncMsg {
    /// "I know these members" (any state), as a Bloom filter over (node id, incarnation
    /// bump) hashed with `salt`.
    Digest {
        from: NodeIdentity,
        salt: u64,
        hashes: u8,
        bits: Vec<u8>,
    },
    /// Active members the asker's digest did not contain.
    Members(Vec<foca::Member<NodeIdentity>>),
}

fn sync_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<4096>,
> {
    bincode::config::standard().with_limit::<4096>()
}

/// The node a digest-sync packet speaks for (`None` for a list of members).
pub(crate) fn sync_sender(data: &[u8]) -> Result<Option<String>, PacketError> {
    if data.len() > MAX_PACKET {
        return Err(PacketError::TooLarge(data.len()));
    }
    let (msg, _): (SyncMsg, usize) = bincode::serde::decode_from_slice(data, sync_config())
        .map_err(|e| PacketError::Decode(e.to_string()))?;
    Ok(match msg {
        SyncMsg::Digest { from, .. } => Some(from.node_id),
        SyncMsg::Members(_) => None,
    })
}

fn fnv1a(salt: u64, id: &NodeIdentity) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in id.node_id.bytes().chain(id.bump.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finaliser: FNV's low bits alone are weak.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Bit positions of `id` in a filter of `m` bits (double hashing).
fn bloom_positions(
    salt: u64,
    hashes: u8,
    m: usize,
    id: &NodeIdentity,
) -> impl Iterator<Item = usize> {
    let h1 = fnv1a(salt, id);
    let h2 = fnv1a(salt ^ 0x9e37_79b9_7f4a_7c15, id) | 1;
    let m = m.max(1) as u64;
    (0..u64::from(hashes)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
}

fn bloom_contains(bits: &[u8], salt: u64, hashes: u8, id: &NodeIdentity) -> bool {
    let m = bits.len() * 8;
    m > 0
        && bloom_positions(salt, hashes, m, id)
            .all(|p| bits.get(p / 8).is_some_and(|b| b & (1 << (p % 8)) != 0))
}

/// The catch-up half of the membership machine: when to send digests, and what to answer.
impl Membership {
    /// Sends a digest to a random member when one is due and membership changed lately.
    pub(super) fn catch_up(&mut self, now: Instant) {
        let Some(at) = self.next_catch_up else {
            return;
        };
        if at > now {
            return;
        }
        let changing = self
            .last_change
            .is_some_and(|t| now.saturating_duration_since(t) < CATCH_UP_WINDOW);
        if !changing {
            self.next_catch_up = None;
            return;
        }
        self.next_catch_up = Some(now + CATCH_UP_EVERY);
        let active = self.foca.num_members();
        for _ in 0..CATCH_UP_FANOUT.min(active) {
            let pick = (self.next_rand() % active as u64) as usize;
            let Some(target) = self.foca.iter_members().nth(pick).map(|m| m.id().clone()) else {
                continue;
            };
            self.send_digest(target);
        }
        self.drain_runtime(now);
    }

    /// The machine's own xorshift draw (digest targets and salts).
    fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Queues a digest of every member we know for `target` (see [`CATCH_UP_EVERY`]).
    pub(crate) fn send_digest(&mut self, target: NodeIdentity) {
        let known = self.foca.iter_membership_state().len().max(1);
        let bytes = (known * BLOOM_BITS_PER_MEMBER)
            .div_ceil(8)
            .clamp(8, BLOOM_MAX_BYTES);
        let m = bytes * 8;
        // k = (m / n) ln 2, within 1..=8.
        let hashes = ((m as f64 / known as f64) * std::f64::consts::LN_2)
            .round()
            .clamp(1.0, 8.0) as u8;
        let salt = self.next_rand();
        let mut bits = vec![0u8; bytes];
        for member in self.foca.iter_membership_state() {
            for p in bloom_positions(salt, hashes, m, member.id()) {
                if let Some(b) = bits.get_mut(p / 8) {
                    *b |= 1 << (p % 8);
                }
            }
        }
        let msg = SyncMsg::Digest {
            from: self.foca.identity().clone(),
            salt,
            hashes,
            bits,
        };
        match bincode::serde::encode_to_vec(&msg, sync_config()) {
            Ok(data) => self.sync_outbox.push((target, Bytes::from(data))),
            Err(e) => tracing::debug!(error = %e, "digest not encoded"),
        }
    }

    /// Feed one digest-sync packet received from the network.
    pub(crate) fn handle_sync(&mut self, data: &[u8], now: Instant) -> Result<(), PacketError> {
        if data.len() > MAX_PACKET {
            return Err(PacketError::TooLarge(data.len()));
        }
        let (msg, _): (SyncMsg, usize) = bincode::serde::decode_from_slice(data, sync_config())
            .map_err(|e| PacketError::Decode(e.to_string()))?;
        match msg {
            SyncMsg::Digest {
                from,
                salt,
                hashes,
                bits,
            } => {
                if from.node_id == self.identity().node_id || hashes == 0 || hashes > 16 {
                    return Ok(());
                }
                let me = self.identity();
                // Ourselves too, if the asker does not know us (incarnation 0: a no-op for a
                // node that knows a later one).
                let missing: Vec<foca::Member<NodeIdentity>> =
                    (!bloom_contains(&bits, salt, hashes, me))
                        .then(|| foca::Member::alive(me.clone()))
                        .into_iter()
                        .chain(
                            self.foca
                                .iter_members()
                                .filter(|m| m.id().node_id != from.node_id)
                                .filter(|m| !bloom_contains(&bits, salt, hashes, m.id()))
                                .cloned(),
                        )
                        .collect();
                // The asker may be new to us: learn it (a no-op when we know it already).
                let asker = std::iter::once(foca::Member::alive(from.clone()));
                if let Err(e) = self.foca.apply_many(asker, true, &mut self.runtime) {
                    tracing::trace!(error = %e, "digest sender not applied");
                }
                self.reply_members(from, missing);
                self.after_step(now);
            }
            SyncMsg::Members(members) => {
                let me = self.identity().node_id.clone();
                let members = members.into_iter().filter(|m| m.id().node_id != me);
                if let Err(e) = self.foca.apply_many(members, true, &mut self.runtime) {
                    tracing::trace!(error = %e, "synced members not applied");
                }
                self.after_step(now);
            }
        }
        Ok(())
    }

    /// Packs `members` into at most [`SYNC_REPLY_PACKETS`] packets for `to`.
    fn reply_members(&mut self, to: NodeIdentity, members: Vec<foca::Member<NodeIdentity>>) {
        // Enum tag + a 3-byte length prefix at most.
        const OVERHEAD: usize = 4;
        let mut packets = 0;
        let mut batch: Vec<foca::Member<NodeIdentity>> = Vec::new();
        let mut size = OVERHEAD;
        let flush = |batch: &mut Vec<foca::Member<NodeIdentity>>,
                     out: &mut Vec<(NodeIdentity, Bytes)>| {
            if batch.is_empty() {
                return;
            }
            let msg = SyncMsg::Members(std::mem::take(batch));
            if let Ok(data) = bincode::serde::encode_to_vec(&msg, sync_config()) {
                out.push((to.clone(), Bytes::from(data)));
            }
        };
        for m in members {
            let Ok(len) = bincode::serde::encode_to_vec(&m, sync_config()).map(|v| v.len()) else {
                continue;
            };
            if size + len > MAX_PACKET {
                flush(&mut batch, &mut self.sync_outbox);
                packets += 1;
                size = OVERHEAD;
                if packets == SYNC_REPLY_PACKETS {
                    return;
                }
            }
            size += len;
            batch.push(m);
        }
        flush(&mut batch, &mut self.sync_outbox);
    }
}
