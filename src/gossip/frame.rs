//! QUIC frames use the crate's one wire format ([`crate::wire`]): version byte + bincode 2,
//! size-limited both ways. This module only gives it the names the transport uses.

pub(crate) use crate::wire::{
    decode, encode, WireError as FrameError, MAX_FRAME_BYTES as MAX_FRAME,
};
