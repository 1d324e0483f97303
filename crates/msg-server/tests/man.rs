//! The man page `msg-server(8)`, generated from the command line's clap tree
//! (clap_mangen) and shipped as `man/msg-server.8`; this test keeps the file
//! in sync (`UPDATE_MAN=1 cargo test -p msg-server --test man` rewrites it).

use std::path::PathBuf;

use clap::CommandFactory;
use msg_server::cli::Cli;

/// What clap cannot know: signals, files, the unit.
const EXTRA: &str = r#".SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
stop accepting, tell every client, flush the store, exit 0
.TP
\fBSIGHUP\fR
re-read the credentials file
.SH FILES
.TP
\fIcredentials.txt\fR
the accounts, one \fIusername password\fR a line (\fB--credentials\fR)
.TP
\fImsg.db\fR
the durable store (SQLite) in the state directory (\fB--state-dir\fR), device-token hashes included
.TP
\fIadmin.sock\fR
in the state directory (0600): where \fBrevoke\fR and \fBpasswd\fR reach the running server
.TP
\fI/etc/systemd/system/msg-server.service\fR
the hardened systemd unit shipped in the source tree's \fIsystemd/\fR
.SH "SEE ALSO"
\fBmsg\fR(1), \fBmsgd\fR(1)
"#;

fn render() -> Vec<u8> {
    let tree = Cli::command().name("msg-server");
    let man = clap_mangen::Man::new(tree.clone()).section("8");
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    man.render_name_section(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    man.render_description_section(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    for sub in tree.get_subcommands().filter(|s| s.get_name() != "help") {
        let name: &'static str =
            Box::leak(format!("msg-server {}", sub.get_name()).into_boxed_str());
        out.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
        let page = clap_mangen::Man::new(sub.clone().name(name));
        // Its synopsis and options, under the subcommand's own heading.
        let mut part = Vec::new();
        page.render_synopsis_section(&mut part).unwrap();
        page.render_description_section(&mut part).unwrap();
        page.render_options_section(&mut part).unwrap();
        let part = String::from_utf8(part).unwrap();
        out.extend_from_slice(part.replace(".SH ", ".SS ").as_bytes());
    }
    out.extend_from_slice(EXTRA.as_bytes());
    out
}

#[test]
fn man_page_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../man/msg-server.8");
    let page = render();
    if std::env::var_os("UPDATE_MAN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &page).unwrap();
    }
    assert!(
        std::fs::read(&path).ok().as_deref() == Some(&page[..]),
        "man/msg-server.8 is out of date: run `UPDATE_MAN=1 cargo test -p msg-server --test man`"
    );
}
