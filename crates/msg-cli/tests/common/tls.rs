//! A msg-server speaking TLS with a certificate from `msg-server cert`,
//! for the trust tests and the wire capture.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Server, ServerOptions, bins};

/// `msg-server cert --name 127.0.0.1 --out DIR`; the fingerprint it printed.
pub fn make_cert(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new(&bins().server)
        .args(["cert", "--name", "127.0.0.1", "--out"])
        .arg(dir)
        .output()
        .expect("run msg-server cert");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint in {text}"))
        .to_owned()
}

/// A TLS server and its certificate's directory and fingerprint.
pub struct TlsServer {
    pub server: Server,
    pub certs: tempfile::TempDir,
    pub fingerprint: String,
}

impl TlsServer {
    pub fn start() -> Self {
        let certs = tempfile::tempdir().unwrap();
        let fingerprint = make_cert(certs.path());
        let path = |name: &str| certs.path().join(name).display().to_string();
        let server = Server::with(ServerOptions {
            extra_args: vec![
                "--tls-cert".into(),
                path("cert.pem"),
                "--tls-key".into(),
                path("key.pem"),
            ],
            ..Default::default()
        });
        Self {
            server,
            certs,
            fingerprint,
        }
    }

    /// `tls://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("tls://{}", self.server.addr)
    }

    pub fn cert_file(&self) -> PathBuf {
        self.certs.path().join("cert.pem")
    }
}
