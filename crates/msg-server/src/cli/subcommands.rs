//! The subcommands beside serving: `msg-server cert`, `passwd` and
//! `revoke`, each a short job that prints what it did and exits.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::{CertArgs, PasswdArgs, RevokeArgs, state_dir_or_default, usage_error};
use crate::accounts::{self, PasswordChange};
use crate::admin::{self, Op};

pub fn cert(args: &CertArgs) -> anyhow::Result<ExitCode> {
    let written = crate::cert::write(&args.names, &args.out)?;
    println!("Wrote {}", written.files.cert.display());
    println!("Wrote {} (keep it private)", written.files.key.display());
    println!("SHA-256 fingerprint: {}", written.fingerprint);
    Ok(ExitCode::SUCCESS)
}

pub fn passwd(args: &PasswdArgs) -> anyhow::Result<ExitCode> {
    if !msg_proto::validate::is_valid_username(&args.user) {
        return usage_error(format_args!(
            "invalid username ({})",
            msg_proto::validate::USERNAME_RULE
        ));
    }
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        let first = rpassword::prompt_password("New password: ")
            .context("cannot read the password from the terminal (try --password-stdin)")?;
        let second = rpassword::prompt_password("Retype new password: ")
            .context("cannot read the password from the terminal")?;
        if first != second {
            anyhow::bail!("the passwords do not match; nothing changed");
        }
        first
    };
    if let Some(store) = &args.store {
        return passwd_in_database(store, args.cluster.as_deref(), &args.user, &password);
    }
    match accounts::set_password(&args.credentials, &args.user, &password) {
        Ok(PasswordChange::Added) => println!("Added {}", args.user),
        Ok(PasswordChange::Changed) => println!("Changed the password of {}", args.user),
        Err(accounts::AccountsError::InvalidPassword) => {
            return usage_error("invalid password (must be non-empty, without line breaks)");
        }
        Err(e) => return Err(e.into()),
    }
    // A new password signs every device out: a stolen one must not stay in.
    // The password is changed either way; a server that never ran (no
    // state yet) has no tokens to revoke.
    let state_dir = match state_dir_or_default(args.state_dir.as_deref(), args.port) {
        Ok(dir) if dir.join("msg.db").is_file() || admin::socket_path(&dir).exists() => dir,
        Ok(_) => return Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("msg-server: no device tokens revoked: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    revoke_and_report(Some(&state_dir), args.port, Op::Passwd, &args.user, true)
}

/// `passwd --store`: the cluster's accounts table; like a single server's
/// `passwd`, it signs every device of the user out.
fn passwd_in_database(
    store: &str,
    nats: Option<&str>,
    user: &str,
    password: &str,
) -> anyhow::Result<ExitCode> {
    let runtime = admin_runtime()?;
    let changed = runtime.block_on(async {
        let pool = crate::cluster::open_store(store).await?;
        let changed = accounts::set_password_in_database(&pool, user, password).await;
        if changed.is_ok() {
            revoke_in_database(&pool, nats, user, true).await?;
        }
        anyhow::Ok(changed)
    })?;
    match changed {
        Ok(PasswordChange::Added) => println!("Added {user}"),
        Ok(PasswordChange::Changed) => println!("Changed the password of {user}"),
        Err(accounts::AccountsError::InvalidPassword) => {
            return usage_error("invalid password (must be non-empty, without line breaks)");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

fn admin_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Revokes `user`'s device tokens in a cluster's database and, given the
/// cluster's NATS, has the node holding the user's session end it.
async fn revoke_in_database(
    pool: &deadpool_postgres::Pool,
    nats: Option<&str>,
    user: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let revoked = crate::cluster::accounts::revoke_devices(pool, user).await?;
    let session = match nats {
        Some(nats) => {
            crate::cluster::events::tell_revoked(pool, nats, user).await?;
            "; the nodes were told to end the session"
        }
        None => " (without --cluster, an open session lasts until it ends)",
    };
    if !quiet || revoked > 0 {
        println!("Revoked {revoked} device token(s) of {user}{session}");
    }
    Ok(())
}

/// `revoke --store`: in a cluster's database.
fn revoke_cluster(args: &RevokeArgs, store: &str) -> anyhow::Result<ExitCode> {
    admin_runtime()?.block_on(async {
        let pool = crate::cluster::open_store(store).await?;
        if args.list {
            let devices = crate::cluster::accounts::devices(&pool, &args.user).await?;
            if devices.is_empty() {
                println!("{} has no device tokens", args.user);
            }
            for (label, _, last_used) in devices {
                let at = std::time::UNIX_EPOCH + Duration::from_millis(last_used.max(0) as u64);
                println!(
                    "{label}\tlast used {}",
                    humantime::format_rfc3339_seconds(at)
                );
            }
        } else {
            revoke_in_database(&pool, args.cluster.as_deref(), &args.user, false).await?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn revoke(args: &RevokeArgs) -> anyhow::Result<ExitCode> {
    if !msg_proto::validate::is_valid_username(&args.user) {
        return usage_error(format_args!(
            "invalid username ({})",
            msg_proto::validate::USERNAME_RULE
        ));
    }
    if let Some(store) = &args.store {
        return revoke_cluster(args, store);
    }
    let op = if args.list { Op::List } else { Op::Revoke };
    revoke_and_report(args.state_dir.as_deref(), args.port, op, &args.user, false)
}

/// Asks the server (or its database) and says what was done; `quiet`: not
/// when nothing was (after `passwd`, whose output stays as it was).
fn revoke_and_report(
    state_dir: Option<&Path>,
    port: u16,
    op: Op,
    user: &str,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let state_dir = match state_dir_or_default(state_dir, port) {
        Ok(dir) => dir,
        Err(e) => return usage_error(e),
    };
    let reply = admin::client::request(&state_dir, op, user)?;
    if reply["ok"] != true {
        anyhow::bail!(
            "{}",
            reply["error"].as_str().unwrap_or("the server refused")
        );
    }
    if let Some(devices) = reply["devices"].as_array() {
        if devices.is_empty() {
            println!("{user} has no device tokens");
        }
        for device in devices {
            let at = device["last_used"].as_u64().unwrap_or(0);
            let at = std::time::UNIX_EPOCH + Duration::from_millis(at);
            println!(
                "{}\tlast used {}",
                device["label"].as_str().unwrap_or("?"),
                humantime::format_rfc3339_seconds(at)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let revoked = reply["revoked"].as_u64().unwrap_or(0);
    if quiet && revoked == 0 && reply["ended"] != true {
        return Ok(ExitCode::SUCCESS);
    }
    let session = match (reply["live"] == true, reply["ended"] == true) {
        (true, true) => "; the session is ended",
        (true, false) => "; no session was open",
        (false, _) => " (no server was running)",
    };
    println!("Revoked {revoked} device token(s) of {user}{session}");
    Ok(ExitCode::SUCCESS)
}
