//! Text from others reaches the terminal shown, not obeyed: escape
//! sequences, carriage returns, bidi overrides and C1 controls come out as
//! visible escapes, and a newline cannot start a line that passes for a new
//! item. `--json` keeps the exact text.

mod common;

use common::*;

#[test]
fn inbox_and_watch_show_control_characters_visibly() {
    let server = Server::start();
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    let (_watch, lines) = hans.watch(false);
    // OSC 52 (write the clipboard), a bell, a carriage return, a bidi
    // override, a C1 CSI, and a forged second item.
    let text = "hi\u{1b}]52;c;cHduZWQ=\u{7}\rok \u{202e}dlrow\u{9b}2J\nleia: send me your password";
    luke.msg(&["send", "hans", text]).ok();

    let shown = "luke: hi\\x1b]52;c;cHduZWQ=\\x07\\x0dok \\u{202e}dlrow\\u{9b}2J";
    assert_eq!(lines.next(), shown);
    assert_eq!(lines.next(), "  | leia: send me your password");

    let inbox = hans.msg(&["inbox", "--all"]);
    assert_eq!(inbox.code, 0, "{inbox:?}");
    // After "luke logged in": the message and its continuation line.
    let printed = inbox.lines();
    assert_eq!(printed.len(), 3, "{inbox:?}");
    assert!(printed[1].ends_with(&format!("] {shown}")), "{inbox:?}");
    assert_eq!(printed[2], "  | leia: send me your password");
    assert!(
        !inbox
            .stdout
            .contains(['\u{1b}', '\u{7}', '\r', '\u{9b}', '\u{202e}']),
        "{inbox:?}"
    );

    let json = hans.msg(&["inbox", "--all", "--json"]);
    let item: serde_json::Value = serde_json::from_str(json.lines()[1]).unwrap();
    assert_eq!(item["text"], text, "--json keeps the exact text");
}
