//! What `msg-server` reads from any client on the network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msg_fuzz::{SMALL_LIMIT, decode_stream};
use msg_proto::server::ClientFrame;

fuzz_target!(|data: &[u8]| {
    decode_stream::<ClientFrame>(data, SMALL_LIMIT);
    decode_stream::<ClientFrame>(data, msg_proto::MAX_FRAME_LEN);
});
