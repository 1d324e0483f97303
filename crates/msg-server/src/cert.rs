//! `msg-server cert`: a self-signed certificate and its key for a
//! self-hosted server, so that TLS takes one command. Clients trust it by
//! its fingerprint (or by the certificate file given as their CA).

use std::io::Write;
use std::path::{Path, PathBuf};

use msg_proto::Fingerprint;

use crate::tls::TlsFiles;

/// File names inside the output directory (the systemd unit's credential
/// names too).
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What was written.
pub struct Written {
    pub files: TlsFiles,
    pub fingerprint: Fingerprint,
}

/// Writes `cert.pem` and `key.pem` (0600) into `dir`, valid for `names`
/// (host names or IP addresses).
pub fn write(names: &[String], dir: &Path) -> Result<Written, CertError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    let mut subject = rcgen::DistinguishedName::new();
    if let Some(first) = names.first() {
        subject.push(rcgen::DnType::CommonName, first.clone());
    }
    params.distinguished_name = subject;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let files = TlsFiles {
        cert: dir.join(CERT_FILE),
        key: dir.join(KEY_FILE),
    };
    // The key first, so a certificate never sits beside a missing key.
    write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&files.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(Written {
        files,
        fingerprint: Fingerprint::of_der(cert.der()),
    })
}

/// Writes a new file beside the target and renames it into place, created
/// with its final mode (a key is never readable by others, not even briefly).
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let failed = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let temp = path.with_extension("pem.tmp");
    // A leftover from a crash could have any mode: start afresh.
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&temp).map_err(failed)?;
    file.write_all(contents).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&temp, path).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_private_key_and_a_certificate_that_load() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(&["chat.example".into(), "127.0.0.1".into()], dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&written.files.key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (_, fingerprint) = crate::tls::Tls::load(written.files).unwrap();
        assert_eq!(fingerprint, written.fingerprint);
    }
}
