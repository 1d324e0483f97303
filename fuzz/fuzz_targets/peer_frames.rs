//! What msgd reads from another user's daemon (or any caller) on its peer port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msg_fuzz::{SMALL_LIMIT, decode_stream};
use msg_proto::peer::PeerFrame;

fuzz_target!(|data: &[u8]| {
    decode_stream::<PeerFrame>(data, SMALL_LIMIT);
    decode_stream::<PeerFrame>(data, msg_proto::MAX_FRAME_LEN);
});
