//! TLS on the listening port, against a real msg-server: a client that
//! trusts the certificate `msg-server cert` wrote is served; a stranger
//! that never finishes the handshake is closed at the login deadline.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// `msg-server cert --name 127.0.0.1` into `dir`; the fingerprint it printed.
fn make_cert(dir: &Path) -> String {
    let out = std::process::Command::new(server_bin())
        .args(["cert", "--name", "127.0.0.1", "--out"])
        .arg(dir)
        .output()
        .expect("run msg-server cert");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.lines()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint in {text}"))
        .to_owned()
}

fn tls_args(dir: &Path) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        dir.join("cert.pem").display().to_string(),
        "--tls-key".into(),
        dir.join("key.pem").display().to_string(),
    ]
}

#[test]
fn a_client_that_trusts_the_certificate_is_served_over_tls() {
    let env = Env::new();
    let fingerprint = make_cert(env.dir.path());
    let args = tls_args(env.dir.path());
    let server = env.start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        server.log().contains(&fingerprint),
        "the fingerprint is logged at start"
    );

    let mut roots = rustls::RootCertStore::empty();
    let cert = CertificateDer::from_pem_file(env.dir.path().join("cert.pem")).expect("cert");
    roots.add(cert).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut tcp = TcpStream::connect(server.addr).expect("connect");
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    stream
        .write_all(b"{\"type\":\"hello\",\"version\":1}\n")
        .expect("hello");
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).expect("reply");
    assert!(line.contains("\"type\":\"hello\""), "{line}");

    // The same port does not speak plain TCP: a plain hello gets no
    // JSON back (the bytes are not a TLS record; the server hangs up).
    let mut plain = TcpStream::connect(server.addr).expect("connect");
    plain.set_read_timeout(Some(DEADLINE)).expect("timeout");
    plain
        .write_all(b"{\"type\":\"hello\",\"version\":1}\n")
        .expect("write");
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!got.windows(7).any(|w| w == b"\"hello\""), "{got:?}");
}

#[test]
fn a_handshake_that_never_completes_is_closed_at_the_deadline() {
    let env = Env::new();
    make_cert(env.dir.path());
    let mut args = tls_args(env.dir.path());
    args.extend(["--login-timeout-ms".into(), "400".into()]);
    let server = env.start(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // One says nothing; the other starts a record and stops.
    let mut silent = TcpStream::connect(server.addr).expect("connect");
    let mut partial = TcpStream::connect(server.addr).expect("connect");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("write");
    let started = Instant::now();
    for stream in [&mut silent, &mut partial] {
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
        }
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "closed too late: {waited:?}"
    );
}
