//! TLS on the listening port: the certificate and key (PEM) are loaded at
//! start and again on SIGHUP, where a file that does not load keeps the
//! previous pair; the handshake of every connection is bounded by a
//! deadline so that a half-open handshake cannot hold a task forever.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use msg_proto::Fingerprint;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate {}: {source}", path.display())]
    Cert {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate in {}", path.display())]
    NoCert { path: PathBuf },
    #[error("cannot read the private key {}: {source}", path.display())]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the certificate and key cannot be used: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the certificate chain and its private key are read from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The server's TLS side: the acceptor in use, replaced on reload.
pub struct Tls {
    files: TlsFiles,
    acceptor: RwLock<TlsAcceptor>,
}

impl Tls {
    /// Loads the pair; the fingerprint of the (leaf) certificate with it.
    pub fn load(files: TlsFiles) -> Result<(Self, Fingerprint), TlsError> {
        let (config, fingerprint) = load_config(&files)?;
        let tls = Self {
            files,
            acceptor: RwLock::new(TlsAcceptor::from(config)),
        };
        Ok((tls, fingerprint))
    }

    /// Reads the files again; on error the previous pair stays in use.
    pub fn reload(&self) -> Result<Fingerprint, TlsError> {
        let (config, fingerprint) = load_config(&self.files)?;
        *self.acceptor.write().unwrap_or_else(|e| e.into_inner()) = TlsAcceptor::from(config);
        Ok(fingerprint)
    }

    /// The handshake, within `deadline`; `None` when it failed or took too
    /// long (the stream is dropped, which closes it).
    pub async fn accept(
        &self,
        stream: TcpStream,
        deadline: Duration,
    ) -> Option<Box<TlsStream<TcpStream>>> {
        let acceptor = self
            .acceptor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(Box::new(stream)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("TLS handshake not done in time; closing");
                None
            }
        }
    }
}

fn load_config(files: &TlsFiles) -> Result<(Arc<ServerConfig>, Fingerprint), TlsError> {
    let certs = read_certs(&files.cert)?;
    let fingerprint = Fingerprint::of_der(&certs[0]);
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key {
        path: files.key.clone(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // Clients keep one long connection: session tickets would only cost
    // a write and memory per connection.
    config.send_tls13_tickets = 0;
    Ok((Arc::new(config), fingerprint))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_file_on_reload_keeps_the_old_pair() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::cert::write(&["localhost".into()], dir.path()).unwrap();
        let (tls, first) = Tls::load(files.files.clone()).unwrap();
        assert_eq!(first, files.fingerprint);
        std::fs::write(&files.files.cert, "not a certificate").unwrap();
        let error = tls.reload().unwrap_err().to_string();
        assert!(error.contains("cert.pem"), "{error}");
        let again = crate::cert::write(&["localhost".into()], dir.path()).unwrap();
        assert_eq!(tls.reload().unwrap(), again.fingerprint);
        assert_ne!(again.fingerprint, first);
    }
}
