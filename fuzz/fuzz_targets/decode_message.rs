//! Any bytes as one WebSocket frame: decoding must return a message or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_crdt::protocol::decode_client_message;

fuzz_target!(|data: &[u8]| {
    let _ = decode_client_message(bytes::Bytes::copy_from_slice(data));
});
