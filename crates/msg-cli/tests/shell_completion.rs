//! The shipped completion scripts in the real shells, against a running
//! msgd: USER arguments offer the users online and recent correspondents,
//! TEXT never offers file names, and without msgd the list is silently
//! empty. bash through its completion function (COMP_WORDS/COMP_CWORD), fish
//! through `complete -C`, zsh typed into in a pseudo-terminal. A shell that
//! is not installed is skipped with a message (CI installs all three).
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::time::Instant;

use common::pty::Pty;
use common::*;

fn completions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../completions")
}

fn have(shell: &str) -> bool {
    let found = Command::new(shell)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("SKIPPED: {shell} is not installed");
    }
    found
}

/// hans logged in; luke online; leia wrote to hans and left. A directory
/// with files, so that a file-name completion would show.
struct World {
    _server: Server,
    hans: User,
    _luke: User,
    cwd: tempfile::TempDir,
}

fn world() -> World {
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.login().ok();
    let leia = User::new("leia", &server);
    leia.login().ok();
    leia.msg(&["send", "hans", "hello"]).ok();
    leia.msg(&["logout"]).ok();
    let luke = User::new("luke", &server);
    luke.login().ok();
    let cwd = tempfile::tempdir().unwrap();
    for file in ["hello.txt", "lunch.md"] {
        std::fs::write(cwd.path().join(file), "").unwrap();
    }
    World {
        _server: server,
        hans,
        _luke: luke,
        cwd,
    }
}

/// A shell command in `user`'s environment, with our `msg` first on PATH.
fn shell(user: &User, cwd: &Path, program: &str) -> Command {
    let mut cmd = user.command(Path::new(program));
    let bin_dir = bins().msg.parent().unwrap().to_owned();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin_dir];
    dirs.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(dirs).unwrap())
        .current_dir(cwd);
    cmd
}

fn run(mut cmd: Command) -> Vec<String> {
    let out = assert_cmd::Command::from_std({
        cmd.stdin(Stdio::null());
        cmd
    })
    .timeout(DEADLINE)
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        // fish prints "name<TAB>description".
        .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}

fn bash_complete(world: &World, words: &[&str]) -> Vec<String> {
    let script = completions_dir().join("msg.bash");
    let array = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let body = format!(
        "source '{}'; COMP_WORDS=({array}); COMP_CWORD={}; _msg; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.len() - 1
    );
    let mut cmd = shell(&world.hans, world.cwd.path(), "bash");
    cmd.args(["--norc", "--noprofile", "-c", &body]);
    run(cmd)
}

#[test]
fn bash_offers_users_and_never_files() {
    if !have("bash") {
        return;
    }
    let world = world();
    assert_eq!(
        bash_complete(&world, &["msg", "send", ""]),
        ["leia", "luke"]
    );
    assert_eq!(bash_complete(&world, &["msg", "send", "lu"]), ["luke"]);
    assert_eq!(
        bash_complete(&world, &["msg", "block", ""]),
        ["leia", "luke"]
    );
    assert_eq!(
        bash_complete(&world, &["msg", "private", "start", ""]),
        ["leia", "luke"]
    );
    // TEXT: nothing, not the files in the directory.
    assert!(bash_complete(&world, &["msg", "send", "luke", "he"]).is_empty());
    assert!(bash_complete(&world, &["msg", "send", "luke", ""]).is_empty());
    // No flags until a dash.
    let top = bash_complete(&world, &["msg", ""]);
    assert!(top.contains(&"send".to_owned()) && !top.iter().any(|w| w.starts_with('-')));
    assert!(bash_complete(&world, &["msg", "--j"]).contains(&"--json".to_owned()));

    // msgd down: an empty list, quickly, and no error on the terminal.
    world.hans.msg(&["daemon", "stop"]).ok();
    let started = Instant::now();
    assert!(bash_complete(&world, &["msg", "send", ""]).is_empty());
    assert!(started.elapsed() < DEADLINE);
}

#[test]
fn fish_offers_users_and_never_files() {
    if !have("fish") {
        return;
    }
    let world = world();
    let complete = |line: &str| {
        let script = completions_dir().join("msg.fish");
        let body = format!("source '{}'; complete -C '{line}'", script.display());
        let mut cmd = shell(&world.hans, world.cwd.path(), "fish");
        cmd.args(["--no-config", "-c", &body]);
        run(cmd)
    };
    assert_eq!(complete("msg send "), ["leia", "luke"]);
    assert_eq!(complete("msg private start le"), ["leia"]);
    assert!(complete("msg send luke he").is_empty());
    let top = complete("msg ");
    assert!(top.contains(&"inbox".to_owned()) && !top.iter().any(|w| w.starts_with('-')));
}

#[test]
fn zsh_offers_users_and_never_files() {
    if !have("zsh") {
        return;
    }
    let world = world();
    let mut cmd = shell(&world.hans, world.cwd.path(), "zsh");
    cmd.args(["-f", "-i"]).env("TERM", "dumb");
    let mut zsh = Pty::spawn(cmd);
    zsh.type_in(&format!(
        "PS1='> '; unsetopt beep; fpath=('{}' $fpath); autoload -Uz compinit; compinit -u; echo READY-$((6*7))\n",
        completions_dir().display()
    ));
    zsh.until("READY-42");
    // Two users start with l: zsh lists both.
    zsh.type_in("msg send l\t");
    let listed = zsh.until("luke");
    assert!(listed.contains("leia"), "{listed:?}");
    // One fits: it is filled in (the line is then echoed, not run).
    zsh.type_in("\x15msg block lu\t\x01echo LINE:\n");
    zsh.until("LINE:msg block luke");
    // TEXT: a TAB offers nothing, not the file hello.txt.
    zsh.type_in("msg send luke he\t\x01echo TEXT:\n");
    let shown = zsh.until("TEXT:msg send luke he\r\n");
    assert!(!shown.contains("hello.txt"), "{shown:?}");
}
