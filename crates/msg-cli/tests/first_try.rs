//! The rough edges of a first try, as a new user meets them: a typo in the
//! config, msgd failing to start, `msg watch` and the inbox agreeing.

mod common;

use common::*;

#[test]
fn a_config_typo_names_the_file_and_the_reason() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.config("notify = true\nsever = \"chat:4747\"\n");
    let login = hans.login();
    assert_eq!(login.code, 2, "{login:?}");
    let config = hans.dir.path().join("config/msg/config.toml");
    assert!(
        login
            .err()
            .starts_with(&format!("invalid config file {}", config.display())),
        "{login:?}"
    );
    assert!(login.err().contains("unknown field `sever`"), "{login:?}");
}

#[test]
fn msgd_failing_to_start_says_why_and_where_its_log_is() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    // A valid server for `msg`, a config msgd refuses: a negative retention.
    hans.config("retention_days = -1\n");
    let started = hans.msg(&["daemon", "start"]);
    assert_eq!(started.code, 4, "{started:?}");
    let log = hans.data_dir().join("msgd.log");
    let err = started.err();
    assert!(err.starts_with("msgd could not start: "), "{started:?}");
    assert!(
        err.contains("config.toml"),
        "the reason is quoted: {started:?}"
    );
    assert!(
        err.ends_with(&format!("(log: {})", log.display())),
        "{started:?}"
    );
}

#[test]
fn what_watch_showed_is_read_and_watch_ends_when_msgd_stops() {
    let server = Server::start();
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    // Everything so far (luke's login notice, once it is in) read.
    hans.wait_status(|s| s["unread"] == 1);
    hans.msg(&["inbox"]).ok();
    let (mut watch, lines) = hans.watch(false);
    luke.msg(&["send", "hans", "seen live"]).ok();
    assert_eq!(lines.next(), "luke: seen live");
    hans.wait_status(|s| s["unread"] == 0);
    assert_eq!(
        hans.msg(&["inbox"]).ok().out(),
        "No unread items (`msg inbox --all` shows the read ones)"
    );

    hans.msg(&["daemon", "stop"]).ok();
    let status = watch.0.wait().expect("msg watch ends");
    assert_eq!(status.code(), Some(4), "msg watch fails when msgd stops");
}

#[test]
fn no_password_is_asked_for_a_login_that_cannot_succeed() {
    let server = Server::start();
    let ghost = User::new("ghost", &server);
    // Without registration an unknown name is refused before any password:
    // nothing is read from stdin.
    let unknown = ghost.run_with(&["login", "ghost", "--password-stdin"], Some(""));
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown.err().starts_with("Error. Invalid user: ")
            && unknown.err().contains("has no account ghost")
            && unknown.err().contains("does not let new users register"),
        "{unknown:?}"
    );

    // Three wrong passwords block luke; the next login is told how long,
    // again without a password.
    let luke = User::new("luke", &server);
    for _ in 0..3 {
        assert_eq!(luke.login_with("wrong").code, 1);
    }
    let blocked = luke.run_with(&["login", "luke", "--password-stdin"], Some(""));
    assert_eq!(blocked.code, 1, "{blocked:?}");
    assert!(
        blocked.err().starts_with(
            "Your account is blocked due to multiple login failures. Please try again later (in "
        ),
        "{blocked:?}"
    );
}

#[test]
fn with_registration_a_typo_does_not_create_an_account() {
    let server = Server::with(ServerOptions {
        allow_register: true,
        ..Default::default()
    });
    let rey = User::new("rey", &server);
    // No terminal to ask "Create it?": refused, with the way to create it.
    let typo = rey.login_with("jakku");
    assert_eq!(typo.code, 1, "{typo:?}");
    assert!(
        typo.err().contains("create it with `msg register rey`"),
        "{typo:?}"
    );
    let hans = User::new("hans", &server);
    hans.login().ok();
    let to_rey = hans.msg(&["send", "rey", "hi"]);
    assert_eq!(to_rey.code, 1, "rey was not created: {to_rey:?}");
    assert!(
        to_rey.err().starts_with("Error. Invalid user"),
        "{to_rey:?}"
    );
    // Registering an existing name says so before any password.
    let taken = rey.run_with(&["register", "luke", "--password-stdin"], Some(""));
    assert_eq!(taken.code, 1, "{taken:?}");
    assert!(taken.err().contains("already exists"), "{taken:?}");
}
