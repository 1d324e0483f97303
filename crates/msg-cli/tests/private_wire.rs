//! What a private exchange between two real daemons puts on the wire, seen
//! by a capture of all loopback traffic: neither the private texts nor the
//! session's token may appear. The server link is still plain TCP (its
//! encryption is another matter), so the capture does see the token in the
//! server's two `private_ready` frames: that is where the test reads it, and
//! every other occurrence, in any form, is a leak. Needs root (raw socket);
//! skipped with a message otherwise.
#![cfg(target_os = "linux")]

mod common;

use common::capture::{Capture, contains};
use common::*;

/// What precedes the token in the server's `private_ready` to `to` about
/// `peer` (serde writes the fields in their declared order).
fn ready_prefix(peer: &str) -> Vec<u8> {
    format!(r#"{{"type":"private_ready","peer":"{peer}","token":""#).into_bytes()
}

/// Every token the server handed out in a `private_ready` seen on the wire.
fn brokered_tokens(wire: &[u8], peers: &[&str]) -> Vec<Vec<u8>> {
    let mut tokens = Vec::new();
    for peer in peers {
        let prefix = ready_prefix(peer);
        let mut at = 0;
        while let Some(i) = find(&wire[at..], &prefix) {
            let start = at + i + prefix.len();
            let len = wire[start..]
                .iter()
                .position(|&b| b == b'"')
                .expect("a token ends with a quote");
            let token = wire[start..start + len].to_vec();
            if !tokens.contains(&token) {
                tokens.push(token);
            }
            at = start;
        }
    }
    tokens
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The positions of every occurrence of `needle`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

fn unhex(hex: &[u8]) -> Vec<u8> {
    let hex = std::str::from_utf8(hex).expect("a hex token");
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digits"))
        .collect()
}

#[test]
fn a_private_exchange_shows_neither_its_texts_nor_its_token_on_the_wire() {
    let Some(capture) = Capture::start() else {
        return;
    };
    let server = Server::start();
    let luke = User::new("luke", &server);
    luke.config("auto_accept_private = true\nnotify = false\n");
    luke.login().ok();
    let hans = User::new("hans", &server);
    hans.config("notify = false\n");
    hans.login().ok();
    let (_w1, hans_sees) = hans.watch(false);
    let (_w2, luke_sees) = luke.watch(false);

    assert_eq!(
        hans.msg(&["private", "start", "luke"]).ok().out(),
        "Start private messaging with luke"
    );
    luke_sees.until(|l| l == "Start private messaging with hans");
    hans.msg(&["private", "send", "luke", "wire-secret-from-hans-5150"])
        .ok();
    luke.msg(&["private", "send", "hans", "wire-secret-from-luke-8086"])
        .ok();
    luke_sees.until(|l| l == "hans(private): wire-secret-from-hans-5150");
    hans_sees.until(|l| l == "luke(private): wire-secret-from-luke-8086");
    // The same words through the server, which the capture must see.
    hans.msg(&["send", "luke", "wire-public-6502"]).ok();
    luke_sees.until(|l| l == "hans: wire-public-6502");
    hans.msg(&["private", "stop", "luke"]).ok();
    luke_sees.until(|l| l == "Private messaging with hans stopped");
    let wire = capture.finish();

    assert!(
        contains(&wire, b"wire-public-6502"),
        "the capture sees the plain server link ({} bytes)",
        wire.len()
    );
    // Every leak at once, so that a failure shows all that crossed.
    let mut leaks = Vec::new();
    for secret in ["wire-secret-from-hans-5150", "wire-secret-from-luke-8086"] {
        if contains(&wire, secret.as_bytes()) {
            leaks.push(format!("{secret} crossed the wire readably"));
        }
    }
    let tokens = brokered_tokens(&wire, &["hans", "luke"]);
    assert_eq!(tokens.len(), 1, "one session, one token");
    let token = &tokens[0];
    let prefixes = [ready_prefix("hans"), ready_prefix("luke")];
    for at in occurrences(&wire, token) {
        if !prefixes.iter().any(|p| wire[..at].ends_with(p)) {
            leaks.push(format!(
                "the token crossed the wire outside the server's private_ready, after {:?}",
                String::from_utf8_lossy(&wire[at.saturating_sub(60)..at])
            ));
        }
    }
    // Nor as the bytes it stands for (the pre-shared key).
    if contains(&wire, &unhex(token)) {
        leaks.push("the token's bytes crossed the wire".into());
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
}
