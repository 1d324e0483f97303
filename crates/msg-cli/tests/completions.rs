//! The shipped completion scripts must match what `msg completions` prints.
//! `UPDATE_COMPLETIONS=1 cargo test -p msg-cli --test completions` rewrites them.

use std::path::PathBuf;

#[test]
fn completion_scripts_are_up_to_date() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../completions");
    let update = std::env::var_os("UPDATE_COMPLETIONS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (shell, file) in [("bash", "msg.bash"), ("zsh", "_msg"), ("fish", "msg.fish")] {
        let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_msg"))
            .args(["completions", shell])
            .timeout(std::time::Duration::from_secs(30))
            .output()
            .unwrap();
        assert!(out.status.success());
        let path = dir.join(file);
        if update {
            std::fs::write(&path, &out.stdout).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&out.stdout[..]) {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "completions/{stale:?} out of date: run `UPDATE_COMPLETIONS=1 cargo test -p msg-cli --test completions`"
    );
}
