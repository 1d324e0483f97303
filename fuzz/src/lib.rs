//! The harness shared by the fuzz targets: feed arbitrary bytes to an NDJSON
//! decoder the way a socket would (in chunks of varying size), and check
//! what must hold for any input: no panic, memory bounded by the frame
//! limit, and every frame that decodes encodes back to the same frame.

use std::fmt::Debug;

use bytes::BytesMut;
use msg_proto::JsonLines;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::Decoder;

/// A small limit, so that oversized lines are exercised as often as others.
pub const SMALL_LIMIT: usize = 512;

/// Decodes `data` as a stream of `T` frames with the frame limit `max_len`.
/// The first byte sets the chunk size (1 to 256 bytes), so lines arrive
/// whole, split or many at once.
pub fn decode_stream<T>(data: &[u8], max_len: usize)
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first) + 1;
    let mut codec: JsonLines<T, T> = JsonLines::with_max_len(max_len);
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(item) = codec.decode(&mut buf).expect("the codec has no I/O errors") {
            check(item);
        }
        // Nothing beyond one frame (plus what just arrived) is buffered.
        assert!(
            buf.len() <= max_len + chunk,
            "{} bytes buffered with a {max_len}-byte limit",
            buf.len()
        );
    }
    while let Some(item) = codec.decode_eof(&mut buf).expect("no I/O errors") {
        check(item);
    }
}

fn check<T>(item: Result<T, msg_proto::FrameError>)
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    if let Ok(frame) = item {
        let line = serde_json::to_string(&frame).expect("a decoded frame encodes");
        let again: T = serde_json::from_str(&line).expect("an encoded frame decodes");
        assert_eq!(again, frame, "round trip through {line}");
    }
}
