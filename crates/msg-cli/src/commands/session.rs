//! The session commands: login and register, logout, status, and msgd
//! itself (`msg daemon start|stop|status`).

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use msg_local::config::{Config, DEFAULT_SERVER};
use msg_local::paths::Paths;
use msg_local::server_addr;
use msg_proto::control::{LinkState, Reply, Request, Status, Trust, codes};
use msg_proto::{ErrorCode, Fingerprint, Refusal, Secret, validate};
use serde_json::json;

use super::{login_flow, paths, unexpected};
use crate::cli::{DaemonCommand, LoginArgs};
use crate::client::{self, Client};
use crate::output::Output;

const NEW_USER_PROMPT: &str = "This is a new user. Enter a password: ";

/// The server: `--server`/`MSG_SERVER` (clap), else config.toml, else the
/// default; with the trust settings (flags over config.toml). The config
/// is read either way: msgd will read it too, and a typo is better
/// reported here, with its file and line, than by a msgd that will not
/// start. Checked here too, so a bad address or fingerprint is a usage
/// error before any password is asked for.
fn server_address(args: &LoginArgs, paths: &Paths) -> Result<(String, Trust), Refusal> {
    let usage = |e: &dyn std::fmt::Display| Refusal::new(codes::USAGE, e.to_string());
    let config = Config::load(&paths.config_file).map_err(|e| usage(&e))?;
    let server = match &args.server {
        Some(server) => server.clone(),
        None => config
            .server
            .clone()
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
    };
    server_addr::parse_list(&server).map_err(|e| usage(&e))?;
    let fingerprint = match &args.fingerprint {
        Some(text) => Some(text.parse::<Fingerprint>().map_err(|e| usage(&e))?),
        None => None,
    };
    // msgd runs elsewhere (its own working directory): an absolute path.
    let ca = match args.ca.as_ref().or(config.ca.as_ref()) {
        Some(path) => Some(std::path::absolute(path).map_err(|e| usage(&e))?),
        None => None,
    };
    let trust = Trust {
        ca: ca.map(|path| path.display().to_string()),
        fingerprint: fingerprint.map(|f| f.to_string()),
        insecure: args.insecure || config.insecure,
    };
    Ok((server, trust))
}

/// Shows a certificate no one vouches for and asks whether to pin it.
fn accept_certificate(server: &str, fingerprint: &str) -> Result<bool, Refusal> {
    eprintln!("The TLS certificate of {server} is not trusted yet.");
    eprintln!("Its SHA-256 fingerprint is {fingerprint}");
    eprintln!("Compare it with the one the server's administrator gave you.");
    eprint!("Trust it and remember it for this server? (yes/no): ");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Refusal::new(codes::USAGE, format!("cannot read the answer: {e}")))?;
    Ok(answer.trim().eq_ignore_ascii_case("yes"))
}

fn read_password(prompt: &str, from_stdin: bool) -> Result<Secret, Refusal> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            Refusal::new(
                codes::USAGE,
                format!("cannot read the password from stdin: {e}"),
            )
        })?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        rpassword::prompt_password(prompt).map_err(|e| {
            Refusal::new(
                "usage",
                format!("cannot read the password from the terminal ({e}); use --password-stdin"),
            )
        })?
    };
    if !validate::is_valid_password(&password) {
        return Err(Refusal::new(
            ErrorCode::InvalidPasswordFormat.as_str(),
            "Error. The password must not be empty",
        ));
    }
    Ok(Secret(password))
}

/// Asks twice for a new account's password.
fn new_password(from_stdin: bool) -> Result<Secret, Refusal> {
    let password = read_password(NEW_USER_PROMPT, from_stdin)?;
    if !from_stdin {
        let again = read_password("Enter the password again: ", false)?;
        if again != password {
            return Err(Refusal::new(
                "password_mismatch",
                "The passwords do not match",
            ));
        }
    }
    Ok(password)
}

