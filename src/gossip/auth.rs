//! Frame authentication with the cluster secret (HMAC-SHA256, truncated to 16 bytes).
//!
//! Without TLS, gossip is plain UDP (SWIM) and QUIC with throwaway certificates: anyone who
//! can reach the port could otherwise declare nodes dead or broadcast `invalidate *`. With a
//! cluster secret every SWIM packet and every QUIC frame carries a tag over a context label
//! and the bytes; a frame whose tag does not verify (constant-time compare) is dropped and
//! counted. The label keeps a SWIM packet from being replayed as a QUIC frame and vice versa.

pub(crate) use crate::wire_auth::ClusterKey;

/// Bytes of the tag appended to each authenticated message (HMAC-SHA256, truncated).
pub(crate) const TAG_LEN: usize = 16;

/// What a sealed message is, bound into its tag.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Context {
    /// A SWIM packet on the UDP socket.
    Swim,
    /// A membership digest-sync packet on the UDP socket (see `membership::SyncMsg`).
    Sync,
    /// A frame on a QUIC datagram or stream.
    Frame,
}

impl Context {
    fn label(self) -> &'static [u8] {
        match self {
            Context::Swim => b"hc-gossip-swim/1",
            Context::Sync => b"hc-gossip-sync/1",
            Context::Frame => b"hc-gossip-frame/1",
        }
    }
}

/// The cluster key as gossip uses it: a 16-byte tag over the context label and the data.
/// (Inherent methods of the crate's one key type, kept here with the contexts they bind.)
impl ClusterKey {
    fn gossip_tag(&self, ctx: Context, data: &[u8]) -> [u8; TAG_LEN] {
        let full = self.mac(&[ctx.label(), data]);
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }

    /// `data` followed by its tag.
    pub(crate) fn seal(&self, ctx: Context, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + TAG_LEN);
        out.extend_from_slice(data);
        out.extend_from_slice(&self.gossip_tag(ctx, data));
        out
    }

    /// The data of a sealed message, or `None` if the tag does not verify (constant time).
    pub(crate) fn open<'a>(&self, ctx: Context, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let split = sealed.len().checked_sub(TAG_LEN)?;
        let (data, tag) = sealed.split_at(split);
        self.verify(&[ctx.label(), data], tag).then_some(data)
    }
}

/// Seals with `key` when there is one (the identity otherwise).
pub(crate) fn seal(key: Option<&ClusterKey>, ctx: Context, data: Vec<u8>) -> Vec<u8> {
    match key {
        Some(k) => k.seal(ctx, &data),
        None => data,
    }
}

/// Opens with `key` when there is one (the identity otherwise).
pub(crate) fn open<'a>(key: Option<&ClusterKey>, ctx: Context, data: &'a [u8]) -> Option<&'a [u8]> {
    match key {
        Some(k) => k.open(ctx, data),
        None => Some(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_messages_open_only_with_the_same_secret_and_context() {
        let k = ClusterKey::from_nonempty(b"s3cret").expect("key");
        let other = ClusterKey::from_nonempty(b"other").expect("key");
        let sealed = k.seal(Context::Swim, b"ping");
        assert_eq!(sealed.len(), 4 + TAG_LEN);
        assert_eq!(k.open(Context::Swim, &sealed), Some(&b"ping"[..]));
        assert_eq!(other.open(Context::Swim, &sealed), None);
        assert_eq!(k.open(Context::Frame, &sealed), None, "context is bound");
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert_eq!(k.open(Context::Swim, &flipped), None);
        assert_eq!(k.open(Context::Swim, &sealed[..TAG_LEN - 1]), None);
        assert_eq!(
            k.open(Context::Swim, b"ping"),
            None,
            "unsealed data is refused"
        );
        assert!(ClusterKey::from_nonempty(b"").is_none());
    }
}
