//! The cluster key, and authenticated bus payloads (HMAC-SHA256 over a frame).
//!
//! Why: anyone who can `PUBLISH` to the Redis channel could otherwise forge an invalidation
//! (or one with a huge sequence number that makes a node drop the real origin's messages as
//! duplicates). With `cluster_secret` / `HC_CLUSTER_SECRET` set, every bus payload is
//! [`seal`]ed and every received one must [`open`]; a payload that does not is dropped,
//! counted and handled like a sequence gap (flush) by the caller, and must never advance
//! sequence state.
//!
//! One key for the whole cluster: [`ClusterKey`] is the HMAC-SHA256 key schedule of the
//! secret, used as is (no derived subkeys) by both users. Each binds its purpose into the
//! authenticated bytes instead: the bus by [`MAGIC`], gossip (`gossip::auth`) by a context
//! label per kind of packet (SWIM, digest sync, QUIC frame) and a tag truncated to 16 bytes.
//! A tag made for one purpose therefore never verifies for another.
//!
//! Layout of a sealed payload: `MAGIC (2 bytes) | frame | tag (32 bytes)`, where
//! `tag = HMAC-SHA256(secret, MAGIC | frame)`. The tag is compared in constant time (the
//! `hmac` crate's verification uses `subtle`). The magic makes a sealed payload
//! distinguishable from a plain one, so a node without a secret can report "sealed frame,
//! no secret configured" instead of a decode error, and a node with one rejects unsealed
//! frames outright.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Marks a sealed payload (`0xA5` is not a valid first byte of a wire frame's version).
pub const MAGIC: [u8; 2] = [0xA5, 0x01];
/// Length of the HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// Shortest usable secret: shorter secrets are rejected at configuration time.
pub const MIN_SECRET_LEN: usize = crate::config::MIN_SECRET_LEN;

/// Why a payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A plain payload arrived while a cluster secret is configured.
    #[error("payload is not sealed (no HMAC) but a cluster secret is configured")]
    NotSealed,
    /// Shorter than the magic and the tag together (the length is carried).
    #[error("sealed payload is too short ({0} bytes)")]
    Truncated(usize),
    /// The tag does not verify: another secret, or the payload was altered.
    #[error("HMAC does not match (wrong cluster secret or tampered payload)")]
    BadTag,
    /// The secret is shorter than [`MIN_SECRET_LEN`] (its length is carried).
    #[error("cluster secret has {0} bytes; at least 16 are required")]
    WeakSecret(usize),
}

/// The cluster secret, ready to sign: the HMAC-SHA256 key schedule is computed once, at start.
/// The one key type of the cluster, for bus payloads ([`seal`], [`open`]) and gossip packets
/// and frames (its crate-private `seal` / `open` methods with a context are defined in
/// `gossip::auth`, next to the contexts they bind).
#[derive(Clone)]
pub struct ClusterKey(HmacSha256);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// A key from the configured secret; secrets shorter than [`MIN_SECRET_LEN`] are refused.
    pub fn new(secret: &[u8]) -> Result<ClusterKey, AuthError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthError::WeakSecret(secret.len()));
        }
        HmacSha256::new_from_slice(secret)
            .map(ClusterKey)
            .map_err(|_| AuthError::WeakSecret(secret.len()))
    }

    /// A key from any non-empty secret (`None` for an empty one, which protects nothing).
    /// Gossip takes the secret of its `GossipConfig` this way; a node's configuration has
    /// already refused secrets shorter than [`MIN_SECRET_LEN`].
    pub(crate) fn from_nonempty(secret: &[u8]) -> Option<ClusterKey> {
        if secret.is_empty() {
            return None;
        }
        HmacSha256::new_from_slice(secret).ok().map(ClusterKey)
    }

    /// HMAC-SHA256 with this key over the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut m = self.0.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// Whether `tag` is the HMAC over the concatenation of `parts`, or its first
    /// `tag.len()` bytes (a truncated tag); compared in constant time. An empty tag or one
    /// longer than [`TAG_LEN`] never verifies.
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut m = self.0.clone();
        for p in parts {
            m.update(p);
        }
        m.verify_truncated_left(tag).is_ok()
    }
}

/// Seals `frame`: `MAGIC | frame | HMAC(secret, MAGIC | frame)`.
pub fn seal(key: &ClusterKey, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + frame.len() + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(frame);
    let tag = key.mac(&[&out]);
    out.extend_from_slice(&tag);
    out
}

/// Whether `bytes` looks sealed (starts with [`MAGIC`]); says nothing about its validity.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Checks a sealed payload and returns the frame inside it.
pub fn open<'a>(key: &ClusterKey, bytes: &'a [u8]) -> Result<&'a [u8], AuthError> {
    if !is_sealed(bytes) {
        return Err(AuthError::NotSealed);
    }
    if bytes.len() < MAGIC.len() + TAG_LEN {
        return Err(AuthError::Truncated(bytes.len()));
    }
    let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    if !key.verify(&[body], tag) {
        return Err(AuthError::BadTag);
    }
    Ok(&body[MAGIC.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(s: &[u8]) -> ClusterKey {
        ClusterKey::new(s).unwrap()
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            ClusterKey::new(b"short").unwrap_err(),
            AuthError::WeakSecret(5)
        );
    }

    #[test]
    fn round_trip() {
        let sealed = seal(&key(b"0123456789abcdef-cluster"), b"frame bytes");
        assert_eq!(sealed.len(), MAGIC.len() + 11 + TAG_LEN);
        assert_eq!(
            open(&key(b"0123456789abcdef-cluster"), &sealed),
            Ok(&b"frame bytes"[..])
        );
        assert_eq!(
            open(
                &key(b"0123456789abcdef-cluster"),
                &seal(&key(b"0123456789abcdef-cluster"), b"")
            ),
            Ok(&b""[..])
        );
    }

    #[test]
    fn wrong_secret_tamper_truncation_and_plain_frames_fail() {
        let sealed = seal(&key(b"0123456789abcdef-cluster"), b"invalidate *");
        assert_eq!(
            open(&key(b"another-secret-of-16"), &sealed),
            Err(AuthError::BadTag)
        );
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(
                open(&key(b"0123456789abcdef-cluster"), &t).is_err(),
                "flipped byte {i} accepted"
            );
        }
        assert_eq!(
            open(&key(b"0123456789abcdef-cluster"), &sealed[..10]),
            Err(AuthError::Truncated(10))
        );
        assert_eq!(
            open(&key(b"0123456789abcdef-cluster"), b"\x02plain frame"),
            Err(AuthError::NotSealed)
        );
        assert_eq!(
            open(&key(b"0123456789abcdef-cluster"), &[]),
            Err(AuthError::NotSealed)
        );
        // A forger who strips or replaces the tag gets nowhere.
        let mut forged = sealed[..sealed.len() - TAG_LEN].to_vec();
        forged.extend_from_slice(&[0u8; TAG_LEN]);
        assert_eq!(
            open(&key(b"0123456789abcdef-cluster"), &forged),
            Err(AuthError::BadTag)
        );
    }

    proptest! {
        #[test]
        fn any_frame_round_trips_and_any_garbage_is_refused(
            frame in proptest::collection::vec(any::<u8>(), 0..512),
            junk in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let sealed = seal(&key(b"0123456789abcdef-cluster"), &frame);
            prop_assert_eq!(open(&key(b"0123456789abcdef-cluster"), &sealed), Ok(&frame[..]));
            // Random bytes never open (probability 2^-256 of a forged tag).
            prop_assert!(open(&key(b"0123456789abcdef-cluster"), &junk).is_err());
        }
    }
}
