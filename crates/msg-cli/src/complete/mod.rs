//! Shell completion that knows users.
//!
//! The scripts `msg completions SHELL` prints (bash, zsh, fish) are small
//! and fixed: on every TAB they run the hidden `msg complete-words CWORD --
//! WORDS...` and offer what it prints, one candidate a line (`name\tdescription`
//! for the shells that show descriptions). This module decides what fits
//! where the cursor is, from the clap command tree:
//!
//! - a subcommand name where one is expected;
//! - flags only once the word being completed starts with `-`;
//! - for USER arguments, the users online now and recent correspondents,
//!   asked from msgd (see [`crate::client::names`]), nothing when it is down;
//! - SHELL values from their possible values; nothing at all for TEXT and
//!   other free values — never file names.
//!
//! Hand-written scripts rather than clap_complete's dynamic completion: that
//! is unstable, and its bash registration falls back to file names.

use clap::{Arg, Command};

/// One thing a shell may offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub value: String,
    pub help: Option<String>,
}

impl Candidate {
    fn new(value: impl Into<String>, help: Option<String>) -> Self {
        Self {
            value: value.into(),
            help,
        }
    }
}

/// What kind of value is wanted at the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// Fixed candidates (subcommands, flags, possible values).
    Fixed(Vec<Candidate>),
    /// User names (filtered by the prefix once known).
    Users,
    /// Free text: offer nothing.
    Nothing,
}

/// What to offer for `words[cword]` (`words[0]` is the program name; the
/// current word may be empty or absent).
pub fn wanted(root: &Command, words: &[String], cword: usize) -> Wanted {
    let current = words.get(cword).map_or("", String::as_str);
    let mut cmd = root;
    let mut positionals = 0usize;
    let mut only_positionals = false;
    let mut i = 1;
    while i < cword.min(words.len()) {
        let word = words[i].as_str();
        i += 1;
        if !only_positionals && word == "--" {
            only_positionals = true;
            continue;
        }
        // A free-text argument takes everything after it, dashes included.
        let in_text = positional(cmd, positionals).is_some_and(is_trailing);
        if !only_positionals && !in_text && word.starts_with('-') && word.len() > 1 {
            // `--server=x` and `-sx` carry their value; `--server x` does not.
            let attached = word.contains('=') || (!word.starts_with("--") && word.len() > 2);
            if let Some(arg) = flag(cmd, word)
                && takes_value(arg)
                && !attached
            {
                if i == cword {
                    return value_of(arg);
                }
                i += 1;
            }
            continue;
        }
        if positionals == 0
            && let Some(sub) = cmd.find_subcommand(word)
        {
            cmd = sub;
            continue;
        }
        if !positional(cmd, positionals).is_some_and(is_trailing) {
            positionals += 1;
        }
    }
    if !only_positionals && current.starts_with('-') {
        return Wanted::Fixed(flags(cmd, current));
    }
    if positionals == 0 && cmd.has_subcommands() {
        let subs = cmd
            .get_subcommands()
            .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
            .filter(|sub| sub.get_name().starts_with(current))
            .map(|sub| Candidate::new(sub.get_name(), sub.get_about().map(|a| a.to_string())))
            .collect();
        return Wanted::Fixed(subs);
    }
    match positional(cmd, positionals) {
        Some(arg) => value_of(arg),
        None => Wanted::Nothing,
    }
}

/// The `index`-th positional argument of `cmd`.
fn positional(cmd: &Command, index: usize) -> Option<&Arg> {
    cmd.get_positionals().nth(index)
}

/// An argument that takes all remaining words (`TEXT...`).
fn is_trailing(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.max_values() > 1)
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.takes_values())
}

/// The flag a word names (`--server`, `--server=x`, `-v`).
fn flag<'c>(cmd: &'c Command, word: &str) -> Option<&'c Arg> {
    if let Some(long) = word.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or(long);
        return cmd.get_arguments().find(|a| a.get_long() == Some(name));
    }
    let short = word.chars().nth(1)?;
    cmd.get_arguments().find(|a| a.get_short() == Some(short))
}

/// What a value of `arg` may be.
fn value_of(arg: &Arg) -> Wanted {
    let possible = arg.get_possible_values();
    if !possible.is_empty() {
        return Wanted::Fixed(
            possible
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| Candidate::new(v.get_name(), v.get_help().map(|h| h.to_string())))
                .collect(),
        );
    }
    let names = arg.get_value_names().unwrap_or_default();
    if names.iter().any(|n| n.as_str() == "USER") {
        Wanted::Users
    } else {
        Wanted::Nothing
    }
}

/// The visible flags of `cmd` that start with `prefix`.
fn flags(cmd: &Command, prefix: &str) -> Vec<Candidate> {
    let mut out = Vec::new();
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let help = arg.get_help().map(|h| h.to_string());
        if let Some(long) = arg.get_long() {
            let word = format!("--{long}");
            if word.starts_with(prefix) {
                out.push(Candidate::new(word, help.clone()));
            }
        }
        if let Some(short) = arg.get_short()
            && prefix.len() <= 2
        {
            let word = format!("-{short}");
            if word.starts_with(prefix) {
                out.push(Candidate::new(word, help));
            }
        }
    }
    out
}

/// The candidates `wanted` resolved with the user names at hand, filtered by
/// the word being completed.
pub fn resolve(
    wanted: Wanted,
    current: &str,
    users: impl FnOnce() -> Vec<String>,
) -> Vec<Candidate> {
    match wanted {
        Wanted::Fixed(candidates) => candidates
            .into_iter()
            .filter(|c| c.value.starts_with(current))
            .collect(),
        Wanted::Users => users()
            .into_iter()
            .filter(|name| name.starts_with(current))
            .map(|name| Candidate::new(name, None))
            .collect(),
        Wanted::Nothing => Vec::new(),
    }
}

/// One candidate a line, as the shell's script reads it: descriptions
/// after a tab where the shell shows them (fish, zsh), plain names for bash.
pub fn render(candidates: &[Candidate], shell: &str) -> String {
    let mut out = String::new();
    for c in candidates {
        out.push_str(&c.value);
        if shell != "bash"
            && let Some(help) = &c.help
        {
            out.push('\t');
            out.push_str(help.lines().next().unwrap_or_default());
        }
        out.push('\n');
    }
    out
}

/// The completion script for `shell`.
pub fn script(shell: &str) -> Option<&'static str> {
    match shell {
        "bash" => Some(include_str!("msg.bash")),
        "zsh" => Some(include_str!("_msg.zsh")),
        "fish" => Some(include_str!("msg.fish")),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
