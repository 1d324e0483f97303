//! The command tree. Completion (`complete`) and the man page read it.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Send and receive messages through your msgd.
#[derive(Debug, Parser)]
#[command(name = "msg", version, propagate_version = true)]
pub struct Cli {
    /// One JSON object per reply on stdout (NDJSON for `watch` and `inbox`).
    #[arg(long, global = true)]
    pub json: bool,
    /// More diagnostics on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Your username on the server.
    pub user: String,
    /// msg-server as HOST:PORT or tcp://HOST:PORT (plain TCP) or
    /// tls://HOST:PORT (TLS) [default: MSG_SERVER, else `server` in
    /// config.toml, else 127.0.0.1:4747].
    #[arg(long, env = "MSG_SERVER", value_name = "ADDRESS")]
    pub server: Option<String>,
    /// Trust the server's TLS certificate if this CA certificate (PEM)
    /// signed it [default: `ca` in config.toml].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Trust the server's TLS certificate by its SHA-256 fingerprint (hex,
    /// colons optional, as `openssl x509 -noout -fingerprint -sha256`
    /// prints it) and pin it in known_servers.
    #[arg(long, value_name = "SHA256")]
    pub fingerprint: Option<String>,
    /// Send the password over plain TCP even to another machine (anyone on
    /// the way can read it) [default: `insecure` in config.toml].
    #[arg(long)]
    pub insecure: bool,
    /// Read the password from the first line of stdin instead of the terminal.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in (starting msgd if it is not running).
    Login(LoginArgs),
    /// Create an account (when the server allows it) and log in.
    Register(LoginArgs),
    /// End the session and sign this device out (its token is revoked and
    /// deleted); msgd stays up, logged out.
    Logout,
    /// Show msgd, connection and inbox state.
    Status,
    /// Send a message to USER.
    Send {
        /// Who gets it (an offline user gets it at their next login).
        user: String,
        /// The message: the words are joined with spaces (up to 4,000 characters).
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// Send a message to every online user.
    Broadcast {
        /// The message: the words are joined with spaces (up to 4,000 characters).
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// List the other online users.
    Who {
        /// Users online at any moment in the last SECS seconds.
        #[arg(long, value_name = "SECS")]
        since: Option<u64>,
    },
    /// Stop USER's messages, broadcasts and private requests reaching you.
    Block {
        /// The user to block.
        user: String,
    },
    /// Undo `block`.
    Unblock {
        /// The user to unblock.
        user: String,
    },
    /// Print unread items, oldest first, and mark them read.
    Inbox {
        /// Include items already read.
        #[arg(long)]
        all: bool,
        /// Do not mark anything read.
        #[arg(long)]
        peek: bool,
    },
    /// Print each item as it arrives, until interrupted.
    Watch,
    /// Private (peer-to-peer) sessions.
    #[command(subcommand)]
    Private(PrivateCommand),
    /// Control msgd itself.
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Print the completion script for SHELL.
    Completions {
        /// The shell to print the script for.
        shell: Shell,
    },
    /// For the completion scripts: print what fits word CWORD of WORDS.
    #[command(hide = true)]
    CompleteWords {
        /// The shell asking (bash gets plain names; zsh and fish descriptions too).
        #[arg(long, default_value = "bash")]
        shell: String,
        /// Index of the word being completed (0 is `msg` itself).
        cword: usize,
        /// The command line's words, after `--`.
        #[arg(last = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

/// The shells msg has completion scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum PrivateCommand {
    /// Ask USER for a private session and wait for the answer.
    Start {
        /// The user to ask.
        user: String,
    },
    /// Accept USER's request.
    Accept {
        /// The user who asked.
        user: String,
    },
    /// Decline USER's request.
    Decline {
        /// The user who asked.
        user: String,
    },
    /// Send a private message to USER.
    Send {
        /// The user at the other end of the private session.
        user: String,
        /// The message: the words are joined with spaces (up to 4,000 characters).
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// End the private session with USER.
    Stop {
        /// The user at the other end.
        user: String,
    },
    /// Open sessions and pending requests.
    List,
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Start msgd in the background if it is not running.
    Start,
    /// Log out and stop msgd; its device token is kept, so the next start
    /// logs in by itself.
    Stop,
    /// Whether msgd is running.
    Status,
}

/// The global flags a command line may end with.
const TRAILING_FLAGS: [&str; 7] = ["--json", "--quiet", "-q", "--verbose", "-v", "-vv", "-vvv"];

/// Moves global flags that end the command line (`msg send luke hello
/// --json`) in front of the subcommand, where clap sees them as flags
/// rather than as more words of the message. Only a run of flags at the very
/// end moves, and nothing moves when the line has `--` (after it everything
/// is text: `msg send luke -- --json` sends "--json").
pub fn hoist_trailing_flags(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.len() < 2 || args.iter().any(|a| a == "--") {
        return args;
    }
    let mut hoisted = Vec::new();
    while args.len() > 2
        && args
            .last()
            .is_some_and(|a| TRAILING_FLAGS.iter().any(|flag| a == flag))
    {
        hoisted.extend(args.pop());
    }
    hoisted.reverse();
    args.splice(1..1, hoisted);
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn texts_are_joined_and_may_start_with_a_dash() {
        let cli = Cli::try_parse_from(["msg", "send", "luke", "-1", "is", "odd"]).unwrap();
        match cli.command {
            Command::Send { user, text } => {
                assert_eq!(user, "luke");
                assert_eq!(text.join(" "), "-1 is odd");
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["msg", "who", "--since", "-5"]).is_err());
    }

    fn hoisted(line: &str) -> Vec<String> {
        let args = line.split(' ').map(Into::into).collect();
        hoist_trailing_flags(args)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn flags_ending_the_line_are_flags_not_text() {
        assert_eq!(
            hoisted("msg send luke hello --json"),
            ["msg", "--json", "send", "luke", "hello"]
        );
        assert_eq!(
            hoisted("msg send luke hello -q --json"),
            ["msg", "-q", "--json", "send", "luke", "hello"]
        );
        assert_eq!(
            hoisted("msg send luke use -v here"),
            ["msg", "send", "luke", "use", "-v", "here"],
            "only at the end"
        );
        assert_eq!(
            hoisted("msg send luke -- --json"),
            ["msg", "send", "luke", "--", "--json"],
            "after -- it is text"
        );
        let cli = Cli::try_parse_from(hoisted("msg send luke hello --json")).unwrap();
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Send { text, .. } if text == ["hello"]));
    }
}
