//! Private sessions against peers played by hand (see `noise_peer`): a
//! daemon lets in only the caller that proves the key the server brokered
//! and holds the token, and talks only to a callee that proves the key the
//! server gave for it. Whoever fails is closed without a word; the user is
//! told, and nothing is stored.

mod common;
mod noise_peer;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use noise_peer::{CallError, Channel, Keys, closes_silently, read_record, unhex, write_record};
use serde_json::{Value, json};

/// Private items in `user`'s inbox, as lines, without marking them read.
fn private_items(user: &User) -> Vec<String> {
    user.msg(&["inbox", "--peek", "--all", "--json"])
        .json_lines()
        .iter()
        .filter(|i| i["kind"] == "private")
        .map(|i| {
            let (from, text) = (i["from"].as_str().unwrap(), i["text"].as_str().unwrap());
            format!("{from}: {text}")
        })
        .collect()
}

fn not_enabled(user: &User, peer: &str) {
    let send = user.msg(&["private", "send", peer, "anyone there?"]);
    assert_eq!(
        (send.code, send.err()),
        (
            1,
            format!("Error. Private messaging to {peer} not enabled").as_str()
        )
    );
}

/// `user` logged in by hand with a key (and a peer port, if any).
fn raw_login(server: &Server, user: &str, keys: &Keys, peer_port: Option<u16>) -> Raw {
    let mut raw = Raw::connect(&server.addr);
    raw.send(json!({"type": "hello", "version": 1}));
    raw.until("hello");
    let mut login = json!({"type": "login", "id": 1, "user": user, "password": password(user), "peer_key": keys.hex()});
    if let Some(port) = peer_port {
        login["peer_port"] = json!(port);
    }
    raw.send(login);
    raw.until("welcome");
    raw
}

fn hello(version: u32, from: &str) -> Value {
    json!({"type": "hello", "version": version, "from": from})
}

