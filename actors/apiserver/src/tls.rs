//! TLS for the API port: the rustls server configuration from the cluster PKI, and who a
//! connection's client certificate says it is (the handshake itself: [`crate::connection`]).
//!
//! Client certificates are requested, never required, and judged after the handshake, as
//! upstream's apiserver does (Go's `RequestClientCert`, then its x509 authenticator): a client
//! without one still reaches the API (with a token, or anonymously where that is allowed), and a
//! bad, expired or foreign certificate is answered with a 401 Status instead of a TLS alert the
//! client cannot explain. The handshake still proves the client holds the certificate's key.

use crate::authn::{UserInfo, ALL_AUTHENTICATED};
use crate::pki::ClusterPki;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the cluster PKI's {0} is not valid PEM")]
    Pem(&'static str),
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// What a connection's client certificate established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAuth {
    /// No client certificate: the request authenticates otherwise (a token) or is anonymous.
    None,
    /// A certificate the cluster CA issued for client use: its CN is the user, its O the groups.
    Verified(UserInfo),
    /// A certificate that does not verify (expired, another CA, not for client use): 401.
    Invalid,
}

/// The API port's TLS: its rustls configuration and the check of client certificates.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    clients: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("alpn", &self.config.alpn_protocols).finish_non_exhaustive()
    }
}

impl ServerTls {
    pub fn new(pki: &ClusterPki) -> Result<ServerTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
            roots.add(ca.map_err(|_| TlsError::Pem("ca.crt"))?)?;
        }
        let clients = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pki.serving.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::Pem("apiserver.crt"))?;
        let key = PrivateKeyDer::from_pem_slice(pki.serving.key_pem.as_bytes())
            .map_err(|_| TlsError::Pem("apiserver.key"))?;
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(Arc::new(RequestClientCert { inner: clients.clone(), provider }))
            .with_single_cert(chain, key)?;
        // HTTP/1.1 only: upgrades (exec, attach, port-forward, watch streams) are HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls { config: Arc::new(config), clients })
    }

    /// Judges the certificates a client presented in the handshake (None: it presented none).
    pub fn peer_auth(&self, chain: Option<&[CertificateDer<'_>]>) -> PeerAuth {
        let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return PeerAuth::None;
        };
        if self.clients.verify_client_cert(leaf, intermediates, UnixTime::now()).is_err() {
            return PeerAuth::Invalid;
        }
        let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else { return PeerAuth::Invalid };
        let (cn, orgs) = subject_names(cert.subject());
        match cn {
            Some(user) if !user.is_empty() => {
                let mut groups: Vec<&str> = orgs.iter().map(String::as_str).collect();
                groups.push(ALL_AUTHENTICATED);
                PeerAuth::Verified(UserInfo::new(&user, &groups))
            }
            // Upstream's x509 authenticator passes over a certificate without a common name
            // (the request may still authenticate with a token).
            _ => PeerAuth::None,
        }
    }
}

