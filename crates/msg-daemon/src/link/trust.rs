//! Whether to trust the server's TLS certificate, in this order: the
//! system's root certificates and the user's CA file (webpki, host name
//! included); else the fingerprint pinned for the server (its end-entity
//! certificate's SHA-256; the handshake signature is still checked with
//! the provider's algorithms). What the verifier saw is kept, so that a
//! refusal can show the fingerprint and say what to do.

use std::path::Path;
use std::sync::{Arc, Mutex};

use msg_proto::Fingerprint;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How a handshake's certificate fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted {
        seen: Fingerprint,
    },
    /// Neither a root nor a pin vouches for it; why webpki refused it.
    Unknown {
        seen: Fingerprint,
        reason: String,
    },
    /// Another certificate than the pinned one.
    Changed {
        pinned: Fingerprint,
        seen: Fingerprint,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the CA file {path}: {source}")]
    Ca {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate in the CA file {path}")]
    EmptyCa { path: String },
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The roots: the system's (loaded once per login, not per reconnect) and
/// the CA file's.
pub fn roots(ca: Option<&Path>) -> Result<RootCertStore, TrustError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("a system root certificate could not be loaded: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates");
    if let Some(path) = ca {
        let shown = path.display().to_string();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect())
            .map_err(|source| TrustError::Ca {
                path: shown.clone(),
                source,
            })?;
        if certs.is_empty() {
            return Err(TrustError::EmptyCa { path: shown });
        }
        for cert in certs {
            roots.add(cert)?;
        }
    }
    Ok(roots)
}

/// A client configuration that trusts `roots`, else `pin`, and records
/// its verdict in `verdict`.
pub fn client_config(
    roots: RootCertStore,
    pin: Option<Fingerprint>,
    verdict: Arc<Mutex<Option<Verdict>>>,
) -> Result<Arc<ClientConfig>, TrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?,
        )
    };
    let verifier = Verifier {
        webpki,
        pin,
        algorithms: provider.signature_verification_algorithms,
        verdict,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<Fingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
    verdict: Arc<Mutex<Option<Verdict>>>,
}

impl Verifier {
    fn record(&self, verdict: Verdict) {
        *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(verdict);
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = Fingerprint::of_der(end_entity);
        let reason = match &self.webpki {
            Some(webpki) => match webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Ok(verified) => {
                    self.record(Verdict::Trusted { seen });
                    return Ok(verified);
                }
                Err(e) => e.to_string(),
            },
            None => "no root certificates".to_owned(),
        };
        match self.pin {
            Some(pinned) if pinned == seen => {
                self.record(Verdict::Trusted { seen });
                Ok(ServerCertVerified::assertion())
            }
            Some(pinned) => {
                self.record(Verdict::Changed { pinned, seen });
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
            None => {
                self.record(Verdict::Unknown { seen, reason });
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
