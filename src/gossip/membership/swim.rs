//! The SWIM protocol settings and packet codec that every node (and every simulated node)
//! runs foca with: timing knobs ([`SwimParams`]), the packet size bound, the bincode codec,
//! and decoding a packet's header without applying it (the transport checks the sender's
//! claimed identity under mTLS).

use std::{
    num::{NonZeroU8, NonZeroUsize},
    time::Duration,
};

use foca::{BincodeCodec, Codec, PeriodicParams};

use super::super::identity::NodeIdentity;

/// Largest foca packet: with the 16-byte tag and UDP/IP headers it fits a 1500-byte MTU.
/// (SWIM over QUIC datagrams, the TLS-without-secret mode, falls back to a stream for the
/// rare packet over the QUIC datagram size.)
pub(crate) const MAX_PACKET: usize = 1400;

pub(super) type SwimCodec = BincodeCodec<
    bincode::config::Configuration<
        bincode::config::LittleEndian,
        bincode::config::Varint,
        bincode::config::Limit<4096>,
    >,
>;

pub(super) fn codec() -> SwimCodec {
    BincodeCodec(bincode::config::standard().with_limit::<4096>())
}

/// SWIM timing knobs.
#[derive(Clone, Debug)]
pub(crate) struct SwimParams {
    pub(crate) probe_period: Duration,
    pub(crate) suspect_to_dead: Duration,
    /// A member dead for this long is forgotten (foca's `remove_down_after`).
    pub(crate) dead_forget: Duration,
    /// Pending updates go out this often to [`SwimParams::gossip_fanout`] members
    /// (production: [`GOSSIP_EVERY`], [`GOSSIP_FANOUT`]; other values only in simulations).
    pub(crate) gossip_every: Duration,
    pub(crate) gossip_fanout: usize,
}

/// How often pending updates are gossiped (nothing is sent when there are none). 50 ms
/// rather than 100 ms: in the simulator (100 nodes, 12 seeds × 30 kills, 1 % loss) detection
/// p50 / p99 went from 1.40 / 2.46 s to 1.30 / 2.31 s with the same steady traffic (a quiet
/// cluster has nothing pending); each update is still sent `max_transmissions` times, only
/// sooner. The suspicion, and so the false-positive risk, is unchanged.
pub(crate) const GOSSIP_EVERY: Duration = Duration::from_millis(50);
/// To how many random members each periodic gossip goes.
pub(crate) const GOSSIP_FANOUT: usize = 3;
/// How often a node with no active member says Hello to its configured peers again (the
/// transport's join loop; the simulation's cold start does the same). A lost Hello, or a
/// lost answer to it, costs a joiner this long: at 1 s, the time a cold-started 100-node
/// simulation took to converge after the last start went from ~0.2 s to ~1.2 s whenever
/// the last joiner's Hello was lost (1 % loss). A lone node sends 4 small Hellos a second
/// per configured peer; none once it has joined.
pub(crate) const JOIN_RETRY: Duration = Duration::from_millis(250);

impl SwimParams {
    /// The production settings for the given probe period, suspicion and forget time.
    pub(crate) fn new(
        probe_period: Duration,
        suspect_to_dead: Duration,
        dead_forget: Duration,
    ) -> Self {
        Self {
            probe_period,
            suspect_to_dead,
            dead_forget,
            gossip_every: GOSSIP_EVERY,
            gossip_fanout: GOSSIP_FANOUT,
        }
    }

    /// foca's configuration for these settings.
    pub(crate) fn foca_config(&self) -> foca::Config {
        let period = self.probe_period.max(Duration::from_millis(10));
        let mut c = foca::Config::simple();
        c.probe_period = period;
        // Direct ack deadline; the rest of the period is for indirect probes.
        c.probe_rtt = period * 2 / 5;
        c.num_indirect_probes = NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN);
        c.suspect_to_down_after = self.suspect_to_dead.max(Duration::from_millis(1));
        c.max_packet_size = NonZeroUsize::new(MAX_PACKET).unwrap_or(NonZeroUsize::MIN);
        c.notify_down_members = true;
        c.remove_down_after = self.dead_forget.max(Duration::from_millis(1));
        // Each node passes an update on 12 times (8 left a few nodes unaware at 100+ nodes).
        c.max_transmissions = NonZeroU8::new(12).unwrap_or(NonZeroU8::MIN);
        // Pending updates go out every `gossip_every` to `gossip_fanout` members (nothing is
        // sent when there are none), so a death spreads in about log_fanout(N) × gossip_every.
        c.periodic_gossip = Some(PeriodicParams {
            frequency: self.gossip_every.max(Duration::from_millis(1)),
            num_members: NonZeroUsize::new(self.gossip_fanout).unwrap_or(NonZeroUsize::MIN),
        });
        c.periodic_announce = Some(PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: NonZeroUsize::MIN,
        });
        c.periodic_announce_to_down_members = Some(PeriodicParams {
            frequency: Duration::from_secs(10),
            num_members: NonZeroUsize::MIN,
        });
        c
    }
}

/// The RNG foca draws from (rand 0.9's trait): seeded from the OS RNG in production, fixed
/// seeds in simulations.
pub(crate) type SwimRng = rand09::rngs::SmallRng;

/// Why a SWIM or digest-sync packet was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PacketError {
    #[error("undecodable SWIM packet: {0}")]
    Decode(String),
    #[error("SWIM packet too large ({0} bytes)")]
    TooLarge(usize),
}

/// The header of a SWIM packet (sender and receiver identities), decoded without applying it.
pub(crate) fn packet_header(data: &[u8]) -> Result<foca::Header<NodeIdentity>, PacketError> {
    if data.len() > MAX_PACKET {
        return Err(PacketError::TooLarge(data.len()));
    }
    let mut c = codec();
    Codec::<NodeIdentity>::decode_header(&mut c, data)
        .map_err(|e| PacketError::Decode(e.to_string()))
}
