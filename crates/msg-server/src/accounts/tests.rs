use super::file::parse_line;
use super::*;

#[test]
fn parses_classic_lines_and_skips_the_rest() {
    assert_eq!(
        parse_line("hans falcon*solo"),
        Some(("hans", "falcon*solo"))
    );
    assert_eq!(parse_line("  yoda\twise  "), Some(("yoda", "wise")));
    assert_eq!(
        parse_line("r2d2 with spaces"),
        Some(("r2d2", "with spaces"))
    );
    assert_eq!(parse_line("# comment"), None);
    assert_eq!(parse_line(""), None);
    assert_eq!(parse_line("lonely"), None);
    assert_eq!(parse_line("bad/name pw"), None);
}

#[test]
fn plain_and_hashed_passwords_verify() {
    assert!(Credential::parse("secret").verify("secret"));
    assert!(!Credential::parse("secret").verify("secreT"));
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(b"pw", &salt)
        .unwrap()
        .to_string();
    let credential = Credential::parse(&hash);
    assert!(matches!(credential, Credential::Hash(_)));
    assert!(credential.verify("pw"));
    assert!(!credential.verify("pW"));
    assert!(!Credential::parse("$argon2id$garbage").verify("x"));
}

#[test]
fn set_password_keeps_comments_and_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.txt");
    fs::write(&path, "# accounts\nhans falcon\n\nyoda wise\n").unwrap();
    assert_eq!(
        set_password(&path, "hans", "new pw").unwrap(),
        PasswordChange::Changed
    );
    assert_eq!(
        set_password(&path, "rey", "jakku").unwrap(),
        PasswordChange::Added
    );
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# accounts");
    assert!(lines[1].starts_with("hans $argon2id$"));
    assert_eq!(lines[2], "");
    assert_eq!(lines[3], "yoda wise");
    assert!(lines[4].starts_with("rey $argon2id$"));
    let (accounts, report) = Accounts::load(&path).unwrap();
    assert_eq!(
        report,
        LoadReport {
            accounts: 3,
            plain: 1,
            skipped_lines: 0
        }
    );
    assert_eq!(accounts.verify("hans", "new pw").unwrap(), Some(true));
    assert_eq!(accounts.verify("hans", "falcon").unwrap(), Some(false));
    assert_eq!(accounts.verify("nobody", "x").unwrap(), None);
    let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temp file is left behind");
}

#[test]
fn names_are_unique_ignoring_case() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.txt");
    fs::write(&path, "luke jedi\nLuke sith\n").unwrap();
    let (accounts, report) = Accounts::load(&path).unwrap();
    assert_eq!(report.accounts, 1);
    assert_eq!(report.skipped_lines, 1, "the case twin is ignored");
    assert_eq!(accounts.verify("luke", "jedi").unwrap(), Some(true));
    assert!(!accounts.exists("Luke"));
    assert!(matches!(
        accounts.register("LUKE", "x"),
        Err(AccountsError::NameTaken(name)) if name == "luke"
    ));
    assert!(matches!(
        set_password(&path, "Luke", "x"),
        Err(AccountsError::NameTaken(name)) if name == "luke"
    ));
    assert_eq!(
        set_password(&path, "luke", "new").unwrap(),
        PasswordChange::Changed
    );
}

#[cfg(unix)]
#[test]
fn rewrites_are_private_whatever_the_old_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.txt");
    fs::write(&path, "hans falcon\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    set_password(&path, "hans", "new").unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn set_password_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.txt");
    assert!(matches!(
        set_password(&path, "bad name", "pw"),
        Err(AccountsError::InvalidUsername)
    ));
    assert!(matches!(
        set_password(&path, "ok", "two\nlines"),
        Err(AccountsError::InvalidPassword)
    ));
    assert!(!path.exists());
}

#[test]
fn register_refuses_existing_names_and_reload_sees_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.txt");
    fs::write(&path, "hans falcon\n").unwrap();
    let (accounts, _) = Accounts::load(&path).unwrap();
    assert!(matches!(
        accounts.register("hans", "x"),
        Err(AccountsError::UserExists)
    ));
    accounts.register("rey", "jakku").unwrap();
    assert_eq!(accounts.verify("rey", "jakku").unwrap(), Some(true));
    assert_eq!(accounts.reload_if_changed().unwrap(), None);
    fs::write(&path, "hans falcon\nrey jakku\nfinn fn2187 \n").unwrap();
    assert!(accounts.reload_if_changed().unwrap().is_some());
    assert!(accounts.exists("finn"));
}