pub(super) async fn login(
    out: Output,
    args: LoginArgs,
    register: bool,
) -> Result<ExitCode, Refusal> {
    let paths = paths()?;
    let (server, mut trust) = server_address(&args, &paths)?;
    let (mut client, _) = Client::connect_or_start(&paths).await?;
    // Answer "already logged in" before asking for a password.
    if let Some(status) = settled_status(&mut client).await?
        && let Some(current) = status.user
    {
        if current == args.user {
            // Logged in, but maybe not connected: say what msgd waits for.
            let text = match (&status.waiting, status.retry_in) {
                (Some(why), Some(secs)) => format!(
                    "Already logged in as {current}; msgd is waiting to log in again ({why}, next try in {secs} s)"
                ),
                (Some(why), None) => {
                    format!(
                        "Already logged in as {current}; msgd is waiting to log in again ({why})"
                    )
                }
                _ => format!("Already logged in as {current}"),
            };
            out.done(
                Some(&text),
                json!({"user": current, "waiting": status.waiting}),
            );
            return Ok(ExitCode::SUCCESS);
        }
        return Err(Refusal::new(
            codes::LOGGED_IN_AS_OTHER,
            format!("Already logged in as {current}. Run `msg logout` first"),
        ));
    }
    let interactive = login_flow::interactive(args.password_stdin);
    // The server is asked first, through the same connection a login makes:
    // a certificate no one vouches for is asked about here, at a terminal
    // (msgd then pins it), before any password; without a terminal msgd's
    // error says how to pin it.
    let answer = match login_flow::ask_server(&mut client, &args.user, &server, &trust).await {
        Err(Refusal {
            code,
            fingerprint: Some(fingerprint),
            ..
        }) if interactive && code == codes::UNTRUSTED_CERTIFICATE => {
            if !accept_certificate(&server, &fingerprint)? {
                return Err(Refusal::new(
                    codes::UNTRUSTED_CERTIFICATE,
                    "Not logged in: the server's certificate was not accepted",
                ));
            }
            trust.fingerprint = Some(fingerprint);
            login_flow::ask_server(&mut client, &args.user, &server, &trust).await?
        }
        other => other?,
    };
    let register = match answer {
        Some(answer) => {
            login_flow::plan(&args.user, &server, register, answer, interactive)?
                == login_flow::Plan::Register
        }
        // An older server: just try.
        None => register,
    };
    let request = |password: Secret, register: bool, trust: &Trust| Request::Login {
        user: args.user.clone(),
        password,
        server: server.clone(),
        register,
        trust: trust.clone(),
    };
    let mut tries = 1;
    let mut reply = loop {
        let password = if register {
            new_password(args.password_stdin)?
        } else {
            read_password("Password: ", args.password_stdin)?
        };
        let reply = client.call(request(password, register, &trust)).await?;
        match &reply {
            Reply::Error { code, message, .. }
                if interactive
                    && tries < login_flow::PASSWORD_TRIES
                    && login_flow::ask_again(code) =>
            {
                eprintln!("{}", crate::terminal::safe(message));
                tries += 1;
            }
            _ => break reply,
        }
    };
    // A server that cannot say whether the account exists: an unknown name
    // still offers to create it.
    if let (true, false, Reply::Error { code, .. }) = (interactive, register, &reply)
        && code == ErrorCode::InvalidUser.as_str()
    {
        let password = new_password(false)?;
        reply = client.call(request(password, true, &trust)).await?;
        if let Reply::Error { code, .. } = &reply
            && code == ErrorCode::RegistrationDisabled.as_str()
        {
            return Err(Refusal::new(
                ErrorCode::InvalidUser.as_str(),
                "Error. Invalid user",
            ));
        }
    }
    match reply {
        Reply::Done { message } => {
            out.done(message.as_deref(), json!({"user": args.user}));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(other)),
    }
}

/// `msg logout`: msgd ends the session and forgets this device's token,
/// here and on the server. With no msgd running, the saved tokens are
/// deleted here, so that the next start does not log in by itself.
pub(super) async fn logout(out: Output) -> Result<ExitCode, Refusal> {
    let paths = paths()?;
    if Client::connect(&paths).await?.is_none() && forget_saved_tokens(&paths) {
        out.done(
            Some("Logged out (msgd was not running: this device's saved login is deleted)"),
            json!({}),
        );
        return Ok(ExitCode::SUCCESS);
    }
    super::simple(out, Request::Logout).await.inspect(|_| {
        if !out.json {
            out.line("Logged out");
        }
    })
}

