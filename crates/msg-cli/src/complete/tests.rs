//! What the completion engine offers where, against the real command tree.

use clap::CommandFactory;

use super::*;
use crate::cli::Cli;

fn offered(line: &str) -> Vec<String> {
    let mut tree = Cli::command();
    tree.build();
    // The last word is the one being completed (empty after a space).
    let mut words: Vec<String> = line.split(' ').map(str::to_owned).collect();
    if words.is_empty() {
        words.push(String::new());
    }
    let cword = words.len() - 1;
    let current = words[cword].clone();
    let users = || vec!["hans".to_owned(), "leia".to_owned(), "luke".to_owned()];
    resolve(wanted(&tree, &words, cword), &current, users)
        .into_iter()
        .map(|c| c.value)
        .collect()
}

#[test]
fn subcommands_first_and_no_flags_until_a_dash() {
    let top = offered("msg ");
    assert!(top.contains(&"send".to_owned()), "{top:?}");
    assert!(top.contains(&"private".to_owned()));
    assert!(!top.iter().any(|w| w.starts_with('-')), "{top:?}");
    assert!(!top.contains(&"complete-words".to_owned()), "hidden");
    assert_eq!(offered("msg se"), ["send"]);
    let flags = offered("msg -");
    assert!(flags.contains(&"--json".to_owned()), "{flags:?}");
    assert!(flags.contains(&"-v".to_owned()));
}

#[test]
fn user_arguments_offer_users() {
    assert_eq!(offered("msg send "), ["hans", "leia", "luke"]);
    assert_eq!(offered("msg send l"), ["leia", "luke"]);
    assert_eq!(offered("msg block "), ["hans", "leia", "luke"]);
    assert_eq!(offered("msg private start lu"), ["luke"]);
    assert_eq!(offered("msg login "), ["hans", "leia", "luke"]);
    assert_eq!(offered("msg --json send "), ["hans", "leia", "luke"]);
    assert_eq!(offered("msg -v send "), ["hans", "leia", "luke"]);
}

#[test]
fn text_and_free_values_offer_nothing_not_files() {
    assert!(offered("msg send luke ").is_empty());
    assert!(offered("msg send luke hello ").is_empty());
    assert!(
        offered("msg send luke -1 is ").is_empty(),
        "dashes in text are text"
    );
    assert!(offered("msg broadcast ").is_empty());
    assert!(offered("msg login hans --server ").is_empty());
    assert!(offered("msg who --since ").is_empty());
}

#[test]
fn flags_of_the_subcommand_once_a_dash_is_typed() {
    let flags = offered("msg login hans --");
    assert!(flags.contains(&"--server".to_owned()), "{flags:?}");
    assert!(flags.contains(&"--password-stdin".to_owned()));
    assert!(flags.contains(&"--json".to_owned()), "global flags too");
    assert_eq!(
        offered("msg login hans --server 10.0.0.1:4747 "),
        Vec::<String>::new()
    );
}

#[test]
fn shells_and_nested_subcommands() {
    assert_eq!(offered("msg completions "), ["bash", "zsh", "fish"]);
    let private = offered("msg private ");
    assert!(private.contains(&"accept".to_owned()), "{private:?}");
    assert_eq!(offered("msg daemon st"), ["start", "stop", "status"]);
}

#[test]
fn descriptions_go_after_a_tab_except_for_bash() {
    let candidates = [Candidate::new(
        "send",
        Some("Send a message to USER.".into()),
    )];
    assert_eq!(render(&candidates, "bash"), "send\n");
    assert_eq!(
        render(&candidates, "fish"),
        "send\tSend a message to USER.\n"
    );
}
