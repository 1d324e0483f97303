//! `msg login` at a terminal: a wrong password is asked again, and an
//! unknown name on a server that lets users register asks before creating
//! the account.
#![cfg(unix)]

mod common;

use common::pty::Pty;
use common::*;

fn at_terminal(user: &User, args: &[&str]) -> Pty {
    let mut cmd = user.command(&bins().msg);
    cmd.args(args).env("TERM", "dumb");
    Pty::spawn(cmd)
}

#[test]
fn a_wrong_password_is_asked_again() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    let mut login = at_terminal(&hans, &["login", "hans"]);
    login.until("Password: ");
    login.type_in("nope\n");
    login.until("Invalid Password. Please try again");
    login.until("Password: ");
    login.type_in(&format!("{}\n", password("hans")));
    login.until("Welcome to the greatest messaging application ever!");
    assert_eq!(hans.status()["state"], "online");
}

#[test]
fn an_unknown_name_is_created_only_after_a_yes() {
    let server = Server::with(ServerOptions {
        allow_register: true,
        ..Default::default()
    });
    let rey = User::new("rey", &server);
    let mut no = at_terminal(&rey, &["login", "rey"]);
    no.until("has no account rey. Create it? [y/N] ");
    no.type_in("n\n");
    no.until("Not created");
    drop(no);

    let mut yes = at_terminal(&rey, &["login", "rey"]);
    yes.until("Create it? [y/N] ");
    yes.type_in("y\n");
    yes.until("This is a new user. Enter a password: ");
    yes.type_in("jakku\n");
    yes.until("Enter the password again: ");
    yes.type_in("jakku\n");
    yes.until("Welcome to the greatest messaging application ever!");
    assert_eq!(rey.status()["user"], "rey");
}
