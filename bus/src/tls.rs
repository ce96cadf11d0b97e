//! NATS over TLS: what a client trusts. The embedded server listens with TLS whenever it
//! listens beyond loopback; its certificate comes from the cluster CA. A client on the control
//! plane's machine trusts that CA ([`trust_ca`]); a node joining from elsewhere has no CA yet and
//! trusts a server only if the chain it presents holds a CA whose public key has the hash the
//! join command carries ([`trust_pinned`], kubeadm's `--discovery-token-ca-cert-hash`), the
//! server's certificate verifying under that CA for the address dialled.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the CA certificate is not PEM")]
    Pem,
    #[error("the CA certificate cannot be a trust anchor: {0}")]
    Anchor(String),
    #[error("--ca-cert-hash must be sha256:<64 hex digits>, not {0:?}")]
    Hash(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(verifier: Arc<dyn ServerCertVerifier>) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

fn roots(ca: &[CertificateDer<'_>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert.clone()).map_err(|e| TlsError::Anchor(e.to_string()))?;
    }
    Ok(roots)
}

fn webpki_verifier(roots: RootCertStore) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Anchor(e.to_string()))
}

/// Trusts servers whose certificate the CA of `ca_pem` issued (and nothing else: not the
/// system's roots).
pub fn trust_ca(ca_pem: &str) -> Result<ClientConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(ca_pem.as_bytes()).collect::<Result<_, _>>().map_err(|_| TlsError::Pem)?;
    if certs.is_empty() {
        return Err(TlsError::Pem);
    }
    Ok(client_config(webpki_verifier(roots(&certs)?)?))
}

/// Trusts a server whose presented chain holds a CA with public-key hash `pin` (see
/// [`ca_cert_hash`]), its certificate verifying under that CA.
pub fn trust_pinned(pin: &str) -> Result<ClientConfig, TlsError> {
    let hex = pin.strip_prefix("sha256:").ok_or_else(|| TlsError::Hash(pin.to_string()))?;
    let bytes: Option<Vec<u8>> =
        (0..hex.len()).step_by(2).map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect();
    let pin: [u8; 32] = bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| TlsError::Hash(pin.to_string()))?;
    Ok(client_config(Arc::new(Pinned { pin })))
}

/// The hash of a CA's public key (SHA-256 of its DER SubjectPublicKeyInfo), as kubeadm's
/// `--discovery-token-ca-cert-hash` is: `sha256:<hex>`.
pub fn ca_cert_hash(ca_pem: &str) -> Result<String, TlsError> {
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|_| TlsError::Pem)?;
    spki_sha256(&der).map(|h| format!("sha256:{}", hex(&h))).ok_or(TlsError::Pem)
}

fn spki_sha256(der: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let cert = webpki::EndEntityCert::try_from(der).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.subject_public_key_info().as_ref());
    digest.as_ref().try_into().ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates.iter().find(|c| spki_sha256(c) == Some(self.pin)).ok_or_else(|| {
            rustls::Error::General(
                "the server's certificate chain holds no CA with the public-key hash of --ca-cert-hash".into(),
            )
        })?;
        let verifier = roots(std::slice::from_ref(ca))
            .and_then(webpki_verifier)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pins_are_checked_for_shape() {
        assert!(super::trust_pinned("sha256:00").is_err());
        assert!(super::trust_pinned(&format!("md5:{}", "0".repeat(64))).is_err());
        assert!(super::trust_pinned(&format!("sha256:{}", "ab".repeat(32))).is_ok());
        assert!(super::trust_ca("not pem").is_err());
    }
}
