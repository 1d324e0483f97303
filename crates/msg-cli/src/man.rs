//! The man page `msg(1)`, generated from the command tree (clap_mangen) and
//! shipped as `man/msg.1`; the test keeps the file in sync
//! (`UPDATE_MAN=1 cargo test -p msg-cli man` rewrites it).

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory;

    use crate::cli::Cli;

    /// What clap cannot know: exit codes, the environment, files.
    const EXTRA: &str = r#".SH "EXIT STATUS"
.TP
0
success
.TP
1
the server or msgd refused (the text is on standard error; \fB--json\fR gives its code)
.TP
2
usage error
.TP
3
not logged in (including: logged out for inactivity)
.TP
4
msgd or the server cannot be reached, or the socket is not this user's msgd
.SH ENVIRONMENT
.TP
\fBMSG_SERVER\fR
the server for \fBmsg login\fR (after \fB--server\fR): \fIHOST:PORT\fR or \fBtcp://\fR\fIHOST:PORT\fR (plain TCP), \fBtls://\fR\fIHOST:PORT\fR (TLS)
.TP
\fBMSG_RUNTIME_DIR\fR
the directory of msgd's control socket (default: \fB$XDG_RUNTIME_DIR/msg\fR)
.TP
\fBRUST_LOG\fR
the log filter of msg and msgd
.SH FILES
.TP
\fI~/.config/msg/config.toml\fR
defaults: server, ca, insecure, notifications, private sessions
.TP
\fI~/.local/share/msg/\fR
msgd's inbox, log and device tokens (\fItokens/\fR, kept across restarts; \fBmsg logout\fR revokes them)
.TP
\fI~/.local/share/msg/known_servers\fR
the pinned TLS certificate fingerprints, \fIHOST:PORT FINGERPRINT\fR a line
.SH "SEE ALSO"
\fBmsgd\fR(1), \fBmsg-server\fR(8)
"#;

    pub fn render() -> Vec<u8> {
        let mut tree = Cli::command().name("msg");
        tree.build();
        let man = clap_mangen::Man::new(tree.clone());
        let mut out = Vec::new();
        man.render_title(&mut out).expect("title");
        man.render_name_section(&mut out).expect("name");
        man.render_synopsis_section(&mut out).expect("synopsis");
        man.render_description_section(&mut out)
            .expect("description");
        man.render_options_section(&mut out).expect("options");
        out.extend_from_slice(b".SH COMMANDS\n");
        commands(&tree, "msg", &mut out);
        out.extend_from_slice(EXTRA.as_bytes());
        out
    }

    /// Every visible subcommand, nested ones too: its usage, what it does,
    /// and its own options.
    fn commands(cmd: &clap::Command, prefix: &str, out: &mut Vec<u8>) {
        for sub in cmd.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            let path = format!("{prefix} {}", sub.get_name());
            if sub.has_subcommands() {
                commands(sub, &path, out);
                continue;
            }
            let mut usage = format!("\\fB{path}\\fR");
            for arg in sub.get_positionals() {
                let name = arg
                    .get_value_names()
                    .and_then(|names| names.first().map(|n| n.to_string()))
                    .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
                let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
                usage.push_str(&format!(" \\fI{name}\\fR{}", if many { "..." } else { "" }));
            }
            for arg in sub.get_arguments() {
                if arg.is_positional() || arg.is_hide_set() || arg.is_global_set() {
                    continue;
                }
                if let Some(long) = arg.get_long().filter(|l| !matches!(*l, "help" | "version")) {
                    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
                    let value = arg
                        .get_value_names()
                        .filter(|_| takes_value)
                        .and_then(|names| names.first().map(|n| format!(" \\fI{n}\\fR")))
                        .unwrap_or_default();
                    usage.push_str(&format!(" [\\fB--{long}\\fR{value}]"));
                }
            }
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            out.extend_from_slice(format!(".TP\n{usage}\n{}\n", roff_text(&about)).as_bytes());
        }
    }

    /// Plain text safe inside roff: no leading dot or quote, backslashes
    /// doubled.
    fn roff_text(text: &str) -> String {
        let escaped = text.replace('\\', "\\\\");
        match escaped.chars().next() {
            Some('.' | '\'') => format!("\\&{escaped}"),
            _ => escaped,
        }
    }

    #[test]
    fn man_page_is_up_to_date() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../man/msg.1");
        let page = render();
        if std::env::var_os("UPDATE_MAN").is_some_and(|v| v == "1") {
            std::fs::write(&path, &page).unwrap();
        }
        assert!(
            std::fs::read(&path).ok().as_deref() == Some(&page[..]),
            "man/msg.1 is out of date: run `UPDATE_MAN=1 cargo test -p msg-cli man`"
        );
    }
}
