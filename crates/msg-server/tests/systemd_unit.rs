//! The shipped units pass `systemd-analyze verify` and the server's keeps
//! its exposure score at or below 2.0 (see `.ci/verify-units`).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::ChildGuard;

/// systemd-analyze is slow on a loaded machine; still, never wait forever.
const VERIFY_DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn the_server_unit_verifies_and_is_hardened() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .is_ok_and(|child| {
            ChildGuard::adopt(child)
                .wait_output(common::DEADLINE)
                .status
                .success()
        });
    if !available {
        // CI installs systemd (see .ci/run); on a developer machine without
        // it this check cannot run, and says so.
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing on CI: install the `systemd` package"
        );
        eprintln!("skipped: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut verify = Command::new("bash");
    verify
        .arg(repo.join(".ci/verify-units"))
        .arg(common::server_bin());
    // `cargo test --workspace` builds msgd beside msg-server: check the user
    // unit against it too.
    let msgd = Path::new(common::server_bin()).with_file_name("msgd");
    if msgd.exists() {
        verify.arg(&msgd);
    }
    let output = ChildGuard::spawn(verify.stdout(Stdio::piped()).stderr(Stdio::piped()))
        .wait_output(VERIFY_DEADLINE);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("OK: exposure"), "{stdout}");
}
