//! Reaching an API server as a kubeconfig says: its address and, for `https`, the CA to trust
//! and the client certificate to present (the data kubectl reads: `certificate-authority-data`,
//! `client-certificate-data`, `client-key-data`). The benches' raw HTTP client and the
//! end-to-end tests' share it.

use anyhow::{bail, Context as _};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// An API server to talk to.
#[derive(Clone)]
pub struct Endpoint {
    /// `host:port`.
    pub addr: String,
    /// The host as the certificate names it.
    host: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("addr", &self.addr).field("tls", &self.tls.is_some()).finish()
    }
}

/// Both directions of a connection, plain or TLS.
pub trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

impl Endpoint {
    /// Plain HTTP at `addr` (a server started with `--insecure-http`).
    pub fn plain(addr: &str) -> Endpoint {
        Endpoint { addr: addr.to_string(), host: host_of(addr), tls: None }
    }

    /// The current context's server and user of the kubeconfig at `path`.
    pub fn from_kubeconfig(path: &Path) -> anyhow::Result<Endpoint> {
        let kubeconfig = kubus_apiserver::kubeconfig::read(path)?;
        let server = kubeconfig.server.context("the current context's cluster has no server")?;
        if let Some(addr) = server.strip_prefix("http://") {
            return Ok(Endpoint::plain(addr.trim_end_matches('/')));
        }
        let Some(addr) = server.strip_prefix("https://") else { bail!("server {server}: neither http nor https") };
        let addr = addr.trim_end_matches('/');
        let ca = kubeconfig.ca_pem.context("no certificate-authority-data")?;
        let client = kubeconfig.user.and_then(|u| Some((u.client_certificate?, u.client_key?)));
        Endpoint::tls(addr, ca.as_bytes(), client.as_ref().map(|(c, k)| (c.as_bytes(), k.as_bytes())))
    }

    /// HTTPS at `addr`, trusting the CA in `ca_pem`, presenting the client certificate and key
    /// (PEM) if given.
    pub fn tls(addr: &str, ca_pem: &[u8], client: Option<(&[u8], &[u8])>) -> anyhow::Result<Endpoint> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(c.context("the CA certificate")?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(cert).collect::<Result<_, _>>().context("the client certificate")?;
                let key = PrivateKeyDer::from_pem_slice(key).context("the client key")?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Endpoint { addr: addr.to_string(), host: host_of(addr), tls: Some(Arc::new(config)) })
    }

    /// The same server and CA with no client certificate: an anonymous client.
    pub fn anonymous(&self) -> Endpoint {
        let tls = self.tls.as_ref().map(|c| {
            let mut config = (**c).clone();
            config.client_auth_cert_resolver = Arc::new(NoClientCert);
            Arc::new(config)
        });
        Endpoint { tls, ..self.clone() }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn server_name(&self) -> anyhow::Result<ServerName<'static>> {
        ServerName::try_from(self.host.clone()).with_context(|| format!("server name {}", self.host))
    }

    /// A connection (tokio), after the TLS handshake where the server is https.
    pub async fn connect(&self) -> anyhow::Result<Box<dyn AsyncStream>> {
        let tcp =
            tokio::net::TcpStream::connect(&self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(config) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(self.server_name()?, tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {}", self.addr))?;
                Ok(Box::new(tls))
            }
        }
    }

    /// A blocking connection with this read timeout, after the TLS handshake where https.
    pub fn connect_blocking(&self, timeout: Duration) -> std::io::Result<Box<dyn Stream>> {
        let tcp = std::net::TcpStream::connect(&self.addr)?;
        tcp.set_read_timeout(Some(timeout))?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(config) => {
                let name = self.server_name().map_err(std::io::Error::other)?;
                let conn = rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
                Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
        }
    }
}

fn host_of(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']').to_string(),
        None => addr.to_string(),
    }
}

/// Presents no client certificate whatever the server asks.
#[derive(Debug)]
struct NoClientCert;

impl rustls::client::ResolvesClientCert for NoClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}
