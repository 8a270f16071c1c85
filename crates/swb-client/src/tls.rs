//! TLS for clients: the system's roots, or one pinned certificate (`SWB_TLS_PIN`, or
//! a federation manifest's pins): the server's certificate must have exactly that
//! SHA-256 fingerprint, whatever its name and issuer. No setting turns checking off.

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::Arc;

/// The environment variable naming the one certificate (`sha256:<hex>`) the CLI and
/// SDK accept from the server, for a server with a self-signed certificate.
pub const PIN_ENV: &str = "SWB_TLS_PIN";

/// A pin no certificate has: what a malformed `SWB_TLS_PIN` becomes (refuse, never
/// fall back to no pin).
pub const NOTHING: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

pub use swb_api::cert_fingerprint as fingerprint;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration: pinned to `pin` when given, else the system's roots;
/// presenting `identity` (a certificate chain and key) when given.
pub fn client_config(
    pin: Option<&str>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match pin {
        Some(pin) => {
            if !is_fingerprint(pin) {
                return Err(format!(
                    "bad certificate pin {pin:?}: write sha256:<64 hex digits>"
                ));
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    pin: pin.to_ascii_lowercase(),
                    algorithms: provider.signature_verification_algorithms,
                }))
        }
        None => builder.with_root_certificates(system_roots()),
    };
    let mut config = match identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("the client certificate and key do not match: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The system's trusted roots, read once.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            Arc::new(roots)
        })
        .clone()
}

/// Whether `s` is `sha256:` and 64 hex digits.
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Accepts exactly the certificate with this fingerprint (and a handshake it signed).
#[derive(Debug)]
struct Pinned {
    pin: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate is not the pinned one ({})",
                self.pin
            )))
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

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// An HTTP client builder that speaks TLS with the system's roots: the one way to
/// build a `reqwest` client here (reqwest is built without a default TLS provider).
pub fn builder() -> reqwest::ClientBuilder {
    let tls = client_config(None, None).expect("a TLS configuration with the system's roots");
    reqwest::Client::builder().tls_backend_preconfigured(tls)
}
