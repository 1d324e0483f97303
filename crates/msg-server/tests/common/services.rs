//! PostgreSQL and NATS for the tests of cluster mode.
//!
//! `.ci/run` starts one of each (`.ci/services`) and names them in
//! `MSG_TEST_POSTGRES` and `MSG_TEST_NATS`; without those, a test starts
//! its own pair through the same script (stopped when the test ends). Each
//! test gets a database of its own, so tests running at once never share
//! a cluster (the nodes' NATS subjects carry the database's service id).
//! Only when the programs are not installed does a test skip, loudly, and
//! never on CI.
//!
//! Shared by the tests of msg-server and msg-cli (the latter include this
//! file by its path).

use std::path::PathBuf;
use std::process::Command;

/// PostgreSQL and NATS for one test.
pub struct Services {
    /// An administrator's address (the `postgres` database).
    postgres: String,
    pub nats: String,
    /// The pair this test started, stopped on drop.
    _own: Option<OwnServices>,
}

struct OwnServices {
    dir: tempfile::TempDir,
}

impl Drop for OwnServices {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// `.ci/services`, which starts and stops the pair.
fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/services")
}

impl Services {
    /// The engines, or `None` (after saying so on stderr) when PostgreSQL
    /// or NATS is not installed here.
    pub fn get(test: &str) -> Option<Self> {
        if let (Ok(postgres), Ok(nats)) = (
            std::env::var("MSG_TEST_POSTGRES"),
            std::env::var("MSG_TEST_NATS"),
        ) {
            return Some(Self {
                postgres,
                nats,
                _own: None,
            });
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("run .ci/services");
        if !output.status.success() {
            let why = String::from_utf8_lossy(&output.stderr);
            // CI installs both: a missing engine there is a failure.
            assert!(
                std::env::var_os("CI").is_none(),
                "cluster test {test}: PostgreSQL/NATS unavailable on CI: {why}"
            );
            eprintln!(
                "\n!!! SKIPPED cluster test {test}: {why}!!! install postgresql and nats-server \
                 (Debian packages) to run it\n"
            );
            return None;
        }
        let own = OwnServices { dir };
        let exports = String::from_utf8_lossy(&output.stdout).into_owned();
        let value = |name: &str| {
            exports
                .split_whitespace()
                .find_map(|word| word.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} not in {exports:?}"))
                .to_owned()
        };
        Some(Self {
            postgres: value("MSG_TEST_POSTGRES"),
            nats: value("MSG_TEST_NATS"),
            _own: Some(own),
        })
    }

    /// A new, empty database; returns its address.
    pub async fn new_database(&self) -> String {
        let name = format!("msg_test_{:016x}", msg_proto::MsgId::random_prefix());
        let (client, connection) = tokio_postgres::connect(&self.postgres, tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        drop(client);
        let _ = driver.await;
        let (base, _) = self
            .postgres
            .rsplit_once('/')
            .expect("a database in the URL");
        format!("{base}/{name}")
    }
}