/// Offers client authentication without requiring it, and leaves the certificate's judgement
/// to [`ServerTls::peer_auth`]; the handshake signature (proof of the key) is still checked.
#[derive(Debug)]
struct RequestClientCert {
    inner: Arc<dyn ClientCertVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The common name and organizations of a certificate's subject (an X.501 Name in DER:
/// a SEQUENCE of SETs of SEQUENCE { OID, string }). Only these two attributes are read.
fn subject_names(subject: &[u8]) -> (Option<String>, Vec<String>) {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    // webpki hands out the Name's contents; accept the whole SEQUENCE too.
    let mut rdns = match der(subject) {
        Some((0x30, body, [])) => body,
        _ => subject,
    };
    let (mut cn, mut orgs) = (None, Vec::new());
    while let Some((0x31, mut set, rest)) = der(rdns) {
        rdns = rest;
        while let Some((0x30, attr, next)) = der(set) {
            set = next;
            let Some((0x06, oid, value)) = der(attr) else { continue };
            // UTF8String, PrintableString, IA5String, T61String (as Go reads them).
            let Some((0x0c | 0x13 | 0x16 | 0x14, text, _)) = der(value) else { continue };
            let text = String::from_utf8_lossy(text).into_owned();
            match oid {
                CN => cn = Some(text),
                O => orgs.push(text),
                _ => {}
            }
        }
    }
    (cn, orgs)
}

/// One DER element: (tag, contents, what follows). Definite lengths only, as DER has.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        n if n < 0x80 => (n as usize, rest),
        0x81..=0x84 => {
            let n = (first & 0x7f) as usize;
            let (bytes, rest) = (rest.get(..n)?, rest.get(n..)?);
            (bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), rest)
        }
        _ => return None,
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ServingNames, ADMIN_GROUP, ADMIN_USER};
    use std::net::IpAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pki() -> ClusterPki {
        ClusterPki::ephemeral(&ServingNames::for_cluster("", &[], IpAddr::from([10, 96, 0, 1]), "cluster.local"))
            .unwrap()
    }

    /// A client that trusts `ca_pem` and presents `cert` if given.
    fn client(ca_pem: &str, cert: Option<(&str, &str)>) -> tokio_rustls::TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            Some((c, k)) => b
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(c.as_bytes()).collect::<Result<_, _>>().unwrap(),
                    PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => b.with_no_client_auth(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// A handshake over an in-memory pipe; what the server concluded of the client.
    async fn connect(server: &ServerTls, client: tokio_rustls::TlsConnector, name: &str) -> Result<PeerAuth, String> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server.config.clone());
        let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let serve = async {
            let mut tls = acceptor.accept(b).await.map_err(|e| e.to_string())?;
            let auth = server.peer_auth(tls.get_ref().1.peer_certificates());
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(auth)
        };
        let talk = async {
            let mut tls = client.connect(name, a).await.map_err(|e| e.to_string())?;
            tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        let (auth, talked) = tokio::join!(serve, talk);
        talked?;
        auth
    }

    #[tokio::test]
    async fn clients_with_without_and_with_foreign_certificates() {
        let pki = pki();
        let server = ServerTls::new(&pki).unwrap();
        // The admin's certificate: its CN and O, and authenticated.
        let admin = client(&pki.ca_pem, Some((&pki.admin.cert_pem, &pki.admin.key_pem)));
        let expected = UserInfo::new(ADMIN_USER, &[ADMIN_GROUP, ALL_AUTHENTICATED]);
        assert_eq!(connect(&server, admin, "kubernetes.default.svc").await, Ok(PeerAuth::Verified(expected)));
        // No certificate: the connection stands, the request authenticates otherwise.
        let bare = client(&pki.ca_pem, None);
        assert_eq!(connect(&server, bare, "127.0.0.1").await, Ok(PeerAuth::None));
        // Another cluster's admin certificate: the handshake completes, the request gets a 401.
        let other = crate::pki::ClusterPki::ephemeral(&ServingNames::default()).unwrap();
        let foreign = client(&pki.ca_pem, Some((&other.admin.cert_pem, &other.admin.key_pem)));
        assert_eq!(connect(&server, foreign, "localhost").await, Ok(PeerAuth::Invalid));
        // The serving certificate is no client certificate.
        let serving = client(&pki.ca_pem, Some((&pki.serving.cert_pem, &pki.serving.key_pem)));
        assert_eq!(connect(&server, serving, "localhost").await, Ok(PeerAuth::Invalid));
        // A client that checks names refuses one the server is not for.
        let bare = client(&pki.ca_pem, None);
        assert!(connect(&server, bare, "example.com").await.is_err());
        // And one that trusts another CA refuses this server.
        let wrong_ca = client(&other.ca_pem, None);
        assert!(connect(&server, wrong_ca, "localhost").await.is_err());
    }

    #[test]
    fn subject_names_read_cn_and_every_o() {
        let pki = pki();
        let der = CertificateDer::from_pem_slice(pki.admin.cert_pem.as_bytes()).unwrap();
        let cert = webpki::EndEntityCert::try_from(&der).unwrap();
        assert_eq!(subject_names(cert.subject()), (Some(ADMIN_USER.to_string()), vec![ADMIN_GROUP.to_string()]));
        // Garbage reads as nothing, never a panic.
        for junk in [&[][..], &[0x30], &[0x30, 0x85, 1, 2, 3, 4, 5], &[0x31, 0x05, 0x30, 0x03, 0x06, 0x09]] {
            assert_eq!(subject_names(junk), (None, vec![]));
        }
    }
}
