//! The session commands: login and register, logout, status, and msgd
//! itself (`msg daemon start|stop|status`).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use msg_local::config::{Config, DEFAULT_SERVER};
use msg_local::paths::Paths;
use msg_local::server_addr::ServerAddr;
use msg_proto::control::{Reply, Request, Trust, codes};
use msg_proto::{ErrorCode, Fingerprint, Refusal, Secret, validate};
use serde_json::json;

use super::{paths, unexpected};
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
    server.parse::<ServerAddr>().map_err(|e| usage(&e))?;
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
    if let Reply::Status(status) = client.call(Request::Status).await?
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
    let password = if register {
        new_password(args.password_stdin)?
    } else {
        read_password("Password: ", args.password_stdin)?
    };
    let request = |password: Secret, register: bool, trust: &Trust| Request::Login {
        user: args.user.clone(),
        password,
        server: server.clone(),
        register,
        trust: trust.clone(),
    };
    let mut reply = client
        .call(request(password.clone(), register, &trust))
        .await?;
    // A certificate no one vouches for: asked at a terminal, then msgd
    // pins it and tries again; without one, msgd's error says how to pin.
    let prompt = !args.password_stdin && std::io::stdin().is_terminal();
    if let (
        true,
        Reply::Error {
            code,
            fingerprint: Some(fingerprint),
            ..
        },
    ) = (prompt, &reply)
        && code == codes::UNTRUSTED_CERTIFICATE
    {
        if !accept_certificate(&server, fingerprint)? {
            return Err(Refusal::new(
                codes::UNTRUSTED_CERTIFICATE,
                "Not logged in: the server's certificate was not accepted",
            ));
        }
        trust.fingerprint = Some(fingerprint.clone());
        reply = client.call(request(password, register, &trust)).await?;
    }
    // Logging in with an unknown name offers to create the account.
    let offer = !register && !args.password_stdin && std::io::stdin().is_terminal();
    if let (true, Reply::Error { code, .. }) = (offer, &reply)
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
                    "waiting": s.waiting, "retry_in": s.retry_in,
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
