//! The bus decoder: any bytes from Redis or a peer. Must never panic; whatever decodes must
//! encode back to a frame that decodes to the same message.
#![no_main]

use hybrid_cache::wire::{decode, encode, BusMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode::<BusMessage>(data) {
        let again = encode(&msg).expect("a decoded message encodes");
        assert_eq!(decode::<BusMessage>(&again).expect("re-decodes"), msg);
    }
});
