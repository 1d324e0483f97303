//! The credentials file parser (`msg-server` reads it at start, on every
//! change and on SIGHUP).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server reads the file as UTF-8; anything else fails to load.
    if let Ok(text) = std::str::from_utf8(data) {
        let report = msg_server::accounts::check_credentials(text);
        assert!(report.accounts <= text.lines().count());
        assert!(report.plain <= report.accounts);
    }
});
