//! The hidden `msg complete-words`: what fits where the cursor is, for the
//! completion scripts.

use clap::CommandFactory;

use super::paths;
use crate::cli::Cli;
use crate::client;
use crate::complete;

/// Prints the completion candidates for word `cword` of `words`. Never
/// fails: a completion that cannot be had is an empty one.
pub(super) async fn complete_words(shell: &str, cword: usize, words: &[String]) {
    let mut tree = Cli::command();
    tree.build();
    let current = words.get(cword).map_or("", String::as_str);
    let wanted = complete::wanted(&tree, words, cword);
    let users = match wanted {
        complete::Wanted::Users => match paths() {
            Ok(paths) => client::names(&paths).await,
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    };
    let candidates = complete::resolve(wanted, current, || users);
    print!("{}", complete::render(&candidates, shell));
}
