//! The man page `msgd(1)`, generated from msgd's clap tree (clap_mangen)
//! and shipped as `man/msgd.1`; this test keeps the file in sync
//! (`UPDATE_MAN=1 cargo test -p msg-daemon --test man` rewrites it).

use std::path::PathBuf;

use clap::CommandFactory;
use msg_daemon::cli::Args;

/// What clap cannot know: signals, files, the environment.
const EXTRA: &str = r#".SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
log out, say goodbye to private sessions, exit 0
.SH ENVIRONMENT
.TP
\fBMSG_RUNTIME_DIR\fR
the directory of the control socket and the lock (default: \fB$XDG_RUNTIME_DIR/msg\fR)
.TP
\fBDBUS_SESSION_BUS_ADDRESS\fR
where desktop notifications go
.TP
\fBRUST_LOG\fR
the log filter
.SH FILES
.TP
\fI~/.config/msg/config.toml\fR
server, notify, auto_accept_private, peer_port, retention_days
.TP
\fI~/.local/share/msg/inbox.sqlite3\fR
the inbox
.TP
\fI~/.local/share/msg/msgd.log\fR
the log of a msgd started by \fBmsg\fR
.TP
\fI~/.local/share/msg/tokens/\fR
device tokens (0600): with one, msgd logs in by itself at start; \fBmsg logout\fR revokes it
.SH "SEE ALSO"
\fBmsg\fR(1), \fBmsg-server\fR(8)
"#;

#[test]
fn man_page_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../man/msgd.1");
    let mut page = Vec::new();
    clap_mangen::Man::new(Args::command())
        .render(&mut page)
        .unwrap();
    page.extend_from_slice(EXTRA.as_bytes());
    if std::env::var_os("UPDATE_MAN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &page).unwrap();
    }
    assert!(
        std::fs::read(&path).ok().as_deref() == Some(&page[..]),
        "man/msgd.1 is out of date: run `UPDATE_MAN=1 cargo test -p msg-daemon --test man`"
    );
}