#[test]
fn only_the_brokered_caller_with_the_token_gets_in() {
    let server = Server::start();
    let port = free_port();
    let luke = User::new("luke", &server);
    luke.config(&format!(
        "auto_accept_private = true\nnotify = false\npeer_port = {port}\n"
    ));
    luke.login().ok();
    let peer_addr = format!("127.0.0.1:{port}");

    // No session expects anyone: a caller is closed at once, without a word.
    let mut unexpected = TcpStream::connect(&peer_addr).unwrap();
    let _ = unexpected.write_all(b"GET / HTTP/1.1\r\n\r\n");
    assert!(closes_silently(&mut unexpected));

    // hans, by hand, with a key of his own, asks; luke accepts at once.
    let hans_keys = Keys::new();
    let mut hans = raw_login(&server, "hans", &hans_keys, None);
    hans.send(json!({"type": "private_request", "id": 2, "user": "luke"}));
    let ready = hans.until("private_ready");
    assert_eq!(ready["addr"], peer_addr.as_str());
    let token = ready["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    let luke_key = unhex(ready["peer_key"].as_str().unwrap());

    // Now a session expects a caller from this address. Anything that is
    // not the handshake is closed without a word: nothing readable is ever
    // said. Among it the old cleartext hello with the right token.
    let v1 = format!(r#"{{"type":"hello","version":1,"from":"hans","token":"{token}"}}"#);
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![b'x'; 70 * 1024],
        format!("{v1}\n").into_bytes(),
    ] {
        let mut caller = TcpStream::connect(&peer_addr).unwrap();
        let _ = caller.write_all(&bytes);
        assert!(closes_silently(&mut caller), "{:?}", &bytes[..16]);
    }
    // The token and luke's key, but not the key the server gave luke for
    // hans: no session is agreed with it, closed before any answer.
    let impostor = Keys::new();
    let call = Channel::call(&peer_addr, &impostor, &luke_key, &token);
    assert_eq!(call.err(), Some(CallError::Closed));
    // hans's key without the token: luke's answer does not open.
    let call = Channel::call(&peer_addr, &hans_keys, &luke_key, &"0f".repeat(32));
    assert_eq!(call.err(), Some(CallError::Unverified));
    // A message 1 for some other key: luke cannot read it.
    let call = Channel::call(&peer_addr, &hans_keys, &impostor.public, &token);
    assert_eq!(call.err(), Some(CallError::Closed));
    // Through the handshake, but the wrong first frame: refused inside.
    for (first, code) in [
        (hello(1, "hans"), "version_mismatch"),
        (hello(2, "yoda"), "wrong_user"),
        (
            json!({"type": "message", "id": 1, "text": "hi"}),
            "hello_required",
        ),
        (json!({"type": "hello", "version": 2}), "invalid_command"),
    ] {
        let mut caller = Channel::call(&peer_addr, &hans_keys, &luke_key, &token).unwrap();
        caller.send(first);
        let refused = caller.recv().expect("a refusal");
        assert_eq!(
            (refused["type"].as_str(), refused["code"].as_str()),
            (Some("refused"), Some(code)),
            "{refused}"
        );
        assert!(caller.recv().is_none(), "closed after the refusal");
    }
    assert!(private_items(&luke).is_empty(), "nothing stored");

    // The brokered key and the token still work after all that, once.
    let mut direct = Channel::call(&peer_addr, &hans_keys, &luke_key, &token).unwrap();
    direct.send(hello(2, "hans"));
    assert_eq!(
        direct.recv().unwrap(),
        json!({"type": "welcome", "version": 2, "user": "luke"})
    );
    // Used up: no session expects anyone any more, closed at once.
    let again = Channel::call(&peer_addr, &hans_keys, &luke_key, &token);
    assert_eq!(again.err(), Some(CallError::Closed));

    // The session works both ways; a message is acked once stored.
    direct.send(json!({"type": "message", "id": 7, "text": "by hand"}));
    assert_eq!(direct.until("ack"), json!({"type": "ack", "id": 7}));
    assert_eq!(private_items(&luke), ["hans: by hand"]);
    let reply = luke.background(&["private", "send", "hans", "got it"]);
    let message = direct.until("message");
    assert_eq!(message["text"], "got it");
    direct.send(json!({"type": "ack", "id": message["id"]}));
    reply.join().ok();

    // The caller vanishes without a bye: luke's daemon notices.
    let (_watch, luke_sees) = luke.watch(false);
    drop(direct);
    luke_sees.until(|l| l == "Private messaging with hans stopped (connection lost)");
    assert_eq!(
        hans.until("private_ended"),
        json!({"type": "private_ended", "peer": "luke", "reason": "stopped"})
    );
    assert_eq!(luke.status()["state"], "online");
}

/// Someone at luke's address who does not hold luke's key: it accepts every
/// call, reads message 1 and answers `answer` (nothing: hangs up). Returns
/// the length of each message 1 and whether the caller then said nothing
/// more.
fn impostor(
    listener: TcpListener,
    answer: Option<Vec<u8>>,
    stop: Arc<AtomicBool>,
) -> Vec<(usize, bool)> {
    listener.set_nonblocking(true).unwrap();
    let mut calls = Vec::new();
    let until = Instant::now() + DEADLINE;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        let Ok((mut stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let first = read_record(&mut stream).map_or(0, |r| r.len());
        let silent = match &answer {
            Some(bytes) => {
                let _ = write_record(&mut stream, bytes);
                closes_silently(&mut stream)
            }
            None => true,
        };
        calls.push((first, silent));
    }
    calls
}

#[test]
fn a_callee_that_does_not_prove_the_brokered_key_is_refused() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.config("notify = false\n");
    hans.login().ok();
    let (_watch, hans_sees) = hans.watch(false);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // luke, by hand, advertises a key and that port; someone else answers.
    let mut luke = raw_login(&server, "luke", &Keys::new(), Some(port));

    let cases = [
        // An answer shaped like message 2 that proves nothing.
        (
            Some(vec![0x5a; 48]),
            "Error. Cannot verify luke's msgd for private messaging",
        ),
        // It cannot read message 1, and hangs up (each retry too).
        (None, "Error. Cannot connect to luke for private messaging"),
    ];
    let mut listener = Some(listener);
    for (answer, text) in cases {
        let stop = Arc::new(AtomicBool::new(false));
        let answering = std::thread::spawn({
            let (listener, stop) = (listener.take().unwrap(), Arc::clone(&stop));
            let answer = answer.clone();
            move || {
                let listener2 = listener.try_clone().unwrap();
                (impostor(listener, answer, stop), listener2)
            }
        });
        let started = hans.background(&["private", "start", "luke"]);
        luke.until("private_request");
        luke.send(json!({"type": "private_accept", "id": 2, "user": "hans"}));
        let failed = started.join();
        assert_eq!((failed.code, failed.err()), (1, text));
        hans_sees.until(|l| l == text);
        // hans's daemon told the server, which tells luke.
        assert_eq!(
            luke.until("private_ended"),
            json!({"type": "private_ended", "peer": "hans", "reason": "stopped"})
        );
        stop.store(true, Ordering::SeqCst);
        let (calls, back) = answering.join().unwrap();
        listener = Some(back);
        assert!(!calls.is_empty());
        for (first, silent) in calls {
            assert_eq!(first, 96, "message 1, and no cleartext");
            assert!(silent, "hans said nothing more: no hello, no text");
        }
        not_enabled(&hans, "luke");
        assert_eq!(hans.status()["private"], json!([]));
    }
    assert!(private_items(&hans).is_empty());
}
