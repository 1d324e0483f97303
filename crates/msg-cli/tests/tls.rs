//! msgd to a TLS server, end to end with real processes: trust by CA file,
//! by a pinned fingerprint in every spelling (kept in known_servers and
//! reused by reconnects and later logins), refusal of a certificate no one
//! vouches for and of a changed one, and a certificate reloaded on SIGHUP.

mod common;

use std::time::Instant;

use common::tls::{TlsServer, make_cert};
use common::*;

fn login_args(user: &User, extra: &[&str]) -> Outcome {
    let mut args = vec!["login", user.name.as_str(), "--password-stdin"];
    args.extend_from_slice(extra);
    user.run_with(&args, Some(&format!("{}\n", password(&user.name))))
}

fn known_servers(user: &User) -> String {
    std::fs::read_to_string(user.data_dir().join("known_servers")).unwrap_or_default()
}

#[test]
fn a_ca_file_vouches_for_the_server() {
    let tls = TlsServer::start();
    let hans = User::with_server_addr("hans", &tls.url());
    let ca = tls.cert_file().display().to_string();
    login_args(&hans, &["--ca", &ca]).ok();
    assert_eq!(hans.status()["server"], tls.url());
    assert_eq!(known_servers(&hans), "", "a CA needs no pin");
}

#[test]
fn a_pinned_fingerprint_in_any_spelling_is_trusted_kept_and_reused() {
    let mut tls = TlsServer::start();
    let hans = User::with_server_addr("hans", &tls.url());
    let luke = User::with_server_addr("luke", &tls.url());
    let yoda = User::with_server_addr("yoda", &tls.url());
    let bare_lower = tls.fingerprint.replace(':', "").to_lowercase();
    login_args(&hans, &["--fingerprint", &tls.fingerprint]).ok();
    login_args(&luke, &["--fingerprint", &bare_lower]).ok();
    login_args(&yoda, &["--fingerprint", &tls.fingerprint.to_lowercase()]).ok();

    let pin = format!("{} {}\n", tls.server.addr, tls.fingerprint);
    assert_eq!(known_servers(&luke), pin, "kept as openssl prints it");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(luke.data_dir().join("known_servers")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    hans.msg(&["send", "luke", "over-tls"]).ok();
    luke.wait_messages(&["hans: over-tls"]);

    // A later login needs no flag: the pin is in known_servers.
    luke.msg(&["logout"]).ok();
    login_args(&luke, &[]).ok();

    // The server comes back with the same certificate: msgd reconnects
    // with the trust it settled at login, asking nobody.
    tls.server.restart();
    let deadline = Instant::now() + DEADLINE;
    while hans.msg(&["send", "luke", "after-restart"]).code != 0 {
        assert!(Instant::now() < deadline, "hans never got back online");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    luke.wait_messages(&["hans: over-tls", "hans: after-restart"]);
}

#[test]
fn an_unknown_certificate_is_refused_without_a_terminal_showing_its_fingerprint() {
    let tls = TlsServer::start();
    let hans = User::with_server_addr("hans", &tls.url());
    let out = login_args(&hans, &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.err().contains(&tls.fingerprint), "{out:?}");
    assert!(out.err().contains("msg login --fingerprint"), "{out:?}");
    assert_eq!(known_servers(&hans), "");
    assert!(hans.status()["user"].is_null(), "not logged in");

    let json = hans.run_with(
        &["login", "hans", "--password-stdin", "--json"],
        Some("falcon*solo\n"),
    );
    assert_eq!(json.json()["error"]["code"], "untrusted_certificate");
    assert_eq!(
        json.json()["error"]["fingerprint"],
        tls.fingerprint.as_str()
    );
}

#[test]
fn a_reloaded_certificate_is_seen_by_new_clients_and_refused_where_pinned() {
    let tls = TlsServer::start();
    let hans = User::with_server_addr("hans", &tls.url());
    login_args(&hans, &["--fingerprint", &tls.fingerprint]).ok();
    hans.msg(&["logout"]).ok();

    let new = make_cert(tls.certs.path());
    assert_ne!(new, tls.fingerprint);
    #[cfg(unix)]
    // SAFETY: kill(2) on the server this test started and still holds.
    unsafe {
        libc::kill(tls.server.pid() as i32, libc::SIGHUP);
    }
    // A new client sees the new certificate once the server reloaded.
    let leia = User::with_server_addr("leia", &tls.url());
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = login_args(&leia, &[]);
        assert_eq!(out.code, 1, "{out:?}");
        if out.err().contains(&new) {
            break;
        }
        assert!(out.err().contains(&tls.fingerprint), "{out:?}");
        assert!(
            Instant::now() < deadline,
            "the certificate was never reloaded"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Where the old one is pinned, the new one is refused, both shown.
    let out = login_args(&hans, &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.err().contains(&tls.fingerprint), "{out:?}");
    assert!(out.err().contains(&new), "{out:?}");
    assert!(out.err().contains("known_servers"), "{out:?}");
    assert!(hans.status()["user"].is_null(), "not logged in");
}

#[test]
fn a_server_address_in_another_form_is_a_clear_error() {
    let server = Server::start();
    let hans = User::with_server_addr("hans", "https://127.0.0.1:4747");
    let out = login_args(&hans, &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.err().contains("tls://HOST:PORT"), "{out:?}");
    // tcp:// is plain TCP, as is no prefix; loopback needs no --insecure.
    let luke = User::with_server_addr("luke", &format!("tcp://{}", server.addr));
    login_args(&luke, &[]).ok();
    let bad = login_args(&hans, &["--server", &server.addr, "--fingerprint", "AB:CD"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.err().contains("SHA-256"), "{bad:?}");
}

/// `script` gives `msg login` a terminal: the password and the answer
/// come from it.
#[cfg(target_os = "linux")]
#[test]
fn at_a_terminal_the_fingerprint_is_shown_and_pinned_on_yes() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `script` (util-linux) to give msg a terminal");
        return;
    }
    let tls = TlsServer::start();
    let run = |user: &User, answer: &str| {
        let mut cmd = assert_cmd::Command::from_std(user.command(std::path::Path::new("script")));
        cmd.args(["-qec"])
            .arg(format!("{} login {}", bins().msg.display(), user.name))
            .arg("/dev/null")
            // The certificate is asked about first, before any password.
            .write_stdin(format!("{answer}\n{}\n", password(&user.name)))
            .timeout(DEADLINE);
        let output = cmd.output().expect("run script");
        user.track_daemon();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let luke = User::with_server_addr("luke", &tls.url());
    let (code, screen) = run(&luke, "no");
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains(&tls.fingerprint), "{screen}");
    assert!(screen.contains("not accepted"), "{screen}");
    assert_eq!(known_servers(&luke), "");

    let hans = User::with_server_addr("hans", &tls.url());
    let (code, screen) = run(&hans, "yes");
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains(&tls.fingerprint), "{screen}");
    assert!(screen.contains("(yes/no)"), "{screen}");
    assert_eq!(
        known_servers(&hans),
        format!("{} {}\n", tls.server.addr, tls.fingerprint)
    );
    assert_eq!(hans.status()["user"], "hans");
}

#[test]
fn private_sessions_work_between_daemons_on_a_tls_server() {
    let tls = TlsServer::start();
    let hans = User::with_server_addr("hans", &tls.url());
    let luke = User::with_server_addr("luke", &tls.url());
    luke.config("auto_accept_private = true\nnotify = false\n");
    login_args(&hans, &["--fingerprint", &tls.fingerprint]).ok();
    login_args(&luke, &["--fingerprint", &tls.fingerprint]).ok();
    assert_eq!(
        hans.msg(&["private", "start", "luke"]).ok().out(),
        "Start private messaging with luke"
    );
    hans.msg(&["private", "send", "luke", "through noise"]).ok();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let inbox = luke.msg(&["inbox", "--all"]).ok().out().to_owned();
        if inbox.contains("hans(private): through noise") {
            break;
        }
        assert!(Instant::now() < deadline, "never arrived: {inbox}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_restarted_msgd_logs_back_in_over_tls_with_its_device_token() {
    let tls = TlsServer::start();
    let hans = User::with_server_addr("hans", &tls.url());
    let luke = User::with_server_addr("luke", &tls.url());
    login_args(&hans, &["--fingerprint", &tls.fingerprint]).ok();
    login_args(&luke, &["--fingerprint", &tls.fingerprint]).ok();
    luke.kill_daemon();
    hans.msg(&["send", "luke", "while you were away"]).ok();
    // No password and no flag: the token, and the pin in known_servers.
    luke.msg(&["daemon", "start"]).ok();
    luke.track_daemon();
    luke.wait_messages(&["hans: while you were away"]);
    assert_eq!(luke.status()["server"], tls.url());
}
