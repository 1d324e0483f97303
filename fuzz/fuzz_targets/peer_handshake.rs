//! What a stranger can send to msgd's peer port before proving anything:
//! the caller's first Noise record (a length prefix and handshake message
//! 1), read by the callee. Anything but a message for our key must end in
//! an error, never a panic or a hang.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use msg_daemon::private::keys::Identity;
use msg_daemon::private::noise::respond;

fn ours() -> &'static Identity {
    static OURS: OnceLock<Identity> = OnceLock::new();
    OURS.get_or_init(|| Identity::generate().expect("a key pair"))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let stream = tokio::io::join(data, tokio::io::sink());
    // A stranger cannot know our key: message 1 never opens.
    assert!(runtime().block_on(respond(stream, ours())).is_err());
});
