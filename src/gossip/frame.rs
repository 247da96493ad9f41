//! Versioned, size-limited framing of every QUIC frame.
//!
//! Stand-in for `crate::wire` (same behaviour, swap at merge): one format
//! version byte (`1`) followed by the bincode 2 *standard* encoding of the
//! value, decoded with a 64 KiB limit. Empty input, an unknown version,
//! input over the limit, malformed bincode and trailing bytes are errors.

use serde::{de::DeserializeOwned, Serialize};

/// Current format version (first byte of every frame).
pub(crate) const VERSION: u8 = 1;
/// Largest frame accepted or produced, version byte included.
pub(crate) const MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("unknown frame version {0}")]
    Version(u8),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME} byte limit")]
    TooLarge(usize),
    #[error("encode: {0}")]
    Encode(String),
    #[error("decode: {0}")]
    Decode(String),
    #[error("{0} trailing bytes after the frame")]
    Trailing(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    if out.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(out.len()));
    }
    Ok(out)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let (&version, body) = bytes.split_first().ok_or(FrameError::Empty)?;
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let (value, read) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    if read != body.len() {
        return Err(FrameError::Trailing(body.len() - read));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects() {
        let v = (7u32, "hello".to_string(), vec![1u8, 2, 3]);
        let bytes = encode(&v).expect("encode");
        assert_eq!(bytes[0], VERSION);
        assert_eq!(decode::<(u32, String, Vec<u8>)>(&bytes), Ok(v));
        assert_eq!(decode::<u32>(&[]), Err(FrameError::Empty));
        assert_eq!(decode::<u32>(&[2, 0]), Err(FrameError::Version(2)));
        assert!(matches!(
            decode::<u32>(&[1, 5, 5]),
            Err(FrameError::Trailing(1))
        ));
        assert!(matches!(
            decode::<String>(&[1, 0xff]),
            Err(FrameError::Decode(_))
        ));
        // A length prefix claiming 4 GiB must not allocate.
        assert!(matches!(
            decode::<Vec<u8>>(&[1, 252, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::Decode(_))
        ));
        let big = vec![0u8; MAX_FRAME];
        assert!(matches!(encode(&big), Err(FrameError::TooLarge(_))));
        let huge = vec![1u8; MAX_FRAME + 1];
        assert!(matches!(
            decode::<Vec<u8>>(&huge),
            Err(FrameError::TooLarge(_))
        ));
    }
}