/// Deletes msgd's saved device tokens; true if there were any.
fn forget_saved_tokens(paths: &Paths) -> bool {
    let Ok(entries) = std::fs::read_dir(paths.tokens_dir()) else {
        return false;
    };
    let mut any = false;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            any |= std::fs::remove_file(entry.path()).is_ok();
        }
    }
    any
}

/// msgd's status once a login it is making by itself (with its device
/// token, just started, or again after a drop) has an outcome: logged in,
/// refused (no user), or waiting longer than a moment for its next try.
/// Bounded: a server that stays away is reported, not waited for.
async fn settled_status(client: &mut Client) -> Result<Option<Box<Status>>, Refusal> {
    const SETTLE_WITHIN: Duration = Duration::from_secs(10);
    const POLL: Duration = Duration::from_millis(50);
    let deadline = tokio::time::Instant::now() + SETTLE_WITHIN;
    loop {
        let Reply::Status(status) = client.call(Request::Status).await? else {
            return Ok(None);
        };
        // The next try is soon: an old session the server has not yet
        // seen end, a first connection under way.
        let attempting = status.user.is_some()
            && status.state == LinkState::Reconnecting
            && status.retry_in.is_none_or(|secs| secs <= 3);
        if !attempting || tokio::time::Instant::now() >= deadline {
            return Ok(Some(status));
        }
        tokio::time::sleep(POLL).await;
    }
}

pub(super) async fn status(out: Output) -> Result<ExitCode, Refusal> {
    let Some(mut client) = Client::connect(&paths()?).await? else {
        if out.json {
            out.json(&json!({"running": false}));
        } else {
            out.line("msgd is not running — run `msg login USER`");
        }
        return Ok(ExitCode::from(crate::output::exit::UNREACHABLE));
    };
    match client.call(Request::Status).await? {
        Reply::Status(s) => {
            if out.json {
                out.json(&json!({
                    "running": true, "pid": s.pid, "server": s.server, "user": s.user,
                    "state": s.state, "unread": s.unread,
                    "watchers": s.watchers, "private": s.private,
                    "waiting": s.waiting, "retry_in": s.retry_in, "ended": s.ended,
                }));
            } else {
                out.line(&format!("msgd: running (pid {})", s.pid));
                out.line(&format!("server: {}", s.server.as_deref().unwrap_or("-")));
                out.line(&format!("user: {}", s.user.as_deref().unwrap_or("-")));
                let connection = match (&s.waiting, s.retry_in) {
                    (Some(why), Some(secs)) => {
                        format!("waiting to log in again: {why}, next try in {secs} s")
                    }
                    (Some(why), None) => format!("waiting to log in again: {why}"),
                    _ => s.state.as_str().to_owned(),
                };
                out.line(&format!("connection: {connection}"));
                if let Some(ended) = &s.ended {
                    out.line(&format!("last session: {ended}"));
                }
                out.line(&format!("unread: {}", s.unread));
                let private = if s.private.is_empty() {
                    "-".to_owned()
                } else {
                    s.private.join(", ")
                };
                out.line(&format!("private sessions: {private}"));
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(other)),
    }
}

pub(super) async fn daemon(out: Output, command: DaemonCommand) -> Result<ExitCode, Refusal> {
    let paths = paths()?;
    match command {
        DaemonCommand::Start => {
            let (_, started) = Client::connect_or_start(&paths).await?;
            let message = if started {
                "msgd started"
            } else {
                "msgd is already running"
            };
            out.done(Some(message), json!({"started": started}));
            Ok(ExitCode::SUCCESS)
        }
        DaemonCommand::Stop => {
            let Some(mut client) = Client::connect(&paths).await? else {
                out.done(Some("msgd is not running"), json!({"stopped": false}));
                return Ok(ExitCode::SUCCESS);
            };
            match client.call(Request::Shutdown).await? {
                Reply::Done { message } => {
                    client::wait_until_stopped(&paths).await?;
                    out.done(message.as_deref(), json!({"stopped": true}));
                    Ok(ExitCode::SUCCESS)
                }
                other => Err(unexpected(other)),
            }
        }
        DaemonCommand::Status => status(out).await,
    }
}
