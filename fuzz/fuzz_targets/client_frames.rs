//! What msgd reads from the server (or whatever answers at its address).
#![no_main]

use libfuzzer_sys::fuzz_target;
use msg_fuzz::{SMALL_LIMIT, decode_stream};
use msg_proto::server::ServerFrame;

fuzz_target!(|data: &[u8]| {
    decode_stream::<ServerFrame>(data, SMALL_LIMIT);
    decode_stream::<ServerFrame>(data, msg_proto::MAX_FRAME_LEN);
});
