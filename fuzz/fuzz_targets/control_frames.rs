//! What msgd reads from `msg` on the control socket, and `msg` from msgd.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msg_fuzz::{SMALL_LIMIT, decode_stream};
use msg_proto::control::{Reply, Request};

fuzz_target!(|data: &[u8]| {
    decode_stream::<Request>(data, SMALL_LIMIT);
    decode_stream::<Reply>(data, SMALL_LIMIT);
    decode_stream::<Request>(data, msg_proto::MAX_FRAME_LEN);
});
