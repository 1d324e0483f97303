//! Private sessions as brokered by the server (the direct peer-to-peer data
//! path is the next issue: `private send` says it is not enabled).

mod common;

use common::*;

#[test]
fn request_accept_list_and_stop() {
    let server = Server::start();
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    let (_watch, luke_sees) = luke.watch(false);
    let (_watch, hans_sees) = hans.watch(false);
    let start = hans.background(&["private", "start", "luke"]);
    luke_sees.until(|l| l == "hans would like to private message");
    let listed = luke.msg(&["--json", "private", "list"]).json();
    assert_eq!(listed["incoming"], serde_json::json!(["hans"]));
    assert_eq!(
        hans.msg(&["--json", "private", "list"]).json()["outgoing"],
        serde_json::json!(["luke"])
    );

    assert_eq!(
        luke.msg(&["private", "accept", "hans"]).ok().out(),
        "Start private messaging with hans"
    );
    assert_eq!(start.join().ok().out(), "Start private messaging with luke");
    hans_sees.until(|l| l == "Start private messaging with luke");
    assert_eq!(
        luke.msg(&["private", "list"]).ok().out(),
        "hans: private session open"
    );
    assert_eq!(hans.status()["private"], serde_json::json!(["luke"]));

    let send = hans.msg(&["private", "send", "luke", "psst"]);
    assert_eq!(
        (send.code, send.err()),
        (1, "Error. Private messaging to luke not enabled")
    );

    assert_eq!(
        hans.msg(&["private", "stop", "luke"]).ok().out(),
        "Private messaging with luke stopped"
    );
    luke_sees.until(|l| l == "Private messaging with hans stopped");
    assert_eq!(
        hans.msg(&["private", "list"]).ok().out(),
        "No private sessions or requests"
    );
    let again = hans.msg(&["private", "stop", "luke"]);
    assert_eq!(
        (again.code, again.err()),
        (1, "Error. No private session with luke")
    );
}

#[test]
fn decline_and_refusals() {
    let server = Server::start();
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    let (_watch, luke_sees) = luke.watch(false);
    let start = hans.background(&["private", "start", "luke"]);
    luke_sees.until(|l| l == "hans would like to private message");
    luke.msg(&["private", "decline", "hans"]).ok();
    let declined = start.join();
    assert_eq!(
        (declined.code, declined.err()),
        (1, "luke declined private messaging")
    );

    let check = |args: &[&str], text: &str| {
        let o = hans.msg(args);
        assert_eq!((o.code, o.err()), (1, text), "{args:?}");
    };
    check(
        &["private", "start", "hans"],
        "Error. Cannot start private messaging with self",
    );
    check(&["private", "start", "nobody"], "Error. Invalid user");
    check(&["private", "start", "yoda"], "Error. yoda is offline");
    luke.msg(&["block", "hans"]).ok();
    check(&["private", "start", "luke"], "Error. luke has blocked you");
}

#[test]
fn auto_accept_from_the_config() {
    let server = Server::start();
    let luke = User::new("luke", &server);
    luke.config("auto_accept_private = true\nnotify = false\n");
    luke.login().ok();
    let hans = User::new("hans", &server);
    hans.login().ok();
    assert_eq!(
        hans.msg(&["private", "start", "luke"]).ok().out(),
        "Start private messaging with luke"
    );
    luke.wait_status(|s| s["private"] == serde_json::json!(["hans"]));
}
